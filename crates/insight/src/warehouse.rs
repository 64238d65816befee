//! The warehouse: an in-memory SQLite database holding one [`Snapshot`] in the tables of
//! [`crate::schema`], read-only once loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column as _, ConnectOptions, Connection, Executor, Row, Statement, TypeInfo, ValueRef};
use uuid::Uuid;

use crate::occupancy::{Resolution, occupancy};
use crate::records::{DECIDE_ACTION, DecisionDetail, Snapshot};
use crate::schema::{self, Table};
use crate::{InsightError, readonly};

/// One value of a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Cell {
    /// The value as a number, when it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Real(r) => Some(*r),
            _ => None,
        }
    }

    /// The value as JSON (blobs as hex text).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Real(r) => {
                serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into)
            }
            Cell::Text(t) => t.clone().into(),
            Cell::Blob(_) => self.to_string().into(),
        }
    }
}

impl std::fmt::Display for Cell {
    /// As it reads in a table or CSV: NULL as empty text, blobs as hex.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => Ok(()),
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Real(r) => write!(f, "{r}"),
            Cell::Text(t) => f.write_str(t),
            Cell::Blob(b) => b.iter().try_for_each(|x| write!(f, "{x:02x}")),
        }
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_owned())
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<u64> for Cell {
    fn from(v: u64) -> Self {
        Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Cell {
    fn from(v: u32) -> Self {
        Cell::Int(v.into())
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Int(v.into())
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Real(v)
    }
}
impl From<Uuid> for Cell {
    fn from(v: Uuid) -> Self {
        Cell::Text(v.to_string())
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell::Null, Into::into)
    }
}

/// What a query answered: column names and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl QueryResult {
    /// CSV with a header line; NULL is an empty field.
    pub fn write_csv(&self, out: impl std::io::Write) -> Result<(), csv::Error> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(&self.columns)?;
        for row in &self.rows {
            w.write_record(row.iter().map(Cell::to_string))?;
        }
        w.flush()?;
        Ok(())
    }

    /// An array with one object per row, keyed by column name.
    pub fn to_json(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|row| {
                self.columns
                    .iter()
                    .cloned()
                    .zip(row.iter().map(Cell::to_json))
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect::<Vec<serde_json::Value>>()
            .into()
    }
}

/// The loaded records, queryable with SQL.
#[derive(Debug)]
pub struct Warehouse {
    conn: SqliteConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    as_of: DateTime<Utc>,
}

fn iso(t: DateTime<Utc>) -> Cell {
    Cell::Text(t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn epoch(t: DateTime<Utc>) -> Cell {
    Cell::Int(t.timestamp())
}

/// Names by id, for rows that carry ids only.
struct Names(HashMap<Uuid, String>);

impl Names {
    fn get(&self, id: Option<Uuid>) -> Cell {
        id.and_then(|id| self.0.get(&id).cloned()).into()
    }
}

impl Warehouse {
    /// Creates the tables and loads `snapshot` into them: sessions overlapping its period,
    /// usage of the hours in it, audit entries in it. The warehouse is read-only afterwards.
    pub async fn load(snapshot: &Snapshot) -> Result<Warehouse, InsightError> {
        let s = snapshot;
        if s.until <= s.from {
            return Err(InsightError::Period {
                from: s.from.to_rfc3339(),
                until: s.until.to_rfc3339(),
            });
        }
        let options =
            SqliteConnectOptions::from_str("sqlite::memory:")?.disable_statement_logging();
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let orgs = Names(s.orgs.iter().map(|o| (o.id, o.name.clone())).collect());
        let flows = Names(s.flows.iter().map(|f| (f.id, f.name.clone())).collect());
        let mut tables: Vec<(Table, Vec<Vec<Cell>>)> = Vec::new();

        tables.push((
            schema::ORGS,
            s.orgs
                .iter()
                .map(|o| {
                    vec![
                        o.id.into(),
                        o.name.as_str().into(),
                        o.kind.as_str().into(),
                        iso(o.created_at),
                        epoch(o.created_at),
                    ]
                })
                .collect(),
        ));
        tables.push((
            schema::FLOWS,
            s.flows
                .iter()
                .map(|f| {
                    vec![
                        f.id.into(),
                        f.name.as_str().into(),
                        f.description.as_str().into(),
                        f.venue.as_str().into(),
                        f.event_code.as_str().into(),
                        f.transport.as_ref().map(|t| t.redundancy.clone()).into(),
                        f.transport.as_ref().map(|t| t.sources.len() as u64).into(),
                        iso(f.created_at),
                        epoch(f.created_at),
                    ]
                })
                .collect(),
        ));
        tables.push((
            schema::LICENCES,
            s.licences
                .iter()
                .map(|l| {
                    vec![
                        l.id.into(),
                        l.org_id.into(),
                        orgs.get(Some(l.org_id)),
                        l.flow_id.into(),
                        flows.get(Some(l.flow_id)),
                        l.state.as_str().into(),
                        iso(l.valid_from),
                        epoch(l.valid_from),
                        iso(l.valid_until),
                        epoch(l.valid_until),
                        l.max_concurrent_receivers.into(),
                        l.encryption_required.into(),
                        l.allowed_networks.join(",").into(),
                        iso(l.created_at),
                        epoch(l.created_at),
                    ]
                })
                .collect(),
        ));

        // Sessions overlapping the period; open ones last until the snapshot was taken.
        let sessions: Vec<_> = s
            .sessions
            .iter()
            .filter(|x| x.connected_at < s.until && x.disconnected_at.is_none_or(|d| d > s.from))
            .collect();
        tables.push((
            schema::SESSIONS,
            sessions
                .iter()
                .map(|x| {
                    let end = x.disconnected_at.unwrap_or(s.as_of);
                    let seconds = (end - x.connected_at)
                        .num_microseconds()
                        .unwrap_or(0)
                        .max(0) as f64
                        / 1e6;
                    let rate = (seconds > 0.0).then(|| x.bytes as f64 * 8.0 / seconds / 1e6);
                    vec![
                        x.id.into(),
                        x.licence_id.into(),
                        x.org_id.into(),
                        orgs.get(Some(x.org_id)),
                        x.flow_id.into(),
                        flows.get(Some(x.flow_id)),
                        x.kind.as_str().into(),
                        x.peer.as_str().into(),
                        iso(x.connected_at),
                        epoch(x.connected_at),
                        x.disconnected_at.map(iso).unwrap_or(Cell::Null),
                        x.disconnected_at.map(epoch).unwrap_or(Cell::Null),
                        x.disconnected_at.is_none().into(),
                        seconds.into(),
                        x.disconnect_reason.clone().into(),
                        x.packets.into(),
                        x.bytes.into(),
                        rate.into(),
                    ]
                })
                .collect(),
        ));

        let first_hour = Resolution::Hour.floor(s.from.timestamp());
        tables.push((
            schema::USAGE_HOURLY,
            s.usage
                .iter()
                .filter(|h| h.hour.timestamp() >= first_hour && h.hour < s.until)
                .flat_map(|h| h.rows.iter().map(move |r| (h.hour, r)))
                .filter(|(_, r)| r.bytes > 0 || r.packets > 0 || r.sessions > 0)
                .map(|(hour, r)| {
                    vec![
                        iso(hour),
                        epoch(hour),
                        r.org_id.into(),
                        orgs.get(Some(r.org_id)),
                        r.flow_id.into(),
                        flows.get(Some(r.flow_id)),
                        r.packets.into(),
                        r.bytes.into(),
                        (r.bytes as f64 * 8.0 / 3600.0 / 1e6).into(),
                        r.sessions.into(),
                    ]
                })
                .collect(),
        ));

        // Concurrency per rights holder and flow, per hour, up to when the snapshot was taken.
        let mut spans: BTreeMap<(Uuid, Uuid), Vec<(i64, i64)>> = BTreeMap::new();
        for x in &sessions {
            let end = x.disconnected_at.unwrap_or(s.as_of);
            spans
                .entry((x.org_id, x.flow_id))
                .or_default()
                .push((x.connected_at.timestamp(), end.timestamp()));
        }
        let until = s.until.min(s.as_of).timestamp();
        let mut receivers = Vec::new();
        for ((org, flow), spans) in &spans {
            for b in occupancy(spans, Resolution::Hour, s.from.timestamp(), until) {
                if b.sessions == 0 {
                    continue;
                }
                let hour = DateTime::from_timestamp(b.start, 0).unwrap_or_default();
                receivers.push(vec![
                    iso(hour),
                    epoch(hour),
                    (*org).into(),
                    orgs.get(Some(*org)),
                    (*flow).into(),
                    flows.get(Some(*flow)),
                    b.peak.into(),
                    b.mean.into(),
                    b.sessions.into(),
                ]);
            }
        }
        tables.push((schema::RECEIVERS_HOURLY, receivers));

        let audit = s.audit.iter().filter(|a| a.at >= s.from && a.at < s.until);
        let (decisions, changes): (Vec<_>, Vec<_>) = audit.partition(|a| a.action == DECIDE_ACTION);
        tables.push((
            schema::DECISIONS,
            decisions
                .iter()
                .map(|a| {
                    let d = DecisionDetail::parse(&a.decision, &a.reason);
                    vec![
                        a.seq.into(),
                        iso(a.at),
                        epoch(a.at),
                        a.actor.as_str().into(),
                        a.org_id.into(),
                        orgs.get(a.org_id),
                        a.flow_id.into(),
                        flows.get(a.flow_id),
                        a.licence_id.into(),
                        a.decision.as_str().into(),
                        d.refusal.into(),
                        d.source.into(),
                        d.connected.into(),
                        a.subject.as_str().into(),
                        a.reason.as_str().into(),
                    ]
                })
                .collect(),
        ));
        tables.push((
            schema::CHANGES,
            changes
                .iter()
                .map(|a| {
                    vec![
                        a.seq.into(),
                        iso(a.at),
                        epoch(a.at),
                        a.actor.as_str().into(),
                        a.action.as_str().into(),
                        a.subject.as_str().into(),
                        a.org_id.into(),
                        orgs.get(a.org_id),
                        a.flow_id.into(),
                        flows.get(a.flow_id),
                        a.licence_id.into(),
                        a.reason.as_str().into(),
                    ]
                })
                .collect(),
        ));

        let mut tx = conn.begin().await?;
        for (table, rows) in &tables {
            tx.execute(table.create_sql().as_str()).await?;
            let insert = table.insert_sql();
            for row in rows {
                debug_assert_eq!(row.len(), table.columns.len(), "{}", table.name);
                let mut q = sqlx::query::<sqlx::Sqlite>(&insert);
                for cell in row {
                    q = bind(q, cell);
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        conn.execute("PRAGMA query_only = ON").await?;
        Ok(Warehouse {
            conn,
            from: s.from,
            until: s.until,
            as_of: s.as_of,
        })
    }

    /// The period loaded and when the records were read.
    pub fn period(&self) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
        (self.from, self.until, self.as_of)
    }

    /// Runs one read-only statement (see [`readonly`]).
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, InsightError> {
        readonly::check(sql)?;
        let stmt = (&mut self.conn).prepare(sql).await.map_err(refused_write)?;
        let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let rows = stmt
            .query()
            .fetch_all(&mut self.conn)
            .await
            .map_err(refused_write)?;
        let rows = rows.iter().map(cells).collect::<Result<_, _>>()?;
        Ok(QueryResult { columns, rows })
    }

    /// Writes every table as `<table>.csv` into `dir` (created if missing), and the whole
    /// warehouse as the SQLite file `stadion-insight.sqlite` for other tools. Returns the
    /// files written.
    ///
    /// Parquet is not written: the `parquet` crate (with arrow) would roughly double the
    /// build of this crate for what `sqlite` and CSV readers already open everywhere.
    pub async fn export(&mut self, dir: &Path) -> Result<Vec<PathBuf>, InsightError> {
        let write_err = |path: &Path, e: &dyn std::fmt::Display| InsightError::Write {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, &e))?;
        let mut written = Vec::new();
        for table in schema::TABLES {
            let result = self.query(&format!("SELECT * FROM {}", table.name)).await?;
            let path = dir.join(format!("{}.csv", table.name));
            let file = std::fs::File::create(&path).map_err(|e| write_err(&path, &e))?;
            result.write_csv(file).map_err(|e| write_err(&path, &e))?;
            written.push(path);
        }
        let path = dir.join("stadion-insight.sqlite");
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| write_err(&path, &e))?;
        }
        let target = path
            .to_str()
            .ok_or_else(|| write_err(&path, &"the path is not UTF-8"))?;
        // A URI with its own mode: a plain name would inherit the in-memory flag of the
        // warehouse's connection and write nothing to disk.
        let uri = format!(
            "file:{}?mode=rwc",
            target
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23")
        );
        // Only this trusted statement runs with writing allowed (VACUUM INTO writes a new file).
        self.conn.execute("PRAGMA query_only = OFF").await?;
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(uri)
            .execute(&mut self.conn)
            .await;
        self.conn.execute("PRAGMA query_only = ON").await?;
        copied.map_err(|e| write_err(&path, &e))?;
        written.push(path);
        Ok(written)
    }
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>,
    cell: &Cell,
) -> sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>> {
    match cell {
        Cell::Null => q.bind(None::<i64>),
        Cell::Int(i) => q.bind(*i),
        Cell::Real(r) => q.bind(*r),
        Cell::Text(t) => q.bind(t.clone()),
        Cell::Blob(b) => q.bind(b.clone()),
    }
}

/// SQLite's "attempt to write a readonly database" (`SQLITE_READONLY`, 8) is a refused write.
fn refused_write(e: sqlx::Error) -> InsightError {
    let readonly = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code.parse::<i32>().is_ok_and(|c| c & 0xff == 8));
    if readonly {
        InsightError::NotReadOnly(format!("the statement writes ({e})"))
    } else {
        InsightError::Sql(e)
    }
}

/// A row's values by their stored type (SQLite types values, not columns).
fn cells(row: &SqliteRow) -> Result<Vec<Cell>, InsightError> {
    (0..row.len())
        .map(|i| {
            let raw = row.try_get_raw(i)?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            let kind = raw.type_info().name().to_owned();
            Ok(match kind.as_str() {
                "INTEGER" => Cell::Int(row.try_get_unchecked(i)?),
                "REAL" => Cell::Real(row.try_get_unchecked(i)?),
                "BLOB" => Cell::Blob(row.try_get_unchecked(i)?),
                _ => Cell::Text(row.try_get_unchecked(i)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, t};

    async fn loaded() -> Warehouse {
        Warehouse::load(&fixture::snapshot()).await.unwrap()
    }

    async fn rows(w: &mut Warehouse, sql: &str) -> Vec<Vec<Cell>> {
        w.query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.to_owned())
    }

    #[tokio::test]
    async fn records_land_in_typed_tables_with_names_and_both_times() {
        let mut w = loaded().await;
        let counts = rows(
            &mut w,
            "SELECT (SELECT COUNT(*) FROM orgs), (SELECT COUNT(*) FROM flows), (SELECT COUNT(*) FROM licences), \
             (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM usage_hourly), (SELECT COUNT(*) FROM decisions), \
             (SELECT COUNT(*) FROM changes)",
        )
        .await;
        // Session 4 ended before the period, the licence.create at 08:00 is before it, and
        // rhb-two's hour 12 delivered nothing.
        let expected: Vec<Cell> = [3, 2, 3, 3, 5, 4, 1].into_iter().map(Cell::Int).collect();
        assert_eq!(counts[0], expected);

        let open = rows(
            &mut w,
            "SELECT org, flow, connected, connected_epoch, disconnected, open, duration_s, reason \
             FROM sessions WHERE open = 1",
        )
        .await;
        assert_eq!(
            open,
            [vec![
                text("rhb-two"),
                text("ath-100m-final"),
                text("2026-07-24T11:00:00.000Z"),
                Cell::Int(t(11, 0).timestamp()),
                Cell::Null,
                Cell::Int(1),
                Cell::Real(5400.0),
                Cell::Null,
            ]]
        );
        // STRICT tables keep their types; ISO text works with SQLite's date functions.
        let hours = rows(
            &mut w,
            "SELECT strftime('%H', hour), typeof(bytes), mbit_s FROM usage_hourly \
             WHERE org = 'rhb-one' AND flow = 'ath-100m-final' ORDER BY hour_epoch",
        )
        .await;
        assert_eq!(hours.len(), 3);
        assert_eq!(hours[1][..2], [text("11"), text("integer")]);
        assert_eq!(hours[1][2], Cell::Real(8.0));

        let decisions = rows(
            &mut w,
            "SELECT result, reason, source, connected, org FROM decisions ORDER BY seq",
        )
        .await;
        assert_eq!(
            decisions[0],
            [
                text("allow"),
                Cell::Null,
                text("203.0.113.7"),
                Cell::Int(0),
                text("rhb-one")
            ]
        );
        assert_eq!(
            decisions[1],
            [
                text("deny"),
                text("source_network_not_allowed"),
                text("198.51.100.1"),
                Cell::Int(1),
                text("rhb-one")
            ]
        );
        // An unknown organisation has no id, hence no name.
        assert_eq!(decisions[2][4], Cell::Null);
        let changes = rows(&mut w, "SELECT action, org, detail FROM changes").await;
        assert_eq!(
            changes,
            [vec![
                text("licence.disable"),
                text("rhb-two"),
                text("payment overdue")
            ]]
        );
        let flows = rows(
            &mut w,
            "SELECT flow, redundancy, sources FROM flows ORDER BY flow",
        )
        .await;
        assert_eq!(
            flows[0],
            [text("ath-100m-final"), text("none"), Cell::Int(1)]
        );
        assert_eq!(flows[1], [text("ath-100m-heats"), Cell::Null, Cell::Null]);
    }

    #[tokio::test]
    async fn receivers_per_hour_come_from_sessions_spanning_hours() {
        let mut w = loaded().await;
        let got = rows(
            &mut w,
            "SELECT strftime('%H', hour), org, flow, peak, mean, sessions FROM receivers_hourly ORDER BY hour, org, flow",
        )
        .await;
        let row = |h: &str, org: &str, flow: &str, peak: i64, mean: f64| {
            vec![
                text(h),
                text(org),
                text(flow),
                Cell::Int(peak),
                Cell::Real(mean),
                Cell::Int(1),
            ]
        };
        assert_eq!(
            got,
            [
                row("10", "rhb-one", "ath-100m-final", 1, 0.5),
                row("11", "rhb-one", "ath-100m-final", 1, 1.0),
                row("11", "rhb-one", "ath-100m-heats", 1, 10.0 / 60.0),
                row("11", "rhb-two", "ath-100m-final", 1, 1.0),
                row("12", "rhb-one", "ath-100m-final", 1, 0.5),
                // Open: counted up to 12:30, when the snapshot was read.
                row("12", "rhb-two", "ath-100m-final", 1, 1.0),
            ]
        );
    }

    #[tokio::test]
    async fn the_warehouse_refuses_writes() {
        let mut w = loaded().await;
        for sql in [
            "DELETE FROM sessions",
            "CREATE TEMP TABLE x (a)",
            "SELECT 1; DELETE FROM sessions",
            "PRAGMA query_only = OFF",
            // Begins like a query: SQLite's query_only refuses it.
            "WITH doomed AS (SELECT session_id FROM sessions) DELETE FROM sessions WHERE session_id IN doomed",
            "WITH x AS (SELECT 1) INSERT INTO orgs (org) SELECT 'intruder' FROM x",
            "WITH x AS (SELECT 1) UPDATE usage_hourly SET bytes = 0",
        ] {
            match w.query(sql).await {
                Err(InsightError::NotReadOnly(_)) => {}
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert_eq!(
            rows(&mut w, "SELECT COUNT(*) FROM sessions").await,
            [vec![Cell::Int(3)]]
        );
        assert_eq!(
            rows(&mut w, "SELECT SUM(bytes) FROM usage_hourly").await,
            [vec![Cell::Int(8_700_000_000)]]
        );
        // Errors of plain SQL say what SQLite said.
        let err = w
            .query("SELECT nope FROM sessions")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such column: nope"), "{err}");
    }

    #[tokio::test]
    async fn no_secret_reaches_a_table_or_an_export() {
        let mut w = loaded().await;
        let dir = tempfile::tempdir().unwrap();
        let files = w.export(dir.path()).await.unwrap();
        assert_eq!(files.len(), schema::TABLES.len() + 1);
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("secret"), "{}", file.display());
        }
        let sessions = std::fs::read_to_string(dir.path().join("sessions.csv")).unwrap();
        let header: Vec<&str> = schema::SESSIONS.columns.iter().map(|c| c.name).collect();
        assert_eq!(sessions.lines().next().unwrap(), header.join(","));
        assert_eq!(sessions.lines().count(), 4);
        assert!(
            std::fs::metadata(dir.path().join("stadion-insight.sqlite"))
                .unwrap()
                .len()
                > 4096
        );
        // Exporting leaves the warehouse read-only, and can be done again.
        assert!(
            w.query("WITH x AS (SELECT 1) DELETE FROM orgs")
                .await
                .is_err()
        );
        w.export(dir.path()).await.unwrap();
    }

    #[tokio::test]
    async fn results_read_as_csv_and_json() {
        let mut w = loaded().await;
        let r = w
            .query("SELECT org, SUM(bytes) AS bytes, NULL AS unknown FROM usage_hourly GROUP BY org ORDER BY org")
            .await
            .unwrap();
        let mut csv = Vec::new();
        r.write_csv(&mut csv).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "org,bytes,unknown\nrhb-one,6900000000,\nrhb-two,1800000000,\n"
        );
        assert_eq!(
            r.to_json()[1],
            serde_json::json!({"org": "rhb-two", "bytes": 1_800_000_000i64, "unknown": null})
        );
        // An empty answer still names its columns.
        let none = w.query("SELECT org FROM orgs WHERE 0").await.unwrap();
        assert_eq!((none.columns, none.rows.len()), (vec!["org".to_owned()], 0));
    }

    #[tokio::test]
    async fn a_period_that_ends_before_it_starts_is_refused() {
        let mut s = fixture::snapshot();
        s.until = s.from;
        assert!(matches!(
            Warehouse::load(&s).await,
            Err(InsightError::Period { .. })
        ));
    }

    #[tokio::test]
    async fn the_example_queries_of_the_manual_run() {
        let manual = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/insight.md"
        ))
        .unwrap();
        let (_, rest) = manual
            .split_once("```sql\n")
            .expect("docs/insight.md has a sql block");
        let (block, _) = rest.split_once("```").unwrap();
        let mut w = loaded().await;
        let mut ran = 0;
        for statement in block
            .split_inclusive(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let result = w
                .query(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            assert!(
                !result.rows.is_empty(),
                "{statement} finds nothing in the sample day"
            );
            ran += 1;
        }
        assert!(ran >= 5, "{ran} queries");
    }
}
