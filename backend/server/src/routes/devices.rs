//! Enrolling a crew's device: `POST /api/units/{id}/device-token` issues the token the unit's
//! phone presents to the mobile gateway (docs/api.md, mobile-api/PROTOCOL.md).
//!
//! Issuing a credential is audited: each token issued is a `DeviceTokenIssued` event (core's
//! [`muster_core::device`]: who, for which unit, until when, and a fingerprint of the token,
//! never the token) in the stream `device-<unit id>`, written through the command runner and
//! decided against the unit's stream (only a registered unit gets one).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use muster_app::{Command, CommandKey, Fingerprint};
use muster_core::device::{DeviceCommand, MAX_VALID_HOURS};
use muster_core::value::IdempotencyKey;
use muster_core::{UnitId, combined};
use muster_mobile::token::HmacTokens;
use muster_store::EventMetadata;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Allowed, AppState, Dispatch, answer, own_answer};
use crate::edge::OptionalBody;
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
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
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
    let now = Utc::now();
    let expires_at = now + Duration::hours(i64::from(hours));
    let token = enrolment.tokens.issue(unit, expires_at);
    let digest = Sha256::digest(token.as_bytes());
    let fingerprint: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // Every request issues a new token: its command has a key of its own.
    let key = IdempotencyKey::try_from(format!("device-token-{}", Uuid::now_v7()))
        .expect("a UUID with a prefix is a valid key");
    let cmd = Command {
        key: CommandKey::new(caller.name.clone(), key),
        fingerprint: Fingerprint::of(
            "POST /api/units/{id}/device-token",
            &serde_json::json!({ "unit": unit, "fingerprint": fingerprint }),
        ),
        metadata: EventMetadata {
            actor: Some(caller.name.clone()),
            source: Some("operator".into()),
            correlation_id: None,
            causation_id: None,
            occurred_at: Some(now),
        },
    };
    let issue = DeviceCommand::IssueToken {
        unit,
        issued_by: caller.name.clone(),
        expires_at,
        fingerprint: fingerprint.clone(),
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
                    "expires_at": expires_at,
                    "fingerprint": fingerprint,
                    "gateway_port": enrolment.gateway_port,
                }),
            ))
        })
        .await?;
    tracing::info!(%unit, by = %caller.name, %fingerprint, "device token issued");
    executed.answer = own_answer(&DeviceToken {
        unit_id: unit,
        token,
        expires_at,
        fingerprint,
        gateway_port: enrolment.gateway_port,
    });
    Ok(answer(StatusCode::CREATED, &executed))
}

/// The route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/units/{id}/device-token", web::post().to(issue));
}
