//! A real server on port 0 with a fresh data directory, for the dispatcher and gateway tests.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use muster_server::auth::{Role, UserConfig};
use muster_server::{Application, Config};
use serde_json::Value;

/// Longest a test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn token(role: Role) -> String {
    format!("dispatch-test-token-{}-0123456789", role.as_str())
}

/// A running server.
pub struct App {
    /// `http://127.0.0.1:port`, or `https://…` when the server speaks TLS.
    pub base: String,
    /// The HTTP port.
    pub port: u16,
    /// The mobile gateway, when the config has a token secret.
    pub gateway: Option<muster_server::app::Gateway>,
    /// The server's state: its store, views and runner.
    pub state: muster_server::routes::AppState,
    /// The certificate the server presents, when it speaks TLS.
    pub tls: Option<Arc<muster_mobile::tls::ReloadableCert>>,
    /// An HTTP client that trusts the server's certificate, if any.
    pub client: reqwest::Client,
    stopper: muster_server::app::Stopper,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

pub async fn spawn() -> App {
    spawn_with(|_| {}).await
}

/// The token secret of servers that run the mobile gateway.
pub const GATEWAY_SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes";

/// A server that also runs the mobile gateway, on a free port.
pub async fn spawn_with_gateway() -> App {
    spawn_with(|c| {
        c.token_secret = Some(muster_server::config::TokenSecret::new(GATEWAY_SECRET));
        c.gateway_bind = "127.0.0.1:0".into();
    })
    .await
}

/// A server on port 0 with a fresh data directory, its config changed by `adjust`.
pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> App {
    spawn_trusting(None, adjust).await
}

/// [`spawn_with`], its HTTP client trusting the CA certificates in `ca_file` (for a server
/// whose `adjust` configures TLS).
pub async fn spawn_trusting(ca_file: Option<&Path>, adjust: impl FnOnce(&mut Config)) -> App {
    let client = match ca_file {
        Some(ca) => reqwest::Client::builder()
            .use_preconfigured_tls((*muster_mobile::tls::client_config(Some(ca)).unwrap()).clone())
            .tls_info(true)
            .build()
            .unwrap(),
        None => reqwest::Client::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        bind: "127.0.0.1:0".into(),
        users: Role::ALL
            .iter()
            .map(|r| UserConfig {
                name: format!("{}-user", r.as_str()),
                role: *r,
                token: token(*r),
                unit: None,
            })
            .collect(),
        ..Config::default()
    };
    adjust(&mut config);
    let app = Application::build_with_listener(config, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .unwrap();
    let port = app.port();
    let gateway = app.gateway().cloned();
    let state = app.state().clone();
    let tls = app.tls().cloned();
    let base = format!("{}://127.0.0.1:{port}", app.scheme());
    let stopper = app.stopper();
    let running = tokio::spawn(app.run_until_stopped());
    App {
        base,
        port,
        gateway,
        state,
        tls,
        client,
        stopper,
        running,
        _dir: dir,
    }
}

impl App {
    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token(Role::Operator))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A command as a user of `role`.
    pub async fn post_as(&self, role: Role, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token(role))
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token(Role::Operator))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A POST with this bearer token (and `Idempotency-Key` when given).
    pub async fn post_with(
        &self,
        bearer: &str,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A GET with this bearer token.
    pub async fn get_with(&self, bearer: &str, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Every event in the log, oldest first.
    pub async fn events(&self) -> Vec<muster_store::RecordedEvent> {
        let store = self.state.runner.store();
        let mut out = Vec::new();
        let mut next = muster_store::Position::START;
        loop {
            let page = store.read_all(next, 4096).await.unwrap();
            let Some(last) = page.last() else { break };
            next = last.position.next();
            out.extend(page);
        }
        out
    }

    /// The log's head: it moves when anything is written.
    pub fn head(&self) -> muster_store::Position {
        self.state.runner.store().head()
    }

    pub async fn stop(self) {
        self.stopper.stop().await;
        self.running.await.unwrap().unwrap();
    }
}

/// A certificate authority made for one test, and server certificates it signs for
/// `localhost` and `127.0.0.1`, as PEM files in its own directory.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

/// A server certificate a [`TestCa`] issued.
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The certificate, DER, to compare with what a server presents.
    pub der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    /// The CA's certificate, for clients to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client configuration that trusts this CA.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        muster_mobile::tls::client_config(Some(&self.ca_file())).unwrap()
    }

    /// Issues a server certificate, written as `<stem>.pem` and `<stem>-key.pem`.
    pub fn issue(&self, stem: &str) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}-key.pem")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// Waits for the next event of a device client that `pick` selects, at most [`DEADLINE`].
pub async fn next_matching(
    client: &mut muster_mobile::client::Client,
    what: &str,
    pick: impl Fn(&muster_mobile::client::ClientEvent) -> bool,
) -> muster_mobile::client::ClientEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = client
                .next()
                .await
                .unwrap_or_else(|| panic!("the client stopped before {what}"));
            if pick(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} before the deadline"))
}

/// Registers an ambulance through `app` and answers its id.
pub async fn register_unit(app: &App, key: &str, call_sign: &str) -> muster_core::UnitId {
    let (status, unit) = app
        .post(
            "/api/units",
            key,
            serde_json::json!({
                "kind": "als_ambulance", "call_sign": call_sign, "agency": "ems",
                "home_station": "s-1", "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    muster_core::UnitId::parse(unit["unit_id"].as_str().unwrap()).unwrap()
}

/// A device's websocket to the mobile gateway.
pub type DeviceSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a device session on the gateway at `port` with `token`: the socket once welcomed.
pub async fn device_session(port: u16, token: &str, unit: muster_core::UnitId) -> DeviceSocket {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}"))
        .await
        .unwrap();
    ws.send(Message::text(
        serde_json::json!({"type": "hello", "v": 1, "token": token, "unit": unit}).to_string(),
    ))
    .await
    .unwrap();
    match next_text(&mut ws).await {
        Ok(m) if m["type"] == "welcome" => ws,
        other => panic!("no welcome: {other:?}"),
    }
}

/// The next text message of a device socket as JSON, or the close frame that ended it, at
/// most [`DEADLINE`].
pub async fn next_text(
    ws: &mut DeviceSocket,
) -> Result<Value, Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("nothing came from the gateway before the deadline");
        match frame {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => return Err(frame),
            Some(Ok(_)) => {}
            other => panic!("the session ended without a close frame: {other:?}"),
        }
    }
}

/// Reads a device socket until the gateway closes it: the close frame.
pub async fn closed(ws: &mut DeviceSocket) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    loop {
        match next_text(ws).await {
            Ok(_) => {}
            Err(frame) => return frame.expect("a close frame with a code"),
        }
    }
}

/// A one-time ticket for the wall feed, for a user of `role`.
pub async fn feed_ticket(app: &App, role: Role) -> String {
    let r = app
        .client
        .post(format!("{}/api/feed/ticket", app.base))
        .bearer_auth(token(role))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    body["ticket"].as_str().unwrap().to_owned()
}

/// The wall feed's address on `app` with a fresh one-time ticket for `role`.
pub async fn feed_url(app: &App, role: Role) -> String {
    let ticket = feed_ticket(app, role).await;
    format!("ws://127.0.0.1:{}/api/feed?ticket={ticket}", app.port)
}
