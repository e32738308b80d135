//! The canonical event log of a drill and its hash.
//!
//! One JSON object per line, in `$all` order, with the keys in this order:
//! `position, stream, revision, id, type, schema_version, metadata, data`; `data` is the
//! event's JSON exactly as stored, `metadata` as the store serializes it (its `occurred_at`
//! is the virtual time). The store's `recorded_at` (its wall clock) is left out: it is the
//! only part of a drill's log a drill does not control. The hash is SHA-256 of the file's
//! bytes, in lower-case hex.
//!
//! The same shape, with `recorded_at` added, is what `muster store dump` prints;
//! [`read_lines`] reads either. [`read_recording`] also reads an embedded event store (a
//! `muster serve` data directory, or its `events.redb` file).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use muster_store::embedded::{STORE_FILE, VerifyOnOpen};
use muster_store::{
    EmbeddedOptions, EmbeddedStore, EventMetadata, EventStore, Position, RecordedEvent, StoreError,
    StreamName,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize)]
struct Line<'a> {
    position: u64,
    stream: &'a str,
    revision: u64,
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: u32,
    metadata: &'a EventMetadata,
    data: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
struct OwnedLine {
    position: u64,
    stream: String,
    revision: u64,
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default = "one")]
    schema_version: u32,
    #[serde(default)]
    recorded_at: Option<DateTime<Utc>>,
    #[serde(default)]
    metadata: EventMetadata,
    data: Box<serde_json::value::RawValue>,
}

fn one() -> u32 {
    1
}

/// A log line that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A line is not an event.
    #[error("line {line}: {reason}")]
    Line {
        /// Line number, from 1.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// A directory without an event store.
    #[error(
        "{} holds no event store (no {STORE_FILE}); give a muster serve data directory, its {STORE_FILE} or a JSON-lines log",
        .0.display()
    )]
    NoStore(PathBuf),
    /// A store file under another name: the embedded store is always `events.redb`.
    #[error(
        "{} is an event store file; the store must be named {STORE_FILE}: move or copy it into a directory as {STORE_FILE} and give that directory",
        .0.display()
    )]
    StoreFileName(PathBuf),
    /// The store is held by a running server.
    #[error(
        "the event store in {dir} is in use (is a muster server running on it?); stop the server, or take a copy with `muster store backup --data-dir {dir} <empty dir>` and replay the copy",
        dir = .0.display()
    )]
    Locked(PathBuf),
}

/// Every event of a store, in `$all` order. It blocks on the store's reads, so a store that
/// reads on a runtime (the embedded one) needs [`read_store_async`] or [`read_store_dir`].
pub fn read_store(store: &dyn EventStore) -> Result<Vec<RecordedEvent>, LogError> {
    futures::executor::block_on(read_store_async(store))
}

/// Every event of a store, in `$all` order.
pub async fn read_store_async(store: &dyn EventStore) -> Result<Vec<RecordedEvent>, LogError> {
    let mut out = Vec::new();
    let mut from = Position::START;
    loop {
        let page = store
            .read_all(from, 4096)
            .await
            .map_err(|e| LogError::Store(e.to_string()))?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        out.extend(page);
    }
    Ok(out)
}

/// Every event of the embedded store in directory `dir` (a `muster serve` data directory),
/// in `$all` order. The store is only read, never created: a directory without one is an
/// error, and so is a store a running server holds (it opens stores exclusively). Runs its
/// own runtime, so call it outside one (or on a blocking thread).
pub fn read_store_dir(dir: &Path) -> Result<Vec<RecordedEvent>, LogError> {
    if !dir.join(STORE_FILE).is_file() {
        return Err(LogError::NoStore(dir.to_owned()));
    }
    let options = EmbeddedOptions {
        verify_on_open: VerifyOnOpen::Tail,
        ..Default::default()
    };
    let store = match EmbeddedStore::open(dir, options) {
        Ok(store) => store,
        Err(StoreError::InUse(_)) => return Err(LogError::Locked(dir.to_owned())),
        Err(e) => return Err(LogError::Store(e.to_string())),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let events = runtime.block_on(read_store_async(&store));
    store.close();
    events
}

/// The first bytes of a redb database file (the embedded store's format).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Reads a recording: a JSON-lines log (canonical, or `muster store dump` output), an
/// embedded event store's directory (a `muster serve` data directory), or the store's
/// `events.redb` file. See [`read_store_dir`] for how a store is read.
pub fn read_recording(path: &Path) -> Result<Vec<RecordedEvent>, LogError> {
    if path.is_dir() {
        return read_store_dir(path);
    }
    let open = || {
        std::fs::File::open(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    if path.file_name().is_some_and(|n| n == STORE_FILE) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        return read_store_dir(dir);
    }
    let mut head = [0u8; REDB_MAGIC.len()];
    if open()?.read_exact(&mut head).is_ok() && head == REDB_MAGIC {
        return Err(LogError::StoreFileName(path.to_owned()));
    }
    read_lines(BufReader::new(open()?))
}

/// Writes the canonical log of these events.
pub fn write_canonical(events: &[RecordedEvent], out: &mut impl Write) -> Result<(), LogError> {
    for e in events {
        let data: &serde_json::value::RawValue =
            serde_json::from_slice(&e.data).map_err(|err| LogError::Line {
                line: e.position.0 as usize + 1,
                reason: format!("data is not JSON: {err}"),
            })?;
        let line = Line {
            position: e.position.0,
            stream: e.stream.as_str(),
            revision: e.revision,
            id: e.id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            metadata: &e.metadata,
            data,
        };
        serde_json::to_writer(&mut *out, &line).map_err(|err| LogError::Io(err.into()))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The canonical log as bytes.
pub fn canonical_bytes(events: &[RecordedEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 300);
    write_canonical(events, &mut out).expect("writing to memory does not fail");
    out
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a log of JSON lines (canonical, or as `muster store dump` prints). Events without
/// `recorded_at` get their `occurred_at` (or the epoch) in its place.
pub fn read_lines(reader: impl BufRead) -> Result<Vec<RecordedEvent>, LogError> {
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(&line).map_err(|reason| LogError::Line {
            line: n + 1,
            reason,
        })?);
    }
    Ok(out)
}

/// Parses one log line.
pub fn parse_line(line: &str) -> Result<RecordedEvent, String> {
    let l: OwnedLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let stream = StreamName::parse(l.stream).map_err(|e| e.to_string())?;
    let recorded_at = l
        .recorded_at
        .or(l.metadata.occurred_at)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Ok(RecordedEvent {
        stream,
        revision: l.revision,
        position: Position(l.position),
        id: l.id,
        event_type: l.event_type,
        schema_version: l.schema_version,
        data: l.data.get().as_bytes().to_vec(),
        metadata: l.metadata,
        recorded_at,
    })
}
