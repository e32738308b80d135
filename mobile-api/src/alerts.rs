//! The acknowledgement watchdog: a task that its crew has not acknowledged (nor declined nor
//! completed) within the configured time raises a [`TaskAckOverdue`] event for the operators,
//! so that the dispatcher can re-plan.
//!
//! The watchdog reads `$all` from the start, so tasks assigned while no gateway ran are
//! watched too. Each alert has an id derived from its task and data fixed by the log (the
//! deadline, not the moment the timer fired), so any number of gateway nodes, and restarts,
//! append it once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use muster_core::event;
use muster_core::unit::UnitEvent;
use muster_core::{AggregateRef, IncidentId, TaskId, UnitId};
use muster_store::{
    EventMetadata, EventStore, EventStoreExt, ExpectedState, NewEvent, StreamName, SubscribeFrom,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

/// Stream category of the operator alerts raised by the gateway: `alert-<task id>`.
pub const ALERT_STREAM_PREFIX: &str = "alert-";

/// Event type of an overdue acknowledgement.
pub const TASK_ACK_OVERDUE: &str = "TaskAckOverdue";

/// Namespace of alert event ids.
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_616c_6572_7400_0000_0001);

/// A task's crew did not acknowledge it in time. Stored in `alert-<task id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAckOverdue {
    /// The task.
    pub task: TaskId,
    /// Its incident.
    pub incident: IncidentId,
    /// The unit.
    pub unit: UnitId,
    /// When the task was assigned (committed).
    pub assigned_at: DateTime<Utc>,
    /// The time allowed.
    pub timeout_secs: u64,
    /// When it became overdue.
    pub at: DateTime<Utc>,
}

/// The stream of a task's alerts.
pub fn alert_stream(task: TaskId) -> StreamName {
    StreamName::parse(format!("{ALERT_STREAM_PREFIX}{task}"))
        .unwrap_or_else(|_| unreachable!("a uuid makes a valid stream name"))
}

/// The event for an overdue task, always the same for the same task and timeout.
pub fn overdue_event(alert: &TaskAckOverdue) -> NewEvent {
    let id = Uuid::new_v5(&ALERT_NAMESPACE, alert.task.as_uuid().as_bytes());
    NewEvent::json(id, TASK_ACK_OVERDUE, 1, alert)
        .unwrap_or_else(|e| unreachable!("an alert is small JSON: {e}"))
        .with_metadata(EventMetadata {
            actor: Some("mobile-gateway".into()),
            source: Some("field".into()),
            correlation_id: None,
            causation_id: None,
            occurred_at: Some(alert.at),
        })
}

struct Pending {
    incident: IncidentId,
    unit: UnitId,
    assigned_at: DateTime<Utc>,
    deadline: Instant,
}

/// Watches every task until it is acknowledged, declined or completed.
#[derive(Clone)]
pub struct AckWatchdog {
    store: Arc<dyn EventStore>,
    timeout: Duration,
}

impl std::fmt::Debug for AckWatchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckWatchdog")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AckWatchdog {
    /// A watchdog raising alerts after `timeout`.
    pub fn new(store: Arc<dyn EventStore>, timeout: Duration) -> Self {
        Self { store, timeout }
    }

    /// Runs until the store closes or `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut subscription = self.store.subscribe_all(SubscribeFrom::Start);
        let mut pending: HashMap<TaskId, Pending> = HashMap::new();
        let mut timers: BTreeSet<(Instant, TaskId)> = BTreeSet::new();
        let timeout = chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::MAX);
        loop {
            let next_deadline = timers.first().map(|(d, _)| *d);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = sleep_until(next_deadline) => {
                    let Some((_, task)) = timers.pop_first() else { continue };
                    let Some(p) = pending.remove(&task) else { continue };
                    let alert = TaskAckOverdue {
                        task,
                        incident: p.incident,
                        unit: p.unit,
                        assigned_at: p.assigned_at,
                        timeout_secs: self.timeout.as_secs(),
                        at: p.assigned_at + timeout,
                    };
                    let stream = alert_stream(task);
                    if let Err(e) = self
                        .store
                        .append(&stream, ExpectedState::Any, vec![overdue_event(&alert)])
                        .await
                    {
                        tracing::error!(error = %e, %task, "could not record an overdue acknowledgement");
                    } else {
                        tracing::info!(%task, unit = %p.unit, "task not acknowledged in time");
                    }
                }
                next = subscription.next() => {
                    let recorded = match next {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(error = %e, "the acknowledgement watchdog's subscription ended");
                            return;
                        }
                    };
                    let Some(AggregateRef::Unit(unit)) = AggregateRef::from_stream(&recorded.stream) else {
                        continue;
                    };
                    let Ok(event) = event::decode::<UnitEvent>(&recorded) else { continue };
                    match event {
                        UnitEvent::TaskAssigned { task, incident, .. } => {
                            let assigned_at = recorded.recorded_at;
                            let elapsed = (Utc::now() - assigned_at).to_std().unwrap_or_default();
                            let deadline = Instant::now() + self.timeout.saturating_sub(elapsed);
                            pending.insert(task, Pending { incident, unit, assigned_at, deadline });
                            timers.insert((deadline, task));
                        }
                        UnitEvent::TaskAcknowledged { task, .. }
                        | UnitEvent::TaskDeclined { task, .. }
                        | UnitEvent::TaskCompleted { task, .. } => {
                            if let Some(p) = pending.remove(&task) {
                                timers.remove(&(p.deadline, task));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
