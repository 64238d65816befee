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
//! - **Accepted connections** come out of [`SrtListener::accept`] as [`SrtConnection`] handles
//!   with [`SrtConnection::id`], [`SrtConnection::peer`] and [`SrtConnection::stream_id`].
//! - **Fan-out**: [`SrtListener::send_many`] queues one payload (at most 1456 bytes, typically 7
//!   TS packets) for a set of connection ids. The `Bytes` is shared; each encrypted connection
//!   makes its own ciphertext and keeps its own retransmission buffer. Datagrams leave in
//!   `sendmmsg` batches with the payload as its own iovec, never copied into a send buffer.
//! - **Bounded buffers**: each connection keeps at most
//!   [`ConnectionConfig::send_buffer_limit`](stadion_srt::ConnectionConfig::send_buffer_limit)
//!   unacknowledged packets and drops packets too late to play; both are counted in
//!   [`Stats::packets_send_dropped`] and announced to the receiver.
//! - **Statistics**: [`SrtConnection::stats`] gives RTT, loss, retransmissions, bytes, buffer
//!   occupancy and rates of one connection.
//! - **Revocation**: [`SrtListener::close`] (or [`SrtConnection::close`], or dropping the
//!   handle) sends the peer a shutdown at once; the handle's [`SrtConnection::close_reason`]
//!   then reads [`CloseReason::Local`]. The application keeps its own reason (licence revoked,
//!   feed ended) next to the id.
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

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rand::SeedableRng;
use stadion_srt::{
    AcceptHook, CloseReason, Connection, ConnectionConfig, ConnectionId, Event, Listener,
    ListenerConfig, SendError, Stats, Transmit, reject,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Payloads buffered per connection for the application before new ones are dropped.
const RECV_QUEUE: usize = 65_536;
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
    Send(ConnectionId, Bytes),
    SendMany(Arc<[ConnectionId]>, Bytes),
    Close(ConnectionId),
    Stats(ConnectionId, oneshot::Sender<Option<Stats>>),
    Rejections(oneshot::Sender<BTreeMap<u32, u64>>),
}

/// The protocol state a driver runs: one caller connection or a listener.
trait Core: Send + 'static {
    fn input(&mut self, now: Instant, from: SocketAddr, datagram: Bytes);
    fn timeout(&mut self, now: Instant);
    fn next_timeout(&self) -> Option<Instant>;
    fn transmit(&mut self) -> Option<Transmit>;
    fn event(&mut self) -> Option<(ConnectionId, Event)>;
    fn send(&mut self, id: ConnectionId, now: Instant, payload: Bytes) -> Result<(), SendError>;
    fn close(&mut self, id: ConnectionId, now: Instant);
    fn stats(&self, id: ConnectionId) -> Option<Stats>;
    fn peer_and_stream(&self, id: ConnectionId) -> Option<(SocketAddr, Option<String>)>;
    /// A caller whose connection ended: the driver may stop.
    fn finished(&self) -> bool;
    /// Refused handshakes by reason code (listeners only).
    fn rejections(&self) -> BTreeMap<u32, u64>;
}

impl Core for Connection {
    fn input(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        if from == self.peer() {
            self.handle_input(now, datagram);
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
    fn peer_and_stream(&self, _id: ConnectionId) -> Option<(SocketAddr, Option<String>)> {
        Some((self.peer(), self.stream_id().map(str::to_owned)))
    }
    fn finished(&self) -> bool {
        self.is_closed() && !self.has_pending()
    }
    fn rejections(&self) -> BTreeMap<u32, u64> {
        BTreeMap::new()
    }
}

impl Core for Listener {
    fn input(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.handle_input(now, from, datagram);
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
    fn peer_and_stream(&self, id: ConnectionId) -> Option<(SocketAddr, Option<String>)> {
        self.connection(id)
            .map(|c| (c.peer(), c.stream_id().map(str::to_owned)))
    }
    fn finished(&self) -> bool {
        false
    }
    fn rejections(&self) -> BTreeMap<u32, u64> {
        Listener::rejections(self).clone()
    }
}

/// One established SRT connection.
#[derive(Debug)]
pub struct SrtConnection {
    id: ConnectionId,
    peer: SocketAddr,
    stream_id: Option<String>,
    commands: mpsc::UnboundedSender<Command>,
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

    /// Queues one payload (at most 1456 bytes); never blocks. Cloning a `Bytes` to many
    /// connections shares it.
    pub fn send(&self, payload: Bytes) -> Result<(), SrtError> {
        self.commands
            .send(Command::Send(self.id, payload))
            .map_err(|_| SrtError::Closed)
    }

    /// The next payload in delivery order; `None` once the connection has closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.received.recv().await
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
        self.close_reason.lock().ok()?.clone()
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
    UdpSocket::from_std(sock.into())
}

/// Connects to an SRT listener (caller role).
pub async fn connect(
    peer: SocketAddr,
    config: ConnectionConfig,
) -> Result<SrtConnection, SrtError> {
    let bind: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = udp_socket(bind)?;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let conn = Connection::connect(Instant::now(), peer, config, &mut rng)?;
    let (tx, rx) = oneshot::channel();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let driver = Driver::new(conn, socket, commands, command_rx, Role::Caller(Some(tx)));
    tokio::spawn(driver.run());
    rx.await.map_err(|_| SrtError::Closed)?
}

/// An SRT listener: many callers on one UDP port.
#[derive(Debug)]
pub struct SrtListener {
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<SrtConnection>,
    commands: mpsc::UnboundedSender<Command>,
}

impl SrtListener {
    /// Binds a UDP port; `hook` decides on each caller before its handshake completes.
    pub async fn bind(
        addr: SocketAddr,
        config: ListenerConfig,
        hook: impl AcceptHook + 'static,
    ) -> Result<SrtListener, SrtError> {
        let socket = udp_socket(addr)?;
        let local_addr = socket.local_addr()?;
        let rng = rand::rngs::StdRng::from_os_rng();
        let listener = Listener::new(Instant::now(), config, Box::new(hook), Box::new(rng));
        let (accept_tx, incoming) = mpsc::channel(1024);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let driver = Driver::new(
            listener,
            socket,
            commands.clone(),
            command_rx,
            Role::Listener(accept_tx),
        );
        tokio::spawn(driver.run());
        Ok(SrtListener {
            local_addr,
            incoming,
            commands,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next accepted connection.
    pub async fn accept(&mut self) -> Option<SrtConnection> {
        self.incoming.recv().await
    }

    /// Sends one payload to many connections of this listener; the `Bytes` is shared by all of
    /// them (encrypted connections each make their own ciphertext).
    pub fn send_many(&self, ids: Arc<[ConnectionId]>, payload: Bytes) -> Result<(), SrtError> {
        self.commands
            .send(Command::SendMany(ids, payload))
            .map_err(|_| SrtError::Closed)
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
    Listener(mpsc::Sender<SrtConnection>),
}

struct Slot {
    received: mpsc::Sender<Bytes>,
    close_reason: Arc<Mutex<Option<CloseReason>>>,
}

struct Driver<C: Core> {
    core: C,
    socket: UdpSocket,
    commands: mpsc::UnboundedSender<Command>,
    command_rx: mpsc::UnboundedReceiver<Command>,
    role: Role,
    slots: HashMap<ConnectionId, Slot>,
    outgoing: Vec<Transmit>,
    incoming: Vec<(SocketAddr, Bytes)>,
    recv_mem: batch::RecvBuffer,
    /// UDP GSO in use (switched off for good if the kernel refuses it).
    gso: bool,
}

impl<C: Core> Driver<C> {
    fn new(
        core: C,
        socket: UdpSocket,
        commands: mpsc::UnboundedSender<Command>,
        command_rx: mpsc::UnboundedReceiver<Command>,
        role: Role,
    ) -> Self {
        Driver {
            core,
            socket,
            commands,
            command_rx,
            role,
            slots: HashMap::new(),
            outgoing: Vec::with_capacity(batch::BATCH),
            incoming: Vec::with_capacity(batch::BATCH),
            recv_mem: batch::RecvBuffer::default(),
            gso: true,
        }
    }

    async fn run(mut self) {
        if let Err(e) = self.run_inner().await {
            tracing::warn!(error = %e, "SRT driver stopped");
        }
    }

    async fn run_inner(&mut self) -> io::Result<()> {
        let mut commands_open = true;
        // One timer, moved when the deadline changes: registering a fresh one per wake-up
        // cost more than the protocol work at a few thousand packets per second.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        loop {
            self.flush().await?;
            self.route_events();
            if self.core.finished() || (!commands_open && self.slots.is_empty()) {
                self.flush().await?;
                return Ok(());
            }
            let deadline = self.core.next_timeout().map(tokio::time::Instant::from);
            if let Some(t) = deadline
                && timer.deadline() != t
            {
                timer.as_mut().reset(t);
            }
            tokio::select! {
                biased;
                r = self.socket.readable() => {
                    r?;
                    self.receive()?;
                }
                cmd = self.command_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // Take what else is queued without going back to the reactor.
                        for _ in 0..1024 {
                            match self.command_rx.try_recv() {
                                Ok(cmd) => self.command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => commands_open = false,
                },
                () = &mut timer, if deadline.is_some() => {}
            }
            let now = Instant::now();
            if deadline.is_some_and(|t| t.into_std() <= now) {
                self.core.timeout(now);
            }
        }
    }

    fn receive(&mut self) -> io::Result<()> {
        for _ in 0..16 {
            let n = match batch::recv_tokio(&self.socket, &mut self.recv_mem, &mut self.incoming) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // ICMP errors (peer port closed) surface here; they concern one peer only.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            for (from, datagram) in self.incoming.drain(..) {
                self.core.input(now, from, datagram);
            }
            if n < batch::BATCH {
                return Ok(());
            }
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Send(id, payload) => {
                if let Err(e) = self.core.send(id, now, payload) {
                    tracing::debug!(id, error = %e, "SRT send refused");
                }
            }
            Command::SendMany(ids, payload) => {
                for &id in ids.iter() {
                    let _ = self.core.send(id, now, payload.clone());
                }
            }
            Command::Close(id) => self.core.close(id, now),
            Command::Stats(id, reply) => {
                let _ = reply.send(self.core.stats(id));
            }
            Command::Rejections(reply) => {
                let _ = reply.send(self.core.rejections());
            }
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
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
            match self.socket.try_io(Interest::WRITABLE, || {
                batch::send_batch(&self.socket, &self.outgoing, &mut self.gso)
            }) {
                Ok(n) => {
                    self.outgoing.drain(..n.max(1).min(self.outgoing.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.socket.writable().await?,
                Err(e) => {
                    // A datagram the kernel refuses (unreachable peer): drop it, keep the rest.
                    tracing::debug!(error = %e, "SRT datagram not sent");
                    self.outgoing.remove(0);
                }
            }
        }
    }

    fn route_events(&mut self) {
        while let Some((id, event)) = self.core.event() {
            match event {
                Event::Connected => {
                    let Some((peer, stream_id)) = self.core.peer_and_stream(id) else {
                        continue;
                    };
                    let (tx, received) = mpsc::channel(RECV_QUEUE);
                    let close_reason = Arc::new(Mutex::new(None));
                    self.slots.insert(
                        id,
                        Slot {
                            received: tx,
                            close_reason: close_reason.clone(),
                        },
                    );
                    let handle = SrtConnection {
                        id,
                        peer,
                        stream_id,
                        commands: self.commands.clone(),
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
                            if tx.try_send(handle).is_err() {
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
                    if let Some(slot) = self.slots.remove(&id)
                        && let Ok(mut r) = slot.close_reason.lock()
                    {
                        *r = Some(reason);
                    }
                }
            }
        }
    }
}
