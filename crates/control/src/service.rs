//! [`ControlPlane`]: the store plus what lives beside it in memory — the change channel the
//! data plane listens to, the verified-token cache, the decision index and the decision-log
//! writer.
//!
//! The access decision sits on the connection path, so where this control plane holds a
//! decision spool (an embedded SQLite store that no other process writes through, or a
//! PostgreSQL store with a node data directory) it touches neither the database nor another
//! thread: it reads an in-memory index of organisations, flows, licences and other nodes'
//! receiver counts, and its audit entry is appended to the local [`Spool`] before the answer
//! and committed in batches behind it. The index is rebuilt after every change this process
//! commits (decisions read the store until it is), after every change another node or process
//! commits (heard from the store's change feed, see [`change_follower`], and at the latest
//! from the store's change count, read twice a second), and its receiver counts are re-read
//! twice a second. Without a spool a decision reads the store and waits for its committed
//! audit entry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{self, TokenSecret, VerifiedCache};
use crate::decision::{self, Decision, Denial, Grant, Refusal, Terms};
use crate::model::{ControlEvent, Flow, Licence, LicenceState, OrgKind, Role, TokenInfo};
use crate::spool::{DECIDE_ACTION, Spool};
use crate::store::{
    Actor, CHANGE_CHANNEL, DecisionRow, DecisionSnapshot, FlowUpdate, NewAudit, NewLicence,
    NewOutput, Scope, Store, StoreError,
};
use crate::transport::{FlowSetup, PushOutput, Transport};
use crate::usage::UsageRecord;

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

enum LogJob {
    /// An entry already in the spool (its decision was answered).
    Spooled { entry: NewAudit, n: u64 },
    /// An entry whose decision is answered once it is committed (`true`) or failed.
    Waiting {
        entry: NewAudit,
        done: oneshot::Sender<bool>,
    },
    /// Answered once everything queued before it is committed (`true`) or cannot be now.
    Flush(oneshot::Sender<bool>),
}

/// The queue of decision audit entries and, on the fast path, the spool behind it.
struct DecisionLog {
    jobs: mpsc::Sender<LogJob>,
    spool: Option<Arc<Mutex<Spool>>>,
    /// False from a failed commit until the next one succeeds: spooled decisions are refused
    /// meanwhile, so the backlog a failing store leaves is bounded by the queue.
    healthy: Arc<AtomicBool>,
}

/// The decision index and the store generation it reflects.
struct Index {
    generation: u64,
    snapshot: Arc<DecisionSnapshot>,
    /// Receivers open at other live nodes per licence, as read at `counted_at`.
    elsewhere: HashMap<Uuid, u32>,
    counted_at: Instant,
}

/// How long the index's counts of other nodes' receivers serve decisions; older (their
/// refresh is failing), decisions read the store.
const COUNTS_SERVE: Duration = Duration::from_secs(2);

impl Index {
    /// What [`Store::decision_row`] returns for the same names or ids.
    fn row(&self, org: &str, flow: &str) -> DecisionRow {
        let snap = &self.snapshot;
        let org = snap.orgs.get(org).copied();
        let flow_id = snap.flows.get(flow).copied();
        let licence = match (org, flow_id) {
            (Some((o, _)), Some(f)) => snap.licences.get(&(o, f)).cloned(),
            _ => None,
        };
        let elsewhere = licence
            .as_ref()
            .and_then(|l| self.elsewhere.get(&l.id))
            .copied()
            .unwrap_or(0);
        DecisionRow {
            org,
            flow_id,
            licence,
            elsewhere,
        }
    }
}

/// Who this control plane is among the data-plane nodes sharing a store, and how it reports.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Stable across restarts of the same node (its sessions left open by a crash are closed
    /// at the next start) and unique among the nodes sharing the store.
    pub name: String,
    /// How often the node reports that it is alive.
    pub heartbeat: Duration,
    /// A node not heard from for this long is lost: its open sessions are closed and do not
    /// count against concurrency limits.
    pub stale_after: Duration,
    /// Where the node keeps local state: on a PostgreSQL store, its decision spool (see
    /// [`ControlPlane::open_node`]). A SQLite store keeps the spool beside its file.
    pub data_dir: Option<PathBuf>,
}

impl NodeConfig {
    /// `name` with a 5 s heartbeat and 30 s until a silent node counts as lost.
    pub fn named(name: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            heartbeat: Duration::from_secs(5),
            stale_after: Duration::from_secs(30),
            data_dir: None,
        }
    }

    /// The host's name (`/proc/sys/kernel/hostname`), else `local`.
    pub fn from_host() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        Self::named(if host.is_empty() {
            "local".into()
        } else {
            host
        })
    }

    fn alive_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::from_std(self.stale_after).unwrap_or(chrono::Duration::MAX)
    }
}

struct Inner {
    store: Store,
    node: NodeConfig,
    verified: VerifiedCache,
    log: DecisionLog,
    /// Present on the fast path; `None` inside while the first build is pending.
    index: Option<RwLock<Option<Arc<Index>>>>,
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
/// Decisions queued for the log at most; beyond it decisions are refused (the store is behind).
const DECISION_QUEUE: usize = 16_384;
/// Backoff between retries of a failed decision-log commit.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl ControlPlane {
    /// [`ControlPlane::open_node`] as the node named after the host.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_node(url, NodeConfig::from_host()).await
    }

    /// Opens the store at `url` as data-plane node `node`: closes the sessions the node's
    /// previous run left open, starts its heartbeat and the decision-log writer (needs a Tokio
    /// runtime). Decisions take the fast path when this control plane holds a decision spool:
    /// on SQLite `<file>.decisions` (when no other process holds it), on PostgreSQL
    /// `decisions-<node>.spool` in the node's `data_dir` (when one is given). Otherwise they
    /// wait for the store.
    pub async fn open_node(url: &str, node: NodeConfig) -> Result<Self, StoreError> {
        let store = Store::open(url).await?;
        let (closed, previous) = store.start_node(&node.name, Utc::now()).await?;
        if closed > 0 {
            tracing::warn!(node = %node.name, closed, "closed the receiver sessions the previous run of this node left open");
        }
        if let Some(seen) = previous
            && Utc::now() < seen + chrono::Duration::from_std(node.stale_after).unwrap_or_default()
        {
            tracing::warn!(node = %node.name, last_seen = %seen, "this node name reported recently: if another process runs under it, give each its own name");
        }
        // A SQLite file has one spool; on a shared PostgreSQL store each node has its own,
        // with its own progress counter.
        let place = match (store.sqlite_path(), &node.data_dir) {
            (Some(db), _) => Some((Spool::path_for(db), "decision_spool".to_owned())),
            (None, Some(dir)) => {
                let file: String = (node.name.chars())
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                Some((
                    dir.join(format!("decisions-{file}.spool")),
                    format!("decision_spool/{}", node.name),
                ))
            }
            (None, None) => None,
        };
        let spool = match place {
            Some((path, counter)) => {
                let spool = Spool::open(path.clone(), counter, &store).await?;
                if spool.is_none() {
                    tracing::warn!(spool = %path.display(), "the decision spool is in use by another control plane; decisions wait for the store");
                }
                spool
            }
            None => None,
        };
        // Changes from now on are announced, however late the follower task starts.
        let feed_at = store.last_change().await?;
        Ok(Self::start(store, node, spool, Some(feed_at)))
    }

    /// Wraps an open store, with decisions that read the store and wait for their committed
    /// audit entry; spawns the decision-log writer on the current Tokio runtime. The node
    /// (named after the host) reports its heartbeat but closes no sessions at start.
    pub fn new(store: Store) -> Self {
        Self::start(store, NodeConfig::from_host(), None, None)
    }

    /// `feed_at`: the change feed's position to follow from (`None`: where it is when the
    /// follower starts).
    fn start(store: Store, node: NodeConfig, spool: Option<Spool>, feed_at: Option<i64>) -> Self {
        if let Some(spool) = &spool {
            let progress = store.decision_progress();
            progress.answered.store(spool.last(), Ordering::Release);
            progress.committed.send_replace(spool.last());
        }
        let (jobs, queue) = mpsc::channel(DECISION_QUEUE);
        let fast = spool.is_some();
        let log = DecisionLog {
            jobs,
            spool: spool.map(|s| Arc::new(Mutex::new(s))),
            healthy: Arc::new(AtomicBool::new(true)),
        };
        tokio::spawn(decision_log_writer(
            store.clone(),
            queue,
            log.spool.clone(),
            log.healthy.clone(),
        ));
        let expiry_wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            store,
            node,
            verified: VerifiedCache::default(),
            log,
            index: fast.then(|| RwLock::new(None)),
            expiry_wake: expiry_wake.clone(),
        });
        tokio::spawn(expiry_watcher(Arc::downgrade(&inner), expiry_wake));
        tokio::spawn(change_follower(Arc::downgrade(&inner), feed_at));
        tokio::spawn(node_heartbeat(Arc::downgrade(&inner)));
        if fast {
            tokio::spawn(index_keeper(Arc::downgrade(&inner)));
        }
        ControlPlane { inner }
    }

    /// Waits until every access decision answered so far has its audit entry committed.
    /// `Err` when the store cannot take them now (they stay queued, and spooled, and are
    /// retried).
    pub async fn flush_decisions(&self) -> Result<(), StoreError> {
        let (done, ack) = oneshot::channel();
        let committed = match self.inner.log.jobs.send(LogJob::Flush(done)).await {
            Ok(()) => ack.await.unwrap_or(false),
            Err(_) => false,
        };
        if committed {
            Ok(())
        } else {
            Err(StoreError::Spool(
                "the decision log could not commit to the store".into(),
            ))
        }
    }

    /// Ends the control plane's use of the store: commits the decision log, closes the
    /// node's sessions the data plane left open (reason `node stopped`), then closes the
    /// store's connections. What cannot be committed stays in the spool for the next start.
    pub async fn shutdown(&self) {
        if let Err(e) = self.flush_decisions().await {
            tracing::error!(error = %e, "access decisions left in the spool at shutdown");
        }
        let node = &self.inner.node.name;
        match self
            .store()
            .stop_node(node, Utc::now(), "node stopped")
            .await
        {
            Ok(0) => {}
            Ok(closed) => tracing::info!(
                node,
                closed,
                "closed receiver sessions left open at shutdown"
            ),
            Err(e) => {
                tracing::warn!(node, error = %e, "closing this node's sessions failed; the next start closes them")
            }
        }
        self.store().close().await;
    }

    /// False while committing the decision log fails (decisions are refused meanwhile on the
    /// fast path; see [`ControlPlane::decide`]).
    pub fn decision_log_healthy(&self) -> bool {
        self.inner.log.healthy.load(Ordering::Acquire)
    }

    /// This node's name among the nodes sharing the store.
    pub fn node_name(&self) -> &str {
        &self.inner.node.name
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Subscribes to the changes a data plane acts on: licence state changes and expiries (cut
    /// receivers within 1 s), flow configuration changes, token revocations. A change made
    /// through this control plane's store is sent right after it commits; one made by another
    /// node or process on the same store is on the store's change feed, which this control
    /// plane follows (see [`change_follower`]): on PostgreSQL it hears of it by `NOTIFY`
    /// (typically within milliseconds), and within a second either way, also after its `LISTEN`
    /// connection dropped. Each node announces expiries itself. A receiver that lags more than
    /// 1024 events gets `RecvError::Lagged` and should re-read what it runs.
    pub fn subscribe(&self) -> broadcast::Receiver<ControlEvent> {
        self.store().subscribe()
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
        self.inner.expiry_wake.notify_one();
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
            self.inner.expiry_wake.notify_one();
        }
        Ok(l)
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
        self.store().create_flow(actor, flow).await
    }

    pub async fn update_flow(
        &self,
        actor: &Actor,
        id: Uuid,
        update: FlowUpdate,
    ) -> Result<Flow, StoreError> {
        self.store().update_flow(actor, id, update).await
    }

    /// Replaces a flow's sources and redundancy.
    pub async fn set_flow_transport(
        &self,
        actor: &Actor,
        id: Uuid,
        transport: Transport,
    ) -> Result<Flow, StoreError> {
        self.store().set_transport(actor, id, transport).await
    }

    pub async fn delete_flow(&self, actor: &Actor, id: Uuid) -> Result<Flow, StoreError> {
        self.store().delete_flow(actor, id).await
    }

    pub async fn create_output(
        &self,
        actor: &Actor,
        new: NewOutput,
    ) -> Result<PushOutput, StoreError> {
        self.store().create_output(actor, new).await
    }

    pub async fn delete_output(&self, actor: &Actor, id: Uuid) -> Result<PushOutput, StoreError> {
        self.store().delete_output(actor, id).await
    }

    /// Stores a batch of usage records (connects, deliveries, disconnects) in one transaction.
    /// Call it every few seconds with what accumulated; on `Err` keep the batch and retry.
    /// The sessions are this node's: closed when it restarts or is lost (see [`NodeConfig`]).
    pub async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.store()
            .record_node_usage(Some(&self.inner.node.name), records)
            .await
    }

    /// May `req.org` receive `req.flow` now, from `req.source`, with `req.connected` receivers
    /// already on? Every answer is on record: its audit entry is spooled (fast path) or
    /// committed (decisions arriving together share one transaction) before it is returned.
    /// `Err` means the store could not answer or the decision could not be recorded: a data
    /// plane refuses with [`decision::srt_reject::DOWN`].
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
        if self.store().pool().is_closed() {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        }
        let row = match self.indexed_row(req) {
            Some(row) => row,
            None => {
                let node = &self.inner.node;
                self.store()
                    .decision_row(
                        &req.org,
                        &req.flow,
                        &node.name,
                        node.alive_since(Utc::now()),
                    )
                    .await?
            }
        };
        // The caller counts its own receivers; other live nodes' open sessions add to them.
        let connected = req.connected.saturating_add(row.elsewhere);
        let decision = resolve(&row, now, req.source, connected);
        let entry = decision_audit(actor, req, &row, &decision, now);
        self.inner.log.record(self.store(), entry).await?;
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

impl ControlPlane {
    /// The decision's row from the index, when the index reflects the store's last change.
    fn indexed_row(&self, req: &AccessRequest) -> Option<DecisionRow> {
        let index = self.inner.index.as_ref()?;
        let index = index.read().unwrap_or_else(PoisonError::into_inner);
        let index = index.as_ref()?;
        if index.generation != self.store().generation()
            || index.counted_at.elapsed() > COUNTS_SERVE
        {
            return None;
        }
        Some(index.row(&req.org, &req.flow))
    }
}

impl DecisionLog {
    /// Puts a decision's entry on record: into the spool (returns at once) or committed.
    async fn record(&self, store: &Store, entry: NewAudit) -> Result<(), StoreError> {
        let Some(spool) = &self.spool else {
            let (done, ack) = oneshot::channel();
            let committed = match self.jobs.send(LogJob::Waiting { entry, done }).await {
                Ok(()) => ack.await.unwrap_or(false),
                Err(_) => false,
            };
            return if committed {
                Ok(())
            } else {
                Err(StoreError::Unavailable(sqlx::Error::PoolClosed))
            };
        };
        if !self.healthy.load(Ordering::Acquire) {
            return Err(StoreError::Spool(
                "committing the decision log to the store is failing (retrying)".into(),
            ));
        }
        // Queue order is spool order: both happen under the spool's lock, and the queue slot
        // is taken first so that nothing is spooled for a decision that is then refused.
        let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = self.jobs.try_reserve().map_err(|_| {
            StoreError::Spool(format!("{DECISION_QUEUE} decisions wait for the store"))
        })?;
        let n = spool.append(&entry)?;
        store
            .decision_progress()
            .answered
            .store(n, Ordering::Release);
        slot.send(LogJob::Spooled { entry, n });
        metrics::gauge!("stadion_decision_log_pending").set(spool.pending() as f64);
        Ok(())
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
    let count = match row.elsewhere {
        0 => format!("{} connected", req.connected),
        n => format!("{} connected, {n} at other nodes", req.connected),
    };
    let (decision, reason) = match d {
        Ok(_) => ("allow", format!("granted to {} ({count})", req.source)),
        Err(denial) => (
            "deny",
            format!("{}: {} ({count})", denial.reason.as_str(), req.source),
        ),
    };
    NewAudit {
        at: now,
        actor: clip(actor),
        action: DECIDE_ACTION,
        subject: format!("access/{}/{}", clip(&req.org), clip(&req.flow)),
        org_id: row.org.map(|(id, _)| id),
        flow_id: row.flow_id,
        licence_id: row.licence.as_ref().map(|l| l.id),
        decision,
        reason,
    }
}

/// Writes decision entries in arrival order, as many per transaction as are waiting, and
/// acknowledges each once committed. Spooled entries were answered already: a failed commit is
/// logged and retried with backoff until it succeeds or the store is closed (then they stay
/// in the spool for the next start). Waiting entries whose commit fails are refused.
async fn decision_log_writer(
    store: Store,
    mut jobs: mpsc::Receiver<LogJob>,
    spool: Option<Arc<Mutex<Spool>>>,
    healthy: Arc<AtomicBool>,
) {
    let counter = spool.as_ref().map(|s| {
        s.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counter()
            .to_owned()
    });
    let mut batch = Vec::with_capacity(DECISION_BATCH);
    while jobs.recv_many(&mut batch, DECISION_BATCH).await > 0 {
        let (mut entries, mut acks, mut through) = (Vec::new(), Vec::new(), None);
        for job in batch.drain(..) {
            match job {
                LogJob::Spooled { entry, n } => {
                    entries.push(entry);
                    through = Some(n);
                }
                LogJob::Waiting { entry, done } => {
                    entries.push(entry);
                    acks.push(done);
                }
                LogJob::Flush(done) => acks.push(done),
            }
        }
        let mut delay = RETRY_MIN;
        let ok = loop {
            if entries.is_empty() {
                break true;
            }
            let spooled = counter.as_deref().zip(through);
            let Err(e) = store.append_decisions(&entries, spooled).await else {
                break true;
            };
            healthy.store(false, Ordering::Release);
            metrics::counter!("stadion_decision_log_failures_total").increment(1);
            if through.is_none() {
                tracing::error!(error = %e, refused = entries.len(), "writing access decisions to the audit log failed; refusing them");
                break false;
            }
            if store.pool().is_closed() {
                tracing::error!(error = %e, entries = entries.len(), "the store is closed: access decisions stay in the spool until the next start");
                break false;
            }
            tracing::error!(error = %e, entries = entries.len(), retry_in = ?delay, "committing answered access decisions to the audit log failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        };
        if ok {
            healthy.store(true, Ordering::Release);
            if let (Some(spool), Some(n)) = (&spool, through) {
                let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
                store.decision_progress().committed.send_replace(n);
                if let Err(e) = spool.committed_through(n) {
                    tracing::error!(error = %e, "tidying the decision spool failed");
                }
                metrics::gauge!("stadion_decision_log_pending").set(spool.pending() as f64);
            }
        }
        for ack in acks {
            let _ = ack.send(ok);
        }
    }
}

/// The control plane while it and its store are open; the background tasks below stop when
/// this is `None`.
fn alive(inner: &Weak<Inner>) -> Option<Arc<Inner>> {
    inner.upgrade().filter(|p| !p.store.pool().is_closed())
}

/// Keeps the decision index at the store's generation: rebuilds it after changes (once they
/// pause for a moment, so that bulk changes cost one rebuild). Every half second it also
/// compares the database's change count with the one the index was built at, so that changes
/// another process or node made reach the index within a second even without their event, and
/// re-reads how many receivers other live nodes hold per licence. It stops with the plane.
async fn index_keeper(inner: Weak<Inner>) {
    const SETTLE: Duration = Duration::from_millis(5);
    const POLL: Duration = Duration::from_millis(500);
    let mut built: Option<(u64, i64, Arc<DecisionSnapshot>)> = None;
    loop {
        let Some(plane) = alive(&inner) else { return };
        let (store, node) = (plane.store.clone(), plane.node.clone());
        drop(plane);
        // The count is read before the snapshot: a change committed in between shows in the
        // next count and causes another rebuild.
        let count = store.change_count().await;
        match &count {
            Ok(count) if built.as_ref().is_some_and(|(_, c, _)| c != count) => store.touch(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the store's change count failed"),
        }
        let generation = store.generation();
        if let Ok(count) = count
            && built.as_ref().is_none_or(|(g, ..)| *g != generation)
        {
            match store.decision_snapshot().await {
                Ok(snapshot) => built = Some((generation, count, Arc::new(snapshot))),
                Err(e) => {
                    tracing::warn!(error = %e, "building the decision index failed; decisions read the store")
                }
            }
        }
        let counted_at = Instant::now();
        let counts = store
            .sessions_elsewhere(&node.name, node.alive_since(Utc::now()))
            .await;
        match (counts, &built) {
            (Ok(elsewhere), Some((generation, _, snapshot))) => {
                let Some(plane) = inner.upgrade() else { return };
                if let Some(index) = &plane.index {
                    *index.write().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::new(Index {
                            generation: *generation,
                            snapshot: snapshot.clone(),
                            elsewhere,
                            counted_at,
                        }));
                }
            }
            (Ok(_), None) => {}
            (Err(e), _) => {
                tracing::warn!(error = %e, "counting other nodes' receivers failed; decisions read the store meanwhile")
            }
        }
        let _ = tokio::time::timeout(POLL, store.changed()).await;
        tokio::time::sleep(SETTLE).await;
    }
}

/// Follows the store's change feed from number `last` (or the last change when it starts):
/// announces to this node's subscribers the changes made by other nodes or processes (after
/// marking the store changed, so that no decision answers from an index without them), in
/// feed order, each once. On
/// PostgreSQL a `LISTEN` connection wakes it as each change commits; it also reads the feed
/// once a second and after every (re)connection, so that a change notified while the
/// connection was down is announced all the same, within a second of the store being
/// reachable. It stops with the plane.
async fn change_follower(inner: Weak<Inner>, mut last: Option<i64>) {
    const PAGE: u32 = 1000;
    let mut listener = None;
    loop {
        let Some(plane) = alive(&inner) else { return };
        let store = plane.store.clone();
        drop(plane);
        if listener.is_none() {
            // Listen before reading the feed: a change committed after the read is notified.
            listener = match store.listen(CHANGE_CHANNEL).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other nodes' changes failed; reading the change feed once a second");
                    None
                }
            };
        }
        let Some(from) = last else {
            match store.last_change().await {
                Ok(seq) => last = Some(seq),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the change feed failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        match store.changes_after(from, PAGE).await {
            Ok(changes) => {
                let full = changes.len() == PAGE as usize;
                if let Some(c) = changes.last() {
                    last = Some(c.seq);
                }
                let Some(plane) = alive(&inner) else { return };
                for change in changes.into_iter().filter(|c| c.origin != store.origin()) {
                    match change.event {
                        Ok(event) => plane.apply_foreign(event),
                        Err(e) => {
                            tracing::warn!(seq = change.seq, error = %e, "unreadable change on the feed skipped")
                        }
                    }
                }
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the change feed failed; retrying"),
        }
        match listener.as_mut() {
            // Woken by a notification or, at the latest, after a second.
            Some(l) => match tokio::time::timeout(Duration::from_secs(1), l.try_recv()).await {
                Err(_) | Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) | Ok(Err(_)) => {
                    tracing::warn!(
                        "lost the connection for other nodes' changes; reconnecting and catching up from the change feed"
                    );
                    listener = None;
                }
            },
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

impl Inner {
    /// Takes in a change another node or process made.
    fn apply_foreign(&self, event: ControlEvent) {
        self.store.touch();
        match &event {
            ControlEvent::TokenRevoked { token_id } => self.verified.forget(token_id),
            ControlEvent::LicenceChanged { .. } => self.expiry_wake.notify_one(),
            _ => {}
        }
        self.store.announce(event);
    }
}

/// Reports the node alive every `heartbeat` and closes the sessions of nodes that have not
/// reported for `stale_after`; stops with the plane.
async fn node_heartbeat(inner: Weak<Inner>) {
    loop {
        let Some(plane) = alive(&inner) else { return };
        let (store, node) = (plane.store.clone(), plane.node.clone());
        drop(plane);
        let now = Utc::now();
        match store
            .node_heartbeat(&node.name, now, node.alive_since(now))
            .await
        {
            Ok(0) => {}
            Ok(closed) => tracing::warn!(
                closed,
                "closed the open sessions of nodes that stopped reporting"
            ),
            Err(e) => {
                tracing::warn!(node = %node.name, error = %e, "reporting this node alive failed; retrying")
            }
        }
        tokio::time::sleep(node.heartbeat).await;
    }
}

/// Announces the end of active licences' validity windows. It sleeps until the next known
/// window end, wakes early on a licence change, and looks at least once a second (licences
/// written by another process); it stops when the control plane is dropped.
async fn expiry_watcher(inner: Weak<Inner>, wake: Arc<Notify>) {
    let mut since = Utc::now();
    loop {
        let Some(plane) = alive(&inner) else { return };
        let now = Utc::now();
        let next = match plane.store.licences_ending(since, now).await {
            Ok((ended, next)) => {
                for l in ended {
                    plane.store.announce(ControlEvent::LicenceExpired {
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
