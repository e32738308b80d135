//! Erasing a caller's details on request (crypto-shredding): the details are in the log only
//! sealed under the incident's key; erasure records who and why, destroys the key, and from
//! then on no answer, no device and no copy of the log discloses them, while the log itself
//! stays whole.

mod common;

use common::{device_session, next_text, register_unit, spawn_with_gateway};
use muster_server::auth::Role;
use muster_store::{EventStore, Position};
use serde_json::json;

const NAME: &str = "Erasable Callerson";
const NUMBER: &str = "+358 40 9998887";
const DIGITS: &str = "9998887";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_caller_details_are_gone_for_good_and_the_log_stays_whole() {
    let app = spawn_with_gateway().await;
    let store = app.state.runner.store().clone();
    let (status, reported) = app
        .post(
            "/api/incidents",
            "erase-call-1",
            json!({"location": {"lat": 60.17, "lon": 24.94}, "incident_type": "medical",
                   "priority": "P2", "caller": {"name": NAME, "call_back": NUMBER}}),
        )
        .await;
    assert_eq!(status, 201, "{reported}");
    let id = reported["incident_id"].as_str().unwrap().to_owned();
    let incident = muster_core::IncidentId::parse(&id).unwrap();

    // In the log only sealed; to the dispatch centre in the clear.
    let log = |store: std::sync::Arc<dyn EventStore>| async move {
        let events = store.read_all(Position::START, 10_000).await.unwrap();
        events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = log(store.clone()).await;
    assert!(
        !before.contains(NAME) && !before.contains(DIGITS),
        "in the clear in the log"
    );
    assert!(before.contains("\"sealed\""), "{before}");
    let (_, detail) = app.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(detail["caller"]["name"], NAME, "{detail}");
    assert_eq!(detail["caller_erased"], false);

    // Only an administrator erases, with a reason.
    let (status, _) = app
        .post(
            &format!("/api/incidents/{id}/caller/erase"),
            "erase-op-1",
            json!({"reason": "asked"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .post_as(
            Role::Admin,
            &format!("/api/incidents/{id}/caller/erase"),
            "erase-blank-1",
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(status, 422);
    let nobody = muster_core::IncidentId::from_uuid(uuid::Uuid::new_v4());
    let (status, _) = app
        .post_as(
            Role::Admin,
            &format!("/api/incidents/{nobody}/caller/erase"),
            "erase-nobody-1",
            json!({"reason": "asked"}),
        )
        .await;
    assert_eq!(status, 404);
    let head = store.head();
    let erase = json!({"reason": "data subject request 2026/12"});
    let (status, erased) = app
        .post_as(
            Role::Admin,
            &format!("/api/incidents/{id}/caller/erase"),
            "erase-ok-1",
            erase.clone(),
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["shredded"], true, "{erased}");
    assert!(store.head() > head);
    let (status, again) = app
        .post_as(
            Role::Admin,
            &format!("/api/incidents/{id}/caller/erase"),
            "erase-ok-1",
            erase,
        )
        .await;
    assert_eq!(
        (status, &again["position"]),
        (200, &erased["position"]),
        "a repeat answers as the first"
    );
    assert_eq!(
        store.data_key(incident.as_uuid(), false).await.unwrap(),
        None
    );

    // Gone from every answer, and from what a device is sent.
    let (_, detail) = app
        .get(&format!(
            "/api/incidents/{id}?min_position={}",
            erased["position"]
        ))
        .await;
    assert_eq!(detail["caller_erased"], true, "{detail}");
    assert!(detail["caller"].is_null(), "{detail}");
    let unit = register_unit(&app, "erase-unit-1", "A5").await;
    let token = app
        .gateway
        .as_ref()
        .unwrap()
        .tokens
        .issue(unit, chrono::Utc::now() + chrono::Duration::hours(1));
    let mut device = device_session(app.gateway.as_ref().unwrap().port, &token, unit).await;
    let (status, body) = app
        .post(
            &format!("/api/incidents/{id}/tasks"),
            "erase-assign-1",
            json!({"unit_id": unit}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let task = loop {
        let m = next_text(&mut device).await.expect("the task");
        if m["type"] == "task" {
            break m;
        }
    };
    assert!(task.get("call_back").is_none_or(|c| c.is_null()), "{task}");

    // The log is whole: the same events as before, plus the record of the erasure; and no
    // read of the erased details was recorded after it.
    let after = log(store.clone()).await;
    assert!(
        after.starts_with(&before),
        "the log before the erasure changed"
    );
    assert!(after.contains("data subject request 2026/12"));
    let events = store.read_all(Position::START, 10_000).await.unwrap();
    let erased_at = events
        .iter()
        .position(|e| e.event_type == "CallerDetailsErased")
        .expect("the erasure is in the log");
    assert!(
        !events[erased_at..]
            .iter()
            .any(|e| e.event_type == "CallerDetailsRead"),
        "a read recorded after the erasure"
    );
    let erasure = &events[erased_at];
    assert_eq!(erasure.metadata.actor.as_deref(), Some("admin-user"));
    app.stop().await;
}
