//! The command runner against the memory and embedded stores: repeats answered from the
//! record, a reused key refused, the assignment race won once, incident and unit guarded
//! together, and a state cache that follows writes it did not make.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use muster_app::{Command, CommandError, CommandKey, Fingerprint, Runner};
use muster_core::combined;
use muster_core::incident::{IncidentCommand, ReportSource};
use muster_core::unit::UnitCommand;
use muster_core::value::{
    Agency, CallSign, CallerDetails, Disposition, IdempotencyKey, IncidentType, LatLon, Priority,
    StationCode, UnitKind,
};
use muster_core::{IncidentId, RefusalKind, TaskId, UnitId};
use muster_store::{EventMetadata, EventStore, MemoryStore};
use serde_json::{Value, json};

fn command(scope: &str, key: &str, content: Value) -> Command {
    Command {
        key: CommandKey::new(scope, IdempotencyKey::try_from(key.to_owned()).unwrap()),
        fingerprint: Fingerprint::of("test", &content),
        metadata: EventMetadata::default(),
    }
}

async fn register(runner: &Runner, n: usize) -> UnitId {
    let unit = UnitId::new_v7();
    let register = UnitCommand::Register {
        unit_id: unit,
        kind: UnitKind::Engine,
        call_sign: CallSign::parse(&format!("E{n}")).unwrap(),
        agency: Agency::parse("fire").unwrap(),
        home_station: StationCode::parse("s1").unwrap(),
        capabilities: BTreeSet::new(),
        at: Utc::now(),
    };
    runner
        .execute(&command("op", &format!("register-{n:04}"), json!(n)), |s| {
            Ok((combined::unit_command(s, unit, register.clone())?, ()))
        })
        .await
        .unwrap();
    unit
}

async fn report(runner: &Runner, key: &str) -> IncidentId {
    let incident = IncidentId::new_v7();
    let now = Utc::now();
    let report = IncidentCommand::Report {
        incident_id: incident,
        source: ReportSource::Hotline,
        location: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
        incident_type: IncidentType::StructureFire,
        priority: Priority::P1,
        caller: CallerDetails::default(),
        call_received_at: now,
        at: now,
    };
    runner
        .execute(&command("op", key, json!(key)), |s| {
            Ok((combined::incident_command(s, incident, report.clone())?, ()))
        })
        .await
        .unwrap();
    incident
}

async fn assign(
    runner: &Runner,
    key: &str,
    incident: IncidentId,
    unit: UnitId,
) -> Result<muster_app::Executed<String>, CommandError> {
    let task = TaskId::new_v7();
    let now = Utc::now();
    runner
        .execute(
            &command("op", key, json!({"incident": incident, "unit": unit})),
            |s| {
                Ok((
                    combined::assign(s, incident, unit, task, now)?,
                    format!("task {task}"),
                ))
            },
        )
        .await
}

#[tokio::test]
async fn a_repeat_gets_the_stored_answer_and_writes_nothing() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runner = Runner::new(store.clone());
    let unit = register(&runner, 1).await;
    let incident = report(&runner, "call-0001").await;
    let first = assign(&runner, "assign-0001", incident, unit)
        .await
        .unwrap();
    let head = store.head();
    // A second runner (a restarted server) answers from the record, not by deciding again:
    // a new decision would make a new task id and be refused, the unit being busy.
    let again = assign(&Runner::new(store.clone()), "assign-0001", incident, unit)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.answer, first.answer);
    assert_eq!(
        again.recorded.iter().map(|r| r.id).collect::<Vec<_>>(),
        first.recorded.iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert_eq!(store.head(), head, "the repeat wrote nothing");
    // The assignment wrote the unit and the incident together.
    let streams: BTreeSet<String> = first
        .recorded
        .iter()
        .map(|r| r.stream.to_string())
        .collect();
    assert_eq!(
        streams,
        BTreeSet::from([
            unit.stream_name().to_string(),
            incident.stream_name().to_string()
        ])
    );
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused_and_another_scope_is_another_command() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runner = Runner::new(store.clone());
    let unit = register(&runner, 1).await;
    let a = report(&runner, "call-0001").await;
    let b = report(&runner, "call-0002").await;
    assign(&runner, "assign-0001", a, unit).await.unwrap();
    let head = store.head();
    match assign(&runner, "assign-0001", b, unit).await {
        Err(CommandError::KeyReused) => {}
        other => panic!("expected KeyReused, got {other:?}"),
    }
    assert_eq!(store.head(), head);
    // Another user's same key is theirs: decided afresh (and refused, the unit is busy).
    let task = TaskId::new_v7();
    let now = Utc::now();
    let other = runner
        .execute(&command("someone-else", "assign-0001", json!(1)), |s| {
            Ok((combined::assign(s, b, unit, task, now)?, ()))
        })
        .await;
    match other {
        Err(CommandError::Refused(r)) => assert!(matches!(r.kind, RefusalKind::UnitBusy { .. })),
        other => panic!("expected a busy unit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_assignments_of_one_unit_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(
        muster_store::EmbeddedStore::open(dir.path(), muster_store::EmbeddedOptions::default())
            .unwrap(),
    );
    let runner = Runner::new(store.clone());
    let unit = register(&runner, 1).await;
    let mut incidents = Vec::new();
    for i in 0..64 {
        incidents.push(report(&runner, &format!("call-{i:04}")).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = incidents
        .iter()
        .enumerate()
        .map(|(i, incident)| {
            // Each through its own runner, as through different servers.
            let runner = Runner::new(store.clone());
            let barrier = barrier.clone();
            let incident = *incident;
            tokio::spawn(async move {
                barrier.wait().await;
                assign(&runner, &format!("assign-{i:04}"), incident, unit).await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(CommandError::Refused(r)) => {
                assert!(matches!(r.kind, RefusalKind::UnitBusy { .. }), "{r:?}")
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(winners, 1);
    let state = runner.unit(unit).await.unwrap();
    assert!(state.unit.unwrap().active_task.is_some());
}

#[tokio::test]
async fn a_runner_whose_cache_saw_the_incident_open_does_not_assign_to_it_once_closed() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    // Two runners whose caches both saw the incident open.
    let a = Runner::new(store.clone());
    let b = Runner::new(store.clone());
    let unit = register(&a, 1).await;
    let incident = report(&a, "call-0001").await;
    b.incident(incident).await.unwrap();
    b.unit(unit).await.unwrap();
    let now = Utc::now();
    a.execute(&command("op", "close-0001", json!(1)), |s| {
        Ok((
            combined::close(s, incident, Disposition::Cancelled, now)?,
            (),
        ))
    })
    .await
    .unwrap();
    // b's cache saw the incident open; loading brings it up to date, and the closed incident
    // refuses the unit.
    match assign(&b, "assign-0001", incident, unit).await {
        Err(CommandError::Refused(r)) => assert_eq!(r.kind, RefusalKind::Ended),
        other => panic!("expected the incident to have ended, got {other:?}"),
    }
    assert!(
        b.unit(unit)
            .await
            .unwrap()
            .unit
            .unwrap()
            .active_task
            .is_none()
    );
}
