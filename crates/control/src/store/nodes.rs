//! Data-plane nodes: each reports that it is alive, and the receiver sessions of a node that
//! restarted or stopped reporting are closed, so that they neither stay open forever in the
//! accounting nor count against a licence's concurrency.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Actor, NewAudit, Store, StoreError, micros, time};

/// Closes the open sessions of `node` at `at` (or at their start, if later) with `reason`;
/// returns how many, with an audit entry when there were any.
async fn close_sessions(
    conn: &mut AnyConnection,
    node: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<(u64, Vec<NewAudit>), StoreError> {
    let at = micros(at);
    let closed = sqlx::query(
        "UPDATE receiver_sessions SET disconnect_reason = $1, \
         disconnected_at = CASE WHEN connected_at > $2 THEN connected_at ELSE $2 END \
         WHERE node = $3 AND disconnected_at IS NULL",
    )
    .bind(reason)
    .bind(at)
    .bind(node)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let audit = if closed > 0 {
        vec![NewAudit::change(
            &Actor("system/nodes".into()),
            "node.sessions_closed",
            format!("node/{node}"),
            format!("{reason}: {closed} open receiver sessions closed"),
        )]
    } else {
        Vec::new()
    };
    Ok((closed, audit))
}

impl Store {
    /// A node starts: the sessions its previous run left open are closed with reason
    /// `node restarted` (at the previous run's last report), and the node is recorded as
    /// alive now. Returns the number closed and when the previous run last reported.
    pub async fn start_node(
        &self,
        node: &str,
        now: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError> {
        let node = node.to_owned();
        self.write_untracked("node", move |c| {
            Box::pin(async move {
                let previous = sqlx::query("SELECT last_seen FROM nodes WHERE name = $1")
                    .bind(node.as_str())
                    .fetch_optional(&mut *c)
                    .await?
                    .map(|r| r.try_get::<i64, _>(0))
                    .transpose()?
                    .map(time)
                    .transpose()?;
                let (closed, audit) =
                    close_sessions(c, &node, previous.unwrap_or(now), "node restarted").await?;
                sqlx::query(
                    "INSERT INTO nodes (name, started_at, last_seen) VALUES ($1, $2, $2) \
                     ON CONFLICT (name) DO UPDATE SET started_at = $2, last_seen = $2",
                )
                .bind(node.as_str())
                .bind(micros(now))
                .execute(&mut *c)
                .await?;
                Ok(((closed, previous), audit))
            })
        })
        .await
    }

    /// A node reports that it is alive at `now`; the sessions of every node that has not
    /// reported since `stale_before` are closed with reason `node lost` (at its last report).
    /// Returns how many sessions were closed.
    pub async fn node_heartbeat(
        &self,
        node: &str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let node = node.to_owned();
        self.write_untracked("node", move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO nodes (name, started_at, last_seen) VALUES ($1, $2, $2) \
                     ON CONFLICT (name) DO UPDATE SET last_seen = $2",
                )
                .bind(node.as_str())
                .bind(micros(now))
                .execute(&mut *c)
                .await?;
                let lost = sqlx::query(
                    "SELECT DISTINCT n.name, n.last_seen FROM nodes n \
                     JOIN receiver_sessions s ON s.node = n.name AND s.disconnected_at IS NULL \
                     WHERE n.last_seen < $1",
                )
                .bind(micros(stale_before))
                .fetch_all(&mut *c)
                .await?;
                let (mut total, mut audit) = (0, Vec::new());
                for row in lost {
                    let (name, seen): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
                    let (closed, entries) =
                        close_sessions(c, &name, time(seen)?, "node lost").await?;
                    total += closed;
                    audit.extend(entries);
                }
                Ok((total, audit))
            })
        })
        .await
    }

    /// A node stops: its sessions still open are closed with `reason`.
    pub async fn stop_node(
        &self,
        node: &str,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let (node, reason) = (node.to_owned(), reason.to_owned());
        self.write_untracked("node", move |c| {
            Box::pin(async move { close_sessions(c, &node, now, &reason).await })
        })
        .await
    }
}
