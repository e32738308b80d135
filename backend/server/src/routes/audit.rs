//! `GET /api/audit` (admin): the audit trail of an incident, of a user, of both, or with
//! neither of the whole log ([`crate::trail`]), newest last, at most `limit` lines (default and most 10,000). A long
//! read: it scans the log ([`crate::security::ExpensiveReads`]).

use actix_web::{HttpRequest, HttpResponse, web};
use muster_core::IncidentId;
use serde::{Deserialize, Serialize};

use super::{Admin, Allowed, AppState};
use crate::error::ApiError;
use crate::security::ExpensiveReads;
use crate::trail::{Subject, TrailLine};

/// Most lines one answer holds.
pub const MAX_LINES: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    incident: Option<String>,
    user: Option<String>,
    limit: Option<usize>,
}

/// The answer to `GET /api/audit`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditTrail {
    /// The trail's events, oldest first.
    pub lines: Vec<TrailLine>,
    /// Whether there are more than `limit`.
    pub truncated: bool,
}

async fn audit(
    state: web::Data<AppState>,
    reads: web::Data<ExpensiveReads>,
    req: HttpRequest,
    allowed: Allowed<Admin>,
) -> Result<HttpResponse, ApiError> {
    let q = web::Query::<AuditQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?
        .into_inner();
    let incident = q
        .incident
        .as_deref()
        .map(|id| {
            IncidentId::parse(id).map_err(|_| {
                ApiError::bad_request("invalid_query", "incident must be an incident id (a UUID)")
            })
        })
        .transpose()?;
    if q.user
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.chars().count() > 200)
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "user must be a user's name of 1 to 200 characters",
        ));
    }
    let subject = Subject {
        incident,
        user: q.user,
    };
    let limit = q.limit.unwrap_or(MAX_LINES);
    if !(1..=MAX_LINES).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be from 1 to {MAX_LINES}"),
        ));
    }
    let _slot = reads.admit(&allowed.0.name).await?;
    let mut lines = Vec::new();
    // One more than asked tells whether there are more.
    crate::trail::read(state.runner.store().as_ref(), &subject, limit + 1, |line| {
        lines.push(line);
        Ok(())
    })
    .await
    .map_err(ApiError::internal)?;
    let truncated = lines.len() > limit;
    lines.truncate(limit);
    Ok(HttpResponse::Ok().json(AuditTrail { lines, truncated }))
}

/// The route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/audit", web::get().to(audit));
}
