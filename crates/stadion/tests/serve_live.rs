//! `stadion serve` end to end, driven only through the binary's own CLI and real peers:
//! Debian's ffmpeg publishes a flow over SRT, a licensed broadcaster receives it with ffmpeg,
//! and ffprobe finds its video and audio; a wrong passphrase gets nothing.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "stn_servetestservetes_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok()
}

/// Kills the child when the test ends, passed or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stadion(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stadion"))
        .args(args)
        .env("STADION_TOKEN", TOKEN)
        .env("STADION_SERVER", server)
        .env("RHB_PASSPHRASE", "rhb-one-secret-01")
        .output()
        .unwrap()
}

fn ok(server: &str, args: &[&str]) -> String {
    let out = stadion(server, args);
    assert!(
        out.status.success(),
        "stadion {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn receive(port: u16, passphrase: &str, file: &Path) -> bool {
    let url = format!(
        "srt://127.0.0.1:{port}?streamid=#!::r=final,u=rhb-one&passphrase={passphrase}&timeout=3000000"
    );
    Command::new("timeout")
        .args([
            "15",
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            &url,
            "-t",
            "3",
            "-c",
            "copy",
        ])
        .arg(file)
        .status()
        .unwrap()
        .success()
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
    let (http, ingest, receive_port) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let server = format!("http://127.0.0.1:{http}");
    let _serve = Guard(
        Command::new(env!("CARGO_BIN_EXE_stadion"))
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--srt-ingest", &format!("127.0.0.1:{ingest}")])
            .args(["--srt-receive", &format!("127.0.0.1:{receive_port}")])
            .env("STADION_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while !stadion(&server, &["org", "list"]).status.success() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

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
    ok(
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
    let audit = ok(&server, &["audit", "--json"]);
    assert!(
        audit.contains("live.connect"),
        "the receiver's session is audited"
    );
}
