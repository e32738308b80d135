//! The vocabulary of the store: stream names, positions, revisions, events and limits.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::InvalidInput;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 256;
/// Longest event type name, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 128;
/// Largest event: JSON data plus JSON metadata, in bytes.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Most events in one append.
pub const MAX_BATCH_EVENTS: usize = 4096;
/// Largest append: the data and metadata of all its events, in bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Most events one read returns; larger limits are capped to this.
pub const MAX_READ_COUNT: usize = 65_536;

/// Prefix of a metadata stream: the metadata of `incident-7` lives in `$$incident-7`.
pub const METASTREAM_PREFIX: &str = "$$";
/// Event type of a metadata event.
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// A validated stream name: 1 to [`MAX_STREAM_NAME_BYTES`] bytes, no control characters,
/// no surrounding white space. Names starting with `$` are system streams.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamName(String);

impl StreamName {
    /// Parses a stream name, saying what is wrong with it when it is not valid.
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidInput> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidInput::StreamName {
                name,
                reason: "is empty",
            });
        }
        if name.len() > MAX_STREAM_NAME_BYTES {
            return Err(InvalidInput::StreamName {
                name: truncate_for_display(&name),
                reason: "is longer than 256 bytes",
            });
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidInput::StreamName {
                name: name.escape_debug().to_string(),
                reason: "contains a control character",
            });
        }
        if name.trim() != name {
            return Err(InvalidInput::StreamName {
                name,
                reason: "starts or ends with white space",
            });
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a system stream (its name starts with `$`).
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }

    /// Whether this is the metadata stream of another stream.
    pub fn is_metastream(&self) -> bool {
        self.0.starts_with(METASTREAM_PREFIX)
    }

    /// The metadata stream of this stream (`$$` + name).
    pub fn metastream(&self) -> Result<StreamName, InvalidInput> {
        StreamName::parse(format!("{METASTREAM_PREFIX}{}", self.0))
    }

    /// For a metadata stream, the stream it describes.
    pub fn described_stream(&self) -> Option<StreamName> {
        self.0
            .strip_prefix(METASTREAM_PREFIX)
            .filter(|rest| !rest.is_empty())
            .map(|rest| StreamName(rest.to_owned()))
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        StreamName::parse(raw).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&str> for StreamName {
    type Error = InvalidInput;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        StreamName::parse(value)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn truncate_for_display(s: &str) -> String {
    let mut end = 40.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Place of an event in the global log (`$all`). Positions increase along `$all`; the
/// embedded store's are dense (0 for the first event, then one more for each), PostgreSQL's
/// are not (the committing transaction's id, then the event's index in the append).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// The position before any event.
    pub const START: Position = Position(0);

    /// The lowest position after this one (the next event's, in a dense log).
    pub fn next(self) -> Position {
        Position(self.0 + 1)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// Revision of an event inside its stream: 0 for the stream's first event.
pub type StreamRevision = u64;

/// What the writer expects of a stream before its append, as in KurrentDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "revision")]
pub enum ExpectedState {
    /// No check.
    Any,
    /// The stream must not exist (or must have been soft-deleted).
    NoStream,
    /// The stream must exist and not be soft-deleted.
    StreamExists,
    /// The stream's last event must have this revision.
    Revision(StreamRevision),
}

impl fmt::Display for ExpectedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedState::Any => f.write_str("any"),
            ExpectedState::NoStream => f.write_str("no stream"),
            ExpectedState::StreamExists => f.write_str("stream exists"),
            ExpectedState::Revision(r) => write!(f, "revision {r}"),
        }
    }
}

/// What a stream actually is, reported in conflicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "revision")]
pub enum CurrentState {
    /// The stream has never been written.
    NoStream,
    /// The stream was soft-deleted; its last event had this revision.
    Deleted(StreamRevision),
    /// The stream's last event has this revision.
    Revision(StreamRevision),
}

impl fmt::Display for CurrentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentState::NoStream => f.write_str("no stream"),
            CurrentState::Deleted(r) => write!(f, "soft-deleted at revision {r}"),
            CurrentState::Revision(r) => write!(f, "revision {r}"),
        }
    }
}

impl ExpectedState {
    /// Whether a stream in `current` state satisfies this expectation.
    pub fn is_met_by(self, current: CurrentState) -> bool {
        match (self, current) {
            (ExpectedState::Any, _) => true,
            (ExpectedState::NoStream, CurrentState::NoStream | CurrentState::Deleted(_)) => true,
            (ExpectedState::NoStream, CurrentState::Revision(_)) => false,
            (ExpectedState::StreamExists, CurrentState::Revision(_)) => true,
            (ExpectedState::StreamExists, _) => false,
            (
                ExpectedState::Revision(want),
                CurrentState::Revision(have) | CurrentState::Deleted(have),
            ) => want == have,
            (ExpectedState::Revision(_), CurrentState::NoStream) => false,
        }
    }
}

/// Who and what caused an event. Carried with every event; never holds personal data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The user, device or service that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Where the event came in: `hotline`, `sensor`, `field`, `drill`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The conversation this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// When it happened, according to the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// The network address the command came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The node that took the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The credential the actor presented, by an id that does not reveal it
    /// (`token:<fingerprint>`, `device-token:<id>`, `jwt:<issuer>#<token id or subject>`,
    /// `api-token:<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The actor's role when it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The agency the actor acted for, when their credential names one (a single sign-on
    /// token's agency claim, an API token's agency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
}

/// An event to append. Its data is JSON, checked when the event is built.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id: appending an id that is already stored writes nothing.
    pub id: Uuid,
    /// Event type, such as `IncidentReported`.
    pub event_type: String,
    /// Version of the event type's schema, for upcasting old shapes on read.
    pub schema_version: u32,
    /// JSON data.
    pub data: Vec<u8>,
    /// Who and what caused it.
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// An event with raw JSON data. The JSON is checked here.
    pub fn from_json_bytes(
        id: Uuid,
        event_type: impl Into<String>,
        schema_version: u32,
        data: Vec<u8>,
    ) -> Result<Self, InvalidInput> {
        let event = NewEvent {
            id,
            event_type: event_type.into(),
            schema_version,
            data,
            metadata: EventMetadata::default(),
        };
        event.validate()?;
        Ok(event)
    }

    /// An event whose data is `value` serialized as JSON.
    pub fn json<T: Serialize>(
        id: Uuid,
        event_type: impl Into<String>,
        schema_version: u32,
        value: &T,
    ) -> Result<Self, InvalidInput> {
        let data = serde_json::to_vec(value).map_err(|e| InvalidInput::Data {
            id,
            reason: e.to_string(),
        })?;
        Self::from_json_bytes(id, event_type, schema_version, data)
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks the type name, the size and that the data is JSON.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.event_type.is_empty()
            || self.event_type.len() > MAX_EVENT_TYPE_BYTES
            || self.event_type.chars().any(char::is_control)
        {
            return Err(InvalidInput::EventType {
                id: self.id,
                event_type: self.event_type.escape_debug().take(60).collect(),
            });
        }
        let size = self.approximate_size();
        if size > MAX_EVENT_BYTES {
            return Err(InvalidInput::EventTooLarge {
                id: self.id,
                size,
                limit: MAX_EVENT_BYTES,
            });
        }
        serde_json::from_slice::<serde::de::IgnoredAny>(&self.data).map_err(|e| {
            InvalidInput::Data {
                id: self.id,
                reason: e.to_string(),
            }
        })?;
        Ok(())
    }

    /// Bytes of data plus an estimate of the metadata.
    pub fn approximate_size(&self) -> usize {
        self.data.len()
            + self.event_type.len()
            + self.metadata.actor.as_ref().map_or(0, String::len)
            + self.metadata.source.as_ref().map_or(0, String::len)
            + 128
    }
}

impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data may hold personal data: only its size is shown.
        f.debug_struct("NewEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("schema_version", &self.schema_version)
            .field("data_bytes", &self.data.len())
            .finish()
    }
}

/// An event as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream: StreamName,
    /// Its revision in that stream.
    pub revision: StreamRevision,
    /// Its place in the global log.
    pub position: Position,
    /// Its id.
    pub id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: u32,
    /// JSON data.
    pub data: Vec<u8>,
    /// Who and what caused it.
    pub metadata: EventMetadata,
    /// When the store committed it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Deserializes the JSON data.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// Whether this stored event is the same event as `new` (same id, type and content).
    pub fn same_as(&self, stream: &StreamName, new: &NewEvent) -> bool {
        self.id == new.id
            && &self.stream == stream
            && self.event_type == new.event_type
            && self.schema_version == new.schema_version
            && self.data == new.data
            && self.metadata == new.metadata
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("stream", &self.stream)
            .field("revision", &self.revision)
            .field("position", &self.position)
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .field("data_bytes", &self.data.len())
            .finish()
    }
}

/// One stream's part of an append to several streams
/// ([`crate::EventStore::append_many`]): the stream, what its writer expects of it, its events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream.
    pub stream: StreamName,
    /// What the writer expects of it before the append.
    pub expected: ExpectedState,
    /// Its events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// A part.
    pub fn new(stream: StreamName, expected: ExpectedState, events: Vec<NewEvent>) -> Self {
        Self {
            stream,
            expected,
            events,
        }
    }
}

/// What an append reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// Revision of the stream's last event after the append: the expected revision of the
    /// next append.
    pub next_expected_revision: StreamRevision,
    /// Global position of the batch's last event.
    pub position: Position,
}

/// Which way a read goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first.
    Backwards,
}

/// Where a stream read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The stream's first (forwards) or last (backwards) event.
    Start,
    /// The stream's last event (backwards) or past its end (forwards).
    End,
    /// This revision, included.
    Revision(StreamRevision),
}

/// Stream metadata as in KurrentDB. Limits apply to reads of the stream; `$all` keeps every
/// event, so the audit trail is never cut.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMetadata {
    /// Keep only the newest this many events readable.
    #[serde(rename = "$maxCount", default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// Keep only events younger than this many seconds readable.
    #[serde(rename = "$maxAge", default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Events before this revision are not readable (set by a soft delete).
    #[serde(rename = "$tb", default, skip_serializing_if = "Option::is_none")]
    pub truncate_before: Option<StreamRevision>,
    /// Anything else the application keeps with the stream.
    #[serde(flatten)]
    pub custom: serde_json::Map<String, serde_json::Value>,
}

/// Store-wide figures, for `muster store stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Events in `$all`.
    pub events: u64,
    /// Streams ever written.
    pub streams: u64,
    /// The next global position.
    pub head: Position,
    /// Bytes of the store's files on disk.
    pub file_bytes: u64,
}

/// A key that seals one owner's personal data (an incident's caller details): 256 random
/// bits. Destroying it makes what it sealed unreadable for ever, while the log that holds the
/// sealed data stays intact (crypto-shredding). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl DataKey {
    /// A fresh random key.
    pub fn random() -> Self {
        use rand::Rng;
        Self(rand::rng().random())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<hidden>)")
    }
}
