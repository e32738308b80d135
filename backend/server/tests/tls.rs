//! TLS on the operator API, the wall feed and the mobile gateway, tried from outside with a
//! CA made for each test: https and wss work for a client that trusts the CA and are refused
//! by one that does not; HSTS only over TLS; a SIGHUP reloads the certificate for new
//! connections while open ones go on, and a broken key keeps the certificate in use; a
//! plaintext listener that other machines reach refuses to start unless a TLS-terminating
//! proxy is in front.

mod common;

use std::net::TcpListener;
use std::path::Path;

use common::{
    App, DEADLINE, GATEWAY_SECRET, Issued, TestCa, feed_ticket, next_matching, spawn_trusting,
    spawn_with, token,
};
use futures::StreamExt;
use muster_mobile::client::{Client, ClientConfig, ClientEvent};
use muster_server::auth::{Role, UserConfig};
use muster_server::config::TokenSecret;
use muster_server::{Application, Config};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The config change that makes a server present `issued`.
fn tls(issued: &Issued) -> impl FnOnce(&mut Config) + use<> {
    let (cert, key) = (issued.cert.clone(), issued.key.clone());
    move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    }
}

/// The certificate a new connection to the API gets.
async fn peer_certificate(app: &App, ca: &TestCa) -> Vec<u8> {
    // A fresh client: a new connection, a new handshake.
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*ca.client()).clone())
        .tls_info(true)
        .build()
        .unwrap();
    let r = client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the answer came over TLS")
        .to_vec()
}

async fn open_feed(
    app: &App,
    ca: &TestCa,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!(
        "wss://127.0.0.1:{}/api/feed?ticket={}",
        app.port,
        feed_ticket(app, Role::Planner).await
    );
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(ca.client())),
    )
    .await
    .unwrap();
    ws
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

fn call(key: &str) -> (String, Value) {
    (
        key.to_owned(),
        json!({
            "location": {"lat": 60.168, "lon": 24.945}, "incident_type": "medical", "priority": "P2",
        }),
    )
}

#[tokio::test]
async fn the_api_and_the_wall_feed_speak_tls_and_only_tls_answers_carry_hsts() {
    let ca = TestCa::new("Muster test CA");
    let issued = ca.issue("server");
    let app = spawn_trusting(Some(&ca.ca_file()), tls(&issued)).await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    for path in ["/api/incidents", "/", "/api/no-such-route"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth(token(Role::Operator))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    assert_eq!(peer_certificate(&app, &ca).await, issued.der);
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    let mut feed = open_feed(&app, &ca).await;
    assert_eq!(next_json(&mut feed).await["type"], "snapshot");
    let (key, body) = call("tls-call-0001");
    let (status, created) = app.post("/api/incidents", &key, body).await;
    assert_eq!(status, 201, "{created}");
    let delta = next_json(&mut feed).await;
    assert_eq!(delta["incident"]["id"], created["incident_id"], "{delta}");
    app.stop().await;

    let plain = spawn_with(|_| {}).await;
    for path in ["/api/incidents", "/"] {
        let r = plain
            .client
            .get(format!("{}{path}", plain.base))
            .bearer_auth(token(Role::Operator))
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{path}: HSTS over plain HTTP"
        );
    }
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_says_hello_over_tls_and_receives_its_task() {
    let ca = TestCa::new("Muster test CA");
    let issued = ca.issue("server");
    let with_tls = tls(&issued);
    let app = spawn_trusting(Some(&ca.ca_file()), |c| {
        with_tls(c);
        c.token_secret = Some(TokenSecret::new(GATEWAY_SECRET));
        c.gateway_bind = "127.0.0.1:0".into();
    })
    .await;
    let gateway = app
        .gateway
        .clone()
        .expect("a token secret starts the gateway");
    assert!(gateway.tls);
    let (status, unit) = app
        .post(
            "/api/units",
            "tls-unit-0001",
            json!({
                "kind": "als_ambulance", "call_sign": "A1", "agency": "ems", "home_station": "s-1",
                "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = muster_core::UnitId::parse(unit["unit_id"].as_str().unwrap()).unwrap();
    let device_token = gateway
        .tokens
        .issue(unit_id, chrono::Utc::now() + chrono::Duration::hours(1));
    let mut device = Client::start(ClientConfig {
        unit: Some(unit_id),
        tls: Some(ca.client()),
        ..ClientConfig::new(format!("wss://127.0.0.1:{}", gateway.port), device_token)
    });
    next_matching(&mut device, "a welcome over TLS", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;
    let (key, body) = call("tls-call-0002");
    let (status, incident) = app.post("/api/incidents", &key, body).await;
    assert_eq!(status, 201, "{incident}");
    let incident_id = incident["incident_id"].as_str().unwrap().to_owned();
    let (status, assigned) = app
        .post(
            &format!("/api/incidents/{incident_id}/tasks"),
            "tls-assign-0001",
            json!({"unit_id": unit_id}),
        )
        .await;
    assert_eq!(status, 201, "{assigned}");
    next_matching(&mut device, "the task over TLS", |e| {
        matches!(e, ClientEvent::Task { .. })
    })
    .await;
    device.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_certificate_from_a_ca_they_do_not_trust() {
    let ca = TestCa::new("Muster test CA");
    let stranger = TestCa::new("Someone else's CA");
    let issued = ca.issue("server");
    let with_tls = tls(&issued);
    let app = spawn_trusting(Some(&ca.ca_file()), |c| {
        with_tls(c);
        c.token_secret = Some(TokenSecret::new(GATEWAY_SECRET));
        c.gateway_bind = "127.0.0.1:0".into();
    })
    .await;
    let gateway = app.gateway.clone().unwrap();

    // The drills' HTTP client: works with the server's CA, refuses it with another.
    let url = format!("{}/healthz", app.base);
    let trusting = muster_sim::server::http_client(&app.base, Some(ca.client())).unwrap();
    assert_eq!(trusting.get(&url).send().await.unwrap().status(), 200);
    let wary = muster_sim::server::http_client(&app.base, Some(stranger.client())).unwrap();
    let refused = wary
        .get(&url)
        .send()
        .await
        .expect_err("an unknown CA was trusted");
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );

    // The wall feed's websocket.
    let refused = tokio_tungstenite::connect_async_tls_with_config(
        format!(
            "wss://127.0.0.1:{}/api/feed?ticket={}",
            app.port,
            feed_ticket(&app, Role::Planner).await
        ),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(stranger.client())),
    )
    .await
    .map(|_| ())
    .expect_err("an unknown CA was trusted");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    // The device client library: it never connects, and says why.
    let device_token = gateway.tokens.issue(
        muster_core::UnitId::new_v7(),
        chrono::Utc::now() + chrono::Duration::hours(1),
    );
    let mut device = Client::start(ClientConfig {
        tls: Some(stranger.client()),
        ..ClientConfig::new(format!("wss://127.0.0.1:{}", gateway.port), device_token)
    });
    let event = next_matching(&mut device, "a refused connection", |e| {
        matches!(
            e,
            ClientEvent::Disconnected { .. } | ClientEvent::Connected { .. }
        )
    })
    .await;
    match event {
        ClientEvent::Disconnected { reason } => {
            assert!(reason.contains("UnknownIssuer"), "{reason}")
        }
        other => panic!("connected to a server of an unknown CA: {other:?}"),
    }
    device.stop().await;
    app.stop().await;
}

fn copy_pair(from: &Issued, cert: &Path, key: &Path) {
    std::fs::copy(&from.cert, cert).unwrap();
    std::fs::copy(&from.key, key).unwrap();
}

#[cfg(unix)]
fn hangup() {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_a_broken_key_keeps_the_old_one() {
    let ca = TestCa::new("Muster test CA");
    let first = ca.issue("first");
    let second = ca.issue("second");
    let live = ca.issue("live");
    copy_pair(&first, &live.cert, &live.key);
    let app = spawn_trusting(Some(&ca.ca_file()), tls(&live)).await;
    assert_eq!(peer_certificate(&app, &ca).await, first.der);
    let mut feed = open_feed(&app, &ca).await;
    assert_eq!(next_json(&mut feed).await["type"], "snapshot");
    let mut reloads = app.tls.as_ref().unwrap().reloads();

    copy_pair(&second, &live.cert, &live.key);
    hangup();
    tokio::time::timeout(DEADLINE, reloads.wait_for(|r| r.loaded == 1))
        .await
        .expect("no reload after SIGHUP")
        .unwrap();
    assert_eq!(peer_certificate(&app, &ca).await, second.der);
    // The feed opened before the reload goes on.
    let (key, body) = call("tls-call-0003");
    let (status, created) = app.post("/api/incidents", &key, body).await;
    assert_eq!(status, 201, "{created}");
    let delta = next_json(&mut feed).await;
    assert_eq!(delta["incident"]["id"], created["incident_id"], "{delta}");

    // A broken key: the reload is refused, the certificate in use stays.
    std::fs::write(
        &live.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    hangup();
    tokio::time::timeout(DEADLINE, reloads.wait_for(|r| r.refused == 1))
        .await
        .expect("no refused reload after SIGHUP")
        .unwrap();
    assert_eq!(reloads.borrow().loaded, 1);
    assert_eq!(peer_certificate(&app, &ca).await, second.der);
    // A key that belongs to another certificate: refused too.
    std::fs::copy(&first.key, &live.key).unwrap();
    hangup();
    tokio::time::timeout(DEADLINE, reloads.wait_for(|r| r.refused == 2))
        .await
        .expect("no refused reload after SIGHUP")
        .unwrap();
    assert_eq!(peer_certificate(&app, &ca).await, second.der);
    app.stop().await;
}

fn config_on(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        city: "grid".into(),
        users: vec![UserConfig {
            name: "op".into(),
            role: Role::Operator,
            token: token(Role::Operator),
            unit: None,
        }],
        ..Config::default()
    };
    adjust(&mut config);
    config
}

#[tokio::test]
async fn a_plaintext_listener_other_machines_reach_refuses_to_start_unless_a_proxy_is_in_front() {
    let dir = tempfile::tempdir().unwrap();
    for (listen, adjust, says, why) in [
        (
            "0.0.0.0:0",
            Box::new(|_: &mut Config| {}) as Box<dyn FnOnce(&mut Config)>,
            "bind 0.0.0.0:",
            "the API on every interface",
        ),
        (
            "127.0.0.1:0",
            Box::new(|c: &mut Config| {
                c.token_secret = Some(TokenSecret::new(GATEWAY_SECRET));
                c.gateway_bind = "0.0.0.0:0".into();
            }),
            "gateway_bind 0.0.0.0:0",
            "the gateway on every interface",
        ),
    ] {
        let e = Application::build_with_listener(
            config_on(dir.path(), adjust),
            TcpListener::bind(listen).unwrap(),
        )
        .await
        .expect_err(why)
        .to_string();
        assert!(e.contains(says) && e.contains("tls_proxy"), "{why}: {e}");
    }
    // Nothing was opened: the refusal comes before the store.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // Behind a TLS-terminating proxy, plaintext on every interface starts.
    let app = Application::build_with_listener(
        config_on(dir.path(), |c| c.tls_proxy = true),
        TcpListener::bind("0.0.0.0:0").unwrap(),
    )
    .await
    .unwrap();
    let port = app.port();
    let stopper = app.stopper();
    let running = tokio::spawn(app.run_until_stopped());
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stopper.stop().await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_certificate_or_key_file_stops_the_start_naming_the_file() {
    let ca = TestCa::new("Muster test CA");
    let one = ca.issue("one");
    let two = ca.issue("two");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    for (cert, key, says, why) in [
        (
            &missing,
            &one.key,
            "missing.pem",
            "a certificate file that is not there",
        ),
        (
            &one.cert,
            &two.key,
            "does not belong",
            "another certificate's key",
        ),
    ] {
        let config = config_on(dir.path(), |c| {
            c.tls_cert = Some(cert.clone());
            c.tls_key = Some(key.clone());
        });
        let e = Application::build_with_listener(config, TcpListener::bind("127.0.0.1:0").unwrap())
            .await
            .expect_err(why);
        let e = format!("{e:#}");
        assert!(e.contains(says), "{why}: {e}");
    }
}
