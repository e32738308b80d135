//! `muster serve` runs the mobile gateway beside the HTTP API on the same store: a device
//! with a token for its unit receives the task an operator assigns, and a token signed with
//! another secret is refused.

mod common;

use common::{next_matching, spawn_with, spawn_with_gateway};
use muster_mobile::client::{Client, ClientConfig, ClientEvent};
use muster_server::config::TokenSecret;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_receives_the_task_an_operator_assigns() {
    let app = spawn_with_gateway().await;
    let gateway = app
        .gateway
        .clone()
        .expect("a token secret starts the gateway");
    let (status, unit) = app
        .post(
            "/api/units",
            "gw-unit-0001",
            json!({
                "kind": "als_ambulance", "call_sign": "A1", "agency": "ems", "home_station": "s-1",
                "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = muster_core::UnitId::parse(unit["unit_id"].as_str().unwrap()).unwrap();
    let token = gateway
        .tokens
        .issue(unit_id, chrono::Utc::now() + chrono::Duration::hours(1));
    let url = format!("ws://127.0.0.1:{}", gateway.port);
    let mut device = Client::start(ClientConfig {
        unit: Some(unit_id),
        ..ClientConfig::new(url.clone(), token)
    });
    next_matching(&mut device, "a connection", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;

    let (status, incident) = app
        .post("/api/incidents", "gw-call-0001", json!({
            "location": {"lat": 60.168, "lon": 24.945}, "incident_type": "medical", "priority": "P2",
        }))
        .await;
    assert_eq!(status, 201, "{incident}");
    let incident_id = incident["incident_id"].as_str().unwrap().to_owned();
    let (status, assigned) = app
        .post(
            &format!("/api/incidents/{incident_id}/tasks"),
            "gw-assign-0001",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert_eq!(status, 201, "{assigned}");
    let task = next_matching(&mut device, "the task", |e| {
        matches!(e, ClientEvent::Task { .. })
    })
    .await;
    let ClientEvent::Task { task, .. } = task else {
        unreachable!()
    };
    assert_eq!(task.incident.to_string(), incident_id);

    let foreign = muster_mobile::token::HmacTokens::new(
        b"another-secret-of-more-than-thirty-two-bytes".to_vec(),
    )
    .unwrap()
    .issue(unit_id, chrono::Utc::now() + chrono::Duration::hours(1));
    let mut intruder = Client::start(ClientConfig {
        unit: Some(unit_id),
        ..ClientConfig::new(url, foreign)
    });
    let refused = next_matching(&mut intruder, "a refusal", |e| {
        matches!(e, ClientEvent::Fatal { .. })
    })
    .await;
    assert!(
        matches!(refused, ClientEvent::Fatal { ref reason } if !reason.is_empty()),
        "{refused:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_secret_no_gateway_runs_and_a_short_secret_is_refused() {
    let app = spawn_with(|_| {}).await;
    assert!(app.gateway.is_none());
    app.stop().await;
    let config = muster_server::Config {
        token_secret: Some(TokenSecret::new("short")),
        ..Default::default()
    };
    let err = config.check().unwrap_err().to_string();
    assert!(err.contains("token_secret"), "{err}");
    assert!(
        !format!("{config:?}").contains("short"),
        "the secret shows in Debug"
    );
}
