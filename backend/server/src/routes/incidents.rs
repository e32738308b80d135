//! Incidents: calls entered, assignments, notes, closing, the board.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_app::{CommandError, Executed, Runner};
use muster_core::combined;
use muster_core::duplicates::{DuplicateWindow, NewCall, OpenIncident, suggest_duplicates};
use muster_core::incident::{IncidentCommand, ReportSource};
use muster_core::value::{
    CallerDetails, Disposition, IncidentType, LatLon, NoteText, PersonName, PhoneNumber, Priority,
};
use muster_core::{IncidentId, TaskId, UnitId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Allowed, AppState, Dispatch, Field, Key, Read, answer, parse_id, source_of, view_query,
    wait_views,
};
use crate::auth::DISPATCH;
use crate::edge::{Body, command};
use crate::error::ApiError;

/// Caller details as they arrive. Personal data: parsed here with errors that never repeat
/// the value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Caller)]
pub struct CallerIn {
    #[schema(value_type = Option<String>, max_length = 120)]
    name: Option<Value>,
    #[schema(value_type = Option<String>, max_length = 32)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    #[schema(pattern = "^(hotline|citizen)$")]
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
    // The duplicate check sees every call stored before this one, even one the views have
    // not applied yet.
    let head = state.runner.store().head();
    state
        .views
        .wait_for_head(head, super::MIN_POSITION_WAIT)
        .await;
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

/// The incident routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/incidents", web::post().to(create_incident))
        .route("/api/incidents", web::get().to(list_incidents))
        .route("/api/incidents/{id}", web::get().to(get_incident))
        .route("/api/incidents/{id}/tasks", web::post().to(assign_unit))
        .route("/api/incidents/{id}/close", web::post().to(close_incident))
        .route("/api/incidents/{id}/notes", web::post().to(add_note));
}
