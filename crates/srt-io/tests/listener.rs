//! What a data plane relies on from the IO layer, on loopback: asynchronous admission that does
//! not hold up other callers, refusals after admission, bounded send queues, and drivers that
//! stop (telling their peers) once the application has dropped every handle.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::payload;
use stadion_srt::{
    AcceptDecision, CloseReason, ConnectRequest, ConnectionConfig, ListenerConfig, RequestId,
    reject,
};
use stadion_srt_io::{Decision, Incoming, SrtError, SrtListener};
use tokio::sync::oneshot;
use tokio::time::timeout;

const LOCAL: ([u8; 4], u16) = ([127, 0, 0, 1], 0);

fn caller(resource: &str) -> ConnectionConfig {
    ConnectionConfig {
        stream_id: Some(format!("#!::r={resource}")),
        ..ConnectionConfig::default()
    }
}

fn accept_plain() -> AcceptDecision {
    AcceptDecision::Accept {
        passphrase: None,
        latency: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_decision_holds_up_neither_other_callers_nor_creates_duplicates() {
    let asked_slow = Arc::new(AtomicU32::new(0));
    let (release, released) = oneshot::channel::<AcceptDecision>();
    let released = Mutex::new(Some(released));
    let count = asked_slow.clone();
    let hook = move |req: &ConnectRequest<'_>| -> Decision {
        if req.stream_id.resource() != "slow" {
            return accept_plain().into();
        }
        count.fetch_add(1, Ordering::SeqCst);
        let answer = released.lock().unwrap().take().expect("asked once");
        Decision::later(async move { answer.await.unwrap_or(AcceptDecision::Reject(0)) })
    };
    let mut listener = SrtListener::bind_async(LOCAL.into(), ListenerConfig::default(), hook)
        .await
        .unwrap();
    let addr = listener.local_addr();

    let slow = tokio::spawn(stadion_srt_io::connect(addr, caller("slow")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the slow caller's decision is pending, another caller gets in at once.
    let fast = timeout(
        Duration::from_millis(500),
        stadion_srt_io::connect(addr, caller("fast")),
    )
    .await
    .expect("not held up by the pending decision")
    .unwrap();
    let fast_accepted = listener.accept().await.unwrap();
    assert_eq!(fast_accepted.stream_id(), Some("#!::r=fast"));

    // The slow caller retransmits its conclusion (every 250 ms) while it waits.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!slow.is_finished());
    release.send(accept_plain()).unwrap();
    let mut slow = timeout(Duration::from_secs(2), slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let slow_accepted = listener.accept().await.unwrap();
    assert_eq!(slow_accepted.stream_id(), Some("#!::r=slow"));
    assert_eq!(
        asked_slow.load(Ordering::SeqCst),
        1,
        "one request per caller"
    );
    assert!(
        timeout(Duration::from_millis(400), listener.accept())
            .await
            .is_err(),
        "no duplicate connection"
    );
    assert_ne!(slow_accepted.request_id(), fast_accepted.request_id());

    slow_accepted.send(payload(7)).unwrap();
    assert_eq!(
        timeout(Duration::from_secs(2), slow.recv()).await.unwrap(),
        Some(payload(7))
    );
    drop(fast);
}

#[tokio::test]
async fn a_late_decision_and_a_wrong_passphrase_are_reported_as_refusals() {
    let seen: Arc<Mutex<Vec<(String, RequestId)>>> = Arc::default();
    let log = seen.clone();
    let hook = move |req: &ConnectRequest<'_>| -> Decision {
        log.lock()
            .unwrap()
            .push((req.stream_id.resource().to_owned(), req.id));
        let late = req.stream_id.resource() == "late";
        Decision::later(async move {
            if late {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            AcceptDecision::Accept {
                passphrase: Some("the-right-passphrase".into()),
                latency: None,
            }
        })
    };
    let mut config = ListenerConfig::default();
    config.connection.connect_timeout = Duration::from_millis(500);
    let mut listener = SrtListener::bind_async(LOCAL.into(), config, hook)
        .await
        .unwrap();
    let addr = listener.local_addr();
    let id_of = |resource: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .find(|(r, _)| r == resource)
            .map(|(_, id)| *id)
            .unwrap()
    };

    let wrong = ConnectionConfig {
        passphrase: Some("not-the-passphrase".into()),
        ..caller("wrong")
    };
    let refused = stadion_srt_io::connect(addr, wrong).await;
    assert!(
        matches!(refused, Err(SrtError::Rejected { code, .. }) if code == reject::BADSECRET),
        "{refused:?}"
    );
    match timeout(Duration::from_secs(1), listener.incoming()).await {
        Ok(Some(Incoming::Refused(r))) => {
            assert_eq!((r.id, r.code), (id_of("wrong"), reject::BADSECRET));
            assert_eq!(r.stream_id, "#!::r=wrong");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    let late = ConnectionConfig {
        passphrase: Some("the-right-passphrase".into()),
        ..caller("late")
    };
    let refused = stadion_srt_io::connect(addr, late).await;
    assert!(
        matches!(refused, Err(SrtError::Rejected { code, .. }) if code == reject::TIMEOUT),
        "{refused:?}"
    );
    match timeout(Duration::from_secs(1), listener.incoming()).await {
        Ok(Some(Incoming::Refused(r))) => {
            assert_eq!((r.id, r.code), (id_of("late"), reject::TIMEOUT));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The application queues faster than the driver runs (here: it never yields while queueing):
/// the queue keeps the newest `limit` payloads, and the rest are dropped and counted.
#[tokio::test]
async fn send_queues_are_bounded_and_count_what_they_drop() {
    const LIMIT: usize = 64;
    const SENT: u32 = 300;
    let config = ListenerConfig {
        connection: ConnectionConfig {
            send_buffer_limit: LIMIT,
            ..ConnectionConfig::default()
        },
        ..ListenerConfig::default()
    };
    let mut listener = SrtListener::bind(LOCAL.into(), config, |_: &ConnectRequest<'_>| {
        accept_plain()
    })
    .await
    .unwrap();
    let addr = listener.local_addr();
    let limited = ConnectionConfig {
        send_buffer_limit: LIMIT,
        ..ConnectionConfig::default()
    };
    let mut ours = stadion_srt_io::connect(addr, limited).await.unwrap();
    let mut theirs = listener.accept().await.unwrap();

    // One connection's own queue.
    for i in 0..SENT {
        ours.send(payload(i)).unwrap();
    }
    let first_kept = SENT - LIMIT as u32;
    for i in first_kept..SENT {
        let got = timeout(Duration::from_secs(2), theirs.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(payload(i)));
    }
    let stats = ours.stats().await.unwrap();
    assert_eq!(
        stats.packets_send_dropped,
        u64::from(first_kept),
        "{stats:?}"
    );

    // The listener's fan-out queue.
    let ids: Arc<[u32]> = Arc::from(vec![theirs.id()]);
    for i in 0..SENT {
        listener.send_many(ids.clone(), payload(i)).unwrap();
    }
    for i in first_kept..SENT {
        let got = timeout(Duration::from_secs(2), ours.recv()).await.unwrap();
        assert_eq!(got, Some(payload(i)));
    }
    let stats = theirs.stats().await.unwrap();
    assert_eq!(
        stats.packets_send_dropped,
        u64::from(first_kept),
        "{stats:?}"
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_listener_and_shuts_its_peers_down() {
    let mut listener = SrtListener::bind(LOCAL.into(), ListenerConfig::default(), {
        |_: &ConnectRequest<'_>| accept_plain()
    })
    .await
    .unwrap();
    let addr: SocketAddr = listener.local_addr();
    let mut ours = stadion_srt_io::connect(addr, ConnectionConfig::default())
        .await
        .unwrap();
    let theirs = listener.accept().await.unwrap();

    // The connection outlives the listener handle.
    drop(listener);
    theirs.send(payload(1)).unwrap();
    assert_eq!(
        timeout(Duration::from_secs(2), ours.recv()).await.unwrap(),
        Some(payload(1))
    );
    assert!(std::net::UdpSocket::bind(addr).is_err(), "still serving");

    // Its last handle gone, the peer is told and the port is given back.
    drop(theirs);
    assert_eq!(
        timeout(Duration::from_secs(2), ours.recv()).await.unwrap(),
        None
    );
    assert_eq!(ours.close_reason(), Some(CloseReason::PeerShutdown));
    let mut rebound = false;
    for _ in 0..100 {
        if std::net::UdpSocket::bind(addr).is_ok() {
            rebound = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rebound, "the listener's driver still holds {addr}");
}

#[tokio::test]
async fn dropping_a_callers_handle_shuts_the_connection_down() {
    let mut listener = SrtListener::bind(LOCAL.into(), ListenerConfig::default(), {
        |_: &ConnectRequest<'_>| accept_plain()
    })
    .await
    .unwrap();
    let ours = stadion_srt_io::connect(listener.local_addr(), ConnectionConfig::default())
        .await
        .unwrap();
    let mut theirs = listener.accept().await.unwrap();
    ours.send(payload(2)).unwrap();
    drop(ours);
    // What was queued before the drop still arrives, then the shutdown.
    assert_eq!(
        timeout(Duration::from_secs(2), theirs.recv())
            .await
            .unwrap(),
        Some(payload(2))
    );
    assert_eq!(
        timeout(Duration::from_secs(2), theirs.recv())
            .await
            .unwrap(),
        None
    );
    assert_eq!(theirs.close_reason(), Some(CloseReason::PeerShutdown));
}
