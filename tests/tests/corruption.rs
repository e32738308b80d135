//! Bytes flipped inside committed events are reported with the file and the event's
//! position: when opening (newest events), on every read, and by `muster store verify`;
//! never handed out, never skipped, never silently truncated.

use std::path::Path;
use std::process::Command;

use muster_e2e::corruption::flip_inside;
use muster_store::embedded::{STORE_FILE, TAIL_CHECK_EVENTS, VerifyOnOpen};
use muster_store::{
    EmbeddedOptions, EmbeddedStore, EventStore, ExpectedState, NewEvent, Position, StoreError,
    StreamName,
};
use uuid::Uuid;

const EARLY: u64 = 10;

fn marker(position: u64) -> String {
    format!("MARKER-{position:08}-ABCDEFGHIJKLMNOP")
}

/// A store of TAIL_CHECK_EVENTS + 2000 events; events at EARLY and at the last position carry
/// unique markers.
async fn build(dir: &Path) -> u64 {
    let total = TAIL_CHECK_EVENTS + 2000;
    let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap();
    let s = StreamName::parse("incident-1").unwrap();
    let mut position = 0;
    while position < total {
        let batch: Vec<NewEvent> = (position..(position + 500).min(total))
            .map(|p| {
                let text = if p == EARLY || p == total - 1 {
                    marker(p)
                } else {
                    format!("plain event {p}")
                };
                NewEvent::json(
                    Uuid::now_v7(),
                    "Noted",
                    1,
                    &serde_json::json!({ "text": text }),
                )
                .unwrap()
            })
            .collect();
        position += batch.len() as u64;
        store.append(&s, ExpectedState::Any, batch).await.unwrap();
    }
    total
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join(STORE_FILE), to.join(STORE_FILE)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_in_the_newest_events_stops_the_open_and_names_the_spot() {
    let base = tempfile::tempdir().unwrap();
    let total = build(base.path()).await;
    let last = total - 1;
    let flipped = flip_inside(&base.path().join(STORE_FILE), marker(last).as_bytes()).unwrap();
    assert!(flipped >= 1, "the marker was not found in the file");
    match EmbeddedStore::open(base.path(), EmbeddedOptions::default()) {
        Err(StoreError::Corrupt {
            file,
            position,
            detail,
        }) => {
            assert_eq!(file, base.path().join(STORE_FILE));
            assert_eq!(position, Some(Position(last)), "{detail}");
            let message = StoreError::Corrupt {
                file,
                position,
                detail,
            }
            .to_string();
            assert!(
                message.contains(STORE_FILE) && message.contains(&last.to_string()),
                "{message}"
            );
        }
        other => panic!("opening a damaged store gave {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_in_old_events_is_refused_on_read_by_a_full_open_and_by_verify() {
    let base = tempfile::tempdir().unwrap();
    build(base.path()).await;
    let flipped = flip_inside(&base.path().join(STORE_FILE), marker(EARLY).as_bytes()).unwrap();
    assert!(flipped >= 1, "the marker was not found in the file");

    {
        let store = EmbeddedStore::open(base.path(), EmbeddedOptions::default()).unwrap();
        match store.read_all(Position::START, 100).await {
            Err(StoreError::Corrupt { position, .. }) => {
                assert_eq!(position, Some(Position(EARLY)))
            }
            Ok(events) => panic!(
                "a read handed out {} events across a damaged one",
                events.len()
            ),
            Err(e) => panic!("unexpected error {e}"),
        }
        let before = store
            .read_all(Position::START, EARLY as usize)
            .await
            .unwrap();
        assert_eq!(before.len() as u64, EARLY, "undamaged events stay readable");
    }

    let full = EmbeddedOptions {
        verify_on_open: VerifyOnOpen::Full,
        ..Default::default()
    };
    match EmbeddedStore::open(base.path(), full) {
        Err(e @ StoreError::Corrupt { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&format!("position {EARLY}")), "{message}");
        }
        other => panic!("a full open of a damaged store gave {other:?}"),
    }

    let copy = tempfile::tempdir().unwrap();
    copy_dir(base.path(), copy.path());
    let out = Command::new(muster_e2e::muster_bin())
        .args(["store", "verify", "--data-dir"])
        .arg(copy.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "verify should fail: {text}");
    assert!(
        text.contains(&format!("position {EARLY}")),
        "verify does not name the spot: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_an_intact_store_and_backup_copies_it() {
    let base = tempfile::tempdir().unwrap();
    let total = build(base.path()).await;
    let muster = muster_e2e::muster_bin();
    let verify = Command::new(&muster)
        .args(["store", "verify", "--data-dir"])
        .arg(base.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let backup = base.path().join("backup");
    let out = Command::new(&muster)
        .args(["store", "backup", "--data-dir"])
        .arg(base.path())
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = EmbeddedStore::open(
        &backup,
        EmbeddedOptions {
            verify_on_open: VerifyOnOpen::Full,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(copy.head(), Position(total));
    let again = Command::new(&muster)
        .args(["store", "backup", "--data-dir"])
        .arg(base.path())
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a backup over an existing one must be refused"
    );
    let dump = Command::new(&muster)
        .args(["store", "dump", "--limit", "3", "--data-dir"])
        .arg(base.path())
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(dump.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["position"], 2);
    assert_eq!(lines[0]["stream"], "incident-1");
    assert_eq!(lines[1]["data"]["text"], "plain event 1");
}
