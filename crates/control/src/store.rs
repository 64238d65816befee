//! Persistence over `sqlx::Any`: one set of portable SQL for SQLite and PostgreSQL.
//!
//! Why `Any` rather than an enum over two typed pools: every statement here is plain SQL that
//! both databases accept (numbered `$n` parameters, `RETURNING`, partial indexes), so one code
//! path serves both and the test suite exercises the same statements against each. The price
//! is that `Any` carries only integers, text, floats and bytes, so times are stored as
//! microseconds since the epoch, ids as UUID text and booleans as 0/1 — all converted here.
//!
//! Every write is one transaction that includes its audit entry: either both are stored or
//! neither is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use tokio::sync::broadcast;
use uuid::Uuid;

mod flows;
mod nodes;
mod usage;

pub use flows::{FlowUpdate, NewOutput, OutputFilter};

use crate::model::{
    AuditEntry, ControlEvent, Licence, LicenceState, OrgKind, Organisation, Passphrase, Role,
    TokenInfo, User,
};

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("`{field}`: {message}")]
    Conflict { field: String, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported store URL `{0}`: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("migrating the store failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store error: {0}")]
    Other(#[source] sqlx::Error),
    /// The access-decision log cannot take entries (its spool failed, or commits to the store
    /// are failing and being retried): decisions are refused rather than left unaudited.
    #[error("the access-decision log is unavailable: {0}")]
    Spool(String),
}

impl StoreError {
    /// Maps a database error; a unique violation is reported against `field`.
    fn from_sqlx(e: sqlx::Error, field: &'static str) -> StoreError {
        use sqlx::Error as E;
        match e {
            E::PoolClosed
            | E::PoolTimedOut
            | E::Io(_)
            | E::Tls(_)
            | E::Protocol(_)
            | E::WorkerCrashed => StoreError::Unavailable(e),
            E::Database(ref db) if db.is_unique_violation() => StoreError::Conflict {
                field: field.into(),
                message: "already exists".into(),
            },
            E::Database(ref db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(e)
            }
            e => StoreError::Other(e),
        }
    }

    fn db(e: sqlx::Error) -> StoreError {
        Self::from_sqlx(e, "")
    }
}

/// PostgreSQL connection / shutdown / missing-database classes, SQLite busy, read-only,
/// I/O and cannot-open codes: the store is not there, rather than the request being wrong.
fn is_unavailable_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if code.starts_with("08") || code.starts_with("57P") || code == "3D000" || code == "53300" {
        return true;
    }
    code.parse::<u32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 14))
}

impl From<crate::transport::FieldError> for StoreError {
    fn from(e: crate::transport::FieldError) -> Self {
        StoreError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::db(e)
    }
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt(format!("time {us}")))
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("id {text:?}")))
}

fn opt_uuid(text: Option<String>) -> Result<Option<Uuid>, StoreError> {
    text.as_deref().map(uuid).transpose()
}

fn parse_enum<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("value {text:?}")))
}

/// Who is acting, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// An audit entry about to be written.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: &'static str,
    pub subject: String,
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub licence_id: Option<Uuid>,
    pub decision: &'static str,
    pub reason: String,
}

impl NewAudit {
    pub(crate) fn change(
        actor: &Actor,
        action: &'static str,
        subject: String,
        reason: String,
    ) -> Self {
        NewAudit {
            at: Utc::now(),
            actor: actor.0.clone(),
            action,
            subject,
            org_id: None,
            flow_id: None,
            licence_id: None,
            decision: "done",
            reason,
        }
    }
}

/// Which rows a caller may see: everything, or one organisation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Org(Uuid),
}

/// A new licence, validated by the caller.
#[derive(Debug, Clone)]
pub struct NewLicence {
    pub org_id: Uuid,
    pub flow_id: Uuid,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub max_concurrent_receivers: u32,
    pub allowed_networks: Vec<IpNet>,
    pub encryption_required: bool,
    pub passphrase: Passphrase,
}

/// Filters for listing licences.
#[derive(Debug, Clone, Default)]
pub struct LicenceFilter {
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub state: Option<LicenceState>,
}

/// Filters and paging for the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org_id: Option<Uuid>,
    pub flow_id: Option<Uuid>,
    pub licence_id: Option<Uuid>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Cursor: only entries after this sequence number.
    pub after: Option<i64>,
    pub limit: u32,
}

/// What authentication needs to know about a token.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub info: TokenInfo,
    pub secret_hash: String,
    pub user_name: String,
    pub org_kind: OrgKind,
}

/// What the access decision needs, read in one statement.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub org: Option<(Uuid, OrgKind)>,
    pub flow_id: Option<Uuid>,
    pub licence: Option<Licence>,
    /// Receivers open on the licence at other live nodes (see [`Store::decision_row`]).
    pub elsewhere: u32,
}

/// A dynamic bind value for statements whose filters vary.
enum Arg {
    Text(String),
    Int(i64),
}

/// Builds `WHERE a = $1 AND b = $2 ...` with numbered parameters (valid on both databases).
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    args: Vec<Arg>,
}

impl Conditions {
    fn push(&mut self, column_op: &str, arg: Arg) {
        self.args.push(arg);
        self.sql.push(format!("{column_op} ${}", self.args.len()));
    }
    fn push_uuid(&mut self, column: &str, id: Option<Uuid>) {
        if let Some(id) = id {
            self.push(&format!("{column} ="), Arg::Text(id.to_string()));
        }
    }
    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.sql.join(" AND "))
        }
    }
    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

const LICENCE_COLUMNS: &str = "l.id, l.org_id, l.flow_id, l.valid_from, l.valid_until, \
    l.max_concurrent_receivers, l.allowed_networks, l.encryption_required, l.passphrase, \
    l.state, l.created_at, l.updated_at";

fn licence_from_row(row: &AnyRow) -> Result<Licence, StoreError> {
    let networks: String = row.try_get("allowed_networks")?;
    let allowed_networks = networks
        .split(',')
        .filter(|s| !s.is_empty())
        .map(IpNet::from_str)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StoreError::Corrupt(format!("networks {networks:?}")))?;
    let max: i64 = row.try_get("max_concurrent_receivers")?;
    Ok(Licence {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        org_id: uuid(&row.try_get::<String, _>("org_id")?)?,
        flow_id: uuid(&row.try_get::<String, _>("flow_id")?)?,
        valid_from: time(row.try_get("valid_from")?)?,
        valid_until: time(row.try_get("valid_until")?)?,
        max_concurrent_receivers: u32::try_from(max)
            .map_err(|_| StoreError::Corrupt(format!("max receivers {max}")))?,
        allowed_networks,
        encryption_required: row.try_get::<i64, _>("encryption_required")? != 0,
        passphrase: Some(
            Passphrase::new(row.try_get("passphrase")?)
                .map_err(|_| StoreError::Corrupt("passphrase".into()))?,
        ),
        state: parse_enum(&row.try_get::<String, _>("state")?, LicenceState::parse)?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
    })
}

fn org_from_row(row: &AnyRow) -> Result<Organisation, StoreError> {
    Ok(Organisation {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        name: row.try_get("name")?,
        kind: parse_enum(&row.try_get::<String, _>("kind")?, OrgKind::parse)?,
        created_at: time(row.try_get("created_at")?)?,
    })
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        org_id: uuid(&row.try_get::<String, _>("org_id")?)?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        created_at: time(row.try_get("created_at")?)?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        user_id: uuid(&row.try_get::<String, _>("user_id")?)?,
        org_id: uuid(&row.try_get::<String, _>("org_id")?)?,
        role: parse_enum(&row.try_get::<String, _>("role")?, Role::parse)?,
        label: row.try_get("label")?,
        created_at: time(row.try_get("created_at")?)?,
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(time)
            .transpose()?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        at: time(row.try_get("at")?)?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        subject: row.try_get("subject")?,
        org_id: opt_uuid(row.try_get("org_id")?)?,
        flow_id: opt_uuid(row.try_get("flow_id")?)?,
        licence_id: opt_uuid(row.try_get("licence_id")?)?,
        decision: row.try_get("decision")?,
        reason: row.try_get("reason")?,
    })
}

/// Appends entries to the audit log inside the caller's transaction. Sequence numbers come
/// from the `counters` row, whose update also serialises concurrent writers on PostgreSQL.
pub(crate) async fn append_audit(
    conn: &mut AnyConnection,
    entries: &[NewAudit],
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len() as i64;
    let last: i64 =
        sqlx::query("UPDATE counters SET value = value + $1 WHERE name = 'audit' RETURNING value")
            .bind(n)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
    // Many rows per statement: one round trip to the driver per chunk, not per entry.
    const ROWS: usize = 64;
    let first = last - n + 1;
    for (c, chunk) in entries.chunks(ROWS).enumerate() {
        let values = (0..chunk.len())
            .map(|r| {
                let p = r * 10;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO audit_log (seq, at, actor, action, subject, org_id, flow_id, licence_id, \
             decision, reason) VALUES {values}"
        );
        let mut q = sqlx::query(&sql);
        for (i, e) in chunk.iter().enumerate() {
            q = q
                .bind(first + (c * ROWS + i) as i64)
                .bind(micros(e.at))
                .bind(e.actor.as_str())
                .bind(e.action)
                .bind(e.subject.as_str())
                .bind(e.org_id.map(|u| u.to_string()))
                .bind(e.flow_id.map(|u| u.to_string()))
                .bind(e.licence_id.map(|u| u.to_string()))
                .bind(e.decision)
                .bind(e.reason.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// What the body of a write transaction returns: its value and the audit entries to append.
type WriteBody<'c, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<(T, Vec<NewAudit>), StoreError>> + Send + 'c>>;

/// The database behind the control plane.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file, when the store is one.
    sqlite_path: Option<PathBuf>,
    /// The PostgreSQL URL, for the change listener's own connection.
    postgres_url: Option<SecretUrl>,
    changes: Arc<Changes>,
    /// This handle's id in the change feed, and its subscribers.
    origin: Uuid,
    events: broadcast::Sender<ControlEvent>,
    /// Decisions answered before their audit entry was committed (the spool's numbers).
    decisions: Arc<DecisionProgress>,
}

/// How far the decision log is: the last spool number answered and the last committed, so
/// that a read of the audit log through the store includes every decision answered before it.
#[derive(Debug)]
pub(crate) struct DecisionProgress {
    pub answered: AtomicU64,
    pub committed: tokio::sync::watch::Sender<u64>,
}

impl Default for DecisionProgress {
    fn default() -> Self {
        DecisionProgress {
            answered: AtomicU64::new(0),
            committed: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A connection URL that may hold a password: kept out of `Debug` output.
#[derive(Clone)]
struct SecretUrl(String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretUrl(..)")
    }
}

/// The change generation: bumped after every committed change that may alter an access
/// decision (and by [`Store::touch`] when another process or node reports one); in-memory
/// views of the store compare it with the generation they were built at. Stores opened on the
/// same SQLite file in one process share it.
#[derive(Debug, Default)]
struct Changes {
    generation: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Changes {
    /// The generation shared by every store on `path` in this process.
    fn for_file(path: &std::path::Path) -> Arc<Changes> {
        static FILES: std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<Changes>)>> =
            std::sync::Mutex::new(Vec::new());
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut files = FILES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        files.retain(|(_, c)| c.strong_count() > 0);
        if let Some(c) = files
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, c)| c.upgrade())
        {
            return c;
        }
        let c = Arc::new(Changes::default());
        files.push((path, Arc::downgrade(&c)));
        c
    }
}

/// One change read back from the change feed.
#[derive(Debug)]
pub(crate) struct FedChange {
    pub seq: i64,
    pub origin: Uuid,
    pub event: Result<ControlEvent, String>,
}

/// The PostgreSQL notification channel on which a committed change's feed number is sent.
pub(crate) const CHANGE_CHANNEL: &str = "stadion_control_changes";

/// Everything the access decision reads, loaded at once for the in-memory index.
#[derive(Debug, Default)]
pub(crate) struct DecisionSnapshot {
    /// By name and by id text, as `decision_row` matches them.
    pub orgs: HashMap<String, (Uuid, OrgKind)>,
    pub flows: HashMap<String, Uuid>,
    /// The licence `decision_row` would pick per (organisation, flow).
    pub licences: HashMap<(Uuid, Uuid), Licence>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`: `sqlite://PATH` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut sqlite_path = None;
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            let sep = if path.contains('?') { '&' } else { '?' };
            let file = path.split('?').next().unwrap_or_default();
            if !file.is_empty() && file != ":memory:" {
                sqlite_path = Some(PathBuf::from(file));
            }
            (Backend::Sqlite, format!("{url}{sep}mode=rwc"))
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let options =
            AnyConnectOptions::from_str(&url).map_err(|_| StoreError::BadUrl(url.clone()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. NORMAL sync is durable across
                        // process crashes; busy_timeout queues writers instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::db)?;
        MIGRATOR.run(&pool).await?;
        let changes = sqlite_path
            .as_deref()
            .map_or_else(Arc::default, Changes::for_file);
        let postgres_url = (backend == Backend::Postgres).then_some(SecretUrl(url));
        Ok(Store {
            pool,
            backend,
            sqlite_path,
            postgres_url,
            changes,
            origin: Uuid::new_v4(),
            events: broadcast::channel(1024).0,
            decisions: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Listens on a PostgreSQL store's notification `channel` over a connection of its own.
    pub(crate) async fn listen(
        &self,
        channel: &str,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        let Some(SecretUrl(url)) = &self.postgres_url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url)
            .await
            .map_err(StoreError::db)?;
        listener.listen(channel).await.map_err(StoreError::db)?;
        Ok(Some(listener))
    }

    /// The database file of a SQLite store.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The change generation: it moves after every committed change of organisations, flows,
    /// licences or tokens made in this process, and on [`Store::touch`].
    pub fn generation(&self) -> u64 {
        self.changes.generation.load(Ordering::Acquire)
    }

    /// Marks what the store holds as changed from outside this process (another node).
    pub fn touch(&self) {
        self.changes.generation.fetch_add(1, Ordering::AcqRel);
        self.changes.notify.notify_one();
    }

    /// Waits until the generation moves (for one waiter).
    pub(crate) async fn changed(&self) {
        self.changes.notify.notified().await;
    }

    /// The count of committed changes in the database, from every process: another process's
    /// changes show here (see [`Store::write`]).
    pub(crate) async fn change_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM counters WHERE name = 'changes'")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// Closes every connection; later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs a trivial statement: is the store there?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::db)?;
        Ok(())
    }

    /// The raw pool, for tests that need to reach under the API.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`IMMEDIATE`):
    /// a deferred one that read first fails with `SQLITE_BUSY_SNAPSHOT` when another writer
    /// (e.g. the decision log) committed in between, where waiting for the lock is right.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Runs `f` in one transaction and appends `audit` to the log in the same transaction;
    /// counts the change in the database and moves the change generation once it committed.
    /// A change with an audit entry and an `event` puts `event(value)` on the change feed in
    /// the same transaction (see [`Store::changes_after`]), announces it to the other nodes
    /// (PostgreSQL `NOTIFY`, sent at commit) and, once committed, to this store's subscribers.
    async fn write<T, F>(
        &self,
        conflict_field: &'static str,
        event: Option<fn(&T) -> ControlEvent>,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteBody<'c, T>,
        T: Send,
    {
        let (value, event) = self.transact(true, event, conflict_field, f).await?;
        self.touch();
        if let Some(event) = event {
            self.announce(event);
        }
        Ok(value)
    }

    /// [`Store::write`] for records no decision reads (accounting, node heartbeats): frequent
    /// writes that must not invalidate in-memory views.
    async fn write_untracked<T, F>(
        &self,
        conflict_field: &'static str,
        f: F,
    ) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteBody<'c, T>,
        T: Send,
    {
        Ok(self.transact(false, None, conflict_field, f).await?.0)
    }

    async fn transact<T, F>(
        &self,
        counted: bool,
        event: Option<fn(&T) -> ControlEvent>,
        conflict_field: &'static str,
        f: F,
    ) -> Result<(T, Option<ControlEvent>), StoreError>
    where
        F: for<'c> FnOnce(&'c mut AnyConnection) -> WriteBody<'c, T>,
        T: Send,
    {
        let mut tx = self.begin().await.map_err(StoreError::db)?;
        let (value, audit) = f(&mut tx).await?;
        append_audit(&mut tx, &audit)
            .await
            .map_err(StoreError::db)?;
        let mut fed = None;
        if counted {
            let seq: i64 = sqlx::query(
                "UPDATE counters SET value = value + 1 WHERE name = 'changes' RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(StoreError::db)?;
            // A write that changed nothing (no audit entry) has nothing to announce.
            if let Some(event) = event.filter(|_| !audit.is_empty()).map(|e| e(&value)) {
                self.feed(&mut tx, seq, &event)
                    .await
                    .map_err(StoreError::db)?;
                fed = Some(event);
            }
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx(e, conflict_field))?;
        Ok((value, fed))
    }

    /// Puts `event` on the change feed as number `seq`; on PostgreSQL also notifies the other
    /// nodes, which PostgreSQL does when the transaction commits.
    async fn feed(
        &self,
        conn: &mut AnyConnection,
        seq: i64,
        event: &ControlEvent,
    ) -> Result<(), sqlx::Error> {
        let json = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(e.into()))?;
        sqlx::query("INSERT INTO control_changes (seq, at, origin, event) VALUES ($1, $2, $3, $4)")
            .bind(seq)
            .bind(micros(now_micros()))
            .bind(self.origin.to_string())
            .bind(json)
            .execute(&mut *conn)
            .await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGE_CHANNEL)
                .bind(seq.to_string())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Sends `event` to this store's subscribers (no subscriber is fine: nothing live to cut).
    pub(crate) fn announce(&self, event: ControlEvent) {
        let _ = self.events.send(event);
    }

    /// Subscribes to the changes this store announces (see [`crate::ControlPlane::subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<ControlEvent> {
        self.events.subscribe()
    }

    /// The id this store handle writes into the change feed as the changes' origin.
    pub(crate) fn origin(&self) -> Uuid {
        self.origin
    }

    /// The number of the last change on the feed (0 when there is none).
    pub(crate) async fn last_change(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM control_changes")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// The changes on the feed after number `seq`, oldest first, at most `limit`: their
    /// number, the store handle that made them, and the event (`Err` text when unreadable,
    /// e.g. written by a newer version).
    pub(crate) async fn changes_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<FedChange>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT seq, origin, event FROM control_changes WHERE seq > $1 ORDER BY seq LIMIT {limit}"
        ))
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let text: String = row.try_get("event")?;
                Ok(FedChange {
                    seq: row.try_get("seq")?,
                    origin: uuid(&row.try_get::<String, _>("origin")?)?,
                    event: serde_json::from_str(&text).map_err(|e| format!("{e}: {text}")),
                })
            })
            .collect()
    }

    // ---- organisations ------------------------------------------------------------------

    pub async fn host_org(&self) -> Result<Option<Organisation>, StoreError> {
        let row =
            sqlx::query("SELECT id, name, kind, created_at FROM organisations WHERE kind = 'host'")
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(org_from_row).transpose()
    }

    pub async fn create_org(
        &self,
        actor: &Actor,
        name: &str,
        kind: OrgKind,
    ) -> Result<Organisation, StoreError> {
        let org = Organisation {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            kind,
            created_at: now_micros(),
        };
        let o = org.clone();
        let actor = actor.clone();
        self.write("name", None, move |c| {
            Box::pin(async move {
                if kind == OrgKind::Host {
                    let n: i64 = sqlx::query("SELECT COUNT(*) FROM organisations WHERE kind = 'host'")
                        .fetch_one(&mut *c).await?.try_get(0)?;
                    if n > 0 {
                        return Err(StoreError::Conflict { field: "kind".into(), message: "there is already a host organisation".into() });
                    }
                }
                sqlx::query("INSERT INTO organisations (id, name, kind, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(o.id.to_string()).bind(o.name.as_str()).bind(kind.as_str()).bind(micros(o.created_at))
                    .execute(&mut *c).await.map_err(|e| StoreError::from_sqlx(e, "name"))?;
                let mut a = NewAudit::change(&actor, "org.create", format!("org/{}", o.id), format!("{} {}", kind, o.name));
                a.org_id = Some(o.id);
                Ok(((), vec![a]))
            })
        }).await?;
        Ok(org)
    }

    /// The rows of `select` (`SELECT ... FROM ...`) whose `org_column` is in `scope`, in
    /// `order`, each read by `read`.
    async fn scoped<T>(
        &self,
        select: &str,
        org_column: &str,
        scope: Scope,
        order: &str,
        read: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut cond = Conditions::default();
        if let Scope::Org(id) = scope {
            cond.push_uuid(org_column, Some(id));
        }
        let sql = format!("{select} {} ORDER BY {order}", cond.clause());
        let rows = cond.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(read).collect()
    }

    pub async fn list_orgs(&self, scope: Scope) -> Result<Vec<Organisation>, StoreError> {
        self.scoped(
            "SELECT id, name, kind, created_at FROM organisations",
            "id",
            scope,
            "name",
            org_from_row,
        )
        .await
    }

    pub async fn get_org(&self, id: Uuid, scope: Scope) -> Result<Organisation, StoreError> {
        self.list_orgs(scope)
            .await?
            .into_iter()
            .find(|o| o.id == id)
            .ok_or(StoreError::NotFound("organisation"))
    }

    // ---- users and tokens ---------------------------------------------------------------

    pub async fn create_user(
        &self,
        actor: &Actor,
        org_id: Uuid,
        name: &str,
        email: Option<String>,
    ) -> Result<User, StoreError> {
        let user = User {
            id: Uuid::new_v4(),
            org_id,
            name: name.to_owned(),
            email,
            created_at: now_micros(),
        };
        let u = user.clone();
        let actor = actor.clone();
        self.write("name", None, move |c| {
            Box::pin(async move {
                let exists = sqlx::query("SELECT id FROM organisations WHERE id = $1")
                    .bind(org_id.to_string()).fetch_optional(&mut *c).await?;
                if exists.is_none() {
                    return Err(StoreError::Invalid { field: "org_id".into(), message: "no such organisation".into() });
                }
                sqlx::query("INSERT INTO users (id, org_id, name, email, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(u.id.to_string()).bind(org_id.to_string()).bind(u.name.as_str()).bind(u.email.clone())
                    .bind(micros(u.created_at))
                    .execute(&mut *c).await.map_err(|e| StoreError::from_sqlx(e, "name"))?;
                let mut a = NewAudit::change(&actor, "user.create", format!("user/{}", u.id), u.name.clone());
                a.org_id = Some(org_id);
                Ok(((), vec![a]))
            })
        }).await?;
        Ok(user)
    }

    pub async fn list_users(&self, scope: Scope) -> Result<Vec<User>, StoreError> {
        self.scoped(
            "SELECT id, org_id, name, email, created_at FROM users",
            "org_id",
            scope,
            "name",
            user_from_row,
        )
        .await
    }

    /// Stores a token (already hashed by the caller, who keeps the clear text to show once).
    pub async fn create_token(
        &self,
        actor: &Actor,
        id: String,
        user_id: Uuid,
        role: Role,
        label: String,
        secret_hash: String,
    ) -> Result<TokenInfo, StoreError> {
        let actor = actor.clone();
        self.write("id", None, move |c| {
            Box::pin(async move {
                let row = sqlx::query("SELECT u.org_id, o.kind FROM users u JOIN organisations o ON o.id = u.org_id WHERE u.id = $1")
                    .bind(user_id.to_string()).fetch_optional(&mut *c).await?
                    .ok_or(StoreError::Invalid { field: "user_id".into(), message: "no such user".into() })?;
                let org_id = uuid(&row.try_get::<String, _>(0)?)?;
                let kind = parse_enum(&row.try_get::<String, _>(1)?, OrgKind::parse)?;
                if role.org_kind() != kind {
                    return Err(StoreError::Invalid { field: "role".into(), message: format!("role {role} is not for a {kind} organisation's user") });
                }
                let info = TokenInfo { id, user_id, org_id, role, label, created_at: now_micros(), revoked_at: None };
                sqlx::query("INSERT INTO api_tokens (id, user_id, role, label, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(info.id.as_str()).bind(user_id.to_string()).bind(role.as_str()).bind(info.label.as_str())
                    .bind(secret_hash).bind(micros(info.created_at))
                    .execute(&mut *c).await.map_err(|e| StoreError::from_sqlx(e, "id"))?;
                let mut a = NewAudit::change(&actor, "token.create", format!("token/{}", info.id), format!("role {role}, label {:?}", info.label));
                a.org_id = Some(org_id);
                Ok((info, vec![a]))
            })
        }).await
    }

    pub async fn token_row(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.user_id, u.org_id, t.role, t.label, t.created_at, t.revoked_at, t.secret_hash, \
             u.name AS user_name, o.kind FROM api_tokens t JOIN users u ON u.id = t.user_id \
             JOIN organisations o ON o.id = u.org_id WHERE t.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TokenRow {
            info: token_from_row(&row)?,
            secret_hash: row.try_get("secret_hash")?,
            user_name: row.try_get("user_name")?,
            org_kind: parse_enum(&row.try_get::<String, _>("kind")?, OrgKind::parse)?,
        }))
    }

    pub async fn list_tokens(&self, scope: Scope) -> Result<Vec<TokenInfo>, StoreError> {
        self.scoped(
            "SELECT t.id, t.user_id, u.org_id, t.role, t.label, t.created_at, t.revoked_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id",
            "u.org_id",
            scope,
            "t.created_at",
            token_from_row,
        )
        .await
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<TokenInfo, StoreError> {
        let actor = actor.clone();
        let id = id.to_owned();
        let revoked = |info: &TokenInfo| ControlEvent::TokenRevoked {
            token_id: info.id.clone(),
        };
        let info = self.write("id", Some(revoked), move |c| {
            Box::pin(async move {
                let now = micros(now_micros());
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(now).bind(id.as_str()).execute(&mut *c).await?;
                let row = sqlx::query(
                    "SELECT t.id, t.user_id, u.org_id, t.role, t.label, t.created_at, t.revoked_at \
                     FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1")
                    .bind(id.as_str()).fetch_optional(&mut *c).await?.ok_or(StoreError::NotFound("token"))?;
                let info = token_from_row(&row)?;
                let audit = if done.rows_affected() == 1 {
                    let mut a = NewAudit::change(&actor, "token.revoke", format!("token/{id}"), String::new());
                    a.org_id = Some(info.org_id);
                    vec![a]
                } else {
                    Vec::new()
                };
                Ok((info, audit))
            })
        }).await?;
        Ok(info)
    }

    // ---- licences -----------------------------------------------------------------------

    pub async fn create_licence(
        &self,
        actor: &Actor,
        new: NewLicence,
    ) -> Result<Licence, StoreError> {
        let actor = actor.clone();
        self.write("flow_id", Some(ControlEvent::licence_changed), move |c| {
            Box::pin(async move {
                let kind = sqlx::query("SELECT kind FROM organisations WHERE id = $1")
                    .bind(new.org_id.to_string()).fetch_optional(&mut *c).await?
                    .ok_or(StoreError::Invalid { field: "org_id".into(), message: "no such organisation".into() })?;
                if kind.try_get::<String, _>(0)? != OrgKind::RightsHolder.as_str() {
                    return Err(StoreError::Invalid { field: "org_id".into(), message: "licences are held by rights-holding organisations".into() });
                }
                sqlx::query("SELECT id FROM flows WHERE id = $1")
                    .bind(new.flow_id.to_string()).fetch_optional(&mut *c).await?
                    .ok_or(StoreError::Invalid { field: "flow_id".into(), message: "no such flow".into() })?;
                let now = now_micros();
                let l = Licence {
                    id: Uuid::new_v4(), org_id: new.org_id, flow_id: new.flow_id, valid_from: new.valid_from,
                    valid_until: new.valid_until, max_concurrent_receivers: new.max_concurrent_receivers,
                    allowed_networks: new.allowed_networks, encryption_required: new.encryption_required,
                    passphrase: Some(new.passphrase), state: LicenceState::Active, created_at: now, updated_at: now,
                };
                sqlx::query(
                    "INSERT INTO licences (id, org_id, flow_id, valid_from, valid_until, max_concurrent_receivers, \
                     allowed_networks, encryption_required, passphrase, state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
                    .bind(l.id.to_string()).bind(l.org_id.to_string()).bind(l.flow_id.to_string())
                    .bind(micros(l.valid_from)).bind(micros(l.valid_until)).bind(i64::from(l.max_concurrent_receivers))
                    .bind(networks_text(&l.allowed_networks)).bind(i64::from(l.encryption_required))
                    .bind(l.passphrase.as_ref().map(|p| p.expose().to_owned()))
                    .bind(l.state.as_str()).bind(micros(now)).bind(micros(now))
                    .execute(&mut *c).await
                    .map_err(|e| match StoreError::from_sqlx(e, "flow_id") {
                        StoreError::Conflict { field, .. } => StoreError::Conflict { field, message: "the organisation already holds a licence for this flow (revoke it first)".into() },
                        e => e,
                    })?;
                let a = licence_audit(&actor, "licence.create", &l, format!(
                    "{} .. {}, max {}, networks {}", l.valid_from, l.valid_until, l.max_concurrent_receivers, networks_text(&l.allowed_networks)));
                Ok((l, vec![a]))
            })
        }).await
    }

    pub async fn list_licences(
        &self,
        filter: &LicenceFilter,
        scope: Scope,
    ) -> Result<Vec<Licence>, StoreError> {
        let mut cond = Conditions::default();
        if let Scope::Org(id) = scope {
            cond.push_uuid("l.org_id", Some(id));
        }
        cond.push_uuid("l.org_id", filter.org_id);
        cond.push_uuid("l.flow_id", filter.flow_id);
        if let Some(s) = filter.state {
            cond.push("l.state =", Arg::Text(s.as_str().into()));
        }
        let sql = format!(
            "SELECT {LICENCE_COLUMNS} FROM licences l {} ORDER BY l.created_at, l.id",
            cond.clause()
        );
        let rows = cond.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(licence_from_row).collect()
    }

    pub async fn get_licence(&self, id: Uuid, scope: Scope) -> Result<Licence, StoreError> {
        let mut cond = Conditions::default();
        cond.push_uuid("l.id", Some(id));
        if let Scope::Org(org) = scope {
            cond.push_uuid("l.org_id", Some(org));
        }
        let sql = format!("SELECT {LICENCE_COLUMNS} FROM licences l {}", cond.clause());
        let row = cond
            .bind(sqlx::query(&sql))
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("licence"))?;
        licence_from_row(&row)
    }

    /// Moves a licence to `target`: active ⇄ disabled, anything but revoked → revoked.
    /// Setting the state it already has changes nothing and writes no audit entry.
    pub async fn set_licence_state(
        &self,
        actor: &Actor,
        id: Uuid,
        target: LicenceState,
        reason: String,
    ) -> Result<(Licence, bool), StoreError> {
        let actor = actor.clone();
        let changed = |(l, _): &(Licence, bool)| ControlEvent::licence_changed(l);
        self.write("state", Some(changed), move |c| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "SELECT {LICENCE_COLUMNS} FROM licences l WHERE l.id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&mut *c)
                .await?
                .ok_or(StoreError::NotFound("licence"))?;
                let mut l = licence_from_row(&row)?;
                if l.state == target {
                    return Ok(((l, false), Vec::new()));
                }
                if l.state == LicenceState::Revoked {
                    return Err(StoreError::Conflict {
                        field: "state".into(),
                        message: "the licence is revoked, which is final".into(),
                    });
                }
                let now = now_micros();
                sqlx::query(
                    "UPDATE licences SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4",
                )
                .bind(target.as_str())
                .bind(micros(now))
                .bind(id.to_string())
                .bind(l.state.as_str())
                .execute(&mut *c)
                .await?;
                let action = match target {
                    LicenceState::Active => "licence.enable",
                    LicenceState::Disabled => "licence.disable",
                    LicenceState::Revoked => "licence.revoke",
                };
                l.state = target;
                l.updated_at = now;
                let a = licence_audit(&actor, action, &l, reason);
                Ok(((l, true), vec![a]))
            })
        })
        .await
    }

    /// Active licences whose window ended in `(since, now]`, and the next window end after
    /// `now` (for the expiry watcher).
    pub(crate) async fn licences_ending(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Licence>, Option<DateTime<Utc>>), StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {LICENCE_COLUMNS} FROM licences l WHERE l.state = 'active' AND l.valid_until > $1 \
             ORDER BY l.valid_until LIMIT 1000"
        ))
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await?;
        let mut ended = Vec::new();
        for row in &rows {
            let l = licence_from_row(row)?;
            if l.valid_until > now {
                return Ok((ended, Some(l.valid_until)));
            }
            ended.push(l);
        }
        // A full page of ended licences: look again right away.
        let next = (rows.len() == 1000).then_some(now);
        Ok((ended, next))
    }

    // ---- access decision and audit ------------------------------------------------------

    /// Reads organisation, flow and the relevant licence in one statement. `org` and `flow` are
    /// names or ids. A live licence is preferred over a revoked one. `elsewhere` counts the
    /// licence's open sessions held by nodes other than `node` that reported since
    /// `alive_since`: a node that stopped reporting holds no receivers.
    pub async fn decision_row(
        &self,
        org: &str,
        flow: &str,
        node: &str,
        alive_since: DateTime<Utc>,
    ) -> Result<DecisionRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT o.id AS o_id, o.kind AS o_kind, f.id AS f_id, {LICENCE_COLUMNS}, \
             (SELECT COUNT(*) FROM receiver_sessions s JOIN nodes n ON n.name = s.node \
              WHERE s.licence_id = l.id AND s.disconnected_at IS NULL AND s.node <> $3 \
              AND n.last_seen >= $4) AS elsewhere \
             FROM (SELECT 1 AS one) x \
             LEFT JOIN organisations o ON o.name = $1 OR o.id = $1 \
             LEFT JOIN flows f ON f.name = $2 OR f.id = $2 \
             LEFT JOIN licences l ON l.org_id = o.id AND l.flow_id = f.id \
             ORDER BY CASE WHEN l.state = 'revoked' THEN 1 ELSE 0 END, l.updated_at DESC LIMIT 1"
        ))
        .bind(org)
        .bind(flow)
        .bind(node)
        .bind(micros(alive_since))
        .fetch_one(&self.pool)
        .await?;
        let elsewhere: i64 = row.try_get("elsewhere")?;
        let org = match row.try_get::<Option<String>, _>("o_id")? {
            Some(id) => Some((
                uuid(&id)?,
                parse_enum(&row.try_get::<String, _>("o_kind")?, OrgKind::parse)?,
            )),
            None => None,
        };
        let flow_id = opt_uuid(row.try_get("f_id")?)?;
        let licence = if row.try_get::<Option<String>, _>("id")?.is_some() {
            Some(licence_from_row(&row)?)
        } else {
            None
        };
        Ok(DecisionRow {
            org,
            flow_id,
            licence,
            elsewhere: u32::try_from(elsewhere).unwrap_or(u32::MAX),
        })
    }

    /// Appends entries in one transaction of their own.
    pub async fn append_audit(&self, entries: &[NewAudit]) -> Result<(), StoreError> {
        self.append_decisions(entries, None).await
    }

    /// Appends decision entries in one transaction; with `spooled` = (counter, n), records in
    /// the same transaction that the local decision spool whose progress is kept in that
    /// counter is committed up to number n.
    pub(crate) async fn append_decisions(
        &self,
        entries: &[NewAudit],
        spooled: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_audit(&mut tx, entries).await?;
        if let Some((counter, n)) = spooled {
            let n = i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("spool {n}")))?;
            sqlx::query("UPDATE counters SET value = $1 WHERE name = $2 AND value < $1")
                .bind(n)
                .bind(counter)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How far the local decision spool whose progress is kept in `counter` is committed (see
    /// [`Store::append_decisions`]); creates the counter at 0 when there is none yet.
    pub(crate) async fn spool_committed(&self, counter: &str) -> Result<u64, StoreError> {
        sqlx::query(
            "INSERT INTO counters (name, value) SELECT $1, 0 \
             WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = $2)",
        )
        .bind(counter)
        .bind(counter)
        .execute(&self.pool)
        .await?;
        let v: i64 = sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(counter)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("spool counter {v}")))
    }

    /// Per licence, the receivers open at nodes other than `node` that reported since
    /// `alive_since` (what [`Store::decision_row`] counts as `elsewhere`), for the decision
    /// index.
    pub(crate) async fn sessions_elsewhere(
        &self,
        node: &str,
        alive_since: DateTime<Utc>,
    ) -> Result<HashMap<Uuid, u32>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.licence_id, COUNT(*) FROM receiver_sessions s JOIN nodes n ON n.name = s.node \
             WHERE s.disconnected_at IS NULL AND s.node <> $1 AND n.last_seen >= $2 \
             GROUP BY s.licence_id",
        )
        .bind(node)
        .bind(micros(alive_since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let n: i64 = row.try_get(1)?;
                Ok((
                    uuid(&row.try_get::<String, _>(0)?)?,
                    u32::try_from(n).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }

    /// Everything [`Store::decision_row`] reads, for every organisation, flow and licence.
    pub(crate) async fn decision_snapshot(&self) -> Result<DecisionSnapshot, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut snap = DecisionSnapshot::default();
        for row in sqlx::query("SELECT id, name, kind FROM organisations")
            .fetch_all(&mut *conn)
            .await?
        {
            let (id, name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let kind = parse_enum(&row.try_get::<String, _>(2)?, OrgKind::parse)?;
            let value = (uuid(&id)?, kind);
            snap.orgs.insert(name, value);
            snap.orgs.insert(id, value);
        }
        for row in sqlx::query("SELECT id, name FROM flows")
            .fetch_all(&mut *conn)
            .await?
        {
            let (id, name): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            let value = uuid(&id)?;
            snap.flows.insert(name, value);
            snap.flows.insert(id, value);
        }
        // The same preference as `decision_row`: live before revoked, then the newest.
        let rows = sqlx::query(&format!(
            "SELECT {LICENCE_COLUMNS} FROM licences l \
             ORDER BY CASE WHEN l.state = 'revoked' THEN 1 ELSE 0 END, l.updated_at DESC"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let l = licence_from_row(row)?;
            snap.licences.entry((l.org_id, l.flow_id)).or_insert(l);
        }
        Ok(snap)
    }

    /// The decision log's progress (see [`DecisionProgress`]).
    pub(crate) fn decision_progress(&self) -> &DecisionProgress {
        &self.decisions
    }

    /// The audit log, filtered and paged. It includes every access decision answered through
    /// this store before the call: it waits (up to 2 s) for the decision log to commit them.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let answered = self.decisions.answered.load(Ordering::Acquire);
        let mut committed = self.decisions.committed.subscribe();
        // (`wait_for`'s guard is dropped at once: it must not live across an await.)
        let caught_up = tokio::time::timeout(
            Duration::from_secs(2),
            committed.wait_for(|c| *c >= answered),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !caught_up {
            tracing::warn!("reading the audit log while answered decisions wait to be committed");
        }
        let mut cond = Conditions::default();
        cond.push_uuid("org_id", filter.org_id);
        cond.push_uuid("flow_id", filter.flow_id);
        cond.push_uuid("licence_id", filter.licence_id);
        if let Some(a) = &filter.action {
            cond.push("action =", Arg::Text(a.clone()));
        }
        if let Some(t) = filter.since {
            cond.push("at >=", Arg::Int(micros(t)));
        }
        if let Some(t) = filter.until {
            cond.push("at <", Arg::Int(micros(t)));
        }
        if let Some(s) = filter.after {
            cond.push("seq >", Arg::Int(s));
        }
        let sql = format!(
            "SELECT seq, at, actor, action, subject, org_id, flow_id, licence_id, decision, reason \
             FROM audit_log {} ORDER BY seq LIMIT {}",
            cond.clause(),
            filter.limit
        );
        let rows = cond.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}

fn licence_audit(actor: &Actor, action: &'static str, l: &Licence, reason: String) -> NewAudit {
    let mut a = NewAudit::change(actor, action, format!("licence/{}", l.id), reason);
    a.org_id = Some(l.org_id);
    a.flow_id = Some(l.flow_id);
    a.licence_id = Some(l.id);
    a
}

fn networks_text(nets: &[IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Now, truncated to the store's microsecond resolution so values round-trip exactly.
pub(crate) fn now_micros() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The feed holds the events of changes, numbered in commit order, with the writer's
    /// origin; a write that changed nothing puts nothing on it, nor do changes without an
    /// event.
    #[tokio::test]
    async fn the_change_feed_holds_each_changes_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let (store, other) = (
            Store::open(&url).await.unwrap(),
            Store::open(&url).await.unwrap(),
        );
        let (mut events, mut on_other) = (store.subscribe(), other.subscribe());
        let actor = Actor("test".into());
        let org = store
            .create_org(&actor, "rhb", OrgKind::RightsHolder)
            .await
            .unwrap();
        let user = store
            .create_user(&actor, org.id, "ana", None)
            .await
            .unwrap();
        let token = store
            .create_token(
                &actor,
                "t1".into(),
                user.id,
                Role::RhbViewer,
                String::new(),
                "h".into(),
            )
            .await
            .unwrap();
        other.revoke_token(&actor, &token.id).await.unwrap();
        // Already revoked: nothing changes, nothing is announced.
        other.revoke_token(&actor, &token.id).await.unwrap();
        let feed = store.changes_after(0, 100).await.unwrap();
        assert_eq!(feed.len(), 1, "{feed:?}");
        assert_eq!(feed[0].origin, other.origin());
        assert_eq!(
            feed[0].event.as_ref().unwrap(),
            &ControlEvent::TokenRevoked {
                token_id: token.id.clone()
            }
        );
        assert_eq!(store.last_change().await.unwrap(), feed[0].seq);
        assert!(
            store
                .changes_after(feed[0].seq, 100)
                .await
                .unwrap()
                .is_empty()
        );
        // The writer's subscribers hear of it once, when it commits; another handle's only
        // through a follower of the feed (see `ControlPlane`).
        assert_eq!(
            on_other.try_recv().ok(),
            Some(ControlEvent::TokenRevoked { token_id: token.id })
        );
        assert!(on_other.try_recv().is_err());
        assert!(events.try_recv().is_err());
    }
}
