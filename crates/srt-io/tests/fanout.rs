//! The data plane's use of the listener, end to end on loopback: per-connection admission
//! (stream ID and passphrase chosen by the hook), one payload sent to many connections,
//! per-connection statistics, and closing one connection from outside.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stadion_srt::{
    AcceptDecision, CloseReason, ConnectRequest, ConnectionConfig, ListenerConfig, reject,
};
use stadion_srt_io::{SrtError, SrtListener};
use tokio::time::timeout;

const COUNT: u32 = 500;

/// Each broadcaster has its own key; unknown resources are refused with 1404.
fn hook(req: &ConnectRequest<'_>) -> AcceptDecision {
    let passphrase = match req.stream_id.resource() {
        "rhb-a" => None,
        "rhb-b" => Some("broadcaster-b-key"),
        "rhb-c" => Some("broadcaster-c-key"),
        _ => return AcceptDecision::Reject(reject::NOT_FOUND),
    };
    AcceptDecision::Accept {
        passphrase: passphrase.map(str::to_owned),
        latency: Some(Duration::from_millis(80)),
    }
}

fn caller(resource: &str, passphrase: Option<&str>) -> ConnectionConfig {
    ConnectionConfig {
        stream_id: Some(format!("#!::r={resource},m=request")),
        passphrase: passphrase.map(str::to_owned),
        key_len: 32,
        ..ConnectionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_feed_to_many_receivers_with_their_own_keys() {
    let mut listener =
        SrtListener::bind(([127, 0, 0, 1], 0).into(), ListenerConfig::default(), hook)
            .await
            .unwrap();
    let addr: SocketAddr = listener.local_addr();

    let refused = stadion_srt_io::connect(addr, caller("rhb-x", None)).await;
    assert!(matches!(
        refused,
        Err(SrtError::Rejected {
            code: reject::NOT_FOUND,
            ..
        })
    ));
    let wrong_key =
        stadion_srt_io::connect(addr, caller("rhb-b", Some("not-b-s-key-at-all"))).await;
    assert!(matches!(
        wrong_key,
        Err(SrtError::Rejected {
            code: reject::BADSECRET,
            ..
        })
    ));

    let counted = listener.rejections().await;
    assert_eq!(counted.get(&reject::NOT_FOUND), Some(&1), "{counted:?}");
    assert_eq!(counted.get(&reject::BADSECRET), Some(&1), "{counted:?}");

    let mut receivers = Vec::new();
    for (resource, key) in [
        ("rhb-a", None),
        ("rhb-b", Some("broadcaster-b-key")),
        ("rhb-c", Some("broadcaster-c-key")),
    ] {
        let conn = stadion_srt_io::connect(addr, caller(resource, key))
            .await
            .unwrap();
        let accepted = timeout(Duration::from_secs(2), listener.accept())
            .await
            .unwrap()
            .unwrap();
        assert!(accepted.stream_id().unwrap().contains(resource));
        receivers.push((conn, accepted));
    }
    let ids: Arc<[u32]> = receivers.iter().map(|(_, a)| a.id()).collect();
    for i in 0..COUNT {
        listener.send_many(ids.clone(), payload(i)).unwrap();
        if i % 5 == 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for (conn, accepted) in &mut receivers {
        for i in 0..COUNT {
            let got = timeout(Duration::from_secs(3), conn.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, payload(i), "payload {i} at {:?}", conn.stream_id());
        }
        let ours = accepted.stats().await.unwrap();
        // Retransmissions count as sent too (loopback drops packets on a busy machine).
        assert_eq!(
            ours.packets_sent - ours.packets_retransmitted,
            u64::from(COUNT)
        );
        assert_eq!(ours.bytes_sent, ours.packets_sent * 1316);
        assert_eq!(
            ours.latency,
            Duration::from_millis(120),
            "the larger of 80 and 120 ms"
        );
        assert!(ours.rtt < Duration::from_millis(50), "{ours:?}");
    }

    // Revoke one receiver: its caller sees the shutdown, the others keep receiving.
    let (mut revoked, revoked_accepted) = receivers.remove(1);
    listener.close(revoked_accepted.id());
    assert_eq!(
        timeout(Duration::from_secs(2), revoked.recv())
            .await
            .unwrap(),
        None
    );
    assert_eq!(revoked.close_reason(), Some(CloseReason::PeerShutdown));
    let ids: Arc<[u32]> = receivers.iter().map(|(_, a)| a.id()).collect();
    listener.send_many(ids, payload(COUNT)).unwrap();
    for (conn, _) in &mut receivers {
        let got = timeout(Duration::from_secs(2), conn.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, payload(COUNT));
    }
    assert_eq!(
        timeout(Duration::from_secs(1), revoked_accepted.stats())
            .await
            .unwrap(),
        None
    );
}
