//! `GET /api/v1/live/outputs`: the node's receivers per flow and rights holder, with their SRT
//! statistics, behind the control plane's bearer tokens. Host admins and operators see every
//! receiver; a rights holder's viewer sees only its own organisation's.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use stadion_control::ControlPlane;
use stadion_control::model::Role;

use crate::node::NodeHandle;

#[derive(Clone)]
struct Api {
    control: ControlPlane,
    node: NodeHandle,
}

/// The live outputs' routes, to merge beside the control plane's router.
pub fn router(control: ControlPlane, node: NodeHandle) -> Router {
    Router::new()
        .route("/api/v1/live/outputs", get(outputs))
        .with_state(Api { control, node })
}

/// An RFC 9457 problem document.
fn problem(status: StatusCode, detail: &str, field: Option<&str>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "detail": detail,
        "field": field,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn outputs(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "a bearer token is required",
            Some("Authorization"),
        );
    };
    let principal = match api.control.authenticate(token.trim()).await {
        Ok(p) => p,
        Err(stadion_control::AuthError::Invalid) => {
            return problem(
                StatusCode::UNAUTHORIZED,
                "the token is unknown, wrong or revoked",
                Some("Authorization"),
            );
        }
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    };
    let mut status = match api.node.status().await {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None),
    };
    if principal.role == Role::RhbViewer {
        for flow in &mut status.flows {
            flow.receivers.retain(|r| r.key.rhb_id == principal.org_id);
        }
    }
    Json(status).into_response()
}
