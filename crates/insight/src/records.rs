//! The records stadion keeps, as its HTTP API answers them, decoded into the fields the
//! warehouse needs. Fields the warehouse does not need are skipped unread: among them every
//! secret the API may show (licence and source passphrases), so none can reach a table.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use uuid::Uuid;

use crate::InsightError;

/// Decodes the answer to `GET path`; a bad field is named by its path inside the answer.
pub fn decode<T: DeserializeOwned>(
    path: &str,
    answer: serde_json::Value,
) -> Result<T, InsightError> {
    serde_path_to_error::deserialize(answer).map_err(|e| InsightError::Record {
        path: path.to_owned(),
        field: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

/// `GET /api/v1/orgs`
#[derive(Debug, Clone, Deserialize)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    /// `host` or `rights_holder`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/flows`
#[derive(Debug, Clone, Deserialize)]
pub struct Flow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub venue: String,
    pub event_code: String,
    pub created_at: DateTime<Utc>,
    /// Shown to host roles only.
    #[serde(default)]
    pub transport: Option<Transport>,
}

/// The shape of a flow's transport; the sources themselves (addresses, passphrases) are
/// skipped, only their number is kept.
#[derive(Debug, Clone, Deserialize)]
pub struct Transport {
    pub redundancy: String,
    pub sources: Vec<IgnoredAny>,
}

/// `GET /api/v1/licences` (the passphrase is not read).
#[derive(Debug, Clone, Deserialize)]
pub struct Licence {
    pub id: Uuid,
    pub org_id: Uuid,
    pub flow_id: Uuid,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub max_concurrent_receivers: u32,
    pub allowed_networks: Vec<String>,
    pub encryption_required: bool,
    /// `active`, `disabled` or `revoked`.
    pub state: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/sessions`: one receiver connection.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub id: Uuid,
    pub licence_id: Uuid,
    pub org_id: Uuid,
    pub flow_id: Uuid,
    /// `srt_listener`, `srt_push` or `udp_push`.
    pub kind: String,
    pub peer: String,
    pub connected_at: DateTime<Utc>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub disconnect_reason: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// One row of `GET /api/v1/usage` (for one hour when asked for one).
#[derive(Debug, Clone, Deserialize)]
pub struct UsageRow {
    pub org_id: Uuid,
    pub flow_id: Uuid,
    pub packets: u64,
    pub bytes: u64,
    /// Sessions that started in the period asked for.
    pub sessions: u64,
}

/// What was delivered in one hour.
#[derive(Debug, Clone)]
pub struct HourUsage {
    pub hour: DateTime<Utc>,
    pub rows: Vec<UsageRow>,
}

/// One line of the audit log (`GET /api/v1/audit`).
#[derive(Debug, Clone, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub licence_id: Option<Uuid>,
    /// `done` for changes, `allow` / `deny` for access decisions.
    pub decision: String,
    pub reason: String,
}

/// One page of `GET /api/v1/audit`.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_after: Option<i64>,
}

/// The audit action of an access decision; every other action is a change.
pub const DECIDE_ACTION: &str = "access.decide";

/// Everything loaded for one period, as of one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the records were read; sessions still open are counted up to here.
    pub as_of: DateTime<Utc>,
    /// The period the records cover: sessions overlapping it, usage of its hours, audit
    /// entries in it.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub orgs: Vec<Org>,
    pub flows: Vec<Flow>,
    pub licences: Vec<Licence>,
    pub sessions: Vec<Session>,
    pub usage: Vec<HourUsage>,
    pub audit: Vec<AuditEntry>,
    /// What could not be loaded completely, for the user to read.
    pub notes: Vec<String>,
}

/// What an access decision's audit entry says beyond allow/deny. The control plane writes
/// `granted to <source> (<n> connected...)` or `<refusal>: <source> (<n> connected...)`;
/// parts that do not follow that form stay `None` (the full text is kept beside them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionDetail {
    /// The refusal, e.g. `source_network_not_allowed`; `None` for a grant.
    pub refusal: Option<String>,
    /// The receiver's address.
    pub source: Option<String>,
    /// Receivers of the licence already connected when it was asked.
    pub connected: Option<i64>,
}

impl DecisionDetail {
    pub fn parse(decision: &str, reason: &str) -> Self {
        let (refusal, rest) = if decision == "allow" {
            (None, reason.strip_prefix("granted to "))
        } else {
            match reason.split_once(": ") {
                Some((code, rest))
                    if !code.is_empty()
                        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
                {
                    (Some(code.to_owned()), Some(rest))
                }
                _ => (None, None),
            }
        };
        let Some(rest) = rest else {
            return DecisionDetail {
                refusal,
                ..Default::default()
            };
        };
        let (source, count) = match rest.split_once(" (") {
            Some((source, count)) => (source, Some(count)),
            None => (rest, None),
        };
        let connected = count.and_then(|c| {
            let digits: String = c.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        });
        DecisionDetail {
            refusal,
            source: (!source.is_empty()).then(|| source.to_owned()),
            connected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(connected_at: &str) -> serde_json::Value {
        json!({"id": "6f1c1d6e-7a43-4d55-8f43-2b1a5e9c0a11", "licence_id": "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a22",
               "org_id": "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a23", "flow_id": "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a24",
               "kind": "srt_listener", "peer": "203.0.113.7:40000", "connected_at": connected_at,
               "disconnected_at": null, "disconnect_reason": null, "packets": 7, "bytes": 9212})
    }

    #[test]
    fn a_malformed_record_is_named_by_its_field() {
        let answer = json!([session("2026-07-24T10:00:00Z"), session("yesterday")]);
        let err = decode::<Vec<Session>>("/api/v1/sessions?limit=1000", answer).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, InsightError::Record { field, .. } if field == "[1].connected_at"),
            "{text}"
        );
        assert!(
            text.starts_with("GET /api/v1/sessions?limit=1000: field `[1].connected_at`: "),
            "{text}"
        );

        let mut missing = session("2026-07-24T10:00:00Z");
        missing.as_object_mut().unwrap().remove("bytes");
        let err = decode::<Vec<Session>>("/api/v1/sessions", json!([missing])).unwrap_err();
        assert!(err.to_string().contains("missing field `bytes`"), "{err}");

        let page = json!({"entries": [{"seq": "one"}], "next_after": null});
        let err = decode::<AuditPage>("/api/v1/audit", page).unwrap_err();
        assert!(err.to_string().contains("field `entries[0].seq`"), "{err}");
    }

    #[test]
    fn secrets_are_not_read() {
        let flow: Flow = decode(
            "/api/v1/flows/x",
            json!({"id": "0b7e5f1e-1c1d-4a3e-9a5b-8e3c2d1f0a24", "name": "final", "description": "",
                   "venue": "SdF", "event_code": "ATH", "created_at": "2026-07-24T08:00:00Z",
                   "transport": {"redundancy": "none", "sources": [{"kind": "srt_listener", "name": "main",
                   "passphrase": "venue-secret-0001"}]}}),
        )
        .unwrap();
        assert!(!format!("{flow:?}").contains("venue-secret"));
        assert_eq!(flow.transport.unwrap().sources.len(), 1);
    }

    #[test]
    fn decision_reasons_are_split() {
        assert_eq!(
            DecisionDetail::parse("allow", "granted to 203.0.113.7 (0 connected)"),
            DecisionDetail {
                refusal: None,
                source: Some("203.0.113.7".into()),
                connected: Some(0)
            }
        );
        assert_eq!(
            DecisionDetail::parse(
                "deny",
                "concurrency_exceeded: 2001:db8::1 (2 connected, 1 at other nodes)"
            ),
            DecisionDetail {
                refusal: Some("concurrency_exceeded".into()),
                source: Some("2001:db8::1".into()),
                connected: Some(2)
            }
        );
        // Text of another form keeps what can be told and no more.
        assert_eq!(
            DecisionDetail::parse("deny", "store unreachable"),
            DecisionDetail::default()
        );
        assert_eq!(
            DecisionDetail::parse("allow", ""),
            DecisionDetail::default()
        );
    }
}
