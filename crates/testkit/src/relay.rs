//! An impaired link for SRT: a UDP relay with delay and seeded loss, and a log of what it did.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What a datagram through the relay was, read from its SRT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayKind {
    Data {
        seq: u32,
        retransmitted: bool,
    },
    Handshake,
    /// A full ACK (`ack_no` > 0, with the receiver's RTT estimate) or a light one.
    Ack {
        ack_no: u32,
        last_ack: u32,
        rtt_us: Option<u32>,
        rtt_var_us: Option<u32>,
    },
    AckAck {
        ack_no: u32,
    },
    /// Loss ranges, first and last sequence number inclusive.
    Nak(Vec<(u32, u32)>),
    /// Any other control packet, by type.
    Control(u16),
    /// Too short for an SRT header.
    Runt,
}

impl RelayKind {
    fn parse(d: &[u8]) -> RelayKind {
        let word = |i: usize| {
            d.get(i..i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        };
        let (Some(w0), Some(w1)) = (word(0), word(4)) else {
            return RelayKind::Runt;
        };
        if w0 & 0x8000_0000 == 0 {
            return RelayKind::Data {
                seq: w0,
                retransmitted: w1 & 0x0400_0000 != 0,
            };
        }
        match (w0 >> 16) & 0x7FFF {
            0 => RelayKind::Handshake,
            2 => RelayKind::Ack {
                ack_no: w1,
                last_ack: word(16).unwrap_or(0) & 0x7FFF_FFFF,
                rtt_us: word(20),
                rtt_var_us: word(24),
            },
            3 => {
                let mut ranges = Vec::new();
                let mut i = 16;
                while let Some(w) = word(i) {
                    i += 4;
                    if w & 0x8000_0000 != 0 {
                        let last = word(i).unwrap_or(w) & 0x7FFF_FFFF;
                        i += 4;
                        ranges.push((w & 0x7FFF_FFFF, last));
                    } else {
                        ranges.push((w, w));
                    }
                }
                RelayKind::Nak(ranges)
            }
            6 => RelayKind::AckAck { ack_no: w1 },
            t => RelayKind::Control(t as u16),
        }
    }

    /// A first transmission of a data packet.
    fn is_original_data(&self) -> bool {
        matches!(
            self,
            RelayKind::Data {
                retransmitted: false,
                ..
            }
        )
    }
}

/// One datagram the relay took in.
#[derive(Debug, Clone)]
pub struct RelayEvent {
    /// When it reached the relay, since the relay started.
    pub arrived: Duration,
    /// When the relay sent it on; `None` if dropped (or still delayed).
    pub left: Option<Duration>,
    /// Caller to listener.
    pub forward: bool,
    pub kind: RelayKind,
    /// Bytes after the 16-byte SRT header.
    pub payload_len: usize,
}

/// A UDP relay between one SRT caller and a listener that delays every datagram by a fixed
/// time and drops a seeded-random fraction of the non-handshake ones in both directions.
/// Every datagram is logged ([`LossyRelay::events`]), so a test can count what was dropped and
/// tell, for a packet that never arrived, how its loss reports and repairs fared.
pub struct LossyRelay {
    /// Where callers connect.
    pub addr: SocketAddr,
    delay: Duration,
    log: Arc<Mutex<Vec<RelayEvent>>>,
    dropped_first_tx: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LossyRelay {
    /// Relays from a fresh port on 127.0.0.1 to `target` and back to whoever sent last.
    pub async fn start(target: SocketAddr, delay: Duration, loss: f64, seed: u64) -> LossyRelay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay port"));
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("relay port"));
        let addr = front.local_addr().expect("relay address");
        let start = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let dropped_first_tx = Arc::new(AtomicU64::new(0));
        let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        for forward in [true, false] {
            let (from, to) = if forward {
                (front.clone(), back.clone())
            } else {
                (back.clone(), front.clone())
            };
            let (log_in, log_out) = (log.clone(), log.clone());
            let dropped_first_tx = dropped_first_tx.clone();
            let seen = caller.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ u64::from(forward));
            // A constant delay keeps order, so one FIFO per direction suffices.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, usize, Vec<u8>)>();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, src)) = from.recv_from(&mut buf).await {
                    let arrived = Instant::now();
                    if forward {
                        *lock(&seen) = Some(src);
                    }
                    let kind = RelayKind::parse(&buf[..n]);
                    let drop = kind != RelayKind::Handshake && rng.random_bool(loss);
                    if drop && forward && kind.is_original_data() {
                        dropped_first_tx.fetch_add(1, Ordering::Relaxed);
                    }
                    let index = {
                        let mut log = lock(&log_in);
                        log.push(RelayEvent {
                            arrived: arrived - start,
                            left: None,
                            forward,
                            kind,
                            payload_len: n.saturating_sub(16),
                        });
                        log.len() - 1
                    };
                    if !drop {
                        let _ = tx.send((arrived + delay, index, buf[..n].to_vec()));
                    }
                }
            }));
            let caller = caller.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((at, index, d)) = rx.recv().await {
                    tokio::time::sleep_until(at).await;
                    let dest = if forward {
                        Some(target)
                    } else {
                        *lock(&caller)
                    };
                    if let Some(dest) = dest {
                        let _ = to.send_to(&d, dest).await;
                        lock(&log_out)[index].left = Some(start.elapsed());
                    }
                }
            }));
        }
        LossyRelay {
            addr,
            delay,
            log,
            dropped_first_tx,
            tasks,
        }
    }

    /// First transmissions of data packets from the caller that were dropped: what the
    /// listener's loss counter and the caller's count of reported losses should read.
    pub fn dropped_first_tx(&self) -> u64 {
        self.dropped_first_tx.load(Ordering::Relaxed)
    }

    /// Everything the relay took in so far.
    pub fn events(&self) -> Vec<RelayEvent> {
        lock(&self.log).clone()
    }

    /// The sequence number of the first data packet from the caller with `payload_len` bytes
    /// of payload: where a test's counted stream begins.
    pub fn first_data_seq(&self, payload_len: usize) -> Option<u32> {
        lock(&self.log).iter().find_map(|e| match e.kind {
            RelayKind::Data { seq, .. } if e.forward && e.payload_len == payload_len => Some(seq),
            _ => None,
        })
    }

    /// The story of one data packet: its transmissions and the loss reports naming it, each
    /// as one line (`+1234.5 ms fwd Data { .. } left +1254.6 ms`, or `dropped`), after the RTT estimate
    /// of the receiver's last full ACK before it (what the receiver times its loss reports
    /// by). For a failure message.
    pub fn history(&self, seq: u32) -> String {
        let log = lock(&self.log);
        let concerns = |e: &RelayEvent| match &e.kind {
            RelayKind::Data { seq: s, .. } => *s == seq,
            RelayKind::Nak(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&seq)),
            _ => false,
        };
        let Some(first) = log.iter().position(concerns) else {
            return "  never seen\n".into();
        };
        let mut out = String::new();
        let estimate = log[..first].iter().rev().find_map(|e| match e.kind {
            RelayKind::Ack {
                ack_no: 1..,
                rtt_us: Some(rtt),
                rtt_var_us: Some(var),
                ..
            } => Some((rtt, var)),
            _ => None,
        });
        if let Some((rtt, var)) = estimate {
            out += &format!("  receiver's RTT {rtt} us, RTTVar {var} us\n");
        }
        for e in log[first..].iter().filter(|e| concerns(e)) {
            let ms = |t: Duration| t.as_secs_f64() * 1e3;
            let fate = match e.left {
                Some(t) => format!("left +{:.1} ms", ms(t)),
                None => "dropped".to_owned(),
            };
            let dir = if e.forward { "fwd" } else { "back" };
            out += &format!("  +{:.1} ms {dir} {:?} {fate}\n", ms(e.arrived), e.kind);
        }
        out
    }

    /// The longest a datagram waited in the relay beyond its delay. More than a few
    /// milliseconds means the test process was not scheduled in time (an overloaded machine):
    /// the link then delayed packets more than the test says.
    pub fn worst_lateness(&self) -> Duration {
        lock(&self.log)
            .iter()
            .filter_map(|e| {
                e.left
                    .map(|left| left.saturating_sub(e.arrived + self.delay))
            })
            .max()
            .unwrap_or_default()
    }

    /// For each full ACK the relay passed on, how long its receiver took to answer with the
    /// ACKACK (from the ACK leaving the relay to the ACKACK reaching it): the delay the ACK's
    /// sender adds to its RTT measurement on top of the link's.
    pub fn ackack_delays(&self) -> Vec<Duration> {
        let log = lock(&self.log);
        let mut out = Vec::new();
        for (i, e) in log.iter().enumerate() {
            let (RelayKind::Ack { ack_no, .. }, Some(left)) = (&e.kind, e.left) else {
                continue;
            };
            if *ack_no == 0 {
                continue;
            }
            let answer = log[i..].iter().find(|r| {
                r.forward != e.forward && r.kind == RelayKind::AckAck { ack_no: *ack_no }
            });
            if let Some(r) = answer {
                out.push(r.arrived.saturating_sub(left));
            }
        }
        out
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_headers_are_read() {
        let data = [0, 0, 0, 42, 0x04, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            RelayKind::parse(&data),
            RelayKind::Data {
                seq: 42,
                retransmitted: true
            }
        );
        let mut nak = vec![0x80, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        nak.extend([0x80, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(RelayKind::parse(&nak), RelayKind::Nak(vec![(5, 7), (9, 9)]));
        let ackack = [0x80, 6, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(RelayKind::parse(&ackack), RelayKind::AckAck { ack_no: 3 });
        assert_eq!(RelayKind::parse(&[0x80]), RelayKind::Runt);
    }

    #[tokio::test]
    async fn the_relay_delays_drops_and_logs() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = LossyRelay::start(
            server.local_addr().unwrap(),
            Duration::from_millis(20),
            0.5,
            1,
        )
        .await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sent = Instant::now();
        for i in 0..100u32 {
            let mut d = [0u8; 16];
            d[..4].copy_from_slice(&i.to_be_bytes());
            client.send_to(&d, relay.addr).await.unwrap();
        }
        let mut buf = [0u8; 64];
        let mut got = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(200), server.recv(&mut buf)).await
        {
            if got == 0 {
                assert!(sent.elapsed() >= Duration::from_millis(20));
            }
            got += 1;
        }
        let dropped = relay.dropped_first_tx();
        assert_eq!(got + dropped, 100);
        assert!((20..80).contains(&dropped), "dropped {dropped} of 100");
        assert_eq!(relay.first_data_seq(0), Some(0));
        let events = relay.events();
        assert_eq!(events.len(), 100);
        let lost = events.iter().find(|e| e.left.is_none()).unwrap();
        let RelayKind::Data { seq, .. } = lost.kind else {
            panic!("{lost:?}")
        };
        assert!(relay.history(seq).contains("dropped"));
        assert!(relay.worst_lateness() < Duration::from_millis(100));
    }
}
