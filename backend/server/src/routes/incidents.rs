//! Incidents: calls entered, assignments, notes, closing, the board.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_app::{CommandError, Executed, Runner};
use muster_core::combined;
use muster_core::duplicates::{
    DuplicateSuggestion, DuplicateWindow, NewCall, OpenIncident, suggest_duplicates,
};
use muster_core::incident::{IncidentCommand, IncidentStatus, ReportSource};
use muster_core::value::{
    CallerDetails, Disposition, IncidentType, LatLon, NoteText, PersonName, PhoneNumber, Priority,
};
use muster_core::{IncidentId, TaskId, UnitId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Allowed, AppState, Dispatch, Field, Key, NearestAddress, Read, answer, own_answer, parse_id,
    source_of, view_query, wait_views,
};
use crate::areas::AreaRef;
use crate::auth::DISPATCH;
use crate::edge::{Body, command};
use crate::error::ApiError;
use crate::views::IncidentRow;

/// The answer to `POST /api/incidents`, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentReported {
    /// The incident.
    pub incident_id: IncidentId,
    /// Where it is (resolved from the address when one was given).
    pub location: LatLon,
    /// The nearest address, when there is one close by.
    pub address: Option<NearestAddress>,
    /// Its area.
    pub area: AreaRef,
    /// Open incidents of a related type nearby and recent, nearest first.
    pub duplicates: Vec<DuplicateSuggestion>,
}

/// The answer to a command on one incident, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentChanged {
    /// The incident.
    pub incident_id: IncidentId,
}

/// The answer to `POST /api/incidents/{id}/tasks`, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitAssigned {
    /// The incident.
    pub incident_id: IncidentId,
    /// The unit.
    pub unit_id: UnitId,
    /// The task that holds the unit on the incident (the one it already had, on a repeat).
    pub task_id: Option<TaskId>,
}

/// `GET /api/incidents`: the incident board.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentBoard {
    /// The last log position the views applied (none before the first event).
    pub position: Option<u64>,
    /// Open incidents (all with `include_closed=true`), by priority, then age.
    pub incidents: Vec<IncidentRow>,
}

/// `GET /api/incidents/{id}`: one incident from its stream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    /// Id.
    pub id: IncidentId,
    /// Where it is in its life.
    pub status: IncidentStatus,
    /// Type.
    pub incident_type: IncidentType,
    /// Priority.
    pub priority: Priority,
    /// Where.
    pub location: LatLon,
    /// The nearest address, when there is one close by.
    pub address: Option<NearestAddress>,
    /// Where the report came from.
    pub source: ReportSource,
    /// Whether type and priority were confirmed.
    pub triaged: bool,
    /// When the call was answered.
    pub call_received_at: Option<DateTime<Utc>>,
    /// When it was entered.
    pub entered_at: DateTime<Utc>,
    /// Notes added.
    pub notes: u32,
    /// Every unit that had a task on it, with its time points.
    pub units: Vec<UnitTimes>,
    /// Who called: for the dispatch centre's roles only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<CallerOut>,
    /// Whether the caller's details were erased on request (then `caller` is absent for
    /// everyone).
    pub caller_erased: bool,
}

/// A unit's task on an incident and its time points.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitTimes {
    /// The unit.
    pub unit: UnitId,
    /// Its task.
    pub task: TaskId,
    /// Whether the task is still active.
    pub active: bool,
    /// When it was dispatched.
    pub dispatched_at: DateTime<Utc>,
    /// When it set off.
    pub en_route_at: Option<DateTime<Utc>>,
    /// When it arrived.
    pub on_scene_at: Option<DateTime<Utc>>,
    /// When it left.
    pub cleared_at: Option<DateTime<Utc>>,
}

/// Caller details as the dispatch centre sees them. Personal data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CallerOut {
    /// Name.
    pub name: Option<String>,
    /// Call-back number.
    pub call_back: Option<String>,
}

impl std::fmt::Debug for CallerOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerOut { .. }")
    }
}

/// Caller details as they arrive. Personal data: parsed here with errors that never repeat
/// the value.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Caller)]
pub struct CallerIn {
    /// 1 to 120 characters, no control characters.
    #[schema(value_type = Option<String>, max_length = 120,
             pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    name: Option<Value>,
    /// 3 to 15 digits, with an optional leading `+` and spaces, `-`, `.`, `(`, `)` between.
    #[schema(value_type = Option<String>, max_length = 32,
             pattern = "^ *\\+?[ ().-]*([0-9][ ().-]*){3,15} *$")]
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
        Ok(CallerDetails {
            name,
            call_back,
            sealed: None,
        })
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
    // Caller details go into the log sealed under the incident's own key, which erasure
    // destroys (a retry finds the same key).
    let caller_details = if caller_details.is_empty() {
        caller_details
    } else {
        match state
            .runner
            .store()
            .data_key(id.as_uuid(), true)
            .await
            .map_err(ApiError::internal)?
        {
            Some(data_key) => muster_core::sealing::seal(&data_key, id, &caller_details)
                .map_err(ApiError::internal)?,
            // The incident's key was destroyed: it exists and its caller was erased. A
            // repeat of its report is answered from the record; anything else is refused.
            None => muster_core::value::CallerDetails::default(),
        }
    };
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
    let extra = own_answer(&IncidentReported {
        incident_id: id,
        location,
        address,
        area,
        duplicates,
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
        IncidentBoard {
            position: live.state.last.map(|p| p.0),
            incidents: rows.into_iter().cloned().collect(),
        }
    });
    Ok(HttpResponse::Ok().json(body))
}

async fn get_incident(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<Read>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("incident", &path, IncidentId::parse)?;
    let s = state.runner.incident(id).await?;
    let Some(incident) = s.incident else {
        return Err(ApiError::not_found(format!("there is no incident {id}")));
    };
    let body = IncidentDetail {
        id: incident.id,
        status: incident.status(),
        incident_type: incident.incident_type,
        priority: incident.priority,
        location: incident.location,
        address: state.address_of(incident.location),
        source: incident.source.clone(),
        triaged: incident.triaged,
        call_received_at: incident.call_received_at,
        entered_at: incident.entered_at,
        notes: incident.note_count,
        units: incident
            .units
            .iter()
            .map(|(u, p)| UnitTimes {
                unit: *u,
                task: p.task,
                active: p.is_active(),
                dispatched_at: p.dispatched_at,
                en_route_at: p.en_route_at,
                on_scene_at: p.on_scene_at,
                cleared_at: p.cleared_at,
            })
            .collect(),
        // Call-back details go to the dispatch centre only, unless they were erased.
        caller: match DISPATCH.contains(&caller.role) {
            true => muster_app::audit::caller_in_clear(state.runner.store().as_ref(), &incident)
                .await
                .map_err(ApiError::internal)?
                .map(|c| CallerOut {
                    name: c.name.as_ref().map(|n| n.expose().to_owned()),
                    call_back: c.call_back.as_ref().map(|p| p.expose().to_owned()),
                }),
            false => None,
        },
        caller_erased: incident.caller_erased,
    };
    // Every disclosure of caller details is in the audit trail before it is answered.
    if let Some(out) = &body.caller {
        let fields = muster_app::audit::caller_fields(out.name.is_some(), out.call_back.is_some());
        muster_app::audit::record_caller_read(
            state.runner.store().as_ref(),
            id,
            fields,
            "api",
            crate::edge::metadata(Some(&req), &caller, source_of(&caller)),
        )
        .await
        .map_err(ApiError::internal)?;
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
                own_answer(&UnitAssigned {
                    incident_id,
                    unit_id,
                    task_id: task,
                }),
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
                own_answer(&IncidentChanged { incident_id: id }),
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
                own_answer(&IncidentChanged { incident_id: id }),
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
        .route("/api/incidents/{id}/notes", web::post().to(add_note))
        .route(
            "/api/incidents/{id}/caller/erase",
            web::post().to(erase_caller),
        );
}

/// `POST /api/incidents/{id}/caller/erase`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseCaller {
    /// Why: the request and its reference (1 to 500 characters), kept in the log.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// The answer to `POST /api/incidents/{id}/caller/erase`, besides the command answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallerErased {
    /// The incident.
    pub incident_id: IncidentId,
    /// Whether the details were sealed and their key is now destroyed, so that no copy of the
    /// log can disclose them. `false` for details stored before sealing: they are no longer
    /// disclosed, but the log still holds them in the clear.
    pub shredded: bool,
}

async fn erase_caller(
    state: web::Data<AppState>,
    req: HttpRequest,
    Allowed(caller, _): Allowed<super::Admin>,
    Key(key): Key,
    path: web::Path<String>,
    Body(body, raw): Body<EraseCaller>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("incident", &path, IncidentId::parse)?;
    let cmd = command(&req, &caller, key, &raw, "operator");
    let erase = IncidentCommand::EraseCaller {
        by: caller.name.clone(),
        reason: body.reason,
        at: Utc::now(),
    };
    let sealed = state
        .runner
        .incident(id)
        .await?
        .incident
        .is_some_and(|i| i.caller.sealed.is_some() || i.caller_erased);
    // The erasure is recorded first; then the key goes (again on a repeat: destroying is
    // idempotent), so a failure between the two leaves a record and a retry finishes it.
    let executed = state
        .runner
        .execute(&cmd, |s| {
            Ok((
                combined::incident_command(s, id, erase.clone())?,
                serde_json::json!({"incident_id": id}),
            ))
        })
        .await?;
    state
        .runner
        .store()
        .destroy_data_key(id.as_uuid())
        .await
        .map_err(ApiError::internal)?;
    // The key is gone now: the details were shredded when they had been sealed.
    let shredded = sealed;
    tracing::info!(incident = %id, by = %caller.name, shredded, "caller details erased");
    let mut executed = executed;
    executed.answer = own_answer(&CallerErased {
        incident_id: id,
        shredded,
    });
    Ok(answer(StatusCode::OK, &executed))
}
