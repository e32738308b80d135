//! Personal data at rest and in logs, tried on the real binary: `muster serve` at
//! `RUST_LOG=trace` takes a call with canary caller details, answers reads and a bad request,
//! feeds a wall display over the websocket; afterwards the canaries are in no log line and no
//! error body, nor in any file of the data directory (the log holds them sealed), a crew's
//! phone is sent the call-back number over the gateway without it reaching the log, and the
//! data directory is 0700 with every file in it 0600; `muster audit`
//! names who entered the call and who read the caller back, without the caller's details.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "private-data-operator-token-0123456789";
const CANARY_NAME: &str = "Canary Callerson Qx";
const CANARY_NUMBER: &str = "+358 40 7654321";
const CANARY_DIGITS: &str = "7654321";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Every file and directory under `dir`, with its mode.
fn modes(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        out.push((
            path.clone(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            modes(&path, out);
        }
    }
}

#[tokio::test]
async fn caller_details_reach_no_log_and_no_error_body_and_data_files_are_private() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let config = work.path().join("muster.toml");
    let gateway_port = free_port();
    std::fs::write(
        &config,
        format!(
            "gateway_bind = \"127.0.0.1:{gateway_port}\"\ntoken_secret = \"a-private-data-test-secret-of-32-bytes-or-more\"\ncity = \"grid\"\n[[users]]\nname = \"op\"\nrole = \"operator\"\ntoken = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    let log_path = work.path().join("muster.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let mut child = Command::new(muster_e2e::muster_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let caller = json!({"name": CANARY_NAME, "call_back": CANARY_NUMBER});
    let r = http
        .post(format!("{base}/api/incidents"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "canary-1")
        .json(
            &json!({"location": {"lat": 0.01, "lon": 0.01}, "incident_type": "medical",
                      "priority": "P1", "caller": caller}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let id = created["incident_id"].as_str().unwrap().to_owned();
    let position = created["position"].as_u64().unwrap();
    // The operator reads the caller back: the canaries do leave the server, to them.
    let detail = http
        .get(format!("{base}/api/incidents/{id}?min_position={position}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains(CANARY_NAME), "{detail}");
    // Bad requests that carry the canaries: their error bodies repeat neither.
    for body in [
        json!({"location": {"lat": 0.01, "lon": 0.01}, "incident_type": "medical",
               "priority": "P9", "caller": caller}),
        json!({"location": {"lat": 0.01, "lon": 0.01}, "incident_type": "medical",
               "priority": "P1", "caller": {"name": CANARY_NAME, "call_back": "x7654321x"}}),
    ] {
        let r = http
            .post(format!("{base}/api/incidents"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "canary-bad")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(CANARY_NAME) && !text.contains(CANARY_DIGITS),
            "{text}"
        );
    }
    // A wall display takes the feed's snapshot over the websocket.
    let mut request = format!("ws://127.0.0.1:{port}/api/feed")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a snapshot in time")
        .expect("a frame")
        .unwrap();
    assert!(first.to_text().unwrap().contains(&id));
    drop(ws);

    // A crew's phone is sent the task with the call-back number over the gateway (frames the
    // protocol crates would log at trace level).
    let r = http
        .post(format!("{base}/api/units"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "canary-unit-1")
        .json(
            &json!({"kind": "als_ambulance", "call_sign": "A1", "agency": "ems",
                      "home_station": "s-1", "location": {"lat": 0.01, "lon": 0.01}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let unit: serde_json::Value = r.json().await.unwrap();
    let unit = unit["unit_id"].as_str().unwrap().to_owned();
    let issued: serde_json::Value = http
        .post(format!("{base}/api/units/{unit}/device-token"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_token = issued["token"].as_str().expect("a device token").to_owned();
    let (mut device, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{gateway_port}"))
            .await
            .unwrap();
    use futures::SinkExt;
    device
        .send(tokio_tungstenite::tungstenite::Message::text(
            json!({"type": "hello", "v": 1, "token": device_token, "unit": unit}).to_string(),
        ))
        .await
        .unwrap();
    let r = http
        .post(format!("{base}/api/incidents/{id}/tasks"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "canary-assign-1")
        .json(&json!({"unit_id": unit}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), device.next())
            .await
            .expect("a frame in time")
            .expect("the session is open")
            .unwrap();
        let text = frame.to_text().unwrap_or("").to_owned();
        if text.contains("\"task\"") && text.contains(CANARY_DIGITS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task with the call-back number never came"
        );
    }
    drop(device);

    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("answered")),
        "RUST_LOG=trace did not reach the log:\n{log}"
    );
    for canary in [CANARY_NAME, CANARY_DIGITS, TOKEN] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(canary)).take(3).collect();
        assert!(hits.is_empty(), "{canary:?} is in the log: {hits:#?}");
    }

    let dir_mode = std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the data directory is {dir_mode:o}");
    let mut all = Vec::new();
    modes(&data_dir, &mut all);
    assert!(!all.is_empty(), "the data directory is empty");
    for (path, mode, is_dir) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
    // Not in any file either: the log holds the caller's details sealed, the views none.
    for (path, _, is_dir) in &all {
        if *is_dir {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        for canary in [CANARY_NAME, CANARY_DIGITS] {
            assert!(
                memchr::memmem::find(&bytes, canary.as_bytes()).is_none(),
                "{canary:?} is in {}",
                path.display()
            );
        }
    }

    // The audit trail: who entered the call and who read the caller back, from where, with
    // which credential; and no caller detail in it.
    let audit = Command::new(muster_e2e::muster_bin())
        .args(["audit", "--json", "--incident", &id, "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8(audit.stdout).unwrap();
    assert!(
        audit.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |t: &str| {
        lines
            .iter()
            .find(|l| l["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in the trail:\n{text}"))
    };
    for (line, source) in [
        (of("IncidentReported"), "hotline"),
        (of("CallerDetailsRead"), "operator"),
    ] {
        assert_eq!(line["actor"], "op", "{line}");
        assert_eq!(line["role"], "operator", "{line}");
        assert_eq!(line["source"], source, "{line}");
        assert_eq!(line["peer"], "127.0.0.1", "{line}");
        assert!(
            line["node"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{port}")),
            "{line}"
        );
        let credential = line["credential"].as_str().unwrap();
        assert!(
            credential.starts_with("token:") && !credential.contains(TOKEN),
            "{line}"
        );
    }
    for canary in [CANARY_NAME, CANARY_DIGITS, TOKEN] {
        assert!(!text.contains(canary), "{canary:?} is in the audit trail");
    }
}
