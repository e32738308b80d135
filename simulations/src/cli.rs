//! `muster drill run | compare | replay` and `muster bench drill`: argument structs and run
//! functions, so the binary only wires them in.
//!
//! What they print goes through [`Out`]: when the reader of standard output goes away
//! (`muster drill run … | head -3`), the rest of the output is dropped and the command still
//! finishes its work (reports, a replay) and exits 0.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use muster_core::stats::median;
use muster_geodata::Router;
use muster_store::RecordedEvent;

use crate::engine::{DrillOutcome, RunOptions, run_with_router};
use crate::log::{canonical_bytes, read_lines, read_recording, read_store, sha256_hex};
use crate::report::{Report, build};
use crate::scenario::{Policy, Scenario};

/// `muster drill …`
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DrillCommand,
}

/// The drill subcommands.
#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Run a scenario in virtual time; print the log's hash; write the log and reports.
    Run {
        /// The scenario file (TOML), or a built-in sample: helsinki, generated-30km.
        scenario: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Dispatch policy instead of the scenario's: closest or joint.
        #[arg(long)]
        policy: Option<String>,
        /// Directory for events.jsonl, report.json and report.html.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run two scenarios (or one under two policies) and write one report side by side.
    Compare {
        /// First scenario (a file or a built-in sample name).
        a: PathBuf,
        /// Second scenario (the same file with --policy-b compares policies).
        b: PathBuf,
        /// Seed for both (default: each scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Policy for the first run.
        #[arg(long)]
        policy_a: Option<String>,
        /// Policy for the second run.
        #[arg(long)]
        policy_b: Option<String>,
        /// Directory for compare.json and compare.html.
        #[arg(long, default_value = "drill-compare")]
        report: PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Play a scenario into a running server as its time passes (at --speed): calls through
    /// the operator API, the server's dispatcher consulted, a simulated crew device per unit
    /// on the mobile gateway, so operators train on the real wall display.
    Live(crate::live::LiveArgs),
    /// Replay a recording (a JSON-lines log, canonical or `muster store dump` output, or an
    /// event store) into the engine at a speed; with --what-if, re-run its calls under
    /// another policy; with --server, into a running server through its operator API.
    Replay {
        /// The recording: a JSON-lines log (a drill's events.jsonl, `muster store dump`
        /// output), or an event store: a `muster serve` data directory or its events.redb.
        /// A store is only read; one a running server holds is refused (stop the server, or
        /// replay a copy made with `muster store backup`).
        log: PathBuf,
        /// Virtual seconds per wall second; 0 for as fast as possible.
        #[arg(long, default_value_t = 0.0)]
        speed: f64,
        /// A scenario giving the city and fleet (needed for --what-if and coverage).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Re-run the log's calls under this policy (closest or joint) and compare.
        #[arg(long)]
        what_if: Option<String>,
        /// Seed of the what-if run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory for the what-if comparison.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Replay into a running server at this address (such as http://127.0.0.1:8080)
        /// through its operator API instead of into the engine.
        #[arg(long)]
        server: Option<String>,
        /// Operator token for --server.
        #[arg(long, env = "MUSTER_TOKEN")]
        token: Option<String>,
        /// A PEM file of CA certificates to trust for an https:// --server besides the
        /// system's roots (such as ops/local-ca.sh's ca.pem). The certificate is always
        /// verified.
        #[arg(long, env = "MUSTER_CA_CERT")]
        ca_cert: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// `muster bench drill`
#[derive(Debug, Args)]
pub struct BenchDrillArgs {
    /// The scenario to time, a file or a built-in sample name (default: generated-30km, the
    /// 24-hour generated-city sample).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Standard output (or any writer) that treats a closed reader as the end of the output:
/// once a write meets [`std::io::ErrorKind::BrokenPipe`], it and every later write succeed
/// without writing anything. Other errors are returned.
#[derive(Debug)]
pub struct Out<W: Write = std::io::Stdout> {
    inner: W,
    closed: bool,
}

impl Out {
    /// Standard output.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }
}

impl<W: Write> Out<W> {
    /// Wraps a writer.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn gone<T>(&mut self, result: std::io::Result<T>, none: T) -> std::io::Result<T> {
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(none)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let written = self.inner.write(buf);
        self.gone(written, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.inner.flush();
        self.gone(flushed, ())
    }
}

fn parse_policy(p: &Option<String>) -> anyhow::Result<Option<Policy>> {
    match p {
        None => Ok(None),
        Some(s) => Policy::parse(s)
            .map(Some)
            .with_context(|| format!("{s:?} is not a policy; known: closest, joint")),
    }
}

fn bar(total: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(total);
    b.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_owned());
    b
}

/// A finished run with its log and report.
#[derive(Debug)]
pub struct Finished {
    /// The outcome.
    pub outcome: DrillOutcome,
    /// The log, in order.
    pub events: Vec<RecordedEvent>,
    /// Canonical log bytes.
    pub log: Vec<u8>,
    /// Its SHA-256.
    pub sha256: String,
    /// The report.
    pub report: Report,
    /// Seconds: preparing the router, running, building the report.
    pub timings: (f64, f64, f64),
}

/// Runs one scenario and builds its report.
pub fn run_scenario(
    scenario: &Scenario,
    options: &RunOptions,
    quiet: bool,
    label: &str,
) -> anyhow::Result<Finished> {
    let t0 = Instant::now();
    let router =
        Arc::new(Router::new(scenario.city.clone()).context("the city cannot be routed on")?);
    let prepared = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let b = bar(1000, quiet, label);
    let outcome = run_with_router(scenario, options, router.clone(), &mut |done, total| {
        b.set_position((done * 1000 / total.max(1)) as u64);
        b.set_message(format!(
            "{:.1} of {:.1} virtual hours",
            done as f64 / 3.6e6,
            total as f64 / 3.6e6
        ));
    })?;
    b.finish_and_clear();
    let ran = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let events = read_store(outcome.store.as_ref())?;
    let log = canonical_bytes(&events);
    let sha256 = sha256_hex(&log);
    let mut report = build(label, &events, Some(router));
    report.log_sha256 = Some(sha256.clone());
    Ok(Finished {
        outcome,
        events,
        log,
        sha256,
        report,
        timings: (prepared, ran, t2.elapsed().as_secs_f64()),
    })
}

fn write_report(dir: &Path, name: &str, reports: &[&Report]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = if reports.len() == 1 {
        serde_json::to_vec_pretty(reports[0])?
    } else {
        serde_json::to_vec_pretty(reports)?
    };
    std::fs::write(dir.join(format!("{name}.json")), json)?;
    std::fs::write(dir.join(format!("{name}.html")), crate::html::page(reports))?;
    Ok(())
}

fn summary(out: &mut impl Write, f: &Finished) -> std::io::Result<()> {
    let o = &f.outcome;
    writeln!(
        out,
        "{}: {} calls, {} events, {} routes, {} refusals; policy {}",
        f.report.title, o.calls, o.events, o.routes, o.refusals, o.policy
    )?;
    for t in &f.report.targets {
        writeln!(
            out,
            "  {:<44} p90 {:>6}  target {:>4.0} s  {}",
            t.measure,
            t.distribution
                .p90_s
                .map_or("–".into(), |x| format!("{x:.0} s")),
            t.target_s,
            match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "no samples",
            }
        )?;
    }
    writeln!(out, "  log sha256 {}", f.sha256)?;
    writeln!(
        out,
        "  time: router {:.2} s, drill {:.2} s, log + report {:.2} s",
        f.timings.0, f.timings.1, f.timings.2
    )
}

fn load(path: &Path) -> anyhow::Result<Scenario> {
    Scenario::load_file_or_sample(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `muster drill …`.
pub fn run(args: DrillArgs) -> anyhow::Result<()> {
    let out = &mut Out::stdout();
    match args.command {
        DrillCommand::Run {
            scenario,
            seed,
            policy,
            report,
            quiet,
        } => {
            let s = load(&scenario)?;
            let options = RunOptions {
                seed: seed.unwrap_or(s.seed),
                policy: parse_policy(&policy)?,
                calls: None,
            };
            let label = format!(
                "{} ({})",
                s.name,
                options.policy.unwrap_or(s.dispatch.policy)
            );
            let f = run_scenario(&s, &options, quiet, &label)?;
            summary(out, &f)?;
            if let Some(dir) = report {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("events.jsonl"), &f.log)?;
                write_report(&dir, "report", &[&f.report])?;
                writeln!(
                    out,
                    "  wrote {}/events.jsonl, report.json, report.html",
                    dir.display()
                )?;
            }
            Ok(())
        }
        DrillCommand::Live(args) => crate::live::run_cli(args),
        DrillCommand::Compare {
            a,
            b,
            seed,
            policy_a,
            policy_b,
            report,
            quiet,
        } => {
            let (sa, sb) = (load(&a)?, load(&b)?);
            let oa = RunOptions {
                seed: seed.unwrap_or(sa.seed),
                policy: parse_policy(&policy_a)?,
                calls: None,
            };
            let ob = RunOptions {
                seed: seed.unwrap_or(sb.seed),
                policy: parse_policy(&policy_b)?,
                calls: None,
            };
            let la = format!(
                "A: {} ({})",
                sa.name,
                oa.policy.unwrap_or(sa.dispatch.policy)
            );
            let lb = format!(
                "B: {} ({})",
                sb.name,
                ob.policy.unwrap_or(sb.dispatch.policy)
            );
            let fa = run_scenario(&sa, &oa, quiet, &la)?;
            let fb = run_scenario(&sb, &ob, quiet, &lb)?;
            summary(out, &fa)?;
            summary(out, &fb)?;
            write_report(&report, "compare", &[&fa.report, &fb.report])?;
            writeln!(
                out,
                "wrote {}/compare.json and compare.html",
                report.display()
            )?;
            Ok(())
        }
        DrillCommand::Replay {
            log,
            speed,
            scenario,
            what_if,
            seed,
            report,
            server,
            token,
            ca_cert,
            quiet,
        } => {
            let events = read_recording(&log)
                .with_context(|| format!("cannot read the recording {}", log.display()))?;
            if let Some(server) = server {
                let Some(token) = token else {
                    bail!("--server needs --token (or MUSTER_TOKEN): an operator's token")
                };
                let tls = crate::server::client_tls(&[&server], ca_cert.as_deref())?;
                let b = bar(events.len() as u64, quiet, "replay");
                let stats = crate::server::into_server(
                    &events,
                    &server,
                    &token,
                    tls,
                    (speed > 0.0).then_some(speed),
                    &mut |n| b.set_position(n as u64),
                )?;
                b.finish_and_clear();
                writeln!(
                    out,
                    "replayed {} events into {server} with {} API calls in {:.1} s; {} refused",
                    events.len(),
                    stats.calls,
                    stats.wall_s,
                    stats.refused
                )?;
                for e in &stats.examples {
                    writeln!(out, "  {e}")?;
                }
                return Ok(());
            }
            let s = scenario.as_deref().map(load).transpose()?;
            let router = match &s {
                Some(s) => Some(Arc::new(Router::new(s.city.clone())?)),
                None => None,
            };
            let b = bar(events.len() as u64, quiet, "replay");
            let stats = crate::replay::into_engine(
                &events,
                router.clone(),
                (speed > 0.0).then_some(speed),
                &mut |n| b.set_position(n as u64),
            );
            b.finish_and_clear();
            writeln!(
                out,
                "replayed {} events in {:.3} s ({:.0} events/s); {} undecodable; {} incidents open, {} units available at the end",
                stats.events,
                stats.wall_s,
                stats.events as f64 / stats.wall_s.max(1e-9),
                stats.undecodable,
                stats.open_incidents,
                stats.available_units
            )?;
            if let Some(policy) = what_if {
                let Some(s) = s else {
                    bail!("--what-if needs --scenario for the city and fleet")
                };
                let policy = parse_policy(&Some(policy))?;
                let start = events
                    .first()
                    .and_then(|e| e.metadata.occurred_at)
                    .unwrap_or(s.start);
                let mut s = s;
                s.start = start;
                let calls = crate::replay::calls_of(&events, start);
                writeln!(
                    out,
                    "what if: {} recorded calls under policy {}",
                    calls.len(),
                    policy.unwrap_or(s.dispatch.policy)
                )?;
                let recorded = {
                    let mut r = build("recorded", &events, router);
                    r.log_sha256 = Some(sha256_hex(&canonical_bytes(&events)));
                    r
                };
                let options = RunOptions {
                    seed,
                    policy,
                    calls: Some(calls),
                };
                let f = run_scenario(&s, &options, quiet, "what if")?;
                summary(out, &f)?;
                let dir = report.unwrap_or_else(|| PathBuf::from("drill-what-if"));
                write_report(&dir, "what-if", &[&recorded, &f.report])?;
                writeln!(out, "wrote {}/what-if.json and what-if.html", dir.display())?;
            }
            Ok(())
        }
    }
}

/// Runs `muster bench drill`: the drill's wall time (router preparation apart), and replay
/// into the engine against a plain parse of the same log.
pub fn bench(args: BenchDrillArgs) -> anyhow::Result<()> {
    let out = &mut Out::stdout();
    let path = args
        .scenario
        .unwrap_or_else(|| PathBuf::from("generated-30km"));
    let t = Instant::now();
    let s = load(&path)?;
    writeln!(
        out,
        "scenario {} loaded (city included) in {:.2} s",
        path.display(),
        t.elapsed().as_secs_f64()
    )?;
    let t = Instant::now();
    let router = Arc::new(Router::new(s.city.clone())?);
    writeln!(out, "router prepared in {:.2} s", t.elapsed().as_secs_f64())?;
    let runs = args.runs.max(1);
    let mut drill_s = Vec::new();
    let mut last = None;
    for i in 0..runs {
        let t = Instant::now();
        let outcome = run_with_router(
            &s,
            &RunOptions {
                seed: args.seed,
                policy: None,
                calls: None,
            },
            router.clone(),
            &mut |_, _| {},
        )?;
        let secs = t.elapsed().as_secs_f64();
        writeln!(
            out,
            "  drill run {}: {:.2} s, {} calls, {} events, {} routes",
            i + 1,
            secs,
            outcome.calls,
            outcome.events,
            outcome.routes
        )?;
        drill_s.push(secs);
        last = Some(outcome);
        if out.is_closed() {
            return Ok(());
        }
    }
    let outcome = last.expect("at least one run");
    let events = read_store(outcome.store.as_ref())?;
    let log = canonical_bytes(&events);
    writeln!(
        out,
        "drill: median {:.2} s for {:.0} virtual hours, {} calls, {} units, {} events (target <= 10 s); log sha256 {}",
        median(&drill_s),
        s.duration_hours,
        outcome.calls,
        s.unit_count(),
        outcome.events,
        sha256_hex(&log)
    )?;
    let (mut parse_s, mut fold_s, mut replay_s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let parsed = read_lines(BufReader::new(&log[..]))?;
        parse_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let parsed2 = read_lines(BufReader::new(&log[..]))?;
        let stats = crate::replay::into_engine(&parsed2, None, None, &mut |_| {});
        fold_s.push(t.elapsed().as_secs_f64());
        assert_eq!(stats.events, parsed.len());
        let t = Instant::now();
        let parsed3 = read_lines(BufReader::new(&log[..]))?;
        let stats = crate::replay::into_engine(&parsed3, Some(router.clone()), None, &mut |_| {});
        replay_s.push(t.elapsed().as_secs_f64());
        assert_eq!(stats.events, parsed.len());
    }
    let n = events.len() as f64;
    let (p, f, r) = (median(&parse_s), median(&fold_s), median(&replay_s));
    writeln!(
        out,
        "replay of the log's {} events (JSON lines in memory), medians of {runs} runs; target >= 200,000 events/s:",
        events.len()
    )?;
    writeln!(
        out,
        "  baseline, plain parse of the lines:                     {p:.3} s  {:>9.0} events/s",
        n / p
    )?;
    writeln!(
        out,
        "  parse + decode (core schema) + fold into aggregates:    {f:.3} s  {:>9.0} events/s",
        n / f
    )?;
    writeln!(
        out,
        "  the same + dispatcher unit index (snap every position): {r:.3} s  {:>9.0} events/s",
        n / r
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Write};

    use super::Out;

    /// A reader that takes `lines` lines, then goes away.
    struct Head {
        lines: usize,
        taken: Vec<u8>,
        fail: ErrorKind,
    }

    impl Write for Head {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.taken.iter().filter(|b| **b == b'\n').count() >= self.lines {
                return Err(self.fail.into());
            }
            self.taken.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_ends_quietly_when_the_reader_goes_away() {
        let mut out = Out::new(Head {
            lines: 2,
            taken: Vec::new(),
            fail: ErrorKind::BrokenPipe,
        });
        for n in 0..5 {
            writeln!(out, "line {n}").unwrap();
        }
        out.flush().unwrap();
        assert!(out.is_closed());
        assert_eq!(out.inner.taken, b"line 0\nline 1\n");
    }

    #[test]
    fn other_write_errors_are_errors() {
        let mut out = Out::new(Head {
            lines: 0,
            taken: Vec::new(),
            fail: ErrorKind::StorageFull,
        });
        let e = writeln!(out, "line").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert!(!out.is_closed());
    }
}
