//! Two operators assign the same unit at the same instant, through the real in-memory store:
//! the unit stream's expected revision lets one through; the other re-reads and is refused
//! with the incident that won.

use chrono::{TimeZone, Utc};
use muster_core::decision::{Aggregate, RefusalKind};
use muster_core::event::{EventIds, decode, encode_batch, expected_state_after};
use muster_core::ids::{IncidentId, TaskId, UnitId};
use muster_core::unit::{UnitCommand, UnitEvent, UnitState, UnitStatus};
use muster_core::value::*;
use muster_store::{
    Direction, EventMetadata, EventStore, MemoryStore, ReadFrom, StoreError, StreamName,
};
use uuid::Uuid;

async fn load(store: &MemoryStore, stream: &StreamName) -> (UnitState, Option<u64>) {
    let recorded = match store
        .read_stream(stream, Direction::Forwards, ReadFrom::Start, 10_000)
        .await
    {
        Ok(r) => r,
        Err(StoreError::StreamNotFound(_)) => Vec::new(),
        Err(e) => panic!("read failed: {e}"),
    };
    let events: Vec<UnitEvent> = recorded.iter().map(|r| decode(r).unwrap()).collect();
    (
        UnitState::replay(&events),
        recorded.last().map(|r| r.revision),
    )
}

#[tokio::test]
async fn one_assignment_wins_and_the_other_names_it() {
    let store = MemoryStore::new();
    let at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
    let unit = UnitId::from_uuid(Uuid::from_u128(1));
    let stream = unit.stream_name();
    let meta = EventMetadata::default();

    let register = UnitState::default()
        .decide(UnitCommand::Register {
            unit_id: unit,
            kind: UnitKind::Engine,
            call_sign: CallSign::parse("E1").unwrap(),
            agency: Agency::parse("fire").unwrap(),
            home_station: StationCode::parse("s1").unwrap(),
            capabilities: Default::default(),
            at,
        })
        .unwrap();
    let key = IdempotencyKey::try_from("register-e1").unwrap();
    let batch = encode_batch(&stream, &register, EventIds::FromKey(&key), &meta).unwrap();
    store
        .append(&stream, expected_state_after(None), batch)
        .await
        .unwrap();

    // Both operators read the same state.
    let (state, revision) = load(&store, &stream).await;
    let (a, b) = (
        IncidentId::from_uuid(Uuid::from_u128(10)),
        IncidentId::from_uuid(Uuid::from_u128(20)),
    );
    let (task_a, task_b) = (
        TaskId::from_uuid(Uuid::from_u128(11)),
        TaskId::from_uuid(Uuid::from_u128(21)),
    );
    let decide_a = state
        .decide(UnitCommand::AssignTask {
            task: task_a,
            incident: a,
            at,
        })
        .unwrap();
    let decide_b = state
        .decide(UnitCommand::AssignTask {
            task: task_b,
            incident: b,
            at,
        })
        .unwrap();
    let key_a = IdempotencyKey::try_from("assign-a-0001").unwrap();
    let key_b = IdempotencyKey::try_from("assign-b-0001").unwrap();
    let batch_a = encode_batch(&stream, &decide_a, EventIds::FromKey(&key_a), &meta).unwrap();
    let batch_b = encode_batch(&stream, &decide_b, EventIds::FromKey(&key_b), &meta).unwrap();

    let first = store
        .append(&stream, expected_state_after(revision), batch_a.clone())
        .await;
    let second = store
        .append(&stream, expected_state_after(revision), batch_b)
        .await;
    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(second, Err(StoreError::WrongExpectedState { .. })),
        "{second:?}"
    );

    // The loser re-reads and decides again: refused, naming the incident that won.
    let (state, _) = load(&store, &stream).await;
    let refusal = state
        .decide(UnitCommand::AssignTask {
            task: task_b,
            incident: b,
            at,
        })
        .unwrap_err();
    assert_eq!(
        refusal.kind,
        RefusalKind::UnitBusy {
            incident: a,
            task: task_a
        }
    );
    assert!(refusal.reason.contains(&a.to_string()));

    // The winner's retry of the same command writes nothing more.
    let (_, revision_now) = load(&store, &stream).await;
    store
        .append(&stream, muster_store::ExpectedState::Any, batch_a)
        .await
        .unwrap();
    let (state, revision_after) = load(&store, &stream).await;
    assert_eq!(revision_now, revision_after);
    assert_eq!(state.unit.unwrap().status, UnitStatus::Dispatched);
}
