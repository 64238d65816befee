//! Who may receive what: the receiver's stream ID, the access question the node asks on every
//! connection attempt, and the licence changes it listens to.
//!
//! The node talks to the control plane through [`ControlPort`] rather than a concrete type so
//! that a node can run beside the control plane (in-process `ControlPlane`) or far from it
//! (over its HTTP API) with the same output code.

use std::future::Future;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use stadion_control::usage::UsageRecord;
use stadion_srt::{Mode, StreamId, reject};
use tokio::sync::broadcast;
use uuid::Uuid;

/// SRT rejection code for a control plane that cannot answer (`SRT_REJX_DOWN`, HTTP 503).
pub const REJECT_DOWN: u32 = 1503;

/// A licence, as the data plane knows it: an id and whether it still admits receivers.
pub type LicenceId = Uuid;

/// What a receiver asked for in its stream ID: `#!::r=<flow>,u=<rhb>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverRequest {
    pub flow: String,
    pub rhb: String,
}

/// Why a stream ID does not name a receivable flow; callers get [`reject::BAD_REQUEST`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdProblem {
    #[error("stream ID {0:?} is not in the #!::r=<flow>,u=<rhb> form")]
    NotStructured(String),
    #[error("stream ID {0:?} names no flow (r=)")]
    NoFlow(String),
    #[error("stream ID {0:?} names no rights holder (u=)")]
    NoUser(String),
    #[error("stream ID {0:?} asks to publish; this listener only serves receivers")]
    Publish(String),
}

impl ReceiverRequest {
    /// Reads the flow and the rights holder out of a parsed stream ID.
    pub fn from_stream_id(id: &StreamId) -> Result<Self, StreamIdProblem> {
        if !id.structured {
            return Err(StreamIdProblem::NotStructured(id.raw.clone()));
        }
        if matches!(id.mode, Some(Mode::Publish | Mode::Bidirectional)) {
            return Err(StreamIdProblem::Publish(id.raw.clone()));
        }
        let flow = id
            .resource
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StreamIdProblem::NoFlow(id.raw.clone()))?;
        let rhb = id
            .user
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StreamIdProblem::NoUser(id.raw.clone()))?;
        Ok(ReceiverRequest {
            flow: flow.to_owned(),
            rhb: rhb.to_owned(),
        })
    }

    /// The stream ID a caller sends to receive `flow` as `rhb`.
    pub fn stream_id(&self) -> String {
        format!("#!::r={},u={}", self.flow, self.rhb)
    }
}

/// One access question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessQuery {
    /// The rights holder (organisation name or id).
    pub rhb: String,
    /// The flow (name or id).
    pub flow: String,
    /// The receiver's address (for pushes: the destination's).
    pub source: IpAddr,
    /// Receivers of this rights holder on this flow already connected to this node.
    pub connected: u32,
}

/// A granted request: what the node needs to admit the receiver and to cut it later.
#[derive(Debug, Clone)]
pub struct Admission {
    pub licence: LicenceId,
    /// The rights holder and the flow as the control plane identifies them.
    pub rhb_id: Uuid,
    pub flow_id: Uuid,
    /// The licence's SRT passphrase; the caller must use exactly this one.
    pub passphrase: Option<String>,
    pub encryption_required: bool,
    /// The node cuts the receiver at this instant at the latest.
    pub valid_until: DateTime<Utc>,
}

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The control plane's reason, e.g. `no_licence`, `expired`.
    pub reason: String,
    /// The SRT rejection code for the handshake (1402, 1403, 1404, ...).
    pub code: u32,
    pub licence: Option<LicenceId>,
}

/// The control plane's answer.
pub type Verdict = Result<Admission, Refused>;

/// The control plane could not answer; callers are refused with [`REJECT_DOWN`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("control plane unavailable: {0}")]
pub struct ControlUnavailable(pub String);

/// Whether a licence admits receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenceState {
    Active,
    /// Reversibly switched off; receivers go now and are refused until it is enabled again.
    Disabled,
    /// Withdrawn for good.
    Revoked,
}

impl LicenceState {
    /// Why a receiver was cut, as the usage records and logs say it; `None` while active.
    pub fn cut_reason(self) -> Option<&'static str> {
        match self {
            LicenceState::Active => None,
            LicenceState::Disabled => Some("disabled"),
            LicenceState::Revoked => Some("revoked"),
        }
    }
}

/// A licence changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenceChange {
    pub licence: LicenceId,
    pub state: LicenceState,
}

/// The control plane as the data plane sees it.
pub trait ControlPort: Send + Sync + 'static {
    /// Decides one connection attempt and records the decision (in the audit log) before
    /// answering, so every admitted receiver is on record.
    fn decide(
        &self,
        query: &AccessQuery,
    ) -> impl Future<Output = Result<Verdict, ControlUnavailable>> + Send;

    /// Licence changes, sent right after they are committed.
    fn changes(&self) -> broadcast::Receiver<LicenceChange>;

    /// Stores usage records (connects, deliveries, disconnects) for billing and reports.
    /// `Err` only while the store cannot be reached: the node keeps the batch and retries.
    /// Records the store refuses for good (e.g. their licence was deleted meanwhile) are
    /// logged and left out, so that one of them cannot hold back the others.
    fn record_usage(
        &self,
        records: &[UsageRecord],
    ) -> impl Future<Output = Result<(), ControlUnavailable>> + Send;
}

/// The passphrase the listener should hold this caller to: the licence's when the caller
/// encrypts or the licence demands it, none for a clear caller on a licence that allows that.
/// A mismatch left over (clear caller, encryption required) is refused by SRT with UNSECURE.
pub fn passphrase_for(admission: &Admission, caller_encrypts: bool) -> Option<String> {
    if caller_encrypts || admission.encryption_required {
        admission.passphrase.clone()
    } else {
        None
    }
}

/// A caller whose stream ID is unusable gets "bad request", like libsrt's access control.
pub const REJECT_BAD_STREAM_ID: u32 = reject::BAD_REQUEST;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ReceiverRequest, StreamIdProblem> {
        ReceiverRequest::from_stream_id(&StreamId::parse(s).unwrap())
    }

    #[test]
    fn reads_flow_and_user() {
        let r = parse("#!::r=ath-100m,u=rhb-one").unwrap();
        assert_eq!(r.flow, "ath-100m");
        assert_eq!(r.rhb, "rhb-one");
        assert_eq!(parse(&r.stream_id()).unwrap(), r);
        assert!(parse("#!::u=rhb,r=f,m=request").is_ok());
    }

    #[test]
    fn refuses_incomplete_or_publishing_ids() {
        assert!(matches!(
            parse("ath-100m"),
            Err(StreamIdProblem::NotStructured(_))
        ));
        assert!(matches!(
            parse("#!::u=rhb"),
            Err(StreamIdProblem::NoFlow(_))
        ));
        assert!(matches!(
            parse("#!::r=,u=rhb"),
            Err(StreamIdProblem::NoFlow(_))
        ));
        assert!(matches!(parse("#!::r=f"), Err(StreamIdProblem::NoUser(_))));
        assert!(matches!(
            parse("#!::r=f,u=x,m=publish"),
            Err(StreamIdProblem::Publish(_))
        ));
    }

    #[test]
    fn passphrase_follows_caller_and_licence() {
        let mut a = Admission {
            licence: Uuid::nil(),
            rhb_id: Uuid::nil(),
            flow_id: Uuid::nil(),
            passphrase: Some("0123456789abc".into()),
            encryption_required: false,
            valid_until: Utc::now(),
        };
        assert_eq!(passphrase_for(&a, false), None);
        assert_eq!(passphrase_for(&a, true).as_deref(), Some("0123456789abc"));
        a.encryption_required = true;
        assert_eq!(passphrase_for(&a, false).as_deref(), Some("0123456789abc"));
    }
}

/// The control plane in the same process as the node's [`ControlPort`]: decisions and usage
/// go straight to its store, licence changes come from its change channel.
#[derive(Debug, Clone)]
pub struct InProcess {
    plane: stadion_control::ControlPlane,
    changes: broadcast::Sender<LicenceChange>,
    /// Who the node is in the audit log, e.g. `live/node-1`.
    actor: String,
}

impl InProcess {
    /// Starts translating the control plane's change events (needs a tokio runtime).
    pub fn new(plane: stadion_control::ControlPlane, node: &str) -> Self {
        use stadion_control::ControlEvent;
        use stadion_control::model::LicenceState as Stored;
        let (changes, _) = broadcast::channel(1024);
        let mut events = plane.subscribe();
        let out = changes.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ControlEvent::LicenceChanged {
                        licence_id,
                        new_state,
                        ..
                    }) => {
                        let state = match new_state {
                            Stored::Active => LicenceState::Active,
                            Stored::Disabled => LicenceState::Disabled,
                            Stored::Revoked => LicenceState::Revoked,
                        };
                        let _ = out.send(LicenceChange {
                            licence: licence_id,
                            state,
                        });
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::error!(missed, "control plane changes lost by the live node");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        InProcess {
            plane,
            changes,
            actor: format!("live/{node}"),
        }
    }
}

impl ControlPort for InProcess {
    async fn decide(&self, query: &AccessQuery) -> Result<Verdict, ControlUnavailable> {
        let request = stadion_control::AccessRequest {
            org: query.rhb.clone(),
            flow: query.flow.clone(),
            source: query.source,
            connected: query.connected,
        };
        let decision = self
            .plane
            .decide(&self.actor, &request)
            .await
            .map_err(|e| ControlUnavailable(e.to_string()))?;
        Ok(match decision {
            Ok(grant) => Ok(Admission {
                licence: grant.licence_id,
                rhb_id: grant.org_id,
                flow_id: grant.flow_id,
                passphrase: grant.passphrase.map(|p| p.expose().to_owned()),
                encryption_required: grant.encryption_required,
                valid_until: grant.valid_until,
            }),
            Err(denial) => Err(Refused {
                reason: denial.reason.as_str().to_owned(),
                code: u32::from(denial.srt_reject_code),
                licence: denial.licence_id,
            }),
        })
    }

    fn changes(&self) -> broadcast::Receiver<LicenceChange> {
        self.changes.subscribe()
    }

    /// Usage goes to the store's sessions and hourly usage (`/api/v1/sessions`,
    /// `/api/v1/usage`); the audit log keeps the access decisions only.
    async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), ControlUnavailable> {
        use stadion_control::StoreError;
        let refused = |field: &str, message: &str, records: &[UsageRecord]| {
            tracing::error!(
                ?records,
                field,
                message,
                "usage refused by the store; left out"
            );
        };
        match self.plane.record_usage(records).await {
            Ok(()) => Ok(()),
            Err(StoreError::Invalid { field, message }) if records.len() == 1 => {
                refused(&field, &message, records);
                Ok(())
            }
            // The batch is one transaction: store the records one by one to keep the good
            // ones. (Should the store go away halfway, the node retries the whole batch and
            // the deliveries stored before count twice; both failures at once are rare.)
            Err(StoreError::Invalid { .. }) => {
                for record in records {
                    let one = std::slice::from_ref(record);
                    match self.plane.record_usage(one).await {
                        Ok(()) => {}
                        Err(StoreError::Invalid { field, message }) => {
                            refused(&field, &message, one);
                        }
                        Err(e) => return Err(ControlUnavailable(e.to_string())),
                    }
                }
                Ok(())
            }
            Err(e) => Err(ControlUnavailable(e.to_string())),
        }
    }
}
