//! Enrolling devices, and a live drill against a real server: calls entered through the
//! operator API, the server's dispatcher consulted, a simulated crew device per unit on the
//! mobile gateway.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{DEADLINE, spawn, spawn_with_gateway, token};
use muster_mobile::client::{Client, ClientConfig, ClientEvent};
use muster_server::auth::Role;
use serde_json::{Value, json};

async fn post_as(app: &common::App, role: Role, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .bearer_auth(token(role))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_enrol_a_units_device_and_the_gateway_accepts_its_token() {
    let app = spawn_with_gateway().await;
    let (status, unit) = app
        .post(
            "/api/units",
            "enrol-unit-0001",
            json!({
                "kind": "engine", "call_sign": "E9", "agency": "fire", "home_station": "s-9",
                "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = unit["unit_id"].as_str().unwrap().to_owned();
    let path = format!("/api/units/{unit_id}/device-token");

    // A responder cannot mint tokens; bad validity and unknown units are named.
    let (status, body) = post_as(&app, Role::Responder, &path, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_as(&app, Role::Operator, &path, json!({"valid_hours": 0})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("valid_hours"),
        "{body}"
    );
    let unknown = format!("/api/units/{}/device-token", uuid::Uuid::now_v7());
    let (status, body) = post_as(&app, Role::Operator, &unknown, json!({})).await;
    assert_eq!(status, 404, "{body}");

    let (status, issued) = post_as(&app, Role::Operator, &path, json!({"valid_hours": 2})).await;
    assert_eq!(status, 201, "{issued}");
    let expires = chrono::DateTime::parse_from_rfc3339(issued["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let hours = (expires - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((1.9..=2.0).contains(&hours), "valid for {hours} h");
    let port = issued["gateway_port"].as_u64().unwrap();
    assert_eq!(Some(port as u16), app.gateway.as_ref().map(|g| g.port));
    let mut config = ClientConfig::new(
        format!("ws://127.0.0.1:{port}"),
        issued["token"].as_str().unwrap(),
    );
    config.unit = Some(muster_core::UnitId::parse(&unit_id).unwrap());
    let mut client = Client::start(config);
    let first = tokio::time::timeout(DEADLINE, client.next())
        .await
        .expect("no answer from the gateway before the deadline");
    assert!(
        matches!(first, Some(ClientEvent::Connected { .. })),
        "the gateway did not accept the issued token: {first:?}"
    );
    client.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gateway_no_device_token_is_issued() {
    let app = spawn().await;
    let (status, unit) = app
        .post(
            "/api/units",
            "enrol-unit-0002",
            json!({"kind": "engine", "call_sign": "E8", "agency": "fire", "home_station": "s-8"}),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let path = format!(
        "/api/units/{}/device-token",
        unit["unit_id"].as_str().unwrap()
    );
    let (status, body) = post_as(&app, Role::Operator, &path, json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_drill_works_the_city_through_the_operator_api_and_the_devices() {
    let app = spawn_with_gateway().await;
    let mut scenario =
        muster_sim::scenario::Scenario::load_file_or_sample(Path::new("helsinki")).unwrap();
    // A device out of reach stays silent for the server's acknowledgement timeout, in wall
    // time; declines keep the replacement path in play.
    scenario.responders.unreachable_probability = 0.0;
    scenario.responders.decline_probability = 0.1;
    // A street closed a few minutes in, and reopened before the calls end.
    let station = scenario.fleet[0].location;
    scenario
        .events
        .push(muster_sim::scenario::Scripted::RoadClosure {
            at_min: 5.0,
            until_min: 20.0,
            location: station,
            radius_m: 80.0,
        });
    let units = scenario.unit_count() as usize;
    let options = muster_sim::live::LiveOptions {
        server: app.base.clone(),
        token: token(Role::Operator),
        gateway: None,
        tls: None,
        speed: 600.0,
        seed: 11,
        hours: Some(0.5),
        repeat: false,
        // An incident whose first ambulance declines waits for the next free one, which
        // can take an hour on this small fleet.
        drain_hours: 8.0,
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let stats = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        muster_sim::live::run(Arc::new(scenario), options, stopped, &mut |_| {}),
    )
    .await
    .expect("the drill did not end within its drain time")
    .unwrap();

    assert_eq!(stats.units, units);
    assert!(stats.connections >= units, "{stats:?}");
    assert!(stats.calls >= 3, "too few calls to judge: {stats:?}");
    assert_eq!(stats.api_refusals, 0, "{:?}", stats.examples);
    assert!(stats.device_refusals <= 2, "{stats:?}");
    assert_eq!(stats.disconnects, 0, "{stats:?}");
    assert_eq!(stats.road_closures, 1, "{stats:?}");
    let (_, closures) = app.get("/api/roads/closures").await;
    assert!(
        closures["closures"].as_array().unwrap().is_empty(),
        "the drill's road closure was not lifted: {closures}"
    );
    // The one refusal a device meets on a busy day: it reports itself available at its
    // station a moment after the server gave it a new task it has not yet received.
    assert!(
        stats
            .examples
            .iter()
            .all(|e| e.contains("cannot go from dispatched to available")),
        "{:?}",
        stats.examples
    );
    assert!(stats.units_sent >= stats.calls, "{stats:?}");
    assert!(stats.acknowledged > 0 && stats.completed > 0, "{stats:?}");
    assert!(stats.positions > 0, "{stats:?}");
    if stats.closed != stats.calls {
        let (_, open) = app.get("/api/incidents").await;
        let mut details = Vec::new();
        for i in open["incidents"].as_array().unwrap() {
            let (_, full) = app
                .get(&format!("/api/incidents/{}", i["id"].as_str().unwrap()))
                .await;
            for u in full["units"].as_array().unwrap() {
                let (_, unit) = app
                    .get(&format!("/api/units/{}", u["unit"].as_str().unwrap()))
                    .await;
                details.push(format!("{u}\n   unit now: {unit}"));
            }
        }
        panic!(
            "every incident is closed once its units have cleared: {stats:?}\n{}",
            details.join("\n")
        );
    }

    // The server saw it all: every incident closed, its time points recorded from the
    // devices' reports, every unit registered and free again.
    let (status, board) = app.get("/api/incidents?include_closed=true").await;
    assert_eq!(status, 200);
    let incidents = board["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), stats.calls, "{board}");
    for i in incidents {
        assert_eq!(i["status"], "closed", "{i}");
        let (_, full) = app
            .get(&format!("/api/incidents/{}", i["id"].as_str().unwrap()))
            .await;
        let sent = full["units"].as_array().unwrap();
        assert!(
            sent.iter().any(
                |u| ["dispatched_at", "en_route_at", "on_scene_at", "cleared_at"]
                    .iter()
                    .all(|point| u[point].is_string())
            ),
            "no unit with every time point from its device's reports: {full}"
        );
        assert!(
            sent.iter().all(|u| u["active"] == false),
            "a task still active on a closed incident: {full}"
        );
    }
    let (_, fleet) = app.get("/api/units").await;
    let fleet = fleet["units"].as_array().unwrap();
    assert_eq!(fleet.len(), units);
    let busy: Vec<&Value> = fleet.iter().filter(|u| u["task"].is_string()).collect();
    assert!(busy.is_empty(), "units still holding tasks: {busy:?}");
    app.stop().await;
}
