//! Running the follow-ups of stored events ([`crate::reaction`]) against a store: a unit's
//! progress records the incident's time points, a sensor alarm reports its incident, a
//! closed incident releases its units.
//!
//! Every writer runs them right after its own append (the operator API and the mobile
//! gateway alike), so the log holds the follow-ups whichever way a command came in. Each
//! follow-up's events get ids derived from the causing event's id, so running them again (a
//! retried command, a second node) stores nothing twice: the events already stored are
//! answered instead, and their own follow-ups checked in turn.

use muster_store::{
    Direction, EventMetadata, EventStore, Position, ReadFrom, RecordedEvent, StoreError,
    StreamName, StreamRevision,
};
use uuid::Uuid;

use crate::decision::{Aggregate, Refusal};
use crate::event::{self, DecodeError, EncodeError, EventIds, encode_batch, expected_state_after};
use crate::incident::{IncidentCommand, IncidentEvent, IncidentState};
use crate::reaction;
use crate::unit::{UnitCommand, UnitEvent, UnitState};
use crate::{AggregateRef, DomainEvent};

/// How many rounds of follow-ups one command may cause (a follow-up's events may have
/// follow-ups of their own: a close releases units, whose completions record time points).
pub const MAX_ROUNDS: usize = 4;

/// How many times a follow-up is decided again after losing a race for its stream.
const MAX_ATTEMPTS: usize = 16;

/// Why one follow-up was not stored.
#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    /// The target aggregate refused it (its effect is usually there already).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The stream kept changing under it.
    #[error("the {0} stream kept changing")]
    Contended(StreamName),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// What running the follow-ups did.
#[derive(Debug, Default)]
pub struct FollowUps {
    /// The log position of the last event they stored or found stored.
    pub last: Option<Position>,
    /// The follow-ups not stored: target stream, causing event, why. The command that caused
    /// them went through all the same.
    pub failed: Vec<(StreamName, Uuid, FollowUpError)>,
}

/// A command that follows from a stored event.
#[derive(Debug, Clone)]
enum Step {
    Incident(IncidentCommand),
    Unit(UnitCommand),
}

/// Runs the follow-ups of `recorded` (one command's stored events), and of their
/// follow-ups' events, up to [`MAX_ROUNDS`] deep.
pub async fn run(store: &dyn EventStore, recorded: &[RecordedEvent]) -> FollowUps {
    let mut out = FollowUps::default();
    let mut round: Vec<Vec<RecordedEvent>> = vec![recorded.to_vec()];
    for _ in 0..MAX_ROUNDS {
        let mut next = Vec::new();
        for batch in round {
            for (stream, cause, step) in steps(&batch) {
                match react(store, &stream, cause, step).await {
                    Ok(stored) if !stored.is_empty() => {
                        out.last = out.last.max(stored.iter().map(|r| r.position).max());
                        next.push(stored);
                    }
                    Ok(_) => {}
                    Err(e) => out.failed.push((stream, cause, e)),
                }
            }
        }
        if next.is_empty() {
            break;
        }
        round = next;
    }
    out
}

/// The follow-ups of one batch of stored events: target stream, causing event id, command.
fn steps(batch: &[RecordedEvent]) -> Vec<(StreamName, Uuid, Step)> {
    let mut out = Vec::new();
    let mut incident_batch: Vec<IncidentEvent> = Vec::new();
    for recorded in batch {
        let Ok((aggregate, event)) = DomainEvent::from_recorded(recorded) else {
            continue;
        };
        match (aggregate, event) {
            (AggregateRef::Unit(unit), DomainEvent::Unit(e)) => {
                if let Some((incident, command)) = reaction::incident_progress(unit, &e) {
                    out.push((incident.stream_name(), recorded.id, Step::Incident(command)));
                }
            }
            (AggregateRef::Sensor(sensor), DomainEvent::Sensor(e)) => {
                if let Some((incident, command)) = reaction::sensor_follow_up(sensor, &e) {
                    out.push((incident.stream_name(), recorded.id, Step::Incident(command)));
                }
            }
            (AggregateRef::Incident(_), DomainEvent::Incident(e)) => incident_batch.push(e),
            _ => {}
        }
    }
    if let Some(last) = batch.last() {
        for (unit, command) in reaction::units_released_by_close(&incident_batch) {
            out.push((unit.stream_name(), last.id, Step::Unit(command)));
        }
    }
    out
}

/// Every event of a stream, oldest first; none when it does not exist.
pub async fn read_stream(
    store: &dyn EventStore,
    stream: &StreamName,
) -> Result<Vec<RecordedEvent>, StoreError> {
    match store
        .read_stream(stream, Direction::Forwards, ReadFrom::Start, usize::MAX)
        .await
    {
        Ok(events) => Ok(events),
        Err(StoreError::StreamNotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Appends one follow-up, with ids from its cause; nothing if already there.
async fn react(
    store: &dyn EventStore,
    stream: &StreamName,
    cause: Uuid,
    step: Step,
) -> Result<Vec<RecordedEvent>, FollowUpError> {
    let ids = EventIds::CausedBy(cause);
    let metadata = EventMetadata {
        actor: Some("muster".into()),
        source: Some("reaction".into()),
        causation_id: Some(cause),
        ..EventMetadata::default()
    };
    for _ in 0..MAX_ATTEMPTS {
        let recorded = read_stream(store, stream).await?;
        let first = ids.id(stream, 0);
        if let Some(start) = recorded.iter().position(|r| r.id == first) {
            // Stored by an earlier run: answer with those events, so that their own
            // follow-ups are checked too.
            return Ok(recorded[start..]
                .iter()
                .zip(0u32..)
                .take_while(|(r, i)| r.id == ids.id(stream, *i))
                .map(|(r, _)| r.clone())
                .collect());
        }
        let revision: Option<StreamRevision> = recorded.last().map(|r| r.revision);
        let batch = match &step {
            Step::Incident(command) => {
                let events: Vec<IncidentEvent> = recorded
                    .iter()
                    .map(event::decode)
                    .collect::<Result<_, _>>()?;
                let new = IncidentState::replay(&events).decide(command.clone())?;
                encode_batch(stream, &new, ids, &metadata)?
            }
            Step::Unit(command) => {
                let events: Vec<UnitEvent> = recorded
                    .iter()
                    .map(event::decode)
                    .collect::<Result<_, _>>()?;
                let new = UnitState::replay(&events).decide(command.clone())?;
                encode_batch(stream, &new, ids, &metadata)?
            }
        };
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let new_ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
        match store
            .append(stream, expected_state_after(revision), batch)
            .await
        {
            Ok(_) => {
                let from = revision.map_or(0, |r| r + 1);
                let events = store
                    .read_stream(
                        stream,
                        Direction::Forwards,
                        ReadFrom::Revision(from),
                        new_ids.len(),
                    )
                    .await?;
                return Ok(events
                    .into_iter()
                    .filter(|e| new_ids.contains(&e.id))
                    .collect());
            }
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FollowUpError::Contended(stream.clone()))
}
