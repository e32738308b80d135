//! The shape every aggregate shares: `decide` turns a command into events or a [`Refusal`],
//! `apply` folds an event into the state and cannot fail.

use std::fmt;

use crate::ids::{IncidentId, TaskId};

/// Why a command was refused. The `reason` is a sentence for the operator; the `kind` is for
/// the caller to choose an answer (HTTP 404, 409 or 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{reason}")]
pub struct Refusal {
    /// What sort of refusal, with the data a caller may need.
    #[serde(flatten)]
    pub kind: RefusalKind,
    /// What is wrong, in words. Never holds personal data.
    pub reason: String,
}

/// The sort of a [`Refusal`]. Serializes as `{"kind": "unit_busy", "incident": .., "task": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefusalKind {
    /// The aggregate does not exist yet (HTTP 404).
    NotFound,
    /// The aggregate exists already (HTTP 409).
    AlreadyExists,
    /// The incident is closed or merged; ended incidents stay ended (HTTP 409).
    Ended,
    /// The unit already holds an active task on another incident (HTTP 409). Names the
    /// incident and task that hold it.
    UnitBusy {
        /// The incident the unit is on.
        incident: IncidentId,
        /// The task that holds it.
        task: TaskId,
    },
    /// The change is not allowed from the current state (HTTP 409 or 422).
    InvalidTransition,
    /// A dispatch rule would send a unit the incident's run card no longer needs: others of
    /// its kind are on it already (HTTP 409). An operator may still send it.
    NotNeeded,
    /// The command contradicts itself or the rules, whatever the state (HTTP 422).
    Invalid,
}

impl RefusalKind {
    /// The stable machine-readable code of this kind (`not_found`, `unit_busy`, …), the
    /// `error.code` of an HTTP answer.
    pub fn code(&self) -> &'static str {
        match self {
            RefusalKind::NotFound => "not_found",
            RefusalKind::AlreadyExists => "already_exists",
            RefusalKind::Ended => "ended",
            RefusalKind::UnitBusy { .. } => "unit_busy",
            RefusalKind::InvalidTransition => "invalid_transition",
            RefusalKind::NotNeeded => "not_needed",
            RefusalKind::Invalid => "invalid",
        }
    }
}

impl Refusal {
    /// A refusal of this kind with this reason.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }

    /// Not found.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::NotFound, reason)
    }

    /// An invalid transition.
    pub fn transition(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::InvalidTransition, reason)
    }

    /// Whether the refusal is about the current state (a conflict: re-reading and trying
    /// something else may succeed) rather than about the command itself.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.kind,
            RefusalKind::AlreadyExists
                | RefusalKind::Ended
                | RefusalKind::UnitBusy { .. }
                | RefusalKind::InvalidTransition
        )
    }

    /// An invalid command.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new(RefusalKind::Invalid, reason)
    }
}

/// An event-sourced aggregate: its state is the fold of its events.
///
/// The default value is the state before the first event (the stream does not exist).
pub trait Aggregate: Default + Clone + fmt::Debug + PartialEq {
    /// What a caller asks for.
    type Command: fmt::Debug;
    /// What happened.
    type Event: Clone + fmt::Debug + PartialEq;

    /// Decides what a command means given the state: the events to append, possibly none
    /// (the command changes nothing, such as a repeated acknowledgement), or a refusal.
    /// Pure: no clock, no I/O, no randomness; times and new ids come in the command.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Refusal>;

    /// Folds one event into the state. Never fails: an event is a fact; one that does not fit
    /// the state (which `decide` never produces) is ignored.
    fn apply(&mut self, event: &Self::Event);

    /// The state after these events, from the default state.
    fn replay<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Decides, then applies the events to a copy of the state: the state after the command.
    fn execute(&self, command: Self::Command) -> Result<(Self, Vec<Self::Event>), Refusal> {
        let events = self.decide(command)?;
        let mut next = self.clone();
        for event in &events {
            next.apply(event);
        }
        Ok((next, events))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn refusals_serialize_flat_with_their_data() {
        let incident = IncidentId::from_uuid(Uuid::from_u128(1));
        let task = TaskId::from_uuid(Uuid::from_u128(2));
        let busy = Refusal::new(RefusalKind::UnitBusy { incident, task }, "unit E1 is busy");
        let json = serde_json::to_value(&busy).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "unit_busy",
                "incident": incident.to_string(),
                "task": task.to_string(),
                "reason": "unit E1 is busy",
            })
        );
        assert!(busy.is_conflict());
        assert!(!Refusal::invalid("bad").is_conflict());
        assert!(!Refusal::not_found("gone").is_conflict());
        let json = serde_json::to_value(Refusal::not_found("gone")).unwrap();
        assert_eq!(json["kind"], "not_found");
    }
}
