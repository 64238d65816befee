//! Flows with real peers: Debian's ffmpeg publishes over SRT, serves SRT, and sends RTP; the
//! flow's output (its bus) is checked with our TR 101 290 monitor and with ffprobe.

mod ingest_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingest_support::{feed, ffprobe_codecs, flow, receive, source, srt_publisher, wait_for};
use rand::{Rng, SeedableRng};
use stadion_live::flow::{Flow, FlowError, Redundancy, SourceState};
use stadion_live::source::SourceKind;
use stadion_live::source::srt::IngestListener;
use stadion_mpegts::tr101290::ErrorKind;
use stadion_mpegts::{RtpPacket, TS_PACKET_SIZE};
use stadion_srt::ConnectionConfig;
use stadion_testkit::{Peer, free_port};
use tokio::net::UdpSocket;

fn state_name(s: &SourceState) -> &'static str {
    match s {
        SourceState::Waiting => "waiting",
        SourceState::Connected => "connected",
        SourceState::Receiving => "receiving",
        SourceState::Stalled => "stalled",
        SourceState::Disconnected { .. } => "disconnected",
        SourceState::Refused { .. } => "refused",
        SourceState::Failed { .. } => "failed",
    }
}

/// Two encoders publish one flow over SRT (main and backup, each with its passphrase); the main
/// encoder is killed. The backup takes over within 200 ms and the receiver's stream has no
/// continuity error at all: the switch rewrites the counters and joins each PID at a unit start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_main_srt_publisher_keeps_the_output_continuous() {
    let ingest = Arc::new(
        IngestListener::bind("127.0.0.1:0".parse().unwrap(), Duration::from_millis(120))
            .await
            .unwrap(),
    );
    let config = flow(
        "ath-100m",
        Redundancy::Failover,
        vec![
            source(
                "main",
                SourceKind::SrtListener {
                    passphrase: Some("main-passphrase-1".into()),
                },
            ),
            source(
                "backup",
                SourceKind::SrtListener {
                    passphrase: Some("backup-passphrase-2".into()),
                },
            ),
        ],
    );
    let flow = Flow::start(config, Some(ingest.clone())).await.unwrap();
    let got = receive(flow.bus().subscribe());
    let publish = |name: &str, passphrase: &str, video: &str, tone: u32| {
        srt_publisher(
            ingest.local_addr(),
            "ath-100m",
            name,
            passphrase,
            video,
            tone,
        )
    };
    // The main encoder goes on air first (a backup alone at start-up would take the air
    // after the stall timeout, and the flow would return to the main one only after the
    // recovery period).
    let main = publish("main", "main-passphrase-1", "testsrc", 1000);
    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.sources[0].state == SourceState::Receiving
    })
    .await;
    assert_eq!(
        s.active.as_deref(),
        Some("main"),
        "{:?}\n{}",
        s.sources,
        main.stderr()
    );
    let backup = publish("backup", "backup-passphrase-2", "testsrc2", 440);

    // Both receiving, the main one on air, for a few seconds.
    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.sources
            .iter()
            .all(|x| x.state == SourceState::Receiving && x.ts_packets > 2000)
    })
    .await;
    assert!(
        s.sources.iter().all(|x| x.state == SourceState::Receiving),
        "sources: {:?}\nmain: {}\nbackup: {}",
        s.sources,
        main.stderr(),
        backup.stderr()
    );
    assert_eq!(s.active.as_deref(), Some("main"));
    assert_eq!(s.switch_count, 0, "{:?}", s.switches);
    assert!(s.sources[0].peer.is_some());
    let before_kill = got.lock().await.chunks.len();
    assert!(before_kill > 0);

    drop(main); // SIGKILL: no SRT shutdown, the packets just stop.
    let s = wait_for(&flow, Duration::from_secs(5), |s| s.switch_count > 0).await;
    let switch = s.switches.first().expect("the flow switched");
    assert_eq!(
        (switch.from.as_str(), switch.to.as_str()),
        ("main", "backup")
    );
    assert_eq!(switch.reason, "stalled");
    // Two independent encoders: a cold join, even though both muxers write many packets
    // alike (PSI, x264's CBR filler).
    assert!(!switch.seamless, "two encoders: a cold join");
    let silent = switch.silent_ms.unwrap();
    assert!(
        silent < 200,
        "switched {silent} ms after the main source went quiet"
    );
    assert_eq!(s.active.as_deref(), Some("backup"));

    // Two more seconds on the backup.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = flow.status().await.unwrap();
    assert_eq!(
        state_name(&s.sources[0].state),
        "stalled",
        "{:?}",
        s.sources[0]
    );
    assert_eq!(s.sources[0].bitrate, 0);
    assert!(s.sources[1].bitrate > 100_000, "{:?}", s.sources[1]);
    assert_eq!(s.switch_count, 1, "no flapping: {:?}", s.switches);
    drop(backup);

    let got = got.lock().await;
    assert!(got.chunks.len() > before_kill + 100);
    let m = got.monitor();
    assert_eq!(
        m.count(ErrorKind::ContinuityCount),
        0,
        "continuity errors at the receiver"
    );
    assert_eq!(
        m.count(ErrorKind::TsSyncLoss) + m.count(ErrorKind::SyncByte),
        0
    );
    assert_eq!(s.output.tr101290.count(ErrorKind::ContinuityCount), 0);
    assert!(
        got.longest_gap() < Duration::from_millis(400),
        "output paused for {:?}",
        got.longest_gap()
    );
    assert_eq!(ffprobe_codecs(&got.bytes()), "aac,h264");
}

/// Publishers that name no flow, the wrong mode or the wrong passphrase are refused in the
/// handshake with the matching code.
#[tokio::test]
async fn srt_publishers_are_refused_with_the_matching_code() {
    let ingest = Arc::new(
        IngestListener::bind("127.0.0.1:0".parse().unwrap(), Duration::from_millis(120))
            .await
            .unwrap(),
    );
    let config = flow(
        "swim",
        Redundancy::Failover,
        vec![source(
            "main",
            SourceKind::SrtListener {
                passphrase: Some("swim-passphrase".into()),
            },
        )],
    );
    let _flow = Flow::start(config.clone(), Some(ingest.clone()))
        .await
        .unwrap();
    // A second flow of the same name cannot take its publishers.
    assert!(matches!(
        Flow::start(config, Some(ingest.clone())).await,
        Err(FlowError::NameTaken { .. })
    ));
    let call = |stream_id: &str, passphrase: Option<&str>| {
        let config = ConnectionConfig {
            stream_id: Some(stream_id.into()),
            passphrase: passphrase.map(str::to_owned),
            connect_timeout: Duration::from_secs(3),
            ..ConnectionConfig::default()
        };
        stadion_srt_io::connect(ingest.local_addr(), config)
    };
    let code = |r: Result<_, stadion_srt_io::SrtError>| match r {
        Err(stadion_srt_io::SrtError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert_eq!(
        code(call("#!::r=diving,m=publish", Some("swim-passphrase")).await),
        stadion_srt::reject::NOT_FOUND
    );
    assert_eq!(
        code(call("#!::r=swim", Some("swim-passphrase")).await),
        stadion_live::source::srt::REJECT_BAD_MODE
    );
    assert_eq!(
        code(call("#!::r=swim,m=publish", Some("wrong-passphrase")).await),
        stadion_srt::reject::BADSECRET
    );
    let ok = call("#!::r=swim,m=publish", Some("swim-passphrase"))
        .await
        .unwrap();
    // One publisher per source.
    assert_eq!(
        code(call("#!::r=swim,m=publish,u=main", Some("swim-passphrase")).await),
        stadion_srt::reject::CONFLICT
    );
    drop(ok);
}

/// 2022-7: ffmpeg sends RTP; a forwarder copies every datagram onto two paths, dropping a
/// different random 2 % on each (never the same datagram on both) and sending path B one
/// datagram late. The merged output has every packet: byte for byte what ffmpeg sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_of_two_paths_with_different_2_percent_losses_loses_nothing() {
    let (port_a, port_b) = (free_port(), free_port());
    let rtp = |port: u16| SourceKind::Rtp {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        interface: None,
    };
    let config = flow(
        "ath-merge",
        Redundancy::Merge,
        vec![source("a", rtp(port_a)), source("b", rtp(port_b))],
    );
    let flow = Flow::start(config, None).await.unwrap();
    let got = receive(flow.bus().subscribe());

    let ingress = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ffmpeg_to = ingress.local_addr().unwrap();
    let out = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (ffmpeg_done, mut ffmpeg_exited) = tokio::sync::oneshot::channel::<()>();
    let forwarder = tokio::spawn(async move {
        let mut rng = rand::rngs::StdRng::seed_from_u64(20227);
        let (mut sent, mut lost_a, mut lost_b) = (Vec::new(), 0u32, 0u32);
        let mut late_b: Option<Vec<u8>> = None;
        let mut buf = vec![0u8; 2048];
        let mut draining = false;
        loop {
            // Once ffmpeg has exited, what is still queued is taken, then the forwarder ends.
            let n = tokio::select! {
                r = tokio::time::timeout(Duration::from_millis(200), ingress.recv(&mut buf)) => match r {
                    Ok(r) => r.unwrap(),
                    Err(_) if draining => break,
                    Err(_) => continue,
                },
                _ = &mut ffmpeg_exited, if !draining => {
                    draining = true;
                    continue;
                }
            };
            let datagram = buf[..n].to_vec();
            let roll: f64 = rng.random();
            if roll >= 0.02 {
                out.send_to(&datagram, ("127.0.0.1", port_a)).await.unwrap();
            } else {
                lost_a += 1;
            }
            if let Some(previous) = late_b.take() {
                out.send_to(&previous, ("127.0.0.1", port_b)).await.unwrap();
            }
            if (0.02..0.04).contains(&roll) {
                lost_b += 1;
            } else {
                late_b = Some(datagram.clone());
            }
            sent.push(datagram);
        }
        if let Some(previous) = late_b {
            out.send_to(&previous, ("127.0.0.1", port_b)).await.unwrap();
        }
        (sent, lost_a, lost_b)
    });
    let mut args = feed(6, "testsrc", 1000);
    args.extend(["-f", "rtp_mpegts", &format!("rtp://{ffmpeg_to}")].map(String::from));
    let mut ffmpeg = Peer::spawn("ffmpeg", &args);
    let ffmpeg = tokio::task::spawn_blocking(move || {
        let status = ffmpeg.wait(Duration::from_secs(60));
        let _ = ffmpeg_done.send(());
        (status, ffmpeg)
    });
    let (sent, lost_a, lost_b) = forwarder.await.unwrap();
    let (status, ffmpeg) = ffmpeg.await.unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", ffmpeg.stderr());
    let n = sent.len() as u64;
    assert!(n > 1000, "ffmpeg sent {n} datagrams");
    // About 2 % each, and the drops were real.
    for lost in [lost_a, lost_b] {
        assert!(
            (n / 100..n / 25).contains(&u64::from(lost)),
            "lost {lost} of {n}"
        );
    }

    let delivered = 2 * n - u64::from(lost_a + lost_b);
    let s = wait_for(&flow, Duration::from_secs(3), |s| {
        let paths: u64 = s
            .sources
            .iter()
            .filter_map(|x| x.rtp.as_ref())
            .map(|p| p.packets)
            .sum();
        // Each path's losses settle a recovery window after their packets went out.
        let settled = s
            .sources
            .iter()
            .filter_map(|x| x.rtp.as_ref())
            .map(|p| p.lost.saturating_sub(p.late))
            .eq([u64::from(lost_a), u64::from(lost_b)]);
        s.merge.as_ref().is_some_and(|m| m.packets == n) && paths == delivered && settled
    })
    .await;
    let merge = s.merge.clone().unwrap();
    assert_eq!((merge.packets, merge.lost), (n, 0), "{s:#?}");
    let (a, b) = (
        s.sources[0].rtp.clone().unwrap(),
        s.sources[1].rtp.clone().unwrap(),
    );
    assert_eq!(a.packets, n - u64::from(lost_a));
    assert_eq!(b.packets, n - u64::from(lost_b));
    // Every packet one path lost, the other delivered: all recovered, none lost on both. A
    // copy that came after the recovery window (a busy machine) counts as lost on its path.
    for (path, dropped) in [(&a, lost_a), (&b, lost_b)] {
        let lost = u64::from(dropped) + path.late;
        assert_eq!(
            (path.lost, path.recovered_from_other),
            (lost, lost),
            "{s:#?}"
        );
    }
    assert!(
        s.sources
            .iter()
            .all(|x| x.tr101290.count(ErrorKind::ContinuityCount) > 0)
    );

    let expected: Vec<u8> = sent
        .iter()
        .flat_map(|d| RtpPacket::parse(d).unwrap().payload.to_vec())
        .collect();
    let got = got.lock().await;
    let output = got.bytes();
    assert_eq!(output.len(), expected.len());
    assert!(output == expected, "the merged output is what ffmpeg sent");
    assert_eq!(got.monitor().count(ErrorKind::ContinuityCount), 0);
    assert_eq!(s.output.tr101290.count(ErrorKind::ContinuityCount), 0);
    assert_eq!(ffprobe_codecs(&output), "aac,h264");
}

/// A UDP source that carries something other than 188-byte-aligned TS is refused: nothing
/// reaches the output, and the status says why. Aligned TS afterwards is taken again.
#[tokio::test]
async fn a_udp_source_with_unaligned_payloads_is_refused_with_the_reason() {
    let port = free_port();
    let config = flow(
        "refuse",
        Redundancy::Failover,
        vec![source(
            "main",
            SourceKind::Udp {
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                interface: None,
            },
        )],
    );
    let flow = Flow::start(config.clone(), None).await.unwrap();
    let mut bus = flow.bus().subscribe();
    // The port is taken: a second flow on it is refused, naming the source and address.
    let e = Flow::start(config, None).await.unwrap_err();
    assert!(matches!(e, FlowError::Bind { .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..5 {
        // 204-byte packets (TS with Reed-Solomon parity) are not 188-aligned.
        let mut datagram = vec![0u8; 7 * 204];
        for p in datagram.chunks_mut(204) {
            p[0] = 0x47;
        }
        sender
            .send_to(&datagram, ("127.0.0.1", port))
            .await
            .unwrap();
    }
    let s = wait_for(&flow, Duration::from_secs(3), |s| {
        s.sources[0].refused_payloads == 5
    })
    .await;
    let SourceState::Refused { reason } = &s.sources[0].state else {
        panic!("not refused: {:?}", s.sources[0]);
    };
    assert!(reason.contains("not 188-byte-aligned MPEG-TS"), "{reason}");
    assert!(reason.contains("1428 bytes"), "{reason}");
    assert_eq!(s.output.ts_packets, 0);

    let mut ts = vec![0xFFu8; 7 * TS_PACKET_SIZE];
    for p in ts.chunks_mut(TS_PACKET_SIZE) {
        p[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
    }
    sender.send_to(&ts, ("127.0.0.1", port)).await.unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(3), bus.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chunk.payload.len(), ts.len());
    let s = flow.status().await.unwrap();
    assert_eq!(s.sources[0].state, SourceState::Receiving);
}

/// The node calls a venue's SRT listener (ffmpeg in listener mode) and receives its feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srt_caller_source_pulls_from_a_venue_listener() {
    let port = free_port();
    let mut args = feed(30, "testsrc", 1000);
    args.extend(
        [
            "-f",
            "mpegts",
            "-passphrase",
            "venue-passphrase",
            &format!("srt://127.0.0.1:{port}?mode=listener"),
        ]
        .map(String::from),
    );
    let venue = Peer::spawn("ffmpeg", &args);
    let config = flow(
        "pull",
        Redundancy::Failover,
        vec![source(
            "venue",
            SourceKind::SrtCaller {
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                stream_id: None,
                passphrase: Some("venue-passphrase".into()),
                latency_ms: Some(200),
            },
        )],
    );
    // The caller retries until ffmpeg's listener is up.
    let flow = Flow::start(config, None).await.unwrap();
    let got = receive(flow.bus().subscribe());
    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.output.ts_packets > 3000
    })
    .await;
    assert_eq!(
        s.sources[0].state,
        SourceState::Receiving,
        "{:?}\n{}",
        s.sources,
        venue.stderr()
    );
    assert_eq!(
        s.sources[0].peer,
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    );
    assert!(s.sources[0].bitrate > 50_000, "{:?}", s.sources[0]);
    drop(venue);
    let got = got.lock().await;
    assert_eq!(got.monitor().count(ErrorKind::ContinuityCount), 0);
    assert_eq!(ffprobe_codecs(&got.bytes()), "aac,h264");
}

/// A multicast UDP source: ffmpeg sends MPEG-TS to a group on the loopback interface; the
/// flow joins the group there and passes the feed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multicast_udp_source_receives_an_ffmpeg_feed() {
    let port = free_port();
    let group = std::net::Ipv4Addr::new(239, 255, 77, (port % 250) as u8 + 1);
    let config = flow(
        "mcast",
        Redundancy::Failover,
        vec![source(
            "main",
            SourceKind::Udp {
                address: SocketAddr::from((group, port)),
                interface: Some(std::net::Ipv4Addr::LOCALHOST),
            },
        )],
    );
    let flow = Flow::start(config, None).await.unwrap();
    let got = receive(flow.bus().subscribe());
    let mut args = feed(4, "testsrc", 1000);
    args.extend(
        [
            "-f",
            "mpegts",
            &format!("udp://{group}:{port}?localaddr=127.0.0.1&pkt_size=1316&ttl=1"),
        ]
        .map(String::from),
    );
    let encoder = Peer::spawn("ffmpeg", &args);
    let s = wait_for(&flow, Duration::from_secs(20), |s| {
        s.output.ts_packets > 2000
    })
    .await;
    assert_eq!(
        s.sources[0].state,
        SourceState::Receiving,
        "{:?}\n{}",
        s.sources,
        encoder.stderr()
    );
    assert!(s.sources[0].bitrate > 1_000_000, "{:?}", s.sources[0]);
    let got = got.lock().await;
    assert_eq!(got.monitor().count(ErrorKind::ContinuityCount), 0);
    assert_eq!(ffprobe_codecs(&got.bytes()), "aac,h264");
}
