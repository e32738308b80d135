//! An in-memory store: the reference model of the semantics, used by the property tests to
//! check the other backends, and handy for fast unit tests of code above the store.
//! It keeps nothing across restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::rules::{
    Appender, StreamInfo, append_one, append_parts, check_replay, first_readable, require, too_old,
    validate_batch, validate_parts,
};
use crate::store::EventStore;
use crate::types::{
    AppendResult, DataKey, Direction, ExpectedState, MAX_READ_COUNT, METADATA_EVENT_TYPE, NewEvent,
    Position, ReadFrom, RecordedEvent, StoreStats, StreamAppend, StreamMetadata, StreamName,
    StreamRevision,
};

#[derive(Default)]
struct State {
    all: Vec<RecordedEvent>,
    streams: HashMap<StreamName, (StreamInfo, Vec<Position>)>,
    ids: HashMap<Uuid, Position>,
}

/// The in-memory store.
pub struct MemoryStore {
    state: Mutex<State>,
    head: watch::Sender<Position>,
    /// Data keys by owner; `None`: destroyed.
    keys: Mutex<std::collections::HashMap<uuid::Uuid, Option<DataKey>>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("head", &*self.head.borrow())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            head: watch::channel(Position::START).0,
            keys: Mutex::default(),
        }
    }
}

impl State {
    fn info(&self, stream: &StreamName) -> StreamInfo {
        self.streams.get(stream).map(|s| s.0).unwrap_or_default()
    }

    fn metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        let meta = stream.metastream()?;
        let Some((_, positions)) = self.streams.get(&meta) else {
            return Ok(StreamMetadata::default());
        };
        match positions.last() {
            Some(p) => self.all[p.0 as usize].decode().map_err(|e| {
                StoreError::Storage(format!("stored metadata of {stream} is not readable: {e}"))
            }),
            None => Ok(StreamMetadata::default()),
        }
    }

    fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate_batch(stream, &events)?;
        append_one(self, stream, expected, events)
    }

    fn append_many(&mut self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        validate_parts(&parts)?;
        append_parts(self, parts)
    }

    /// Writes a checked append.
    fn write_checked(&mut self, stream: &StreamName, events: Vec<NewEvent>) -> AppendResult {
        let now = Utc::now();
        let entry = self.streams.entry(stream.clone()).or_default();
        let mut last = Position::START;
        for event in events {
            let position = Position(self.all.len() as u64);
            let revision = entry.0.next_revision;
            entry.0.next_revision += 1;
            entry.1.push(position);
            self.ids.insert(event.id, position);
            self.all.push(RecordedEvent {
                stream: stream.clone(),
                revision,
                position,
                id: event.id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                data: event.data,
                metadata: event.metadata,
                recorded_at: now,
            });
            last = position;
        }
        let next_expected_revision = entry.0.next_revision - 1;
        if let Some(described) = stream.described_stream() {
            let meta: StreamMetadata = self.all[last.0 as usize].decode().unwrap_or_default();
            self.streams.entry(described).or_default().0.truncate_before =
                meta.truncate_before.unwrap_or(0);
        }
        AppendResult {
            next_expected_revision,
            position: last,
        }
    }

    fn publish_head(&self, head: &watch::Sender<Position>) {
        let now = Position(self.all.len() as u64);
        head.send_if_modified(|h| {
            let changed = *h != now;
            *h = now;
            changed
        });
    }
}

impl Appender for State {
    fn replay(&self, stream: &StreamName, events: &[NewEvent]) -> Result<Option<AppendResult>> {
        let stored: Vec<Option<RecordedEvent>> = events
            .iter()
            .map(|e| self.ids.get(&e.id).map(|p| self.all[p.0 as usize].clone()))
            .collect();
        check_replay(stream, events, &stored)
    }

    fn check_expected(&self, stream: &StreamName, expected: ExpectedState) -> Result<()> {
        require(stream, expected, self.info(stream).state())
    }

    fn write(&mut self, stream: &StreamName, events: Vec<NewEvent>) -> Result<AppendResult> {
        Ok(self.write_checked(stream, events))
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn data_key(&self, owner: uuid::Uuid, create: bool) -> Result<Option<DataKey>> {
        let mut keys = self.keys.lock().unwrap();
        match keys.get(&owner) {
            Some(key) => Ok(key.clone()),
            None if create => {
                let key = DataKey::random();
                keys.insert(owner, Some(key.clone()));
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    async fn destroy_data_key(&self, owner: uuid::Uuid) -> Result<bool> {
        let mut keys = self.keys.lock().unwrap();
        Ok(keys.insert(owner, None).flatten().is_some())
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let mut state = self.state.lock().unwrap();
        let result = state.append(stream, expected, events);
        state.publish_head(&self.head);
        result
    }

    async fn append_many(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let mut state = self.state.lock().unwrap();
        let result = state.append_many(parts);
        state.publish_head(&self.head);
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let state = self.state.lock().unwrap();
        let info = state.info(stream);
        if !info.exists() {
            return Err(StoreError::StreamNotFound(stream.clone()));
        }
        let meta = if stream.is_metastream() {
            StreamMetadata::default()
        } else {
            state.metadata(stream)?
        };
        let first = first_readable(&info, &meta);
        let positions = &state.streams[stream].1;
        let limit = limit.min(MAX_READ_COUNT);
        let now = Utc::now();
        let revisions: Box<dyn Iterator<Item = u64>> = match (direction, from) {
            (Direction::Forwards, ReadFrom::Start) => Box::new(first..info.next_revision),
            (Direction::Forwards, ReadFrom::Revision(r)) => {
                Box::new(r.max(first)..info.next_revision)
            }
            (Direction::Forwards, ReadFrom::End) => Box::new(std::iter::empty()),
            (Direction::Backwards, ReadFrom::Start) => Box::new(std::iter::empty()),
            (Direction::Backwards, ReadFrom::End) => Box::new((first..info.next_revision).rev()),
            (Direction::Backwards, ReadFrom::Revision(r)) => {
                Box::new((first..info.next_revision.min(r.saturating_add(1))).rev())
            }
        };
        Ok(revisions
            .map(|r| &state.all[positions[r as usize].0 as usize])
            .filter(|e| !too_old(e, &meta, now))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let state = self.state.lock().unwrap();
        let start = (from.0 as usize).min(state.all.len());
        let end = start
            .saturating_add(limit.min(MAX_READ_COUNT))
            .min(state.all.len());
        Ok(state.all[start..end].to_vec())
    }

    async fn read_all_backwards(
        &self,
        before: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let state = self.state.lock().unwrap();
        let end = (before.0 as usize).min(state.all.len());
        let start = end.saturating_sub(limit.min(MAX_READ_COUNT));
        Ok(state.all[start..end].iter().rev().cloned().collect())
    }

    async fn stream_metadata(&self, stream: &StreamName) -> Result<StreamMetadata> {
        self.state.lock().unwrap().metadata(stream)
    }

    async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
    ) -> Result<Position> {
        let result = {
            let mut state = self.state.lock().unwrap();
            let info = state.info(stream);
            if !expected.is_met_by(info.state()) || !info.exists() {
                return Err(StoreError::WrongExpectedState {
                    stream: stream.clone(),
                    expected,
                    actual: info.state(),
                });
            }
            let mut meta = state.metadata(stream)?;
            meta.truncate_before = Some(info.next_revision);
            let event = NewEvent::json(Uuid::new_v4(), METADATA_EVENT_TYPE, 1, &meta)?;
            state.append(&stream.metastream()?, ExpectedState::Any, vec![event])
        };
        let head = Position(self.state.lock().unwrap().all.len() as u64);
        self.head.send_replace(head);
        result.map(|r| r.position)
    }

    async fn stream_revision(&self, stream: &StreamName) -> Result<Option<StreamRevision>> {
        let info = self.state.lock().unwrap().info(stream);
        Ok(info.next_revision.checked_sub(1))
    }

    fn head(&self) -> Position {
        *self.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    async fn stats(&self) -> Result<StoreStats> {
        let state = self.state.lock().unwrap();
        Ok(StoreStats {
            events: state.all.len() as u64,
            streams: state.streams.len() as u64,
            head: Position(state.all.len() as u64),
            file_bytes: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::contract::Fixture;

    async fn fresh() -> Fixture {
        Fixture {
            store: Arc::new(super::MemoryStore::new()),
            guard: Box::new(()),
            reopen: None,
            crash_copy: None,
        }
    }

    crate::contract_tests!(fresh);
}
