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

/// The node that leads automatic dispatch is SIGKILLed during a storm of sensor alarms:
/// another takes the lead within seconds, every alarm is dispatched, none twice.
#[test]
fn killing_the_leader_during_an_alarm_storm_dispatches_each_alarm_once() {
    let Some(server) = muster_store::postgres::test_database_url("the leader storm test") else {
        return;
    };
    let url = fresh_database(&server);
    let work = tempfile::tempdir().unwrap();
    let report =
        muster_e2e::failover::leader_storm(&muster_e2e::muster_bin(), &url, work.path(), 30)
            .unwrap();
    println!("{report:?}");
    assert_eq!(report.problems, Vec::<String>::new());
    assert_eq!(report.alarms, 30);
    assert_eq!(report.units_per_alarm.len(), 30);
    assert!(report.units_per_alarm.iter().all(|n| *n >= 1), "{report:?}");
    assert!(report.new_leader_s <= 15.0, "{report:?}");
}

/// A fresh database on the test server, as a URL.
fn fresh_database(server: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let name = format!("muster_storm_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = server.split('?').next().unwrap();
        let (host, _) = base.rsplit_once('/').unwrap();
        format!("{host}/{name}")
    })
}
