//! Failover seen by a broadcaster: two ffmpeg encoders publish a flow over SRT, a licensed
//! rights holder receives it with libsrt's `srt-live-transmit` through the node's SRT listener,
//! and the main encoder is killed during playback. What the broadcaster received has no
//! continuity error and still carries video and audio.

mod ingest_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use ingest_support::{Received, ffprobe_codecs, flow, source, srt_publisher, wait_for};
use stadion_control::ControlPlane;
use stadion_control::model::{OrgKind, Passphrase};
use stadion_control::store::{Actor, NewLicence};
use stadion_live::access::InProcess;
use stadion_live::flow::{Flow, Redundancy, SourceState};
use stadion_live::node::{LiveNode, NodeConfig};
use stadion_live::source::SourceKind;
use stadion_live::source::srt::IngestListener;
use stadion_mpegts::tr101290::ErrorKind;
use stadion_testkit::Peer;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use uuid::Uuid;

const FLOW: &str = "ath-relay-final";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcaster_sees_no_continuity_error_when_the_main_encoder_dies() {
    // The control plane with the flow and one licensed rights holder.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stadion.db").display());
    let control = ControlPlane::open(&url).await.unwrap();
    let admin = Actor("user/test-admin".into());
    let record = stadion_control::model::Flow {
        id: Uuid::new_v4(),
        name: FLOW.into(),
        description: "4x100 m relay final, clean feed".into(),
        venue: "Stade de France".into(),
        event_code: "ATH-4X100-M-FNL".into(),
        created_at: Utc::now(),
        transport: None,
    };
    let flow_id = control
        .store()
        .create_flow(&admin, record)
        .await
        .unwrap()
        .id;
    let org = control
        .store()
        .create_org(&admin, "rhb-one", OrgKind::RightsHolder)
        .await
        .unwrap();
    let passphrase = "rhb-one-passphrase-0123";
    let now = Utc::now();
    control
        .create_licence(
            &admin,
            NewLicence {
                org_id: org.id,
                flow_id,
                valid_from: now - chrono::Duration::hours(1),
                valid_until: now + chrono::Duration::hours(1),
                max_concurrent_receivers: 2,
                allowed_networks: vec!["127.0.0.0/8".parse().unwrap()],
                encryption_required: true,
                passphrase: Passphrase::new(passphrase.into()).unwrap(),
            },
        )
        .await
        .unwrap();

    // The node: ingest listener, the failover flow, the broadcasters' listener.
    let ingest = Arc::new(
        IngestListener::bind("127.0.0.1:0".parse().unwrap(), Duration::from_millis(120))
            .await
            .unwrap(),
    );
    let srt_listener = |name: &str| {
        source(
            name,
            SourceKind::SrtListener {
                passphrase: Some(format!("{name}-venue-passphrase")),
            },
        )
    };
    let config = flow(
        FLOW,
        Redundancy::Failover,
        vec![srt_listener("main"), srt_listener("backup")],
    );
    let flow = Flow::start(config, Some(ingest.clone())).await.unwrap();
    let port = Arc::new(InProcess::new(control.clone(), "test"));
    let live = LiveNode::start(
        port,
        NodeConfig {
            listen: ([127, 0, 0, 1], 0).into(),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let node = live.handle();
    node.attach_flow(FLOW, flow.bus().clone()).await.unwrap();

    let publish = |name: &str, video: &str, tone: u32| {
        let passphrase = format!("{name}-venue-passphrase");
        srt_publisher(ingest.local_addr(), FLOW, name, &passphrase, video, tone)
    };
    let main = publish("main", "testsrc", 1000);
    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.sources[0].state == SourceState::Receiving
    })
    .await;
    assert_eq!(s.active.as_deref(), Some("main"), "{}", main.stderr());
    let backup = publish("backup", "testsrc2", 440);

    // The broadcaster: srt-live-transmit forwarding what it receives to a UDP socket here.
    let sink = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let receiver = Peer::spawn(
        "srt-live-transmit",
        &[
            "-a:no".into(),
            "-t:40".into(),
            format!(
                "srt://127.0.0.1:{}?streamid=#!::r={FLOW},u=rhb-one&passphrase={passphrase}&pbkeylen=16",
                node.listen_addr().port()
            ),
            format!("udp://127.0.0.1:{sink_port}"),
        ],
    );
    let got = Arc::new(Mutex::new(Received::default()));
    let into = got.clone();
    let collector = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(n) = sink.recv(&mut buf).await {
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            into.lock().await.chunks.push((Instant::now(), chunk));
        }
    });

    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.sources[1].state == SourceState::Receiving
    })
    .await;
    assert_eq!(
        s.sources[1].state,
        SourceState::Receiving,
        "{}",
        backup.stderr()
    );
    // Playback for two seconds, then the main encoder dies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = got.lock().await.chunks.len();
    assert!(
        before > 100,
        "the broadcaster receives: {}",
        receiver.stderr()
    );
    drop(main);
    let s = wait_for(&flow, Duration::from_secs(5), |s| s.switch_count > 0).await;
    assert_eq!(s.active.as_deref(), Some("backup"), "{:?}", s.switches);
    assert!(
        s.switches[0].silent_ms.is_some_and(|ms| ms < 200),
        "{:?}",
        s.switches
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(receiver);
    drop(backup);
    collector.abort();

    let got = got.lock().await;
    assert!(
        got.chunks.len() > before + 100,
        "the broadcaster kept receiving"
    );
    let m = got.monitor();
    assert_eq!(
        m.count(ErrorKind::ContinuityCount),
        0,
        "continuity errors at the broadcaster"
    );
    assert_eq!(
        m.count(ErrorKind::TsSyncLoss) + m.count(ErrorKind::SyncByte),
        0
    );
    assert!(
        got.longest_gap() < Duration::from_millis(500),
        "playback paused for {:?}",
        got.longest_gap()
    );
    assert_eq!(ffprobe_codecs(&got.bytes()), "aac,h264");
}
