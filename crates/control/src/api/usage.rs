//! Accounting reports: receiver sessions and delivered volume per rights holder and flow.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{ANY, AppState, Auth};
use crate::problem::{ApiQuery, Problem};
use crate::usage::{ReceiverSession, SessionFilter, UsageFilter, UsageRow};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SessionQuery {
    org_id: Option<Uuid>,
    flow_id: Option<Uuid>,
    licence_id: Option<Uuid>,
    /// `true`: connected now; `false`: ended.
    open: Option<bool>,
    /// Most sessions to return, 1 to 1000 (default 100), newest first.
    limit: Option<u32>,
}

/// Receiver sessions, newest first; a rights holder sees its own.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "accounting", params(SessionQuery),
    responses((status = 200, body = Vec<ReceiverSession>), (status = 400, body = Problem)))]
pub(super) async fn list_sessions(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> Result<Json<Vec<ReceiverSession>>, Problem> {
    let p = auth.require(ANY)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "between 1 and 1000"));
    }
    let filter = SessionFilter {
        org_id: q.org_id,
        flow_id: q.flow_id,
        licence_id: q.licence_id,
        open: q.open,
        limit,
    };
    Ok(Json(
        s.control.store().list_sessions(&filter, p.scope()).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct UsageQuery {
    org_id: Option<Uuid>,
    flow_id: Option<Uuid>,
    /// From this hour on (RFC 3339; rounded down to the hour).
    since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
}

/// Delivered packets and bytes, sessions started and sessions open, per rights holder and
/// flow; a rights holder sees its own.
#[utoipa::path(get, path = "/api/v1/usage", tag = "accounting", params(UsageQuery),
    responses((status = 200, body = Vec<UsageRow>), (status = 400, body = Problem)))]
pub(super) async fn report(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Vec<UsageRow>>, Problem> {
    let p = auth.require(ANY)?;
    if let (Some(a), Some(b)) = (q.since, q.until)
        && b <= a
    {
        return Err(Problem::invalid(
            "until",
            "the period ends before (or when) it starts",
        ));
    }
    let filter = UsageFilter {
        org_id: q.org_id,
        flow_id: q.flow_id,
        since: q.since,
        until: q.until,
    };
    Ok(Json(
        s.control.store().usage_report(&filter, p.scope()).await?,
    ))
}
