//! `muster bench gateway`: many device connections to one gateway on loopback, memory per
//! connection, and the latency of task pushes at a fixed rate, next to a baseline measured in
//! the same run.
//!
//! Everything runs in one process: the embedded store (in a temporary directory), the
//! gateway, and the devices (plain websocket readers that acknowledge each delivery).
//!
//! - **Memory per connection**: the growth of the process's resident memory while the
//!   devices connect, divided by their number. It holds both ends of each connection (the
//!   gateway's session and the bench's device), so the gateway's share is below it.
//! - **Push latency**: from the moment the append of the assignment returned (committed,
//!   durable) to the moment the device read the task off its socket. A device may read a task
//!   before the append call has returned to the bench; such a latency counts as zero.
//! - **Baseline**: the same moment to the moment a plain `$all` subscription in the same
//!   process received the assignment: the store's own delivery, without the gateway, the
//!   websocket and the device. The ratio is gateway over baseline.
//!
//! Each run assigns `rate × seconds` tasks at a steady rate, each to a different unit, then
//! completes them; figures are medians over the runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use muster_core::event::{EventIds, encode_batch};
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::{Agency, CallSign, StationCode, UnitKind};
use muster_core::{IncidentId, TaskId, UnitId};
use muster_store::{
    EmbeddedOptions, EmbeddedStore, EventMetadata, EventStore, EventStoreExt, ExpectedState,
    MemoryStore, SubscribeFrom,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::gateway::{self, GatewayConfig};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::token::HmacTokens;

/// Arguments of `muster bench gateway`.
#[derive(Debug, Args)]
pub struct BenchGatewayArgs {
    /// Concurrent device connections (one unit each).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Tasks assigned per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Use the in-memory store instead of the embedded one.
    #[arg(long)]
    memory_store: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Tasks assigned.
    pub tasks: usize,
    /// Tasks per second actually reached.
    pub achieved_rate: f64,
    /// Tasks that did not reach their device within 30 s.
    pub lost: usize,
    /// Gateway push, commit to device: median.
    pub push_p50_ms: f64,
    /// Gateway push, commit to device: 99th percentile.
    pub push_p99_ms: f64,
    /// Gateway push, commit to device: maximum.
    pub push_max_ms: f64,
    /// Baseline, commit to `$all` subscriber: median.
    pub baseline_p50_ms: f64,
    /// Baseline, commit to `$all` subscriber: 99th percentile.
    pub baseline_p99_ms: f64,
    /// Append call to commit acknowledged: median.
    pub commit_p50_ms: f64,
    /// Append call to commit acknowledged: 99th percentile.
    pub commit_p99_ms: f64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `embedded` or `memory`.
    pub store: &'static str,
    /// Connections held open.
    pub connections: usize,
    /// Seconds it took to open them all.
    pub connect_secs: f64,
    /// Resident memory before connecting.
    pub rss_before_bytes: u64,
    /// Resident memory with every connection open and idle.
    pub rss_connected_bytes: u64,
    /// Growth per connection, both ends (gateway session and bench device).
    pub bytes_per_connection_both_ends: u64,
    /// Target rate.
    pub rate: u64,
    /// Each run.
    pub runs: Vec<RunReport>,
    /// Median over runs of the push p50.
    pub push_p50_ms: f64,
    /// Median over runs of the push p99.
    pub push_p99_ms: f64,
    /// Median over runs of the baseline p50.
    pub baseline_p50_ms: f64,
    /// Median over runs of the baseline p99.
    pub baseline_p99_ms: f64,
    /// push p50 / baseline p50.
    pub ratio_p50: f64,
    /// push p99 / baseline p99.
    pub ratio_p99: f64,
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs `muster bench gateway`.
pub fn run_bench_gateway(args: BenchGatewayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(bench(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &BenchReport) {
    println!(
        "connections: {} open in {:.1} s; resident memory {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection (both ends)",
        r.connections,
        r.connect_secs,
        r.rss_before_bytes as f64 / 1048576.0,
        r.rss_connected_bytes as f64 / 1048576.0,
        r.bytes_per_connection_both_ends as f64 / 1024.0
    );
    for (i, run) in r.runs.iter().enumerate() {
        println!(
            "run {}: {} tasks at {:.0}/s, lost {}; push p50 {:.2} ms p99 {:.2} ms max {:.2} ms; baseline p50 {:.2} ms p99 {:.2} ms; commit p50 {:.2} ms p99 {:.2} ms",
            i + 1,
            run.tasks,
            run.achieved_rate,
            run.lost,
            run.push_p50_ms,
            run.push_p99_ms,
            run.push_max_ms,
            run.baseline_p50_ms,
            run.baseline_p99_ms,
            run.commit_p50_ms,
            run.commit_p99_ms
        );
    }
    println!(
        "median of {} runs ({} store, {} tasks/s): push p50 {:.2} ms, p99 {:.2} ms; baseline p50 {:.2} ms, p99 {:.2} ms; ratio p50 {:.1}x, p99 {:.1}x",
        r.runs.len(),
        r.store,
        r.rate,
        r.push_p50_ms,
        r.push_p99_ms,
        r.baseline_p50_ms,
        r.baseline_p99_ms,
        r.ratio_p50,
        r.ratio_p99
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_device(url: &str, token: String) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let hello = ClientMessage::Hello {
        v: 1,
        token,
        unit: None,
        resume_after: Some(1),
    };
    ws.send(Message::text(hello.to_json())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"welcome\"") => Ok(ws),
        other => anyhow::bail!("no welcome: {other:?}"),
    }
}

async fn read_device(mut ws: Ws, received: mpsc::UnboundedSender<(TaskId, Instant)>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let now = Instant::now();
        let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
            continue;
        };
        if let ServerMessage::Task { task, .. } = &message {
            let _ = received.send((task.task, now));
        }
        if let Some(seq) = message.seq() {
            let ack = ClientMessage::Ack { seq };
            if ws.send(Message::text(ack.to_json())).await.is_err() {
                return;
            }
        }
    }
}

async fn bench(args: &BenchGatewayArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        args.connections > 0 && args.rate > 0 && args.runs > 0,
        "counts must be positive"
    );
    let tasks_per_run = (args.rate * args.seconds) as usize;
    anyhow::ensure!(
        tasks_per_run <= args.connections,
        "each task of a run goes to a different unit: --rate × --seconds ({tasks_per_run}) must not exceed --connections ({})",
        args.connections
    );
    let wanted_fds = (args.connections as u64) * 2 + 1024;
    let fds = rlimit::increase_nofile_limit(wanted_fds).context("raising the open file limit")?;
    anyhow::ensure!(
        fds >= wanted_fds,
        "the open file limit is {fds}; {wanted_fds} are needed for {} connections",
        args.connections
    );
    let dir = tempfile_dir()?;
    let store: Arc<dyn EventStore> = if args.memory_store {
        Arc::new(MemoryStore::new())
    } else {
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?)
    };
    // Units.
    let units: Vec<UnitId> = (0..args.connections).map(|_| UnitId::new_v7()).collect();
    let metadata = EventMetadata::default();
    futures::stream::iter(units.iter().enumerate())
        .map(|(i, unit)| {
            let store = store.clone();
            let metadata = metadata.clone();
            async move {
                let stream = unit.stream_name();
                let event = UnitEvent::UnitRegistered {
                    unit_id: *unit,
                    kind: UnitKind::parse("engine")?,
                    call_sign: CallSign::parse(&format!("B{i}"))?,
                    agency: Agency::parse("fire")?,
                    home_station: StationCode::parse("s1")?,
                    capabilities: Default::default(),
                    at: Utc::now(),
                };
                let new = encode_batch(&stream, &[event], EventIds::Fresh, &metadata)?;
                store.append(&stream, ExpectedState::NoStream, new).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    // Gateway.
    let tokens = HmacTokens::new(vec![7u8; 32])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway_task = tokio::spawn(gateway::run(
        listener,
        store.clone(),
        Arc::new(tokens.clone()),
        GatewayConfig {
            ack_timeout: None,
            ..GatewayConfig::default()
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    // Devices.
    let rss_before = rss_bytes();
    let started = Instant::now();
    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let expires = Utc::now() + chrono::Duration::hours(2);
    let connected = futures::stream::iter(units.iter())
        .map(|unit| connect_device(&url, tokens.issue(*unit, expires)))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let mut open = 0;
    for ws in connected {
        let ws = ws.context("a device could not connect")?;
        tokio::spawn(read_device(ws, received_tx.clone()));
        open += 1;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let allocations settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_bytes();
    // Baseline subscriber.
    let (base_tx, mut base_rx) = mpsc::unbounded_channel::<(TaskId, Instant)>();
    let mut subscription = store.subscribe_all(SubscribeFrom::End);
    tokio::spawn(async move {
        while let Ok(recorded) = subscription.next().await {
            if recorded.event_type != "TaskAssigned" {
                continue;
            }
            let now = Instant::now();
            if let Ok(value) = recorded.decode::<serde_json::Value>()
                && let Some(task) = value["task"].as_str().and_then(|t| TaskId::parse(t).ok())
            {
                let _ = base_tx.send((task, now));
            }
        }
    });
    // Runs.
    let mut revisions = vec![0u64; units.len()];
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let period = Duration::from_secs_f64(1.0 / args.rate as f64);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (commit_tx, mut commit_rx) = mpsc::unbounded_channel::<(TaskId, Instant, Instant)>();
        let mut handles = Vec::with_capacity(tasks_per_run);
        let mut assigned = Vec::with_capacity(tasks_per_run);
        let run_start = Instant::now();
        for (i, &unit) in units.iter().enumerate().take(tasks_per_run) {
            tick.tick().await;
            let task = TaskId::new_v7();
            let incident = IncidentId::new_v7();
            assigned.push((i, unit, task, incident));
            let store = store.clone();
            let commit_tx = commit_tx.clone();
            let expected = ExpectedState::Revision(revisions[i]);
            handles.push(tokio::spawn(async move {
                let now = Utc::now();
                let events = [
                    UnitEvent::TaskAssigned {
                        task,
                        incident,
                        at: now,
                    },
                    UnitEvent::UnitStatusChanged {
                        from: UnitStatus::Available,
                        to: UnitStatus::Dispatched,
                        incident: Some(incident),
                        task: Some(task),
                        at: now,
                    },
                ];
                let stream = unit.stream_name();
                let new =
                    encode_batch(&stream, &events, EventIds::Fresh, &EventMetadata::default())?;
                let start = Instant::now();
                store.append(&stream, expected, new).await?;
                let _ = commit_tx.send((task, start, Instant::now()));
                anyhow::Ok(())
            }));
        }
        for h in handles {
            h.await??;
        }
        let achieved_rate = tasks_per_run as f64 / run_start.elapsed().as_secs_f64();
        drop(commit_tx);
        let mut commits = HashMap::new();
        while let Some((task, start, commit)) = commit_rx.recv().await {
            commits.insert(task, (start, commit));
        }
        // Wait for every task at its device and at the baseline.
        let mut device_at = HashMap::new();
        let mut base_at = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while device_at.len() < tasks_per_run || base_at.len() < tasks_per_run {
            tokio::select! {
                Some((task, at)) = received_rx.recv() => { if commits.contains_key(&task) { device_at.insert(task, at); } }
                Some((task, at)) = base_rx.recv() => { if commits.contains_key(&task) { base_at.insert(task, at); } }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut push = Histogram::<u64>::new(3)?;
        let mut base = Histogram::<u64>::new(3)?;
        let mut commit_h = Histogram::<u64>::new(3)?;
        for (task, (start, commit)) in &commits {
            commit_h.record(commit.duration_since(*start).as_micros() as u64)?;
            if let Some(at) = device_at.get(task) {
                push.record(at.saturating_duration_since(*commit).as_micros() as u64)?;
            }
            if let Some(at) = base_at.get(task) {
                base.record(at.saturating_duration_since(*commit).as_micros() as u64)?;
            }
        }
        let report = RunReport {
            tasks: tasks_per_run,
            achieved_rate,
            lost: tasks_per_run - device_at.len(),
            push_p50_ms: ms(&push, 0.5),
            push_p99_ms: ms(&push, 0.99),
            push_max_ms: push.max() as f64 / 1000.0,
            baseline_p50_ms: ms(&base, 0.5),
            baseline_p99_ms: ms(&base, 0.99),
            commit_p50_ms: ms(&commit_h, 0.5),
            commit_p99_ms: ms(&commit_h, 0.99),
        };
        if !args.json {
            eprintln!(
                "run {} of {}: push p99 {:.2} ms",
                run + 1,
                args.runs,
                report.push_p99_ms
            );
        }
        runs.push(report);
        // Free the units for the next run.
        let results = futures::stream::iter(assigned)
            .map(|(i, unit, task, incident)| {
                let store = store.clone();
                let expected = ExpectedState::Revision(revisions[i] + 2);
                async move {
                    let now = Utc::now();
                    let events = [
                        UnitEvent::TaskCompleted {
                            task,
                            incident,
                            at: now,
                        },
                        UnitEvent::UnitStatusChanged {
                            from: UnitStatus::Dispatched,
                            to: UnitStatus::Available,
                            incident: Some(incident),
                            task: Some(task),
                            at: now,
                        },
                    ];
                    let stream = unit.stream_name();
                    let new =
                        encode_batch(&stream, &events, EventIds::Fresh, &EventMetadata::default())?;
                    store.append(&stream, expected, new).await?;
                    anyhow::Ok(i)
                }
            })
            .buffer_unordered(512)
            .collect::<Vec<_>>()
            .await;
        for r in results {
            revisions[r?] += 4;
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), gateway_task).await;
    let pick = |f: fn(&RunReport) -> f64| median(runs.iter().map(f).collect());
    let push_p50_ms = pick(|r| r.push_p50_ms);
    let push_p99_ms = pick(|r| r.push_p99_ms);
    let baseline_p50_ms = pick(|r| r.baseline_p50_ms);
    let baseline_p99_ms = pick(|r| r.baseline_p99_ms);
    Ok(BenchReport {
        store: if args.memory_store {
            "memory"
        } else {
            "embedded"
        },
        connections: open,
        connect_secs,
        rss_before_bytes: rss_before,
        rss_connected_bytes: rss_connected,
        bytes_per_connection_both_ends: rss_connected.saturating_sub(rss_before)
            / open.max(1) as u64,
        rate: args.rate,
        runs,
        push_p50_ms,
        push_p99_ms,
        baseline_p50_ms,
        baseline_p99_ms,
        ratio_p50: push_p50_ms / baseline_p50_ms.max(0.001),
        ratio_p99: push_p99_ms / baseline_p99_ms.max(0.001),
    })
}

/// A temporary directory for the bench's store, removed at the end.
fn tempfile_dir() -> anyhow::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("muster-bench-gateway-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&path)?;
    Ok(TempDir { path })
}

#[derive(Debug)]
struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
