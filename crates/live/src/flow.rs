//! A flow's runtime: its one or two sources, the redundancy between them, the TR 101 290
//! monitors, and the [`FlowBus`] that outputs read from.
//!
//! ```text
//! source tasks ──(aligned TS, arrival time)──▶ failover switch │ 2022-7 merger ──▶ monitor ──▶ FlowBus
//! ```
//!
//! One task owns all of a flow's state, so the sans-IO switch and merger run without locks;
//! sources hand it payloads over a bounded queue and never wait for it. Status is asked for
//! over a channel and answered from that same state, so it is always consistent.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stadion_mpegts::tr101290::ErrorKind;
use stadion_mpegts::{
    FailoverConfig, FailoverSwitch, Merger, MergerConfig, Path, Source, SwitchReason,
    TS_PACKET_SIZE, Tr101290Monitor,
};
use stadion_srt::ConnectionConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::fanout::FlowBus;
use crate::source::srt::IngestListener;
use crate::source::{SourceConfig, SourceCounters, SourceEvent, SourceKind, SourceTx};

/// TS packets per bus chunk: 7 × 188 = 1316 bytes, one SRT or UDP payload.
pub const PACKETS_PER_CHUNK: usize = 7;
/// Chunks a flow's bus holds: at 7 packets a chunk about 2 s of a 20 Mb/s feed.
const BUS_CAPACITY: usize = 4096;
/// Payloads queued from sources to the flow's task.
const SOURCE_QUEUE: usize = 4096;
/// How often monitors run their timed checks when no data comes.
const TICK: Duration = Duration::from_millis(50);
/// Switches kept in the status.
const SWITCH_HISTORY: usize = 16;

/// How a flow with two sources uses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// One source at a time; the backup takes over when the active one stops or degrades.
    #[default]
    Failover,
    /// SMPTE 2022-7: both RTP sources at once, merged by sequence number.
    Merge,
}

// The settings are the control plane's own types: one definition, one set of defaults and
// limits, whether a flow comes from the store or from a test's JSON.
pub use stadion_control::transport::{FailoverSettings, MergeSettings};

/// A flow as configured: the first source is the main one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowConfig {
    pub name: String,
    #[serde(default)]
    pub redundancy: Redundancy,
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub failover: FailoverSettings,
    #[serde(default)]
    pub merge: MergeSettings,
}

/// Why a flow does not start.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("flow {flow:?}: a flow has one or two sources, not {count}")]
    SourceCount { flow: String, count: usize },
    #[error("flow {flow:?}: two sources are named {name:?}")]
    DuplicateSource { flow: String, name: String },
    #[error("flow {flow:?}: merge needs two sources of kind rtp; {detail}")]
    MergeNeedsRtp { flow: String, detail: String },
    #[error(
        "flow {flow:?}: source {source_name:?} takes SRT publishers, but this node has no ingest listener"
    )]
    NoIngestListener { flow: String, source_name: String },
    #[error("flow {flow:?} already takes SRT publishers on this node's ingest listener")]
    NameTaken { flow: String },
    #[error("flow {flow:?}: source {source_name:?} cannot bind {address}: {error}")]
    Bind {
        flow: String,
        source_name: String,
        address: SocketAddr,
        error: std::io::Error,
    },
}

impl FlowConfig {
    /// Checks the shape of the flow before anything is bound.
    pub fn validate(&self) -> Result<(), FlowError> {
        let flow = || self.name.clone();
        let count = self.sources.len();
        if !(1..=2).contains(&count) {
            return Err(FlowError::SourceCount {
                flow: flow(),
                count,
            });
        }
        if count == 2 && self.sources[0].name == self.sources[1].name {
            return Err(FlowError::DuplicateSource {
                flow: flow(),
                name: self.sources[0].name.clone(),
            });
        }
        if self.redundancy == Redundancy::Merge {
            let not_rtp: Vec<_> = self
                .sources
                .iter()
                .filter(|s| !matches!(s.kind, SourceKind::Rtp { .. }))
                .map(|s| format!("{} is {}", s.name, s.kind.label()))
                .collect();
            if count != 2 || !not_rtp.is_empty() {
                let detail = if count != 2 {
                    format!("it has {count}")
                } else {
                    not_rtp.join(", ")
                };
                return Err(FlowError::MergeNeedsRtp {
                    flow: flow(),
                    detail,
                });
            }
        }
        Ok(())
    }
}

/// What a source is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SourceState {
    /// Listening or calling; no packets yet.
    Waiting,
    /// Connected (or bound) but no packets yet.
    Connected,
    /// Packets arrive.
    Receiving,
    /// Packets stopped for longer than the stall timeout.
    Stalled,
    /// The peer went away.
    Disconnected { reason: String },
    /// The source carries something other than 188-byte-aligned MPEG-TS.
    Refused { reason: String },
    /// The source cannot run (retried where that makes sense).
    Failed { reason: String },
}

/// TR 101 290 error counts by indicator name (only those that occurred).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tr101290Counters {
    pub priority1: u64,
    pub priority2: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tr101290Counters {
    pub fn of(monitor: &Tr101290Monitor) -> Self {
        let mut c = Self::default();
        for kind in ErrorKind::ALL {
            let n = monitor.count(kind);
            if n == 0 {
                continue;
            }
            match kind.priority() {
                1 => c.priority1 += n,
                2 => c.priority2 += n,
                _ => {}
            }
            c.errors.insert(kind.name().to_owned(), n);
        }
        c
    }

    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.errors.get(kind.name()).copied().unwrap_or(0)
    }
}

/// One RTP path's counters in merge mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStatus {
    pub packets: u64,
    /// Sequence numbers this path never delivered.
    pub lost: u64,
    /// Of those, how many the other path filled in.
    pub recovered_from_other: u64,
    pub late: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    #[serde(flatten)]
    pub state: SourceState,
    pub since: DateTime<Utc>,
    pub peer: Option<SocketAddr>,
    /// Bits per second over the last second (0 unless receiving).
    pub bitrate: u64,
    pub ts_packets: u64,
    /// Payloads refused as not 188-byte-aligned MPEG-TS.
    pub refused_payloads: u64,
    /// Payloads lost because the flow could not keep up (should stay 0).
    pub queue_drops: u64,
    pub tr101290: Tr101290Counters,
    /// Merge mode: the source's RTP path.
    pub rtp: Option<PathStatus>,
}

/// The merged output's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeStatus {
    pub window_ms: u64,
    pub packets: u64,
    /// Sequence numbers neither path delivered in time.
    pub lost: u64,
    pub duplicates: u64,
    pub resyncs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchRecord {
    pub at: DateTime<Utc>,
    pub from: String,
    pub to: String,
    /// `stalled`, `degraded` or `recovered`.
    pub reason: String,
    /// True when the new source was joined where the old one left off (same packets);
    /// false for a cold join (counters rewritten, PIDs restart at unit starts).
    pub seamless: bool,
    /// How long the old source had sent nothing when the switch happened.
    pub silent_ms: Option<u64>,
}

/// What the flow's output carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputStreamStatus {
    pub bitrate: u64,
    pub ts_packets: u64,
    pub tr101290: Tr101290Counters,
}

/// A flow's live status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStatus {
    pub flow: String,
    pub redundancy: Redundancy,
    /// Failover: the source feeding the output.
    pub active: Option<String>,
    pub sources: Vec<SourceStatus>,
    pub output: OutputStreamStatus,
    pub switch_count: u64,
    /// The latest switches, oldest first.
    pub switches: Vec<SwitchRecord>,
    pub merge: Option<MergeStatus>,
}

enum Command {
    Status(oneshot::Sender<FlowStatus>),
}

/// A running flow. Dropping it stops its sources and closes its bus.
#[derive(Debug)]
pub struct Flow {
    name: String,
    bus: FlowBus,
    commands: mpsc::Sender<Command>,
    tasks: Vec<JoinHandle<()>>,
    ingest: Option<Arc<IngestListener>>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        if let Some(ingest) = &self.ingest {
            ingest.unregister(&self.name);
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Flow {
    /// Binds the flow's sources and starts it. `ingest` is the node's SRT listener for
    /// publishers; flows with an `srt_listener` source need one.
    pub async fn start(
        config: FlowConfig,
        ingest: Option<Arc<IngestListener>>,
    ) -> Result<Self, FlowError> {
        config.validate()?;
        // Everything that can fail happens before anything is spawned or registered, so a
        // refused flow leaves nothing behind.
        let mut prepared = Vec::with_capacity(config.sources.len());
        for source in &config.sources {
            let bind = |address: SocketAddr, interface, rtp_only| {
                crate::udp::bind_source(address, interface)
                    .map(|socket| Prepared::Net { socket, rtp_only })
                    .map_err(|error| FlowError::Bind {
                        flow: config.name.clone(),
                        source_name: source.name.clone(),
                        address,
                        error,
                    })
            };
            prepared.push(match &source.kind {
                SourceKind::SrtListener { passphrase } => match &ingest {
                    Some(ingest) if ingest.has_flow(&config.name) => {
                        return Err(FlowError::NameTaken {
                            flow: config.name.clone(),
                        });
                    }
                    Some(_) => Prepared::Listener {
                        passphrase: passphrase.clone(),
                    },
                    None => {
                        return Err(FlowError::NoIngestListener {
                            flow: config.name.clone(),
                            source_name: source.name.clone(),
                        });
                    }
                },
                SourceKind::SrtCaller {
                    address,
                    stream_id,
                    passphrase,
                    latency_ms,
                } => Prepared::Caller {
                    address: *address,
                    config: ConnectionConfig {
                        stream_id: stream_id.clone(),
                        passphrase: passphrase.clone(),
                        latency: latency_ms
                            .map(Duration::from_millis)
                            .unwrap_or(ConnectionConfig::default().latency),
                        ..ConnectionConfig::default()
                    },
                },
                SourceKind::Udp { address, interface } => bind(*address, *interface, false)?,
                SourceKind::Rtp { address, interface } => bind(*address, *interface, true)?,
            });
        }
        let (tx, rx) = mpsc::channel(SOURCE_QUEUE);
        let mut tasks = Vec::new();
        let mut counters = Vec::new();
        let mut uses_ingest = false;
        for (index, (source, prepared)) in config.sources.iter().zip(prepared).enumerate() {
            let stx = SourceTx {
                index,
                tx: tx.clone(),
                counters: Arc::default(),
            };
            counters.push(stx.counters.clone());
            match prepared {
                Prepared::Listener { passphrase } => {
                    if let Some(ingest) = &ingest {
                        ingest.register(&config.name, &source.name, passphrase, stx);
                        uses_ingest = true;
                    }
                }
                Prepared::Caller { address, config } => tasks.push(tokio::spawn(
                    crate::source::srt::run_caller(address, config, stx),
                )),
                Prepared::Net { socket, rtp_only } => {
                    tasks.push(tokio::spawn(crate::source::net::run(socket, rtp_only, stx)))
                }
            }
        }
        drop(tx);
        let bus = FlowBus::new(BUS_CAPACITY);
        let (commands, command_rx) = mpsc::channel(16);
        let runtime = Runtime::new(&config, counters, bus.clone());
        tasks.push(tokio::spawn(runtime.run(rx, command_rx)));
        tracing::info!(flow = %config.name, redundancy = ?config.redundancy, sources = config.sources.len(), "flow started");
        Ok(Self {
            name: config.name,
            bus,
            commands,
            tasks,
            ingest: ingest.filter(|_| uses_ingest),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The flow's output: subscribe to receive its TS chunks.
    pub fn bus(&self) -> &FlowBus {
        &self.bus
    }

    /// The flow's live status; `None` if its task has ended.
    pub async fn status(&self) -> Option<FlowStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// A source ready to start: its socket bound, its settings checked.
enum Prepared {
    Listener {
        passphrase: Option<String>,
    },
    Caller {
        address: SocketAddr,
        config: ConnectionConfig,
    },
    Net {
        socket: tokio::net::UdpSocket,
        rtp_only: bool,
    },
}

/// A source as the flow's task sees it.
#[derive(Debug)]
struct SourceSlot {
    name: String,
    kind: &'static str,
    state: SourceState,
    since: DateTime<Utc>,
    peer: Option<SocketAddr>,
    last_data: Option<Instant>,
    counters: Arc<SourceCounters>,
}

impl SourceSlot {
    fn set(&mut self, state: SourceState) {
        if self.state != state {
            self.state = state;
            self.since = Utc::now();
        }
    }
}

/// The redundancy between the sources.
#[derive(Debug)]
enum Engine {
    /// One or two sources; with one, the switch only passes it through.
    Failover(Box<FailoverSwitch>),
    Merge {
        merger: Box<Merger>,
        /// Per-path TS monitors (the merger itself only sees RTP).
        monitors: Box<[Tr101290Monitor; 2]>,
        window: Duration,
    },
}

fn failover_source(index: usize) -> Source {
    if index == 0 {
        Source::Primary
    } else {
        Source::Backup
    }
}

fn merge_path(index: usize) -> Path {
    if index == 0 { Path::A } else { Path::B }
}

struct Runtime {
    name: String,
    redundancy: Redundancy,
    stall_timeout: Duration,
    sources: Vec<SourceSlot>,
    engine: Engine,
    output: Tr101290Monitor,
    /// Output bytes not yet a whole chunk are never held: chunks are cut from what came out.
    bus: FlowBus,
    switches: VecDeque<SwitchRecord>,
    switch_count: u64,
}

impl Runtime {
    fn new(config: &FlowConfig, counters: Vec<Arc<SourceCounters>>, bus: FlowBus) -> Self {
        let now = Utc::now();
        let sources = config
            .sources
            .iter()
            .zip(counters)
            .map(|(s, counters)| SourceSlot {
                name: s.name.clone(),
                kind: s.kind.label(),
                state: SourceState::Waiting,
                since: now,
                peer: None,
                last_data: None,
                counters,
            })
            .collect();
        let f = &config.failover;
        let stall_timeout = Duration::from_millis(f.stall_timeout_ms);
        let engine = match config.redundancy {
            Redundancy::Failover => {
                Engine::Failover(Box::new(FailoverSwitch::new(FailoverConfig {
                    stall_timeout,
                    degrade_errors: usize::try_from(f.degrade_errors).unwrap_or(usize::MAX),
                    recovery_period: Duration::from_millis(f.recovery_ms),
                    revertive: f.revertive,
                    ..FailoverConfig::default()
                })))
            }
            Redundancy::Merge => {
                let window = Duration::from_millis(config.merge.window_ms);
                Engine::Merge {
                    merger: Box::new(Merger::new(MergerConfig {
                        window,
                        ..MergerConfig::default()
                    })),
                    monitors: Box::default(),
                    window,
                }
            }
        };
        Self {
            name: config.name.clone(),
            redundancy: config.redundancy,
            stall_timeout,
            sources,
            engine,
            output: Tr101290Monitor::default(),
            bus,
            switches: VecDeque::new(),
            switch_count: 0,
        }
    }

    async fn run(
        mut self,
        mut sources: mpsc::Receiver<(usize, SourceEvent)>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.poll_timeout();
            tokio::select! {
                event = sources.recv() => match event {
                    Some((index, event)) => {
                        self.on_event(index, event);
                        // Take what else is queued before going back to the reactor.
                        for _ in 0..64 {
                            match sources.try_recv() {
                                Ok((index, event)) => self.on_event(index, event),
                                Err(_) => break,
                            }
                        }
                    }
                    // Every source task ended (only once the flow is dropped).
                    None => return,
                },
                command = commands.recv() => match command {
                    Some(Command::Status(reply)) => {
                        let _ = reply.send(self.status(Instant::now()));
                    }
                    None => return,
                },
                () = sleep_until(deadline) => self.handle_timeout(Instant::now()),
                _ = tick.tick() => self.tick(Instant::now()),
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.engine {
            Engine::Failover(switch) => switch.poll_timeout(),
            Engine::Merge { merger, .. } => merger.poll_timeout(),
        }
    }

    fn on_event(&mut self, index: usize, event: SourceEvent) {
        let Some(slot) = self.sources.get_mut(index) else {
            return;
        };
        match event {
            SourceEvent::Data(input) => {
                slot.last_data = Some(input.arrival);
                slot.set(SourceState::Receiving);
                match &mut self.engine {
                    Engine::Failover(switch) => {
                        // Sources only pass whole aligned packets; a refusal here is a bug
                        // upstream, logged rather than fatal.
                        if let Err(e) =
                            switch.push(failover_source(index), input.arrival, &input.ts)
                        {
                            tracing::error!(flow = %self.name, error = %e, "unaligned payload reached the switch");
                        }
                    }
                    Engine::Merge {
                        merger, monitors, ..
                    } => {
                        monitors[index].feed(input.arrival, &input.ts);
                        if let Some(rtp) = input.rtp
                            && let Err(e) = merger.push(merge_path(index), input.arrival, rtp)
                        {
                            tracing::error!(flow = %self.name, error = %e, "non-RTP payload reached the merger");
                        }
                    }
                }
                self.drain(input.arrival);
            }
            SourceEvent::Up { peer } => {
                slot.peer = peer;
                slot.last_data = None;
                slot.set(SourceState::Connected);
            }
            SourceEvent::Down { reason } => slot.set(SourceState::Disconnected { reason }),
            SourceEvent::Refused { reason } => slot.set(SourceState::Refused { reason }),
            SourceEvent::Failed { reason } => slot.set(SourceState::Failed { reason }),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match &mut self.engine {
            Engine::Failover(switch) => switch.handle_timeout(now),
            Engine::Merge { merger, .. } => merger.handle_timeout(now),
        }
        self.drain(now);
    }

    fn tick(&mut self, now: Instant) {
        for slot in &mut self.sources {
            if slot.state == SourceState::Receiving
                && slot
                    .last_data
                    .is_some_and(|t| now.saturating_duration_since(t) > self.stall_timeout)
            {
                slot.set(SourceState::Stalled);
            }
        }
        if let Engine::Merge { monitors, .. } = &mut self.engine {
            for m in monitors.iter_mut() {
                m.tick(now);
            }
        }
        self.output.tick(now);
        self.handle_timeout(now);
    }

    /// Moves what the switch or merger released onto the bus.
    fn drain(&mut self, now: Instant) {
        match &mut self.engine {
            Engine::Failover(switch) => {
                while let Some(out) = switch.poll_output() {
                    publish(&mut self.output, &self.bus, now, out);
                }
                while let Some(e) = switch.poll_event() {
                    let from = &self.sources[index_of(e.from)];
                    let to = &self.sources[index_of(e.to)];
                    let record = SwitchRecord {
                        at: Utc::now(),
                        from: from.name.clone(),
                        to: to.name.clone(),
                        reason: match e.reason {
                            SwitchReason::Stalled => "stalled",
                            SwitchReason::Degraded => "degraded",
                            SwitchReason::Recovered => "recovered",
                        }
                        .to_owned(),
                        seamless: e.seamless,
                        silent_ms: from
                            .last_data
                            .map(|t| e.at.saturating_duration_since(t).as_millis() as u64),
                    };
                    tracing::warn!(flow = %self.name, from = %record.from, to = %record.to, reason = %record.reason, seamless = record.seamless, silent_ms = ?record.silent_ms, "failover switch");
                    if self.switches.len() == SWITCH_HISTORY {
                        self.switches.pop_front();
                    }
                    self.switches.push_back(record);
                    self.switch_count += 1;
                }
            }
            Engine::Merge { merger, .. } => {
                while let Some(p) = merger.poll_output() {
                    publish(&mut self.output, &self.bus, now, p.payload());
                }
            }
        }
    }

    fn status(&self, now: Instant) -> FlowStatus {
        let sources = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (monitor, rtp) = match &self.engine {
                    Engine::Failover(switch) => (switch.monitor(failover_source(i)), None),
                    Engine::Merge {
                        merger, monitors, ..
                    } => {
                        let p = merger.path_stats(merge_path(i));
                        let rtp = PathStatus {
                            packets: p.packets,
                            lost: p.lost,
                            recovered_from_other: p.recovered_from_other,
                            late: p.late,
                        };
                        (&monitors[i], Some(rtp))
                    }
                };
                let receiving = s
                    .last_data
                    .is_some_and(|t| now.saturating_duration_since(t) <= self.stall_timeout);
                SourceStatus {
                    name: s.name.clone(),
                    kind: s.kind.to_owned(),
                    state: s.state.clone(),
                    since: s.since,
                    peer: s.peer,
                    bitrate: if receiving { monitor.bitrate() } else { 0 },
                    ts_packets: monitor.packets(),
                    refused_payloads: s.counters.refused.load(Ordering::Relaxed),
                    queue_drops: s.counters.queue_drops.load(Ordering::Relaxed),
                    tr101290: Tr101290Counters::of(monitor),
                    rtp,
                }
            })
            .collect();
        let (active, merge) = match &self.engine {
            Engine::Failover(switch) => (
                Some(
                    self.sources[index_of(switch.active()).min(self.sources.len() - 1)]
                        .name
                        .clone(),
                ),
                None,
            ),
            Engine::Merge { merger, window, .. } => {
                let s = merger.stats();
                let merge = MergeStatus {
                    window_ms: window.as_millis() as u64,
                    packets: s.output,
                    lost: s.lost,
                    duplicates: s.duplicates,
                    resyncs: s.resyncs,
                };
                (None, Some(merge))
            }
        };
        FlowStatus {
            flow: self.name.clone(),
            redundancy: self.redundancy,
            active,
            sources,
            output: OutputStreamStatus {
                bitrate: self.output.bitrate(),
                ts_packets: self.output.packets(),
                tr101290: Tr101290Counters::of(&self.output),
            },
            switch_count: self.switch_count,
            switches: self.switches.iter().cloned().collect(),
            merge,
        }
    }
}

fn index_of(source: Source) -> usize {
    match source {
        Source::Primary => 0,
        Source::Backup => 1,
    }
}

/// Monitors the output and publishes it in chunks of at most [`PACKETS_PER_CHUNK`] packets
/// (a seamless switch releases a longer run at once); slicing shares the bytes.
fn publish(monitor: &mut Tr101290Monitor, bus: &FlowBus, arrival: Instant, out: Bytes) {
    monitor.feed(arrival, &out);
    let step = PACKETS_PER_CHUNK * TS_PACKET_SIZE;
    let mut at = 0;
    while at < out.len() {
        let end = (at + step).min(out.len());
        bus.publish(arrival, out.slice(at..end));
        at = end;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(name: &str, port: u16) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            kind: SourceKind::Rtp {
                address: ([127, 0, 0, 1], port).into(),
                interface: None,
            },
        }
    }

    fn flow(redundancy: Redundancy, sources: Vec<SourceConfig>) -> FlowConfig {
        FlowConfig {
            name: "f".into(),
            redundancy,
            sources,
            failover: FailoverSettings::default(),
            merge: MergeSettings::default(),
        }
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(matches!(
            flow(Redundancy::Failover, vec![]).validate(),
            Err(FlowError::SourceCount { count: 0, .. })
        ));
        assert!(matches!(
            flow(Redundancy::Failover, vec![rtp("a", 1), rtp("a", 2)]).validate(),
            Err(FlowError::DuplicateSource { .. })
        ));
        let udp = SourceConfig {
            name: "b".into(),
            kind: SourceKind::Udp {
                address: ([127, 0, 0, 1], 2).into(),
                interface: None,
            },
        };
        let e = flow(Redundancy::Merge, vec![rtp("a", 1), udp])
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("b is udp"), "{e}");
        assert!(
            flow(Redundancy::Merge, vec![rtp("a", 1)])
                .validate()
                .is_err()
        );
        assert!(
            flow(Redundancy::Merge, vec![rtp("a", 1), rtp("b", 2)])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn config_defaults_from_json() {
        let c: FlowConfig = serde_json::from_str(
            r#"{"name":"ath","sources":[{"name":"main","kind":"srt_listener"}]}"#,
        )
        .unwrap();
        assert_eq!(c.redundancy, Redundancy::Failover);
        assert_eq!(c.failover.stall_timeout_ms, 100);
        assert_eq!(c.merge.window_ms, 50);
    }
}
