//! Road closures: an operator closes the roads within a radius of a point (a fire, a crash,
//! a flooded underpass) and reopens them later; the dispatcher's routing leaves closed roads
//! out, so recommendations and ETAs follow the streets as they are.
//!
//! Each closure is a stream `road-closure-<id>` holding `RoadClosed` and, once lifted,
//! `RoadReopened`. The dispatcher folds them from `$all` (`crate::dispatcher`) and hands the
//! union of closed roads to the router, which prepares the changed graph in the background.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_core::value::LatLon;
use muster_store::{
    Direction, EventMetadata, ExpectedState, NewEvent, ReadFrom, StoreError, StreamName,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{Allowed, AppState, Dispatch, Key, Read};
use crate::dispatcher::Dispatcher;
use crate::edge::Body;
use crate::error::ApiError;
use crate::routes::dispatch::dispatcher;

/// Event type of a closure.
pub const ROAD_CLOSED: &str = "RoadClosed";
/// Event type of a reopening.
pub const ROAD_REOPENED: &str = "RoadReopened";
/// Stream category of closures.
pub const STREAM_PREFIX: &str = "road-closure-";
/// Smallest radius, metres.
pub const MIN_RADIUS_M: f64 = 5.0;
/// Largest radius, metres.
pub const MAX_RADIUS_M: f64 = 2_000.0;

/// Namespace of closure ids and event ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_726f_6164_2d63_6c6f_7365);

/// Roads within `radius_m` of `location` are closed (stored in `road-closure-<closure>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoadClosed {
    /// The closure.
    pub closure: Uuid,
    /// Its centre.
    pub location: LatLon,
    /// Its radius, metres.
    pub radius_m: f64,
    /// Why, for the operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who closed it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The roads of a closure are open again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoadReopened {
    /// The closure.
    pub closure: Uuid,
    /// Who reopened it.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The stream of a closure.
pub fn stream(closure: Uuid) -> StreamName {
    StreamName::parse(format!("{STREAM_PREFIX}{closure}"))
        .unwrap_or_else(|_| unreachable!("a uuid makes a valid stream name"))
}

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

fn metadata(by: &str, at: DateTime<Utc>) -> EventMetadata {
    EventMetadata {
        actor: Some(by.to_owned()),
        source: Some("operator".into()),
        correlation_id: None,
        causation_id: None,
        occurred_at: Some(at),
    }
}

async fn close(
    state: web::Data<AppState>,
    d: Option<web::Data<Dispatcher>>,
    allowed: Allowed<Dispatch>,
    Key(key): Key,
    Body(body, _): Body<CloseRoads>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    let caller = &allowed.0;
    if !(body.radius_m.is_finite() && (MIN_RADIUS_M..=MAX_RADIUS_M).contains(&body.radius_m)) {
        return Err(ApiError::invalid(format!(
            "radius_m must be from {MIN_RADIUS_M} to {MAX_RADIUS_M} metres, not {}",
            body.radius_m
        )));
    }
    let note = match body.note {
        Some(n) if n.chars().count() > 500 => {
            return Err(ApiError::invalid("note must be at most 500 characters"));
        }
        other => other,
    };
    let roads = d.roads_near(body.location, body.radius_m);
    if roads == 0 {
        return Err(ApiError::invalid(format!(
            "there is no road within {} m of {:.6},{:.6} in the server's city",
            body.radius_m,
            body.location.lat_deg(),
            body.location.lon_deg()
        )));
    }
    let closure = Uuid::new_v5(&NAMESPACE, key.as_str().as_bytes());
    let event_id = Uuid::new_v5(&closure, b"closed");
    let now = Utc::now();
    let record = RoadClosed {
        closure,
        location: body.location,
        radius_m: body.radius_m,
        note,
        by: caller.name.clone(),
        at: now,
    };
    let event = NewEvent::json(event_id, ROAD_CLOSED, 1, &record)
        .map_err(ApiError::internal)?
        .with_metadata(metadata(&caller.name, now));
    let store = state.runner.store();
    let (position, replayed) = match store
        .append(&stream(closure), ExpectedState::NoStream, vec![event])
        .await
    {
        Ok(done) => (done.position, false),
        Err(StoreError::WrongExpectedState { .. } | StoreError::IdClash { .. }) => {
            // A retry with the same key: answer with what the first request stored.
            let first = store
                .read_stream(&stream(closure), Direction::Forwards, ReadFrom::Start, 1)
                .await
                .map_err(ApiError::internal)?;
            match first.first() {
                Some(r) if r.id == event_id => (r.position, true),
                _ => {
                    return Err(ApiError::bad_request(
                        "idempotency_key_reused",
                        "the idempotency key was already used for a different request",
                    ));
                }
            }
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let mut response = HttpResponse::Created();
    if replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(response.json(json!({
        "closure_id": closure, "roads": roads, "position": position.0, "replayed": replayed,
    })))
}

async fn reopen(
    state: web::Data<AppState>,
    d: Option<web::Data<Dispatcher>>,
    allowed: Allowed<Dispatch>,
    Key(_key): Key,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    dispatcher(&d)?;
    let caller = &allowed.0;
    let closure = super::parse_id("road closure", &path, Uuid::parse_str)?;
    let store = state.runner.store();
    let events = match store
        .read_stream(&stream(closure), Direction::Forwards, ReadFrom::Start, 2)
        .await
    {
        Ok(events) => events,
        Err(StoreError::StreamNotFound(_)) => Vec::new(),
        Err(e) => return Err(ApiError::internal(e)),
    };
    match events.len() {
        0 => {
            return Err(ApiError::not_found(format!(
                "there is no road closure {closure}"
            )));
        }
        1 => {}
        _ => {
            // Reopened already: a repeat is answered as done.
            return Ok(HttpResponse::Ok().insert_header(("Idempotent-Replayed", "true")).json(
                json!({"closure_id": closure, "position": events[1].position.0, "replayed": true}),
            ));
        }
    }
    let now = Utc::now();
    let record = RoadReopened {
        closure,
        by: caller.name.clone(),
        at: now,
    };
    let event = NewEvent::json(
        Uuid::new_v5(&closure, b"reopened"),
        ROAD_REOPENED,
        1,
        &record,
    )
    .map_err(ApiError::internal)?
    .with_metadata(metadata(&caller.name, now));
    let done = match store
        .append(&stream(closure), ExpectedState::Revision(0), vec![event])
        .await
    {
        Ok(done) => done.position,
        // Reopened concurrently by someone else: it is open either way.
        Err(StoreError::WrongExpectedState { .. } | StoreError::IdClash { .. }) => {
            let events = store
                .read_stream(&stream(closure), Direction::Forwards, ReadFrom::Start, 2)
                .await
                .map_err(ApiError::internal)?;
            events.last().map(|e| e.position).unwrap_or_default()
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    Ok(HttpResponse::Ok()
        .json(json!({"closure_id": closure, "position": done.0, "replayed": false})))
}

async fn list(
    d: Option<web::Data<Dispatcher>>,
    _: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let d = dispatcher(&d)?;
    Ok(HttpResponse::Ok().json(json!({"closures": d.closures()})))
}

/// The routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/roads/closures", web::post().to(close))
        .route("/api/roads/closures", web::get().to(list))
        .route("/api/roads/closures/{id}/reopen", web::post().to(reopen));
}
