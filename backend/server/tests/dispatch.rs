//! The dispatcher through the real server on port 0 (bundled Helsinki city): recommendations
//! by road, accepting them, no double booking, and automatic dispatch of a P1 sensor fire
//! alarm. Waits are on log positions and websocket messages, with deadlines.

mod common;

use std::sync::Arc;

use common::{App, DEADLINE, spawn};
use futures::StreamExt;
use muster_server::auth::Role;
use muster_server::dispatcher::station_code;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn city() -> muster_geodata::City {
    muster_server::areas::Areas::from_setting("bundled")
        .unwrap()
        .1
        .unwrap()
}

/// Registers an engine at each fire station of the bundled city; returns (unit id, station).
async fn engines(app: &App) -> Vec<(String, muster_geodata::LatLon)> {
    let city = city();
    let mut out = Vec::new();
    for (i, s) in city
        .stations
        .iter()
        .filter(|s| s.kind == muster_geodata::model::StationKind::Fire)
        .enumerate()
    {
        let (status, body) = app
            .post(
                "/api/units",
                &format!("register-engine-{i:03}"),
                json!({
                    "kind": "engine", "call_sign": format!("E{}", i + 1), "agency": "city-fire",
                    "home_station": station_code(&s.id), "capabilities": ["pump"],
                    "location": {"lat": s.location.lat_deg(), "lon": s.location.lon_deg()},
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        out.push((body["unit_id"].as_str().unwrap().to_owned(), s.location));
    }
    assert!(
        out.len() >= 2,
        "the bundled city has {} fire stations",
        out.len()
    );
    out
}

async fn report(
    app: &App,
    key: &str,
    at: muster_geodata::LatLon,
    kind: &str,
    priority: &str,
) -> (String, u64) {
    let (status, body) = app
        .post(
            "/api/incidents",
            key,
            json!({"location": {"lat": at.lat_deg(), "lon": at.lon_deg()}, "incident_type": kind, "priority": priority}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["incident_id"].as_str().unwrap().to_owned(),
        body["position"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recommendation_is_nearest_by_road_and_accepting_it_dispatches_once() {
    let app = spawn().await;
    let engines = engines(&app).await;
    let city = city();
    let router = muster_geodata::Router::new(Arc::new(city.clone())).unwrap();
    // Between the first two stations, nearer the first.
    let (a, b) = (engines[0].1, engines[1].1);
    let at = muster_geodata::LatLon::from_lat_lon(
        a.lat_deg() * 0.7 + b.lat_deg() * 0.3,
        a.lon_deg() * 0.7 + b.lon_deg() * 0.3,
    )
    .unwrap();
    let (incident, position) = report(&app, "fire-call-0001", at, "structure_fire", "P2").await;

    let (status, rec) = app
        .get(&format!(
            "/api/incidents/{incident}/recommendation?min_position={position}"
        ))
        .await;
    assert_eq!(status, 200, "{rec}");
    let kinds = rec["recommendation"]["kinds"].as_array().unwrap();
    let engine_kind = kinds
        .iter()
        .find(|k| k["kind"] == "engine")
        .expect("a structure fire needs engines");
    let first = &engine_kind["candidates"][0];
    let sources: Vec<muster_geodata::LatLon> = engines.iter().map(|e| e.1).collect();
    let fastest = engines
        .iter()
        .zip(router.travel_times_to(&sources, at).unwrap())
        .filter_map(|(e, t)| t.ok().map(|t| (t, e.0.clone())))
        .min()
        .unwrap();
    assert_eq!(
        first["unit"].as_str().unwrap(),
        fastest.1,
        "not the nearest engine by road: {rec}"
    );
    assert!(
        first["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "eta"),
        "{first}"
    );
    let wanted = engine_kind["wanted"].as_u64().unwrap() as usize;
    let picked = engine_kind["candidates"]
        .as_array()
        .unwrap()
        .len()
        .min(wanted);
    assert!(
        !rec["recommendation"]["shortfall"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no ladders were registered: {rec}"
    );

    let (status, done) = app
        .post(
            &format!("/api/incidents/{incident}/dispatch"),
            "accept-0001",
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{done}");
    assert!(
        done["assigned"].as_u64().unwrap() as usize >= picked.min(1),
        "{done}"
    );
    let (status, again) = app
        .post(
            &format!("/api/incidents/{incident}/dispatch"),
            "accept-0001",
            json!({}),
        )
        .await;
    assert_eq!(
        status, 201,
        "a repeat is answered as the first time: {again}"
    );

    let (_, one) = app.get(&format!("/api/incidents/{incident}")).await;
    let units = one["units"].as_array().unwrap();
    assert_eq!(
        units.len(),
        done["assigned"].as_u64().unwrap() as usize,
        "a repeat assigned again: {one}"
    );
    assert!(units.iter().any(|u| u["unit"] == first["unit"]));

    // Another incident asks for the same unit by name: refused, naming the incident that has it.
    let (other, _) = report(&app, "fire-call-0002", b, "vehicle_fire", "P3").await;
    let (status, refused) = app
        .post(
            &format!("/api/incidents/{other}/dispatch"),
            "accept-0002",
            json!({"units": [first["unit"]]}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let error = &refused["results"][0]["error"];
    assert!(
        error.to_string().contains(&incident),
        "the refusal does not name the incident holding the unit: {refused}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p1_sensor_fire_alarm_is_dispatched_without_an_operator() {
    let app = spawn().await;
    let engines = engines(&app).await;
    let url = common::feed_url(&app, Role::Operator).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let at = engines[0].1;
    let (status, s) = app
        .post("/api/sensors", "smoke-sensor-1", json!({
            "kind": "smoke", "location": {"lat": at.lat_deg(), "lon": at.lon_deg()},
            "thresholds": [{"metric": "obscuration_pct", "crossing": "above", "raise_at": 10.0, "clear_at": 2.0,
                            "incident_type": "fire_alarm", "priority": "P1"}],
        }))
        .await;
    assert_eq!(status, 201, "{s}");
    let sensor = s["sensor_id"].as_str().unwrap();
    let (status, r) = app
        .post(
            &format!("/api/sensors/{sensor}/readings"),
            "smoke-reading-1",
            json!({"metric": "obscuration_pct", "value": 35.0}),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let incident = r["alarm"]["incident_id"]
        .as_str()
        .expect("the reading raised an alarm")
        .to_owned();
    let dispatched = tokio::time::timeout(DEADLINE, async {
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("the feed ended")
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "delta" && v["unit"]["incident"] == incident.as_str() {
                return v["unit"].clone();
            }
        }
    })
    .await
    .expect("no unit was dispatched to the alarm before the deadline");
    assert_eq!(dispatched["kind"], "engine", "{dispatched}");
    let (_, rules) = app.get("/api/dispatch/rules").await;
    assert_eq!(rules["auto_dispatch"][0]["name"], "P1 sensor fire alarm");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coverage_and_bad_requests_say_what_is_wrong() {
    let app = spawn().await;
    engines(&app).await;
    let (status, c) = app.get("/api/coverage?kinds=engine&target_s=3600").await;
    assert_eq!(status, 200, "{c}");
    assert!(c["uncovered"].as_array().is_some(), "{c}");
    for (path, want) in [
        ("/api/coverage?kinds=spaceship", 400),
        ("/api/coverage?target_s=0", 400),
        ("/api/coverage?target_s=soon", 400),
        ("/api/incidents/not-an-id/recommendation", 404),
        (
            "/api/incidents/0190f0f0-0000-7000-8000-000000000001/recommendation",
            404,
        ),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .post(
            "/api/incidents/0190f0f0-0000-7000-8000-000000000001/dispatch",
            "bad-dispatch-1",
            json!({"units": []}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    app.stop().await;
}

/// The engines the recommendation for `incident` still asks for, read once the dispatcher
/// has applied `position`.
async fn engines_wanted(app: &App, incident: &str, position: u64) -> u64 {
    let (status, rec) = app
        .get(&format!(
            "/api/incidents/{incident}/recommendation?min_position={position}"
        ))
        .await;
    assert_eq!(status, 200, "{rec}");
    rec["recommendation"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "engine")
        .map(|k| k["wanted"].as_u64().unwrap())
        .sum()
}

/// Walks the unit's task through `steps` (statuses, then completing the task); answers the
/// last command's log position.
async fn progress(app: &App, unit: &str, task: &str, statuses: &[&str], tag: &str) -> u64 {
    let (status, body) = app
        .post(
            &format!("/api/units/{unit}/tasks/{task}/acknowledge"),
            &format!("ack-{tag}-0001"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for s in statuses {
        let (status, body) = app
            .post(
                &format!("/api/units/{unit}/status"),
                &format!("status-{tag}-{s}"),
                json!({"status": s}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = app
        .post(
            &format!("/api/units/{unit}/tasks/{task}/complete"),
            &format!("complete-{tag}-0001"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["position"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_cleared_the_scene_is_not_asked_for_again_but_one_stood_down_is() {
    let app = spawn().await;
    let engines = engines(&app).await;
    for (tag, statuses, wanted_after) in [
        ("served", &["en_route", "on_scene"][..], 0),
        ("stood-down", &["en_route"][..], 1),
    ] {
        let (incident, position) = report(
            &app,
            &format!("car-fire-{tag}"),
            engines[0].1,
            "vehicle_fire",
            "P3",
        )
        .await;
        assert_eq!(engines_wanted(&app, &incident, position).await, 1);
        let (status, sent) = app
            .post(
                &format!("/api/incidents/{incident}/dispatch"),
                &format!("send-{tag}-0001"),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        let unit = sent["results"][0]["unit_id"].as_str().unwrap().to_owned();
        let (_, detail) = app
            .get(&format!(
                "/api/units/{unit}?min_position={}",
                sent["position"].as_u64().unwrap()
            ))
            .await;
        let task = detail["task"].as_str().unwrap().to_owned();
        let position = progress(&app, &unit, &task, statuses, tag).await;
        assert_eq!(
            engines_wanted(&app, &incident, position).await,
            wanted_after,
            "{tag}: after the engine's task ended"
        );
    }
    app.stop().await;
}

/// The nearest engine's ETA to `incident` once the dispatcher has applied `position`.
async fn first_engine(app: &App, incident: &str, position: u64) -> (String, f64) {
    let (status, rec) = app
        .get(&format!(
            "/api/incidents/{incident}/recommendation?min_position={position}"
        ))
        .await;
    assert_eq!(status, 200, "{rec}");
    let first = rec["recommendation"]["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "engine")
        .map(|k| k["candidates"][0].clone())
        .unwrap_or_else(|| panic!("no engine candidate: {rec}"));
    (
        first["unit"].as_str().unwrap().to_owned(),
        first["eta_s"].as_f64().unwrap(),
    )
}

/// Polls the recommendation until `pick` accepts it (the router prepares a changed graph in
/// the background), with the test deadline.
async fn first_engine_until(
    app: &App,
    incident: &str,
    position: u64,
    what: &str,
    pick: impl Fn(&(String, f64)) -> bool,
) -> (String, f64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let first = first_engine(app, incident, position).await;
        if pick(&first) {
            return first;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {first:?} at the deadline"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_road_closure_is_routed_around_until_it_is_reopened() {
    let app = spawn().await;
    let engines = engines(&app).await;
    let (a, b) = (engines[0].1, engines[1].1);
    let at = muster_geodata::LatLon::from_lat_lon(
        a.lat_deg() * 0.7 + b.lat_deg() * 0.3,
        a.lon_deg() * 0.7 + b.lon_deg() * 0.3,
    )
    .unwrap();
    let (incident, position) = report(&app, "closure-call-01", at, "vehicle_fire", "P3").await;
    let (nearest, open_eta) = first_engine(&app, &incident, position).await;
    let station = engines.iter().find(|e| e.0 == nearest).unwrap().1;

    // Close the streets around the nearest engine's station.
    let (status, closed) = app
        .post(
            "/api/roads/closures",
            "closure-0000001",
            json!({"location": {"lat": station.lat_deg(), "lon": station.lon_deg()}, "radius_m": 120, "note": "burst water main"}),
        )
        .await;
    assert_eq!(status, 201, "{closed}");
    assert!(closed["roads"].as_u64().unwrap() > 0, "{closed}");
    let closure = closed["closure_id"].as_str().unwrap().to_owned();
    let position = closed["position"].as_u64().unwrap();
    let (status, again) = app
        .post(
            "/api/roads/closures",
            "closure-0000001",
            json!({"location": {"lat": station.lat_deg(), "lon": station.lon_deg()}, "radius_m": 120, "note": "burst water main"}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, closed, "a repeat is answered as the first time");
    let (status, other) = app
        .post(
            "/api/roads/closures",
            "closure-0000001",
            json!({"location": {"lat": station.lat_deg(), "lon": station.lon_deg()}, "radius_m": 120}),
        )
        .await;
    assert_eq!(status, 422, "{other}");
    assert_eq!(other["error"]["code"], "idempotency_key_reused", "{other}");
    let (_, list) = app.get("/api/roads/closures").await;
    assert_eq!(list["closures"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["closures"][0]["note"], "burst water main");

    let around = first_engine_until(&app, &incident, position, "closed", |(u, eta)| {
        u != &nearest || *eta > open_eta + 1.0
    })
    .await;
    assert!(
        around.0 != nearest || around.1 > open_eta,
        "the closure changed nothing: {around:?} vs {open_eta}"
    );

    let (status, reopened) = app
        .post(
            &format!("/api/roads/closures/{closure}/reopen"),
            "reopen-0000001",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{reopened}");
    let position = reopened["position"].as_u64().unwrap();
    let back = first_engine_until(&app, &incident, position, "reopened", |(u, eta)| {
        u == &nearest && (*eta - open_eta).abs() < 0.5
    })
    .await;
    assert_eq!(back.0, nearest);
    let (_, list) = app.get("/api/roads/closures").await;
    assert!(list["closures"].as_array().unwrap().is_empty(), "{list}");

    // Bad input names what is wrong.
    for (body, words) in [
        (
            json!({"location": {"lat": station.lat_deg(), "lon": station.lon_deg()}, "radius_m": 0}),
            "radius_m",
        ),
        (
            json!({"location": {"lat": 10.0, "lon": 10.0}, "radius_m": 100}),
            "no road",
        ),
    ] {
        let (status, e) = app
            .post("/api/roads/closures", "closure-bad-0001", body)
            .await;
        assert_eq!(status, 422, "{e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(words),
            "{e}"
        );
    }
    let (status, e) = app
        .post(
            &format!("/api/roads/closures/{}/reopen", uuid::Uuid::now_v7()),
            "reopen-unknown-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{e}");
    app.stop().await;
}
