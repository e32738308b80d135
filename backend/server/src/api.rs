//! The operator API: JSON in and out for every command and view. Routes are listed in
//! [`routes`]; `docs/api.md` and the OpenAPI document ([`crate::openapi`]) describe them.
//!
//! Every command needs an `Idempotency-Key` header (8–128 printable ASCII characters): a
//! repeat with the same key is answered as the first time and writes nothing. Answers to
//! commands carry the log `position` of their last event; a view read with
//! `?min_position=P` waits (a short while) until the views have applied `P`.

use std::collections::BTreeSet;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use chrono::{DateTime, Utc};
use muster_app::{CommandError, Executed, Runner};
use muster_core::combined;
use muster_core::decision::Aggregate;
use muster_core::duplicates::{DuplicateWindow, NewCall, OpenIncident, suggest_duplicates};
use muster_core::incident::{IncidentCommand, ReportSource};
use muster_core::sensor::{Reading, SensorCommand, Threshold};
use muster_core::unit::{UnitCommand, UnitStatus};
use muster_core::value::{
    Agency, CallSign, CallerDetails, Capability, Disposition, IdempotencyKey, IncidentType, LatLon,
    MetricName, NoteText, PersonName, PhoneNumber, Priority, SensorKind, StationCode, UnitKind,
};
use muster_core::{AlarmId, IncidentId, SensorId, TaskId, UnitId};
use muster_store::Position;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, DISPATCH, FIELD, READERS, Role};
use crate::edge::{Body, OptionalBody, command, from_value};
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
        LatLon::from_lat_lon(hit.location.lat(), hit.location.lon())
            .map_err(|e| ApiError::invalid(e.to_string()))
    }

    /// The nearest address to a point, when the city has one close by.
    pub fn address_of(&self, p: LatLon) -> Option<Value> {
        let geocoder = self.geocoder.as_ref()?;
        let q = muster_geodata::point::LatLon::new(p.lat_deg(), p.lon_deg()).ok()?;
        let hit = geocoder.reverse(q)?;
        (hit.distance_m <= MAX_ADDRESS_DISTANCE_M)
            .then(|| json!({"text": hit.to_string(), "distance_m": hit.distance_m}))
    }
}

// ----------------------------------------------------------------------------------------
// Extractors

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
/// Reading views.
#[derive(Debug)]
pub struct Read;
impl Roles for Read {
    const ROLES: &'static [Role] = READERS;
}

/// A caller whose role is in `R` (401 without a known token, 403 with the wrong role).
#[derive(Debug)]
pub struct Allowed<R: Roles>(pub Caller, PhantomData<R>);

impl<R: Roles> FromRequest for Allowed<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = match Caller::from_request(req, payload).into_inner() {
            Ok(c) => c,
            Err(e) => return ready(Err(e)),
        };
        ready(
            caller
                .require(R::ROLES)
                .map(|()| Allowed(caller, PhantomData)),
        )
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
            e @ (CommandError::Store(_)
            | CommandError::Encode(_)
            | CommandError::Decode(_)
            | CommandError::Stream(_)) => ApiError::internal(e),
        }
    }
}

/// A command's answer: the position and events it stored, and its own answer (stored with
/// it, so a repeat gets these same bytes, with `Idempotent-Replayed: true`).
pub fn answer(status: StatusCode, executed: &Executed<Value>) -> HttpResponse {
    let mut body = json!({
        "position": executed.position(),
        "events": executed.recorded.iter().map(|r| json!({
            "type": r.event_type, "stream": r.stream.as_str(), "revision": r.revision, "position": r.position,
        })).collect::<Vec<_>>(),
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, executed.answer.clone()) {
        body.extend(extra);
    }
    let mut response = HttpResponse::build(status);
    if executed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

// ----------------------------------------------------------------------------------------
// Incidents

/// Caller details as they arrive. Personal data: parsed here with errors that never repeat
/// the value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerIn {
    name: Option<Value>,
    call_back: Option<Value>,
}

impl CallerIn {
    fn parse(self) -> Result<CallerDetails, ApiError> {
        let text = |what: &str, v: Value| match v {
            Value::String(s) => Ok(s),
            _ => Err(ApiError::invalid(format!("caller.{what} must be a string"))),
        };
        let name = match self.name {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                PersonName::parse(&text("name", v)?)
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            ),
        };
        let call_back = match self.call_back {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                PhoneNumber::parse(&text("call_back", v)?)
                    .map_err(|e| ApiError::invalid(e.to_string()))?,
            ),
        };
        Ok(CallerDetails { name, call_back })
    }
}

/// `POST /api/incidents`: a call taker enters a call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIncident {
    /// Optional id; by default derived from the idempotency key.
    pub id: Option<IncidentId>,
    /// Where; or else `address`.
    pub location: Option<LatLon>,
    /// A street address in the server's city ("Mannerheimintie 5"), used when no location
    /// is given.
    pub address: Option<String>,
    /// What.
    pub incident_type: IncidentType,
    /// How urgent.
    pub priority: Priority,
    /// Who called.
    #[serde(default)]
    pub caller: Option<CallerIn>,
    /// `hotline` (default) or `citizen`.
    #[serde(default)]
    pub source: Option<String>,
    /// When the call was answered; default now.
    pub call_received_at: Option<DateTime<Utc>>,
}

async fn create_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    Body(body, raw): Body<CreateIncident>,
) -> Result<HttpResponse, ApiError> {
    let source = match body.source.as_deref() {
        None | Some("hotline") => ReportSource::Hotline,
        Some("citizen") => ReportSource::Citizen,
        Some(_) => {
            return Err(ApiError::invalid(
                "source is not accepted here; use \"hotline\" or \"citizen\"",
            )
            .with_details(json!({"field": "source"})));
        }
    };
    let location = match (body.location, body.address.as_deref()) {
        (Some(location), _) => location,
        (None, Some(address)) => state.resolve(address)?,
        (None, None) => {
            return Err(ApiError::invalid(
                "an incident needs a location ({\"lat\", \"lon\"}) or an address",
            ));
        }
    };
    let caller_details = body.caller.unwrap_or_default().parse()?;
    let cmd = command(&req, &caller, key, &raw, "hotline");
    let id = body
        .id
        .unwrap_or_else(|| IncidentId::from_uuid(cmd.key.derived_id("incident")));
    let now = Utc::now();
    let received = body.call_received_at.unwrap_or(now);
    if received > now + chrono::Duration::seconds(muster_core::value::MAX_CLOCK_SKEW_S) {
        return Err(ApiError::invalid(format!(
            "call_received_at is more than {} s ahead of the server's clock",
            muster_core::value::MAX_CLOCK_SKEW_S
        ))
        .with_details(json!({"field": "call_received_at"})));
    }
    let report = IncidentCommand::Report {
        incident_id: id,
        source,
        location,
        incident_type: body.incident_type,
        priority: body.priority,
        caller: caller_details,
        call_received_at: received,
        at: now,
    };
    let duplicates = state.views.read(|live| {
        let open: Vec<OpenIncident> = live
            .state
            .incidents
            .values()
            .filter(|r| r.is_open() && r.id != id)
            .map(|r| OpenIncident {
                id: r.id,
                location: r.location,
                incident_type: r.incident_type,
                reported_at: r.reported_at,
            })
            .collect();
        suggest_duplicates(
            &open,
            &NewCall {
                location,
                incident_type: body.incident_type,
                at: now,
            },
            &DuplicateWindow::DEFAULT,
        )
    });
    let area = state.views.areas().area_of(location);
    let address = state.address_of(location);
    let extra = json!({
        "incident_id": id, "location": location, "address": address,
        "area": area, "duplicates": duplicates,
    });
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::incident_command(s, id, report.clone())?,
                extra.clone(),
            ))
        })
        .await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

#[derive(Debug, Deserialize)]
struct ViewQuery {
    min_position: Option<u64>,
    #[serde(default)]
    include_closed: bool,
    bbox: Option<String>,
}

async fn wait_views(state: &AppState, q: &ViewQuery) {
    if let Some(p) = q.min_position {
        state.views.wait_for(Position(p), MIN_POSITION_WAIT).await;
    }
}

fn view_query(req: &HttpRequest) -> Result<ViewQuery, ApiError> {
    web::Query::<ViewQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

async fn list_incidents(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        let mut rows: Vec<_> = live
            .state
            .incidents
            .values()
            .filter(|r| q.include_closed || r.is_open())
            .collect();
        rows.sort_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(a.reported_at.cmp(&b.reported_at))
        });
        json!({ "position": live.state.last, "incidents": rows })
    });
    Ok(HttpResponse::Ok().json(body))
}

async fn get_incident(
    state: web::Data<AppState>,
    Allowed(caller, _): Allowed<Read>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("incident", &path, IncidentId::parse)?;
    let s = state.runner.incident(id).await?;
    let Some(incident) = s.incident else {
        return Err(ApiError::not_found(format!("there is no incident {id}")));
    };
    let mut body = json!({
        "id": incident.id,
        "status": incident.status(),
        "incident_type": incident.incident_type,
        "priority": incident.priority,
        "location": incident.location,
        "address": state.address_of(incident.location),
        "source": incident.source,
        "triaged": incident.triaged,
        "call_received_at": incident.call_received_at,
        "entered_at": incident.entered_at,
        "notes": incident.note_count,
        "units": incident.units.iter().map(|(u, p)| json!({
            "unit": u, "task": p.task, "active": p.is_active(),
            "dispatched_at": p.dispatched_at, "en_route_at": p.en_route_at,
            "on_scene_at": p.on_scene_at, "cleared_at": p.cleared_at,
        })).collect::<Vec<_>>(),
    });
    // Call-back details go to the dispatch centre only.
    if DISPATCH.contains(&caller.role) {
        body["caller"] = json!({
            "name": incident.caller.name.as_ref().map(|n| n.expose()),
            "call_back": incident.caller.call_back.as_ref().map(|p| p.expose()),
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// `POST /api/incidents/{id}/tasks`: assign a unit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignUnit {
    /// The unit.
    pub unit_id: UnitId,
}

async fn assign_unit(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, raw): Body<AssignUnit>,
) -> Result<HttpResponse, ApiError> {
    let incident_id = parse_id("incident", &path, IncidentId::parse)?;
    let cmd = command(&req, &caller, key, &raw, "operator");
    let executed = assign(&state.runner, &cmd, incident_id, body.unit_id).await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

/// Assigns a unit to an incident through the runner, decided against both (the incident
/// must be open, the unit free) and appended to both streams at once. Answers the task.
pub async fn assign(
    runner: &Runner,
    cmd: &muster_app::Command,
    incident_id: IncidentId,
    unit_id: UnitId,
) -> Result<Executed<Value>, CommandError> {
    let task = TaskId::from_uuid(cmd.key.derived_id("task"));
    let now = Utc::now();
    runner
        .execute(cmd, |s| {
            let changes = combined::assign(s, incident_id, unit_id, task, now)?;
            let task = if changes.is_empty() {
                muster_core::combined::States::unit(s, unit_id)?
                    .unit
                    .as_ref()
                    .and_then(|u| u.active_task)
                    .map(|t| t.task)
            } else {
                Some(task)
            };
            Ok((
                changes,
                json!({ "incident_id": incident_id, "unit_id": unit_id, "task_id": task }),
            ))
        })
        .await
}

/// `POST /api/incidents/{id}/close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseIncident {
    /// How it ended.
    pub disposition: Disposition,
}

async fn close_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, raw): Body<CloseIncident>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("incident", &path, IncidentId::parse)?;
    let cmd = command(&req, &caller, key, &raw, "operator");
    let now = Utc::now();
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::close(s, id, body.disposition, now)?,
                json!({ "incident_id": id }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::OK, &executed))
}

/// `POST /api/incidents/{id}/notes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    /// The note.
    pub text: NoteText,
}

async fn add_note(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Field>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, raw): Body<AddNote>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("incident", &path, IncidentId::parse)?;
    let cmd = command(&req, &caller, key, &raw, source_of(&caller));
    let now = Utc::now();
    let note = IncidentCommand::AddNote {
        text: body.text,
        at: now,
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::incident_command(s, id, note.clone())?,
                json!({ "incident_id": id }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::OK, &executed))
}

// ----------------------------------------------------------------------------------------
// Units

/// `POST /api/units`: register a unit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterUnit {
    /// Optional id; by default derived from the idempotency key.
    pub id: Option<UnitId>,
    /// Kind.
    pub kind: UnitKind,
    /// Radio name.
    pub call_sign: CallSign,
    /// Agency.
    pub agency: Agency,
    /// Home station.
    pub home_station: StationCode,
    /// Capabilities.
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
    /// Where it is now.
    #[serde(default)]
    pub location: Option<LatLon>,
}

async fn register_unit(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    Body(body, raw): Body<RegisterUnit>,
) -> Result<HttpResponse, ApiError> {
    let cmd = command(&req, &caller, key, &raw, "operator");
    let id = body
        .id
        .unwrap_or_else(|| UnitId::from_uuid(cmd.key.derived_id("unit")));
    let executed = register(&state.runner, &cmd, id, body).await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

/// Registers a unit (and its first position, if given) as one command.
pub async fn register(
    runner: &Runner,
    cmd: &muster_app::Command,
    id: UnitId,
    body: RegisterUnit,
) -> Result<Executed<Value>, ApiError> {
    let now = Utc::now();
    Ok(runner
        .execute(cmd, |s| {
            let (next, mut events) =
                muster_core::combined::States::unit(s, id)?.execute(UnitCommand::Register {
                    unit_id: id,
                    kind: body.kind,
                    call_sign: body.call_sign.clone(),
                    agency: body.agency.clone(),
                    home_station: body.home_station.clone(),
                    capabilities: body.capabilities.clone(),
                    at: now,
                })?;
            if let Some(position) = body.location {
                events.extend(next.decide(UnitCommand::ReportPosition {
                    position,
                    heading_deg: None,
                    speed_m_s: None,
                    accuracy_m: None,
                    at: now,
                })?);
            }
            let mut changes = combined::Changes::default();
            changes.unit(id, events);
            Ok((changes, json!({ "unit_id": id })))
        })
        .await?)
}

async fn list_units(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        json!({ "position": live.state.last, "units": live.state.units.values().collect::<Vec<_>>() })
    });
    Ok(HttpResponse::Ok().json(body))
}

async fn get_unit(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("unit", &path, UnitId::parse)?;
    let q = view_query(&req)?;
    wait_views(&state, &q).await;
    state
        .views
        .read(|live| {
            live.state
                .units
                .get(&id)
                .map(|u| HttpResponse::Ok().json(u))
        })
        .ok_or_else(|| ApiError::not_found(format!("there is no unit {id}")))
}

/// `POST /api/units/{id}/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatus {
    /// The new status.
    pub status: UnitStatus,
}

async fn change_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Field>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, raw): Body<ChangeStatus>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("unit", &path, UnitId::parse)?;
    caller.acts_for(id)?;
    let cmd = command(&req, &caller, key, &raw, source_of(&caller));
    let change = UnitCommand::ChangeStatus {
        to: body.status,
        at: Utc::now(),
    };
    let executed = unit_command(&state.runner, &cmd, id, change).await?;
    Ok(answer(StatusCode::OK, &executed))
}

/// Runs a command on one unit, with the time points it records on its incident.
async fn unit_command(
    runner: &Runner,
    cmd: &muster_app::Command,
    id: UnitId,
    command: UnitCommand,
) -> Result<Executed<Value>, ApiError> {
    let answer = match &command {
        UnitCommand::AcknowledgeTask { task, .. }
        | UnitCommand::DeclineTask { task, .. }
        | UnitCommand::CompleteTask { task, .. } => json!({ "unit_id": id, "task_id": task }),
        _ => json!({ "unit_id": id }),
    };
    Ok(runner
        .execute(cmd, |s| {
            Ok((
                combined::unit_command(s, id, command.clone())?,
                answer.clone(),
            ))
        })
        .await?)
}

/// `POST /api/units/{id}/position`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPosition {
    /// Where.
    pub location: LatLon,
    /// Heading, degrees.
    pub heading_deg: Option<f64>,
    /// Speed, m/s.
    pub speed_m_s: Option<f64>,
    /// Accuracy, m.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken; default now.
    pub at: Option<DateTime<Utc>>,
}

async fn report_position(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Field>,
    Key(key): Key,
    path: web::Path<String>,
    Body(b, raw): Body<ReportPosition>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("unit", &path, UnitId::parse)?;
    caller.acts_for(id)?;
    let now = Utc::now();
    let at = match b.at {
        Some(claim) => muster_core::value::check_source_time(claim, now).map_err(|e| {
            ApiError::invalid(format!("at {}", e.reason)).with_details(json!({"field": "at"}))
        })?,
        None => now,
    };
    let cmd = command(&req, &caller, key, &raw, source_of(&caller));
    let report = UnitCommand::ReportPosition {
        position: b.location,
        heading_deg: b.heading_deg,
        speed_m_s: b.speed_m_s,
        accuracy_m: b.accuracy_m,
        at,
    };
    let executed = unit_command(&state.runner, &cmd, id, report).await?;
    Ok(answer(StatusCode::OK, &executed))
}

/// `POST /api/units/{id}/tasks/{task}/decline`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decline {
    /// Why.
    pub reason: Option<NoteText>,
}

async fn task_step(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Field>,
    Key(key): Key,
    path: web::Path<(String, String, String)>,
    OptionalBody(raw, _): OptionalBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let (unit, task, step) = path.into_inner();
    let id = parse_id("unit", &unit, UnitId::parse)?;
    caller.acts_for(id)?;
    let task = parse_id("task", &task, TaskId::parse)?;
    let now = Utc::now();
    let step_command = match step.as_str() {
        "acknowledge" | "complete" => {
            if !raw.is_null() {
                from_value::<NoFields>(&raw)?;
            }
            if step == "acknowledge" {
                UnitCommand::AcknowledgeTask { task, at: now }
            } else {
                UnitCommand::CompleteTask { task, at: now }
            }
        }
        "decline" => {
            let reason = if raw.is_null() {
                None
            } else {
                from_value::<Decline>(&raw)?.reason
            };
            UnitCommand::DeclineTask {
                task,
                reason,
                at: now,
            }
        }
        _ => {
            return Err(ApiError::not_found(
                "no such task step: use acknowledge, decline or complete",
            ));
        }
    };
    let cmd = command(&req, &caller, key, &raw, source_of(&caller));
    let executed = unit_command(&state.runner, &cmd, id, step_command).await?;
    Ok(answer(StatusCode::OK, &executed))
}

/// A body that must have no fields (`{}`), where one is sent at all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

// ----------------------------------------------------------------------------------------
// Sensors

/// `POST /api/sensors`: register a sensor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSensor {
    /// Optional id; by default derived from the idempotency key.
    pub id: Option<SensorId>,
    /// What it is.
    pub kind: SensorKind,
    /// Where.
    pub location: LatLon,
    /// Thresholds, at most one per metric.
    pub thresholds: Vec<Threshold>,
}

async fn register_sensor(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    Body(b, raw): Body<RegisterSensor>,
) -> Result<HttpResponse, ApiError> {
    let cmd = command(&req, &caller, key, &raw, "operator");
    let id =
        b.id.unwrap_or_else(|| SensorId::from_uuid(cmd.key.derived_id("sensor")));
    let register = SensorCommand::Register {
        sensor_id: id,
        kind: b.kind,
        location: b.location,
        thresholds: b.thresholds,
        at: Utc::now(),
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::sensor_command(s, id, register.clone())?,
                json!({ "sensor_id": id }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

/// `POST /api/sensors/{id}/readings`: one reading.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingIn {
    /// The metric.
    pub metric: MetricName,
    /// The value (finite).
    pub value: f64,
    /// When it was measured; default now.
    pub at: Option<DateTime<Utc>>,
}

async fn ingest_reading(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Dispatch>,
    Key(key): Key,
    path: web::Path<String>,
    Body(b, raw): Body<ReadingIn>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("sensor", &path, SensorId::parse)?;
    let now = Utc::now();
    let at = match b.at {
        Some(claim) => muster_core::value::check_source_time(claim, now).map_err(|e| {
            ApiError::invalid(format!("at {}", e.reason)).with_details(json!({"field": "at"}))
        })?,
        None => now,
    };
    let reading =
        Reading::new(b.metric, b.value, at).map_err(|e| ApiError::invalid(e.to_string()))?;
    let cmd = command(&req, &caller, key, &raw, "sensor");
    let new_alarm = AlarmId::from_uuid(cmd.key.derived_id("alarm"));
    let new_incident = IncidentId::from_uuid(cmd.key.derived_id("incident"));
    let ingest = SensorCommand::Ingest {
        reading,
        new_alarm,
        new_incident,
    };
    let executed = state
        .runner
        .execute(&cmd, |s| {
            let changes = combined::sensor_command(s, id, ingest.clone())?;
            let alarm = changes
                .sensors
                .iter()
                .flat_map(|(_, events)| events)
                .find_map(|e| match e {
                    muster_core::sensor::SensorEvent::SensorAlarmRaised {
                        alarm, incident, ..
                    } => Some(json!({"raised": alarm, "incident_id": incident})),
                    muster_core::sensor::SensorEvent::SensorAlarmCleared {
                        alarm,
                        incident,
                        ..
                    } => Some(json!({"cleared": alarm, "incident_id": incident})),
                    _ => None,
                });
            Ok((changes, json!({ "sensor_id": id, "alarm": alarm })))
        })
        .await?;
    Ok(answer(StatusCode::OK, &executed))
}

// ----------------------------------------------------------------------------------------
// Views

async fn area_counts(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    wait_views(&state, &q).await;
    Ok(HttpResponse::Ok().json(state.views.read(|live| live.state.area_counts())))
}

/// A GeoJSON bounding box: west, south, east, north (RFC 7946 §5). West greater than east
/// crosses the antimeridian.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

impl BBox {
    /// Parses `west,south,east,north` in degrees.
    pub fn parse(text: &str) -> Result<BBox, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_bbox",
                format!("bbox must be west,south,east,north in degrees: {why}"),
            )
        };
        let parts: Vec<f64> = text
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("each part must be a number"))?;
        let [west, south, east, north] = parts[..] else {
            return Err(bad("it needs exactly four numbers"));
        };
        if parts.iter().any(|v| !v.is_finite()) {
            return Err(bad("numbers must be finite"));
        }
        if !(-180.0..=180.0).contains(&west) || !(-180.0..=180.0).contains(&east) {
            return Err(bad("longitudes must be within -180..180"));
        }
        if !(-90.0..=90.0).contains(&south) || !(-90.0..=90.0).contains(&north) {
            return Err(bad("latitudes must be within -90..90"));
        }
        if south > north {
            return Err(bad("south must not be north of north"));
        }
        Ok(BBox {
            west,
            south,
            east,
            north,
        })
    }

    /// Whether a point is inside (edges included).
    pub fn contains(&self, p: LatLon) -> bool {
        let (lat, lon) = (p.lat_deg(), p.lon_deg());
        let lon_ok = if self.west <= self.east {
            (self.west..=self.east).contains(&lon)
        } else {
            lon >= self.west || lon <= self.east
        };
        lon_ok && (self.south..=self.north).contains(&lat)
    }
}

fn feature(id: String, location: LatLon, mut properties: Value) -> Value {
    if let Value::Object(p) = &mut properties {
        p.remove("location");
    }
    json!({
        "type": "Feature",
        "id": id,
        "geometry": { "type": "Point", "coordinates": location.to_geojson_position() },
        "properties": properties,
    })
}

async fn geo_incidents(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    let bbox = q.bbox.as_deref().map(BBox::parse).transpose()?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        let features: Vec<Value> = live
            .state
            .incidents
            .values()
            .filter(|r| q.include_closed || r.is_open())
            .filter(|r| bbox.is_none_or(|b| b.contains(r.location)))
            .map(|r| feature(r.id.to_string(), r.location, json!(r)))
            .collect();
        json!({ "type": "FeatureCollection", "features": features, "position": live.state.last })
    });
    Ok(HttpResponse::Ok()
        .content_type("application/geo+json")
        .body(body.to_string()))
}

async fn geo_units(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    let bbox = q.bbox.as_deref().map(BBox::parse).transpose()?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        let features: Vec<Value> = live
            .state
            .units
            .values()
            .filter_map(|r| r.location.map(|l| (r, l)))
            .filter(|(_, l)| bbox.is_none_or(|b| b.contains(*l)))
            .map(|(r, l)| feature(r.id.to_string(), l, json!(r)))
            .collect();
        json!({ "type": "FeatureCollection", "features": features, "position": live.state.last })
    });
    Ok(HttpResponse::Ok()
        .content_type("application/geo+json")
        .body(body.to_string()))
}

/// Every route: method, path, handler. The OpenAPI document is checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/incidents"),
    ("get", "/api/incidents"),
    ("get", "/api/incidents/{id}"),
    ("post", "/api/incidents/{id}/tasks"),
    ("post", "/api/incidents/{id}/close"),
    ("post", "/api/incidents/{id}/notes"),
    ("post", "/api/units"),
    ("get", "/api/units"),
    ("get", "/api/units/{id}"),
    ("post", "/api/units/{id}/status"),
    ("post", "/api/units/{id}/position"),
    ("post", "/api/units/{id}/tasks/{task}/{step}"),
    ("post", "/api/units/{id}/device-token"),
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
    ("get", "/api/wall/city"),
    ("get", "/api/wall/geocode"),
    ("get", "/api/wall/timeline"),
    ("get", "/api/wall/at"),
    ("get", "/api/wall/response-times"),
    ("get", "/api/openapi.json"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// Mounts the `/api` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/incidents", web::post().to(create_incident))
        .route("/api/incidents", web::get().to(list_incidents))
        .route("/api/incidents/{id}", web::get().to(get_incident))
        .route("/api/incidents/{id}/tasks", web::post().to(assign_unit))
        .route("/api/incidents/{id}/close", web::post().to(close_incident))
        .route("/api/incidents/{id}/notes", web::post().to(add_note))
        .route("/api/units", web::post().to(register_unit))
        .route("/api/units", web::get().to(list_units))
        .route("/api/units/{id}", web::get().to(get_unit))
        .route("/api/units/{id}/status", web::post().to(change_status))
        .route("/api/units/{id}/position", web::post().to(report_position))
        .route(
            "/api/units/{id}/tasks/{task}/{step}",
            web::post().to(task_step),
        )
        .route("/api/sensors", web::post().to(register_sensor))
        .route("/api/sensors/{id}/readings", web::post().to(ingest_reading))
        .route("/api/areas", web::get().to(area_counts))
        .route("/api/geo/incidents", web::get().to(geo_incidents))
        .route("/api/geo/units", web::get().to(geo_units));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bboxes_are_checked_and_may_cross_the_antimeridian() {
        let cases = [
            ("1,2,3", "three numbers"),
            ("a,b,c,d", "not numbers"),
            ("0,0,1,NaN", "NaN"),
            ("0,0,1,inf", "infinite"),
            ("0,91,1,92", "latitude out of range"),
            ("-181,0,1,1", "longitude out of range"),
            ("0,10,1,5", "south north of north"),
        ];
        for (text, why) in cases {
            assert!(BBox::parse(text).is_err(), "{why}: {text}");
        }
        let b = BBox::parse("170,-10,-170,10").unwrap();
        assert!(b.contains(LatLon::from_lat_lon(0.0, 179.0).unwrap()));
        assert!(b.contains(LatLon::from_lat_lon(0.0, -175.0).unwrap()));
        assert!(!b.contains(LatLon::from_lat_lon(0.0, 0.0).unwrap()));
        let h = BBox::parse("24.9,60.1,25.0,60.2").unwrap();
        assert!(h.contains(LatLon::from_lat_lon(60.17, 24.94).unwrap()));
        assert!(!h.contains(LatLon::from_lat_lon(60.17, 25.04).unwrap()));
    }
}
