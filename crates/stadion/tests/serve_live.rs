//! `stadion serve` end to end, driven only through the binary's own CLI and real peers:
//! Debian's ffmpeg publishes a flow over SRT, a licensed broadcaster receives it with ffmpeg,
//! and ffprobe finds its video and audio; a wrong passphrase gets nothing; what was delivered
//! is in the sessions and usage reports, and revoking the licence cuts a receiver, on record.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Guard, Serve, ok_as};

const TOKEN: &str = "stn_servetestservetes_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH";
/// The environment every CLI call gets: the passphrase `licence create` reads for rhb-one.
const ENV: &[(&str, &str)] = &[("RHB_PASSPHRASE", "rhb-one-secret-01")];

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

fn ok(server: &str, args: &[&str]) -> String {
    ok_as(server, TOKEN, ENV, args)
}

/// An ffmpeg receiver of the flow as rhb-one, copying `seconds` of it into `file`.
fn receiver(port: u16, passphrase: &str, seconds: u32, file: &Path) -> Command {
    let url = format!(
        "srt://127.0.0.1:{port}?streamid=#!::r=final,u=rhb-one&passphrase={passphrase}&timeout=3000000"
    );
    let mut command = Command::new("timeout");
    command
        .args(["15", "ffmpeg", "-loglevel", "error", "-y", "-i", &url])
        .args(["-t", &seconds.to_string(), "-c", "copy"])
        .arg(file);
    command
}

fn receive(port: u16, passphrase: &str, file: &Path) -> bool {
    receiver(port, passphrase, 3, file)
        .status()
        .unwrap()
        .success()
}

/// `stadion <args> --json` as JSON.
fn json(server: &str, args: &[&str]) -> serde_json::Value {
    let args: Vec<_> = args.iter().copied().chain(["--json"]).collect();
    serde_json::from_str(&ok(server, &args)).unwrap()
}

/// Asks the sessions report until `done` holds for it (the node stores a session's end as
/// soon as it sees it, within a few hundred milliseconds); panics after 10 s.
fn sessions_until(
    server: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let sessions = json(server, &["sessions"]);
        let sessions = sessions.as_array().unwrap();
        if done(sessions) {
            return sessions.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sessions never got there: {sessions:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Prometheus text `serve` exposes at `/metrics` (plain HTTP/1.1, no client needed).
fn scrape_metrics(http: u16) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", http)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    response
}

/// The value of the first sample of `metric` whose labels contain `labels`.
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn codecs(file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_licensed_broadcaster_receives_what_an_encoder_publishes_through_serve() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: Debian's ffmpeg is not installed (./scripts/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), TOKEN);
    let (server, http, ingest, receive_port) =
        (serve.url.clone(), serve.http, serve.ingest, serve.receive);

    ok(&server, &["org", "create", "--name", "rhb-one"]);
    ok(
        &server,
        &[
            "flow",
            "create",
            "--name",
            "final",
            "--venue",
            "SdF",
            "--event-code",
            "ATH",
        ],
    );
    let transport = dir.path().join("transport.json");
    std::fs::write(
        &transport,
        r#"{"redundancy":"none","sources":[{"kind":"srt_listener","name":"main","passphrase":"venue-secret-0001"}]}"#,
    )
    .unwrap();
    ok(
        &server,
        &[
            "flow",
            "set-transport",
            "final",
            "--file",
            transport.to_str().unwrap(),
        ],
    );
    let licence = json(
        &server,
        &[
            "licence",
            "create",
            "--org",
            "rhb-one",
            "--flow",
            "final",
            "--from",
            "2020-01-01T00:00:00Z",
            "--until",
            "2099-01-01T00:00:00Z",
            "--network",
            "127.0.0.0/8",
            "--passphrase-env",
            "RHB_PASSPHRASE",
        ],
    );
    let licence = licence["id"].as_str().unwrap().to_owned();

    let publish_url = format!(
        "srt://127.0.0.1:{ingest}?streamid=#!::r=final,m=publish&passphrase=venue-secret-0001"
    );
    let _encoder = Guard(
        Command::new("ffmpeg")
            .args([
                "-loglevel",
                "error",
                "-re",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
            ])
            .args([
                "-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-c:a", "aac", "-f", "mpegts",
            ])
            .arg(&publish_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));

    let good = dir.path().join("good.ts");
    receive(receive_port, "rhb-one-secret-01", &good);
    let found = codecs(&good);
    assert!(
        found.contains("h264") && found.contains("aac"),
        "ffprobe found {found:?}"
    );

    let bad = dir.path().join("bad.ts");
    assert!(
        !receive(receive_port, "not-the-passphrase", &bad) || codecs(&bad).is_empty(),
        "a wrong passphrase must receive nothing"
    );
    // The good receiver's session is stored with what it got; the wrong passphrase failed
    // in the handshake and has none.
    let sessions = sessions_until(&server, |s| {
        s.len() == 1 && s[0]["disconnect_reason"] == "peer_closed"
    });
    assert!(
        sessions[0]["bytes"].as_u64().unwrap() > 10_000,
        "{sessions:?}"
    );
    let usage = json(&server, &["usage", "--org", "rhb-one", "--flow", "final"]);
    assert_eq!(usage[0]["bytes"], sessions[0]["bytes"], "{usage:?}");
    let audit = ok(&server, &["audit", "--json"]);
    assert!(!audit.contains("live.connect"), "usage is not audited");

    // The node's own added latency is on /metrics, per flow.
    let metrics = scrape_metrics(http);
    let delays = sample(
        &metrics,
        "stadion_live_node_delay_seconds_count",
        "flow=\"final\"",
    );
    assert!(delays.is_some_and(|n| n > 0.0), "{metrics}");
    let p99 = sample(
        &metrics,
        "stadion_live_node_delay_seconds",
        "quantile=\"0.99\"",
    )
    .unwrap();
    assert!((0.0..1.0).contains(&p99), "node delay p99 {p99} s");

    // Revoking during playback cuts the receiver and the session says why.
    let _playing = Guard(
        receiver(
            receive_port,
            "rhb-one-secret-01",
            20,
            &dir.path().join("cut.ts"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    sessions_until(&server, |s| {
        s.len() == 2 && s[0]["disconnected_at"].is_null()
    });
    std::thread::sleep(Duration::from_secs(1));
    ok(
        &server,
        &["licence", "revoke", &licence, "--reason", "test"],
    );
    let sessions = sessions_until(&server, |s| s[0]["disconnect_reason"] == "revoked");
    assert!(sessions[0]["bytes"].as_u64().unwrap() > 0, "{sessions:?}");
}
