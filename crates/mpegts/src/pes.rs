//! PES packet headers (ISO/IEC 13818-1 §2.4.3.6): stream_id, length, PTS and DTS.

use thiserror::Error;

/// A 33-bit 90 kHz timestamp wraps at this value.
pub const TIMESTAMP_WRAP: u64 = 1 << 33;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PesError {
    #[error("PES header needs {needed} bytes, the payload has {len}")]
    Truncated { needed: usize, len: usize },
    #[error("packet_start_code_prefix is {found:#08x}, expected 0x000001")]
    StartCode { found: u32 },
    #[error("PTS_DTS_flags is '01' (forbidden)")]
    ForbiddenPtsDtsFlags,
    #[error("{field} at byte {offset} lacks its marker bits")]
    Marker { field: &'static str, offset: usize },
}

/// The parts of a PES header that monitoring uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    pub stream_id: u8,
    /// PES_packet_length; 0 means unbounded (video).
    pub packet_length: u16,
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Bytes from the start of the PES packet to its payload.
    pub header_len: usize,
}

/// Stream ids whose PES packets have no optional header (ISO/IEC 13818-1 Table 2-22).
fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    )
}

impl PesHeader {
    /// Parses the header at the start of a PES packet (the payload of a packet with
    /// payload_unit_start_indicator set).
    pub fn parse(b: &[u8]) -> Result<Self, PesError> {
        let need = |needed: usize| {
            if b.len() < needed {
                Err(PesError::Truncated {
                    needed,
                    len: b.len(),
                })
            } else {
                Ok(())
            }
        };
        need(6)?;
        let prefix = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        if prefix != 1 {
            return Err(PesError::StartCode { found: prefix });
        }
        let stream_id = b[3];
        let packet_length = u16::from_be_bytes([b[4], b[5]]);
        if !has_optional_header(stream_id) {
            return Ok(Self {
                stream_id,
                packet_length,
                pts: None,
                dts: None,
                header_len: 6,
            });
        }
        need(9)?;
        let header_len = 9 + usize::from(b[8]);
        let (pts, dts) = match b[7] >> 6 {
            0b10 => {
                need(14)?;
                (Some(read_timestamp(&b[9..14], "PTS", 9)?), None)
            }
            0b11 => {
                need(19)?;
                (
                    Some(read_timestamp(&b[9..14], "PTS", 9)?),
                    Some(read_timestamp(&b[14..19], "DTS", 14)?),
                )
            }
            0b01 => return Err(PesError::ForbiddenPtsDtsFlags),
            _ => (None, None),
        };
        Ok(Self {
            stream_id,
            packet_length,
            pts,
            dts,
            header_len,
        })
    }

    /// Encodes a header with the optional fields this type holds (no stuffing).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0, 0, 1, self.stream_id];
        b.extend_from_slice(&self.packet_length.to_be_bytes());
        if !has_optional_header(self.stream_id) {
            return b;
        }
        let flags = match (self.pts, self.dts) {
            (Some(_), Some(_)) => 0b11,
            (Some(_), None) => 0b10,
            _ => 0,
        };
        let ts_len = match flags {
            0b11 => 10,
            0b10 => 5,
            _ => 0,
        };
        b.extend_from_slice(&[0x80, flags << 6, ts_len]);
        if let Some(pts) = self.pts.filter(|_| flags != 0) {
            write_timestamp(&mut b, if flags == 0b11 { 0b0011 } else { 0b0010 }, pts);
        }
        if let Some(dts) = self.dts.filter(|_| flags == 0b11) {
            write_timestamp(&mut b, 0b0001, dts);
        }
        b
    }
}

fn read_timestamp(b: &[u8], field: &'static str, offset: usize) -> Result<u64, PesError> {
    if b[0] & 1 == 0 || b[2] & 1 == 0 || b[4] & 1 == 0 {
        return Err(PesError::Marker { field, offset });
    }
    Ok((u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1))
}

fn write_timestamp(out: &mut Vec<u8>, prefix: u8, ts: u64) {
    let ts = ts % TIMESTAMP_WRAP;
    out.extend_from_slice(&[
        (prefix << 4) | (((ts >> 30) as u8 & 7) << 1) | 1,
        (ts >> 22) as u8,
        ((ts >> 14) as u8 & 0xFE) | 1,
        (ts >> 7) as u8,
        ((ts << 1) as u8) | 1,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_pts_and_dts() {
        let h = PesHeader {
            stream_id: 0xE0,
            packet_length: 0,
            pts: Some(TIMESTAMP_WRAP - 1),
            dts: Some(12345),
            header_len: 19,
        };
        assert_eq!(PesHeader::parse(&h.encode()).unwrap(), h);
        assert_eq!(
            PesHeader::parse(&[0, 0, 2, 0xE0, 0, 0]),
            Err(PesError::StartCode { found: 2 })
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = PesHeader::parse(&bytes);
        }

        #[test]
        fn round_trips(stream_id in 0xC0u8..0xF0, len: u16, pts in proptest::option::of(0..TIMESTAMP_WRAP),
                       dts in proptest::option::of(0..TIMESTAMP_WRAP)) {
            let dts = pts.and(dts);
            let h = PesHeader { stream_id, packet_length: len, pts, dts,
                header_len: 9 + 5 * usize::from(pts.is_some()) + 5 * usize::from(dts.is_some()) };
            prop_assert_eq!(PesHeader::parse(&h.encode()).unwrap(), h);
        }
    }
}
