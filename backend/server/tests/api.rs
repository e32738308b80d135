//! The operator API against the real server on port 0, a fresh data directory per test.
//! No sleeping: waits are on conditions (view positions, websocket messages) with deadlines.

use std::net::TcpListener;
use std::time::Duration;

use futures::StreamExt;
use muster_server::auth::{Role, UserConfig};
use muster_server::{Application, Config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(10);

struct TestApp {
    state: muster_server::routes::AppState,
    base: String,
    port: u16,
    client: reqwest::Client,
    stopper: muster_server::app::Stopper,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: tempfile::TempDir,
}

fn token(role: Role) -> String {
    format!("test-token-for-{}-0123456789", role.as_str())
}

/// The unit the test responder crews.
const RESPONDER_UNIT: &str = "01930000-0000-7000-8000-0000000000a1";

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        bind: "127.0.0.1:0".into(),
        users: Role::ALL
            .iter()
            .map(|r| UserConfig {
                name: format!("{}-user", r.as_str()),
                role: *r,
                token: token(*r),
                unit: (*r == Role::Responder)
                    .then(|| muster_core::UnitId::parse(RESPONDER_UNIT).unwrap()),
            })
            .collect(),
        ..Config::default()
    }
}

async fn spawn_in(dir: tempfile::TempDir) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = Application::build_with_listener(config(dir.path()), listener)
        .await
        .unwrap();
    let port = app.port();
    let stopper = app.stopper();
    let state = app.state().clone();
    let running = tokio::spawn(app.run_until_stopped());
    TestApp {
        state,
        base: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        stopper,
        running,
        dir,
    }
}

async fn spawn_app() -> TestApp {
    spawn_in(tempfile::tempdir().unwrap()).await
}

impl TestApp {
    async fn stop(self) -> tempfile::TempDir {
        self.stopper.stop().await;
        self.running.await.unwrap().unwrap();
        self.dir
    }

    async fn post_as(&self, role: Role, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token(role))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.post_as(Role::Operator, path, key, body).await
    }

    async fn get_as(&self, role: Role, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token(role))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_as(Role::Operator, path).await
    }

    /// `/readyz` once it answers 200 (the views have caught up with the log), within the
    /// deadline.
    async fn ready(&self) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let r = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                return r.json().await.unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready: {}",
                r.text().await.unwrap_or_default()
            );
            tokio::task::yield_now().await;
        }
    }

    /// A view read that waits until the views hold `position`.
    async fn view(&self, path: &str, position: &Value) -> Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, body) = self
            .get(&format!(
                "{path}{sep}min_position={}",
                position.as_u64().unwrap()
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["position"].as_u64() >= position.as_u64(),
            "views behind: {body}"
        );
        body
    }
}

fn call(lat: f64, lon: f64, kind: &str) -> Value {
    json!({
        "location": {"lat": lat, "lon": lon},
        "incident_type": kind,
        "priority": "P2",
        "caller": {"name": "Maija Meikäläinen", "call_back": "+358 40 123 4567"},
    })
}

fn unit(call_sign: &str) -> Value {
    json!({
        "kind": "als_ambulance", "call_sign": call_sign, "agency": "hus",
        "home_station": "s-1", "capabilities": ["als"],
        "location": {"lat": 60.17, "lon": 24.94},
    })
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    app.stop().await;
}

#[tokio::test]
async fn a_call_becomes_an_incident_with_duplicate_suggestions_and_repeats_write_nothing() {
    let app = spawn_app().await;
    let (status, first) = app
        .post(
            "/api/incidents",
            "call-0001",
            call(60.1699, 24.9384, "structure_fire"),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["duplicates"], json!([]));
    let id = first["incident_id"].as_str().unwrap().to_owned();
    app.view("/api/incidents", &first["position"]).await;

    // A second call nearby about the same fire: the first is suggested.
    let (status, second) = app
        .post(
            "/api/incidents",
            "call-0002",
            call(60.1701, 24.9390, "fire_alarm"),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["duplicates"][0]["incident"], id.as_str());

    // The same key again: the original answer, nothing written.
    let (status, again) = app
        .post(
            "/api/incidents",
            "call-0001",
            call(60.1699, 24.9384, "structure_fire"),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(again, first, "a repeat gets the first answer");
    assert_eq!(again["events"], first["events"]);
    let board = app.view("/api/incidents", &second["position"]).await;
    assert_eq!(board["incidents"].as_array().unwrap().len(), 2);
    assert_eq!(
        board["position"], second["position"],
        "the repeat appended nothing"
    );

    // Caller details: for the dispatch centre only, and never on the board.
    let (_, detail) = app.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(detail["caller"]["call_back"], "+358401234567");
    let (_, planner) = app
        .get_as(Role::Planner, &format!("/api/incidents/{id}"))
        .await;
    assert!(planner.get("caller").is_none());
    assert!(!board.to_string().contains("4567"));
    app.stop().await;
}

#[tokio::test]
async fn a_unit_goes_through_a_task_and_closing_the_incident_releases_it() {
    let app = spawn_app().await;
    let (_, inc) = app
        .post("/api/incidents", "call-1000", call(60.17, 24.94, "medical"))
        .await;
    let incident = inc["incident_id"].as_str().unwrap().to_owned();
    let mut a1 = unit("A1");
    a1["id"] = json!(RESPONDER_UNIT);
    let (status, u) = app.post("/api/units", "unit-a1-reg", a1).await;
    assert_eq!(status, 201, "{u}");
    let unit_id = u["unit_id"].as_str().unwrap().to_owned();
    assert_eq!(unit_id, RESPONDER_UNIT);
    // A responder acts for their own unit only.
    let (status, other) = app.post("/api/units", "unit-a2-reg", unit("A2")).await;
    assert_eq!(status, 201, "{other}");
    let (status, body) = app
        .post_as(
            Role::Responder,
            &format!("/api/units/{}/status", other["unit_id"].as_str().unwrap()),
            "st-not-mine",
            json!({"status": "out_of_service"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(RESPONDER_UNIT),
        "{body}"
    );

    let (status, assigned) = app
        .post(
            &format!("/api/incidents/{incident}/tasks"),
            "assign-1000",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert_eq!(status, 201, "{assigned}");
    let task = assigned["task_id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post_as(
            Role::Responder,
            &format!("/api/units/{unit_id}/tasks/{task}/acknowledge"),
            "ack-10000",
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    for (key, to) in [("st-enroute", "en_route"), ("st-onscene", "on_scene")] {
        let (status, body) = app
            .post_as(
                Role::Responder,
                &format!("/api/units/{unit_id}/status"),
                key,
                json!({"status": to}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, pos) = app
        .post_as(
            Role::Responder,
            &format!("/api/units/{unit_id}/position"),
            "pos-000001",
            json!({"location": {"lat": 60.171, "lon": 24.941}, "heading_deg": 90.0}),
        )
        .await;
    assert_eq!(status, 200, "{pos}");
    let board = app.view("/api/incidents", &pos["position"]).await;
    let row = &board["incidents"][0];
    assert_eq!(row["status"], "units_on_scene", "{row}");
    assert_eq!(row["units"][&unit_id], "on_scene");

    let (status, closed) = app
        .post(
            &format!("/api/incidents/{incident}/close"),
            "close-1000",
            json!({"disposition": "resolved"}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    // The unit was released by the close (a follow-up): it is free again.
    let (_, detail) = app.get(&format!("/api/incidents/{incident}")).await;
    assert_eq!(detail["status"], "closed");
    let mut freed = false;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let (_, u) = app
            .get(&format!(
                "/api/units/{unit_id}?min_position={}",
                closed["position"]
            ))
            .await;
        if u["status"] == "returning" && u.get("task").is_none() {
            freed = true;
            break;
        }
        app.view("/api/units", &json!(u["position"].as_u64().unwrap() + 1))
            .await;
    }
    assert!(freed, "the unit was not released");
    // Closed stays closed.
    let (status, body) = app
        .post(
            &format!("/api/incidents/{incident}/tasks"),
            "assign-1001",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "ended");
    // A repeat of the first assignment still gets its original answer.
    let (status, again) = app
        .post(
            &format!("/api/incidents/{incident}/tasks"),
            "assign-1000",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, assigned, "a repeat gets the first answer");
    assert_eq!(again["task_id"], assigned["task_id"]);
    app.stop().await;
}

#[tokio::test]
async fn two_operators_assigning_one_unit_at_once_one_wins_the_other_learns_which_incident() {
    let app = spawn_app().await;
    let (_, u) = app.post("/api/units", "unit-race-0", unit("R1")).await;
    let unit_id = u["unit_id"].as_str().unwrap().to_owned();
    for round in 0..5 {
        let (_, a) = app
            .post(
                "/api/incidents",
                &format!("race-a-{round}"),
                call(60.1 + round as f64 * 0.01, 24.9, "medical"),
            )
            .await;
        let (_, b) = app
            .post(
                "/api/incidents",
                &format!("race-b-{round}"),
                call(60.1 + round as f64 * 0.01, 24.95, "assault"),
            )
            .await;
        let a = a["incident_id"].as_str().unwrap().to_owned();
        let b = b["incident_id"].as_str().unwrap().to_owned();
        let body = json!({"unit_id": unit_id});
        let (pa, pb) = (
            format!("/api/incidents/{a}/tasks"),
            format!("/api/incidents/{b}/tasks"),
        );
        let (ka, kb) = (
            format!("race-assign-a-{round}"),
            format!("race-assign-b-{round}"),
        );
        let (ra, rb) = tokio::join!(
            app.post(&pa, &ka, body.clone()),
            app.post(&pb, &kb, body.clone()),
        );
        let (winner, loser) = match (ra.0, rb.0) {
            (201, 409) => ((a, ra.1), rb.1),
            (409, 201) => ((b, rb.1), ra.1),
            other => panic!("expected one 201 and one 409, got {other:?}: {ra:?} {rb:?}"),
        };
        assert_eq!(loser["error"]["code"], "unit_busy");
        assert_eq!(
            loser["error"]["details"]["incident"],
            winner.0.as_str(),
            "{loser}"
        );
        assert_eq!(loser["error"]["details"]["task"], winner.1["task_id"]);
        // Free the unit for the next round.
        let task = winner.1["task_id"].as_str().unwrap();
        let (status, _) = app
            .post(
                &format!("/api/units/{unit_id}/tasks/{task}/complete"),
                &format!("race-done-{round}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
    }
    app.stop().await;
}

#[tokio::test]
async fn a_sensor_alarm_is_one_incident_until_it_clears() {
    let app = spawn_app().await;
    let (status, s) = app
        .post("/api/sensors", "sensor-reg-1", json!({
            "kind": "water_level", "location": {"lat": 60.16, "lon": 24.95},
            "thresholds": [{"metric": "level_cm", "crossing": "above", "raise_at": 100.0, "clear_at": 80.0,
                            "incident_type": "flooding", "priority": "P2"}],
        }))
        .await;
    assert_eq!(status, 201, "{s}");
    let sensor = s["sensor_id"].as_str().unwrap().to_owned();
    let mut incidents = Vec::new();
    let mut last = Value::Null;
    for (i, value) in [50.0, 120.0, 130.0, 90.0, 125.0, 70.0]
        .into_iter()
        .enumerate()
    {
        let (status, r) = app
            .post(
                &format!("/api/sensors/{sensor}/readings"),
                &format!("reading-{i:04}"),
                json!({"metric": "level_cm", "value": value}),
            )
            .await;
        assert_eq!(status, 200, "{r}");
        if let Some(id) = r["alarm"]["incident_id"].as_str() {
            incidents.push((r["alarm"].get("raised").is_some(), id.to_owned()));
        }
        if !r["position"].is_null() {
            last = r["position"].clone();
        }
    }
    assert_eq!(incidents.len(), 2, "one raise and one clear: {incidents:?}");
    assert!(incidents[0].0 && !incidents[1].0);
    assert_eq!(incidents[0].1, incidents[1].1);
    let board = app.view("/api/incidents", &last).await;
    let rows = board["incidents"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{board}");
    assert_eq!(rows[0]["source"], "sensor");
    assert_eq!(rows[0]["notes"], 1, "the clearing is recorded");
    app.stop().await;
}

#[tokio::test]
async fn geojson_layers_put_longitude_first_and_filter_by_bbox() {
    let app = spawn_app().await;
    app.post(
        "/api/incidents",
        "geo-call-1",
        call(60.17, 24.94, "medical"),
    )
    .await;
    let (_, far) = app
        .post("/api/incidents", "geo-call-2", call(61.5, 23.8, "medical"))
        .await;
    let (_, u) = app.post("/api/units", "geo-unit-1", unit("G1")).await;
    let position = json!(
        far["position"]
            .as_u64()
            .max(u["position"].as_u64())
            .unwrap()
    );
    let all = app.view("/api/geo/incidents", &position).await;
    assert_eq!(all["type"], "FeatureCollection");
    assert_eq!(all["features"].as_array().unwrap().len(), 2);
    let some = app
        .view("/api/geo/incidents?bbox=24.9,60.1,25.0,60.2", &position)
        .await;
    let features = some["features"].as_array().unwrap();
    assert_eq!(features.len(), 1);
    assert_eq!(
        features[0]["geometry"]["coordinates"],
        json!([24.94, 60.17])
    );
    let units = app
        .view("/api/geo/units?bbox=24.9,60.1,25.0,60.2", &position)
        .await;
    assert_eq!(units["features"].as_array().unwrap().len(), 1);
    let areas = app.view("/api/areas", &position).await;
    let total: u64 = areas["areas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["open_incidents"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 2);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_says_what_is_wrong() {
    let app = spawn_app().await;
    let (_, inc) = app
        .post(
            "/api/incidents",
            "bad-call-1",
            call(60.17, 24.94, "medical"),
        )
        .await;
    let incident = inc["incident_id"].as_str().unwrap().to_owned();
    let (_, u) = app.post("/api/units", "bad-unit-1", unit("B1")).await;
    let unit_id = u["unit_id"].as_str().unwrap().to_owned();
    let unknown = "0190f0f0-0000-7000-8000-000000000000";
    let big = "x".repeat(70 * 1024);

    struct Case {
        why: &'static str,
        method: &'static str,
        path: String,
        token: Option<String>,
        key: Option<&'static str>,
        body: Option<String>,
        status: u16,
    }
    let post = |why, path: String, body: &str, status| Case {
        why,
        method: "POST",
        path,
        token: Some(token(Role::Operator)),
        key: Some("bad-input-key"),
        body: Some(body.to_owned()),
        status,
    };
    let cases = vec![
        post(
            "malformed JSON",
            "/api/incidents".into(),
            "{\"location\": ",
            400,
        ),
        post(
            "NaN is not JSON",
            "/api/incidents".into(),
            r#"{"location": {"lat": NaN, "lon": 1}, "incident_type": "medical", "priority": "P1"}"#,
            400,
        ),
        post(
            "infinite latitude",
            "/api/incidents".into(),
            r#"{"location": {"lat": 1e999, "lon": 1}, "incident_type": "medical", "priority": "P1"}"#,
            400,
        ),
        post(
            "latitude out of range",
            "/api/incidents".into(),
            r#"{"location": {"lat": 91, "lon": 1}, "incident_type": "medical", "priority": "P1"}"#,
            422,
        ),
        post(
            "longitude out of range",
            "/api/incidents".into(),
            r#"{"location": {"lat": 1, "lon": -180.5}, "incident_type": "medical", "priority": "P1"}"#,
            422,
        ),
        post(
            "coordinates as a string",
            "/api/incidents".into(),
            r#"{"location": {"lat": "60", "lon": 1}, "incident_type": "medical", "priority": "P1"}"#,
            422,
        ),
        post(
            "coordinates as a bare pair",
            "/api/incidents".into(),
            r#"{"location": [24.9, 60.1], "incident_type": "medical", "priority": "P1"}"#,
            422,
        ),
        post(
            "unknown incident type",
            "/api/incidents".into(),
            r#"{"location": {"lat": 1, "lon": 1}, "incident_type": "alien_landing", "priority": "P1"}"#,
            422,
        ),
        post(
            "priority out of range",
            "/api/incidents".into(),
            r#"{"location": {"lat": 1, "lon": 1}, "incident_type": "medical", "priority": "P9"}"#,
            422,
        ),
        post(
            "phone number as a number",
            "/api/incidents".into(),
            r#"{"location": {"lat": 1, "lon": 1}, "incident_type": "medical", "priority": "P1", "caller": {"call_back": 358401234567}}"#,
            422,
        ),
        post(
            "missing field",
            "/api/incidents".into(),
            r#"{"incident_type": "medical", "priority": "P1"}"#,
            422,
        ),
        post(
            "body over the limit",
            "/api/incidents".into(),
            &format!("{{\"pad\": \"{big}\"}}"),
            413,
        ),
        post(
            "unknown incident",
            format!("/api/incidents/{unknown}/tasks"),
            &format!("{{\"unit_id\": \"{unit_id}\"}}"),
            404,
        ),
        post(
            "malformed incident id",
            "/api/incidents/not-a-uuid/close".into(),
            r#"{"disposition": "resolved"}"#,
            404,
        ),
        post(
            "unknown unit",
            format!("/api/incidents/{incident}/tasks"),
            &format!("{{\"unit_id\": \"{unknown}\"}}"),
            404,
        ),
        post(
            "invalid transition",
            format!("/api/units/{unit_id}/status"),
            r#"{"status": "on_scene"}"#,
            409,
        ),
        post(
            "unknown status",
            format!("/api/units/{unit_id}/status"),
            r#"{"status": "napping"}"#,
            422,
        ),
        post(
            "NaN reading as a string",
            "/api/sensors/0190f0f0-0000-7000-8000-000000000001/readings".into(),
            r#"{"metric": "t", "value": "NaN"}"#,
            422,
        ),
        post(
            "reading for an unknown sensor",
            "/api/sensors/0190f0f0-0000-7000-8000-000000000001/readings".into(),
            r#"{"metric": "t", "value": 1.0}"#,
            404,
        ),
        post(
            "heading out of range",
            format!("/api/units/{unit_id}/position"),
            r#"{"location": {"lat": 1, "lon": 1}, "heading_deg": 400}"#,
            422,
        ),
        post(
            "unknown task",
            format!("/api/units/{unit_id}/tasks/{unknown}/acknowledge"),
            "{}",
            409,
        ),
        Case {
            why: "no token",
            token: None,
            ..post("", "/api/incidents".into(), "{}", 401)
        },
        Case {
            why: "unknown token",
            token: Some("not-a-token-of-anyone-here".into()),
            ..post("", "/api/incidents".into(), "{}", 401)
        },
        Case {
            why: "planner may not write",
            token: Some(token(Role::Planner)),
            ..post("", "/api/incidents".into(), "{}", 403)
        },
        Case {
            why: "responder may not take calls",
            token: Some(token(Role::Responder)),
            ..post("", "/api/incidents".into(), "{}", 403)
        },
        Case {
            why: "no idempotency key",
            key: None,
            ..post(
                "",
                "/api/incidents".into(),
                &call(1.0, 1.0, "medical").to_string(),
                400,
            )
        },
        Case {
            why: "short idempotency key",
            key: Some("abc"),
            ..post(
                "",
                "/api/incidents".into(),
                &call(1.0, 1.0, "medical").to_string(),
                400,
            )
        },
        Case {
            why: "unknown route",
            method: "GET",
            path: "/api/nothing".into(),
            body: None,
            ..post("", String::new(), "", 404)
        },
        Case {
            why: "unknown unit on the board",
            method: "GET",
            path: format!("/api/units/{unknown}"),
            body: None,
            ..post("", String::new(), "", 404)
        },
        Case {
            why: "bad bbox",
            method: "GET",
            path: "/api/geo/units?bbox=1,2,3".into(),
            body: None,
            ..post("", String::new(), "", 400)
        },
        Case {
            why: "reading without a token",
            token: None,
            method: "GET",
            path: "/api/incidents".into(),
            body: None,
            ..post("", String::new(), "", 401)
        },
    ];
    for case in cases {
        let mut req = match case.method {
            "GET" => app.client.get(format!("{}{}", app.base, case.path)),
            _ => app.client.post(format!("{}{}", app.base, case.path)),
        };
        if let Some(t) = &case.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = case.key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = &case.body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.why);
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.why));
        assert!(body["error"]["code"].is_string(), "{}: {text}", case.why);
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{}",
            case.why
        );
        assert!(
            !text.contains("358401234567") && !text.contains("Meik"),
            "{}: personal data in {text}",
            case.why
        );
    }
    app.stop().await;
}

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("no message before the deadline")
            .expect("the feed ended")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn the_wall_display_gets_a_snapshot_then_deltas_and_resumes_where_it_left() {
    let app = spawn_app().await;
    let (_, first) = app
        .post(
            "/api/incidents",
            "ws-call-01",
            call(60.17, 24.94, "medical"),
        )
        .await;
    app.view("/api/incidents", &first["position"]).await;
    // A browser's way in: a one-time ticket, then the socket.
    let ticket = || async {
        let r = app
            .client
            .post(format!("{}/api/feed/ticket", app.base))
            .bearer_auth(token(Role::Planner))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        body["ticket"].as_str().unwrap().to_owned()
    };
    let url = format!(
        "ws://127.0.0.1:{}/api/feed?ticket={}",
        app.port,
        ticket().await
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let snapshot = next_json(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot["position"], first["position"]);

    let (_, second) = app
        .post(
            "/api/incidents",
            "ws-call-02",
            call(60.18, 24.95, "assault"),
        )
        .await;
    let delta = next_json(&mut ws).await;
    assert_eq!(delta["type"], "delta");
    assert_eq!(delta["incident"]["id"], second["incident_id"]);
    let seen = delta["position"].as_u64().unwrap();
    assert!(seen <= second["position"].as_u64().unwrap());
    ws.close(None).await.unwrap();

    // While the display is away, more happens.
    let (_, third) = app
        .post(
            "/api/incidents",
            "ws-call-03",
            call(60.19, 24.96, "burglary"),
        )
        .await;
    let after = second["position"].as_u64().unwrap();
    let again = format!("{url}&after={after}");
    assert!(
        tokio_tungstenite::connect_async(&again).await.is_err(),
        "a ticket was taken twice"
    );
    let url = format!(
        "ws://127.0.0.1:{}/api/feed?ticket={}&after={after}",
        app.port,
        ticket().await
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let resume = next_json(&mut ws).await;
    assert_eq!(resume["type"], "resume", "{resume}");
    let missed = next_json(&mut ws).await;
    assert_eq!(missed["type"], "delta");
    assert_eq!(missed["incident"]["id"], third["incident_id"]);
    assert!(missed["position"].as_u64().unwrap() > after);

    // Without a ticket this server signed, no feed.
    let bad = format!(
        "ws://127.0.0.1:{}/api/feed?ticket=ft1.e30.bm90LWEtc2lnbmF0dXJl",
        app.port
    );
    assert!(tokio_tungstenite::connect_async(&bad).await.is_err());
    app.stop().await;
}

#[tokio::test]
async fn views_restart_from_their_checkpoint() {
    let app = spawn_app().await;
    let (_, a) = app
        .post(
            "/api/incidents",
            "restart-01",
            call(60.17, 24.94, "medical"),
        )
        .await;
    app.view("/api/incidents", &a["position"]).await;
    let dir = app.stop().await;
    assert!(dir.path().join("views.redb").exists());
    let app = spawn_in(dir).await;
    // The views came from the checkpoint, not from folding the log again: nothing was
    // applied to get ready.
    let ready = app.ready().await;
    assert_eq!(
        ready["views_at_start"],
        json!({"loaded_checkpoint": a["position"], "events_applied": 0}),
        "{ready}"
    );
    let (status, board) = app.get("/api/incidents").await;
    assert_eq!(status, 200);
    assert_eq!(
        board["incidents"].as_array().unwrap().len(),
        1,
        "loaded from the checkpoint"
    );
    assert_eq!(board["position"], a["position"]);
    let (_, b) = app
        .post(
            "/api/incidents",
            "restart-02",
            call(60.18, 24.95, "medical"),
        )
        .await;
    let board = app.view("/api/incidents", &b["position"]).await;
    assert_eq!(board["incidents"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_from_the_log_gives_the_views_the_live_projector_saved() {
    let app = spawn_app().await;
    let (_, inc) = app
        .post(
            "/api/incidents",
            "rebuild-call-1",
            call(60.17, 24.94, "medical"),
        )
        .await;
    let incident = inc["incident_id"].as_str().unwrap().to_owned();
    let (_, u) = app.post("/api/units", "rebuild-unit-1", unit("RB1")).await;
    let unit_id = u["unit_id"].as_str().unwrap().to_owned();
    let (_, t) = app
        .post(
            &format!("/api/incidents/{incident}/tasks"),
            "rebuild-assign",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert!(t["task_id"].is_string(), "{t}");
    app.post(
        "/api/incidents",
        "rebuild-call-2",
        call(60.18, 24.95, "assault"),
    )
    .await;
    let dir = app.stop().await;

    let db = muster_server::views::ViewDb::open(dir.path()).unwrap();
    let live = db.load().unwrap().expect("views saved at shutdown");
    drop(db);
    let report = muster_server::views::rebuild_views(dir.path(), "bundled")
        .await
        .unwrap();
    assert_eq!(report.checkpoint, live.last);
    let db = muster_server::views::ViewDb::open(dir.path()).unwrap();
    let rebuilt = db.load().unwrap().unwrap();
    assert_eq!(rebuilt, live);
    assert_eq!(rebuilt.incidents.len(), 2);
}

#[tokio::test]
async fn views_saved_for_another_log_are_refolded_from_this_one() {
    let app = spawn_app().await;
    for i in 0..3 {
        let (status, _) = app
            .post(
                "/api/incidents",
                &format!("other-log-{i}"),
                call(60.17, 24.94, "medical"),
            )
            .await;
        assert_eq!(status, 201);
    }
    let other = app.stop().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        other.path().join("views.redb"),
        dir.path().join("views.redb"),
    )
    .unwrap();
    let app = spawn_in(dir).await;
    let (_, a) = app
        .post(
            "/api/incidents",
            "this-log-1",
            call(60.18, 24.95, "assault"),
        )
        .await;
    let board = app.view("/api/incidents", &a["position"]).await;
    let rows = board["incidents"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{board}");
    assert_eq!(rows[0]["id"], a["incident_id"]);
    let dir = app.stop().await;
    let saved = muster_server::views::ViewDb::open(dir.path())
        .unwrap()
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(
        saved.incidents.len(),
        1,
        "stale rows were left in the saved views"
    );
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_requests_in_flight() {
    let app = spawn_app().await;
    let (_, a) = app
        .post(
            "/api/incidents",
            "drain-call-1",
            call(60.17, 24.94, "medical"),
        )
        .await;
    let waiting_before = app.state.views.waiting();
    // A view read waiting for a position that will not come while the server stops: it is in
    // flight when the stop begins and must still get its answer.
    let waiting = {
        let client = app.client.clone();
        let url = format!(
            "{}/api/incidents?min_position={}",
            app.base,
            a["position"].as_u64().unwrap() + 1_000
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token(Role::Planner))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    // Stop only once the request is being handled: its handler waits on the views.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while app.state.views.waiting() <= waiting_before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never reached its handler"
        );
        tokio::task::yield_now().await;
    }
    let dir = app.stop().await;
    assert_eq!(waiting.await.unwrap().unwrap(), 200);
    drop(dir);
}

#[tokio::test]
async fn a_call_may_give_an_address_in_the_city_instead_of_coordinates() {
    let app = spawn_app().await;
    // Helsinki's bundled city: the answer names the nearest address of a point.
    let (status, first) = app
        .post(
            "/api/incidents",
            "address-call-1",
            call(60.1699, 24.9384, "medical"),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let address = first["address"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no address near central Helsinki: {first}"))
        .to_owned();
    // The same address as the only location of a new call lands next to it.
    let body = json!({"address": address, "incident_type": "medical", "priority": "P3"});
    let (status, second) = app.post("/api/incidents", "address-call-2", body).await;
    assert_eq!(status, 201, "{second}");
    let (lat, lon) = (
        second["location"]["lat"].as_f64().unwrap(),
        second["location"]["lon"].as_f64().unwrap(),
    );
    assert!(
        (lat - 60.1699).abs() < 0.002 && (lon - 24.9384).abs() < 0.004,
        "{second}"
    );
    assert_eq!(second["duplicates"][0]["incident"], first["incident_id"]);

    for (why, body) in [
        (
            "an unknown street",
            json!({"address": "Nosuchstreetintie 1", "incident_type": "medical", "priority": "P3"}),
        ),
        (
            "neither location nor address",
            json!({"incident_type": "medical", "priority": "P3"}),
        ),
    ] {
        let (status, answer) = app.post("/api/incidents", "address-call-bad", body).await;
        assert_eq!(status, 422, "{why}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid", "{why}");
    }
    app.stop().await;
}
