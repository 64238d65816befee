//! Primary/backup failover of two transport streams, switching at packet boundaries.
//!
//! Sans-IO: `push(source, now, chunk)` takes whole TS packets of either source,
//! `handle_timeout(now)` notices a source that went quiet, `poll_output()` yields the
//! outgoing packets and `poll_timeout()` says when to call `handle_timeout` next.
//!
//! Each source keeps a short history of its packets. On a switch the switcher looks for
//! the last packets it sent in the new source's history; when the sources are copies of one
//! stream (two paths from one encoder) it resumes right after them and the receiver sees
//! one unbroken stream, packets lost on the failed source included. When they are not (two
//! encoders), it joins cold: each PID restarts at its next unit start, and the first PCR of
//! each PID carries discontinuity_indicator. Either way the continuity counters are rewritten
//! so that each PID's counter runs on without a break across the switch.
//!
//! Two encoders write many packets identically (PSI tables, null packets, CBR filler in the
//! video PES), so a run of equal packets alone proves nothing. The run that must match
//! reaches back to the newest PES start that carries a PTS: a timestamp plus the first bytes
//! of an access unit, which different encoders do not share.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::align::{AlignmentError, TsAlignment};
use crate::packet::{
    NULL_PID, TS_PACKET_SIZE, TsHeader, TsPacket, set_continuity_counter,
    set_discontinuity_indicator,
};
use crate::pes::PesHeader;
use crate::tr101290::{Tr101290Config, Tr101290Monitor};

/// One of the two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Primary,
    Backup,
}

impl Source {
    fn index(self) -> usize {
        match self {
            Self::Primary => 0,
            Self::Backup => 1,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Primary => Self::Backup,
            Self::Backup => Self::Primary,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// No packet for this long and the active source counts as stopped. With the first
    /// backup packet arriving within milliseconds, the switch completes well under 200 ms.
    pub stall_timeout: Duration,
    /// This many TR 101 290 priority-1 errors within `degrade_window` make a source degraded.
    pub degrade_errors: usize,
    pub degrade_window: Duration,
    /// How long the primary must be healthy again before switching back to it.
    pub recovery_period: Duration,
    /// Whether to switch back to the primary at all.
    pub revertive: bool,
    /// How far back each source's history reaches for the seamless join.
    pub history: Duration,
    /// Cap on the history in packets (bounds memory: 8192 × 188 B ≈ 1.5 MB per source).
    pub max_history_packets: usize,
    /// Thresholds of the per-source TR 101 290 monitors.
    pub monitor: Tr101290Config,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            stall_timeout: Duration::from_millis(100),
            degrade_errors: 5,
            degrade_window: Duration::from_secs(1),
            recovery_period: Duration::from_secs(5),
            revertive: true,
            history: Duration::from_millis(500),
            max_history_packets: 8192,
            monitor: Tr101290Config::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The active source sent nothing for `stall_timeout`.
    Stalled,
    /// The active source had too many priority-1 errors.
    Degraded,
    /// The primary has been healthy for `recovery_period`.
    Recovered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchEvent {
    pub at: Instant,
    pub from: Source,
    pub to: Source,
    pub reason: SwitchReason,
    /// Whether the new source was joined exactly where the old one left off.
    pub seamless: bool,
}

#[derive(Debug)]
struct SourceState {
    monitor: Tr101290Monitor,
    last_arrival: Option<Instant>,
    history: VecDeque<(Instant, [u8; TS_PACKET_SIZE])>,
    /// Arrival times of recent priority-1 errors.
    errors: VecDeque<Instant>,
    healthy_since: Option<Instant>,
}

/// Per-PID output state.
#[derive(Debug, Clone, Copy, Default)]
struct OutPid {
    /// Last continuity counter sent.
    cc: Option<u8>,
    /// Added to the source's counter; fixed at the PID's first packet after a switch.
    offset: Option<u8>,
    /// Cold join: the PID waits for its next payload unit start.
    gated: bool,
    /// Cold join: the next PCR of this PID gets discontinuity_indicator.
    pcr_discontinuity: bool,
}

/// Fewest packets of the last output that must match to find the join point in the other
/// source; the match also reaches back to the newest PES start with a PTS (an anchor).
const JOIN_MATCH: usize = 8;
/// Most packets kept for the match (1024 × 188 B ≈ 190 kB: 75 ms at 20 Mb/s). With no anchor
/// among them, switches join cold.
const MAX_RECENT: usize = 1024;

/// The switcher. Push both sources' packets as they arrive.
#[derive(Debug)]
pub struct FailoverSwitch {
    config: FailoverConfig,
    sources: [SourceState; 2],
    active: Source,
    started: Option<Instant>,
    out_pids: Box<[OutPid]>,
    /// The source bytes of the last non-null packets sent (before rewriting), newest last:
    /// at least [`JOIN_MATCH`], and all since the newest anchor.
    recent: VecDeque<[u8; TS_PACKET_SIZE]>,
    /// Index in `recent` of the newest anchor (PES start with a PTS).
    anchor: Option<usize>,
    /// Null packets sent after the newest of `recent`.
    trailing_nulls: usize,
    output: VecDeque<Bytes>,
    events: VecDeque<SwitchEvent>,
    switches: u64,
    /// The active source is stalled and the other cannot take over: its stall timer is
    /// spent until either source sends again.
    stall_reported: bool,
}

impl Default for FailoverSwitch {
    fn default() -> Self {
        Self::new(FailoverConfig::default())
    }
}

impl FailoverSwitch {
    pub fn new(config: FailoverConfig) -> Self {
        let source = || SourceState {
            monitor: Tr101290Monitor::new(config.monitor.clone()),
            last_arrival: None,
            history: VecDeque::new(),
            errors: VecDeque::new(),
            healthy_since: None,
        };
        Self {
            sources: [source(), source()],
            config,
            active: Source::Primary,
            started: None,
            out_pids: vec![OutPid::default(); 8192].into_boxed_slice(),
            recent: VecDeque::with_capacity(JOIN_MATCH),
            anchor: None,
            trailing_nulls: 0,
            output: VecDeque::new(),
            events: VecDeque::new(),
            switches: 0,
            stall_reported: false,
        }
    }

    /// Takes whole TS packets of one source that arrived at `now`. A chunk that is not
    /// 188-byte-aligned TS is refused whole.
    pub fn push(
        &mut self,
        source: Source,
        now: Instant,
        chunk: &[u8],
    ) -> Result<(), AlignmentError> {
        TsAlignment::check_packets(chunk)?;
        self.started.get_or_insert(now);
        let s = &mut self.sources[source.index()];
        s.last_arrival = Some(now);
        s.monitor.feed(now, chunk);
        while let Some(e) = s.monitor.poll_event() {
            if e.kind.priority() == 1 {
                s.errors.push_back(e.at);
            }
        }
        let keep_from = now.checked_sub(self.config.history);
        for p in chunk.chunks_exact(TS_PACKET_SIZE) {
            if s.history.len() >= self.config.max_history_packets.max(1) {
                s.history.pop_front();
            }
            s.history
                .push_back((now, p.try_into().expect("188-byte chunk")));
        }
        while s
            .history
            .front()
            .is_some_and(|(t, _)| keep_from.is_some_and(|k| *t < k))
        {
            s.history.pop_front();
        }
        let joined_seamlessly = self.evaluate(now);
        if source == self.active && !joined_seamlessly {
            self.emit_chunk(chunk);
        }
        Ok(())
    }

    /// Checks for a stopped source; call at `poll_timeout()` (and whenever convenient).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.started.get_or_insert(now);
        self.evaluate(now);
    }

    /// When a source may next be declared stopped, or the primary recovered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let active = &self.sources[self.active.index()];
        let stall = active
            .last_arrival
            .or(self.started)
            .filter(|_| !self.stall_reported)
            .map(|t| t + self.config.stall_timeout);
        let revert = (self.config.revertive && self.active == Source::Backup)
            .then(|| self.sources[0].healthy_since)
            .flatten()
            .map(|t| t + self.config.recovery_period);
        stall.into_iter().chain(revert).min()
    }

    /// Next chunk of output packets (whole packets, continuity counters rewritten).
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.output.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SwitchEvent> {
        self.events.pop_front()
    }

    pub fn active(&self) -> Source {
        self.active
    }

    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// The TR 101 290 monitor of one input (its events are consumed by the switcher; its
    /// counters are all there).
    pub fn monitor(&self, source: Source) -> &Tr101290Monitor {
        &self.sources[source.index()].monitor
    }

    fn healthy(&mut self, source: Source, now: Instant) -> bool {
        let cfg = &self.config;
        let s = &mut self.sources[source.index()];
        while s
            .errors
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > cfg.degrade_window)
        {
            s.errors.pop_front();
        }
        let alive = s
            .last_arrival
            .is_some_and(|t| now.saturating_duration_since(t) < cfg.stall_timeout);
        let ok = alive && s.errors.len() < cfg.degrade_errors.max(1);
        if ok {
            s.healthy_since.get_or_insert(now);
        } else {
            s.healthy_since = None;
        }
        ok
    }

    /// Decides whether to switch; returns true when it switched and already sent the new
    /// source's history up to now.
    fn evaluate(&mut self, now: Instant) -> bool {
        let active = self.active;
        let other = active.other();
        let active_ok = self.healthy(active, now);
        let other_ok = self.healthy(other, now);
        let a = &self.sources[active.index()];
        // Before its first packet a source counts from the switcher's start.
        let stalled = now.saturating_duration_since(a.last_arrival.or(self.started).unwrap_or(now))
            >= self.config.stall_timeout;
        self.stall_reported = stalled && !other_ok;
        let reason = if stalled && other_ok {
            Some(SwitchReason::Stalled)
        } else if !active_ok && a.last_arrival.is_some() && !stalled && other_ok {
            Some(SwitchReason::Degraded)
        } else if self.config.revertive
            && active == Source::Backup
            && other_ok
            && self.sources[0]
                .healthy_since
                .is_some_and(|t| now.saturating_duration_since(t) >= self.config.recovery_period)
        {
            Some(SwitchReason::Recovered)
        } else {
            None
        };
        let Some(reason) = reason else {
            return false;
        };
        let seamless = self.switch_to(other);
        self.switches += 1;
        self.events.push_back(SwitchEvent {
            at: now,
            from: active,
            to: other,
            reason,
            seamless,
        });
        seamless
    }

    /// Makes `to` active; returns whether it was joined seamlessly (its history after the
    /// join point is then already sent).
    fn switch_to(&mut self, to: Source) -> bool {
        self.active = to;
        for p in self.out_pids.iter_mut() {
            p.offset = None;
        }
        let history = &self.sources[to.index()].history;
        let recent = self.anchor.map(|_| &self.recent);
        if let Some(mut join) = recent.and_then(|recent| find_join(history, recent)) {
            // Null packets already sent after the join point are not sent twice.
            let mut nulls = self.trailing_nulls;
            while nulls > 0 && join < history.len() && is_null(&history[join].1) {
                join += 1;
                nulls -= 1;
            }
            let catch_up: Vec<u8> = history.range(join..).flat_map(|(_, p)| *p).collect();
            self.emit_chunk(&catch_up);
            return true;
        }
        for p in self.out_pids.iter_mut() {
            p.gated = p.cc.is_some();
            p.pcr_discontinuity = true;
        }
        false
    }

    /// Adds a sent packet to `recent` and forgets what the join no longer needs.
    fn remember(&mut self, raw: &[u8; TS_PACKET_SIZE]) {
        self.recent.push_back(*raw);
        if is_anchor(raw) {
            self.anchor = Some(self.recent.len() - 1);
        }
        while self.recent.len() > MAX_RECENT
            || (self.recent.len() > JOIN_MATCH && self.anchor.is_some_and(|a| a > 0))
        {
            self.recent.pop_front();
            self.anchor = self.anchor.and_then(|a| a.checked_sub(1));
        }
    }

    fn emit_chunk(&mut self, chunk: &[u8]) {
        let mut out = Vec::with_capacity(chunk.len());
        for raw in chunk.chunks_exact(TS_PACKET_SIZE) {
            let raw: &[u8; TS_PACKET_SIZE] = raw.try_into().expect("188-byte chunk");
            let h = TsHeader::read(&[raw[0], raw[1], raw[2], raw[3]]);
            if h.pid == NULL_PID {
                self.trailing_nulls += 1;
                out.extend_from_slice(raw);
                continue;
            }
            self.trailing_nulls = 0;
            self.remember(raw);
            let st = &mut self.out_pids[usize::from(h.pid)];
            if st.gated {
                if !h.payload_unit_start && h.has_payload {
                    continue;
                }
                st.gated = false;
            }
            let mut packet = *raw;
            let cc = h.continuity_counter;
            let offset = *st.offset.get_or_insert_with(|| match st.cc {
                // Payload packets advance the counter; others repeat it.
                Some(last) => (last + u8::from(h.has_payload)).wrapping_sub(cc) & 0x0F,
                None => 0,
            });
            let new_cc = (cc + offset) & 0x0F;
            set_continuity_counter(&mut packet, new_cc);
            st.cc = Some(new_cc);
            let has_pcr = h.has_adaptation && packet[4] >= 7 && packet[5] & 0x10 != 0;
            if st.pcr_discontinuity && has_pcr {
                st.pcr_discontinuity = !set_discontinuity_indicator(&mut packet);
            }
            out.extend_from_slice(&packet);
        }
        if !out.is_empty() {
            self.output.push_back(Bytes::from(out));
        }
    }
}

fn is_null(p: &[u8; TS_PACKET_SIZE]) -> bool {
    u16::from_be_bytes([p[1] & 0x1F, p[2]]) == NULL_PID
}

/// Whether a packet starts a PES packet with a PTS: a point in one encoder's timeline.
fn is_anchor(p: &[u8; TS_PACKET_SIZE]) -> bool {
    // Most packets are not unit starts: decide those from one bit.
    if p[1] & 0x40 == 0 {
        return false;
    }
    TsPacket::parse(p).is_ok_and(|packet| {
        packet.header.payload_unit_start
            && PesHeader::parse(packet.payload).is_ok_and(|pes| pes.pts.is_some())
    })
}

/// Index in `history` of the first packet after the newest run equal to `recent`, null
/// packets skipped: stuffing is identical everywhere, so it would match anywhere.
fn find_join(
    history: &VecDeque<(Instant, [u8; TS_PACKET_SIZE])>,
    recent: &VecDeque<[u8; TS_PACKET_SIZE]>,
) -> Option<usize> {
    let last = recent.back()?;
    (0..history.len()).rev().find_map(|i| {
        if history[i].1 != *last {
            return None;
        }
        let mut earlier = (0..i).rev().map(|j| &history[j].1).filter(|p| !is_null(p));
        let matches = recent
            .iter()
            .rev()
            .skip(1)
            .all(|r| earlier.next() == Some(r));
        matches.then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{TsHeader as Header, TsPacket};
    use crate::tr101290::ErrorKind;

    /// A video packet; every tenth tag starts a PES packet with a PTS (an anchor). The tag
    /// is in the last four bytes.
    fn packet(pid: u16, cc: u8, tag: u32) -> [u8; 188] {
        let start = tag.is_multiple_of(10);
        let mut payload = [0u8; 184];
        if start {
            let pes = PesHeader {
                stream_id: 0xE0,
                packet_length: 0,
                pts: Some(u64::from(tag) * 3600),
                dts: None,
                header_len: 14,
            }
            .encode();
            payload[..pes.len()].copy_from_slice(&pes);
        }
        payload[180..].copy_from_slice(&tag.to_be_bytes());
        ts(pid, cc, start, &payload)
    }

    fn ts(pid: u16, cc: u8, payload_unit_start: bool, payload: &[u8; 184]) -> [u8; 188] {
        TsPacket {
            header: Header {
                transport_error: false,
                payload_unit_start,
                transport_priority: false,
                pid,
                scrambling: 0,
                has_adaptation: false,
                has_payload: true,
                continuity_counter: cc,
            },
            adaptation: None,
            payload,
        }
        .encode()
        .unwrap()
    }

    fn tags(out: &[u8]) -> Vec<u32> {
        out.chunks(188)
            .map(|p| u32::from_be_bytes([p[184], p[185], p[186], p[187]]))
            .collect()
    }

    /// Packet `i` of an encoder's CBR video: every tenth starts a picture (a PES start with
    /// its PTS, then the encoder's own `picture` bytes), the others are filler (0xFF). Two
    /// encoders on one timeline write identical filler packets.
    fn cbr_video(picture: u8, i: u32) -> [u8; 188] {
        let cc = (i % 16) as u8;
        if i.is_multiple_of(10) {
            let mut p = packet(0x100, cc, i);
            p[30..184].fill(picture);
            p
        } else {
            ts(0x100, cc, false, &[0xFF; 184])
        }
    }

    /// The primary sends packets up to `last` and stops; the backup sends 300.
    fn fail_over(
        primary: impl Fn(u32) -> [u8; 188],
        backup: impl Fn(u32) -> [u8; 188],
        last: u32,
    ) -> (Vec<u8>, SwitchEvent) {
        let t0 = Instant::now();
        let mut sw = FailoverSwitch::default();
        let mut out = Vec::new();
        for i in 0..300u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            if i <= last {
                sw.push(Source::Primary, now, &primary(i)).unwrap();
            }
            sw.push(Source::Backup, now, &backup(i)).unwrap();
            sw.handle_timeout(now);
            out.extend(drain(&mut sw));
        }
        (out, sw.poll_event().expect("a switch"))
    }

    #[test]
    fn filler_two_encoders_write_alike_is_no_join_point() {
        // The primary's last eight packets (101..=108) are filler that the backup wrote
        // too, with the same counters, as it did in 181..=188.
        let (out, e) = fail_over(|i| cbr_video(0xAA, i), |i| cbr_video(0xBB, i), 108);
        assert_eq!((e.to, e.seamless), (Source::Backup, false));
        // Cold: the backup comes in at its next picture, its filler before that is left out.
        let packets: Vec<_> = out.chunks(188).collect();
        assert_eq!(packets[108], cbr_video(0xAA, 108));
        assert_eq!(tags(packets[109]), [210]);
        assert_eq!(packets[109][30], 0xBB);
        let mut m = Tr101290Monitor::default();
        m.feed(Instant::now(), &out);
        assert_eq!(m.count(ErrorKind::ContinuityCount), 0);
    }

    #[test]
    fn copies_of_one_stream_with_filler_join_exactly() {
        let (out, e) = fail_over(|i| cbr_video(0xAA, i), |i| cbr_video(0xAA, i), 108);
        assert_eq!((e.to, e.seamless), (Source::Backup, true));
        let sent: Vec<u8> = (0..300).flat_map(|i| cbr_video(0xAA, i)).collect();
        assert!(out == sent, "the output is not the stream itself");
    }

    fn drain(sw: &mut FailoverSwitch) -> Vec<u8> {
        std::iter::from_fn(|| sw.poll_output())
            .flat_map(|b| b.to_vec())
            .collect()
    }

    #[test]
    fn stalled_primary_hands_over_seamlessly() {
        let t0 = Instant::now();
        let mut sw = FailoverSwitch::default();
        let mut out = Vec::new();
        for i in 0..400u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let p = packet(0x100, (i % 16) as u8, i);
            if i < 200 {
                sw.push(Source::Primary, now, &p).unwrap();
            }
            sw.push(Source::Backup, now, &p).unwrap();
            if sw.poll_timeout().is_some_and(|t| t <= now) {
                sw.handle_timeout(now);
            }
            out.extend(drain(&mut sw));
        }
        assert_eq!(tags(&out), (0..400).collect::<Vec<_>>());
        let e = sw.poll_event().unwrap();
        assert_eq!(
            (e.from, e.to, e.reason, e.seamless),
            (Source::Primary, Source::Backup, SwitchReason::Stalled, true)
        );
        assert!(e.at - t0 <= Duration::from_millis(199 + 101));
        let mut m = Tr101290Monitor::default();
        m.feed(t0, &out);
        assert_eq!(m.count(ErrorKind::ContinuityCount), 0);
    }

    #[test]
    fn cold_join_waits_for_unit_start_and_keeps_counters_running() {
        let t0 = Instant::now();
        let mut sw = FailoverSwitch::default();
        let mut out = Vec::new();
        for i in 0..300u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            if i < 100 {
                sw.push(Source::Primary, now, &packet(0x100, (i % 16) as u8, i))
                    .unwrap();
            }
            // A different encoder: its own tags and counters.
            sw.push(
                Source::Backup,
                now,
                &packet(0x100, ((i + 5) % 16) as u8, 10_000 + i),
            )
            .unwrap();
            sw.handle_timeout(now);
            out.extend(drain(&mut sw));
        }
        let t = tags(&out);
        let first_backup = t.iter().position(|&x| x >= 10_000).unwrap();
        assert_eq!(t[first_backup] % 10, 0, "joined at a unit start");
        assert!(!sw.poll_event().unwrap().seamless);
        let ccs: Vec<u8> = out.chunks(188).map(|p| p[3] & 0x0F).collect();
        assert!(ccs.windows(2).all(|w| w[1] == (w[0] + 1) & 15));
    }

    #[test]
    fn a_stall_without_backup_spends_the_timer_until_one_comes() {
        let t0 = Instant::now();
        let mut sw = FailoverSwitch::default();
        sw.push(Source::Primary, t0, &packet(0x100, 0, 1)).unwrap();
        let t = sw.poll_timeout().unwrap();
        assert_eq!(t, t0 + Duration::from_millis(100));
        sw.handle_timeout(t);
        assert_eq!(
            sw.poll_timeout(),
            None,
            "no busy loop while nothing can be done"
        );
        assert_eq!(sw.active(), Source::Primary);
        drain(&mut sw);
        // The backup's first packet takes over at once, cold, at its unit start.
        sw.push(
            Source::Backup,
            t + Duration::from_millis(1),
            &packet(0x100, 5, 20),
        )
        .unwrap();
        assert_eq!(sw.active(), Source::Backup);
        assert_eq!(tags(&drain(&mut sw)), vec![20]);
    }

    #[test]
    fn a_lossy_primary_is_degraded_and_left_seamlessly() {
        let t0 = Instant::now();
        let mut sw = FailoverSwitch::default();
        let mut out = Vec::new();
        for i in 0..300u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let p = packet(0x100, (i % 16) as u8, i);
            // From 100 ms on the primary loses every 10th packet: a continuity error each.
            if i < 100 || i % 10 != 5 {
                sw.push(Source::Primary, now, &p).unwrap();
            }
            sw.push(Source::Backup, now, &p).unwrap();
            out.extend(drain(&mut sw));
        }
        let e = sw.poll_event().unwrap();
        assert_eq!(
            (e.to, e.reason, e.seamless),
            (Source::Backup, SwitchReason::Degraded, true)
        );
        // The fifth loss (145) shows as a gap when 146 arrives.
        assert_eq!(e.at, t0 + Duration::from_millis(146));
        assert!(sw.poll_event().is_none(), "no return to a degraded primary");
        // Before the switch the primary's losses went out; from the join on, the backup
        // fills in even the packet the primary lost last.
        let t = tags(&out);
        let join = t.iter().position(|&x| x == 144).unwrap() + 1;
        assert_eq!(t[join..], (145..300).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn refuses_unaligned_chunks() {
        let mut sw = FailoverSwitch::default();
        assert!(
            sw.push(Source::Primary, Instant::now(), &[0x47; 100])
                .is_err()
        );
    }
}
