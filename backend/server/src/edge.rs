//! The edge of the operator API: every request body is read here, strictly, and every
//! command is given its key and fingerprint here.
//!
//! - [`Body`]: a JSON body of a known shape. Another content type is 415
//!   `unsupported_media_type`, a body over the configured limit 413 `body_too_large`, bytes
//!   that are not JSON 400 `malformed_json`, JSON of the wrong shape (an unknown field, a
//!   missing one, a wrong type or value) 422 `invalid` naming the field. No answer repeats a
//!   submitted value: it may be personal data.
//! - [`OptionalBody`]: the same, where an empty body means the defaults.
//! - [`command`]: the runner's [`Command`] for a request: the idempotency key in the
//!   caller's scope, the fingerprint of the method, path and body, and the metadata.
//! - [`no_route`], [`query_error`], [`path_error`]: actix's own refusals in the
//!   one error body; a known path with another method is 405 with `Allow`.

use std::future::Future;
use std::pin::Pin;

use actix_web::error::{PathError, PayloadError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use chrono::Utc;
use muster_app::{Command, CommandKey, Fingerprint};
use muster_core::event::redact_values;
use muster_core::value::IdempotencyKey;
use muster_store::EventMetadata;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::ROUTES;

/// A JSON body parsed strictly into `T`, with the JSON itself for the fingerprint.
#[derive(Debug)]
pub struct Body<T>(pub T, pub Value);

/// A JSON body that may be empty (then `T::default()` and `null`).
#[derive(Debug)]
pub struct OptionalBody<T>(pub T, pub Value);

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than the limit of {limit} bytes"),
    )
}

/// The largest body the server reads, in bytes (`max_body_bytes` in the config).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<BodyLimit>()
        .map(|c| c.0)
        .unwrap_or(crate::config::DEFAULT_MAX_BODY_BYTES)
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// Parses JSON bytes strictly into `T`; the error names the field and never the value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Value), ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!(
                "the body is not valid JSON: {}",
                redact_values(&e.to_string())
            ),
        )
        .with_details(serde_json::json!({"line": e.line(), "column": e.column()}))
    })?;
    Ok((from_value(&value)?, value))
}

/// Reads a JSON object strictly into `T`; the error names the field and never the value.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = redact_values(&e.inner().to_string());
        let message = if path == "." {
            format!("the body is not acceptable: {reason}")
        } else {
            format!("{path}: {reason}")
        };
        ApiError::invalid(message).with_details(serde_json::json!({ "field": path }))
    })
}

async fn read_body(req: HttpRequest, payload: &mut Payload) -> Result<web::Bytes, ApiError> {
    let limit = body_limit(&req);
    if let Some(length) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large(limit));
    }
    web::Bytes::from_request(&req, payload)
        .await
        .map_err(|e| match e.as_error::<PayloadError>() {
            Some(PayloadError::Overflow) => too_large(limit),
            _ => match e.as_response_error().status_code() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(limit),
                _ => ApiError::bad_request("unreadable_body", "the body could not be read"),
            },
        })
}

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Fut<Self>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json(&req) {
                return Err(unsupported_media_type());
            }
            let bytes = read_body(req, &mut payload).await?;
            let (parsed, value) = parse_json(&bytes)?;
            Ok(Body(parsed, value))
        })
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalBody<T> {
    type Error = ApiError;
    type Future = Fut<Self>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let json = is_json(&req);
            let bytes = read_body(req, &mut payload).await?;
            if bytes.is_empty() {
                return Ok(OptionalBody(T::default(), Value::Null));
            }
            if !json {
                return Err(unsupported_media_type());
            }
            let (parsed, value) = parse_json(&bytes)?;
            Ok(OptionalBody(parsed, value))
        })
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as application/json",
    )
}

/// The event metadata of a caller's command: who (name, role, agency, credential), through which
/// source, from where (the peer address and this node, when a request is at hand), when.
pub fn metadata(req: Option<&HttpRequest>, caller: &Caller, source: &str) -> EventMetadata {
    EventMetadata {
        actor: Some(caller.name.clone()),
        source: Some(source.into()),
        correlation_id: Some(Uuid::now_v7()),
        causation_id: None,
        occurred_at: Some(Utc::now()),
        peer: req.and_then(|r| r.peer_addr()).map(|a| a.ip().to_string()),
        node: req
            .and_then(|r| r.app_data::<actix_web::web::Data<crate::routes::AppState>>())
            .map(|s| s.node.to_string()),
        credential: caller.credential.clone(),
        role: Some(caller.role.as_str().to_owned()),
        agency: caller.agency.clone(),
    }
}

/// The runner's command for a request: `key` in the caller's scope, fingerprinted by the
/// method, the path and the body's JSON (so a retry with the same body gets the first answer
/// and another body under the same key is refused).
pub fn command(
    req: &HttpRequest,
    caller: &Caller,
    key: IdempotencyKey,
    body: &Value,
    source: &str,
) -> Command {
    let name = format!("{} {}", req.method(), req.path());
    Command {
        key: CommandKey::new(caller.name.clone(), key),
        fingerprint: Fingerprint::of(&name, body),
        metadata: metadata(Some(req), caller, source),
    }
}

/// Whether a route pattern (`/api/units/{id}`) matches a path.
fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut q = path.split('/');
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') || a == b => {}
            _ => return false,
        }
    }
}

/// The methods a known path takes, upper case; empty for an unknown path.
pub fn allowed_methods(path: &str) -> Vec<String> {
    let mut methods: Vec<String> = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, path))
        .map(|(m, _)| m.to_ascii_uppercase())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

/// What answers a request no route took: 405 with `Allow` for a known path, else 404.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() {
        return actix_web::ResponseError::error_response(&ApiError::not_found(
            "there is no such route; see /api/openapi.json",
        ));
    }
    let e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route takes {}", allowed.join(", ")),
    );
    let mut response = actix_web::ResponseError::error_response(&e);
    if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, v);
    }
    response
}

/// An extractor's refusal in the one error body: 400 with `code`, saying which part of the
/// request (`what`) is not acceptable, without the value sent.
fn unreadable(code: &'static str, what: &str, serde_message: Option<String>) -> actix_web::Error {
    let reason = serde_message.map_or_else(|| "it could not be read".into(), |m| redact_values(&m));
    ApiError::bad_request(code, format!("the {what} is not acceptable: {reason}")).into()
}

/// actix's query extractor's refusals in the one error body.
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        QueryPayloadError::Deserialize(e) => Some(e.to_string()),
        _ => None,
    };
    unreadable("invalid_query", "query", message)
}

/// actix's path extractor's refusals in the one error body.
pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        PathError::Deserialize(e) => Some(e.to_string()),
        _ => None,
    };
    unreadable("invalid_path", "path", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_list_their_methods() {
        assert_eq!(allowed_methods("/api/incidents"), vec!["GET", "POST"]);
        assert_eq!(allowed_methods("/api/incidents/abc/close"), vec!["POST"]);
        assert!(allowed_methods("/api/nothing").is_empty());
    }

    #[test]
    fn shape_errors_name_the_field_and_not_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct B {
            n: u32,
        }
        let e = parse_json::<B>(br#"{"n": "Erika Mustermann"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message.starts_with("n: "), "{}", e.message);
        assert!(!e.message.contains("Erika"), "{}", e.message);
        let e = parse_json::<B>(br#"{"n": 1, "x": 2}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
        let e = parse_json::<B>(br#"{"n": 1"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
    }
}
