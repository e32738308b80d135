//! Sensors: registration and readings.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_core::combined;
use muster_core::sensor::{Reading, SensorCommand, Threshold};
use muster_core::value::{LatLon, MetricName, SensorKind};
use muster_core::{AlarmId, IncidentId, SensorId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Allowed, AppState, Dispatch, Key, answer, own_answer, parse_id};
use crate::edge::{Body, command};
use crate::error::ApiError;

/// The answer to `POST /api/sensors`, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SensorRegistered {
    /// The sensor.
    pub sensor_id: SensorId,
}

/// The answer to a reading, besides the [`super::CommandAnswer`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadingTaken {
    /// The sensor.
    pub sensor_id: SensorId,
    /// The alarm the reading raised or cleared, if it did.
    pub alarm: Option<AlarmChange>,
}

/// An alarm raised or cleared by a reading: `raised` or `cleared` names it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlarmChange {
    /// The alarm raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raised: Option<AlarmId>,
    /// The alarm cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared: Option<AlarmId>,
    /// The incident the alarm reported.
    pub incident_id: IncidentId,
}
/// `POST /api/sensors`: register a sensor.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
                own_answer(&SensorRegistered { sensor_id: id }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::CREATED, &executed))
}

/// `POST /api/sensors/{id}/readings`: one reading.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
                    } => Some(AlarmChange {
                        raised: Some(*alarm),
                        cleared: None,
                        incident_id: *incident,
                    }),
                    muster_core::sensor::SensorEvent::SensorAlarmCleared {
                        alarm,
                        incident,
                        ..
                    } => Some(AlarmChange {
                        raised: None,
                        cleared: Some(*alarm),
                        incident_id: *incident,
                    }),
                    _ => None,
                });
            Ok((
                changes,
                own_answer(&ReadingTaken {
                    sensor_id: id,
                    alarm,
                }),
            ))
        })
        .await?;
    Ok(answer(StatusCode::OK, &executed))
}

/// The sensor routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/sensors", web::post().to(register_sensor))
        .route("/api/sensors/{id}/readings", web::post().to(ingest_reading));
}
