//! Many callers on one UDP port: handshake responder (SYN cookies), accept hook, demultiplexing.
//!
//! Datagrams addressed to socket id 0 are handshakes; all others are routed to the connection
//! whose local socket id they name (and only if they come from that connection's peer address).
//! The [`AcceptHook`] runs when a caller's conclusion arrives, *before* the handshake completes:
//! it sees the peer address and parsed stream ID and picks the passphrase and latency for this
//! one connection, or rejects with an SRT reason code that the caller's library reports. A hook
//! that must ask someone else (a control plane over the network) answers
//! [`AcceptDecision::Defer`]: the handshake is parked, the listener keeps serving everyone else,
//! and [`Listener::resolve`] finishes it later.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::Mac;
use rand_core::RngCore;

use crate::connection::{
    Accepted, Connection, ConnectionConfig, Event, SRT_VERSION, SendError, Stats, Transmit, reject,
};
use crate::crypto::CryptoContext;
use crate::packet::{
    Control, ControlPacket, HS_EXT_HSREQ, HS_EXT_KMREQ, Handshake, HandshakeKind, HsExtension,
    KmResponse, Packet, SRT_MAGIC, SrtHs, peek_dest_socket,
};
use crate::streamid::StreamId;

/// The local socket id of an accepted connection; stable for its lifetime.
pub type ConnectionId = u32;

/// Names one connect request (a caller's conclusion handshake) from the hook's decision to its
/// connection ([`Connection::request_id`]) or its [`Refusal`]; unique per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the accept hook sees.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// Pass this to [`Listener::resolve`] after answering [`AcceptDecision::Defer`].
    pub id: RequestId,
    pub peer: SocketAddr,
    /// Parsed stream ID (empty plain `StreamId` when the caller sent none).
    pub stream_id: &'a StreamId,
    /// The caller sent key material (it has a passphrase).
    pub encrypted: bool,
    /// Key length the caller asked for (16, 24 or 32), when encrypted.
    pub key_len: Option<usize>,
}

/// The hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptDecision {
    /// Accept with this connection's own passphrase (None: unencrypted) and optional latency
    /// (None: the listener's default). A caller whose passphrase differs is refused with
    /// BADSECRET; a mismatch in having one at all with UNSECURE.
    Accept {
        passphrase: Option<String>,
        latency: Option<Duration>,
    },
    /// Refuse with an SRT reason code, e.g. [`reject::FORBIDDEN`] (1403).
    Reject(u32),
    /// Decide later with [`Listener::resolve`] (e.g. after an asynchronous access check). The
    /// handshake is parked: the caller's retransmitted conclusions are ignored meanwhile, so no
    /// duplicate request or connection arises, and other callers are served as usual. Without
    /// an answer within the listener's
    /// [`ConnectionConfig::connect_timeout`] the caller is refused with
    /// [`reject::TIMEOUT`] and a [`Refusal`] is reported.
    Defer,
}

/// A caller the hook admitted (or deferred) whose handshake then failed, e.g. a wrong
/// passphrase ([`reject::BADSECRET`]) or a deferred decision that came too late
/// ([`reject::TIMEOUT`]). Whoever admitted it can give back what it reserved for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub id: RequestId,
    pub peer: SocketAddr,
    /// The stream ID as the caller sent it.
    pub stream_id: String,
    /// The SRT reason code sent to the caller.
    pub code: u32,
}

/// Decides on each incoming connection.
pub trait AcceptHook: Send {
    fn decide(&mut self, request: &ConnectRequest<'_>) -> AcceptDecision;
}

impl<F: FnMut(&ConnectRequest<'_>) -> AcceptDecision + Send> AcceptHook for F {
    fn decide(&mut self, request: &ConnectRequest<'_>) -> AcceptDecision {
        self(request)
    }
}

/// Listener-wide settings; per-connection ones come from the hook.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Defaults for accepted connections (passphrase and stream ID are ignored here).
    pub connection: ConnectionConfig,
    /// Further callers are refused with BACKLOG (parked handshakes count).
    pub max_connections: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            connection: ConnectionConfig::default(),
            max_connections: 10_000,
        }
    }
}

/// A conclusion handshake waiting for a deferred decision.
struct Parked {
    /// When the conclusion arrived: the TSBPD base counts from then.
    arrived: Instant,
    from: SocketAddr,
    ts: u32,
    hs: Handshake,
    hsreq: SrtHs,
    stream_id: StreamId,
    deadline: Instant,
}

/// A sans-IO SRT listener owning all its connections.
pub struct Listener {
    config: ListenerConfig,
    hook: Box<dyn AcceptHook>,
    rng: Box<dyn RngCore + Send>,
    cookie_secret: [u8; 32],
    epoch: Instant,
    conns: HashMap<ConnectionId, Connection>,
    by_peer: HashMap<(SocketAddr, u32), ConnectionId>,
    /// Each connection's next deadline, so a wake-up costs O(log n) and not a scan of all
    /// connections. The heap may hold outdated entries; `scheduled` says which one is current.
    deadlines: BinaryHeap<Reverse<(Instant, ConnectionId)>>,
    scheduled: HashMap<ConnectionId, Instant>,
    tx_dirty: VecDeque<ConnectionId>,
    ev_dirty: VecDeque<ConnectionId>,
    out: VecDeque<Transmit>,
    rejections: BTreeMap<u32, u64>,
    next_request: u64,
    parked: HashMap<RequestId, Parked>,
    parked_by_peer: HashMap<(SocketAddr, u32), RequestId>,
    /// Deadlines of parked handshakes in arrival order (all wait equally long); entries of
    /// resolved ones are skipped when they come up.
    parked_order: VecDeque<(Instant, RequestId)>,
    refusals: VecDeque<Refusal>,
    /// The latest [`Connection::last_loss`] of any connection.
    last_loss: Option<Instant>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

/// How long a SYN cookie stays valid (the bucket length; the previous bucket is accepted too).
const COOKIE_BUCKET: Duration = Duration::from_secs(60);

impl Listener {
    pub fn new(
        now: Instant,
        config: ListenerConfig,
        hook: Box<dyn AcceptHook>,
        mut rng: Box<dyn RngCore + Send>,
    ) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        Listener {
            config,
            hook,
            rng,
            cookie_secret,
            epoch: now,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            deadlines: BinaryHeap::new(),
            scheduled: HashMap::new(),
            tx_dirty: VecDeque::new(),
            ev_dirty: VecDeque::new(),
            out: VecDeque::new(),
            rejections: BTreeMap::new(),
            next_request: 0,
            parked: HashMap::new(),
            parked_by_peer: HashMap::new(),
            parked_order: VecDeque::new(),
            refusals: VecDeque::new(),
            last_loss: None,
        }
    }

    fn cookie(&self, peer: SocketAddr, bucket: u64) -> u32 {
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&self.cookie_secret)
            .expect("HMAC takes any key length");
        mac.update(peer.to_string().as_bytes());
        mac.update(&bucket.to_be_bytes());
        let h = mac.finalize().into_bytes();
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    fn bucket(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / COOKIE_BUCKET.as_secs()
    }

    fn touch(&mut self, id: ConnectionId) {
        self.tx_dirty.push_back(id);
        self.ev_dirty.push_back(id);
        self.reschedule(id);
    }

    /// Records the connection's current deadline in the heap.
    fn reschedule(&mut self, id: ConnectionId) {
        match self.conns.get(&id).and_then(Connection::poll_timeout) {
            Some(t) => {
                if self.scheduled.insert(id, t) != Some(t) {
                    self.deadlines.push(Reverse((t, id)));
                }
            }
            None => {
                self.scheduled.remove(&id);
            }
        }
        // Keep the top current so `poll_timeout` can just peek.
        while let Some(&Reverse((t, id))) = self.deadlines.peek() {
            if self.scheduled.get(&id) == Some(&t) {
                break;
            }
            self.deadlines.pop();
        }
    }

    /// Forgets a connection that is closed and has nothing left to hand out.
    fn reap(&mut self, id: ConnectionId) {
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.is_closed() && !c.has_pending())
            && let Some(c) = self.conns.remove(&id)
        {
            self.by_peer.remove(&(c.peer(), c.peer_socket_id()));
            self.scheduled.remove(&id);
        }
    }

    /// Feeds one datagram received from `from` just now.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.handle_received(now, now, from, datagram);
    }

    /// Feeds one datagram that arrived at `arrived` and is handled at `now` (see
    /// [`Connection::handle_received`]).
    pub fn handle_received(
        &mut self,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        datagram: Bytes,
    ) {
        let Some(dest) = peek_dest_socket(&datagram) else {
            return;
        };
        let arrived = arrived.min(now);
        if dest != 0 {
            if let Some(conn) = self.conns.get_mut(&dest)
                && conn.peer() == from
            {
                conn.handle_received(now, arrived, datagram);
                self.last_loss = self.last_loss.max(conn.last_loss());
                self.touch(dest);
            }
            return;
        }
        if let Ok(Packet::Control(ControlPacket {
            timestamp,
            control: Control::Handshake(hs),
            ..
        })) = Packet::decode(datagram)
        {
            self.on_handshake(now, arrived, from, timestamp, hs);
        }
    }

    fn send_handshake(&mut self, to: SocketAddr, dest_socket: u32, hs: Handshake) {
        let pkt = ControlPacket {
            timestamp: 0,
            dest_socket,
            control: Control::Handshake(hs),
        };
        let bytes = Bytes::from(pkt.to_bytes());
        let mut header = [0u8; 16];
        header.copy_from_slice(&bytes[..16]);
        self.out.push_back(Transmit {
            destination: to,
            header,
            payload: bytes.slice(16..),
        });
    }

    fn send_reject(&mut self, to: SocketAddr, request: &Handshake, code: u32) {
        *self.rejections.entry(code).or_default() += 1;
        let mut hs = request.clone();
        hs.kind = HandshakeKind::Reject(code);
        hs.extensions.clear();
        hs.socket_id = 0;
        self.send_handshake(to, request.socket_id, hs);
    }

    fn on_handshake(
        &mut self,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        ts: u32,
        hs: Handshake,
    ) {
        match hs.kind {
            HandshakeKind::Induction => {
                let reply = Handshake {
                    version: 5,
                    encryption: 0,
                    extension_field: SRT_MAGIC,
                    kind: HandshakeKind::Induction,
                    socket_id: 0,
                    cookie: self.cookie(from, self.bucket(now)),
                    extensions: Vec::new(),
                    ..hs.clone()
                };
                self.send_handshake(from, hs.socket_id, reply);
            }
            HandshakeKind::Conclusion => self.on_conclusion(now, arrived, from, ts, hs),
            _ => {}
        }
    }

    fn on_conclusion(
        &mut self,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        ts: u32,
        hs: Handshake,
    ) {
        if let Some(&id) = self.by_peer.get(&(from, hs.socket_id)) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.resend_hs_response();
                self.touch(id);
            }
            return;
        }
        if self.parked_by_peer.contains_key(&(from, hs.socket_id)) {
            return; // a retransmission while the decision is pending
        }
        let bucket = self.bucket(now);
        if hs.cookie != self.cookie(from, bucket)
            && (bucket == 0 || hs.cookie != self.cookie(from, bucket - 1))
        {
            return; // not from an induction we answered: ignore like libsrt
        }
        let Some(hsreq) = (hs.version == 5).then(|| hs.hs_req().copied()).flatten() else {
            return self.send_reject(from, &hs, reject::VERSION);
        };
        if self.conns.len() + self.parked.len() >= self.config.max_connections {
            return self.send_reject(from, &hs, reject::BACKLOG);
        }
        let stream_id = match StreamId::parse(hs.stream_id().unwrap_or("")) {
            Ok(s) => s,
            Err(_) => return self.send_reject(from, &hs, reject::BAD_REQUEST),
        };
        let km = hs.km_req();
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let decision = self.hook.decide(&ConnectRequest {
            id,
            peer: from,
            stream_id: &stream_id,
            encrypted: km.is_some(),
            key_len: km.map(|k| k.key_len),
        });
        let parked = Parked {
            arrived,
            from,
            ts,
            hs,
            hsreq,
            stream_id,
            deadline: now + self.config.connection.connect_timeout,
        };
        match decision {
            AcceptDecision::Reject(code) => self.send_reject(from, &parked.hs, code),
            AcceptDecision::Accept {
                passphrase,
                latency,
            } => self.admit(now, id, parked, passphrase, latency),
            AcceptDecision::Defer => {
                self.parked_by_peer.insert((from, parked.hs.socket_id), id);
                self.parked_order.push_back((parked.deadline, id));
                self.parked.insert(id, parked);
            }
        }
    }

    /// Finishes a handshake the hook deferred. Returns false when the request is no longer
    /// waiting (its decision timed out, or it was resolved already); answering
    /// [`AcceptDecision::Defer`] again keeps it waiting.
    pub fn resolve(&mut self, now: Instant, id: RequestId, decision: AcceptDecision) -> bool {
        if decision == AcceptDecision::Defer {
            return self.parked.contains_key(&id);
        }
        let Some(parked) = self.parked.remove(&id) else {
            return false;
        };
        self.parked_by_peer
            .remove(&(parked.from, parked.hs.socket_id));
        match decision {
            AcceptDecision::Reject(code) => self.send_reject(parked.from, &parked.hs, code),
            AcceptDecision::Accept {
                passphrase,
                latency,
            } => {
                if self.conns.len() >= self.config.max_connections {
                    self.refuse(id, parked, reject::BACKLOG);
                } else {
                    self.admit(now, id, parked, passphrase, latency);
                }
            }
            AcceptDecision::Defer => unreachable!("handled above"),
        }
        true
    }

    /// Refuses an admitted or deferred caller and reports it.
    fn refuse(&mut self, id: RequestId, parked: Parked, code: u32) {
        self.send_reject(parked.from, &parked.hs, code);
        self.refusals.push_back(Refusal {
            id,
            peer: parked.from,
            stream_id: parked.stream_id.raw,
            code,
        });
    }

    /// Creates the connection of an admitted caller and answers its conclusion.
    fn admit(
        &mut self,
        now: Instant,
        request: RequestId,
        parked: Parked,
        passphrase: Option<String>,
        latency: Option<Duration>,
    ) {
        let Parked {
            arrived,
            from,
            ts,
            ref hs,
            hsreq,
            ..
        } = parked;
        let km = hs.km_req();
        let crypto = match (&passphrase, km) {
            (None, None) => None,
            (Some(p), Some(km)) => match CryptoContext::respond(p, km) {
                Ok(mut c) => {
                    let (rate, pre) = self.config.connection.key_refresh;
                    c.set_refresh(rate, pre);
                    Some(c)
                }
                Err(_) => return self.refuse(request, parked, reject::BADSECRET),
            },
            _ => return self.refuse(request, parked, reject::UNSECURE),
        };
        let mut config = self.config.connection.clone();
        config.passphrase = passphrase;
        config.stream_id = Some(parked.stream_id.raw.clone());
        if let Some(l) = latency {
            config.latency = l;
            config.peer_latency = l;
        }
        // Each side receives with the larger of its own latency and what the peer asks for.
        let rcv_latency = config
            .latency
            .max(Duration::from_millis(hsreq.send_delay_ms.into()));
        let snd_latency = config
            .peer_latency
            .max(Duration::from_millis(hsreq.recv_delay_ms.into()));
        let id = loop {
            let id = self.rng.next_u32() & 0x3FFF_FFFF;
            if id != 0 && !self.conns.contains_key(&id) {
                break id;
            }
        };
        let mut extensions = vec![HsExtension::HsRsp(SrtHs {
            version: SRT_VERSION,
            flags: Connection::srt_flags(crypto.is_some()),
            recv_delay_ms: rcv_latency.as_millis().min(65535) as u16,
            send_delay_ms: snd_latency.as_millis().min(65535) as u16,
        })];
        let mut extension_field = HS_EXT_HSREQ;
        if let Some(km) = km {
            extensions.push(HsExtension::KmRsp(KmResponse::Echo(km.clone())));
            extension_field |= HS_EXT_KMREQ;
        }
        let response = Handshake {
            version: 5,
            encryption: hs.encryption,
            extension_field,
            kind: HandshakeKind::Conclusion,
            socket_id: id,
            extensions,
            ..hs.clone()
        };
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let accepted = Accepted {
            peer_id: hs.socket_id,
            isn: hs.initial_seq,
            hs_ts: ts,
            crypto,
            request,
        };
        let mut conn = Connection::accepted(now, arrived, from, config, id, accepted, seed);
        conn.set_negotiated_latency(rcv_latency, snd_latency);
        conn.set_hs_response(&ControlPacket {
            timestamp: 0,
            dest_socket: hs.socket_id,
            control: Control::Handshake(response),
        });
        self.by_peer.insert((from, hs.socket_id), id);
        self.conns.insert(id, conn);
        self.touch(id);
    }

    /// Refuses parked handshakes whose decision did not come in time.
    fn expire_parked(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.parked_order.front() {
            if deadline > now {
                break;
            }
            self.parked_order.pop_front();
            if self.parked.get(&id).is_some_and(|p| p.deadline == deadline)
                && let Some(parked) = self.parked.remove(&id)
            {
                self.parked_by_peer
                    .remove(&(parked.from, parked.hs.socket_id));
                self.refuse(id, parked, reject::TIMEOUT);
            }
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_parked(now);
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            if self.scheduled.get(&id) == Some(&t) {
                self.scheduled.remove(&id);
                due.push(id);
            }
        }
        for id in due {
            if let Some(c) = self.conns.get_mut(&id) {
                c.handle_timeout(now);
            }
            self.touch(id);
        }
    }

    /// The earliest deadline over all connections and parked handshakes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.deadlines.peek().map(|Reverse((t, _))| *t);
        let parked = self.parked_order.front().map(|&(t, _)| t);
        match (conns, parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.out.pop_front() {
            return Some(t);
        }
        while let Some(&id) = self.tx_dirty.front() {
            if let Some(t) = self.conns.get_mut(&id).and_then(Connection::poll_transmit) {
                return Some(t);
            }
            self.tx_dirty.pop_front();
            self.reap(id);
        }
        None
    }

    /// Events of all connections, tagged with their id (`Event::Connected` announces a new one).
    pub fn poll_event(&mut self) -> Option<(ConnectionId, Event)> {
        while let Some(&id) = self.ev_dirty.front() {
            if let Some(e) = self.conns.get_mut(&id).and_then(Connection::poll_event) {
                return Some((id, e));
            }
            self.ev_dirty.pop_front();
            self.reap(id);
        }
        None
    }

    /// Callers refused after the hook admitted or deferred them, oldest first.
    pub fn poll_refusal(&mut self) -> Option<Refusal> {
        self.refusals.pop_front()
    }

    /// Sends one payload on a connection (the `Bytes` is shared, not copied, when unencrypted).
    pub fn send(
        &mut self,
        id: ConnectionId,
        now: Instant,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let c = self.conns.get_mut(&id).ok_or(SendError::NotConnected)?;
        c.send(now, payload)?;
        self.tx_dirty.push_back(id);
        Ok(())
    }

    /// Closes a connection at once (shutdown sent to the peer), e.g. when a licence is revoked.
    pub fn close(&mut self, id: ConnectionId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.close(now);
            self.touch(id);
        }
    }

    pub fn connection(&self, id: ConnectionId) -> Option<&Connection> {
        self.conns.get(&id)
    }

    pub fn stats(&self, id: ConnectionId) -> Option<Stats> {
        self.conns.get(&id).map(Connection::stats)
    }

    /// How many handshakes were refused, by SRT reason code (the listener's side of a
    /// rejection; the caller's library reports the same code).
    /// When any of its connections last lost a packet ([`Connection::last_loss`]), as far as
    /// datagrams handed to it showed.
    pub fn last_loss(&self) -> Option<Instant> {
        self.last_loss
    }

    pub fn rejections(&self) -> &BTreeMap<u32, u64> {
        &self.rejections
    }

    /// Ids of the connections currently held.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.conns.keys().copied()
    }
}
