//! What srt-io's tests against libsrt and ffmpeg share beyond [`stadion_testkit`]: our side's
//! settings and a caller that waits for a peer program to come up.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use stadion_srt::{ConnectionConfig, StreamId, reject};
use stadion_srt_io::{SrtConnection, SrtError, SrtListener};
pub use stadion_testkit::*;

pub const PASSPHRASE: &str = "stadion-secret-42";

/// Query parameters for libsrt URIs: encryption with `key_len` bytes, or none.
pub fn srt_params(key_len: Option<usize>, passphrase: &str) -> String {
    match key_len {
        Some(k) => format!("&passphrase={passphrase}&pbkeylen={k}"),
        None => String::new(),
    }
}

pub fn our_config(key_len: Option<usize>, passphrase: &str) -> ConnectionConfig {
    ConnectionConfig {
        passphrase: key_len.map(|_| passphrase.to_owned()),
        key_len: key_len.unwrap_or(16),
        connect_timeout: Duration::from_millis(1500),
        ..ConnectionConfig::default()
    }
}

/// Connects, retrying while the peer program is still starting.
pub async fn connect_retry(
    addr: SocketAddr,
    config: ConnectionConfig,
) -> Result<SrtConnection, SrtError> {
    let mut last = None;
    for _ in 0..6 {
        match stadion_srt_io::connect(addr, config.clone()).await {
            Ok(c) => return Ok(c),
            Err(SrtError::ConnectTimeout) => last = Some(SrtError::ConnectTimeout),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap())
}

/// The next caller of `listener`, within 10 s; asserts that its stream ID names `cam1`.
pub async fn accept_cam1(listener: &mut SrtListener) -> SrtConnection {
    let conn = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the peer connects")
        .expect("the listener runs");
    let stream_id = conn.stream_id().map(StreamId::parse);
    assert!(
        stream_id
            .as_ref()
            .is_some_and(|s| s.as_ref().is_ok_and(|s| s.resource() == "cam1")),
        "stream ID {:?}",
        conn.stream_id()
    );
    conn
}

/// Connects to a peer with a passphrase it does not share; asserts that the peer refused
/// with `BADSECRET`.
pub async fn assert_wrong_passphrase_refused(addr: SocketAddr, key_len: usize) {
    let err = connect_retry(addr, our_config(Some(key_len), "not-the-right-one"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SrtError::Rejected {
                code: reject::BADSECRET,
                ..
            }
        ),
        "{err}"
    );
}

/// One test per key size (unencrypted, AES-128, AES-256), each running `$run(key_len)`.
#[macro_export]
macro_rules! per_key_size {
    ($run:ident => $plain:ident, $aes128:ident, $aes256:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $plain() {
            $run(None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $aes128() {
            $run(Some(16)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $aes256() {
            $run(Some(32)).await;
        }
    };
}

/// The ids of the payloads in `got` ([`payload_id`]).
pub fn ids(got: &[impl AsRef<[u8]>]) -> Vec<u32> {
    got.iter()
        .map(|g| payload_id(g.as_ref()).expect("a numbered payload"))
        .collect()
}

/// Asserts that `got` holds payloads 0..count in order, byte for byte.
pub fn assert_in_order(got: &[impl AsRef<[u8]>], count: u32) {
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.as_ref(), &payload(i as u32)[..], "payload {i} differs");
    }
    assert_eq!(
        got.len(),
        count as usize,
        "received {} of {count}",
        got.len()
    );
}

/// A live source into a peer's UDP input: payloads 0..count, `per_ms` per millisecond, then
/// short trailer datagrams for a while, as a live stream goes on: libsrt learns of a lost
/// last packet only from a later one.
pub fn udp_source(target: SocketAddr, count: u32, per_ms: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let source = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..count {
            source.send_to(&payload(i), target).await.unwrap();
            if i % per_ms == per_ms - 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        for _ in 0..100 {
            let _ = source.send_to(b"trailer", target).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Receives until `count` test payloads (1316 bytes; warm-up and trailer datagrams are
/// skipped) have come or nothing has for 3 s.
pub async fn recv_payloads(conn: &mut SrtConnection, count: u32) -> Vec<bytes::Bytes> {
    let mut got = Vec::new();
    while got.len() < count as usize {
        match tokio::time::timeout(Duration::from_secs(3), conn.recv()).await {
            Ok(Some(p)) if p.len() == 1316 => got.push(p),
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    got
}
