//! Where a flow's packets come from: an encoder calling the node's ingest SRT listener, the
//! node calling a venue's SRT listener, or MPEG-TS over UDP/RTP (unicast or multicast).
//!
//! Every source runs as its own task that checks each payload is 188-byte-aligned MPEG-TS and
//! hands it, with its arrival time, to the flow's runtime ([`crate::flow`]). A source that
//! carries anything else is refused: its payloads never reach the flow, and the reason is
//! reported in the flow's status and logged once per change.

pub mod net;
pub mod srt;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// One source of a flow, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Unique within the flow, e.g. `main` and `backup`. An encoder calling the ingest listener
    /// names it with `u=` in its stream ID when the flow has two listener sources.
    pub name: String,
    #[serde(flatten)]
    pub kind: SourceKind,
}

/// How packets reach the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// A venue encoder calls the node's ingest SRT listener with the stream ID
    /// `#!::r=<flow>,m=publish[,u=<source>]` and this passphrase.
    SrtListener {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
    },
    /// The node calls a venue's SRT listener and receives from it; it calls again after a
    /// failure.
    SrtCaller {
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
        /// SRT receive latency; 120 ms when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        latency_ms: Option<u64>,
    },
    /// MPEG-TS datagrams sent to `address` (a multicast group is joined on `interface`).
    /// TS in RTP is accepted too: the RTP header is stripped.
    Udp {
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<Ipv4Addr>,
    },
    /// MPEG-TS in RTP (RFC 2250) sent to `address`; needed for 2022-7 merge, which works by
    /// RTP sequence number. Bare TS datagrams are refused.
    Rtp {
        address: SocketAddr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<Ipv4Addr>,
    },
}

impl SourceKind {
    /// Short name for status and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::SrtListener { .. } => "srt_listener",
            Self::SrtCaller { .. } => "srt_caller",
            Self::Udp { .. } => "udp",
            Self::Rtp { .. } => "rtp",
        }
    }
}

/// What a source task tells its flow.
#[derive(Debug)]
pub(crate) enum SourceEvent {
    /// Whole TS packets (and, for RTP sources, the RTP datagram they came in).
    Data(Input),
    /// A peer connected (SRT) or the socket is ready (UDP): `peer` when there is one.
    Up { peer: Option<SocketAddr> },
    /// The peer went away; the source waits for (or calls) the next one.
    Down { reason: String },
    /// The source sent something other than 188-byte-aligned MPEG-TS.
    Refused { reason: String },
    /// The source cannot run (socket error, connection refused); retried where it makes sense.
    Failed { reason: String },
}

/// One payload of a source.
#[derive(Debug)]
pub(crate) struct Input {
    pub arrival: Instant,
    /// Whole TS packets.
    pub ts: Bytes,
    /// The RTP datagram `ts` is the payload of (RTP sources only).
    pub rtp: Option<Bytes>,
}

/// The sending side a source task holds: events carry the source's index in its flow.
#[derive(Debug, Clone)]
pub(crate) struct SourceTx {
    pub index: usize,
    pub tx: mpsc::Sender<(usize, SourceEvent)>,
    pub counters: Arc<SourceCounters>,
}

/// Counters a source task keeps beside its events.
#[derive(Debug, Default)]
pub(crate) struct SourceCounters {
    /// Payloads dropped because the flow's queue was full.
    pub queue_drops: AtomicU64,
    /// Payloads refused as not 188-byte-aligned MPEG-TS.
    pub refused: AtomicU64,
}

impl SourceCounters {
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }
}

impl SourceTx {
    /// Sends an event; data that does not fit the flow's queue is dropped (the flow runtime
    /// counts the gap through its monitors) rather than blocking the socket.
    pub fn data(&self, input: Input) -> bool {
        match self.tx.try_send((self.index, SourceEvent::Data(input))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Sends a state change; waits for room so that none is lost. False once the flow stopped.
    pub async fn event(&self, event: SourceEvent) -> bool {
        self.tx.send((self.index, event)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_from_json() {
        let c: Vec<SourceConfig> = serde_json::from_str(
            r#"[{"name":"main","kind":"srt_listener","passphrase":"venue-secret-1"},
                {"name":"backup","kind":"rtp","address":"239.1.1.1:5000","interface":"10.0.0.2"},
                {"name":"pull","kind":"srt_caller","address":"10.1.1.1:9000","latency_ms":200}]"#,
        )
        .unwrap();
        assert_eq!(c[0].kind.label(), "srt_listener");
        assert_eq!(
            c[1].kind,
            SourceKind::Rtp {
                address: "239.1.1.1:5000".parse().unwrap(),
                interface: Some(Ipv4Addr::new(10, 0, 0, 2)),
            }
        );
        let back: Vec<SourceConfig> =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<SourceConfig>(r#"{"name":"x","kind":"hls"}"#).is_err());
    }
}
