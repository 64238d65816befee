//! Fan-out benchmark: one flow to N encrypted SRT receivers from a stadion node, side by side
//! in the same run with N `srt-live-transmit` relays (libsrt) carrying the same feed, then how
//! many 2 Mb/s receivers one node holds before loss appears.
//!
//! ```sh
//! cargo bench -p stadion-live --bench fanout
//! STADION_BENCH_RECEIVERS=50 STADION_BENCH_MBPS=20 STADION_BENCH_SECS=10 cargo bench -p stadion-live --bench fanout
//! # capacity steps only, with a per-second trace on stderr
//! STADION_BENCH_RECEIVERS=0 STADION_BENCH_CAPACITY=500,1000 STADION_BENCH_TRACE=1 cargo bench -p stadion-live --bench fanout
//! ```
//!
//! Knobs: `STADION_BENCH_RECEIVERS` (50; 0 skips the side-by-side run), `STADION_BENCH_MBPS`
//! (20), `STADION_BENCH_SECS` (10), `STADION_BENCH_CAPACITY` (receivers per capacity step,
//! comma-separated; empty skips them), `STADION_BENCH_CAPACITY_SECS` (5),
//! `STADION_BENCH_CONNECTING` (handshakes at once, 16), `STADION_BENCH_TRACE`
//! (set: connected receivers, deliveries and CPU each second on stderr).
//!
//! The node runs in a child process of its own (this binary with `--node-child`), with the
//! real control plane on SQLite, so its CPU time and memory are read from `/proc` exactly as
//! the relays' are. The source and the receivers (stadion's own SRT callers, AES-128, 120 ms
//! latency) run in this process and are the same for both sides. Each payload carries its
//! sequence number and send time: a receiver counts what never arrived (loss) and how long
//! after sending it was delivered, less the SRT latency (the node- or relay-added latency).
//! Through the node, the node child's UDP reader also stamps each payload's arrival (on the
//! monotonic clock, which both processes share), and receivers measure from there to their
//! delivery: the node's path (bus, output loop, the srt-io driver's encryption and its send at
//! the next tick), loopback, the receiver's driver (read at its tick, decryption), the wait for
//! play time (120 ms SRT latency from the node's SRT timestamp) and the receiver's delivery
//! within half a 4 ms tick of it.
//! All receivers connect before the feed starts; loss is counted against every payload the
//! source sent in the measured window, for every receiver, so one that never connected or
//! stopped early counts what it missed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stadion_srt::ConnectionConfig;
use tokio::sync::{Semaphore, watch};

const PASSPHRASE: &str = "bench-licence-passphrase";
const FLOW: &str = "bench";
const RHB: &str = "rhb-bench";
const PAYLOAD: usize = 1316;
const LATENCY: Duration = Duration::from_millis(120);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--node-child") {
        node_child();
        return;
    }
    let receivers = env_or("STADION_BENCH_RECEIVERS", 50) as usize;
    let mbps = env_or("STADION_BENCH_MBPS", 20);
    let secs = env_or("STADION_BENCH_SECS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-receivers")
        .build()
        .unwrap();
    if receivers > 0 {
        side_by_side(&runtime, receivers, mbps, secs);
    }
    let steps = std::env::var("STADION_BENCH_CAPACITY")
        .unwrap_or_else(|_| "100,300,500,900,1000,1200".into());
    let steps: Vec<usize> = steps
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    if !steps.is_empty() {
        capacity(&runtime, &steps, env_or("STADION_BENCH_CAPACITY_SECS", 5));
    }
}

fn side_by_side(runtime: &tokio::runtime::Runtime, receivers: usize, mbps: u64, secs: u64) {
    println!(
        "# one {mbps} Mb/s flow to {receivers} AES-128 SRT receivers, {secs} s measured, {} cores\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ours = runtime.block_on(run_stadion(receivers, mbps, secs));
    let theirs = runtime.block_on(run_relays(receivers, mbps, secs));
    println!("| | stadion node | {receivers} srt-live-transmit relays |");
    println!("|---|---|---|");
    for (label, a, b) in [
        (
            "receivers connected",
            ours.connected.to_string(),
            theirs.connected.to_string(),
        ),
        (
            "payloads lost (all receivers)",
            format!("{} of {}", ours.lost, ours.sent * receivers as u64),
            format!("{} of {}", theirs.lost, theirs.sent * receivers as u64),
        ),
        (
            "CPU, cores",
            format!("{:.3}", ours.cores),
            format!("{:.3}", theirs.cores),
        ),
        (
            "CPU per receiver, % of a core",
            format!("{:.3}", ours.cores * 100.0 / receivers as f64),
            format!("{:.3}", theirs.cores * 100.0 / receivers as f64),
        ),
        (
            "memory per receiver, KiB (PSS)",
            format!("{:.0}", ours.pss_per_receiver_kib),
            format!("{:.0}", theirs.pss_per_receiver_kib),
        ),
        (
            "added latency p50, ms",
            format!("{:.2}", ours.p50_ms),
            format!("{:.2}", theirs.p50_ms),
        ),
        (
            "added latency p99, ms",
            format!("{:.2}", ours.p99_ms),
            format!("{:.2}", theirs.p99_ms),
        ),
        (
            "arrival at the node to delivery (SRT latency 120 ms included) p50 / p99 / max, ms",
            ours.from_node_ms.map_or("-".into(), |[p50, p99, max]| {
                format!("{p50:.2} / {p99:.2} / {max:.2}")
            }),
            "-".into(),
        ),
        (
            "node-added latency p50 / p99 at the node, ms",
            ours.node_delay_ms
                .map_or("-".into(), |(p50, p99)| format!("{p50:.3} / {p99:.3}")),
            "-".into(),
        ),
    ] {
        println!("| {label} | {a} | {b} |");
    }
    println!();
}

/// One 2 Mb/s flow to each number of receivers in `steps`: loss, CPU and memory of the node,
/// and the CPU of this process (source and receivers), which shares the machine with it.
fn capacity(runtime: &tokio::runtime::Runtime, steps: &[usize], secs: u64) {
    println!("# capacity: 2 Mb/s receivers on one node, {secs} s measured per step");
    println!(
        "| receivers | connected (s to connect) | lost of due | node cores | node KiB per receiver | bench cores (source + receivers) | arrival at the node to delivery p99, ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in steps {
        let r = runtime.block_on(run_stadion(n, 2, secs));
        let early = if r.ended_early > 0 {
            format!(", {} closed early", r.ended_early)
        } else {
            String::new()
        };
        println!(
            "| {n} | {} ({:.1}){early} | {} of {} | {:.3} | {:.0} | {:.3} | {:.2} |",
            r.connected,
            r.connect_secs,
            r.lost,
            r.sent * n as u64,
            r.cores,
            r.pss_per_receiver_kib,
            r.bench_cores,
            r.from_node_ms.map_or(f64::NAN, |[_, p99, _]| p99),
        );
    }
}

/// What one side measured.
struct Outcome {
    /// Payloads the source sent in the measured window, each due at every receiver.
    sent: u64,
    /// Payloads of the window that a receiver never got, summed over the receivers.
    lost: u64,
    connected: usize,
    /// Receivers whose connection closed before the end.
    ended_early: usize,
    /// Seconds from the first receiver's call to the last one's connection.
    connect_secs: f64,
    /// CPU of the node (or the relays).
    cores: f64,
    /// CPU of the bench process: the source and all receivers.
    bench_cores: f64,
    pss_per_receiver_kib: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// From arrival at the node (stamped by the node child's UDP reader) to delivery at the
    /// receivers, SRT latency included: p50, p99 and maximum in ms; only through a node.
    from_node_ms: Option<[f64; 3]>,
    /// The node's own measure of its added latency (arrival to send queue), p50 and p99 in ms;
    /// only the stadion node has one.
    node_delay_ms: Option<(f64, f64)>,
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / hz
}

/// Proportional set size in KiB: shared pages count once over the processes sharing them.
fn pss_kib(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// Now on the system's monotonic clock, the same in every process (unlike `Instant`, which
/// cannot leave its process), in nanoseconds.
fn mono_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What the bench writes into each payload (the rest is 0x47 filler): its number (bytes
/// 1..9), when the source sent it (9..17) and, on the node side, when it reached the node
/// (17..25, 0 until the node child's UDP reader stamps it).
struct Stamps {
    number: u64,
    sent: u64,
    at_node: Option<u64>,
}

impl Stamps {
    fn read(p: &[u8]) -> Option<Stamps> {
        let field = |i: usize| Some(u64::from_be_bytes(p.get(i..i + 8)?.try_into().ok()?));
        let at_node = field(17)?;
        Some(Stamps {
            number: field(1)?,
            sent: field(9)?,
            at_node: (at_node != 0).then_some(at_node),
        })
    }
}

/// Sends the numbered, time-stamped feed to every address in `to` at `mbps` until `stop`;
/// `sent` is the number the next payload will carry.
fn source(to: Vec<SocketAddr>, mbps: u64, sent: &AtomicU64, stop: &AtomicBool) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let per_sec = (mbps * 1_000_000 / (PAYLOAD as u64 * 8)) as f64;
    let start = Instant::now();
    let mut seq = 0u64;
    let mut buf = [0x47u8; PAYLOAD];
    buf[17..25].fill(0);
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        while seq < due {
            buf[1..9].copy_from_slice(&seq.to_be_bytes());
            buf[9..17].copy_from_slice(&mono_ns().to_be_bytes());
            for addr in &to {
                let _ = socket.send_to(&buf, addr);
            }
            seq += 1;
            sent.store(seq, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// What one receiver saw: numbers received, added delays (delivery less sending less the SRT
/// latency) and, through a node, times from arrival at the node to delivery, in microseconds.
#[derive(Default)]
struct Seen {
    numbers: Vec<u64>,
    delays_us: Vec<u32>,
    /// 0 where the payload carries no node stamp (through a relay).
    from_node_us: Vec<u32>,
    /// Its connection closed before the bench stopped it.
    ended_early: bool,
}

/// How the receivers' connects went, counted as they happen.
#[derive(Default)]
struct Tally {
    connected: AtomicUsize,
    failed: AtomicUsize,
    /// Each distinct connect error, or reason a connection ended early, and how often.
    errors: Mutex<BTreeMap<String, usize>>,
    /// The receivers' own SRT counters at the end: gaps seen, packets dropped too late to
    /// play, retransmissions that came after their packet was played.
    srt_lost: AtomicU64,
    srt_too_late: AtomicU64,
    srt_belated: AtomicU64,
}

impl Tally {
    fn note(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// Handshakes the bench runs at once (`STADION_BENCH_CONNECTING`, 16): all receivers of a
/// step calling in the same millisecond tests the accept path, not the steady state.
fn connecting() -> usize {
    env_or("STADION_BENCH_CONNECTING", 16).max(1) as usize
}

async fn receive(
    addr: SocketAddr,
    stream_id: Option<String>,
    seen: Arc<Mutex<Seen>>,
    tally: Arc<Tally>,
    connecting: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let config = ConnectionConfig {
        passphrase: Some(PASSPHRASE.into()),
        stream_id,
        latency: LATENCY,
        peer_latency: LATENCY,
        ..ConnectionConfig::default()
    };
    let permit = connecting.acquire_owned().await;
    let conn = stadion_srt_io::connect(addr, config).await;
    drop(permit);
    let mut conn = match conn {
        Ok(c) => {
            tally.connected.fetch_add(1, Ordering::Relaxed);
            c
        }
        Err(e) => {
            tally.note(format!("could not connect: {e}"));
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    loop {
        let p = tokio::select! {
            biased;
            _ = stop.wait_for(|&s| s) => break,
            p = conn.recv() => p,
        };
        let Some(p) = p else {
            seen.lock().unwrap().ended_early = true;
            tally.note(format!("ended early: {:?}", conn.close_reason()));
            break;
        };
        let now = mono_ns();
        let Some(stamps) = Stamps::read(&p) else {
            continue;
        };
        let us = |ns: u64| u32::try_from(ns / 1000).unwrap_or(u32::MAX);
        let delay = now
            .saturating_sub(stamps.sent)
            .saturating_sub(LATENCY.as_nanos() as u64);
        let mut s = seen.lock().unwrap();
        s.numbers.push(stamps.number);
        s.delays_us.push(us(delay));
        s.from_node_us
            .push(stamps.at_node.map_or(0, |at| us(now.saturating_sub(at))));
    }
    if let Some(stats) = conn.stats().await {
        tally
            .srt_lost
            .fetch_add(stats.packets_lost, Ordering::Relaxed);
        tally
            .srt_too_late
            .fetch_add(stats.packets_dropped, Ordering::Relaxed);
        tally
            .srt_belated
            .fetch_add(stats.packets_belated, Ordering::Relaxed);
    }
}

/// Prints, each second, how many receivers are connected, what they got and the CPU the
/// measured processes and this one (source and receivers) used: what the tables sum up.
async fn trace(pids: Vec<u32>, tally: Arc<Tally>, seen: Vec<Arc<Mutex<Seen>>>, epoch: Instant) {
    let me = std::process::id();
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let got = || -> usize { seen.iter().map(|s| s.lock().unwrap().numbers.len()).sum() };
    let (mut node0, mut me0, mut got0) = (cpu(&pids), cpu_seconds(me), got());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (node1, me1, got1) = (cpu(&pids), cpu_seconds(me), got());
        eprintln!(
            "{:5.1} s: {} connected, {} failed, {} payloads/s delivered, measured {:.2} cores, bench {:.2} cores",
            epoch.elapsed().as_secs_f64(),
            tally.connected.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
            got1 - got0,
            node1 - node0,
            me1 - me0,
        );
        (node0, me0, got0) = (node1, me1, got1);
    }
}

/// Connects the `srt` receivers, then runs the feed to `feed_to` and measures `pids` while
/// `secs` pass after a warm-up. Every receiver is judged on the payloads the source sent in
/// that window, so one that stops receiving, or never connected, counts what it missed.
async fn measure(
    feed_to: Vec<SocketAddr>,
    srt: Vec<(SocketAddr, Option<String>)>,
    pids: &[u32],
    mbps: u64,
    secs: u64,
) -> Outcome {
    let epoch = Instant::now();
    let n = srt.len();
    let tally = Arc::new(Tally::default());
    let connecting = Arc::new(Semaphore::new(connecting()));
    let (stop_receivers, stopped) = watch::channel(false);
    let seen: Vec<Arc<Mutex<Seen>>> = (0..n).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = srt
        .into_iter()
        .zip(&seen)
        .map(|((addr, stream_id), s)| {
            tokio::spawn(receive(
                addr,
                stream_id,
                s.clone(),
                tally.clone(),
                connecting.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let tracer = std::env::var_os("STADION_BENCH_TRACE")
        .map(|_| tokio::spawn(trace(pids.to_vec(), tally.clone(), seen.clone(), epoch)));
    // Everyone is in before the feed starts, so the window measures all of them.
    let settled =
        || tally.connected.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) >= n;
    while !settled() && epoch.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_secs = epoch.elapsed().as_secs_f64();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || source(feed_to, mbps, &sent, &stop))
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let me = std::process::id();
    let cpu0: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    let bench0 = cpu_seconds(me);
    let first = sent.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu1: f64 = pids.iter().map(|&p| cpu_seconds(p)).sum();
    let bench1 = cpu_seconds(me);
    let last = sent.load(Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let pss: f64 = pids.iter().map(|&p| pss_kib(p)).sum();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    // The window's last payloads play one SRT latency after they were sent.
    tokio::time::sleep(LATENCY + Duration::from_millis(500)).await;
    let _ = stop_receivers.send(true);
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = tracer {
        t.abort();
    }
    let (mut lost, mut ended_early) = (0, 0);
    let (mut delays, mut from_node) = (Vec::new(), Vec::new());
    for s in &seen {
        let s = s.lock().unwrap();
        let mut got = vec![false; (last - first) as usize];
        for ((&number, &delay), &node) in s.numbers.iter().zip(&s.delays_us).zip(&s.from_node_us) {
            if let Some(slot) = number
                .checked_sub(first)
                .and_then(|i| got.get_mut(i as usize))
            {
                if !*slot {
                    delays.push(delay);
                    if node > 0 {
                        from_node.push(node);
                    }
                }
                *slot = true;
            }
        }
        lost += got.iter().filter(|&&g| !g).count() as u64;
        ended_early += usize::from(s.ended_early);
    }
    let [p50_ms, p99_ms, _] = quantiles_ms(&mut delays);
    let errors = std::mem::take(&mut *tally.errors.lock().unwrap());
    for (error, count) in &errors {
        eprintln!("{count} receivers: {error}");
    }
    if lost > 0 {
        eprintln!(
            "receivers' SRT counters: {} gaps, {} dropped too late, {} belated",
            tally.srt_lost.load(Ordering::Relaxed),
            tally.srt_too_late.load(Ordering::Relaxed),
            tally.srt_belated.load(Ordering::Relaxed),
        );
    }
    Outcome {
        sent: last - first,
        lost,
        connected: tally.connected.load(Ordering::Relaxed),
        ended_early,
        connect_secs,
        cores: (cpu1 - cpu0) / wall,
        bench_cores: (bench1 - bench0) / wall,
        pss_per_receiver_kib: pss,
        p50_ms,
        p99_ms,
        from_node_ms: (!from_node.is_empty()).then(|| quantiles_ms(&mut from_node)),
        node_delay_ms: None,
    }
}

/// p50, p99 and the maximum of `us` (microseconds), in milliseconds; NaN when empty.
fn quantiles_ms(us: &mut [u32]) -> [f64; 3] {
    us.sort_unstable();
    let at = |q: f64| {
        us.get(((us.len() as f64 * q) as usize).min(us.len().saturating_sub(1)))
            .map_or(f64::NAN, |&d| f64::from(d) / 1000.0)
    };
    [at(0.50), at(0.99), at(1.0)]
}

struct Reaped(Vec<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn run_stadion(receivers: usize, mbps: u64, secs: u64) -> Outcome {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--node-child")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the node child");
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from_child.read_line(&mut line).unwrap();
    let ports: Vec<u16> = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("node child said {line:?}"))
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();
    let pid = child.id();
    let _child = Reaped(vec![child]);
    let idle = pss_kib(pid);
    let srt: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let udp: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    let stream_id = format!("#!::r={FLOW},u={RHB}");
    let mut out = measure(
        vec![udp],
        (0..receivers)
            .map(|_| (srt, Some(stream_id.clone())))
            .collect(),
        &[pid],
        mbps,
        secs,
    )
    .await;
    out.pss_per_receiver_kib = (out.pss_per_receiver_kib - idle) / receivers as f64;
    // Ask the node for its own latency histogram (stadion_live_node_delay_seconds).
    let mut answer = String::new();
    if writeln!(to_child, "delay").is_ok() && from_child.read_line(&mut answer).is_ok() {
        let ms: Vec<f64> = answer
            .trim()
            .strip_prefix("DELAY ")
            .unwrap_or_default()
            .split(' ')
            .filter_map(|v| v.parse::<f64>().ok().map(|s| s * 1000.0))
            .collect();
        if let [p50, p99] = ms[..] {
            out.node_delay_ms = Some((p50, p99));
        }
    }
    out
}

async fn run_relays(receivers: usize, mbps: u64, secs: u64) -> Outcome {
    let mut children = Vec::new();
    let mut feed = Vec::new();
    let mut srt = Vec::new();
    for _ in 0..receivers {
        let in_port = free_port();
        let out_port = free_port();
        let child = Command::new("srt-live-transmit")
            .args([
                "-a:no".to_owned(),
                "-q".to_owned(),
                format!("udp://127.0.0.1:{in_port}"),
                format!(
                    "srt://127.0.0.1:{out_port}?mode=listener&passphrase={PASSPHRASE}&pbkeylen=16&latency=120"
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (Debian's srt-tools) must be installed");
        children.push(child);
        feed.push(([127, 0, 0, 1], in_port).into());
        srt.push((([127, 0, 0, 1], out_port).into(), None));
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let _children = Reaped(children);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = measure(feed, srt, &pids, mbps, secs).await;
    out.pss_per_receiver_kib /= receivers as f64;
    out
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node under test: control plane on a fresh SQLite file, one flow fed over UDP, one
/// licence admitting every bench receiver. Prints `READY <srt port> <udp port>` and runs until
/// its standard input closes.
fn node_child() {
    // Installed before the node starts, so the node's histograms record into it.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use stadion_control::model::{Flow, OrgKind, Passphrase};
        use stadion_control::store::{Actor, NewLicence};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let control = stadion_control::ControlPlane::open(&url).await.unwrap();
        let admin = Actor("bench".into());
        let now = chrono::Utc::now();
        let flow = control
            .store()
            .create_flow(
                &admin,
                // Built from JSON so that fields the control plane adds later take defaults.
                serde_json::from_value::<Flow>(serde_json::json!({
                    "id": uuid::Uuid::new_v4(),
                    "name": FLOW,
                    "description": "",
                    "venue": "",
                    "event_code": "",
                    "created_at": now,
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let org = control
            .store()
            .create_org(&admin, RHB, OrgKind::RightsHolder)
            .await
            .unwrap();
        control
            .create_licence(
                &admin,
                NewLicence {
                    org_id: org.id,
                    flow_id: flow.id,
                    valid_from: now - chrono::Duration::hours(1),
                    valid_until: now + chrono::Duration::hours(10),
                    max_concurrent_receivers: 100_000,
                    allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
                    encryption_required: true,
                    passphrase: Passphrase::new(PASSPHRASE.into()).unwrap(),
                },
            )
            .await
            .unwrap();
        let port = Arc::new(stadion_live::access::InProcess::new(control, "bench"));
        let config = stadion_live::node::NodeConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..Default::default()
        };
        let node = stadion_live::node::LiveNode::start(port, config)
            .await
            .unwrap();
        let bus = stadion_live::fanout::FlowBus::new(4096);
        node.handle().attach_flow(FLOW, bus.clone()).await.unwrap();
        let socket = stadion_live::udp::bind_source("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let udp_port = socket.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(n) = socket.recv(&mut buf).await {
                let arrival = Instant::now();
                // Where the feed reaches the node: its arrival time goes into the payload,
                // for the receivers to measure from.
                if n >= 25 {
                    buf[17..25].copy_from_slice(&mono_ns().to_be_bytes());
                }
                bus.publish(arrival, Bytes::copy_from_slice(&buf[..n]));
            }
        });
        if std::env::var_os("STADION_BENCH_TRACE").is_some() {
            tokio::spawn(trace_node(node.handle()));
        }
        let mut stdout = std::io::stdout();
        writeln!(
            stdout,
            "READY {} {udp_port}",
            node.handle().listen_addr().port()
        )
        .unwrap();
        stdout.flush().unwrap();
        // Each line from the parent asks for the node-added latency quantiles, in seconds.
        let mut asks =
            tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
        while let Ok(Some(_)) = asks.next_line().await {
            let text = metrics.render();
            let quantile = |q: &str| {
                text.lines()
                    .find(|l| {
                        l.starts_with(stadion_live::node::NODE_DELAY_METRIC)
                            && l.contains(&format!("quantile=\"{q}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .unwrap_or("nan")
                    .to_owned()
            };
            writeln!(stdout, "DELAY {} {}", quantile("0.5"), quantile("0.99")).unwrap();
            stdout.flush().unwrap();
        }
        node.stop().await;
    });
}

/// The node's side of the trace: its receivers and their SRT send counters, each second.
async fn trace_node(node: stadion_live::node::NodeHandle) {
    let mut last = stadion_live::output::SrtStatus::default();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(status) = node.status().await else {
            return;
        };
        let mut sum = stadion_live::output::SrtStatus::default();
        let (mut receivers, mut dropped_chunks) = (0, 0);
        for flow in &status.flows {
            dropped_chunks += flow.chunks_dropped;
            for r in &flow.receivers {
                receivers += 1;
                if let Some(s) = &r.srt {
                    sum.packets_sent += s.packets_sent;
                    sum.packets_retransmitted += s.packets_retransmitted;
                    sum.packets_send_loss += s.packets_send_loss;
                    sum.packets_send_dropped += s.packets_send_dropped;
                    sum.send_buffer_packets += s.send_buffer_packets;
                    sum.rtt_ms = sum.rtt_ms.max(s.rtt_ms);
                }
            }
        }
        eprintln!(
            "        node: {receivers} receivers, per second {} sent, {} retransmitted, {} reported lost, {} dropped unacknowledged; {} in send buffers, max RTT {:.1} ms, {dropped_chunks} chunks missed",
            sum.packets_sent.saturating_sub(last.packets_sent),
            sum.packets_retransmitted
                .saturating_sub(last.packets_retransmitted),
            sum.packets_send_loss.saturating_sub(last.packets_send_loss),
            sum.packets_send_dropped
                .saturating_sub(last.packets_send_dropped),
            sum.send_buffer_packets,
            sum.rtt_ms,
        );
        last = sum;
    }
}
