//! The HTTP API: JSON under `/api/v1/`, bearer tokens, problem documents, OpenAPI at
//! `/api/openapi.json`, `/healthz`, `/readyz`, Prometheus `/metrics`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

mod flows;
mod usage;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::decision::{Denial, Grant};
use crate::model::{
    AuditEntry, Licence, LicenceState, OrgKind, Organisation, Passphrase, Role, TokenInfo, User,
};
use crate::problem::{ApiJson, ApiQuery, Problem};
use crate::service::{AccessRequest, AuthError, ControlPlane, Principal};
use crate::store::{AuditFilter, LicenceFilter, NewLicence, Scope};

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_NAME: usize = 128;
const MAX_TEXT: usize = 4096;
const MAX_NETWORKS: usize = 256;
const MAX_RECEIVERS: u32 = 100_000;

#[derive(Clone)]
struct AppState {
    control: ControlPlane,
    metrics: PrometheusHandle,
}

/// The process-wide Prometheus recorder (installed once; later calls share it).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if the binary installed another recorder first; then /metrics is empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The whole HTTP surface of the control plane. Merge further routes into it to serve them
/// from the same listener.
pub fn router(control: ControlPlane) -> Router {
    let state = AppState {
        control,
        metrics: prometheus(),
    };
    let v1 = Router::new()
        .route("/me", get(me))
        .route("/orgs", get(list_orgs).post(create_org))
        .route("/orgs/{id}", get(get_org))
        .route("/users", get(list_users).post(create_user))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/flows", get(flows::list_flows).post(flows::create_flow))
        .route(
            "/flows/{id}",
            get(flows::get_flow)
                .put(flows::update_flow)
                .delete(flows::delete_flow),
        )
        .route("/flows/{id}/transport", put(flows::set_transport))
        .route(
            "/outputs",
            get(flows::list_outputs).post(flows::create_output),
        )
        .route(
            "/outputs/{id}",
            get(flows::get_output).delete(flows::delete_output),
        )
        .route("/sessions", get(usage::list_sessions))
        .route("/usage", get(usage::report))
        .route("/licences", get(list_licences).post(create_licence))
        .route("/licences/{id}", get(get_licence))
        .route("/licences/{id}/disable", post(disable_licence))
        .route("/licences/{id}/enable", post(enable_licence))
        .route("/licences/{id}/revoke", post(revoke_licence))
        .route("/audit", get(audit))
        .route("/access/decide", post(decide));
    Router::new()
        .nest("/api/v1", v1)
        .route("/api/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { Problem::not_found("route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(record_metrics))
        // Spans carry method, path and status only: never headers (Authorization) or bodies
        // (tokens, passphrases).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(
                    DefaultMakeSpan::new()
                        .level(Level::INFO)
                        .include_headers(false),
                )
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .include_headers(false),
                ),
        )
        .with_state(state)
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("stadion_http_requests_total", "method" => method, "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("stadion_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The authenticated caller; missing, malformed, unknown and revoked tokens are all 401.
struct Auth(Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or_else(Problem::unauthorized)?;
        match state.control.authenticate(token).await {
            Ok(p) => Ok(Auth(p)),
            Err(AuthError::Invalid) => Err(Problem::unauthorized()),
            Err(AuthError::Store(e)) => Err(e.into()),
        }
    }
}

impl Auth {
    fn require(&self, roles: &[Role]) -> Result<&Principal, Problem> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(Problem::forbidden(format!(
                "role {} may not do this",
                self.0.role
            )))
        }
    }
}

const ADMIN: &[Role] = &[Role::HostAdmin];
const HOST: &[Role] = &[Role::HostAdmin, Role::HostOperator];
const ANY: &[Role] = &[Role::HostAdmin, Role::HostOperator, Role::RhbViewer];

/// A path id; text that is not a UUID names nothing, so it is a 404 like an unknown id.
fn path_id(text: &str, what: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|_| Problem::not_found(what))
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err(Problem::invalid(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(Problem::invalid(field, format!("at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(Problem::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

// ---- service endpoints -------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()), responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the store answers a query and takes the access-decision log.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(s): State<AppState>) -> Result<Json<Health>, Problem> {
    s.control
        .store()
        .ping()
        .await
        .map_err(|_| Problem::unavailable())?;
    if !s.control.decision_log_healthy() {
        return Err(Problem::unavailable());
    }
    Ok(Json(Health { status: "ready" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "service", security(()), responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service", security(()), responses((status = 200, body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The caller, as its token identifies it.
#[utoipa::path(get, path = "/api/v1/me", tag = "tokens", responses((status = 200, body = Principal), (status = 401, body = Problem)))]
async fn me(auth: Auth) -> Result<Json<Principal>, Problem> {
    Ok(Json(auth.require(ANY)?.clone()))
}

// ---- organisations and users -------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    /// Unique name, e.g. the broadcaster's short name (`nbc`, `bbc`).
    name: String,
    kind: OrgKind,
}

/// Organisations: all for host roles, its own for an RHB.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", responses((status = 200, body = Vec<Organisation>)))]
async fn list_orgs(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<Organisation>>, Problem> {
    let p = auth.require(ANY)?;
    Ok(Json(s.control.store().list_orgs(p.scope()).await?))
}

/// Creates an organisation (host admin).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = NewOrg,
    responses((status = 201, body = Organisation), (status = 409, body = Problem), (status = 400, body = Problem)))]
async fn create_org(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewOrg>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    check_name("name", &body.name, MAX_NAME)?;
    Ok(created(
        s.control
            .store()
            .create_org(&p.actor(), &body.name, body.kind)
            .await?,
    ))
}

/// One organisation (404 for another RHB's).
#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "orgs", params(("id" = Uuid, Path)),
    responses((status = 200, body = Organisation), (status = 404, body = Problem)))]
async fn get_org(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Organisation>, Problem> {
    let p = auth.require(ANY)?;
    let id = path_id(&id, "organisation")?;
    Ok(Json(s.control.store().get_org(id, p.scope()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    org_id: Uuid,
    /// Unique user name.
    name: String,
    email: Option<String>,
}

/// Users: all for host roles, its own organisation's for an RHB.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = Vec<User>)))]
async fn list_users(State(s): State<AppState>, auth: Auth) -> Result<Json<Vec<User>>, Problem> {
    let p = auth.require(ANY)?;
    Ok(Json(s.control.store().list_users(p.scope()).await?))
}

/// Creates a user in an organisation (host admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_user(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    check_name("name", &body.name, MAX_NAME)?;
    if let Some(email) = &body.email {
        check_name("email", email, MAX_NAME)?;
        if !email.contains('@') {
            return Err(Problem::invalid("email", "not an e-mail address"));
        }
    }
    Ok(created(
        s.control
            .store()
            .create_user(&p.actor(), body.org_id, &body.name, body.email)
            .await?,
    ))
}

// ---- tokens ------------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    user_id: Uuid,
    /// Must suit the user's organisation: host roles for the host, `rhb_viewer` for an RHB.
    role: Role,
    #[serde(default)]
    label: String,
}

/// A new token: `token` is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedToken {
    token: String,
    info: TokenInfo,
}

/// Token metadata (never the secrets): all for host roles, own organisation's for an RHB.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<TokenInfo>)))]
async fn list_tokens(
    State(s): State<AppState>,
    auth: Auth,
) -> Result<Json<Vec<TokenInfo>>, Problem> {
    let p = auth.require(ANY)?;
    Ok(Json(s.control.store().list_tokens(p.scope()).await?))
}

/// Mints a token for a user (host admin).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = Problem)))]
async fn create_token(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    if !body.label.is_empty() {
        check_name("label", &body.label, MAX_NAME)?;
    }
    let (info, secret) = s
        .control
        .create_token(&p.actor(), body.user_id, body.role, body.label)
        .await?;
    Ok(created(CreatedToken {
        token: secret.expose().to_owned(),
        info,
    }))
}

/// Revokes a token; it stops working at once (host admin).
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = TokenInfo), (status = 404, body = Problem)))]
async fn revoke_token(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<TokenInfo>, Problem> {
    let p = auth.require(ADMIN)?;
    if id.len() > MAX_NAME {
        return Err(Problem::not_found("token"));
    }
    Ok(Json(s.control.revoke_token(&p.actor(), &id).await?))
}

// ---- licences ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLicenceBody {
    /// The rights-holding organisation.
    org_id: Uuid,
    flow_id: Uuid,
    valid_from: DateTime<Utc>,
    /// Must be after `valid_from`.
    valid_until: DateTime<Utc>,
    max_concurrent_receivers: u32,
    /// CIDR networks (or single addresses) receivers may connect from; at least one.
    allowed_networks: Vec<String>,
    #[serde(default = "yes")]
    encryption_required: bool,
    /// SRT passphrase, 10 to 79 characters; generated when absent.
    #[schema(value_type = Option<String>)]
    passphrase: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct LicenceQuery {
    org_id: Option<Uuid>,
    flow_id: Option<Uuid>,
    state: Option<LicenceState>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StateChange {
    /// Why, for the audit log.
    #[serde(default)]
    reason: String,
}

fn shown(p: &Principal, mut l: Licence) -> Licence {
    if !p.may_read_passphrase(&l) {
        l.passphrase = None;
    }
    l
}

fn parse_networks(texts: &[String]) -> Result<Vec<IpNet>, Problem> {
    if texts.is_empty() {
        return Err(Problem::invalid(
            "allowed_networks",
            "name at least one network (0.0.0.0/0 and ::/0 allow any)",
        ));
    }
    if texts.len() > MAX_NETWORKS {
        return Err(Problem::invalid(
            "allowed_networks",
            format!("at most {MAX_NETWORKS} networks"),
        ));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    Problem::invalid(
                        format!("allowed_networks[{i}]"),
                        format!("{t:?} is not a CIDR network such as 203.0.113.0/24"),
                    )
                })
        })
        .collect()
}

/// Licences: all for host roles (filterable), its own for an RHB.
#[utoipa::path(get, path = "/api/v1/licences", tag = "licences", params(LicenceQuery),
    responses((status = 200, body = Vec<Licence>)))]
async fn list_licences(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<LicenceQuery>,
) -> Result<Json<Vec<Licence>>, Problem> {
    let p = auth.require(ANY)?;
    let filter = LicenceFilter {
        org_id: q.org_id,
        flow_id: q.flow_id,
        state: q.state,
    };
    let list = s.control.store().list_licences(&filter, p.scope()).await?;
    Ok(Json(list.into_iter().map(|l| shown(p, l)).collect()))
}

/// Grants a rights holder a licence to a flow (host admin).
#[utoipa::path(post, path = "/api/v1/licences", tag = "licences", request_body = NewLicenceBody,
    responses((status = 201, body = Licence), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_licence(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(b): ApiJson<NewLicenceBody>,
) -> Result<Response, Problem> {
    let p = auth.require(ADMIN)?;
    if b.valid_until <= b.valid_from {
        return Err(Problem::invalid(
            "valid_until",
            "the validity window ends before (or when) it starts",
        ));
    }
    if b.max_concurrent_receivers > MAX_RECEIVERS {
        return Err(Problem::invalid(
            "max_concurrent_receivers",
            format!("at most {MAX_RECEIVERS}"),
        ));
    }
    let allowed_networks = parse_networks(&b.allowed_networks)?;
    let passphrase = match b.passphrase {
        Some(text) => Passphrase::new(text).map_err(|m| Problem::invalid("passphrase", m))?,
        None => Passphrase::generate(),
    };
    let new = NewLicence {
        org_id: b.org_id,
        flow_id: b.flow_id,
        valid_from: b.valid_from,
        valid_until: b.valid_until,
        max_concurrent_receivers: b.max_concurrent_receivers,
        allowed_networks,
        encryption_required: b.encryption_required,
        passphrase,
    };
    let l = s.control.create_licence(&p.actor(), new).await?;
    Ok(created(shown(p, l)))
}

/// One licence; another RHB's is 404, as if it did not exist.
#[utoipa::path(get, path = "/api/v1/licences/{id}", tag = "licences", params(("id" = Uuid, Path)),
    responses((status = 200, body = Licence), (status = 404, body = Problem)))]
async fn get_licence(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Licence>, Problem> {
    let p = auth.require(ANY)?;
    let l = s
        .control
        .store()
        .get_licence(path_id(&id, "licence")?, p.scope())
        .await?;
    Ok(Json(shown(p, l)))
}

async fn change_state(
    s: AppState,
    auth: Auth,
    roles: &[Role],
    id: String,
    target: LicenceState,
    body: Option<ApiJson<StateChange>>,
) -> Result<Json<Licence>, Problem> {
    let id = path_id(&id, "licence")?;
    if auth.0.role == Role::RhbViewer {
        // Another RHB's licence must be indistinguishable from a missing one: 404 before 403.
        s.control.store().get_licence(id, auth.0.scope()).await?;
    }
    let p = auth.require(roles)?;
    let reason = body.map(|ApiJson(b)| b.reason).unwrap_or_default();
    if reason.chars().count() > MAX_TEXT {
        return Err(Problem::invalid(
            "reason",
            format!("at most {MAX_TEXT} characters"),
        ));
    }
    let l = s
        .control
        .set_licence_state(&p.actor(), id, target, reason)
        .await?;
    Ok(Json(shown(p, l)))
}

/// Disables a licence (reversible); live receivers are cut (host admin or operator).
#[utoipa::path(post, path = "/api/v1/licences/{id}/disable", tag = "licences", params(("id" = Uuid, Path)), request_body(content = Option<StateChange>),
    responses((status = 200, body = Licence), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn disable_licence(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<ApiJson<StateChange>>,
) -> Result<Json<Licence>, Problem> {
    change_state(s, auth, HOST, id, LicenceState::Disabled, body).await
}

/// Enables a disabled licence (host admin or operator).
#[utoipa::path(post, path = "/api/v1/licences/{id}/enable", tag = "licences", params(("id" = Uuid, Path)), request_body(content = Option<StateChange>),
    responses((status = 200, body = Licence), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn enable_licence(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<ApiJson<StateChange>>,
) -> Result<Json<Licence>, Problem> {
    change_state(s, auth, HOST, id, LicenceState::Active, body).await
}

/// Revokes a licence, finally; live receivers are cut (host admin).
#[utoipa::path(post, path = "/api/v1/licences/{id}/revoke", tag = "licences", params(("id" = Uuid, Path)), request_body(content = Option<StateChange>),
    responses((status = 200, body = Licence), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn revoke_licence(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: Option<ApiJson<StateChange>>,
) -> Result<Json<Licence>, Problem> {
    change_state(s, auth, ADMIN, id, LicenceState::Revoked, body).await
}

// ---- audit and access --------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    org_id: Option<Uuid>,
    flow_id: Option<Uuid>,
    licence_id: Option<Uuid>,
    /// e.g. `licence.revoke`, `access.decide`.
    action: Option<String>,
    /// Entries at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Paging cursor: entries after this sequence number (the previous page's `next_after`).
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// The audit log, oldest first, filtered and paged; an RHB sees its own organisation's entries.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem)))]
async fn audit(
    State(s): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, Problem> {
    let p = auth.require(ANY)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "between 1 and 1000"));
    }
    let org_id = match p.scope() {
        Scope::All => q.org_id,
        Scope::Org(own) if q.org_id.is_none_or(|o| o == own) => Some(own),
        // Another organisation's entries: as if there were none.
        Scope::Org(_) => {
            return Ok(Json(AuditPage {
                entries: Vec::new(),
                next_after: None,
            }));
        }
    };
    let filter = AuditFilter {
        org_id,
        flow_id: q.flow_id,
        licence_id: q.licence_id,
        action: q.action,
        since: q.since,
        until: q.until,
        after: q.after,
        limit,
    };
    // Read your decisions: those answered before this request are committed first.
    match tokio::time::timeout(Duration::from_secs(2), s.control.flush_decisions()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => return Err(Problem::unavailable()),
    }
    let entries = s.control.store().audit(&filter).await?;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}

/// The answer to an access question: a grant or a denial.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecideResponse {
    pub allowed: bool,
    pub grant: Option<Grant>,
    pub denial: Option<Denial>,
}

/// Asks the access decision, as a data plane does (host admin or operator). The passphrase is
/// in the grant for host admins only.
#[utoipa::path(post, path = "/api/v1/access/decide", tag = "access", request_body = AccessRequest,
    responses((status = 200, body = DecideResponse), (status = 503, body = Problem)))]
async fn decide(
    State(s): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<AccessRequest>,
) -> Result<Json<DecideResponse>, Problem> {
    let p = auth.require(HOST)?;
    let decision = s.control.decide(&p.actor().0, &req).await?;
    Ok(Json(match decision {
        Ok(mut grant) => {
            if p.role != Role::HostAdmin {
                grant.passphrase = None;
            }
            DecideResponse {
                allowed: true,
                grant: Some(grant),
                denial: None,
            }
        }
        Err(denial) => DecideResponse {
            allowed: false,
            grant: None,
            denial: Some(denial),
        },
    }))
}

// ---- OpenAPI -----------------------------------------------------------------------------

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "stadion control plane", description = "Organisations, tokens, flows with their sources and push outputs, broadcast licences, access decisions, accounting and the audit log. Errors are RFC 9457 problem documents."),
    paths(healthz, readyz, metrics_text, openapi, me, list_orgs, create_org, get_org, list_users, create_user,
        list_tokens, create_token, revoke_token, flows::list_flows, flows::create_flow, flows::get_flow,
        flows::update_flow, flows::delete_flow, flows::set_transport, flows::list_outputs, flows::create_output,
        flows::get_output, flows::delete_output, usage::list_sessions, usage::report, list_licences, create_licence,
        get_licence, disable_licence, enable_licence, revoke_licence, audit, decide),
    components(schemas(Problem, crate::decision::Refusal)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// The OpenAPI document, for tools that want it without a server.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
