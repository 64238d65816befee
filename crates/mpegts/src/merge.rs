//! SMPTE ST 2022-7 seamless protection switching: two RTP paths carrying the same packets
//! are merged by sequence number, so a packet lost on one path is taken from the other.
//!
//! Sans-IO: `push(path, now, packet)` and `handle_timeout(now)` drive it, `poll_output()`
//! yields the merged packets in sequence order, each sequence number once, and
//! `poll_timeout()` says when a held gap expires. A gap is held for the recovery window
//! (counted from the arrival of the first packet after it) to give the other path time to
//! fill it, then given up as lost.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::rtp::{RtpError, RtpPacket, SeqExtender};

/// One of the two network paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    A,
    B,
}

impl Path {
    fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    fn bit(self) -> u8 {
        1 << self.index()
    }
}

#[derive(Debug, Clone)]
pub struct MergerConfig {
    /// How long a gap waits for the other path (the paths' differential delay budget).
    pub window: Duration,
    /// Most packets held behind a gap; beyond it the gap is given up at once. Bounds memory.
    pub max_packets: usize,
    /// A path with no packet for this long is reported dead.
    pub path_timeout: Duration,
}

impl Default for MergerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(50),
            max_packets: 2048,
            path_timeout: Duration::from_secs(1),
        }
    }
}

/// A packet of the merged output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPacket {
    pub sequence: u16,
    pub ssrc: u32,
    /// The whole RTP packet as it arrived.
    pub data: Bytes,
    payload: Range<usize>,
}

impl MergedPacket {
    /// The RTP payload (for MP2T: whole TS packets), without copying.
    pub fn payload(&self) -> Bytes {
        self.data.slice(self.payload.clone())
    }
}

/// Counters of one path. A sequence number's losses are settled, exactly, once it has been out
/// (or given up) for the recovery window, for sequence numbers from the path's first packet
/// on; `flush` settles the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    pub packets: u64,
    /// Sequence numbers this path never delivered.
    pub lost: u64,
    /// Of those, how many the other path delivered (recovered thanks to the merge).
    pub recovered_from_other: u64,
    /// Packets that came after their sequence number was settled (given up, or out for the
    /// recovery window); such a packet still counts as lost on its path.
    pub late: u64,
    /// Packets of another stream (SSRC) or far outside the sequence window, held as a
    /// possible restart.
    pub foreign: u64,
    pub ssrc: Option<u32>,
    pub last_arrival: Option<Instant>,
}

/// Counters of the merged output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergerStats {
    pub output: u64,
    /// Sequence numbers neither path delivered within the window.
    pub lost: u64,
    /// Second copies dropped (the normal case: every packet arrives twice).
    pub duplicates: u64,
    /// Times the merger restarted on a new stream (SSRC change or sequence jump on all paths).
    pub resyncs: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    /// Extended sequence number held, or `EMPTY`.
    ext: u64,
    packet: Option<MergedPacket>,
    arrival: Option<Instant>,
    /// Paths that delivered it (bit per path).
    seen: u8,
    /// When it went out or was given up.
    done: Option<Instant>,
    /// Its losses are counted; later copies are late.
    settled: bool,
}

const EMPTY: u64 = u64::MAX;

impl Slot {
    fn empty() -> Self {
        Self {
            ext: EMPTY,
            packet: None,
            arrival: None,
            seen: 0,
            done: None,
            settled: false,
        }
    }

    /// Given up: neither path delivered it within the window.
    fn given_up(ext: u64, now: Instant) -> Self {
        Self {
            ext,
            done: Some(now),
            ..Self::empty()
        }
    }
}

#[derive(Debug, Default)]
struct PathState {
    stats: PathStats,
    /// First extended sequence number of the current stream this path delivered.
    joined_at: Option<u64>,
}

/// The 2022-7 merger. Push every packet of both paths; poll the output after each push
/// and after `handle_timeout`.
#[derive(Debug)]
pub struct Merger {
    config: MergerConfig,
    ring: Vec<Slot>,
    mask: u64,
    ssrc: Option<u32>,
    seq: SeqExtender,
    next_out: Option<u64>,
    highest: u64,
    gap_since: Option<Instant>,
    /// Oldest sequence number out or given up whose losses are not yet settled.
    settle_from: Option<u64>,
    /// When the newest one went out or was given up.
    last_done: Option<Instant>,
    /// Until then nothing is output (see `accept`).
    startup_until: Option<Instant>,
    last_accepted: Option<Instant>,
    paths: [PathState; 2],
    foreign: VecDeque<(Path, Instant, Bytes, u32)>,
    draining: bool,
    ready: VecDeque<MergedPacket>,
    stats: MergerStats,
}

impl Default for Merger {
    fn default() -> Self {
        Self::new(MergerConfig::default())
    }
}

impl Merger {
    pub fn new(config: MergerConfig) -> Self {
        let max_packets = config.max_packets.clamp(1, 1 << 15);
        // History twice the hold limit: late copies of emitted packets are still recognised.
        let len = (2 * max_packets).next_power_of_two();
        Self {
            config: MergerConfig {
                max_packets,
                ..config
            },
            ring: vec![Slot::empty(); len],
            mask: len as u64 - 1,
            ssrc: None,
            seq: SeqExtender::default(),
            next_out: None,
            highest: 0,
            gap_since: None,
            settle_from: None,
            last_done: None,
            startup_until: None,
            last_accepted: None,
            paths: Default::default(),
            foreign: VecDeque::new(),
            draining: false,
            ready: VecDeque::new(),
            stats: MergerStats::default(),
        }
    }

    /// Takes one RTP packet that arrived on `path` at `now`. A datagram that is not RTP is
    /// refused (and nothing changes).
    pub fn push(&mut self, path: Path, now: Instant, packet: Bytes) -> Result<(), RtpError> {
        let rtp = RtpPacket::parse(&packet)?;
        let (sequence, ssrc) = (rtp.sequence, rtp.ssrc);
        let start = rtp.header_len();
        let payload = start..start + rtp.payload.len();
        let stats = &mut self.paths[path.index()].stats;
        stats.packets += 1;
        stats.ssrc = Some(ssrc);
        stats.last_arrival = Some(now);
        self.accept(
            path,
            now,
            MergedPacket {
                sequence,
                ssrc,
                data: packet,
                payload,
            },
        );
        self.advance(now);
        self.settle(now);
        Ok(())
    }

    fn accept(&mut self, path: Path, now: Instant, packet: MergedPacket) {
        let current = *self.ssrc.get_or_insert(packet.ssrc);
        let ext = self.seq.peek(packet.sequence);
        let history = self.ring.len() as u64;
        if self.next_out.is_none() {
            // Start-up: hold the first window so that earlier packets still on their way on
            // the slower path can take the lead.
            self.startup_until = Some(now + self.config.window);
        }
        let mut next = *self.next_out.get_or_insert(ext);
        // The held packets must stay within the history from the new start, or one would
        // overwrite another's slot.
        if ext < next
            && next - ext < self.config.max_packets as u64
            && self.highest < ext + history
            && self.startup_until.is_some_and(|t| now < t)
        {
            next = ext;
            self.next_out = Some(ext);
        }
        // Beyond the history either way the packet cannot be placed: a restart or a jump.
        let far = if ext < next {
            next - ext >= history
        } else {
            ext - next >= history
        };
        if packet.ssrc != current || far {
            self.hold_foreign(path, now, packet);
            return;
        }
        self.seq.extend(packet.sequence);
        self.last_accepted = Some(now);
        let p = &mut self.paths[path.index()];
        p.joined_at.get_or_insert(ext);
        let slot_index = (ext & self.mask) as usize;
        if self.ring[slot_index].ext == ext {
            let slot = &mut self.ring[slot_index];
            // A slot given up as lost has no arrival time.
            if slot.settled || (ext < next && slot.arrival.is_none()) {
                p.stats.late += 1;
            } else {
                self.stats.duplicates += 1;
                slot.seen |= path.bit();
            }
            return;
        }
        if ext < next {
            // Its slot already moved on: a copy older than the history.
            p.stats.late += 1;
            return;
        }
        self.replace_slot(
            slot_index,
            Slot {
                ext,
                packet: Some(packet),
                arrival: Some(now),
                seen: path.bit(),
                done: None,
                settled: false,
            },
        );
        self.highest = self.highest.max(ext);
    }

    fn hold_foreign(&mut self, path: Path, now: Instant, packet: MergedPacket) {
        self.paths[path.index()].stats.foreign += 1;
        if self
            .foreign
            .front()
            .is_some_and(|&(_, _, _, ssrc)| ssrc != packet.ssrc)
        {
            self.foreign.clear();
        }
        if self.foreign.len() >= self.ring.len() {
            self.foreign.pop_front();
        }
        self.foreign
            .push_back((path, now, packet.data, packet.ssrc));
    }

    /// Puts `slot` in place, first settling what it replaces.
    fn replace_slot(&mut self, index: usize, slot: Slot) {
        let mut old = std::mem::replace(&mut self.ring[index], slot);
        settle_slot(&mut self.paths, &mut old);
    }

    /// Settles, in sequence order, what went out a recovery window ago (a copy arriving
    /// later is late) and what was given up (no copy can help it any more).
    fn settle(&mut self, now: Instant) {
        let (Some(mut from), Some(next)) = (self.settle_from, self.next_out) else {
            return;
        };
        while from < next {
            let slot = &mut self.ring[(from & self.mask) as usize];
            // A slot taken by a newer number was settled when it was taken.
            if slot.ext == from && !slot.settled {
                let due = slot.arrival.is_none()
                    || slot.done.is_some_and(|t| now >= t + self.config.window);
                if !due {
                    break;
                }
                settle_slot(&mut self.paths, slot);
            }
            from += 1;
        }
        self.settle_from = Some(from);
    }

    /// Marks sequence number `next` (in slot `index`) out or given up at `now`.
    fn done(&mut self, index: usize, next: u64, now: Instant) {
        self.ring[index].done = Some(now);
        self.settle_from.get_or_insert(next);
        self.last_done = Some(now);
        self.next_out = Some(next + 1);
    }

    /// Moves every packet that may go out now to the output queue, giving up gaps whose
    /// window expired.
    fn advance(&mut self, now: Instant) {
        if !self.draining && self.startup_until.is_some_and(|t| now < t) {
            return;
        }
        loop {
            let Some(next) = self.next_out else { return };
            if next > self.highest {
                if self.draining {
                    if self.foreign.is_empty() {
                        self.draining = false;
                        break;
                    }
                    self.restart_on_foreign();
                    continue;
                }
                break;
            }
            let index = (next & self.mask) as usize;
            if self.ring[index].ext == next
                && let Some(packet) = self.ring[index].packet.take()
            {
                self.ready.push_back(packet);
                self.stats.output += 1;
                self.done(index, next, now);
                self.gap_since = None;
                continue;
            }
            let gap_start = match self.gap_since {
                Some(t) => t,
                None => {
                    let t = self.first_arrival_after(next).unwrap_or(now);
                    self.gap_since = Some(t);
                    t
                }
            };
            let overfull = self.highest - next >= self.config.max_packets as u64;
            if self.draining || overfull || now >= gap_start + self.config.window {
                self.replace_slot(index, Slot::given_up(next, now));
                self.stats.lost += 1;
                self.done(index, next, now);
                continue;
            }
            break;
        }
        if !self.draining
            && !self.foreign.is_empty()
            && self
                .last_accepted
                .is_none_or(|t| now >= t + self.config.window)
        {
            // Nothing of the current stream for a whole window while another one flows:
            // the sender restarted. Flush what is held, then follow the new stream.
            self.draining = true;
            self.advance(now);
        }
    }

    /// Arrival of the first held packet after `next` (the gap's start). Arbitrary input can
    /// leave no packet held after a gap (property test); the gap then starts now.
    fn first_arrival_after(&self, next: u64) -> Option<Instant> {
        (next + 1..=self.highest).find_map(|e| {
            let s = &self.ring[(e & self.mask) as usize];
            (s.ext == e).then_some(s.arrival).flatten()
        })
    }

    fn restart_on_foreign(&mut self) {
        self.finalize_all();
        self.draining = false;
        self.ssrc = None;
        self.seq.reset();
        self.next_out = None;
        self.settle_from = None;
        self.highest = 0;
        self.gap_since = None;
        for p in &mut self.paths {
            p.joined_at = None;
        }
        self.stats.resyncs += 1;
        let held = std::mem::take(&mut self.foreign);
        for (path, at, data, _) in held {
            // Every held packet parsed once already.
            if let Ok(rtp) = RtpPacket::parse(&data) {
                let start = rtp.header_len();
                let packet = MergedPacket {
                    sequence: rtp.sequence,
                    ssrc: rtp.ssrc,
                    payload: start..start + rtp.payload.len(),
                    data: data.clone(),
                };
                self.accept(path, at, packet);
            }
        }
    }

    fn finalize_all(&mut self) {
        for i in 0..self.ring.len() {
            self.replace_slot(i, Slot::empty());
        }
    }

    /// Gives up held gaps whose window ended by `now` and settles the loss counters.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.settle(now);
    }

    /// When `handle_timeout` next has work: the held gap's expiry, the moment a waiting
    /// new stream takes over, or (when no packet comes to do it) settling the loss counters
    /// of everything out so far.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let gap = self.gap_since.map(|t| t + self.config.window);
        let settle = self
            .settle_from
            .zip(self.next_out)
            .filter(|(from, next)| from < next)
            .and(self.last_done)
            .map(|t| t + self.config.window);
        let restart = (!self.foreign.is_empty())
            .then_some(self.last_accepted)
            .flatten()
            .map(|t| t + self.config.window);
        let startup = self
            .startup_until
            .filter(|_| self.ready.is_empty() && self.stats.output == 0);
        gap.into_iter()
            .chain(restart)
            .chain(startup)
            .chain(settle)
            .min()
    }

    /// Next merged packet, in sequence order.
    pub fn poll_output(&mut self) -> Option<MergedPacket> {
        self.ready.pop_front()
    }

    /// End of stream: emits everything held (gaps given up) and settles the per-path loss
    /// counters.
    pub fn flush(&mut self) {
        self.draining = true;
        let foreign = std::mem::take(&mut self.foreign);
        if let Some(now) = self.last_accepted {
            self.advance(now);
        }
        self.foreign = foreign;
        self.draining = false;
        self.finalize_all();
    }

    pub fn path_stats(&self, path: Path) -> &PathStats {
        &self.paths[path.index()].stats
    }

    /// Whether the path delivered a packet within `path_timeout` of `now`.
    pub fn path_alive(&self, path: Path, now: Instant) -> bool {
        self.paths[path.index()]
            .stats
            .last_arrival
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.path_timeout)
    }

    pub fn stats(&self) -> &MergerStats {
        &self.stats
    }
}

/// Counts a sequence number's per-path losses, once.
fn settle_slot(paths: &mut [PathState; 2], slot: &mut Slot) {
    if slot.ext == EMPTY || slot.settled {
        return;
    }
    slot.settled = true;
    for (i, p) in paths.iter_mut().enumerate() {
        let bit = 1 << i;
        if p.joined_at.is_some_and(|j| j <= slot.ext) && slot.seen & bit == 0 {
            p.stats.lost += 1;
            if slot.seen & !bit != 0 {
                p.stats.recovered_from_other += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PT_MP2T, RtpHeader};
    use proptest::prelude::*;

    fn rtp(seq: u16, ssrc: u32) -> Bytes {
        let payload = [seq as u8; 188];
        let h = RtpHeader {
            payload_type: PT_MP2T,
            sequence: seq,
            ssrc,
            ..RtpHeader::default()
        };
        Bytes::from(h.encode(&payload, 0).expect("valid header"))
    }

    fn drain(m: &mut Merger) -> Vec<u16> {
        std::iter::from_fn(|| m.poll_output())
            .map(|p| p.sequence)
            .collect()
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn fills_a_gap_from_the_other_path_and_wraps() {
        let t0 = Instant::now();
        let mut m = Merger::default();
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        for (i, &s) in seqs.iter().enumerate() {
            if s != 65534 {
                m.push(Path::A, ms(t0, i as u64), rtp(s, 1)).unwrap();
            }
        }
        // Start-up holds the first window.
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.poll_timeout(), Some(ms(t0, 50)));
        m.handle_timeout(ms(t0, 50));
        // 65534 is missing: everything after it waits for the other path.
        assert_eq!(drain(&mut m), vec![65530, 65531, 65532, 65533]);
        assert_eq!(m.poll_timeout(), Some(ms(t0, 5 + 50)));
        m.push(Path::B, ms(t0, 52), rtp(65534, 1)).unwrap();
        assert_eq!(
            drain(&mut m),
            (65534..=65535).chain(0..6).collect::<Vec<_>>()
        );
        for &s in &seqs {
            m.push(Path::B, ms(t0, 53), rtp(s, 1)).unwrap();
        }
        assert!(drain(&mut m).is_empty());
        m.flush();
        assert_eq!(m.path_stats(Path::A).lost, 1);
        assert_eq!(m.path_stats(Path::A).recovered_from_other, 1);
        assert_eq!(m.path_stats(Path::B).lost, 0);
        assert_eq!(m.stats().output, 12);
        assert_eq!(m.stats().lost, 0);
    }

    #[test]
    fn a_gap_neither_path_fills_is_given_up_after_the_window() {
        let t0 = Instant::now();
        let mut m = Merger::default();
        for s in [1u16, 2, 4, 5] {
            m.push(Path::A, ms(t0, u64::from(s)), rtp(s, 1)).unwrap();
        }
        m.handle_timeout(ms(t0, 51));
        assert_eq!(drain(&mut m), vec![1, 2]);
        m.handle_timeout(ms(t0, 53));
        assert!(drain(&mut m).is_empty());
        m.handle_timeout(ms(t0, 54));
        assert_eq!(drain(&mut m), vec![4, 5]);
        assert_eq!(m.stats().lost, 1);
        // The missing packet turns up late on B: counted, not output.
        m.push(Path::B, ms(t0, 60), rtp(3, 1)).unwrap();
        assert!(drain(&mut m).is_empty());
        assert_eq!(m.path_stats(Path::B).late, 1);
    }

    #[test]
    fn loss_counters_are_exact_once_the_window_has_passed() {
        // 1 packet a millisecond, B 10 ms behind A. A loses 50, B loses 120, both lose 150.
        let t0 = Instant::now();
        let mut m = Merger::default();
        let has = |path: Path, seq: u64| match path {
            Path::A => seq < 200 && seq != 50 && seq != 150,
            Path::B => seq < 200 && seq != 120 && seq != 150,
        };
        let mut out = Vec::new();
        let lost = |m: &Merger, path| {
            let s = m.path_stats(path);
            (s.lost, s.recovered_from_other)
        };
        for t in 0..300u64 {
            let now = ms(t0, t);
            if has(Path::A, t) {
                m.push(Path::A, now, rtp(t as u16, 1)).unwrap();
            }
            if t >= 10 && has(Path::B, t - 10) {
                m.push(Path::B, now, rtp((t - 10) as u16, 1)).unwrap();
            }
            m.handle_timeout(now);
            out.extend(drain(&mut m));
            match t {
                // 50 went out at 60 with B's copy; A's loss is settled a window later.
                109 => assert_eq!(lost(&m, Path::A), (0, 0)),
                110 => assert_eq!(lost(&m, Path::A), (1, 1)),
                // 120 went out at 120 with A's copy; B's copy would have come by 130.
                169 => assert_eq!(lost(&m, Path::B), (0, 0)),
                170 => assert_eq!(lost(&m, Path::B), (1, 1)),
                _ => {}
            }
        }
        let expected: Vec<u16> = (0..200).filter(|&s| s != 150).collect();
        assert_eq!(out, expected);
        assert_eq!(m.stats().lost, 1);
        // Lost on both: lost on each path, recovered on neither.
        assert_eq!(lost(&m, Path::A), (2, 1));
        assert_eq!(lost(&m, Path::B), (2, 1));
        assert_eq!(m.poll_timeout(), None, "nothing left to settle");
        // A copy after its number was settled is late and changes nothing else.
        m.push(Path::A, ms(t0, 300), rtp(50, 1)).unwrap();
        assert_eq!(m.path_stats(Path::A).late, 1);
        m.flush();
        assert_eq!(lost(&m, Path::A), (2, 1));
        assert_eq!(lost(&m, Path::B), (2, 1));
    }

    #[test]
    fn one_path_dying_costs_nothing() {
        let t0 = Instant::now();
        let mut m = Merger::default();
        let mut out = Vec::new();
        for s in 0..1000u16 {
            let now = ms(t0, u64::from(s));
            m.push(Path::A, now, rtp(s, 7)).unwrap();
            if s < 300 {
                m.push(Path::B, now, rtp(s, 7)).unwrap();
            }
            out.extend(drain(&mut m));
        }
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
        assert!(m.path_alive(Path::A, ms(t0, 1000)));
        assert!(!m.path_alive(Path::B, ms(t0, 1400)));
        m.flush();
        assert_eq!(m.path_stats(Path::B).lost, 700);
        assert_eq!(m.path_stats(Path::B).recovered_from_other, 700);
    }

    #[test]
    fn follows_a_sender_restart_with_a_new_ssrc() {
        let t0 = Instant::now();
        let mut m = Merger::default();
        let mut out = Vec::new();
        for i in 0..100u64 {
            let (seq, ssrc) = if i < 50 {
                (i as u16, 1)
            } else {
                (40_000 + i as u16, 2)
            };
            // Path B restarts 5 ms before path A.
            let b_ssrc = if i >= 45 { 2 } else { ssrc };
            let b_seq = if i >= 45 { 40_000 + i as u16 } else { seq };
            m.push(Path::A, ms(t0, i * 2), rtp(seq, ssrc)).unwrap();
            m.push(Path::B, ms(t0, i * 2 + 1), rtp(b_seq, b_ssrc))
                .unwrap();
            if let Some(t) = m.poll_timeout() {
                m.handle_timeout(t.min(ms(t0, i * 2 + 1)));
            }
            out.extend(drain(&mut m));
        }
        m.handle_timeout(ms(t0, 1000));
        out.extend(drain(&mut m));
        let expected: Vec<u16> = (0..50).chain((45..100).map(|i| 40_000 + i)).collect();
        assert_eq!(out, expected);
        assert_eq!(m.stats().resyncs, 1);
    }

    #[test]
    fn refuses_non_rtp() {
        let mut m = Merger::default();
        assert!(
            m.push(Path::A, Instant::now(), Bytes::from_static(&[0x47; 188]))
                .is_err()
        );
        assert!(m.poll_output().is_none());
    }

    /// Arrivals of one path: (time in µs, seq) for the packets it did not lose.
    fn path_arrivals(
        start: u16,
        n: usize,
        lost: &[bool],
        delay_us: u64,
        swaps: &[usize],
    ) -> Vec<(u64, u16)> {
        let mut v: Vec<(u64, u16)> = (0..n)
            .filter(|&i| !lost[i])
            .map(|i| (i as u64 * 500 + delay_us, start.wrapping_add(i as u16)))
            .collect();
        // Reordering inside the path: neighbours exchange arrival slots.
        for &s in swaps {
            if s + 1 < v.len() {
                let (a, b) = (v[s].1, v[s + 1].1);
                v[s].1 = b;
                v[s + 1].1 = a;
            }
        }
        v
    }

    fn first_difference(a: &[u16], b: &[u16]) -> Option<(usize, Option<u16>, Option<u16>)> {
        (0..a.len().max(b.len()))
            .find(|&i| a.get(i) != b.get(i))
            .map(|i| (i, a.get(i).copied(), b.get(i).copied()))
    }

    fn merge_run(a: &[(u64, u16)], b: &[(u64, u16)]) -> (Vec<u16>, Merger) {
        let t0 = Instant::now();
        let mut events: Vec<(u64, Path, u16)> = a
            .iter()
            .map(|&(t, s)| (t, Path::A, s))
            .chain(b.iter().map(|&(t, s)| (t, Path::B, s)))
            .collect();
        events.sort_by_key(|e| e.0);
        let mut m = Merger::default();
        let mut out = Vec::new();
        for (t, path, seq) in events {
            let now = t0 + Duration::from_micros(t);
            while let Some(d) = m.poll_timeout().filter(|&d| d <= now) {
                m.handle_timeout(d);
                out.extend(drain(&mut m));
            }
            m.push(path, now, rtp(seq, 9)).unwrap();
            out.extend(drain(&mut m));
        }
        m.handle_timeout(t0 + Duration::from_secs(3600));
        out.extend(drain(&mut m));
        m.flush();
        (out, m)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// The merge test: two paths, each losing 2 % at random (different packets),
        /// with reordering inside the window: the output loses nothing and repeats nothing.
        #[test]
        fn two_lossy_paths_merge_without_loss(
            start: u16, seed_a in proptest::collection::vec(0u32..100, 4000),
            seed_b in proptest::collection::vec(0u32..100, 4000),
            delay_b in 0u64..20_000,
            swaps in proptest::collection::vec(0usize..3900, 0..40),
        ) {
            let n = 4000;
            let lost_a: Vec<bool> = seed_a.iter().map(|&r| r < 2).collect();
            // Independent 2 % on B, except where A lost too (that packet is gone for good,
            // which the next property covers).
            let lost_b: Vec<bool> = seed_b.iter().zip(&lost_a).map(|(&r, &la)| r < 2 && !la).collect();
            let a = path_arrivals(start, n, &lost_a, 0, &swaps);
            let b = path_arrivals(start, n, &lost_b, delay_b, &[]);
            let (out, m) = merge_run(&a, &b);
            let expected: Vec<u16> = (0..n).map(|i| start.wrapping_add(i as u16)).collect();
            prop_assert!(out == expected, "first difference at {:?}", first_difference(&out, &expected));
            prop_assert_eq!(m.stats().lost, 0);
            // A path's losses count from its first packet on.
            let counted = |lost: &[bool]| lost.iter().skip_while(|&&l| l).filter(|&&l| l).count() as u64;
            prop_assert_eq!(m.path_stats(Path::A).lost, counted(&lost_a));
            prop_assert_eq!(m.path_stats(Path::A).recovered_from_other, counted(&lost_a));
            prop_assert_eq!(m.path_stats(Path::B).lost, counted(&lost_b));
        }

        /// Fully independent losses: the output is exactly what either path delivered,
        /// in order, once each.
        #[test]
        fn output_is_the_union_in_order(
            start: u16, seed_a in proptest::collection::vec(0u32..100, 3000),
            seed_b in proptest::collection::vec(0u32..100, 3000), delay_b in 0u64..30_000,
        ) {
            let n = 3000;
            let lost_a: Vec<bool> = seed_a.iter().map(|&r| r < 5).collect();
            let lost_b: Vec<bool> = seed_b.iter().map(|&r| r < 5).collect();
            let a = path_arrivals(start, n, &lost_a, 0, &[]);
            let b = path_arrivals(start, n, &lost_b, delay_b, &[]);
            let (out, m) = merge_run(&a, &b);
            // Trailing packets lost on both paths are invisible to any receiver.
            let expected: Vec<u16> = (0..n).filter(|&i| !(lost_a[i] && lost_b[i]))
                .map(|i| start.wrapping_add(i as u16)).collect();
            prop_assert!(out == expected, "first difference at {:?}", first_difference(&out, &expected));
            let both = (0..n).filter(|&i| lost_a[i] && lost_b[i]).count();
            // So are leading ones: the merger cannot know the stream began before the first
            // packet it saw.
            let head = (0..n).take_while(|&i| lost_a[i] && lost_b[i]).count();
            let tail = (0..n).rev().take_while(|&i| lost_a[i] && lost_b[i]).count();
            prop_assert_eq!(m.stats().lost, both.saturating_sub(head + tail) as u64);
        }

        #[test]
        fn arbitrary_datagrams_never_panic(packets in proptest::collection::vec(
            (any::<bool>(), 0u64..200, proptest::collection::vec(any::<u8>(), 0..40)), 0..200)) {
            let t0 = Instant::now();
            let mut m = Merger::new(MergerConfig { max_packets: 16, ..MergerConfig::default() });
            for (b, t, mut data) in packets {
                if data.len() >= 12 { data[0] = 0x80; }
                let _ = m.push(if b { Path::B } else { Path::A }, t0 + Duration::from_millis(t), Bytes::from(data));
                m.handle_timeout(t0 + Duration::from_millis(t));
                while m.poll_output().is_some() {}
            }
            m.flush();
        }
    }
}
