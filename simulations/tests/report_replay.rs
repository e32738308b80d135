//! Reports come from the log; a recorded log replays into the engine and its calls re-run
//! under another policy; a recording is read from a log file or from an event store.

use std::path::Path;
use std::sync::Arc;

use muster_geodata::Router;
use muster_sim::engine::{RunOptions, run};
use muster_sim::log::{LogError, canonical_bytes, read_lines, read_recording, read_store};
use muster_sim::scenario::{Policy, Scenario};
use muster_store::embedded::STORE_FILE;
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, ExpectedState, NewEvent};

fn scenario() -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/helsinki.toml")).unwrap()
}

#[test]
fn report_counts_what_the_log_holds_and_replay_reproduces_the_calls() {
    let s = scenario();
    let outcome = run(
        &s,
        &RunOptions {
            seed: 3,
            policy: None,
            calls: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let events = read_store(outcome.store.as_ref()).unwrap();
    let router = Arc::new(Router::new(s.city.clone()).unwrap());
    let report = muster_sim::report::build("t", &events, Some(router.clone()));
    assert_eq!(report.incidents, outcome.calls);
    assert_eq!(report.events, events.len());
    for t in &report.targets {
        let d = &t.distribution;
        if let (Some(p50), Some(p90), Some(max)) = (d.p50_s, d.p90_s, d.max_s) {
            assert!(
                p50 <= p90 && p90 <= max,
                "{}: quantiles out of order",
                t.measure
            );
            assert!(p50 >= 0.0, "{}: negative time", t.measure);
        }
        assert_eq!(d.histogram_30s.iter().sum::<usize>(), d.count);
    }
    assert!(
        !report.coverage.is_empty(),
        "coverage is sampled over the drill"
    );
    let html = muster_sim::html::page(&[&report]);
    assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));

    // The canonical log reads back into the same events (recorded_at aside).
    let back = read_lines(&canonical_bytes(&events)[..]).unwrap();
    assert_eq!(back.len(), events.len());
    assert!(
        back.iter()
            .zip(&events)
            .all(|(a, b)| a.id == b.id && a.data == b.data && a.stream == b.stream)
    );

    // Into the engine's projections: everything decodes.
    let stats = muster_sim::replay::into_engine(&back, Some(router), None, &mut |_| {});
    assert_eq!(stats.undecodable, 0);
    assert_eq!(stats.events, events.len());

    // What if: the same calls under the joint policy, scripted calls not added twice.
    let calls = muster_sim::replay::calls_of(&back, s.start);
    assert_eq!(calls.len(), outcome.calls);
    let what_if = run(
        &s,
        &RunOptions {
            seed: 3,
            policy: Some(Policy::Joint),
            calls: Some(calls),
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(what_if.calls, outcome.calls);
    assert_eq!(what_if.policy, Policy::Joint);
    assert_eq!(what_if.refusals, 0);
}

/// Appends `events` to a new embedded store in `dir`, in their order, each at its revision
/// (a stream's consecutive events in one append).
fn write_store(dir: &Path, events: &[muster_store::RecordedEvent]) {
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for run in events.chunk_by(|a, b| a.stream == b.stream) {
        let expected = match run[0].revision {
            0 => ExpectedState::NoStream,
            r => ExpectedState::Revision(r - 1),
        };
        let batch = run
            .iter()
            .map(|e| NewEvent {
                id: e.id,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                data: e.data.clone(),
                metadata: e.metadata.clone(),
            })
            .collect();
        runtime
            .block_on(store.append(&run[0].stream, expected, batch))
            .unwrap();
    }
    store.close();
}

#[test]
fn a_drill_replays_from_its_event_store_as_from_its_log() {
    let mut s = scenario();
    s.duration_hours = 1.0;
    let outcome = run(
        &s,
        &RunOptions {
            seed: 4,
            policy: None,
            calls: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let events = read_store(outcome.store.as_ref()).unwrap();
    let data = tempfile::tempdir().unwrap();
    write_store(data.path(), &events);
    let log = data.path().join("events.jsonl");
    std::fs::write(&log, canonical_bytes(&events)).unwrap();

    // The same recording from the log, from the data directory and from the store file.
    let from_log = read_recording(&log).unwrap();
    let from_dir = read_recording(data.path()).unwrap();
    let from_file = read_recording(&data.path().join(STORE_FILE)).unwrap();
    assert_eq!(from_log.len(), events.len());
    assert_eq!(canonical_bytes(&from_dir), canonical_bytes(&from_log));
    assert_eq!(canonical_bytes(&from_file), canonical_bytes(&from_log));

    // Replayed into the engine, they give the same counts.
    let router = Arc::new(Router::new(s.city.clone()).unwrap());
    let replay = |events: &[muster_store::RecordedEvent]| {
        let r = muster_sim::replay::into_engine(events, Some(router.clone()), None, &mut |_| {});
        (r.events, r.undecodable, r.open_incidents, r.available_units)
    };
    let counts = replay(&from_log);
    assert_eq!(counts.0, events.len());
    assert_eq!(counts.1, 0);
    assert_eq!(replay(&from_dir), counts);
    assert_eq!(replay(&from_file), counts);

    // A store a server holds is refused, saying what to do instead.
    let held = EmbeddedStore::open(data.path(), EmbeddedOptions::default()).unwrap();
    let refused = read_recording(data.path()).unwrap_err();
    assert!(matches!(refused, LogError::Locked(_)), "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("stop the server") && message.contains("muster store backup"),
        "{message}"
    );
    drop(held);

    // A directory without a store is named, and no store is made there.
    let empty = tempfile::tempdir().unwrap();
    let missing = read_recording(empty.path()).unwrap_err();
    assert!(matches!(missing, LogError::NoStore(_)), "{missing}");
    assert!(!empty.path().join(STORE_FILE).exists());

    // A store file under another name is named too.
    let renamed = empty.path().join("copy.redb");
    std::fs::copy(data.path().join(STORE_FILE), &renamed).unwrap();
    let misnamed = read_recording(&renamed).unwrap_err();
    assert!(matches!(misnamed, LogError::StoreFileName(_)), "{misnamed}");
}
