//! Enrolling a crew's device: `POST /api/units/{id}/device-token` issues the token the unit's
//! phone presents to the mobile gateway (docs/api.md, mobile-api/PROTOCOL.md).
//!
//! Issuing a credential is audited: each token issued is a `DeviceTokenIssued` event (core's
//! [`muster_core::device`]: who, for which unit, until when, the token's id and a fingerprint
//! of the token, never the token) in the stream `device-<unit id>`, written through the
//! command runner and decided against the unit's stream (only a registered unit gets one).
//!
//! `POST /api/units/{id}/device-token/revoke` revokes one token by its id, or every live token
//! of the unit: a `DeviceTokenRevoked` event per token, which every gateway following the log
//! acts on (sessions opened with the token are closed with 4003, and its `hello` is refused).
//! `GET /api/units/{id}/device-tokens` lists the unit's tokens without their secret.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use muster_app::{Command, CommandKey, Fingerprint};
use muster_core::device::{DeviceCommand, MAX_VALID_HOURS};
use muster_core::value::IdempotencyKey;
use muster_core::{UnitId, combined};
use muster_mobile::token::HmacTokens;
use muster_store::{Direction, ReadFrom, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Allowed, AppState, Dispatch, Key, answer, own_answer};
use crate::edge::{OptionalBody, command};
use crate::error::ApiError;

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
    /// How long the token is valid, whole hours (1 to 18; default 12). `12` and `12.0` are
    /// the same number; `12.5` is refused.
    #[serde(default, deserialize_with = "whole_hours")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 18)]
    pub valid_hours: Option<u32>,
}

/// A whole number of hours, written as an integer or as a number with no fraction.
fn whole_hours<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = Option::<f64>::deserialize(d)?;
    n.map(|h| {
        if h.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&h) {
            Ok(h as u32)
        } else {
            Err(serde::de::Error::custom(
                "valid_hours must be a whole number of hours",
            ))
        }
    })
    .transpose()
}

/// The answer to `POST /api/units/{id}/device-token`, besides the command answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceToken {
    /// The unit.
    pub unit_id: UnitId,
    /// The token's id: names it when it is revoked.
    pub token_id: Uuid,
    /// The token the device presents in its `hello` to the mobile gateway. In this answer
    /// only: the log and the idempotency record hold its fingerprint.
    pub token: String,
    /// When the gateway stops accepting it.
    pub expires_at: DateTime<Utc>,
    /// The first 16 hex digits of the token's SHA-256, as audited.
    pub fingerprint: String,
    /// The mobile gateway's port.
    pub gateway_port: u16,
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceToken")
            .field("unit_id", &self.unit_id)
            .field("token_id", &self.token_id)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

async fn issue(
    req: HttpRequest,
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
    let now = Utc::now();
    let expires_at = now + Duration::hours(i64::from(hours));
    let token_id = Uuid::new_v4();
    let token = enrolment.tokens.issue_with_id(unit, token_id, expires_at);
    let digest = Sha256::digest(token.as_bytes());
    let fingerprint: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Every request issues a new token: its command has a key of its own.
    let key = IdempotencyKey::try_from(format!("device-token-{}", Uuid::now_v7()))
        .expect("a UUID with a prefix is a valid key");
    let cmd = Command {
        key: CommandKey::new(caller.name.clone(), key),
        fingerprint: Fingerprint::of(
            "POST /api/units/{id}/device-token",
            &serde_json::json!({ "unit": unit, "token_id": token_id, "fingerprint": fingerprint }),
        ),
        metadata: crate::edge::metadata(Some(&req), caller, "operator"),
    };
    let issue = DeviceCommand::IssueToken {
        unit,
        issued_by: caller.name.clone(),
        expires_at,
        fingerprint: fingerprint.clone(),
        token_id,
        at: now,
    };
    // The stored answer names the token by its fingerprint; the token itself is in this
    // response only (every request has a key of its own, so none is answered from the record).
    let mut executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::issue_device_token(s, issue.clone())?,
                serde_json::json!({
                    "unit_id": unit,
                    "token_id": token_id,
                    "expires_at": expires_at,
                    "fingerprint": fingerprint,
                    "gateway_port": enrolment.gateway_port,
                }),
            ))
        })
        .await?;
    tracing::info!(%unit, by = %caller.name, %token_id, %fingerprint, "device token issued");
    executed.answer = own_answer(&DeviceToken {
        unit_id: unit,
        token_id,
        token,
        expires_at,
        fingerprint,
        gateway_port: enrolment.gateway_port,
    });
    Ok(answer(StatusCode::CREATED, &executed))
}

/// `POST /api/units/{id}/device-token/revoke`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeDeviceTokens {
    /// The token to revoke; without it, every token of the unit that is still valid.
    #[serde(default)]
    pub token_id: Option<Uuid>,
    /// Why (1 to 500 characters), recorded with the revocation.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to `POST /api/units/{id}/device-token/revoke`, besides the command answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceTokensRevoked {
    /// The unit.
    pub unit_id: UnitId,
    /// The tokens this request revoked (empty when they were revoked already or none was
    /// valid).
    pub revoked: Vec<Uuid>,
}

async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    allowed: Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    OptionalBody(body, raw): OptionalBody<RevokeDeviceTokens>,
) -> Result<HttpResponse, ApiError> {
    let caller = &allowed.0;
    let unit = super::parse_id("unit", &path, UnitId::parse)?;
    let cmd = command(&req, caller, key, &raw, "operator");
    let at = Utc::now();
    let revoke = DeviceCommand::RevokeTokens {
        unit,
        token_id: body.token_id,
        revoked_by: caller.name.clone(),
        reason: body.reason,
        at,
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            let changes = combined::issue_device_token(s, revoke.clone())?;
            let revoked: Vec<Uuid> = changes
                .devices
                .iter()
                .flat_map(|(_, events)| events)
                .filter_map(|e| match e {
                    muster_core::device::DeviceEvent::DeviceTokenRevoked { token_id, .. } => {
                        Some(*token_id)
                    }
                    muster_core::device::DeviceEvent::DeviceTokenIssued { .. } => None,
                })
                .collect();
            Ok((
                changes,
                serde_json::to_value(DeviceTokensRevoked {
                    unit_id: unit,
                    revoked,
                })
                .expect("the answer serializes"),
            ))
        })
        .await?;
    tracing::info!(%unit, by = %caller.name, token = ?body.token_id, "device tokens revoked");
    Ok(answer(StatusCode::OK, &executed))
}

/// One of a unit's device tokens, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceTokenRow {
    /// Its id (absent for tokens issued before tokens had ids).
    pub token_id: Option<Uuid>,
    /// The first 16 hex digits of its SHA-256.
    pub fingerprint: String,
    /// Who asked for it.
    pub issued_by: String,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Until when the gateway accepts it.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `GET /api/units/{id}/device-tokens`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceTokenList {
    /// The unit.
    pub unit_id: UnitId,
    /// Its tokens, newest first.
    pub tokens: Vec<DeviceTokenRow>,
}

async fn list(
    state: web::Data<AppState>,
    _allowed: Allowed<Dispatch>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let unit = super::parse_id("unit", &path, UnitId::parse)?;
    let store = state.runner.store().as_ref();
    let registered = match store
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
    let devices = muster_mobile::delivery::device_state(store, unit)
        .await
        .map_err(ApiError::internal)?;
    let tokens = devices
        .tokens
        .into_iter()
        .rev()
        .map(|t| DeviceTokenRow {
            token_id: t.token_id,
            fingerprint: t.fingerprint,
            issued_by: t.issued_by,
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeviceTokenList {
        unit_id: unit,
        tokens,
    }))
}

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/units/{id}/device-token", web::post().to(issue))
        .route(
            "/api/units/{id}/device-token/revoke",
            web::post().to(revoke),
        )
        .route("/api/units/{id}/device-tokens", web::get().to(list));
}
