//! Flows with their transport, and push outputs.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ADMIN, ANY, AppState, Auth, MAX_NAME, MAX_TEXT, check_name, created, path_id};
use crate::model::{Flow, Role};
use crate::problem::{ApiJson, ApiQuery, Problem};
use crate::service::Principal;
use crate::store::{FlowUpdate, NewOutput, OutputFilter};
use crate::transport::{PushOutput, PushTarget, Transport};

/// What a caller sees of a flow: rights holders no transport, operators no passphrases.
fn shown(p: &Principal, mut flow: Flow) -> Flow {
    match p.role {
        Role::HostAdmin => {}
        Role::HostOperator => {
            if let Some(t) = &mut flow.transport {
                t.redact();
            }
        }
        Role::RhbViewer => flow.transport = None,
    }
    flow
}

fn check_texts(description: &str, venue: &str, event_code: &str) -> Result<(), Problem> {
    check_name("venue", venue, MAX_NAME)?;
    check_name("event_code", event_code, MAX_NAME)?;
    if description.chars().count() > MAX_TEXT {
        return Err(Problem::invalid(
            "description",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

/// Field errors inside `transport` are reported with their full path.
fn in_transport(e: Problem) -> Problem {
    match e.field.clone() {
        Some(f) if f.starts_with("sources") => e.field(format!("transport.{f}")),
        _ => e,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewFlow {
    /// Unique name, used by data planes (e.g. in the SRT stream id).
    name: String,
    #[serde(default)]
    description: String,
    venue: String,
    /// Sport / event code.
    event_code: String,
    /// Sources and redundancy; none configured when absent.
    transport: Option<Transport>,
}

/// The flow catalogue (transport for host roles only).
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows", responses((status = 200, body = Vec<Flow>)))]
pub(super) async fn list_flows(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<Flow>>, Problem> {
    let p = auth.require(ANY)?;
    let flows = s.control.store().list_flows().await?;
    Ok(Json(flows.into_iter().map(|f| shown(p, f)).collect()))
}

/// Creates a flow, optionally with its transport (host admin).
#[utoipa::path(post, path = "/api/v1/flows", tag = "flows", request_body = NewFlow,
    responses((status = 201, body = Flow), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn create_flow(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewFlow>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    check_name("name", &body.name, MAX_NAME)?;
    check_texts(&body.description, &body.venue, &body.event_code)?;
    if let Some(t) = &body.transport {
        t.validate()
            .map_err(|e| Problem::invalid(format!("transport.{}", e.field), e.message))?;
    }
    let flow = Flow {
        id: Uuid::new_v4(),
        name: body.name,
        description: body.description,
        venue: body.venue,
        event_code: body.event_code,
        created_at: crate::store::now_micros(),
        transport: body.transport,
    };
    let flow = s
        .control
        .create_flow(&p.actor(), flow)
        .await
        .map_err(|e| in_transport(e.into()))?;
    Ok(created(shown(p, flow)))
}

/// One flow.
#[utoipa::path(get, path = "/api/v1/flows/{id}", tag = "flows", params(("id" = Uuid, Path)),
    responses((status = 200, body = Flow), (status = 404, body = Problem)))]
pub(super) async fn get_flow(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Flow>, Problem> {
    let p = auth.require(ANY)?;
    let flow = s.control.store().get_flow(path_id(&id, "flow")?).await?;
    Ok(Json(shown(p, flow)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FlowChange {
    #[serde(default)]
    description: String,
    venue: String,
    event_code: String,
}

/// Changes a flow's description, venue and event code; its name is fixed (host admin).
#[utoipa::path(put, path = "/api/v1/flows/{id}", tag = "flows", params(("id" = Uuid, Path)), request_body = FlowChange,
    responses((status = 200, body = Flow), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn update_flow(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FlowChange>,
) -> Result<Json<Flow>, Problem> {
    let p = auth.require(ADMIN)?;
    let id = path_id(&id, "flow")?;
    check_texts(&body.description, &body.venue, &body.event_code)?;
    let update = FlowUpdate {
        description: body.description,
        venue: body.venue,
        event_code: body.event_code,
    };
    Ok(Json(shown(
        p,
        s.control.update_flow(&p.actor(), id, update).await?,
    )))
}

/// Replaces a flow's sources and redundancy as a whole (host admin). Errors name the field,
/// e.g. `sources[1].address`.
#[utoipa::path(put, path = "/api/v1/flows/{id}/transport", tag = "flows", params(("id" = Uuid, Path)), request_body = Transport,
    responses((status = 200, body = Flow), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn set_transport(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    ApiJson(transport): ApiJson<Transport>,
) -> Result<Json<Flow>, Problem> {
    let p = auth.require(ADMIN)?;
    let id = path_id(&id, "flow")?;
    Ok(Json(shown(
        p,
        s.control
            .set_flow_transport(&p.actor(), id, transport)
            .await?,
    )))
}

/// Deletes a flow no licence refers to (host admin).
#[utoipa::path(delete, path = "/api/v1/flows/{id}", tag = "flows", params(("id" = Uuid, Path)),
    responses((status = 200, body = Flow), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(super) async fn delete_flow(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Flow>, Problem> {
    let p = auth.require(ADMIN)?;
    let id = path_id(&id, "flow")?;
    Ok(Json(shown(p, s.control.delete_flow(&p.actor(), id).await?)))
}

// ---- push outputs --------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewOutputBody {
    flow_id: Uuid,
    /// The licence the push is made under: this flow's, not revoked.
    licence_id: Uuid,
    /// Unique within the flow.
    name: String,
    /// Where to push: `{"kind": "srt_caller", "address": ...}` or `{"kind": "udp", ...}`.
    target: PushTarget,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OutputQuery {
    flow_id: Option<Uuid>,
    org_id: Option<Uuid>,
}

/// Push outputs: all for host roles, its own for a rights holder.
#[utoipa::path(get, path = "/api/v1/outputs", tag = "outputs", params(OutputQuery),
    responses((status = 200, body = Vec<PushOutput>)))]
pub(super) async fn list_outputs(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<OutputQuery>,
) -> Result<Json<Vec<PushOutput>>, Problem> {
    let p = auth.require(ANY)?;
    let filter = OutputFilter {
        flow_id: q.flow_id,
        org_id: q.org_id,
    };
    Ok(Json(
        s.control.store().list_outputs(&filter, p.scope()).await?,
    ))
}

/// Pushes a flow to a rights holder's receiver under its licence (host admin). The target
/// must lie in the licence's allowed networks; a licence requiring encryption takes SRT only.
#[utoipa::path(post, path = "/api/v1/outputs", tag = "outputs", request_body = NewOutputBody,
    responses((status = 201, body = PushOutput), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub(super) async fn create_output(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<NewOutputBody>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    if s.control.store().get_flow(b.flow_id).await.is_err() {
        return Err(Problem::invalid("flow_id", "no such flow"));
    }
    let new = NewOutput {
        flow_id: b.flow_id,
        licence_id: b.licence_id,
        name: b.name,
        target: b.target,
    };
    let out = s
        .control
        .create_output(&p.actor(), new)
        .await
        .map_err(|e| {
            // Target fields are reported under `target`.
            let problem = Problem::from(e);
            match problem.field.clone() {
                Some(f)
                    if f == "address" || f == "kind" || f == "stream_id" || f == "latency_ms" =>
                {
                    problem.field(format!("target.{f}"))
                }
                _ => problem,
            }
        })?;
    Ok(created(out))
}

/// One push output; another rights holder's is 404.
#[utoipa::path(get, path = "/api/v1/outputs/{id}", tag = "outputs", params(("id" = Uuid, Path)),
    responses((status = 200, body = PushOutput), (status = 404, body = Problem)))]
pub(super) async fn get_output(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<PushOutput>, Problem> {
    let p = auth.require(ANY)?;
    Ok(Json(
        s.control
            .store()
            .get_output(path_id(&id, "output")?, p.scope())
            .await?,
    ))
}

/// Removes a push output; the data plane stops pushing (host admin).
#[utoipa::path(delete, path = "/api/v1/outputs/{id}", tag = "outputs", params(("id" = Uuid, Path)),
    responses((status = 200, body = PushOutput), (status = 404, body = Problem)))]
pub(super) async fn delete_output(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<PushOutput>, Problem> {
    let id = path_id(&id, "output")?;
    if auth.0.role == Role::RhbViewer {
        // Another rights holder's output must look like a missing one: 404 before 403.
        s.control.store().get_output(id, auth.0.scope()).await?;
    }
    let p = auth.require(ADMIN)?;
    Ok(Json(s.control.delete_output(&p.actor(), id).await?))
}
