//! Heap memory per connection of a listener fanning one feed out to many receivers, measured
//! with a counting allocator. Each of N callers connects to one sans-IO listener over an
//! in-memory link (10 ms each way); the listener then sends every receiver the same 1316-byte
//! payload once per millisecond (10.5 Mb/s) for two seconds of virtual time. Reported: the
//! listener's live heap divided by N, with unencrypted connections (the payload `Bytes` is
//! shared) and with AES-128 (each connection keeps its own ciphertext until acknowledged).
//!
//! `cargo bench -p stadion-srt --bench memory -- [connections]` (default 1000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use stadion_srt::{AcceptDecision, ConnectRequest, Connection, ConnectionConfig, Listener};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 9000);
const DELAY: Duration = Duration::from_millis(10);
const PASSPHRASE: &str = "memory-bench-passphrase";

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    println!("| connections | encryption | listener heap per connection | send buffer (packets) |");
    println!("|---|---|---|---|");
    for encrypted in [false, true] {
        let (per_conn, buffered) = measure(n, encrypted);
        println!(
            "| {n} | {} | {:.1} KiB | {buffered:.1} |",
            if encrypted { "AES-128" } else { "none" },
            per_conn as f64 / 1024.0
        );
    }
}

/// In-flight datagrams: (arrival, to the listener?, peer address, bytes).
type Wire = VecDeque<(Instant, bool, SocketAddr, Bytes)>;

fn measure(n: usize, encrypted: bool) -> (usize, f64) {
    #[allow(clippy::disallowed_methods)] // the simulation's virtual clock starts here
    let base = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let hook = move |_: &ConnectRequest<'_>| AcceptDecision::Accept {
        passphrase: encrypted.then(|| PASSPHRASE.to_owned()),
        latency: None,
    };
    let mut listener = Listener::new(
        base,
        Default::default(),
        Box::new(hook),
        Box::new(StdRng::seed_from_u64(1)),
    );
    let mut rng = StdRng::seed_from_u64(2);
    let config = ConnectionConfig {
        passphrase: encrypted.then(|| PASSPHRASE.to_owned()),
        ..ConnectionConfig::default()
    };
    let mut callers: HashMap<SocketAddr, Connection> = (0..n)
        .map(|i| {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0A01_0000 + i as u32)), 5000);
            let c = Connection::connect(base, SERVER, config.clone(), &mut rng).unwrap();
            (addr, c)
        })
        .collect();
    let mut wire: Wire = VecDeque::new();
    let mut now = base;
    let step = Duration::from_millis(1);
    let mut ids = Vec::new();
    for ms in 0..2500u32 {
        now += step;
        // Deliver what is due.
        while wire.front().is_some_and(|(at, ..)| *at <= now) {
            let (_, to_listener, peer, d) = wire.pop_front().unwrap();
            if to_listener {
                listener.handle_input(now, peer, d);
            } else if let Some(c) = callers.get_mut(&peer) {
                c.handle_input(now, d);
            }
        }
        if ms == 500 {
            ids = listener.connection_ids().collect();
            assert_eq!(ids.len(), n, "all callers connected");
        }
        if ms >= 500 {
            let payload = Bytes::from(vec![0x47u8; 1316]);
            for &id in &ids {
                listener.send(id, now, payload.clone()).unwrap();
            }
        }
        listener.handle_timeout(now);
        for (addr, c) in callers.iter_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            while let Some(t) = c.poll_transmit() {
                wire.push_back((now + DELAY, true, *addr, Bytes::from(t.to_vec())));
            }
            while c.poll_event().is_some() {}
        }
        while let Some(t) = listener.poll_transmit() {
            wire.push_back((now + DELAY, false, t.destination, Bytes::from(t.to_vec())));
        }
        while listener.poll_event().is_some() {}
    }
    let buffered: usize = ids
        .iter()
        .filter_map(|&id| listener.stats(id))
        .map(|s| s.send_buffer_packets)
        .sum();
    // The listener's share: what stays live once the callers and the wire are gone. The
    // current payload is shared by all connections and counted once.
    drop(callers);
    drop(wire);
    let live = LIVE.load(Ordering::Relaxed) - before;
    (live / n, buffered as f64 / n as f64)
}
