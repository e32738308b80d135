//! The PostgreSQL store: several Muster nodes on one database (a primary with a synchronous
//! standby for high availability).
//!
//! - Streams are rows of `streams` (next revision, truncate-before); an append locks the rows
//!   of the streams it touches, checks every expected state under those locks, inserts the
//!   events and moves the revisions, all in one transaction. Event ids are unique for ever.
//! - `$all` is ordered by `position = (transaction id << 16) + index in the append`. A reader
//!   takes only rows whose transaction id is below its snapshot's xmin horizon: every
//!   transaction below the horizon has ended, so no event can still commit before a position a
//!   reader has passed. Positions are increasing but not dense. See ADR 0005.
//! - The head is the position after the last event below the horizon. One connection per
//!   store LISTENs; after each commit the writing node sends one NOTIFY (a wake-up with an
//!   empty payload, outside the appending transaction, coalesced under load) and every node
//!   re-reads its head. A lost connection reconnects with backoff and re-reads: subscribers
//!   continue from their own checkpoints, so nothing is skipped or repeated.
//! - Schema migrations are versioned with refinery; a database whose schema is newer than
//!   this binary is refused, naming both versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::rules::{
    Appender, StreamInfo, append_parts, check_replay, first_readable, require, validate_batch,
    validate_parts,
};
use crate::store::EventStore;
use crate::types::{
    AppendResult, DataKey, Direction, EventMetadata, ExpectedState, MAX_READ_COUNT,
    METADATA_EVENT_TYPE, NewEvent, Position, ReadFrom, RecordedEvent, StoreStats, StreamAppend,
    StreamMetadata, StreamName, StreamRevision,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Events one transaction can hold: positions are `(transaction id << 16) + index`.
const TX_SLOTS_BITS: u32 = 16;
/// The horizon, as a position: rows below it belong to ended transactions.
const HORIZON: &str = "(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)";
/// How often an idle follower reads the head without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Shortest time between two reads of the head by a node's follower under a burst of local
/// commits.
const HEAD_READ_SPACING: Duration = Duration::from_millis(2);
/// Local commits since the last read of the head from which the follower spaces its reads.
const BURST: u64 = 4;
/// Columns of an event row, in the order [`decode_row`] reads them.
const EVENT_COLUMNS: &str =
    "position, stream, revision, id, type, schema_version, data, metadata, recorded_at";
/// Table of applied migrations.
const HISTORY_TABLE: &str = "muster_schema_history";
/// How many times an append is tried when the database reports a deadlock or a race on an id.
const APPEND_ATTEMPTS: usize = 3;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A libpq connection string, as a URL (`postgres://user@host:port/db`, several
    /// `host:port` separated by commas, `?target_session_attrs=read-write`) or as `key=value`
    /// pairs.
    pub url: String,
    /// The schema that holds Muster's tables (created when missing).
    pub schema: String,
    /// Pooled connections for appends and reads.
    pub pool_size: usize,
    /// Longest wait to connect, and for a pooled connection.
    pub connect_timeout: Duration,
}

impl PostgresOptions {
    /// Options for `url` with the defaults: schema `muster`, 16 connections, 5 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "muster".to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether a store address names PostgreSQL (`postgres://`, `postgresql://`).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    schema: String,
    channel: String,
    head: watch::Sender<Position>,
    /// Poked after each local commit: the head follower re-reads the head and notifies.
    committed: Arc<LocalCommits>,
    /// Whether the head follower's connection is up.
    connected: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    follower: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &describe_hosts(&self.config))
            .field("schema", &self.schema)
            .field("head", &*self.head.borrow())
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.follower.abort();
    }
}

/// `host:port` of each host the connection string names.
fn describe_hosts(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    if hosts.is_empty() {
        "the default host".to_owned()
    } else {
        hosts.join(", ")
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PostgresStore {
    /// Connects, creates or upgrades the schema, and starts following the head.
    ///
    /// Errors name the hosts tried; a schema newer than this binary is refused.
    pub async fn open(options: PostgresOptions) -> Result<Self> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Unavailable(format!(
                "the PostgreSQL connection string is not valid: {e}"
            ))
        })?;
        if options.schema.is_empty() || options.schema.len() > 63 {
            return Err(StoreError::Storage(format!(
                "schema name {:?} must be 1 to 63 bytes",
                options.schema
            )));
        }
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("muster");
        }
        // Every connection works in Muster's schema.
        // A page of `$all` is an ordered index scan; without statistics (a new or freshly
        // copied table) the planner would otherwise sort the whole range for every page.
        // Every statement is written for one index path, so a prepared statement keeps its
        // generic plan instead of being planned again on every call (the arrays of an append
        // would otherwise make the server replan it each time, costing more than running it).
        let search_path = format!(
            "-c search_path={} -c enable_bitmapscan=off -c plan_cache_mode=force_generic_plan",
            ident(&options.schema)
        );
        let opts = match config.get_options() {
            Some(o) if !o.is_empty() => format!("{o} {search_path}"),
            _ => search_path,
        };
        config.options(&opts);

        let hosts = describe_hosts(&config);
        let (mut client, connection) =
            tokio::time::timeout(options.connect_timeout, config.connect(NoTls))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "cannot connect to PostgreSQL at {hosts}: no answer within {:?}",
                        options.connect_timeout
                    ))
                })?
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot connect to PostgreSQL at {hosts}: {e}"))
                })?;
        let conn_task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let migrated = migrate(&mut client, &options.schema).await;
        drop(client);
        let _ = conn_task.await;
        migrated?;

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::Storage(format!("cannot make the connection pool: {e}")))?;

        let channel = format!("muster_{}", options.schema);
        let head = watch::channel(Position::START).0;
        let committed = Arc::new(LocalCommits::default());
        let connected = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        {
            let client = pool.get().await.map_err(pool_error)?;
            let (h, _) = read_head(&**client).await?;
            head.send_replace(h);
        }
        let follower = tokio::spawn(follow_head(Follower {
            config: config.clone(),
            channel: channel.clone(),
            head: head.clone(),
            committed: committed.clone(),
            connected: connected.clone(),
            closed: closed.clone(),
        }));
        Ok(Self {
            pool,
            config,
            schema: options.schema,
            channel,
            head,
            committed,
            connected,
            closed,
            follower,
        })
    }

    /// The schema holding Muster's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The hosts of the connection string, as `host:port, …`.
    pub fn hosts(&self) -> String {
        describe_hosts(&self.config)
    }

    /// The NOTIFY channel the nodes of this store wake each other on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Closes the store: pooled connections go, the head stops moving, subscriptions end.
    /// Stores a data key copied from another store (`None`: its destruction). An owner that
    /// has a key, or had one destroyed, keeps what it has.
    pub async fn import_data_key(&self, owner: uuid::Uuid, key: Option<DataKey>) -> Result<()> {
        let client = self.client().await?;
        let bytes: Option<Vec<u8>> = key.map(|k| k.0.to_vec());
        client
            .execute(
                "INSERT INTO data_keys (owner, key, destroyed_at) \
                 VALUES ($1, $2, CASE WHEN $2::bytea IS NULL THEN now() END) \
                 ON CONFLICT (owner) DO NOTHING",
                &[&owner, &bytes],
            )
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.close();
        self.follower.abort();
        self.head.send_modify(|_| {});
    }

    /// Copies events from another store's `$all`, in their order, keeping each event's stream,
    /// revision, id, data, metadata and recording time (positions are this store's own).
    ///
    /// Idempotent: events stored already (same id, same event) are passed over, so a copy can be
    /// run again, or resumed after an interruption. An event whose revision does not follow
    /// its stream here is refused with the conflict, naming the stream.
    /// Answers how many events were written.
    pub async fn import(&self, events: &[RecordedEvent]) -> Result<usize> {
        let mut written = 0;
        let mut start = 0;
        while start < events.len() {
            // One transaction per run of events that one multi-stream append can take: each
            // stream once, never with its metadata stream.
            let mut parts: Vec<StreamAppend> = Vec::new();
            let mut end = start;
            while end < events.len() && end - start < 1000 {
                let e = &events[end];
                let continues = parts.last().is_some_and(|p| p.stream == e.stream);
                if !continues {
                    let clash = parts.iter().any(|p| {
                        p.stream == e.stream
                            || p.stream.described_stream().as_ref() == Some(&e.stream)
                            || e.stream.described_stream().as_ref() == Some(&p.stream)
                    });
                    if clash {
                        break;
                    }
                    let expected = match e.revision {
                        0 => ExpectedState::NoStream,
                        r => ExpectedState::Revision(r - 1),
                    };
                    parts.push(StreamAppend::new(e.stream.clone(), expected, Vec::new()));
                }
                parts.last_mut().expect("a part").events.push(NewEvent {
                    id: e.id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                });
                end += 1;
            }
            let times: Vec<DateTime<Utc>> =
                events[start..end].iter().map(|e| e.recorded_at).collect();
            let mut client = self.client().await?;
            let (_, n) = write_once(&mut client, parts, None, Some(&times))
                .await
                .map_err(|f| match f {
                    Failure::Retry(e) => db_error(&e),
                    Failure::Done(e) => e,
                })?;
            written += n;
            start = end;
        }
        if written > 0 {
            self.committed.record();
        }
        Ok(written)
    }

    /// Checks the whole log in one consistent snapshot: every event readable, positions
    /// increasing, each stream's revisions contiguous from 0, and the streams table agreeing
    /// with the events.
    pub async fn verify(&self) -> Result<crate::embedded::VerifyReport> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| db_error(&e))?;
        let mut report = crate::embedded::VerifyReport::default();
        let mut next: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut after: i64 = -1;
        loop {
            let rows = tx
                .query(
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT 4096"
                    ),
                    &[&after],
                )
                .await
                .map_err(|e| db_error(&e))?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            for row in &rows {
                report.events += 1;
                let position: i64 = row.get(0);
                let e = match decode_row(row) {
                    Ok(e) => e,
                    Err(e) => {
                        report.problem(format!("event at {position}: {e}"));
                        continue;
                    }
                };
                if serde_json::from_slice::<serde::de::IgnoredAny>(&e.data).is_err() {
                    report.problem(format!("event at {position} ({}): data is not JSON", e.id));
                }
                let want = next.entry(e.stream.to_string()).or_insert(0);
                if e.revision != *want {
                    report.problem(format!(
                        "{} has revision {} at {position} where {} was due",
                        e.stream, e.revision, want
                    ));
                }
                *want = e.revision + 1;
            }
        }
        report.streams = next.len() as u64;
        // Truncate-before is set by metadata events only: never past the stream's end.
        let rows = tx
            .query("SELECT name, truncate_before FROM streams", &[])
            .await
            .map_err(|e| db_error(&e))?;
        for row in &rows {
            let name: String = row.get(0);
            let tb: i64 = row.get(1);
            let counted = next.get(&name).copied().unwrap_or(0);
            if tb as u64 > counted {
                report.problem(format!(
                    "the streams table truncates {name} before revision {tb}, past its {counted} events"
                ));
            }
        }
        let (head, _) = read_head(&*tx).await?;
        report.head = head.0;
        Ok(report)
    }

    /// Whether the connection that follows the head is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Client> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(pool_error)
    }

    /// Re-reads the head now (also done after every local commit and every notification).
    pub async fn refresh_head(&self) -> Result<Position> {
        let client = self.client().await?;
        let (h, _) = read_head(&**client).await?;
        publish(&self.head, h);
        Ok(*self.head.borrow())
    }

    /// Runs one append transaction, with retries on deadlocks and id races.
    async fn write(
        &self,
        parts: Vec<StreamAppend>,
        delete: Option<(StreamName, ExpectedState)>,
    ) -> Result<Vec<AppendResult>> {
        let mut client = self.client().await?;
        if delete.is_none()
            && let Some(results) = write_fast(&client, &parts).await?
        {
            self.committed.record();
            return Ok(results);
        }
        let mut last_error = None;
        for _ in 0..APPEND_ATTEMPTS {
            match write_once(&mut client, parts.clone(), delete.clone(), None).await {
                Ok((results, _)) => {
                    self.committed.record();
                    return Ok(results);
                }
                Err(Failure::Retry(e)) => last_error = Some(e),
                Err(Failure::Done(e)) => return Err(e),
            }
        }
        Err(last_error
            .map(|e| db_error(&e))
            .unwrap_or_else(|| StoreError::Storage("the append could not be completed".to_owned())))
    }

    async fn info(
        &self,
        client: &tokio_postgres::Client,
        stream: &StreamName,
    ) -> Result<StreamInfo> {
        let row = client
            .query_one(
                "SELECT (SELECT revision FROM events WHERE stream = $1 ORDER BY revision DESC LIMIT 1), \
                        (SELECT truncate_before FROM streams WHERE name = $1)",
                &[&stream.as_str()],
            )
            .await
            .map_err(|e| db_error(&e))?;
        let last: Option<i64> = row.get(0);
        let tb: Option<i64> = row.get(1);
        Ok(StreamInfo {
            next_revision: last.map_or(0, |r| r as u64 + 1),
            truncate_before: tb.unwrap_or(0) as u64,
        })
    }
}

fn publish(head: &watch::Sender<Position>, now: Position) {
    head.send_if_modified(|h| {
        let moved = now > *h;
        if moved {
            *h = now;
        }
        moved
    });
}

/// Creates the schema when missing and applies the migrations, refusing a newer schema.
async fn migrate(client: &mut tokio_postgres::Client, schema: &str) -> Result<()> {
    // Nodes starting at once: one creates and migrates, the others wait for it (CREATE SCHEMA
    // IF NOT EXISTS alone races). The lock goes with the session, on every way out.
    client
        .batch_execute("SELECT pg_advisory_lock(hashtext('muster-migrations'))")
        .await
        .map_err(|e| db_error(&e))?;
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)))
        .await
        .map_err(|e| db_error(&e))?;
    let mut runner = embedded::migrations::runner();
    let known = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0);
    let exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("{}.{HISTORY_TABLE}", ident(schema))],
        )
        .await
        .map_err(|e| db_error(&e))?
        .get(0);
    if exists {
        let applied: Option<i32> = client
            .query_one(&format!("SELECT max(version) FROM {HISTORY_TABLE}"), &[])
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        let applied = i64::from(applied.unwrap_or(0));
        if applied > known {
            return Err(StoreError::Storage(format!(
                "the database schema {schema} is at version {applied}, newer than this muster knows \
                 (up to version {known}): upgrade muster before starting it on this database"
            )));
        }
    }
    let result = runner
        .set_migration_table_name(HISTORY_TABLE)
        .run_async(client)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::Storage(format!("schema migration failed: {e}")));
    let _ = client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('muster-migrations'))")
        .await;
    result
}

/// Reads the head (the position after the last event below the horizon) and the highest
/// committed position, above the horizon or not ([`head_of`] reads the answer).
fn head_sql(notify: bool) -> String {
    let notify = if notify {
        ", (SELECT count(*) FROM pg_notify($1, ''))"
    } else {
        ""
    };
    format!(
        "SELECT (SELECT position FROM events WHERE position < h.horizon \
                 ORDER BY position DESC LIMIT 1), \
                (SELECT max(position) FROM events){notify} \
         FROM (SELECT {HORIZON} AS horizon) h"
    )
}

/// The head and the highest committed position from a row of [`head_sql`].
fn head_of(row: &Row) -> (Position, Option<Position>) {
    let visible: Option<i64> = row.get(0);
    let committed: Option<i64> = row.get(1);
    (
        visible.map_or(Position::START, |p| Position(p as u64 + 1)),
        committed.map(|p| Position(p as u64)),
    )
}

/// The head and the highest committed position (see [`head_sql`]).
async fn read_head(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(Position, Option<Position>)> {
    let row = client
        .query_one(&head_sql(false), &[])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(head_of(&row))
}

/// The commits of this store instance, counted, waking its follower.
#[derive(Default)]
struct LocalCommits {
    count: std::sync::atomic::AtomicU64,
    notify: Notify,
}

impl LocalCommits {
    fn record(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

struct Follower {
    config: tokio_postgres::Config,
    channel: String,
    head: watch::Sender<Position>,
    committed: Arc<LocalCommits>,
    connected: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

/// Follows the head: LISTENs on one connection, re-reads the head on every notification and
/// every local commit (then sends one NOTIFY for the other nodes), and polls while committed
/// events wait below a transaction that holds the horizon. Reconnects with backoff.
async fn follow_head(f: Follower) {
    let mut backoff = Duration::from_millis(100);
    while !f.closed.load(Ordering::SeqCst) {
        match follow_once(&f).await {
            Ok(()) => return,
            Err(e) => {
                f.connected.store(false, Ordering::SeqCst);
                tracing::warn!(
                    "the PostgreSQL connection that follows the log failed ({e}); reconnecting in {backoff:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn follow_once(f: &Follower) -> Result<()> {
    let (client, mut connection) = f
        .config
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let conn_task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    let _ = wake_tx.send(());
                }
                Ok(_) => {}
                Err(e) => return e.to_string(),
            }
        }
        "the connection closed".to_owned()
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {}", ident(&f.channel)))
            .await
            .map_err(|e| db_error(&e))?;
        f.connected.store(true, Ordering::SeqCst);
        // One statement reads the head; after local commits the same one also wakes the
        // other nodes (the NOTIFY commits with the read, one round trip for both).
        let read = client
            .prepare(&head_sql(false))
            .await
            .map_err(|e| db_error(&e))?;
        let read_and_wake = client
            .prepare(&head_sql(true))
            .await
            .map_err(|e| db_error(&e))?;
        let mut pending_local = false;
        let mut poll = IDLE_POLL;
        let mut last_read = tokio::time::Instant::now();
        let mut commits_read = f.committed.count.load(Ordering::Relaxed);
        loop {
            if f.closed.load(Ordering::SeqCst) {
                return Ok(());
            }
            // Under a burst of local commits, one read of the head (and one NOTIFY) covers the
            // commits of a short while: the database's CPU goes to the appends. Otherwise the
            // read goes at once, for the shortest lag.
            let count = f.committed.count.load(Ordering::Relaxed);
            if count - commits_read >= BURST {
                tokio::time::sleep_until(last_read + HEAD_READ_SPACING).await;
            }
            commits_read = f.committed.count.load(Ordering::Relaxed);
            last_read = tokio::time::Instant::now();
            let row = if std::mem::take(&mut pending_local) {
                client.query_one(&read_and_wake, &[&f.channel]).await
            } else {
                client.query_one(&read, &[]).await
            }
            .map_err(|e| db_error(&e))?;
            let (head, committed) = head_of(&row);
            let moved = head > *f.head.borrow();
            publish(&f.head, head);
            // Committed events above the horizon: poll until it moves past them. Soon while
            // the horizon moves (a transaction is usually in flight for a moment only), backing
            // off while it stays (a long transaction elsewhere holds it).
            let waiting = committed.is_some_and(|c| c >= head);
            poll = match (waiting, moved || poll >= IDLE_POLL) {
                (false, _) => IDLE_POLL,
                (true, true) => Duration::from_millis(2),
                (true, false) => (poll * 2).min(Duration::from_millis(100)),
            };
            tokio::select! {
                () = f.committed.notify.notified() => pending_local = true,
                woke = wake_rx.recv() => {
                    if woke.is_none() {
                        return Err(StoreError::Unavailable("the connection closed".to_owned()));
                    }
                }
                () = tokio::time::sleep(poll) => {}
            }
            while wake_rx.try_recv().is_ok() {}
        }
    }
    .await;
    conn_task.abort();
    result
}

/// How often a leader checks its session, and a follower tries to take the lead.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(500);

/// Holds a session-level advisory lock on a connection of its own while it can: the node
/// leads while the lock is held, and the lock goes with the session when the node dies (its
/// connection closes) or is cut off (TCP keepalives end the session within about 10 s).
async fn lead(
    mut config: tokio_postgres::Config,
    lock: String,
    role: String,
    leader: watch::Sender<bool>,
    closed: Arc<AtomicBool>,
) {
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3);
    let mut backoff = Duration::from_millis(100);
    while !closed.load(Ordering::SeqCst) && !leader.is_closed() {
        let session = async {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
            let mut connection = tokio::spawn(connection);
            client
                .batch_execute(
                    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; \
                     SET tcp_keepalives_count = 3",
                )
                .await
                .map_err(|e| e.to_string())?;
            loop {
                if closed.load(Ordering::SeqCst) || leader.is_closed() {
                    return Ok(());
                }
                let check = if *leader.borrow() {
                    client.query_one("SELECT true", &[]).await
                } else {
                    client
                        .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&lock])
                        .await
                };
                let holds: bool = check.map_err(|e| e.to_string())?.get(0);
                if holds && !*leader.borrow() {
                    tracing::info!(role, "this node now leads {role}");
                }
                leader.send_if_modified(|l| std::mem::replace(l, holds) != holds);
                tokio::select! {
                    () = tokio::time::sleep(LEADERSHIP_CHECK) => {}
                    _ = &mut connection => return Err("the connection closed".to_owned()),
                }
            }
        }
        .await;
        let was = leader.send_if_modified(|l| std::mem::replace(l, false));
        match session {
            Ok(()) => return,
            Err(e) => {
                if was {
                    tracing::warn!(role, "this node no longer leads {role}: {e}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A failed try of an append: worth another try, or final.
enum Failure {
    Retry(tokio_postgres::Error),
    Done(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Done(e)
    }
}

impl From<crate::error::InvalidInput> for Failure {
    fn from(e: crate::error::InvalidInput) -> Self {
        Failure::Done(e.into())
    }
}

fn classify(e: tokio_postgres::Error) -> Failure {
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::UNIQUE_VIOLATION =>
        {
            Failure::Retry(e)
        }
        _ => Failure::Done(db_error(&e)),
    }
}

/// What an append needs to know, read under the streams' locks, and what it will write.
struct Planned {
    infos: std::collections::HashMap<StreamName, StreamInfo>,
    stored: std::collections::HashMap<Uuid, RecordedEvent>,
    xid: i64,
    now: DateTime<Utc>,
    next_index: u64,
    rows: Vec<RecordedEvent>,
}

impl Planned {
    fn info(&self, stream: &StreamName) -> StreamInfo {
        self.infos.get(stream).copied().unwrap_or_default()
    }
}

impl Appender for Planned {
    fn replay(&self, stream: &StreamName, events: &[NewEvent]) -> Result<Option<AppendResult>> {
        let stored: Vec<Option<RecordedEvent>> = events
            .iter()
            .map(|e| self.stored.get(&e.id).cloned())
            .collect();
        check_replay(stream, events, &stored)
    }

    fn check_expected(&self, stream: &StreamName, expected: ExpectedState) -> Result<()> {
        require(stream, expected, self.info(stream).state())
    }

    fn write(&mut self, stream: &StreamName, events: Vec<NewEvent>) -> Result<AppendResult> {
        let mut info = self.info(stream);
        let mut last = Position::START;
        let mut last_row = None;
        for event in events {
            let position = Position(((self.xid as u64) << TX_SLOTS_BITS) | self.next_index);
            self.next_index += 1;
            let row = RecordedEvent {
                stream: stream.clone(),
                revision: info.next_revision,
                position,
                id: event.id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: self.now,
            };
            info.next_revision += 1;
            last = position;
            last_row = Some(self.rows.len());
            self.rows.push(row);
        }
        self.infos.insert(stream.clone(), info);
        if let (Some(described), Some(i)) = (stream.described_stream(), last_row) {
            let meta: StreamMetadata = self.rows[i].decode().unwrap_or_default();
            let mut d = self.info(&described);
            d.truncate_before = meta.truncate_before.unwrap_or(0);
            self.infos.insert(described, d);
        }
        Ok(AppendResult {
            next_expected_revision: info.next_revision - 1,
            position: last,
        })
    }
}

/// One try of an append (or of a soft delete, which is an append to the metadata stream made
/// under the lock of the stream it deletes), in two round trips: BEGIN, the streams' locks
/// (transaction-level advisory locks, in name order), their revisions, the stored ids and the
/// transaction id in one pipeline; then the rows, any truncate-before, and COMMIT.
/// With `times`, the rows keep those recording times (a copy from another store). Answers the
/// results and how many events were written.
async fn write_once(
    client: &mut deadpool_postgres::Client,
    parts: Vec<StreamAppend>,
    delete: Option<(StreamName, ExpectedState)>,
    times: Option<&[DateTime<Utc>]>,
) -> std::result::Result<(Vec<AppendResult>, usize), Failure> {
    let outcome = write_in_transaction(client, parts, delete, times).await;
    if let Err(Failure::Retry(_) | Failure::Done(_)) = &outcome {
        // Whatever failed, the connection goes back to the pool outside any transaction.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    outcome
}

/// The one-statement append: every part expects an exact revision or no stream, so the new
/// revisions are known without reading. A guard checks that each expected revision is the
/// stream's (revision r exists; r + 1 is kept by the unique index) or that the stream has no
/// event, and the rows go in in the same statement, committed on their own.
const APPEND_AT_KNOWN_REVISIONS: &str = "WITH x AS ( \
       SELECT pg_current_xact_id()::text::bigint AS xid, transaction_timestamp() AS now \
     ), guard AS ( \
       SELECT coalesce(bool_and(CASE WHEN g.r < 0 \
         THEN (SELECT e.revision FROM events e WHERE e.stream = g.s ORDER BY e.revision DESC LIMIT 1) IS NULL \
         ELSE EXISTS (SELECT 1 FROM events e WHERE e.stream = g.s AND e.revision = g.r) END), true) AS ok \
       FROM unnest($1::text[], $2::bigint[]) AS g(s, r) \
     ), ins AS ( \
       INSERT INTO events \
         (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
       SELECT (x.xid << 16) + v.i - 1, v.s, v.r, v.id, v.t, v.sv, v.d, v.m, x.now \
       FROM x, guard, unnest($3::text[], $4::bigint[], $5::uuid[], $6::text[], $7::int[], \
                             $8::bytea[], $9::bytea[]) WITH ORDINALITY AS v(s, r, id, t, sv, d, m, i) \
       WHERE guard.ok \
       RETURNING 1 \
     ) \
     SELECT (SELECT ok FROM guard), (SELECT count(*) FROM ins), (SELECT xid FROM x)";

/// [`APPEND_AT_KNOWN_REVISIONS`] for the commonest append, one event to one stream: the same
/// guard and a single-row insert, with no arrays and no common table expression.
const APPEND_ONE_EVENT: &str = "INSERT INTO events \
       (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
     SELECT pg_current_xact_id()::text::bigint << 16, $1::text, $2::bigint, $3::uuid, $4::text, \
            $5::int, $6::bytea, $7::bytea, transaction_timestamp() \
     WHERE CASE WHEN $2::bigint = 0 \
       THEN (SELECT e.revision FROM events e WHERE e.stream = $1::text ORDER BY e.revision DESC LIMIT 1) IS NULL \
       ELSE EXISTS (SELECT 1 FROM events e WHERE e.stream = $1::text AND e.revision = $2::bigint - 1) END \
     RETURNING position";

/// [`APPEND_AT_KNOWN_REVISIONS`] for several events to one stream: the same guard and insert
/// without a common table expression.
const APPEND_TO_ONE_STREAM: &str = "INSERT INTO events \
       (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
     SELECT (pg_current_xact_id()::text::bigint << 16) + v.i - 1, $1::text, $2::bigint + v.i - 1, \
            v.id, v.t, v.sv, v.d, v.m, transaction_timestamp() \
     FROM unnest($3::uuid[], $4::text[], $5::int[], $6::bytea[], $7::bytea[]) \
          WITH ORDINALITY AS v(id, t, sv, d, m, i) \
     WHERE CASE WHEN $2::bigint = 0 \
       THEN (SELECT e.revision FROM events e WHERE e.stream = $1::text ORDER BY e.revision DESC LIMIT 1) IS NULL \
       ELSE EXISTS (SELECT 1 FROM events e WHERE e.stream = $1::text AND e.revision = $2::bigint - 1) END \
     RETURNING position";

/// The fast path of an append ([`APPEND_AT_KNOWN_REVISIONS`]): one round trip, no lock, no
/// read first. `None` when it does not apply (an expected state that needs the stream read, a
/// metadata stream) or did not write: the guard failed (a conflict, a soft-deleted stream) or
/// a unique index refused (a concurrent append of the same revision, an id stored already).
/// The general path then decides and answers, as the shared rules say.
async fn write_fast(
    client: &deadpool_postgres::Client,
    parts: &[StreamAppend],
) -> Result<Option<Vec<AppendResult>>> {
    let known = parts.iter().all(|p| {
        !p.stream.is_metastream()
            && matches!(
                p.expected,
                ExpectedState::Revision(_) | ExpectedState::NoStream
            )
    });
    if !known {
        return Ok(None);
    }
    if let [part] = parts {
        return write_fast_part(client, part).await;
    }
    let guard_streams: Vec<&str> = parts.iter().map(|p| p.stream.as_str()).collect();
    let guard_revisions: Vec<i64> = parts
        .iter()
        .map(|p| match p.expected {
            ExpectedState::Revision(r) => r as i64,
            _ => -1,
        })
        .collect();
    let mut streams = Vec::new();
    let mut revisions = Vec::new();
    let mut ids = Vec::new();
    let mut types = Vec::new();
    let mut versions = Vec::new();
    let mut data = Vec::new();
    let mut metadata = Vec::new();
    let mut results = Vec::with_capacity(parts.len());
    for p in parts {
        let first = match p.expected {
            ExpectedState::Revision(r) => r + 1,
            _ => 0,
        };
        for (k, e) in p.events.iter().enumerate() {
            streams.push(p.stream.as_str());
            revisions.push((first + k as u64) as i64);
            ids.push(e.id);
            types.push(e.event_type.as_str());
            versions.push(e.schema_version as i32);
            data.push(e.data.as_slice());
            metadata.push(serde_json::to_vec(&e.metadata).map_err(|err| {
                StoreError::Storage(format!("cannot encode the metadata of {}: {err}", e.id))
            })?);
        }
        results.push((first + p.events.len() as u64 - 1, streams.len() as u64 - 1));
    }
    let meta_slices: Vec<&[u8]> = metadata.iter().map(Vec::as_slice).collect();
    let statement = client
        .prepare_cached(APPEND_AT_KNOWN_REVISIONS)
        .await
        .map_err(|e| db_error(&e))?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &guard_streams,
        &guard_revisions,
        &streams,
        &revisions,
        &ids,
        &types,
        &versions,
        &data,
        &meta_slices,
    ];
    let row = match client.query_one(&statement, &params).await {
        Ok(row) => row,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(None),
        Err(e) => return Err(db_error(&e)),
    };
    let ok: bool = row.get(0);
    let inserted: i64 = row.get(1);
    let xid: i64 = row.get(2);
    if !ok || inserted as usize != streams.len() {
        return Ok(None);
    }
    Ok(Some(
        results
            .into_iter()
            .map(|(next_expected_revision, last)| AppendResult {
                next_expected_revision,
                position: Position(((xid as u64) << TX_SLOTS_BITS) | last),
            })
            .collect(),
    ))
}

/// [`write_fast`] for one stream ([`APPEND_ONE_EVENT`], [`APPEND_TO_ONE_STREAM`]).
async fn write_fast_part(
    client: &deadpool_postgres::Client,
    part: &StreamAppend,
) -> Result<Option<Vec<AppendResult>>> {
    let first = match part.expected {
        ExpectedState::Revision(r) => r + 1,
        _ => 0,
    };
    let events = &part.events;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| e.schema_version as i32).collect();
    let data: Vec<&[u8]> = events.iter().map(|e| e.data.as_slice()).collect();
    let metadata = events
        .iter()
        .map(|e| {
            serde_json::to_vec(&e.metadata).map_err(|err| {
                StoreError::Storage(format!("cannot encode the metadata of {}: {err}", e.id))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata: Vec<&[u8]> = metadata.iter().map(Vec::as_slice).collect();
    let stream = part.stream.as_str();
    let first_revision = first as i64;
    let (sql, params): (_, [&(dyn tokio_postgres::types::ToSql + Sync); 7]) = if events.len() == 1 {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &stream,
            &first_revision,
            &ids[0],
            &types[0],
            &versions[0],
            &data[0],
            &metadata[0],
        ];
        (APPEND_ONE_EVENT, params)
    } else {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
            &stream,
            &first_revision,
            &ids,
            &types,
            &versions,
            &data,
            &metadata,
        ];
        (APPEND_TO_ONE_STREAM, params)
    };
    let statement = client.prepare_cached(sql).await.map_err(|e| db_error(&e))?;
    let rows = match client.query(&statement, &params).await {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(None),
        Err(e) => return Err(db_error(&e)),
    };
    let last = rows.iter().map(|row| row.get::<_, i64>(0)).max();
    Ok(match last {
        Some(last) if rows.len() == events.len() => Some(vec![AppendResult {
            next_expected_revision: first + events.len() as u64 - 1,
            position: Position(last as u64),
        }]),
        _ => None,
    })
}

/// SQL of the first pipeline.
const LOCK_STREAMS: &str = "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) \
     FROM unnest($1::text[]) WITH ORDINALITY AS x(n, i) ORDER BY i";
const STREAM_STATES: &str = "SELECT s.n, \
       (SELECT e.revision FROM events e WHERE e.stream = s.n ORDER BY e.revision DESC LIMIT 1), \
       st.truncate_before \
     FROM unnest($1::text[]) AS s(n) LEFT JOIN streams st ON st.name = s.n";
const CLOCK: &str = "SELECT pg_current_xact_id()::text::bigint, transaction_timestamp()";
const INSERT_EVENTS: &str = "INSERT INTO events \
       (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
     SELECT p, s, r, i, t, v, d, m, w \
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], \
                 $7::bytea[], $8::bytea[], $9::timestamptz[]) AS x(p, s, r, i, t, v, d, m, w)";
const SET_TRUNCATE_BEFORE: &str = "INSERT INTO streams (name, truncate_before) \
     SELECT n, t FROM unnest($1::text[], $2::bigint[]) AS x(n, t) \
     ON CONFLICT (name) DO UPDATE SET truncate_before = EXCLUDED.truncate_before";

fn by_id_sql() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1)")
}

async fn write_in_transaction(
    client: &mut deadpool_postgres::Client,
    mut parts: Vec<StreamAppend>,
    delete: Option<(StreamName, ExpectedState)>,
    times: Option<&[DateTime<Utc>]>,
) -> std::result::Result<(Vec<AppendResult>, usize), Failure> {
    let mut names: Vec<String> = parts.iter().map(|p| p.stream.to_string()).collect();
    for p in &parts {
        if let Some(d) = p.stream.described_stream() {
            names.push(d.to_string());
        }
    }
    if let Some((s, _)) = &delete {
        names.push(s.to_string());
        names.push(s.metastream()?.to_string());
    }
    names.sort();
    names.dedup();
    let ids: Vec<Uuid> = parts
        .iter()
        .flat_map(|p| p.events.iter().map(|e| e.id))
        .collect();

    let by_id = by_id_sql();
    let (lock_st, state_st, ids_st, clock_st) = futures::try_join!(
        client.prepare_cached(LOCK_STREAMS),
        client.prepare_cached(STREAM_STATES),
        client.prepare_cached(&by_id),
        client.prepare_cached(CLOCK),
    )
    .map_err(classify)?;
    let names_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
    let ids_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let (begun, locked, states, stored_rows, clock) = futures::join!(
        client.batch_execute("BEGIN"),
        client.execute(&lock_st, &names_param),
        client.query(&state_st, &names_param),
        client.query(&ids_st, &ids_param),
        client.query_one(&clock_st, &[]),
    );
    begun.map_err(classify)?;
    locked.map_err(classify)?;
    let states = states.map_err(classify)?;
    let stored_rows = stored_rows.map_err(classify)?;
    let clock = clock.map_err(classify)?;

    let mut infos = std::collections::HashMap::new();
    for row in &states {
        let name: String = row.get(0);
        let last: Option<i64> = row.get(1);
        let tb: Option<i64> = row.get(2);
        infos.insert(
            StreamName::parse(name).map_err(StoreError::from)?,
            StreamInfo {
                next_revision: last.map_or(0, |r| r as u64 + 1),
                truncate_before: tb.unwrap_or(0) as u64,
            },
        );
    }
    let before = infos.clone();

    if let Some((stream, expected)) = &delete {
        let info = infos.get(stream).copied().unwrap_or_default();
        if !expected.is_met_by(info.state()) || !info.exists() {
            return Err(Failure::Done(StoreError::WrongExpectedState {
                stream: stream.clone(),
                expected: *expected,
                actual: info.state(),
            }));
        }
        let mut meta = stream_metadata(client, stream).await?;
        meta.truncate_before = Some(info.next_revision);
        let event = NewEvent::json(Uuid::new_v4(), METADATA_EVENT_TYPE, 1, &meta)
            .map_err(StoreError::from)?;
        parts = vec![StreamAppend::new(
            stream.metastream()?,
            ExpectedState::Any,
            vec![event],
        )];
    }

    let mut stored = std::collections::HashMap::new();
    for row in &stored_rows {
        let e = decode_row(row)?;
        stored.insert(e.id, e);
    }
    let mut plan = Planned {
        infos,
        stored,
        xid: clock.get(0),
        now: clock.get(1),
        next_index: 0,
        rows: Vec::new(),
    };
    let results = append_parts(&mut plan, parts)?;
    if plan.rows.is_empty() {
        // A retry of a stored append: nothing to write.
        client.batch_execute("ROLLBACK").await.map_err(classify)?;
        return Ok((results, 0));
    }
    if let Some(times) = times {
        for (row, t) in plan.rows.iter_mut().zip(times) {
            row.recorded_at = *t;
        }
    }

    let n = plan.rows.len();
    let mut positions = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut revisions = Vec::with_capacity(n);
    let mut row_ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut recorded = Vec::with_capacity(n);
    for row in &plan.rows {
        recorded.push(row.recorded_at);
        positions.push(row.position.0 as i64);
        streams.push(row.stream.as_str());
        revisions.push(row.revision as i64);
        row_ids.push(row.id);
        types.push(row.event_type.as_str());
        versions.push(row.schema_version as i32);
        data.push(row.data.as_slice());
        metadata.push(serde_json::to_vec(&row.metadata).map_err(|e| {
            StoreError::Storage(format!("cannot encode the metadata of {}: {e}", row.id))
        })?);
    }
    let meta_slices: Vec<&[u8]> = metadata.iter().map(Vec::as_slice).collect();
    // Truncate-before moved by a metadata stream's event.
    let mut moved: Vec<(&StreamName, i64)> = plan
        .infos
        .iter()
        .filter(|(s, i)| before.get(*s).map_or(0, |b| b.truncate_before) != i.truncate_before)
        .map(|(s, i)| (s, i.truncate_before as i64))
        .collect();
    moved.sort();
    let moved_names: Vec<&str> = moved.iter().map(|(s, _)| s.as_str()).collect();
    let moved_tbs: Vec<i64> = moved.iter().map(|(_, t)| *t).collect();

    let insert_params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
        &positions,
        &streams,
        &revisions,
        &row_ids,
        &types,
        &versions,
        &data,
        &meta_slices,
        &recorded,
    ];
    let tb_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&moved_names, &moved_tbs];
    let (insert_st, tb_st) = futures::try_join!(
        client.prepare_cached(INSERT_EVENTS),
        client.prepare_cached(SET_TRUNCATE_BEFORE),
    )
    .map_err(classify)?;
    let insert = client.execute(&insert_st, &insert_params);
    let truncate = async {
        if moved.is_empty() {
            Ok(0)
        } else {
            client.execute(&tb_st, &tb_params).await
        }
    };
    let (inserted, truncated, committed) =
        futures::join!(insert, truncate, client.batch_execute("COMMIT"));
    inserted.map_err(classify)?;
    truncated.map_err(classify)?;
    // A commit whose answer is lost may or may not have happened: it is never acknowledged,
    // and a retry with the same event ids is answered from the store.
    committed.map_err(|e| Failure::Done(db_error(&e)))?;
    Ok((results, n))
}

fn decode_row(row: &Row) -> Result<RecordedEvent> {
    let position: i64 = row.get(0);
    let stream: String = row.get(1);
    let metadata: &[u8] = row.get(7);
    let metadata: EventMetadata = serde_json::from_slice(metadata).map_err(|e| {
        StoreError::Storage(format!(
            "the metadata of the event at {position} is not readable: {e}"
        ))
    })?;
    let revision: i64 = row.get(2);
    let schema_version: i32 = row.get(5);
    Ok(RecordedEvent {
        stream: StreamName::parse(stream)?,
        revision: revision as u64,
        position: Position(position as u64),
        id: row.get(3),
        event_type: row.get(4),
        schema_version: schema_version as u32,
        data: row.get::<_, Vec<u8>>(6),
        metadata,
        recorded_at: row.get(8),
    })
}

/// A stream's metadata: its metadata stream's last event (the default when there is none).
async fn stream_metadata(
    client: &tokio_postgres::Client,
    stream: &StreamName,
) -> Result<StreamMetadata> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream = $1 ORDER BY revision DESC LIMIT 1"
            ),
            &[&stream.metastream()?.as_str()],
        )
        .await
        .map_err(|e| db_error(&e))?;
    match row {
        Some(row) => decode_row(&row)?.decode().map_err(|e| {
            StoreError::Storage(format!("stored metadata of {stream} is not readable: {e}"))
        }),
        None => Ok(StreamMetadata::default()),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(&e),
        other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

/// Maps a database error: a lost or refused connection (or a standby that cannot take
/// writes, as after a failover) is [`StoreError::Unavailable`], the rest a storage failure.
fn db_error(e: &tokio_postgres::Error) -> StoreError {
    let unavailable = match e.code() {
        None => true,
        Some(c) => {
            let code = c.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION
                || *c == SqlState::TOO_MANY_CONNECTIONS
        }
    };
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    if unavailable {
        StoreError::Unavailable(format!("PostgreSQL: {text}"))
    } else {
        StoreError::Storage(format!("PostgreSQL: {text}"))
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn data_key(&self, owner: uuid::Uuid, create: bool) -> Result<Option<DataKey>> {
        let client = self.client().await?;
        if create {
            let fresh = DataKey::random();
            client
                .execute(
                    "INSERT INTO data_keys (owner, key) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING",
                    &[&owner, &fresh.0.as_slice()],
                )
                .await
                .map_err(|e| db_error(&e))?;
        }
        let row = client
            .query_opt("SELECT key FROM data_keys WHERE owner = $1", &[&owner])
            .await
            .map_err(|e| db_error(&e))?;
        let Some(row) = row else { return Ok(None) };
        let key: Option<Vec<u8>> = row.get(0);
        match key {
            None => Ok(None),
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(|k| Some(DataKey(k)))
                .map_err(|_| {
                    StoreError::Storage(format!("the data key of {owner} is not 32 bytes"))
                }),
        }
    }

    async fn destroy_data_key(&self, owner: uuid::Uuid) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db_error(&e))?;
        let had = tx
            .query_opt(
                "SELECT key IS NOT NULL FROM data_keys WHERE owner = $1 FOR UPDATE",
                &[&owner],
            )
            .await
            .map_err(|e| db_error(&e))?
            .is_some_and(|row| row.get::<_, bool>(0));
        tx.execute(
            "INSERT INTO data_keys (owner, key, destroyed_at) VALUES ($1, NULL, now()) \
             ON CONFLICT (owner) DO UPDATE SET key = NULL, \
             destroyed_at = COALESCE(data_keys.destroyed_at, now())",
            &[&owner],
        )
        .await
        .map_err(|e| db_error(&e))?;
        tx.commit().await.map_err(|e| db_error(&e))?;
        Ok(had)
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate_batch(stream, &events)?;
        let part = StreamAppend::new(stream.clone(), expected, events);
        Ok(self.write(vec![part], None).await?.remove(0))
    }

    async fn append_many(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        validate_parts(&parts)?;
        self.write(parts, None).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let info = self.info(&client, stream).await?;
        if !info.exists() {
            return Err(StoreError::StreamNotFound(stream.clone()));
        }
        let meta = if stream.is_metastream() {
            StreamMetadata::default()
        } else {
            stream_metadata(&client, stream).await?
        };
        let first = first_readable(&info, &meta);
        let end = info.next_revision; // exclusive
        let (lo, hi, order) = match (direction, from) {
            (Direction::Forwards, ReadFrom::Start) => (first, end, "ASC"),
            (Direction::Forwards, ReadFrom::Revision(r)) => (r.max(first), end, "ASC"),
            (Direction::Backwards, ReadFrom::End) => (first, end, "DESC"),
            (Direction::Backwards, ReadFrom::Revision(r)) => {
                (first, end.min(r.saturating_add(1)), "DESC")
            }
            (Direction::Forwards, ReadFrom::End) | (Direction::Backwards, ReadFrom::Start) => {
                return Ok(Vec::new());
            }
        };
        if lo >= hi {
            return Ok(Vec::new());
        }
        let cutoff: Option<DateTime<Utc>> = meta.max_age_secs.map(|age| {
            let age = i64::try_from(age).unwrap_or(i64::MAX / 2_000_000);
            Utc::now() - chrono::Duration::seconds(age.min(i64::MAX / 2_000_000))
        });
        let limit = limit.min(MAX_READ_COUNT) as i64;
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE stream = $1 AND revision >= $2 AND revision < $3 \
                       AND ($4::timestamptz IS NULL OR recorded_at > $4) \
                     ORDER BY revision {order} LIMIT $5"
                ),
                &[
                    &stream.as_str(),
                    &(lo as i64),
                    &(hi as i64),
                    &cutoff,
                    &limit,
                ],
            )
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let from = i64::try_from(from.0).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_READ_COUNT) as i64;
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE position >= $1 AND position < {HORIZON} \
                     ORDER BY position LIMIT $2"
                ),
                &[&from, &limit],
            )
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_all_backwards(
        &self,
        before: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let before = i64::try_from(before.0).unwrap_or(i64::MAX);
        let limit = limit.min(MAX_READ_COUNT) as i64;
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE position < $1 AND position < {HORIZON} \
                     ORDER BY position DESC LIMIT $2"
                ),
                &[&before, &limit],
            )
            .await
            .map_err(|e| db_error(&e))?;
        rows.iter().map(decode_row).collect()
    }

    async fn stream_metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        let client = self.client().await?;
        stream_metadata(&client, stream).await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
    ) -> Result<Position> {
        let results = self
            .write(Vec::new(), Some((stream.clone(), expected)))
            .await?;
        Ok(results[0].position)
    }

    async fn stream_revision(&self, stream: &StreamName) -> Result<Option<StreamRevision>> {
        let client = self.client().await?;
        let info = self.info(&client, stream).await?;
        Ok(info.next_revision.checked_sub(1))
    }

    fn head(&self) -> Position {
        *self.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn leadership(&self, role: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let lock = format!("muster-leader:{}:{role}", self.schema);
        let config = self.config.clone();
        let closed = self.closed.clone();
        let role = role.to_owned();
        tokio::spawn(lead(config, lock, role, tx, closed));
        rx
    }

    async fn stats(&self) -> Result<StoreStats> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM events), \
                        (SELECT count(*) FROM (SELECT DISTINCT stream FROM events) s), \
                        pg_total_relation_size('events') + pg_total_relation_size('streams')",
                &[],
            )
            .await
            .map_err(|e| db_error(&e))?;
        let events: i64 = row.get(0);
        let streams: i64 = row.get(1);
        let bytes: i64 = row.get(2);
        let (head, _) = read_head(&**client).await?;
        publish(&self.head, head);
        Ok(StoreStats {
            events: events as u64,
            streams: streams as u64,
            head: *self.head.borrow(),
            file_bytes: bytes as u64,
        })
    }
}

/// For tests: the connection string of the test database, from `MUSTER_TEST_POSTGRES`.
/// `None` (and a line saying the PostgreSQL tests were skipped) when it is not set; a panic
/// when it is not set on CI, where the test command always starts PostgreSQL.
pub fn test_database_url(what: &str) -> Option<String> {
    match std::env::var("MUSTER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "MUSTER_TEST_POSTGRES is not set on CI: the test command starts PostgreSQL and sets it"
            );
            eprintln!("skipped {what}: MUSTER_TEST_POSTGRES is not set (bash ops/test.sh sets it)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::contract::Fixture;

    /// Drops the test's schema when the fixture goes.
    struct Schema {
        url: String,
        name: String,
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let (url, name) = (self.url.clone(), self.name.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!(
                                "DROP SCHEMA IF EXISTS {} CASCADE",
                                ident(&name)
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }

    fn reopen(guard: &crate::contract::Guard) -> Arc<dyn EventStore> {
        let schema = guard.downcast_ref::<Schema>().unwrap();
        let mut options = PostgresOptions::new(&schema.url);
        options.schema = schema.name.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(PostgresStore::open(options))
                .map(|s| Arc::new(s) as Arc<dyn EventStore>)
                .unwrap()
        })
    }

    pub(super) async fn fresh() -> Option<Fixture> {
        let url = test_database_url("a PostgreSQL contract case")?;
        let name = format!("t_{}", Uuid::new_v4().simple());
        let mut options = PostgresOptions::new(&url);
        options.schema = name.clone();
        options.pool_size = 8;
        let store = PostgresStore::open(options).await.unwrap();
        Some(Fixture {
            store: Arc::new(store),
            guard: Box::new(Schema { url, name }),
            reopen: Some(reopen),
            crash_copy: None,
        })
    }

    crate::contract_tests!(?fresh);

    fn event(n: u32) -> NewEvent {
        NewEvent::json(Uuid::new_v4(), "Tested", 1, &serde_json::json!({ "n": n })).unwrap()
    }

    async fn raw(url: &str, schema: &str) -> tokio_postgres::Client {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.options(format!("-c search_path={}", ident(schema)));
        let (client, conn) = config.connect(NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// A transaction that began before a later one commits holds the horizon: readers do not
    /// pass its position, and when it commits its event is handed out in order, never skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn readers_never_pass_a_transaction_still_open() {
        let Some(f) = fresh().await else { return };
        let schema = f.guard.downcast_ref::<Schema>().unwrap();
        let store = f.store.clone();
        let mut sub = crate::EventStoreExt::subscribe_all(&store, crate::SubscribeFrom::Start);

        // A slow writer takes its transaction id first and commits last.
        let mut slow = raw(&schema.url, &schema.name).await;
        let tx = slow.transaction().await.unwrap();
        let xid: i64 = tx
            .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
            .await
            .unwrap()
            .get(0);

        let later = store
            .append(
                &StreamName::parse("fast").unwrap(),
                ExpectedState::Any,
                vec![event(1)],
            )
            .await
            .unwrap();
        assert!(later.position.0 > (xid as u64) << TX_SLOTS_BITS);
        // The later append is committed, yet no reader may see it while the slow one is open.
        let seen = store.read_all(Position::START, 10).await.unwrap();
        assert!(
            seen.is_empty(),
            "a reader passed an open transaction: {seen:?}"
        );
        assert!(store.head() <= Position((xid as u64) << TX_SLOTS_BITS));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), sub.next())
                .await
                .is_err(),
            "the subscription handed out an event above an open transaction"
        );

        let slow_position = (xid << TX_SLOTS_BITS) as u64;
        tx.execute(
            "INSERT INTO events (position, stream, revision, id, type, schema_version, data, metadata, recorded_at) \
             VALUES ($1, 'slow', 0, $2, 'Tested', 1, '{}'::bytea, '{}'::bytea, now())",
            &[&(slow_position as i64), &Uuid::new_v4()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let first = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.stream.as_str(), first.position),
            ("slow", Position(slow_position))
        );
        assert_eq!(second.position, later.position);
    }

    /// A database whose schema is newer than this binary is refused, naming both versions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_schema_is_refused() {
        let Some(f) = fresh().await else { return };
        let schema = f.guard.downcast_ref::<Schema>().unwrap();
        let client = raw(&schema.url, &schema.name).await;
        client
            .execute(
                &format!(
                    "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) \
                     VALUES (999, 'future', 'now', '0')"
                ),
                &[],
            )
            .await
            .unwrap();
        let mut options = PostgresOptions::new(&schema.url);
        options.schema = schema.name.clone();
        let err = PostgresStore::open(options).await.unwrap_err().to_string();
        assert!(
            err.contains("version 999") && err.contains("up to version 2"),
            "{err}"
        );
    }

    /// Keys copied from another store keep their bytes and their destruction, and never
    /// replace a key the owner has.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn imported_data_keys_keep_their_bytes_and_their_destruction() {
        let Some(f) = fresh().await else { return };
        let schema = f.guard.downcast_ref::<Schema>().unwrap();
        let mut options = PostgresOptions::new(&schema.url);
        options.schema = schema.name.clone();
        let store = PostgresStore::open(options).await.unwrap();
        let (copied, destroyed, own) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let key = DataKey::random();
        store
            .import_data_key(copied, Some(key.clone()))
            .await
            .unwrap();
        store.import_data_key(destroyed, None).await.unwrap();
        let mine = store.data_key(own, true).await.unwrap().unwrap();
        store
            .import_data_key(own, Some(DataKey::random()))
            .await
            .unwrap();
        assert_eq!(store.data_key(copied, false).await.unwrap(), Some(key));
        assert_eq!(store.data_key(destroyed, true).await.unwrap(), None);
        assert_eq!(store.data_key(own, false).await.unwrap(), Some(mine));
        store.close();
    }

    /// Nodes starting at once on a new database all open it: one migrates, the others wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nodes_starting_at_once_all_open_the_store() {
        let Some(url) = test_database_url("nodes starting at once") else {
            return;
        };
        let name = format!("t_{}", Uuid::new_v4().simple());
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let mut options = PostgresOptions::new(&url);
                options.schema = name.clone();
                tokio::spawn(PostgresStore::open(options))
            })
            .collect();
        let _guard = Schema {
            url: url.clone(),
            name: name.clone(),
        };
        for open in opens {
            let store = open.await.unwrap().unwrap();
            store.close();
        }
    }

    /// One node leads a role at a time; when it goes, another takes over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_node_leads_and_another_takes_over_when_it_goes() {
        let Some(f) = fresh().await else { return };
        let crate::contract::Fixture { store, guard, .. } = f;
        let schema = guard.downcast_ref::<Schema>().unwrap();
        let mut options = PostgresOptions::new(&schema.url);
        options.schema = schema.name.clone();
        let other = PostgresStore::open(options).await.unwrap();
        let mut first = store.leadership("test-role");
        let mut second = other.leadership("test-role");
        let deadline = Duration::from_secs(30);
        tokio::time::timeout(deadline, async {
            while !(*first.borrow() || *second.borrow()) {
                tokio::select! {
                    _ = first.changed() => {}
                    _ = second.changed() => {}
                }
            }
        })
        .await
        .expect("a leader within the deadline");
        // Never both, over a few checks.
        for _ in 0..4 {
            assert!(!(*first.borrow() && *second.borrow()), "two leaders");
            tokio::time::sleep(LEADERSHIP_CHECK).await;
        }
        let (leader_is_first, mut waiting) = if *first.borrow() {
            (true, second)
        } else {
            (false, first)
        };
        // The leader goes: its session ends, and the other takes over within seconds.
        if leader_is_first {
            drop(store);
        } else {
            other.close();
        }
        tokio::time::timeout(deadline, waiting.wait_for(|l| *l))
            .await
            .expect("the other node took over within the deadline")
            .unwrap();
    }

    /// An unreachable database is a clear error naming the host, not a hang.
    #[tokio::test]
    async fn an_unreachable_database_names_the_host() {
        let mut options = PostgresOptions::new("postgres://muster@127.0.0.1:1/muster");
        options.connect_timeout = Duration::from_secs(2);
        let err = PostgresStore::open(options).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
}
