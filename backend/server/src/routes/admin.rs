//! Machines' API tokens, for administrators only ([`crate::api_tokens`]):
//!
//! - `POST /api/admin/api-tokens` creates a token with a name, a role, an optional agency
//!   (and for a responder's token, a unit) and an expiry (`expires_at`, or `valid_days`), and
//!   answers it once: the log and the idempotency record keep its SHA-256, never the token.
//!   Every request creates a new token, so it takes no `Idempotency-Key`.
//! - `GET /api/admin/api-tokens` lists every token without its secret.
//! - `POST /api/admin/api-tokens/{id}/revoke` revokes one: the node that took the request
//!   refuses it at once, every other node within a second ([`crate::api_tokens::FRESH_FOR`]).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use muster_app::{Command, CommandKey, Fingerprint};
use muster_core::UnitId;
use muster_core::api_token::{ApiTokenCommand, MAX_VALID_DAYS};
use muster_core::combined;
use muster_core::value::{Agency, IdempotencyKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Admin, Allowed, AppState, Key, answer, own_answer};
use crate::api_tokens::{digest, new_token};
use crate::auth::{Role, Tokens};
use crate::edge::{Body, OptionalBody, command};
use crate::error::ApiError;

/// `POST /api/admin/api-tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiToken {
    /// The machine's name (1 to 64 letters, digits, `.`, `_`, `-`), recorded as the actor
    /// of its commands; not a configured user's name.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The agency it acts for.
    #[serde(default)]
    pub agency: Option<Agency>,
    /// For a responder's token: the unit it acts for.
    #[serde(default)]
    pub unit: Option<UnitId>,
    /// When it stops being accepted (at most 366 days ahead). Give this or `valid_days`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// How many days it is accepted (1 to 366). Give this or `expires_at`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    pub valid_days: Option<u32>,
}

/// An API token as listed: everything but its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenRow {
    /// Its id: names it in the audit trail (`api-token:<id>`) and when it is revoked.
    pub token_id: Uuid,
    /// The machine's name.
    pub name: String,
    /// Its role.
    #[schema(value_type = String)]
    pub role: String,
    /// Its agency.
    pub agency: Option<Agency>,
    /// A responder's token's unit.
    pub unit: Option<UnitId>,
    /// The first 16 hex digits of the token's SHA-256, to tell tokens apart.
    pub fingerprint: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// `valid`, `expired` or `revoked`.
    pub status: ApiTokenStatus,
}

/// Whether a token is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiTokenStatus {
    /// Accepted.
    Valid,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

/// The answer to `POST /api/admin/api-tokens`, besides the command answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedApiToken {
    /// The token, to send as `Authorization: Bearer <token>`. In this answer only: the
    /// server keeps its SHA-256.
    pub token: String,
    /// The token as listed.
    #[serde(flatten)]
    pub row: ApiTokenRow,
}

impl std::fmt::Debug for CreatedApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiToken")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// `GET /api/admin/api-tokens`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenList {
    /// Every token, newest first.
    pub tokens: Vec<ApiTokenRow>,
}

/// `POST /api/admin/api-tokens/{id}/revoke`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeApiToken {
    /// Why (1 to 500 characters, not only white space), recorded with the revocation.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub reason: Option<String>,
}

/// The answer to `POST /api/admin/api-tokens/{id}/revoke`, besides the command answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiTokenRevoked {
    /// The token.
    pub token_id: Uuid,
    /// Whether this request revoked it (false: it was revoked already).
    pub revoked: bool,
}

fn row(t: &muster_core::api_token::ApiToken, now: DateTime<Utc>) -> ApiTokenRow {
    ApiTokenRow {
        token_id: t.token_id,
        name: t.name.clone(),
        role: t.role.clone(),
        agency: t.agency.clone(),
        unit: t.unit,
        fingerprint: t.digest[..16].to_owned(),
        created_by: t.created_by.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked_at: t.revoked.as_ref().map(|(at, _)| *at),
        revoked_by: t.revoked.as_ref().map(|(_, by)| by.clone()),
        status: if t.revoked.is_some() {
            ApiTokenStatus::Revoked
        } else if t.is_valid_at(now) {
            ApiTokenStatus::Valid
        } else {
            ApiTokenStatus::Expired
        },
    }
}

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(message).with_details(serde_json::json!({ "field": field }))
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    users: web::Data<Tokens>,
    allowed: Allowed<Admin>,
    Body(body, _): Body<CreateApiToken>,
) -> Result<HttpResponse, ApiError> {
    let caller = &allowed.0;
    let now = Utc::now();
    let expires_at = match (body.expires_at, body.valid_days) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                "valid_days",
                "give expires_at or valid_days, not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                "expires_at",
                "an API token needs an expiry: give expires_at or valid_days",
            ));
        }
        (None, Some(days)) if (1..=MAX_VALID_DAYS).contains(&days) => {
            now + Duration::days(i64::from(days))
        }
        (None, Some(_)) => {
            return Err(field_error(
                "valid_days",
                format!("valid_days must be a whole number from 1 to {MAX_VALID_DAYS}"),
            ));
        }
        (Some(at), None) if at > now && at <= now + Duration::days(MAX_VALID_DAYS.into()) => at,
        (Some(_), None) => {
            return Err(field_error(
                "expires_at",
                format!("expires_at must be in the future and within {MAX_VALID_DAYS} days"),
            ));
        }
    };
    if users.has_user(&body.name) {
        return Err(field_error(
            "name",
            "a configured user has this name; give the machine a name of its own",
        ));
    }
    if body.unit.is_some() && body.role != Role::Responder {
        return Err(field_error(
            "unit",
            "only a responder's API token acts for a unit",
        ));
    }
    let token = new_token();
    let digest = digest(&token);
    let token_id = Uuid::now_v7();
    // Every request creates a new token: its command has a key of its own.
    let key = IdempotencyKey::try_from(format!("api-token-{token_id}"))
        .expect("a UUID with a prefix is a valid key");
    let cmd = Command {
        key: CommandKey::new(caller.name.clone(), key),
        fingerprint: Fingerprint::of(
            "POST /api/admin/api-tokens",
            &serde_json::json!({ "token_id": token_id, "fingerprint": &digest[..16] }),
        ),
        metadata: crate::edge::metadata(Some(&req), caller, "operator"),
    };
    let create = ApiTokenCommand::Create {
        token_id,
        name: body.name,
        role: body.role.as_str().to_owned(),
        agency: body.agency,
        unit: body.unit,
        digest,
        expires_at,
        created_by: caller.name.clone(),
        at: now,
    };
    let mut executed = state
        .runner
        .execute(&cmd, |s| {
            let changes = combined::api_token_command(s, create.clone())?;
            Ok((changes, serde_json::json!({ "token_id": token_id })))
        })
        .await?;
    let tokens = state.runner.api_tokens().await?;
    let created = tokens.get(token_id).ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("the created API token is not in the log"))
    })?;
    tracing::info!(by = %caller.name, %token_id, name = %created.name, "API token created");
    // The token is in this response only: the stored answer names it by its id.
    executed.answer = own_answer(&CreatedApiToken {
        token,
        row: row(created, now),
    });
    Ok(answer(StatusCode::CREATED, &executed))
}

async fn list(
    state: web::Data<AppState>,
    _allowed: Allowed<Admin>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state.runner.api_tokens().await?;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(ApiTokenList {
        tokens: tokens.all().iter().rev().map(|t| row(t, now)).collect(),
    }))
}

async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    registry: web::Data<crate::api_tokens::ApiTokenRegistry>,
    allowed: Allowed<Admin>,
    Key(key): Key,
    path: web::Path<String>,
    OptionalBody(body, raw): OptionalBody<RevokeApiToken>,
) -> Result<HttpResponse, ApiError> {
    let caller = &allowed.0;
    let token_id = super::parse_id("API token", &path, Uuid::parse_str)?;
    let cmd = command(&req, caller, key, &raw, "operator");
    let revoke = ApiTokenCommand::Revoke {
        token_id,
        revoked_by: caller.name.clone(),
        reason: body.reason,
        at: Utc::now(),
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            let changes = combined::api_token_command(s, revoke.clone())?;
            let revoked = !changes.api_tokens.is_empty();
            Ok((changes, own_answer(&ApiTokenRevoked { token_id, revoked })))
        })
        .await?;
    registry.forget();
    tracing::info!(by = %caller.name, %token_id, "API token revoked");
    Ok(answer(StatusCode::OK, &executed))
}

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/admin/api-tokens", web::post().to(create))
        .route("/api/admin/api-tokens", web::get().to(list))
        .route("/api/admin/api-tokens/{id}/revoke", web::post().to(revoke));
}
