//! Interop with ffmpeg's libsrt protocol in both roles, unencrypted, AES-128 and AES-256: a real
//! MPEG-TS stream, compared byte for byte and decoded by ffprobe; wrong passphrases and
//! rejected stream IDs as ffmpeg reports them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use stadion_srt::{AcceptDecision, ConnectRequest, ListenerConfig, reject};
use stadion_srt_io::SrtListener;
use tokio::time::timeout;

const SECS: u32 = 2;
const FRAMES: u64 = SECS as u64 * 25;

async fn listener(passphrase: Option<&'static str>) -> SrtListener {
    SrtListener::bind(
        ([127, 0, 0, 1], 0).into(),
        ListenerConfig::default(),
        move |req: &ConnectRequest<'_>| match req.stream_id.resource() {
            "cam1" => AcceptDecision::Accept {
                passphrase: passphrase.map(str::to_owned),
                latency: None,
            },
            _ => AcceptDecision::Reject(reject::FORBIDDEN),
        },
    )
    .await
    .unwrap()
}

fn srt_url(port: u16, query: &str, key_len: Option<usize>, passphrase: &str) -> String {
    format!(
        "srt://127.0.0.1:{port}?pkt_size=1316&latency=120000{query}{}",
        srt_params(key_len, passphrase)
    )
}

async fn ffmpeg_caller_to_our_listener(key_len: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let source = make_ts(dir.path(), SECS);
    let mut listener = listener(key_len.map(|_| PASSPHRASE)).await;
    let port = listener.local_addr().port();
    let sent = dir.path().join("sent.ts");
    // The tee muxer writes the very bytes it sends over SRT to `sent.ts` as well.
    let url = srt_url(port, "&streamid=#!::r=cam1,m=publish", key_len, PASSPHRASE);
    let _ffmpeg = ffmpeg_copy(
        &["-re"],
        &source.display().to_string(),
        &["-f", "tee"],
        &format!("[f=mpegts]{}|[f=mpegts]{url}", sent.display()),
    );
    let mut conn = accept_cam1(&mut listener).await;
    let mut got = Vec::new();
    // ffmpeg closes the connection when the file ends.
    while let Ok(Some(p)) = timeout(Duration::from_secs(5), conn.recv()).await {
        got.extend_from_slice(&p);
    }
    let received = dir.path().join("received.ts");
    std::fs::write(&received, &got).unwrap();
    let expected = std::fs::read(&sent).unwrap();
    assert!(!expected.is_empty());
    assert!(
        got == expected,
        "received {} bytes, ffmpeg sent {}",
        got.len(),
        expected.len()
    );
    assert_eq!(probe(&received), ("mpeg2video".to_owned(), FRAMES));
}

async fn our_caller_to_ffmpeg_listener(key_len: Option<usize>) {
    let dir = tempfile::tempdir().unwrap();
    let source = make_ts(dir.path(), SECS);
    let data = Bytes::from(std::fs::read(&source).unwrap());
    let out = dir.path().join("out.ts");
    let port = free_port();
    // `-f data` on both sides: ffmpeg stores the payload bytes exactly as they arrive.
    let mut ffmpeg = ffmpeg_copy(
        &["-f", "data"],
        &srt_url(port, "&mode=listener", key_len, PASSPHRASE),
        &["-f", "data"],
        &out.display().to_string(),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let conn = connect_retry(addr, our_config(key_len, PASSPHRASE))
        .await
        .expect("connect to ffmpeg");
    for (i, chunk) in data.chunks(1316).enumerate() {
        conn.send(data.slice_ref(chunk)).unwrap();
        if i % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Let TSBPD deliver the tail before the shutdown.
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.close();
    let status = ffmpeg.exited(Duration::from_secs(10)).await;
    assert!(status.is_some(), "ffmpeg did not end: {}", ffmpeg.stderr());
    let got = std::fs::read(&out).unwrap_or_default();
    assert!(
        got[..] == data[..],
        "ffmpeg wrote {} bytes of {}: {}",
        got.len(),
        data.len(),
        ffmpeg.stderr()
    );
    assert_eq!(probe(&out), ("mpeg2video".to_owned(), FRAMES));
}

per_key_size!(ffmpeg_caller_to_our_listener => ffmpeg_caller_to_our_listener_plain, ffmpeg_caller_to_our_listener_aes128, ffmpeg_caller_to_our_listener_aes256);

per_key_size!(our_caller_to_ffmpeg_listener => our_caller_to_ffmpeg_listener_plain, our_caller_to_ffmpeg_listener_aes128, our_caller_to_ffmpeg_listener_aes256);

/// Runs an ffmpeg caller that our listener must refuse; returns what ffmpeg printed.
async fn ffmpeg_refused(hook_passphrase: &'static str, stream_id: &str, code: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let source = make_ts(dir.path(), 1);
    let mut listener = listener(Some(hook_passphrase)).await;
    let port = listener.local_addr().port();
    let query = format!("&streamid={stream_id}");
    let mut ffmpeg = ffmpeg_copy(
        &["-f", "data"],
        &source.display().to_string(),
        &["-f", "data"],
        &srt_url(port, &query, Some(16), PASSPHRASE),
    );
    let status = ffmpeg.exited(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "ffmpeg should fail: {status:?}"
    );
    assert!(
        timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "a refused caller must not be accepted"
    );
    let counted = listener.rejections().await;
    assert!(counted.get(&code).is_some_and(|&n| n >= 1), "{counted:?}");
    ffmpeg.stderr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_from_ffmpeg_is_refused() {
    let log = ffmpeg_refused("another-passphrase", "cam1", reject::BADSECRET).await;
    assert!(log.contains("Incorrect passphrase"), "ffmpeg said: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_id_of_ffmpeg_is_rejected_with_our_code() {
    let log = ffmpeg_refused(PASSPHRASE, "#!::r=elsewhere,m=request", reject::FORBIDDEN).await;
    assert!(
        log.contains("Application-defined rejection reason") || log.contains("1403"),
        "ffmpeg said: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_to_ffmpeg_listener_is_refused() {
    let port = free_port();
    let _ffmpeg = Peer::spawn(
        "ffmpeg",
        &[
            "-hide_banner".into(),
            "-f".into(),
            "data".into(),
            "-i".into(),
            srt_url(port, "&mode=listener", Some(32), PASSPHRASE),
            "-f".into(),
            "data".into(),
            "-y".into(),
            "/dev/null".into(),
        ],
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert_wrong_passphrase_refused(addr, 32).await;
}
