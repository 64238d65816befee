//! Shared helpers for tests against libsrt's `srt-live-transmit` and ffmpeg.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
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

/// An MPEG-TS file of `secs` seconds of ffmpeg's test pattern (MPEG-2 video, 25 fps).
pub fn make_ts(dir: &std::path::Path, secs: u32) -> PathBuf {
    require("ffmpeg");
    let path = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc=size=640x360:rate=25",
            "-t",
            &secs.to_string(),
        ])
        .args(["-c:v", "mpeg2video", "-b:v", "3M", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make the test stream");
    path
}

/// (codec name, decoded video frames) of a TS file, as ffprobe reads it.
pub fn probe(path: &std::path::Path) -> (String, u64) {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.trim().split(',');
    let codec = fields.next().unwrap_or_default().to_owned();
    let frames = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    (codec, frames)
}

/// Counters of a [`LossyRelay`].
#[derive(Debug, Default)]
pub struct RelayCounts {
    /// Data packets dropped on their first transmission (caller to listener).
    pub dropped_first_tx: std::sync::atomic::AtomicU64,
    /// All datagrams dropped, both ways.
    pub dropped: std::sync::atomic::AtomicU64,
}

/// A UDP relay between an SRT caller and listener that delays every datagram by `delay` and
/// drops a seeded-random `loss` fraction of the non-handshake ones in both directions.
pub struct LossyRelay {
    pub addr: SocketAddr,
    pub counts: std::sync::Arc<RelayCounts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LossyRelay {
    pub async fn start(target: SocketAddr, delay: Duration, loss: f64, seed: u64) -> LossyRelay {
        use rand::{Rng, SeedableRng};
        use std::sync::Arc;
        use std::sync::atomic::Ordering;
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = front.local_addr().unwrap();
        let counts = Arc::new(RelayCounts::default());
        let caller: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        for forward in [true, false] {
            let (from, to) = if forward {
                (front.clone(), back.clone())
            } else {
                (back.clone(), front.clone())
            };
            let counts = counts.clone();
            let seen = caller.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ u64::from(forward));
            // A constant delay keeps order, so one FIFO per direction suffices.
            let (tx, mut rx) =
                tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, src)) = from.recv_from(&mut buf).await {
                    let d = &buf[..n];
                    if forward {
                        *seen.lock().unwrap() = Some(src);
                    }
                    let handshake = n >= 4 && d[0] == 0x80 && d[1] == 0;
                    if !handshake && rng.random_bool(loss) {
                        counts.dropped.fetch_add(1, Ordering::Relaxed);
                        if forward && n >= 16 && d[0] & 0x80 == 0 && d[4] & 0x04 == 0 {
                            counts.dropped_first_tx.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    let _ = tx.send((tokio::time::Instant::now() + delay, d.to_vec()));
                }
            }));
            let caller = caller.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((at, d)) = rx.recv().await {
                    tokio::time::sleep_until(at).await;
                    let dest = if forward {
                        Some(target)
                    } else {
                        *caller.lock().unwrap()
                    };
                    if let Some(dest) = dest {
                        let _ = to.send_to(&d, dest).await;
                    }
                }
            }));
        }
        LossyRelay {
            addr,
            counts,
            tasks,
        }
    }

    pub fn dropped_first_tx(&self) -> u64 {
        self.counts
            .dropped_first_tx
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The last statistics record srt-live-transmit wrote with `-pf:json -f -statsout:<path>`.
pub fn last_libsrt_stats(path: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim().trim_end_matches(',')).ok())
}
