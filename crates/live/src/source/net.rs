//! MPEG-TS over UDP and RTP sources, unicast or multicast.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use stadion_mpegts::{TS_PACKET_SIZE, TsAlignment};
use tokio::net::UdpSocket;

use super::{Input, SourceEvent, SourceTx};

/// Room for one datagram: a jumbo frame, far more than 7 TS packets and an RTP header need.
const DATAGRAM_ROOM: usize = 9216;

/// How the payload of one datagram is read, or why it is refused.
fn read_datagram(datagram: &[u8], rtp_only: bool) -> Result<(usize, usize, bool), String> {
    match TsAlignment::check(datagram).map_err(|e| e.to_string())? {
        TsAlignment::Plain { .. } if rtp_only => Err(format!(
            "bare MPEG-TS datagram of {} bytes on an RTP source (merge needs RTP sequence numbers)",
            datagram.len()
        )),
        TsAlignment::Plain { packets } => Ok((0, packets * TS_PACKET_SIZE, false)),
        TsAlignment::Rtp {
            header_len,
            packets,
            ..
        } => Ok((header_len, header_len + packets * TS_PACKET_SIZE, true)),
    }
}

/// Receives datagrams until the flow stops. `rtp_only`: the source is of kind `rtp`.
pub(crate) async fn run(socket: UdpSocket, rtp_only: bool, tx: SourceTx) {
    let local = socket.local_addr().ok();
    if !tx.event(SourceEvent::Up { peer: None }).await {
        return;
    }
    let mut buf = BytesMut::with_capacity(64 * DATAGRAM_ROOM);
    // Set while this source is refused; cleared by the next good datagram.
    let mut refused = false;
    loop {
        buf.reserve(DATAGRAM_ROOM);
        let from: SocketAddr = match socket.recv_buf_from(&mut buf).await {
            Ok((_, from)) => from,
            Err(e) => {
                tracing::warn!(?local, error = %e, "UDP source receive failed");
                let reason = format!("receive failed: {e}");
                if !tx.event(SourceEvent::Failed { reason }).await {
                    return;
                }
                buf.clear();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let arrival = Instant::now();
        let datagram = buf.split().freeze();
        match read_datagram(&datagram, rtp_only) {
            Ok((start, end, is_rtp)) => {
                refused = false;
                let input = Input {
                    arrival,
                    ts: datagram.slice(start..end),
                    rtp: is_rtp.then_some(datagram),
                };
                if !tx.data(input) {
                    return;
                }
            }
            Err(problem) => {
                tx.counters.refused();
                if !refused {
                    refused = true;
                    let reason =
                        format!("datagram from {from} is not 188-byte-aligned MPEG-TS: {problem}");
                    tracing::warn!(?local, %reason, "UDP source refused");
                    if !tx.event(SourceEvent::Refused { reason }).await {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stadion_mpegts::RtpHeader;

    fn ts(n: usize) -> Vec<u8> {
        let mut v = vec![0xFF; n * 188];
        for p in v.chunks_mut(188) {
            p[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
        }
        v
    }

    #[test]
    fn bare_and_rtp_datagrams() {
        assert_eq!(read_datagram(&ts(7), false), Ok((0, 1316, false)));
        let rtp = RtpHeader {
            payload_type: 33,
            sequence: 1,
            timestamp: 0,
            ssrc: 7,
            ..RtpHeader::default()
        }
        .encode(&ts(7), 0)
        .unwrap();
        assert_eq!(read_datagram(&rtp, false), Ok((12, 1328, true)));
        assert_eq!(read_datagram(&rtp, true), Ok((12, 1328, true)));
        let e = read_datagram(&ts(7), true).unwrap_err();
        assert!(e.contains("bare MPEG-TS"), "{e}");
        let e = read_datagram(&[0x47; 1000], false).unwrap_err();
        assert!(e.contains("1000 bytes"), "{e}");
    }
}
