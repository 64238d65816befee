//! SRT sources: the node's ingest listener that venue encoders call, and the caller that pulls
//! from a venue's listener.
//!
//! One ingest listener serves every flow of a node. An encoder names its flow in the stream ID
//! (`#!::r=<flow>,m=publish`, with `u=<source>` to pick one of two listener sources); the
//! accept hook finds the source inside the handshake and holds the caller to that source's
//! passphrase, so a wrong one fails the handshake (BADSECRET) and an unknown flow gets
//! 1404. Each source takes one publisher at a time; a second gets 1409 (conflict).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stadion_mpegts::TsAlignment;
use stadion_srt::{
    AcceptDecision, ConnectRequest, ConnectionConfig, ConnectionId, ListenerConfig, Mode, StreamId,
    reject,
};
use stadion_srt_io::{SrtConnection, SrtError, SrtListener};
use tokio::task::JoinHandle;

use super::{Input, SourceEvent, SourceTx};

/// `SRT_REJX_BAD_MODE`: the stream ID asks for something other than publishing.
pub const REJECT_BAD_MODE: u32 = 1405;

/// How long an SRT caller source waits before calling again.
const CALL_RETRY: Duration = Duration::from_secs(1);

/// A listener source waiting for (or served by) a publisher.
#[derive(Debug)]
struct Slot {
    name: String,
    passphrase: Option<String>,
    tx: SourceTx,
    publisher: Option<ConnectionId>,
}

/// Listener sources by flow name.
#[derive(Debug, Default)]
struct Registry {
    flows: HashMap<String, Vec<Slot>>,
}

/// Why a publisher is refused: the SRT code and words for the log.
type Refusal = (u32, String);

impl Registry {
    /// The source a publisher's stream ID names.
    fn resolve(&mut self, stream_id: &StreamId) -> Result<&mut Slot, Refusal> {
        let raw = &stream_id.raw;
        if !stream_id.structured {
            return Err((
                reject::BAD_REQUEST,
                format!("stream ID {raw:?} is not #!::r=<flow>,m=publish"),
            ));
        }
        if stream_id.mode != Some(Mode::Publish) {
            return Err((
                REJECT_BAD_MODE,
                format!("stream ID {raw:?} does not say m=publish"),
            ));
        }
        let flow = stream_id.resource.as_deref().unwrap_or_default();
        let Some(slots) = self.flows.get_mut(flow) else {
            return Err((
                reject::NOT_FOUND,
                format!("no flow {flow:?} takes SRT publishers"),
            ));
        };
        let slot = match stream_id.user.as_deref() {
            Some(user) => slots.iter_mut().find(|s| s.name == user).ok_or_else(|| {
                (
                    reject::NOT_FOUND,
                    format!("flow {flow:?} has no source {user:?}"),
                )
            })?,
            // Without a name the encoder takes the first free source, in configured order.
            None => {
                let first_free = slots
                    .iter()
                    .position(|s| s.publisher.is_none())
                    .unwrap_or(0);
                &mut slots[first_free]
            }
        };
        if slot.publisher.is_some() {
            return Err((
                reject::CONFLICT,
                format!(
                    "source {:?} of flow {flow:?} already has a publisher",
                    slot.name
                ),
            ));
        }
        Ok(slot)
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    // A panic elsewhere cannot leave the map half-changed: every change is one insert/remove.
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// The node's SRT listener for publishing encoders.
#[derive(Debug)]
pub struct IngestListener {
    registry: Arc<Mutex<Registry>>,
    local_addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl Drop for IngestListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl IngestListener {
    /// Binds `addr`; `latency` is the SRT receive latency offered to encoders.
    pub async fn bind(addr: SocketAddr, latency: Duration) -> Result<Self, SrtError> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let hook_registry = registry.clone();
        let hook = move |request: &ConnectRequest<'_>| {
            let mut registry = lock(&hook_registry);
            match registry.resolve(request.stream_id) {
                Ok(slot) => AcceptDecision::Accept {
                    passphrase: slot.passphrase.clone(),
                    latency: None,
                },
                Err((code, reason)) => {
                    tracing::info!(peer = %request.peer, code, %reason, "SRT publisher refused");
                    AcceptDecision::Reject(code)
                }
            }
        };
        let config = ListenerConfig {
            connection: ConnectionConfig {
                latency,
                ..ConnectionConfig::default()
            },
            ..ListenerConfig::default()
        };
        let listener = SrtListener::bind(addr, config, hook).await?;
        let local_addr = listener.local_addr();
        let accept_task = tokio::spawn(accept(listener, registry.clone()));
        Ok(Self {
            registry,
            local_addr,
            accept_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a source of `flow` to publishers.
    pub(crate) fn register(
        &self,
        flow: &str,
        name: &str,
        passphrase: Option<String>,
        tx: SourceTx,
    ) {
        lock(&self.registry)
            .flows
            .entry(flow.to_owned())
            .or_default()
            .push(Slot {
                name: name.to_owned(),
                passphrase,
                tx,
                publisher: None,
            });
    }

    /// Whether a running flow of this name takes publishers here.
    pub(crate) fn has_flow(&self, flow: &str) -> bool {
        lock(&self.registry).flows.contains_key(flow)
    }

    /// Closes `flow` to publishers; connected ones end when the flow's queue closes.
    pub(crate) fn unregister(&self, flow: &str) {
        lock(&self.registry).flows.remove(flow);
    }
}

async fn accept(mut listener: SrtListener, registry: Arc<Mutex<Registry>>) {
    while let Some(connection) = listener.accept().await {
        let stream_id =
            StreamId::parse(connection.stream_id().unwrap_or_default()).unwrap_or_default();
        let id = connection.id();
        let claimed = lock(&registry).resolve(&stream_id).map(|slot| {
            slot.publisher = Some(id);
            (slot.name.clone(), slot.tx.clone())
        });
        match claimed {
            Ok((name, tx)) => {
                let flow = stream_id.resource.unwrap_or_default();
                tracing::info!(peer = %connection.peer(), %flow, source = %name, "SRT publisher connected");
                let registry = registry.clone();
                tokio::spawn(async move {
                    publish(connection, &tx).await;
                    let mut registry = lock(&registry);
                    if let Some(slot) = registry
                        .flows
                        .get_mut(&flow)
                        .and_then(|slots| slots.iter_mut().find(|s| s.name == name))
                        && slot.publisher == Some(id)
                    {
                        slot.publisher = None;
                    }
                });
            }
            // Two callers passed the hook for one source at once: the later one goes.
            Err((code, reason)) => {
                tracing::info!(peer = %connection.peer(), code, %reason, "SRT publisher closed");
                connection.close();
            }
        }
    }
}

/// Serves one publisher until it leaves, is refused, or the flow stops.
async fn publish(mut connection: SrtConnection, tx: &SourceTx) {
    let peer = connection.peer();
    if !tx.event(SourceEvent::Up { peer: Some(peer) }).await {
        return;
    }
    let event = match receive(&mut connection, tx).await {
        Ended::FlowStopped => return,
        Ended::Refused(reason) => {
            tracing::warn!(%peer, %reason, "SRT source refused");
            SourceEvent::Refused { reason }
        }
        Ended::Closed(reason) => {
            tracing::info!(%peer, %reason, "SRT source disconnected");
            SourceEvent::Down { reason }
        }
    };
    tx.event(event).await;
}

/// How a connection's stream ended.
enum Ended {
    Closed(String),
    Refused(String),
    FlowStopped,
}

async fn receive(connection: &mut SrtConnection, tx: &SourceTx) -> Ended {
    while let Some(payload) = connection.recv().await {
        if let Err(e) = TsAlignment::check_packets(&payload) {
            tx.counters.refused();
            connection.close();
            return Ended::Refused(format!(
                "SRT payload from {} is not 188-byte-aligned MPEG-TS: {e}",
                connection.peer()
            ));
        }
        let input = Input {
            arrival: Instant::now(),
            ts: payload,
            rtp: None,
        };
        if !tx.data(input) {
            connection.close();
            return Ended::FlowStopped;
        }
    }
    Ended::Closed(match connection.close_reason() {
        Some(reason) => format!("connection closed: {reason:?}"),
        None => "connection closed".to_owned(),
    })
}

/// Calls `address` and receives from it; calls again a second after any failure.
pub(crate) async fn run_caller(address: SocketAddr, config: ConnectionConfig, tx: SourceTx) {
    loop {
        let event = match stadion_srt_io::connect(address, config.clone()).await {
            Ok(mut connection) => {
                if !tx
                    .event(SourceEvent::Up {
                        peer: Some(address),
                    })
                    .await
                {
                    return;
                }
                match receive(&mut connection, &tx).await {
                    Ended::FlowStopped => return,
                    Ended::Refused(reason) => SourceEvent::Refused { reason },
                    Ended::Closed(reason) => SourceEvent::Down { reason },
                }
            }
            Err(e) => SourceEvent::Failed {
                reason: format!("calling {address}: {e}"),
            },
        };
        tracing::info!(%address, ?event, "SRT caller source ended; calling again");
        if !tx.event(event).await {
            return;
        }
        tokio::time::sleep(CALL_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn registry() -> (Registry, mpsc::Receiver<(usize, SourceEvent)>) {
        let (tx, rx) = mpsc::channel(8);
        let mut r = Registry::default();
        for (index, name) in ["main", "backup"].into_iter().enumerate() {
            r.flows.entry("ath".into()).or_default().push(Slot {
                name: name.into(),
                passphrase: Some(format!("{name}-passphrase")),
                tx: SourceTx {
                    index,
                    tx: tx.clone(),
                    counters: Default::default(),
                },
                publisher: None,
            });
        }
        (r, rx)
    }

    fn resolve(r: &mut Registry, id: &str) -> Result<String, u32> {
        r.resolve(&StreamId::parse(id).unwrap())
            .map(|s| s.name.clone())
            .map_err(|(code, _)| code)
    }

    #[test]
    fn publishers_find_their_source() {
        let (mut r, _rx) = registry();
        assert_eq!(
            resolve(&mut r, "#!::r=ath,m=publish,u=backup").unwrap(),
            "backup"
        );
        assert_eq!(resolve(&mut r, "#!::r=ath,m=publish").unwrap(), "main");
        // With main taken, an unnamed publisher gets the backup.
        r.flows.get_mut("ath").unwrap()[0].publisher = Some(1);
        assert_eq!(resolve(&mut r, "#!::r=ath,m=publish").unwrap(), "backup");
        assert_eq!(
            resolve(&mut r, "#!::r=ath,m=publish,u=main"),
            Err(reject::CONFLICT)
        );
    }

    #[test]
    fn refusals_carry_the_matching_code() {
        let (mut r, _rx) = registry();
        assert_eq!(resolve(&mut r, "ath"), Err(reject::BAD_REQUEST));
        assert_eq!(resolve(&mut r, "#!::r=ath"), Err(REJECT_BAD_MODE));
        assert_eq!(resolve(&mut r, "#!::r=ath,m=request"), Err(REJECT_BAD_MODE));
        assert_eq!(
            resolve(&mut r, "#!::r=swim,m=publish"),
            Err(reject::NOT_FOUND)
        );
        assert_eq!(
            resolve(&mut r, "#!::r=ath,m=publish,u=spare"),
            Err(reject::NOT_FOUND)
        );
    }
}
