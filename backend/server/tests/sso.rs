//! Single sign-on against a real OpenID Connect provider: `ops/oidc-provider/provider.mjs`
//! (the npm package oauth2-mock-server), started by each test on a free loopback port and
//! stopped when the test ends. Muster finds the provider's keys through its discovery
//! document and JWKS; the provider signs the tokens, good and bad; the forged ones (`alg:
//! none`, HS256 with the provider's public key, an altered payload) are made here.
//!
//! Needs Node.js 20.19 or later and `npm ci --prefix ops/oidc-provider` (`bash ops/test.sh`
//! does both).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{DEADLINE, spawn_with};
use muster_server::auth::Role;
use muster_server::oidc::OidcConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A running provider, stopped when dropped.
struct Provider {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    issuer: String,
    kid: String,
    public_key_pem: String,
    http: reqwest::Client,
}

impl Provider {
    async fn start() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/oidc-provider");
        assert!(
            dir.join("node_modules/oauth2-mock-server").is_dir(),
            "the OIDC provider's npm packages are not installed: run `npm ci --prefix ops/oidc-provider` (bash ops/test.sh does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("provider.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node (Node.js 20.19 or later) runs the OIDC provider");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_json(&mut lines).await;
        Self {
            _child: child,
            stdin,
            lines,
            issuer: first["issuer"].as_str().unwrap().to_owned(),
            kid: first["kid"].as_str().unwrap().to_owned(),
            public_key_pem: first["public_key_pem"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn command(&mut self, op: &str) -> Value {
        let line = format!("{}\n", json!({ "op": op }));
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        next_json(&mut self.lines).await
    }

    /// Fetches of its JWKS so far.
    async fn jwks_requests(&mut self) -> u64 {
        self.command("stats").await["jwks_requests"]
            .as_u64()
            .unwrap()
    }

    /// A token from its token endpoint for `audience`, with `claims` merged in (null
    /// removes one) and, when given, another key id in its header.
    async fn token(&self, audience: &str, claims: Value, kid: Option<&str>) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("aud", audience.to_owned()),
            ("claims", claims.to_string()),
        ];
        if let Some(kid) = kid {
            form.push(("kid", kid.to_owned()));
        }
        let r = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "the token endpoint: {}",
            r.status()
        );
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

async fn next_json(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the OIDC provider answers within the deadline")
        .unwrap()
        .expect("the OIDC provider is running");
    serde_json::from_str(&line).unwrap()
}

fn sso(issuer: &str, min_refresh_s: u64) -> OidcConfig {
    OidcConfig {
        issuer: issuer.to_owned(),
        audience: "muster".into(),
        jwks_min_refresh_s: min_refresh_s,
        jwks_refresh_s: 3600,
        ..OidcConfig::default()
    }
}

fn call() -> Value {
    json!({"location": {"lat": 60.17, "lon": 24.94}, "incident_type": "medical", "priority": "P2"})
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `claims` with `changes` merged in.
fn with(claims: &Value, changes: Value) -> Value {
    let mut out = claims.clone();
    for (k, v) in changes.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token with every claim right and no signature (`alg: none`).
fn unsigned(issuer: &str, kid: &str) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let claims = json!({"iss": issuer, "aud": "muster", "exp": now() + 600, "iat": now(),
                        "sub": "mallory", "muster_roles": "admin"});
    format!("{}.{}.", b64(&header), b64(&claims))
}

/// A token with every claim right, "signed" with HS256 using the provider's public key (PEM)
/// as the HMAC secret: the key confusion attack.
fn hs256_with_public_key(issuer: &str, kid: &str, pem: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let claims = json!({"iss": issuer, "aud": "muster", "exp": now() + 600, "iat": now(),
                        "sub": "mallory", "muster_roles": "admin"});
    let key = jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A signed token whose payload was changed afterwards (a planner made an admin).
fn altered(token: &str) -> String {
    let mut parts = token.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["muster_roles"] = json!("admin");
    format!("{header}.{}.{signature}", b64(&claims))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_takes_the_providers_tokens_and_refuses_bad_ones() {
    let mut idp = Provider::start().await;
    let issuer = idp.issuer.clone();
    let config = sso(&issuer, 1);
    let app = spawn_with(move |c| {
        c.oidc = Some(config);
        // Every refusal here is counted; the lockout is tried in its own test.
        c.lockout_failures = 1000;
    })
    .await;

    // A good token: the role and the agency come from its claims; its events carry the
    // `jwt:` credential.
    let alice = json!({"sub": "alice", "jti": "sso-good-1", "muster_roles": "operator",
                       "agency": "city-fire"});
    let token = idp.token("muster", alice.clone(), None).await;
    let (status, body) = app
        .post_with(&token, "/api/incidents", Some("sso-call-0001"), call())
        .await;
    assert_eq!(status, 201, "{body}");
    let events: Vec<_> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e.metadata.actor.as_deref() == Some("alice"))
        .collect();
    assert!(!events.is_empty(), "alice's command left no events");
    for e in &events {
        let m = &e.metadata;
        assert_eq!(
            m.credential.as_deref(),
            Some(format!("jwt:{issuer}#sso-good-1").as_str())
        );
        assert_eq!(m.role.as_deref(), Some("operator"));
        assert_eq!(m.agency.as_deref(), Some("city-fire"));
        assert!(!String::from_utf8_lossy(&e.data).contains(&token));
    }
    // A planner's token reads, and may not command.
    let planner = json!({"sub": "pat", "muster_roles": ["offline_access", "planner"]});
    let planner_token = idp.token("muster", planner.clone(), None).await;
    let (status, _) = app.get_with(&planner_token, "/api/incidents").await;
    assert_eq!(status, 200);
    let (status, body) = app
        .post_with(
            &planner_token,
            "/api/incidents",
            Some("sso-call-0002"),
            call(),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Bad tokens: each is 401, says why without repeating the token, and writes nothing.
    let mallory = json!({"sub": "mallory", "muster_roles": "admin"});
    let n = now();
    let table: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            idp.token(
                "muster",
                with(
                    &mallory,
                    json!({"exp": n - 600, "iat": n - 1200, "nbf": n - 1200}),
                ),
                None,
            )
            .await,
            "expired",
        ),
        (
            "not yet valid",
            idp.token("muster", with(&mallory, json!({"nbf": n + 600})), None)
                .await,
            "not valid yet",
        ),
        (
            "no expiry",
            idp.token("muster", with(&mallory, json!({"exp": null})), None)
                .await,
            "exp",
        ),
        (
            "wrong audience",
            idp.token("someone-else", mallory.clone(), None).await,
            "audience",
        ),
        (
            "wrong issuer",
            idp.token(
                "muster",
                with(&mallory, json!({"iss": "http://127.0.0.1:9/elsewhere"})),
                None,
            )
            .await,
            "issuer",
        ),
        ("alg none", unsigned(&issuer, &idp.kid), "not accepted"),
        (
            "HS256 signed with the provider's public key",
            hs256_with_public_key(&issuer, &idp.kid, &idp.public_key_pem),
            "not accepted",
        ),
        (
            "unknown kid",
            idp.token("muster", mallory.clone(), Some("not-one-of-the-keys"))
                .await,
            "not one of the provider's keys",
        ),
        (
            "role claim missing",
            idp.token(
                "muster",
                with(&mallory, json!({"muster_roles": null})),
                None,
            )
            .await,
            "muster_roles",
        ),
        (
            "role claim unknown",
            idp.token(
                "muster",
                with(&mallory, json!({"muster_roles": "king"})),
                None,
            )
            .await,
            "no Muster role",
        ),
        (
            "payload altered after signing",
            altered(&planner_token),
            "signature",
        ),
    ];
    let head = app.head();
    for (i, (why, token, says)) in table.iter().enumerate() {
        let key = format!("sso-bad-{i:04}");
        let (status, body) = app
            .post_with(token, "/api/incidents", Some(&key), call())
            .await;
        assert_eq!(status, 401, "{why}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{why}: {message}");
        assert!(
            !body.to_string().contains(token.as_str()),
            "{why}: the token was repeated"
        );
    }
    assert_eq!(app.head(), head, "a refused token wrote to the log");

    // The provider rotates its keys: a token signed with the new key names a key Muster has
    // not seen, so it fetches the JWKS again (at most once a second) and takes the token.
    let before = idp.jwks_requests().await;
    let rotated = idp.command("rotate").await;
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, idp.kid);
    let bob = idp
        .token(
            "muster",
            json!({"sub": "bob", "jti": "sso-rotated", "muster_roles": "operator"}),
            None,
        )
        .await;
    assert_eq!(
        jsonwebtoken::decode_header(&bob).unwrap().kid.as_deref(),
        Some(new_kid.as_str())
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, body) = app
            .post_with(&bob, "/api/incidents", Some("sso-call-0003"), call())
            .await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 401, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated key was never fetched: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idp.jwks_requests().await > before,
        "the JWKS was not fetched again"
    );
    // The old key is still published: tokens signed with it still work.
    let (status, _) = app.get_with(&token, "/api/incidents").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_ids_never_make_muster_fetch_the_keys_more_often_than_the_floor() {
    let mut idp = Provider::start().await;
    let config = sso(&idp.issuer, 3600);
    let app = spawn_with(move |c| {
        c.oidc = Some(config);
        c.lockout_failures = 1000;
    })
    .await;
    let good = idp
        .token(
            "muster",
            json!({"sub": "alice", "muster_roles": "planner"}),
            None,
        )
        .await;
    let (status, body) = app.get_with(&good, "/api/incidents").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.jwks_requests().await, 1);
    for i in 0..20 {
        let kid = format!("made-up-{i}");
        let token = idp
            .token(
                "muster",
                json!({"sub": "mallory", "muster_roles": "admin"}),
                Some(&kid),
            )
            .await;
        let (status, _) = app.get_with(&token, "/api/incidents").await;
        assert_eq!(status, 401, "{kid}");
    }
    assert_eq!(
        idp.jwks_requests().await,
        1,
        "unknown key ids made Muster fetch the keys"
    );
    // A real rotation within the floor waits for the floor too.
    idp.command("rotate").await;
    let rotated = idp
        .token(
            "muster",
            json!({"sub": "bob", "muster_roles": "planner"}),
            None,
        )
        .await;
    let (status, body) = app.get_with(&rotated, "/api/incidents").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(idp.jwks_requests().await, 1);
    // The keys at hand still work.
    let (status, _) = app.get_with(&good, "/api/incidents").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn refused_jwts_are_logged_and_counted_like_unknown_tokens() {
    // Nothing listens at this issuer: tokens that get as far as needing its keys cannot be
    // checked (503); forged ones are refused before that.
    let app = spawn_with(|c| {
        c.oidc = Some(sso("http://127.0.0.1:9", 1));
        c.lockout_failures = 3;
    })
    .await;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
    let claims = json!({"iss": "http://127.0.0.1:9", "aud": "muster", "exp": now() + 600, "sub": "x",
                        "muster_roles": "admin"});
    let unverifiable = format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims));
    let (status, body) = app.get_with(&unverifiable, "/api/incidents").await;
    assert_eq!(status, 503, "{body}");
    let forged = unsigned("http://127.0.0.1:9", "k1");
    for _ in 0..3 {
        let (status, body) = app.get_with(&forged, "/api/incidents").await;
        assert_eq!(status, 401, "{body}");
    }
    let r = app
        .client
        .get(format!("{}/api/incidents", app.base))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // A known token from the same address still works.
    let (status, _) = app
        .get_with(&common::token(Role::Operator), "/api/incidents")
        .await;
    assert_eq!(status, 200);
    app.stop().await;

    // Without single sign-on configured, a JWT is refused and says so.
    let app = common::spawn().await;
    let (status, body) = app.get_with(&forged, "/api/incidents").await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("single sign-on is not configured"),
        "{body}"
    );
    app.stop().await;
}
