//! Units: registration, status, positions, task steps, the board.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_app::{Executed, Runner};
use muster_core::combined;
use muster_core::decision::Aggregate;
use muster_core::unit::{UnitCommand, UnitStatus};
use muster_core::value::{Agency, CallSign, Capability, LatLon, NoteText, StationCode, UnitKind};
use muster_core::{TaskId, UnitId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Allowed, AppState, Dispatch, Field, Key, Read, answer, own_answer, parse_id, source_of,
    view_query, wait_views,
};
use crate::edge::{Body, OptionalBody, command, from_value};
use crate::error::ApiError;
use crate::views::UnitRow;

/// The answer to a command on a unit, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitChanged {
    /// The unit.
    pub unit_id: UnitId,
    /// The task, for a task step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
}

/// `GET /api/units`: the unit board.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitBoard {
    /// The last log position the views applied (none before the first event).
    pub position: Option<u64>,
    /// Every unit, by id.
    pub units: Vec<UnitRow>,
}

/// `POST /api/units`: register a unit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    /// Capabilities (a set: a repeat counts once).
    #[serde(default)]
    #[schema(value_type = Vec<Capability>)]
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
            Ok((
                changes,
                own_answer(&UnitChanged {
                    unit_id: id,
                    task_id: None,
                }),
            ))
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
    let body = state.views.read(|live| UnitBoard {
        position: live.state.last.map(|p| p.0),
        units: live.state.units.values().cloned().collect(),
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    let task_id = match &command {
        UnitCommand::AcknowledgeTask { task, .. }
        | UnitCommand::DeclineTask { task, .. }
        | UnitCommand::CompleteTask { task, .. } => Some(*task),
        _ => None,
    };
    let answer = own_answer(&UnitChanged {
        unit_id: id,
        task_id,
    });
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
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
    path: web::Path<(String, String)>,
    OptionalBody(raw, _): OptionalBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let (unit, task) = path.into_inner();
    // The route is one of TASK_STEPS: its last segment names the step.
    let step = req.path().rsplit('/').next().unwrap_or_default().to_owned();
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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// The steps of a task, each its own route: `POST /api/units/{id}/tasks/{task}/<step>`.
pub const TASK_STEPS: [&str; 3] = ["acknowledge", "decline", "complete"];

/// The unit routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/units", web::post().to(register_unit))
        .route("/api/units", web::get().to(list_units))
        .route("/api/units/{id}", web::get().to(get_unit))
        .route("/api/units/{id}/status", web::post().to(change_status))
        .route("/api/units/{id}/position", web::post().to(report_position));
    for step in TASK_STEPS {
        cfg.route(
            &format!("/api/units/{{id}}/tasks/{{task}}/{step}"),
            web::post().to(task_step),
        );
    }
}
