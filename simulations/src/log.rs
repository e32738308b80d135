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
//! [`read_lines`] reads either.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use muster_store::{EventMetadata, EventStore, Position, RecordedEvent, StreamName};
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
    #[error("{0}")]
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
}

/// Every event of a store, in `$all` order.
pub fn read_store(store: &dyn EventStore) -> Result<Vec<RecordedEvent>, LogError> {
    let mut out = Vec::new();
    let mut from = Position::START;
    loop {
        let page = futures::executor::block_on(store.read_all(from, 4096))
            .map_err(|e| LogError::Store(e.to_string()))?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        out.extend(page);
    }
    Ok(out)
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
