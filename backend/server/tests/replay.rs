//! A drill's log replayed into a real server through its operator API (`muster drill replay
//! --server`): the server ends with the log's incidents and units.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::{App, spawn, token};
use muster_core::decision::Aggregate;
use muster_core::event::DomainEvent;
use muster_core::ids::{AggregateRef, IncidentId, UnitId};
use muster_core::incident::IncidentState;
use muster_core::unit::UnitState;
use muster_server::auth::Role;
use muster_sim::engine::{RunOptions, run};
use muster_sim::scenario::Scenario;
use muster_store::RecordedEvent;
use serde_json::{Value, json};

/// A short drill of the bundled Helsinki sample, in virtual time.
fn recorded_drill() -> Vec<RecordedEvent> {
    let mut scenario = Scenario::load_file_or_sample(Path::new("helsinki")).unwrap();
    scenario.duration_hours = 1.5;
    let options = RunOptions {
        seed: 5,
        policy: None,
        calls: None,
    };
    let outcome = run(&scenario, &options, &mut |_, _| {}).unwrap();
    assert_eq!(outcome.refusals, 0);
    muster_sim::log::read_store(outcome.store.as_ref()).unwrap()
}

/// The log folded into its incidents and units.
#[derive(Default)]
struct Folded {
    incidents: BTreeMap<IncidentId, IncidentState>,
    units: BTreeMap<UnitId, UnitState>,
}

fn fold(events: &[RecordedEvent]) -> Folded {
    let mut f = Folded::default();
    for e in events {
        match DomainEvent::from_recorded(e).unwrap() {
            (AggregateRef::Incident(id), DomainEvent::Incident(ev)) => {
                f.incidents.entry(id).or_default().apply(&ev);
            }
            (AggregateRef::Unit(id), DomainEvent::Unit(ev)) => {
                f.units.entry(id).or_default().apply(&ev);
            }
            _ => {}
        }
    }
    f
}

/// A unit's part in an incident, as far as the API shows it: still on it, and which of
/// its time points were recorded (en route, on scene, cleared).
type Part = (bool, [bool; 3]);

/// Per unit, its incidents and its part in each, from the log.
fn parts_in_log(log: &Folded) -> BTreeMap<String, BTreeMap<String, Part>> {
    let mut parts: BTreeMap<String, BTreeMap<String, Part>> = BTreeMap::new();
    for (id, state) in &log.incidents {
        for (unit, on) in &state.incident.as_ref().unwrap().units {
            let points = [
                on.en_route_at.is_some(),
                on.on_scene_at.is_some(),
                on.cleared_at.is_some(),
            ];
            parts
                .entry(unit.to_string())
                .or_default()
                .insert(id.to_string(), (on.is_active(), points));
        }
    }
    parts
}

fn as_json<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap()
}

async fn get_ok(app: &App, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_drill_leaves_the_servers_incidents_and_units_as_its_log_does() {
    let events = tokio::task::spawn_blocking(recorded_drill).await.unwrap();
    let log = fold(&events);
    let closed = log
        .incidents
        .values()
        .filter(|s| !s.incident.as_ref().unwrap().is_open())
        .count();
    assert!(
        log.incidents.len() >= 10 && closed >= 3 && closed < log.incidents.len(),
        "the drill is too small to judge: {} incidents, {closed} closed",
        log.incidents.len()
    );

    let app = spawn().await;
    let stats = muster_sim::server::into_server_async(
        &events,
        &app.base,
        &token(Role::Operator),
        None,
        None,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(stats.refused, 0, "{:?}", stats.examples);
    // The views answer once they have applied everything the replay stored.
    let head = stats.last_position.expect("the server stored the replay");

    // The incident board: every incident of the log, with its id, type, priority and status.
    let board = get_ok(
        &app,
        &format!("/api/incidents?include_closed=true&min_position={head}"),
    )
    .await;
    assert!(
        board["position"].as_u64() >= Some(head),
        "the board had not caught up with the replay: {} < {head}",
        board["position"]
    );
    let rows: HashMap<&str, &Value> = board["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(rows.len(), log.incidents.len(), "{board}");
    let mut parts_on_server: BTreeMap<String, BTreeMap<String, Part>> = BTreeMap::new();
    for (id, state) in &log.incidents {
        let want = state.incident.as_ref().unwrap();
        let id = id.to_string();
        let row = rows
            .get(id.as_str())
            .unwrap_or_else(|| panic!("incident {id} is not on the server's board"));
        for (field, value) in [
            ("incident_type", as_json(want.incident_type)),
            ("priority", as_json(want.priority)),
            ("status", as_json(want.status())),
        ] {
            assert_eq!(
                row[field], value,
                "incident {id}: {field} on the board: {row}"
            );
        }

        // The incident from its stream, with each unit's part.
        let got = get_ok(&app, &format!("/api/incidents/{id}")).await;
        for (field, value) in [
            ("id", json!(id)),
            ("incident_type", as_json(want.incident_type)),
            ("priority", as_json(want.priority)),
            ("status", as_json(want.status())),
        ] {
            assert_eq!(got[field], value, "incident {id}: {field}: {got}");
        }
        for u in got["units"].as_array().unwrap() {
            let points = ["en_route_at", "on_scene_at", "cleared_at"].map(|p| u[p].is_string());
            parts_on_server
                .entry(u["unit"].as_str().unwrap().to_owned())
                .or_default()
                .insert(id.clone(), (u["active"] == true, points));
        }
    }
    // Each unit went to the same incidents, got as far on each and is still on the same ones.
    let parts = parts_in_log(&log);
    assert!(
        parts.values().map(BTreeMap::len).sum::<usize>() >= log.incidents.len(),
        "too few tasks to judge: {parts:?}"
    );
    for unit in parts.keys().chain(parts_on_server.keys()) {
        assert_eq!(
            parts_on_server.get(unit),
            parts.get(unit),
            "unit {unit}: its incidents on the server (left) and in the log (right), as \
             (active, [en route, on scene, cleared])"
        );
    }

    // The unit board: every unit, in its last status, on the same incident, where it was
    // last reported.
    let fleet = get_ok(&app, &format!("/api/units?min_position={head}")).await;
    let units: HashMap<&str, &Value> = fleet["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap(), u))
        .collect();
    assert_eq!(units.len(), log.units.len(), "{fleet}");
    for (id, state) in &log.units {
        let want = state.unit.as_ref().unwrap();
        let id = id.to_string();
        let got = units
            .get(id.as_str())
            .unwrap_or_else(|| panic!("unit {id} is not on the server's board"));
        let task = want.active_task.as_ref();
        for (field, value) in [
            ("call_sign", as_json(&want.call_sign)),
            ("kind", as_json(want.kind)),
            ("status", as_json(want.status)),
            ("incident", as_json(task.map(|t| t.incident))),
            ("acknowledged", json!(task.is_some_and(|t| t.acknowledged))),
        ] {
            assert_eq!(got[field], value, "unit {id}: {field}: {got}");
        }
        assert_eq!(got["task"].is_string(), task.is_some(), "unit {id}: {got}");
        if let Some(fix) = &want.last_fix {
            assert_eq!(
                got["location"],
                as_json(fix.position),
                "unit {id}: last position"
            );
        }
    }
    app.stop().await;
}
