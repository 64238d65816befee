//! RTP fixed header (RFC 3550 §5.1) and sequence-number arithmetic.

use thiserror::Error;

/// Payload type of MPEG-2 transport streams (RFC 3551).
pub const PT_MP2T: u8 = 33;
/// Fixed header size without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("RTP packet of {len} bytes is shorter than its {field} (needs {needed})")]
    Truncated {
        field: &'static str,
        needed: usize,
        len: usize,
    },
    #[error("RTP version is {found}, expected 2 (byte 0 is {byte0:#04x})")]
    Version { found: u8, byte0: u8 },
    #[error(
        "padding count {count} in the last byte exceeds the {available} bytes after the header"
    )]
    Padding { count: usize, available: usize },
    #[error("{count} CSRCs do not fit (at most 15)")]
    TooManyCsrcs { count: usize },
}

/// The header extension (RFC 3550 §5.3.1): profile word and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    /// A multiple of 4 bytes.
    pub data: &'a [u8],
}

/// One RTP packet borrowing from its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The CSRC list, 4 bytes each.
    csrc: &'a [u8],
    pub extension: Option<RtpExtension<'a>>,
    pub payload: &'a [u8],
    /// Bytes of padding removed from the end (0 when the P bit is clear).
    pub padding: usize,
}

impl<'a> RtpPacket<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self, RtpError> {
        let truncated = |field, needed| RtpError::Truncated {
            field,
            needed,
            len: b.len(),
        };
        if b.len() < RTP_HEADER_LEN {
            return Err(truncated("fixed header", RTP_HEADER_LEN));
        }
        let version = b[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version {
                found: version,
                byte0: b[0],
            });
        }
        let csrc_count = usize::from(b[0] & 0x0F);
        let mut at = RTP_HEADER_LEN + 4 * csrc_count;
        let csrc = b
            .get(RTP_HEADER_LEN..at)
            .ok_or(truncated("CSRC list", at))?;
        let extension = if b[0] & 0x10 != 0 {
            let head = b
                .get(at..at + 4)
                .ok_or(truncated("extension header", at + 4))?;
            let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let end = at + 4 + 4 * words;
            let data = b.get(at + 4..end).ok_or(truncated("extension", end))?;
            at = end;
            Some(RtpExtension {
                profile: u16::from_be_bytes([head[0], head[1]]),
                data,
            })
        } else {
            None
        };
        let mut end = b.len();
        let mut padding = 0;
        if b[0] & 0x20 != 0 {
            padding = usize::from(b[b.len() - 1]);
            let available = b.len() - at;
            if padding == 0 || padding > available {
                return Err(RtpError::Padding {
                    count: padding,
                    available,
                });
            }
            end -= padding;
        }
        Ok(Self {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7F,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            csrc,
            extension,
            payload: &b[at..end],
            padding,
        })
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Bytes before the payload.
    pub fn header_len(&self) -> usize {
        RTP_HEADER_LEN + self.csrc.len() + self.extension.map_or(0, |e| 4 + e.data.len())
    }
}

/// Fields for writing an RTP header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrcs: Vec<u32>,
    /// (profile, data): data is zero-padded to a multiple of 4 bytes.
    pub extension: Option<(u16, Vec<u8>)>,
}

impl RtpHeader {
    /// Writes the header, then `payload`, then `padding` bytes of padding (0 for none).
    pub fn encode(&self, payload: &[u8], padding: u8) -> Result<Vec<u8>, RtpError> {
        if self.csrcs.len() > 15 {
            return Err(RtpError::TooManyCsrcs {
                count: self.csrcs.len(),
            });
        }
        let mut b = Vec::with_capacity(RTP_HEADER_LEN + payload.len() + 64);
        b.push(
            0x80 | (u8::from(padding > 0) << 5)
                | (u8::from(self.extension.is_some()) << 4)
                | self.csrcs.len() as u8,
        );
        b.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        b.extend_from_slice(&self.sequence.to_be_bytes());
        b.extend_from_slice(&self.timestamp.to_be_bytes());
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs {
            b.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = &self.extension {
            let words = data.len().div_ceil(4).min(usize::from(u16::MAX));
            b.extend_from_slice(&profile.to_be_bytes());
            b.extend_from_slice(&(words as u16).to_be_bytes());
            let start = b.len();
            b.extend_from_slice(&data[..data.len().min(words * 4)]);
            b.resize(start + words * 4, 0);
        }
        b.extend_from_slice(payload);
        if padding > 0 {
            b.resize(b.len() + usize::from(padding) - 1, 0);
            b.push(padding);
        }
        Ok(b)
    }
}

/// Signed distance from `a` to `b` in the 16-bit sequence space: positive when `b` is ahead.
/// Distances of exactly half the space (32768) count as ahead.
pub fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(b.wrapping_sub(a) as i16)
}

/// Whether `b` comes after `a` (RFC 3550 serial-number order).
pub fn seq_newer(a: u16, b: u16) -> bool {
    seq_diff(a, b) > 0
}

/// Extends 16-bit sequence numbers to a monotonic 64-bit count across wraparounds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// Starting values sit high enough above 0 that extending backwards never underflows.
    const ORIGIN: u64 = 1 << 32;

    /// The extended value of `seq`, taken as the nearest value to the highest seen so far.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => Self::ORIGIN + u64::from(seq),
            Some(h) => h.saturating_add_signed(i64::from(seq_diff(h as u16, seq))),
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// What `extend` would return, without recording it.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => Self::ORIGIN + u64::from(seq),
            Some(h) => h.saturating_add_signed(i64::from(seq_diff(h as u16, seq))),
        }
    }

    pub fn reset(&mut self) {
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequence_arithmetic_wraps() {
        assert_eq!(seq_diff(65535, 0), 1);
        assert_eq!(seq_diff(0, 65535), -1);
        assert!(seq_newer(65530, 3));
        assert!(!seq_newer(3, 65530));
        let mut e = SeqExtender::default();
        let a = e.extend(65534);
        assert_eq!(e.extend(65535), a + 1);
        assert_eq!(e.extend(0), a + 2);
        assert_eq!(e.extend(65535), a + 1); // late packet maps back
        assert_eq!(e.extend(1), a + 3);
    }

    #[test]
    fn refuses_with_reason() {
        assert!(matches!(
            RtpPacket::parse(&[0x80; 5]),
            Err(RtpError::Truncated { .. })
        ));
        assert_eq!(
            RtpPacket::parse(&[0x40; 12]),
            Err(RtpError::Version {
                found: 1,
                byte0: 0x40
            })
        );
        let mut p = RtpHeader::default().encode(&[1, 2, 3], 0).unwrap();
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200;
        assert!(matches!(
            RtpPacket::parse(&p),
            Err(RtpError::Padding { count: 200, .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = RtpPacket::parse(&bytes);
        }

        #[test]
        fn round_trips(marker: bool, pt in 0u8..128, seq: u16, ts: u32, ssrc: u32,
                       csrcs in proptest::collection::vec(any::<u32>(), 0..16),
                       ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..6).prop_map(|v| v.repeat(4)))),
                       payload in proptest::collection::vec(any::<u8>(), 0..200), padding: u8) {
            let h = RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc,
                                csrcs: csrcs.clone(), extension: ext.clone() };
            let b = h.encode(&payload, padding).unwrap();
            let p = RtpPacket::parse(&b).unwrap();
            prop_assert_eq!(p.marker, marker);
            prop_assert_eq!(p.payload_type, pt);
            prop_assert_eq!(p.sequence, seq);
            prop_assert_eq!(p.timestamp, ts);
            prop_assert_eq!(p.ssrc, ssrc);
            prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs);
            prop_assert_eq!(p.extension.map(|e| (e.profile, e.data.to_vec())), ext);
            prop_assert_eq!(p.payload, &payload[..]);
            prop_assert_eq!(p.padding, usize::from(padding));
        }

        #[test]
        fn extender_follows_any_walk(start: u16, steps in proptest::collection::vec(-100i32..1000, 1..500)) {
            let mut e = SeqExtender::default();
            let mut truth = i64::from(start);
            let base = e.extend(start) as i64 - truth;
            let mut highest = truth;
            for s in steps {
                truth += i64::from(s);
                if truth < highest - 30000 { truth = highest - 30000; }
                highest = highest.max(truth);
                let got = e.extend(truth.rem_euclid(65536) as u16) as i64 - base;
                prop_assert_eq!(got, truth);
            }
        }
    }
}
