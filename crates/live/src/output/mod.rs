//! Outputs: what the node sends to broadcasters, what it counts for billing, what it shows.
//!
//! Receivers that call in are served by [`crate::node`]; this module holds the parts every
//! output shares: cutting a flow's chunks into SRT-sized payloads, the usage records the node
//! stores for billing, and the status it shows operators.

pub mod api;
pub mod push;
mod session;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
pub use stadion_control::usage::SessionKind;
use stadion_control::usage::{UsageEvent, UsageRecord};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::access::LicenceId;

pub(crate) use session::{Session, SessionHandle};

/// TS packets per SRT/UDP payload: 7 × 188 = 1316 bytes, the size every SRT and UDP
/// MPEG-TS tool uses, so that one payload fits an Ethernet frame with SRT's header.
pub const TS_PER_PAYLOAD: usize = 7;
/// Bytes in one full payload.
pub const PAYLOAD: usize = TS_PER_PAYLOAD * 188;

/// Cuts a chunk of whole TS packets into payloads of at most [`PAYLOAD`] bytes; the slices
/// share the chunk's buffer.
pub fn payloads(chunk: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..chunk.len())
        .step_by(PAYLOAD)
        .map(move |start| chunk.slice(start..(start + PAYLOAD).min(chunk.len())))
}

/// Identifies one delivery session (one connection) in the usage records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionKey {
    /// Unique per connection.
    pub session: Uuid,
    pub licence: LicenceId,
    pub rhb: String,
    pub rhb_id: Uuid,
    pub flow: String,
    pub flow_id: Uuid,
    pub peer: SocketAddr,
    pub kind: SessionKind,
}

/// The node's usage records on their way to the store: one `Connected` per session,
/// `Delivered` deltas every usage interval while it runs (so a crashed node loses at most one
/// interval) and one `Disconnected` with its totals. A writer task drains the queue in batches
/// (see [`crate::node`]), so reporting never waits for the store.
#[derive(Debug, Clone)]
pub(crate) struct UsageLog(mpsc::UnboundedSender<UsageRecord>);

impl UsageLog {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<UsageRecord>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (UsageLog(tx), rx)
    }

    fn send(&self, key: &SessionKey, at: DateTime<Utc>, event: UsageEvent) {
        // The writer outlives every session; a send fails only while the node shuts down.
        let _ = self.0.send(UsageRecord {
            session: key.session,
            licence_id: key.licence,
            kind: key.kind,
            peer: key.peer,
            at,
            event,
        });
    }

    pub fn connected(&self, key: &SessionKey, at: DateTime<Utc>) {
        self.send(key, at, UsageEvent::Connected);
    }

    /// Reports what the session got since its last report, if anything.
    pub fn delivered(&self, key: &SessionKey, counters: &mut Counters) {
        if let Some((packets, bytes)) = counters.take_delta() {
            self.send(key, Utc::now(), UsageEvent::Delivered { packets, bytes });
        }
    }

    /// Ends the session with its totals (the store adds what no delivery counted yet).
    pub fn disconnected(&self, key: &SessionKey, counters: &Counters, reason: &str) {
        let event = UsageEvent::Disconnected {
            reason: reason.to_owned(),
            packets: counters.packets,
            bytes: counters.bytes,
        };
        self.send(key, Utc::now(), event);
    }
}

/// Payload counters of one session, with the part already reported.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub packets: u64,
    pub bytes: u64,
    reported_packets: u64,
    reported_bytes: u64,
}

impl Counters {
    pub fn add(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }

    /// What was delivered since the last call, or `None` when nothing was.
    pub fn take_delta(&mut self) -> Option<(u64, u64)> {
        let delta = (
            self.packets - self.reported_packets,
            self.bytes - self.reported_bytes,
        );
        self.reported_packets = self.packets;
        self.reported_bytes = self.bytes;
        (delta.0 > 0).then_some(delta)
    }
}

/// SRT statistics of one receiver, as the status shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SrtStatus {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_retransmitted: u64,
    /// Packets the receiver reported lost (NAKed).
    pub packets_send_loss: u64,
    /// Packets dropped unacknowledged because they were too late to be of use.
    pub packets_send_dropped: u64,
    pub send_buffer_packets: usize,
    pub rtt_ms: f64,
    pub send_rate_bps: u64,
    pub latency_ms: u64,
}

impl From<stadion_srt::Stats> for SrtStatus {
    fn from(s: stadion_srt::Stats) -> Self {
        SrtStatus {
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_retransmitted: s.packets_retransmitted,
            packets_send_loss: s.packets_send_loss,
            packets_send_dropped: s.packets_send_dropped,
            send_buffer_packets: s.send_buffer_packets,
            rtt_ms: s.rtt.as_secs_f64() * 1e3,
            send_rate_bps: s.send_rate_bps,
            latency_ms: u64::try_from(s.latency.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// One receiver in the status.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverStatus {
    pub key: SessionKey,
    pub connected_at: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub packets: u64,
    pub bytes: u64,
    /// `None` when the connection ended while the status was gathered.
    pub srt: Option<SrtStatus>,
}

/// One flow's outputs in the status.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOutputStatus {
    pub flow: String,
    /// Bytes the flow's bus carried since the flow started.
    pub bytes_in: u64,
    /// Chunks the node's output loop was too slow for (lost for every receiver of the flow).
    pub chunks_dropped: u64,
    pub receivers: Vec<ReceiverStatus>,
}

/// What the node's outputs are doing now.
#[derive(Debug, Clone, Serialize)]
pub struct OutputStatus {
    pub listen: SocketAddr,
    pub flows: Vec<FlowOutputStatus>,
}

/// How long the gathering of SRT statistics for a status may take.
pub(crate) const STATS_TIMEOUT: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_slices_of_seven_packets() {
        let chunk = Bytes::from(vec![0x47u8; 188 * 16]);
        let parts: Vec<_> = payloads(&chunk).collect();
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            [1316, 1316, 376]
        );
        assert_eq!(parts[1].as_ptr(), chunk[1316..].as_ptr());
        assert_eq!(payloads(&Bytes::new()).count(), 0);
    }

    #[test]
    fn counters_report_deltas_once() {
        let mut c = Counters::default();
        assert_eq!(c.take_delta(), None);
        c.add(3, 3948);
        c.add(1, 1316);
        assert_eq!(c.take_delta(), Some((4, 5264)));
        assert_eq!(c.take_delta(), None);
        c.add(1, 188);
        assert_eq!(c.take_delta(), Some((1, 188)));
        assert_eq!((c.packets, c.bytes), (5, 5452));
    }
}
