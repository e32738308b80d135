//! `muster bench e2e` and `muster bench projections`: the command-line side; the
//! measurements live in `muster_server::benches`.

use super::harness::{E2eSettings, projections_run};
use clap::Args;
use serde_json::json;

use super::stats::Summary;

/// Arguments of `muster bench e2e`.
#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Incidents offered per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Runs; figures are medians over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Servers: more than one run on one PostgreSQL database (made fresh for each run),
    /// incidents created through the first and the wall display on the last.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The PostgreSQL server for `--nodes` above 1, as a `postgres://user@host:port/db` URL.
    #[arg(long, env = "MUSTER_BENCH_POSTGRES")]
    postgres: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `muster bench projections`.
#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    /// Events in the log to rebuild from.
    #[arg(long, default_value_t = 300_000)]
    events: u64,
    /// Runs over the same log; figures are medians over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs `muster bench e2e`.
pub fn run_e2e(args: E2eArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate > 0 && args.seconds > 0.0 && args.runs > 0,
        "rate, seconds and runs must be positive"
    );
    let rt = runtime()?;
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let settings = E2eSettings {
        rate_per_s: args.rate,
        seconds: args.seconds,
        nodes: args.nodes,
        postgres: args.postgres.clone(),
    };
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let r = rt.block_on(super::harness::e2e_run(settings.clone()))?;
        if !args.json {
            eprintln!(
                "run {}: e2e p50 {:.2} ms p99 {:.2} ms; baseline p50 {:.2} ms p99 {:.2} ms; {} of {} deltas seen",
                i + 1,
                r.e2e_p50_ms,
                r.e2e_p99_ms,
                r.baseline_p50_ms,
                r.baseline_p99_ms,
                r.seen,
                r.offered
            );
        }
        runs.push(r);
    }
    let s = |f: fn(&super::harness::RunFigures) -> f64| Summary::of(runs.iter().map(f).collect());
    let (p50, p99, b50, b99) = (
        s(|r| r.e2e_p50_ms),
        s(|r| r.e2e_p99_ms),
        s(|r| r.baseline_p50_ms),
        s(|r| r.baseline_p99_ms),
    );
    let ratio = p99.median / b99.median;
    // One node: the wall display's target; several: a delta on another node than the create's.
    let target = if args.nodes > 1 { 50.0 } else { 20.0 };
    let all_seen = runs.iter().all(|r| r.seen == r.offered);
    if args.json {
        println!(
            "{}",
            json!({
                "bench": "e2e", "rate_per_s": args.rate, "seconds": args.seconds, "runs": args.runs,
                "e2e_p50_ms": p50, "e2e_p99_ms": p99, "baseline_p50_ms": b50, "baseline_p99_ms": b99,
                "p99_ratio_to_baseline": ratio, "target_p99_ms": target, "every_delta_seen": all_seen,
                "nodes": args.nodes,
            })
        );
    } else {
        let nodes = if args.nodes > 1 {
            format!(" on another node ({} nodes on PostgreSQL)", args.nodes)
        } else {
            String::new()
        };
        println!(
            "hotline create -> wall-display delta{nodes}, {} incidents/s offered, {} s x {} runs (medians)",
            args.rate, args.seconds, args.runs
        );
        println!(
            "  e2e       p50 {:>8.2} ms   p99 {:>8.2} ms   (target p99 <= {target} ms)",
            p50.median, p99.median
        );
        println!(
            "  baseline  p50 {:>8.2} ms   p99 {:>8.2} ms   (append -> $all subscription, no HTTP)",
            b50.median, b99.median
        );
        println!("  p99 ratio e2e / baseline: {ratio:.2}; every delta seen: {all_seen}");
    }
    Ok(())
}

/// Runs `muster bench projections`.
pub fn run_projections(args: ProjectionsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.events > 0,
        "events and runs must be positive"
    );
    let rt = runtime()?;
    let dir = tempfile::tempdir()?;
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        runs.push(rt.block_on(projections_run(dir.path(), args.events))?);
    }
    let events = runs[0].events;
    let rebuild = Summary::of(runs.iter().map(|r| r.rebuild_events_per_s).collect());
    let scan = Summary::of(runs.iter().map(|r| r.scan_events_per_s).collect());
    let ratio = rebuild.median / scan.median;
    if args.json {
        println!(
            "{}",
            json!({"bench": "projections", "events": events, "runs": args.runs,
                   "rebuild_events_per_s": rebuild, "scan_events_per_s": scan,
                   "rebuild_to_scan_ratio": ratio, "target_events_per_s": 300000})
        );
    } else {
        println!(
            "projection rebuild from a log of {events} events, {} runs (medians)",
            args.runs
        );
        println!(
            "  rebuild (read, decode, fold)  {:>12.0} events/s   (target >= 300,000)",
            rebuild.median
        );
        println!(
            "  baseline (read $all only)     {:>12.0} events/s",
            scan.median
        );
        println!("  ratio rebuild / scan: {ratio:.2}");
    }
    Ok(())
}
