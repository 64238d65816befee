//! The driver's tick ([`DriverConfig`]): only sensible values are taken, and a shorter tick
//! delivers closer to play time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stadion_srt::{AcceptDecision, ConnectRequest, ConnectionConfig, ListenerConfig};
use stadion_srt_io::{DriverConfig, InvalidTick, SrtListener, connect_with};

#[test]
fn ticks_outside_one_to_ten_milliseconds_are_refused() {
    for bad in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(3600),
    ] {
        assert_eq!(DriverConfig::with_tick(bad), Err(InvalidTick { tick: bad }));
    }
    let err = DriverConfig::with_tick(Duration::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "driver tick of 0ns is outside 1ms to 10ms");
    for good in [DriverConfig::MIN_TICK, DriverConfig::MAX_TICK] {
        assert_eq!(DriverConfig::with_tick(good).unwrap().tick(), good);
    }
    assert_eq!(DriverConfig::default().tick(), Duration::from_millis(4));
}

#[test]
fn ticks_of_one_length_share_a_grid() {
    let config = DriverConfig::with_tick(Duration::from_millis(5)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let now = tokio::time::Instant::now();
        let a = config.next_tick(now);
        assert!(a > now && a <= now + config.tick());
        assert_eq!(config.next_tick(a - Duration::from_micros(1)), a);
        assert_eq!(config.next_tick(a), a + config.tick());
        // Also for instants from before the grid was laid.
        let early = now - Duration::from_millis(1001);
        let b = config.next_tick(early);
        assert!(b > early && b <= early + config.tick());
        assert_eq!((a - b).as_nanos() % config.tick().as_nanos(), 0);
    });
}

/// Send-to-delivery times of a paced stream over loopback with both drivers on `tick`.
async fn latencies(tick: Duration) -> Vec<Duration> {
    const COUNT: u32 = 300;
    let driver = DriverConfig::with_tick(tick).unwrap();
    let mut listener = SrtListener::bind_with(
        ([127, 0, 0, 1], 0).into(),
        ListenerConfig::default(),
        driver,
        |_: &ConnectRequest<'_>| AcceptDecision::Accept {
            passphrase: None,
            latency: None,
        },
    )
    .await
    .unwrap();
    let sender = connect_with(listener.local_addr(), ConnectionConfig::default(), driver)
        .await
        .unwrap();
    let mut receiver = listener.accept().await.unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sent_at = sent.clone();
    let pacing = tokio::spawn(async move {
        for i in 0..COUNT {
            sent_at.lock().unwrap().push(Instant::now());
            sender
                .send(Bytes::copy_from_slice(&i.to_be_bytes()))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sender
    });
    let mut out = Vec::new();
    while out.len() < COUNT as usize {
        let p = tokio::time::timeout(Duration::from_secs(3), receiver.recv())
            .await
            .expect("delivery")
            .expect("open");
        let i = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
        out.push(sent.lock().unwrap()[i].elapsed());
    }
    drop(pacing.await.unwrap());
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_tick_delivers_closer_to_play_time() {
    let slow = latencies(DriverConfig::MAX_TICK).await;
    let fast = latencies(DriverConfig::MIN_TICK).await;
    let pct = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    // Deliveries come within half a tick of play time (120 ms after the send), so the tail
    // shrinks with the tick: about 125 ms at 10 ms ticks, 120.5 ms at 1 ms.
    let (slow95, fast95) = (pct(&slow, 0.95), pct(&fast, 0.95));
    assert!(
        fast95 + Duration::from_millis(1) < slow95,
        "p95 {fast95:?} at 1 ms ticks, {slow95:?} at 10 ms"
    );
    // And the early side: at 10 ms ticks some come up to 5 ms early.
    assert!(pct(&slow, 0.05) < pct(&fast, 0.05), "{slow:?} {fast:?}");
}
