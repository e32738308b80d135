//! The embedded store: one redb file, one writer thread that commits appends in groups.
//!
//! The writer drains the queue of pending appends, checks each one's expected state in order
//! inside one write transaction, commits once with [`redb::Durability::Immediate`], and only
//! then answers all of them. If a commit fails (an fsync error, a full disk) the store answers
//! every later write with [`StoreError::WritesRefused`] until it is reopened: a failed fsync
//! is never retried, because the kernel may have dropped the dirty pages it could not write.
//!
//! Each event is stored with its own CRC-32 (see `codec`), so damage inside committed data is
//! reported with the file and the event's position rather than handed out or skipped.

mod codec;
#[cfg(test)]
mod faults;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::Utc;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::rules::{
    Appender, StreamInfo, append_one, append_parts, check_replay, first_readable, require, too_old,
    validate_batch, validate_parts,
};
use crate::store::EventStore;
use crate::types::{
    AppendResult, CurrentState, DataKey, Direction, ExpectedState, MAX_READ_COUNT,
    METADATA_EVENT_TYPE, NewEvent, Position, ReadFrom, RecordedEvent, StoreStats, StreamAppend,
    StreamMetadata, StreamName, StreamRevision,
};

pub use verify::VerifyReport;

/// Position -> encoded event.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Stream name -> stream id, next revision, truncate-before.
const STREAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("streams");
/// (stream id, revision) -> position.
const STREAM_INDEX: TableDefinition<(u64, u64), u64> = TableDefinition::new("stream_index");
/// Event id -> position: idempotency, for ever.
const EVENT_IDS: TableDefinition<u128, u64> = TableDefinition::new("event_ids");
/// Store-wide counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Data keys by owner (crypto-shredding): 32 bytes, or none when destroyed.
const DATA_KEYS: TableDefinition<u128, &[u8]> = TableDefinition::new("data_keys");

const META_HEAD: &str = "head";
const META_NEXT_STREAM_ID: &str = "next_stream_id";
const META_FORMAT: &str = "format";
const FORMAT_VERSION: u64 = 1;

/// The file inside a store directory.
pub const STORE_FILE: &str = "events.redb";
/// Appends waiting for the writer before callers wait to queue more.
pub const WRITE_QUEUE_DEPTH: usize = 16_384;
/// Most events the writer puts in one commit.
pub const MAX_GROUP_EVENTS: usize = 65_536;
/// Events whose checksums are checked when the store opens (the newest ones).
pub const TAIL_CHECK_EVENTS: u64 = 4096;

/// How much the store checks when it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyOnOpen {
    /// The store's counters against its tables, and the checksums of the newest
    /// [`TAIL_CHECK_EVENTS`] events: what a crash can have touched. Fast at any size.
    Tail,
    /// Every page checksum of the database file and every event: finds damage anywhere, in
    /// time proportional to the size of the store.
    Full,
}

/// Options of the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Record the allocator state with each commit, so that reopening after a crash is
    /// immediate instead of a walk over the whole file. Costs a second fsync per commit.
    pub quick_repair: bool,
    /// What opening checks.
    pub verify_on_open: VerifyOnOpen,
    /// Page cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            quick_repair: true,
            verify_on_open: VerifyOnOpen::Tail,
            cache_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Where the writer answers a request: one result per stream part.
type Reply = oneshot::Sender<Result<Vec<AppendResult>>>;

enum Request {
    Append {
        parts: Vec<StreamAppend>,
        reply: Reply,
    },
    Delete {
        stream: StreamName,
        expected: ExpectedState,
        reply: Reply,
    },
}

impl Request {
    fn event_count(&self) -> usize {
        match self {
            Request::Append { parts, .. } => parts.iter().map(|p| p.events.len()).sum(),
            Request::Delete { .. } => 1,
        }
    }
    fn fail(self, error: impl Fn() -> StoreError) {
        let _ = match self {
            Request::Append { reply, .. } | Request::Delete { reply, .. } => {
                reply.send(Err(error()))
            }
        };
    }
}

struct Shared {
    db: Database,
    path: PathBuf,
    head: watch::Sender<Position>,
    refused: Mutex<Option<String>>,
    closed: AtomicBool,
}

/// The embedded event store. Cheap to share behind an `Arc`; dropping the last handle stops
/// the writer after it has answered every queued append.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    queue: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .finish()
    }
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir`.
    pub fn open(dir: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        Self::open_with(dir.as_ref(), options, |builder, path| builder.create(path))
    }

    /// Opens the store with the database made by `create` (tests put a fault-injecting
    /// storage backend there).
    pub(crate) fn open_with(
        dir: &Path,
        options: EmbeddedOptions,
        create: impl FnOnce(&redb::Builder, &Path) -> std::result::Result<Database, redb::DatabaseError>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(STORE_FILE);
        let started = Instant::now();
        let mut db = open_database(&path, &options, create)?;
        let head = init_and_check(&mut db, &path, options.verify_on_open)?;
        tracing::info!(path = %path.display(), head = head.0, elapsed_ms = started.elapsed().as_millis() as u64, "event store open");
        let shared = Arc::new(Shared {
            db,
            path,
            head: watch::channel(head).0,
            refused: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let (queue, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("muster-store-writer".into())
            .spawn(move || Writer::new(writer_shared, options.quick_repair).run(rx))
            .map_err(storage)?;
        Ok(Self {
            shared,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Stops accepting appends, lets the writer answer what is queued, and waits for it.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        drop(self.queue.lock().unwrap().take());
        if let Some(handle) = self.writer.lock().unwrap().take() {
            let _ = handle.join();
        }
        self.shared.head.send_modify(|_| {});
    }

    async fn submit(&self, make: impl FnOnce(Reply) -> Request) -> Result<Vec<AppendResult>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        if let Some(cause) = self.shared.refused.lock().unwrap().clone() {
            return Err(StoreError::WritesRefused { cause });
        }
        let queue = self
            .queue
            .lock()
            .unwrap()
            .clone()
            .ok_or(StoreError::Closed)?;
        let (tx, rx) = oneshot::channel();
        queue.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a read on a blocking thread, turning a panic of the database engine (which it
    /// may raise on a damaged file) into a corruption error naming the file.
    async fn read<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        let path = shared.path.clone();
        match tokio::task::spawn_blocking(move || f(&shared)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => Err(StoreError::Corrupt {
                file: path,
                detail: format!("the database engine failed while reading {what}"),
                position: None,
            }),
            Err(e) => Err(storage(e)),
        }
    }

    /// Full check of the store: every page checksum, every event, every index entry.
    pub fn verify(&self) -> Result<VerifyReport> {
        verify::verify(&self.shared.db, &self.shared.path)
    }

    /// Every data key, by owner (`None`: destroyed), for copying the store elsewhere.
    pub fn data_keys(&self) -> Result<Vec<(uuid::Uuid, Option<DataKey>)>> {
        let txn = self.shared.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(DATA_KEYS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(storage(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let key = <[u8; 32]>::try_from(v.value()).ok().map(DataKey);
            out.push((uuid::Uuid::from_u128(k.value()), key));
        }
        Ok(out)
    }

    /// Writes a consistent copy of the store as of now into `dir`, which must not hold a store.
    /// Appends may go on meanwhile; the copy holds exactly the events committed when it began.
    pub fn backup(&self, dir: impl AsRef<Path>) -> Result<StoreStats> {
        verify::backup(&self.shared.db, &self.shared.path, dir.as_ref())
    }
}

fn open_database(
    path: &Path,
    options: &EmbeddedOptions,
    create: impl FnOnce(&redb::Builder, &Path) -> std::result::Result<Database, redb::DatabaseError>,
) -> Result<Database> {
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| create(&builder, path)));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => {
            Err(StoreError::Corrupt {
                file: path.to_owned(),
                detail: format!("the database file failed its check: {detail}"),
                position: None,
            })
        }
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            Err(StoreError::InUse(path.to_owned()))
        }
        Ok(Err(e)) => Err(StoreError::Storage(format!(
            "cannot open {}: {e}",
            path.display()
        ))),
        Err(_) => Err(StoreError::Corrupt {
            file: path.to_owned(),
            detail: "the database engine could not read the file's structure".into(),
            position: None,
        }),
    }
}

/// Creates the tables of a new store, then checks the counters and the newest events.
fn init_and_check(db: &mut Database, path: &Path, verify: VerifyOnOpen) -> Result<Position> {
    let txn = db.begin_write().map_err(storage)?;
    {
        let mut meta = txn.open_table(META).map_err(storage)?;
        txn.open_table(EVENTS).map_err(storage)?;
        txn.open_table(STREAMS).map_err(storage)?;
        txn.open_table(STREAM_INDEX).map_err(storage)?;
        txn.open_table(EVENT_IDS).map_err(storage)?;
        let format = meta.get(META_FORMAT).map_err(storage)?.map(|v| v.value());
        match format {
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION).map_err(storage)?;
                meta.insert(META_HEAD, 0).map_err(storage)?;
                meta.insert(META_NEXT_STREAM_ID, 0).map_err(storage)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Storage(format!(
                    "{} has store format {other}; this muster reads format {FORMAT_VERSION}",
                    path.display()
                )));
            }
        }
    }
    txn.commit().map_err(storage)?;

    let head = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_tail(&*db, path)))
        .unwrap_or_else(|_| {
            Err(StoreError::Corrupt {
                file: path.to_owned(),
                detail: "the database engine failed while reading the newest events".into(),
                position: None,
            })
        })?;
    if verify == VerifyOnOpen::Full {
        // Muster's own scan first, since it names the event; then every page checksum.
        let report = verify::verify(&*db, path)?;
        if let Some(problem) = report.problems.first() {
            return Err(StoreError::Corrupt {
                file: path.to_owned(),
                detail: format!("{} problem(s), first: {problem}", report.problem_count),
                position: None,
            });
        }
        let checked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity()));
        match checked {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Err(StoreError::Corrupt {
                    file: path.to_owned(),
                    detail: "page checksums did not match and the file had to be repaired".into(),
                    position: None,
                });
            }
            Ok(Err(e)) => {
                return Err(StoreError::Corrupt {
                    file: path.to_owned(),
                    detail: format!("page check failed: {e}"),
                    position: None,
                });
            }
            Err(_) => {
                return Err(StoreError::Corrupt {
                    file: path.to_owned(),
                    detail: "the database engine failed while checking page checksums".into(),
                    position: None,
                });
            }
        }
    }
    Ok(head)
}

/// Checks that the head counter matches the events table and that the newest events decode.
fn check_tail(db: &Database, path: &Path) -> Result<Position> {
    let txn = db.begin_read().map_err(storage)?;
    let meta = txn.open_table(META).map_err(storage)?;
    let events = txn.open_table(EVENTS).map_err(storage)?;
    let head = meta
        .get(META_HEAD)
        .map_err(storage)?
        .map(|v| v.value())
        .unwrap_or(0);
    let last = events.last().map_err(storage)?.map(|(k, _)| k.value());
    let corrupt = |detail: String, position: Option<Position>| StoreError::Corrupt {
        file: path.to_owned(),
        detail,
        position,
    };
    match last {
        None if head != 0 => {
            return Err(corrupt(
                format!("the head is {head} but there are no events"),
                None,
            ));
        }
        Some(last) if last + 1 != head => {
            return Err(corrupt(
                format!("the head is {head} but the newest event is at {last}"),
                None,
            ));
        }
        _ => {}
    }
    let from = head.saturating_sub(TAIL_CHECK_EVENTS);
    for (expected, entry) in (from..).zip(events.range(from..).map_err(storage)?) {
        let (k, v) = entry.map_err(storage)?;
        let position = k.value();
        if position != expected {
            return Err(corrupt(
                format!("event {expected} is missing (next stored is {position})"),
                Some(Position(expected)),
            ));
        }
        codec::decode(Position(position), v.value()).map_err(|e| {
            corrupt(
                format!("event at position {position}: {}", e.0),
                Some(Position(position)),
            )
        })?;
    }
    Ok(Position(head))
}

/// The writer thread: owns every write transaction.
struct Writer {
    shared: Arc<Shared>,
    quick_repair: bool,
    buf: Vec<u8>,
}

/// An answer for one request of a group, once the group is committed.
type Answer = (Reply, Result<Vec<AppendResult>>);

impl Writer {
    fn new(shared: Arc<Shared>, quick_repair: bool) -> Self {
        Self {
            shared,
            quick_repair,
            buf: Vec::with_capacity(4096),
        }
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            let mut events = group[0].event_count();
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(req) => {
                        events += req.event_count();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            let refused = self.shared.refused.lock().unwrap().clone();
            if let Some(cause) = refused {
                for req in group {
                    req.fail(|| StoreError::WritesRefused {
                        cause: cause.clone(),
                    });
                }
                continue;
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
        let outcome = self.write_group(group, &mut answers);
        match outcome {
            Ok(head) => {
                self.shared.head.send_if_modified(|h| {
                    let moved = *h != head;
                    *h = head;
                    moved
                });
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err((error, unanswered)) => {
                let cause = error.to_string();
                tracing::error!(path = %self.shared.path.display(), %cause, "event store commit failed; refusing writes until reopened");
                *self.shared.refused.lock().unwrap() = Some(cause.clone());
                for (reply, _) in answers {
                    let _ = reply.send(Err(StoreError::Storage(format!("commit failed: {cause}"))));
                }
                for req in unanswered {
                    req.fail(|| StoreError::Storage(format!("commit failed: {cause}")));
                }
            }
        }
    }

    /// Writes and commits a group. On a storage failure nothing of the group is committed.
    fn write_group(
        &mut self,
        group: Vec<Request>,
        answers: &mut Vec<Answer>,
    ) -> std::result::Result<Position, (StoreError, Vec<Request>)> {
        let mut txn = match self.shared.db.begin_write() {
            Ok(t) => t,
            Err(e) => return Err((storage(e), group)),
        };
        if let Err(e) = txn.set_durability(Durability::Immediate) {
            return Err((storage(e), group));
        }
        txn.set_quick_repair(self.quick_repair);
        let now = Utc::now();
        let mut group = group.into_iter();
        let head = {
            let tables = Tables::open(&txn);
            let mut tables = match tables {
                Ok(t) => t,
                Err(e) => return Err((e, group.collect())),
            };
            let mut head = match tables.counter(META_HEAD) {
                Ok(h) => h,
                Err(e) => return Err((e, group.collect())),
            };
            let mut next_stream_id = match tables.counter(META_NEXT_STREAM_ID) {
                Ok(h) => h,
                Err(e) => return Err((e, group.collect())),
            };
            while let Some(req) = group.next() {
                let mut cx = WriteCx {
                    head: &mut head,
                    next_stream_id: &mut next_stream_id,
                    now,
                    buf: &mut self.buf,
                };
                let (reply, result) = match req {
                    Request::Append { parts, reply } => (reply, tables.append_many(&mut cx, parts)),
                    Request::Delete {
                        stream,
                        expected,
                        reply,
                    } => (
                        reply,
                        tables.delete(&mut cx, &stream, expected).map(|r| vec![r]),
                    ),
                };
                match result {
                    Err(StoreError::Storage(e)) => {
                        answers.push((reply, Err(StoreError::Storage(e.clone()))));
                        return Err((StoreError::Storage(e), group.collect()));
                    }
                    other => answers.push((reply, other)),
                }
            }
            let counters = tables.meta.insert(META_HEAD, head).map(drop);
            let counters = counters.and_then(|()| {
                tables
                    .meta
                    .insert(META_NEXT_STREAM_ID, next_stream_id)
                    .map(drop)
            });
            if let Err(e) = counters {
                return Err((storage(e), Vec::new()));
            }
            head
        };
        match txn.commit() {
            Ok(()) => Ok(Position(head)),
            Err(e) => Err((storage(e), Vec::new())),
        }
    }
}

struct WriteCx<'a> {
    head: &'a mut u64,
    next_stream_id: &'a mut u64,
    now: chrono::DateTime<Utc>,
    buf: &'a mut Vec<u8>,
}

struct Tables<'txn> {
    events: redb::Table<'txn, u64, &'static [u8]>,
    streams: redb::Table<'txn, &'static str, &'static [u8]>,
    index: redb::Table<'txn, (u64, u64), u64>,
    ids: redb::Table<'txn, u128, u64>,
    meta: redb::Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self> {
        Ok(Self {
            events: txn.open_table(EVENTS).map_err(storage)?,
            streams: txn.open_table(STREAMS).map_err(storage)?,
            index: txn.open_table(STREAM_INDEX).map_err(storage)?,
            ids: txn.open_table(EVENT_IDS).map_err(storage)?,
            meta: txn.open_table(META).map_err(storage)?,
        })
    }

    fn counter(&self, key: &str) -> Result<u64> {
        Ok(self
            .meta
            .get(key)
            .map_err(storage)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    fn stream(&self, stream: &StreamName) -> Result<Option<(u64, StreamInfo)>> {
        match self.streams.get(stream.as_str()).map_err(storage)? {
            None => Ok(None),
            Some(v) => StreamInfo::decode(v.value()).map(Some).ok_or_else(|| {
                StoreError::Storage(format!("stream record of {stream} is damaged"))
            }),
        }
    }

    fn event(&self, position: u64) -> Result<RecordedEvent> {
        let v =
            self.events.get(position).map_err(storage)?.ok_or_else(|| {
                StoreError::Storage(format!("indexed event {position} is missing"))
            })?;
        codec::decode(Position(position), v.value())
            .map_err(|e| StoreError::Storage(format!("event at position {position}: {}", e.0)))
    }

    /// Checks and writes an append to one or more streams ([`append_parts`]).
    fn append_many(
        &mut self,
        cx: &mut WriteCx<'_>,
        parts: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>> {
        append_parts(&mut Writing { tables: self, cx }, parts)
    }

    fn append(
        &mut self,
        cx: &mut WriteCx<'_>,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        append_one(&mut Writing { tables: self, cx }, stream, expected, events)
    }

    /// The first answer when every event of the append is stored already.
    fn replay(&self, stream: &StreamName, events: &[NewEvent]) -> Result<Option<AppendResult>> {
        let mut stored = Vec::with_capacity(events.len());
        for event in events {
            let found = self
                .ids
                .get(event.id.as_u128())
                .map_err(storage)?
                .map(|v| v.value());
            stored.push(match found {
                Some(position) => Some(self.event(position)?),
                None => None,
            });
        }
        check_replay(stream, events, &stored)
    }

    fn check_expected(&self, stream: &StreamName, expected: ExpectedState) -> Result<()> {
        let state = self
            .stream(stream)?
            .map(|(_, info)| info.state())
            .unwrap_or(CurrentState::NoStream);
        require(stream, expected, state)
    }

    /// Writes a checked append.
    fn write_checked(
        &mut self,
        cx: &mut WriteCx<'_>,
        stream: &StreamName,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let (stream_id, mut info) = match self.stream(stream)? {
            Some(found) => found,
            None => {
                let id = *cx.next_stream_id;
                *cx.next_stream_id += 1;
                (id, StreamInfo::default())
            }
        };
        let mut last_position = 0;
        let mut last_metadata = None;
        for event in &events {
            let position = *cx.head;
            let revision = info.next_revision;
            codec::encode(stream, revision, cx.now, event, cx.buf);
            self.events
                .insert(position, cx.buf.as_slice())
                .map_err(storage)?;
            self.index
                .insert((stream_id, revision), position)
                .map_err(storage)?;
            self.ids
                .insert(event.id.as_u128(), position)
                .map_err(storage)?;
            info.next_revision += 1;
            *cx.head += 1;
            last_position = position;
            if stream.is_metastream() {
                last_metadata = Some(&event.data);
            }
        }
        self.streams
            .insert(stream.as_str(), info.encode(stream_id).as_slice())
            .map_err(storage)?;
        if let (Some(described), Some(data)) = (stream.described_stream(), last_metadata) {
            let meta: StreamMetadata = serde_json::from_slice(data).unwrap_or_default();
            let (id, mut described_info) = match self.stream(&described)? {
                Some(found) => found,
                None => {
                    let id = *cx.next_stream_id;
                    *cx.next_stream_id += 1;
                    (id, StreamInfo::default())
                }
            };
            described_info.truncate_before = meta.truncate_before.unwrap_or(0);
            self.streams
                .insert(described.as_str(), described_info.encode(id).as_slice())
                .map_err(storage)?;
        }
        Ok(AppendResult {
            next_expected_revision: info.next_revision - 1,
            position: Position(last_position),
        })
    }

    fn metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        let Some((id, info)) = self.stream(&stream.metastream()?)? else {
            return Ok(StreamMetadata::default());
        };
        let Some(last) = info.next_revision.checked_sub(1) else {
            return Ok(StreamMetadata::default());
        };
        let position = self
            .index
            .get((id, last))
            .map_err(storage)?
            .map(|v| v.value());
        match position {
            Some(p) => Ok(self.event(p)?.decode().unwrap_or_default()),
            None => Ok(StreamMetadata::default()),
        }
    }

    fn delete(
        &mut self,
        cx: &mut WriteCx<'_>,
        stream: &StreamName,
        expected: ExpectedState,
    ) -> Result<AppendResult> {
        let info = self.stream(stream)?.map(|s| s.1).unwrap_or_default();
        if !info.exists() || !expected.is_met_by(info.state()) {
            return Err(StoreError::WrongExpectedState {
                stream: stream.clone(),
                expected,
                actual: info.state(),
            });
        }
        let mut meta = self.metadata(stream)?;
        meta.truncate_before = Some(info.next_revision);
        let event = NewEvent::json(Uuid::new_v4(), METADATA_EVENT_TYPE, 1, &meta)?;
        self.append(cx, &stream.metastream()?, ExpectedState::Any, vec![event])
    }
}

/// The tables of one write transaction with its counters, as the shared append rules see
/// them.
struct Writing<'a, 'txn, 'cx> {
    tables: &'a mut Tables<'txn>,
    cx: &'a mut WriteCx<'cx>,
}

impl Appender for Writing<'_, '_, '_> {
    fn replay(&self, stream: &StreamName, events: &[NewEvent]) -> Result<Option<AppendResult>> {
        self.tables.replay(stream, events)
    }
    fn check_expected(&self, stream: &StreamName, expected: ExpectedState) -> Result<()> {
        self.tables.check_expected(stream, expected)
    }
    fn write(&mut self, stream: &StreamName, events: Vec<NewEvent>) -> Result<AppendResult> {
        self.tables.write_checked(self.cx, stream, events)
    }
}

/// Read-side helpers over one read transaction.
struct ReadCx {
    events: redb::ReadOnlyTable<u64, &'static [u8]>,
    streams: redb::ReadOnlyTable<&'static str, &'static [u8]>,
    index: redb::ReadOnlyTable<(u64, u64), u64>,
    path: PathBuf,
}

impl ReadCx {
    fn begin(shared: &Shared) -> Result<Self> {
        let txn = shared.db.begin_read().map_err(storage)?;
        Ok(Self {
            events: txn.open_table(EVENTS).map_err(storage)?,
            streams: txn.open_table(STREAMS).map_err(storage)?,
            index: txn.open_table(STREAM_INDEX).map_err(storage)?,
            path: shared.path.clone(),
        })
    }

    fn decode(&self, position: u64, bytes: &[u8]) -> Result<RecordedEvent> {
        codec::decode(Position(position), bytes).map_err(|e| StoreError::Corrupt {
            file: self.path.clone(),
            detail: format!("event at position {position}: {}", e.0),
            position: Some(Position(position)),
        })
    }

    fn event(&self, position: u64) -> Result<RecordedEvent> {
        let v = self
            .events
            .get(position)
            .map_err(storage)?
            .ok_or_else(|| StoreError::Corrupt {
                file: self.path.clone(),
                detail: format!("indexed event at position {position} is missing"),
                position: Some(Position(position)),
            })?;
        self.decode(position, v.value())
    }

    fn stream(&self, stream: &StreamName) -> Result<Option<(u64, StreamInfo)>> {
        match self.streams.get(stream.as_str()).map_err(storage)? {
            None => Ok(None),
            Some(v) => StreamInfo::decode(v.value())
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    file: self.path.clone(),
                    detail: format!("the stream record of {stream} is damaged"),
                    position: None,
                }),
        }
    }

    fn metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        let Some((id, info)) = self.stream(&stream.metastream()?)? else {
            return Ok(StreamMetadata::default());
        };
        let Some(last) = info.next_revision.checked_sub(1) else {
            return Ok(StreamMetadata::default());
        };
        match self
            .index
            .get((id, last))
            .map_err(storage)?
            .map(|v| v.value())
        {
            Some(p) => self.event(p)?.decode().map_err(|e| StoreError::Corrupt {
                file: self.path.clone(),
                detail: format!("metadata of {stream} at position {p} is not readable: {e}"),
                position: Some(Position(p)),
            }),
            None => Ok(StreamMetadata::default()),
        }
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn data_key(&self, owner: uuid::Uuid, create: bool) -> Result<Option<DataKey>> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let shared = self.shared.clone();
        let key = move || -> Result<Option<DataKey>> {
            let found = |bytes: &[u8]| -> Result<Option<DataKey>> {
                match bytes.len() {
                    0 => Ok(None),
                    32 => Ok(Some(DataKey(bytes.try_into().expect("32 bytes")))),
                    n => Err(StoreError::Corrupt {
                        file: shared.path.clone(),
                        detail: format!("a data key of {n} bytes"),
                        position: None,
                    }),
                }
            };
            {
                let txn = shared.db.begin_read().map_err(storage)?;
                match txn.open_table(DATA_KEYS) {
                    Ok(table) => {
                        if let Some(v) = table.get(owner.as_u128()).map_err(storage)? {
                            return found(v.value());
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(storage(e)),
                }
            }
            if !create {
                return Ok(None);
            }
            let mut txn = shared.db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            let key = {
                let mut table = txn.open_table(DATA_KEYS).map_err(storage)?;
                let existing = table
                    .get(owner.as_u128())
                    .map_err(storage)?
                    .map(|v| v.value().to_vec());
                match existing {
                    Some(bytes) => found(&bytes)?,
                    None => {
                        let key = DataKey::random();
                        table
                            .insert(owner.as_u128(), key.0.as_slice())
                            .map_err(storage)?;
                        Some(key)
                    }
                }
            };
            txn.commit().map_err(storage)?;
            Ok(key)
        };
        tokio::task::spawn_blocking(key).await.map_err(storage)?
    }

    async fn destroy_data_key(&self, owner: uuid::Uuid) -> Result<bool> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || -> Result<bool> {
            let mut txn = shared.db.begin_write().map_err(storage)?;
            txn.set_durability(Durability::Immediate).map_err(storage)?;
            let had = {
                let mut table = txn.open_table(DATA_KEYS).map_err(storage)?;
                let old = table
                    .insert(owner.as_u128(), [].as_slice())
                    .map_err(storage)?
                    .map(|v| v.value().len() == 32);
                old.unwrap_or(false)
            };
            txn.commit().map_err(storage)?;
            Ok(had)
        })
        .await
        .map_err(storage)?
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate_batch(stream, &events)?;
        let parts = vec![StreamAppend::new(stream.clone(), expected, events)];
        let mut results = self
            .submit(|reply| Request::Append { parts, reply })
            .await?;
        Ok(results.remove(0))
    }

    async fn append_many(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        validate_parts(&parts)?;
        self.submit(|reply| Request::Append { parts, reply }).await
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let stream = stream.clone();
        self.read("a stream", move |shared| {
            let cx = ReadCx::begin(shared)?;
            let Some((id, info)) = cx.stream(&stream)? else {
                return Err(StoreError::StreamNotFound(stream));
            };
            if !info.exists() {
                return Err(StoreError::StreamNotFound(stream));
            }
            let meta = if stream.is_metastream() {
                StreamMetadata::default()
            } else {
                cx.metadata(&stream)?
            };
            let first = first_readable(&info, &meta);
            let limit = limit.min(MAX_READ_COUNT);
            let now = Utc::now();
            let range = match (direction, from) {
                (Direction::Forwards, ReadFrom::Start) => Some(first..info.next_revision),
                (Direction::Forwards, ReadFrom::Revision(r)) => {
                    Some(r.max(first)..info.next_revision)
                }
                (Direction::Backwards, ReadFrom::End) => Some(first..info.next_revision),
                (Direction::Backwards, ReadFrom::Revision(r)) => {
                    Some(first..info.next_revision.min(r.saturating_add(1)))
                }
                (Direction::Forwards, ReadFrom::End) | (Direction::Backwards, ReadFrom::Start) => {
                    None
                }
            };
            let Some(range) = range.filter(|r| r.start < r.end) else {
                return Ok(Vec::new());
            };
            let entries = cx
                .index
                .range((id, range.start)..(id, range.end))
                .map_err(storage)?;
            let mut out = Vec::with_capacity(limit.min((range.end - range.start) as usize));
            let mut push = |entry: std::result::Result<
                (
                    redb::AccessGuard<'_, (u64, u64)>,
                    redb::AccessGuard<'_, u64>,
                ),
                redb::StorageError,
            >|
             -> Result<bool> {
                let (_, position) = entry.map_err(storage)?;
                let event = cx.event(position.value())?;
                if !too_old(&event, &meta, now) {
                    out.push(event);
                }
                Ok(out.len() < limit)
            };
            match direction {
                Direction::Forwards => {
                    for entry in entries {
                        if !push(entry)? {
                            break;
                        }
                    }
                }
                Direction::Backwards => {
                    for entry in entries.rev() {
                        if !push(entry)? {
                            break;
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.read("$all", move |shared| {
            let cx = ReadCx::begin(shared)?;
            let limit = limit.min(MAX_READ_COUNT);
            let mut out = Vec::with_capacity(limit.min(4096));
            for entry in cx.events.range(from.0..).map_err(storage)?.take(limit) {
                let (k, v) = entry.map_err(storage)?;
                out.push(cx.decode(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_all_backwards(
        &self,
        before: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read("$all", move |shared| {
            let cx = ReadCx::begin(shared)?;
            let limit = limit.min(MAX_READ_COUNT);
            let mut out = Vec::with_capacity(limit.min(4096));
            for entry in cx
                .events
                .range(..before.0)
                .map_err(storage)?
                .rev()
                .take(limit)
            {
                let (k, v) = entry.map_err(storage)?;
                out.push(cx.decode(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn stream_metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        let stream = stream.clone();
        self.read("stream metadata", move |shared| {
            ReadCx::begin(shared)?.metadata(&stream)
        })
        .await
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
    ) -> Result<Position> {
        stream.metastream()?;
        let stream = stream.clone();
        self.submit(|reply| Request::Delete {
            stream,
            expected,
            reply,
        })
        .await
        .map(|r| r[0].position)
    }

    async fn stream_revision(&self, stream: &StreamName) -> Result<Option<StreamRevision>> {
        let stream = stream.clone();
        self.read("a stream", move |shared| {
            Ok(ReadCx::begin(shared)?
                .stream(&stream)?
                .and_then(|(_, info)| info.next_revision.checked_sub(1)))
        })
        .await
    }

    fn head(&self) -> Position {
        *self.shared.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.shared.head.subscribe()
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    async fn stats(&self) -> Result<StoreStats> {
        self.read("statistics", |shared| {
            let cx = ReadCx::begin(shared)?;
            let head = *shared.head.borrow();
            Ok(StoreStats {
                events: cx.events.len().map_err(storage)?,
                streams: cx.streams.len().map_err(storage)?,
                head,
                file_bytes: std::fs::metadata(&shared.path)
                    .map(|m| m.len())
                    .unwrap_or(0),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Fixture, Guard};

    #[tokio::test]
    async fn a_backup_keeps_the_data_keys_and_their_destruction() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let (kept, gone) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let key = store.data_key(kept, true).await.unwrap().unwrap();
        store.data_key(gone, true).await.unwrap();
        store.destroy_data_key(gone).await.unwrap();
        let copy = dir.path().join("backup");
        store.backup(&copy).unwrap();
        store.close();
        let restored = EmbeddedStore::open(&copy, EmbeddedOptions::default()).unwrap();
        assert_eq!(restored.data_key(kept, false).await.unwrap(), Some(key));
        assert_eq!(restored.data_key(gone, true).await.unwrap(), None);
    }

    async fn fresh() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        Fixture {
            store: Arc::new(store),
            guard: Box::new(dir),
            reopen: Some(reopen),
            crash_copy: Some(crash_copy),
        }
    }

    fn reopen(guard: &Guard) -> Arc<dyn EventStore> {
        let dir = guard.downcast_ref::<tempfile::TempDir>().unwrap();
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap())
    }

    /// The database file copied while the store is open: what a process killed now leaves,
    /// the file never closed and its recovery flag still set.
    fn crash_copy(guard: &Guard) -> (Arc<dyn EventStore>, Box<Guard>) {
        let dir = guard.downcast_ref::<tempfile::TempDir>().unwrap();
        let copy = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join(STORE_FILE), copy.path().join(STORE_FILE)).unwrap();
        let store = EmbeddedStore::open(copy.path(), EmbeddedOptions::default()).unwrap();
        (Arc::new(store), Box::new(copy))
    }

    crate::contract_tests!(fresh);

    use std::sync::atomic::Ordering as AtomicOrdering;

    use crate::types::EventMetadata;
    use faults::{Faults, FaultyBackend};

    fn open_faulty(dir: &Path) -> (EmbeddedStore, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let store =
            EmbeddedStore::open_with(dir, EmbeddedOptions::default(), move |builder, path| {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(path)
                    .unwrap();
                builder.create_with_backend(FaultyBackend::new(file, f))
            })
            .unwrap();
        (store, faults)
    }

    fn one_event(n: u32) -> Vec<NewEvent> {
        vec![
            NewEvent::json(Uuid::new_v4(), "Tested", 1, &n)
                .unwrap()
                .with_metadata(EventMetadata::default()),
        ]
    }

    #[tokio::test]
    async fn a_failed_fsync_refuses_writes_until_reopened_and_keeps_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::parse("unit-1").unwrap();
        let (store, faults) = open_faulty(dir.path());
        store
            .append(&s, ExpectedState::NoStream, one_event(0))
            .await
            .unwrap();
        faults.fail_sync.store(true, AtomicOrdering::SeqCst);
        let failed = store
            .append(&s, ExpectedState::Revision(0), one_event(1))
            .await;
        assert!(matches!(failed, Err(StoreError::Storage(_))), "{failed:?}");
        faults.fail_sync.store(false, AtomicOrdering::SeqCst);
        let refused = store.append(&s, ExpectedState::Any, one_event(2)).await;
        assert!(
            matches!(refused, Err(StoreError::WritesRefused { .. })),
            "{refused:?}"
        );
        assert_eq!(store.head(), Position(1), "a failed commit moved the head");
        assert_eq!(
            store.read_all(Position::START, 10).await.unwrap().len(),
            1,
            "the store stays readable"
        );
        drop(store);

        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let all = store.read_all(Position::START, 10).await.unwrap();
        assert_eq!(
            all[0].decode::<u32>().unwrap(),
            0,
            "the acknowledged event survived"
        );
        store
            .append(&s, ExpectedState::Any, one_event(3))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_append_acknowledges_nothing_and_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let s = StreamName::parse("unit-2").unwrap();
        let (store, faults) = open_faulty(dir.path());
        store
            .append(&s, ExpectedState::NoStream, one_event(0))
            .await
            .unwrap();
        faults.disk_full.store(true, AtomicOrdering::SeqCst);
        let big: Vec<NewEvent> = (0..2000)
            .map(|n| NewEvent::json(Uuid::new_v4(), "Tested", 1, &format!("{n:0>400}")).unwrap())
            .collect();
        let failed = store.append(&s, ExpectedState::Revision(0), big).await;
        assert!(matches!(failed, Err(StoreError::Storage(_))), "{failed:?}");
        assert_eq!(store.head(), Position(1));
        let read = store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "the store stays readable with what it had");
        drop(store);
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert_eq!(
            store.stream_revision(&s).await.unwrap(),
            Some(0),
            "nothing of the failed append is stored"
        );
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let second = EmbeddedStore::open(dir.path(), EmbeddedOptions::default());
        assert!(matches!(second, Err(StoreError::InUse(_))), "{second:?}");
    }
}
