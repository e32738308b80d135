//! The measuring parts of `muster bench e2e` and `muster bench projections`: a server under
//! offered load with a wall-display client, and a log filled for rebuilds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use futures::StreamExt;
use hdrhistogram::Histogram;
use muster_core::IncidentId;
use muster_core::event::{EventIds, encode_batch};
use muster_core::incident::{IncidentEvent, ReportSource};
use muster_core::value::{CallerDetails, IncidentType, LatLon, Priority};
use muster_store::{EventMetadata, EventStoreExt, ExpectedState, SubscribeFrom};
use serde_json::json;

use anyhow::Context;
use muster_server::areas::Areas;
use muster_server::auth::{Role, UserConfig};
use muster_server::views::rebuild;
use muster_server::{Application, Config};
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, Position};

/// Settings of `muster bench e2e`.
#[derive(Debug, Clone)]
pub struct E2eSettings {
    /// Incidents offered per second (open loop: sent on schedule, not after answers).
    pub rate_per_s: u32,
    /// Seconds of load per run.
    pub seconds: f64,
    /// Nodes: 1 runs one server on the embedded store; more run that many servers on one
    /// PostgreSQL database (made fresh for the run on `postgres`), incidents created through
    /// the first and the wall display connected to the second.
    pub nodes: usize,
    /// The PostgreSQL server, as a `postgres://` URL, for several nodes.
    pub postgres: Option<String>,
}

/// A fresh database on the server `url` names; answers its URL.
async fn fresh_database(url: &str) -> anyhow::Result<(String, String)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
    tokio::spawn(connection);
    let name = format!("muster_bench_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    let base = url.split('?').next().unwrap_or(url);
    let (server, _) = base
        .rsplit_once('/')
        .context("the PostgreSQL URL names no database (postgres://user@host:port/db)")?;
    Ok((format!("{server}/{name}"), name))
}

async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// One run's figures, milliseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RunFigures {
    /// Median create -> delta on the display.
    pub e2e_p50_ms: f64,
    /// 99th percentile create -> delta.
    pub e2e_p99_ms: f64,
    /// Median bare append -> `$all` subscription.
    pub baseline_p50_ms: f64,
    /// 99th percentile bare append -> subscription.
    pub baseline_p99_ms: f64,
    /// Incidents whose delta arrived.
    pub seen: u64,
    /// Incidents offered.
    pub offered: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn incident_body(id: IncidentId, i: u64) -> serde_json::Value {
    json!({
        "id": id,
        "location": {"lat": 60.15 + (i % 97) as f64 * 0.0005, "lon": 24.90 + (i % 89) as f64 * 0.001},
        "incident_type": "medical",
        "priority": "P2",
    })
}

/// Hotline create -> delta on a connected wall-display websocket, at a fixed offered rate.
pub async fn e2e_run(settings: E2eSettings) -> anyhow::Result<RunFigures> {
    let dir = tempfile::tempdir()?;
    let database = match (&settings.postgres, settings.nodes > 1) {
        (Some(url), true) => Some(fresh_database(url).await?),
        (None, true) => anyhow::bail!(
            "--nodes above 1 needs a PostgreSQL server: --postgres postgres://… (or MUSTER_BENCH_POSTGRES)"
        ),
        _ => None,
    };
    let result = e2e_on(
        &settings,
        dir.path(),
        database.as_ref().map(|d| d.0.as_str()),
    )
    .await;
    if let (Some(url), Some((_, name))) = (&settings.postgres, &database) {
        drop_database(url, name).await?;
    }
    result
}

async fn e2e_on(
    settings: &E2eSettings,
    dir: &Path,
    store: Option<&str>,
) -> anyhow::Result<RunFigures> {
    let operator = "bench-operator-token-0123456789".to_string();
    let planner = "bench-planner-token-0123456789".to_string();
    let config = Config {
        data_dir: dir.join("e2e"),
        store: store.unwrap_or("embedded").to_owned(),
        bind: "127.0.0.1:0".into(),
        city: "grid".into(),
        users: vec![
            UserConfig {
                name: "bench-operator".into(),
                role: Role::Operator,
                token: operator.clone(),
                unit: None,
            },
            UserConfig {
                name: "bench-display".into(),
                role: Role::Planner,
                token: planner.clone(),
                unit: None,
            },
        ],
        ..Config::default()
    };
    let mut nodes = Vec::new();
    for n in 0..settings.nodes.max(1) {
        let config = Config {
            data_dir: dir.join(format!("e2e-{n}")),
            gateway_bind: "off".into(),
            ..config.clone()
        };
        let app = Application::build(config).await?;
        let port = app.port();
        let stopper = app.stopper();
        let running = tokio::spawn(app.run_until_stopped());
        nodes.push((port, stopper, running));
    }
    // Creates go to the first node; the wall display watches the last.
    let port = nodes[0].0;
    let display_port = nodes[nodes.len() - 1].0;

    let sent: Arc<Mutex<HashMap<IncidentId, Instant>>> = Arc::default();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{display_port}/api/feed"
        ))?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {planner}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    // The snapshot first.
    ws.next().await.context("no snapshot")??;
    let offered = (settings.rate_per_s as f64 * settings.seconds) as u64;
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut h = histogram();
            let mut seen = std::collections::HashSet::new();
            while (seen.len() as u64) < offered {
                let Ok(Some(Ok(message))) =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await
                else {
                    break;
                };
                let now = Instant::now();
                let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let Some(id) = v["incident"]["id"]
                    .as_str()
                    .and_then(|s| IncidentId::parse(s).ok())
                else {
                    continue;
                };
                if !seen.insert(id) {
                    continue;
                }
                if let Some(t) = sent.lock().unwrap().get(&id) {
                    let _ = h.record(now.duration_since(*t).as_micros().max(1) as u64);
                }
            }
            (h, seen.len() as u64)
        })
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/api/incidents");
    let interval = Duration::from_secs_f64(1.0 / settings.rate_per_s as f64);
    let start = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(offered as usize);
    for i in 0..offered {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let id = IncidentId::new_v7();
        let body = incident_body(id, i);
        sent.lock().unwrap().insert(id, Instant::now());
        let request = client
            .post(&url)
            .bearer_auth(&operator)
            .header("Idempotency-Key", format!("bench-e2e-{i:08}"))
            .json(&body);
        requests.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    for r in requests {
        let status = r.await??;
        anyhow::ensure!(status == 201, "a create answered {status}");
    }
    let (h, seen) = reader.await?;
    for (_, stopper, running) in nodes {
        stopper.stop().await;
        running.await??;
    }

    let (b50, b99) = baseline_run(dir.join("baseline"), settings, store).await?;
    Ok(RunFigures {
        e2e_p50_ms: ms(&h, 0.5),
        e2e_p99_ms: ms(&h, 0.99),
        baseline_p50_ms: b50,
        baseline_p99_ms: b99,
        seen,
        offered,
    })
}

/// The same offered rate of incident reports appended straight to the store and seen by a
/// `$all` subscription: no HTTP, no decision, no projection, no websocket. On PostgreSQL the
/// subscription is on a second store instance, as on another node.
async fn baseline_run(
    dir: std::path::PathBuf,
    settings: &E2eSettings,
    postgres: Option<&str>,
) -> anyhow::Result<(f64, f64)> {
    let (store, reader_store): (Arc<dyn EventStore>, Arc<dyn EventStore>) = match postgres {
        Some(url) => {
            let mut options = muster_store::postgres::PostgresOptions::new(url);
            options.schema = "muster_baseline".into();
            let writer = muster_store::postgres::PostgresStore::open(options.clone()).await?;
            let reader = muster_store::postgres::PostgresStore::open(options).await?;
            (Arc::new(writer), Arc::new(reader))
        }
        None => {
            let s: Arc<dyn EventStore> =
                Arc::new(EmbeddedStore::open(&dir, EmbeddedOptions::default())?);
            (s.clone(), s)
        }
    };
    let offered = (settings.rate_per_s as f64 * settings.seconds) as u64;
    let sent: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let mut sub = reader_store.subscribe_all(SubscribeFrom::Start);
    let reader = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut h = histogram();
            for _ in 0..offered {
                let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(10), sub.next()).await
                else {
                    break;
                };
                let now = Instant::now();
                if let Some(t) = sent.lock().unwrap().get(&e.id) {
                    let _ = h.record(now.duration_since(*t).as_micros().max(1) as u64);
                }
            }
            h
        })
    };
    let interval = Duration::from_secs_f64(1.0 / settings.rate_per_s as f64);
    let start = tokio::time::Instant::now();
    let mut appends = Vec::new();
    for i in 0..offered {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let id = IncidentId::new_v7();
        let stream = id.stream_name();
        let event = IncidentEvent::IncidentReported {
            incident_id: id,
            source: ReportSource::Hotline,
            location: LatLon::from_lat_lon(60.17, 24.94)?,
            incident_type: IncidentType::Medical,
            priority: Priority::P2,
            caller: CallerDetails::default(),
            at: chrono::Utc::now(),
        };
        let batch = encode_batch(
            &stream,
            &[event],
            EventIds::Fresh,
            &EventMetadata::default(),
        )?;
        sent.lock().unwrap().insert(batch[0].id, Instant::now());
        let store = store.clone();
        appends.push(tokio::spawn(async move {
            store.append(&stream, ExpectedState::NoStream, batch).await
        }));
    }
    for a in appends {
        a.await??;
    }
    let h = reader.await?;
    Ok((ms(&h, 0.5), ms(&h, 0.99)))
}

// ----------------------------------------------------------------------------------------
// muster bench projections

/// Figures of one projection rebuild run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ProjectionFigures {
    /// Events in the log.
    pub events: u64,
    /// Rebuild rate: read, decode and fold.
    pub rebuild_events_per_s: f64,
    /// Baseline: reading `$all` alone, no decoding.
    pub scan_events_per_s: f64,
}

/// Fills a store with a dispatch-centre-like mix (unit registrations, position reports,
/// incident reports with time points) of about `events` events.
pub async fn fill_store(store: &Arc<dyn EventStore>, events: u64) -> anyhow::Result<u64> {
    use muster_core::UnitId;
    use muster_core::unit::UnitEvent;
    use muster_core::value::{Agency, CallSign, StationCode, UnitKind};
    let units: Vec<UnitId> = (0..500).map(|_| UnitId::new_v7()).collect();
    let meta = EventMetadata::default();
    let at = chrono::Utc::now();
    let mut written = 0u64;
    for (i, u) in units.iter().enumerate() {
        let e = UnitEvent::UnitRegistered {
            unit_id: *u,
            kind: UnitKind::Engine,
            call_sign: CallSign::parse(&format!("E{i}"))?,
            agency: Agency::parse("bench")?,
            home_station: StationCode::parse("s-1")?,
            capabilities: Default::default(),
            at,
        };
        let s = u.stream_name();
        store
            .append(
                &s,
                ExpectedState::Any,
                encode_batch(&s, &[e], EventIds::Fresh, &meta)?,
            )
            .await?;
        written += 1;
    }
    let mut round = 0u64;
    while written < events {
        // 500 position reports per unit-stream append, then 100 incidents of 2 events.
        let u = units[(round as usize) % units.len()];
        let s = u.stream_name();
        let fixes: Vec<UnitEvent> = (0..500)
            .map(|k| UnitEvent::UnitPositionReported {
                position: LatLon::from_lat_lon(
                    60.1 + (k % 100) as f64 * 0.001,
                    24.9 + (k % 50) as f64 * 0.002,
                )
                .expect("valid"),
                heading_deg: Some(90.0),
                speed_m_s: Some(10.0),
                accuracy_m: None,
                at: at + chrono::Duration::seconds(k),
            })
            .collect();
        store
            .append(
                &s,
                ExpectedState::Any,
                encode_batch(&s, &fixes, EventIds::Fresh, &meta)?,
            )
            .await?;
        written += fixes.len() as u64;
        for _ in 0..100 {
            let id = IncidentId::new_v7();
            let s = id.stream_name();
            let events = [
                IncidentEvent::IncidentReported {
                    incident_id: id,
                    source: ReportSource::Hotline,
                    location: LatLon::from_lat_lon(60.17, 24.94)?,
                    incident_type: IncidentType::Medical,
                    priority: Priority::P2,
                    caller: CallerDetails::default(),
                    at,
                },
                IncidentEvent::IncidentPriorityUpdated {
                    priority: Priority::P1,
                    at,
                },
            ];
            store
                .append(
                    &s,
                    ExpectedState::NoStream,
                    encode_batch(&s, &events, EventIds::Fresh, &meta)?,
                )
                .await?;
            written += 2;
        }
        round += 1;
    }
    Ok(written)
}

/// Rebuild rate of the views from a filled log, against a bare scan of the same log.
pub async fn projections_run(dir: &Path, events: u64) -> anyhow::Result<ProjectionFigures> {
    let store: Arc<dyn EventStore> =
        Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default())?);
    if store.head() == Position::START {
        fill_store(&store, events).await?;
    }
    let total = store.head().0;
    let (areas, _) = Areas::from_setting("bundled")?;
    let started = Instant::now();
    let mut from = Position::START;
    let mut scanned = 0u64;
    loop {
        let page = store.read_all(from, 4096).await?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        scanned += page.len() as u64;
    }
    let scan_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (_, folded) = rebuild(&*store, &areas).await?;
    let rebuild_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        folded == total && scanned == total,
        "read {folded} and {scanned} of {total}"
    );
    Ok(ProjectionFigures {
        events: total,
        rebuild_events_per_s: total as f64 / rebuild_s,
        scan_events_per_s: total as f64 / scan_s,
    })
}
