//! One SRT live-mode connection as a sans-IO state machine.
//!
//! Drive it with [`Connection::handle_input`] and [`Connection::handle_timeout`]; drain
//! [`Connection::poll_transmit`] and [`Connection::poll_event`] after each call and sleep until
//! [`Connection::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_core::RngCore;

use crate::crypto::{CryptoContext, CryptoError, KeyEvent, SeededRng};
use crate::listener::RequestId;
use crate::packet::{
    Ack, AckInfo, AckRates, Control, ControlPacket, DataPacket, HS_EXT_CONFIG, HS_EXT_HSREQ,
    HS_EXT_KMREQ, Handshake, HandshakeKind, HsExtension, KeyParity, KmResponse, Packet, Position,
    SRT_MAGIC, SrtHs, flags,
};
use crate::seq::SeqNo;

/// Largest payload of one live-mode packet (1500-byte MTU minus IP, UDP and SRT headers).
pub const MAX_PAYLOAD: usize = 1456;
/// The SRT version we announce in HSREQ/HSRSP.
pub const SRT_VERSION: u32 = 0x0001_0500;
/// Full ACK period (SRT's SYN interval).
const SYN: Duration = Duration::from_millis(10);
const LIGHT_ACK_EVERY: u32 = 64;
const KEEPALIVE: Duration = Duration::from_secs(1);
const HS_RETRY: Duration = Duration::from_millis(250);
const MIN_NAK_INTERVAL: Duration = Duration::from_millis(20);
/// libsrt drops unacknowledged packets from the send buffer after max(latency, 1 s) + 20 ms.
const SND_DROP_FLOOR: Duration = Duration::from_secs(1);
/// Receive window in packets (libsrt's default flow window is 25600).
const RCV_WINDOW: usize = 32768;
const MAX_NAK_ENTRIES: usize = 300;
/// Clock drift: ACKACK arrivals averaged over this many samples (about one second) ...
const DRIFT_SAMPLES: i64 = 100;
/// ... move the TSBPD base once their mean strays this far (libsrt's threshold).
const DRIFT_MAX_US: i64 = 5_000;

/// SRT handshake rejection reasons (`SRT_REJ_*`); application codes are 1000 and above.
pub mod reject {
    pub const UNKNOWN: u32 = 0;
    pub const PEER: u32 = 2;
    pub const ROGUE: u32 = 4;
    pub const BACKLOG: u32 = 5;
    pub const CLOSE: u32 = 7;
    pub const VERSION: u32 = 8;
    pub const BADSECRET: u32 = 10;
    pub const UNSECURE: u32 = 11;
    pub const MESSAGEAPI: u32 = 12;
    pub const TIMEOUT: u32 = 16;
    /// Application codes (`SRT_REJX_*`, HTTP-like): 1400 + HTTP status.
    pub const BAD_REQUEST: u32 = 1400;
    pub const UNAUTHORIZED: u32 = 1401;
    pub const FORBIDDEN: u32 = 1403;
    pub const NOT_FOUND: u32 = 1404;
    pub const CONFLICT: u32 = 1409;

    /// Human-readable name of a reason code.
    pub fn describe(code: u32) -> &'static str {
        match code {
            UNKNOWN => "unknown",
            1 => "system error",
            PEER => "rejected by peer",
            3 => "resource allocation problem",
            ROGUE => "malformed handshake",
            BACKLOG => "listener backlog exceeded",
            6 => "internal program error",
            CLOSE => "socket closing",
            VERSION => "peer version too old",
            9 => "rendezvous cookie collision",
            BADSECRET => "wrong passphrase",
            UNSECURE => "passphrase required or unexpected",
            MESSAGEAPI => "stream/message API mismatch",
            13 => "congestion controller mismatch",
            14 => "packet filter mismatch",
            15 => "group mismatch",
            TIMEOUT => "connection timed out",
            BAD_REQUEST => "bad request",
            UNAUTHORIZED => "unauthorized",
            FORBIDDEN => "forbidden",
            NOT_FOUND => "not found",
            CONFLICT => "conflict",
            1000..=1999 => "application-defined (predefined range)",
            _ => "user-defined",
        }
    }
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// TSBPD latency we apply when receiving (the larger of both sides' wins).
    pub latency: Duration,
    /// Latency we ask the peer to apply to what we send.
    pub peer_latency: Duration,
    /// Enables AES-CTR; 10 to 79 characters.
    pub passphrase: Option<String>,
    /// 16, 24 or 32 (AES-128/192/256).
    pub key_len: usize,
    /// Stream ID sent in the handshake (callers only).
    pub stream_id: Option<String>,
    /// Packets between key refreshes and the pre-announce lead (SRT defaults 2^24 and 2^12).
    pub key_refresh: (u64, u64),
    /// Connection closed when nothing arrives for this long.
    pub peer_idle_timeout: Duration,
    /// Caller gives up the handshake after this long; a listener waits this long for a
    /// deferred accept decision ([`crate::AcceptDecision::Defer`]).
    pub connect_timeout: Duration,
    /// Most unacknowledged packets kept for retransmission; beyond it the oldest is dropped
    /// (counted in [`Stats::packets_send_dropped`] and announced to the peer), so a stalled
    /// receiver cannot grow the sender's memory. Packets also leave once too late to play.
    pub send_buffer_limit: usize,
    /// Payloads are handed over up to this long before their play time. An IO layer that
    /// works in ticks sets half a tick here, so that deliveries are on time on average
    /// instead of half a tick late.
    pub delivery_lead: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            latency: Duration::from_millis(120),
            peer_latency: Duration::from_millis(120),
            passphrase: None,
            key_len: 16,
            stream_id: None,
            key_refresh: (
                crate::crypto::DEFAULT_REFRESH_RATE,
                crate::crypto::DEFAULT_PRE_ANNOUNCE,
            ),
            peer_idle_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            // One second at 100 Mb/s; at most ~12 MB of payload per connection.
            send_buffer_limit: 8192,
            delivery_lead: Duration::ZERO,
        }
    }
}

/// A datagram to send: `header` followed by `payload` (kept apart so a shared payload is never
/// copied into a per-connection buffer).
#[derive(Debug, Clone)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub header: [u8; 16],
    pub payload: Bytes,
}

impl Transmit {
    fn control(destination: SocketAddr, pkt: &ControlPacket) -> Transmit {
        let bytes = Bytes::from(pkt.to_bytes());
        let mut header = [0u8; 16];
        header.copy_from_slice(&bytes[..16]);
        Transmit {
            destination,
            header,
            payload: bytes.slice(16..),
        }
    }

    pub fn len(&self) -> usize {
        16 + self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The datagram as one contiguous buffer (copies; tests and simple IO only).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        v.extend_from_slice(&self.header);
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We called [`Connection::close`].
    Local,
    /// The peer sent a shutdown.
    PeerShutdown,
    /// Nothing heard from the peer within the idle timeout.
    IdleTimeout,
    /// The handshake failed: the peer (or we) rejected it with this reason code.
    Rejected(u32),
    /// The caller's handshake got no answer in time.
    ConnectTimeout,
    /// The connection broke: the peer sent an SRT peer-error message, or the IO layer under
    /// it failed (a socket error); the text says which.
    Error(String),
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected,
    /// A payload whose TSBPD delivery time has come, in sequence order.
    Received {
        payload: Bytes,
        msg_no: u32,
    },
    Closed(CloseReason),
}

/// Counters and estimates of one connection (cumulative unless stated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_retransmitted: u64,
    /// Packets the peer reported lost (each counted once, however often it was reported).
    pub packets_send_loss: u64,
    /// Unacknowledged packets dropped from the send buffer: too late to play, or pushed out by
    /// [`ConnectionConfig::send_buffer_limit`].
    pub packets_send_dropped: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Sequence gaps detected on reception (each missing packet counted once).
    pub packets_lost: u64,
    /// Packets never delivered because their play time passed (too-late drop).
    pub packets_dropped: u64,
    /// Retransmissions and duplicates that arrived after the packet was delivered or received.
    pub packets_belated: u64,
    pub packets_delivered: u64,
    pub naks_sent: u64,
    pub acks_sent: u64,
    pub rtt: Duration,
    pub rtt_var: Duration,
    /// Unacknowledged packets in the send buffer.
    pub send_buffer_packets: usize,
    /// Packets waiting for their delivery time in the receive buffer.
    pub recv_buffer_packets: usize,
    /// Bits per second over the last measurement second.
    pub send_rate_bps: u64,
    pub recv_rate_bps: u64,
    /// Estimated link capacity from packet pairs (packets per second).
    pub link_capacity_pps: u32,
    /// The negotiated receive latency.
    pub latency: Duration,
}

#[allow(clippy::large_enum_variant)] // one per connection, and most are Established
enum State {
    /// Caller waiting for the induction response.
    Induction {
        since: Instant,
        last_tx: Instant,
    },
    /// Caller waiting for the conclusion response.
    Conclusion {
        since: Instant,
        last_tx: Instant,
        request: Handshake,
        km: Option<CryptoContext>,
    },
    Established,
    Closed,
}

/// A packet the receiver found missing.
#[derive(Debug, Clone, Copy)]
struct LossReport {
    found: Instant,
    last: Instant,
}

struct SndPkt {
    seq: SeqNo,
    msg_no: u32,
    timestamp: u32,
    parity: KeyParity,
    payload: Bytes,
    origin: Instant,
    last_tx: Instant,
    /// The peer has reported this packet lost at least once.
    reported_lost: bool,
}

/// Before the receiver must play a packet, time enough for a copy to get there: two ACK
/// periods (timers run once per period, and the IO layer's tick) plus four RTT variations.
fn last_chance_guard(rtt_var: Duration) -> Duration {
    2 * SYN + 4 * rtt_var
}

struct RcvPkt {
    ts: i64,
    msg_no: u32,
    payload: Bytes,
}

/// One SRT connection (caller or listener side).
pub struct Connection {
    state: State,
    config: ConnectionConfig,
    peer: SocketAddr,
    local_id: u32,
    peer_id: u32,
    start: Instant,
    rng: SeededRng,
    crypto: Option<CryptoContext>,
    pending_km: Option<(crate::packet::KeyMaterial, Instant)>,
    latency: Duration,
    peer_latency: Duration,
    // sender
    snd_next: SeqNo,
    msg_no: u32,
    snd_buf: VecDeque<SndPkt>,
    /// The oldest packet not yet past its last chance (see `last_chance_repairs`).
    last_chance_next: SeqNo,
    /// When the peer last reported a loss or we last found one (see [`Connection::last_loss`]).
    last_loss: Option<Instant>,
    // receiver
    rcv_base: SeqNo,
    rcv_buf: VecDeque<Option<RcvPkt>>,
    /// Missing packets by absolute receive index (`rcv_epoch` is the index of `rcv_base`),
    /// with when they were found missing and last reported.
    loss: BTreeMap<u64, LossReport>,
    rcv_epoch: u64,
    tsbpd_anchor: Option<(Instant, i64)>,
    last_ts: i64,
    rcv_since_light_ack: u32,
    rcv_since_full_ack: bool,
    ack_no: u32,
    acks_in_flight: VecDeque<(u32, Instant)>,
    rtt_measured: bool,
    last_full_ack: Instant,
    last_ack_seq: SeqNo,
    probe: Option<(SeqNo, Instant)>,
    /// Sum and count of drift samples (µs) since the TSBPD base last moved.
    drift: (i64, i64),
    capacity_interval_us: f64,
    // timers
    next_tick: Instant,
    last_sent: Instant,
    last_heard: Instant,
    // rate windows
    window_start: Instant,
    window_sent_bytes: u64,
    window_recv_bytes: u64,
    window_recv_packets: u64,
    recv_pps: u32,
    hs_response: Option<Bytes>,
    /// The listener's request this connection was accepted from.
    request: Option<RequestId>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("local_id", &self.local_id)
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

fn ip_words(addr: SocketAddr) -> [u8; 16] {
    // libsrt stores the address in host-order 32-bit words; on the wire each word is then
    // big-endian, so IPv4 octets appear reversed in the first word.
    let mut out = [0u8; 16];
    match addr {
        SocketAddr::V4(a) => {
            let o = a.ip().octets();
            out[..4].copy_from_slice(&[o[3], o[2], o[1], o[0]]);
        }
        SocketAddr::V6(a) => {
            for (i, w) in a.ip().octets().chunks_exact(4).enumerate() {
                out[i * 4..i * 4 + 4].copy_from_slice(&[w[3], w[2], w[1], w[0]]);
            }
        }
    }
    out
}

fn ms(d: Duration) -> u16 {
    d.as_millis().min(u128::from(u16::MAX)) as u16
}

/// What the listener decided for an accepted handshake.
pub(crate) struct Accepted {
    pub peer_id: u32,
    pub isn: SeqNo,
    pub hs_ts: u32,
    pub crypto: Option<CryptoContext>,
    pub request: RequestId,
}

impl Connection {
    fn new(
        now: Instant,
        peer: SocketAddr,
        config: ConnectionConfig,
        local_id: u32,
        isn: SeqNo,
        seed: [u8; 32],
    ) -> Self {
        Connection {
            state: State::Closed,
            latency: config.latency,
            peer_latency: config.peer_latency,
            config,
            peer,
            local_id,
            peer_id: 0,
            start: now,
            rng: SeededRng::new(seed),
            crypto: None,
            pending_km: None,
            snd_next: isn,
            last_chance_next: isn,
            last_loss: None,
            msg_no: 1,
            snd_buf: VecDeque::new(),
            rcv_base: isn,
            rcv_buf: VecDeque::new(),
            loss: BTreeMap::new(),
            rcv_epoch: 0,
            tsbpd_anchor: None,
            last_ts: 0,
            rcv_since_light_ack: 0,
            rcv_since_full_ack: false,
            ack_no: 0,
            acks_in_flight: VecDeque::new(),
            rtt_measured: false,
            last_full_ack: now,
            last_ack_seq: isn,
            probe: None,
            drift: (0, 0),
            capacity_interval_us: 0.0,
            next_tick: now,
            last_sent: now,
            last_heard: now,
            window_start: now,
            window_sent_bytes: 0,
            window_recv_bytes: 0,
            window_recv_packets: 0,
            recv_pps: 0,
            hs_response: None,
            request: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats {
                rtt: Duration::from_millis(100),
                rtt_var: Duration::from_millis(50),
                ..Stats::default()
            },
        }
    }

    /// Starts a caller handshake towards `peer` (HSv5 induction, then conclusion).
    pub fn connect(
        now: Instant,
        peer: SocketAddr,
        config: ConnectionConfig,
        rng: &mut dyn RngCore,
    ) -> Result<Self, CryptoError> {
        if let Some(p) = &config.passphrase {
            crate::crypto::check_passphrase(p)?;
            if !matches!(config.key_len, 16 | 24 | 32) {
                return Err(CryptoError::BadKeyLength(config.key_len));
            }
        }
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let local_id = (rng.next_u32() & 0x3FFF_FFFF).max(1);
        let isn = SeqNo::new(rng.next_u32());
        let mut conn = Connection::new(now, peer, config, local_id, isn, seed);
        conn.state = State::Induction {
            since: now,
            last_tx: now,
        };
        conn.send_induction(now);
        Ok(conn)
    }

    /// Listener side: the handshake was accepted; `response` is the conclusion answer already
    /// encoded by the listener, kept to answer retransmitted conclusions.
    pub(crate) fn accepted(
        now: Instant,
        arrived: Instant,
        peer: SocketAddr,
        config: ConnectionConfig,
        local_id: u32,
        acc: Accepted,
        seed: [u8; 32],
    ) -> Self {
        let mut conn = Connection::new(now, peer, config, local_id, acc.isn, seed);
        conn.peer_id = acc.peer_id;
        conn.crypto = acc.crypto;
        conn.request = Some(acc.request);
        conn.state = State::Established;
        // The caller stamped its conclusion `hs_ts` when it sent it, so the base counts from
        // its arrival, not from when it was accepted (a deferred decision may take seconds).
        conn.tsbpd_anchor = Some((arrived, i64::from(acc.hs_ts)));
        conn.last_ts = i64::from(acc.hs_ts);
        conn.events.push_back(Event::Connected);
        conn
    }

    pub(crate) fn set_negotiated_latency(&mut self, latency: Duration, peer_latency: Duration) {
        self.latency = latency;
        self.peer_latency = peer_latency;
        self.stats.latency = latency;
    }

    pub(crate) fn set_hs_response(&mut self, response: &ControlPacket) {
        let t = Transmit::control(self.peer, response);
        self.hs_response = Some(Bytes::from(t.to_vec()));
        self.out.push_back(t);
    }

    pub(crate) fn resend_hs_response(&mut self) {
        if let Some(r) = &self.hs_response {
            let mut header = [0u8; 16];
            header.copy_from_slice(&r[..16]);
            self.out.push_back(Transmit {
                destination: self.peer,
                header,
                payload: r.slice(16..),
            });
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// [`ConnectionConfig::send_buffer_limit`] of this connection.
    pub fn send_buffer_limit(&self) -> usize {
        self.config.send_buffer_limit
    }

    /// Listener side: the [`crate::ConnectRequest::id`] the accept hook saw for this caller.
    pub fn request_id(&self) -> Option<RequestId> {
        self.request
    }

    pub fn local_socket_id(&self) -> u32 {
        self.local_id
    }

    pub fn peer_socket_id(&self) -> u32 {
        self.peer_id
    }

    /// The stream ID the caller sent (listener side) or we send (caller side).
    pub fn stream_id(&self) -> Option<&str> {
        self.config.stream_id.as_deref()
    }

    /// When the link last lost a packet: the peer reported one, or we found a gap. An IO
    /// layer that batches its work can answer promptly while the link is lossy, when the
    /// peer's repair timing depends on how fast we answer (see stadion-srt-io).
    pub fn last_loss(&self) -> Option<Instant> {
        self.last_loss
    }

    /// Datagrams or events are waiting to be polled.
    pub fn has_pending(&self) -> bool {
        !self.out.is_empty() || !self.events.is_empty()
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.send_buffer_packets = self.snd_buf.len();
        s.recv_buffer_packets = self.rcv_buf.iter().filter(|p| p.is_some()).count();
        s.latency = self.latency;
        s
    }

    fn ts(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start).as_micros() as u32
    }

    fn send_control(&mut self, now: Instant, control: Control) {
        let pkt = ControlPacket {
            timestamp: self.ts(now),
            dest_socket: self.peer_id,
            control,
        };
        self.out.push_back(Transmit::control(self.peer, &pkt));
        self.last_sent = now;
    }

    fn base_handshake(&self, kind: HandshakeKind) -> Handshake {
        Handshake {
            version: 5,
            encryption: 0,
            extension_field: 0,
            initial_seq: self.snd_next,
            mtu: 1500,
            flow_window: 25600,
            kind,
            socket_id: self.local_id,
            cookie: 0,
            peer_ip: ip_words(self.peer),
            extensions: Vec::new(),
        }
    }

    fn send_induction(&mut self, now: Instant) {
        let mut hs = self.base_handshake(HandshakeKind::Induction);
        hs.version = 4;
        hs.extension_field = 2; // UDT_DGRAM
        self.send_control(now, Control::Handshake(hs));
    }

    pub(crate) fn srt_flags(encrypted: bool) -> u32 {
        let mut f = flags::TSBPD_SND
            | flags::TSBPD_RCV
            | flags::TLPKTDROP
            | flags::PERIODIC_NAK
            | flags::REXMIT_FLG;
        if encrypted {
            f |= flags::CRYPT;
        }
        f
    }

    fn on_induction_response(&mut self, now: Instant, hs: &Handshake) {
        if hs.version < 5 || hs.extension_field != SRT_MAGIC {
            self.fail(CloseReason::Rejected(reject::VERSION));
            return;
        }
        let mut req = self.base_handshake(HandshakeKind::Conclusion);
        req.cookie = hs.cookie;
        req.extension_field = HS_EXT_HSREQ;
        req.extensions.push(HsExtension::HsReq(SrtHs {
            version: SRT_VERSION,
            flags: Self::srt_flags(self.config.passphrase.is_some()),
            recv_delay_ms: ms(self.config.latency),
            send_delay_ms: ms(self.config.peer_latency),
        }));
        let mut km_ctx = None;
        if let Some(p) = self.config.passphrase.clone() {
            match CryptoContext::initiate(&p, self.config.key_len, &mut self.rng) {
                Ok((mut ctx, km)) => {
                    ctx.set_refresh(self.config.key_refresh.0, self.config.key_refresh.1);
                    req.encryption = (self.config.key_len / 8) as u16;
                    req.extension_field |= HS_EXT_KMREQ;
                    req.extensions.push(HsExtension::KmReq(km));
                    km_ctx = Some(ctx);
                }
                Err(_) => {
                    self.fail(CloseReason::Rejected(reject::BADSECRET));
                    return;
                }
            }
        }
        if let Some(sid) = &self.config.stream_id {
            req.extension_field |= HS_EXT_CONFIG;
            req.extensions.push(HsExtension::StreamId(sid.clone()));
        }
        self.send_control(now, Control::Handshake(req.clone()));
        self.state = State::Conclusion {
            since: now,
            last_tx: now,
            request: req,
            km: km_ctx,
        };
    }

    fn on_conclusion_response(&mut self, now: Instant, arrived: Instant, ts: u32, hs: &Handshake) {
        let State::Conclusion {
            km,
            last_tx: sent_at,
            ..
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        let Some(rsp) = hs.hs_rsp() else {
            self.fail(CloseReason::Rejected(reject::ROGUE));
            return;
        };
        if km.is_some() {
            match hs.km_rsp() {
                Some(KmResponse::Echo(_)) => {}
                Some(KmResponse::Failure(3)) | None => {
                    return self.fail(CloseReason::Rejected(reject::UNSECURE));
                }
                Some(KmResponse::Failure(_)) => {
                    return self.fail(CloseReason::Rejected(reject::BADSECRET));
                }
            }
        } else if hs.km_rsp().is_some() || rsp.flags & flags::CRYPT != 0 && hs.encryption != 0 {
            return self.fail(CloseReason::Rejected(reject::UNSECURE));
        }
        self.crypto = km;
        self.peer_id = hs.socket_id;
        // The responder already took the maxima; keep ours as a floor.
        let latency = Duration::from_millis(rsp.send_delay_ms.into()).max(self.config.latency);
        let peer_latency =
            Duration::from_millis(rsp.recv_delay_ms.into()).max(self.config.peer_latency);
        self.set_negotiated_latency(latency, peer_latency);
        self.tsbpd_anchor = Some((arrived, i64::from(ts)));
        self.last_ts = i64::from(ts);
        self.rtt_sample(arrived.saturating_duration_since(sent_at));
        self.state = State::Established;
        self.last_heard = now;
        self.next_tick = now + SYN;
        self.events.push_back(Event::Connected);
    }

    fn fail(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.events.push_back(Event::Closed(reason));
    }

    /// Feeds one datagram that came from this connection's peer and arrived just now.
    pub fn handle_input(&mut self, now: Instant, datagram: Bytes) {
        self.handle_received(now, now, datagram);
    }

    /// Feeds one datagram that arrived at `arrived` (e.g. the kernel's receive timestamp) and is
    /// handled at `now`. An IO layer that reads in batches passes both: measurements (RTT,
    /// clock drift, the TSBPD base) use the arrival, and what we answer is stamped `now`.
    pub fn handle_received(&mut self, now: Instant, arrived: Instant, datagram: Bytes) {
        match Packet::decode(datagram) {
            Ok(p) => self.process(now, arrived.min(now), p),
            Err(_) => { /* malformed datagrams are dropped, as UDP garbage must be */ }
        }
    }

    /// Feeds one decoded packet that arrived just now.
    pub fn handle_packet(&mut self, now: Instant, packet: Packet) {
        self.process(now, now, packet);
    }

    fn process(&mut self, now: Instant, arrived: Instant, packet: Packet) {
        match (&self.state, packet) {
            (State::Closed, _) => {}
            (State::Induction { .. } | State::Conclusion { .. }, Packet::Control(c)) => {
                if let Control::Handshake(hs) = c.control {
                    match (hs.kind, &self.state) {
                        (HandshakeKind::Reject(code), _) => self.fail(CloseReason::Rejected(code)),
                        (HandshakeKind::Induction, State::Induction { .. }) => {
                            self.on_induction_response(now, &hs)
                        }
                        (HandshakeKind::Conclusion, State::Conclusion { .. }) => {
                            self.on_conclusion_response(now, arrived, c.timestamp, &hs)
                        }
                        _ => {}
                    }
                }
            }
            (State::Induction { .. } | State::Conclusion { .. }, Packet::Data(_)) => {}
            (State::Established, p) => {
                self.last_heard = now;
                match p {
                    Packet::Data(d) => self.on_data(now, arrived, d),
                    Packet::Control(c) => self.on_control(now, arrived, c),
                }
                self.deliver(now);
            }
        }
    }

    fn on_control(&mut self, now: Instant, arrived: Instant, c: ControlPacket) {
        match c.control {
            Control::Handshake(hs) => {
                // A retransmitted conclusion: our answer was lost.
                if hs.kind == HandshakeKind::Conclusion {
                    self.resend_hs_response();
                }
            }
            Control::KeepAlive | Control::CongestionWarning | Control::UserDefined { .. } => {}
            Control::Ack(ack) => self.on_ack(now, ack),
            Control::Nak(ranges) => self.on_nak(now, &ranges),
            Control::AckAck { ack_no } => {
                self.on_ackack(arrived, ack_no);
                self.track_drift(arrived, c.timestamp);
            }
            Control::Shutdown => {
                // The peer sent its last packet: hand over what arrived without waiting for
                // play time (a file or feed ends with a full buffer), skipping what is missing.
                while let Some(slot) = self.rcv_buf.pop_front() {
                    match slot {
                        Some(p) => {
                            self.stats.packets_delivered += 1;
                            self.events.push_back(Event::Received {
                                payload: p.payload,
                                msg_no: p.msg_no,
                            });
                        }
                        None => self.stats.packets_dropped += 1,
                    }
                }
                self.state = State::Closed;
                self.events
                    .push_back(Event::Closed(CloseReason::PeerShutdown));
            }
            Control::DropRequest { first, last, .. } => self.on_drop_request(now, first, last),
            Control::PeerError { code } => {
                // libsrt sends this when its side can no longer take data (a failed write);
                // the connection is of no further use.
                self.state = State::Closed;
                self.events
                    .push_back(Event::Closed(CloseReason::Error(format!(
                        "peer reported error {code}"
                    ))));
            }
            Control::KmReq(km) => {
                let rsp = match self.crypto.as_mut().map(|c| c.install(&km)) {
                    Some(Ok(())) => KmResponse::Echo(km),
                    Some(Err(_)) => KmResponse::Failure(4),
                    None => KmResponse::Failure(3),
                };
                self.send_control(now, Control::KmRsp(rsp));
            }
            Control::KmRsp(_) => self.pending_km = None,
        }
    }

    // ---------------------------------------------------------------- sender

    /// Queues one payload (at most [`MAX_PAYLOAD`] bytes) for sending as a solo message.
    /// The `Bytes` is shared, not copied, unless the connection encrypts.
    pub fn send(&mut self, now: Instant, payload: Bytes) -> Result<(), SendError> {
        if !self.is_established() {
            return Err(SendError::NotConnected);
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(SendError::TooLarge(payload.len()));
        }
        if self.snd_buf.len() >= self.config.send_buffer_limit.max(1) {
            self.drop_sent(
                now,
                self.snd_buf.len() + 1 - self.config.send_buffer_limit.max(1),
            );
        }
        let seq = self.snd_next;
        self.snd_next = seq.next();
        let msg_no = self.msg_no;
        self.msg_no = if msg_no >= 0x03FF_FFFF { 1 } else { msg_no + 1 };
        let timestamp = self.ts(now);
        let (parity, payload) = match self.crypto.as_mut() {
            Some(ctx) => {
                let mut buf = payload.to_vec();
                let (parity, ev) = ctx.encrypt(seq.value(), &mut buf, &mut self.rng);
                if let Some(KeyEvent::Announce(km)) = ev {
                    self.pending_km = Some((km.clone(), now));
                    self.send_control(now, Control::KmReq(km));
                }
                (parity, Bytes::from(buf))
            }
            None => (KeyParity::None, payload),
        };
        self.snd_buf.push_back(SndPkt {
            seq,
            msg_no,
            timestamp,
            parity,
            payload,
            origin: now,
            last_tx: now,
            reported_lost: false,
        });
        self.transmit_data(self.snd_buf.len() - 1, false);
        self.last_sent = now;
        Ok(())
    }

    fn transmit_data(&mut self, index: usize, retransmitted: bool) {
        let p = &self.snd_buf[index];
        let d = DataPacket {
            seq: p.seq,
            position: Position::Solo,
            in_order: false,
            key: p.parity,
            retransmitted,
            msg_no: p.msg_no,
            timestamp: p.timestamp,
            dest_socket: self.peer_id,
            payload: Bytes::new(),
        };
        let t = Transmit {
            destination: self.peer,
            header: d.header(),
            payload: p.payload.clone(),
        };
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += t.payload.len() as u64;
        self.window_sent_bytes += t.payload.len() as u64 + 44;
        self.out.push_back(t);
    }

    fn snd_index(&self, seq: SeqNo) -> Option<usize> {
        let front = self.snd_buf.front()?.seq;
        let i = front.diff(seq);
        (i >= 0 && (i as usize) < self.snd_buf.len()).then_some(i as usize)
    }

    fn on_ack(&mut self, now: Instant, ack: Ack) {
        if let Some(front) = self.snd_buf.front() {
            let n = front.seq.diff(ack.last_ack);
            if n > 0 {
                let n = (n as usize).min(self.snd_buf.len());
                self.snd_buf.drain(..n);
            }
        }
        if let Some(info) = ack.info {
            // The receiver measures RTT (ACK/ACKACK); a pure sender adopts its figures.
            if info.rtt_us > 0 && !self.rtt_from_ackack() {
                self.rtt_measured = true;
                self.stats.rtt = Duration::from_micros(info.rtt_us.into());
                self.stats.rtt_var = Duration::from_micros(info.rtt_var_us.into());
            }
            if let Some(r) = info.rates {
                self.stats.link_capacity_pps = r.capacity_pps;
            }
        }
        if ack.ack_no != 0 {
            self.send_control(now, Control::AckAck { ack_no: ack.ack_no });
        }
    }

    fn on_nak(&mut self, now: Instant, ranges: &[(SeqNo, SeqNo)]) {
        self.last_loss = Some(now);
        let min_gap = self.stats.rtt / 4;
        for &(first, last) in ranges {
            let count = first.diff(last);
            if !(0..=RCV_WINDOW as i32).contains(&count) {
                continue;
            }
            for k in 0..=count as u32 {
                let Some(i) = self.snd_index(first.add_n(k)) else {
                    continue;
                };
                if !self.snd_buf[i].reported_lost {
                    self.snd_buf[i].reported_lost = true;
                    self.stats.packets_send_loss += 1;
                }
                if self.snd_buf[i].last_tx + min_gap > now
                    && self.snd_buf[i].last_tx != self.snd_buf[i].origin
                {
                    continue;
                }
                self.snd_buf[i].last_tx = now;
                // Near its deadline a repair may be the last that can make it: two copies,
                // so that one more lost datagram does not lose the packet.
                let copies = if self.near_deadline(i, now) { 2 } else { 1 };
                for _ in 0..copies {
                    self.transmit_data(i, true);
                    self.stats.packets_retransmitted += 1;
                }
            }
        }
        self.last_sent = now;
    }

    /// Packet `i` is due at the receiver within [`last_chance_guard`] and not yet past due.
    fn near_deadline(&self, i: usize, now: Instant) -> bool {
        let due = self.snd_buf[i].origin + self.peer_latency;
        now < due && due <= now + last_chance_guard(self.stats.rtt_var)
    }

    /// How old an unacknowledged packet may grow before the sender gives it up (libsrt's rule:
    /// the peer's latency, at least 1 s, plus two ACK periods). An IO layer may drop payloads
    /// queued longer than this before handing them over: the receiver would see the same.
    pub fn send_drop_age(&self) -> Duration {
        self.peer_latency.max(SND_DROP_FLOOR) + 2 * SYN
    }

    fn drop_old_sent(&mut self, now: Instant) {
        let limit = self.send_drop_age();
        let n = self
            .snd_buf
            .iter()
            .take_while(|p| now.saturating_duration_since(p.origin) > limit)
            .count();
        self.drop_sent(now, n);
    }

    /// Gives up the `n` oldest unacknowledged packets and tells the receiver not to wait for
    /// them.
    fn drop_sent(&mut self, now: Instant, n: usize) {
        let n = n.min(self.snd_buf.len());
        if n == 0 {
            return;
        }
        let first = self.snd_buf[0].seq;
        let last = self.snd_buf[n - 1].seq;
        let msg_no = self.snd_buf[0].msg_no;
        self.snd_buf.drain(..n);
        self.stats.packets_send_dropped += n as u64;
        self.send_control(
            now,
            Control::DropRequest {
                msg_no,
                first,
                last,
            },
        );
    }

    /// A live packet has a deadline: the receiver plays it `peer_latency` after it was sent
    /// (counted from its clock's offset, which includes the one-way delay). A packet the
    /// receiver reported lost and has not acknowledged gets one more copy, unasked, when about
    /// one trip to the receiver is left (and repairs asked for after that go out twice, see
    /// `on_nak`). The receiver re-reports a loss only every half RTT to RTT (libsrt:
    /// `(RTT + 4 RTTVar) / 2`, at least 20 ms), so at a latency of about three RTT a loss gets
    /// three or four requests; when a request or its repair is lost too, the last request
    /// comes too late for its repair to make it, and this copy does not wait for it. One copy
    /// per reported loss at most; nothing where repairs succeed at once and the receiver
    /// acknowledges them before this point.
    fn last_chance_repairs(&mut self, now: Instant) {
        let due = now + last_chance_guard(self.stats.rtt_var);
        let Some(front) = self.snd_buf.front() else {
            return;
        };
        // Packets before `last_chance_next` had theirs (or were acknowledged and are gone).
        let start = front.seq.diff(self.last_chance_next).max(0) as usize;
        for i in start..self.snd_buf.len() {
            let p = &self.snd_buf[i];
            if p.origin + self.peer_latency > due {
                break;
            }
            self.last_chance_next = p.seq.next();
            if p.reported_lost {
                // `last_tx` stays: a request arriving meanwhile is still answered.
                self.transmit_data(i, true);
                self.stats.packets_retransmitted += 1;
            }
        }
    }

    /// Tail loss: a lost last packet leaves no later packet to reveal the gap, so the receiver
    /// never NAKs it. Once nothing new has been sent for about one RTO and packets are still
    /// unacknowledged, send the newest of them again, once per RTO: it reveals every lost
    /// packet before it, which the receiver then NAKs. Resending all of them instead flooded
    /// receivers whenever a sender shed payloads under overload (nothing new for an RTO while
    /// ACKs ran late) with copies of packets that were never lost.
    fn retransmit_stalled_tail(&mut self, now: Instant) {
        let rto = self.stats.rtt + 4 * self.stats.rtt_var + SYN;
        let Some(newest) = self.snd_buf.back() else {
            return;
        };
        if now.saturating_duration_since(newest.origin) < rto
            || now.saturating_duration_since(newest.last_tx) < rto
        {
            return;
        }
        let last = self.snd_buf.len() - 1;
        self.snd_buf[last].last_tx = now;
        self.transmit_data(last, true);
        self.stats.packets_retransmitted += 1;
    }

    // ---------------------------------------------------------------- receiver

    fn on_data(&mut self, now: Instant, arrived: Instant, mut d: DataPacket) {
        self.stats.packets_received += 1;
        self.stats.bytes_received += d.payload.len() as u64;
        self.window_recv_bytes += d.payload.len() as u64 + 44;
        self.window_recv_packets += 1;
        let offset = self.rcv_base.diff(d.seq);
        if offset < 0 || offset as usize >= RCV_WINDOW {
            self.stats.packets_belated += 1;
            // Answer duplicates with an ACK: the peer may have missed the last one.
            self.rcv_since_full_ack = true;
            return;
        }
        let offset = offset as usize;
        // Timestamps wrap every ~71 minutes: unwrap against the last one seen.
        let ts = self.last_ts + i64::from(d.timestamp.wrapping_sub(self.last_ts as u32) as i32);
        if ts > self.last_ts {
            self.last_ts = ts;
        }
        self.probe_capacity(arrived, d.seq);
        if offset >= self.rcv_buf.len() {
            let first_missing = self.rcv_buf.len();
            if offset > first_missing {
                let base_idx = self.rcv_epoch + first_missing as u64;
                for k in 0..(offset - first_missing) as u64 {
                    self.loss.insert(
                        base_idx + k,
                        LossReport {
                            found: now,
                            last: now,
                        },
                    );
                }
                self.stats.packets_lost += (offset - first_missing) as u64;
                self.last_loss = Some(now);
                // Immediate NAK for the new gap.
                let first = self.rcv_base.add_n(first_missing as u32);
                let last = self.rcv_base.add_n(offset as u32 - 1);
                self.stats.naks_sent += 1;
                self.send_control(now, Control::Nak(vec![(first, last)]));
            }
            self.rcv_buf.resize_with(offset + 1, || None);
        } else if self.rcv_buf[offset].is_some() {
            self.stats.packets_belated += 1;
            // Answer duplicates with an ACK: the peer may have missed the last one.
            self.rcv_since_full_ack = true;
            return;
        }
        self.loss.remove(&(self.rcv_epoch + offset as u64));
        if d.key != KeyParity::None {
            match &self.crypto {
                Some(ctx) => {
                    let mut buf = d.payload.to_vec();
                    if !ctx.decrypt(d.key, d.seq.value(), &mut buf) {
                        return;
                    }
                    d.payload = Bytes::from(buf);
                }
                None => return,
            }
        }
        self.rcv_buf[offset] = Some(RcvPkt {
            ts,
            msg_no: d.msg_no,
            payload: d.payload,
        });
        self.rcv_since_full_ack = true;
        self.rcv_since_light_ack += 1;
        if self.rcv_since_light_ack >= LIGHT_ACK_EVERY {
            self.rcv_since_light_ack = 0;
            let last_ack = self.ack_seq();
            self.send_control(
                now,
                Control::Ack(Ack {
                    ack_no: 0,
                    last_ack,
                    info: None,
                }),
            );
        }
    }

    fn probe_capacity(&mut self, now: Instant, seq: SeqNo) {
        // Packet pairs: the sender's 16n and 16n+1 packets leave back to back, so their arrival
        // gap measures the bottleneck.
        if seq.value().is_multiple_of(16) {
            self.probe = Some((seq, now));
        } else if let Some((s, t)) = self.probe.take()
            && s.next() == seq
        {
            let us = now.saturating_duration_since(t).as_secs_f64() * 1e6;
            let us = us.max(1.0);
            self.capacity_interval_us = if self.capacity_interval_us == 0.0 {
                us
            } else {
                self.capacity_interval_us * 0.875 + us * 0.125
            };
        }
    }

    /// The first sequence number not yet received.
    fn ack_seq(&self) -> SeqNo {
        match self.loss.keys().next() {
            Some(&idx) => self.rcv_base.add_n((idx - self.rcv_epoch) as u32),
            None => self.rcv_base.add_n(self.rcv_buf.len() as u32),
        }
    }

    fn on_drop_request(&mut self, now: Instant, first: SeqNo, last: SeqNo) {
        let a = self.rcv_base.diff(first).max(0);
        let b = self.rcv_base.diff(last);
        if b < a || b as usize >= RCV_WINDOW {
            return;
        }
        for off in a..=b {
            self.loss.remove(&(self.rcv_epoch + off as u64));
        }
        if b as usize >= self.rcv_buf.len() {
            self.rcv_buf.resize_with(b as usize + 1, || None);
        }
        // Missing packets in the range will be skipped at delivery time like too-late ones.
        let _ = now;
    }

    /// TSBPD drift tracking: an ACKACK stamped `peer_ts` by the peer's clock should arrive when
    /// the TSBPD base says that time is here. If the mean gap over a second of samples exceeds
    /// 5 ms the clocks run at different rates, and the base moves by it; otherwise a 100 ppm
    /// difference would eat 360 ms of latency per hour.
    fn track_drift(&mut self, now: Instant, peer_ts: u32) {
        let Some((at, ts0)) = self.tsbpd_anchor else {
            return;
        };
        let ts = self.last_ts + i64::from(peer_ts.wrapping_sub(self.last_ts as u32) as i32);
        let expected_us = ts - ts0;
        let actual_us = match now.checked_duration_since(at) {
            Some(d) => d.as_micros() as i64,
            None => -(at.duration_since(now).as_micros() as i64),
        };
        self.drift.0 += actual_us - expected_us;
        self.drift.1 += 1;
        if self.drift.1 >= DRIFT_SAMPLES {
            let mean = self.drift.0 / self.drift.1;
            self.drift = (0, 0);
            if mean.abs() > DRIFT_MAX_US {
                let shift = Duration::from_micros(mean.unsigned_abs());
                let at = if mean > 0 {
                    at + shift
                } else {
                    at.checked_sub(shift).unwrap_or(at)
                };
                self.tsbpd_anchor = Some((at, ts0));
            }
        }
    }

    fn delivery_time(&self, ts: i64) -> Option<Instant> {
        let (at, ts0) = self.tsbpd_anchor?;
        let d = ts - ts0;
        let t = if d >= 0 {
            at + Duration::from_micros(d as u64)
        } else {
            at.checked_sub(Duration::from_micros((-d) as u64))?
        };
        Some(t + self.latency.saturating_sub(self.config.delivery_lead))
    }

    fn advance(&mut self, n: usize) {
        self.rcv_buf.drain(..n);
        self.rcv_base = self.rcv_base.add_n(n as u32);
        let new_epoch = self.rcv_epoch + n as u64;
        // Loss entries behind the new base are no longer recoverable.
        while let Some((&k, _)) = self.loss.first_key_value() {
            if k < new_epoch {
                self.loss.pop_first();
            } else {
                break;
            }
        }
        self.rcv_epoch = new_epoch;
    }

    fn deliver(&mut self, now: Instant) {
        loop {
            match self.rcv_buf.front() {
                Some(Some(p)) => {
                    if self.delivery_time(p.ts).is_none_or(|t| t > now) {
                        return;
                    }
                    let Some(p) = self.rcv_buf[0].take() else {
                        return;
                    };
                    self.advance(1);
                    self.stats.packets_delivered += 1;
                    self.events.push_back(Event::Received {
                        payload: p.payload,
                        msg_no: p.msg_no,
                    });
                }
                Some(None) => {
                    let Some(j) = self.rcv_buf.iter().position(Option::is_some) else {
                        return;
                    };
                    let Some(Some(p)) = self.rcv_buf.get(j) else {
                        return;
                    };
                    if self.delivery_time(p.ts).is_none_or(|t| t > now) {
                        return;
                    }
                    // Too late: give up on the missing packets ahead of a due one.
                    self.stats.packets_dropped += j as u64;
                    self.advance(j);
                }
                None => return,
            }
        }
    }

    fn next_delivery(&self) -> Option<Instant> {
        let p = self.rcv_buf.iter().flatten().next()?;
        self.delivery_time(p.ts)
    }

    // ---------------------------------------------------------------- timers

    fn on_ackack(&mut self, now: Instant, ack_no: u32) {
        while let Some(&(no, at)) = self.acks_in_flight.front() {
            self.acks_in_flight.pop_front();
            if no == ack_no {
                self.rtt_sample(now.saturating_duration_since(at));
                return;
            }
        }
    }

    fn rtt_from_ackack(&self) -> bool {
        self.stats.acks_sent > 0 && self.rtt_measured && self.stats.packets_received > 0
    }

    fn rtt_sample(&mut self, sample: Duration) {
        if self.rtt_measured {
            let rtt = self.stats.rtt;
            self.stats.rtt_var = (self.stats.rtt_var * 3 + rtt.abs_diff(sample)) / 4;
            self.stats.rtt = (rtt * 7 + sample) / 8;
        } else {
            // The first sample replaces the 100 ms guess outright, as libsrt does.
            self.rtt_measured = true;
            self.stats.rtt = sample;
            self.stats.rtt_var = sample / 2;
        }
    }

    /// Half an RTT (floor 20 ms). A lost NAK or a lost repair is only noticed by reporting
    /// again; at live latencies of about 3 RTT this leaves room for four repair attempts, at the
    /// cost of about one duplicate retransmission per loss (the sender's filter, see `on_nak`,
    /// drops the rest).
    fn nak_interval(&self) -> Duration {
        (self.stats.rtt / 2).max(MIN_NAK_INTERVAL)
    }

    fn periodic(&mut self, now: Instant) {
        // Full ACK.
        if self.rcv_since_full_ack
            || now.saturating_duration_since(self.last_full_ack) >= Duration::from_millis(100)
        {
            let last_ack = self.ack_seq();
            if self.rcv_since_full_ack || last_ack != self.last_ack_seq {
                self.rcv_since_full_ack = false;
                self.ack_no = self.ack_no.wrapping_add(1).max(1);
                let elapsed = now
                    .saturating_duration_since(self.window_start)
                    .as_secs_f64()
                    .max(1e-3);
                let capacity_pps = if self.capacity_interval_us > 0.0 {
                    (1e6 / self.capacity_interval_us) as u32
                } else {
                    0
                };
                let info = AckInfo {
                    rtt_us: self.stats.rtt.as_micros() as u32,
                    rtt_var_us: self.stats.rtt_var.as_micros() as u32,
                    buffer_available: (RCV_WINDOW - self.rcv_buf.len()) as u32,
                    rates: Some(AckRates {
                        packets_per_sec: self
                            .recv_pps
                            .max((self.window_recv_packets as f64 / elapsed) as u32),
                        capacity_pps,
                        bytes_per_sec: (self.stats.recv_rate_bps / 8) as u32,
                    }),
                };
                let ack_no = self.ack_no;
                self.send_control(
                    now,
                    Control::Ack(Ack {
                        ack_no,
                        last_ack,
                        info: Some(info),
                    }),
                );
                self.stats.acks_sent += 1;
                self.acks_in_flight.push_back((ack_no, now));
                if self.acks_in_flight.len() > 64 {
                    self.acks_in_flight.pop_front();
                }
                self.last_full_ack = now;
                self.last_ack_seq = last_ack;
            }
        }
        // Periodic NAK: everything still missing that was not reported within the interval.
        // A loss found more than half the latency ago is reported at half the RTT without the
        // floor: its sender (libsrt's among them) ignores reports that come soon after its
        // last repair, and with the floor a lost repair near the deadline left the first report
        // it would honour up to 20 ms too late.
        let interval = self.nak_interval();
        let urgent_after = self.stats.latency / 2;
        let urgent_interval = (self.stats.rtt / 2).max(SYN).min(interval);
        let mut ranges: Vec<(SeqNo, SeqNo)> = Vec::new();
        let epoch = self.rcv_epoch;
        for (&idx, report) in self.loss.iter_mut() {
            let interval = if now.saturating_duration_since(report.found) >= urgent_after {
                urgent_interval
            } else {
                interval
            };
            // Due by the next tick counts as due now, so the cadence is not rounded up to SYN.
            if now.saturating_duration_since(report.last) + SYN / 2 < interval {
                continue;
            }
            report.last = now;
            let seq = self.rcv_base.add_n((idx - epoch) as u32);
            match ranges.last_mut() {
                Some((_, l)) if l.next() == seq => *l = seq,
                _ => {
                    if ranges.len() >= MAX_NAK_ENTRIES {
                        break;
                    }
                    ranges.push((seq, seq));
                }
            }
        }
        if !ranges.is_empty() {
            self.stats.naks_sent += 1;
            self.send_control(now, Control::Nak(ranges));
        }
        self.drop_old_sent(now);
        self.last_chance_repairs(now);
        self.retransmit_stalled_tail(now);
        if let Some((km, at)) = &self.pending_km
            && now.saturating_duration_since(*at) >= Duration::from_secs(1)
        {
            let km = km.clone();
            self.pending_km = Some((km.clone(), now));
            self.send_control(now, Control::KmReq(km));
        }
        if now.saturating_duration_since(self.last_sent) >= KEEPALIVE {
            self.send_control(now, Control::KeepAlive);
        }
        // Rates over one-second windows.
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            let secs = elapsed.as_secs_f64();
            self.stats.send_rate_bps = (self.window_sent_bytes as f64 * 8.0 / secs) as u64;
            self.stats.recv_rate_bps = (self.window_recv_bytes as f64 * 8.0 / secs) as u64;
            self.recv_pps = (self.window_recv_packets as f64 / secs) as u32;
            self.window_start = now;
            self.window_sent_bytes = 0;
            self.window_recv_bytes = 0;
            self.window_recv_packets = 0;
        }
        if self.capacity_interval_us > 0.0 {
            self.stats.link_capacity_pps = (1e6 / self.capacity_interval_us) as u32;
        }
    }

    /// Runs whatever timers are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &self.state {
            State::Closed => {}
            State::Induction { since, last_tx } | State::Conclusion { since, last_tx, .. } => {
                if now.saturating_duration_since(*since) >= self.config.connect_timeout {
                    self.fail(CloseReason::ConnectTimeout);
                } else if now.saturating_duration_since(*last_tx) >= HS_RETRY {
                    match &mut self.state {
                        State::Induction { last_tx, .. } => {
                            *last_tx = now;
                            self.send_induction(now);
                        }
                        State::Conclusion {
                            last_tx, request, ..
                        } => {
                            *last_tx = now;
                            let req = request.clone();
                            self.send_control(now, Control::Handshake(req));
                        }
                        _ => {}
                    }
                }
            }
            State::Established => {
                if now.saturating_duration_since(self.last_heard) >= self.config.peer_idle_timeout {
                    self.fail(CloseReason::IdleTimeout);
                    return;
                }
                self.deliver(now);
                if now >= self.next_tick {
                    self.periodic(now);
                    self.next_tick = now + SYN;
                }
            }
        }
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Closed => None,
            State::Induction { since, last_tx } | State::Conclusion { since, last_tx, .. } => {
                Some((*last_tx + HS_RETRY).min(*since + self.config.connect_timeout))
            }
            State::Established => {
                let t = self
                    .next_tick
                    .min(self.last_heard + self.config.peer_idle_timeout);
                Some(self.next_delivery().map_or(t, |d| d.min(t)))
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Closes at once: sends a shutdown to the peer and stops (e.g. a licence was revoked).
    pub fn close(&mut self, now: Instant) {
        if self.is_established() {
            self.send_control(now, Control::Shutdown);
        }
        if !self.is_closed() {
            self.state = State::Closed;
            self.events.push_back(Event::Closed(CloseReason::Local));
        }
    }
}

/// Why [`Connection::send`] refused a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("connection is not established")]
    NotConnected,
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte live-mode limit")]
    TooLarge(usize),
}
