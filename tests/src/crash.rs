//! The crash test: a `muster store load` process appends under load and is killed with
//! SIGKILL at a random moment; the store is reopened and checked: every acknowledged event
//! present at its stream, revision and position with the id and data it was sent with,
//! stream revisions contiguous, `$all` gap-free. Then again, on the same store, as many
//! times as asked.

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
use uuid::Uuid;

/// One acknowledged append as the writer process printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The stream.
    pub stream: String,
    /// The revision of the append's last event.
    pub revision: u64,
    /// The position of the append's last event.
    pub position: u64,
    /// Each event of the append, oldest first: its id and the CRC-32 of its data.
    pub events: Vec<(Uuid, u32)>,
}

impl Ack {
    /// Parses `ack <writer> <stream> <revision> <position> <id>:<crc32 hex>,…`.
    pub fn parse(line: &str) -> Option<Ack> {
        let mut parts = line.split(' ');
        (parts.next()? == "ack").then_some(())?;
        let _writer = parts.next()?;
        let stream = parts.next()?.to_owned();
        let revision: u64 = parts.next()?.parse().ok()?;
        let position: u64 = parts.next()?.parse().ok()?;
        let events = parts
            .next()?
            .split(',')
            .map(|e| {
                let (id, crc) = e.split_once(':')?;
                Some((id.parse().ok()?, u32::from_str_radix(crc, 16).ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        let fits = !events.is_empty() && events.len() as u64 <= revision.min(position) + 1;
        (fits && parts.next().is_none()).then_some(Ack {
            stream,
            revision,
            position,
            events,
        })
    }

    /// The append's events: (position, revision, id, CRC-32 of the data).
    fn expected(&self) -> impl Iterator<Item = (u64, u64, Uuid, u32)> + '_ {
        let first = self.events.len() as u64 - 1;
        self.events.iter().enumerate().map(move |(i, (id, crc))| {
            let back = first - i as u64;
            (self.position - back, self.revision - back, *id, *crc)
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
    /// Events in those appends.
    pub acknowledged_events: u64,
    /// Acknowledged events found after the last kill with their stream, revision, position,
    /// id and data as sent.
    pub events_matched: u64,
    /// Events in the store at the end.
    pub events: u64,
    /// What the check after a kill found wrong; the run stops at the first such round.
    pub problems: Vec<String>,
}

/// Runs `iterations` kill-and-check rounds on a store in `dir`. An `Err` is a failure of the
/// harness (the writer would not start); what is wrong with the store is in
/// [`CrashReport::problems`].
pub fn run(muster: &Path, dir: &Path, iterations: u32, seed: u64) -> anyhow::Result<CrashReport> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked: Vec<Ack> = Vec::new();
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
            acked.push(parse_ack(&line)?);
            seen += 1;
        }
        child.kill().context("SIGKILL")?;
        // Lines printed before the kill landed are acknowledgements too; a line cut short by
        // the kill is not.
        for line in lines.map_while(Result::ok) {
            if let Some(ack) = Ack::parse(&line) {
                acked.push(ack);
                seen += 1;
            }
        }
        child.wait()?;
        report.kills += 1;
        report.acknowledged_appends += u64::from(seen);
        let full = round % 10 == 9 || round + 1 == iterations;
        match rt.block_on(check(dir, &acked, full)) {
            Ok(checked) => {
                report.events = checked.head;
                report.events_matched = checked.matched;
            }
            Err(e) => {
                report
                    .problems
                    .push(format!("after kill {}: {e:#}", round + 1));
                break;
            }
        }
    }
    report.acknowledged_events = acked.iter().map(|a| a.events.len() as u64).sum();
    Ok(report)
}

fn parse_ack(line: &str) -> anyhow::Result<Ack> {
    Ack::parse(line).with_context(|| format!("the writer printed {line:?}, not an ack"))
}

struct Checked {
    head: u64,
    matched: u64,
}

/// Reopens the store and checks it against the acknowledgements.
async fn check(dir: &Path, acked: &[Ack], full: bool) -> anyhow::Result<Checked> {
    let store = Arc::new(
        EmbeddedStore::open(dir, EmbeddedOptions::default()).context("reopening after SIGKILL")?,
    );
    let mut expected: HashMap<u64, (&str, u64, Uuid, u32)> = HashMap::new();
    for ack in acked {
        for (position, revision, id, crc) in ack.expected() {
            let old = expected.insert(position, (ack.stream.as_str(), revision, id, crc));
            ensure!(
                old.is_none(),
                "position {position} was acknowledged twice ({old:?} and {id} in {})",
                ack.stream
            );
        }
    }
    let head = store.head();
    let mut position = Position::START;
    let mut revisions: HashMap<String, u64> = HashMap::new();
    let mut matched = 0;
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
            if let Some((stream, revision, id, crc)) = expected.get(&position.0) {
                let have = (
                    e.stream.as_str(),
                    e.revision,
                    e.id,
                    crc32fast::hash(&e.data),
                );
                ensure!(
                    have == (*stream, *revision, *id, *crc),
                    "position {position}: acknowledged as {stream} revision {revision} id {id} \
                     data crc {crc:08x}, stored as {} revision {} id {} data crc {:08x}",
                    have.0,
                    have.1,
                    have.2,
                    have.3
                );
                matched += 1;
            }
            position = position.next();
        }
    }
    ensure!(
        matched == expected.len() as u64,
        "{} acknowledged events are missing (the head is {head})",
        expected.len() as u64 - matched
    );
    let mut newest: HashMap<&str, &Ack> = HashMap::new();
    for ack in acked {
        let slot = newest.entry(ack.stream.as_str()).or_insert(ack);
        if ack.revision > slot.revision {
            *slot = ack;
        }
    }
    for ack in newest.values() {
        let stream = StreamName::parse(ack.stream.as_str())?;
        let read = store
            .read_stream(
                &stream,
                Direction::Forwards,
                ReadFrom::Revision(ack.revision),
                1,
            )
            .await?;
        let event = read.first().context("acknowledged event not readable")?;
        let (id, _) = ack.events.last().context("an ack without events")?;
        ensure!(
            event.revision == ack.revision && event.position.0 == ack.position && event.id == *id,
            "stream {} revision {}: acknowledged at position {} as {id}, read at {} as {}",
            ack.stream,
            ack.revision,
            ack.position,
            event.position,
            event.id
        );
    }
    if full {
        let report = store.verify()?;
        ensure!(report.is_clean(), "verify found: {:?}", report.problems);
    }
    Ok(Checked {
        head: head.0,
        matched,
    })
}
