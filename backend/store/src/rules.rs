//! Rules every backend applies the same way: batch validation, stream state, and which events
//! a stream's metadata leaves readable.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::error::{InvalidInput, Result, StoreError};
use crate::types::{
    AppendResult, CurrentState, ExpectedState, MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
    METADATA_EVENT_TYPE, NewEvent, RecordedEvent, StreamAppend, StreamMetadata, StreamName,
    StreamRevision,
};

/// Checks an append's events before anything is written.
pub(crate) fn validate_batch(stream: &StreamName, events: &[NewEvent]) -> Result<(), InvalidInput> {
    if events.is_empty() {
        return Err(InvalidInput::EmptyBatch);
    }
    let mut bytes = 0usize;
    let mut ids = HashSet::with_capacity(events.len());
    for event in events {
        event.validate()?;
        bytes += event.approximate_size();
        if !ids.insert(event.id) {
            return Err(InvalidInput::DuplicateIdInBatch { id: event.id });
        }
        if stream.is_metastream() {
            if event.event_type != METADATA_EVENT_TYPE {
                return Err(InvalidInput::Metadata {
                    stream: stream.clone(),
                    reason: format!("metadata streams take only {METADATA_EVENT_TYPE} events"),
                });
            }
            serde_json::from_slice::<StreamMetadata>(&event.data).map_err(|e| {
                InvalidInput::Metadata {
                    stream: stream.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
    }
    if events.len() > MAX_BATCH_EVENTS || bytes > MAX_BATCH_BYTES {
        return Err(InvalidInput::BatchTooLarge {
            events: events.len(),
            bytes,
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
        });
    }
    Ok(())
}

/// Checks a multi-stream append before anything is written: each part as an append of its
/// own, no stream twice (nor a stream with its metadata stream), no event id twice, and the
/// whole within the limits of one append.
pub(crate) fn validate_parts(parts: &[StreamAppend]) -> Result<(), InvalidInput> {
    if parts.is_empty() {
        return Err(InvalidInput::EmptyBatch);
    }
    let mut streams = HashSet::with_capacity(parts.len());
    let mut ids = HashSet::new();
    let mut events = 0usize;
    let mut bytes = 0usize;
    for part in parts {
        validate_batch(&part.stream, &part.events)?;
        if !streams.insert(part.stream.as_str()) {
            return Err(InvalidInput::StreamTwice {
                stream: part.stream.clone(),
                reason: "twice",
            });
        }
        for event in &part.events {
            if !ids.insert(event.id) {
                return Err(InvalidInput::DuplicateIdInBatch { id: event.id });
            }
            bytes += event.approximate_size();
        }
        events += part.events.len();
    }
    for part in parts {
        if let Some(described) = part.stream.described_stream()
            && streams.contains(described.as_str())
        {
            return Err(InvalidInput::StreamTwice {
                stream: described,
                reason: "together with its metadata stream",
            });
        }
    }
    if events > MAX_BATCH_EVENTS || bytes > MAX_BATCH_BYTES {
        return Err(InvalidInput::BatchTooLarge {
            events,
            bytes,
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
        });
    }
    Ok(())
}

/// What the shared append rules need of a backend inside one write.
pub(crate) trait Appender {
    /// The first answer when every event of the append is stored already.
    fn replay(&self, stream: &StreamName, events: &[NewEvent]) -> Result<Option<AppendResult>>;
    /// Refuses with a conflict when the stream is not in the expected state.
    fn check_expected(&self, stream: &StreamName, expected: ExpectedState) -> Result<()>;
    /// Writes a checked append.
    fn write(&mut self, stream: &StreamName, events: Vec<NewEvent>) -> Result<AppendResult>;
}

/// Checks and writes an append to one or more streams: idempotency first (a retry of a
/// stored append answers as the first time did), then every part's expected state, then the
/// writes, so a refused append writes nothing.
pub(crate) fn append_parts(
    backend: &mut impl Appender,
    parts: Vec<StreamAppend>,
) -> Result<Vec<AppendResult>> {
    let replays = parts
        .iter()
        .map(|p| backend.replay(&p.stream, &p.events))
        .collect::<Result<Vec<_>>>()?;
    if let Some(results) = combine_replays(&parts, replays)? {
        return Ok(results);
    }
    for part in &parts {
        backend.check_expected(&part.stream, part.expected)?;
    }
    parts
        .into_iter()
        .map(|p| backend.write(&p.stream, p.events))
        .collect()
}

/// An append to one stream through [`append_parts`].
pub(crate) fn append_one(
    backend: &mut impl Appender,
    stream: &StreamName,
    expected: ExpectedState,
    events: Vec<NewEvent>,
) -> Result<AppendResult> {
    let part = StreamAppend::new(stream.clone(), expected, events);
    Ok(append_parts(backend, vec![part])?.remove(0))
}

/// The answer to a multi-stream append from each part's replay check: all parts stored
/// already (a retry: the first answers), none (a new append), or a mix, which is a clash.
fn combine_replays(
    parts: &[StreamAppend],
    replays: Vec<Option<AppendResult>>,
) -> Result<Option<Vec<AppendResult>>> {
    let stored = replays.iter().filter(|r| r.is_some()).count();
    if stored == 0 {
        return Ok(None);
    }
    if stored < replays.len() {
        let (part, _) = parts
            .iter()
            .zip(&replays)
            .find(|(_, r)| r.is_none())
            .expect("a part not stored");
        return Err(StoreError::IdClash {
            id: part.events[0].id,
            detail: format!(
                "{stored} of the append's {} streams are stored already, {} is not",
                parts.len(),
                part.stream
            ),
        });
    }
    Ok(Some(replays.into_iter().flatten().collect()))
}

/// Refuses with a conflict, naming what the stream is, when `actual` does not meet `expected`.
pub(crate) fn require(
    stream: &StreamName,
    expected: ExpectedState,
    actual: CurrentState,
) -> Result<()> {
    if !expected.is_met_by(actual) {
        return Err(StoreError::WrongExpectedState {
            stream: stream.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// What the store keeps per stream to check expected states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamInfo {
    /// Revision the next event gets: the number of events ever appended.
    pub next_revision: StreamRevision,
    /// Events before this revision are not readable (`$tb`).
    pub truncate_before: StreamRevision,
}

impl StreamInfo {
    pub(crate) fn state(&self) -> CurrentState {
        if self.next_revision == 0 {
            CurrentState::NoStream
        } else if self.truncate_before >= self.next_revision {
            CurrentState::Deleted(self.next_revision - 1)
        } else {
            CurrentState::Revision(self.next_revision - 1)
        }
    }

    pub(crate) fn exists(&self) -> bool {
        matches!(self.state(), CurrentState::Revision(_))
    }

    /// Bytes kept in the embedded store's streams table.
    pub(crate) fn encode(&self, id: u64) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&id.to_le_bytes());
        out[8..16].copy_from_slice(&self.next_revision.to_le_bytes());
        out[16..].copy_from_slice(&self.truncate_before.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<(u64, StreamInfo)> {
        if bytes.len() != 24 {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Some((
            word(0),
            StreamInfo {
                next_revision: word(8),
                truncate_before: word(16),
            },
        ))
    }
}

/// The lowest revision the stream's metadata leaves readable, counting truncation and max count.
pub(crate) fn first_readable(info: &StreamInfo, meta: &StreamMetadata) -> StreamRevision {
    let mut first = info.truncate_before.max(meta.truncate_before.unwrap_or(0));
    if let Some(max) = meta.max_count {
        first = first.max(info.next_revision.saturating_sub(max));
    }
    first
}

/// Whether max age hides this event.
pub(crate) fn too_old(event: &RecordedEvent, meta: &StreamMetadata, now: DateTime<Utc>) -> bool {
    match meta.max_age_secs {
        Some(age) => {
            (now - event.recorded_at).num_seconds() >= i64::try_from(age).unwrap_or(i64::MAX)
        }
        None => false,
    }
}

/// The answer to an append whose ids are all stored already, or the clash.
pub(crate) fn check_replay(
    stream: &StreamName,
    events: &[NewEvent],
    stored: &[Option<RecordedEvent>],
) -> Result<Option<AppendResult>> {
    let found = stored.iter().filter(|s| s.is_some()).count();
    if found == 0 {
        return Ok(None);
    }
    for (new, old) in events.iter().zip(stored) {
        match old {
            Some(old) if !old.same_as(stream, new) => {
                return Err(StoreError::IdClash {
                    id: new.id,
                    detail: format!(
                        "stored in {} at revision {} as {}",
                        old.stream, old.revision, old.event_type
                    ),
                });
            }
            Some(_) => {}
            None => {
                return Err(StoreError::IdClash {
                    id: new.id,
                    detail: format!(
                        "{found} of the append's {} events are stored already, this one is not",
                        events.len()
                    ),
                });
            }
        }
    }
    let last = stored.last().and_then(|s| s.as_ref()).expect("all found");
    Ok(Some(AppendResult {
        next_expected_revision: last.revision,
        position: last.position,
    }))
}
