//! Is this datagram MPEG-TS? The live plane refuses sources that carry anything else.

use thiserror::Error;

use crate::packet::{SYNC_BYTE, TS_PACKET_SIZE};
use crate::rtp::RtpPacket;

/// Most TS packets one datagram carries (7 × 188 = 1316 bytes fits a 1500-byte MTU).
pub const MAX_PACKETS_PER_DATAGRAM: usize = 7;

/// How a datagram carries whole TS packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsAlignment {
    /// Bare TS: `packets` packets from byte 0.
    Plain { packets: usize },
    /// TS after an RTP header of `header_len` bytes (12 plus CSRCs and extension);
    /// `packets` packets follow, then `padding` bytes of RTP padding.
    Rtp {
        header_len: usize,
        packets: usize,
        padding: usize,
        sequence: u16,
        payload_type: u8,
    },
}

/// Why a datagram is not 188-byte-aligned MPEG-TS.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlignmentError {
    #[error("empty datagram")]
    Empty,
    #[error(
        "{len} bytes is neither n×188 (bare TS) nor an RTP header plus n×188 \
         (first byte {first:#04x}{rtp})"
    )]
    Length {
        len: usize,
        first: u8,
        /// What an RTP reading of the datagram found, for the message.
        rtp: String,
    },
    #[error(
        "byte {offset} (start of TS packet {index}) is {found:#04x}, expected sync byte 0x47{after_rtp}"
    )]
    SyncByte {
        offset: usize,
        index: usize,
        found: u8,
        after_rtp: &'static str,
    },
    #[error("{packets} TS packets in one datagram, at most {MAX_PACKETS_PER_DATAGRAM} expected")]
    TooManyPackets { packets: usize },
}

impl TsAlignment {
    /// Checks one datagram (or SRT payload): 1..=7 whole TS packets with a sync byte every
    /// 188 bytes, bare or after an RTP header.
    pub fn check(datagram: &[u8]) -> Result<Self, AlignmentError> {
        let first = *datagram.first().ok_or(AlignmentError::Empty)?;
        if first == SYNC_BYTE && datagram.len().is_multiple_of(TS_PACKET_SIZE) {
            let packets = datagram.len() / TS_PACKET_SIZE;
            check_sync(datagram, 0, "")?;
            return check_count(packets).map(|packets| Self::Plain { packets });
        }
        // Not bare TS: try RTP (version 2 in the top bits), then say what was found.
        let rtp = match RtpPacket::parse(datagram) {
            Ok(rtp) => rtp,
            Err(e) => {
                return Err(AlignmentError::Length {
                    len: datagram.len(),
                    first,
                    rtp: format!(", not RTP either: {e}"),
                });
            }
        };
        let header_len = rtp.header_len();
        if rtp.payload.is_empty() || !rtp.payload.len().is_multiple_of(TS_PACKET_SIZE) {
            if first == SYNC_BYTE {
                // Most likely bare TS with a partial packet: report the byte count.
                return Err(AlignmentError::Length {
                    len: datagram.len(),
                    first,
                    rtp: String::new(),
                });
            }
            return Err(AlignmentError::Length {
                len: datagram.len(),
                first,
                rtp: format!(
                    ", read as RTP payload type {} its {}-byte payload after a {header_len}-byte \
                     header is not n×188",
                    rtp.payload_type,
                    rtp.payload.len()
                ),
            });
        }
        check_sync(rtp.payload, header_len, " after the RTP header")?;
        let packets = check_count(rtp.payload.len() / TS_PACKET_SIZE)?;
        Ok(Self::Rtp {
            header_len,
            packets,
            padding: rtp.padding,
            sequence: rtp.sequence,
            payload_type: rtp.payload_type,
        })
    }

    /// Checks a run of bare TS packets of any length (a chunk of a stream already known to
    /// be aligned, such as an SRT payload): the number of packets.
    pub fn check_packets(chunk: &[u8]) -> Result<usize, AlignmentError> {
        let first = *chunk.first().ok_or(AlignmentError::Empty)?;
        if !chunk.len().is_multiple_of(TS_PACKET_SIZE) {
            return Err(AlignmentError::Length {
                len: chunk.len(),
                first,
                rtp: String::new(),
            });
        }
        check_sync(chunk, 0, "")?;
        Ok(chunk.len() / TS_PACKET_SIZE)
    }

    /// The TS packets of a datagram this alignment was found for.
    pub fn ts_bytes<'a>(&self, datagram: &'a [u8]) -> &'a [u8] {
        match *self {
            Self::Plain { .. } => datagram,
            Self::Rtp {
                header_len,
                packets,
                ..
            } => &datagram[header_len..header_len + packets * TS_PACKET_SIZE],
        }
    }
}

fn check_sync(ts: &[u8], base: usize, after_rtp: &'static str) -> Result<(), AlignmentError> {
    for (index, packet) in ts.chunks_exact(TS_PACKET_SIZE).enumerate() {
        if packet[0] != SYNC_BYTE {
            return Err(AlignmentError::SyncByte {
                offset: base + index * TS_PACKET_SIZE,
                index,
                found: packet[0],
                after_rtp,
            });
        }
    }
    Ok(())
}

fn check_count(packets: usize) -> Result<usize, AlignmentError> {
    if packets > MAX_PACKETS_PER_DATAGRAM {
        return Err(AlignmentError::TooManyPackets { packets });
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PT_MP2T, RtpHeader};
    use proptest::prelude::*;

    fn ts(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * 188];
        for p in v.chunks_mut(188) {
            p[0] = 0x47;
        }
        v
    }

    #[test]
    fn accepts_bare_and_rtp() {
        assert_eq!(
            TsAlignment::check(&ts(7)),
            Ok(TsAlignment::Plain { packets: 7 })
        );
        let rtp = RtpHeader {
            payload_type: PT_MP2T,
            sequence: 9,
            ..RtpHeader::default()
        }
        .encode(&ts(7), 0)
        .unwrap();
        let a = TsAlignment::check(&rtp).unwrap();
        assert_eq!(
            a,
            TsAlignment::Rtp {
                header_len: 12,
                packets: 7,
                padding: 0,
                sequence: 9,
                payload_type: 33
            }
        );
        assert_eq!(a.ts_bytes(&rtp), &ts(7)[..]);
    }

    #[test]
    fn refuses_with_what_and_where() {
        let mut d = ts(3);
        d[376] = 0x12;
        let e = TsAlignment::check(&d).unwrap_err();
        assert_eq!(
            e,
            AlignmentError::SyncByte {
                offset: 376,
                index: 2,
                found: 0x12,
                after_rtp: ""
            }
        );
        assert_eq!(
            e.to_string(),
            "byte 376 (start of TS packet 2) is 0x12, expected sync byte 0x47"
        );
        assert_eq!(
            TsAlignment::check(&ts(8)),
            Err(AlignmentError::TooManyPackets { packets: 8 })
        );
        // An H.264 RTP stream (PT 96, 1200-byte payload) is not TS.
        let h264 = RtpHeader {
            payload_type: 96,
            ..RtpHeader::default()
        }
        .encode(&[0x5C; 1200], 0)
        .unwrap();
        let msg = TsAlignment::check(&h264).unwrap_err().to_string();
        assert!(msg.contains("payload type 96"), "{msg}");
        assert!(msg.contains("1200-byte payload"), "{msg}");
        let text = b"GET / HTTP/1.1\r\n\r\n";
        let msg = TsAlignment::check(text).unwrap_err().to_string();
        assert!(msg.contains("first byte 0x47"), "{msg}"); // 'G' is 0x47 too
        assert!(TsAlignment::check(&ts(1)[..187]).is_err());
        assert_eq!(TsAlignment::check(&[]), Err(AlignmentError::Empty));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(a) = TsAlignment::check(&bytes) {
                let ts = a.ts_bytes(&bytes);
                prop_assert!(ts.len() % 188 == 0 && !ts.is_empty());
                prop_assert!(ts.chunks(188).all(|p| p[0] == 0x47));
            }
        }
    }
}
