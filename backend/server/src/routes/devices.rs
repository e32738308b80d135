//! Enrolling a crew's device: `POST /api/units/{id}/device-token` issues the token the unit's
//! phone presents to the mobile gateway (docs/api.md, mobile-api/PROTOCOL.md).
//!
//! Issuing a credential is audited: each token issued appends a `DeviceTokenIssued` event
//! (who, for which unit, until when, and a fingerprint of the token, never the token) to the
//! stream `device-<unit id>`.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use muster_core::UnitId;
use muster_mobile::token::HmacTokens;
use muster_store::{
    Direction, EventMetadata, ExpectedState, NewEvent, ReadFrom, StoreError, StreamName,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Allowed, AppState, Dispatch};
use crate::edge::OptionalBody;
use crate::error::ApiError;

/// Event type of an issued device token.
pub const DEVICE_TOKEN_ISSUED: &str = "DeviceTokenIssued";

/// Longest validity of a device token, hours (a shift and a half).
pub const MAX_VALID_HOURS: u32 = 18;
/// Validity when the request does not say, hours.
pub const DEFAULT_VALID_HOURS: u32 = 12;

/// What the server needs to enrol devices: present when the mobile gateway runs.
#[derive(Clone, Debug)]
pub struct Enrolment {
    /// Issues the tokens the gateway checks.
    pub tokens: Arc<HmacTokens>,
    /// The gateway's port.
    pub gateway_port: u16,
}

/// `POST /api/units/{id}/device-token`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTokenRequest {
    /// How long the token is valid, hours (1 to 18; default 12).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 18)]
    pub valid_hours: Option<u32>,
}

/// The audit record of an issued token (stored in `device-<unit id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTokenIssued {
    /// The unit.
    pub unit: UnitId,
    /// Who asked for it.
    pub issued_by: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// The first 16 hex digits of the token's SHA-256: names it without revealing it.
    pub fingerprint: String,
    /// When it was issued.
    pub at: DateTime<Utc>,
}

/// The stream of a unit's device enrolments.
pub fn device_stream(unit: UnitId) -> StreamName {
    StreamName::parse(format!("device-{unit}"))
        .unwrap_or_else(|_| unreachable!("a uuid makes a valid stream name"))
}

async fn issue(
    state: web::Data<AppState>,
    enrolment: Option<web::Data<Enrolment>>,
    allowed: Allowed<Dispatch>,
    path: web::Path<String>,
    OptionalBody(body, _): OptionalBody<DeviceTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = &allowed.0;
    let Some(enrolment) = enrolment else {
        return Err(ApiError::unavailable(
            "the mobile gateway does not run on this server (no token_secret configured), so device tokens cannot be issued",
        ));
    };
    let unit = super::parse_id("unit", &path, UnitId::parse)?;
    let hours = body.valid_hours.unwrap_or(DEFAULT_VALID_HOURS);
    if !(1..=MAX_VALID_HOURS).contains(&hours) {
        return Err(ApiError::invalid(format!(
            "valid_hours must be a whole number of hours from 1 to {MAX_VALID_HOURS}"
        ))
        .with_details(serde_json::json!({"field": "valid_hours"})));
    }
    // The unit's first event says it is registered; its (long) stream is not read.
    let registered = match state
        .runner
        .store()
        .read_stream(&unit.stream_name(), Direction::Forwards, ReadFrom::Start, 1)
        .await
    {
        Ok(first) => !first.is_empty(),
        Err(StoreError::StreamNotFound(_)) => false,
        Err(e) => return Err(ApiError::internal(e)),
    };
    if !registered {
        return Err(ApiError::not_found(format!("there is no unit {unit}")));
    }
    let now = Utc::now();
    let expires_at = now + Duration::hours(i64::from(hours));
    let token = enrolment.tokens.issue(unit, expires_at);
    let digest = Sha256::digest(token.as_bytes());
    let fingerprint: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let record = DeviceTokenIssued {
        unit,
        issued_by: caller.name.clone(),
        expires_at,
        fingerprint: fingerprint.clone(),
        at: now,
    };
    let event = NewEvent::json(Uuid::now_v7(), DEVICE_TOKEN_ISSUED, 1, &record)
        .map_err(ApiError::internal)?
        .with_metadata(EventMetadata {
            actor: Some(caller.name.clone()),
            source: Some("operator".into()),
            correlation_id: None,
            causation_id: None,
            occurred_at: Some(now),
        });
    let written = state
        .runner
        .store()
        .append(&device_stream(unit), ExpectedState::Any, vec![event])
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(%unit, by = %caller.name, %fingerprint, "device token issued");
    Ok(HttpResponse::Created().json(serde_json::json!({
        "unit_id": unit,
        "token": token,
        "expires_at": expires_at,
        "fingerprint": fingerprint,
        "gateway_port": enrolment.gateway_port,
        "position": written.position.0,
    })))
}

/// The route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/units/{id}/device-token", web::post().to(issue));
}
