//! The crash test: a `muster store load` process appends under load and is killed with
//! SIGKILL at a random moment; the store is reopened and checked: every acknowledged event
//! present and readable, stream revisions contiguous, `$all` gap-free. Then again, on the same
//! store, as many times as asked.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use muster_store::{
    Direction, EmbeddedOptions, EmbeddedStore, EventStore, Position, ReadFrom, StreamName,
};
use rand::{Rng, SeedableRng};

/// One acknowledged append as the writer process printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The stream.
    pub stream: String,
    /// The revision of the append's last event.
    pub revision: u64,
    /// The position of the append's last event.
    pub position: u64,
}

impl Ack {
    /// Parses `ack <writer> <stream> <revision> <position>`.
    pub fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.split(' ');
        (parts.next()? == "ack").then_some(())?;
        let _writer = parts.next()?;
        let stream = parts.next()?.to_owned();
        let revision = parts.next()?.parse().ok()?;
        let position = parts.next()?.parse().ok()?;
        Some(Ack {
            stream,
            revision,
            position,
        })
    }
}

/// What a crash run saw.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Kills done.
    pub kills: u32,
    /// Appends acknowledged before the kills, in all.
    pub acknowledged_appends: u64,
    /// Events in the store at the end.
    pub events: u64,
}

/// Runs `iterations` kill-and-check rounds on a store in `dir`.
pub fn run(muster: &Path, dir: &Path, iterations: u32, seed: u64) -> anyhow::Result<CrashReport> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked: HashMap<String, Ack> = HashMap::new();
    let mut report = CrashReport::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for round in 0..iterations {
        let writers = rng.random_range(1..=8u32);
        let batch = rng.random_range(1..=20u32);
        let wait_for = rng.random_range(1..=150u32);
        let mut child = Command::new(muster)
            .args(["store", "load", "--prefix", "crash"])
            .arg("--writers")
            .arg(writers.to_string())
            .arg("--batch")
            .arg(batch.to_string())
            .arg("--seed")
            .arg(round.to_string())
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", muster.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < wait_for {
            let Some(line) = lines.next().transpose()? else {
                let out = child.wait_with_output()?;
                bail!(
                    "round {round}: the writer stopped: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            if let Some(ack) = Ack::parse(&line) {
                record(&mut acked, ack);
                seen += 1;
            }
        }
        child.kill().context("SIGKILL")?;
        // Lines printed before the kill landed are acknowledgements too.
        for line in lines.map_while(Result::ok) {
            if let Some(ack) = Ack::parse(&line) {
                record(&mut acked, ack);
                seen += 1;
            }
        }
        child.wait()?;
        report.kills += 1;
        report.acknowledged_appends += u64::from(seen);
        report.events = rt
            .block_on(check(
                dir,
                &acked,
                round % 10 == 9 || round + 1 == iterations,
            ))
            .with_context(|| format!("after kill {}", round + 1))?;
    }
    Ok(report)
}

fn record(acked: &mut HashMap<String, Ack>, ack: Ack) {
    let keep = acked
        .get(&ack.stream)
        .is_none_or(|old| ack.revision > old.revision);
    if keep {
        acked.insert(ack.stream.clone(), ack);
    }
}

/// Reopens the store and checks it against the acknowledgements.
async fn check(dir: &Path, acked: &HashMap<String, Ack>, full: bool) -> anyhow::Result<u64> {
    let store = Arc::new(
        EmbeddedStore::open(dir, EmbeddedOptions::default()).context("reopening after SIGKILL")?,
    );
    let head = store.head();
    let mut position = Position::START;
    let mut revisions: HashMap<String, u64> = HashMap::new();
    while position < head {
        let page = store.read_all(position, 4096).await?;
        ensure!(
            !page.is_empty(),
            "$all ends at {position} before the head {head}"
        );
        for e in page {
            ensure!(
                e.position == position,
                "$all has a gap: expected {position}, found {}",
                e.position
            );
            let next = revisions.entry(e.stream.to_string()).or_insert(0);
            ensure!(
                e.revision == *next,
                "stream {} jumps to revision {} (expected {next})",
                e.stream,
                e.revision
            );
            *next += 1;
            position = position.next();
        }
    }
    for ack in acked.values() {
        let stream = StreamName::parse(ack.stream.as_str())?;
        let have = revisions.get(&ack.stream).map(|n| n - 1);
        ensure!(
            have.is_some_and(|h| h >= ack.revision),
            "stream {} acknowledged up to revision {} but holds {have:?}",
            ack.stream,
            ack.revision
        );
        let read = store
            .read_stream(
                &stream,
                Direction::Forwards,
                ReadFrom::Revision(ack.revision),
                1,
            )
            .await?;
        let event = read.first().context("acknowledged event not readable")?;
        ensure!(
            event.revision == ack.revision && event.position.0 == ack.position,
            "stream {} revision {}: acknowledged at position {}, stored at {}",
            ack.stream,
            ack.revision,
            ack.position,
            event.position
        );
    }
    if full {
        let report = store.verify()?;
        ensure!(report.is_clean(), "verify found: {:?}", report.problems);
    }
    Ok(head.0)
}
