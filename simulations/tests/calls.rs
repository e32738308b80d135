//! The call generator follows the clock: the hourly weights are hours of the day, whatever
//! hour the drill starts at.

use std::path::Path;

use muster_sim::scenario::Scenario;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Calls only between 12:00 and 13:00.
fn scenario(start: &str) -> Scenario {
    let mut hourly = vec!["0"; 24];
    hourly[12] = "1";
    let text = format!(
        r#"name = "noon"
start = "{start}"
duration_hours = 24
[city]
bundled = "helsinki"
[calls]
per_day = 2000
hourly = [{}]
[[fleet]]
stations = "fire"
kind = "engine"
count = 1
"#,
        hourly.join(", ")
    );
    Scenario::parse(Path::new("noon.toml"), &text).unwrap()
}

#[test]
fn the_hourly_weights_are_hours_of_the_day() {
    for (start, first_ms, end_ms) in [
        // From midnight, the noon hour is the drill's thirteenth.
        ("2026-03-02T00:00:00Z", 12 * 3_600_000, 13 * 3_600_000),
        // From noon, it is the first; from 11:30, it begins half an hour in.
        ("2026-03-02T12:00:00Z", 0, 3_600_000),
        ("2026-03-02T11:30:00Z", 1_800_000, 5_400_000),
    ] {
        let s = scenario(start);
        let calls = muster_sim::calls::generate(&s, &mut ChaCha8Rng::seed_from_u64(3), 86_400_000);
        assert!(calls.len() > 1_000, "{start}: {} calls", calls.len());
        assert!(
            calls.iter().all(|c| (first_ms..end_ms).contains(&c.at_ms)),
            "{start}: a call outside the noon hour: {:?}",
            calls
                .iter()
                .find(|c| !(first_ms..end_ms).contains(&c.at_ms))
                .map(|c| c.at_ms)
        );
    }
}
