//! tokio IO for the sans-IO SRT core in `stadion-srt`.
//!
//! One driver task per UDP socket owns the protocol state (a caller [`Connection`] or a
//! [`Listener`] with all its connections). Handles talk to it over channels:
//! [`SrtConnection`] sends and receives payloads, [`SrtListener`] accepts callers and can hand one
//! `Bytes` payload to many of its connections in one command ([`SrtListener::send_many`]), so a
//! feed fans out without a copy per receiver beyond per-connection encryption.
//! Datagrams move in batches (`recvmmsg`/`sendmmsg`, see [`batch`]).
//!
//! # Serving many receivers from one port (the data plane's view)
//!
//! - **Admission**: [`SrtListener::bind`] takes an [`AcceptHook`] (a closure works). It runs on
//!   the driver task for every caller *before* the handshake completes, sees the peer address
//!   and the parsed stream ID ([`stadion_srt::ConnectRequest`]) and answers
//!   [`AcceptDecision::Accept`](stadion_srt::AcceptDecision::Accept) with this connection's own passphrase and latency, or
//!   [`AcceptDecision::Reject`](stadion_srt::AcceptDecision::Reject) with an SRT reason code (e.g. [`reject::FORBIDDEN`], 1403) that
//!   the caller's libsrt reports. A caller with another passphrase is refused with
//!   `BADSECRET` (1010). Keep the hook fast: it holds up the socket.
//! - **Asynchronous admission**: [`SrtListener::bind_async`] takes an [`AsyncAcceptHook`],
//!   whose answer may be [`Decision::later`] with a future (an access check over the network).
//!   The listener parks that handshake and keeps serving everyone else; the caller's
//!   retransmitted conclusions meanwhile create no second request or connection. Without an
//!   answer within the listener's
//!   [`ConnectionConfig::connect_timeout`](stadion_srt::ConnectionConfig::connect_timeout) the caller is refused with
//!   `TIMEOUT` (16).
//! - **Accepted connections** come out of [`SrtListener::accept`] as [`SrtConnection`] handles
//!   with [`SrtConnection::id`], [`SrtConnection::peer`], [`SrtConnection::stream_id`] and
//!   [`SrtConnection::request_id`] (the [`ConnectRequest::id`](stadion_srt::ConnectRequest::id) the hook saw).
//!   [`SrtListener::incoming`] also yields [`Incoming::Refused`] for callers the hook admitted
//!   whose handshake then failed (wrong passphrase, late decision), so whatever was reserved
//!   for them can be given back.
//! - **Fan-out**: [`SrtListener::send_many`] queues one payload (at most 1456 bytes, typically 7
//!   TS packets) for a set of connection ids. The `Bytes` is shared; each encrypted connection
//!   makes its own ciphertext and keeps its own retransmission buffer. Datagrams leave in
//!   `sendmmsg` batches with the payload as its own iovec, never copied into a send buffer.
//! - **Bounded buffers**: payloads wait for the driver in bounded queues (per connection for
//!   [`SrtConnection::send`], per listener for [`SrtListener::send_many`]) of at most
//!   [`ConnectionConfig::send_buffer_limit`](stadion_srt::ConnectionConfig::send_buffer_limit)
//!   payloads; when one is full the oldest payload is dropped, as it is the first to become too
//!   late. A payload that waited so long that the connection would drop it unacknowledged
//!   (its latency, at least 1 s) is dropped before it is encrypted. Each connection then keeps at most that many unacknowledged packets and drops
//!   packets too late to play. All of these are counted in [`Stats::packets_send_dropped`].
//! - **Overload**: a driver hands queued payloads to its connections for at most half a tick
//!   at a time, then reads its socket, runs its timers and sends before it takes more, so a
//!   listener given more fan-out than one core encrypts keeps every connection alive (ACKs
//!   read, keepalives sent) and sheds the excess by the two rules above.
//! - **Statistics**: [`SrtConnection::stats`] gives RTT, loss, retransmissions, bytes, buffer
//!   occupancy and rates of one connection.
//! - **Revocation**: [`SrtListener::close`] (or [`SrtConnection::close`], or dropping the
//!   handle) sends the peer a shutdown at once; the handle's [`SrtConnection::close_reason`]
//!   then reads [`CloseReason::Local`]. The application keeps its own reason (licence revoked,
//!   feed ended) next to the id. A connection that ends otherwise reads
//!   [`CloseReason::PeerShutdown`] (the peer closed), [`CloseReason::IdleTimeout`] (the peer
//!   fell silent) or [`CloseReason::Error`] (the peer reported an error, or the socket failed).
//! - **Lifetime**: a driver runs while any handle of its socket lives. Once the
//!   [`SrtListener`] and all its [`SrtConnection`]s (or a caller's one connection) are dropped,
//!   the remaining peers get a shutdown and the socket is closed.
//! - **Tick**: a busy driver works once per tick (4 ms by default) rather than per packet;
//!   [`connect_with`], [`SrtListener::bind_with`] and [`SrtListener::bind_async_with`] take a
//!   [`DriverConfig`] with another one (1 to 10 ms): shorter for less delivery jitter, longer
//!   for fewer wake-ups. Sockets with few arrivals (a sender hearing ACKs) answer each
//!   datagram at once whatever the tick while their link is losing packets.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stadion_srt_io::SrtError> {
//! use std::sync::Arc;
//! use stadion_srt::{AcceptDecision, ConnectRequest, ListenerConfig, reject};
//! use stadion_srt_io::SrtListener;
//!
//! let hook = |req: &ConnectRequest<'_>| match req.stream_id.resource() {
//!     "cam1" => AcceptDecision::Accept { passphrase: Some("broadcaster-key-1".into()), latency: None },
//!     _ => AcceptDecision::Reject(reject::NOT_FOUND),
//! };
//! let mut listener = SrtListener::bind("0.0.0.0:9000".parse().unwrap(), ListenerConfig::default(), hook).await?;
//! let receiver = listener.accept().await.expect("listener runs");
//! let ids: Arc<[u32]> = Arc::from(vec![receiver.id()]);
//! listener.send_many(ids, bytes::Bytes::from_static(&[0x47; 188 * 7]))?;
//! println!("{:?}", receiver.stats().await);
//! listener.close(receiver.id());
//! # Ok(()) }
//! ```

pub mod batch;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use rand::SeedableRng;
use stadion_srt::{
    AcceptDecision, AcceptHook, CloseReason, ConnectRequest, Connection, ConnectionConfig,
    ConnectionId, Event, Listener, ListenerConfig, Refusal, RequestId, SendError, Stats, Transmit,
    reject,
};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

/// Payloads buffered per connection for the application before new ones are dropped.
const RECV_QUEUE: usize = 65_536;
/// The first tick of every driver's grid (see [`DriverConfig::next_tick`]).
static TICK_GRID: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

/// A socket that took in at most this many datagrams per second over the last tick (a sender
/// hearing its receiver's ACKs, a receiver of a thin stream) and whose link lost a packet
/// lately is woken by each arrival while it rests, so that its answers (ACKACKs,
/// retransmissions, loss reports) leave at once; otherwise it reads once per tick. Waking
/// costs a few tens of microseconds, so this bounds the extra CPU to a few percent of a core
/// per socket, and busy sockets pay nothing.
const PROMPT_ARRIVALS_PER_SEC: u32 = 1000;
/// How long after a loss a socket stays prompt. On a clean link the answers' timing matters
/// little (the peer's RTT estimate reads up to a tick high), and a sender at 20 Mb/s would
/// wake about 30 % more often for its receiver's ACKs.
const PROMPT_AFTER_LOSS: std::time::Duration = std::time::Duration::from_secs(2);

/// The IO driver's settings (how it uses the machine, not the SRT protocol).
///
/// A busy driver wakes once per *tick* and does all that came up meanwhile: queued payloads,
/// due timers, and (on busy sockets) the datagrams that arrived. Waking per packet cost more
/// than the protocol work (see docs/benchmarks.md). What a tick costs: sends wait up to a tick
/// (their SRT timestamps are when the application queued them, so play time does not move);
/// deliveries come within half a tick of their play time
/// ([`ConnectionConfig::delivery_lead`](stadion_srt::ConnectionConfig::delivery_lead) is set to
/// half a tick); on a busy socket each loss repair round takes up to two ticks more, which the
/// default 120 ms latency absorbs. A socket with few arrivals whose link is losing packets
/// answers each arrival at once (the peer's RTT estimate then measures the link, not the
/// tick, and repairs leave when asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    tick: std::time::Duration,
}

impl DriverConfig {
    /// 4 ms: 250 wake-ups a second per busy socket, deliveries within 2 ms of play time.
    pub const DEFAULT_TICK: std::time::Duration = std::time::Duration::from_millis(4);
    /// tokio's timers count whole milliseconds: a shorter tick would be rounded up to this.
    pub const MIN_TICK: std::time::Duration = std::time::Duration::from_millis(1);
    /// SRT's ACK period: a longer tick would hold back ACKs and loss reports beyond the
    /// protocol's own cadence and eat more of the latency than it saves.
    pub const MAX_TICK: std::time::Duration = std::time::Duration::from_millis(10);

    /// Settings with a tick between [`DriverConfig::MIN_TICK`] and
    /// [`DriverConfig::MAX_TICK`]: a shorter tick lowers delivery jitter and repair time at
    /// the cost of more wake-ups on busy sockets.
    pub fn with_tick(tick: std::time::Duration) -> Result<DriverConfig, InvalidTick> {
        if (Self::MIN_TICK..=Self::MAX_TICK).contains(&tick) {
            Ok(DriverConfig { tick })
        } else {
            Err(InvalidTick { tick })
        }
    }

    pub fn tick(&self) -> std::time::Duration {
        self.tick
    }

    /// The first tick after `now` on the grid that drivers with this tick wake on while busy.
    /// An application that also batches its work (e.g. reading its input socket) and then
    /// sleeps until this instant wakes together with the drivers instead of in between.
    pub fn next_tick(&self, now: tokio::time::Instant) -> tokio::time::Instant {
        let grid = *TICK_GRID.get_or_init(|| now);
        let tick = self.tick.as_nanos();
        // Whole ticks in `d`, as a duration (u64 nanoseconds last 584 years).
        let whole = |d: std::time::Duration| {
            std::time::Duration::from_nanos(
                u64::try_from(d.as_nanos() / tick * tick).unwrap_or(u64::MAX),
            )
        };
        match now.checked_duration_since(grid) {
            Some(since) => grid + whole(since) + self.tick,
            // An instant from before the grid was laid (taken earlier, passed in later).
            None => {
                let t = grid - whole(grid - now);
                if t > now { t } else { t + self.tick }
            }
        }
    }

    /// How many datagrams a tick may bring for the socket to still answer each at once.
    fn prompt_arrivals(&self) -> u32 {
        let per_tick = self.tick.as_secs_f64() * f64::from(PROMPT_ARRIVALS_PER_SEC);
        (per_tick as u32).max(1)
    }

    /// Receive deliveries this long before play time: half a tick, so they are on time on
    /// average.
    fn delivery_lead(&self) -> std::time::Duration {
        self.tick / 2
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            tick: Self::DEFAULT_TICK,
        }
    }
}

/// A driver tick outside [`DriverConfig::MIN_TICK`]..=[`DriverConfig::MAX_TICK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "driver tick of {tick:?} is outside {:?} to {:?}",
    DriverConfig::MIN_TICK,
    DriverConfig::MAX_TICK
)]
pub struct InvalidTick {
    pub tick: std::time::Duration,
}

/// [`DriverConfig::next_tick`] of the default settings.
pub fn next_tick(now: tokio::time::Instant) -> tokio::time::Instant {
    DriverConfig::default().next_tick(now)
}

/// Socket buffers: enough for a few hundred milliseconds at 300 Mb/s.
const SOCKET_BUFFER: usize = 16 << 20;

/// What went wrong in the IO layer.
#[derive(Debug, thiserror::Error)]
pub enum SrtError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    #[error("connection rejected by peer: code {code} ({reason})")]
    Rejected { code: u32, reason: &'static str },
    #[error("no answer to the handshake in time")]
    ConnectTimeout,
    #[error("invalid settings: {0}")]
    Config(#[from] stadion_srt::crypto::CryptoError),
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Send(#[from] SendError),
}

enum Command {
    /// An outbox went from idle to holding payloads.
    Drain(Arc<Outbox>),
    Close(ConnectionId),
    Stats(ConnectionId, oneshot::Sender<Option<Stats>>),
    Rejections(oneshot::Sender<BTreeMap<u32, u64>>),
    Resolve(RequestId, AcceptDecision),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single step: a panic elsewhere leaves them whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a queued payload goes.
enum Targets {
    One(ConnectionId),
    Many(Arc<[ConnectionId]>),
}

impl Targets {
    fn ids(&self) -> &[ConnectionId] {
        match self {
            Targets::One(id) => std::slice::from_ref(id),
            Targets::Many(ids) => ids,
        }
    }
}

struct Queued {
    /// When the application handed it over: the packet's SRT timestamp, so time spent queued
    /// does not shift its play time.
    at: Instant,
    targets: Targets,
    payload: Bytes,
}

#[derive(Default)]
struct OutboxState {
    items: VecDeque<Queued>,
    /// Payloads pushed out by newer ones, per connection.
    dropped: HashMap<ConnectionId, u64>,
}

/// Payloads on their way from handles to the driver. Bounded: when full, the oldest payload
/// is dropped (in live mode it is the first to become too late) and counted. The driver is
/// told once per batch, when the outbox goes from idle to busy, not once per payload.
struct Outbox {
    state: Mutex<OutboxState>,
    capacity: usize,
    /// A `Drain` for this outbox is on its way to the driver.
    scheduled: AtomicBool,
}

impl Outbox {
    fn new(capacity: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(OutboxState::default()),
            capacity: capacity.max(1),
            scheduled: AtomicBool::new(false),
        })
    }

    fn push(
        self: &Arc<Self>,
        commands: &mpsc::UnboundedSender<Command>,
        targets: Targets,
        payload: Bytes,
        at: Instant,
    ) -> Result<(), SrtError> {
        let item = Queued {
            at,
            targets,
            payload,
        };
        {
            let mut state = lock(&self.state);
            if state.items.len() >= self.capacity
                && let Some(old) = state.items.pop_front()
            {
                for &id in old.targets.ids() {
                    *state.dropped.entry(id).or_default() += 1;
                }
            }
            state.items.push_back(item);
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            commands
                .send(Command::Drain(self.clone()))
                .map_err(|_| SrtError::Closed)?;
        }
        Ok(())
    }
}

/// The protocol state a driver runs: one caller connection or a listener.
trait Core: Send + 'static {
    fn input(&mut self, now: Instant, arrived: Instant, from: SocketAddr, datagram: Bytes);
    fn timeout(&mut self, now: Instant);
    fn next_timeout(&self) -> Option<Instant>;
    fn transmit(&mut self) -> Option<Transmit>;
    fn event(&mut self) -> Option<(ConnectionId, Event)>;
    fn send(&mut self, id: ConnectionId, now: Instant, payload: Bytes) -> Result<(), SendError>;
    fn close(&mut self, id: ConnectionId, now: Instant);
    fn stats(&self, id: ConnectionId) -> Option<Stats>;
    /// See [`Connection::send_drop_age`].
    fn send_drop_age(&self, id: ConnectionId) -> Option<std::time::Duration>;
    fn peer_and_stream(&self, id: ConnectionId) -> Option<(SocketAddr, Option<String>)>;
    fn request_id(&self, id: ConnectionId) -> Option<RequestId>;
    /// Payloads a handle may queue for this connection.
    fn send_queue_limit(&self, id: ConnectionId) -> usize;
    /// Finishes a deferred accept decision (listeners only).
    fn resolve(&mut self, now: Instant, id: RequestId, decision: AcceptDecision);
    /// A caller refused after admission (listeners only).
    fn refusal(&mut self) -> Option<Refusal>;
    /// A caller whose connection ended: the driver may stop.
    fn finished(&self) -> bool;
    /// Refused handshakes by reason code (listeners only).
    fn rejections(&self) -> BTreeMap<u32, u64>;
    /// When the link last lost a packet.
    fn last_loss(&self) -> Option<Instant>;
}

impl Core for Connection {
    fn input(&mut self, now: Instant, arrived: Instant, from: SocketAddr, datagram: Bytes) {
        if from == self.peer() {
            self.handle_received(now, arrived, datagram);
        }
    }
    fn timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            self.handle_timeout(now);
        }
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<(ConnectionId, Event)> {
        let id = self.local_socket_id();
        self.poll_event().map(|e| (id, e))
    }
    fn send(&mut self, _id: ConnectionId, now: Instant, payload: Bytes) -> Result<(), SendError> {
        Connection::send(self, now, payload)
    }
    fn close(&mut self, _id: ConnectionId, now: Instant) {
        Connection::close(self, now);
    }
    fn stats(&self, _id: ConnectionId) -> Option<Stats> {
        Some(Connection::stats(self))
    }
    fn send_drop_age(&self, _id: ConnectionId) -> Option<std::time::Duration> {
        Some(Connection::send_drop_age(self))
    }
    fn peer_and_stream(&self, _id: ConnectionId) -> Option<(SocketAddr, Option<String>)> {
        Some((self.peer(), self.stream_id().map(str::to_owned)))
    }
    fn request_id(&self, _id: ConnectionId) -> Option<RequestId> {
        None
    }
    fn send_queue_limit(&self, _id: ConnectionId) -> usize {
        self.send_buffer_limit()
    }
    fn resolve(&mut self, _now: Instant, _id: RequestId, _decision: AcceptDecision) {}
    fn refusal(&mut self) -> Option<Refusal> {
        None
    }
    fn finished(&self) -> bool {
        self.is_closed() && !self.has_pending()
    }
    fn rejections(&self) -> BTreeMap<u32, u64> {
        BTreeMap::new()
    }
    fn last_loss(&self) -> Option<Instant> {
        Connection::last_loss(self)
    }
}

impl Core for Listener {
    fn input(&mut self, now: Instant, arrived: Instant, from: SocketAddr, datagram: Bytes) {
        self.handle_received(now, arrived, from, datagram);
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<(ConnectionId, Event)> {
        self.poll_event()
    }
    fn send(&mut self, id: ConnectionId, now: Instant, payload: Bytes) -> Result<(), SendError> {
        Listener::send(self, id, now, payload)
    }
    fn close(&mut self, id: ConnectionId, now: Instant) {
        Listener::close(self, id, now);
    }
    fn stats(&self, id: ConnectionId) -> Option<Stats> {
        Listener::stats(self, id)
    }
    fn send_drop_age(&self, id: ConnectionId) -> Option<std::time::Duration> {
        self.connection(id).map(Connection::send_drop_age)
    }
    fn peer_and_stream(&self, id: ConnectionId) -> Option<(SocketAddr, Option<String>)> {
        self.connection(id)
            .map(|c| (c.peer(), c.stream_id().map(str::to_owned)))
    }
    fn request_id(&self, id: ConnectionId) -> Option<RequestId> {
        self.connection(id).and_then(Connection::request_id)
    }
    fn send_queue_limit(&self, id: ConnectionId) -> usize {
        self.connection(id).map_or(1, Connection::send_buffer_limit)
    }
    fn resolve(&mut self, now: Instant, id: RequestId, decision: AcceptDecision) {
        if !Listener::resolve(self, now, id, decision) {
            tracing::debug!(?id, "SRT accept decision came after the caller was refused");
        }
    }
    fn refusal(&mut self) -> Option<Refusal> {
        self.poll_refusal()
    }
    fn finished(&self) -> bool {
        false
    }
    fn rejections(&self) -> BTreeMap<u32, u64> {
        Listener::rejections(self).clone()
    }
    fn last_loss(&self) -> Option<Instant> {
        Listener::last_loss(self)
    }
}

/// One established SRT connection.
#[derive(Debug)]
pub struct SrtConnection {
    id: ConnectionId,
    peer: SocketAddr,
    stream_id: Option<String>,
    request_id: Option<RequestId>,
    commands: mpsc::UnboundedSender<Command>,
    outbox: Arc<Outbox>,
    received: mpsc::Receiver<Bytes>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
}

impl SrtConnection {
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The stream ID the caller sent (for accepted connections) or that we sent.
    pub fn stream_id(&self) -> Option<&str> {
        self.stream_id.as_deref()
    }

    /// Accepted connections: the [`ConnectRequest::id`] the accept hook saw for this caller.
    pub fn request_id(&self) -> Option<RequestId> {
        self.request_id
    }

    /// Queues one payload (at most 1456 bytes); never blocks. The queue holds at most
    /// [`ConnectionConfig::send_buffer_limit`] payloads: beyond that the oldest is dropped and
    /// counted in [`Stats::packets_send_dropped`] (live mode: late data is worthless).
    /// Cloning a `Bytes` to many connections shares it.
    pub fn send(&self, payload: Bytes) -> Result<(), SrtError> {
        self.send_at(payload, Instant::now())
    }

    /// [`SrtConnection::send`] for a payload that entered the system at `at`, e.g. the
    /// [`batch::Datagram::arrived`] of the datagram it came in: its SRT timestamp, and so its
    /// play time at the receiver, counts from then, however late it is handed over.
    pub fn send_at(&self, payload: Bytes, at: Instant) -> Result<(), SrtError> {
        self.outbox
            .push(&self.commands, Targets::One(self.id), payload, at)
    }

    /// The next payload in delivery order; `None` once the connection has closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.received.recv().await
    }

    /// Waits for payloads, then appends all that are ready (at most `limit`) to `buf` in
    /// delivery order: one wake-up for everything a driver tick delivered. Returns how many;
    /// 0 once the connection has closed.
    pub async fn recv_many(&mut self, buf: &mut Vec<Bytes>, limit: usize) -> usize {
        self.received.recv_many(buf, limit).await
    }

    /// Current statistics, `None` once closed.
    pub async fn stats(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Stats(self.id, tx)).ok()?;
        rx.await.ok().flatten()
    }

    /// Closes at once: a shutdown goes to the peer and the connection stops.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close(self.id));
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.close_reason).clone()
    }
}

impl Drop for SrtConnection {
    /// Dropping the handle closes the connection (a shutdown goes to the peer).
    fn drop(&mut self) {
        self.close();
    }
}

fn udp_socket(bind: SocketAddr) -> io::Result<UdpSocket> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&bind.into())?;
    // Best effort as well: without it arrivals count from when the batch is read.
    let _ = batch::enable_timestamps(&sock);
    // And without this each datagram of a peer's GSO run is cut out and queued on its own.
    let _ = batch::enable_gro(&sock);
    Ok(sock.into())
}

/// Connects to an SRT listener (caller role).
pub async fn connect(
    peer: SocketAddr,
    config: ConnectionConfig,
) -> Result<SrtConnection, SrtError> {
    connect_with(peer, config, DriverConfig::default()).await
}

/// [`connect`] with the driver's settings, e.g. a shorter tick.
pub async fn connect_with(
    peer: SocketAddr,
    config: ConnectionConfig,
    driver: DriverConfig,
) -> Result<SrtConnection, SrtError> {
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = udp_socket(bind)?;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let config = ConnectionConfig {
        delivery_lead: config.delivery_lead.max(driver.delivery_lead()),
        ..config
    };
    let conn = Connection::connect(Instant::now(), peer, config, &mut rng)?;
    let (tx, rx) = oneshot::channel();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let driver = Driver::new(
        conn,
        socket,
        driver,
        &commands,
        Some(commands.clone()),
        command_rx,
        Role::Caller(Some(tx)),
    );
    tokio::spawn(driver.run());
    rx.await.map_err(|_| SrtError::Closed)?
}

/// What an [`AsyncAcceptHook`] answers: a decision now, or a future that makes it.
pub enum Decision {
    Now(AcceptDecision),
    Later(Pin<Box<dyn Future<Output = AcceptDecision> + Send>>),
}

impl Decision {
    /// Decides when `decision` completes (it runs as its own task); the handshake waits
    /// parked, for at most the listener's [`ConnectionConfig::connect_timeout`].
    pub fn later(decision: impl Future<Output = AcceptDecision> + Send + 'static) -> Decision {
        Decision::Later(Box::pin(decision))
    }
}

impl From<AcceptDecision> for Decision {
    fn from(d: AcceptDecision) -> Decision {
        Decision::Now(d)
    }
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Now(d) => f.debug_tuple("Now").field(d).finish(),
            Decision::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// Decides on each caller, possibly asynchronously (see [`SrtListener::bind_async`]). A closure
/// `FnMut(&ConnectRequest) -> Decision` works.
pub trait AsyncAcceptHook: Send + 'static {
    fn decide(&mut self, request: &ConnectRequest<'_>) -> Decision;
}

impl<F: FnMut(&ConnectRequest<'_>) -> Decision + Send + 'static> AsyncAcceptHook for F {
    fn decide(&mut self, request: &ConnectRequest<'_>) -> Decision {
        self(request)
    }
}

/// Runs an [`AsyncAcceptHook`] as the core's synchronous hook: a later decision is awaited
/// in its own task and handed to the driver, while the core holds the handshake deferred.
struct Deferring<H> {
    hook: H,
    commands: mpsc::WeakUnboundedSender<Command>,
}

impl<H: AsyncAcceptHook> AcceptHook for Deferring<H> {
    fn decide(&mut self, request: &ConnectRequest<'_>) -> AcceptDecision {
        match self.hook.decide(request) {
            Decision::Now(d) => d,
            Decision::Later(decision) => {
                let (id, commands) = (request.id, self.commands.clone());
                tokio::spawn(async move {
                    let decision = decision.await;
                    if let Some(commands) = commands.upgrade() {
                        let _ = commands.send(Command::Resolve(id, decision));
                    }
                });
                AcceptDecision::Defer
            }
        }
    }
}

/// What a listener reports: a new connection, or a caller refused after admission.
#[derive(Debug)]
pub enum Incoming {
    Accepted(SrtConnection),
    /// The hook admitted (or deferred) this caller but its handshake failed, e.g. a wrong
    /// passphrase or a decision that came too late; [`Refusal::id`] is the request's id.
    Refused(Refusal),
}

/// An SRT listener: many callers on one UDP port.
#[derive(Debug)]
pub struct SrtListener {
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<Incoming>,
    commands: mpsc::UnboundedSender<Command>,
    fan_out: Arc<Outbox>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SrtListener {
    /// Binds a UDP port; `hook` decides on each caller before its handshake completes.
    pub async fn bind(
        addr: SocketAddr,
        config: ListenerConfig,
        hook: impl AcceptHook + 'static,
    ) -> Result<SrtListener, SrtError> {
        Self::bind_with(addr, config, DriverConfig::default(), hook).await
    }

    /// [`SrtListener::bind`] with the driver's settings, e.g. a shorter tick.
    pub async fn bind_with(
        addr: SocketAddr,
        config: ListenerConfig,
        driver: DriverConfig,
        hook: impl AcceptHook + 'static,
    ) -> Result<SrtListener, SrtError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        Self::start(addr, config, driver, Box::new(hook), commands, command_rx)
    }

    /// Binds a UDP port with a hook that may decide asynchronously ([`Decision::later`]), e.g.
    /// by asking a control plane, without holding up the other callers on this port.
    pub async fn bind_async(
        addr: SocketAddr,
        config: ListenerConfig,
        hook: impl AsyncAcceptHook,
    ) -> Result<SrtListener, SrtError> {
        Self::bind_async_with(addr, config, DriverConfig::default(), hook).await
    }

    /// [`SrtListener::bind_async`] with the driver's settings, e.g. a shorter tick.
    pub async fn bind_async_with(
        addr: SocketAddr,
        config: ListenerConfig,
        driver: DriverConfig,
        hook: impl AsyncAcceptHook,
    ) -> Result<SrtListener, SrtError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let hook = Deferring {
            hook,
            commands: commands.downgrade(),
        };
        Self::start(addr, config, driver, Box::new(hook), commands, command_rx)
    }

    fn start(
        addr: SocketAddr,
        config: ListenerConfig,
        driver: DriverConfig,
        hook: Box<dyn AcceptHook>,
        commands: mpsc::UnboundedSender<Command>,
        command_rx: mpsc::UnboundedReceiver<Command>,
    ) -> Result<SrtListener, SrtError> {
        let socket = udp_socket(addr)?;
        let local_addr = socket.local_addr()?;
        let rng = rand::rngs::StdRng::from_os_rng();
        let queue = config.connection.send_buffer_limit;
        let mut config = config;
        config.connection.delivery_lead =
            config.connection.delivery_lead.max(driver.delivery_lead());
        let listener = Listener::new(Instant::now(), config, hook, Box::new(rng));
        let (accept_tx, incoming) = mpsc::channel(1024);
        let driver = Driver::new(
            listener,
            socket,
            driver,
            &commands,
            None,
            command_rx,
            Role::Listener(accept_tx),
        );
        tokio::spawn(driver.run());
        Ok(SrtListener {
            local_addr,
            incoming,
            commands,
            fan_out: Outbox::new(queue),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next accepted connection (callers refused after admission are skipped; see
    /// [`SrtListener::incoming`]).
    pub async fn accept(&mut self) -> Option<SrtConnection> {
        loop {
            if let Incoming::Accepted(c) = self.incoming.recv().await? {
                return Some(c);
            }
        }
    }

    /// The next accepted connection or refusal after admission; `None` once the listener has
    /// stopped.
    pub async fn incoming(&mut self) -> Option<Incoming> {
        self.incoming.recv().await
    }

    /// Sends one payload to many connections of this listener; the `Bytes` is shared by all of
    /// them (encrypted connections each make their own ciphertext). Never blocks: the queue to
    /// the driver holds at most [`ConnectionConfig::send_buffer_limit`] payloads of the
    /// listener's config, and the oldest is dropped beyond that (counted in each target's
    /// [`Stats::packets_send_dropped`]).
    pub fn send_many(&self, ids: Arc<[ConnectionId]>, payload: Bytes) -> Result<(), SrtError> {
        self.fan_out
            .push(&self.commands, Targets::Many(ids), payload, Instant::now())
    }

    /// Closes one connection at once (e.g. a revoked licence).
    pub fn close(&self, id: ConnectionId) {
        let _ = self.commands.send(Command::Close(id));
    }

    /// How many handshakes this listener refused, by SRT reason code (the code the caller's
    /// library reported); empty if the listener has stopped.
    pub async fn rejections(&self) -> BTreeMap<u32, u64> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Rejections(tx)).is_err() {
            return BTreeMap::new();
        }
        rx.await.unwrap_or_default()
    }
}

enum Role {
    Caller(Option<oneshot::Sender<Result<SrtConnection, SrtError>>>),
    Listener(mpsc::Sender<Incoming>),
}

struct Slot {
    received: mpsc::Sender<Bytes>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
    outbox: Arc<Outbox>,
    /// A payload queued longer than this is too late to send: the core would drop it
    /// unacknowledged anyway ([`Connection::send_drop_age`]), so an overloaded driver skips
    /// encrypting it.
    too_late: std::time::Duration,
}

/// A queued payload partly handed to its targets: `next` is the first target still to go.
struct Partial {
    outbox: Arc<Outbox>,
    item: Queued,
    next: usize,
}

/// Targets handed one payload between two looks at the clock while handing over.
const SENDS_PER_CLOCK_READ: usize = 32;
/// A busy driver goes back to waiting idle in the reactor only after this many ticks in a
/// row brought no datagram and no command. A stream's packets come in bursts, one per tick of
/// its sender, and a receiver whose tick falls near the bursts' arrival finds some ticks
/// empty: going idle on the first (registering the socket, waking for the next datagram, then
/// taking it out of the reactor again) cost two `epoll_ctl` and an extra wake-up each time,
/// on about half the ticks of a 20 Mb/s stream.
const LINGER_TICKS: u32 = 4;
/// Commands taken per turn; payloads are handed over in [`Driver::hand_over`]'s own budget.
const COMMANDS_PER_TURN: usize = 256;

struct Driver<C: Core> {
    core: C,
    socket: UdpSocket,
    config: DriverConfig,
    /// Datagrams taken in since the last tick: few enough, and the driver wakes for each.
    arrivals: u32,
    /// Weak, so the driver stops once every handle is gone.
    commands: mpsc::WeakUnboundedSender<Command>,
    /// A caller's driver holds the one strong sender until its handle exists.
    spare: Option<mpsc::UnboundedSender<Command>>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    role: Role,
    slots: HashMap<ConnectionId, Slot>,
    /// Payloads dropped from full outboxes, per live connection.
    send_dropped: HashMap<ConnectionId, u64>,
    /// Outboxes holding payloads for the protocol, served in turn (each is `scheduled`).
    ready: VecDeque<Arc<Outbox>>,
    /// The payload being handed over when the last turn's budget ran out.
    partial: Option<Partial>,
    outgoing: Vec<Transmit>,
    incoming: Vec<batch::Datagram>,
    recv_mem: batch::RecvBuffer,
    /// UDP GSO in use (switched off for good if the kernel refuses it).
    gso: bool,
}

impl<C: Core> Driver<C> {
    fn new(
        core: C,
        socket: UdpSocket,
        config: DriverConfig,
        commands: &mpsc::UnboundedSender<Command>,
        spare: Option<mpsc::UnboundedSender<Command>>,
        command_rx: mpsc::UnboundedReceiver<Command>,
        role: Role,
    ) -> Self {
        Driver {
            core,
            socket,
            config,
            arrivals: 0,
            commands: commands.downgrade(),
            spare,
            command_rx,
            role,
            slots: HashMap::new(),
            send_dropped: HashMap::new(),
            ready: VecDeque::new(),
            partial: None,
            outgoing: Vec::with_capacity(batch::BATCH),
            incoming: Vec::with_capacity(batch::BATCH),
            recv_mem: batch::RecvBuffer::default(),
            gso: true,
        }
    }

    async fn run(mut self) {
        if let Err(e) = self.run_inner().await {
            tracing::warn!(error = %e, "SRT driver stopped");
            let reason = CloseReason::Error(format!("socket error: {e}"));
            for slot in self.slots.values() {
                *lock(&slot.close_reason) = Some(reason.clone());
            }
            if let Role::Caller(tx) = &mut self.role
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(Err(SrtError::Io(e)));
            }
        }
    }

    async fn run_inner(&mut self) -> io::Result<()> {
        let mut commands_open = true;
        // One timer each, moved when their deadline changes: registering a fresh one per
        // wake-up cost more than the protocol work at a few thousand packets per second.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let rest = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(rest);
        // Never awaited: kept one tick beyond `rest`, so that when the tick's timers fire
        // tokio's timer wheel still holds the next tick. Setting a timer earlier than the
        // wheel's next entry makes tokio wake its own driver thread (an eventfd write and one
        // more `epoll_wait`), and without this every timer set for the next tick (this
        // driver's, an application's on the same grid) did so, every tick.
        let pilot = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(pilot);
        // The socket is in tokio's reactor while the driver waits idle, or rests with few
        // arrivals: there, every arriving datagram wakes the thread, which is what a busy
        // socket avoids.
        let mut registered: Option<AsyncFd<RawFd>> = None;
        // Woken by a datagram while resting: answer it, and rest on until the tick.
        let mut between_ticks = false;
        // Payloads were left queued when the last turn's budget ran out.
        let mut behind = false;
        // Ticks in a row without arrivals or commands (see [`LINGER_TICKS`]).
        let mut quiet_ticks = LINGER_TICKS;
        loop {
            let arrived = self.receive()?;
            self.arrivals = self.arrivals.saturating_add(arrived);
            let mut busy = arrived > 0;
            if !between_ticks {
                // Everything else that is ready, within bounds: commands, queued payloads
                // for at most half a tick, due timers. Between ticks only the answers to
                // what arrived leave, so payloads still go out in one batch per tick. The
                // bounds keep a sender whose payloads take longer to handle than they take to
                // arrive (one payload to a thousand encrypted receivers) reading its socket,
                // running its timers and sending: otherwise no ACK is read and nothing leaves.
                for _ in 0..COMMANDS_PER_TURN {
                    match self.command_rx.try_recv() {
                        Ok(cmd) => {
                            self.command(cmd);
                            busy = true;
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            commands_open = false;
                            break;
                        }
                    }
                }
                behind = self.hand_over(self.config.tick / 2);
                let now = Instant::now();
                if self.core.next_timeout().is_some_and(|t| t <= now) {
                    self.core.timeout(now);
                }
            }
            self.route_events();
            self.flush(&mut registered).await?;
            self.route_events();
            if self.core.finished() || (!commands_open && self.slots.is_empty()) {
                self.flush(&mut registered).await?;
                return Ok(());
            }
            if behind {
                // More queued than a turn handles: the next turn starts at once, after the
                // runtime's other tasks had theirs.
                self.arrivals = 0;
                between_ticks = false;
                tokio::task::yield_now().await;
                continue;
            }
            if busy {
                quiet_ticks = 0;
            } else if !between_ticks {
                quiet_ticks = quiet_ticks.saturating_add(1);
            }
            if busy || between_ticks || quiet_ticks < LINGER_TICKS {
                // Busy: rest until the next tick and take what came up meanwhile together
                // (see docs/benchmarks.md: waking per packet cost more than the protocol
                // work). Timers due meanwhile wait for the tick too.
                let tick = self.config.next_tick(tokio::time::Instant::now());
                if rest.deadline() != tick {
                    rest.as_mut().reset(tick);
                    pilot.as_mut().reset(tick + self.config.tick);
                }
                if self.prompt() {
                    // Few arrivals on a lossy link: each ends the rest, to be answered at once.
                    let reactor = match &mut registered {
                        Some(r) => r,
                        None => registered.insert(self.register(Interest::READABLE)?),
                    };
                    tokio::select! {
                        biased;
                        () = &mut rest => between_ticks = false,
                        r = reactor.readable() => {
                            r?.clear_ready();
                            between_ticks = true;
                        }
                    }
                } else {
                    // Many: rest outside the reactor, read them all at the tick.
                    registered = None;
                    (&mut rest).await;
                    between_ticks = false;
                }
                if !between_ticks {
                    self.arrivals = 0;
                }
                continue;
            }
            self.arrivals = 0;
            // Idle: wait for a datagram, a command or the next deadline.
            let reactor = match &mut registered {
                Some(r) => r,
                None => registered.insert(self.register(Interest::READABLE)?),
            };
            let deadline = self.core.next_timeout().map(tokio::time::Instant::from);
            if let Some(t) = deadline
                && timer.deadline() != t
            {
                timer.as_mut().reset(t);
            }
            tokio::select! {
                biased;
                r = reactor.readable() => {
                    // Cleared before reading: a datagram arriving after the read sets it again.
                    r?.clear_ready();
                }
                cmd = self.command_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => commands_open = false,
                },
                () = &mut timer, if deadline.is_some() => {}
            }
        }
    }

    /// Whether arrivals should end a rest (see [`PROMPT_ARRIVALS_PER_SEC`]).
    fn prompt(&self) -> bool {
        self.arrivals <= self.config.prompt_arrivals()
            && self
                .core
                .last_loss()
                .is_some_and(|t| t.elapsed() < PROMPT_AFTER_LOSS)
    }

    /// Puts the socket into tokio's reactor for `interest` until the result is dropped.
    fn register(&self, interest: Interest) -> io::Result<AsyncFd<RawFd>> {
        // SAFETY: registrations are locals of `run_inner` and `flush`, which borrow the
        // driver, so they end while the driver still holds the socket open.
        Ok(unsafe { AsyncFd::register_with_interest(self.socket.as_raw_fd(), interest) }?)
    }

    /// Reads and handles every waiting datagram (up to a bound, for fairness); how many
    /// datagrams (a coalesced run counts each of its datagrams).
    fn receive(&mut self) -> io::Result<u32> {
        let mut count = 0;
        for _ in 0..16 {
            let n = match batch::recv_batch(&self.socket, &mut self.recv_mem, &mut self.incoming) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(count),
                // ICMP errors (peer port closed) surface here; they concern one peer only.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            count += self.incoming.len() as u32;
            // Measurements use the arrival times, so RTT samples, clock drift and the TSBPD
            // base stay exact however late in its tick a datagram is read.
            let now = Instant::now();
            for d in self.incoming.drain(..) {
                self.core.input(now, d.arrived, d.from, d.data);
            }
            if n < batch::BATCH {
                return Ok(count);
            }
        }
        Ok(count)
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Drain(outbox) => self.ready.push_back(outbox),
            Command::Close(id) => {
                // What the application queued before closing goes out first, in order.
                if let Some(outbox) = self.slots.get(&id).map(|s| s.outbox.clone()) {
                    if let Some(p) = self.partial.take_if(|p| Arc::ptr_eq(&p.outbox, &outbox)) {
                        let rest = p.next..p.item.targets.ids().len();
                        self.send_to(&p.item, rest, Instant::now());
                    }
                    while let Some(item) = self.take(&outbox) {
                        self.send_to(&item, 0..item.targets.ids().len(), Instant::now());
                    }
                }
                self.core.close(id, Instant::now());
            }
            Command::Stats(id, reply) => {
                let stats = self.core.stats(id).map(|mut s| {
                    s.packets_send_dropped += self.send_dropped.get(&id).copied().unwrap_or(0);
                    s
                });
                let _ = reply.send(stats);
            }
            Command::Rejections(reply) => {
                let _ = reply.send(self.core.rejections());
            }
            Command::Resolve(id, decision) => self.core.resolve(Instant::now(), id, decision),
        }
    }

    /// Hands queued payloads to the protocol, one payload per outbox in turn, until the
    /// outboxes are empty or `budget` has passed; whether payloads are left. A payload to
    /// many targets may stop part way and go on in the next turn. Meanwhile the outboxes stay
    /// bounded (a full one drops its oldest payload), so an overloaded driver drops payloads,
    /// counted per target, rather than falling further behind.
    fn hand_over(&mut self, budget: std::time::Duration) -> bool {
        let start = Instant::now();
        loop {
            let Partial {
                outbox,
                item,
                mut next,
            } = match self.partial.take() {
                Some(p) => p,
                None => {
                    let Some(outbox) = self.ready.pop_front() else {
                        return false;
                    };
                    match self.take(&outbox) {
                        Some(item) => Partial {
                            outbox,
                            item,
                            next: 0,
                        },
                        None => continue,
                    }
                }
            };
            let targets = item.targets.ids().len();
            let out_of_time = loop {
                let end = (next + SENDS_PER_CLOCK_READ).min(targets);
                self.send_to(&item, next..end, start);
                next = end;
                let out_of_time = start.elapsed() >= budget;
                if next == targets {
                    break out_of_time;
                }
                if out_of_time {
                    self.partial = Some(Partial { outbox, item, next });
                    return true;
                }
            };
            // Back in line behind the others; taken off once found empty.
            self.ready.push_back(outbox);
            if out_of_time {
                return true;
            }
        }
    }

    /// Hands `item` to its `targets` (a range of its ids) at `now`, except to those it is
    /// already too late for: those drop it here rather than encrypt and send it for nothing.
    fn send_to(&mut self, item: &Queued, targets: std::ops::Range<usize>, now: Instant) {
        let age = now.saturating_duration_since(item.at);
        for &id in &item.targets.ids()[targets] {
            if self.slots.get(&id).is_some_and(|s| age > s.too_late) {
                *self.send_dropped.entry(id).or_default() += 1;
                continue;
            }
            if let Err(e) = self.core.send(id, item.at, item.payload.clone()) {
                tracing::trace!(id, error = %e, "SRT send refused");
            }
        }
    }

    /// The next queued payload of `outbox`, or `None` when it is empty; it is then no longer
    /// `scheduled` and the next payload queued sends a new [`Command::Drain`].
    fn take(&mut self, outbox: &Outbox) -> Option<Queued> {
        let mut state = lock(&outbox.state);
        for (id, n) in state.dropped.drain() {
            if self.slots.contains_key(&id) {
                *self.send_dropped.entry(id).or_default() += n;
            }
        }
        let item = state.items.pop_front();
        if item.is_none() {
            // Under the lock: whoever queues next finds it cleared and schedules the outbox.
            outbox.scheduled.store(false, Ordering::Release);
        }
        item
    }

    /// Sends everything the protocol has to send. `registered` is the idle wait's reactor
    /// registration of the socket, reused (or made) when the socket is full.
    async fn flush(&mut self, registered: &mut Option<AsyncFd<RawFd>>) -> io::Result<()> {
        loop {
            while self.outgoing.len() < batch::BATCH {
                match self.core.transmit() {
                    Some(t) => self.outgoing.push(t),
                    None => break,
                }
            }
            if self.outgoing.is_empty() {
                return Ok(());
            }
            match batch::send_batch(&self.socket, &self.outgoing, &mut self.gso) {
                Ok(n) => {
                    self.outgoing.drain(..n.max(1).min(self.outgoing.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // One registration per socket at a time: this replaces the idle wait's.
                    *registered = None;
                    let reactor = self.register(Interest::WRITABLE)?;
                    reactor.writable().await?.clear_ready();
                }
                Err(e) => {
                    // A datagram the kernel refuses (unreachable peer): drop it, keep the rest.
                    tracing::debug!(error = %e, "SRT datagram not sent");
                    self.outgoing.remove(0);
                }
            }
        }
    }

    fn route_events(&mut self) {
        while let Some(refusal) = self.core.refusal() {
            if let Role::Listener(tx) = &self.role {
                let _ = tx.try_send(Incoming::Refused(refusal));
            }
        }
        while let Some((id, event)) = self.core.event() {
            match event {
                Event::Connected => {
                    let Some((peer, stream_id)) = self.core.peer_and_stream(id) else {
                        continue;
                    };
                    // No handle left to hand it to (the listener was dropped): refuse it.
                    let Some(commands) = self.spare.take().or_else(|| self.commands.upgrade())
                    else {
                        self.core.close(id, Instant::now());
                        continue;
                    };
                    let (tx, received) = mpsc::channel(RECV_QUEUE);
                    let close_reason = Arc::new(Mutex::new(None));
                    let outbox = Outbox::new(self.core.send_queue_limit(id));
                    self.slots.insert(
                        id,
                        Slot {
                            received: tx,
                            close_reason: close_reason.clone(),
                            outbox: outbox.clone(),
                            too_late: self
                                .core
                                .send_drop_age(id)
                                .unwrap_or(std::time::Duration::MAX),
                        },
                    );
                    let handle = SrtConnection {
                        id,
                        peer,
                        stream_id,
                        request_id: self.core.request_id(id),
                        commands,
                        outbox,
                        received,
                        close_reason,
                    };
                    match &mut self.role {
                        Role::Caller(tx) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(Ok(handle));
                            }
                        }
                        Role::Listener(tx) => {
                            if let Err(e) = tx.try_send(Incoming::Accepted(handle)) {
                                drop(e); // the handle's drop asks for the close
                                self.core.close(id, Instant::now());
                            }
                        }
                    }
                }
                Event::Received { payload, .. } => {
                    if let Some(slot) = self.slots.get(&id) {
                        let _ = slot.received.try_send(payload);
                    }
                }
                Event::Closed(reason) => {
                    if let Role::Caller(tx) = &mut self.role
                        && let Some(tx) = tx.take()
                    {
                        let err = match reason {
                            CloseReason::Rejected(code) => SrtError::Rejected {
                                code,
                                reason: reject::describe(code),
                            },
                            CloseReason::ConnectTimeout => SrtError::ConnectTimeout,
                            _ => SrtError::Closed,
                        };
                        let _ = tx.send(Err(err));
                    }
                    self.send_dropped.remove(&id);
                    if let Some(slot) = self.slots.remove(&id) {
                        *lock(&slot.close_reason) = Some(reason);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    const KEY: &str = "fan-out-overload";

    /// A feed whose payloads take the listener's driver longer to hand to its receivers than
    /// they take to arrive (a live node's fan-out past its limit). The driver must go on
    /// reading ACKs, running timers and sending: every receiver keeps receiving, no connection
    /// idles out on either side, and the excess is dropped and counted. A driver that takes
    /// queued payloads until none are left sends nothing more once overloaded, and its
    /// receivers time out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_fan_out_keeps_every_receiver_served() {
        const RECEIVERS: usize = 20;
        // Far more than one core encrypts and sends: 64 000 payloads a second to each.
        const PAYLOADS_PER_MS: usize = 64;
        let connection = ConnectionConfig {
            passphrase: Some(KEY.into()),
            key_len: 32,
            peer_idle_timeout: Duration::from_millis(1500),
            ..ConnectionConfig::default()
        };
        let config = ListenerConfig {
            connection: connection.clone(),
            ..ListenerConfig::default()
        };
        let hook = |_: &ConnectRequest<'_>| AcceptDecision::Accept {
            passphrase: Some(KEY.into()),
            latency: None,
        };
        let mut listener = SrtListener::bind(([127, 0, 0, 1], 0).into(), config, hook)
            .await
            .unwrap();
        let addr = listener.local_addr();
        let mut callers = Vec::new();
        for _ in 0..RECEIVERS {
            callers.push(connect(addr, connection.clone()).await.unwrap());
        }
        let mut accepted = Vec::new();
        for _ in 0..RECEIVERS {
            accepted.push(listener.accept().await.unwrap());
        }
        let ids: Arc<[ConnectionId]> = accepted.iter().map(SrtConnection::id).collect();

        let received: Vec<Arc<AtomicU64>> = (0..RECEIVERS).map(|_| Arc::default()).collect();
        let mut closed = Vec::new();
        for (mut caller, count) in callers.into_iter().zip(&received) {
            let count = count.clone();
            closed.push(tokio::spawn(async move {
                let mut buf = Vec::new();
                while caller.recv_many(&mut buf, 1024).await > 0 {
                    count.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    buf.clear();
                }
                caller.close_reason()
            }));
        }
        let feed = tokio::spawn(async move {
            let payload = Bytes::from(vec![0x47; 1316]);
            let mut every = tokio::time::interval(Duration::from_millis(1));
            let end = tokio::time::Instant::now() + Duration::from_secs(4);
            while every.tick().await < end {
                for _ in 0..PAYLOADS_PER_MS {
                    listener.send_many(ids.clone(), payload.clone()).unwrap();
                }
            }
            listener
        });
        // Well past the idle timeout, each receiver still gets payloads.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before: Vec<u64> = received.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        tokio::time::sleep(Duration::from_millis(800)).await;
        for (i, (count, before)) in received.iter().zip(before).enumerate() {
            let now = count.load(Ordering::Relaxed);
            assert!(
                now > before,
                "receiver {i} got nothing more ({before} then {now})"
            );
        }
        let listener = feed.await.unwrap();
        let mut dropped = 0;
        for conn in &accepted {
            assert_eq!(conn.close_reason(), None, "sender side of {}", conn.id());
            dropped += conn.stats().await.unwrap().packets_send_dropped;
        }
        for (i, task) in closed.iter().enumerate() {
            assert!(!task.is_finished(), "receiver {i} closed");
        }
        assert!(
            dropped > 0,
            "an overloaded fan-out drops payloads, and counts them"
        );
        drop((accepted, listener));
        for task in closed {
            assert_eq!(task.await.unwrap(), Some(CloseReason::PeerShutdown));
        }
    }
}
