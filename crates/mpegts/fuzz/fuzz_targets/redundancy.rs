//! The 2022-7 merger and the failover switch fed arbitrary datagrams on both inputs, with
//! time moving on: nothing panics, the merger emits each sequence number at most once in a
//! row, and the switch only ever emits whole TS packets.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stadion_mpegts::{FailoverSwitch, Merger, MergerConfig, Path, Source};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut merger = Merger::new(MergerConfig {
        max_packets: 32,
        ..MergerConfig::default()
    });
    let mut switch = FailoverSwitch::default();
    let mut now = t0;
    let mut last_seq = None;
    // Records: [flags, time step, length, bytes...].
    let mut rest = data;
    while let [flags, step, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*step));
        let path = if flags & 1 == 0 { Path::A } else { Path::B };
        let source = if flags & 2 == 0 {
            Source::Primary
        } else {
            Source::Backup
        };
        let _ = merger.push(path, now, Bytes::copy_from_slice(datagram));
        let _ = switch.push(source, now, datagram);
        if flags & 4 != 0 {
            merger.handle_timeout(now);
            switch.handle_timeout(now);
        }
        while let Some(p) = merger.poll_output() {
            assert_ne!(Some((p.ssrc, p.sequence)), last_seq);
            last_seq = Some((p.ssrc, p.sequence));
        }
        while let Some(out) = switch.poll_output() {
            assert_eq!(out.len() % 188, 0);
        }
    }
    merger.flush();
});
