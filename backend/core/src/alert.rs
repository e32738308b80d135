//! Operator alerts about a task, in the stream `alert-<task id>`: a task its crew has not
//! acknowledged (nor declined nor completed) within the allowed time raises `TaskAckOverdue`,
//! so the dispatcher re-plans. Decided against the unit's stream
//! ([`crate::combined::task_ack_overdue`]): a task acknowledged meanwhile raises nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal};
use crate::ids::{IncidentId, TaskId, UnitId};

/// What happened to a task's alerts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AlertEvent {
    /// The task's crew did not acknowledge it in time.
    TaskAckOverdue {
        /// The task (also in the stream name).
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// The unit.
        unit: UnitId,
        /// When the task was assigned (committed).
        assigned_at: DateTime<Utc>,
        /// The time allowed.
        timeout_secs: u64,
        /// When it became overdue.
        at: DateTime<Utc>,
    },
}

/// What the acknowledgement watchdog asks of a task's alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlertCommand {
    /// Raise the overdue alert; raising it again changes nothing.
    RaiseAckOverdue {
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// The unit.
        unit: UnitId,
        /// When it was assigned.
        assigned_at: DateTime<Utc>,
        /// The time allowed.
        timeout_secs: u64,
    },
}

/// A task's alerts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    /// When the overdue alert was raised, if it was.
    pub ack_overdue_at: Option<DateTime<Utc>>,
}

impl Aggregate for AlertState {
    type Command = AlertCommand;
    type Event = AlertEvent;

    fn decide(&self, command: AlertCommand) -> Result<Vec<AlertEvent>, Refusal> {
        let AlertCommand::RaiseAckOverdue {
            task,
            incident,
            unit,
            assigned_at,
            timeout_secs,
        } = command;
        if self.ack_overdue_at.is_some() {
            return Ok(Vec::new());
        }
        let allowed = i64::try_from(timeout_secs)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or_else(|| Refusal::invalid("the acknowledgement timeout is too long"))?;
        // The deadline is fixed by the log, not by when a timer fired: every node and every
        // restart raises the same alert.
        let at = assigned_at
            .checked_add_signed(allowed)
            .ok_or_else(|| Refusal::invalid("the acknowledgement deadline is out of range"))?;
        Ok(vec![AlertEvent::TaskAckOverdue {
            task,
            incident,
            unit,
            assigned_at,
            timeout_secs,
            at,
        }])
    }

    fn apply(&mut self, event: &AlertEvent) {
        let AlertEvent::TaskAckOverdue { at, .. } = event;
        self.ack_overdue_at.get_or_insert(*at);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn an_alert_is_raised_once_at_its_deadline() {
        let assigned_at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        let raise = || AlertCommand::RaiseAckOverdue {
            task: TaskId::from_uuid(Uuid::from_u128(3)),
            incident: IncidentId::from_uuid(Uuid::from_u128(1)),
            unit: UnitId::from_uuid(Uuid::from_u128(2)),
            assigned_at,
            timeout_secs: 90,
        };
        let (raised, events) = AlertState::default().execute(raise()).unwrap();
        let [AlertEvent::TaskAckOverdue { at, .. }] = events.as_slice() else {
            panic!("one alert: {events:?}");
        };
        assert_eq!(*at, assigned_at + chrono::Duration::seconds(90));
        assert_eq!(raised.decide(raise()).unwrap(), vec![]);
        let too_long = AlertState::default()
            .decide(AlertCommand::RaiseAckOverdue {
                task: TaskId::from_uuid(Uuid::from_u128(3)),
                incident: IncidentId::from_uuid(Uuid::from_u128(1)),
                unit: UnitId::from_uuid(Uuid::from_u128(2)),
                assigned_at,
                timeout_secs: u64::MAX,
            })
            .unwrap_err();
        assert_eq!(too_long.kind, crate::RefusalKind::Invalid);
    }
}
