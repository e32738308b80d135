//! Pure follow-ups: what one aggregate's event asks of another aggregate. The server runs
//! them as it sees the events (after they are stored), and appends the results with the
//! usual expected-revision guard. A refusal of a follow-up is logged, not shown to a user.
//!
//! - A unit's task and status events become time points on the task's incident.
//! - A sensor's alarm becomes an incident report; its clearing a note on that incident.

use crate::ids::{IncidentId, SensorId, UnitId};
use crate::incident::{IncidentCommand, ReportSource, TimePoint};
use crate::sensor::SensorEvent;
use crate::unit::{UnitEvent, UnitStatus};
use crate::value::{CallerDetails, NoteText};

/// The time point a unit's event records on its incident, if any.
///
/// `task` is the unit's active task when the event is a status change (status events do not
/// name the task); pass the task from the unit's state before the event.
pub fn incident_progress(
    unit: UnitId,
    event: &UnitEvent,
    active_task: Option<crate::ids::TaskId>,
) -> Option<(IncidentId, IncidentCommand)> {
    let (incident, task, point, at) = match event {
        UnitEvent::TaskAssigned { task, incident, at } => {
            (*incident, *task, TimePoint::Dispatched, *at)
        }
        UnitEvent::TaskDeclined {
            task, incident, at, ..
        }
        | UnitEvent::TaskCompleted { task, incident, at } => {
            (*incident, *task, TimePoint::Cleared, *at)
        }
        UnitEvent::UnitStatusChanged {
            to,
            incident: Some(incident),
            at,
            ..
        } => {
            let point = match to {
                UnitStatus::EnRoute => TimePoint::EnRoute,
                UnitStatus::OnScene => TimePoint::OnScene,
                _ => return None,
            };
            (*incident, active_task?, point, *at)
        }
        _ => return None,
    };
    Some((
        incident,
        IncidentCommand::RecordUnitProgress {
            unit,
            task,
            point,
            at,
        },
    ))
}

/// The incident command a sensor's event asks for, if any: a report for a raised alarm, a
/// note for a cleared one.
pub fn sensor_follow_up(
    sensor: SensorId,
    event: &SensorEvent,
) -> Option<(IncidentId, IncidentCommand)> {
    match event {
        SensorEvent::SensorRegistered { .. } => None,
        SensorEvent::SensorAlarmRaised {
            alarm,
            incident,
            location,
            incident_type,
            priority,
            at,
            ..
        } => Some((
            *incident,
            IncidentCommand::Report {
                incident_id: *incident,
                source: ReportSource::Sensor {
                    sensor,
                    alarm: *alarm,
                },
                location: *location,
                incident_type: *incident_type,
                priority: *priority,
                caller: CallerDetails::default(),
                call_received_at: *at,
                at: *at,
            },
        )),
        SensorEvent::SensorAlarmCleared {
            incident,
            metric,
            value,
            at,
            ..
        } => {
            let text = NoteText::parse(&format!("sensor alarm cleared: {metric} back to {value}"))
                .expect("a metric code and a number make a valid note");
            Some((*incident, IncidentCommand::AddNote { text, at: *at }))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::decision::Aggregate;
    use crate::ids::{AlarmId, TaskId};
    use crate::incident::{IncidentState, IncidentStatus};
    use crate::value::{IncidentType, LatLon, MetricName, Priority};

    #[test]
    fn a_sensor_alarm_becomes_an_incident_and_its_clearing_a_note() {
        let at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        let sensor = SensorId::from_uuid(Uuid::from_u128(1));
        let incident = IncidentId::from_uuid(Uuid::from_u128(2));
        let alarm = AlarmId::from_uuid(Uuid::from_u128(3));
        let metric = MetricName::parse("smoke_obscuration_pct").unwrap();
        let raised = SensorEvent::SensorAlarmRaised {
            alarm,
            incident,
            metric: metric.clone(),
            value: 12.0,
            location: LatLon::from_lat_lon(48.0, 11.0).unwrap(),
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P2,
            at,
        };
        let (id, report) = sensor_follow_up(sensor, &raised).unwrap();
        assert_eq!(id, incident);
        let (state, events) = IncidentState::default().execute(report).unwrap();
        assert_eq!(events.len(), 3);
        let inc = state.incident.as_ref().unwrap();
        assert_eq!(inc.source, ReportSource::Sensor { sensor, alarm });
        let cleared = SensorEvent::SensorAlarmCleared {
            alarm,
            incident,
            metric,
            value: 0.5,
            at,
        };
        let (_, note) = sensor_follow_up(sensor, &cleared).unwrap();
        let (state, events) = state.execute(note).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(state.incident.unwrap().status(), IncidentStatus::Reported);
    }

    #[test]
    fn unit_events_map_to_time_points() {
        let at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        let unit = UnitId::from_uuid(Uuid::from_u128(1));
        let incident = IncidentId::from_uuid(Uuid::from_u128(2));
        let task = TaskId::from_uuid(Uuid::from_u128(3));
        let point = |e: &UnitEvent, active| match incident_progress(unit, e, active) {
            Some((_, IncidentCommand::RecordUnitProgress { point, .. })) => Some(point),
            _ => None,
        };
        let status = |to| UnitEvent::UnitStatusChanged {
            from: UnitStatus::Dispatched,
            to,
            incident: Some(incident),
            at,
        };
        assert_eq!(
            point(&UnitEvent::TaskAssigned { task, incident, at }, None),
            Some(TimePoint::Dispatched)
        );
        assert_eq!(
            point(&status(UnitStatus::EnRoute), Some(task)),
            Some(TimePoint::EnRoute)
        );
        assert_eq!(
            point(&status(UnitStatus::OnScene), Some(task)),
            Some(TimePoint::OnScene)
        );
        assert_eq!(point(&status(UnitStatus::Transporting), Some(task)), None);
        assert_eq!(
            point(&UnitEvent::TaskCompleted { task, incident, at }, Some(task)),
            Some(TimePoint::Cleared)
        );
        assert_eq!(
            point(
                &UnitEvent::TaskDeclined {
                    task,
                    incident,
                    reason: None,
                    at
                },
                Some(task)
            ),
            Some(TimePoint::Cleared)
        );
    }
}
