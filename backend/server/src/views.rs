//! The live views: incident board, unit board, per-area counts and GeoJSON layers, all one
//! projection of `$all`.
//!
//! [`ViewState`] is the fold of the log: [`ViewState::apply`] takes one stored event. The
//! [`Views`] handle shares it between the projector task (the only writer, fed by a `$all`
//! subscription) and the request handlers and wall-display feeds (readers). Each change
//! becomes a [`Delta`] with its log position, kept in a bounded backlog so that a display
//! that reconnects with its last position gets what it missed instead of a new snapshot.
//!
//! The rows changed since the last save and the checkpoint (the last position applied) are
//! saved together, in one transaction, to `views.redb` in the data directory ([`ViewDb`]),
//! at most every [`FLUSH_INTERVAL`] and at shutdown; a restart loads them and resumes the
//! subscription after the checkpoint. `muster projections rebuild` folds the whole log again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use muster_core::event::DomainEvent;
use muster_core::incident::{IncidentEvent, IncidentStatus, ReportSource, TimePoint};
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::{
    Agency, CallSign, Capability, Disposition, IncidentSource, IncidentType, LatLon, Priority,
    StationCode, UnitKind,
};
use muster_core::{DecodeError, IncidentId, TaskId, UnitId};
use muster_store::{
    EmbeddedOptions, EmbeddedStore, EventStore, EventStoreExt, Position, RecordedEvent,
    SubscribeFrom,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use crate::areas::{AreaRef, Areas};

/// How often the projector saves the views and their checkpoint while events arrive.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many saves one is synced to disk (the others are atomic but not synced, so
/// they do not compete with the event store's commits for the disk); the save at shutdown
/// is always synced.
pub const DURABLE_SAVE_EVERY: u64 = 30;
/// How many deltas the backlog keeps for displays that reconnect.
pub const DELTA_BACKLOG: usize = 65_536;
/// Deltas queued per connected display before it is sent a fresh snapshot instead.
pub const FEED_QUEUE: usize = 4096;
/// Events the projector applies under one lock.
const APPLY_BATCH: usize = 1024;

/// How far a unit has got on an incident.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Dispatched.
    Dispatched,
    /// Moving.
    EnRoute,
    /// Arrived.
    OnScene,
    /// Left.
    Cleared,
}

/// One incident on the board. Holds no personal data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentRow {
    /// Id.
    pub id: IncidentId,
    /// Where it is in its life.
    pub status: IncidentStatus,
    /// Type.
    pub incident_type: IncidentType,
    /// Priority.
    pub priority: Priority,
    /// Where.
    pub location: LatLon,
    /// The area of the location.
    pub area: AreaRef,
    /// Where the report came from.
    pub source: IncidentSource,
    /// Whether type and priority were confirmed.
    pub triaged: bool,
    /// When it was entered.
    pub reported_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Every unit that had a task on it, with how far it got.
    pub units: BTreeMap<UnitId, Progress>,
    /// Notes added.
    pub notes: u32,
    /// The incident it was merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<IncidentId>,
    /// How it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Log position of the last event that changed it.
    #[schema(value_type = u64)]
    pub position: Position,
}

impl IncidentRow {
    fn derive_status(&mut self) {
        if self.disposition.is_some() {
            self.status = IncidentStatus::Closed;
            return;
        }
        if self.merged_into.is_some() {
            self.status = IncidentStatus::Merged;
            return;
        }
        let best = self
            .units
            .values()
            .filter(|p| **p != Progress::Cleared)
            .max();
        self.status = match best {
            Some(Progress::OnScene) => IncidentStatus::UnitsOnScene,
            Some(Progress::EnRoute) => IncidentStatus::UnitsEnRoute,
            Some(Progress::Dispatched) => IncidentStatus::Dispatched,
            _ if self.triaged => IncidentStatus::Triaged,
            _ => IncidentStatus::Reported,
        };
    }

    /// Whether it is neither closed nor merged.
    pub fn is_open(&self) -> bool {
        !matches!(self.status, IncidentStatus::Closed | IncidentStatus::Merged)
    }
}

/// One unit on the board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnitRow {
    /// Id.
    pub id: UnitId,
    /// Radio name.
    pub call_sign: CallSign,
    /// Kind.
    pub kind: UnitKind,
    /// Agency.
    pub agency: Agency,
    /// Home station.
    pub home_station: StationCode,
    /// What it can do.
    pub capabilities: BTreeSet<Capability>,
    /// Status.
    pub status: UnitStatus,
    /// Since when.
    pub status_since: DateTime<Utc>,
    /// The incident of its active task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentId>,
    /// Its active task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// Whether the crew acknowledged the task.
    pub acknowledged: bool,
    /// Last known location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LatLon>,
    /// When that fix was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub located_at: Option<DateTime<Utc>>,
    /// Heading of that fix, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    /// The area of the last location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<AreaRef>,
    /// Log position of the last event that changed it.
    #[schema(value_type = u64)]
    pub position: Position,
}

/// What one event changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// This incident's row.
    Incident(IncidentId),
    /// This unit's row.
    Unit(UnitId),
}

/// The fold of the log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    /// The last position applied (the checkpoint); `None` before the first event.
    pub last: Option<Position>,
    /// Every incident.
    pub incidents: BTreeMap<IncidentId, IncidentRow>,
    /// Every unit.
    pub units: BTreeMap<UnitId, UnitRow>,
}

impl ViewState {
    /// Folds one event of a unit or sensor in.
    fn apply(
        &mut self,
        recorded: &RecordedEvent,
        areas: &Areas,
    ) -> Result<Option<Changed>, DecodeError> {
        self.last = Some(recorded.position);
        let (_, event) = match DomainEvent::from_recorded(recorded) {
            Ok(decoded) => decoded,
            Err(DecodeError::ForeignStream { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let position = recorded.position;
        Ok(match event {
            DomainEvent::Incident(_) => None,
            DomainEvent::Unit(e) => {
                let id = muster_core::AggregateRef::from_stream(&recorded.stream);
                match id {
                    Some(muster_core::AggregateRef::Unit(id)) => {
                        self.apply_unit(id, e, position, recorded.recorded_at, areas)
                    }
                    _ => None,
                }
            }
            DomainEvent::Sensor(_)
            | DomainEvent::RoadClosure(_)
            | DomainEvent::Device(_)
            | DomainEvent::Alert(_)
            | DomainEvent::Audit(_)
            | DomainEvent::ApiToken(_) => None,
        })
    }

    fn apply_incident(
        &mut self,
        event: IncidentEvent,
        position: Position,
        areas: &Areas,
    ) -> Option<Changed> {
        use IncidentEvent as E;
        if let E::IncidentReported {
            incident_id,
            source,
            location,
            incident_type,
            priority,
            at,
            ..
        } = &event
        {
            let row = IncidentRow {
                id: *incident_id,
                status: IncidentStatus::Reported,
                incident_type: *incident_type,
                priority: *priority,
                location: *location,
                area: areas.area_of(*location),
                source: match source {
                    ReportSource::Hotline => IncidentSource::Hotline,
                    ReportSource::Sensor { .. } => IncidentSource::Sensor,
                    ReportSource::Field { .. } => IncidentSource::Field,
                    ReportSource::Citizen => IncidentSource::Citizen,
                },
                triaged: false,
                reported_at: *at,
                updated_at: *at,
                units: BTreeMap::new(),
                notes: 0,
                merged_into: None,
                disposition: None,
                ended_at: None,
                position,
            };
            self.incidents.insert(*incident_id, row);
            return Some(Changed::Incident(*incident_id));
        }
        None
    }

    /// Folds one unit event in. Times a device claims count as no later than the store
    /// recorded them: a clock running ahead can neither hold a unit at an old fix nor date a
    /// status in the future; an older fix goes into the log without moving the unit back.
    fn apply_unit(
        &mut self,
        id: UnitId,
        event: UnitEvent,
        position: Position,
        recorded_at: chrono::DateTime<chrono::Utc>,
        areas: &Areas,
    ) -> Option<Changed> {
        use UnitEvent as E;
        if let E::UnitRegistered {
            unit_id,
            kind,
            call_sign,
            agency,
            home_station,
            capabilities,
            at,
        } = event
        {
            self.units.insert(
                unit_id,
                UnitRow {
                    id: unit_id,
                    call_sign,
                    kind,
                    agency,
                    home_station,
                    capabilities,
                    status: UnitStatus::Available,
                    status_since: at,
                    incident: None,
                    task: None,
                    acknowledged: false,
                    location: None,
                    located_at: None,
                    heading_deg: None,
                    area: None,
                    position,
                },
            );
            return Some(Changed::Unit(unit_id));
        }
        let row = self.units.get_mut(&id)?;
        match event {
            E::UnitRegistered { .. } => {}
            E::UnitCapabilitiesChanged { capabilities, .. } => row.capabilities = capabilities,
            E::UnitStatusChanged { to, at, .. } => {
                row.status = to;
                row.status_since = at.min(recorded_at).max(row.status_since);
            }
            E::UnitPositionReported {
                position: fix,
                heading_deg,
                at,
                ..
            } => {
                let at = at.min(recorded_at);
                if row.located_at.is_some_and(|t| t > at) {
                    return None;
                }
                row.location = Some(fix);
                row.located_at = Some(at);
                row.heading_deg = heading_deg;
                row.area = Some(areas.area_of(fix));
            }
            E::TaskAssigned { task, incident, .. } => {
                row.task = Some(task);
                row.incident = Some(incident);
                row.acknowledged = false;
            }
            E::TaskAcknowledged { .. } => row.acknowledged = true,
            E::TaskDeclined { .. } | E::TaskCompleted { .. } => {
                row.task = None;
                row.incident = None;
                row.acknowledged = false;
            }
        }
        row.position = position;
        Some(Changed::Unit(id))
    }

    /// Folds one event of incident `id` other than its report.
    fn apply_incident_change(
        &mut self,
        id: IncidentId,
        event: IncidentEvent,
        position: Position,
        areas: &Areas,
    ) -> Option<Changed> {
        use IncidentEvent as E;
        let row = self.incidents.get_mut(&id)?;
        let at = match event {
            // The board holds no caller details: nothing to change.
            E::IncidentReported { .. } | E::CallerDetailsErased { .. } => return None,
            E::IncidentTriaged {
                incident_type,
                priority,
                at,
            } => {
                row.incident_type = incident_type;
                row.priority = priority;
                row.triaged = true;
                at
            }
            E::IncidentLocationUpdated { location, at } => {
                row.location = location;
                row.area = areas.area_of(location);
                at
            }
            E::IncidentTypeUpdated { incident_type, at } => {
                row.incident_type = incident_type;
                at
            }
            E::IncidentPriorityUpdated { priority, at } => {
                row.priority = priority;
                at
            }
            E::IncidentNoteAdded { at, .. } => {
                row.notes += 1;
                at
            }
            E::IncidentMerged { into, at } => {
                row.merged_into = Some(into);
                row.ended_at = Some(at);
                at
            }
            E::IncidentDuplicateAbsorbed { at, .. } => at,
            E::TimePointRecorded {
                point, unit, at, ..
            } => {
                let progress = match point {
                    TimePoint::Dispatched => Progress::Dispatched,
                    TimePoint::EnRoute => Progress::EnRoute,
                    TimePoint::OnScene => Progress::OnScene,
                    TimePoint::Cleared => Progress::Cleared,
                    TimePoint::CallReceived | TimePoint::Entry => return None,
                };
                let unit = unit?;
                if progress == Progress::Dispatched {
                    row.units.insert(unit, progress);
                } else {
                    let p = row.units.entry(unit).or_insert(progress);
                    *p = progress;
                }
                at
            }
            E::IncidentClosed { disposition, at } => {
                row.disposition = Some(disposition);
                row.ended_at = Some(at);
                at
            }
        };
        row.updated_at = row.updated_at.max(at);
        row.position = position;
        row.derive_status();
        Some(Changed::Incident(id))
    }

    /// Folds one stored event in. Events of streams that are not Muster's aggregates are
    /// skipped; an event that cannot be decoded is an error (the log holds something this
    /// version cannot read).
    pub fn fold(
        &mut self,
        recorded: &RecordedEvent,
        areas: &Areas,
    ) -> Result<Option<Changed>, DecodeError> {
        if let Some(muster_core::AggregateRef::Incident(id)) =
            muster_core::AggregateRef::from_stream(&recorded.stream)
        {
            self.last = Some(recorded.position);
            let event: IncidentEvent = muster_core::event::decode(recorded)?;
            return Ok(match event {
                e @ IncidentEvent::IncidentReported { .. } => {
                    self.apply_incident(e, recorded.position, areas)
                }
                e => self.apply_incident_change(id, e, recorded.position, areas),
            });
        }
        self.apply(recorded, areas)
    }

    /// The JSON of a delta for this change, or `None` if the row is gone.
    pub fn delta_json(&self, position: Position, changed: Changed) -> Option<String> {
        let value = match changed {
            Changed::Incident(id) => {
                json!({"type": "delta", "position": position, "incident": self.incidents.get(&id)?})
            }
            Changed::Unit(id) => {
                json!({"type": "delta", "position": position, "unit": self.units.get(&id)?})
            }
        };
        Some(value.to_string())
    }

    /// The snapshot message of the wall-display feed.
    pub fn snapshot_json(&self) -> String {
        json!({
            "type": "snapshot",
            "position": self.last,
            "incidents": self.incidents.values().collect::<Vec<_>>(),
            "units": self.units.values().collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// Per-area counts: open incidents by priority, units by status.
    pub fn area_counts(&self) -> AreaCounts {
        #[derive(Default)]
        struct Counts {
            name: String,
            open: u64,
            by_priority: BTreeMap<String, u64>,
            units: BTreeMap<&'static str, u64>,
        }
        let mut areas: BTreeMap<String, Counts> = BTreeMap::new();
        for row in self.incidents.values().filter(|r| r.is_open()) {
            let c = areas.entry(row.area.id.clone()).or_default();
            c.name.clone_from(&row.area.name);
            c.open += 1;
            *c.by_priority.entry(row.priority.to_string()).or_default() += 1;
        }
        for row in self.units.values() {
            let Some(area) = &row.area else { continue };
            let c = areas.entry(area.id.clone()).or_default();
            c.name.clone_from(&area.name);
            *c.units.entry(row.status.code()).or_default() += 1;
        }
        let areas = areas
            .into_iter()
            .map(|(id, c)| AreaCount {
                id,
                name: c.name,
                open_incidents: c.open,
                open_by_priority: c.by_priority,
                units_by_status: c
                    .units
                    .into_iter()
                    .map(|(s, n)| (s.to_owned(), n))
                    .collect(),
            })
            .collect();
        AreaCounts {
            position: self.last.map(|p| p.0),
            areas,
        }
    }
}

/// `GET /api/areas`: per area, open incidents and units by status.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AreaCounts {
    /// The last log position the views applied (none before the first event).
    pub position: Option<u64>,
    /// The areas with an open incident or a unit, by id.
    pub areas: Vec<AreaCount>,
}

/// The counts of one area.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AreaCount {
    /// The area's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Open incidents in it.
    pub open_incidents: u64,
    /// Open incidents by priority (`P1` … `P5`).
    pub open_by_priority: BTreeMap<String, u64>,
    /// Units whose last position is in it, by status.
    pub units_by_status: BTreeMap<String, u64>,
}

/// A change on the wall-display feed: its log position and its message.
#[derive(Clone, Debug)]
pub struct Delta {
    /// The position of the event that made it.
    pub position: Position,
    /// The JSON message.
    pub json: Arc<str>,
}

/// The live state plus the backlog of recent deltas, under one lock.
#[derive(Debug, Default)]
pub struct Live {
    /// The views.
    pub state: ViewState,
    /// The newest deltas, oldest first.
    pub backlog: VecDeque<Delta>,
    /// Every delta of an event after this position is in the backlog (`None`: every delta
    /// since the start of the log).
    pub complete_after: Option<Position>,
    /// Rows changed since the last save.
    dirty: Dirty,
}

/// The rows changed since the last save.
#[derive(Debug, Default)]
struct Dirty {
    incidents: BTreeSet<IncidentId>,
    units: BTreeSet<UnitId>,
}

/// What a save writes: the changed rows and the checkpoint they are consistent with.
#[derive(Debug, Default)]
pub struct Changes {
    /// The checkpoint.
    pub last: Option<Position>,
    /// Changed incident rows.
    pub incidents: Vec<IncidentRow>,
    /// Changed unit rows.
    pub units: Vec<UnitRow>,
}

impl Live {
    /// The deltas after `after`, if the backlog still holds all of them.
    pub fn deltas_after(&self, after: Position) -> Option<Vec<Delta>> {
        let last = self.state.last?;
        if after > last {
            return None;
        }
        if after == last {
            return Some(Vec::new());
        }
        if self.complete_after.is_some_and(|c| after < c) {
            return None;
        }
        Some(
            self.backlog
                .iter()
                .filter(|d| d.position > after)
                .cloned()
                .collect(),
        )
    }
}

/// The shared views: state, checkpoint watch, and the feed of deltas.
#[derive(Clone)]
pub struct Views {
    inner: Arc<Inner>,
}

struct Inner {
    live: RwLock<Live>,
    areas: Areas,
    applied: watch::Sender<Option<Position>>,
    feed: broadcast::Sender<Delta>,
    /// The checkpoint the views started from (`None`: from the start of the log).
    loaded_checkpoint: Option<Position>,
    /// Events applied since the views were made.
    events_applied: AtomicU64,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views")
            .field("last", &*self.inner.applied.borrow())
            .finish()
    }
}

impl Views {
    /// Views starting from a saved state.
    pub fn new(state: ViewState, areas: Areas) -> Self {
        let loaded_checkpoint = state.last;
        let (applied, _) = watch::channel(state.last);
        let (feed, _) = broadcast::channel(FEED_QUEUE);
        Self {
            inner: Arc::new(Inner {
                live: RwLock::new(Live {
                    complete_after: state.last,
                    state,
                    backlog: VecDeque::new(),
                    dirty: Dirty::default(),
                }),
                areas,
                applied,
                feed,
                loaded_checkpoint,
                events_applied: AtomicU64::new(0),
            }),
        }
    }

    /// The areas in use.
    pub fn areas(&self) -> &Areas {
        &self.inner.areas
    }

    /// Reads the live state.
    pub fn read<T>(&self, f: impl FnOnce(&Live) -> T) -> T {
        f(&self.inner.live.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the live state and subscribes to the deltas after it, with no gap between.
    pub fn read_and_subscribe<T>(
        &self,
        f: impl FnOnce(&Live) -> T,
    ) -> (T, broadcast::Receiver<Delta>) {
        let live = self.inner.live.read().unwrap_or_else(|e| e.into_inner());
        let rx = self.inner.feed.subscribe();
        (f(&live), rx)
    }

    /// The checkpoint the views were loaded at (`None` when they started from the start of
    /// the log).
    pub fn loaded_checkpoint(&self) -> Option<Position> {
        self.inner.loaded_checkpoint
    }

    /// How many events the views have applied since they were made (loaded or empty).
    pub fn events_applied(&self) -> u64 {
        self.inner.events_applied.load(Ordering::Relaxed)
    }

    /// The last position applied.
    pub fn last(&self) -> Option<Position> {
        *self.inner.applied.borrow()
    }

    /// How many are waiting for the views to apply a position (see [`Views::wait_for`]).
    pub fn waiting(&self) -> usize {
        self.inner.applied.receiver_count()
    }

    /// Waits until the views have applied `position`, at most `timeout`. Answers whether
    /// they have.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        self.wait_until(|applied| applied >= position, timeout)
            .await
    }

    /// Waits until the views have applied every event committed before `head` (the store's
    /// head when the caller looked), at most `timeout`. Answers whether they have.
    pub async fn wait_for_head(&self, head: Position, timeout: Duration) -> bool {
        head == Position::START
            || self
                .wait_until(|applied| applied.next() >= head, timeout)
                .await
    }

    /// Waits until the last position applied satisfies `reached`, at most `timeout`.
    async fn wait_until(&self, reached: impl Fn(Position) -> bool, timeout: Duration) -> bool {
        let mut rx = self.inner.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| p.is_some_and(&reached)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Applies a batch of stored events, makes their deltas and publishes them.
    pub fn apply_batch(&self, batch: &[RecordedEvent]) -> anyhow::Result<()> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        {
            let mut live = self.inner.live.write().unwrap_or_else(|e| e.into_inner());
            for recorded in batch {
                let changed = live
                    .state
                    .fold(recorded, &self.inner.areas)
                    .with_context(|| format!("applying the event at {}", recorded.position))?;
                let Some(changed) = changed else { continue };
                match changed {
                    Changed::Incident(id) => live.dirty.incidents.insert(id),
                    Changed::Unit(id) => live.dirty.units.insert(id),
                };
                let Some(json) = live.state.delta_json(recorded.position, changed) else {
                    continue;
                };
                let delta = Delta {
                    position: recorded.position,
                    json: json.into(),
                };
                if live.backlog.len() >= DELTA_BACKLOG
                    && let Some(old) = live.backlog.pop_front()
                {
                    live.complete_after = Some(old.position);
                }
                live.backlog.push_back(delta.clone());
                // No receiver is not an error: no display is connected.
                let _ = self.inner.feed.send(delta);
            }
        }
        self.inner
            .events_applied
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.inner.applied.send_replace(Some(last.position));
        Ok(())
    }

    /// Takes the rows changed since the last call, with the checkpoint they go with. Holds
    /// the lock only to copy the changed rows.
    pub fn take_changes(&self) -> Changes {
        let mut live = self.inner.live.write().unwrap_or_else(|e| e.into_inner());
        let dirty = std::mem::take(&mut live.dirty);
        Changes {
            last: live.state.last,
            incidents: dirty
                .incidents
                .iter()
                .filter_map(|id| live.state.incidents.get(id).cloned())
                .collect(),
            units: dirty
                .units
                .iter()
                .filter_map(|id| live.state.units.get(id).cloned())
                .collect(),
        }
    }
}

/// The file holding the saved views and their checkpoint.
#[derive(Debug)]
pub struct ViewDb {
    db: redb::Database,
}

const INCIDENTS: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("incidents");
const UNITS: redb::TableDefinition<u128, &[u8]> = redb::TableDefinition::new("units");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
/// The file name in the data directory.
pub const VIEWS_FILE: &str = "views.redb";
/// The version of the saved shape; views saved in another shape are refolded from the log.
const VIEWS_FORMAT: u64 = 1;
/// Meta keys: the format, whether a checkpoint exists, and the checkpoint.
const FORMAT_KEY: &str = "format";
const CHECKPOINT_KEY: &str = "checkpoint";

impl ViewDb {
    /// Opens (or creates) `views.redb` in the data directory.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join(VIEWS_FILE);
        let db =
            redb::Database::create(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { db })
    }

    /// The saved state, if any (and of this format).
    pub fn load(&self) -> anyhow::Result<Option<ViewState>> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.db.begin_read()?;
        let meta = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if meta.get(FORMAT_KEY)?.map(|v| v.value()) != Some(VIEWS_FORMAT) {
            return Ok(None);
        }
        let mut state = ViewState {
            last: meta.get(CHECKPOINT_KEY)?.map(|v| Position(v.value())),
            ..ViewState::default()
        };
        for row in tx.open_table(INCIDENTS)?.iter()? {
            let (_, bytes) = row?;
            let row: IncidentRow = serde_json::from_slice(bytes.value())?;
            state.incidents.insert(row.id, row);
        }
        for row in tx.open_table(UNITS)?.iter()? {
            let (_, bytes) = row?;
            let row: UnitRow = serde_json::from_slice(bytes.value())?;
            state.units.insert(row.id, row);
        }
        Ok(Some(state))
    }

    /// Writes changed rows and their checkpoint in one transaction. A save that is not
    /// `durable` is atomic but not synced to disk: after a crash the views come back as of
    /// the last durable save, rows and checkpoint together, and the projector follows the
    /// log from there.
    pub fn save_changes(&self, changes: &Changes, durable: bool) -> anyhow::Result<()> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(redb::Durability::None)?;
        }
        {
            let mut incidents = tx.open_table(INCIDENTS)?;
            for row in &changes.incidents {
                incidents.insert(
                    row.id.as_uuid().as_u128(),
                    serde_json::to_vec(row)?.as_slice(),
                )?;
            }
            let mut units = tx.open_table(UNITS)?;
            for row in &changes.units {
                units.insert(
                    row.id.as_uuid().as_u128(),
                    serde_json::to_vec(row)?.as_slice(),
                )?;
            }
            let mut meta = tx.open_table(META)?;
            meta.insert(FORMAT_KEY, VIEWS_FORMAT)?;
            match changes.last {
                Some(p) => meta.insert(CHECKPOINT_KEY, p.0)?,
                None => meta.remove(CHECKPOINT_KEY)?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces everything saved with this state.
    pub fn save_all(&self, state: &ViewState) -> anyhow::Result<()> {
        let tx = self.db.begin_write()?;
        tx.delete_table(INCIDENTS)?;
        tx.delete_table(UNITS)?;
        tx.commit()?;
        self.save_changes(
            &Changes {
                last: state.last,
                incidents: state.incidents.values().cloned().collect(),
                units: state.units.values().cloned().collect(),
            },
            true,
        )
    }
}

/// Runs the projector until `stop` turns true: follows `$all` after the views' checkpoint and
/// applies events in batches. A saver task beside it saves the views every
/// [`FLUSH_INTERVAL`] while they change, so the projector never waits for the disk; once
/// stopping, the projector applies everything committed by then and saves once more.
pub async fn run_projector(
    views: Views,
    store: Arc<dyn EventStore>,
    db: Arc<ViewDb>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let from = match views.last() {
        Some(p) => SubscribeFrom::After(p),
        None => SubscribeFrom::Start,
    };
    let saver = tokio::spawn(save_periodically(views.clone(), db.clone(), stop.clone()));
    let mut sub = store.subscribe_all(from);
    let mut batch = Vec::with_capacity(APPLY_BATCH);
    let followed: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                event = sub.next() => {
                    batch.push(event?);
                    while batch.len() < APPLY_BATCH {
                        match sub.try_next().await? {
                            Some(e) => batch.push(e),
                            None => break,
                        }
                    }
                    views.apply_batch(&batch)?;
                    batch.clear();
                }
                _ = stopped(&mut stop) => return Ok(()),
            }
        }
    }
    .await;
    let saved = saver.await.context("the view saver task failed")?;
    followed?;
    saved?;
    while let Some(e) = sub.try_next().await? {
        batch.push(e);
        if batch.len() >= APPLY_BATCH {
            views.apply_batch(&batch)?;
            batch.clear();
        }
    }
    views.apply_batch(&batch)?;
    save(&views, &db, true).await.map(|_| ())
}

/// Waits until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Saves the views every [`FLUSH_INTERVAL`] when they changed, until `stop`.
async fn save_periodically(
    views: Views,
    db: Arc<ViewDb>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut saved = views.last();
    let mut saves = 0u64;
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if views.last() != saved {
                    saves += 1;
                    saved = save(&views, &db, saves.is_multiple_of(DURABLE_SAVE_EVERY)).await?;
                }
            }
            _ = stopped(&mut stop) => return Ok(()),
        }
    }
}

/// Saves the rows changed since the last save; answers the checkpoint saved.
async fn save(views: &Views, db: &Arc<ViewDb>, durable: bool) -> anyhow::Result<Option<Position>> {
    let changes = views.take_changes();
    let last = changes.last;
    let db = db.clone();
    tokio::task::spawn_blocking(move || db.save_changes(&changes, durable)).await??;
    Ok(last)
}

/// Folds the whole log from the start into a fresh state; answers it with the number of
/// events read.
pub async fn rebuild(store: &dyn EventStore, areas: &Areas) -> anyhow::Result<(ViewState, u64)> {
    let mut state = ViewState::default();
    let mut from = Position::START;
    let mut events = 0u64;
    loop {
        let page = store.read_all(from, 4096).await?;
        let Some(last) = page.last() else { break };
        from = last.position.next();
        for recorded in &page {
            state
                .fold(recorded, areas)
                .with_context(|| format!("applying the event at {}", recorded.position))?;
        }
        events += page.len() as u64;
    }
    Ok((state, events))
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    /// Events read.
    pub events: u64,
    /// Wall time of reading and folding them (not of saving), seconds.
    pub seconds: f64,
    /// The checkpoint saved.
    pub checkpoint: Option<Position>,
}

/// Rebuilds the views of a data directory from its log and saves them.
pub async fn rebuild_views(data_dir: &Path, city: &str) -> anyhow::Result<RebuildReport> {
    let store = Arc::new(
        EmbeddedStore::open(data_dir, EmbeddedOptions::default())
            .with_context(|| format!("opening the event store in {}", data_dir.display()))?,
    );
    let (areas, _) = Areas::from_setting(city)?;
    let started = Instant::now();
    let (state, events) = rebuild(&*store as &dyn EventStore, &areas).await?;
    let seconds = started.elapsed().as_secs_f64();
    let db = ViewDb::open(data_dir)?;
    db.save_all(&state)?;
    store.close();
    Ok(RebuildReport {
        events,
        seconds,
        checkpoint: state.last,
    })
}
