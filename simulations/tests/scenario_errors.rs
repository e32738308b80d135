//! Bad scenario files: each is refused before anything runs, naming the file, line and key.

use std::path::Path;

use muster_sim::scenario::Scenario;

const GOOD: &str = r#"name = "t"
start = "2026-03-02T12:00:00Z"
duration_hours = 1
[city]
bundled = "helsinki"
[calls]
per_day = 100
[[fleet]]
stations = "fire"
kind = "engine"
count = 1
"#;

fn parse(text: &str) -> Result<Scenario, muster_sim::scenario::ScenarioError> {
    Scenario::parse(Path::new("bad.toml"), text)
}

#[test]
fn the_base_file_is_good() {
    let s = parse(GOOD).expect("the base file is valid");
    assert!(s.unit_count() > 0);
}

#[test]
fn bad_input_names_file_line_and_key() {
    // (why it is bad, the text, expected line, expected key, a word the message holds)
    let cases: &[(&str, String, usize, &str, &str)] = &[
        (
            "unknown top-level key",
            GOOD.replace("duration_hours = 1", "duration_hours = 1\ncolour = \"red\""),
            4,
            "colour",
            "unknown field",
        ),
        (
            "unknown key in a fleet entry",
            GOOD.replace("count = 1", "count = 1\nspeed = 3"),
            12,
            "speed",
            "unknown field",
        ),
        (
            "negative call rate",
            GOOD.replace("per_day = 100", "per_day = -5"),
            7,
            "calls.per_day",
            ">= 0",
        ),
        (
            "a station the city does not have",
            GOOD.replace("stations = \"fire\"", "stations = \"st-fire-Z9\""),
            9,
            "fleet[0].stations",
            "no station",
        ),
        (
            "negative unit count",
            GOOD.replace("count = 1", "count = -2"),
            11,
            "fleet[0].count",
            "must be 0 to",
        ),
        (
            "a unit kind that does not exist",
            GOOD.replace("kind = \"engine\"", "kind = \"zeppelin\""),
            10,
            "fleet[0].kind",
            "unit kind",
        ),
        (
            "a point outside the city",
            format!(
                "{GOOD}[[event]]\nkind = \"major_incident\"\nat_min = 10\nincident_type = \"structure_fire\"\nlocation = {{ lat = 61.0, lon = 25.5 }}\n"
            ),
            16,
            "event[0].location",
            "outside the city",
        ),
        (
            "a probability above 1",
            format!("{GOOD}[responders]\ndecline_probability = 1.5\n"),
            13,
            "responders.decline_probability",
            "probability",
        ),
        (
            "an unknown policy",
            format!("{GOOD}[dispatch]\npolicy = \"fastest\"\n"),
            13,
            "dispatch.policy",
            "not a policy",
        ),
        (
            "an unknown district in the area weights",
            GOOD.replace(
                "per_day = 100",
                "per_day = 100\nareas = [{ district = \"d-Q7\", weight = 1 }]",
            ),
            8,
            "calls.areas[0].district",
            "does not exist",
        ),
        (
            "a closure that ends before it starts",
            format!(
                "{GOOD}[[event]]\nkind = \"road_closure\"\nat_min = 30\nuntil_min = 10\nradius_m = 100\nlocation = {{ lat = 60.17, lon = 24.945 }}\n"
            ),
            15,
            "event[0].until_min",
            "after at_min",
        ),
    ];
    for (why, text, line, key, word) in cases {
        let err = match parse(text) {
            Ok(_) => panic!("{why}: accepted"),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(err.line, *line, "{why}: wrong line in {shown}");
        assert!(
            err.key.contains(key),
            "{why}: key {:?} does not name {key:?} ({shown})",
            err.key
        );
        assert!(
            shown.contains(word),
            "{why}: {shown:?} does not say {word:?}"
        );
        assert!(
            shown.starts_with("bad.toml:"),
            "{why}: {shown} does not name the file"
        );
    }
}
