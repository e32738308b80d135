//! `muster bench gateway`: many device connections to one gateway on loopback, memory per
//! connection, and the latency of task pushes at a fixed rate, next to a baseline measured in
//! the same run.
//!
//! Two processes: this one holds the embedded store (in a temporary directory) and the
//! gateway; a child process (the same binary) holds the devices, plain websocket readers that
//! acknowledge each delivery. Two processes because one process may not have enough file
//! descriptors for both ends of 10,000 connections, and so that the gateway's memory is
//! measured alone.
//!
//! - **Memory per connection**: the growth of the gateway process's resident memory while the
//!   devices connect, divided by their number (the devices' process is reported too).
//! - **Push latency**: from the moment the append of the assignment returned (committed,
//!   durable) to the moment the device read the task off its socket, both taken from the
//!   system clock (the processes share it). A device may read a task before the append call
//!   has returned to the bench; such a latency counts as zero.
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
use muster_core::Aggregate;
use muster_core::event::{EventIds, encode_batch};
use muster_core::incident::{IncidentCommand, IncidentState, ReportSource};
use muster_core::stats::median;
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::{
    Agency, CallSign, CallerDetails, IncidentType, LatLon, PhoneNumber, Priority, StationCode,
    UnitKind,
};
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
    /// Internal: run as the device fleet connecting to this gateway, tokens on stdin.
    #[arg(long, hide = true)]
    fleet_url: Option<String>,
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
    /// Gateway push from the append call (commit included) to device: median.
    pub push_from_append_p50_ms: f64,
    /// Gateway push from the append call (commit included) to device: 99th percentile.
    pub push_from_append_p99_ms: f64,
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
    /// The gateway process's resident memory before the devices connected.
    pub rss_before_bytes: u64,
    /// The gateway process's resident memory with every connection open and idle.
    pub rss_connected_bytes: u64,
    /// Growth of the gateway process per connection.
    pub gateway_bytes_per_connection: u64,
    /// Growth of the devices' process per connection (the client side, for comparison).
    pub device_bytes_per_connection: u64,
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

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Runs `muster bench gateway`.
pub fn run_bench_gateway(args: BenchGatewayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(url) = &args.fleet_url {
        return runtime.block_on(fleet(url));
    }
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
        "connections: {} open in {:.1} s; gateway resident memory {:.1} MiB -> {:.1} MiB: {:.1} KiB per connection (devices' process: {:.1} KiB per connection)",
        r.connections,
        r.connect_secs,
        r.rss_before_bytes as f64 / 1048576.0,
        r.rss_connected_bytes as f64 / 1048576.0,
        r.gateway_bytes_per_connection as f64 / 1024.0,
        r.device_bytes_per_connection as f64 / 1024.0
    );
    for (i, run) in r.runs.iter().enumerate() {
        println!(
            "run {}: {} tasks at {:.0}/s, lost {}; push p50 {:.2} ms p99 {:.2} ms max {:.2} ms (from the append call: p50 {:.2} ms p99 {:.2} ms); baseline p50 {:.2} ms p99 {:.2} ms; commit p50 {:.2} ms p99 {:.2} ms",
            i + 1,
            run.tasks,
            run.achieved_rate,
            run.lost,
            run.push_p50_ms,
            run.push_p99_ms,
            run.push_max_ms,
            run.push_from_append_p50_ms,
            run.push_from_append_p99_ms,
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

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

async fn read_device(mut ws: Ws, received: mpsc::UnboundedSender<(TaskId, u128)>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let now = unix_nanos();
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
    let wanted_fds = args.connections as u64 + 256;
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
    // Devices, in a child process.
    let rss_before = rss_bytes();
    let started = Instant::now();
    let expires = Utc::now() + chrono::Duration::hours(2);
    let argv: Vec<String> = std::env::args().collect();
    let upto = argv
        .iter()
        .rposition(|a| a == "gateway")
        .context("the bench runs as `… bench gateway`")?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(&argv[1..=upto])
        .args(["--fleet-url", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the devices' process")?;
    {
        let mut stdin = child.stdin.take().context("the devices' stdin")?;
        let mut tokens_text = String::with_capacity(units.len() * 100);
        for unit in &units {
            tokens_text.push_str(&tokens.issue(*unit, expires));
            tokens_text.push('\n');
        }
        tokio::io::AsyncWriteExt::write_all(&mut stdin, tokens_text.as_bytes()).await?;
    }
    let stdout = child.stdout.take().context("the devices' stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready = lines
        .next_line()
        .await?
        .context("the devices' process ended before connecting")?;
    let mut parts = ready.split_whitespace();
    anyhow::ensure!(
        parts.next() == Some("ready"),
        "the devices' process said {ready:?}"
    );
    let open: usize = parts.next().context("count")?.parse()?;
    let device_rss_growth: u64 = parts.next().context("rss")?.parse()?;
    let connect_secs = started.elapsed().as_secs_f64();
    let (received_tx, mut received_rx) = mpsc::unbounded_channel::<(TaskId, u128)>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut parts = line.split_whitespace();
            if let (Some(task), Some(at)) = (parts.next(), parts.next())
                && let (Ok(task), Ok(at)) = (TaskId::parse(task), at.parse::<u128>())
            {
                let _ = received_tx.send((task, at));
            }
        }
    });
    // Let allocations settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_bytes();
    // Baseline subscriber.
    let (base_tx, mut base_rx) = mpsc::unbounded_channel::<(TaskId, u128)>();
    let mut subscription = store.subscribe_all(SubscribeFrom::End);
    tokio::spawn(async move {
        while let Ok(recorded) = subscription.next().await {
            if recorded.event_type != "TaskAssigned" {
                continue;
            }
            let now = unix_nanos();
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
        let (commit_tx, mut commit_rx) = mpsc::unbounded_channel::<(TaskId, u128, u128)>();
        let mut handles = Vec::with_capacity(tasks_per_run);
        let mut assigned = Vec::with_capacity(tasks_per_run);
        // The incidents, reported before the clock starts, so that each task carries the
        // incident's details as it would in service.
        let incidents = report_incidents(&store, tasks_per_run).await?;
        let period = Duration::from_secs_f64(1.0 / args.rate as f64);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let run_start = Instant::now();
        for (i, &unit) in units.iter().enumerate().take(tasks_per_run) {
            tick.tick().await;
            let task = TaskId::new_v7();
            let incident = incidents[i];
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
                let start = unix_nanos();
                store.append(&stream, expected, new).await?;
                let _ = commit_tx.send((task, start, unix_nanos()));
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
        let mut push_from_append = Histogram::<u64>::new(3)?;
        let micros = |from: u128, to: u128| (to.saturating_sub(from) / 1000) as u64;
        for (task, (start, commit)) in &commits {
            commit_h.record(micros(*start, *commit))?;
            if let Some(at) = device_at.get(task) {
                push.record(micros(*commit, *at))?;
                push_from_append.record(micros(*start, *at))?;
            }
            if let Some(at) = base_at.get(task) {
                base.record(micros(*commit, *at))?;
            }
        }
        let report = RunReport {
            tasks: tasks_per_run,
            achieved_rate,
            lost: tasks_per_run - device_at.len(),
            push_p50_ms: ms(&push, 0.5),
            push_p99_ms: ms(&push, 0.99),
            push_max_ms: push.max() as f64 / 1000.0,
            push_from_append_p50_ms: ms(&push_from_append, 0.5),
            push_from_append_p99_ms: ms(&push_from_append, 0.99),
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
    let _ = child.kill().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), gateway_task).await;
    let pick = |f: fn(&RunReport) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
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
        gateway_bytes_per_connection: rss_connected.saturating_sub(rss_before) / open.max(1) as u64,
        device_bytes_per_connection: device_rss_growth / open.max(1) as u64,
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

/// Reports `count` incidents (with a call-back number, as a hotline call has) concurrently.
async fn report_incidents(
    store: &Arc<dyn EventStore>,
    count: usize,
) -> anyhow::Result<Vec<IncidentId>> {
    let ids: Vec<IncidentId> = (0..count).map(|_| IncidentId::new_v7()).collect();
    futures::stream::iter(ids.clone())
        .map(|incident| {
            let store = store.clone();
            async move {
                let now = Utc::now();
                let events = IncidentState::default().decide(IncidentCommand::Report {
                    incident_id: incident,
                    source: ReportSource::Hotline,
                    location: LatLon::from_lat_lon(60.17, 24.94)?,
                    incident_type: IncidentType::StructureFire,
                    priority: Priority::P1,
                    caller: CallerDetails {
                        name: None,
                        call_back: Some(PhoneNumber::parse("+358401234567")?),
                        sealed: None,
                    },
                    call_received_at: now,
                    at: now,
                })?;
                let stream = incident.stream_name();
                let new =
                    encode_batch(&stream, &events, EventIds::Fresh, &EventMetadata::default())?;
                store.append(&stream, ExpectedState::NoStream, new).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(ids)
}

/// The devices' process: reads tokens from stdin, connects one device per token, prints
/// `ready <connections> <resident memory growth>` and then `<task id> <unix nanos>` for each
/// task a device reads.
async fn fleet(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut tokens = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        tokens.push(line);
    }
    let wanted = tokens.len() as u64 + 256;
    let fds = rlimit::increase_nofile_limit(wanted)?;
    anyhow::ensure!(
        fds >= wanted,
        "the open file limit is {fds}; {wanted} are needed"
    );
    let rss_before = rss_bytes();
    let (received_tx, mut received_rx) = mpsc::unbounded_channel();
    let connected = futures::stream::iter(tokens)
        .map(|token| connect_device(url, token))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let mut open = 0;
    for ws in connected {
        let ws = ws.context("a device could not connect")?;
        tokio::spawn(read_device(ws, received_tx.clone()));
        open += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let growth = rss_bytes().saturating_sub(rss_before);
    let mut out = tokio::io::stdout();
    out.write_all(format!("ready {open} {growth}\n").as_bytes())
        .await?;
    out.flush().await?;
    while let Some((task, at)) = received_rx.recv().await {
        let mut line = format!("{task} {at}\n");
        while let Ok((task, at)) = received_rx.try_recv() {
            line.push_str(&format!("{task} {at}\n"));
        }
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
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
