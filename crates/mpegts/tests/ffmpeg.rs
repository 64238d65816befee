//! Against Debian's ffmpeg: the monitor on real ffmpeg streams with injected faults, and the
//! failover switch's output checked by our monitor and by ffmpeg's own decoder.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stadion_mpegts::tr101290::ErrorKind;
use stadion_mpegts::{
    FailoverConfig, FailoverSwitch, Source, StreamKind, SwitchReason, TS_PACKET_SIZE,
    Tr101290Monitor, TsPacket,
};

/// The stream's constant mux rate: arrival time of a packet is its byte position at this rate.
const MUXRATE: u64 = 2_000_000;

/// 10 s of 320x240 H.264 + AAC at a constant 2 Mb/s, made once per test binary.
fn stream() -> &'static [u8] {
    static STREAM: OnceLock<Vec<u8>> = OnceLock::new();
    STREAM.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.ts");
        encode(&path, "testsrc", 1000, &[]);
        std::fs::read(path).expect("read stream")
    })
}

/// Ten seconds of a lavfi test pattern with a tone, H.264 + AAC in a 2 Mb/s CBR transport
/// stream; `extra` goes to the muxer.
fn encode(path: &std::path::Path, pattern: &str, tone_hz: u32, extra: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{pattern}=size=320x240:rate=25"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={tone_hz}:sample_rate=48000"))
        .args([
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
        ])
        .args(["-c:a", "aac", "-f", "mpegts", "-muxrate", "2000k"])
        .args(extra)
        .arg(path)
        .status()
        .expect("ffmpeg runs (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg failed");
}

fn arrival(index: usize) -> Duration {
    Duration::from_nanos((index * TS_PACKET_SIZE) as u64 * 8 * 1_000_000_000 / MUXRATE)
}

/// The packets of the stream with their arrival offsets.
fn packets() -> Vec<(Duration, [u8; TS_PACKET_SIZE])> {
    stream()
        .chunks_exact(TS_PACKET_SIZE)
        .enumerate()
        .map(|(i, p)| (arrival(i), p.try_into().unwrap()))
        .collect()
}

fn pid(p: &[u8; TS_PACKET_SIZE]) -> u16 {
    u16::from_be_bytes([p[1] & 0x1F, p[2]])
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
const PMT: u16 = 0x1000;

/// Feeds (possibly edited) packets in 7-packet datagrams at their arrival times.
fn monitor(packets: &[(Duration, [u8; TS_PACKET_SIZE])]) -> Tr101290Monitor {
    let t0 = Instant::now();
    let mut m = Tr101290Monitor::default();
    for chunk in packets.chunks(7) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|(_, p)| *p).collect();
        m.feed(t0 + chunk[0].0, &bytes);
    }
    m
}

fn errors(m: &Tr101290Monitor) -> Vec<(&'static str, u64)> {
    ErrorKind::ALL
        .iter()
        .filter(|&&k| m.count(k) > 0)
        .map(|&k| (k.name(), m.count(k)))
        .collect()
}

/// Index of the first packet of `pid` after `at` matching `pred`.
fn find(
    ps: &[(Duration, [u8; 188])],
    at: f64,
    pid_: u16,
    pred: impl Fn(&TsPacket<'_>) -> bool,
) -> usize {
    ps.iter()
        .position(|(t, p)| *t >= secs(at) && pid(p) == pid_ && pred(&TsPacket::parse(p).unwrap()))
        .expect("such a packet")
}

fn plain(p: &TsPacket<'_>) -> bool {
    !p.header.payload_unit_start && p.adaptation.is_none()
}

#[test]
fn ffmpeg_stream_is_clean_and_understood() {
    let m = monitor(&packets());
    assert_eq!(errors(&m), vec![]);
    let pmt = &m.pmts()[&PMT];
    let kinds: Vec<(u16, StreamKind)> = pmt.streams.iter().map(|s| (s.pid, s.kind())).collect();
    assert_eq!(
        kinds,
        vec![(VIDEO, StreamKind::H264), (AUDIO, StreamKind::AdtsAac)]
    );
    assert_eq!(pmt.pcr_pid, VIDEO);
    let rate = m.bitrate();
    assert!(
        (1_990_000..=2_010_000).contains(&rate),
        "total bitrate {rate}"
    );
    assert!(m.pid(VIDEO).unwrap().bitrate > 100_000);
}

#[test]
fn dropped_packet_is_one_continuity_error() {
    let mut ps = packets();
    let i = find(&ps, 3.0, VIDEO, plain);
    ps.remove(i);
    let m = monitor(&ps);
    assert_eq!(errors(&m), vec![("Continuity_count_error", 1)]);
    assert_eq!(m.pid_count(VIDEO, ErrorKind::ContinuityCount), 1);
}

#[test]
fn corrupted_sync_bytes() {
    let mut ps = packets();
    let i = find(&ps, 2.0, VIDEO, plain);
    ps[i].1[0] = 0x46;
    let m = monitor(&ps);
    assert_eq!(errors(&m), vec![("Sync_byte_error", 1)]);

    // Two in a row lose sync; the second packet is lost to the receiver.
    let mut ps = packets();
    let i = (0..ps.len())
        .find(|&i| ps[i].0 >= secs(5.0) && [i, i + 1].iter().all(|&j| pid(&ps[j].1) == VIDEO))
        .unwrap();
    ps[i].1[0] = 0;
    ps[i + 1].1[0] = 0;
    let m = monitor(&ps);
    assert_eq!(
        errors(&m),
        vec![
            ("TS_sync_loss", 1),
            ("Sync_byte_error", 2),
            ("Continuity_count_error", 1)
        ]
    );
    assert!(m.synced());
}

/// Replaces every packet of `pid` arriving in [from, to) with a null packet, as a multiplexer
/// that stopped sending it would (the stream keeps its constant rate, so PCRs stay accurate);
/// returns how many.
fn drop_pid(ps: &mut [(Duration, [u8; 188])], target: u16, from: f64, to: f64) -> u64 {
    let mut null = [0xFF; TS_PACKET_SIZE];
    null[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
    let mut n = 0;
    for (t, p) in ps.iter_mut() {
        if pid(p) == target && *t >= secs(from) && *t < secs(to) {
            *p = null;
            n += 1;
        }
    }
    n
}

#[test]
fn missing_pat_and_pmt() {
    let mut ps = packets();
    let n = drop_pid(&mut ps, 0, 2.0, 2.6);
    let m = monitor(&ps);
    let cc = u64::from(!n.is_multiple_of(16));
    let mut expected = vec![("PAT_error_2", 1)];
    if cc > 0 {
        expected.push(("Continuity_count_error", cc));
    }
    assert_eq!(errors(&m), expected);

    let mut ps = packets();
    let n = drop_pid(&mut ps, PMT, 2.0, 2.6);
    let m = monitor(&ps);
    assert_eq!(m.count(ErrorKind::Pmt), 1);
    assert_eq!(m.pid_count(PMT, ErrorKind::Pmt), 1);
    assert_eq!(
        m.count(ErrorKind::ContinuityCount),
        u64::from(!n.is_multiple_of(16))
    );
    assert_eq!(m.count(ErrorKind::Pat), 0);
}

#[test]
fn pcr_gap() {
    let mut ps = packets();
    // Clear the PCR flag of the packets in [2.0, 2.15): the PCR field stays as filler.
    let mut cleared = 0;
    for (t, p) in ps.iter_mut() {
        if *t >= secs(2.0) && *t < secs(2.15) && TsPacket::parse(p).unwrap().pcr().is_some() {
            p[5] &= !0x10;
            cleared += 1;
        }
    }
    assert!(cleared >= 5);
    let m = monitor(&ps);
    // The gap is both too long in time and too big a jump in PCR value.
    assert_eq!(
        errors(&m),
        vec![
            ("PCR_repetition_error", 1),
            ("PCR_discontinuity_indicator_error", 1)
        ]
    );
    assert_eq!(m.pcr_errors(), 2);
}

#[test]
fn transport_error_and_crc_error() {
    let mut ps = packets();
    let i = find(&ps, 1.0, VIDEO, plain);
    ps[i].1[1] |= 0x80;
    let j = find(&ps, 3.0, 0, |_| true);
    ps[j].1[10] ^= 0x01; // inside the PAT section
    let m = monitor(&ps);
    assert_eq!(errors(&m), vec![("Transport_error", 1), ("CRC_error", 1)]);
    assert_eq!(m.pid_count(0, ErrorKind::Crc), 1);
}

#[test]
fn missing_audio_pid() {
    let mut ps = packets();
    let n = drop_pid(&mut ps, AUDIO, 2.0, 7.25);
    let m = monitor(&ps);
    assert_eq!(m.pid_count(AUDIO, ErrorKind::Pid), 1);
    // 5.25 s without a PTS: one PTS_error per 0.7 s.
    assert_eq!(m.pid_count(AUDIO, ErrorKind::Pts), 7);
    assert_eq!(
        m.count(ErrorKind::ContinuityCount),
        u64::from(!n.is_multiple_of(16))
    );
    assert_eq!(m.count(ErrorKind::Pat) + m.count(ErrorKind::Pmt), 0);
}

/// `ffmpeg -v warning -i file -f null -`: what ffmpeg reports while demuxing and decoding
/// everything (a corrupt packet is a warning).
fn ffmpeg_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The codecs ffprobe finds, each once, sorted.
fn ffprobe_codecs(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    let codecs: std::collections::BTreeSet<&str> = std::str::from_utf8(&out.stdout)
        .expect("ffprobe prints text")
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    codecs.into_iter().collect::<Vec<_>>().join(",")
}

/// Two copies of the stream; the primary dies at 4 s and comes back at 6 s.
#[test]
fn failover_output_is_continuous_for_our_monitor_and_for_ffmpeg() {
    let ps = packets();
    let t0 = Instant::now();
    let mut sw = FailoverSwitch::new(FailoverConfig {
        recovery_period: Duration::from_secs(2),
        ..FailoverConfig::default()
    });
    let mut out = Vec::new();
    for chunk in ps.chunks(7) {
        let now = t0 + chunk[0].0;
        let bytes: Vec<u8> = chunk.iter().flat_map(|(_, p)| *p).collect();
        while let Some(t) = sw.poll_timeout().filter(|&t| t <= now) {
            sw.handle_timeout(t);
        }
        if !(secs(4.0)..secs(6.0)).contains(&chunk[0].0) {
            sw.push(Source::Primary, now, &bytes).unwrap();
        }
        sw.push(Source::Backup, now, &bytes).unwrap();
        while let Some(b) = sw.poll_output() {
            out.extend_from_slice(&b);
        }
    }
    let away = sw.poll_event().unwrap();
    assert_eq!(
        (away.to, away.reason, away.seamless),
        (Source::Backup, SwitchReason::Stalled, true)
    );
    let switch_time = away.at - (t0 + secs(4.0));
    assert!(
        switch_time < Duration::from_millis(200),
        "switched after {switch_time:?}"
    );
    let back = sw.poll_event().unwrap();
    assert_eq!(
        (back.to, back.reason, back.seamless),
        (Source::Primary, SwitchReason::Recovered, true)
    );
    assert!(back.at >= t0 + secs(8.0));

    // Seamless: the receiver gets the very stream the encoder sent.
    assert_eq!(out.len(), stream().len());
    assert!(out == stream());
    let m = monitor(
        &out.chunks_exact(188)
            .enumerate()
            .map(|(i, p)| (arrival(i), p.try_into().unwrap()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(errors(&m), vec![]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ts");
    std::fs::write(&path, &out).unwrap();
    assert_eq!(ffmpeg_errors(&path), "");
    assert_eq!(ffprobe_codecs(&path), "aac,h264");
}

/// The same check catches a careless switch: splicing the backup in 100 ms late (what a
/// switch without history would send) makes ffmpeg's decoder complain.
#[test]
fn a_naive_splice_is_caught_by_ffmpeg() {
    let ps = packets();
    let cut = ps.iter().position(|(t, _)| *t >= secs(4.0)).unwrap();
    let resume = ps.iter().position(|(t, _)| *t >= secs(4.1)).unwrap();
    let out: Vec<u8> = ps[..cut]
        .iter()
        .chain(&ps[resume..])
        .flat_map(|(_, p)| *p)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("naive.ts");
    std::fs::write(&path, &out).unwrap();
    assert!(!ffmpeg_errors(&path).is_empty());
}

/// Two different encodes (no common packets): a cold join. Our rewrite keeps every PID's
/// counter continuous, and the PCR jump is flagged.
#[test]
fn cold_failover_between_different_encoders() {
    let a = packets();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("b.ts");
    encode(&other, "testsrc2", 440, &["-output_ts_offset", "1000"]);
    let b_bytes = std::fs::read(&other).unwrap();
    let t0 = Instant::now();
    let mut sw = FailoverSwitch::default();
    let mut out = Vec::new();
    for (k, chunk) in a.chunks(7).enumerate() {
        let now = t0 + chunk[0].0;
        sw.handle_timeout(now);
        if chunk[0].0 < secs(4.0) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|(_, p)| *p).collect();
            sw.push(Source::Primary, now, &bytes).unwrap();
        }
        if let Some(b) = b_bytes.get(k * 7 * 188..((k + 1) * 7 * 188).min(b_bytes.len())) {
            sw.push(Source::Backup, now, b).unwrap();
        }
        while let Some(b) = sw.poll_output() {
            out.extend_from_slice(&b);
        }
    }
    let e = sw.poll_event().unwrap();
    assert!(!e.seamless);
    let m = monitor(
        &out.chunks_exact(188)
            .enumerate()
            .map(|(i, p)| (arrival(i), p.try_into().unwrap()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(m.count(ErrorKind::ContinuityCount), 0);
    assert_eq!(m.count(ErrorKind::PcrDiscontinuityIndicator), 0);
    let path = dir.path().join("cold.ts");
    std::fs::write(&path, &out).unwrap();
    assert_eq!(ffprobe_codecs(&path), "aac,h264");
}
