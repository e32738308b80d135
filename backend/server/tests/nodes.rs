//! Several `muster` nodes on one PostgreSQL database: any node answers, every node's views
//! follow the log, idempotency and the assignment race hold across nodes.
//!
//! Needs `MUSTER_TEST_POSTGRES` (a `postgres://` URL; `bash ops/test.sh` starts PostgreSQL and
//! sets it); each test makes a database of its own there.

mod common;

use std::time::Duration;

use common::{App, DEADLINE, next_matching, spawn_with};
use serde_json::{Value, json};

/// A fresh database on the test server, as a connection string; `None` when there is none.
async fn fresh_database(what: &str) -> Option<String> {
    let url = muster_store::postgres::test_database_url(what)?;
    assert!(
        muster_store::postgres::is_postgres_url(&url),
        "MUSTER_TEST_POSTGRES must be a postgres:// URL, not {url}"
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = format!("muster_nodes_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = url.split('?').next().unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    Some(format!("{server}/{name}"))
}

async fn node(store: &str) -> App {
    let store = store.to_owned();
    spawn_with(move |c| c.store = store).await
}

async fn wait_for(app: &App, path: &str) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (status, body) = app.get(path).await;
            if status == 200 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path} never answered 200 on {}", app.base))
}

fn incident_body(i: usize) -> Value {
    json!({
        "location": {"lat": 60.17 + i as f64 * 0.0001, "lon": 24.94},
        "incident_type": "structure_fire",
        "priority": "P2",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_answers_and_every_node_sees_the_log() {
    let Some(db) = fresh_database("several nodes").await else {
        return;
    };
    let (a, b) = (node(&db).await, node(&db).await);

    let (status, created) = a
        .post("/api/incidents", "node-call-1", incident_body(0))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["incident_id"].as_str().unwrap().to_owned();
    // The other node's views follow the log.
    let seen = wait_for(&b, &format!("/api/incidents/{id}")).await;
    assert_eq!(seen["incident_type"], "structure_fire", "{seen}");

    // A retry through the other node gets the first answer, and writes nothing.
    let (status, again) = b
        .post("/api/incidents", "node-call-1", incident_body(0))
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["incident_id"], created["incident_id"]);
    // The same key with another body is refused on the other node too.
    let (status, reused) = b
        .post("/api/incidents", "node-call-1", incident_body(5))
        .await;
    assert_eq!(status, 422, "{reused}");
    let (_, list) = b.get("/api/incidents").await;
    let listed = list.as_array().map_or_else(
        || list["incidents"].as_array().map_or(0, Vec::len),
        Vec::len,
    );
    assert_eq!(listed, 1, "a retry wrote a second incident: {list}");

    a.stop().await;
    b.stop().await;
    // A new node with empty views folds the log from PostgreSQL.
    let c = node(&db).await;
    wait_for(&c, &format!("/api/incidents/{id}")).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_assignments_of_one_unit_through_three_nodes_have_one_winner() {
    let Some(db) = fresh_database("the assignment race across nodes").await else {
        return;
    };
    let nodes = [node(&db).await, node(&db).await, node(&db).await];
    let city = muster_server::areas::Areas::from_setting("bundled")
        .unwrap()
        .1
        .unwrap();
    let station = city
        .stations
        .iter()
        .find(|s| s.kind == muster_geodata::model::StationKind::Fire)
        .unwrap();
    let (status, unit) = nodes[0]
        .post(
            "/api/units",
            "race-unit",
            json!({
                "kind": "engine", "call_sign": "E1", "agency": "city-fire",
                "home_station": muster_server::dispatcher::station_code(&station.id),
                "capabilities": ["pump"],
                "location": {"lat": station.location.lat_deg(), "lon": station.location.lon_deg()},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = unit["unit_id"].as_str().unwrap().to_owned();
    let mut incidents = Vec::new();
    for i in 0..64 {
        let (status, body) = nodes[i % 3]
            .post(
                "/api/incidents",
                &format!("race-call-{i}"),
                incident_body(i),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        incidents.push(body["incident_id"].as_str().unwrap().to_owned());
    }
    for n in &nodes {
        wait_for(n, &format!("/api/units/{unit_id}")).await;
        wait_for(n, &format!("/api/incidents/{}", incidents[63])).await;
    }

    let nodes = std::sync::Arc::new(nodes);
    let mut tries = Vec::new();
    for (i, incident) in incidents.iter().enumerate() {
        let (nodes, incident, unit_id) = (nodes.clone(), incident.clone(), unit_id.clone());
        tries.push(tokio::spawn(async move {
            nodes[i % 3]
                .post(
                    &format!("/api/incidents/{incident}/dispatch"),
                    &format!("race-send-{i}"),
                    json!({"units": [unit_id]}),
                )
                .await
        }));
    }
    let mut won = Vec::new();
    for (i, t) in tries.into_iter().enumerate() {
        let (status, body) = t.await.unwrap();
        match status {
            201 => won.push(i),
            409 => {}
            other => panic!("dispatch {i} answered {other}: {body}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");

    // Every node's views agree: the unit is on the winner's incident only.
    let winner = &incidents[won[0]];
    for n in nodes.iter() {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let (_, u) = n.get(&format!("/api/units/{unit_id}")).await;
                if u.to_string().contains(winner.as_str()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} never showed the unit on {winner}", n.base));
    }
    let nodes = std::sync::Arc::try_unwrap(nodes).ok().unwrap();
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_follows_tasks_from_any_node_and_moves_to_another_when_its_node_goes() {
    use muster_mobile::client::{Client, ClientConfig, ClientEvent};
    let Some(db) = fresh_database("a device across nodes").await else {
        return;
    };
    let with_gateway = |c: &mut muster_server::Config, store: &str| {
        c.store = store.to_owned();
        c.token_secret = Some(muster_server::config::TokenSecret::new(
            common::GATEWAY_SECRET,
        ));
        c.gateway_bind = "127.0.0.1:0".into();
    };
    let a = spawn_with(|c| with_gateway(c, &db)).await;
    let b = spawn_with(|c| with_gateway(c, &db)).await;
    let (status, unit) = b
        .post(
            "/api/units",
            "device-unit",
            json!({
                "kind": "als_ambulance", "call_sign": "A1", "agency": "ems", "home_station": "s-1",
                "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = muster_core::UnitId::parse(unit["unit_id"].as_str().unwrap()).unwrap();
    let gateway_a = a.gateway.clone().unwrap();
    let token = gateway_a
        .tokens
        .issue(unit_id, chrono::Utc::now() + chrono::Duration::hours(1));
    let mut device = Client::start(ClientConfig {
        unit: Some(unit_id),
        ..ClientConfig::new(format!("ws://127.0.0.1:{}", gateway_a.port), token.clone())
    });
    next_matching(&mut device, "a connection to node A", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;

    // Assigned through node B, delivered by node A's gateway.
    let assign = |incident: String, key: &'static str| {
        let b = &b;
        async move {
            let (status, body) = b
                .post(
                    &format!("/api/incidents/{incident}/tasks"),
                    key,
                    json!({"unit_id": unit_id}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
    };
    let (_, first) = b
        .post("/api/incidents", "device-call-1", incident_body(1))
        .await;
    let first = first["incident_id"].as_str().unwrap().to_owned();
    assign(first.clone(), "device-send-1").await;
    let ClientEvent::Task { seq, task } = next_matching(&mut device, "the first task", |e| {
        matches!(e, ClientEvent::Task { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(task.incident.to_string(), first);
    let first_task = task.task;

    // Node A goes; the incident is closed and a second task assigned through B meanwhile.
    drop(device);
    a.stop().await;
    let (status, closed) = b
        .post(
            &format!("/api/incidents/{first}/close"),
            "device-close-1",
            json!({"disposition": "resolved"}),
        )
        .await;
    assert_eq!(status, 200, "{closed}");
    let (_, second) = b
        .post("/api/incidents", "device-call-2", incident_body(2))
        .await;
    let second = second["incident_id"].as_str().unwrap().to_owned();
    assign(second.clone(), "device-send-2").await;

    // The device reconnects to node B, resuming after what it processed.
    let gateway_b = b.gateway.clone().unwrap();
    let mut device = Client::start(ClientConfig {
        unit: Some(unit_id),
        resume_after: Some(seq),
        ..ClientConfig::new(format!("ws://127.0.0.1:{}", gateway_b.port), token)
    });
    let ClientEvent::Task { task, .. } = next_matching(&mut device, "the second task", |e| {
        matches!(e, ClientEvent::Task { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_ne!(task.task, first_task, "the first task was shown again");
    assert_eq!(task.incident.to_string(), second);
    // Nothing else comes as a new task.
    let again = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            match device.next().await {
                Some(ClientEvent::Task { task, .. }) => return task,
                Some(_) => {}
                None => std::future::pending::<()>().await,
            }
        }
    })
    .await;
    assert!(again.is_err(), "a task was shown twice: {again:?}");
    b.stop().await;
}

#[tokio::test]
async fn a_device_token_revoked_on_one_node_ends_its_session_on_another() {
    let Some(db) = fresh_database("revocation across nodes").await else {
        eprintln!("skipped: MUSTER_TEST_POSTGRES is not set");
        return;
    };
    let with_gateway = |c: &mut muster_server::Config, store: &str| {
        c.store = store.to_owned();
        c.token_secret = Some(muster_server::config::TokenSecret::new(
            common::GATEWAY_SECRET,
        ));
        c.gateway_bind = "127.0.0.1:0".into();
    };
    let a = spawn_with(|c| with_gateway(c, &db)).await;
    let b = spawn_with(|c| with_gateway(c, &db)).await;
    let unit = common::register_unit(&a, "revoke-node-unit", "A2").await;
    let (status, issued) = a
        .post(
            &format!("/api/units/{unit}/device-token"),
            "unused-key-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"].as_str().unwrap();
    let mut on_b = common::device_session(b.gateway.as_ref().unwrap().port, token, unit).await;
    let (status, body) = a
        .post(
            &format!("/api/units/{unit}/device-token/revoke"),
            "revoke-node-1",
            json!({"token_id": issued["token_id"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let close = common::closed(&mut on_b).await;
    assert_eq!(u16::from(close.code), 4003, "{close:?}");
    assert!(close.reason.contains("revoked"), "{close:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_token_created_on_one_node_works_on_another_until_it_is_revoked() {
    let Some(db) = fresh_database("API tokens across nodes").await else {
        eprintln!("skipped: MUSTER_TEST_POSTGRES is not set");
        return;
    };
    let (a, b) = (node(&db).await, node(&db).await);
    let admin = common::token(muster_server::auth::Role::Admin);
    // Node b has read the (empty) list of tokens before the token exists.
    let (status, _) = b
        .get_with(&muster_server::api_tokens::new_token(), "/api/incidents")
        .await;
    assert_eq!(status, 401);
    let (status, created) = a
        .post_with(
            &admin,
            "/api/admin/api-tokens",
            None,
            json!({"name": "cad-bridge", "role": "operator", "valid_days": 7}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    // At once on the other node: a token it does not know makes it read the log.
    let (status, body) = b
        .post_with(
            &secret,
            "/api/incidents",
            Some("node-machine-1"),
            incident_body(7),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = a
        .post_with(
            &admin,
            &format!(
                "/api/admin/api-tokens/{}/revoke",
                created["token_id"].as_str().unwrap()
            ),
            Some("node-revoke-api-1"),
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The other node refuses it within a second or two.
    let revoked_at = tokio::time::Instant::now();
    loop {
        let (status, body) = b.get_with(&secret, "/api/incidents").await;
        if status == 401 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("revoked"),
                "{body}"
            );
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2) + muster_server::api_tokens::FRESH_FOR,
            "node b still takes a token revoked on node a"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}
