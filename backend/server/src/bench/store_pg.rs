//! `muster bench store --backend postgres`: the PostgreSQL store beside plain INSERTs into a
//! table of the same shape, in the same run; `$all` catch-up; and the lag of a subscription on
//! a second store instance (another node) behind appends offered at `--lag-rate`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use muster_store::postgres::{PostgresOptions, PostgresStore};
use muster_store::{EventStore, EventStoreExt, ExpectedState, Position, SubscribeFrom};
use rand::SeedableRng;
use serde::Serialize;

use super::stats::{Latencies, Summary};
use super::store::{StoreBenchArgs, closed_loop_insert, closed_loop_store};
use crate::load::{sample_event, writer_stream};

#[derive(Debug, Serialize)]
struct Row {
    batch: usize,
    muster_events_per_s: Summary,
    muster_p50_ms: Summary,
    muster_p99_ms: Summary,
    plain_insert_events_per_s: Summary,
    ratio_to_plain_insert: f64,
}

#[derive(Debug, Serialize)]
struct CatchUp {
    events: u64,
    events_per_s: Summary,
}

#[derive(Debug, Serialize)]
struct Lag {
    offered_events_per_s: u64,
    events: u64,
    p50_ms: Summary,
    p99_ms: Summary,
}

#[derive(Debug, Serialize)]
struct Report {
    backend: &'static str,
    writers: usize,
    seconds_per_run: f64,
    runs: usize,
    throughput: Vec<Row>,
    catch_up: CatchUp,
    subscription_lag: Lag,
}

fn progress(args: &StoreBenchArgs, text: &str) {
    if !args.json() {
        eprintln!("… {text}");
    }
}

async fn open(conn: &str, schema: &str, pool: usize) -> anyhow::Result<PostgresStore> {
    let mut options = PostgresOptions::new(conn);
    options.schema = schema.to_owned();
    options.pool_size = pool;
    PostgresStore::open(options)
        .await
        .with_context(|| format!("opening the PostgreSQL store with {conn:?}"))
}

fn new_schema() -> String {
    format!("muster_bench_{}", uuid::Uuid::new_v4().simple())
}

/// Runs the PostgreSQL store bench.
pub(super) async fn run(args: &StoreBenchArgs) -> anyhow::Result<()> {
    let conn = args.postgres();
    let (admin, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL with {conn:?}"))?;
    tokio::spawn(connection);
    let sync: String = admin
        .query_one("SHOW synchronous_commit", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        sync == "on",
        "synchronous_commit is {sync}; the bench needs on"
    );
    let mut schemas = Vec::new();
    let result = measure(args, conn, &admin, &mut schemas).await;
    for s in &schemas {
        let _ = admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
            .await;
    }
    let report = result?;
    if args.json() {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

async fn measure(
    args: &StoreBenchArgs,
    conn: &str,
    admin: &tokio_postgres::Client,
    schemas: &mut Vec<String>,
) -> anyhow::Result<Report> {
    let mut throughput = Vec::new();
    let mut largest: Option<(String, u64)> = None;
    for &batch in args.batches() {
        let (mut m, mut p50, mut p99, mut p) = (vec![], vec![], vec![], vec![]);
        for r in 0..args.runs() {
            progress(
                args,
                &format!("batch {batch}, run {}/{}", r + 1, args.runs()),
            );
            let schema = new_schema();
            schemas.push(schema.clone());
            let store = Arc::new(open(conn, &schema, args.writers()).await?);
            let (events, rate, latency) = closed_loop_store(store.clone(), args, batch).await?;
            store.close();
            drop(store);
            m.push(rate);
            p50.push(latency.quantile_ms(0.5));
            p99.push(latency.quantile_ms(0.99));
            let table = format!("{schema}.plain_events");
            admin
                .batch_execute(&format!(
                    "CREATE TABLE {table} (LIKE {schema}.events INCLUDING ALL); \
                     CREATE SEQUENCE {table}_position;"
                ))
                .await?;
            p.push(closed_loop_insert(conn, &table, args, batch).await?);
            if largest.as_ref().is_none_or(|l| events > l.1) {
                largest = Some((schema, events));
            }
        }
        let muster = Summary::of(m);
        let plain = Summary::of(p);
        throughput.push(Row {
            batch,
            ratio_to_plain_insert: muster.median / plain.median,
            muster_events_per_s: muster,
            muster_p50_ms: Summary::of(p50),
            muster_p99_ms: Summary::of(p99),
            plain_insert_events_per_s: plain,
        });
    }

    let (schema, _) = largest.context("no run was measured")?;
    let store = open(conn, &schema, 4).await?;
    let (mut rates, mut events) = (vec![], 0);
    for r in 0..args.runs() {
        progress(
            args,
            &format!("$all catch-up, run {}/{}", r + 1, args.runs()),
        );
        let started = Instant::now();
        let mut from = Position::START;
        let mut read = 0u64;
        loop {
            let page = store.read_all(from, 4096).await?;
            let Some(last) = page.last() else { break };
            from = last.position.next();
            read += page.len() as u64;
        }
        rates.push(read as f64 / started.elapsed().as_secs_f64());
        events = read;
    }
    store.close();
    let catch_up = CatchUp {
        events,
        events_per_s: Summary::of(rates),
    };

    let (mut l50, mut l99, mut lag_events) = (vec![], vec![], 0);
    for r in 0..args.runs() {
        progress(
            args,
            &format!(
                "subscription lag at {} events/s, run {}/{}",
                args.lag_rate(),
                r + 1,
                args.runs()
            ),
        );
        let schema = new_schema();
        schemas.push(schema.clone());
        let lag = lag(args, conn, &schema).await?;
        l50.push(lag.quantile_ms(0.5));
        l99.push(lag.quantile_ms(0.99));
        lag_events = lag.count();
    }
    Ok(Report {
        backend: "postgres",
        writers: args.writers(),
        seconds_per_run: args.seconds(),
        runs: args.runs(),
        throughput,
        catch_up,
        subscription_lag: Lag {
            offered_events_per_s: args.lag_rate(),
            events: lag_events,
            p50_ms: Summary::of(l50),
            p99_ms: Summary::of(l99),
        },
    })
}

/// Appends offered at `--lag-rate` through one store instance; a subscription on another (as on
/// another node) records how long after each append was sent it handed the event out.
async fn lag(args: &StoreBenchArgs, conn: &str, schema: &str) -> anyhow::Result<Latencies> {
    let writer = Arc::new(open(conn, schema, 32).await?);
    let reader: Arc<dyn EventStore> = Arc::new(open(conn, schema, 4).await?);
    let total = (args.lag_rate() as f64 * args.seconds().max(2.0)) as u64;
    let sent: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let mut sub = reader.subscribe_all(SubscribeFrom::Start);
    let receiver = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut lag = Latencies::default();
            for _ in 0..total {
                let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
                    .await
                    .context("the subscription stalled")??;
                let at = sent.lock().unwrap().remove(&e.id);
                if let Some(at) = at {
                    lag.record(at.elapsed());
                }
            }
            anyhow::Ok(lag)
        })
    };
    let interval = Duration::from_secs_f64(1.0 / args.lag_rate() as f64);
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut appends = Vec::new();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let event = sample_event(&mut rng, (i % 64) as usize, i);
        sent.lock().unwrap().insert(event.id, Instant::now());
        let writer = writer.clone();
        appends.push(tokio::spawn(async move {
            writer
                .append(
                    &writer_stream("lag", (i % 64) as usize),
                    ExpectedState::Any,
                    vec![event],
                )
                .await
        }));
    }
    for a in appends {
        a.await??;
    }
    let lag = receiver.await??;
    writer.close();
    Ok(lag)
}

fn print_table(r: &Report) {
    println!(
        "muster bench store --backend postgres: {} writers, {} s per run, median of {} runs",
        r.writers, r.seconds_per_run, r.runs
    );
    println!();
    println!(
        "{:>6} {:>12} {:>9} {:>9} {:>14} {:>10}",
        "batch", "muster ev/s", "p50 ms", "p99 ms", "INSERT ev/s", "x INSERT"
    );
    for t in &r.throughput {
        println!(
            "{:>6} {:>12.0} {:>9.2} {:>9.2} {:>14.0} {:>10.2}",
            t.batch,
            t.muster_events_per_s.median,
            t.muster_p50_ms.median,
            t.muster_p99_ms.median,
            t.plain_insert_events_per_s.median,
            t.ratio_to_plain_insert
        );
    }
    println!();
    println!(
        "$all catch-up over {} events: {:.0} events/s",
        r.catch_up.events, r.catch_up.events_per_s.median
    );
    let l = &r.subscription_lag;
    println!(
        "subscription on another instance, {} events/s offered: lag p50 {:.2} ms, p99 {:.2} ms ({} events)",
        l.offered_events_per_s, l.p50_ms.median, l.p99_ms.median, l.events
    );
}
