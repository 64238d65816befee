//! The node's receiver side against SRT callers from `stadion-srt-io`, with a control port
//! whose answers each test sets: admission, the rejection code the caller sees, cuts on
//! licence changes and expiry, a stalled receiver that must not slow the others, usage records.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use stadion_control::usage::{UsageEvent, UsageRecord};
use stadion_live::access::{
    AccessQuery, Admission, ControlPort, ControlUnavailable, LicenceChange, LicenceState, Refused,
    Verdict,
};
use stadion_live::fanout::FlowBus;
use stadion_live::node::{LiveNode, NodeConfig, NodeHandle};
use stadion_srt::ConnectionConfig;
use stadion_srt_io::{SrtConnection, SrtError};
use tokio::sync::broadcast;
use tokio::time::timeout;
use uuid::Uuid;

const PASSPHRASE: &str = "licence-passphrase-1";

/// Grants what `grants` holds, refuses the rest with "no licence", refuses grants whose
/// receivers are all connected with "concurrency exceeded", records everything.
struct TestPort {
    grants: Mutex<HashMap<(String, String), (Admission, u32)>>,
    changes: broadcast::Sender<LicenceChange>,
    queries: Mutex<Vec<AccessQuery>>,
    usage: Mutex<Vec<UsageRecord>>,
}

impl TestPort {
    fn new() -> Arc<Self> {
        Arc::new(TestPort {
            grants: Mutex::default(),
            changes: broadcast::channel(16).0,
            queries: Mutex::default(),
            usage: Mutex::default(),
        })
    }

    fn grant(&self, rhb: &str, flow: &str, max: u32, valid_for: Duration) -> Uuid {
        let licence = Uuid::new_v4();
        let admission = Admission {
            licence,
            rhb_id: Uuid::new_v4(),
            flow_id: Uuid::new_v4(),
            passphrase: Some(PASSPHRASE.into()),
            encryption_required: true,
            valid_until: Utc::now() + valid_for,
        };
        self.grants
            .lock()
            .unwrap()
            .insert((rhb.into(), flow.into()), (admission, max));
        licence
    }

    fn usage(&self) -> Vec<UsageRecord> {
        self.usage.lock().unwrap().clone()
    }
}

impl ControlPort for TestPort {
    async fn decide(&self, query: &AccessQuery) -> Result<Verdict, ControlUnavailable> {
        self.queries.lock().unwrap().push(query.clone());
        let grants = self.grants.lock().unwrap();
        let refuse = |reason: &str, code| {
            Ok(Err(Refused {
                reason: reason.into(),
                code,
                licence: None,
            }))
        };
        match grants.get(&(query.rhb.clone(), query.flow.clone())) {
            None => refuse("no_licence", 1404),
            Some((_, max)) if query.connected >= *max => refuse("concurrency_exceeded", 1402),
            Some((admission, _)) => Ok(Ok(admission.clone())),
        }
    }

    fn changes(&self) -> broadcast::Receiver<LicenceChange> {
        self.changes.subscribe()
    }

    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), ControlUnavailable> {
        self.usage.lock().unwrap().extend_from_slice(records);
        Ok(())
    }
}

async fn start(port: &Arc<TestPort>, flow: &str) -> (LiveNode, NodeHandle, FlowBus) {
    let config = NodeConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        usage_interval: Duration::from_millis(200),
        ..NodeConfig::default()
    };
    let node = LiveNode::start(port.clone(), config).await.unwrap();
    let handle = node.handle();
    let bus = FlowBus::new(1024);
    handle.attach_flow(flow, bus.clone()).await.unwrap();
    (node, handle, bus)
}

fn payload(i: u64) -> Bytes {
    let mut p = vec![0x47u8; 1316];
    p[1..9].copy_from_slice(&i.to_be_bytes());
    Bytes::from(p)
}

/// Publishes numbered payloads at about 10 Mb/s until dropped.
fn feed(bus: FlowBus) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            bus.publish(Instant::now(), payload(i));
            i += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

async fn receive(
    addr: SocketAddr,
    stream_id: &str,
    passphrase: Option<&str>,
) -> Result<SrtConnection, SrtError> {
    let config = ConnectionConfig {
        stream_id: Some(stream_id.into()),
        passphrase: passphrase.map(str::to_owned),
        ..ConnectionConfig::default()
    };
    stadion_srt_io::connect(addr, config).await
}

fn number(p: &Bytes) -> u64 {
    u64::from_be_bytes(p[1..9].try_into().unwrap())
}

/// Reads for `span` and returns the payload numbers; `None` as the second value when the
/// connection ended, with how long after the start it did.
async fn read_for(conn: &mut SrtConnection, span: Duration) -> (Vec<u64>, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        let left = span.saturating_sub(start.elapsed());
        match timeout(left, conn.recv()).await {
            Ok(Some(p)) => got.push(number(&p)),
            Ok(None) => return (got, Some(start.elapsed())),
            Err(_) => return (got, None),
        }
    }
}

fn assert_consecutive(got: &[u64]) {
    assert!(!got.is_empty(), "nothing received");
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap after payload {}", w[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licensed_receiver_gets_the_flow_and_usage_is_recorded() {
    let port = TestPort::new();
    let licence = port.grant("rhb-one", "ath", 2, Duration::from_secs(3600));
    let (node, handle, bus) = start(&port, "ath").await;
    let feeder = feed(bus);
    let mut conn = receive(
        handle.listen_addr(),
        "#!::r=ath,u=rhb-one",
        Some(PASSPHRASE),
    )
    .await
    .unwrap();
    let (got, ended) = read_for(&mut conn, Duration::from_millis(800)).await;
    assert_eq!(ended, None);
    assert!(got.len() > 100, "received {} payloads", got.len());
    assert_consecutive(&got);

    let status = handle.status().await.unwrap();
    let receivers = &status.flows[0].receivers;
    assert_eq!(receivers.len(), 1);
    assert_eq!(receivers[0].key.rhb, "rhb-one");
    assert_eq!(receivers[0].key.licence, licence);
    let srt = receivers[0].srt.as_ref().expect("SRT statistics");
    assert!(srt.packets_sent >= got.len() as u64);

    let query = port.queries.lock().unwrap()[0].clone();
    assert_eq!(
        (query.rhb.as_str(), query.flow.as_str()),
        ("rhb-one", "ath")
    );
    assert_eq!(query.connected, 0);
    assert_eq!(query.source, conn.peer().ip().to_canonical());

    drop(conn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    feeder.abort();
    node.stop().await;
    let usage = port.usage();
    assert!(
        usage
            .iter()
            .all(|r| r.licence_id == licence && r.session == usage[0].session)
    );
    assert_eq!(usage[0].event, UsageEvent::Connected);
    // Deliveries are reported every 200 ms while the session runs, the rest with its end.
    let delivered: u64 = usage
        .iter()
        .map(|r| match r.event {
            UsageEvent::Delivered { bytes, .. } => bytes,
            _ => 0,
        })
        .sum();
    let Some(UsageEvent::Disconnected { reason, bytes, .. }) = usage.last().map(|r| &r.event)
    else {
        panic!("no disconnect record: {usage:?}");
    };
    assert_eq!(reason, "peer_closed");
    assert!(
        delivered > 0 && delivered <= *bytes,
        "{delivered} of {bytes}"
    );
    assert!(*bytes >= got.len() as u64 * 1316);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_reach_the_caller_as_srt_rejection_codes() {
    let port = TestPort::new();
    port.grant("rhb-one", "ath", 1, Duration::from_secs(3600));
    let (_node, handle, _bus) = start(&port, "ath").await;
    let addr = handle.listen_addr();
    let code = |r: Result<SrtConnection, SrtError>| match r {
        Err(SrtError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(
        code(receive(addr, "#!::r=ath,u=nobody", Some(PASSPHRASE)).await),
        1404
    );
    assert_eq!(code(receive(addr, "ath", Some(PASSPHRASE)).await), 1400);
    assert_eq!(
        code(receive(addr, "#!::r=ath,u=rhb-one,m=publish", None).await),
        1400
    );
    // No passphrase on an encrypted licence: SRT's UNSECURE (11); a wrong one: BADSECRET (10).
    assert_eq!(code(receive(addr, "#!::r=ath,u=rhb-one", None).await), 11);
    assert_eq!(
        code(receive(addr, "#!::r=ath,u=rhb-one", Some("not-the-passphrase")).await),
        10
    );
    // Failed handshakes give their place back: the one allowed receiver gets in, a second not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _first = receive(addr, "#!::r=ath,u=rhb-one", Some(PASSPHRASE))
        .await
        .unwrap();
    assert_eq!(
        code(receive(addr, "#!::r=ath,u=rhb-one", Some(PASSPHRASE)).await),
        1402
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_cuts_that_licence_within_a_second_and_nobody_else() {
    let port = TestPort::new();
    let one = port.grant("rhb-one", "ath", 2, Duration::from_secs(3600));
    port.grant("rhb-two", "ath", 2, Duration::from_secs(3600));
    let (_node, handle, bus) = start(&port, "ath").await;
    let _feeder = feed(bus);
    let addr = handle.listen_addr();
    let mut a = receive(addr, "#!::r=ath,u=rhb-one", Some(PASSPHRASE))
        .await
        .unwrap();
    let mut b = receive(addr, "#!::r=ath,u=rhb-two", Some(PASSPHRASE))
        .await
        .unwrap();
    read_for(&mut a, Duration::from_millis(300)).await;
    read_for(&mut b, Duration::from_millis(300)).await;

    port.changes
        .send(LicenceChange {
            licence: one,
            state: LicenceState::Revoked,
        })
        .unwrap();
    let (_, ended) = read_for(&mut a, Duration::from_secs(3)).await;
    // The payloads already in flight are delivered after their SRT latency (120 ms), then the
    // shutdown ends the connection.
    let ended = ended.expect("revoked receiver still connected after 3 s");
    assert!(ended < Duration::from_secs(1), "cut after {ended:?}");
    let (got, b_ended) = read_for(&mut b, Duration::from_millis(700)).await;
    assert_eq!(b_ended, None, "the other licence's receiver was cut");
    assert_consecutive(&got);
    assert!(got.len() > 100, "other receiver got {} payloads", got.len());

    let status = handle.status().await.unwrap();
    let rhbs: Vec<_> = status.flows[0]
        .receivers
        .iter()
        .map(|r| r.key.rhb.clone())
        .collect();
    assert_eq!(rhbs, ["rhb-two"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let usage = port.usage();
    assert!(usage.iter().any(|r| r.licence_id == one
        && matches!(&r.event,
        UsageEvent::Disconnected { reason, .. } if reason == "revoked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_are_cut_when_the_licence_window_ends() {
    let port = TestPort::new();
    port.grant("rhb-one", "ath", 1, Duration::from_millis(1500));
    let (_node, handle, bus) = start(&port, "ath").await;
    let _feeder = feed(bus);
    let connected = Instant::now();
    let mut a = receive(
        handle.listen_addr(),
        "#!::r=ath,u=rhb-one",
        Some(PASSPHRASE),
    )
    .await
    .unwrap();
    let (got, ended) = read_for(&mut a, Duration::from_secs(4)).await;
    assert!(ended.is_some(), "not cut at expiry");
    let ended = connected.elapsed();
    assert!(got.len() > 200);
    assert!(
        ended < Duration::from_millis(2500),
        "cut {ended:?} after connecting with 1.5 s left"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(port.usage().iter().any(|r| matches!(&r.event,
        UsageEvent::Disconnected { reason, .. } if reason == "expired")));
}
