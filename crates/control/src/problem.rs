//! RFC 9457 problem documents, and the request extractors that turn bad input into them.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::store::StoreError;

/// An `application/problem+json` body (RFC 9457), with `field` naming the offending input.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:stadion:problem:invalid-field`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The input at fault: a JSON path (`allowed_networks[1]`), a query or path parameter,
    /// or `body` for the request body as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            kind: format!("urn:stadion:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
        .field(field)
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-field",
            "Invalid field",
            detail,
        )
        .field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no such {what}"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "send a valid API token as `Authorization: Bearer <token>`",
        )
        .field("Authorization")
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Store unavailable",
            "the control plane's store cannot be reached; nothing was changed",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Problem::unavailable(),
            StoreError::Spool(ref why) => {
                tracing::error!(error = %why, "access decision refused");
                Problem::unavailable()
            }
            StoreError::NotFound(what) => Problem::not_found(what),
            StoreError::Conflict { field, message } => {
                Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", message).field(field)
            }
            StoreError::Invalid { field, message } => Problem::invalid(field, message),
            e => {
                tracing::error!(error = %e, "store failure");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the store failed; nothing was changed",
                )
            }
        }
    }
}

/// The name between backticks in serde's "unknown field `x`" / "missing field `x`" messages.
fn backticked(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn join_path(path: &str, name: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A JSON body; malformed, mistyped, unknown or missing fields become problem documents that
/// name the field, an oversized body a 413.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "send the body as `Content-Type: application/json`",
            )
            .field("Content-Type"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Body too large",
                    rejection.body_text(),
                )
                .field("body")
            } else {
                Problem::bad_request("body", rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// An optional JSON body: a request without one (no `Content-Type`, no length or a zero
/// length, not chunked) is `None`; anything else must be valid JSON.
impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Problem> {
        let headers = req.headers();
        let has_body = headers.contains_key(header::CONTENT_TYPE)
            || headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        if !has_body {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Parses a JSON document, naming the field at fault on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                // serde_path_to_error's path already ends in an unknown field's name; a missing
                // field's path is its parent's.
                let field = match backticked(&message) {
                    Some(name) if message.starts_with("missing field") => join_path(&path, name),
                    Some(name) if message.starts_with("unknown field") => {
                        if path.ends_with(name) {
                            path
                        } else {
                            join_path(&path, name)
                        }
                    }
                    _ if path == "." => "body".to_owned(),
                    _ => path,
                };
                Problem::bad_request(field, message)
            }
            _ => Problem::bad_request("body", format!("malformed JSON: {message}")),
        }
    })?;
    de.end()
        .map_err(|e| Problem::bad_request("body", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query parameters; unknown or malformed ones become problem documents naming the parameter.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let field = backticked(message)
                    .or_else(|| message.split_once(':').map(|(f, _)| f))
                    .unwrap_or("query")
                    .to_owned();
                Err(Problem::bad_request(field, message.to_owned()))
            }
            Err(e) => Err(Problem::bad_request("query", e.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        cidr: Vec<String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        max: u32,
        inner: Option<Inner>,
    }

    fn field_of(body: &str) -> Option<String> {
        parse_json::<Outer>(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn problems_name_the_field() {
        assert_eq!(
            field_of(r#"{"name":"a","max":1,"extra":2}"#).as_deref(),
            Some("extra")
        );
        assert_eq!(field_of(r#"{"max":1}"#).as_deref(), Some("name"));
        assert_eq!(field_of(r#"{"name":"a","max":-1}"#).as_deref(), Some("max"));
        assert_eq!(
            field_of(r#"{"name":"a","max":1,"inner":{"cidr":[1]}}"#).as_deref(),
            Some("inner.cidr[0]")
        );
        assert_eq!(
            field_of(r#"{"name":"a","max":1,"inner":{"x":1}}"#).as_deref(),
            Some("inner.x")
        );
        assert_eq!(field_of(r#"{"name":"a""#).as_deref(), Some("body"));
        assert_eq!(
            field_of(r#"{"name":"a","max":1} trailing"#).as_deref(),
            Some("body")
        );
        assert_eq!(field_of("[]").as_deref(), Some("body"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_json::<Outer>(&bytes);
        }
    }
}
