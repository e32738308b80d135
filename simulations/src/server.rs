//! Replaying a recorded log into a running `muster serve` through its operator API, so the
//! wall display shows it: units are registered, calls entered, units assigned, tasks
//! acknowledged, declined and completed, statuses and positions reported, incidents closed —
//! each as the API call an operator or a responder's device would make (docs/api.md), paced
//! by the log's virtual times at `speed` and stamped with the wall clock.
//!
//! Events the server derives itself are not sent: time points, triage, the status changes a
//! task command implies (dispatched on assignment, available or returning when a task ends),
//! and sensor registrations (a sensor's incident is entered as a call).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use muster_core::event::DomainEvent;
use muster_core::ids::{AggregateRef, IncidentId, TaskId};
use muster_core::incident::{IncidentEvent, TimePoint};
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_store::RecordedEvent;
use serde_json::{Value, json};

/// Trust for https and wss addresses: the system's roots plus the CA certificates in
/// `ca_file`, built only when something needs it (an `https://`/`wss://` address or a named
/// CA file), so that plain loopback use needs no root store.
pub fn client_tls(
    addresses: &[&str],
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    let needed = ca_file.is_some()
        || addresses
            .iter()
            .any(|a| a.starts_with("https://") || a.starts_with("wss://"));
    if !needed {
        return Ok(None);
    }
    Ok(Some(muster_mobile::tls::client_config(ca_file)?))
}

/// An HTTP client for the server at `base`: an `https://` server's certificate is verified
/// against `tls` (`None`: the system's roots), never skipped.
pub fn http_client(
    base: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<reqwest::Client> {
    let tls = match tls {
        Some(tls) => Some(tls),
        None => client_tls(&[base], None)?,
    };
    let builder = reqwest::Client::builder();
    let builder = match tls {
        Some(tls) => builder.use_preconfigured_tls((*tls).clone()),
        None => builder,
    };
    builder.build().context("making the HTTP client")
}

/// What a replay into a server did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerReplayStats {
    /// API calls made.
    pub calls: usize,
    /// Calls the server refused (4xx), with the first few reasons.
    pub refused: usize,
    /// Examples of refusals.
    pub examples: Vec<String>,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// The server's log position after the last accepted call (with what the server
    /// derived from it): its views have caught up with the replay once they reach it
    /// (`?min_position=`).
    pub last_position: Option<u64>,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    stats: ServerReplayStats,
    n: u64,
}

impl Client {
    async fn post(&mut self, path: &str, body: Value) -> anyhow::Result<Option<Value>> {
        self.n += 1;
        self.stats.calls += 1;
        let key = format!("drill-replay-{}-{}", std::process::id(), self.n);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}: the server did not answer"))?;
        let status = response.status();
        if status.is_server_error() {
            anyhow::bail!("POST {path}: the server failed with {status}");
        }
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_client_error() {
            self.stats.refused += 1;
            if self.stats.examples.len() < 5 {
                self.stats
                    .examples
                    .push(format!("POST {path}: {status} {value}"));
            }
            return Ok(None);
        }
        if let Some(p) = value.get("position").and_then(Value::as_u64) {
            self.stats.last_position = self.stats.last_position.max(Some(p));
        }
        Ok(Some(value))
    }
}

/// Replays `events` into the server at `base` (such as `http://127.0.0.1:8080` or
/// `https://dispatch.example.org`) with an operator token; `tls` is whom an https server's
/// certificate must be issued by ([`client_tls`]; `None`: the system's roots). `speed` is
/// virtual seconds per wall second (`None`: as fast as the server answers). Runs its own
/// runtime; inside one, use [`into_server_async`].
pub fn into_server(
    events: &[RecordedEvent],
    base: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    speed: Option<f64>,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<ServerReplayStats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(into_server_async(events, base, token, tls, speed, progress))
}

/// [`into_server`] on the caller's runtime.
pub async fn into_server_async(
    events: &[RecordedEvent],
    base: &str,
    token: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    speed: Option<f64>,
    progress: &mut dyn FnMut(usize),
) -> anyhow::Result<ServerReplayStats> {
    let started = Instant::now();
    let first: Option<DateTime<Utc>> = events.iter().find_map(|e| e.metadata.occurred_at);
    let mut client = Client {
        http: http_client(base, tls)?,
        base: base.trim_end_matches('/').to_owned(),
        token: token.to_owned(),
        stats: ServerReplayStats::default(),
        n: 0,
    };
    // Recorded task -> the server's task (the server chooses task ids).
    let mut tasks: HashMap<TaskId, String> = HashMap::new();
    // When each call was answered (the time point follows the report in the log).
    let mut received: HashMap<IncidentId, DateTime<Utc>> = HashMap::new();
    for e in events {
        if let Ok((
            AggregateRef::Incident(id),
            DomainEvent::Incident(IncidentEvent::TimePointRecorded {
                point: TimePoint::CallReceived,
                at,
                ..
            }),
        )) = DomainEvent::from_recorded(e)
        {
            received.insert(id, at);
        }
    }
    let scale = speed.unwrap_or(1.0).max(1e-9);
    for (n, e) in events.iter().enumerate() {
        if let (Some(speed), Some(first), Some(at)) = (speed, first, e.metadata.occurred_at) {
            let due = (at - first).num_milliseconds() as f64 / 1000.0 / speed;
            let elapsed = started.elapsed().as_secs_f64();
            if due > elapsed {
                tokio::time::sleep(std::time::Duration::from_secs_f64(due - elapsed)).await;
            }
        }
        let Ok((aggregate, event)) = DomainEvent::from_recorded(e) else {
            continue;
        };
        let now = Utc::now();
        match (aggregate, event) {
            (AggregateRef::Unit(id), DomainEvent::Unit(ev)) => match ev {
                UnitEvent::UnitRegistered {
                    kind,
                    call_sign,
                    agency,
                    home_station,
                    capabilities,
                    ..
                } => {
                    client
                        .post("/api/units", json!({ "id": id, "kind": kind, "call_sign": call_sign, "agency": agency, "home_station": home_station, "capabilities": capabilities }))
                        .await?;
                }
                UnitEvent::TaskAssigned { task, incident, .. } => {
                    // The answer names the server's task (the unit board may lag behind).
                    let assigned = client
                        .post(
                            &format!("/api/incidents/{incident}/tasks"),
                            json!({ "unit_id": id }),
                        )
                        .await?;
                    if let Some(t) = assigned
                        .as_ref()
                        .and_then(|a| a.get("task_id"))
                        .and_then(Value::as_str)
                    {
                        tasks.insert(task, t.to_owned());
                    }
                }
                UnitEvent::TaskAcknowledged { task, .. }
                | UnitEvent::TaskCompleted { task, .. }
                | UnitEvent::TaskDeclined { task, .. } => {
                    let step = match ev {
                        UnitEvent::TaskAcknowledged { .. } => "acknowledge",
                        UnitEvent::TaskCompleted { .. } => "complete",
                        _ => "decline",
                    };
                    if let Some(t) = tasks.get(&task).cloned() {
                        client
                            .post(&format!("/api/units/{id}/tasks/{t}/{step}"), json!({}))
                            .await?;
                    }
                }
                UnitEvent::UnitStatusChanged { from, to, .. } => {
                    let implied = to == UnitStatus::Dispatched
                        || (to == UnitStatus::Available && from.is_committed())
                        || (to == UnitStatus::Returning && from.is_committed());
                    if !implied {
                        client
                            .post(&format!("/api/units/{id}/status"), json!({ "status": to }))
                            .await?;
                    }
                }
                UnitEvent::UnitPositionReported {
                    position,
                    heading_deg,
                    speed_m_s,
                    accuracy_m,
                    ..
                } => {
                    client
                        .post(&format!("/api/units/{id}/position"), json!({ "location": position, "heading_deg": heading_deg, "speed_m_s": speed_m_s, "accuracy_m": accuracy_m, "at": now }))
                        .await?;
                }
                UnitEvent::UnitCapabilitiesChanged { .. } => {}
            },
            (AggregateRef::Incident(id), DomainEvent::Incident(ev)) => match ev {
                IncidentEvent::IncidentReported {
                    location,
                    incident_type,
                    priority,
                    at,
                    ..
                } => {
                    let waited_ms = received
                        .get(&id)
                        .map_or(0, |r| (at - *r).num_milliseconds().max(0));
                    let answered =
                        now - chrono::Duration::milliseconds((waited_ms as f64 / scale) as i64);
                    client
                        .post("/api/incidents", json!({ "id": id, "location": location, "incident_type": incident_type, "priority": priority, "source": "hotline", "call_received_at": answered }))
                        .await?;
                }
                IncidentEvent::IncidentClosed { disposition, .. } => {
                    client
                        .post(
                            &format!("/api/incidents/{id}/close"),
                            json!({ "disposition": disposition }),
                        )
                        .await?;
                }
                _ => {}
            },
            _ => {}
        }
        if n % 256 == 0 {
            progress(n);
        }
    }
    progress(events.len());
    client.stats.wall_s = started.elapsed().as_secs_f64();
    Ok(client.stats)
}
