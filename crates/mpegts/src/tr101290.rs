//! ETSI TR 101 290 measurements (priority 1, 2 and the unreferenced-PID check of priority 3)
//! over a transport stream fed as bytes with their arrival time.
//!
//! Sans-IO: `feed(now, bytes)` takes any slicing of the stream (datagrams, file chunks);
//! `tick(now)` runs the "not present for N ms" checks when no data comes. The monitor counts
//! every error in total and per PID and queues a timestamped event for each.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::packet::{NULL_PID, PCR_HZ, SYNC_BYTE, TS_PACKET_SIZE, TsPacket, pcr_delta};
use crate::pes::PesHeader;
use crate::psi::{Pat, Pmt};
use crate::psi::{PsiError, SectionAssembler, TABLE_ID_CAT, TABLE_ID_PAT, TABLE_ID_PMT};

/// The error indicators, named as in TR 101 290 §5.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// 1.1: sync lost (after `sync_loss_packets` consecutive bad sync bytes).
    TsSyncLoss,
    /// 1.2: a sync byte other than 0x47 where one was due.
    SyncByte,
    /// 1.3a (PAT_error_2): no PAT for `pat_interval`, a table other than the PAT on PID 0,
    /// or PID 0 scrambled.
    Pat,
    /// 1.4: packet lost, out of order, or repeated more than once.
    ContinuityCount,
    /// 1.5a (PMT_error_2): no PMT on a PID the PAT names for `pmt_interval`, or it is scrambled.
    Pmt,
    /// 1.6: a PID a PMT names did not occur for `pid_timeout`.
    Pid,
    /// 2.1: transport_error_indicator set.
    Transport,
    /// 2.2: CRC error in a PAT, CAT, PMT or SI section.
    Crc,
    /// 2.3b: PCRs further apart than `pcr_repetition` in arrival time.
    PcrRepetition,
    /// 2.3a: consecutive PCR values differ by more than `pcr_discontinuity` (or go backwards)
    /// without discontinuity_indicator.
    PcrDiscontinuityIndicator,
    /// 2.4: PCR off by more than `pcr_accuracy` from its position in a constant-rate stream.
    PcrAccuracy,
    /// 2.5: PTSs of an audio or video PID further apart than `pts_interval`.
    Pts,
    /// 2.6: scrambled packets without a CAT, or a table other than the CAT on PID 1.
    Cat,
    /// 3.4: a PID no PMT or PAT names, still unnamed after `unreferenced_grace`.
    UnreferencedPid,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        Self::TsSyncLoss,
        Self::SyncByte,
        Self::Pat,
        Self::ContinuityCount,
        Self::Pmt,
        Self::Pid,
        Self::Transport,
        Self::Crc,
        Self::PcrRepetition,
        Self::PcrDiscontinuityIndicator,
        Self::PcrAccuracy,
        Self::Pts,
        Self::Cat,
        Self::UnreferencedPid,
    ];
    const COUNT: usize = Self::ALL.len();

    /// The indicator's name in the standard.
    pub fn name(self) -> &'static str {
        match self {
            Self::TsSyncLoss => "TS_sync_loss",
            Self::SyncByte => "Sync_byte_error",
            Self::Pat => "PAT_error_2",
            Self::ContinuityCount => "Continuity_count_error",
            Self::Pmt => "PMT_error_2",
            Self::Pid => "PID_error",
            Self::Transport => "Transport_error",
            Self::Crc => "CRC_error",
            Self::PcrRepetition => "PCR_repetition_error",
            Self::PcrDiscontinuityIndicator => "PCR_discontinuity_indicator_error",
            Self::PcrAccuracy => "PCR_accuracy_error",
            Self::Pts => "PTS_error",
            Self::Cat => "CAT_error",
            Self::UnreferencedPid => "Unreferenced_PID",
        }
    }

    /// 1, 2 or 3.
    pub fn priority(self) -> u8 {
        match self {
            Self::TsSyncLoss
            | Self::SyncByte
            | Self::Pat
            | Self::ContinuityCount
            | Self::Pmt
            | Self::Pid => 1,
            Self::UnreferencedPid => 3,
            _ => 2,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Thresholds; `Default` gives the values TR 101 290 states (and 5 s for the
/// "user specified" PID_error period).
#[derive(Debug, Clone)]
pub struct Tr101290Config {
    /// Consecutive good sync bytes that (re)acquire sync.
    pub sync_acquire_packets: usize,
    /// Consecutive bad sync bytes that lose sync.
    pub sync_loss_packets: u32,
    pub pat_interval: Duration,
    pub pmt_interval: Duration,
    pub pid_timeout: Duration,
    pub pcr_repetition: Duration,
    pub pcr_discontinuity: Duration,
    /// ±500 ns; `None` disables the check (it only means something for constant-rate streams).
    pub pcr_accuracy: Option<Duration>,
    pub pts_interval: Duration,
    pub unreferenced_grace: Duration,
    /// Averaging period of the bitrates.
    pub bitrate_window: Duration,
    /// Events kept until polled; older ones are dropped (and counted) beyond this.
    pub max_events: usize,
}

impl Default for Tr101290Config {
    fn default() -> Self {
        Self {
            sync_acquire_packets: 5,
            sync_loss_packets: 2,
            pat_interval: Duration::from_millis(500),
            pmt_interval: Duration::from_millis(500),
            pid_timeout: Duration::from_secs(5),
            pcr_repetition: Duration::from_millis(100),
            pcr_discontinuity: Duration::from_millis(100),
            pcr_accuracy: Some(Duration::from_nanos(500)),
            pts_interval: Duration::from_millis(700),
            unreferenced_grace: Duration::from_millis(500),
            bitrate_window: Duration::from_secs(1),
            max_events: 4096,
        }
    }
}

/// One error occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tr101290Event {
    pub at: Instant,
    pub kind: ErrorKind,
    /// The PID it concerns, where it concerns one.
    pub pid: Option<u16>,
}

/// What a PID is, from the PAT and PMTs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidRole {
    pub pmt: bool,
    pub elementary: bool,
    /// An audio or video stream (PTS checked).
    pub audio_video: bool,
    pub pcr: bool,
}

/// Running state and counters of one PID.
#[derive(Debug, Clone)]
pub struct PidStats {
    pub pid: u16,
    pub packets: u64,
    /// Average over the last complete bitrate window, bits per second.
    pub bitrate: u64,
    pub role: PidRole,
    errors: [u64; ErrorKind::COUNT],
    window_bytes: u64,
    last_cc: Option<u8>,
    repeats: u8,
    scrambled: bool,
    first_seen: Instant,
    /// Start of the current absence for PID_error (last packet or last report).
    pid_timer: Instant,
    pmt_timer: Instant,
    pcr_timer: Option<Instant>,
    pts_timer: Option<Instant>,
    unreferenced_reported: bool,
    pcr: Option<PcrTrack>,
    sections: Option<Box<SectionAssembler>>,
    /// The last good section of a PSI PID, to skip reparsing repeats.
    last_section: Vec<u8>,
}

impl PidStats {
    fn new(pid: u16, now: Instant) -> Self {
        Self {
            pid,
            packets: 0,
            bitrate: 0,
            role: PidRole::default(),
            errors: [0; ErrorKind::COUNT],
            window_bytes: 0,
            last_cc: None,
            repeats: 0,
            scrambled: false,
            first_seen: now,
            pid_timer: now,
            pmt_timer: now,
            pcr_timer: None,
            pts_timer: None,
            unreferenced_reported: false,
            pcr: None,
            sections: None,
            last_section: Vec::new(),
        }
    }

    /// Errors of this kind counted on this PID.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    fn referenced(&self) -> bool {
        self.pid <= 0x1F || self.pid == NULL_PID || self.role != PidRole::default()
    }
}

/// PCR history of one PID for the interval, discontinuity and accuracy checks.
#[derive(Debug, Clone, Copy)]
struct PcrTrack {
    last: u64,
    last_byte: u64,
    /// The stream's rate in PCR ticks per byte, from the last interval judged accurate.
    rate: Option<f64>,
    /// Whether the last interval was off: two in a row mean the rate itself changed.
    last_off: bool,
}

/// The monitor. Create one per stream; feed it every byte in order.
#[derive(Debug)]
pub struct Tr101290Monitor {
    config: Tr101290Config,
    pending: Vec<u8>,
    synced: bool,
    bad_sync_run: u32,
    pid_index: Box<[u16; 8192]>,
    pids: Vec<PidStats>,
    totals: [u64; ErrorKind::COUNT],
    events: VecDeque<Tr101290Event>,
    events_dropped: u64,
    packets: u64,
    bytes: u64,
    malformed_packets: u64,
    pat: Option<Pat>,
    pat_timer: Option<Instant>,
    pmts: BTreeMap<u16, Pmt>,
    cat_seen: bool,
    cat_error_reported: bool,
    next_timer_check: Option<Instant>,
    window_start: Option<Instant>,
    window_bytes: u64,
    bitrate: u64,
}

/// Timed checks run at most this often while packets flow.
const TIMER_GRANULARITY: Duration = Duration::from_millis(10);

impl Default for Tr101290Monitor {
    fn default() -> Self {
        Self::new(Tr101290Config::default())
    }
}

impl Tr101290Monitor {
    pub fn new(config: Tr101290Config) -> Self {
        Self {
            config,
            pending: Vec::with_capacity(8 * TS_PACKET_SIZE),
            synced: false,
            bad_sync_run: 0,
            pid_index: Box::new([0; 8192]),
            pids: Vec::new(),
            totals: [0; ErrorKind::COUNT],
            events: VecDeque::new(),
            events_dropped: 0,
            packets: 0,
            bytes: 0,
            malformed_packets: 0,
            pat: None,
            pat_timer: None,
            pmts: BTreeMap::new(),
            cat_seen: false,
            cat_error_reported: false,
            next_timer_check: None,
            window_start: None,
            window_bytes: 0,
            bitrate: 0,
        }
    }

    /// Feeds stream bytes that arrived at `now`. Any slicing works; partial packets wait
    /// for the rest.
    pub fn feed(&mut self, now: Instant, bytes: &[u8]) {
        // These bytes belong to the window that ends now or later.
        self.roll_bitrate_window(now);
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut at = 0;
        loop {
            if self.synced {
                let Some(packet) = buf.get(at..at + TS_PACKET_SIZE) else {
                    break;
                };
                let packet: &[u8; TS_PACKET_SIZE] = packet.try_into().expect("188 bytes");
                if packet[0] == SYNC_BYTE {
                    self.bad_sync_run = 0;
                } else {
                    self.error(now, ErrorKind::SyncByte, None);
                    self.bad_sync_run += 1;
                    if self.bad_sync_run >= self.config.sync_loss_packets {
                        self.error(now, ErrorKind::TsSyncLoss, None);
                        self.synced = false;
                        at += 1;
                        continue;
                    }
                    // One bad sync byte keeps sync: the rest of the packet is still read.
                }
                self.on_packet(now, packet);
                at += TS_PACKET_SIZE;
            } else {
                match self.hunt(&buf[at..]) {
                    Ok(offset) => {
                        at += offset;
                        self.synced = true;
                        self.bad_sync_run = 0;
                        self.on_sync_acquired(now);
                    }
                    Err(skip) => {
                        at += skip;
                        break;
                    }
                }
            }
        }
        let mut buf = buf;
        buf.drain(..at);
        self.pending = buf;
        self.tick(now);
    }

    /// Finds `sync_acquire_packets` sync bytes 188 apart: Ok(offset), or Err(bytes that
    /// cannot start such a run).
    fn hunt(&self, buf: &[u8]) -> Result<usize, usize> {
        let n = self.config.sync_acquire_packets.max(1);
        let span = (n - 1) * TS_PACKET_SIZE + 1;
        let mut i = 0;
        while i + span <= buf.len() {
            if (0..n).all(|k| buf[i + k * TS_PACKET_SIZE] == SYNC_BYTE) {
                return Ok(i);
            }
            i += 1;
        }
        Err(i)
    }

    fn on_sync_acquired(&mut self, now: Instant) {
        // Absence is measured only while in sync: restart every clock.
        self.pat_timer = Some(now);
        for p in &mut self.pids {
            p.pid_timer = now;
            p.pmt_timer = now;
            p.pcr_timer = p.pcr_timer.map(|_| now);
            p.pts_timer = p.pts_timer.map(|_| now);
            // The continuity counter is kept: packets lost while out of sync are lost.
            p.pcr = None;
            if let Some(s) = &mut p.sections {
                s.reset();
            }
        }
    }

    fn error(&mut self, now: Instant, kind: ErrorKind, pid: Option<u16>) {
        self.totals[kind.index()] += 1;
        if let Some(pid) = pid {
            let i = self.state_index(pid, now);
            self.pids[i].errors[kind.index()] += 1;
        }
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(Tr101290Event { at: now, kind, pid });
    }

    fn state_index(&mut self, pid: u16, now: Instant) -> usize {
        let slot = &mut self.pid_index[usize::from(pid & 0x1FFF)];
        if *slot == 0 {
            self.pids.push(PidStats::new(pid, now));
            *slot = self.pids.len() as u16;
        }
        usize::from(*slot - 1)
    }

    fn on_packet(&mut self, now: Instant, raw: &[u8; TS_PACKET_SIZE]) {
        self.packets += 1;
        self.bytes += TS_PACKET_SIZE as u64;
        self.window_bytes += TS_PACKET_SIZE as u64;
        let byte_pos = self.bytes;
        // The sync byte was judged already; parse as if it were right.
        let mut fixed;
        let raw = if raw[0] == SYNC_BYTE {
            raw
        } else {
            fixed = *raw;
            fixed[0] = SYNC_BYTE;
            &fixed
        };
        let Ok(packet) = TsPacket::parse(raw) else {
            self.malformed_packets += 1;
            return;
        };
        let h = packet.header;
        let pid = h.pid;
        let i = self.state_index(pid, now);
        let st = &mut self.pids[i];
        st.packets += 1;
        st.window_bytes += TS_PACKET_SIZE as u64;
        st.pid_timer = now;

        if h.transport_error {
            // The content is unreliable: count it, keep its CC as the reference, read nothing.
            st.last_cc = Some(h.continuity_counter);
            self.error(now, ErrorKind::Transport, Some(pid));
            return;
        }

        if pid != NULL_PID && self.continuity(now, i, &packet) {
            // Repeated packet: its content was already read.
            return;
        }

        if h.scrambling != 0 {
            self.on_scrambled(now, i);
        }
        if let Some(pcr) = packet.pcr() {
            self.on_pcr(now, i, pcr.to_27mhz(), packet.discontinuity(), byte_pos);
        }
        if packet.payload.is_empty() || h.scrambling != 0 {
            return;
        }
        let st = &self.pids[i];
        if pid <= 0x1F || st.role.pmt {
            self.on_section_payload(now, i, h.payload_unit_start, packet.payload);
        } else if st.role.audio_video
            && h.payload_unit_start
            && PesHeader::parse(packet.payload).is_ok_and(|pes| pes.pts.is_some())
        {
            self.on_pts(now, i);
        }
    }

    /// Checks the continuity counter; returns true for an allowed repeat.
    fn continuity(&mut self, now: Instant, i: usize, packet: &TsPacket<'_>) -> bool {
        let st = &mut self.pids[i];
        let cc = packet.header.continuity_counter;
        let Some(last) = st.last_cc.replace(cc) else {
            return false;
        };
        let discontinuity = packet.discontinuity();
        let ok = if !packet.header.has_payload {
            // Without payload the counter must not advance.
            cc == last
        } else if cc == last {
            st.repeats += 1;
            if st.repeats == 1 && !discontinuity {
                return true;
            }
            false
        } else {
            st.repeats = 0;
            cc == (last + 1) & 0x0F
        };
        if ok || discontinuity {
            return false;
        }
        st.repeats = 0;
        if let Some(s) = &mut st.sections {
            s.reset();
        }
        let pid = st.pid;
        // A lost packet also breaks the byte count the PCR accuracy check relies on:
        // every PCR history restarts with the next PCR.
        for p in &mut self.pids {
            p.pcr = None;
        }
        self.error(now, ErrorKind::ContinuityCount, Some(pid));
        false
    }

    fn on_scrambled(&mut self, now: Instant, i: usize) {
        let st = &mut self.pids[i];
        let first = !st.scrambled;
        st.scrambled = true;
        let (pid, pmt) = (st.pid, st.role.pmt);
        if pid == 0 {
            self.error(now, ErrorKind::Pat, Some(0));
        } else if pmt {
            self.error(now, ErrorKind::Pmt, Some(pid));
        }
        if first && !self.cat_seen && !self.cat_error_reported {
            self.cat_error_reported = true;
            self.error(now, ErrorKind::Cat, Some(pid));
        }
    }

    fn on_pcr(&mut self, now: Instant, i: usize, pcr: u64, discontinuity: bool, byte_pos: u64) {
        let max_jump = duration_to_ticks(self.config.pcr_discontinuity);
        let accuracy = self.config.pcr_accuracy.map(duration_to_ticks_f64);
        let repetition = self.config.pcr_repetition;
        let st = &mut self.pids[i];
        let pid = st.pid;
        let previous_arrival = st.pcr_timer.replace(now);
        let previous = st.pcr.replace(PcrTrack {
            last: pcr,
            last_byte: byte_pos,
            rate: None,
            last_off: false,
        });
        let mut errors = Vec::new();
        if previous_arrival.is_some_and(|t| now.saturating_duration_since(t) > repetition) {
            errors.push(ErrorKind::PcrRepetition);
        }
        if let (Some(t), false) = (previous, discontinuity) {
            let delta = pcr_delta(t.last, pcr);
            if delta > max_jump {
                errors.push(ErrorKind::PcrDiscontinuityIndicator);
            } else if byte_pos > t.last_byte {
                // Constant rate: the PCR must match its byte position at the rate the
                // previous good interval showed.
                let interval_rate = delta as f64 / (byte_pos - t.last_byte) as f64;
                let mut off = false;
                if let (Some(limit), Some(rate)) = (accuracy, t.rate) {
                    let jitter = delta as f64 - (byte_pos - t.last_byte) as f64 * rate;
                    off = jitter.abs() > limit;
                }
                let next = st.pcr.as_mut().expect("just set");
                next.last_off = off;
                next.rate = if off && !t.last_off {
                    t.rate
                } else {
                    Some(interval_rate)
                };
                if off {
                    errors.push(ErrorKind::PcrAccuracy);
                }
            }
        }
        for kind in errors {
            self.error(now, kind, Some(pid));
        }
    }

    fn on_pts(&mut self, now: Instant, i: usize) {
        let st = &mut self.pids[i];
        let late = st
            .pts_timer
            .replace(now)
            .is_some_and(|t| now.saturating_duration_since(t) > self.config.pts_interval);
        if late {
            let pid = st.pid;
            self.error(now, ErrorKind::Pts, Some(pid));
        }
    }

    fn on_section_payload(&mut self, now: Instant, i: usize, pusi: bool, payload: &[u8]) {
        let pid = self.pids[i].pid;
        let mut sections = self.pids[i]
            .sections
            .take()
            .unwrap_or_else(|| Box::new(SectionAssembler::new()));
        let mut found: Vec<Result<Vec<u8>, PsiError>> = Vec::new();
        sections.push(pusi, payload, &mut |r| match r {
            Ok(s) => found.push(Ok(s.to_vec())),
            Err(e) => found.push(Err(e)),
        });
        self.pids[i].sections = Some(sections);
        for r in found {
            match r {
                Ok(section) => self.on_section(now, i, pid, section),
                Err(PsiError::Crc { .. }) => self.error(now, ErrorKind::Crc, Some(pid)),
                // Sections cut by packet loss were counted as continuity errors.
                Err(_) => {}
            }
        }
    }

    fn on_section(&mut self, now: Instant, i: usize, pid: u16, section: Vec<u8>) {
        let table_id = section[0];
        match pid {
            0 if table_id != TABLE_ID_PAT => self.error(now, ErrorKind::Pat, Some(0)),
            0 => {
                self.pat_timer = Some(now);
                if self.pids[i].last_section != section {
                    if let Ok(pat) = Pat::parse(&section) {
                        self.pat = Some(pat);
                        self.pmts.retain(|pid, _| {
                            self.pat.iter().any(|p| p.pmt_pids().any(|x| x == *pid))
                        });
                        self.update_roles(now);
                    }
                    self.pids[i].last_section = section;
                }
            }
            1 if table_id != TABLE_ID_CAT => self.error(now, ErrorKind::Cat, Some(1)),
            1 => self.cat_seen = true,
            _ if self.pids[i].role.pmt && table_id == TABLE_ID_PMT => {
                self.pids[i].pmt_timer = now;
                if self.pids[i].last_section != section {
                    if let Ok(pmt) = Pmt::parse(&section) {
                        self.pmts.insert(pid, pmt);
                        self.update_roles(now);
                    }
                    self.pids[i].last_section = section;
                }
            }
            _ => {}
        }
    }

    /// Recomputes every PID's role from the PAT and PMTs; newly named PIDs start their
    /// absence clocks now.
    fn update_roles(&mut self, now: Instant) {
        let mut roles: BTreeMap<u16, PidRole> = BTreeMap::new();
        if let Some(pat) = &self.pat {
            for pid in pat.pmt_pids() {
                roles.entry(pid).or_default().pmt = true;
            }
        }
        for pmt in self.pmts.values() {
            roles.entry(pmt.pcr_pid).or_default().pcr = true;
            for s in &pmt.streams {
                let r = roles.entry(s.pid).or_default();
                r.elementary = true;
                r.audio_video |= s.kind().is_audio_video();
            }
        }
        roles.remove(&NULL_PID);
        for &pid in roles.keys() {
            self.state_index(pid, now);
        }
        for p in &mut self.pids {
            let new = roles.get(&p.pid).copied().unwrap_or_default();
            let old = std::mem::replace(&mut p.role, new);
            if new.elementary && !old.elementary && p.packets == 0 {
                p.pid_timer = now;
            }
            if new.pmt && !old.pmt {
                p.pmt_timer = now;
            }
            if new.pcr && p.pcr_timer.is_none() {
                p.pcr_timer = Some(now);
            }
        }
    }

    /// Runs the time-based checks (absences, bitrate window). `feed` calls it; call it
    /// yourself when no data arrives.
    pub fn tick(&mut self, now: Instant) {
        self.roll_bitrate_window(now);
        if !self.synced || self.next_timer_check.is_some_and(|t| now < t) {
            return;
        }
        self.next_timer_check = Some(now + TIMER_GRANULARITY);
        let c = &self.config;
        let late = |since: Instant, limit: Duration| now.saturating_duration_since(since) > limit;
        let mut errors: Vec<(ErrorKind, Option<u16>)> = Vec::new();
        if let Some(t) = self.pat_timer
            && late(t, c.pat_interval)
        {
            self.pat_timer = Some(now);
            errors.push((ErrorKind::Pat, Some(0)));
        }
        for p in &mut self.pids {
            if p.role.pmt && late(p.pmt_timer, c.pmt_interval) {
                p.pmt_timer = now;
                errors.push((ErrorKind::Pmt, Some(p.pid)));
            }
            if p.role.elementary && late(p.pid_timer, c.pid_timeout) {
                p.pid_timer = now;
                errors.push((ErrorKind::Pid, Some(p.pid)));
            }
            if p.role.pcr
                && let Some(t) = p.pcr_timer
                && late(t, c.pcr_repetition)
            {
                p.pcr_timer = Some(now);
                errors.push((ErrorKind::PcrRepetition, Some(p.pid)));
            }
            if p.role.audio_video
                && let Some(t) = p.pts_timer
                && late(t, c.pts_interval)
            {
                p.pts_timer = Some(now);
                errors.push((ErrorKind::Pts, Some(p.pid)));
            }
            if !p.unreferenced_reported
                && p.packets > 0
                && !p.referenced()
                && late(p.first_seen, c.unreferenced_grace)
            {
                p.unreferenced_reported = true;
                errors.push((ErrorKind::UnreferencedPid, Some(p.pid)));
            }
        }
        for (kind, pid) in errors {
            self.error(now, kind, pid);
        }
    }

    fn roll_bitrate_window(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.config.bitrate_window || elapsed.is_zero() {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let rate = |bytes: u64| (bytes as f64 * 8.0 / secs) as u64;
        self.bitrate = rate(self.window_bytes);
        self.window_bytes = 0;
        for p in &mut self.pids {
            p.bitrate = rate(p.window_bytes);
            p.window_bytes = 0;
        }
        self.window_start = Some(now);
    }

    /// Next queued error event.
    pub fn poll_event(&mut self) -> Option<Tr101290Event> {
        self.events.pop_front()
    }

    /// Errors of this kind in total.
    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.totals[kind.index()]
    }

    /// Errors of priority 1 in total (the failover switch's health signal).
    pub fn priority1_errors(&self) -> u64 {
        ErrorKind::ALL
            .iter()
            .filter(|k| k.priority() == 1)
            .map(|&k| self.count(k))
            .sum()
    }

    /// PCR_error (2.3) as the standard's combined indicator.
    pub fn pcr_errors(&self) -> u64 {
        self.count(ErrorKind::PcrRepetition) + self.count(ErrorKind::PcrDiscontinuityIndicator)
    }

    /// State and counters of one PID, if it occurred or was named.
    pub fn pid(&self, pid: u16) -> Option<&PidStats> {
        match self.pid_index.get(usize::from(pid))? {
            0 => None,
            &i => Some(&self.pids[usize::from(i) - 1]),
        }
    }

    /// Every PID seen or named, in order of first appearance.
    pub fn pids(&self) -> &[PidStats] {
        &self.pids
    }

    /// Errors of one kind on one PID (0 when the PID is unknown).
    pub fn pid_count(&self, pid: u16, kind: ErrorKind) -> u64 {
        self.pid(pid).map_or(0, |p| p.errors(kind))
    }

    /// Total bitrate over the last complete window, bits per second.
    pub fn bitrate(&self) -> u64 {
        self.bitrate
    }

    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Packets whose header or adaptation field could not be read (not a TR 101 290 item).
    pub fn malformed_packets(&self) -> u64 {
        self.malformed_packets
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn pat(&self) -> Option<&Pat> {
        self.pat.as_ref()
    }

    /// PMTs by PMT PID.
    pub fn pmts(&self) -> &BTreeMap<u16, Pmt> {
        &self.pmts
    }
}

fn duration_to_ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(PCR_HZ) / 1_000_000_000) as u64
}

fn duration_to_ticks_f64(d: Duration) -> f64 {
    d.as_secs_f64() * PCR_HZ as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{AdaptationField, Pcr, TsHeader};
    use crate::psi::{PatEntry, PmtStream, packetize_section};
    use proptest::prelude::*;

    /// A tiny synthetic stream: PAT, PMT (video 0x100 with PCR), video packets.
    struct Gen {
        cc: [u8; 3],
        pcr: u64,
    }

    impl Gen {
        fn packet(
            &mut self,
            slot: usize,
            pid: u16,
            pusi: bool,
            payload: &[u8],
            pcr: bool,
        ) -> [u8; 188] {
            let cc = self.cc[slot];
            self.cc[slot] = (cc + 1) & 15;
            TsPacket {
                header: TsHeader {
                    transport_error: false,
                    payload_unit_start: pusi,
                    transport_priority: false,
                    pid,
                    scrambling: 0,
                    has_adaptation: false,
                    has_payload: true,
                    continuity_counter: cc,
                },
                adaptation: pcr.then(|| AdaptationField {
                    pcr: Some(Pcr::from_27mhz(self.pcr)),
                    ..AdaptationField::default()
                }),
                payload,
            }
            .encode()
            .unwrap()
        }

        /// 20 ms of stream: PSI, then a PES start with PTS and PCR, then 9 video packets.
        fn burst(&mut self) -> Vec<u8> {
            let pat = Pat {
                transport_stream_id: 1,
                version: 0,
                current_next: true,
                section_number: 0,
                last_section_number: 0,
                programs: vec![PatEntry {
                    program_number: 1,
                    pid: 0x1000,
                }],
            };
            let pmt = Pmt {
                program_number: 1,
                version: 0,
                current_next: true,
                pcr_pid: 0x100,
                program_info: vec![],
                streams: vec![PmtStream {
                    stream_type: 0x1B,
                    pid: 0x100,
                    es_info: vec![],
                }],
            };
            let mut out = Vec::new();
            out.extend(self.packet(0, 0, true, &packetize_section(&pat.to_section())[0], false));
            out.extend(self.packet(
                1,
                0x1000,
                true,
                &packetize_section(&pmt.to_section())[0],
                false,
            ));
            let pes = PesHeader {
                stream_id: 0xE0,
                packet_length: 0,
                pts: Some(self.pcr / 300),
                dts: None,
                header_len: 14,
            }
            .encode();
            out.extend(self.packet(2, 0x100, true, &pes, true));
            for _ in 0..9 {
                out.extend(self.packet(2, 0x100, false, &[0u8; 184], false));
            }
            self.pcr += 27_000 * 20;
            out
        }
    }

    fn run(bursts: usize, edit: impl Fn(usize, &mut Vec<u8>)) -> Tr101290Monitor {
        let mut g = Gen {
            cc: [0; 3],
            pcr: 1000,
        };
        let mut m = Tr101290Monitor::default();
        let t0 = Instant::now();
        for b in 0..bursts {
            let mut data = g.burst();
            edit(b, &mut data);
            m.feed(t0 + Duration::from_millis(20 * b as u64), &data);
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

    #[test]
    fn clean_stream_has_no_errors() {
        let m = run(100, |_, _| {});
        assert_eq!(errors(&m), vec![]);
        assert!(m.synced());
        assert_eq!(m.pmts()[&0x1000].streams[0].pid, 0x100);
        assert!(m.pid(0x100).unwrap().role.pcr);
        // 12 packets per 20 ms.
        assert_eq!(m.bitrate(), 12 * 188 * 8 * 50);
    }

    #[test]
    fn dropped_packet_is_one_cc_error() {
        let m = run(100, |b, d| {
            if b == 50 {
                d.drain(188 * 5..188 * 6);
            }
        });
        assert_eq!(errors(&m), vec![("Continuity_count_error", 1)]);
        assert_eq!(m.pid_count(0x100, ErrorKind::ContinuityCount), 1);
    }

    #[test]
    fn one_repeat_is_allowed_two_are_not() {
        let m = run(50, |b, d| {
            if b == 20 {
                let p = d[188 * 4..188 * 5].to_vec();
                d.splice(188 * 5..188 * 5, p);
            }
            if b == 30 {
                let p = d[188 * 4..188 * 5].to_vec();
                d.splice(188 * 5..188 * 5, p.repeat(2));
            }
        });
        // The allowed repeat still shifts the next PCR from its constant-rate position.
        assert_eq!(
            errors(&m),
            vec![("Continuity_count_error", 1), ("PCR_accuracy_error", 1)]
        );
    }

    #[test]
    fn sync_loss_and_reacquisition() {
        let m = run(100, |b, d| {
            if b == 40 {
                d[188 * 3] = 0x46;
            }
            if b == 60 {
                d[188 * 3] = 0;
                d[188 * 4] = 0;
            }
        });
        // The second bad packet of the pair is lost to the hunt: one CC error.
        assert_eq!(
            errors(&m),
            vec![
                ("TS_sync_loss", 1),
                ("Sync_byte_error", 3),
                ("Continuity_count_error", 1)
            ]
        );
        assert!(m.synced());
    }

    #[test]
    fn missing_pat_and_pcr() {
        let m = run(100, |b, d| {
            // PATs gone for 0.6 s: one PAT_error_2.
            if (30..60).contains(&b) {
                d[0..188].fill(0xFF);
                d[0] = 0x47;
                d[1] = 0x1F;
                d[2] = 0xFF;
                d[3] = 0x10;
            }
        });
        // Removing the PAT packets also breaks PID 0's continuity once.
        assert_eq!(
            errors(&m),
            vec![("PAT_error_2", 1), ("Continuity_count_error", 1)]
        );
        assert_eq!(m.pid_count(0, ErrorKind::ContinuityCount), 1);
    }

    #[test]
    fn transport_error_and_crc() {
        let m = run(50, |b, d| {
            if b == 10 {
                d[188 * 5 + 1] |= 0x80;
            }
            if b == 20 {
                d[20] ^= 0xFF; // inside the PAT's CRC
            }
        });
        assert_eq!(errors(&m), vec![("Transport_error", 1), ("CRC_error", 1)]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(0x47u8), any::<u8>()], 0..1500), 0..10)) {
            let mut m = Tr101290Monitor::default();
            let t0 = Instant::now();
            for (i, c) in chunks.iter().enumerate() {
                m.feed(t0 + Duration::from_millis(i as u64 * 30), c);
            }
        }

        #[test]
        fn mutated_stream_never_panics(flips in proptest::collection::vec((0usize..12 * 188 * 20, any::<u8>()), 0..50)) {
            let mut g = Gen { cc: [0; 3], pcr: 0 };
            let mut data: Vec<u8> = (0..20).flat_map(|_| g.burst()).collect();
            for (at, v) in flips { data[at] = v; }
            let mut m = Tr101290Monitor::default();
            let t0 = Instant::now();
            for (i, c) in data.chunks(1316).enumerate() {
                m.feed(t0 + Duration::from_millis(i as u64 * 3), c);
            }
        }
    }
}
