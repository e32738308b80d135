//! Machines' API tokens, tried from outside: an administrator creates one (answered once,
//! kept hashed), lists them without their secret and revokes them; a machine acts with its
//! token, its commands audited with `api-token:<id>`; expired and revoked tokens get 401 and
//! write nothing; bad requests get 422 naming what is wrong.

mod common;

use chrono::{Duration, Utc};
use common::{spawn, token};
use muster_app::{Command, CommandKey, Fingerprint};
use muster_core::api_token::ApiTokenCommand;
use muster_core::value::IdempotencyKey;
use muster_server::auth::Role;
use serde_json::{Value, json};

fn call() -> Value {
    json!({"location": {"lat": 60.17, "lon": 24.94}, "incident_type": "medical", "priority": "P2"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_is_created_used_listed_and_revoked() {
    let app = spawn().await;
    let admin = token(Role::Admin);

    let (status, created) = app
        .post_with(
            &admin,
            "/api/admin/api-tokens",
            None,
            json!({"name": "cad-bridge", "role": "operator", "agency": "city-fire",
                   "valid_days": 30}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["token_id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("mat_"), "{created}");
    assert_eq!(created["status"], "valid");
    assert_eq!(created["events"][0]["type"], "ApiTokenCreated");
    assert_eq!(created["events"][0]["stream"], "api-tokens");

    // The machine acts with it: its events name it.
    let (status, body) = app
        .post_with(&secret, "/api/incidents", Some("machine-call-1"), call())
        .await;
    assert_eq!(status, 201, "{body}");
    let events = app.events().await;
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.metadata.actor.as_deref() == Some("cad-bridge"))
        .collect();
    assert!(!mine.is_empty());
    for e in &mine {
        assert_eq!(
            e.metadata.credential.as_deref(),
            Some(format!("api-token:{id}").as_str())
        );
        assert_eq!(e.metadata.role.as_deref(), Some("operator"));
        assert_eq!(e.metadata.agency.as_deref(), Some("city-fire"));
    }
    // The log keeps its digest, never the token.
    for e in &events {
        assert!(
            !String::from_utf8_lossy(&e.data).contains(&secret),
            "{} {} holds the token",
            e.stream,
            e.event_type
        );
    }

    // Listed without the secret, to administrators only.
    let (status, list) = app.get_with(&admin, "/api/admin/api-tokens").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["tokens"][0]["token_id"], id.as_str());
    assert_eq!(list["tokens"][0]["name"], "cad-bridge");
    assert_eq!(list["tokens"][0]["status"], "valid");
    assert!(list["tokens"][0].get("token").is_none());
    assert!(!list.to_string().contains(&secret));
    for who in [token(Role::Operator), secret.clone()] {
        let (status, _) = app.get_with(&who, "/api/admin/api-tokens").await;
        assert_eq!(status, 403);
        let (status, _) = app
            .post_with(
                &who,
                "/api/admin/api-tokens",
                None,
                json!({"name": "x", "role": "admin", "valid_days": 1}),
            )
            .await;
        assert_eq!(status, 403);
    }

    // Revoked: refused at once, and nothing is written.
    let revoke = format!("/api/admin/api-tokens/{id}/revoke");
    let (status, body) = app
        .post_with(
            &admin,
            &revoke,
            Some("revoke-cad-1"),
            json!({"reason": "rotated"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    let head = app.head();
    let (status, body) = app
        .post_with(&secret, "/api/incidents", Some("machine-call-2"), call())
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    assert!(!body.to_string().contains(&secret));
    assert_eq!(app.head(), head, "a revoked token wrote to the log");
    // Revoking again changes nothing; unknown and malformed ids are 404.
    let (status, body) = app
        .post_with(&admin, &revoke, Some("revoke-cad-2"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], false);
    assert!(body["events"].as_array().unwrap().is_empty());
    for path in [
        format!("/api/admin/api-tokens/{}/revoke", uuid::Uuid::now_v7()),
        "/api/admin/api-tokens/not-an-id/revoke".to_owned(),
    ] {
        let (status, body) = app
            .post_with(&admin, &path, Some("revoke-none-1"), json!({}))
            .await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (_, list) = app.get_with(&admin, "/api/admin/api-tokens").await;
    assert_eq!(list["tokens"][0]["status"], "revoked");
    assert_eq!(list["tokens"][0]["revoked_by"], "admin-user");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_api_token_is_refused() {
    let app = spawn().await;
    // Given a token that expired yesterday (created through the one write path, as
    // yesterday's administrator did).
    let secret = muster_server::api_tokens::new_token();
    let token_id = uuid::Uuid::now_v7();
    let at = Utc::now() - Duration::days(2);
    let create = ApiTokenCommand::Create {
        token_id,
        name: "nightly-report".into(),
        role: "planner".into(),
        agency: None,
        unit: None,
        digest: muster_server::api_tokens::digest(&secret),
        expires_at: at + Duration::days(1),
        created_by: "admin-user".into(),
        at,
    };
    let cmd = Command {
        key: CommandKey::new(
            "admin-user",
            IdempotencyKey::try_from("expired-token-1").unwrap(),
        ),
        fingerprint: Fingerprint::of("test", &json!({})),
        metadata: Default::default(),
    };
    app.state
        .runner
        .execute(&cmd, |s| {
            Ok((
                muster_core::combined::api_token_command(s, create.clone())?,
                (),
            ))
        })
        .await
        .unwrap();
    let (status, body) = app.get_with(&secret, "/api/incidents").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let (_, list) = app
        .get_with(&token(Role::Admin), "/api/admin/api-tokens")
        .await;
    assert_eq!(list["tokens"][0]["status"], "expired");
    // A token of the right shape that was never issued.
    let (status, body) = app
        .get_with(&muster_server::api_tokens::new_token(), "/api/incidents")
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not known")
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_api_token_requests_say_what_is_wrong() {
    let app = spawn().await;
    let admin = token(Role::Admin);
    let in_a_year_and_a_day = (Utc::now() + Duration::days(367)).to_rfc3339();
    let yesterday = (Utc::now() - Duration::days(1)).to_rfc3339();
    let unit = uuid::Uuid::now_v7().to_string();
    let table = [
        (
            json!({"name": "a", "role": "operator"}),
            "expires_at",
            "no expiry",
        ),
        (
            json!({"name": "a", "role": "operator", "valid_days": 1, "expires_at": yesterday}),
            "not both",
            "both kinds of expiry",
        ),
        (
            json!({"name": "a", "role": "operator", "valid_days": 0}),
            "valid_days",
            "no days",
        ),
        (
            json!({"name": "a", "role": "operator", "valid_days": 367}),
            "valid_days",
            "more than a year",
        ),
        (
            json!({"name": "a", "role": "operator", "expires_at": yesterday}),
            "expires_at",
            "expired already",
        ),
        (
            json!({"name": "a", "role": "operator", "expires_at": in_a_year_and_a_day}),
            "expires_at",
            "more than a year ahead",
        ),
        (
            json!({"name": "cad bridge", "role": "operator", "valid_days": 1}),
            "name",
            "a space in the name",
        ),
        (
            json!({"name": "operator-user", "role": "operator", "valid_days": 1}),
            "configured user",
            "a configured user's name",
        ),
        (
            json!({"name": "a", "role": "king", "valid_days": 1}),
            "role",
            "an unknown role",
        ),
        (
            json!({"name": "a", "role": "operator", "unit": unit, "valid_days": 1}),
            "unit",
            "a unit for an operator",
        ),
        (
            json!({"name": "a", "role": "operator", "agency": "city fire", "valid_days": 1}),
            "agency",
            "an agency with a space",
        ),
        (
            json!({"name": "a", "role": "operator", "valid_days": 1, "secret": "x"}),
            "unknown field",
            "a field the route does not take",
        ),
    ];
    let head = app.head();
    for (body, says, why) in table {
        let (status, answer) = app
            .post_with(&admin, "/api/admin/api-tokens", None, body)
            .await;
        assert_eq!(status, 422, "{why}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{why}: {message}");
    }
    assert_eq!(app.head(), head, "a refused request wrote to the log");
    app.stop().await;
}
