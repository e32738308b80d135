//! The acknowledgement watchdog: a task that its crew has not acknowledged (nor declined nor
//! completed) within the configured time raises `TaskAckOverdue` (core's
//! [`muster_core::alert::AlertEvent`]) in the task's stream `alert-<task id>`, so that the
//! dispatcher can re-plan.
//!
//! The watchdog reads `$all` from the start, so tasks assigned while no gateway ran are
//! watched too. Each alert goes through the command runner with an idempotency key derived
//! from its task, decided against the unit's stream (a task acknowledged meanwhile raises
//! nothing), with data fixed by the log (the deadline, not the moment the timer fired): any
//! number of gateway nodes, and restarts, append it once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use muster_app::{Command, CommandKey, Fingerprint, Runner};
use muster_core::alert::AlertCommand;
use muster_core::event;
use muster_core::unit::UnitEvent;
use muster_core::value::IdempotencyKey;
use muster_core::{AggregateRef, IncidentId, TaskId, UnitId};
use muster_store::{EventMetadata, EventStore, EventStoreExt, SubscribeFrom};
use tokio::time::Instant;

/// How soon a node that does not lead the watchdog looks again at a task that is due.
const LEADER_RECHECK: Duration = Duration::from_secs(1);

/// Event type of an overdue acknowledgement.
pub const TASK_ACK_OVERDUE: &str = "TaskAckOverdue";

/// The command that raises `task`'s overdue alert: the same on every node, so the alert is
/// appended once.
pub fn overdue_command(task: TaskId, at: DateTime<Utc>) -> Command {
    let key = IdempotencyKey::try_from(format!("ack-overdue-{task}"))
        .expect("a UUID with a prefix is a valid key");
    Command {
        key: CommandKey::new("mobile-gateway", key),
        fingerprint: Fingerprint::of("raise ack overdue", &serde_json::json!({ "task": task })),
        metadata: EventMetadata {
            actor: Some("mobile-gateway".into()),
            source: Some("system".into()),
            correlation_id: None,
            causation_id: None,
            occurred_at: Some(at),
            ..EventMetadata::default()
        },
    }
}

/// Raises the overdue alert of a task through `runner`; nothing when the unit no longer holds
/// the task unacknowledged. Answers whether an alert was appended now.
pub async fn raise_overdue(
    runner: &Runner,
    command: AlertCommand,
) -> Result<bool, muster_app::CommandError> {
    let AlertCommand::RaiseAckOverdue {
        task, assigned_at, ..
    } = &command;
    let executed = runner
        .execute(&overdue_command(*task, *assigned_at), |s| {
            let changes = muster_core::combined::task_ack_overdue(s, command.clone())?;
            let raised = !changes.is_empty();
            Ok((changes, raised))
        })
        .await?;
    Ok(executed.answer && !executed.replayed)
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
    runner: Runner,
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
        Self {
            runner: Runner::new(store.clone()),
            store,
            timeout,
        }
    }

    /// Runs until the store closes or `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut subscription = self.store.subscribe_all(SubscribeFrom::Start);
        // Every node keeps the timers; the node that leads the watchdog raises the alerts.
        let leader = self.store.leadership("ack-watchdog");
        let mut pending: HashMap<TaskId, Pending> = HashMap::new();
        let mut timers: BTreeSet<(Instant, TaskId)> = BTreeSet::new();
        loop {
            let next_deadline = timers.first().map(|(d, _)| *d);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = sleep_until(next_deadline) => {
                    let Some((_, task)) = timers.pop_first() else { continue };
                    if !*leader.borrow() {
                        // Another node leads: look again later, in case it goes.
                        if pending.contains_key(&task) {
                            timers.insert((Instant::now() + LEADER_RECHECK, task));
                        }
                        continue;
                    }
                    let Some(p) = pending.remove(&task) else { continue };
                    let command = AlertCommand::RaiseAckOverdue {
                        task,
                        incident: p.incident,
                        unit: p.unit,
                        assigned_at: p.assigned_at,
                        timeout_secs: self.timeout.as_secs(),
                    };
                    match raise_overdue(&self.runner, command).await {
                        Ok(true) => tracing::info!(%task, unit = %p.unit, "task not acknowledged in time"),
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, %task, "could not record an overdue acknowledgement"),
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
