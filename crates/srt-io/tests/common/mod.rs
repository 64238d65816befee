//! Shared helpers for tests against libsrt's `srt-live-transmit` and ffmpeg.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use stadion_srt::ConnectionConfig;
use stadion_srt_io::{SrtConnection, SrtError};

pub const PASSPHRASE: &str = "stadion-secret-42";

/// Fails the test with an actionable message when a peer program is missing.
pub fn require(bin: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` not found on PATH: install Debian's srt-tools and ffmpeg (scripts/test does)"
    );
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop, its stderr captured in a file.
pub struct Peer {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub fn spawn(bin: &str, args: &[String]) -> Peer {
        require(bin);
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Peer {
            child,
            stderr,
            _dir: dir,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits up to `limit` for the process to exit on its own.
    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn path(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Query parameters for libsrt URIs.
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

/// Test payload `i`: 1316 bytes (7 TS packets) whose content depends on `i`.
pub fn payload(i: u32) -> Bytes {
    let mut v = vec![0u8; 1316];
    v[..4].copy_from_slice(&i.to_be_bytes());
    let mut x = i.wrapping_mul(2_654_435_761).wrapping_add(1);
    for b in &mut v[4..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    Bytes::from(v)
}
