//! Device commands carried out through the one write path ([`muster_app::Runner`]): the
//! unit's decision and the time points it records on its incident are appended together,
//! with an idempotency record in the device's scope, so a retried command is answered as a
//! duplicate and writes nothing.
//!
//! A [`UnitCommands`] belongs to one connection and acts only for the unit of the
//! connection's token: the unit is never taken from the message, so a device cannot act for
//! another unit, and a task of another unit is refused by the unit's own decision. The time a
//! device stamps on a message is its claim: one too far ahead of the gateway's clock, or too
//! old, is refused with the reason ([`muster_core::value::check_source_time`]).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use muster_app::{Command, CommandKey, Fingerprint, Runner, Step};
use muster_core::combined::Changes;
use muster_core::incident::{IncidentCommand, ReportSource};
use muster_core::unit::UnitCommand;
use muster_core::value::{CallerDetails, IdempotencyKey, NoteText};
use muster_core::{IncidentId, UnitId};
use muster_store::{EventMetadata, EventStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::protocol::{ClientMessage, ErrorCode, Outcome};

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

impl From<muster_app::CommandError> for CommandError {
    fn from(e: muster_app::CommandError) -> Self {
        use muster_app::CommandError as E;
        match e {
            E::Refused(r) => Self::new(ErrorCode::Refused, r.reason),
            E::Contended(_) => Self::new(
                ErrorCode::Conflict,
                "the unit changed concurrently too often; retry with the same key",
            ),
            E::KeyReused => Self::new(
                ErrorCode::Refused,
                "this key was already used for a different command; use a new key",
            ),
            E::Store(muster_store::StoreError::Invalid(e)) => {
                Self::new(ErrorCode::InvalidMessage, e.to_string())
            }
            e => Self::internal(e),
        }
    }
}

/// The result of a command carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// How.
    pub outcome: Outcome,
    /// For a field incident, the incident.
    pub incident: Option<IncidentId>,
}

/// Carries out one unit's device commands.
pub struct UnitCommands {
    runner: Runner,
    unit: UnitId,
    peer: Option<String>,
    node: Option<String>,
    credential: Option<String>,
}

impl std::fmt::Debug for UnitCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitCommands")
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

impl UnitCommands {
    /// Commands for `unit`.
    pub fn new(store: Arc<dyn EventStore>, unit: UnitId) -> Self {
        Self {
            runner: Runner::new(store),
            unit,
            peer: None,
            node: None,
            credential: None,
        }
    }

    /// Records where the commands come from: the device's address, the gateway node, and
    /// the device token's id.
    pub fn with_origin(
        mut self,
        peer: Option<std::net::IpAddr>,
        node: Option<String>,
        token_id: Option<Uuid>,
    ) -> Self {
        self.peer = peer.map(|p| p.to_string());
        self.node = node;
        self.credential = token_id.map(|id| format!("device-token:{id}"));
        self
    }

    /// The metadata that records what the device was shown: the same actor and origin as
    /// its commands.
    pub fn audit_metadata(&self) -> EventMetadata {
        self.metadata(Utc::now())
    }

    fn metadata(&self, at: DateTime<Utc>) -> EventMetadata {
        EventMetadata {
            actor: Some(format!("unit:{}", self.unit)),
            source: Some("field".into()),
            correlation_id: Some(Uuid::now_v7()),
            causation_id: None,
            occurred_at: Some(at),
            peer: self.peer.clone(),
            node: self.node.clone(),
            credential: self.credential.clone(),
            role: Some("device".into()),
            agency: None,
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
                return self
                    .run(&key, message, at, Some(incident_id), |s| {
                        muster_core::combined::incident_command(s, incident_id, command.clone())
                    })
                    .await;
            }
            M::Hello { .. } | M::Ack { .. } | M::Ping { .. } => {
                return Err(CommandError::new(
                    ErrorCode::InvalidMessage,
                    "not a command",
                ));
            }
        };
        let unit = self.unit;
        self.run(&key, message, at, None, |s| {
            muster_core::combined::unit_command(s, unit, command.clone())
        })
        .await
    }

    /// The id of the incident a field report with this key creates: the same on every retry.
    pub fn field_incident_id(&self, key: &IdempotencyKey) -> IncidentId {
        let name = format!("{}\u{0}{}", self.unit, key.as_str());
        IncidentId::from_uuid(Uuid::new_v5(&FIELD_INCIDENT_NAMESPACE, name.as_bytes()))
    }

    /// Runs one decision through the runner in the device's scope, fingerprinted by the
    /// message, after checking the time the device claims.
    async fn run(
        &mut self,
        key: &IdempotencyKey,
        message: &ClientMessage,
        at: DateTime<Utc>,
        incident: Option<IncidentId>,
        mut decide: impl FnMut(&muster_app::Snapshot) -> Result<Changes, Step>,
    ) -> Result<Done, CommandError> {
        muster_core::value::check_source_time(at, Utc::now())
            .map_err(|e| CommandError::new(ErrorCode::Refused, format!("at {}", e.reason)))?;
        let content = serde_json::to_value(message).map_err(CommandError::internal)?;
        let command = Command {
            key: CommandKey::new(format!("unit:{}", self.unit), key.clone()),
            fingerprint: Fingerprint::of("device command", &content),
            metadata: self.metadata(at),
        };
        let executed = self
            .runner
            .execute(&command, |s| {
                let changes = decide(s)?;
                let outcome = if changes.is_empty() {
                    Outcome::Unchanged
                } else {
                    Outcome::Applied
                };
                Ok((changes, Done { outcome, incident }))
            })
            .await?;
        for refusal in &executed.skipped {
            tracing::info!(unit = %self.unit, "effect on another aggregate not applied: {refusal}");
        }
        Ok(if executed.replayed {
            Done {
                outcome: Outcome::Duplicate,
                ..executed.answer
            }
        } else {
            executed.answer
        })
    }
}
