//! `muster store …`: operator commands on an event store.
//!
//! On the embedded store they open the store directory exclusively, so they run while no
//! server has it open (a running server refuses them with a clear message). On PostgreSQL
//! (`--store postgres://…`) `stats`, `verify` and `dump` run beside the nodes; `copy` moves an
//! embedded store's log into PostgreSQL.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use muster_store::embedded::VerifyOnOpen;
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, Position};
use serde::Serialize;

/// Arguments of `muster store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store.
    #[arg(long, env = "MUSTER_DATA_DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// The store: `embedded` (in --data-dir) or a PostgreSQL connection string
    /// (`postgres://user@host:port/db`), for stats, verify and dump.
    #[arg(long, env = "MUSTER_STORE", default_value = "embedded", global = true)]
    store: String,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Events, streams, head position and file size.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Full check: every page checksum, every event's checksum, a gap-free $all, contiguous
    /// stream revisions, consistent indexes. Exits 1 when anything is wrong.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every event of $all as JSON lines, oldest first.
    Dump {
        /// First position to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most events to print (all when absent).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Copies an embedded store's log into PostgreSQL, keeping every event's stream, revision,
    /// id and recording time. Idempotent: run again, it copies only what is missing.
    Copy {
        /// Directory of the embedded store to copy (no server may have it open).
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL connection string to copy to.
        #[arg(long)]
        to: String,
    },
    /// Writes a consistent copy of the store into an empty directory.
    Backup {
        /// Directory to write the copy into.
        dir: PathBuf,
    },
    /// Appends synthetic position reports under load, printing a line per acknowledged
    /// append (`ack <writer> <stream> <revision> <position> <id>:<crc32>,…`). For crash tests
    /// and load checks.
    Load {
        /// Concurrent writers, each on its own stream.
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Events per append.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Events to append in all; without it, appends until killed.
        #[arg(long)]
        events: Option<u64>,
        /// Stream name prefix.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// Seed of the synthetic data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Record the allocator state with each commit (fast reopen after a crash).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        quick_repair: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn open(args: &StoreArgs, verify: VerifyOnOpen) -> anyhow::Result<EmbeddedStore> {
    if !args
        .data_dir
        .join(muster_store::embedded::STORE_FILE)
        .exists()
    {
        bail!(
            "no event store in {} (set --data-dir or MUSTER_DATA_DIR)",
            args.data_dir.display()
        );
    }
    let options = EmbeddedOptions {
        verify_on_open: verify,
        ..Default::default()
    };
    EmbeddedStore::open(&args.data_dir, options)
        .with_context(|| format!("cannot open the event store in {}", args.data_dir.display()))
}

async fn open_postgres(url: &str) -> anyhow::Result<muster_store::postgres::PostgresStore> {
    muster_store::postgres::PostgresStore::open(muster_store::postgres::PostgresOptions::new(url))
        .await
        .context("cannot open the event store on PostgreSQL")
}

/// `muster store …` on PostgreSQL.
fn run_postgres(args: &StoreArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let store = open_postgres(&args.store).await?;
        match &args.command {
            StoreCommand::Stats { json } => {
                let stats = store.stats().await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&stats)?);
                } else {
                    println!("store    PostgreSQL at {} (schema {})", store.hosts(), store.schema());
                    println!("events   {}", stats.events);
                    println!("streams  {}", stats.streams);
                    println!("head     {}", stats.head);
                    println!(
                        "tables   {:.1} MiB",
                        stats.file_bytes as f64 / (1024.0 * 1024.0)
                    );
                }
            }
            StoreCommand::Verify { json } => {
                let started = std::time::Instant::now();
                let report = store.verify().await?;
                print_verify(&report, *json, started)?;
                if !report.is_clean() {
                    std::process::exit(1);
                }
            }
            StoreCommand::Dump { from, limit } => {
                dump(&store, Position(*from), limit.unwrap_or(u64::MAX)).await?;
            }
            _ => bail!(
                "this command works on the embedded store only; on PostgreSQL use stats, verify, dump, or copy --to"
            ),
        }
        store.close();
        Ok(())
    })
}

/// `muster store copy`: the embedded store's `$all`, in order, into PostgreSQL.
fn copy(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    if !muster_store::postgres::is_postgres_url(to) {
        bail!("--to must be a PostgreSQL connection string (postgres://…)");
    }
    if !from.join(muster_store::embedded::STORE_FILE).exists() {
        bail!("no event store in {}", from.display());
    }
    let source = EmbeddedStore::open(from, EmbeddedOptions::default())
        .with_context(|| format!("cannot open the event store in {}", from.display()))?;
    runtime()?.block_on(async {
        let target = open_postgres(to).await?;
        let started = std::time::Instant::now();
        let (mut read, mut written) = (0u64, 0u64);
        let mut next = Position::START;
        loop {
            let page = source.read_all(next, 4096).await?;
            let Some(last) = page.last() else { break };
            next = last.position.next();
            read += page.len() as u64;
            written += target.import(&page).await.with_context(|| {
                format!("copying the events up to position {} of {}", last.position, from.display())
            })? as u64;
        }
        // The keys that seal personal data go with the log (destroyed ones as destroyed).
        let keys = source
            .data_keys()
            .context("reading the data keys")?;
        for (owner, key) in &keys {
            target
                .import_data_key(*owner, key.clone())
                .await
                .context("copying the data keys")?;
        }
        target.close();
        println!(
            "copied {written} events ({} were there already) and {} data keys from {} to PostgreSQL at {} in {:.1} s",
            read - written,
            keys.len(),
            from.display(),
            target.hosts(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

fn print_verify(
    report: &muster_store::embedded::VerifyReport,
    json: bool,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "checked {} events in {} streams (head {}) in {:.1} s",
        report.events,
        report.streams,
        report.head,
        started.elapsed().as_secs_f64()
    );
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.problem_count > report.problems.len() as u64 {
        println!(
            "… and {} more",
            report.problem_count - report.problems.len() as u64
        );
    }
    println!("{}", if report.is_clean() { "ok" } else { "NOT OK" });
    Ok(())
}

/// Runs `muster store …`.
pub fn run(args: StoreArgs) -> anyhow::Result<()> {
    if let StoreCommand::Copy { from, to } = &args.command {
        return copy(from, to);
    }
    if muster_store::postgres::is_postgres_url(&args.store) {
        return run_postgres(&args);
    }
    if args.store != "embedded" {
        bail!("--store must be \"embedded\" or a PostgreSQL connection string (postgres://…)");
    }
    match &args.command {
        StoreCommand::Stats { json } => {
            let store = open(&args, VerifyOnOpen::Tail)?;
            let stats = runtime()?.block_on(store.stats())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!("store    {}", store.path().display());
                println!("events   {}", stats.events);
                println!("streams  {}", stats.streams);
                println!("head     {}", stats.head);
                println!(
                    "file     {:.1} MiB",
                    stats.file_bytes as f64 / (1024.0 * 1024.0)
                );
            }
        }
        StoreCommand::Verify { json } => {
            let started = std::time::Instant::now();
            let store = match open(&args, VerifyOnOpen::Full) {
                Ok(store) => store,
                Err(e) => {
                    eprintln!("verify failed: {e:#}");
                    std::process::exit(1);
                }
            };
            let report = store.verify()?;
            print_verify(&report, *json, started)?;
            if !report.is_clean() {
                std::process::exit(1);
            }
        }
        StoreCommand::Dump { from, limit } => {
            let store = open(&args, VerifyOnOpen::Tail)?;
            runtime()?.block_on(dump(&store, Position(*from), limit.unwrap_or(u64::MAX)))?;
        }
        StoreCommand::Backup { dir } => {
            let store = open(&args, VerifyOnOpen::Tail)?;
            let stats = store.backup(dir)?;
            println!(
                "backed up {} events in {} streams to {}",
                stats.events,
                stats.streams,
                dir.display()
            );
        }
        StoreCommand::Copy { .. } => unreachable!("handled above"),
        StoreCommand::Load {
            writers,
            batch,
            events,
            prefix,
            seed,
            quick_repair,
        } => {
            if *writers == 0 || *batch == 0 {
                bail!("--writers and --batch must be at least 1");
            }
            let options = EmbeddedOptions {
                quick_repair: *quick_repair,
                ..Default::default()
            };
            let store: std::sync::Arc<dyn EventStore> =
                std::sync::Arc::new(EmbeddedStore::open(&args.data_dir, options).with_context(
                    || format!("cannot open the event store in {}", args.data_dir.display()),
                )?);
            let load = crate::load::Load {
                writers: *writers,
                batch: *batch,
                events: events.unwrap_or(u64::MAX),
                prefix: prefix.clone(),
                seed: *seed,
            };
            runtime()?.block_on(crate::load::run_printing(store, load))?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct DumpLine<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: u32,
    recorded_at: chrono::DateTime<chrono::Utc>,
    metadata: &'a muster_store::EventMetadata,
    data: &'a serde_json::value::RawValue,
}

async fn dump(store: &dyn EventStore, mut from: Position, mut left: u64) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while left > 0 {
        let page = store.read_all(from, 4096.min(left as usize)).await?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        left -= page.len() as u64;
        for e in &page {
            let data: &serde_json::value::RawValue =
                serde_json::from_slice(&e.data).with_context(|| {
                    format!(
                        "event at position {} holds data that is not JSON",
                        e.position
                    )
                })?;
            let line = DumpLine {
                position: e.position.0,
                stream: e.stream.as_str(),
                revision: e.revision,
                id: e.id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                recorded_at: e.recorded_at,
                metadata: &e.metadata,
                data,
            };
            serde_json::to_writer(&mut out, &line)?;
            if out.write_all(b"\n").is_err() {
                return Ok(()); // the reader went away (a pipe into head, say)
            }
        }
    }
    out.flush().ok();
    Ok(())
}
