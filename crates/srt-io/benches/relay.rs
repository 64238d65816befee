//! A 1-to-1 SRT relay on loopback, stadion and libsrt's `srt-live-transmit` in the same run:
//! UDP source -> sender (UDP in, SRT caller out) -> receiver (SRT listener in, UDP out) -> sink.
//! Both implementations run as separate processes doing the same job; this binary re-executes
//! itself as `relay transmit <in> <out>` for stadion's side. Measured: CPU seconds (user+system,
//! from each thread's run time) of sender and receiver per GB of payload delivered, also as a
//! multiple of libsrt's in the same rate's row, delivery latency (source send to sink receive,
//! including the 120 ms SRT latency) and packets lost.
//!
//! `cargo bench -p stadion-srt-io --bench relay -- [seconds] [Mb/s ...]` (default: 10 s at 20,
//! 100 and 300 Mb/s).

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stadion_srt::{AcceptDecision, ConnectRequest, ConnectionConfig, ListenerConfig};
use stadion_srt_io::{SrtListener, batch};

const PAYLOAD: usize = 1316;
const WARMUP: u64 = u64::MAX;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("transmit") {
        return transmit(&args[1], &args[2]);
    }
    let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut rates: Vec<u64> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if rates.is_empty() {
        rates = vec![20, 100, 300];
    }
    println!(
        "| implementation | Mb/s | packets sent | lost | CPU s (snd+rcv) | CPU s per GB | vs libsrt | latency p50 | p99 | p99.9 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &rate in &rates {
        let mut libsrt_per_gb = f64::NAN;
        for imp in [Impl::Libsrt, Impl::Stadion] {
            let r = run(imp, rate, secs);
            let per_gb = r.cpu_s / (r.bytes as f64 / 1e9);
            if let Impl::Libsrt = imp {
                libsrt_per_gb = per_gb;
            }
            println!(
                "| {} | {rate} | {} | {} | {:.3} | {:.2} | {:.2}x | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
                imp.name(),
                r.sent,
                r.sent - r.delivered,
                r.cpu_s,
                per_gb,
                per_gb / libsrt_per_gb,
                r.pct(0.5),
                r.pct(0.99),
                r.pct(0.999),
                r.pct(1.0),
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Impl {
    Libsrt,
    Stadion,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Libsrt => "srt-live-transmit (libsrt 1.5)",
            Impl::Stadion => "stadion-srt",
        }
    }

    fn spawn(self, input: &str, output: &str) -> Child {
        let mut cmd = match self {
            Impl::Libsrt => {
                let mut c = Command::new("srt-live-transmit");
                c.arg("-a:no").arg("-q");
                c
            }
            Impl::Stadion => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.arg("transmit");
                c
            }
        };
        cmd.arg(input)
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start transmitter (is srt-live-transmit installed?)")
    }
}

struct Outcome {
    sent: u64,
    delivered: u64,
    bytes: u64,
    cpu_s: f64,
    latencies_us: Vec<u64>,
}

impl Outcome {
    fn pct(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1e3
    }
}

/// A socket with a receive buffer for bursts of a few milliseconds at 300 Mb/s (the kernel
/// caps it at net.core.rmem_max), as the drivers' sockets have.
fn roomy(socket: UdpSocket) -> UdpSocket {
    let socket = socket2::Socket::from(socket);
    let _ = socket.set_recv_buffer_size(16 << 20);
    socket.into()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// CPU seconds (user plus system) the threads of a process have used so far, to the
/// nanosecond: the sum of each thread's run time in `/proc/<pid>/task/*/schedstat`. (The
/// utime and stime of `/proc/<pid>/stat` count 10 ms clock ticks, up to a tenth of what one
/// process uses over a 10 s row at 20 Mb/s.) Every thread of both transmitters exists from
/// the end of the warm-up to the end of the row, so none is left out of the difference.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

fn run(imp: Impl, rate_mbps: u64, secs: u64) -> Outcome {
    let (in_port, srt_port) = (free_port(), free_port());
    let sink = roomy(UdpSocket::bind("127.0.0.1:0").unwrap());
    sink.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let mut receiver = imp.spawn(
        &format!("srt://:{srt_port}?mode=listener&latency=120"),
        &format!("udp://127.0.0.1:{sink_port}"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut sender = imp.spawn(
        &format!("udp://:{in_port}"),
        &format!("srt://127.0.0.1:{srt_port}?latency=120"),
    );
    let source = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target: SocketAddr = ([127, 0, 0, 1], in_port).into();
    let mut buf = vec![0u8; PAYLOAD];
    // Warm up until packets come through (srt-live-transmit connects on first input).
    buf[..8].copy_from_slice(&WARMUP.to_be_bytes());
    let mut rbuf = vec![0u8; 2048];
    sink.set_nonblocking(true).unwrap();
    let warm_deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = 0;
    while seen < 20 && Instant::now() < warm_deadline {
        let _ = source.send_to(&buf, target);
        std::thread::sleep(Duration::from_millis(10));
        while sink.recv(&mut rbuf).is_ok() {
            seen += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while sink.recv(&mut rbuf).is_ok() {}
    sink.set_nonblocking(false).unwrap();
    let cpu0 = cpu_seconds(sender.id()) + cpu_seconds(receiver.id());

    let done = Arc::new(AtomicBool::new(false));
    let sink_done = done.clone();
    let collector = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut bytes = 0u64;
        let mut rbuf = vec![0u8; 2048];
        loop {
            match sink.recv(&mut rbuf) {
                Ok(n) if n >= 16 => {
                    let at = now_ns();
                    let seq = u64::from_be_bytes(rbuf[..8].try_into().unwrap());
                    if seq == WARMUP {
                        continue;
                    }
                    let sent = u64::from_be_bytes(rbuf[8..16].try_into().unwrap());
                    latencies.push(at.saturating_sub(sent) / 1000);
                    bytes += n as u64;
                }
                Ok(_) => {}
                Err(_) if sink_done.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        }
        (latencies, bytes)
    });

    let pps = rate_mbps as f64 * 1e6 / 8.0 / PAYLOAD as f64;
    let start = Instant::now();
    let total = (pps * secs as f64) as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * pps) as u64).min(total);
        while sent < due {
            buf[..8].copy_from_slice(&sent.to_be_bytes());
            buf[8..16].copy_from_slice(&now_ns().to_be_bytes());
            let _ = source.send_to(&buf, target);
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Let the latency window drain.
    std::thread::sleep(Duration::from_millis(800));
    let cpu_s = cpu_seconds(sender.id()) + cpu_seconds(receiver.id()) - cpu0;
    done.store(true, Ordering::Relaxed);
    let (mut latencies_us, bytes) = collector.join().unwrap();
    let _ = sender.kill();
    let _ = receiver.kill();
    let _ = sender.wait();
    let _ = receiver.wait();
    latencies_us.sort_unstable();
    Outcome {
        sent,
        delivered: latencies_us.len() as u64,
        bytes,
        cpu_s,
        latencies_us,
    }
}

/// stadion's srt-live-transmit equivalent: `udp://:port` to `srt://host:port` (caller), or
/// `srt://:port` (listener) to `udp://host:port`.
fn transmit(input: &str, output: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    let (input, output) = (input.to_owned(), output.to_owned());
    // Run as a spawned task: waking `block_on`'s own future costs an eventfd write per wake.
    let job = rt.spawn(async move {
        if let Some(port) = input.strip_prefix("udp://:") {
            let addr = output
                .strip_prefix("srt://")
                .and_then(|a| a.split('?').next())
                .expect("srt://host:port");
            udp_to_srt(port.parse().unwrap(), addr.parse().unwrap()).await;
        } else {
            let port = input
                .strip_prefix("srt://:")
                .and_then(|a| a.split('?').next())
                .expect("srt://:port");
            let sink = output.strip_prefix("udp://").expect("udp://host:port");
            srt_to_udp(port.parse().unwrap(), sink.parse().unwrap()).await;
        }
    });
    rt.block_on(job).unwrap();
}

async fn udp_to_srt(port: u16, peer: SocketAddr) {
    let mut input = Some(roomy(UdpSocket::bind(("0.0.0.0", port)).unwrap()));
    input.as_ref().unwrap().set_nonblocking(true).unwrap();
    batch::enable_timestamps(input.as_ref().unwrap()).unwrap();
    let conn = stadion_srt_io::connect(peer, ConnectionConfig::default())
        .await
        .expect("connect");
    let mut mem = batch::RecvBuffer::default();
    let mut got = Vec::with_capacity(batch::BATCH);
    loop {
        // Idle: wait for input with the socket in tokio's reactor.
        let registered = tokio::net::UdpSocket::from_std(input.take().unwrap()).unwrap();
        registered.readable().await.unwrap();
        input = Some(registered.into_std().unwrap());
        let socket = input.as_ref().unwrap();
        // Busy: out of the reactor (each datagram would wake the thread), the input is read
        // once per tick of the drivers' grid, together with their own work, until it has been
        // quiet for a few ticks.
        let mut quiet = 0;
        while quiet < 4 {
            let woke = tokio::time::Instant::now();
            quiet += 1;
            loop {
                match batch::recv_batch(socket, &mut mem, &mut got) {
                    Ok(n) => {
                        quiet = 0;
                        // Stamped with their arrival: reading them a tick late costs no latency.
                        for d in got.drain(..) {
                            if conn.send_at(d.data, d.arrived).is_err() {
                                return;
                            }
                        }
                        if n < batch::BATCH {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("udp input: {e}"),
                }
            }
            tokio::time::sleep_until(stadion_srt_io::next_tick(woke)).await;
        }
    }
}

async fn srt_to_udp(port: u16, sink: SocketAddr) {
    let mut listener = SrtListener::bind(
        ([0, 0, 0, 0], port).into(),
        ListenerConfig::default(),
        |_: &ConnectRequest<'_>| AcceptDecision::Accept {
            passphrase: None,
            latency: None,
        },
    )
    .await
    .unwrap();
    // Outside tokio's reactor: a registered socket reports itself writable again after each
    // send (the kernel frees the sent datagrams), which cost one more epoll_wait per tick. It
    // goes in only to wait while the kernel's buffer is full.
    let mut out = UdpSocket::bind("0.0.0.0:0").unwrap();
    out.set_nonblocking(true).unwrap();
    let mut gso = true;
    let mut payloads = Vec::with_capacity(batch::BATCH);
    let mut datagrams: Vec<(SocketAddr, bytes::Bytes)> = Vec::with_capacity(batch::BATCH);
    while let Some(mut conn) = listener.accept().await {
        // What one driver tick delivered leaves in one sendmmsg (one GSO send where it can).
        while conn.recv_many(&mut payloads, batch::BATCH).await > 0 {
            datagrams.extend(payloads.drain(..).map(|p| (sink, p)));
            while !datagrams.is_empty() {
                match batch::send_batch(&out, &datagrams, &mut gso) {
                    Ok(n) => drop(datagrams.drain(..n.max(1))),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let registered = tokio::net::UdpSocket::from_std(out).unwrap();
                        registered.writable().await.unwrap();
                        out = registered.into_std().unwrap();
                    }
                    Err(_) => datagrams.clear(),
                }
            }
        }
    }
}
