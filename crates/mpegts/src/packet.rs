//! The 188-byte transport stream packet (ISO/IEC 13818-1 §2.4.3.2): header, adaptation field
//! with PCR and discontinuity indicator, payload; plus the in-place edits a switcher needs.

use thiserror::Error;

/// Size of one transport stream packet.
pub const TS_PACKET_SIZE: usize = 188;
/// First byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// Stuffing packets; never checked for continuity.
pub const NULL_PID: u16 = 0x1FFF;
/// Highest PID value (13 bits).
pub const MAX_PID: u16 = 0x1FFF;
/// PCR ticks per second (27 MHz system clock).
pub const PCR_HZ: u64 = 27_000_000;
/// The PCR wraps after 2^33 base ticks of 300 extension ticks each.
pub const PCR_WRAP: u64 = (1 << 33) * 300;

/// Why a 188-byte packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("a TS packet is 188 bytes, got {len}")]
    Length { len: usize },
    #[error("byte 0 is {found:#04x}, expected sync byte 0x47")]
    SyncByte { found: u8 },
    #[error(
        "adaptation_field_length {length} at byte 4 exceeds the {max} bytes left in the packet"
    )]
    AdaptationLength { length: usize, max: usize },
    #[error("adaptation field of {length} bytes is too short for its {field} (needs {needed})")]
    AdaptationTruncated {
        field: &'static str,
        length: usize,
        needed: usize,
    },
    #[error("adaptation_field_control is 00 (reserved)")]
    ReservedAdaptationControl,
    #[error("a packet needs an adaptation field or a payload")]
    Empty,
    #[error(
        "{needed} bytes of adaptation field and payload do not fit the 184 bytes after the header"
    )]
    TooLong { needed: usize },
}

/// A Program Clock Reference: 33-bit base at 90 kHz plus 9-bit extension at 27 MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr {
    pub base: u64,
    pub extension: u16,
}

impl Pcr {
    /// From a 27 MHz tick count (taken modulo the PCR wrap).
    pub fn from_27mhz(ticks: u64) -> Self {
        let ticks = ticks % PCR_WRAP;
        Self {
            base: ticks / 300,
            extension: (ticks % 300) as u16,
        }
    }

    /// The value in 27 MHz ticks.
    pub fn to_27mhz(self) -> u64 {
        self.base * 300 + u64::from(self.extension)
    }

    fn read(b: &[u8]) -> Self {
        let base = (u64::from(b[0]) << 25)
            | (u64::from(b[1]) << 17)
            | (u64::from(b[2]) << 9)
            | (u64::from(b[3]) << 1)
            | (u64::from(b[4]) >> 7);
        let extension = (u16::from(b[4] & 1) << 8) | u16::from(b[5]);
        Self { base, extension }
    }

    fn write(self, b: &mut [u8]) {
        let base = self.base & ((1 << 33) - 1);
        b[0] = (base >> 25) as u8;
        b[1] = (base >> 17) as u8;
        b[2] = (base >> 9) as u8;
        b[3] = (base >> 1) as u8;
        // 6 reserved bits are set to 1.
        b[4] = ((base as u8 & 1) << 7) | 0x7E | ((self.extension >> 8) as u8 & 1);
        b[5] = self.extension as u8;
    }
}

/// The 4-byte packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsHeader {
    pub transport_error: bool,
    pub payload_unit_start: bool,
    pub transport_priority: bool,
    pub pid: u16,
    /// transport_scrambling_control (2 bits); 0 means not scrambled.
    pub scrambling: u8,
    pub has_adaptation: bool,
    pub has_payload: bool,
    pub continuity_counter: u8,
}

impl TsHeader {
    /// Reads the header of a packet whose sync byte is already known to be right.
    /// Reads only the first four bytes; never fails.
    pub fn read(b: &[u8; 4]) -> Self {
        Self {
            transport_error: b[1] & 0x80 != 0,
            payload_unit_start: b[1] & 0x40 != 0,
            transport_priority: b[1] & 0x20 != 0,
            pid: (u16::from(b[1] & 0x1F) << 8) | u16::from(b[2]),
            scrambling: b[3] >> 6,
            has_adaptation: b[3] & 0x20 != 0,
            has_payload: b[3] & 0x10 != 0,
            continuity_counter: b[3] & 0x0F,
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0] = SYNC_BYTE;
        b[1] = (u8::from(self.transport_error) << 7)
            | (u8::from(self.payload_unit_start) << 6)
            | (u8::from(self.transport_priority) << 5)
            | ((self.pid >> 8) as u8 & 0x1F);
        b[2] = self.pid as u8;
        b[3] = ((self.scrambling & 3) << 6)
            | (u8::from(self.has_adaptation) << 5)
            | (u8::from(self.has_payload) << 4)
            | (self.continuity_counter & 0x0F);
    }
}

/// The fields of the adaptation field that monitoring and switching use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdaptationField {
    pub discontinuity: bool,
    pub random_access: bool,
    pub es_priority: bool,
    pub pcr: Option<Pcr>,
    pub opcr: Option<Pcr>,
    pub splice_countdown: Option<i8>,
}

impl AdaptationField {
    /// Bytes this field needs after its length byte (without stuffing).
    fn encoded_len(&self) -> usize {
        1 + 6 * usize::from(self.pcr.is_some())
            + 6 * usize::from(self.opcr.is_some())
            + usize::from(self.splice_countdown.is_some())
    }

    /// `body` is the adaptation field after its length byte.
    fn parse(body: &[u8]) -> Result<Self, PacketError> {
        let Some(&flags) = body.first() else {
            // A zero-length field is legal: it carries a single stuffing byte.
            return Ok(Self::default());
        };
        let mut af = Self {
            discontinuity: flags & 0x80 != 0,
            random_access: flags & 0x40 != 0,
            es_priority: flags & 0x20 != 0,
            ..Self::default()
        };
        let mut at = 1;
        let mut take = |field: &'static str, n: usize| {
            let slice = body
                .get(at..at + n)
                .ok_or(PacketError::AdaptationTruncated {
                    field,
                    length: body.len(),
                    needed: at + n,
                })?;
            at += n;
            Ok::<_, PacketError>(slice)
        };
        if flags & 0x10 != 0 {
            af.pcr = Some(Pcr::read(take("PCR", 6)?));
        }
        if flags & 0x08 != 0 {
            af.opcr = Some(Pcr::read(take("OPCR", 6)?));
        }
        if flags & 0x04 != 0 {
            af.splice_countdown = Some(take("splice_countdown", 1)?[0] as i8);
        }
        // Private data and the extension are skipped: nothing here needs them.
        Ok(af)
    }

    fn write(&self, b: &mut [u8]) {
        b[0] = (u8::from(self.discontinuity) << 7)
            | (u8::from(self.random_access) << 6)
            | (u8::from(self.es_priority) << 5)
            | (u8::from(self.pcr.is_some()) << 4)
            | (u8::from(self.opcr.is_some()) << 3)
            | (u8::from(self.splice_countdown.is_some()) << 2);
        let mut at = 1;
        if let Some(pcr) = self.pcr {
            pcr.write(&mut b[at..at + 6]);
            at += 6;
        }
        if let Some(opcr) = self.opcr {
            opcr.write(&mut b[at..at + 6]);
            at += 6;
        }
        if let Some(sc) = self.splice_countdown {
            b[at] = sc as u8;
        }
    }
}

/// A parsed packet borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsPacket<'a> {
    pub header: TsHeader,
    pub adaptation: Option<AdaptationField>,
    pub payload: &'a [u8],
}

impl<'a> TsPacket<'a> {
    /// Parses exactly one 188-byte packet.
    pub fn parse(b: &'a [u8]) -> Result<Self, PacketError> {
        let b: &[u8; TS_PACKET_SIZE] = b
            .try_into()
            .map_err(|_| PacketError::Length { len: b.len() })?;
        if b[0] != SYNC_BYTE {
            return Err(PacketError::SyncByte { found: b[0] });
        }
        let header = TsHeader::read(&[b[0], b[1], b[2], b[3]]);
        if !header.has_adaptation && !header.has_payload {
            return Err(PacketError::ReservedAdaptationControl);
        }
        let mut payload_at = 4;
        let adaptation = if header.has_adaptation {
            let length = usize::from(b[4]);
            // With a payload the field may take at most 183 bytes, without one exactly 183.
            let max = if header.has_payload { 182 } else { 183 };
            if length > max {
                return Err(PacketError::AdaptationLength { length, max });
            }
            payload_at = 5 + length;
            Some(AdaptationField::parse(&b[5..payload_at])?)
        } else {
            None
        };
        let payload = if header.has_payload {
            &b[payload_at..]
        } else {
            &[]
        };
        Ok(Self {
            header,
            adaptation,
            payload,
        })
    }

    /// The PCR of this packet, if it carries one.
    pub fn pcr(&self) -> Option<Pcr> {
        self.adaptation.and_then(|af| af.pcr)
    }

    /// Whether the discontinuity_indicator is set.
    pub fn discontinuity(&self) -> bool {
        self.adaptation.is_some_and(|af| af.discontinuity)
    }

    /// Writes the packet; space the fields leave is filled with adaptation-field stuffing
    /// (0xFF), as the standard requires. `has_adaptation`/`has_payload` in the header are
    /// derived from the content.
    pub fn encode(&self) -> Result<[u8; TS_PACKET_SIZE], PacketError> {
        let mut out = [0xFFu8; TS_PACKET_SIZE];
        let has_payload = !self.payload.is_empty();
        let room = TS_PACKET_SIZE - 4;
        let needed_af = self.adaptation.map(|af| 1 + af.encoded_len());
        let needed = needed_af.unwrap_or(0) + self.payload.len();
        if needed > room {
            return Err(PacketError::TooLong { needed });
        }
        if !has_payload && needed_af.is_none() {
            return Err(PacketError::Empty);
        }
        let mut header = self.header;
        header.has_payload = has_payload;
        header.has_adaptation = needed_af.is_some() || needed < room;
        header.write(&mut out[..4]);
        if header.has_adaptation {
            let af_total = room - self.payload.len();
            out[4] = (af_total - 1) as u8;
            if af_total > 1 {
                self.adaptation.unwrap_or_default().write(&mut out[5..]);
            }
        }
        out[TS_PACKET_SIZE - self.payload.len()..].copy_from_slice(self.payload);
        Ok(out)
    }
}

/// Rewrites the continuity counter of a packet in place.
pub fn set_continuity_counter(packet: &mut [u8; TS_PACKET_SIZE], cc: u8) {
    packet[3] = (packet[3] & 0xF0) | (cc & 0x0F);
}

/// Sets the discontinuity_indicator in place. Returns false when the packet has no adaptation
/// field with a flags byte to carry it (the payload cannot be shifted without repacketising).
pub fn set_discontinuity_indicator(packet: &mut [u8; TS_PACKET_SIZE]) -> bool {
    let has_adaptation = packet[3] & 0x20 != 0;
    if !has_adaptation || packet[4] == 0 {
        return false;
    }
    packet[5] |= 0x80;
    true
}

/// Forward distance between two PCR values in 27 MHz ticks, across the 2^33 wrap.
pub fn pcr_delta(from: u64, to: u64) -> u64 {
    (to + PCR_WRAP - from % PCR_WRAP) % PCR_WRAP
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(pid: u16, cc: u8) -> TsHeader {
        TsHeader {
            transport_error: false,
            payload_unit_start: true,
            transport_priority: false,
            pid,
            scrambling: 0,
            has_adaptation: false,
            has_payload: true,
            continuity_counter: cc,
        }
    }

    #[test]
    fn pcr_packet_round_trips_with_stuffing() {
        let pcr = Pcr::from_27mhz(123_456_789_012);
        let p = TsPacket {
            header: header(0x100, 7),
            adaptation: Some(AdaptationField {
                discontinuity: true,
                pcr: Some(pcr),
                ..AdaptationField::default()
            }),
            payload: &[1, 2, 3],
        };
        let bytes = p.encode().unwrap();
        let q = TsPacket::parse(&bytes).unwrap();
        assert_eq!(q.pcr(), Some(pcr));
        assert!(q.discontinuity());
        assert_eq!(q.payload, &[1, 2, 3]);
        assert_eq!(q.header.pid, 0x100);
        assert_eq!(q.header.continuity_counter, 7);
    }

    #[test]
    fn refuses_bad_packets_with_reason() {
        assert_eq!(
            TsPacket::parse(&[0x47; 100]),
            Err(PacketError::Length { len: 100 })
        );
        let mut b = [0u8; 188];
        assert_eq!(TsPacket::parse(&b), Err(PacketError::SyncByte { found: 0 }));
        b[0] = 0x47;
        b[3] = 0x30;
        b[4] = 183;
        assert_eq!(
            TsPacket::parse(&b),
            Err(PacketError::AdaptationLength {
                length: 183,
                max: 182
            })
        );
        b[4] = 1;
        b[5] = 0x10; // PCR flag in a 1-byte field
        assert!(matches!(
            TsPacket::parse(&b),
            Err(PacketError::AdaptationTruncated { field: "PCR", .. })
        ));
    }

    #[test]
    fn in_place_edits() {
        let p = TsPacket {
            header: header(0x20, 3),
            adaptation: Some(AdaptationField::default()),
            payload: &[0; 10],
        };
        let mut b = p.encode().unwrap();
        set_continuity_counter(&mut b, 12);
        assert!(set_discontinuity_indicator(&mut b));
        let q = TsPacket::parse(&b).unwrap();
        assert_eq!(q.header.continuity_counter, 12);
        assert!(q.discontinuity());
        let full = TsPacket {
            header: header(0x20, 3),
            adaptation: None,
            payload: &[0; 184],
        };
        let mut b = full.encode().unwrap();
        assert!(!set_discontinuity_indicator(&mut b));
    }

    #[test]
    fn pcr_delta_wraps() {
        assert_eq!(pcr_delta(PCR_WRAP - 10, 5), 15);
        assert_eq!(pcr_delta(5, 15), 10);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = TsPacket::parse(&bytes);
            if bytes.len() >= 188 {
                let mut b = [0u8; 188];
                b.copy_from_slice(&bytes[..188]);
                b[0] = SYNC_BYTE;
                let _ = TsPacket::parse(&b);
            }
        }

        #[test]
        fn encode_parse_round_trip(
            pid in 0u16..=MAX_PID, cc in 0u8..16, tei: bool, pusi: bool, prio: bool,
            scrambling in 0u8..4, af in proptest::option::of((any::<bool>(), any::<bool>(),
                proptest::option::of(0u64..PCR_WRAP), proptest::option::of(0u64..PCR_WRAP))),
            payload in proptest::collection::vec(any::<u8>(), 0..=184),
        ) {
            let adaptation = af.map(|(d, r, pcr, opcr)| AdaptationField {
                discontinuity: d, random_access: r, es_priority: false,
                pcr: pcr.map(Pcr::from_27mhz), opcr: opcr.map(Pcr::from_27mhz),
                splice_countdown: None,
            });
            let p = TsPacket {
                header: TsHeader { transport_error: tei, payload_unit_start: pusi,
                    transport_priority: prio, pid, scrambling, has_adaptation: false,
                    has_payload: true, continuity_counter: cc },
                adaptation, payload: &payload,
            };
            match p.encode() {
                Ok(bytes) => {
                    let q = TsPacket::parse(&bytes).unwrap();
                    prop_assert_eq!(q.payload, &payload[..]);
                    prop_assert_eq!(q.header.pid, pid);
                    prop_assert_eq!(q.header.continuity_counter, cc);
                    prop_assert_eq!(q.header.transport_error, tei);
                    prop_assert_eq!(q.header.payload_unit_start, pusi);
                    prop_assert_eq!(q.header.scrambling, scrambling);
                    if let Some(a) = adaptation {
                        prop_assert_eq!(q.adaptation, Some(a));
                    }
                }
                Err(PacketError::TooLong { needed }) => prop_assert!(needed > 184),
                Err(PacketError::Empty) => prop_assert!(payload.is_empty() && adaptation.is_none()),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
