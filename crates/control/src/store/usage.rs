//! Accounting: receiver sessions and delivered volume per rights holder, flow and hour.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::{Arg, Conditions, Scope, Store, StoreError, micros, parse_enum, time, uuid};
use crate::usage::{
    ReceiverSession, SessionFilter, SessionKind, UsageEvent, UsageFilter, UsageRecord, UsageRow,
    hour_of,
};

const SESSION_COLUMNS: &str = "id, licence_id, org_id, flow_id, kind, peer, connected_at, \
    disconnected_at, disconnect_reason, packets, bytes";

fn count(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let v: Option<i64> = row.try_get(column)?;
    let v = v.unwrap_or(0);
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v}")))
}

fn session_from_row(row: &AnyRow) -> Result<ReceiverSession, StoreError> {
    Ok(ReceiverSession {
        id: uuid(&row.try_get::<String, _>("id")?)?,
        licence_id: uuid(&row.try_get::<String, _>("licence_id")?)?,
        org_id: uuid(&row.try_get::<String, _>("org_id")?)?,
        flow_id: uuid(&row.try_get::<String, _>("flow_id")?)?,
        kind: parse_enum(&row.try_get::<String, _>("kind")?, SessionKind::parse)?,
        peer: row.try_get("peer")?,
        connected_at: time(row.try_get("connected_at")?)?,
        disconnected_at: row
            .try_get::<Option<i64>, _>("disconnected_at")?
            .map(time)
            .transpose()?,
        disconnect_reason: row.try_get("disconnect_reason")?,
        packets: count(row, "packets")?,
        bytes: count(row, "bytes")?,
    })
}

fn invalid(i: usize, field: &str, message: &str) -> StoreError {
    StoreError::Invalid {
        field: format!("records[{i}].{field}"),
        message: message.into(),
    }
}

/// Adds delivered volume to the hour bucket of `at`.
async fn add_to_bucket(
    conn: &mut AnyConnection,
    org_id: &str,
    flow_id: &str,
    hour: i64,
    packets: i64,
    bytes: i64,
) -> Result<(), StoreError> {
    if packets == 0 && bytes == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO usage_hourly (org_id, flow_id, hour, packets, bytes) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id, flow_id, hour) DO UPDATE SET \
         packets = usage_hourly.packets + excluded.packets, bytes = usage_hourly.bytes + excluded.bytes",
    )
    .bind(org_id)
    .bind(flow_id)
    .bind(hour)
    .bind(packets)
    .bind(bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One record from `node`, inside the batch's transaction.
async fn apply(
    conn: &mut AnyConnection,
    node: Option<&str>,
    i: usize,
    r: &UsageRecord,
) -> Result<(), StoreError> {
    let session = r.session.to_string();
    // The session row exists from the first record that mentions it, whichever that is.
    sqlx::query(
        "INSERT INTO receiver_sessions (id, licence_id, org_id, flow_id, kind, peer, connected_at, node) \
         SELECT $1, l.id, l.org_id, l.flow_id, $2, $3, $4, $6 FROM licences l WHERE l.id = $5 \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(session.as_str())
    .bind(r.kind.as_str())
    .bind(r.peer.to_string())
    .bind(micros(r.at))
    .bind(r.licence_id.to_string())
    .bind(node.map(str::to_owned))
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query(
        "SELECT licence_id, org_id, flow_id, packets, bytes, disconnected_at FROM receiver_sessions WHERE id = $1",
    )
    .bind(session.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| invalid(i, "licence_id", "no such licence"))?;
    if row.try_get::<String, _>("licence_id")? != r.licence_id.to_string() {
        return Err(invalid(
            i,
            "session",
            "this session was recorded under another licence",
        ));
    }
    let (org_id, flow_id): (String, String) = (row.try_get("org_id")?, row.try_get("flow_id")?);
    let closed = row.try_get::<Option<i64>, _>("disconnected_at")?.is_some();
    let to_i64 = |v: u64, field: &str| i64::try_from(v).map_err(|_| invalid(i, field, "too large"));
    match &r.event {
        UsageEvent::Connected => {}
        UsageEvent::Delivered { packets, bytes } => {
            let (p, b) = (to_i64(*packets, "packets")?, to_i64(*bytes, "bytes")?);
            sqlx::query("UPDATE receiver_sessions SET packets = packets + $1, bytes = bytes + $2 WHERE id = $3")
                .bind(p)
                .bind(b)
                .bind(session.as_str())
                .execute(&mut *conn)
                .await?;
            add_to_bucket(conn, &org_id, &flow_id, hour_of(r.at), p, b).await?;
        }
        UsageEvent::Disconnected {
            reason,
            packets,
            bytes,
        } => {
            if reason.is_empty()
                || reason.chars().count() > 128
                || reason.chars().any(char::is_control)
            {
                return Err(invalid(
                    i,
                    "reason",
                    "1 to 128 characters without control characters",
                ));
            }
            if closed {
                // Reported twice (e.g. a retried batch): the first one counts.
                return Ok(());
            }
            let (total_p, total_b) = (to_i64(*packets, "packets")?, to_i64(*bytes, "bytes")?);
            let (seen_p, seen_b): (i64, i64) = (row.try_get("packets")?, row.try_get("bytes")?);
            let (extra_p, extra_b) = ((total_p - seen_p).max(0), (total_b - seen_b).max(0));
            sqlx::query(
                "UPDATE receiver_sessions SET packets = packets + $1, bytes = bytes + $2, \
                 disconnected_at = $3, disconnect_reason = $4 WHERE id = $5",
            )
            .bind(extra_p)
            .bind(extra_b)
            .bind(micros(r.at))
            .bind(reason.as_str())
            .bind(session.as_str())
            .execute(&mut *conn)
            .await?;
            add_to_bucket(conn, &org_id, &flow_id, hour_of(r.at), extra_p, extra_b).await?;
        }
    }
    Ok(())
}

impl Store {
    /// Records a batch of usage reports in one transaction: all or none.
    pub async fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        self.record_node_usage(None, records).await
    }

    /// [`Store::record_usage`] for the sessions held by `node` (see [`Store::start_node`]).
    pub async fn record_node_usage(
        &self,
        node: Option<&str>,
        records: &[UsageRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records.to_vec();
        let node = node.map(str::to_owned);
        self.write_untracked("session", move |c| {
            Box::pin(async move {
                for (i, r) in records.iter().enumerate() {
                    apply(c, node.as_deref(), i, r).await?;
                }
                Ok(((), Vec::new()))
            })
        })
        .await
    }

    /// Receiver sessions, newest first; a rights holder sees its own only.
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
        scope: Scope,
    ) -> Result<Vec<ReceiverSession>, StoreError> {
        let mut cond = Conditions::default();
        if let Scope::Org(id) = scope {
            cond.push_uuid("org_id", Some(id));
        }
        cond.push_uuid("org_id", filter.org_id);
        cond.push_uuid("flow_id", filter.flow_id);
        cond.push_uuid("licence_id", filter.licence_id);
        let mut clause = cond.clause();
        if let Some(open) = filter.open {
            let test = if open {
                "disconnected_at IS NULL"
            } else {
                "disconnected_at IS NOT NULL"
            };
            clause = if clause.is_empty() {
                format!("WHERE {test}")
            } else {
                format!("{clause} AND {test}")
            };
        }
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM receiver_sessions {clause} ORDER BY connected_at DESC, id LIMIT {}",
            filter.limit
        );
        let rows = cond.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Delivered volume and sessions per rights holder and flow; a rights holder sees its own.
    pub async fn usage_report(
        &self,
        filter: &UsageFilter,
        scope: Scope,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let since = filter.since.map_or(i64::MIN, hour_of);
        let until = filter.until.map_or(i64::MAX, micros);
        let org = match scope {
            Scope::Org(own) if filter.org_id.is_some_and(|o| o != own) => return Ok(Vec::new()),
            Scope::Org(own) => Some(own),
            Scope::All => filter.org_id,
        };
        let mut cond = Conditions::default();
        cond.push("x.at >=", Arg::Int(since));
        cond.push("x.at <", Arg::Int(until));
        cond.push_uuid("x.org_id", org);
        cond.push_uuid("x.flow_id", filter.flow_id);
        let volume = format!(
            "SELECT x.org_id, x.flow_id, CAST(SUM(x.packets) AS BIGINT) AS packets, \
             CAST(SUM(x.bytes) AS BIGINT) AS bytes FROM \
             (SELECT org_id, flow_id, hour AS at, packets, bytes FROM usage_hourly) x {} \
             GROUP BY x.org_id, x.flow_id",
            cond.clause()
        );
        // Sessions started in the period, and those open now (whenever they started).
        let mut scond = Conditions::default();
        scond.push_uuid("org_id", org);
        scond.push_uuid("flow_id", filter.flow_id);
        let n = scond.args.len();
        let sessions = format!(
            "SELECT org_id, flow_id, \
             CAST(SUM(CASE WHEN connected_at >= ${} AND connected_at < ${} THEN 1 ELSE 0 END) AS BIGINT) AS sessions, \
             CAST(SUM(CASE WHEN disconnected_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS open_sessions \
             FROM receiver_sessions {} GROUP BY org_id, flow_id",
            n + 1,
            n + 2,
            scond.clause()
        );
        let mut conn = self.pool.acquire().await?;
        let mut rows: BTreeMap<(String, String), UsageRow> = BTreeMap::new();
        let blank = |org_id: Uuid, flow_id: Uuid| UsageRow {
            org_id,
            org_name: String::new(),
            flow_id,
            flow_name: String::new(),
            packets: 0,
            bytes: 0,
            sessions: 0,
            open_sessions: 0,
        };
        for r in cond
            .bind(sqlx::query(&volume))
            .fetch_all(&mut *conn)
            .await?
        {
            let (o, f): (String, String) = (r.try_get("org_id")?, r.try_get("flow_id")?);
            let mut row = blank(uuid(&o)?, uuid(&f)?);
            row.packets = count(&r, "packets")?;
            row.bytes = count(&r, "bytes")?;
            rows.insert((o, f), row);
        }
        let q = scond.bind(sqlx::query(&sessions)).bind(since).bind(until);
        for r in q.fetch_all(&mut *conn).await? {
            let (o, f): (String, String) = (r.try_get("org_id")?, r.try_get("flow_id")?);
            let (sessions, open) = (count(&r, "sessions")?, count(&r, "open_sessions")?);
            if sessions == 0 && open == 0 && !rows.contains_key(&(o.clone(), f.clone())) {
                continue;
            }
            let (org_id, flow_id) = (uuid(&o)?, uuid(&f)?);
            let row = rows.entry((o, f)).or_insert_with(|| blank(org_id, flow_id));
            row.sessions = sessions;
            row.open_sessions = open;
        }
        // Names, for people reading the report.
        let names =
            sqlx::query("SELECT id, name FROM organisations UNION ALL SELECT id, name FROM flows")
                .fetch_all(&mut *conn)
                .await?;
        let names: BTreeMap<String, String> = names
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            .collect::<Result<_, StoreError>>()?;
        let mut out: Vec<UsageRow> = rows
            .into_iter()
            .map(|((o, f), mut row)| {
                row.org_name = names.get(&o).cloned().unwrap_or_default();
                row.flow_name = names.get(&f).cloned().unwrap_or_default();
                row
            })
            .collect();
        out.sort_by(|a, b| (&a.org_name, &a.flow_name).cmp(&(&b.org_name, &b.flow_name)));
        Ok(out)
    }
}
