//! Device commands carried out against the store, following core's recipe for handling a
//! command: read, check whether the key was applied already, decide, append with the ids
//! derived from the key and the expected revision, and on a concurrent append start over.
//!
//! A [`UnitCommands`] belongs to one connection and acts only for the unit of the
//! connection's token: the unit is never taken from the message, so a device cannot act for
//! another unit, and a task of another unit is refused by the unit's own decision.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use muster_core::event::{self, EventIds, already_appended, encode_batch, expected_state_after};
use muster_core::incident::{IncidentCommand, IncidentState, ReportSource};
use muster_core::unit::{UnitCommand, UnitEvent, UnitState};
use muster_core::value::{CallerDetails, IdempotencyKey, NoteText};
use muster_core::{Aggregate, IncidentId, UnitId, reaction};
use muster_store::{
    Direction, EventMetadata, EventStore, ExpectedState, ReadFrom, StoreError, StreamName,
    StreamRevision,
};
use uuid::Uuid;

use crate::limits::MAX_COMMAND_ATTEMPTS;
use crate::protocol::{ClientMessage, ErrorCode, Outcome};

/// Ids of the newest events of the unit's stream kept to recognise a retried command.
/// A retry arriving after more than this many newer events of the same unit is decided
/// again (and usually refused, as its effect is already there), never appended twice.
pub const RECENT_EVENT_IDS: usize = 4096;

/// Events read per page when catching up with the unit's stream.
const PAGE: usize = 1024;

/// Newest events of the unit searched for a retried command's own events.
const RETRY_LOOKBACK: usize = 64;

/// Most events one device command appends (a completion is two: the task ends, the status
/// changes); bounds the ids a retry looks for.
const MAX_EVENTS_PER_COMMAND: u32 = 8;

/// Namespace of the incident ids derived from a field report's key.
const FIELD_INCIDENT_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_6669_656c_6469_6e63_0001);

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// The code for the device.
    pub code: ErrorCode,
    /// What went wrong, in words.
    pub message: String,
}

impl CommandError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "device command failed in the store");
        Self::new(
            ErrorCode::Internal,
            "the gateway could not reach the event store; retry with the same key",
        )
    }
}

/// The result of a command carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// How.
    pub outcome: Outcome,
    /// For a field incident, the incident.
    pub incident: Option<IncidentId>,
}

/// Carries out one unit's device commands, keeping the unit's state between commands.
pub struct UnitCommands {
    store: Arc<dyn EventStore>,
    unit: UnitId,
    stream: StreamName,
    state: UnitState,
    last_revision: Option<StreamRevision>,
    recent: VecDeque<Uuid>,
    recent_set: HashSet<Uuid>,
}

impl std::fmt::Debug for UnitCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitCommands")
            .field("unit", &self.unit)
            .field("last_revision", &self.last_revision)
            .finish_non_exhaustive()
    }
}

impl UnitCommands {
    /// Commands for `unit`.
    pub fn new(store: Arc<dyn EventStore>, unit: UnitId) -> Self {
        Self {
            store,
            unit,
            stream: unit.stream_name(),
            state: UnitState::default(),
            last_revision: None,
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
        }
    }

    /// The unit's state as of the last catch-up.
    pub fn state(&self) -> &UnitState {
        &self.state
    }

    /// Reads the unit's events appended since the last catch-up.
    async fn catch_up(&mut self) -> Result<(), CommandError> {
        loop {
            let from = self.last_revision.map_or(0, |r| r + 1);
            let page = match self
                .store
                .read_stream(
                    &self.stream,
                    Direction::Forwards,
                    ReadFrom::Revision(from),
                    PAGE,
                )
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound(_)) => Vec::new(),
                Err(e) => return Err(CommandError::internal(e)),
            };
            let full = page.len() == PAGE;
            for recorded in page.iter().filter(|r| r.revision >= from) {
                let event: UnitEvent = event::decode(recorded).map_err(CommandError::internal)?;
                self.state.apply(&event);
                self.last_revision = Some(recorded.revision);
                if self.recent_set.insert(recorded.id) {
                    self.recent.push_back(recorded.id);
                }
                if self.recent.len() > RECENT_EVENT_IDS
                    && let Some(old) = self.recent.pop_front()
                {
                    self.recent_set.remove(&old);
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn metadata(&self, at: DateTime<Utc>) -> EventMetadata {
        EventMetadata {
            actor: Some(format!("unit:{}", self.unit)),
            source: Some("field".into()),
            correlation_id: None,
            causation_id: None,
            occurred_at: Some(at),
        }
    }

    /// Carries out a device command. Messages that are not commands are refused.
    pub async fn execute(&mut self, message: &ClientMessage) -> Result<Done, CommandError> {
        use ClientMessage as M;
        let (key, command, at) = match message.clone() {
            M::AcknowledgeTask { key, task, at } => {
                (key, UnitCommand::AcknowledgeTask { task, at }, at)
            }
            M::DeclineTask {
                key,
                task,
                reason,
                at,
            } => {
                let reason = reason
                    .map(|r| NoteText::parse(&r))
                    .transpose()
                    .map_err(|e| CommandError::new(ErrorCode::InvalidMessage, e.to_string()))?;
                (key, UnitCommand::DeclineTask { task, reason, at }, at)
            }
            M::CompleteTask { key, task, at } => (key, UnitCommand::CompleteTask { task, at }, at),
            M::Status { key, status, at } => {
                (key, UnitCommand::ChangeStatus { to: status, at }, at)
            }
            M::Position {
                key,
                position,
                heading_deg,
                speed_m_s,
                accuracy_m,
                at,
            } => (
                key,
                UnitCommand::ReportPosition {
                    position,
                    heading_deg,
                    speed_m_s,
                    accuracy_m,
                    at,
                },
                at,
            ),
            M::FieldIncident {
                key,
                location,
                incident_type,
                priority,
                at,
            } => {
                let incident_id = self.field_incident_id(&key);
                let command = IncidentCommand::Report {
                    incident_id,
                    source: ReportSource::Field { unit: self.unit },
                    location,
                    incident_type,
                    priority,
                    caller: CallerDetails::default(),
                    call_received_at: at,
                    at,
                };
                return self.report_incident(&key, incident_id, command, at).await;
            }
            M::Hello { .. } | M::Ack { .. } | M::Ping { .. } => {
                return Err(CommandError::new(
                    ErrorCode::InvalidMessage,
                    "not a command",
                ));
            }
        };
        self.unit_command(&key, command, at).await
    }

    /// The id of the incident a field report with this key creates: the same on every retry.
    pub fn field_incident_id(&self, key: &IdempotencyKey) -> IncidentId {
        let name = format!("{}\u{0}{}", self.unit, key.as_str());
        IncidentId::from_uuid(Uuid::new_v5(&FIELD_INCIDENT_NAMESPACE, name.as_bytes()))
    }

    async fn unit_command(
        &mut self,
        key: &IdempotencyKey,
        command: UnitCommand,
        at: DateTime<Utc>,
    ) -> Result<Done, CommandError> {
        let first_id = EventIds::FromKey(key).id(&self.stream, 0);
        let done = |outcome| Done {
            outcome,
            incident: None,
        };
        for _ in 0..MAX_COMMAND_ATTEMPTS {
            self.catch_up().await?;
            if self.recent_set.contains(&first_id) {
                // A retry: the follow-ups run again in case the first run was cut short.
                self.follow_up_retried(key).await;
                return Ok(done(Outcome::Duplicate));
            }
            let events = self
                .state
                .decide(command.clone())
                .map_err(|refusal| CommandError::new(ErrorCode::Refused, refusal.reason.clone()))?;
            if events.is_empty() {
                return Ok(done(Outcome::Unchanged));
            }
            let new = encode_batch(
                &self.stream,
                &events,
                EventIds::FromKey(key),
                &self.metadata(at),
            )
            .map_err(|e| CommandError::new(ErrorCode::InvalidMessage, e.to_string()))?;
            let new_ids: Vec<Uuid> = new.iter().map(|e| e.id).collect();
            let from = self.last_revision.map_or(0, |r| r + 1);
            match self
                .store
                .append(&self.stream, expected_state_after(self.last_revision), new)
                .await
            {
                Ok(_) => {
                    if events
                        .iter()
                        .any(|e| reaction::incident_progress(self.unit, e).is_some())
                    {
                        self.follow_up(from, &new_ids).await;
                    }
                    return Ok(done(Outcome::Applied));
                }
                Err(StoreError::WrongExpectedState { .. }) => continue,
                Err(StoreError::IdClash { .. }) => {
                    return Err(CommandError::new(
                        ErrorCode::Refused,
                        "this key was already used for a different command; use a new key",
                    ));
                }
                Err(StoreError::Invalid(e)) => {
                    return Err(CommandError::new(ErrorCode::InvalidMessage, e.to_string()));
                }
                Err(e) => return Err(CommandError::internal(e)),
            }
        }
        Err(CommandError::new(
            ErrorCode::Conflict,
            "the unit changed concurrently too often; retry with the same key",
        ))
    }

    /// Runs the follow-ups of the events just stored from revision `from` with these ids
    /// (the incident's time points, [`muster_core::follow_up`]). A failure is logged: the
    /// command itself went through, and a retry runs them again.
    async fn follow_up(&self, from: StreamRevision, ids: &[Uuid]) {
        let stored = match self
            .store
            .read_stream(
                &self.stream,
                Direction::Forwards,
                ReadFrom::Revision(from),
                ids.len(),
            )
            .await
        {
            Ok(page) => page
                .into_iter()
                .filter(|r| ids.contains(&r.id))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(unit = %self.unit, "follow-ups not run: {e}");
                return;
            }
        };
        let done = muster_core::follow_up::run(&*self.store, &stored).await;
        for (stream, cause, e) in &done.failed {
            tracing::info!(%stream, %cause, "follow-up not applied: {e}");
        }
    }

    /// For a retried command: finds its events among the unit's newest and runs their
    /// follow-ups again (stored once: their ids come from the causing event).
    async fn follow_up_retried(&self, key: &IdempotencyKey) {
        let ids = EventIds::FromKey(key);
        let newest = match self
            .store
            .read_stream(
                &self.stream,
                Direction::Backwards,
                ReadFrom::End,
                RETRY_LOOKBACK,
            )
            .await
        {
            Ok(page) => page,
            Err(_) => return,
        };
        let mut stored: Vec<_> = newest
            .into_iter()
            .filter(|r| (0..MAX_EVENTS_PER_COMMAND).any(|i| r.id == ids.id(&self.stream, i)))
            .collect();
        stored.sort_by_key(|r| r.revision);
        if let Some(first) = stored.first() {
            let from = first.revision;
            let ids: Vec<Uuid> = stored.iter().map(|r| r.id).collect();
            self.follow_up(from, &ids).await;
        }
    }

    async fn report_incident(
        &mut self,
        key: &IdempotencyKey,
        incident_id: IncidentId,
        command: IncidentCommand,
        at: DateTime<Utc>,
    ) -> Result<Done, CommandError> {
        let stream = incident_id.stream_name();
        let done = |outcome| Done {
            outcome,
            incident: Some(incident_id),
        };
        for _ in 0..2 {
            let recorded = match self
                .store
                .read_stream(&stream, Direction::Forwards, ReadFrom::Start, PAGE)
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound(_)) => Vec::new(),
                Err(e) => return Err(CommandError::internal(e)),
            };
            if !already_appended(&recorded, &stream, key).is_empty() {
                return Ok(done(Outcome::Duplicate));
            }
            let state = IncidentState::default();
            let events = state
                .decide(command.clone())
                .map_err(|r| CommandError::new(ErrorCode::Refused, r.reason))?;
            let new = encode_batch(&stream, &events, EventIds::FromKey(key), &self.metadata(at))
                .map_err(|e| CommandError::new(ErrorCode::InvalidMessage, e.to_string()))?;
            match self
                .store
                .append(&stream, ExpectedState::NoStream, new)
                .await
            {
                Ok(_) => return Ok(done(Outcome::Applied)),
                Err(StoreError::WrongExpectedState { .. }) => continue,
                Err(StoreError::IdClash { .. }) => {
                    return Err(CommandError::new(
                        ErrorCode::Refused,
                        "this key was already used for a different report; use a new key",
                    ));
                }
                Err(StoreError::Invalid(e)) => {
                    return Err(CommandError::new(ErrorCode::InvalidMessage, e.to_string()));
                }
                Err(e) => return Err(CommandError::internal(e)),
            }
        }
        Err(CommandError::new(
            ErrorCode::Refused,
            "an incident with this report's id exists already; use a new key",
        ))
    }
}
