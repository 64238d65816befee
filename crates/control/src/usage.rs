//! Accounting: receiver sessions (who was connected to which flow, from where, when, why it
//! ended) and what was delivered to each rights holder per flow, for billing and reports.
//!
//! The data plane reports [`UsageRecord`]s in batches through
//! [`crate::ControlPlane::record_usage`]: one `connected` per session, `delivered` deltas every
//! few seconds (so a crashed node loses at most one interval), one `disconnected` with the
//! session's totals. Deliveries are summed per rights holder, flow and hour.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// How a receiver reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The broadcaster called the node's SRT listener.
    SrtListener,
    /// The node called the broadcaster's SRT listener (a push output).
    SrtPush,
    /// The node sends plain UDP to the broadcaster (a push output).
    UdpPush,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::SrtListener => "srt_listener",
            SessionKind::SrtPush => "srt_push",
            SessionKind::UdpPush => "udp_push",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "srt_listener" => Some(SessionKind::SrtListener),
            "srt_push" => Some(SessionKind::SrtPush),
            "udp_push" => Some(SessionKind::UdpPush),
            _ => None,
        }
    }
}

/// What happened in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum UsageEvent {
    /// The receiver was admitted and connected.
    Connected,
    /// Delivered since the previous record of this session.
    Delivered { packets: u64, bytes: u64 },
    /// The session ended; `packets` and `bytes` are its totals (whatever the `delivered`
    /// records did not yet count is added).
    Disconnected {
        /// Why, e.g. `peer_closed`, `timeout`, `disabled`, `revoked`, `expired`,
        /// `node_shutdown` (at most 128 characters).
        reason: String,
        packets: u64,
        bytes: u64,
    },
}

/// One usage report about one session. Every record carries the session's identity, so a
/// record arriving without its `connected` (e.g. lost in a failed batch) still counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// Unique per connection, chosen by the data plane.
    pub session: Uuid,
    /// The licence the receiver was admitted on (its `Grant::licence_id`).
    pub licence_id: Uuid,
    pub kind: SessionKind,
    /// The receiver's address (for pushes: the destination's).
    #[schema(value_type = String, example = "203.0.113.7:40000")]
    pub peer: SocketAddr,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: UsageEvent,
}

/// One receiver session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiverSession {
    pub id: Uuid,
    pub licence_id: Uuid,
    pub org_id: Uuid,
    pub flow_id: Uuid,
    pub kind: SessionKind,
    pub peer: String,
    pub connected_at: DateTime<Utc>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub disconnect_reason: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// Delivered volume of one rights holder on one flow over the report's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    pub org_id: Uuid,
    pub org_name: String,
    pub flow_id: Uuid,
    pub flow_name: String,
    pub packets: u64,
    pub bytes: u64,
    /// Sessions that started in the period.
    pub sessions: u64,
    /// Sessions connected now.
    pub open_sessions: u64,
}

/// Which usage to report. Deliveries are kept per hour, so `since` and `until` select whole
/// hours: those starting in `[since, until)` after rounding `since` down to the hour.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Which sessions to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub licence_id: Option<Uuid>,
    /// Only connected (`true`) or only ended (`false`) sessions.
    pub open: Option<bool>,
    pub limit: u32,
}

/// The start of the hour `t` falls in, in the store's microseconds.
pub(crate) fn hour_of(t: DateTime<Utc>) -> i64 {
    const HOUR_US: i64 = 3_600_000_000;
    t.timestamp_micros().div_euclid(HOUR_US) * HOUR_US
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn records_read_the_data_planes_json() {
        let r: UsageRecord = serde_json::from_str(
            r#"{"session":"6f1c1d6e-7a43-4d55-8f43-2b1a5e9c0a11","licence_id":"0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a22",
                "kind":"srt_listener","peer":"203.0.113.7:40000","at":"2026-07-24T10:00:00Z",
                "event":"delivered","packets":7,"bytes":9212}"#,
        )
        .unwrap();
        assert_eq!(
            r.event,
            UsageEvent::Delivered {
                packets: 7,
                bytes: 9212
            }
        );
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["event"], "delivered");
        assert!(serde_json::from_str::<UsageRecord>(r#"{"event":"exploded"}"#).is_err());
    }

    #[test]
    fn hours_round_down() {
        let t = Utc.with_ymd_and_hms(2026, 7, 24, 10, 59, 59).unwrap();
        assert_eq!(
            hour_of(t),
            Utc.with_ymd_and_hms(2026, 7, 24, 10, 0, 0)
                .unwrap()
                .timestamp_micros()
        );
        let before_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 30, 0).unwrap();
        assert_eq!(hour_of(before_epoch), -3_600_000_000);
    }
}
