//! The HTTP routes, a module per resource; [`ROUTES`] lists them all, `docs/api.md` and the
//! OpenAPI document ([`crate::openapi`]) describe them.
//!
//! - [`incidents`]: calls entered, assignments, notes, closing; the incident board.
//! - [`units`]: registration, status, positions, task steps; the unit board.
//! - [`sensors`]: registration and readings.
//! - [`dispatch`]: recommendations, dispatch, coverage, the automatic rules.
//! - [`roads`]: road closures.
//! - [`devices`]: enrolling a crew's device with the mobile gateway.
//! - [`admin`]: machines' API tokens: created, listed without their secret, revoked.
//! - [`layers`]: GeoJSON layers and counts per area.
//! - [`responder`]: the crew's phone app and where its gateway is.
//! - [`wall`]: the wall display's app, base map, address lookup and time travel.
//! - [`feed`]: the wall-display websocket.
//!
//! This module holds what they share: the state, the role and idempotency-key extractors,
//! path ids, and the answer of a command.
//!
//! Every command needs an `Idempotency-Key` header (8–128 printable ASCII characters): a
//! repeat with the same key is answered as the first time and writes nothing. Answers to
//! commands carry the log `position` of their last event; a view read with
//! `?min_position=P` waits (a short while) until the views have applied `P`.

pub mod admin;
pub mod audit;
pub mod devices;
pub mod dispatch;
pub mod feed;
pub mod incidents;
pub mod layers;
pub mod responder;
pub mod roads;
pub mod sensors;
pub mod units;
pub mod wall;

use futures::future::LocalBoxFuture;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use muster_app::{CommandError, Executed, Runner};
use muster_core::value::{IdempotencyKey, LatLon};
use muster_store::Position;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::{Caller, DISPATCH, FIELD, READERS, Role};
use crate::error::ApiError;
use crate::views::Views;

/// How long a view read waits for `min_position` before answering with what it has.
pub const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The command side: every write goes through it.
    pub runner: Runner,
    /// The views.
    pub views: Views,
    /// Addresses of the configured city, if any.
    pub geocoder: Option<std::sync::Arc<muster_geodata::geocode::Geocoder>>,
    /// This node's name in the audit trail: host name and HTTP port.
    pub node: std::sync::Arc<str>,
}

/// Reverse geocoding farther than this from the nearest address or named road answers no
/// address.
pub const MAX_ADDRESS_DISTANCE_M: f64 = 150.0;

impl AppState {
    /// The position of an address, or why there is none.
    pub fn resolve(&self, address: &str) -> Result<LatLon, ApiError> {
        use muster_geodata::geocode::AddressQuery;
        let geocoder = self.geocoder.as_ref().ok_or_else(|| {
            ApiError::invalid(
                "addresses cannot be resolved: the server has no city; give a location",
            )
        })?;
        let hit = AddressQuery::parse(address)
            .and_then(|q| geocoder.geocode(&q))
            .map_err(|e| ApiError::invalid(format!("the address cannot be resolved: {e}")))?;
        Ok(hit.location)
    }

    /// The nearest address to a point, when the city has one close by.
    pub fn address_of(&self, p: LatLon) -> Option<NearestAddress> {
        let geocoder = self.geocoder.as_ref()?;
        let hit = geocoder.reverse(p)?;
        (hit.distance_m <= MAX_ADDRESS_DISTANCE_M).then(|| NearestAddress {
            text: hit.to_string(),
            distance_m: hit.distance_m,
        })
    }
}

/// The address nearest to a point (within [`MAX_ADDRESS_DISTANCE_M`]).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct NearestAddress {
    /// Street and house number.
    pub text: String,
    /// How far it is from the point, metres.
    pub distance_m: f64,
}

/// A set of roles a route allows.
pub trait Roles {
    /// The roles.
    const ROLES: &'static [Role];
}

/// Dispatch-centre commands.
#[derive(Debug)]
pub struct Dispatch;
impl Roles for Dispatch {
    const ROLES: &'static [Role] = DISPATCH;
}
/// Field commands.
#[derive(Debug)]
pub struct Field;
impl Roles for Field {
    const ROLES: &'static [Role] = FIELD;
}
/// Administration.
#[derive(Debug)]
pub struct Admin;
impl Roles for Admin {
    const ROLES: &'static [Role] = crate::auth::ADMIN;
}
/// Reading views.
#[derive(Debug)]
pub struct Read;
impl Roles for Read {
    const ROLES: &'static [Role] = READERS;
}

/// A caller whose role is in `R` (401 without a known token, 403 with the wrong role).
#[derive(Debug)]
pub struct Allowed<R: Roles>(pub Caller, PhantomData<R>);

impl<R: Roles + 'static> FromRequest for Allowed<R> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let caller = crate::auth::authenticate(&req).await?;
            caller.require(R::ROLES)?;
            Ok(Allowed(caller, PhantomData))
        })
    }
}

/// The `Idempotency-Key` header, parsed.
#[derive(Debug)]
pub struct Key(pub IdempotencyKey);

impl FromRequest for Key {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = (|| {
            let value = req.headers().get("Idempotency-Key").ok_or_else(|| {
                ApiError::bad_request(
                    "missing_idempotency_key",
                    "every command needs an Idempotency-Key header (8 to 128 printable characters)",
                )
            })?;
            let text = value.to_str().map_err(|_| {
                ApiError::bad_request("invalid_idempotency_key", "the Idempotency-Key is not text")
            })?;
            IdempotencyKey::try_from(text)
                .map(Key)
                .map_err(|e| ApiError::bad_request("invalid_idempotency_key", e.to_string()))
        })();
        ready(result)
    }
}

/// The source a caller's commands are recorded with: `field` for a responder, `operator`
/// for the dispatch centre.
pub fn source_of(caller: &Caller) -> &'static str {
    if caller.role == Role::Responder {
        "field"
    } else {
        "operator"
    }
}

/// Parses an id from a path: a malformed one is 404, like an id that names nothing, and
/// the answer does not repeat it.
pub fn parse_id<T, E>(
    what: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("there is no such {what}: ids are UUIDs"),
        )
    })
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Refused(r) => r.into(),
            CommandError::Contended(_) => ApiError::new(
                StatusCode::CONFLICT,
                "contended",
                "what this command decides on kept changing while deciding; try again",
            ),
            CommandError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request; use a new key",
            ),
            CommandError::Store(muster_store::StoreError::Invalid(e)) => {
                ApiError::invalid(e.to_string())
            }
            CommandError::Store(muster_store::StoreError::Unavailable(why)) => {
                tracing::warn!("a command was not stored: the event store is unavailable ({why})");
                ApiError::unavailable(
                    "the event store cannot be reached; nothing was stored: retry with the same Idempotency-Key",
                )
            }
            e @ (CommandError::Store(_)
            | CommandError::Encode(_)
            | CommandError::Decode(_)
            | CommandError::Stream(_)) => ApiError::internal(e),
        }
    }
}

/// One event a command stored.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    /// Its type (`IncidentReported`, `UnitAssigned`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The stream it was appended to.
    pub stream: String,
    /// Its revision in that stream.
    pub revision: u64,
    /// Its log position.
    pub position: u64,
}

/// What every command answers, besides its own fields: where its events are in the log.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CommandAnswer {
    /// The log position of the last event the command wrote: read a view with
    /// `?min_position=` this to see everything it did.
    pub position: u64,
    /// The events it wrote, in log order (none when it changed nothing).
    pub events: Vec<StoredEvent>,
}

impl CommandAnswer {
    /// The answer of an executed command.
    pub fn of<T>(executed: &Executed<T>) -> Self {
        CommandAnswer {
            position: executed.record_position.0,
            events: executed
                .recorded
                .iter()
                .map(|r| StoredEvent {
                    event_type: r.event_type.clone(),
                    stream: r.stream.as_str().to_owned(),
                    revision: r.revision,
                    position: r.position.0,
                })
                .collect(),
        }
    }
}

/// A command's own answer as the runner stores it: a typed answer of the handler, as JSON.
pub fn own_answer(answer: &impl Serialize) -> Value {
    serde_json::to_value(answer).expect("answers serialize to JSON")
}

/// A command's answer: the position and events it stored ([`CommandAnswer`]), and its own
/// answer (stored with it, so a repeat gets these same bytes, with
/// `Idempotent-Replayed: true`).
pub fn answer(status: StatusCode, executed: &Executed<Value>) -> HttpResponse {
    let mut body = own_answer(&CommandAnswer::of(executed));
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, executed.answer.clone()) {
        body.extend(extra);
    }
    let mut response = HttpResponse::build(status);
    if executed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ViewQuery {
    pub(crate) min_position: Option<u64>,
    #[serde(default)]
    pub(crate) include_closed: bool,
    pub(crate) bbox: Option<String>,
}

pub(crate) async fn wait_views(state: &AppState, q: &ViewQuery) {
    if let Some(p) = q.min_position {
        state.views.wait_for(Position(p), MIN_POSITION_WAIT).await;
    }
}

pub(crate) fn view_query(req: &HttpRequest) -> Result<ViewQuery, ApiError> {
    web::Query::<ViewQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// Every route: method, path, handler. The OpenAPI document is checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/incidents"),
    ("get", "/api/incidents"),
    ("get", "/api/incidents/{id}"),
    ("post", "/api/incidents/{id}/tasks"),
    ("post", "/api/incidents/{id}/close"),
    ("post", "/api/incidents/{id}/notes"),
    ("post", "/api/incidents/{id}/caller/erase"),
    ("post", "/api/units"),
    ("get", "/api/units"),
    ("get", "/api/units/{id}"),
    ("post", "/api/units/{id}/status"),
    ("post", "/api/units/{id}/position"),
    ("post", "/api/units/{id}/tasks/{task}/acknowledge"),
    ("post", "/api/units/{id}/tasks/{task}/decline"),
    ("post", "/api/units/{id}/tasks/{task}/complete"),
    ("post", "/api/units/{id}/device-token"),
    ("post", "/api/units/{id}/device-token/revoke"),
    ("get", "/api/units/{id}/device-tokens"),
    ("post", "/api/admin/api-tokens"),
    ("get", "/api/admin/api-tokens"),
    ("post", "/api/admin/api-tokens/{id}/revoke"),
    ("post", "/api/roads/closures"),
    ("get", "/api/roads/closures"),
    ("post", "/api/roads/closures/{id}/reopen"),
    ("post", "/api/sensors"),
    ("post", "/api/sensors/{id}/readings"),
    ("get", "/api/areas"),
    ("get", "/api/geo/incidents"),
    ("get", "/api/geo/units"),
    ("get", "/api/incidents/{id}/recommendation"),
    ("post", "/api/incidents/{id}/dispatch"),
    ("get", "/api/coverage"),
    ("get", "/api/dispatch/rules"),
    ("get", "/api/feed"),
    ("get", "/api/audit"),
    ("post", "/api/feed/ticket"),
    ("get", "/api/wall/city"),
    ("get", "/api/wall/geocode"),
    ("get", "/api/wall/timeline"),
    ("get", "/api/wall/at"),
    ("get", "/api/wall/response-times"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// Mounts every route but the wall display's static files (see [`wall::routes`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(incidents::routes)
        .configure(units::routes)
        .configure(sensors::routes)
        .configure(layers::routes)
        .configure(dispatch::routes)
        .configure(devices::routes)
        .configure(audit::routes)
        .configure(admin::routes)
        .configure(roads::routes)
        .route("/api/feed", web::get().to(feed::feed))
        .route("/api/feed/ticket", web::post().to(feed::ticket));
}
