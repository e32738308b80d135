//! The audit trail, tried from outside: every command route and every device command leaves
//! events that name who acted (actor, role, credential), from where (peer, node) and through
//! which source; every answer that discloses caller details, over the API or to a device, is
//! recorded as a `CallerDetailsRead` first. The tables are checked against the route list, so
//! a command route added without a row here fails the test.

mod common;

use std::collections::BTreeSet;

use common::{DEADLINE, closed, device_session, next_text, register_unit, spawn_with_gateway};
use muster_server::routes::ROUTES;
use muster_store::{Position, RecordedEvent};
use serde_json::{Value, json};

const CANARY: &str = "Audit Canary Callerson";

/// Every event in the log.
async fn all_events(app: &common::App) -> Vec<RecordedEvent> {
    let store = app.state.runner.store();
    let mut out = Vec::new();
    let mut next = Position::START;
    loop {
        let page = store.read_all(next, 4096).await.unwrap();
        let Some(last) = page.last() else { break };
        next = last.position.next();
        out.extend(page);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_and_no_read_of_caller_details_escapes_the_audit_trail() {
    let app = spawn_with_gateway().await;
    let gateway = app.gateway.clone().unwrap();
    let at = json!({"lat": 60.17, "lon": 24.94});
    let covered: std::cell::RefCell<BTreeSet<&str>> = Default::default();
    let post = async |route: &'static str, path: String, key: &str, body: Value| {
        let (status, answer) = app.post(&path, key, body).await;
        assert!((200..300).contains(&status), "{route}: {status} {answer}");
        covered.borrow_mut().insert(route);
        answer
    };

    // The dispatch centre's commands, one through each route.
    let unit = register_unit(&app, "audit-unit-1", "A1").await;
    // A second ambulance, for the recommendation after the first declines.
    register_unit(&app, "audit-unit-2", "A2").await;
    covered.borrow_mut().insert("/api/units");
    let call = json!({"location": at, "incident_type": "medical", "priority": "P1",
                      "caller": {"name": CANARY, "call_back": "+358 40 1112223"}});
    let reported = post(
        "/api/incidents",
        "/api/incidents".into(),
        "audit-call-1",
        call.clone(),
    )
    .await;
    let incident = reported["incident_id"].as_str().unwrap().to_owned();
    post(
        "/api/incidents/{id}/notes",
        format!("/api/incidents/{incident}/notes"),
        "audit-note-1",
        json!({"text": "second caller on the line"}),
    )
    .await;
    post(
        "/api/units/{id}/status",
        format!("/api/units/{unit}/status"),
        "audit-status-1",
        json!({"status": "out_of_service"}),
    )
    .await;
    post(
        "/api/units/{id}/status",
        format!("/api/units/{unit}/status"),
        "audit-status-2",
        json!({"status": "available"}),
    )
    .await;
    post(
        "/api/units/{id}/position",
        format!("/api/units/{unit}/position"),
        "audit-position-1",
        json!({"location": at}),
    )
    .await;
    let issued = post(
        "/api/units/{id}/device-token",
        format!("/api/units/{unit}/device-token"),
        "audit-token-1",
        json!({}),
    )
    .await;
    let device_token = issued["token"].as_str().unwrap().to_owned();
    let token_id = issued["token_id"].as_str().unwrap().to_owned();
    let mut device = device_session(gateway.port, &device_token, unit).await;
    let assigned = post(
        "/api/incidents/{id}/tasks",
        format!("/api/incidents/{incident}/tasks"),
        "audit-assign-1",
        json!({"unit_id": unit}),
    )
    .await;
    let task = assigned["task_id"].as_str().unwrap().to_owned();
    // The device is shown the task, with the call-back number.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let m = next_text(&mut device).await.expect("the task");
        if m["type"] == "task" {
            assert!(m["call_back"].is_string(), "{m}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
    // The crew acts from the device.
    for (n, command) in [
        json!({"type": "acknowledge_task", "key": "device-ack-0001", "task": task, "at": chrono::Utc::now()}),
        json!({"type": "status", "key": "device-status-01", "status": "en_route", "at": chrono::Utc::now()}),
    ]
    .into_iter()
    .enumerate()
    {
        use futures::SinkExt;
        device
            .send(tokio_tungstenite::tungstenite::Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let m = next_text(&mut device).await.expect("an answer");
            if m["type"] == "done" {
                break;
            }
            assert_ne!(m["type"], "error", "device command {n}: {m}");
        }
    }
    post(
        "/api/units/{id}/tasks/{task}/complete",
        format!("/api/units/{unit}/tasks/{task}/complete"),
        "audit-complete-1",
        json!({}),
    )
    .await;
    // A second incident: declined, then sent by the recommendation, acknowledged.
    let second = post(
        "/api/incidents",
        "/api/incidents".into(),
        "audit-call-2",
        call.clone(),
    )
    .await;
    let second = second["incident_id"].as_str().unwrap().to_owned();
    let assigned = post(
        "/api/incidents/{id}/tasks",
        format!("/api/incidents/{second}/tasks"),
        "audit-assign-2",
        json!({"unit_id": unit}),
    )
    .await;
    let task2 = assigned["task_id"].as_str().unwrap().to_owned();
    post(
        "/api/units/{id}/tasks/{task}/decline",
        format!("/api/units/{unit}/tasks/{task2}/decline"),
        "audit-decline-1",
        json!({"reason": "crew too far"}),
    )
    .await;
    let sent = post(
        "/api/incidents/{id}/dispatch",
        format!("/api/incidents/{second}/dispatch"),
        "audit-dispatch-1",
        json!({}),
    )
    .await;
    let task3 = sent["results"][0]["task_id"].as_str().unwrap().to_owned();
    let sent_unit = sent["results"][0]["unit_id"].as_str().unwrap().to_owned();
    post(
        "/api/units/{id}/tasks/{task}/acknowledge",
        format!("/api/units/{sent_unit}/tasks/{task3}/acknowledge"),
        "audit-ack-1",
        json!({}),
    )
    .await;
    post(
        "/api/incidents/{id}/close",
        format!("/api/incidents/{second}/close"),
        "audit-close-1",
        json!({"disposition": "cancelled"}),
    )
    .await;
    let closure = post(
        "/api/roads/closures",
        "/api/roads/closures".into(),
        "audit-closure-1",
        json!({"location": at, "radius_m": 200}),
    )
    .await;
    let closure = closure["closure_id"].as_str().unwrap().to_owned();
    post(
        "/api/roads/closures/{id}/reopen",
        format!("/api/roads/closures/{closure}/reopen"),
        "audit-reopen-1",
        json!({}),
    )
    .await;
    let sensor = post(
        "/api/sensors",
        "/api/sensors".into(),
        "audit-sensor-1",
        json!({
            "kind": "smoke", "location": at,
            "thresholds": [{"metric": "obscuration_pct", "crossing": "above", "raise_at": 10.0,
                            "clear_at": 2.0, "incident_type": "fire_alarm", "priority": "P3"}],
        }),
    )
    .await;
    let sensor = sensor["sensor_id"].as_str().unwrap().to_owned();
    post(
        "/api/sensors/{id}/readings",
        format!("/api/sensors/{sensor}/readings"),
        "audit-reading-1",
        json!({"metric": "obscuration_pct", "value": 1.0}),
    )
    .await;
    let (status, erased) = app
        .post_as(
            muster_server::auth::Role::Admin,
            &format!("/api/incidents/{second}/caller/erase"),
            "audit-erase-1",
            json!({"reason": "data subject request 2026/7"}),
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    covered
        .borrow_mut()
        .insert("/api/incidents/{id}/caller/erase");
    post(
        "/api/units/{id}/device-token/revoke",
        format!("/api/units/{unit}/device-token/revoke"),
        "audit-revoke-1",
        json!({}),
    )
    .await;
    assert_eq!(u16::from(closed(&mut device).await.code), 4003);

    // An administrator's: a machine's API token, created and revoked.
    let admin = common::token(muster_server::auth::Role::Admin);
    let (status, created) = app
        .post_with(
            &admin,
            "/api/admin/api-tokens",
            None,
            json!({"name": "audit-bridge", "role": "planner", "valid_days": 1}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    covered.borrow_mut().insert("/api/admin/api-tokens");
    let (status, revoked) = app
        .post_with(
            &admin,
            &format!(
                "/api/admin/api-tokens/{}/revoke",
                created["token_id"].as_str().unwrap()
            ),
            Some("audit-revoke-api-1"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    covered
        .borrow_mut()
        .insert("/api/admin/api-tokens/{id}/revoke");

    // Every command route is covered (the feed's ticket is not a command).
    let commands: BTreeSet<&str> = ROUTES
        .iter()
        .filter(|(method, path)| *method == "post" && *path != "/api/feed/ticket")
        .map(|(_, path)| *path)
        .collect();
    assert_eq!(
        covered.take(),
        commands,
        "command routes without a row in this test"
    );

    // Every read route, as the dispatch centre: the answers that disclose the caller.
    let ids = [("{id}", incident.as_str())];
    let mut disclosed = 0;
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "get") {
        if matches!(*path, "/api/feed") || path.contains("{task}") {
            continue;
        }
        let mut concrete = path.to_string();
        for (param, value) in ids {
            let value = if path.starts_with("/api/units/") {
                unit.to_string()
            } else {
                value.to_owned()
            };
            concrete = concrete.replace(param, &value);
        }
        let (status, body) = app.get(&concrete).await;
        assert!(status < 500, "{method} {concrete}: {status} {body}");
        if body.to_string().contains(CANARY) {
            disclosed += 1;
        }
    }
    assert!(
        disclosed >= 1,
        "no read route showed the caller to the dispatch centre"
    );

    let events = all_events(&app).await;
    let reads: Vec<&RecordedEvent> = events
        .iter()
        .filter(|e| e.event_type == "CallerDetailsRead")
        .collect();
    let via = |v: &str| {
        reads
            .iter()
            .filter(|e| serde_json::from_slice::<Value>(&e.data).unwrap()["via"] == v)
            .count()
    };
    assert_eq!(via("api"), disclosed, "API disclosures and their records");
    assert!(
        via("device") >= 1,
        "the device's task with the call-back number was not recorded"
    );

    // Who, from where, with what: on every event a person or a device caused.
    let people = ["operator", "responder", "planner", "admin", "device"];
    let systems = ["dispatcher", "mobile-gateway"];
    for e in &events {
        let m = &e.metadata;
        let what = format!("{} {} {:?}", e.stream, e.event_type, m);
        let actor = m
            .actor
            .as_deref()
            .unwrap_or_else(|| panic!("no actor: {what}"));
        assert!(m.source.is_some(), "no source: {what}");
        if systems.contains(&actor) {
            continue;
        }
        let role = m
            .role
            .as_deref()
            .unwrap_or_else(|| panic!("no role: {what}"));
        assert!(people.contains(&role), "{what}");
        assert_eq!(m.peer.as_deref(), Some("127.0.0.1"), "{what}");
        assert!(m.node.is_some(), "no node: {what}");
        let credential = m
            .credential
            .as_deref()
            .unwrap_or_else(|| panic!("no credential: {what}"));
        if role == "device" {
            assert_eq!(credential, format!("device-token:{token_id}"), "{what}");
            assert_eq!(m.source.as_deref(), Some("field"), "{what}");
            assert!(actor.starts_with("unit:"), "{what}");
        } else {
            assert!(credential.starts_with("token:"), "{what}");
            assert!(
                matches!(m.source.as_deref(), Some("operator" | "hotline" | "sensor")),
                "a dispatch-centre command recorded as another source: {what}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_reads_the_trail_of_an_incident_and_of_a_user() {
    let app = common::spawn().await;
    let (status, reported) = app
        .post(
            "/api/incidents",
            "trail-call-1",
            json!({"location": {"lat": 60.17, "lon": 24.94}, "incident_type": "medical",
                   "priority": "P2", "caller": {"name": CANARY}}),
        )
        .await;
    assert_eq!(status, 201, "{reported}");
    let id = reported["incident_id"].as_str().unwrap();
    let (status, _) = app.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(status, 200);
    let get_as = |role: muster_server::auth::Role, query: String| {
        let base = app.base.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{base}/api/audit?{query}"))
                .bearer_auth(common::token(role))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    use muster_server::auth::Role;
    let (status, _) = get_as(Role::Operator, format!("incident={id}")).await;
    assert_eq!(status, 403, "an operator reads no trail");
    let (status, body) = get_as(Role::Admin, format!("incident={id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(CANARY),
        "caller details in the trail: {body}"
    );
    let trail: Value = serde_json::from_str(&body).unwrap();
    let types: Vec<&str> = trail["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"IncidentReported"), "{types:?}");
    assert!(types.contains(&"CallerDetailsRead"), "{types:?}");
    let (status, body) = get_as(Role::Admin, "user=operator-user&limit=1".into()).await;
    assert_eq!(status, 200, "{body}");
    let trail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trail["lines"].as_array().unwrap().len(), 1);
    assert_eq!(trail["truncated"], true);
    assert_eq!(trail["lines"][0]["actor"], "operator-user");
    // Both: what the operator did about the incident; neither: the whole log.
    let (status, body) = get_as(Role::Admin, format!("incident={id}&user=operator-user")).await;
    assert_eq!(status, 200, "{body}");
    let both: Value = serde_json::from_str(&body).unwrap();
    let both = both["lines"].as_array().unwrap().clone();
    assert!(
        !both.is_empty() && both.iter().all(|l| l["actor"] == "operator-user"),
        "{body}"
    );
    let (status, body) = get_as(Role::Admin, "limit=10000".into()).await;
    assert_eq!(status, 200, "{body}");
    let all: Value = serde_json::from_str(&body).unwrap();
    assert!(all["lines"].as_array().unwrap().len() > both.len());
    for bad in [
        "incident=nope",
        "user=",
        "user=x&limit=0",
        "user=x&limit=10001",
    ] {
        let (status, body) = get_as(Role::Admin, bad.into()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    app.stop().await;
}
