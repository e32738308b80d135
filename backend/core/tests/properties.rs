//! State-machine properties of the aggregates: replaying the events gives the live state;
//! closed stays closed; a unit never holds two active tasks; one alarm per ongoing crossing.

use chrono::{DateTime, TimeZone, Utc};
use muster_core::decision::Aggregate;
use muster_core::ids::{AlarmId, IncidentId, SensorId, TaskId, UnitId};
use muster_core::incident::{
    IncidentCommand, IncidentEvent, IncidentState, IncidentStatus, ReportSource, TimePoint,
};
use muster_core::sensor::{
    Crossing, Reading, SensorCommand, SensorEvent, SensorState, Threshold, ThresholdSpec,
};
use muster_core::unit::{UnitCommand, UnitEvent, UnitState, UnitStatus};
use muster_core::value::*;
use proptest::prelude::*;
use uuid::Uuid;

/// Fixed seed, so a run is repeatable; a failure prints its minimal case, so no seed file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6d75_7374_6572),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
}

fn incident(n: u8) -> IncidentId {
    IncidentId::from_uuid(Uuid::from_u128(1000 + u128::from(n)))
}

fn task(n: u8) -> TaskId {
    TaskId::from_uuid(Uuid::from_u128(2000 + u128::from(n)))
}

fn unit(n: u8) -> UnitId {
    UnitId::from_uuid(Uuid::from_u128(3000 + u128::from(n)))
}

// ---------------------------------------------------------------------------------------------
// Units

fn unit_command() -> impl Strategy<Value = UnitCommand> {
    let status = proptest::sample::select(UnitStatus::ALL.to_vec());
    prop_oneof![
        1 => Just(()).prop_map(|_| UnitCommand::Register {
            unit_id: unit(0),
            kind: UnitKind::AlsAmbulance,
            call_sign: CallSign::parse("M1").unwrap(),
            agency: Agency::parse("ems").unwrap(),
            home_station: StationCode::parse("s1").unwrap(),
            capabilities: Default::default(),
            at: t(0),
        }),
        6 => status.prop_map(|to| UnitCommand::ChangeStatus { to, at: t(10) }),
        4 => (0u8..4, 0u8..3).prop_map(|(k, i)| UnitCommand::AssignTask { task: task(k), incident: incident(i), at: t(10) }),
        2 => (0u8..4).prop_map(|k| UnitCommand::AcknowledgeTask { task: task(k), at: t(10) }),
        2 => (0u8..4).prop_map(|k| UnitCommand::DeclineTask { task: task(k), reason: None, at: t(10) }),
        3 => (0u8..4).prop_map(|k| UnitCommand::CompleteTask { task: task(k), at: t(10) }),
        1 => (-89.0f64..89.0, -179.0f64..179.0).prop_map(|(lat, lon)| UnitCommand::ReportPosition {
            position: LatLon::from_lat_lon(lat, lon).unwrap(),
            heading_deg: None,
            speed_m_s: Some(3.0),
            accuracy_m: None,
            at: t(10),
        }),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn unit_replay_gives_the_live_state_and_never_two_active_tasks(
        commands in proptest::collection::vec(unit_command(), 0..60)
    ) {
        let mut live = UnitState::default();
        let mut log: Vec<UnitEvent> = Vec::new();
        for command in commands {
            if let Ok((next, events)) = live.execute(command) {
                live = next;
                log.extend(events);
            }
            if let Some(u) = &live.unit {
                prop_assert_eq!(u.active_task.is_some(), u.status.is_committed(), "status {:?}", u.status);
            }
        }
        prop_assert_eq!(&UnitState::replay(&log), &live);

        // Scan the log: a task starts only when no other is active.
        let mut active: Option<TaskId> = None;
        for event in &log {
            match event {
                UnitEvent::TaskAssigned { task, .. } => {
                    prop_assert!(active.is_none(), "{:?} assigned while {:?} is active", task, active);
                    active = Some(*task);
                }
                UnitEvent::TaskDeclined { task, .. } | UnitEvent::TaskCompleted { task, .. } => {
                    prop_assert_eq!(active, Some(*task));
                    active = None;
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Incidents

fn incident_command() -> impl Strategy<Value = IncidentCommand> {
    let here = LatLon::from_lat_lon(60.17, 24.94).unwrap();
    let ty = proptest::sample::select(IncidentType::ALL.to_vec());
    let pr = proptest::sample::select(Priority::ALL.to_vec());
    let point = proptest::sample::select(vec![
        TimePoint::Dispatched,
        TimePoint::EnRoute,
        TimePoint::OnScene,
        TimePoint::Cleared,
        TimePoint::Entry,
    ]);
    let disposition = proptest::sample::select(Disposition::ALL.to_vec());
    prop_oneof![
        1 => (ty.clone(), pr.clone()).prop_map(move |(incident_type, priority)| IncidentCommand::Report {
            incident_id: incident(0),
            source: ReportSource::Hotline,
            location: here,
            incident_type,
            priority,
            caller: CallerDetails::default(),
            call_received_at: t(0),
            at: t(5),
        }),
        1 => (ty.clone(), pr.clone()).prop_map(|(incident_type, priority)| IncidentCommand::Triage { incident_type, priority, at: t(10) }),
        1 => ty.prop_map(|incident_type| IncidentCommand::UpdateType { incident_type, at: t(10) }),
        1 => pr.prop_map(|priority| IncidentCommand::UpdatePriority { priority, at: t(10) }),
        1 => Just(IncidentCommand::AddNote { text: NoteText::parse("note").unwrap(), at: t(10) }),
        6 => (0u8..3, 0u8..4, point).prop_map(|(u, k, point)| IncidentCommand::RecordUnitProgress {
            unit: unit(u),
            task: task(k),
            point,
            at: t(20),
        }),
        1 => (1u8..3).prop_map(|n| IncidentCommand::MergeInto { into: incident(n), at: t(30) }),
        1 => (1u8..3).prop_map(|n| IncidentCommand::AbsorbDuplicate { from: incident(n), at: t(30) }),
        1 => disposition.prop_map(|disposition| IncidentCommand::Close { disposition, at: t(40) }),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn incident_replay_gives_the_live_state_and_closed_stays_closed(
        commands in proptest::collection::vec(incident_command(), 0..60)
    ) {
        let mut live = IncidentState::default();
        let mut log: Vec<IncidentEvent> = Vec::new();
        let mut ended: Option<IncidentStatus> = None;
        for command in commands {
            let result = live.execute(command.clone());
            if let Some(status) = ended {
                // Once ended, nothing changes: a refusal, or no event at all.
                match &result {
                    Ok((_, events)) => prop_assert!(events.is_empty(), "{:?} after {:?} gave {:?}", command, status, events),
                    Err(refusal) => prop_assert!(!refusal.reason.is_empty()),
                }
            }
            if let Ok((next, events)) = result {
                live = next;
                log.extend(events);
            }
            if let Some(i) = &live.incident {
                let status = i.status();
                if let Some(before) = ended {
                    prop_assert_eq!(status, before);
                }
                if matches!(status, IncidentStatus::Closed | IncidentStatus::Merged) {
                    ended = Some(status);
                    prop_assert_eq!(i.active_units().count(), 0, "an ended incident keeps no unit");
                }
            }
        }
        prop_assert_eq!(&IncidentState::replay(&log), &live);
    }
}

// ---------------------------------------------------------------------------------------------
// Sensors

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn one_alarm_per_crossing(values in proptest::collection::vec(0.0f64..100.0, 0..80)) {
        let metric = MetricName::parse("temperature_c").unwrap();
        let threshold = Threshold::try_from(ThresholdSpec {
            metric: metric.clone(),
            crossing: Crossing::Above,
            raise_at: 60.0,
            clear_at: 45.0,
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P2,
        })
        .unwrap();
        let mut live = SensorState::default();
        let (next, _) = live
            .execute(SensorCommand::Register {
                sensor_id: SensorId::from_uuid(Uuid::from_u128(1)),
                kind: SensorKind::parse("heat").unwrap(),
                location: LatLon::from_lat_lon(0.0, 0.0).unwrap(),
                thresholds: vec![threshold],
                at: t(0),
            })
            .unwrap();
        live = next;
        let mut log = Vec::new();
        // Oracle: a two-state machine written out directly.
        let mut alarm = false;
        let mut expected_raises = 0;
        for (i, v) in values.iter().enumerate() {
            if !alarm && *v >= 60.0 {
                alarm = true;
                expected_raises += 1;
            } else if alarm && *v < 45.0 {
                alarm = false;
            }
            let n = i as u128 + 10;
            let (next, events) = live
                .execute(SensorCommand::Ingest {
                    reading: Reading::new(metric.clone(), *v, t(i as i64 + 1)).unwrap(),
                    new_alarm: AlarmId::from_uuid(Uuid::from_u128(n)),
                    new_incident: IncidentId::from_uuid(Uuid::from_u128(n)),
                })
                .unwrap();
            live = next;
            log.extend(events);
            prop_assert_eq!(live.sensor.as_ref().unwrap().ongoing.contains_key(&metric), alarm);
        }
        let raises = log.iter().filter(|e| matches!(e, SensorEvent::SensorAlarmRaised { .. })).count();
        prop_assert_eq!(raises, expected_raises);
        // Raised and cleared alternate, each clearing naming the alarm it ends.
        let mut open: Option<AlarmId> = None;
        for e in &log {
            match e {
                SensorEvent::SensorAlarmRaised { alarm, .. } => {
                    prop_assert!(open.is_none());
                    open = Some(*alarm);
                }
                SensorEvent::SensorAlarmCleared { alarm, .. } => {
                    prop_assert_eq!(open, Some(*alarm));
                    open = None;
                }
                SensorEvent::SensorRegistered { .. } | SensorEvent::SensorReconfigured { .. } => {}
            }
        }
    }
}
