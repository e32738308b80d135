//! Bad input against the real server: one table, each row saying why the request is bad and
//! the exact status and error code it must get; then proof that none of it was stored.

mod common;

use common::{App, spawn, token};
use muster_server::auth::Role;
use serde_json::{Value, json};

/// One request of the table.
struct Row {
    why: &'static str,
    method: &'static str,
    path: String,
    key: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// Text the answer must not contain (a submitted value that may be personal data).
    never_echo: Option<&'static str>,
}

fn row(
    why: &'static str,
    method: &'static str,
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Row {
    Row {
        why,
        method,
        path: path.into(),
        key: None,
        content_type: Some("application/json"),
        body: body.into(),
        status,
        code,
        never_echo: None,
    }
}

async fn send(app: &App, r: &Row) -> (u16, Option<String>, String) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut req = client
        .request(method, format!("{}{}", app.base, r.path))
        .bearer_auth(token(Role::Operator))
        .body(r.body.clone());
    if let Some(key) = &r.key {
        req = req.header("Idempotency-Key", key);
    }
    if let Some(ct) = r.content_type {
        req = req.header("content-type", ct);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, allow, response.text().await.unwrap())
}

async fn created(app: &App, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = app.post(path, key, body).await;
    assert!(status == 200 || status == 201, "{path}: {status} {answer}");
    answer
}

fn id(answer: &Value, field: &str) -> String {
    answer[field].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_and_code_and_stores_nothing() {
    let app = spawn().await;
    let here = json!({"lat": 60.1699, "lon": 24.9384});
    let engine = |call_sign: &str| {
        json!({"kind": "engine", "call_sign": call_sign, "agency": "fire",
               "home_station": "s1", "location": here})
    };
    let busy = id(
        &created(&app, "/api/units", "unit-0001", engine("E1")).await,
        "unit_id",
    );
    let free = id(
        &created(&app, "/api/units", "unit-0002", engine("E2")).await,
        "unit_id",
    );
    let first_call = json!({"location": here, "incident_type": "structure_fire", "priority": "P1"});
    let call = |key: &str, body: &Value| Row {
        key: Some(key.to_owned()),
        ..row("", "POST", "/api/incidents", body.to_string(), 201, "")
    };
    let (status, _, first_bytes) = send(&app, &call("call-0001", &first_call)).await;
    assert_eq!(status, 201, "{first_bytes}");
    let open = id(&serde_json::from_str(&first_bytes).unwrap(), "incident_id");
    let closed = id(
        &created(
            &app,
            "/api/incidents",
            "call-0002",
            json!({"location": here, "incident_type": "medical", "priority": "P3"}),
        )
        .await,
        "incident_id",
    );
    created(
        &app,
        &format!("/api/incidents/{closed}/close"),
        "close-0002",
        json!({"disposition": "false_alarm"}),
    )
    .await;
    let assigned = created(
        &app,
        &format!("/api/incidents/{open}/tasks"),
        "assign-0001",
        json!({"unit_id": busy}),
    )
    .await;
    let task = id(&assigned, "task_id");
    let last_setup = assigned["position"].as_u64().unwrap();

    let nowhere = "01930000-0000-7000-8000-00000000dead";
    let ack = format!("/api/units/{busy}/tasks/{task}/acknowledge");
    let token_path = format!("/api/units/{busy}/device-token");
    let mut rows = vec![
        row(
            "a unit dispatched to an incident that does not exist",
            "POST",
            format!("/api/incidents/{nowhere}/dispatch"),
            json!({"units": [free]}).to_string(),
            404,
            "not_found",
        ),
        row(
            "a unit dispatched to a closed incident",
            "POST",
            format!("/api/incidents/{closed}/dispatch"),
            json!({"units": [free]}).to_string(),
            409,
            "ended",
        ),
        row(
            "a unit assigned to a closed incident",
            "POST",
            format!("/api/incidents/{closed}/tasks"),
            json!({"unit_id": free}).to_string(),
            409,
            "ended",
        ),
        row(
            "a unit assigned to an incident that does not exist",
            "POST",
            format!("/api/incidents/{nowhere}/tasks"),
            json!({"unit_id": free}).to_string(),
            404,
            "not_found",
        ),
        Row {
            key: Some("call-0001".into()),
            ..row(
                "a used idempotency key with another body",
                "POST",
                "/api/incidents",
                json!({"location": {"lat": 60.17, "lon": 24.95}, "incident_type": "medical", "priority": "P2"})
                    .to_string(),
                422,
                "idempotency_key_reused",
            )
        },
        row(
            "a position stamped far in the future",
            "POST",
            format!("/api/units/{free}/position"),
            json!({"location": here, "at": "9999-12-31T23:59:59Z"}).to_string(),
            422,
            "invalid",
        ),
        row(
            "a position stamped in 1970",
            "POST",
            format!("/api/units/{free}/position"),
            json!({"location": here, "at": "1970-01-01T00:00:00Z"}).to_string(),
            422,
            "invalid",
        ),
        Row {
            never_echo: Some("91.123456"),
            ..row(
                "a position north of the pole, never repeated back",
                "POST",
                format!("/api/units/{free}/position"),
                json!({"location": {"lat": 91.123456, "lon": 24.9}}).to_string(),
                422,
                "invalid",
            )
        },
        row(
            "a road reopening with unknown fields",
            "POST",
            format!("/api/roads/closures/{nowhere}/reopen"),
            json!({"why": "done"}).to_string(),
            422,
            "invalid",
        ),
        row(
            "a road closure that does not exist reopened",
            "POST",
            format!("/api/roads/closures/{nowhere}/reopen"),
            "{}",
            404,
            "not_found",
        ),
        row(
            "an acknowledgement with truncated JSON",
            "POST",
            ack.clone(),
            "{\"a\":",
            400,
            "malformed_json",
        ),
        row(
            "an acknowledgement with unknown fields",
            "POST",
            ack.clone(),
            json!({"x": 1}).to_string(),
            422,
            "invalid",
        ),
        Row {
            content_type: Some("text/plain"),
            ..row(
                "an acknowledgement sent as text",
                "POST",
                ack.clone(),
                "{}",
                415,
                "unsupported_media_type",
            )
        },
        row(
            "an acknowledgement of 2 MB",
            "POST",
            ack.clone(),
            format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)),
            413,
            "body_too_large",
        ),
        row(
            "a device token for a negative number of hours",
            "POST",
            token_path.clone(),
            json!({"valid_hours": -1}).to_string(),
            422,
            "invalid",
        ),
        row(
            "a device token for hours as a string",
            "POST",
            token_path.clone(),
            json!({"valid_hours": "12"}).to_string(),
            422,
            "invalid",
        ),
        row(
            "a device token for a fraction of an hour",
            "POST",
            token_path.clone(),
            json!({"valid_hours": 1.5}).to_string(),
            422,
            "invalid",
        ),
        row(
            "a device token request that is an array",
            "POST",
            token_path.clone(),
            "[]",
            422,
            "invalid",
        ),
        row(
            "a device token request that is not JSON",
            "POST",
            token_path.clone(),
            "valid_hours=12",
            400,
            "malformed_json",
        ),
        Row {
            never_echo: Some("Erika"),
            ..row(
                "caller details as a string where an object belongs",
                "POST",
                "/api/incidents",
                json!({"location": here, "incident_type": "medical", "priority": "P2",
                       "caller": "Erika Mustermann"})
                .to_string(),
                422,
                "invalid",
            )
        },
        Row {
            never_echo: Some("Mustermann"),
            ..row(
                "an unknown field beside caller details",
                "POST",
                "/api/incidents",
                json!({"location": here, "incident_type": "medical", "priority": "P2",
                       "caller": {"name": "Erika Mustermann", "shoe_size": 42}})
                .to_string(),
                422,
                "invalid",
            )
        },
        Row {
            key: Some(String::new()),
            ..row(
                "a command without an Idempotency-Key",
                "POST",
                format!("/api/incidents/{open}/notes"),
                json!({"text": "smoke seen"}).to_string(),
                400,
                "missing_idempotency_key",
            )
        },
        row(
            "a time-travel position that is not a number",
            "GET",
            "/api/wall/at?position=abc",
            "",
            400,
            "invalid_query",
        ),
        row(
            "a wrong method on a known route",
            "DELETE",
            "/api/incidents",
            "",
            405,
            "method_not_allowed",
        ),
        row(
            "a malformed incident id",
            "GET",
            "/api/incidents/not-a-uuid",
            "",
            404,
            "not_found",
        ),
        row(
            "a malformed incident id on a dispatch",
            "POST",
            "/api/incidents/not-a-uuid/dispatch",
            json!({"units": [free]}).to_string(),
            404,
            "not_found",
        ),
        row("a route that does not exist", "GET", "/api/nothing", "", 404, "not_found"),
    ];
    for (i, r) in rows.iter_mut().enumerate() {
        // Each row its own key, unless the row is about the key (an empty one is sent as none).
        match &r.key {
            None => r.key = Some(format!("bad-input-{i:04}")),
            Some(k) if k.is_empty() => r.key = None,
            Some(_) => {}
        }
    }
    for r in &rows {
        let (status, allow, text) = send(&app, r).await;
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: the answer is not JSON: {text}", r.why));
        assert_eq!(status, r.status, "{}: {text}", r.why);
        assert_eq!(body["error"]["code"], r.code, "{}: {text}", r.why);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: no message: {text}",
            r.why
        );
        if let Some(secret) = r.never_echo {
            assert!(
                !text.contains(secret),
                "{}: the answer repeats the value: {text}",
                r.why
            );
        }
        if r.status == 405 {
            assert_eq!(allow.as_deref(), Some("GET, POST"), "{}", r.why);
        }
    }

    // Nothing of it was stored: the next event goes right after the set-up's last one (the
    // answer's position is its append's last event, the idempotency record).
    let marker = created(
        &app,
        &format!("/api/incidents/{open}/notes"),
        "marker-0001",
        json!({"text": "after the table"}),
    )
    .await;
    let first_marker_event = marker["events"][0]["position"].as_u64().unwrap();
    assert_eq!(
        first_marker_event,
        last_setup + 1,
        "refused requests stored events"
    );
    // And the first call's key still answers the first call, byte for byte.
    let (status, _, again) = send(&app, &call("call-0001", &first_call)).await;
    assert_eq!(status, 201);
    assert_eq!(again, first_bytes, "a replay answers the stored bytes");
    app.stop().await;
}
