//! `muster bench store`.
//!
//! Closed loop: `--writers` tasks each append batches of `--batch` events of about 300 bytes
//! to their own stream, with the exact expected revision, for `--seconds`; repeated `--runs`
//! times on a fresh store. The same writers, batches and concurrency then drive two
//! baselines: a plain file where one thread writes every pending batch and calls fdatasync
//! once (the disk's limit for this pattern), and PostgreSQL (an events table with unique
//! (stream, revision) and unique event id, `synchronous_commit = on`).
//!
//! Open loop: appends offered at a fixed `--rate`, latency measured from the moment each was
//! due (so a stall is not hidden by fewer requests being sent).
//!
//! `--backend postgres` measures the PostgreSQL store instead (each run on a fresh schema of
//! the `--postgres` database) beside a plain INSERT of the same rows into a table of the same
//! shape (same columns, keys and unique constraints) in the same run; then `$all` catch-up
//! and the lag of a subscription on a second store instance (another node) behind appends
//! offered at `--rate`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use muster_store::{
    EmbeddedOptions, EmbeddedStore, EventStore, ExpectedState, NewEvent, Position, StreamName,
};
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::oneshot;

use super::stats::{Latencies, Summary};
use crate::load::{sample_event, writer_stream};

/// Which store `muster bench store` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The embedded store, beside a plain file and PostgreSQL.
    Embedded,
    /// The PostgreSQL store, beside plain INSERTs into the same table shape.
    Postgres,
}

/// Arguments of `muster bench store`.
#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// The store to measure.
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    /// Concurrent writers.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Events per append; several sizes separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    batch: Vec<usize>,
    /// Seconds per closed-loop run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Runs per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Offered rate of the open-loop latency run, in events per second.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// With `--backend postgres`: appends per second offered while the lag of a subscription
    /// on another store instance is measured.
    #[arg(long, default_value_t = 1000)]
    lag_rate: u64,
    /// Events in the store reopened after a crash (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    reopen_events: u64,
    /// PostgreSQL connection for the baseline, and the store with `--backend postgres` (a
    /// `postgres://` URL or libpq key=value form). Without one reachable, the PostgreSQL
    /// baseline is skipped and the output says so (`--backend postgres` fails).
    #[arg(
        long,
        env = "MUSTER_BENCH_POSTGRES",
        default_value = "host=/var/run/postgresql user=postgres dbname=postgres"
    )]
    postgres: String,
    /// Directory for the stores and files measured (removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A short run: 3 runs of 1 s, batch sizes 1 and 100, a reopen at 100,000 events.
    #[arg(long)]
    quick: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Record the allocator state with each commit (instant reopen after a crash, a second
    /// fsync per commit); `false` measures the other side of that trade.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    quick_repair: bool,
}

#[derive(Debug, Serialize)]
struct ThroughputRow {
    batch: usize,
    muster_events_per_s: Summary,
    muster_p50_ms: Summary,
    muster_p99_ms: Summary,
    file_events_per_s: Summary,
    postgres_events_per_s: Option<Summary>,
    ratio_to_file: f64,
    ratio_to_postgres: Option<f64>,
}

#[derive(Debug, Serialize)]
struct LatencyRow {
    offered_events_per_s: u64,
    muster_p50_ms: Summary,
    muster_p99_ms: Summary,
    file_p50_ms: Summary,
    file_p99_ms: Summary,
}

#[derive(Debug, Serialize)]
struct CatchUpRow {
    events: u64,
    muster_events_per_s: Summary,
    file_events_per_s: Summary,
}

#[derive(Debug, Serialize)]
struct ReopenRow {
    events: u64,
    open_ms: Summary,
    first_append_ms: Summary,
}

#[derive(Debug, Serialize)]
struct Report {
    writers: usize,
    seconds_per_run: f64,
    runs: usize,
    postgres: String,
    throughput: Vec<ThroughputRow>,
    latency: LatencyRow,
    catch_up: CatchUpRow,
    reopen_after_crash: Option<ReopenRow>,
}

/// Runs `muster bench store`.
pub fn run(mut args: StoreBenchArgs) -> anyhow::Result<()> {
    if args.quick {
        args.seconds = 1.0;
        args.runs = 3;
        if args.batch == [1, 10, 100] {
            args.batch = vec![1, 100];
        }
        if args.reopen_events == 1_000_000 {
            args.reopen_events = 100_000;
        }
    }
    if args.writers == 0 || args.runs == 0 || args.batch.contains(&0) || args.seconds <= 0.0 {
        bail!("--writers, --runs, --batch and --seconds must be positive");
    }
    let base = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("muster-bench-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new().prefix("muster-bench-").tempdir()?,
    };
    // Resolved now: a rebuild during a long run replaces the file this process came from.
    let exe = std::env::current_exe().context("cannot find the muster binary")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.backend {
        Backend::Embedded => rt.block_on(run_all(&args, base.path(), &exe)),
        Backend::Postgres => rt.block_on(super::store_pg::run(&args)),
    }
}

impl StoreBenchArgs {
    pub(super) fn writers(&self) -> usize {
        self.writers
    }
    pub(super) fn batches(&self) -> &[usize] {
        &self.batch
    }
    pub(super) fn runs(&self) -> usize {
        self.runs
    }
    pub(super) fn seconds(&self) -> f64 {
        self.seconds
    }
    pub(super) fn lag_rate(&self) -> u64 {
        self.lag_rate
    }
    pub(super) fn postgres(&self) -> &str {
        &self.postgres
    }
    pub(super) fn json(&self) -> bool {
        self.json
    }
}

/// Closed-loop appends to `store` by `args.writers()` writers of `batch` events.
pub(super) async fn closed_loop_store(
    store: Arc<dyn EventStore>,
    args: &StoreBenchArgs,
    batch: usize,
) -> anyhow::Result<(u64, f64, Latencies)> {
    let m = closed_loop(Target::Muster(store), args, batch).await?;
    Ok((m.events, m.events_per_s, m.latency))
}

/// Closed-loop plain INSERTs, the same writers and batches, into `table` (same shape as the
/// PostgreSQL store's events table).
pub(super) async fn closed_loop_insert(
    conn: &str,
    table: &str,
    args: &StoreBenchArgs,
    batch: usize,
) -> anyhow::Result<f64> {
    let pg = Postgres::connect(conn, args.writers).await?;
    let pg = Postgres {
        same_shape: Some(table.to_owned()),
        ..pg
    };
    let m = closed_loop(Target::Postgres(pg), args, batch).await?;
    Ok(m.events_per_s)
}

fn options(args: &StoreBenchArgs) -> EmbeddedOptions {
    EmbeddedOptions {
        quick_repair: args.quick_repair,
        ..Default::default()
    }
}

fn progress(args: &StoreBenchArgs, text: &str) {
    if !args.json {
        eprintln!("… {text}");
    }
}

async fn run_all(args: &StoreBenchArgs, base: &Path, exe: &Path) -> anyhow::Result<()> {
    let pg = match Postgres::connect(&args.postgres, args.writers).await {
        Ok(pg) => Some(pg),
        Err(e) => {
            eprintln!(
                "PostgreSQL baseline skipped: no server reachable with {:?} ({e:#})",
                args.postgres
            );
            None
        }
    };
    let mut throughput = Vec::new();
    let mut run_no = 0;
    let mut largest: Option<(PathBuf, PathBuf, u64)> = None;
    for &batch in &args.batch {
        let (mut m_rate, mut m_p50, mut m_p99, mut f_rate, mut p_rate) =
            (vec![], vec![], vec![], vec![], vec![]);
        for r in 0..args.runs {
            run_no += 1;
            progress(args, &format!("batch {batch}, run {}/{}", r + 1, args.runs));
            let dir = base.join(format!("store-{run_no}"));
            let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(&dir, options(args))?);
            let m = closed_loop(Target::Muster(store.clone()), args, batch).await?;
            drop(store);
            m_rate.push(m.events_per_s);
            m_p50.push(m.latency.quantile_ms(0.5));
            m_p99.push(m.latency.quantile_ms(0.99));
            let file_path = base.join(format!("file-{run_no}.log"));
            let f = closed_loop(Target::File(FileSink::create(&file_path)?), args, batch).await?;
            f_rate.push(f.events_per_s);
            if largest.as_ref().is_none_or(|l| m.events > l.2) {
                if let Some((old_dir, old_file, _)) = largest.take() {
                    let _ = std::fs::remove_dir_all(old_dir);
                    let _ = std::fs::remove_file(old_file);
                }
                largest = Some((dir, file_path, m.events));
            } else {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(&file_path);
            }
            if let Some(pg) = &pg {
                pg.reset().await?;
                let p = closed_loop(Target::Postgres(pg.clone()), args, batch).await?;
                p_rate.push(p.events_per_s);
            }
        }
        let muster = Summary::of(m_rate);
        let file = Summary::of(f_rate);
        let postgres = pg.as_ref().map(|_| Summary::of(p_rate));
        throughput.push(ThroughputRow {
            batch,
            ratio_to_file: muster.median / file.median,
            ratio_to_postgres: postgres.as_ref().map(|p| muster.median / p.median),
            muster_events_per_s: muster,
            muster_p50_ms: Summary::of(m_p50),
            muster_p99_ms: Summary::of(m_p99),
            file_events_per_s: file,
            postgres_events_per_s: postgres,
        });
    }

    let (mut m50, mut m99, mut f50, mut f99) = (vec![], vec![], vec![], vec![]);
    for r in 0..args.runs {
        progress(
            args,
            &format!(
                "open loop at {} events/s, run {}/{}",
                args.rate,
                r + 1,
                args.runs
            ),
        );
        let dir = base.join(format!("rate-{r}"));
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(&dir, options(args))?);
        let m = open_loop(Target::Muster(store), args).await?;
        m50.push(m.quantile_ms(0.5));
        m99.push(m.quantile_ms(0.99));
        let _ = std::fs::remove_dir_all(&dir);
        let file = base.join(format!("rate-{r}.log"));
        let f = open_loop(Target::File(FileSink::create(&file)?), args).await?;
        f50.push(f.quantile_ms(0.5));
        f99.push(f.quantile_ms(0.99));
        let _ = std::fs::remove_file(&file);
    }
    let latency = LatencyRow {
        offered_events_per_s: args.rate,
        muster_p50_ms: Summary::of(m50),
        muster_p99_ms: Summary::of(m99),
        file_p50_ms: Summary::of(f50),
        file_p99_ms: Summary::of(f99),
    };

    let (dir, file, _) = largest.context("no run was measured")?;
    let catch_up = catch_up(args, &dir, &file).await?;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&file);

    let reopen_after_crash = if args.reopen_events > 0 {
        Some(reopen(args, base, exe).await?)
    } else {
        None
    };

    let report = Report {
        writers: args.writers,
        seconds_per_run: args.seconds,
        runs: args.runs,
        postgres: if pg.is_some() {
            args.postgres.clone()
        } else {
            "not reachable: skipped".into()
        },
        throughput,
        latency,
        catch_up,
        reopen_after_crash,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &Report) {
    println!(
        "muster bench store: {} writers, {} s per run, median of {} runs",
        r.writers, r.seconds_per_run, r.runs
    );
    println!("PostgreSQL baseline: {}", r.postgres);
    println!();
    println!(
        "{:>6} {:>12} {:>9} {:>9} {:>12} {:>12} {:>8} {:>8}",
        "batch", "muster ev/s", "p50 ms", "p99 ms", "file ev/s", "pg ev/s", "x file", "x pg"
    );
    for t in &r.throughput {
        println!(
            "{:>6} {:>12.0} {:>9.2} {:>9.2} {:>12.0} {:>12} {:>8.2} {:>8}",
            t.batch,
            t.muster_events_per_s.median,
            t.muster_p50_ms.median,
            t.muster_p99_ms.median,
            t.file_events_per_s.median,
            t.postgres_events_per_s
                .as_ref()
                .map_or("-".into(), |p| format!("{:.0}", p.median)),
            t.ratio_to_file,
            t.ratio_to_postgres
                .map_or("-".into(), |x| format!("{x:.2}")),
        );
    }
    let l = &r.latency;
    println!();
    println!(
        "open loop, {} events/s offered: muster p50 {:.2} ms, p99 {:.2} ms; plain file p50 {:.2} ms, p99 {:.2} ms",
        l.offered_events_per_s,
        l.muster_p50_ms.median,
        l.muster_p99_ms.median,
        l.file_p50_ms.median,
        l.file_p99_ms.median
    );
    let c = &r.catch_up;
    println!(
        "$all catch-up over {} events: muster {:.0} events/s; plain file read {:.0} events/s (x{:.2})",
        c.events,
        c.muster_events_per_s.median,
        c.file_events_per_s.median,
        c.muster_events_per_s.median / c.file_events_per_s.median
    );
    if let Some(o) = &r.reopen_after_crash {
        println!(
            "reopen after SIGKILL with {} events: open {:.0} ms, first append acknowledged {:.0} ms after start",
            o.events, o.open_ms.median, o.first_append_ms.median
        );
    }
}

/// Something the writers append to.
#[derive(Clone)]
enum Target {
    Muster(Arc<dyn EventStore>),
    File(FileSink),
    Postgres(Postgres),
}

struct Measured {
    events: u64,
    events_per_s: f64,
    latency: Latencies,
}

async fn closed_loop(
    target: Target,
    args: &StoreBenchArgs,
    batch: usize,
) -> anyhow::Result<Measured> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            let stream = writer_stream("bench", w);
            let mut next_revision = 0u64;
            let mut latency = Latencies::default();
            let mut events = 0u64;
            let mut seq = 0;
            while Instant::now() < deadline {
                let batch_events: Vec<NewEvent> = (0..batch)
                    .map(|_| {
                        seq += 1;
                        sample_event(&mut rng, w, seq)
                    })
                    .collect();
                let t0 = Instant::now();
                append(&target, &stream, next_revision, batch_events).await?;
                latency.record(t0.elapsed());
                next_revision += batch as u64;
                events += batch as u64;
            }
            anyhow::Ok((events, latency))
        }));
    }
    let mut total = 0;
    let mut latency = Latencies::default();
    for t in tasks {
        let (n, l) = t.await??;
        total += n;
        latency.merge(&l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Target::Muster(store) = &target {
        let stored = store.stats().await?.events;
        anyhow::ensure!(
            stored == total,
            "the store holds {stored} events, {total} were acknowledged"
        );
    }
    Ok(Measured {
        events: total,
        events_per_s: total as f64 / elapsed,
        latency,
    })
}

async fn append(
    target: &Target,
    stream: &StreamName,
    next_revision: u64,
    events: Vec<NewEvent>,
) -> anyhow::Result<()> {
    match target {
        Target::Muster(store) => {
            let expected = match next_revision {
                0 => ExpectedState::NoStream,
                n => ExpectedState::Revision(n - 1),
            };
            store.append(stream, expected, events).await?;
        }
        Target::File(sink) => sink.append(stream, next_revision, &events).await?,
        Target::Postgres(pg) => pg.append(stream, next_revision, &events).await?,
    }
    Ok(())
}

async fn open_loop(target: Target, args: &StoreBenchArgs) -> anyhow::Result<Latencies> {
    const STREAMS: usize = 256;
    let total = (args.rate as f64 * args.seconds.max(2.0)) as u64;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let target = target.clone();
        let tx = tx.clone();
        let event = sample_event(&mut rng, (i as usize) % STREAMS, i);
        tokio::spawn(async move {
            let stream = writer_stream("rate", (i as usize) % STREAMS);
            let result = match &target {
                Target::Muster(store) => store
                    .append(&stream, ExpectedState::Any, vec![event])
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                other => append(other, &stream, i, vec![event]).await,
            };
            let _ = tx.send(result.map(|()| due.elapsed()));
        });
    }
    drop(tx);
    let mut latency = Latencies::default();
    while let Some(result) = rx.recv().await {
        latency.record(result?);
    }
    anyhow::ensure!(
        latency.count() == total,
        "{} of {total} appends answered",
        latency.count()
    );
    Ok(latency)
}

async fn catch_up(args: &StoreBenchArgs, dir: &Path, file: &Path) -> anyhow::Result<CatchUpRow> {
    let (mut m, mut f) = (vec![], vec![]);
    let mut events = 0;
    for r in 0..args.runs {
        progress(args, &format!("$all catch-up, run {}/{}", r + 1, args.runs));
        let store: Arc<dyn EventStore> = Arc::new(EmbeddedStore::open(dir, options(args))?);
        let head = store.head();
        let started = Instant::now();
        let mut from = Position::START;
        let mut read = 0u64;
        while from < head {
            let page = store.read_all(from, 4096).await?;
            let Some(last) = page.last() else { break };
            from = last.position.next();
            read += page.len() as u64;
        }
        m.push(read as f64 / started.elapsed().as_secs_f64());
        events = read;
        drop(store);

        let started = Instant::now();
        let bytes = tokio::fs::read(file).await?;
        let mut lines = 0u64;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let _: &serde_json::value::RawValue = serde_json::from_slice(line)?;
            lines += 1;
        }
        f.push(lines as f64 / started.elapsed().as_secs_f64());
    }
    Ok(CatchUpRow {
        events,
        muster_events_per_s: Summary::of(m),
        file_events_per_s: Summary::of(f),
    })
}

async fn reopen(args: &StoreBenchArgs, base: &Path, exe: &Path) -> anyhow::Result<ReopenRow> {
    let dir = base.join("reopen");
    progress(
        args,
        &format!(
            "filling a store with {} events in a writer process, then SIGKILL",
            args.reopen_events
        ),
    );
    let mut child = std::process::Command::new(exe)
        .args([
            "store",
            "load",
            "--writers",
            "4",
            "--batch",
            "1000",
            "--prefix",
            "fill",
        ])
        .arg(format!("--quick-repair={}", args.quick_repair))
        .arg("--data-dir")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("cannot start the writer process")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let target = args.reopen_events;
    let reached = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            let position: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if position + 1 >= target {
                return anyhow::Ok(position + 1);
            }
        }
        bail!("the writer process stopped before {target} events")
    })
    .await??;
    child.kill()?;
    child.wait()?;
    progress(
        args,
        &format!("writer killed after {reached} acknowledged events; reopening"),
    );
    let (mut open_ms, mut first_ms) = (vec![], vec![]);
    for r in 0..args.runs {
        let started = Instant::now();
        let store = EmbeddedStore::open(&dir, options(args))?;
        open_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(r as u64);
        store
            .append(
                &writer_stream("reopen", r),
                ExpectedState::Any,
                vec![sample_event(&mut rng, r, 0)],
            )
            .await?;
        first_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        drop(store);
        if r + 1 < args.runs {
            // Each later reopen again follows a crash: a writer killed in the middle of appends.
            crash_again(exe, &dir, args.quick_repair)?;
        }
    }
    let events = {
        let store = EmbeddedStore::open(&dir, options(args))?;
        store.head().0
    };
    Ok(ReopenRow {
        events,
        open_ms: Summary::of(open_ms),
        first_append_ms: Summary::of(first_ms),
    })
}

/// Starts a writer on the store, waits for its first acknowledgement, and kills it.
fn crash_again(exe: &Path, dir: &Path, quick_repair: bool) -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(exe)
        .args([
            "store",
            "load",
            "--writers",
            "4",
            "--batch",
            "100",
            "--prefix",
            "again",
        ])
        .arg(format!("--quick-repair={quick_repair}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().transpose()?;
    child.kill()?;
    child.wait()?;
    anyhow::ensure!(
        first.is_some_and(|l| l.starts_with("ack ")),
        "the writer process acknowledged nothing"
    );
    Ok(())
}

/// The plain-file baseline: one thread writes every pending batch, then one fdatasync.
#[derive(Clone)]
struct FileSink {
    tx: std_mpsc::Sender<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>,
}

impl FileSink {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = std_mpsc::channel::<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>();
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut group = vec![first];
                while let Ok(more) = rx.try_recv() {
                    group.push(more);
                }
                let mut result = Ok(());
                for (bytes, _) in &group {
                    if let Err(e) = file.write_all(bytes) {
                        result = Err(e);
                        break;
                    }
                }
                if result.is_ok() {
                    result = file.sync_data();
                }
                for (_, reply) in group {
                    let _ = reply.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                    });
                }
            }
        });
        Ok(Self { tx })
    }

    async fn append(
        &self,
        stream: &StreamName,
        revision: u64,
        events: &[NewEvent],
    ) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity(events.len() * 400);
        for (i, e) in events.iter().enumerate() {
            let line = serde_json::json!({
                "stream": stream.as_str(),
                "revision": revision + i as u64,
                "id": e.id,
                "type": e.event_type,
                "data": serde_json::value::RawValue::from_string(String::from_utf8(e.data.clone())?)?,
            });
            serde_json::to_writer(&mut bytes, &line)?;
            bytes.push(b'\n');
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((bytes, reply))
            .map_err(|_| anyhow::anyhow!("file writer stopped"))?;
        rx.await??;
        Ok(())
    }
}

/// The PostgreSQL baseline: one connection per writer, each with its statements prepared once;
/// one event is a single-row `INSERT … VALUES`, a batch one `INSERT … SELECT FROM unnest(…)`.
#[derive(Clone)]
struct Postgres {
    clients: Arc<Vec<PgWriter>>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    /// Insert into this table of the PostgreSQL store's shape instead.
    same_shape: Option<String>,
}

/// One baseline connection and its prepared statements (one event, a batch).
struct PgWriter {
    client: tokio_postgres::Client,
    one: tokio::sync::OnceCell<tokio_postgres::Statement>,
    many: tokio::sync::OnceCell<tokio_postgres::Statement>,
}

impl Postgres {
    async fn connect(conn: &str, n: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let (client, connection) = tokio::time::timeout(
                Duration::from_secs(3),
                tokio_postgres::connect(conn, tokio_postgres::NoTls),
            )
            .await
            .context("timed out")??;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            clients.push(PgWriter {
                client,
                one: Default::default(),
                many: Default::default(),
            });
        }
        let pg = Self {
            clients: Arc::new(clients),
            next: Arc::default(),
            same_shape: None,
        };
        let sync: String = pg.clients[0]
            .client
            .query_one("SHOW synchronous_commit", &[])
            .await?
            .get(0);
        anyhow::ensure!(
            sync == "on",
            "synchronous_commit is {sync}, the baseline needs on"
        );
        Ok(pg)
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.clients[0]
            .client
            .batch_execute(
                "DROP TABLE IF EXISTS muster_bench_events;
                 CREATE TABLE muster_bench_events (
                     position bigserial PRIMARY KEY,
                     stream text NOT NULL,
                     revision bigint NOT NULL,
                     id uuid NOT NULL UNIQUE,
                     type text NOT NULL,
                     data jsonb NOT NULL,
                     UNIQUE (stream, revision));",
            )
            .await?;
        Ok(())
    }

    /// The SQL of the insert of one event (`one`) or of a batch.
    fn sql(&self, one: bool) -> String {
        match (&self.same_shape, one) {
            (Some(table), true) => format!(
                "INSERT INTO {table} (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
                 VALUES (nextval('{table}_position'), $1, $2, $3, $4, $5, $6, $7, now())"
            ),
            (Some(table), false) => format!(
                "INSERT INTO {table} (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
                 SELECT nextval('{table}_position'), s, r, i, t, v, d, m, now() \
                 FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::bytea[], $7::bytea[]) \
                      AS x(s, r, i, t, v, d, m)"
            ),
            (None, true) => "INSERT INTO muster_bench_events (stream, revision, id, type, data) \
                 VALUES ($1, $2, $3::text::uuid, $4, $5::text::jsonb)"
                .to_owned(),
            (None, false) => "INSERT INTO muster_bench_events (stream, revision, id, type, data) \
                 SELECT s, r, i::uuid, t, d::jsonb \
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS x(s, r, i, t, d)"
                .to_owned(),
        }
    }

    async fn append(
        &self,
        stream: &StreamName,
        revision: u64,
        events: &[NewEvent],
    ) -> anyhow::Result<()> {
        let w: usize = stream
            .as_str()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let writer = &self.clients[w % self.clients.len()];
        let client = &writer.client;
        let one = events.len() == 1;
        let cell = if one { &writer.one } else { &writer.many };
        let statement = cell
            .get_or_try_init(|| async { client.prepare(&self.sql(one)).await })
            .await?;
        let streams: Vec<&str> = events.iter().map(|_| stream.as_str()).collect();
        let revisions: Vec<i64> = (0..events.len())
            .map(|i| (revision + i as u64) as i64)
            .collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        if self.same_shape.is_some() {
            let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
            let versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
            let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_slice()).collect();
            let metadata: Vec<Vec<u8>> = events
                .iter()
                .map(|e| serde_json::to_vec(&e.metadata))
                .collect::<Result<_, _>>()?;
            let metadata: Vec<&[u8]> = metadata.iter().map(Vec::as_slice).collect();
            if one {
                client
                    .execute(
                        statement,
                        &[
                            &streams[0],
                            &revisions[0],
                            &ids[0],
                            &types[0],
                            &versions[0],
                            &data[0],
                            &metadata[0],
                        ],
                    )
                    .await?;
            } else {
                client
                    .execute(
                        statement,
                        &[
                            &streams, &revisions, &ids, &types, &versions, &data, &metadata,
                        ],
                    )
                    .await?;
            }
            return Ok(());
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let data: Vec<String> = events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect();
        if one {
            client
                .execute(
                    statement,
                    &[&streams[0], &revisions[0], &ids[0], &types[0], &data[0]],
                )
                .await?;
        } else {
            client
                .execute(statement, &[&streams, &revisions, &ids, &types, &data])
                .await?;
        }
        Ok(())
    }
}
