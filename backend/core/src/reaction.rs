//! Pure follow-ups: what one aggregate's event asks of another aggregate. The server runs
//! them as it sees the events (after they are stored), and appends the results with the
//! usual expected-revision guard. A refusal of a follow-up is logged, not shown to a user.
//!
//! - A unit's task and status events become time points on the task's incident.
//! - Closing an incident completes the tasks of the units it cleared.
//! - A sensor's alarm becomes an incident report; its clearing a note on that incident.

use crate::ids::{IncidentId, SensorId, UnitId};
use crate::incident::{IncidentCommand, IncidentEvent, ReportSource, TimePoint};
use crate::sensor::SensorEvent;
use crate::unit::{UnitCommand, UnitEvent, UnitStatus};
use crate::value::{CallerDetails, NoteText};

/// The time point a unit's event records on its incident, if any: dispatched for an
/// assignment, en route and on scene for those status changes, cleared when the task ends.
pub fn incident_progress(unit: UnitId, event: &UnitEvent) -> Option<(IncidentId, IncidentCommand)> {
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
            task: Some(task),
            at,
            ..
        } => {
            let point = match to {
                UnitStatus::EnRoute => TimePoint::EnRoute,
                UnitStatus::OnScene => TimePoint::OnScene,
                _ => return None,
            };
            (*incident, *task, point, *at)
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

/// The units a closing releases: for a batch of incident events that closes the incident,
/// the task each cleared unit is to complete on its own stream. A unit still transporting a
/// patient refuses until it reaches the hospital; its completion then clears nothing more
/// on the closed incident.
pub fn units_released_by_close(batch: &[IncidentEvent]) -> Vec<(UnitId, UnitCommand)> {
    let Some(closed_at) = batch.iter().find_map(|e| match e {
        IncidentEvent::IncidentClosed { at, .. } => Some(*at),
        _ => None,
    }) else {
        return Vec::new();
    };
    batch
        .iter()
        .filter_map(|e| match e {
            IncidentEvent::TimePointRecorded {
                point: TimePoint::Cleared,
                unit: Some(unit),
                task: Some(task),
                ..
            } => Some((
                *unit,
                UnitCommand::CompleteTask {
                    task: *task,
                    at: closed_at,
                },
            )),
            _ => None,
        })
        .collect()
}

/// The incident command a sensor's event asks for, if any: a report for a raised alarm, a
/// note for a cleared one.
pub fn sensor_follow_up(
    sensor: SensorId,
    event: &SensorEvent,
) -> Option<(IncidentId, IncidentCommand)> {
    match event {
        SensorEvent::SensorRegistered { .. } | SensorEvent::SensorReconfigured { .. } => None,
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
        let point = |e: &UnitEvent| match incident_progress(unit, e) {
            Some((_, IncidentCommand::RecordUnitProgress { point, .. })) => Some(point),
            _ => None,
        };
        let status = |to| UnitEvent::UnitStatusChanged {
            from: UnitStatus::Dispatched,
            to,
            incident: Some(incident),
            task: Some(task),
            at,
        };
        assert_eq!(
            point(&UnitEvent::TaskAssigned { task, incident, at }),
            Some(TimePoint::Dispatched)
        );
        assert_eq!(
            point(&status(UnitStatus::EnRoute)),
            Some(TimePoint::EnRoute)
        );
        assert_eq!(
            point(&status(UnitStatus::OnScene)),
            Some(TimePoint::OnScene)
        );
        assert_eq!(point(&status(UnitStatus::Transporting)), None);
        assert_eq!(
            point(&UnitEvent::TaskCompleted { task, incident, at }),
            Some(TimePoint::Cleared)
        );
        assert_eq!(
            point(&UnitEvent::TaskDeclined {
                task,
                incident,
                reason: None,
                at
            }),
            Some(TimePoint::Cleared)
        );
    }

    #[test]
    fn a_unit_run_is_recorded_on_its_incident_and_closing_releases_the_unit() {
        use crate::unit::{UnitState, UnitStatus as S};
        use crate::value::{Agency, CallSign, Disposition, StationCode, UnitKind};

        let t = |s: i64| Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap();
        let unit = UnitId::from_uuid(Uuid::from_u128(1));
        let incident = IncidentId::from_uuid(Uuid::from_u128(2));
        let task = TaskId::from_uuid(Uuid::from_u128(3));
        let (mut inc, _) = IncidentState::default()
            .execute(IncidentCommand::Report {
                incident_id: incident,
                source: ReportSource::Hotline,
                location: LatLon::from_lat_lon(60.0, 25.0).unwrap(),
                incident_type: IncidentType::Medical,
                priority: Priority::P1,
                caller: CallerDetails::default(),
                call_received_at: t(0),
                at: t(20),
            })
            .unwrap();
        let (mut u, _) = UnitState::default()
            .execute(UnitCommand::Register {
                unit_id: unit,
                kind: UnitKind::AlsAmbulance,
                call_sign: CallSign::parse("M1").unwrap(),
                agency: Agency::parse("ems").unwrap(),
                home_station: StationCode::parse("s1").unwrap(),
                capabilities: Default::default(),
                at: t(0),
            })
            .unwrap();
        let commands = [
            UnitCommand::AssignTask {
                task,
                incident,
                at: t(50),
            },
            UnitCommand::ChangeStatus {
                to: S::EnRoute,
                at: t(80),
            },
            UnitCommand::ChangeStatus {
                to: S::OnScene,
                at: t(400),
            },
        ];
        for command in commands {
            let (next, events) = u.execute(command).unwrap();
            u = next;
            for e in &events {
                if let Some((id, follow_up)) = incident_progress(unit, e) {
                    assert_eq!(id, incident);
                    inc = inc.execute(follow_up).unwrap().0;
                }
            }
        }
        let on_incident = inc.incident.as_ref().unwrap().units[&unit].clone();
        assert_eq!(on_incident.dispatched_at, t(50));
        assert_eq!(on_incident.en_route_at, Some(t(80)));
        assert_eq!(on_incident.on_scene_at, Some(t(400)));
        assert_eq!(
            inc.incident.as_ref().unwrap().status(),
            IncidentStatus::UnitsOnScene
        );

        let (inc, batch) = inc
            .execute(IncidentCommand::Close {
                disposition: Disposition::Resolved,
                at: t(900),
            })
            .unwrap();
        assert!(matches!(
            batch.last(),
            Some(IncidentEvent::IncidentClosed { .. })
        ));
        let released = units_released_by_close(&batch);
        assert_eq!(
            released,
            vec![(unit, UnitCommand::CompleteTask { task, at: t(900) })]
        );
        let (u, events) = u.execute(released[0].1.clone()).unwrap();
        assert_eq!(u.unit.as_ref().unwrap().status, S::Returning);
        // The unit's completion echoes back to the closed incident and changes nothing.
        let (_, echo) = incident_progress(unit, &events[0]).unwrap();
        assert_eq!(inc.decide(echo).unwrap(), vec![]);
        // A batch without a closing releases nobody.
        assert!(units_released_by_close(&batch[..batch.len() - 1]).is_empty());
    }
}
