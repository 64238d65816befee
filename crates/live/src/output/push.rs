//! Pushes: the node calls a broadcaster's own SRT listener, or sends plain UDP to its address.
//!
//! A push is admitted like a receiver that calls in: the control plane decides (with the
//! destination's address as the source to check against the licence's networks), the licence's
//! concurrency counts it, the licence's passphrase encrypts it, and it is cut when the licence
//! is withdrawn or its window ends. A push that ends or is refused tries again with a growing
//! pause, so a broadcaster's listener that restarts gets the feed back by itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use stadion_srt::ConnectionConfig;
use stadion_srt_io::SrtConnection;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::access::{AccessQuery, Admission, ControlPort, ReceiverRequest};
use crate::fanout::FlowBus;
use crate::node::{Admissions, instant_of, lock};
use crate::output::{self, Counters, ReceiverStatus, SessionKey, SessionKind, SrtStatus, UsageLog};

/// First pause before trying a failed or ended push again; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where a push goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PushTarget {
    /// The broadcaster's SRT listener; the licence's passphrase encrypts the stream.
    Srt {
        addr: SocketAddr,
        /// Stream ID to present, when the broadcaster's listener wants one.
        #[serde(default)]
        stream_id: Option<String>,
        #[serde(default = "default_latency_ms")]
        latency_ms: u64,
    },
    /// Plain MPEG-TS over UDP (unicast or multicast); only for licences that allow clear
    /// delivery.
    Udp {
        addr: SocketAddr,
        #[serde(default = "default_ttl")]
        ttl: u32,
    },
}

fn default_latency_ms() -> u64 {
    120
}

fn default_ttl() -> u32 {
    16
}

impl PushTarget {
    pub fn addr(&self) -> SocketAddr {
        match self {
            PushTarget::Srt { addr, .. } | PushTarget::Udp { addr, .. } => *addr,
        }
    }

    fn kind(&self) -> SessionKind {
        match self {
            PushTarget::Srt { .. } => SessionKind::SrtPush,
            PushTarget::Udp { .. } => SessionKind::UdpPush,
        }
    }
}

/// One configured push: which flow goes to which rights holder's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSpec {
    pub flow: String,
    pub rhb: String,
    pub target: PushTarget,
}

/// Why one push session did not run or ended.
#[derive(Debug, thiserror::Error)]
enum PushError {
    #[error("refused by the control plane: {reason} (SRT code {code})")]
    Refused { reason: String, code: u32 },
    #[error(transparent)]
    Unavailable(#[from] crate::access::ControlUnavailable),
    #[error("the licence requires encryption; a UDP push would be in the clear")]
    EncryptionRequired,
    #[error("cannot reach {addr}: {source}")]
    Srt {
        addr: SocketAddr,
        source: stadion_srt_io::SrtError,
    },
    #[error("cannot open a UDP socket towards {addr}: {source}")]
    Udp {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The status slot the node shows for a push (`None` while not connected).
pub(crate) type Shown = Arc<Mutex<Option<ReceiverStatus>>>;

/// Set by the node to end a push, with the reason its usage records give.
pub(crate) type Stop = watch::Receiver<Option<&'static str>>;

/// The reason to stop, once there is one (a node that went away counts as shut down).
fn stop_reason(stop: &Stop) -> Option<&'static str> {
    match stop.has_changed() {
        Err(_) => Some((*stop.borrow()).unwrap_or("node_shutdown")),
        Ok(_) => *stop.borrow(),
    }
}

/// What a push task needs from the node.
pub(crate) struct PushContext<C> {
    pub port: Arc<C>,
    pub admissions: Arc<Mutex<Admissions>>,
    pub usage: UsageLog,
    pub usage_interval: Duration,
}

/// Runs a push, session after session, until the node stops it.
pub(crate) async fn run<C: ControlPort>(
    ctx: PushContext<C>,
    spec: PushSpec,
    bus: FlowBus,
    shown: Shown,
    mut stop: Stop,
) {
    let request = ReceiverRequest {
        flow: spec.flow.clone(),
        rhb: spec.rhb.clone(),
    };
    let mut pause = RETRY_MIN;
    while stop_reason(&stop).is_none() {
        match session(&ctx, &spec, &request, &bus, &shown, &mut stop).await {
            Ok(reason) => {
                tracing::info!(rhb = %spec.rhb, flow = %spec.flow, to = %spec.target.addr(), reason, "push ended");
                pause = RETRY_MIN;
            }
            Err(e) => {
                tracing::warn!(rhb = %spec.rhb, flow = %spec.flow, to = %spec.target.addr(), error = %e, "push not running");
            }
        }
        *lock(&shown) = None;
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
        pause = (pause * 2).min(RETRY_MAX);
    }
}

async fn session<C: ControlPort>(
    ctx: &PushContext<C>,
    spec: &PushSpec,
    request: &ReceiverRequest,
    bus: &FlowBus,
    shown: &Shown,
    stop: &mut Stop,
) -> Result<&'static str, PushError> {
    // Subscribed before deciding, so a withdrawal right after the grant is not missed.
    let changes = ctx.port.changes();
    let query = AccessQuery {
        rhb: spec.rhb.clone(),
        flow: spec.flow.clone(),
        source: spec.target.addr().ip().to_canonical(),
        connected: lock(&ctx.admissions).connected(request),
    };
    let admission = ctx
        .port
        .decide(&query)
        .await?
        .map_err(|r| PushError::Refused {
            reason: r.reason,
            code: r.code,
        })?;
    lock(&ctx.admissions).hold(request);
    let result = deliver(ctx, spec, &admission, bus, changes, shown, stop).await;
    lock(&ctx.admissions).release(request);
    result
}

/// Where payloads go.
enum Sink {
    Srt(SrtConnection),
    Udp(UdpSocket),
}

impl Sink {
    async fn open(target: &PushTarget, admission: &Admission) -> Result<Sink, PushError> {
        match target {
            PushTarget::Srt {
                addr,
                stream_id,
                latency_ms,
            } => {
                let latency = Duration::from_millis(*latency_ms);
                let config = ConnectionConfig {
                    passphrase: admission.passphrase.clone(),
                    stream_id: stream_id.clone(),
                    latency,
                    peer_latency: latency,
                    ..ConnectionConfig::default()
                };
                stadion_srt_io::connect(*addr, config)
                    .await
                    .map(Sink::Srt)
                    .map_err(|source| PushError::Srt {
                        addr: *addr,
                        source,
                    })
            }
            PushTarget::Udp { addr, ttl } => {
                if admission.encryption_required {
                    return Err(PushError::EncryptionRequired);
                }
                crate::udp::bind_push(*addr, *ttl)
                    .map(Sink::Udp)
                    .map_err(|source| PushError::Udp {
                        addr: *addr,
                        source,
                    })
            }
        }
    }

    /// Resolves when the far end has closed (never for UDP, which has no far end to ask).
    async fn closed(&mut self) {
        match self {
            Sink::Srt(conn) => while conn.recv().await.is_some() {},
            Sink::Udp(_) => std::future::pending().await,
        }
    }

    async fn send(&self, payload: bytes::Bytes) {
        match self {
            Sink::Srt(conn) => {
                let _ = conn.send(payload);
            }
            // A full socket buffer or an ICMP error loses this datagram only, as UDP does.
            Sink::Udp(socket) => {
                let _ = socket.send(&payload).await;
            }
        }
    }

    async fn srt_status(&self) -> Option<SrtStatus> {
        match self {
            Sink::Srt(conn) => conn.stats().await.map(SrtStatus::from),
            Sink::Udp(_) => None,
        }
    }
}

async fn deliver<C: ControlPort>(
    ctx: &PushContext<C>,
    spec: &PushSpec,
    admission: &Admission,
    bus: &FlowBus,
    mut changes: broadcast::Receiver<crate::access::LicenceChange>,
    shown: &Shown,
    stop: &mut Stop,
) -> Result<&'static str, PushError> {
    let mut sink = Sink::open(&spec.target, admission).await?;
    let mut chunks = bus.subscribe();
    let key = SessionKey {
        session: Uuid::new_v4(),
        licence: admission.licence,
        rhb: spec.rhb.clone(),
        rhb_id: admission.rhb_id,
        flow: spec.flow.clone(),
        flow_id: admission.flow_id,
        peer: spec.target.addr(),
        kind: spec.target.kind(),
    };
    let connected_at = Utc::now();
    ctx.usage.connected(&key, connected_at);
    let expires = instant_of(admission.valid_until);
    let mut counters = Counters::default();
    let mut tick = tokio::time::interval(ctx.usage_interval);
    let show = |counters: &Counters, srt| ReceiverStatus {
        key: key.clone(),
        connected_at,
        valid_until: admission.valid_until,
        packets: counters.packets,
        bytes: counters.bytes,
        srt,
    };
    *lock(shown) = Some(show(&counters, None));
    let reason = loop {
        if let Some(reason) = stop_reason(stop) {
            break reason;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => {}
            change = changes.recv() => match change {
                Ok(c) if c.licence == admission.licence => {
                    if let Some(reason) = c.state.cut_reason() {
                        break reason;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::error!(missed, "licence changes lost by a push");
                }
                Err(broadcast::error::RecvError::Closed) => break "control_plane_gone",
            },
            () = tokio::time::sleep_until(expires.into()) => break "expired",
            () = sink.closed() => break "peer_closed",
            chunk = chunks.next() => match chunk {
                Some(chunk) => {
                    for payload in output::payloads(&chunk.payload) {
                        counters.add(1, payload.len() as u64);
                        sink.send(payload).await;
                    }
                }
                None => break "flow_stopped",
            },
            _ = tick.tick() => {
                ctx.usage.delivered(&key, &mut counters);
                let srt = sink.srt_status().await;
                *lock(shown) = Some(show(&counters, srt));
            }
        }
    };
    ctx.usage.disconnected(&key, &counters, reason);
    // Dropping the connection closes it: the broadcaster's listener sees a shutdown.
    Ok(reason)
}
