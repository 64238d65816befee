//! [`ControlPlane`]: the store plus what lives beside it in memory — the change channel the
//! data plane listens to, the verified-token cache and the decision-log writer.

use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{self, TokenSecret, VerifiedCache};
use crate::decision::{self, Decision, Denial, Grant, Refusal, Terms};
use crate::model::{Flow, Licence, LicenceState, OrgKind, Role, TokenInfo};
use crate::store::{
    Actor, DecisionRow, FlowUpdate, NewAudit, NewLicence, NewOutput, Scope, Store, StoreError,
};
use crate::transport::{FlowSetup, PushOutput, Transport};
use crate::usage::UsageRecord;

/// A change the live data plane must react to (e.g. cut receivers of a disabled licence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlEvent {
    /// A licence was created or changed state; re-check every session on it.
    LicenceChanged {
        licence_id: Uuid,
        rhb_org: Uuid,
        flow: Uuid,
        new_state: LicenceState,
    },
    /// An active licence's validity window ended (sent at `valid_until`, within milliseconds):
    /// cut its receivers.
    LicenceExpired {
        licence_id: Uuid,
        rhb_org: Uuid,
        flow: Uuid,
        valid_until: DateTime<Utc>,
    },
    /// A flow was created, deleted, or its transport, description or push outputs changed:
    /// reload it with [`ControlPlane::flow_setup`] (not found: it was deleted).
    FlowChanged { flow_id: Uuid },
    /// An API token was revoked.
    TokenRevoked { token_id: String },
}

/// One access question, as a data plane asks it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// The rights holder: organisation name or id (e.g. from the SRT stream id).
    pub org: String,
    /// The flow: name or id.
    pub flow: String,
    /// The receiver's source address.
    #[schema(value_type = String, example = "203.0.113.7")]
    pub source: IpAddr,
    /// Receivers of this licence already connected.
    #[serde(default)]
    pub connected: u32,
}

/// The authenticated caller of the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Principal {
    pub token_id: String,
    pub user_id: Uuid,
    pub user_name: String,
    pub org_id: Uuid,
    pub org_kind: OrgKind,
    pub role: Role,
}

impl Principal {
    /// RHB viewers see their own organisation's rows only.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::RhbViewer => Scope::Org(self.org_id),
            Role::HostAdmin | Role::HostOperator => Scope::All,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor(format!("user/{} token/{}", self.user_name, self.token_id))
    }

    /// Passphrases are for host admins and the licence's own rights holder.
    pub fn may_read_passphrase(&self, licence: &Licence) -> bool {
        match self.role {
            Role::HostAdmin => true,
            Role::HostOperator => false,
            Role::RhbViewer => licence.org_id == self.org_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is unknown, wrong or revoked")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct AuditJob {
    entry: NewAudit,
    done: oneshot::Sender<bool>,
}

struct Inner {
    store: Store,
    events: broadcast::Sender<ControlEvent>,
    verified: VerifiedCache,
    decision_log: mpsc::Sender<AuditJob>,
    /// Wakes the expiry watcher when a licence changes (its next deadline may be sooner).
    expiry_wake: Arc<Notify>,
}

/// The control plane as a value: clone it freely (it is an `Arc`), hold it in the data plane to
/// call [`ControlPlane::decide`] in-process, give it to [`crate::api::router`] to serve HTTP.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("backend", &self.inner.store.backend())
            .finish()
    }
}

/// Most decisions one log transaction takes.
const DECISION_BATCH: usize = 512;

impl ControlPlane {
    /// Opens the store at `url` and starts the decision-log writer (needs a Tokio runtime).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self::new(Store::open(url).await?))
    }

    /// Wraps an open store; spawns the decision-log writer on the current Tokio runtime.
    pub fn new(store: Store) -> Self {
        let (events, _) = broadcast::channel(1024);
        let (decision_log, jobs) = mpsc::channel(4096);
        tokio::spawn(decision_log_writer(store.clone(), jobs));
        let expiry_wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            store,
            events,
            verified: VerifiedCache::default(),
            decision_log,
            expiry_wake: expiry_wake.clone(),
        });
        tokio::spawn(expiry_watcher(Arc::downgrade(&inner), expiry_wake));
        ControlPlane { inner }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Subscribes to the changes a data plane acts on: licence state changes and expiries (cut
    /// receivers within 1 s), flow configuration changes, token revocations. Events are sent
    /// right after the change commits, in this process; a receiver that lags more than 1024
    /// events gets `RecvError::Lagged` and should re-read what it runs.
    pub fn subscribe(&self) -> broadcast::Receiver<ControlEvent> {
        self.inner.events.subscribe()
    }

    fn publish(&self, event: ControlEvent) {
        // No subscriber is fine: nothing live to cut.
        let _ = self.inner.events.send(event);
    }

    /// First start: creates the host organisation, an `admin` user and a host-admin token.
    /// Returns the token when one was minted here (to be shown once); with `admin_token`
    /// given, that text becomes the token. Does nothing when a host organisation exists.
    pub async fn bootstrap(
        &self,
        host_name: &str,
        admin_token: Option<String>,
    ) -> Result<Option<TokenSecret>, StoreError> {
        if self.store().host_org().await?.is_some() {
            return Ok(None);
        }
        let system = Actor("system/bootstrap".into());
        let org = self
            .store()
            .create_org(&system, host_name, OrgKind::Host)
            .await?;
        let user = self
            .store()
            .create_user(&system, org.id, "admin", None)
            .await?;
        let (id, secret) = match admin_token {
            Some(text) => TokenSecret::from_text(text).map_err(|message| StoreError::Invalid {
                field: "STADION_ADMIN_TOKEN".into(),
                message,
            })?,
            None => TokenSecret::generate(),
        };
        self.store_token(
            &system,
            id,
            user.id,
            Role::HostAdmin,
            "bootstrap admin".into(),
            &secret,
        )
        .await?;
        Ok(Some(secret))
    }

    async fn store_token(
        &self,
        actor: &Actor,
        id: String,
        user_id: Uuid,
        role: Role,
        label: String,
        secret: &TokenSecret,
    ) -> Result<TokenInfo, StoreError> {
        let text = TokenSecret::from_text(secret.expose().to_owned())
            .map_err(|message| StoreError::Invalid {
                field: "token".into(),
                message,
            })?
            .1;
        // argon2 is deliberately slow: keep it off the async workers.
        let hash = tokio::task::spawn_blocking(move || auth::hash(&text))
            .await
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store()
            .create_token(actor, id, user_id, role, label, hash)
            .await
    }

    /// Mints a token for a user; the clear text is returned once and never stored.
    pub async fn create_token(
        &self,
        actor: &Actor,
        user_id: Uuid,
        role: Role,
        label: String,
    ) -> Result<(TokenInfo, TokenSecret), StoreError> {
        let (id, secret) = TokenSecret::generate();
        let info = self
            .store_token(actor, id, user_id, role, label, &secret)
            .await?;
        Ok((info, secret))
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<TokenInfo, StoreError> {
        let info = self.store().revoke_token(actor, id).await?;
        self.inner.verified.forget(id);
        self.publish(ControlEvent::TokenRevoked {
            token_id: info.id.clone(),
        });
        Ok(info)
    }

    /// Checks a bearer token. The token row is read every time (revocation is immediate);
    /// argon2 runs only when this exact token was not verified in the last minutes.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let id = auth::lookup_id(token);
        let row = self
            .store()
            .token_row(&id)
            .await?
            .ok_or(AuthError::Invalid)?;
        if row.info.revoked_at.is_some() {
            return Err(AuthError::Invalid);
        }
        if !self.inner.verified.is_verified(&id, token) {
            let (presented, hash) = (token.to_owned(), row.secret_hash.clone());
            let ok = tokio::task::spawn_blocking(move || auth::verify(&presented, &hash))
                .await
                .unwrap_or(false);
            if !ok {
                return Err(AuthError::Invalid);
            }
            self.inner.verified.remember(&id, token);
        }
        Ok(Principal {
            token_id: row.info.id,
            user_id: row.info.user_id,
            user_name: row.user_name,
            org_id: row.info.org_id,
            org_kind: row.org_kind,
            role: row.info.role,
        })
    }

    pub async fn create_licence(
        &self,
        actor: &Actor,
        new: NewLicence,
    ) -> Result<Licence, StoreError> {
        let l = self.store().create_licence(actor, new).await?;
        self.publish_licence(&l);
        Ok(l)
    }

    /// Changes a licence's state and tells the data plane at once.
    pub async fn set_licence_state(
        &self,
        actor: &Actor,
        id: Uuid,
        target: LicenceState,
        reason: String,
    ) -> Result<Licence, StoreError> {
        let (l, changed) = self
            .store()
            .set_licence_state(actor, id, target, reason)
            .await?;
        if changed {
            self.publish_licence(&l);
        }
        Ok(l)
    }

    fn publish_licence(&self, l: &Licence) {
        self.inner.expiry_wake.notify_one();
        self.publish(ControlEvent::LicenceChanged {
            licence_id: l.id,
            rhb_org: l.org_id,
            flow: l.flow_id,
            new_state: l.state,
        });
    }

    // ---- flows, outputs and accounting for the data plane -----------------------------------

    /// Every flow with its transport (passphrases included) and push outputs: what a data
    /// plane runs. Read it at start; re-read one flow on [`ControlEvent::FlowChanged`].
    pub async fn flow_setups(&self) -> Result<Vec<FlowSetup>, StoreError> {
        self.store().flow_setups().await
    }

    /// One flow, by id or name, with its transport and push outputs.
    pub async fn flow_setup(&self, id_or_name: &str) -> Result<FlowSetup, StoreError> {
        self.store().flow_setup(id_or_name).await
    }

    /// Creates a flow (with its transport, when given).
    pub async fn create_flow(&self, actor: &Actor, flow: Flow) -> Result<Flow, StoreError> {
        let flow = self.store().create_flow(actor, flow).await?;
        self.publish(ControlEvent::FlowChanged { flow_id: flow.id });
        Ok(flow)
    }

    pub async fn update_flow(
        &self,
        actor: &Actor,
        id: Uuid,
        update: FlowUpdate,
    ) -> Result<Flow, StoreError> {
        let flow = self.store().update_flow(actor, id, update).await?;
        self.publish(ControlEvent::FlowChanged { flow_id: id });
        Ok(flow)
    }

    /// Replaces a flow's sources and redundancy.
    pub async fn set_flow_transport(
        &self,
        actor: &Actor,
        id: Uuid,
        transport: Transport,
    ) -> Result<Flow, StoreError> {
        let flow = self.store().set_transport(actor, id, transport).await?;
        self.publish(ControlEvent::FlowChanged { flow_id: id });
        Ok(flow)
    }

    pub async fn delete_flow(&self, actor: &Actor, id: Uuid) -> Result<Flow, StoreError> {
        let flow = self.store().delete_flow(actor, id).await?;
        self.publish(ControlEvent::FlowChanged { flow_id: id });
        Ok(flow)
    }

    pub async fn create_output(
        &self,
        actor: &Actor,
        new: NewOutput,
    ) -> Result<PushOutput, StoreError> {
        let out = self.store().create_output(actor, new).await?;
        self.publish(ControlEvent::FlowChanged {
            flow_id: out.flow_id,
        });
        Ok(out)
    }

    pub async fn delete_output(&self, actor: &Actor, id: Uuid) -> Result<PushOutput, StoreError> {
        let out = self.store().delete_output(actor, id).await?;
        self.publish(ControlEvent::FlowChanged {
            flow_id: out.flow_id,
        });
        Ok(out)
    }

    /// Stores a batch of usage records (connects, deliveries, disconnects) in one transaction.
    /// Call it every few seconds with what accumulated; on `Err` keep the batch and retry.
    pub async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.store().record_usage(records).await
    }

    /// May `req.org` receive `req.flow` now, from `req.source`, with `req.connected` receivers
    /// already on? The answer is returned only once its audit entry is committed (decisions
    /// arriving together share one transaction), so every admitted receiver is on record.
    /// `Err` means the store could not answer: a data plane refuses with
    /// [`decision::srt_reject::DOWN`].
    pub async fn decide(&self, actor: &str, req: &AccessRequest) -> Result<Decision, StoreError> {
        self.decide_at(actor, req, Utc::now()).await
    }

    /// [`ControlPlane::decide`] at a given time (for tests and replays).
    pub async fn decide_at(
        &self,
        actor: &str,
        req: &AccessRequest,
        now: DateTime<Utc>,
    ) -> Result<Decision, StoreError> {
        let started = Instant::now();
        let row = self.store().decision_row(&req.org, &req.flow).await?;
        let decision = resolve(&row, now, req.source, req.connected);
        let entry = decision_audit(actor, req, &row, &decision, now);
        let (done, ack) = oneshot::channel();
        let committed = match self.inner.decision_log.send(AuditJob { entry, done }).await {
            Ok(()) => ack.await.unwrap_or(false),
            Err(_) => false,
        };
        if !committed {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        let outcome = match &decision {
            Ok(_) => "allow",
            Err(d) => d.reason.as_str(),
        };
        metrics::counter!("stadion_access_decisions_total", "outcome" => outcome).increment(1);
        metrics::histogram!("stadion_access_decision_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(decision)
    }
}

/// Applies the rule to what the store returned.
fn resolve(row: &DecisionRow, now: DateTime<Utc>, source: IpAddr, connected: u32) -> Decision {
    let deny = |reason: Refusal, licence_id| {
        Err(Denial {
            reason,
            srt_reject_code: reason.srt_reject_code(),
            licence_id,
        })
    };
    let org_id = match row.org {
        Some((id, OrgKind::RightsHolder)) => id,
        _ => return deny(Refusal::UnknownOrganisation, None),
    };
    let Some(flow_id) = row.flow_id else {
        return deny(Refusal::UnknownFlow, None);
    };
    let Some(l) = &row.licence else {
        return deny(Refusal::NoLicence, None);
    };
    let terms = Terms {
        state: l.state,
        valid_from: l.valid_from,
        valid_until: l.valid_until,
        max_concurrent_receivers: l.max_concurrent_receivers,
        allowed_networks: &l.allowed_networks,
    };
    match decision::evaluate(&terms, now, source, connected) {
        Ok(()) => Ok(Grant {
            licence_id: l.id,
            org_id,
            flow_id,
            passphrase: l.passphrase.clone(),
            encryption_required: l.encryption_required,
            valid_until: l.valid_until,
        }),
        Err(reason) => deny(reason, Some(l.id)),
    }
}

fn decision_audit(
    actor: &str,
    req: &AccessRequest,
    row: &DecisionRow,
    d: &Decision,
    now: DateTime<Utc>,
) -> NewAudit {
    // Caller-supplied names are echoed into the log: bound their length.
    let clip = |s: &str| s.chars().take(128).collect::<String>();
    let (decision, reason) = match d {
        Ok(_) => (
            "allow",
            format!("granted to {} ({} connected)", req.source, req.connected),
        ),
        Err(denial) => (
            "deny",
            format!(
                "{}: {} ({} connected)",
                denial.reason.as_str(),
                req.source,
                req.connected
            ),
        ),
    };
    NewAudit {
        at: now,
        actor: clip(actor),
        action: "access.decide",
        subject: format!("access/{}/{}", clip(&req.org), clip(&req.flow)),
        org_id: row.org.map(|(id, _)| id),
        flow_id: row.flow_id,
        licence_id: row.licence.as_ref().map(|l| l.id),
        decision,
        reason,
    }
}

/// Writes decision entries in arrival order, as many per transaction as are waiting, and
/// acknowledges each once committed.
async fn decision_log_writer(store: Store, mut jobs: mpsc::Receiver<AuditJob>) {
    let mut batch = Vec::with_capacity(DECISION_BATCH);
    while jobs.recv_many(&mut batch, DECISION_BATCH).await > 0 {
        let (entries, acks): (Vec<_>, Vec<_>) = batch.drain(..).map(|j| (j.entry, j.done)).unzip();
        let ok = match store.append_audit(&entries).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, lost = entries.len(), "writing access decisions to the audit log failed; refusing them");
                false
            }
        };
        for ack in acks {
            let _ = ack.send(ok);
        }
    }
}

/// Announces the end of active licences' validity windows. It sleeps until the next known
/// window end, wakes early on a licence change, and looks at least once a second (licences
/// written by another process); it stops when the control plane is dropped.
async fn expiry_watcher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut since = Utc::now();
    loop {
        let Some(plane) = inner.upgrade() else { return };
        if plane.store.pool().is_closed() {
            return;
        }
        let now = Utc::now();
        let next = match plane.store.licences_ending(since, now).await {
            Ok((ended, next)) => {
                for l in ended {
                    let _ = plane.events.send(ControlEvent::LicenceExpired {
                        licence_id: l.id,
                        rhb_org: l.org_id,
                        flow: l.flow_id,
                        valid_until: l.valid_until,
                    });
                }
                since = now;
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "checking licence expiries failed; retrying");
                None
            }
        };
        drop(plane);
        let wait = next
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(1));
        let wait = if next.is_none() {
            Duration::from_secs(1)
        } else {
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
        }
    }
}
