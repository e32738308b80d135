//! Reports come from the log; a recorded log replays into the engine and its calls re-run
//! under another policy.

use std::path::Path;
use std::sync::Arc;

use muster_geodata::Router;
use muster_sim::engine::{RunOptions, run};
use muster_sim::log::{canonical_bytes, read_lines, read_store};
use muster_sim::scenario::{Policy, Scenario};

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
