//! Errors of the store, in the three kinds every boundary of Muster uses: the caller's mistake
//! ([`InvalidInput`]), a conflict that is safe to retry after re-reading, and a fault of the
//! storage underneath.

use std::path::PathBuf;

use thiserror::Error;
use uuid::Uuid;

use crate::types::{CurrentState, ExpectedState, Position, StreamName};

/// Input the store refuses; nothing of the append was written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidInput {
    /// A stream name that is not valid.
    #[error("stream name {name:?} {reason}")]
    StreamName {
        /// The name, shortened or escaped for display.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event type that is empty, too long or has control characters.
    #[error(
        "event {id}: event type {event_type:?} must be 1 to 128 bytes without control characters"
    )]
    EventType {
        /// The event's id.
        id: Uuid,
        /// The type, escaped for display.
        event_type: String,
    },
    /// Event data that is not JSON.
    #[error("event {id}: data is not valid JSON: {reason}")]
    Data {
        /// The event's id.
        id: Uuid,
        /// What the parser said.
        reason: String,
    },
    /// An event over [`crate::MAX_EVENT_BYTES`].
    #[error("event {id} is {size} bytes, over the limit of {limit} bytes")]
    EventTooLarge {
        /// The event's id.
        id: Uuid,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyBatch,
    /// An append over [`crate::MAX_BATCH_EVENTS`] or [`crate::MAX_BATCH_BYTES`].
    #[error(
        "the append has {events} events and {bytes} bytes, over the limit of {max_events} events or {max_bytes} bytes"
    )]
    BatchTooLarge {
        /// Events in the batch.
        events: usize,
        /// Bytes in the batch.
        bytes: usize,
        /// Event limit.
        max_events: usize,
        /// Byte limit.
        max_bytes: usize,
    },
    /// The same event id twice in one append.
    #[error("event id {id} appears twice in the same append")]
    DuplicateIdInBatch {
        /// The repeated id.
        id: Uuid,
    },
    /// A multi-stream append that names a stream twice, or a stream and its metadata stream.
    #[error("a multi-stream append names {stream} {reason}")]
    StreamTwice {
        /// The stream.
        stream: StreamName,
        /// How: twice, or together with its metadata stream.
        reason: &'static str,
    },
    /// Metadata that is not the shape stream metadata has.
    #[error("stream metadata for {stream} is not valid: {reason}")]
    Metadata {
        /// The stream.
        stream: StreamName,
        /// What is wrong.
        reason: String,
    },
}

/// Everything the store can answer instead of a result.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The caller's mistake; nothing was written.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),

    /// The stream was not in the expected state; nothing was written. Re-read and retry.
    #[error("wrong expected state for stream {stream}: expected {expected}, but it is at {actual}")]
    WrongExpectedState {
        /// The stream.
        stream: StreamName,
        /// What the append expected.
        expected: ExpectedState,
        /// What the stream is.
        actual: CurrentState,
    },

    /// An event id already stored with a different event (other stream, type or content),
    /// or an append only part of whose ids are stored.
    #[error("event id {id} is already stored as a different event ({detail})")]
    IdClash {
        /// The clashing id.
        id: Uuid,
        /// What differs.
        detail: String,
    },

    /// The stream does not exist or was soft-deleted.
    #[error("stream {0} not found")]
    StreamNotFound(StreamName),

    /// The store refuses writes after a failed durable commit, until it is reopened.
    #[error("the store refuses writes after a failed commit ({cause}); reopen it")]
    WritesRefused {
        /// What failed first.
        cause: String,
    },

    /// The store has been closed.
    #[error("the store is closed")]
    Closed,

    /// Committed data failed its check: the store will not use it.
    #[error("corrupt data in {}: {detail}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Where and what.
        detail: String,
        /// The event's position, when the damage is inside one event.
        position: Option<Position>,
    },

    /// The store's file is held by another process (a server running on it).
    #[error("{} is already open in another process (is a muster server running on it?)", .0.display())]
    InUse(PathBuf),

    /// The database cannot be reached now (connection refused or lost, a standby that takes
    /// no writes during a failover). Nothing was acknowledged; retry later with the same event
    /// ids, which makes a retry of an append that did commit write nothing.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),

    /// The storage underneath failed (I/O, disk full, database engine).
    #[error("storage failure: {0}")]
    Storage(String),
}

impl StoreError {
    /// Whether the error is the caller's mistake.
    pub fn is_invalid(&self) -> bool {
        matches!(self, StoreError::Invalid(_))
    }

    /// Whether the store cannot be reached for now (worth a retry later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether the error is a concurrency conflict, safe to retry after re-reading.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedState { .. })
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
