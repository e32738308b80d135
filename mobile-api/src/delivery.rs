//! What a device is sent, derived from the unit's stream alone, so every gateway node gives
//! the same messages and the same sequence numbers.
//!
//! The sequence number of a delivery is the unit stream revision of its event plus one:
//! `0` means "nothing seen", and a device that saw `seq` resumes with the event at revision
//! `seq`. Only task events are delivered (assigned, acknowledged, declined, completed);
//! status and position events advance the revision too, so sequence numbers grow but have
//! holes.
//!
//! The [`Hub`] reads `$all` once per gateway and hands each unit's task events to that unit's
//! connections, each through a bounded queue ([`crate::limits::OUTBOUND_QUEUE`]); a
//! connection whose queue is full is dropped from the hub and closed, and resumes later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use muster_core::device::{DeviceEvent, DeviceState};
use muster_core::event;
use muster_core::incident::{IncidentEvent, IncidentState};
use muster_core::unit::{UnitEvent, UnitState};
use muster_core::{Aggregate, AggregateRef, IncidentId, UnitId};
use muster_store::{
    AllSubscription, Direction, EventStore, EventStoreExt, ReadFrom, RecordedEvent, StoreError,
    StreamName, SubscribeFrom,
};
use tokio::sync::mpsc;

use crate::limits::OUTBOUND_QUEUE;
use crate::protocol::{ServerMessage, Snapshot, TaskState, TaskView};

/// Events read per page in a catch-up.
const PAGE: usize = 1024;

/// The unit event types that are delivered to devices.
pub const DELIVERED_TYPES: &[&str] = &[
    "TaskAssigned",
    "TaskAcknowledged",
    "TaskDeclined",
    "TaskCompleted",
];

/// The device event that ends the sessions opened with a token. It reaches the unit's
/// connections through the hub like a task event, but is never sent to the device.
pub const REVOKED_TYPE: &str = "DeviceTokenRevoked";

/// The token id a revocation names, when `recorded` is one.
pub fn revoked_token(recorded: &RecordedEvent) -> Option<uuid::Uuid> {
    if recorded.event_type != REVOKED_TYPE {
        return None;
    }
    match event::decode::<DeviceEvent>(recorded) {
        Ok(DeviceEvent::DeviceTokenRevoked { token_id, .. }) => Some(token_id),
        _ => None,
    }
}

/// The unit's device enrolment as the log has it now: the tokens issued and revoked.
pub async fn device_state(store: &dyn EventStore, unit: UnitId) -> Result<DeviceState, StoreError> {
    Ok(fold_stream::<DeviceState>(store, &unit.device_stream())
        .await?
        .1)
}

/// Folds a whole stream into its aggregate (nothing for a stream that does not exist): the
/// next revision and the state. Events this build cannot decode are passed over.
async fn fold_stream<A>(store: &dyn EventStore, stream: &StreamName) -> Result<(u64, A), StoreError>
where
    A: Aggregate,
    A::Event: event::EventSchema,
{
    let mut state = A::default();
    let mut next = 0;
    loop {
        let page = match store
            .read_stream(stream, Direction::Forwards, ReadFrom::Revision(next), PAGE)
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for recorded in &page {
            if let Ok(event) = event::decode::<A::Event>(recorded) {
                state.apply(&event);
            }
            next = recorded.revision + 1;
        }
        if page.len() < PAGE {
            return Ok((next, state));
        }
    }
}

/// The sequence number of the delivery of this event.
pub fn seq_of(recorded: &RecordedEvent) -> u64 {
    recorded.revision + 1
}

/// The incident details a task carries: read from the incident's stream, left out when the
/// incident is not known.
pub async fn incident_details(
    store: &dyn EventStore,
    incident: IncidentId,
) -> Option<IncidentState> {
    let stream = incident.stream_name();
    let page = store
        .read_stream(&stream, Direction::Forwards, ReadFrom::Start, PAGE)
        .await
        .ok()?;
    let events: Vec<IncidentEvent> = page
        .iter()
        .filter_map(|r| event::decode::<IncidentEvent>(r).ok())
        .collect();
    Some(IncidentState::replay(&events))
}

async fn task_view(
    store: &dyn EventStore,
    task: muster_core::TaskId,
    incident: IncidentId,
    assigned_at: chrono::DateTime<chrono::Utc>,
) -> TaskView {
    let details = incident_details(store, incident)
        .await
        .and_then(|s| s.incident);
    // The call-back number in the clear, unless it was erased (or cannot be opened now:
    // then the task goes without it rather than not at all).
    let caller = match &details {
        Some(i) => match muster_app::audit::caller_in_clear(store, i).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, %incident, "the caller details could not be opened");
                None
            }
        },
        None => None,
    };
    TaskView {
        task,
        incident,
        assigned_at,
        incident_type: details.as_ref().map(|i| i.incident_type),
        priority: details.as_ref().map(|i| i.priority),
        location: details.as_ref().map(|i| i.location),
        call_back: caller
            .as_ref()
            .and_then(|c| c.call_back.as_ref())
            .map(|p| p.expose().to_owned()),
    }
}

/// The message for a stored unit event, if it is one devices are sent.
pub async fn message_for(
    store: &dyn EventStore,
    recorded: &RecordedEvent,
) -> Result<Option<ServerMessage>, event::DecodeError> {
    if !DELIVERED_TYPES.contains(&recorded.event_type.as_str()) {
        return Ok(None);
    }
    let seq = seq_of(recorded);
    let update = |task, incident, state, at| {
        Some(ServerMessage::TaskUpdate {
            seq,
            task,
            incident,
            state,
            at,
        })
    };
    Ok(match event::decode::<UnitEvent>(recorded)? {
        UnitEvent::TaskAssigned { task, incident, at } => Some(ServerMessage::Task {
            seq,
            task: task_view(store, task, incident, at).await,
        }),
        UnitEvent::TaskAcknowledged { task, incident, at } => {
            update(task, incident, TaskState::Acknowledged, at)
        }
        UnitEvent::TaskDeclined {
            task, incident, at, ..
        } => update(task, incident, TaskState::Declined, at),
        UnitEvent::TaskCompleted { task, incident, at } => {
            update(task, incident, TaskState::Completed, at)
        }
        _ => None,
    })
}

/// The unit as it is now, and the sequence number that snapshot is at.
pub async fn snapshot(store: &dyn EventStore, unit: UnitId) -> Result<(u64, Snapshot), StoreError> {
    let (next, state) = fold_stream::<UnitState>(store, &unit.stream_name()).await?;
    let unit = state.unit.as_ref();
    let active = unit.and_then(|u| u.active_task);
    let active_task = match active {
        Some(a) => Some(task_view(store, a.task, a.incident, a.assigned_at).await),
        None => None,
    };
    Ok((
        next,
        Snapshot {
            status: unit.map(|u| u.status),
            active_task,
            acknowledged: active.is_some_and(|a| a.acknowledged),
        },
    ))
}

/// Where a connection starts.
#[derive(Debug)]
pub enum Start {
    /// Replay these unit events (all of the stream from the asked revision on, task events
    /// or not); the next sequence number after them is `next`.
    Replay {
        /// The events.
        events: Vec<RecordedEvent>,
        /// The sequence number after the last event read.
        next: u64,
    },
    /// The asked position is not available (or none was given): send this snapshot.
    Resync {
        /// The sequence number the snapshot is at.
        seq: u64,
        /// The unit now.
        snapshot: Snapshot,
    },
}

/// Decides how to start a connection whose device saw everything before `resume_after`
/// (`None`: a first connection), and reads what it missed.
///
/// A resync is sent when the device gave no position, when it claims a position past the end
/// of the stream (the log it saw is not this one), or when the events it missed are no longer
/// readable (the stream was truncated).
pub async fn start(
    store: &dyn EventStore,
    unit: UnitId,
    resume_after: Option<u64>,
) -> Result<Start, StoreError> {
    let resync = || async {
        let (seq, snapshot) = snapshot(store, unit).await?;
        Ok::<_, StoreError>(Start::Resync { seq, snapshot })
    };
    let Some(from) = resume_after else {
        return resync().await;
    };
    let stream = unit.stream_name();
    let end = store.stream_revision(&stream).await?.map_or(0, |r| r + 1);
    if from > end {
        return resync().await;
    }
    let mut events = Vec::new();
    let mut next = from;
    loop {
        let page = match store
            .read_stream(&stream, Direction::Forwards, ReadFrom::Revision(next), PAGE)
            .await
        {
            Ok(page) => page,
            Err(StoreError::StreamNotFound(_)) if from == 0 => Vec::new(),
            Err(StoreError::StreamNotFound(_)) => return resync().await,
            Err(e) => return Err(e),
        };
        if let Some(first) = page.first()
            && first.revision != next
        {
            return resync().await;
        }
        let full = page.len() == PAGE;
        for recorded in page {
            next = recorded.revision + 1;
            if DELIVERED_TYPES.contains(&recorded.event_type.as_str()) {
                events.push(recorded);
            }
        }
        if !full {
            break;
        }
    }
    if next < end {
        return resync().await;
    }
    Ok(Start::Replay { events, next })
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<RecordedEvent>>,
}

/// Reads `$all` once and hands each unit's task events to that unit's connections.
pub struct Hub {
    subscribers: Mutex<HashMap<UnitId, Vec<Subscriber>>>,
    next_id: AtomicU64,
    dropped_slow: AtomicU64,
    stopped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("dropped_slow", &self.dropped_slow.load(Ordering::Relaxed))
            .finish()
    }
}

/// A connection's place in the hub; leaves the hub when dropped.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<Hub>,
    unit: UnitId,
    id: u64,
    /// The unit's task events from the moment of registration on. Ends when the connection
    /// was dropped for being too slow, or when the hub stops.
    pub events: mpsc::Receiver<Arc<RecordedEvent>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.unit, self.id);
    }
}

impl Hub {
    /// A hub and the `$all` subscription it will read, from the store's current end. Create
    /// it before accepting connections.
    pub fn new(store: &Arc<dyn EventStore>) -> (Arc<Self>, AllSubscription) {
        let subscription = store.subscribe_all(SubscribeFrom::End);
        (
            Arc::new(Self {
                subscribers: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                dropped_slow: AtomicU64::new(0),
                stopped: std::sync::atomic::AtomicBool::new(false),
            }),
            subscription,
        )
    }

    /// Whether the hub stopped reading (shutdown, or the store closed or failed).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Connections dropped because their queue was full.
    pub fn dropped_slow(&self) -> u64 {
        self.dropped_slow.load(Ordering::Relaxed)
    }

    /// Registers a connection of `unit`: task events committed after this call reach
    /// [`Registration::events`].
    pub fn register(self: &Arc<Self>, unit: UnitId) -> Registration {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(unit)
            .or_default()
            .push(Subscriber { id, tx });
        Registration {
            hub: self.clone(),
            unit,
            id,
            events: rx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UnitId, Vec<Subscriber>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remove(&self, unit: UnitId, id: u64) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(&unit) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                map.remove(&unit);
            }
        }
    }

    /// Hands one stored event to the connections of its unit.
    pub fn dispatch(&self, recorded: RecordedEvent) {
        let unit = match AggregateRef::from_stream(&recorded.stream) {
            Some(AggregateRef::Unit(unit))
                if DELIVERED_TYPES.contains(&recorded.event_type.as_str()) =>
            {
                unit
            }
            Some(AggregateRef::Device(unit)) if recorded.event_type == REVOKED_TYPE => unit,
            _ => return,
        };
        let mut map = self.lock();
        let Some(list) = map.get_mut(&unit) else {
            return;
        };
        let recorded = Arc::new(recorded);
        list.retain(|s| match s.tx.try_send(recorded.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped_slow.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if list.is_empty() {
            map.remove(&unit);
        }
    }

    /// Reads `$all` and dispatches until the store closes or `shutdown` resolves.
    pub async fn run(
        self: Arc<Self>,
        mut subscription: AllSubscription,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                next = subscription.next() => match next {
                    Ok(recorded) => self.dispatch(recorded),
                    Err(e) => {
                        tracing::error!(error = %e, "the gateway's $all subscription ended");
                        break;
                    }
                },
            }
        }
        self.stopped.store(true, Ordering::SeqCst);
        self.lock().clear();
    }
}
