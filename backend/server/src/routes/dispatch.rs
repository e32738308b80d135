//! Dispatching: the recommendation for an incident, sending units, the city's coverage and
//! the automatic dispatch rules. The work is the dispatcher's ([`crate::dispatcher`]); these
//! handlers turn its answers and [`DispatchError`]s into HTTP.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use muster_core::value::UnitKind;
use muster_core::{IncidentId, UnitId};
use muster_store::Position;
use serde::Deserialize;
use serde_json::json;

use super::{Allowed, Dispatch, Key, Read, answer, parse_id};
use crate::dispatcher::{Authority, DispatchError, Dispatcher};
use crate::edge::Body;
use crate::error::ApiError;

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::NoOpenIncident(_) => ApiError::not_found(e.to_string()),
            DispatchError::NoPlan { .. } | DispatchError::Recommend(_) => {
                ApiError::invalid(e.to_string())
            }
            DispatchError::Command(c) => c.into(),
        }
    }
}

/// The dispatcher, or 503 when the server has none (no city to route on).
pub fn dispatcher(d: &Option<web::Data<Dispatcher>>) -> Result<&Dispatcher, ApiError> {
    d.as_ref().map(|d| d.get_ref()).ok_or_else(|| {
        ApiError::unavailable(
            "dispatching and road closures need a city (the server runs with city = \"grid\")",
        )
    })
}

fn incident_id(raw: &str) -> Result<IncidentId, ApiError> {
    parse_id("incident", raw, IncidentId::parse)
}

/// How long a read with `min_position` waits for the dispatcher to apply it.
const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

async fn get_recommendation(
    d: Option<web::Data<Dispatcher>>,
    _: Allowed<Read>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    if let Some(p) = query.get("min_position") {
        let p: u64 = p.parse().map_err(|_| {
            ApiError::bad_request("invalid_query", "min_position must be a log position")
        })?;
        d.wait_for(Position(p), MIN_POSITION_WAIT).await;
    }
    Ok(HttpResponse::Ok().json(d.recommendation(incident_id(&path)?)?))
}

/// `POST /api/incidents/{id}/dispatch`: assign the recommended units, or the ones named.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    /// Units to assign, at least one; absent: every unit the recommendation picks.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub units: Option<Vec<UnitId>>,
}

async fn post_dispatch(
    d: Option<web::Data<Dispatcher>>,
    req: HttpRequest,
    allowed: Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, _): Body<DispatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    let caller = &allowed.0;
    let incident = incident_id(&path)?;
    let named = body.units;
    if named.as_ref().is_some_and(|u| u.is_empty()) {
        return Err(ApiError::invalid(
            "name at least one unit, or leave out \"units\" to send the recommendation",
        )
        .with_details(json!({"field": "units"})));
    }
    let mut command =
        Dispatcher::command(&caller.name, "operator", key, incident, named.as_deref());
    command.metadata = crate::edge::metadata(Some(&req), caller, "operator");
    // A repeat is answered from the first request's record, whatever the recommendation
    // says now; a new request of "send the recommendation" sends what it picks.
    let repeat = d.runner().recorded(&command.key).await?;
    let units = match named {
        Some(units) => units,
        None if repeat => Vec::new(),
        None => {
            // The recommendation reads the dispatcher's view: let it apply everything
            // committed before this request, so that it does not pick a unit an earlier
            // command already sent.
            let head = d.runner().store().head();
            d.wait_for_head(head, MIN_POSITION_WAIT).await;
            d.recommendation(incident)?
                .recommendation
                .picks()
                .map(|c| c.unit)
                .collect()
        }
    };
    if units.is_empty() && !repeat {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "no_units",
            "no available unit can be recommended for this incident",
        ));
    }
    let executed = d
        .assign(&command, incident, &units, Authority::Operator)
        .await?;
    let status = if executed.answer["assigned"].as_u64().unwrap_or(0) > 0 {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::CONFLICT
    };
    Ok(answer(status, &executed))
}

async fn get_coverage(
    d: Option<web::Data<Dispatcher>>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let kinds = match query.get("kinds") {
        Some(text) => text
            .split(',')
            .map(|k| {
                UnitKind::parse(k.trim())
                    .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![UnitKind::Engine],
    };
    let target_s = match query.get("target_s") {
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| (1..=86_400).contains(t))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    "target_s must be a whole number of seconds from 1 to 86400",
                )
            })?,
        None => 240,
    };
    Ok(HttpResponse::Ok().json(d.coverage(&kinds, Duration::from_secs(target_s))))
}

async fn get_rules(
    d: Option<web::Data<Dispatcher>>,
    _: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    Ok(HttpResponse::Ok().json(d.rules()))
}

/// Mounts the dispatcher's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/incidents/{id}/recommendation",
        web::get().to(get_recommendation),
    )
    .route(
        "/api/incidents/{id}/dispatch",
        web::post().to(post_dispatch),
    )
    .route("/api/coverage", web::get().to(get_coverage))
    .route("/api/dispatch/rules", web::get().to(get_rules));
}
