//! The one error body every API answer uses, and how each kind of failure maps to a status.
//!
//! `{"error": {"code": "unit_busy", "message": "…", "details": {…}}}`
//!
//! Three kinds of failure: the user's mistake (4xx, the message says what is wrong), a
//! conflict with the current state (409, re-read and decide again), an infrastructure fault
//! (5xx: the cause chain is logged, the body says only that it failed).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use muster_core::{Refusal, RefusalKind};
use serde::Serialize;
use serde_json::Value;

/// An API failure, ready to become an HTTP answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`not_found`, `unit_busy`, …).
    pub code: &'static str,
    /// What is wrong, for a person. Never holds personal data.
    pub message: String,
    /// Data the caller may need (the incident that holds a unit, the field that is wrong).
    pub details: Option<Value>,
    /// For 5xx only: the cause, logged and never shown.
    cause: Option<anyhow::Error>,
    /// Seconds to wait before trying again (`Retry-After`), for 429 and 503.
    retry_after_s: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            cause: None,
            retry_after_s: None,
        }
    }

    /// 429: too many attempts; try again after this many seconds.
    pub fn too_many(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
        }
    }

    /// Sets the seconds to wait before trying again (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }

    /// The seconds to wait before trying again, when the answer says.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after_s
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400: the request cannot be read.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: the request was read but its content is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: no token or an unknown one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a known token whose role may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503: not ready or shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: an infrastructure fault. The cause is logged when the answer is made, never shown.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the server failed to handle the request; it has been logged".into(),
            details: None,
            cause: Some(cause.into()),
            retry_after_s: None,
        }
    }

    /// The body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

/// The body of every error answer: `{"error": {"code", "message", "details"}}`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a sentence, and data the caller may need.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`not_found`, `unit_busy`, `invalid`, …).
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
    /// Data the caller may need: the field that is wrong, the incident that holds a unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            match &self.cause {
                Some(cause) => tracing::error!(code = self.code, "request failed: {cause:#}"),
                None => tracing::warn!(code = self.code, "{}", self.message),
            }
        }
        let mut answer = HttpResponse::build(self.status);
        let retry_after = match (self.retry_after_s, self.status) {
            (Some(s), _) => Some(s),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(2),
            _ => None,
        };
        if let Some(s) = retry_after {
            answer.insert_header((actix_web::http::header::RETRY_AFTER, s.to_string()));
        }
        answer.json(self.body())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let status = match refusal.kind {
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::AlreadyExists
            | RefusalKind::Ended
            | RefusalKind::UnitBusy { .. }
            | RefusalKind::InvalidTransition
            | RefusalKind::NotNeeded => StatusCode::CONFLICT,
            RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let code = refusal.kind.code();
        let details = serde_json::to_value(&refusal).unwrap_or(Value::Null);
        ApiError::new(status, code, refusal.reason).with_details(details)
    }
}

#[cfg(test)]
mod tests {
    use muster_core::{IncidentId, TaskId};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_busy_unit_is_a_conflict_naming_the_incident() {
        let incident = IncidentId::from_uuid(Uuid::from_u128(7));
        let task = TaskId::from_uuid(Uuid::from_u128(8));
        let e = ApiError::from(Refusal::new(
            RefusalKind::UnitBusy { incident, task },
            "busy",
        ));
        assert_eq!(e.status, StatusCode::CONFLICT);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(body["error"]["code"], "unit_busy");
        assert_eq!(body["error"]["details"]["incident"], incident.to_string());
    }

    #[test]
    fn internal_errors_do_not_show_their_cause() {
        let e = ApiError::internal(anyhow::anyhow!("disk /dev/sda1 on fire"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!serde_json::to_string(&e.body()).unwrap().contains("sda1"));
    }
}
