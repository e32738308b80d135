//! SIGKILL a writer process at random moments, 50 times, and check the store after each.

#[test]
fn every_acknowledged_event_survives_50_kills() {
    let dir = tempfile::tempdir().unwrap();
    let report = muster_e2e::crash::run(&muster_e2e::muster_bin(), dir.path(), 50, 7).unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(report.kills, 50);
    assert!(
        report.acknowledged_events >= report.acknowledged_appends
            && report.acknowledged_appends >= 50,
        "{report:?}"
    );
    assert_eq!(
        report.events_matched, report.acknowledged_events,
        "every acknowledged event found with its content"
    );
    assert!(report.events >= report.events_matched, "{report:?}");
}
