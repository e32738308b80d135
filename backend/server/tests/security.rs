//! The security controls at the edge, tried from outside: headers, tokens in the address,
//! the lockout of clients that present unknown tokens, and the Origin check of both
//! websockets.

mod common;

use common::{feed_url, spawn, spawn_with, spawn_with_gateway, token};
use muster_server::auth::Role;
use muster_server::security::DEFAULT_LOCKOUT_FAILURES as MAX_FAILURES;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::test]
async fn every_answer_carries_the_security_headers_and_api_answers_are_not_cached() {
    let app = spawn().await;
    let client = reqwest::Client::new();
    for (path, api) in [
        ("/api/incidents", true),
        ("/api/no-such-route", true),
        ("/readyz", true),
        ("/", false),
    ] {
        let r = client
            .get(format!("{}{path}", app.base))
            .bearer_auth(token(Role::Operator))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let script = csp
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap_or_else(|| panic!("{path}: no script-src in {csp}"));
        assert_eq!(script.trim(), "script-src 'self'", "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        if api {
            assert_eq!(h["cache-control"], "no-store", "{path}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_token_in_the_address_of_a_rest_route_is_refused_and_nothing_is_written() {
    let app = spawn().await;
    let client = reqwest::Client::new();
    let body = json!({
        "incident_type": "medical", "priority": "P1",
        "location": {"lat": 60.17, "lon": 24.94},
        "caller": {"name": "Query Token Canary"},
    });
    let r = client
        .post(format!(
            "{}/api/incidents?access_token={}",
            app.base,
            token(Role::Operator)
        ))
        .header("Idempotency-Key", "query-token-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let answer: serde_json::Value = r.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authorization: Bearer"), "{message}");
    // Even beside a good header, a token in the address is refused.
    let r = client
        .get(format!("{}/api/incidents?access_token=x", app.base))
        .bearer_auth(token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A good create after them; once the views have it, it is the only incident.
    let (status, created) = app.post("/api/incidents", "query-token-2", body).await;
    assert_eq!(status, 201, "{created}");
    let position = created["position"].as_u64().unwrap();
    let (status, board) = app
        .get(&format!("/api/incidents?min_position={position}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        board["incidents"].as_array().map(Vec::len),
        Some(1),
        "the refused create was stored: {board}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_presenting_unknown_tokens_is_locked_out_while_known_tokens_still_work() {
    let app = spawn().await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..MAX_FAILURES + 5 {
        let r = client
            .get(format!("{}/api/incidents", app.base))
            .bearer_auth(format!("wrong-token-{i:04}-0123456789"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 429 {
            let wait: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "Retry-After {wait}");
        }
        statuses.push(status);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused, MAX_FAILURES as usize, "{statuses:?}");
    assert!(
        statuses[MAX_FAILURES as usize..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    // The dispatch centre behind the same address goes on working.
    let (status, _) = app.get("/api/incidents").await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn upgrade(url: &str, origin: Option<&'static str>) -> Result<u16, u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static(origin));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => Ok(response.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn the_wall_feed_refuses_other_sites_and_takes_its_own_and_listed_origins() {
    let app = spawn_with(|c| c.allowed_origins = vec!["https://wall.example".into()]).await;
    let own: &'static str = Box::leak(format!("http://127.0.0.1:{}", app.port).into_boxed_str());
    for (origin, want) in [
        (Some("https://evil.example"), Err(403)),
        (Some("null"), Err(403)),
        (None, Ok(101)),
        (Some("https://wall.example"), Ok(101)),
        (Some(own), Ok(101)),
    ] {
        let url = feed_url(&app, Role::Planner).await;
        assert_eq!(upgrade(&url, origin).await, want, "{origin:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_wall_feed_takes_a_ticket_once_and_never_a_token_in_its_address() {
    let app = spawn().await;
    let url = feed_url(&app, Role::Planner).await;
    assert_eq!(upgrade(&url, None).await, Ok(101));
    assert_eq!(upgrade(&url, None).await, Err(401), "a ticket taken twice");
    let forged = format!("ws://127.0.0.1:{}/api/feed?ticket=ft1.e30.AAAA", app.port);
    assert_eq!(upgrade(&forged, None).await, Err(401));
    let in_address = format!(
        "ws://127.0.0.1:{}/api/feed?access_token={}",
        app.port,
        token(Role::Planner)
    );
    assert_eq!(upgrade(&in_address, None).await, Err(401));
    // A client that can set headers sends its bearer token.
    let mut request = format!("ws://127.0.0.1:{}/api/feed", app.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(Role::Planner))).unwrap(),
    );
    let (_, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    // A ticket is for a known caller only.
    let r = reqwest::Client::new()
        .post(format!("{}/api/feed/ticket", app.base))
        .bearer_auth("nobody-at-all-here-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test]
async fn the_gateway_refuses_other_sites() {
    let app = spawn_with_gateway().await;
    let port = app.gateway.as_ref().unwrap().port;
    let url = format!("ws://127.0.0.1:{port}");
    assert_eq!(upgrade(&url, Some("https://evil.example")).await, Err(403));
    assert_eq!(upgrade(&url, None).await, Ok(101));
    // The responder app's pages come from the server beside the gateway: the same host on the
    // server's web port is taken, the same host on any other port is not.
    let own: &'static str = Box::leak(format!("http://127.0.0.1:{}", app.port).into_boxed_str());
    assert_eq!(upgrade(&url, Some(own)).await, Ok(101));
    let other: &'static str =
        Box::leak(format!("http://127.0.0.1:{}", app.port.wrapping_add(1)).into_boxed_str());
    assert_eq!(upgrade(&url, Some(other)).await, Err(403));
    // And the app finds the gateway from the server.
    let found: serde_json::Value = reqwest::get(format!("{}/responder/gateway.json", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found, json!({"port": port, "tls": false}));
    app.stop().await;
}

#[tokio::test]
async fn a_listed_origin_must_be_an_origin() {
    for bad in ["*", "https://wall.example/path", "wall.example", "https://"] {
        let config = muster_server::Config {
            allowed_origins: vec![bad.into()],
            ..Default::default()
        };
        let e = config.check().unwrap_err().to_string();
        assert!(e.contains("allowed_origins"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn a_device_session_ends_when_its_token_expires() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let app = spawn_with_gateway().await;
    let gateway = app.gateway.clone().unwrap();
    let (status, unit) = app
        .post(
            "/api/units",
            "expiry-unit-1",
            json!({
                "kind": "als_ambulance", "call_sign": "A9", "agency": "ems", "home_station": "s-1",
                "location": {"lat": 60.17, "lon": 24.94},
            }),
        )
        .await;
    assert_eq!(status, 201, "{unit}");
    let unit_id = muster_core::UnitId::parse(unit["unit_id"].as_str().unwrap()).unwrap();
    // Expiry is kept in whole seconds: this token lasts between one and two seconds.
    let expires = chrono::Utc::now() + chrono::Duration::seconds(2);
    let token = gateway.tokens.issue(unit_id, expires);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}", gateway.port))
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "hello", "v": 1, "token": token, "unit": unit_id}).to_string(),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    let mut welcomed = false;
    let close = loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the session was still open after the deadline");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let m: serde_json::Value = serde_json::from_str(&text).unwrap();
                if m["type"] == "welcome" {
                    welcomed = true;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("the session ended without a close frame: {other:?}"),
        }
    };
    assert!(welcomed, "the device was never welcomed");
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), 4003, "{close:?}");
    assert!(close.reason.contains("expired"), "{close:?}");
    assert!(
        chrono::Utc::now() >= expires - chrono::Duration::seconds(1),
        "closed before the token expired"
    );
    app.stop().await;
}

/// Issues a device token for `unit` through the API: (token, token id).
async fn issue_device_token(app: &common::App, unit: muster_core::UnitId) -> (String, String) {
    let (status, issued) = app
        .post(
            &format!("/api/units/{unit}/device-token"),
            "unused-key-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    (
        issued["token"].as_str().unwrap().to_owned(),
        issued["token_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_revoked_device_token_ends_its_session_and_is_refused_after() {
    use common::{closed, device_session, next_text, register_unit};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let app = spawn_with_gateway().await;
    let port = app.gateway.as_ref().unwrap().port;
    let unit = register_unit(&app, "revoke-unit-1", "A7").await;
    let (first, first_id) = issue_device_token(&app, unit).await;
    let (second, second_id) = issue_device_token(&app, unit).await;
    assert_ne!(first, second, "two tokens for one unit are the same");
    let mut on_first = device_session(port, &first, unit).await;
    let mut on_second = device_session(port, &second, unit).await;

    let (status, body) = app
        .post(
            &format!("/api/units/{unit}/device-token/revoke"),
            "revoke-first-1",
            json!({"token_id": first_id, "reason": "phone lost"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([first_id]), "{body}");
    let close = closed(&mut on_first).await;
    assert_eq!(u16::from(close.code), 4003, "{close:?}");
    assert!(close.reason.contains("revoked"), "{close:?}");
    // The other token's session goes on.
    on_second
        .send(Message::text(
            json!({"type": "ping", "nonce": 7}).to_string(),
        ))
        .await
        .unwrap();
    loop {
        let m = next_text(&mut on_second)
            .await
            .expect("the other token's session was closed");
        if m["type"] == "pong" {
            break;
        }
    }

    // A new hello with the revoked token is refused.
    let (mut again, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}"))
        .await
        .unwrap();
    again
        .send(Message::text(
            json!({"type": "hello", "v": 1, "token": first, "unit": unit}).to_string(),
        ))
        .await
        .unwrap();
    let refusal = next_text(&mut again).await.unwrap();
    assert_eq!(refusal["code"], "auth_failed", "{refusal}");
    assert_eq!(u16::from(closed(&mut again).await.code), 4003);

    // All of the unit's tokens: only the second is left to revoke.
    let (status, body) = app
        .post(
            &format!("/api/units/{unit}/device-token/revoke"),
            "revoke-all-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], json!([second_id]), "{body}");
    assert_eq!(u16::from(closed(&mut on_second).await.code), 4003);

    // The list names both, revoked, without their secret.
    let (status, list) = app.get(&format!("/api/units/{unit}/device-tokens")).await;
    assert_eq!(status, 200, "{list}");
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    assert_eq!(
        tokens[0]["token_id"],
        second_id.as_str(),
        "newest first: {list}"
    );
    assert!(tokens.iter().all(|t| t["revoked_at"].is_string()), "{list}");
    let text = list.to_string();
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "a token in {text}"
    );

    // A token the unit never had, and a unit that does not exist.
    let (status, body) = app
        .post(
            &format!("/api/units/{unit}/device-token/revoke"),
            "revoke-stranger-1",
            json!({"token_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let nobody = muster_core::UnitId::from_uuid(uuid::Uuid::new_v4());
    let (status, body) = app
        .post(
            &format!("/api/units/{nobody}/device-token/revoke"),
            "revoke-nobody-1",
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = app.get(&format!("/api/units/{nobody}/device-tokens")).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn forged_device_tokens_lock_the_address_out_of_the_gateway_but_a_valid_one_gets_in() {
    use common::{closed, next_text, register_unit};
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    const FAILURES: u32 = 3;
    let app = spawn_with(|c| {
        c.token_secret = Some(muster_server::config::TokenSecret::new(
            common::GATEWAY_SECRET,
        ));
        c.gateway_bind = "127.0.0.1:0".into();
        c.lockout_failures = FAILURES;
    })
    .await;
    let gateway = app.gateway.clone().unwrap();
    let unit = register_unit(&app, "lockout-unit-1", "A8").await;
    let forged = gateway
        .tokens
        .issue(unit, chrono::Utc::now() + chrono::Duration::hours(1))
        .replace("mt2.", "mt2.x");
    let hello = |token: String| async move {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}", gateway.port))
                .await
                .unwrap();
        ws.send(Message::text(
            json!({"type": "hello", "v": 1, "token": token, "unit": unit}).to_string(),
        ))
        .await
        .unwrap();
        let first = next_text(&mut ws).await.expect("an answer to hello");
        let close = if first["type"] == "welcome" {
            None
        } else {
            Some(u16::from(closed(&mut ws).await.code))
        };
        (first, close)
    };
    let mut answers = Vec::new();
    for _ in 0..FAILURES + 2 {
        let (first, close) = hello(forged.clone()).await;
        answers.push((first["code"].as_str().unwrap_or("").to_owned(), close));
    }
    let want: Vec<(String, Option<u16>)> = (0..FAILURES + 2)
        .map(|i| {
            if i < FAILURES {
                ("auth_failed".to_owned(), Some(4003))
            } else {
                ("rate_limited".to_owned(), Some(1013))
            }
        })
        .collect();
    assert_eq!(answers, want);
    let (locked, _) = hello(forged.clone()).await;
    assert!(
        locked["retry_after_ms"].as_u64().unwrap() >= 1000,
        "{locked}"
    );
    // The crew's real token still works from the same address.
    let valid = gateway
        .tokens
        .issue(unit, chrono::Utc::now() + chrono::Duration::hours(1));
    let (first, close) = hello(valid).await;
    assert_eq!(
        (first["type"].as_str(), close),
        (Some("welcome"), None),
        "{first}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_full_server_answers_503_at_once_and_health_checks_still_pass() {
    let app = spawn_with(|c| c.max_concurrent_requests = 1).await;
    let client = reqwest::Client::new();
    // One request held: it waits for a log position that will not come within its wait.
    let held = {
        let client = client.clone();
        let url = format!("{}/api/incidents?min_position=999999", app.base);
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token(Role::Planner))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Until the held request has the only slot, a second may still get in; wait for the 503.
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    let refused = loop {
        let r = client
            .get(format!("{}/api/units", app.base))
            .bearer_auth(token(Role::Planner))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 503 {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::task::yield_now().await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let health = client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(held.await.unwrap(), 200);
    app.stop().await;
}

#[tokio::test]
async fn long_reads_have_a_rate_per_user() {
    let app = spawn().await;
    let client = reqwest::Client::new();
    let get = |role: Role| {
        client
            .get(format!("{}/api/wall/at?position=0", app.base))
            .bearer_auth(token(role))
            .send()
    };
    let mut statuses = Vec::new();
    // More than a burst, faster than the rate refills it.
    for _ in 0..muster_server::security::ExpensiveReads::BURST as usize + 20 {
        statuses.push(get(Role::Planner).await.unwrap().status().as_u16());
        if statuses.last() == Some(&429) {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    let r = get(Role::Planner).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Another user reads on.
    assert_eq!(get(Role::Operator).await.unwrap().status().as_u16(), 200);
    app.stop().await;
}
