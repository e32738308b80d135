//! Command handling: load the aggregate from its stream, decide, append with the expected
//! revision, and on a conflict read again and decide again. Then run the follow-ups
//! ([`muster_core::reaction`]) on what was stored.
//!
//! Every command carries an idempotency key. Its events get ids derived from the key (see
//! [`muster_core::event::EventIds::FromKey`]); a repeat finds them in the stream and is
//! answered with them, writing nothing. A repeat also runs the follow-ups again (they are
//! idempotent by their causing event's id), so a crash between an append and its follow-ups
//! is healed by the client's retry.

use std::sync::Arc;

use muster_core::decision::{Aggregate, Refusal};
use muster_core::event::{
    self, DecodeError, EncodeError, EventIds, EventSchema, already_appended, encode_batch,
    expected_state_after,
};
use muster_core::incident::IncidentState;
use muster_core::sensor::SensorState;
use muster_core::unit::UnitState;
use muster_core::value::IdempotencyKey;
use muster_core::{IncidentId, SensorId, UnitId};
use muster_store::{
    Direction, EventMetadata, EventStore, Position, ReadFrom, RecordedEvent, StoreError,
    StreamName, StreamRevision,
};
use uuid::Uuid;

/// How many times a command is decided again after losing a race for its stream.
pub const MAX_ATTEMPTS: usize = 16;

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The decision refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The stream kept changing under us.
    #[error("the {0} stream kept changing; try again")]
    Contended(StreamName),
    /// The same idempotency key was used for a different request.
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// The store or the codec failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The aggregate's state after the command.
    pub state: A,
    /// The command's events as stored (empty when it changed nothing).
    pub recorded: Vec<RecordedEvent>,
    /// The command's events.
    pub events: Vec<A::Event>,
    /// Whether this was a repeat, answered from the events the first run stored.
    pub replayed: bool,
    /// The log position of the last event its follow-ups stored (or found stored).
    pub follow_ups_position: Option<Position>,
}

impl<A: Aggregate> Executed<A> {
    /// The log position of the last event the command and its follow-ups stored: once the
    /// views have applied it, they show everything the command did.
    pub fn position(&self) -> Option<Position> {
        self.recorded
            .last()
            .map(|r| r.position)
            .max(self.follow_ups_position)
    }
}

/// The command side of the application: one store, many aggregates.
#[derive(Clone)]
pub struct Commands {
    store: Arc<dyn EventStore>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Commands")
    }
}

pub use muster_core::follow_up::read_stream;

/// Loads an aggregate: its state, its stored events, the revision of the last one.
pub async fn load<A>(
    store: &dyn EventStore,
    stream: &StreamName,
) -> Result<(A, Vec<RecordedEvent>, Option<StreamRevision>), CommandError>
where
    A: Aggregate,
    A::Event: EventSchema,
{
    let recorded = read_stream(store, stream).await?;
    let events: Vec<A::Event> = recorded
        .iter()
        .map(event::decode)
        .collect::<Result<_, _>>()?;
    let revision = recorded.last().map(|r| r.revision);
    Ok((A::replay(&events), recorded, revision))
}

impl Commands {
    /// Commands on this store.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Runs one command on one aggregate's stream (see the module docs). `decide` may be
    /// called more than once: after a lost race it sees the new state.
    pub async fn execute<A>(
        &self,
        stream: &StreamName,
        key: &IdempotencyKey,
        metadata: &EventMetadata,
        mut decide: impl FnMut(&A) -> Result<Vec<A::Event>, Refusal>,
    ) -> Result<Executed<A>, CommandError>
    where
        A: Aggregate,
        A::Event: EventSchema,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (state, recorded, revision) = load::<A>(&*self.store, stream).await?;
            let done = already_appended(&recorded, stream, key);
            if !done.is_empty() {
                let recorded: Vec<RecordedEvent> = done.into_iter().cloned().collect();
                let events = recorded
                    .iter()
                    .map(event::decode)
                    .collect::<Result<Vec<A::Event>, _>>()?;
                let follow_ups_position = self.follow_up(&recorded).await;
                return Ok(Executed {
                    state,
                    recorded,
                    events,
                    replayed: true,
                    follow_ups_position,
                });
            }
            let events = decide(&state)?;
            if events.is_empty() {
                return Ok(Executed {
                    state,
                    recorded: Vec::new(),
                    events,
                    replayed: false,
                    follow_ups_position: None,
                });
            }
            let batch = encode_batch(stream, &events, EventIds::FromKey(key), metadata)?;
            let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
            match self
                .store
                .append(stream, expected_state_after(revision), batch)
                .await
            {
                Ok(_) => {
                    let stored = self.read_ids(stream, revision, &ids).await?;
                    let mut next = state;
                    for e in &events {
                        next.apply(e);
                    }
                    let follow_ups_position = self.follow_up(&stored).await;
                    return Ok(Executed {
                        state: next,
                        recorded: stored,
                        events,
                        replayed: false,
                        follow_ups_position,
                    });
                }
                Err(e) if e.is_conflict() => continue,
                Err(StoreError::IdClash { .. }) => return Err(CommandError::KeyReused),
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended(stream.clone()))
    }

    /// Whether a command with this key already stored its events in this stream.
    pub async fn already_done(
        &self,
        stream: &StreamName,
        key: &IdempotencyKey,
    ) -> Result<bool, CommandError> {
        let recorded = read_stream(&*self.store, stream).await?;
        Ok(!already_appended(&recorded, stream, key).is_empty())
    }

    /// The events just appended after `revision`, as stored.
    async fn read_ids(
        &self,
        stream: &StreamName,
        revision: Option<StreamRevision>,
        ids: &[Uuid],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = revision.map_or(0, |r| r + 1);
        let events = self
            .store
            .read_stream(
                stream,
                Direction::Forwards,
                ReadFrom::Revision(from),
                ids.len(),
            )
            .await?;
        Ok(events.into_iter().filter(|e| ids.contains(&e.id)).collect())
    }

    /// Runs the follow-ups of stored events, and of their follow-ups' events
    /// ([`muster_core::follow_up`]); answers the position of the last event they stored or
    /// found stored. A refusal or failure is logged, not shown: the command itself went
    /// through.
    pub async fn follow_up(&self, recorded: &[RecordedEvent]) -> Option<Position> {
        let done = muster_core::follow_up::run(&*self.store, recorded).await;
        for (stream, cause, e) in &done.failed {
            tracing::info!(%stream, %cause, "follow-up not applied: {e}");
        }
        done.last
    }

    /// Loads the incident state.
    pub async fn incident(&self, id: IncidentId) -> Result<IncidentState, CommandError> {
        Ok(load::<IncidentState>(&*self.store, &id.stream_name())
            .await?
            .0)
    }

    /// Loads the unit state.
    pub async fn unit(&self, id: UnitId) -> Result<UnitState, CommandError> {
        Ok(load::<UnitState>(&*self.store, &id.stream_name()).await?.0)
    }

    /// Loads the sensor state.
    pub async fn sensor(&self, id: SensorId) -> Result<SensorState, CommandError> {
        Ok(load::<SensorState>(&*self.store, &id.stream_name())
            .await?
            .0)
    }
}
