//! The command runner: load the aggregates a decision reads, decide (pure), append every
//! stream it touches in one atomic multi-stream append with each stream's expected revision,
//! and on a conflict load again and decide again, at most [`MAX_ATTEMPTS`] times.
//!
//! Every command carries a [`CommandKey`] (the caller's idempotency key in the caller's
//! scope) and a [`Fingerprint`] of the request. The runner stores an idempotency record (the
//! key, the fingerprint, the first answer, and where the command's events went) in the
//! stream [`CommandKey::record_stream`], in the same atomic append as the command's events.
//! A repeat with the same fingerprint is answered from the record with the stored answer and
//! the stored events, writing nothing; the same key with another fingerprint is
//! [`CommandError::KeyReused`]. The record is in the log, so this holds after a restart and
//! on every node that shares the store.
//!
//! States are cached per stream between commands and brought up to date by reading only the
//! events after the cached revision, so a unit with a long history of positions is not read
//! from its start on every report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use muster_core::alert::AlertState;
use muster_core::api_token::ApiTokens;
use muster_core::combined::{Changes, States};
use muster_core::decision::{Aggregate, Refusal};
use muster_core::device::DeviceState;
use muster_core::event::EventSchema;
use muster_core::event::{self, DecodeError, EncodeError, EventIds, encode_batch};
use muster_core::incident::IncidentState;
use muster_core::road::RoadClosureState;
use muster_core::sensor::SensorState;
use muster_core::unit::UnitState;
use muster_core::value::IdempotencyKey;
use muster_core::{AggregateRef, ClosureId, IncidentId, SensorId, TaskId, UnitId};
use muster_store::{
    Direction, EventMetadata, EventStore, ExpectedState, NewEvent, Position, ReadFrom,
    RecordedEvent, StoreError, StreamAppend, StreamName, StreamRevision,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many times a command is loaded and decided again after losing a race for one of its
/// streams. The one bound of the write path.
pub const MAX_ATTEMPTS: usize = 16;

/// Most streams one decision may read.
pub const MAX_STREAMS_PER_DECISION: usize = 64;

/// Streams whose state the runner keeps between commands; past this the cache starts again.
pub const MAX_CACHED_STREAMS: usize = 100_000;

/// Events read per page when bringing a state up to date.
const PAGE: usize = 1024;

/// Event type of an idempotency record.
pub const RECORD_EVENT_TYPE: &str = "CommandRecorded";

/// Namespace of command ids (a scope and a key).
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_2d63_6f6d_6d61_6e64_0001);

/// An idempotency key in its scope: the same key from two callers is two commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandKey {
    scope: String,
    key: IdempotencyKey,
    id: Uuid,
}

impl CommandKey {
    /// The key `key` of the caller `scope` (a user name, `unit:<id>` for a device, `muster`
    /// for the server's own commands).
    pub fn new(scope: impl Into<String>, key: IdempotencyKey) -> Self {
        let scope = scope.into();
        let id = Uuid::new_v5(
            &COMMAND_NAMESPACE,
            format!("{scope}\u{0}{}", key.as_str()).as_bytes(),
        );
        Self { scope, key, id }
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The key.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// An id derived from the command (`what` names its use: `incident`, `task`, …): a retry
    /// derives the same one.
    pub fn derived_id(&self, what: &str) -> Uuid {
        Uuid::new_v5(&self.id, what.as_bytes())
    }

    /// The stream that holds the command's idempotency record.
    pub fn record_stream(&self) -> StreamName {
        StreamName::parse(format!("$idempotency-{}", self.id)).expect("a valid stream name")
    }

    fn event_ids(&self) -> EventIds<'static> {
        EventIds::CausedBy(self.id)
    }
}

/// A digest of what a request asks for: its command name and its canonical JSON (object keys
/// sorted, no white space), so the same request sent again has the same fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of command `name` with this content.
    pub fn of(name: &str, content: &serde_json::Value) -> Self {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(content).expect("a JSON value serializes"));
        Self(h.finalize().into())
    }

    /// As hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", &self.to_hex()[..12])
    }
}

/// One command as the runner receives it.
#[derive(Clone, Debug)]
pub struct Command {
    /// Its key in its scope.
    pub key: CommandKey,
    /// What it asks for.
    pub fingerprint: Fingerprint,
    /// Who, from where, why: carried by every event it appends.
    pub metadata: EventMetadata,
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The decision refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Its streams kept changing under it for [`MAX_ATTEMPTS`] attempts.
    #[error("{0} kept changing while deciding; try again")]
    Contended(StreamName),
    /// The same idempotency key was used for a different request.
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A decision read a stream that is not an aggregate's, or too many streams.
    #[error("the decision read {0}, which it cannot")]
    Stream(String),
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct Executed<T> {
    /// The decision's answer (the stored one for a repeat).
    pub answer: T,
    /// The command's events as stored, in log order (empty when it changed nothing).
    pub recorded: Vec<RecordedEvent>,
    /// Whether this was a repeat answered from the idempotency record.
    pub replayed: bool,
    /// Effects on other aggregates that their state refused.
    pub skipped: Vec<Refusal>,
    /// The log position of the command's idempotency record, the last event of its append.
    pub record_position: Position,
}

impl<T> Executed<T> {
    /// The log position of the last event the command's append wrote (its idempotency
    /// record): once the views have applied it, they show everything the command did.
    pub fn position(&self) -> Option<Position> {
        Some(self.record_position)
    }
}

/// The state of one aggregate stream.
#[derive(Clone, Debug)]
enum State {
    Incident(IncidentState),
    Unit(UnitState),
    Sensor(SensorState),
    RoadClosure(RoadClosureState),
    Device(DeviceState),
    Alert(AlertState),
    ApiTokens(ApiTokens),
}

impl State {
    fn empty(stream: &StreamName) -> Result<Self, CommandError> {
        Ok(match AggregateRef::from_stream(stream) {
            Some(AggregateRef::Incident(_)) => State::Incident(IncidentState::default()),
            Some(AggregateRef::Unit(_)) => State::Unit(UnitState::default()),
            Some(AggregateRef::Sensor(_)) => State::Sensor(SensorState::default()),
            Some(AggregateRef::RoadClosure(_)) => State::RoadClosure(RoadClosureState::default()),
            Some(AggregateRef::Device(_)) => State::Device(DeviceState::default()),
            Some(AggregateRef::Alert(_)) => State::Alert(AlertState::default()),
            Some(AggregateRef::ApiTokens) => State::ApiTokens(ApiTokens::default()),
            // The audit trail is appended to, never decided on.
            Some(AggregateRef::Audit(_)) | None => {
                return Err(CommandError::Stream(stream.to_string()));
            }
        })
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), DecodeError> {
        match self {
            State::Incident(s) => s.apply(&event::decode(recorded)?),
            State::Unit(s) => s.apply(&event::decode(recorded)?),
            State::Sensor(s) => s.apply(&event::decode(recorded)?),
            State::RoadClosure(s) => s.apply(&event::decode(recorded)?),
            State::Device(s) => s.apply(&event::decode(recorded)?),
            State::Alert(s) => s.apply(&event::decode(recorded)?),
            State::ApiTokens(s) => s.apply(&event::decode(recorded)?),
        }
        Ok(())
    }
}

/// Picks one aggregate's state out of a [`State`].
macro_rules! state_of {
    ($state:expr, $variant:ident, $what:literal) => {
        match $state {
            State::$variant(s) => s,
            _ => unreachable!(concat!("a ", $what, " stream holds a ", $what)),
        }
    };
}

#[derive(Clone, Debug)]
struct Loaded {
    state: State,
    revision: Option<StreamRevision>,
}

/// Why a decision could not finish with the states it had: refused, or it needs a stream
/// that is not loaded yet (the runner loads it and decides again).
#[derive(Debug)]
pub enum Step {
    /// Refused.
    Refused(Refusal),
    /// Load this stream, then decide again.
    Load(StreamName),
}

impl From<Refusal> for Step {
    fn from(r: Refusal) -> Self {
        Step::Refused(r)
    }
}

/// The states a decision reads, loaded on demand.
#[derive(Debug, Default)]
pub struct Snapshot {
    streams: HashMap<StreamName, Loaded>,
}

impl Snapshot {
    fn get(&self, stream: StreamName) -> Result<&State, Step> {
        match self.streams.get(&stream) {
            Some(l) => Ok(&l.state),
            None => Err(Step::Load(stream)),
        }
    }
}

impl States for Snapshot {
    type Error = Step;
    fn incident(&self, id: IncidentId) -> Result<&IncidentState, Step> {
        Ok(state_of!(self.get(id.stream_name())?, Incident, "incident"))
    }
    fn unit(&self, id: UnitId) -> Result<&UnitState, Step> {
        Ok(state_of!(self.get(id.stream_name())?, Unit, "unit"))
    }
    fn sensor(&self, id: SensorId) -> Result<&SensorState, Step> {
        Ok(state_of!(self.get(id.stream_name())?, Sensor, "sensor"))
    }
    fn road_closure(&self, id: ClosureId) -> Result<&RoadClosureState, Step> {
        Ok(state_of!(
            self.get(id.stream_name())?,
            RoadClosure,
            "road closure"
        ))
    }
    fn device(&self, unit: UnitId) -> Result<&DeviceState, Step> {
        Ok(state_of!(self.get(unit.device_stream())?, Device, "device"))
    }
    fn alert(&self, task: TaskId) -> Result<&AlertState, Step> {
        Ok(state_of!(self.get(task.alert_stream())?, Alert, "alert"))
    }
    fn api_tokens(&self) -> Result<&ApiTokens, Step> {
        Ok(state_of!(
            self.get(muster_core::ids::api_tokens_stream())?,
            ApiTokens,
            "API tokens"
        ))
    }
}

/// The idempotency record stored with a command's events.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    scope: String,
    key: String,
    fingerprint: String,
    answer: serde_json::Value,
    /// Where the command's events went, in the order they were appended.
    streams: Vec<Written>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    stream: StreamName,
    from_revision: StreamRevision,
    count: usize,
}

/// The command runner. Cheap to clone; clones share the state cache.
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn EventStore>,
    cache: Arc<Mutex<HashMap<StreamName, Loaded>>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runner")
    }
}

impl Runner {
    /// A runner on this store.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Runs one command (see the module docs). `decide` is pure and may be called more than
    /// once: after a lost race, or when it asks for another stream ([`Step::Load`]).
    pub async fn execute<T>(
        &self,
        command: &Command,
        mut decide: impl FnMut(&Snapshot) -> Result<(Changes, T), Step>,
    ) -> Result<Executed<T>, CommandError>
    where
        T: Serialize + DeserializeOwned,
    {
        let record_stream = command.key.record_stream();
        let mut snapshot = Snapshot::default();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(done) = self.replay(command, &record_stream).await? {
                return Ok(done);
            }
            let names: Vec<StreamName> = snapshot.streams.keys().cloned().collect();
            for stream in names {
                let loaded = self.load(&stream).await?;
                snapshot.streams.insert(stream, loaded);
            }
            let (changes, answer) = loop {
                match decide(&snapshot) {
                    Ok(decided) => break decided,
                    Err(Step::Refused(r)) => return Err(r.into()),
                    Err(Step::Load(stream)) => {
                        if snapshot.streams.len() >= MAX_STREAMS_PER_DECISION
                            || snapshot.streams.contains_key(&stream)
                        {
                            return Err(CommandError::Stream(stream.to_string()));
                        }
                        let loaded = self.load(&stream).await?;
                        snapshot.streams.insert(stream, loaded);
                    }
                }
            };
            let skipped = changes.skipped.clone();
            let parts = self.encode(command, &snapshot, changes)?;
            let written: Vec<Written> = parts
                .iter()
                .map(|(p, from)| Written {
                    stream: p.stream.clone(),
                    from_revision: *from,
                    count: p.events.len(),
                })
                .collect();
            let record = Record {
                scope: command.key.scope.clone(),
                key: command.key.key.as_str().to_owned(),
                fingerprint: command.fingerprint.to_hex(),
                answer: serde_json::to_value(&answer).map_err(|e| {
                    CommandError::Encode(EncodeError::Serialize {
                        event_type: RECORD_EVENT_TYPE,
                        reason: e.to_string(),
                    })
                })?,
                streams: written.clone(),
            };
            let record_event = NewEvent::json(
                command.key.event_ids().id(&record_stream, 0),
                RECORD_EVENT_TYPE,
                1,
                &record,
            )
            .map_err(EncodeError::from)?
            .with_metadata(command.metadata.clone());
            let mut appends: Vec<StreamAppend> = parts.into_iter().map(|(p, _)| p).collect();
            appends.push(StreamAppend::new(
                record_stream.clone(),
                ExpectedState::NoStream,
                vec![record_event],
            ));
            match self.store.append_many(appends).await {
                Ok(results) => {
                    let recorded = self.read_written(&written).await?;
                    self.remember(&snapshot, &recorded)?;
                    return Ok(Executed {
                        answer,
                        recorded,
                        replayed: false,
                        skipped,
                        record_position: results.last().expect("the record's part").position,
                    });
                }
                // A lost race (for a stream, or for the key: then the record answers).
                Err(e) if e.is_conflict() => continue,
                Err(StoreError::IdClash { .. }) => return Err(CommandError::KeyReused),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(record_stream))
    }

    /// Whether a command with this key has run (its idempotency record is stored).
    pub async fn recorded(&self, key: &CommandKey) -> Result<bool, CommandError> {
        match self
            .store
            .read_stream(
                &key.record_stream(),
                Direction::Forwards,
                ReadFrom::Start,
                1,
            )
            .await
        {
            Ok(found) => Ok(!found.is_empty()),
            Err(StoreError::StreamNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The answer from the command's idempotency record, if it ran before.
    async fn replay<T: DeserializeOwned>(
        &self,
        command: &Command,
        record_stream: &StreamName,
    ) -> Result<Option<Executed<T>>, CommandError> {
        let found = match self
            .store
            .read_stream(record_stream, Direction::Forwards, ReadFrom::Start, 1)
            .await
        {
            Ok(found) => found,
            Err(StoreError::StreamNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(stored) = found.first() else {
            return Ok(None);
        };
        let record: Record = stored.decode().map_err(|e| bad_record(stored, e))?;
        if record.fingerprint != command.fingerprint.to_hex() {
            return Err(CommandError::KeyReused);
        }
        let answer = serde_json::from_value(record.answer).map_err(|e| bad_record(stored, e))?;
        let recorded = self.read_written(&record.streams).await?;
        Ok(Some(Executed {
            answer,
            recorded,
            replayed: true,
            skipped: Vec::new(),
            record_position: stored.position,
        }))
    }

    /// The events a command wrote, as stored, in log order.
    async fn read_written(&self, written: &[Written]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        for w in written {
            out.extend(
                self.store
                    .read_stream(
                        &w.stream,
                        Direction::Forwards,
                        ReadFrom::Revision(w.from_revision),
                        w.count,
                    )
                    .await?,
            );
        }
        out.sort_by_key(|r| r.position);
        Ok(out)
    }

    /// Turns a decision's changes into the parts of one append, each with the expected
    /// revision of the state it was decided on and the revision its first event gets.
    fn encode(
        &self,
        command: &Command,
        snapshot: &Snapshot,
        changes: Changes,
    ) -> Result<Vec<(StreamAppend, StreamRevision)>, CommandError> {
        let ids = command.key.event_ids();
        let mut parts = Vec::new();
        let mut part = |stream: StreamName, events: Vec<NewEvent>| {
            let revision = snapshot
                .streams
                .get(&stream)
                .ok_or_else(|| CommandError::Stream(format!("{stream} (written, not read)")))?
                .revision;
            let expected = event::expected_state_after(revision);
            parts.push((
                StreamAppend::new(stream, expected, events),
                revision.map_or(0, |r| r + 1),
            ));
            Ok::<_, CommandError>(())
        };
        fn batch<E: EventSchema>(
            stream: StreamName,
            events: &[E],
            ids: EventIds<'_>,
            metadata: &EventMetadata,
        ) -> Result<(StreamName, Vec<NewEvent>), CommandError> {
            let new = encode_batch(&stream, events, ids, metadata)?;
            Ok((stream, new))
        }
        let m = &command.metadata;
        let mut batches = Vec::new();
        for (id, events) in &changes.incidents {
            batches.push(batch(id.stream_name(), events, ids, m)?);
        }
        for (id, events) in &changes.units {
            batches.push(batch(id.stream_name(), events, ids, m)?);
        }
        for (id, events) in &changes.sensors {
            batches.push(batch(id.stream_name(), events, ids, m)?);
        }
        for (id, events) in &changes.road_closures {
            batches.push(batch(id.stream_name(), events, ids, m)?);
        }
        for (unit, events) in &changes.devices {
            batches.push(batch(unit.device_stream(), events, ids, m)?);
        }
        for (task, events) in &changes.alerts {
            batches.push(batch(task.alert_stream(), events, ids, m)?);
        }
        if !changes.api_tokens.is_empty() {
            batches.push(batch(
                muster_core::ids::api_tokens_stream(),
                &changes.api_tokens,
                ids,
                m,
            )?);
        }
        for (stream, new) in batches {
            part(stream, new)?;
        }
        Ok(parts)
    }

    /// The machines' API tokens as the log has them now: the cached state brought up to
    /// date with the events after it (one read of the stream's tail).
    pub async fn api_tokens(&self) -> Result<ApiTokens, CommandError> {
        let loaded = self.load(&muster_core::ids::api_tokens_stream()).await?;
        Ok(state_of!(loaded.state, ApiTokens, "API tokens"))
    }

    /// A stream's state, from the cache brought up to date with the events after it.
    async fn load(&self, stream: &StreamName) -> Result<Loaded, CommandError> {
        let cached = self.cache.lock().expect("cache lock").get(stream).cloned();
        let mut loaded = match cached {
            Some(l) => l,
            None => Loaded {
                state: State::empty(stream)?,
                revision: None,
            },
        };
        loop {
            let from = loaded.revision.map_or(0, |r| r + 1);
            let page = match self
                .store
                .read_stream(stream, Direction::Forwards, ReadFrom::Revision(from), PAGE)
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            for recorded in page.iter().filter(|r| r.revision >= from) {
                loaded.state.apply(recorded)?;
                loaded.revision = Some(recorded.revision);
            }
            if page.len() < PAGE {
                break;
            }
        }
        self.put(stream.clone(), loaded.clone());
        Ok(loaded)
    }

    /// Keeps the states a command's events lead to.
    fn remember(&self, snapshot: &Snapshot, recorded: &[RecordedEvent]) -> Result<(), DecodeError> {
        let mut next: HashMap<&StreamName, Loaded> = HashMap::new();
        for r in recorded {
            let Some(base) = snapshot.streams.get(&r.stream) else {
                continue;
            };
            let loaded = next.entry(&r.stream).or_insert_with(|| base.clone());
            if loaded.revision.is_none_or(|rev| r.revision > rev) {
                loaded.state.apply(r)?;
                loaded.revision = Some(r.revision);
            }
        }
        for (stream, loaded) in next {
            self.put(stream.clone(), loaded);
        }
        Ok(())
    }

    fn put(&self, stream: StreamName, loaded: Loaded) {
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= MAX_CACHED_STREAMS && !cache.contains_key(&stream) {
            cache.clear();
        }
        let newer = cache
            .get(&stream)
            .is_none_or(|old| old.revision <= loaded.revision);
        if newer {
            cache.insert(stream, loaded);
        }
    }

    /// An aggregate's state as stored now (for reads that need the stream itself).
    pub async fn incident(&self, id: IncidentId) -> Result<IncidentState, CommandError> {
        let loaded = self.load(&id.stream_name()).await?;
        Ok(state_of!(loaded.state, Incident, "incident"))
    }

    /// A unit's state as stored now.
    pub async fn unit(&self, id: UnitId) -> Result<UnitState, CommandError> {
        let loaded = self.load(&id.stream_name()).await?;
        Ok(state_of!(loaded.state, Unit, "unit"))
    }

    /// A sensor's state as stored now.
    pub async fn sensor(&self, id: SensorId) -> Result<SensorState, CommandError> {
        let loaded = self.load(&id.stream_name()).await?;
        Ok(state_of!(loaded.state, Sensor, "sensor"))
    }
}

fn bad_record(stored: &RecordedEvent, e: serde_json::Error) -> CommandError {
    CommandError::Decode(DecodeError::Data {
        event_type: RECORD_EVENT_TYPE.into(),
        stream: stored.stream.to_string(),
        revision: stored.revision,
        reason: e.to_string(),
    })
}
