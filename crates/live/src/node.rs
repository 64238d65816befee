//! The live node's broadcaster side: one SRT listener where rights holders call in with
//! `#!::r=<flow>,u=<rhb>` and their licence's passphrase, and the loop that fans each flow's bus
//! out to the admitted receivers, cuts them when their licence goes, and counts what they got.
//!
//! Every connection attempt is decided by the control plane ([`ControlPort::decide`]) inside
//! the SRT handshake, so a refused caller gets the rejection code in the handshake answer. The
//! listener parks the handshake while the decision runs as its own task (bounded by
//! [`NodeConfig::decide_timeout`]) and serves everyone else meanwhile.
//!
//! All state lives in one task ([`Outputs`]), which reads the flows' buses itself: payloads go
//! to every receiver of a flow in one `send_many` command to the listener's driver (one shared
//! `Bytes`, per-receiver encryption and retransmission there), so a slow receiver costs only
//! its own SRT send buffer, which drops what is too late and counts it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use stadion_control::usage::UsageRecord;
use stadion_srt::{
    AcceptDecision, CloseReason, ConnectRequest, ConnectionConfig, ConnectionId, ListenerConfig,
    Refusal, RequestId, reject,
};
use stadion_srt_io::{AsyncAcceptHook, Decision, Incoming, SrtConnection, SrtError, SrtListener};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::access::{self, Admission, ControlPort, LicenceChange, ReceiverRequest, Refused};
use crate::fanout::{BusReceiver, Chunk, FlowBus};
use crate::output::push::{self, PushContext, PushSpec, Shown};
use crate::output::{
    self, Counters, FlowOutputStatus, OutputStatus, ReceiverStatus, Session, SessionHandle,
    SessionKey, SessionKind, SrtStatus, UsageLog,
};

/// How long an admitted caller may take to come out of the listener, as a connection or as a
/// refusal (a wrong passphrase), before its place in the licence's concurrency count is
/// given back. Both come within milliseconds of the decision; only a decision that lost the
/// race with the handshake's own timeout gets neither.
const PENDING_TTL: Duration = Duration::from_secs(1);

/// Settings of a node's receiver listener.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where rights holders call in.
    pub listen: SocketAddr,
    /// SRT latency offered to receivers (they may ask for more).
    pub latency: Duration,
    /// Longest wait for the control plane's answer before refusing with 1503.
    pub decide_timeout: Duration,
    /// How often delivered bytes are reported while sessions run.
    pub usage_interval: Duration,
    /// Receivers one node holds; more are refused with BACKLOG.
    pub max_receivers: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: ([0, 0, 0, 0], 9000).into(),
            latency: Duration::from_millis(120),
            decide_timeout: Duration::from_secs(2),
            usage_interval: Duration::from_secs(10),
            max_receivers: 10_000,
        }
    }
}

/// What can go wrong running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot open the receiver listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: SrtError },
    #[error("flow {0:?} is already attached to this node")]
    FlowExists(String),
    #[error("flow {0:?} is not attached to this node")]
    UnknownFlow(String),
    #[error("the live node has stopped")]
    Stopped,
}

/// Callers admitted by the control plane whose handshake is finishing, and how many receivers
/// each (rights holder, flow) holds; shared by the listener's hook and the node's loop.
#[derive(Default)]
pub(crate) struct Admissions {
    flows: HashSet<String>,
    pending: HashMap<RequestId, Pending>,
    counts: HashMap<(String, String), u32>,
}

struct Pending {
    request: ReceiverRequest,
    admission: Admission,
    at: Instant,
}

fn count_key(r: &ReceiverRequest) -> (String, String) {
    (r.rhb.clone(), r.flow.clone())
}

impl Admissions {
    pub(crate) fn connected(&self, r: &ReceiverRequest) -> u32 {
        self.counts.get(&count_key(r)).copied().unwrap_or(0)
    }

    fn admit(&mut self, id: RequestId, request: ReceiverRequest, a: Admission) {
        let key = count_key(&request);
        let pending = Pending {
            request,
            admission: a,
            at: Instant::now(),
        };
        if self.pending.insert(id, pending).is_none() {
            *self.counts.entry(key).or_default() += 1;
        }
    }

    /// The admission of a caller whose handshake completed; its count stays taken.
    fn take(&mut self, id: RequestId) -> Option<Pending> {
        self.pending.remove(&id)
    }

    /// Takes a place for a receiver admitted outside the listener (a push).
    pub(crate) fn hold(&mut self, r: &ReceiverRequest) {
        *self.counts.entry(count_key(r)).or_default() += 1;
    }

    pub(crate) fn release(&mut self, r: &ReceiverRequest) {
        let key = count_key(r);
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }

    fn drop_pending(&mut self, keep: impl Fn(&Pending) -> bool) {
        let gone: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| !keep(p))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some(p) = self.pending.remove(&k) {
                self.release(&p.request);
            }
        }
    }
}

pub(crate) fn lock<T>(a: &Mutex<T>) -> MutexGuard<'_, T> {
    // The locks guard values updated in single steps: a panic elsewhere cannot leave them
    // half-written, so a poisoned lock is still usable.
    a.lock().unwrap_or_else(|e| e.into_inner())
}

/// The listener's accept hook: asks the control plane about each caller.
struct Gate<C> {
    port: Arc<C>,
    admissions: Arc<Mutex<Admissions>>,
    timeout: Duration,
}

impl<C: ControlPort> AsyncAcceptHook for Gate<C> {
    fn decide(&mut self, req: &ConnectRequest<'_>) -> Decision {
        let request = match ReceiverRequest::from_stream_id(req.stream_id) {
            Ok(r) => r,
            Err(problem) => {
                tracing::info!(peer = %req.peer, %problem, "receiver refused");
                return AcceptDecision::Reject(access::REJECT_BAD_STREAM_ID).into();
            }
        };
        let caller = Caller {
            id: req.id,
            peer: req.peer,
            encrypted: req.encrypted,
            request,
        };
        let (port, admissions) = (self.port.clone(), self.admissions.clone());
        Decision::later(admit(port, admissions, self.timeout, caller))
    }
}

/// What the decision needs of a caller's connect request.
struct Caller {
    id: RequestId,
    peer: SocketAddr,
    encrypted: bool,
    request: ReceiverRequest,
}

/// Asks the control plane about one caller and, when it is admitted, keeps its admission
/// for its connection.
async fn admit<C: ControlPort>(
    port: Arc<C>,
    admissions: Arc<Mutex<Admissions>>,
    timeout: Duration,
    caller: Caller,
) -> AcceptDecision {
    let Caller {
        id,
        peer,
        encrypted,
        request,
    } = caller;
    let connected = {
        let mut admissions = lock(&admissions);
        admissions.drop_pending(|p| p.at.elapsed() < PENDING_TTL);
        admissions.connected(&request)
    };
    let query = access::AccessQuery {
        rhb: request.rhb.clone(),
        flow: request.flow.clone(),
        source: peer.ip().to_canonical(),
        connected,
    };
    let admission = match tokio::time::timeout(timeout, port.decide(&query)).await {
        Ok(Ok(Ok(admission))) => admission,
        Ok(Ok(Err(Refused { reason, code, .. }))) => {
            tracing::info!(%peer, rhb = %request.rhb, flow = %request.flow, %reason, code, "receiver refused");
            return AcceptDecision::Reject(code);
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "receiver refused: no access decision");
            return AcceptDecision::Reject(access::REJECT_DOWN);
        }
        Err(_) => {
            tracing::warn!(%peer, ?timeout, "receiver refused: access decision timed out");
            return AcceptDecision::Reject(access::REJECT_DOWN);
        }
    };
    let mut admissions = lock(&admissions);
    if !admissions.flows.contains(&request.flow) {
        tracing::warn!(flow = %request.flow, "licensed receiver refused: flow not running on this node");
        return AcceptDecision::Reject(reject::NOT_FOUND);
    }
    let passphrase = access::passphrase_for(&admission, encrypted);
    if passphrase.is_some() != encrypted {
        // SRT would refuse this pairing itself; refusing here keeps the licence's place.
        tracing::info!(%peer, rhb = %request.rhb, "receiver refused: encryption mismatch");
        return AcceptDecision::Reject(reject::UNSECURE);
    }
    admissions.admit(id, request, admission);
    AcceptDecision::Accept {
        passphrase,
        latency: None,
    }
}

enum Command {
    Attach(String, FlowBus, oneshot::Sender<Result<(), NodeError>>),
    Detach(String, oneshot::Sender<Result<(), NodeError>>),
    Status(oneshot::Sender<OutputStatus>),
    Push(PushSpec, oneshot::Sender<Result<(), NodeError>>),
    Stop,
}

/// Talks to a running node; cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    listen: SocketAddr,
}

impl NodeHandle {
    /// Where receivers call in.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Makes a flow receivable under `name` (the `r=` of receivers' stream IDs).
    pub async fn attach_flow(&self, name: &str, bus: FlowBus) -> Result<(), NodeError> {
        self.ask(|tx| Command::Attach(name.to_owned(), bus, tx))
            .await?
    }

    /// Stops serving a flow; its receivers are disconnected.
    pub async fn detach_flow(&self, name: &str) -> Result<(), NodeError> {
        self.ask(|tx| Command::Detach(name.to_owned(), tx)).await?
    }

    /// Starts pushing a flow to a rights holder's SRT listener or UDP address; it runs (and
    /// reconnects) until the flow is detached or the node stops.
    pub async fn add_push(&self, spec: PushSpec) -> Result<(), NodeError> {
        self.ask(|tx| Command::Push(spec, tx)).await?
    }

    /// Flows, receivers per rights holder and their SRT statistics.
    pub async fn status(&self) -> Result<OutputStatus, NodeError> {
        self.ask(Command::Status).await
    }
}

/// A running node; [`LiveNode::stop`] disconnects everyone and flushes the usage records.
#[derive(Debug)]
pub struct LiveNode {
    handle: NodeHandle,
    main: JoinHandle<()>,
    usage_writer: JoinHandle<()>,
}

impl LiveNode {
    /// Binds the receiver listener and starts serving (flows are attached afterwards).
    pub async fn start<C: ControlPort>(
        port: Arc<C>,
        config: NodeConfig,
    ) -> Result<Self, NodeError> {
        let admissions = Arc::new(Mutex::new(Admissions::default()));
        let gate = Gate {
            port: port.clone(),
            admissions: admissions.clone(),
            timeout: config.decide_timeout,
        };
        let listener_config = ListenerConfig {
            connection: ConnectionConfig {
                latency: config.latency,
                peer_latency: config.latency,
                ..ConnectionConfig::default()
            },
            max_connections: config.max_receivers,
        };
        let listener = SrtListener::bind_async(config.listen, listener_config, gate)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let listen = listener.local_addr();
        let (commands, command_rx) = mpsc::channel(64);
        let (usage, usage_rx) = UsageLog::new();
        let (gone, gone_rx) = mpsc::unbounded_channel();
        let usage_writer = tokio::spawn(write_usage(port.clone(), usage_rx));
        let spawn_push: SpawnPush = {
            let (port, admissions, usage) = (port.clone(), admissions.clone(), usage.clone());
            let usage_interval = config.usage_interval;
            Box::new(move |spec, bus, shown, stop| {
                let ctx = PushContext {
                    port: port.clone(),
                    admissions: admissions.clone(),
                    usage: usage.clone(),
                    usage_interval,
                };
                tokio::spawn(push::run(ctx, spec, bus, shown, stop));
            })
        };
        let outputs = Outputs {
            spawn_push,
            pushes: Vec::new(),
            changes: port.changes(),
            listener,
            admissions,
            flows: HashMap::new(),
            receivers: HashMap::new(),
            expiries: BinaryHeap::new(),
            usage,
            gone,
            waiting: Vec::new(),
        };
        let main = tokio::spawn(outputs.run(config.usage_interval, command_rx, gone_rx));
        Ok(LiveNode {
            handle: NodeHandle { commands, listen },
            main,
            usage_writer,
        })
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Disconnects every receiver, then waits until their usage is stored.
    pub async fn stop(self) {
        let _ = self.handle.commands.send(Command::Stop).await;
        let _ = self.main.await;
        let _ = self.usage_writer.await;
    }
}

/// Stores usage records in batches; keeps a batch and retries while the store is away.
async fn write_usage<C: ControlPort>(port: Arc<C>, mut rx: mpsc::UnboundedReceiver<UsageRecord>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut delay = Duration::from_millis(100);
        while let Err(e) = port.record_usage(&batch).await {
            tracing::warn!(error = %e, records = batch.len(), "usage records not stored yet; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        batch.clear();
    }
}

/// Prometheus name of the node-added latency per flow (seconds; a summary with quantiles when
/// served by `stadion serve`'s `/metrics`).
pub const NODE_DELAY_METRIC: &str = "stadion_live_node_delay_seconds";

struct FlowOut {
    bus: FlowBus,
    /// The flow's receivers that get data, as `send_many` takes them.
    ids: Arc<[ConnectionId]>,
    /// Chunks this loop missed because it fell a whole bus behind the flow.
    dropped: u64,
    /// Node-added latency: from a chunk's arrival at the node to its hand-over to the
    /// receivers' send queues, where SRT stamps it (later sends do not move its play time).
    delay: metrics::Histogram,
}

struct Receiver {
    key: SessionKey,
    flow: Arc<str>,
    request: ReceiverRequest,
    connected_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    expires: Instant,
    counters: Counters,
    session: SessionHandle,
    /// Set when the node cut it; the connection's end is reported with this reason.
    cut: Option<&'static str>,
}

/// Starts a push task (made where the control port's type is known).
type SpawnPush = Box<dyn Fn(PushSpec, FlowBus, Shown, push::Stop) + Send>;

struct PushOut {
    flow: Arc<str>,
    stop: watch::Sender<Option<&'static str>>,
    shown: Shown,
}

struct Outputs {
    spawn_push: SpawnPush,
    pushes: Vec<PushOut>,
    changes: broadcast::Receiver<LicenceChange>,
    listener: SrtListener,
    admissions: Arc<Mutex<Admissions>>,
    flows: HashMap<Arc<str>, FlowOut>,
    receivers: HashMap<ConnectionId, Receiver>,
    expiries: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    usage: UsageLog,
    gone: mpsc::UnboundedSender<(ConnectionId, Option<CloseReason>)>,
    /// Each attached flow's wait for its next chunk.
    waiting: Vec<(Arc<str>, NextChunk)>,
}

/// A flow's bus cursor waiting for the next chunk; it comes back with the chunk.
type NextChunk = Pin<Box<dyn Future<Output = (BusReceiver, Option<Chunk>)> + Send>>;

fn next_chunk(mut bus: BusReceiver) -> NextChunk {
    Box::pin(async move {
        let chunk = bus.next().await;
        (bus, chunk)
    })
}

/// The first flow with a chunk ready. The loop reads the buses itself, so a chunk goes from
/// the source's task to the listener's driver with no task in between.
fn poll_chunks(
    waiting: &mut Vec<(Arc<str>, NextChunk)>,
    cx: &mut Context<'_>,
) -> Poll<(Arc<str>, BusReceiver, Option<Chunk>)> {
    for i in 0..waiting.len() {
        if let Poll::Ready((bus, chunk)) = waiting[i].1.as_mut().poll(cx) {
            let (flow, _) = waiting.swap_remove(i);
            return Poll::Ready((flow, bus, chunk));
        }
    }
    Poll::Pending
}

/// The instant `at` will be, on the monotonic clock.
pub(crate) fn instant_of(at: DateTime<Utc>) -> Instant {
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + left
}

fn close_reason_text(reason: Option<CloseReason>) -> &'static str {
    match reason {
        Some(CloseReason::PeerShutdown) => "peer_closed",
        Some(CloseReason::IdleTimeout) => "timeout",
        Some(CloseReason::Local) => "closed",
        Some(CloseReason::Error(_)) => "error",
        Some(CloseReason::Rejected(_) | CloseReason::ConnectTimeout) | None => "lost",
    }
}

impl Outputs {
    async fn run(
        mut self,
        usage_interval: Duration,
        mut commands: mpsc::Receiver<Command>,
        mut gone_rx: mpsc::UnboundedReceiver<(ConnectionId, Option<CloseReason>)>,
    ) {
        let mut tick = tokio::time::interval(usage_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes_open = true;
        loop {
            let next_expiry = self.expiries.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                biased;
                change = self.changes.recv(), if changes_open => match change {
                    Ok(change) => self.on_licence_change(change),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::error!(missed, "licence changes lost; receivers of a withdrawn licence may stay until expiry");
                    }
                    Err(broadcast::error::RecvError::Closed) => changes_open = false,
                },
                () = sleep_until(next_expiry) => self.cut_expired(),
                Some((id, reason)) = gone_rx.recv() => self.on_gone(id, reason),
                incoming = self.listener.incoming() => match incoming {
                    Some(Incoming::Accepted(conn)) => self.on_accept(conn),
                    Some(Incoming::Refused(refusal)) => self.on_refused(&refusal),
                    None => {
                        tracing::error!("receiver listener stopped");
                        break;
                    }
                },
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(command) => self.command(command),
                },
                (flow, bus, chunk) = std::future::poll_fn(|cx| poll_chunks(&mut self.waiting, cx)) => {
                    self.on_chunks(flow, bus, chunk);
                }
                _ = tick.tick() => self.report_usage(),
            }
        }
        self.shutdown();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Attach(name, bus, reply) => {
                let _ = reply.send(self.attach(name, bus));
            }
            Command::Detach(name, reply) => {
                let _ = reply.send(self.detach(&name));
            }
            Command::Status(reply) => self.status(reply),
            Command::Push(spec, reply) => {
                let _ = reply.send(self.push(spec));
            }
            Command::Stop => {}
        }
    }

    fn attach(&mut self, name: String, bus: FlowBus) -> Result<(), NodeError> {
        if self.flows.contains_key(name.as_str()) {
            return Err(NodeError::FlowExists(name));
        }
        let flow: Arc<str> = name.as_str().into();
        self.waiting
            .push((flow.clone(), next_chunk(bus.subscribe())));
        let delay = metrics::histogram!(NODE_DELAY_METRIC, "flow" => name.clone());
        lock(&self.admissions).flows.insert(name);
        self.flows.insert(
            flow,
            FlowOut {
                bus,
                ids: Arc::from([]),
                dropped: 0,
                delay,
            },
        );
        Ok(())
    }

    fn push(&mut self, spec: PushSpec) -> Result<(), NodeError> {
        let Some((flow, out)) = self.flows.get_key_value(spec.flow.as_str()) else {
            return Err(NodeError::UnknownFlow(spec.flow));
        };
        let shown = Shown::default();
        let (stop, stopped) = watch::channel(None);
        (self.spawn_push)(spec, out.bus.clone(), shown.clone(), stopped);
        self.pushes.push(PushOut {
            flow: flow.clone(),
            stop,
            shown,
        });
        Ok(())
    }

    fn detach(&mut self, name: &str) -> Result<(), NodeError> {
        if self.flows.remove(name).is_none() {
            return Err(NodeError::UnknownFlow(name.to_owned()));
        }
        self.waiting.retain(|(f, _)| &**f != name);
        lock(&self.admissions).flows.remove(name);
        self.pushes.retain(|p| {
            let keep = &*p.flow != name;
            if !keep {
                let _ = p.stop.send(Some("flow_stopped"));
            }
            keep
        });
        let ids: Vec<_> = self
            .receivers
            .iter()
            .filter(|(_, r)| &*r.flow == name)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.cut(id, "flow_stopped");
        }
        Ok(())
    }

    /// An admitted caller whose handshake failed (e.g. a wrong passphrase): its place goes
    /// back to the licence.
    fn on_refused(&mut self, refusal: &Refusal) {
        let mut admissions = lock(&self.admissions);
        if let Some(pending) = admissions.take(refusal.id) {
            tracing::info!(peer = %refusal.peer, rhb = %pending.request.rhb, code = refusal.code, "admitted receiver failed its handshake");
            admissions.release(&pending.request);
        }
    }

    fn on_accept(&mut self, conn: SrtConnection) {
        let pending = conn
            .request_id()
            .and_then(|id| lock(&self.admissions).take(id));
        let Some(pending) = pending else {
            // Its admission was withdrawn (licence changed) while the handshake finished.
            tracing::info!(peer = %conn.peer(), "receiver dropped: admission withdrawn during handshake");
            return;
        };
        let Some((flow, _)) = self.flows.get_key_value(pending.request.flow.as_str()) else {
            lock(&self.admissions).release(&pending.request);
            return;
        };
        let flow = flow.clone();
        let id = conn.id();
        let key = SessionKey {
            session: Uuid::new_v4(),
            licence: pending.admission.licence,
            rhb: pending.request.rhb.clone(),
            rhb_id: pending.admission.rhb_id,
            flow: pending.request.flow.clone(),
            flow_id: pending.admission.flow_id,
            peer: conn.peer(),
            kind: SessionKind::SrtListener,
        };
        tracing::info!(peer = %key.peer, rhb = %key.rhb, flow = %key.flow, session = %key.session, "receiver connected");
        let connected_at = Utc::now();
        self.usage.connected(&key, connected_at);
        let expires = instant_of(pending.admission.valid_until);
        self.expiries.push(Reverse((expires, id)));
        let session = Session::spawn(conn, self.gone.clone());
        self.receivers.insert(
            id,
            Receiver {
                key,
                flow: flow.clone(),
                request: pending.request,
                connected_at,
                valid_until: pending.admission.valid_until,
                expires,
                counters: Counters::default(),
                session,
                cut: None,
            },
        );
        self.refresh_ids(&flow);
    }

    /// Rebuilds the list a flow's payloads go to (receivers join and leave rarely; payloads
    /// go out thousands of times a second).
    fn refresh_ids(&mut self, flow: &str) {
        if let Some(out) = self.flows.get_mut(flow) {
            out.ids = self
                .receivers
                .iter()
                .filter(|(_, r)| &*r.flow == flow && r.cut.is_none())
                .map(|(&id, _)| id)
                .collect();
        }
    }

    /// Sends a flow's chunk and whatever else its bus holds already, then waits for more.
    fn on_chunks(&mut self, flow: Arc<str>, mut bus: BusReceiver, chunk: Option<Chunk>) {
        let Some(chunk) = chunk else {
            return; // the flow's sources are gone; detaching it is the flow's business
        };
        self.fan_out(&flow, &chunk);
        for _ in 0..64 {
            match bus.try_next() {
                Some(chunk) => self.fan_out(&flow, &chunk),
                None => break,
            }
        }
        if let Some(out) = self.flows.get_mut(&flow) {
            out.dropped = bus.dropped();
            self.waiting.push((flow, next_chunk(bus)));
        }
    }

    fn fan_out(&mut self, flow: &str, chunk: &Chunk) {
        let Some(out) = self.flows.get(flow) else {
            return;
        };
        if out.ids.is_empty() {
            return;
        }
        out.delay.record(chunk.arrival.elapsed().as_secs_f64());
        let (mut packets, mut bytes) = (0u64, 0u64);
        for payload in output::payloads(&chunk.payload) {
            packets += 1;
            bytes += payload.len() as u64;
            if self.listener.send_many(out.ids.clone(), payload).is_err() {
                return; // the driver is gone; the loop ends on the next accept
            }
        }
        for id in out.ids.iter() {
            if let Some(r) = self.receivers.get_mut(id) {
                r.counters.add(packets, bytes);
            }
        }
    }

    fn cut(&mut self, id: ConnectionId, reason: &'static str) {
        let Some(r) = self.receivers.get_mut(&id) else {
            return;
        };
        if r.cut.is_some() {
            return;
        }
        r.cut = Some(reason);
        tracing::info!(peer = %r.key.peer, rhb = %r.key.rhb, flow = %r.key.flow, reason, "receiver cut");
        let flow = r.flow.clone();
        self.listener.close(id);
        self.refresh_ids(&flow);
    }

    fn on_licence_change(&mut self, change: LicenceChange) {
        let Some(reason) = change.state.cut_reason() else {
            return;
        };
        lock(&self.admissions).drop_pending(|p| p.admission.licence != change.licence);
        let ids: Vec<_> = self
            .receivers
            .iter()
            .filter(|(_, r)| r.key.licence == change.licence)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.cut(id, reason);
        }
    }

    fn cut_expired(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = self.expiries.peek() {
            if at > now {
                break;
            }
            self.expiries.pop();
            // Entries of receivers that already left are skipped here.
            if self.receivers.get(&id).is_some_and(|r| r.expires == at) {
                self.cut(id, "expired");
            }
        }
    }

    fn on_gone(&mut self, id: ConnectionId, reason: Option<CloseReason>) {
        let Some(r) = self.receivers.remove(&id) else {
            return;
        };
        lock(&self.admissions).release(&r.request);
        self.refresh_ids(&r.flow.clone());
        let reason = r.cut.unwrap_or_else(|| close_reason_text(reason));
        tracing::info!(peer = %r.key.peer, rhb = %r.key.rhb, flow = %r.key.flow, reason, bytes = r.counters.bytes, "receiver disconnected");
        self.usage.disconnected(&r.key, &r.counters, reason);
    }

    fn report_usage(&mut self) {
        lock(&self.admissions).drop_pending(|p| p.at.elapsed() < PENDING_TTL);
        for r in self.receivers.values_mut() {
            self.usage.delivered(&r.key, &mut r.counters);
        }
    }

    fn status(&self, reply: oneshot::Sender<OutputStatus>) {
        let listen = self.listener.local_addr();
        let flows: Vec<_> = self
            .flows
            .iter()
            .map(|(name, out)| {
                let receivers: Vec<_> = self
                    .receivers
                    .values()
                    .filter(|r| r.flow == *name && r.cut.is_none())
                    .map(|r| {
                        let status = ReceiverStatus {
                            key: r.key.clone(),
                            connected_at: r.connected_at,
                            valid_until: r.valid_until,
                            packets: r.counters.packets,
                            bytes: r.counters.bytes,
                            srt: None,
                        };
                        (status, r.session.clone())
                    })
                    .collect();
                let pushes: Vec<_> = self
                    .pushes
                    .iter()
                    .filter(|p| p.flow == *name)
                    .filter_map(|p| lock(&p.shown).clone())
                    .collect();
                let stats = out.bus.stats();
                (
                    name.to_string(),
                    stats.bytes_in.load(Ordering::Relaxed),
                    out.dropped,
                    receivers,
                    pushes,
                )
            })
            .collect();
        // SRT statistics come from the listener's driver: gather them off this loop, all at
        // once (one at a time, a thousand receivers took seconds, more when the driver is busy).
        tokio::spawn(async move {
            let mut asks = tokio::task::JoinSet::new();
            for (f, (_, _, _, receivers, _)) in flows.iter().enumerate() {
                for (r, (_, session)) in receivers.iter().enumerate() {
                    let session = session.clone();
                    asks.spawn(async move {
                        let stats = tokio::time::timeout(output::STATS_TIMEOUT, session.stats());
                        (f, r, stats.await.ok().flatten())
                    });
                }
            }
            let mut flows: Vec<_> = flows
                .into_iter()
                .map(|(flow, bytes_in, chunks_dropped, receivers, pushes)| {
                    let receivers: Vec<_> = receivers.into_iter().map(|(s, _)| s).collect();
                    (flow, bytes_in, chunks_dropped, receivers, pushes)
                })
                .collect();
            while let Some(answer) = asks.join_next().await {
                if let Ok((f, r, Some(stats))) = answer {
                    flows[f].3[r].srt = Some(SrtStatus::from(stats));
                }
            }
            let mut out = OutputStatus {
                listen,
                flows: Vec::with_capacity(flows.len()),
            };
            for (flow, bytes_in, chunks_dropped, mut list, pushes) in flows {
                list.extend(pushes);
                list.sort_by(|a, b| {
                    (&a.key.rhb, a.connected_at).cmp(&(&b.key.rhb, b.connected_at))
                });
                out.flows.push(FlowOutputStatus {
                    flow,
                    bytes_in,
                    chunks_dropped,
                    receivers: list,
                });
            }
            out.flows.sort_by(|a, b| a.flow.cmp(&b.flow));
            let _ = reply.send(out);
        });
    }

    fn shutdown(mut self) {
        self.waiting.clear();
        self.flows.clear();
        for push in self.pushes.drain(..) {
            let _ = push.stop.send(Some("node_shutdown"));
        }
        let ids: Vec<_> = self.receivers.keys().copied().collect();
        for id in ids {
            self.listener.close(id);
            if let Some(r) = self.receivers.remove(&id) {
                self.usage
                    .disconnected(&r.key, &r.counters, "node_shutdown");
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
