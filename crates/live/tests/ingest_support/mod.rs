//! What the ingest tests share: the ffmpeg test feed, flow configs, and a receiver of a flow's
//! bus with the checks made on what it got.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stadion_live::fanout::BusReceiver;
use stadion_live::flow::{
    FailoverSettings, Flow, FlowConfig, FlowStatus, MergeSettings, Redundancy,
};
use stadion_live::source::{SourceConfig, SourceKind};
use stadion_mpegts::Tr101290Monitor;
use tokio::sync::Mutex;

use stadion_testkit::Peer;

/// ffmpeg arguments for a real-time 320x240 H.264 (2 Mb/s CBR) + AAC test feed of `seconds`.
pub fn feed(seconds: u32, video: &str, tone: u32) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-v", "error"]
        .map(String::from)
        .to_vec();
    for input in [
        format!("{video}=size=320x240:rate=25"),
        format!("sine=frequency={tone}:sample_rate=48000"),
    ] {
        args.extend(["-re", "-f", "lavfi", "-i"].map(String::from));
        args.push(input);
    }
    args.extend(
        [
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
            // Constant 2 Mb/s, as contribution feeds are (x264 pads with filler).
            "-b:v",
            "2M",
            "-minrate",
            "2M",
            "-maxrate",
            "2M",
            "-bufsize",
            "1M",
            "-x264-params",
            "nal-hrd=cbr",
            "-c:a",
            "aac",
        ]
        .map(String::from),
    );
    args
}

pub fn source(name: &str, kind: SourceKind) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        kind,
    }
}

pub fn flow(name: &str, redundancy: Redundancy, sources: Vec<SourceConfig>) -> FlowConfig {
    FlowConfig {
        name: name.into(),
        redundancy,
        sources,
        failover: FailoverSettings::default(),
        merge: MergeSettings::default(),
    }
}

/// What a receiver of the flow got: every chunk with its receive time.
#[derive(Default)]
pub struct Received {
    pub chunks: Vec<(Instant, Bytes)>,
}

impl Received {
    pub fn bytes(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|(_, b)| b.to_vec()).collect()
    }

    /// Our monitor over the output, fed as it arrived.
    pub fn monitor(&self) -> Tr101290Monitor {
        let mut m = Tr101290Monitor::default();
        for (at, b) in &self.chunks {
            m.feed(*at, b);
        }
        m
    }

    /// The longest pause between two chunks.
    pub fn longest_gap(&self) -> Duration {
        self.chunks
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default()
    }
}

/// Collects the bus into `Received` until the flow stops or the task is dropped.
pub fn receive(mut bus: BusReceiver) -> Arc<Mutex<Received>> {
    let got = Arc::new(Mutex::new(Received::default()));
    let into = got.clone();
    tokio::spawn(async move {
        while let Some(chunk) = bus.next().await {
            into.lock()
                .await
                .chunks
                .push((Instant::now(), chunk.payload));
        }
    });
    got
}

/// Polls the flow's status until `done` holds or `limit` passes; returns the last status.
pub async fn wait_for(
    flow: &Flow,
    limit: Duration,
    done: impl Fn(&FlowStatus) -> bool,
) -> FlowStatus {
    let deadline = Instant::now() + limit;
    loop {
        let s = flow.status().await.expect("flow runs");
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The codecs ffprobe finds in a TS file, sorted, each once.
pub fn ffprobe_codecs(ts: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ts");
    std::fs::write(&path, ts).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let mut codecs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    codecs.sort();
    codecs.dedup();
    codecs.join(",")
}

/// An ffmpeg encoder publishing a 30 s feed to the ingest listener at `listener` as source
/// `name` of `flow`.
pub fn srt_publisher(
    listener: SocketAddr,
    flow: &str,
    name: &str,
    passphrase: &str,
    video: &str,
    tone: u32,
) -> Peer {
    let mut args = feed(30, video, tone);
    args.extend(
        [
            "-f",
            "mpegts",
            "-srt_streamid",
            &format!("#!::r={flow},m=publish,u={name}"),
            "-passphrase",
            passphrase,
            &format!("srt://{listener}"),
        ]
        .map(String::from),
    );
    Peer::spawn("ffmpeg", &args)
}
