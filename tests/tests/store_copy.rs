//! `muster store copy` moves an embedded store's log into PostgreSQL: every event with its
//! stream, revision, id, data, metadata and recording time; run again, it copies nothing; the
//! copy verifies. Needs `MUSTER_TEST_POSTGRES` (set by `bash ops/test.sh`); skipped otherwise.

use std::process::Command;

fn muster(args: &[&str]) -> String {
    let out = Command::new(muster_e2e::muster_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "muster {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `$all` as dumped, each line without its position (the copy has positions of its own).
fn without_positions(dump: &str) -> Vec<serde_json::Value> {
    dump.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("position");
            v
        })
        .collect()
}

#[test]
fn an_embedded_log_is_copied_to_postgres_once_and_whole() {
    let Some(server) = muster_store::postgres::test_database_url("the store copy test") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let name = format!("muster_copy_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = server.split('?').next().unwrap();
        format!("{}/{name}", base.rsplit_once('/').unwrap().0)
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    muster(&[
        "store",
        "load",
        "--data-dir",
        data,
        "--writers",
        "4",
        "--batch",
        "10",
        "--events",
        "2000",
    ]);

    let source = without_positions(&muster(&["store", "dump", "--data-dir", data]));
    let n = source.len();
    assert!(n >= 2000, "the load wrote {n} events");

    let first = muster(&["store", "copy", "--from", data, "--to", &url]);
    assert!(
        first.contains(&format!("copied {n} events (0 were there already)")),
        "{first}"
    );
    let again = muster(&["store", "copy", "--from", data, "--to", &url]);
    assert!(
        again.contains(&format!("copied 0 events ({n} were there already)")),
        "{again}"
    );

    let verify = muster(&["store", "verify", "--store", &url]);
    assert!(verify.trim_end().ends_with("ok"), "{verify}");
    let copy = without_positions(&muster(&["store", "dump", "--store", &url]));
    assert_eq!(source, copy, "the copy differs from the source");
}
