//! Interop with libsrt 1.5 (Debian's `srt-live-transmit`) in both roles, with and without
//! AES-128/256, content compared byte for byte; wrong passphrases and rejected stream IDs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use stadion_srt::{AcceptDecision, ListenerConfig, reject};
use stadion_srt_io::SrtListener;

const COUNT: u32 = 1500;

/// Sends COUNT payloads at about 30 Mb/s.
async fn send_paced(send: impl Fn(bytes::Bytes)) {
    for i in 0..COUNT {
        send(payload(i));
        if i % 3 == 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

async fn our_caller_to_their_listener(key_len: Option<usize>) {
    let srt_port = free_port();
    let sink = udp_sink();
    let _peer = LiveTransmit::new(
        format!(
            "srt://127.0.0.1:{srt_port}?mode=listener&latency=120{}",
            srt_params(key_len, PASSPHRASE)
        ),
        format!("udp://{}", sink.local_addr().unwrap()),
    )
    .timeout(30)
    .spawn();
    let addr: SocketAddr = ([127, 0, 0, 1], srt_port).into();
    let conn = connect_retry(addr, our_config(key_len, PASSPHRASE))
        .await
        .expect("connect to srt-live-transmit");
    let receiver = tokio::spawn(async move {
        collect_udp(&sink, COUNT as usize, Duration::from_secs(3), |_| true).await
    });
    send_paced(|p| conn.send(p).unwrap()).await;
    assert_in_order(&receiver.await.unwrap(), COUNT);
    let stats = conn.stats().await.unwrap();
    assert_eq!(
        stats.packets_sent - stats.packets_retransmitted,
        u64::from(COUNT)
    );
}

async fn their_caller_to_our_listener(key_len: Option<usize>) {
    let mut listener = SrtListener::bind(
        ([127, 0, 0, 1], 0).into(),
        ListenerConfig::default(),
        move |req: &stadion_srt::ConnectRequest<'_>| {
            assert_eq!(req.stream_id.resource(), "cam1");
            AcceptDecision::Accept {
                passphrase: key_len.map(|_| PASSPHRASE.to_owned()),
                latency: None,
            }
        },
    )
    .await
    .unwrap();
    let in_port = free_port();
    let lport = listener.local_addr().port();
    let _peer = LiveTransmit::new(
        format!("udp://127.0.0.1:{in_port}"),
        format!(
            "srt://127.0.0.1:{lport}?streamid=#!::r=cam1,m=publish{}",
            srt_params(key_len, PASSPHRASE)
        ),
    )
    .timeout(30)
    .spawn();
    let mut conn = accept_cam1(&mut listener).await;
    let target: SocketAddr = ([127, 0, 0, 1], in_port).into();
    // srt-live-transmit is connected once our answer reached it, and drops input until then.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sender = udp_source(target, COUNT, 3);
    let got = recv_payloads(&mut conn, COUNT).await;
    sender.await.unwrap();
    assert_in_order(&got, COUNT);
    let stats = conn.stats().await.unwrap();
    assert_eq!(stats.packets_lost, 0);
    assert!(stats.rtt < Duration::from_millis(50), "rtt {:?}", stats.rtt);
}

per_key_size!(our_caller_to_their_listener => our_caller_to_libsrt_listener_plain, our_caller_to_libsrt_listener_aes128, our_caller_to_libsrt_listener_aes256);

per_key_size!(their_caller_to_our_listener => libsrt_caller_to_our_listener_plain, libsrt_caller_to_our_listener_aes128, libsrt_caller_to_our_listener_aes256);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_refused_by_libsrt_listener() {
    let srt_port = free_port();
    let peer = LiveTransmit::new(
        format!(
            "srt://127.0.0.1:{srt_port}?mode=listener{}",
            srt_params(Some(16), PASSPHRASE)
        ),
        format!("udp://127.0.0.1:{}", free_port()),
    )
    .timeout(10)
    .spawn();
    let addr: SocketAddr = ([127, 0, 0, 1], srt_port).into();
    assert_wrong_passphrase_refused(addr, 16).await;
    // Their side logs the refusal too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = peer.stderr();
    assert!(
        log.contains("BADSECRET") && log.contains("1010"),
        "srt-live-transmit said: {log}"
    );
}

async fn their_caller_rejected(
    hook_passphrase: Option<&'static str>,
    stream: &str,
    expect: &[&str],
    code: u32,
) {
    let listener = SrtListener::bind(
        ([127, 0, 0, 1], 0).into(),
        ListenerConfig::default(),
        move |req: &stadion_srt::ConnectRequest<'_>| {
            if req.stream_id.resource() == "forbidden" {
                AcceptDecision::Reject(reject::FORBIDDEN)
            } else {
                AcceptDecision::Accept {
                    passphrase: hook_passphrase.map(str::to_owned),
                    latency: None,
                }
            }
        },
    )
    .await
    .unwrap();
    let lport = listener.local_addr().port();
    let in_port = free_port();
    let mut peer = LiveTransmit::new(
        format!("udp://127.0.0.1:{in_port}"),
        format!(
            "srt://127.0.0.1:{lport}?streamid={stream}{}",
            srt_params(Some(16), PASSPHRASE)
        ),
    )
    .timeout(10)
    .spawn();
    // srt-live-transmit connects its output once input arrives.
    let in_addr: SocketAddr = ([127, 0, 0, 1], in_port).into();
    let feeding = Feeding::start(in_addr, Duration::from_millis(10), 400, payload);
    peer.exited(Duration::from_secs(8)).await;
    drop(feeding);
    let log = peer.stderr();
    assert!(
        expect.iter().any(|e| log.contains(e)),
        "srt-live-transmit said: {log}"
    );
    // Our side counted the same reason.
    let counted = listener.rejections().await;
    assert!(counted.get(&code).is_some_and(|&n| n >= 1), "{counted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_refused_by_our_listener() {
    their_caller_rejected(
        Some("another-passphrase"),
        "cam1",
        &["Incorrect passphrase"],
        reject::BADSECRET,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_id_rejected_by_our_listener() {
    their_caller_rejected(
        Some(PASSPHRASE),
        "#!::r=forbidden,m=request",
        &["Application-defined rejection reason"],
        reject::FORBIDDEN,
    )
    .await;
}
