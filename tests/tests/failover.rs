//! Several nodes survive the loss of the database machine: 5 SIGKILLs of the PostgreSQL
//! primary under load, each followed by a promotion of the synchronous standby, then a SIGKILL
//! of one muster node. Needs PostgreSQL's binaries, as `bash ops/test.sh` installs them
//! (`MUSTER_TEST_POSTGRES` set); skipped with a note otherwise.

#[test]
fn three_nodes_survive_five_primary_kills_and_a_node_kill() {
    if muster_store::postgres::test_database_url("the failover test").is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let report =
        muster_e2e::failover::run(&muster_e2e::muster_bin(), &repo, work.path(), 5).unwrap();
    println!("{}", muster_e2e::failover::summary(&report));
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(report.kills, 5);
    assert_eq!(report.serving_again_s.len(), 5);
    assert!(report.acknowledged_incidents >= 50, "{report:?}");
    assert!(report.acknowledged_assignments >= 1, "{report:?}");
    assert!(report.node_kill_serving_s.is_some());
    for s in &report.serving_again_s {
        assert!(
            *s <= 15.0,
            "serving again {s:.1} s after a promotion: {report:?}"
        );
    }
}
