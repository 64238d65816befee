//! End to end with real peers and the real control plane (SQLite): Debian's ffmpeg makes the
//! venue feed, libsrt's `srt-live-transmit` and ffmpeg are the broadcasters, the licences, the
//! audit log and the accounting (sessions, usage) live in `stadion-control`.
//!
//! The feed reaches the flow's bus as MPEG-TS over UDP (ffmpeg → UDP socket → bus), the way a
//! UDP source delivers it; what is under test here is everything from the bus to the
//! broadcaster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use stadion_control::ControlPlane;
use stadion_control::model::{Flow, LicenceState, OrgKind, Passphrase};
use stadion_control::store::{Actor, AuditFilter, NewLicence, Scope};
use stadion_control::usage::{ReceiverSession, SessionFilter, SessionKind, UsageFilter, UsageRow};
use stadion_live::access::InProcess;
use stadion_live::fanout::FlowBus;
use stadion_live::node::{LiveNode, NodeConfig, NodeHandle};
use stadion_live::output::push::{PushSpec, PushTarget};
use stadion_testkit::Peer;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use uuid::Uuid;

const FLOW: &str = "ath-100m-final";

struct Env {
    control: ControlPlane,
    node: NodeHandle,
    _live: LiveNode,
    bus: FlowBus,
    flow_id: Uuid,
    admin: Actor,
    _dir: tempfile::TempDir,
}

struct Licence {
    id: Uuid,
    passphrase: String,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("stadion.db").display());
        let control = ControlPlane::open(&url).await.unwrap();
        let admin = Actor("user/test-admin".into());
        // Built from JSON so that fields the control plane adds later take their defaults.
        let flow: Flow = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(),
            "name": FLOW,
            "description": "men's 100 m final, clean feed",
            "venue": "Stade de France",
            "event_code": "ATH-100M-M-FNL",
            "created_at": Utc::now(),
        }))
        .unwrap();
        let flow_id = control.store().create_flow(&admin, flow).await.unwrap().id;
        let port = Arc::new(InProcess::new(control.clone(), "test"));
        let config = NodeConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            usage_interval: Duration::from_millis(500),
            ..NodeConfig::default()
        };
        let live = LiveNode::start(port, config).await.unwrap();
        let node = live.handle();
        let bus = FlowBus::new(4096);
        node.attach_flow(FLOW, bus.clone()).await.unwrap();
        Env {
            control,
            node,
            _live: live,
            bus,
            flow_id,
            admin,
            _dir: dir,
        }
    }

    /// A rights holder with an encrypted licence for the flow valid in `[from, until)` (hours
    /// from now).
    async fn licence(&self, rhb: &str, hours: (i64, i64), max: u32, network: &str) -> Licence {
        self.licence_with(rhb, hours, max, network, true).await
    }

    async fn licence_with(
        &self,
        rhb: &str,
        hours: (i64, i64),
        max: u32,
        network: &str,
        encryption_required: bool,
    ) -> Licence {
        let org = self
            .control
            .store()
            .create_org(&self.admin, rhb, OrgKind::RightsHolder)
            .await
            .unwrap();
        let now = Utc::now();
        let passphrase = format!("{rhb}-passphrase-0123");
        let licence = self
            .control
            .create_licence(
                &self.admin,
                NewLicence {
                    org_id: org.id,
                    flow_id: self.flow_id,
                    valid_from: now + chrono::Duration::hours(hours.0),
                    valid_until: now + chrono::Duration::hours(hours.1),
                    max_concurrent_receivers: max,
                    allowed_networks: vec![network.parse().unwrap()],
                    encryption_required,
                    passphrase: Passphrase::new(passphrase.clone()).unwrap(),
                },
            )
            .await
            .unwrap();
        Licence {
            id: licence.id,
            passphrase,
        }
    }

    async fn rhb_without_licence(&self, rhb: &str) {
        self.control
            .store()
            .create_org(&self.admin, rhb, OrgKind::RightsHolder)
            .await
            .unwrap();
    }

    async fn audit(&self, action: &str) -> Vec<stadion_control::model::AuditEntry> {
        let filter = AuditFilter {
            action: Some(action.into()),
            limit: 1000,
            ..AuditFilter::default()
        };
        self.control.store().audit(&filter).await.unwrap()
    }

    /// The stored sessions of a licence, newest first.
    async fn sessions(&self, licence: Uuid) -> Vec<ReceiverSession> {
        let filter = SessionFilter {
            licence_id: Some(licence),
            limit: 100,
            ..SessionFilter::default()
        };
        self.control
            .store()
            .list_sessions(&filter, Scope::All)
            .await
            .unwrap()
    }

    /// The usage report (delivered volume per rights holder and flow).
    async fn usage(&self) -> Vec<UsageRow> {
        self.control
            .store()
            .usage_report(&UsageFilter::default(), Scope::All)
            .await
            .unwrap()
    }

    fn slt_url(&self, rhb: &str, passphrase: &str) -> String {
        let addr = self.node.listen_addr();
        format!(
            "srt://127.0.0.1:{}?streamid=#!::r={FLOW},u={rhb}&passphrase={passphrase}&pbkeylen=16",
            addr.port()
        )
    }
}

/// ffmpeg's test pattern and a 1 kHz tone as MPEG-TS over UDP into the flow's bus, in real time.
async fn ffmpeg_feed(bus: FlowBus) -> (Peer, JoinHandle<()>) {
    let socket = stadion_live::udp::bind_source("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let port = socket.local_addr().unwrap().port();
    let encoder = Peer::spawn(
        "ffmpeg",
        [
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-c:v",
            "mpeg2video",
            "-g",
            "12",
            "-b:v",
            "1M",
            "-c:a",
            "mp2",
            "-b:a",
            "128k",
            "-f",
            "mpegts",
            &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
        ],
    );
    let pump = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf).await {
            bus.publish(Instant::now(), Bytes::copy_from_slice(&buf[..n]));
        }
    });
    (encoder, pump)
}

/// A UDP socket the broadcaster's tool writes what it receives to.
async fn sink() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// `srt-live-transmit` receiving as `rhb` and forwarding to UDP `port`.
fn slt_receiver(env: &Env, rhb: &str, passphrase: &str, port: u16) -> Peer {
    Peer::spawn(
        "srt-live-transmit",
        [
            "-a:no".into(),
            "-t:30".into(),
            env.slt_url(rhb, passphrase),
            format!("udp://127.0.0.1:{port}"),
        ],
    )
}

/// Datagrams arriving on `socket` within `span`, with their arrival times.
async fn collect(socket: &UdpSocket, span: Duration) -> Vec<(Instant, usize)> {
    let end = Instant::now() + span;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = timeout(
        end.saturating_duration_since(Instant::now()),
        socket.recv(&mut buf),
    )
    .await
    {
        got.push((Instant::now(), n));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licensed_broadcaster_receives_video_and_audio_with_ffmpeg() {
    let env = Env::new().await;
    let licence = env.licence("rhb-one", (-1, 1), 2, "127.0.0.0/8").await;
    let (_encoder, _pump) = ffmpeg_feed(env.bus.clone()).await;
    let mut receiver = Peer::spawn(
        "ffmpeg",
        [
            "-hide_banner",
            "-nostats",
            "-loglevel",
            "warning",
            "-y",
            "-i",
            &env.slt_url("rhb-one", &licence.passphrase),
            "-t",
            "3",
            "-c",
            "copy",
            "-f",
            "mpegts",
            "received.ts",
        ],
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = receiver.wait(Duration::from_secs(20));
        (status, receiver)
    })
    .await
    .unwrap();
    let (exit, receiver) = status;
    assert!(
        exit.is_some_and(|s| s.success()),
        "ffmpeg receiver failed: {exit:?}\n{}",
        receiver.stderr()
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(receiver.dir().join("received.ts"))
        .output()
        .expect("ffprobe runs");
    let streams = String::from_utf8_lossy(&probe.stdout);
    let kinds: Vec<_> = streams
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .collect();
    assert!(kinds.contains(&"video"), "no video stream: {streams:?}");
    assert!(kinds.contains(&"audio"), "no audio stream: {streams:?}");

    let decisions = env.audit("access.decide").await;
    assert!(
        decisions
            .iter()
            .any(|e| e.decision == "allow" && e.licence_id == Some(licence.id)),
        "{decisions:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let sessions = env.sessions(licence.id).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session.flow_id, env.flow_id);
    assert_eq!(session.disconnect_reason.as_deref(), Some("peer_closed"));
    // Three seconds of the feed went out, whole payloads.
    assert!(session.bytes > 100_000, "{session:?}");
    assert!(session.packets * 1316 >= session.bytes, "{session:?}");
    let usage = env.usage().await;
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(
        (usage[0].org_name.as_str(), usage[0].flow_name.as_str()),
        ("rhb-one", FLOW)
    );
    assert_eq!(
        (
            usage[0].bytes,
            usage[0].packets,
            usage[0].sessions,
            usage[0].open_sessions
        ),
        (session.bytes, session.packets, 1, 0)
    );
    // The audit log keeps the access decisions, not the usage.
    assert!(env.audit("live.connect").await.is_empty());
}

/// Connects with libsrt itself (`tests/peers/libsrt_connect.py`) as `rhb` and returns what
/// libsrt reports: `connected` or `rejected <code>`.
async fn libsrt_connect(env: &Env, rhb: &str, passphrase: &str) -> String {
    stadion_testkit::require("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/libsrt_connect.py");
    let args = [
        script.to_owned(),
        "127.0.0.1".to_owned(),
        env.node.listen_addr().port().to_string(),
        format!("#!::r={FLOW},u={rhb}"),
        passphrase.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(args)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_reaches_libsrt_with_its_code_and_is_audited() {
    let env = Env::new().await;
    let one = env.licence("rhb-one", (-1, 1), 1, "127.0.0.0/8").await;
    let expired = env.licence("rhb-late", (-3, -1), 1, "127.0.0.0/8").await;
    let elsewhere = env.licence("rhb-far", (-1, 1), 1, "203.0.113.0/24").await;
    env.rhb_without_licence("rhb-none").await;
    let (_encoder, _pump) = ffmpeg_feed(env.bus.clone()).await;

    let cases = [
        ("rhb-none", one.passphrase.as_str(), "no_licence", 1404),
        ("rhb-late", expired.passphrase.as_str(), "expired", 1403),
        (
            "rhb-far",
            elsewhere.passphrase.as_str(),
            "source_network_not_allowed",
            1403,
        ),
    ];
    for (rhb, passphrase, reason, code) in cases {
        let seen = libsrt_connect(&env, rhb, passphrase).await;
        assert_eq!(seen, format!("rejected {code}"), "{rhb}");
        let decisions = env.audit("access.decide").await;
        assert!(
            decisions.iter().any(|e| e.decision == "deny"
                && e.subject.contains(rhb)
                && e.reason.starts_with(reason)),
            "{rhb}: no audited refusal {reason}: {decisions:?}"
        );
    }

    // A wrong passphrase fails SRT's key exchange: libsrt's SRT_REJ_BADSECRET (10).
    let seen = libsrt_connect(&env, "rhb-one", "not-the-passphrase").await;
    assert_eq!(seen, "rejected 10");

    // One receiver allowed: the first one plays, the second is refused with 1402.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (first_sink, first_port) = sink().await;
    let _first = slt_receiver(&env, "rhb-one", &one.passphrase, first_port);
    assert!(
        !collect(&first_sink, Duration::from_secs(2))
            .await
            .is_empty()
    );
    assert_eq!(
        libsrt_connect(&env, "rhb-one", &one.passphrase).await,
        "rejected 1402"
    );
    let decisions = env.audit("access.decide").await;
    assert!(
        decisions
            .iter()
            .any(|e| e.reason.starts_with("concurrency_exceeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_during_playback_cuts_that_broadcaster_within_a_second() {
    let env = Env::new().await;
    let one = env.licence("rhb-one", (-1, 1), 2, "127.0.0.0/8").await;
    let two = env.licence("rhb-two", (-1, 1), 2, "127.0.0.0/8").await;
    let (_encoder, _pump) = ffmpeg_feed(env.bus.clone()).await;
    let (sink_one, port_one) = sink().await;
    let (sink_two, port_two) = sink().await;
    let _rx_one = slt_receiver(&env, "rhb-one", &one.passphrase, port_one);
    let _rx_two = slt_receiver(&env, "rhb-two", &two.passphrase, port_two);
    // Both play.
    let (a, b) = tokio::join!(
        collect(&sink_one, Duration::from_secs(2)),
        collect(&sink_two, Duration::from_secs(2))
    );
    assert!(
        a.len() > 50 && b.len() > 50,
        "playing: {} and {}",
        a.len(),
        b.len()
    );
    let b_before: usize = b.iter().map(|(_, n)| n).sum();

    let revoked_at = Instant::now();
    env.control
        .set_licence_state(
            &env.admin,
            one.id,
            LicenceState::Revoked,
            "rights dispute".into(),
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        collect(&sink_one, Duration::from_secs(2)),
        collect(&sink_two, Duration::from_secs(2))
    );
    let last = a.last().map_or(Duration::ZERO, |(t, _)| *t - revoked_at);
    assert!(
        last < Duration::from_secs(1),
        "rhb-one still received {last:?} after revoking"
    );
    let b_bytes: usize = b.iter().map(|(_, n)| n).sum();
    // The other broadcaster keeps playing throughout, at the rate it had before.
    assert!(
        b_bytes * 10 > b_before * 7,
        "rhb-two got {b_bytes} bytes in the 2 s after the revocation, {b_before} before"
    );
    assert!(
        b.last()
            .is_some_and(|(t, _)| *t - revoked_at > Duration::from_millis(1800))
    );

    let status = env.node.status().await.unwrap();
    let rhbs: Vec<_> = status.flows[0]
        .receivers
        .iter()
        .map(|r| r.key.rhb.as_str())
        .collect();
    assert_eq!(rhbs, ["rhb-two"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cut = env.sessions(one.id).await;
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0].disconnect_reason.as_deref(), Some("revoked"));
    assert!(cut[0].bytes > 0 && cut[0].disconnected_at.is_some());
    let kept = env.sessions(two.id).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].disconnected_at, None);
    // Deliveries of the running session are stored every usage interval (500 ms here).
    assert!(kept[0].bytes > 0, "{kept:?}");
}

/// A broadcaster whose network stalls: its packets pile up in its own SRT send buffer (bounded,
/// dropped when too late and counted); a healthy broadcaster on the same flow loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broadcaster_never_holds_back_the_others() {
    let env = Env::new().await;
    let fast = env.licence("rhb-fast", (-1, 1), 1, "127.0.0.0/8").await;
    let slow = env.licence("rhb-slow", (-1, 1), 1, "127.0.0.0/8").await;
    let (sink_fast, port_fast) = sink().await;
    let (_sink_slow, port_slow) = sink().await;
    let _rx_fast = slt_receiver(&env, "rhb-fast", &fast.passphrase, port_fast);
    // The slow one reaches the node through a relay that stops forwarding after a second.
    let relay = StallingRelay::start(env.node.listen_addr(), Duration::from_secs(1)).await;
    let _rx_slow = Peer::spawn(
        "srt-live-transmit",
        &[
            "-a:no".into(),
            "-t:30".into(),
            format!(
                "srt://127.0.0.1:{}?streamid=#!::r={FLOW},u=rhb-slow&passphrase={}&pbkeylen=16",
                relay.port, slow.passphrase
            ),
            format!("udp://127.0.0.1:{port_slow}"),
        ],
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Numbered payloads at about 16 Mb/s for 3 s.
    let bus = env.bus.clone();
    let feeder = tokio::spawn(async move {
        for i in 0..4500u64 {
            let mut p = vec![0x47u8; 1316];
            p[1..9].copy_from_slice(&i.to_be_bytes());
            bus.publish(Instant::now(), Bytes::from(p));
            if i % 3 == 2 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Ok(Ok(n)) = timeout(Duration::from_secs(2), sink_fast.recv(&mut buf)).await {
        got.push(u64::from_be_bytes(buf[1..9].try_into().unwrap()));
        assert_eq!(n, 1316);
    }
    feeder.await.unwrap();
    assert_eq!(got.len(), 4500, "the healthy broadcaster lost payloads");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "out of order or gaps"
    );

    let status = env.node.status().await.unwrap();
    let slow_status = status.flows[0]
        .receivers
        .iter()
        .find(|r| r.key.rhb == "rhb-slow")
        .and_then(|r| r.srt.clone());
    // Either still connected with a bounded buffer and counted drops, or already timed out.
    if let Some(srt) = slow_status {
        assert!(
            srt.packets_send_dropped > 0 || srt.send_buffer_packets > 0,
            "{srt:?}"
        );
        assert!(srt.send_buffer_packets <= 8192, "{srt:?}");
    }
    drop(relay);
}

/// A UDP relay between a caller and the node that forwards both ways, then stops forwarding
/// towards the caller after `stall_after`: the caller's network has gone bad.
struct StallingRelay {
    port: u16,
    task: JoinHandle<()>,
}

impl StallingRelay {
    async fn start(node: SocketAddr, stall_after: Duration) -> StallingRelay {
        let outside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = outside.local_addr().unwrap().port();
        let inside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        inside.connect(node).await.unwrap();
        let task = tokio::spawn(async move {
            let mut caller: Option<SocketAddr> = None;
            let mut started: Option<Instant> = None;
            let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
            loop {
                tokio::select! {
                    Ok((n, from)) = outside.recv_from(&mut a) => {
                        caller = Some(from);
                        let _ = inside.send(&a[..n]).await;
                    }
                    Ok(n) = inside.recv(&mut b) => {
                        let started = *started.get_or_insert_with(Instant::now);
                        if let Some(c) = caller
                            && started.elapsed() < stall_after
                        {
                            let _ = outside.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        StallingRelay { port, task }
    }
}

impl Drop for StallingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_a_broadcasters_srt_listener_until_revoked() {
    let env = Env::new().await;
    let licence = env.licence("rhb-push", (-1, 1), 1, "127.0.0.0/8").await;
    let (_encoder, _pump) = ffmpeg_feed(env.bus.clone()).await;
    let (sink_socket, sink_port) = sink().await;
    let listen_port = stadion_testkit::free_port();
    let _their_listener = Peer::spawn(
        "srt-live-transmit",
        &[
            "-a:no".into(),
            format!(
                "srt://127.0.0.1:{listen_port}?mode=listener&passphrase={}&pbkeylen=16",
                licence.passphrase
            ),
            format!("udp://127.0.0.1:{sink_port}"),
        ],
    );
    let target = PushTarget::Srt {
        addr: ([127, 0, 0, 1], listen_port).into(),
        stream_id: None,
        latency_ms: 120,
    };
    env.node
        .add_push(PushSpec {
            flow: FLOW.into(),
            rhb: "rhb-push".into(),
            target,
        })
        .await
        .unwrap();
    let before = collect(&sink_socket, Duration::from_secs(3)).await;
    assert!(
        before.len() > 50,
        "push delivered {} datagrams",
        before.len()
    );
    let status = env.node.status().await.unwrap();
    let push = status.flows[0]
        .receivers
        .iter()
        .find(|r| r.key.rhb == "rhb-push")
        .expect("push in status");
    assert!(push.bytes > 0);

    let revoked_at = Instant::now();
    env.control
        .set_licence_state(&env.admin, licence.id, LicenceState::Revoked, "test".into())
        .await
        .unwrap();
    let after = collect(&sink_socket, Duration::from_secs(2)).await;
    let last = after
        .last()
        .map_or(Duration::ZERO, |(t, _)| *t - revoked_at);
    assert!(
        last < Duration::from_secs(1),
        "push still delivering {last:?} after revoking"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sessions = env.sessions(licence.id).await;
    assert!(
        sessions.iter().any(|s| s.kind == SessionKind::SrtPush
            && s.bytes > 0
            && s.disconnect_reason.as_deref() == Some("revoked")),
        "{sessions:?}"
    );
    // Retries after the revocation are refused by the control plane and audited as such.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let decisions = env.audit("access.decide").await;
    assert!(
        decisions
            .iter()
            .any(|e| e.licence_id == Some(licence.id) && e.reason.starts_with("revoked")),
        "{decisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_push_only_for_licences_that_allow_clear_delivery() {
    let env = Env::new().await;
    env.licence_with("rhb-clear", (-1, 1), 1, "127.0.0.0/8", false)
        .await;
    env.licence("rhb-secret", (-1, 1), 1, "127.0.0.0/8").await;
    let (_encoder, _pump) = ffmpeg_feed(env.bus.clone()).await;
    let (clear, clear_port) = sink().await;
    let (secret, secret_port) = sink().await;
    for (rhb, port) in [("rhb-clear", clear_port), ("rhb-secret", secret_port)] {
        let target = PushTarget::Udp {
            addr: ([127, 0, 0, 1], port).into(),
            ttl: 1,
        };
        env.node
            .add_push(PushSpec {
                flow: FLOW.into(),
                rhb: rhb.into(),
                target,
            })
            .await
            .unwrap();
    }
    let (got_clear, got_secret) = tokio::join!(
        collect(&clear, Duration::from_secs(2)),
        collect(&secret, Duration::from_secs(2))
    );
    assert!(
        got_clear.len() > 50,
        "clear push delivered {}",
        got_clear.len()
    );
    assert!(got_clear.iter().all(|(_, n)| n % 188 == 0));
    assert!(
        got_secret.is_empty(),
        "an encrypted licence was pushed in the clear"
    );
}
