//! Ports, a UDP sink and a UDP source for peers' plain-UDP sides.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;

/// A UDP port on 127.0.0.1 that was free a moment ago, for a peer program to bind.
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a UDP port on 127.0.0.1")
        .port()
}

/// A UDP socket on 127.0.0.1 for a peer's output, with room for a few seconds of a test
/// stream (a 4 MiB receive buffer, as far as net.core.rmem_max allows): a test process that
/// is not scheduled for a while must not lose what the peer delivered meanwhile.
pub fn udp_sink() -> tokio::net::UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("UDP socket");
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind a UDP sink on 127.0.0.1");
    socket.set_nonblocking(true).expect("non-blocking");
    tokio::net::UdpSocket::from_std(socket.into()).expect("in a tokio runtime")
}

/// Receives on `sink` until `count` datagrams that `keep` accepts have come, or nothing has
/// come for `idle`; returns the kept ones in arrival order.
pub async fn collect_udp(
    sink: &tokio::net::UdpSocket,
    count: usize,
    idle: Duration,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(idle, sink.recv(&mut buf)).await {
            Ok(Ok(n)) if keep(&buf[..n]) => got.push(buf[..n].to_vec()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("UDP sink: {e}"),
            Err(_) => break,
        }
    }
    got
}

/// Datagrams the kernel dropped at the UDP socket bound to `port` (on any IPv4 address)
/// because its receive buffer was full, from `/proc/net/udp`; `None` if no such socket.
/// Tells a packet the test's own sink (or a peer's input) lost from one the protocol lost.
pub fn udp_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let port = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1)?.ends_with(&port) {
            fields.last()?.parse().ok()
        } else {
            None
        }
    })
}

/// Sends one datagram to a target every period until dropped: keeps a peer's input busy, e.g.
/// so that `srt-live-transmit` connects its output (it does once its input has data).
#[derive(Debug)]
pub struct Feeding(tokio::task::JoinHandle<()>);

impl Feeding {
    /// Sends `datagram(i)` to `target` every `every`, for i = 0, 1, ... up to `limit`
    /// datagrams. Must be called in a tokio runtime.
    pub fn start(
        target: SocketAddr,
        every: Duration,
        limit: u32,
        datagram: impl Fn(u32) -> Bytes + Send + 'static,
    ) -> Feeding {
        Feeding(tokio::spawn(async move {
            let source = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind a UDP source");
            for i in 0..limit {
                // A peer not listening yet refuses (ICMP): keep going.
                let _ = source.send_to(&datagram(i), target).await;
                tokio::time::sleep(every).await;
            }
        }))
    }
}

impl Drop for Feeding {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feeding_reaches_the_sink_until_dropped() {
        let sink = udp_sink();
        let feeding = Feeding::start(
            sink.local_addr().unwrap(),
            Duration::from_millis(1),
            u32::MAX,
            crate::payload,
        );
        let got = collect_udp(&sink, 3, Duration::from_secs(5), |d| d.len() == 1316).await;
        let ids: Vec<_> = got.iter().filter_map(|d| crate::payload_id(d)).collect();
        assert_eq!(ids, [0, 1, 2]);
        drop(feeding);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rest = collect_udp(&sink, usize::MAX, Duration::from_millis(100), |_| true).await;
        assert!(rest.len() < 20, "still feeding: {}", rest.len());
    }

    #[test]
    fn drops_of_a_full_socket_are_counted() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sink.local_addr().unwrap().port();
        assert_eq!(udp_drops(port), Some(0));
        let source = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Far more than any default receive buffer holds, never read.
        for _ in 0..20_000 {
            let _ = source.send_to(&[0u8; 1316], ("127.0.0.1", port));
        }
        assert!(udp_drops(port).is_some_and(|d| d > 0));
        assert_eq!(udp_drops(free_port()), None);
    }
}
