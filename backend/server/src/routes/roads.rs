//! Road closures: an operator closes the roads within a radius of a point (a fire, a crash,
//! a flooded underpass) and reopens them later; the dispatcher's routing leaves closed roads
//! out, so recommendations and ETAs follow the streets as they are.
//!
//! Each closure is core's road closure aggregate (`muster_core::road`) in the stream
//! `road-closure-<id>`, written through the command runner like every other command. The
//! dispatcher folds them from `$all` (`crate::dispatcher`) and hands the union of closed roads
//! to the router, which prepares the changed graph in the background.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use muster_core::road::{MAX_RADIUS_M, MIN_RADIUS_M, RoadClosureCommand};
use muster_core::value::LatLon;
use muster_core::{ClosureId, combined};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Allowed, AppState, Dispatch, Key, Read, answer, own_answer, parse_id};
use crate::dispatcher::{ClosuresInForce, Dispatcher};
use crate::edge::{Body, OptionalBody, command};
use crate::error::ApiError;
use crate::routes::dispatch::dispatcher;

/// `POST /api/roads/closures`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRoads {
    /// Centre.
    pub location: LatLon,
    /// Radius, metres (5 to 2,000).
    #[schema(minimum = 5, maximum = 2000)]
    pub radius_m: f64,
    /// Why.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

/// `POST /api/roads/closures/{id}/reopen`: no fields (an empty body or `{}`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenRoads {}

/// The answer to `POST /api/roads/closures`, besides the command answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoadsClosed {
    /// The closure (stream `road-closure-<id>`).
    pub closure_id: ClosureId,
    /// How many roads it closes.
    pub roads: usize,
}

/// The answer to `POST /api/roads/closures/{id}/reopen`, besides the command answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoadsReopened {
    /// The closure.
    pub closure_id: ClosureId,
}

async fn close(
    state: web::Data<AppState>,
    d: Option<web::Data<Dispatcher>>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    Body(body, raw): Body<CloseRoads>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    let cmd = command(&req, &caller, key, &raw, "operator");
    // The roads are counted only for a radius the decision can accept; it says what is wrong
    // with any other.
    let in_range = (MIN_RADIUS_M..=MAX_RADIUS_M).contains(&body.radius_m);
    let roads = if in_range {
        d.roads_near(body.location, body.radius_m)
    } else {
        0
    };
    if in_range && roads == 0 && !state.runner.recorded(&cmd.key).await? {
        return Err(ApiError::invalid(format!(
            "there is no road within {} m of the location in the server's city",
            body.radius_m,
        ))
        .with_details(json!({"field": "location"})));
    }
    let closure = ClosureId::from_uuid(cmd.key.derived_id("road-closure"));
    let close = RoadClosureCommand::Close {
        closure,
        location: body.location,
        radius_m: body.radius_m,
        note: body.note,
        by: caller.name.clone(),
        at: Utc::now(),
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::road_closure_command(s, closure, close.clone())?,
                own_answer(&RoadsClosed {
                    closure_id: closure,
                    roads,
                }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

async fn reopen(
    state: web::Data<AppState>,
    d: Option<web::Data<Dispatcher>>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    OptionalBody(_, raw): OptionalBody<ReopenRoads>,
) -> Result<HttpResponse, ApiError> {
    dispatcher(&d)?;
    let closure = parse_id("road closure", &path, ClosureId::parse)?;
    let cmd = command(&req, &caller, key, &raw, "operator");
    let reopen = RoadClosureCommand::Reopen {
        by: caller.name.clone(),
        at: Utc::now(),
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::road_closure_command(s, closure, reopen.clone())?,
                own_answer(&RoadsReopened {
                    closure_id: closure,
                }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::OK, &executed))
}

async fn list(
    d: Option<web::Data<Dispatcher>>,
    _: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    Ok(HttpResponse::Ok().json(ClosuresInForce {
        closures: d.closures(),
    }))
}

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/roads/closures", web::post().to(close))
        .route("/api/roads/closures", web::get().to(list))
        .route("/api/roads/closures/{id}/reopen", web::post().to(reopen));
}
