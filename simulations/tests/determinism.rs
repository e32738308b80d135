//! Same scenario and seed, same canonical log, byte for byte; a golden hash holds it.

use std::path::Path;

use muster_sim::engine::{RunOptions, run};
use muster_sim::log::{canonical_bytes, read_store, sha256_hex};
use muster_sim::scenario::Scenario;

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/helsinki.toml");
    Scenario::load(&path).expect("the sample scenario is valid")
}

fn log_of(scenario: &Scenario, seed: u64) -> Vec<u8> {
    let options = RunOptions {
        seed,
        policy: None,
        calls: None,
    };
    let outcome = run(scenario, &options, &mut |_, _| {}).expect("the drill runs");
    assert_eq!(
        outcome.refusals, 0,
        "the core refused commands the engine sent"
    );
    canonical_bytes(&read_store(outcome.store.as_ref()).unwrap())
}

#[test]
fn same_seed_same_log_other_seed_other_log() {
    let s = scenario();
    let a = log_of(&s, 7);
    let b = log_of(&s, 7);
    assert!(
        a.len() > 10_000,
        "a four-hour drill writes a log of some size"
    );
    assert!(a == b, "two runs with the same seed differ");
    let c = log_of(&s, 8);
    assert_ne!(sha256_hex(&a), sha256_hex(&c));
}

/// The golden hash: a change to the engine, the core's decisions or the event schema that
/// changes the log shows up here. Update it deliberately, saying why in the commit.
#[test]
fn golden_hash_of_the_helsinki_sample() {
    let s = scenario();
    let log = log_of(&s, 7);
    let text = String::from_utf8(log.clone()).unwrap();
    assert!(
        !text.contains("recorded_at"),
        "the canonical log leaves out the store's clock"
    );
    assert_eq!(sha256_hex(&log), GOLDEN);
}

const GOLDEN: &str = "ef8568af4d4dacc4033588ea471f7cef8ddfbe6043d5c8cd7fcfa66ab25e6c43";

#[test]
fn the_joint_policy_is_deterministic_too() {
    let s = scenario();
    let options = RunOptions {
        seed: 5,
        policy: Some(muster_sim::scenario::Policy::Joint),
        calls: None,
    };
    let logs: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let outcome = run(&s, &options, &mut |_, _| {}).unwrap();
            assert_eq!(outcome.refusals, 0);
            canonical_bytes(&read_store(outcome.store.as_ref()).unwrap())
        })
        .collect();
    assert!(
        logs[0] == logs[1],
        "two joint runs with the same seed differ"
    );
}
