//! What the binary's end-to-end tests share: a real `stadion serve` on free loopback ports,
//! and the CLI pointed at it with a token.
#![allow(dead_code)] // each test binary uses its own part

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, passed or not.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `stadion serve` on SQLite in `data_dir`, its API and SRT ports free loopback ones, with
/// `admin_token` adopted as the first admin's; killed when dropped.
pub struct Serve {
    /// The API's base URL, for `STADION_SERVER`.
    pub url: String,
    pub http: u16,
    /// Where venue encoders publish over SRT.
    pub ingest: u16,
    /// Where broadcasters receive over SRT.
    pub receive: u16,
    _child: Guard,
}

impl Serve {
    /// Starts the server and waits (at most 20 s) until its API answers the admin.
    pub fn start(data_dir: &Path, admin_token: &str) -> Serve {
        let (http, ingest, receive) = (free_tcp_port(), free_udp_port(), free_udp_port());
        let child = Command::new(env!("CARGO_BIN_EXE_stadion"))
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{http}")])
            .args(["--srt-ingest", &format!("127.0.0.1:{ingest}")])
            .args(["--srt-receive", &format!("127.0.0.1:{receive}")])
            .env("STADION_ADMIN_TOKEN", admin_token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let serve = Serve {
            url: format!("http://127.0.0.1:{http}"),
            http,
            ingest,
            receive,
            _child: Guard(child),
        };
        let started = Instant::now();
        while !stadion(&serve.url, admin_token, &[], &["org", "list"])
            .status
            .success()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "serve did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        serve
    }
}

/// Runs the CLI against `server` with `token` and the extra environment `envs`.
pub fn stadion(server: &str, token: &str, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stadion"))
        .args(args)
        .env("STADION_TOKEN", token)
        .env("STADION_SERVER", server)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// Like [`stadion`], and asserts that it succeeded; its standard output.
pub fn ok_as(server: &str, token: &str, envs: &[(&str, &str)], args: &[&str]) -> String {
    let out = stadion(server, token, envs, args);
    assert!(
        out.status.success(),
        "stadion {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
