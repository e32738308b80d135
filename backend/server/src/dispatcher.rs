//! The dispatcher in the server: it keeps the live unit index and the open incidents current
//! from `$all`, answers recommendations and coverage, turns accepted recommendations into
//! assignments, and dispatches by rule (automatic dispatch, and a new unit after a decline
//! of an automatically dispatched incident).
//!
//! Assignments go through the same command path as an operator's (the unit stream's expected
//! revision guards against double booking), with idempotency keys derived from the incident
//! and the unit, so a repeat (a restart catching up, a retried request) writes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use muster_core::dispatch::{
    Commitment, CoverageReport, DispatchRules, IncidentSpec, NewUnit, Preemption, Recommendation,
    UnitIndex, coverage, preemptions, recommend,
};
use muster_core::event::DomainEvent;
use muster_core::incident::IncidentEvent;
use muster_core::runcard::ResponsePlans;
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::{IdempotencyKey, IncidentSource, IncidentType, Priority, UnitKind};
use muster_core::{IncidentId, TaskId, UnitId};
use muster_geodata::Router;
use muster_geodata::model::City;
use muster_store::{
    EventMetadata, EventStore, EventStoreExt, Position, RecordedEvent, SubscribeFrom,
};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use muster_app::{Command, CommandError, CommandKey, Executed, Fingerprint, Runner};

/// How often stale positions are moved to their stations.
const STALE_SWEEP: Duration = Duration::from_secs(30);
/// Namespace of task ids the dispatcher derives from its idempotency keys.
const TASK_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_2d74_6173_6b2d_6964_0001);
/// Units tried per slot before an automatic dispatch gives up on a slot.
const MAX_AUTO_TRIES: usize = 8;

/// Why the dispatcher cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The incident is not open (never reported, closed or merged).
    #[error("there is no open incident {0}")]
    NoOpenIncident(IncidentId),
    /// No response plan covers the incident.
    #[error("no response plan covers {incident_type:?} at {priority:?}")]
    NoPlan {
        /// Its type.
        incident_type: IncidentType,
        /// Its priority.
        priority: Priority,
    },
    /// The incident's location cannot be routed to.
    #[error("the incident's location is not usable")]
    UnusableLocation,
    /// The recommender refused the request.
    #[error("{0}")]
    Recommend(String),
    /// An assignment did not go through.
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// An open incident as the dispatcher sees it.
#[derive(Clone, Debug)]
struct OpenIncident {
    location: muster_core::value::LatLon,
    incident_type: IncidentType,
    priority: Priority,
    source: IncidentSource,
    units: BTreeSet<UnitId>,
    declined: BTreeSet<UnitId>,
    /// Assigned units whose crews did not acknowledge in time: not counted as sent.
    overdue: BTreeSet<UnitId>,
    /// Units that reached the scene: they count toward the run card after they clear, so a
    /// unit that has done its part is not asked for again. (A unit stood down before
    /// arriving, to go elsewhere, leaves a need behind.)
    served: BTreeSet<UnitId>,
}

#[derive(Debug, Default)]
struct Board {
    incidents: HashMap<IncidentId, OpenIncident>,
    commitments: HashMap<UnitId, IncidentId>,
    call_signs: HashMap<UnitId, String>,
}

/// `GET /api/roads/closures`: the road closures in force.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClosuresInForce {
    /// The closures, by id.
    pub closures: Vec<ClosureInForce>,
}

/// A road closure in force, as the dispatcher applies it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClosureInForce {
    /// The closure.
    pub closure_id: Uuid,
    /// Its centre.
    pub location: muster_core::value::LatLon,
    /// Its radius, metres.
    pub radius_m: f64,
    /// Roads closed.
    pub roads: usize,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who closed it.
    pub by: String,
    /// Since when.
    pub since: chrono::DateTime<Utc>,
    #[serde(skip)]
    road_ids: Vec<muster_geodata::model::RoadIdx>,
}

struct Inner {
    router: Arc<Router>,
    closures: RwLock<std::collections::BTreeMap<Uuid, ClosureInForce>>,
    index: RwLock<UnitIndex>,
    board: RwLock<Board>,
    rules: DispatchRules,
    plans: ResponsePlans,
    runner: Runner,
    stations: HashMap<String, muster_geodata::LatLon>,
    caught_up: AtomicBool,
    /// The next log position to apply: everything before it is in the index and the board.
    applied: watch::Sender<Position>,
}

/// The dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher(Arc<Inner>);

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

fn geo(p: muster_core::value::LatLon) -> Option<muster_geodata::LatLon> {
    muster_geodata::LatLon::new(p.lat_deg(), p.lon_deg()).ok()
}

/// A city station's id with characters other than letters, digits, `-` and `_` replaced by `-`.
pub fn station_slug(station_id: &str) -> String {
    station_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The station code a unit registered at a city station carries: `s-` and its slug.
pub fn station_code(station_id: &str) -> String {
    format!("s-{}", station_slug(station_id)).to_lowercase()
}

impl Dispatcher {
    /// A dispatcher on `city`'s roads; `None` without a city (no routing, no dispatching).
    pub fn new(
        city: Option<&City>,
        runner: Runner,
        rules: DispatchRules,
        plans: ResponsePlans,
    ) -> anyhow::Result<Option<Self>> {
        let Some(city) = city else { return Ok(None) };
        let stations = city
            .stations
            .iter()
            .map(|s| (station_code(&s.id), s.location))
            .collect();
        let router = Arc::new(Router::new(Arc::new(city.clone()))?);
        Ok(Some(Self(Arc::new(Inner {
            router: router.clone(),
            closures: RwLock::default(),
            index: RwLock::new(UnitIndex::new(
                router,
                muster_core::dispatch::DEFAULT_STALE_AFTER,
            )),
            board: RwLock::new(Board::default()),
            rules,
            plans,
            runner,
            stations,
            caught_up: AtomicBool::new(false),
            applied: watch::channel(Position::START).0,
        }))))
    }

    /// Follows `$all` until `stop` turns true: applies every event to the index and the board,
    /// and dispatches by rule once caught up.
    pub async fn run(self, store: Arc<dyn EventStore>, mut stop: watch::Receiver<bool>) {
        let head = store.head();
        let mut sub = store.subscribe_all(SubscribeFrom::Start);
        if head.0 == 0 {
            self.caught_up().await;
        }
        let mut sweep = tokio::time::interval(STALE_SWEEP);
        loop {
            tokio::select! {
                event = sub.next() => match event {
                    Ok(event) => {
                        let live = self.0.caught_up.load(Ordering::SeqCst);
                        self.apply(&event, live);
                        self.0.applied.send_replace(event.position.next());
                        if !live && event.position.next() >= head {
                            self.caught_up().await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the dispatcher's subscription ended");
                        return;
                    }
                },
                _ = sweep.tick() => {
                    let moved = self.0.index.write().expect("index lock").refresh_stale(Utc::now());
                    if moved > 0 {
                        tracing::info!(units = moved, "stale positions replaced by stations");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Waits until the event at `position` is applied, at most `timeout`; whether it is.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let mut rx = self.0.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the dispatcher has applied the whole log it found at start.
    pub fn is_caught_up(&self) -> bool {
        self.0.caught_up.load(Ordering::SeqCst)
    }

    async fn caught_up(&self) {
        self.0.caught_up.store(true, Ordering::SeqCst);
        // Incidents reported while no dispatcher ran, that a rule dispatches and that have no
        // unit yet.
        let waiting: Vec<IncidentId> = {
            let board = self.0.board.read().expect("board lock");
            board
                .incidents
                .iter()
                .filter(|(_, i)| {
                    i.units.is_empty()
                        && self
                            .0
                            .rules
                            .auto_dispatch_rule(i.incident_type, i.source, i.priority)
                            .is_some()
                })
                .map(|(id, _)| *id)
                .collect()
        };
        for id in waiting {
            self.spawn_auto(id);
        }
    }

    /// How many roads a closure of `radius_m` around `location` would close.
    pub fn roads_near(&self, location: muster_core::value::LatLon, radius_m: f64) -> usize {
        geo(location).map_or(0, |p| self.0.router.roads_near(p, radius_m).len())
    }

    /// The road closures in force, oldest first.
    pub fn closures(&self) -> Vec<ClosureInForce> {
        let mut all: Vec<ClosureInForce> = self
            .0
            .closures
            .read()
            .expect("closures lock")
            .values()
            .cloned()
            .collect();
        all.sort_by_key(|c| c.since);
        all
    }

    /// A closure or reopening: the router gets the union of the roads closed now.
    fn apply_road(&self, recorded: &RecordedEvent) {
        let mut closures = self.0.closures.write().expect("closures lock");
        if recorded.event_type == crate::routes::roads::ROAD_CLOSED {
            let Ok(c) = recorded.decode::<crate::routes::roads::RoadClosed>() else {
                tracing::warn!(position = %recorded.position, "an unreadable road closure was skipped");
                return;
            };
            let road_ids = geo(c.location)
                .map(|p| self.0.router.roads_near(p, c.radius_m))
                .unwrap_or_default();
            closures.insert(
                c.closure,
                ClosureInForce {
                    closure_id: c.closure,
                    location: c.location,
                    radius_m: c.radius_m,
                    roads: road_ids.len(),
                    note: c.note,
                    by: c.by,
                    since: c.at,
                    road_ids,
                },
            );
        } else {
            let Ok(r) = recorded.decode::<crate::routes::roads::RoadReopened>() else {
                return;
            };
            closures.remove(&r.closure);
        }
        let conditions: muster_geodata::routing::RoadConditions = closures
            .values()
            .flat_map(|c| c.road_ids.iter())
            .map(|r| (*r, muster_geodata::routing::RoadCondition::Closed))
            .collect();
        // Prepared in the background; recommendations use the new graph once it is ready.
        let _ = self.0.router.set_conditions(conditions);
    }

    fn spawn_auto(&self, incident: IncidentId) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.auto_dispatch(incident).await {
                tracing::warn!(%incident, error = %e, "automatic dispatch failed");
            }
        });
    }

    fn apply(&self, recorded: &RecordedEvent, live: bool) {
        if recorded.stream.is_system() {
            return;
        }
        if recorded.event_type == crate::routes::roads::ROAD_CLOSED
            || recorded.event_type == crate::routes::roads::ROAD_REOPENED
        {
            self.apply_road(recorded);
            return;
        }
        if recorded.event_type == muster_mobile::alerts::TASK_ACK_OVERDUE {
            if let Ok(alert) = recorded.decode::<muster_mobile::alerts::TaskAckOverdue>() {
                self.ack_overdue(alert, live);
            }
            return;
        }
        let Ok((aggregate, event)) = DomainEvent::from_recorded(recorded) else {
            return;
        };
        let now = Utc::now();
        match event {
            DomainEvent::Unit(event) => {
                let muster_core::AggregateRef::Unit(unit) = aggregate else {
                    return;
                };
                self.apply_unit(unit, event, now, recorded.recorded_at, live);
            }
            DomainEvent::Incident(event) => {
                let muster_core::AggregateRef::Incident(incident) = aggregate else {
                    return;
                };
                self.apply_incident(incident, event, live);
            }
            DomainEvent::Sensor(_) => {}
        }
    }

    /// A crew did not acknowledge in time: plan the incident as if that unit were not sent.
    fn ack_overdue(&self, alert: muster_mobile::alerts::TaskAckOverdue, live: bool) {
        let replan = {
            let mut board = self.0.board.write().expect("board lock");
            match board.incidents.get_mut(&alert.incident) {
                Some(i) if i.units.contains(&alert.unit) => {
                    i.overdue.insert(alert.unit);
                    self.0
                        .rules
                        .auto_dispatch_rule(i.incident_type, i.source, i.priority)
                        .is_some()
                }
                _ => false,
            }
        };
        if live && replan {
            self.spawn_auto(alert.incident);
        }
    }

    /// Folds one unit event into the index and the board. A fix counts as taken no later
    /// than the store recorded it, so a phone whose clock runs ahead cannot hold the unit at
    /// an old place.
    fn apply_unit(
        &self,
        unit: UnitId,
        event: UnitEvent,
        now: chrono::DateTime<Utc>,
        recorded_at: chrono::DateTime<Utc>,
        live: bool,
    ) {
        let mut index = self.0.index.write().expect("index lock");
        match event {
            UnitEvent::UnitRegistered {
                kind,
                call_sign,
                agency,
                home_station,
                capabilities,
                ..
            } => {
                let station = self.0.stations.get(home_station.as_str()).copied();
                index.upsert(NewUnit {
                    id: unit,
                    kind,
                    capabilities,
                    agency,
                    status: UnitStatus::Available,
                    station,
                });
                self.0
                    .board
                    .write()
                    .expect("board lock")
                    .call_signs
                    .insert(unit, call_sign.as_str().to_owned());
            }
            UnitEvent::UnitCapabilitiesChanged { capabilities, .. } => {
                if let Some(u) = index.unit(unit).cloned() {
                    let station = u.station;
                    index.upsert(NewUnit {
                        id: unit,
                        kind: u.kind,
                        capabilities,
                        agency: u.agency,
                        status: u.status,
                        station,
                    });
                }
            }
            UnitEvent::UnitStatusChanged { to, .. } => {
                index.set_status(unit, to);
                if to == UnitStatus::OnScene {
                    let mut board = self.0.board.write().expect("board lock");
                    if let Some(incident) = board.commitments.get(&unit).copied()
                        && let Some(i) = board.incidents.get_mut(&incident)
                    {
                        i.served.insert(unit);
                    }
                }
            }
            UnitEvent::UnitPositionReported { position, at, .. } => {
                if let Some(p) = geo(position) {
                    index.report_position(unit, p, at.min(recorded_at), now);
                }
            }
            UnitEvent::TaskAssigned { incident, .. } => {
                let mut board = self.0.board.write().expect("board lock");
                board.commitments.insert(unit, incident);
                if let Some(i) = board.incidents.get_mut(&incident) {
                    i.units.insert(unit);
                }
            }
            UnitEvent::TaskAcknowledged { incident, .. } => {
                if let Some(i) = self
                    .0
                    .board
                    .write()
                    .expect("board lock")
                    .incidents
                    .get_mut(&incident)
                {
                    i.overdue.remove(&unit);
                }
            }
            UnitEvent::TaskDeclined { incident, .. } => {
                let replan = {
                    let mut board = self.0.board.write().expect("board lock");
                    board.commitments.remove(&unit);
                    match board.incidents.get_mut(&incident) {
                        Some(i) => {
                            i.units.remove(&unit);
                            i.overdue.remove(&unit);
                            i.declined.insert(unit);
                            self.0
                                .rules
                                .auto_dispatch_rule(i.incident_type, i.source, i.priority)
                                .is_some()
                        }
                        None => false,
                    }
                };
                if live && replan {
                    drop(index);
                    self.spawn_auto(incident);
                }
            }
            UnitEvent::TaskCompleted { incident, .. } => {
                let mut board = self.0.board.write().expect("board lock");
                board.commitments.remove(&unit);
                if let Some(i) = board.incidents.get_mut(&incident) {
                    i.units.remove(&unit);
                    i.overdue.remove(&unit);
                }
            }
        }
    }

    fn apply_incident(&self, incident: IncidentId, event: IncidentEvent, live: bool) {
        let auto = {
            let mut board = self.0.board.write().expect("board lock");
            match event {
                IncidentEvent::IncidentReported {
                    source,
                    location,
                    incident_type,
                    priority,
                    ..
                } => {
                    let open = OpenIncident {
                        location,
                        incident_type,
                        priority,
                        source: source.kind(),
                        units: BTreeSet::new(),
                        declined: BTreeSet::new(),
                        overdue: BTreeSet::new(),
                        served: BTreeSet::new(),
                    };
                    let auto = self
                        .0
                        .rules
                        .auto_dispatch_rule(incident_type, open.source, priority)
                        .is_some();
                    board.incidents.insert(incident, open);
                    auto
                }
                IncidentEvent::IncidentTriaged {
                    incident_type,
                    priority,
                    ..
                } => {
                    if let Some(i) = board.incidents.get_mut(&incident) {
                        i.incident_type = incident_type;
                        i.priority = priority;
                    }
                    false
                }
                IncidentEvent::IncidentLocationUpdated { location, .. } => {
                    if let Some(i) = board.incidents.get_mut(&incident) {
                        i.location = location;
                    }
                    false
                }
                IncidentEvent::IncidentTypeUpdated { incident_type, .. } => {
                    if let Some(i) = board.incidents.get_mut(&incident) {
                        i.incident_type = incident_type;
                    }
                    false
                }
                IncidentEvent::IncidentPriorityUpdated { priority, .. } => {
                    if let Some(i) = board.incidents.get_mut(&incident) {
                        i.priority = priority;
                    }
                    false
                }
                IncidentEvent::IncidentClosed { .. } | IncidentEvent::IncidentMerged { .. } => {
                    board.incidents.remove(&incident);
                    false
                }
                _ => false,
            }
        };
        if auto && live {
            self.spawn_auto(incident);
        }
    }

    /// The recommendation for an open incident, with the preemptions a rule allows for what
    /// it cannot fill.
    pub fn recommendation(
        &self,
        incident: IncidentId,
    ) -> Result<RecommendationAnswer, DispatchError> {
        let open = {
            let board = self.0.board.read().expect("board lock");
            board.incidents.get(&incident).cloned()
        }
        .ok_or(DispatchError::NoOpenIncident(incident))?;
        let plan = self
            .0
            .plans
            .plan_for(open.incident_type, open.priority)
            .cloned()
            .ok_or(DispatchError::NoPlan {
                incident_type: open.incident_type,
                priority: open.priority,
            })?;
        let location = geo(open.location).ok_or(DispatchError::UnusableLocation)?;
        let spec = IncidentSpec {
            location,
            agency: None,
            required_capabilities: vec![],
        };
        let exclude: Vec<UnitId> = open
            .units
            .iter()
            .chain(open.declined.iter())
            .copied()
            .collect();
        // Units already sent count toward the plan, unless their crews did not acknowledge
        // in time; so do units that reached the scene and have cleared.
        let mut plan = plan;
        {
            let index = self.0.index.read().expect("index lock");
            let counted: BTreeSet<UnitId> = open.units.union(&open.served).copied().collect();
            for need in &mut plan.units {
                let sent = counted
                    .difference(&open.overdue)
                    .filter(|u| index.unit(**u).is_some_and(|x| x.kind == need.kind))
                    .count();
                need.count = need.count.saturating_sub(sent.min(255) as u8);
            }
        }
        plan.units.retain(|n| n.count > 0);
        let index = self.0.index.read().expect("index lock");
        let recommendation = recommend(&index, &spec, &plan, &exclude, Utc::now())
            .map_err(|e| DispatchError::Recommend(e.to_string()))?;
        let preempt = if recommendation.shortfall.is_empty() {
            Vec::new()
        } else {
            let board = self.0.board.read().expect("board lock");
            let committed: Vec<Commitment> = board
                .commitments
                .iter()
                .filter(|(_, i)| **i != incident)
                .filter_map(|(u, i)| {
                    board.incidents.get(i).map(|inc| Commitment {
                        unit: *u,
                        incident: *i,
                        priority: inc.priority,
                    })
                })
                .collect();
            preemptions(
                &index,
                &self.0.rules,
                &spec,
                open.priority,
                &recommendation.shortfall,
                &committed,
            )
        };
        let board = self.0.board.read().expect("board lock");
        let call_signs = recommendation
            .kinds
            .iter()
            .flat_map(|k| k.candidates.iter())
            .map(|c| c.unit)
            .chain(preempt.iter().map(|p| p.unit))
            .filter_map(|u| board.call_signs.get(&u).map(|c| (u, c.clone())))
            .collect();
        Ok(RecommendationAnswer {
            incident_id: incident,
            already_sent: open.units.iter().copied().collect(),
            not_acknowledged_in_time: open.overdue.iter().copied().collect(),
            auto_dispatch_rule: self
                .0
                .rules
                .auto_dispatch_rule(open.incident_type, open.source, open.priority)
                .map(|r| r.name.clone()),
            recommendation,
            preemptions: preempt,
            call_signs,
        })
    }

    /// The command that assigns units to `incident` as `actor` for the request made with
    /// `key` (the operator's, or one the dispatcher derives), fingerprinted by the units.
    pub fn command(
        actor: &str,
        source: &str,
        key: IdempotencyKey,
        incident: IncidentId,
        units: Option<&[UnitId]>,
    ) -> Command {
        Command {
            key: CommandKey::new(actor, key),
            fingerprint: Fingerprint::of(
                &format!("POST /api/incidents/{incident}/dispatch"),
                &json!({ "units": units }),
            ),
            metadata: EventMetadata {
                actor: Some(actor.to_owned()),
                source: Some(source.to_owned()),
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                occurred_at: Some(Utc::now()),
            },
        }
    }

    /// Assigns `units` to `incident` in one decision over the incident and every unit (see
    /// `muster_core::combined::assign_units`); answers, per unit, whether it was assigned and
    /// why not ([`Dispatched`]). A repeat of the command answers as the first time.
    pub async fn assign(
        &self,
        command: &Command,
        incident: IncidentId,
        units: &[UnitId],
    ) -> Result<Executed<serde_json::Value>, CommandError> {
        let now = Utc::now();
        let tasks: Vec<(UnitId, TaskId)> = units
            .iter()
            .map(|u| {
                (
                    *u,
                    TaskId::from_uuid(command.key.derived_id(&format!("task-{u}"))),
                )
            })
            .collect();
        self.0
            .runner
            .execute(command, |s| {
                let (changes, results) =
                    muster_core::combined::assign_units(s, incident, &tasks, now)?;
                let results: Vec<UnitDispatched> = tasks
                    .iter()
                    .zip(results)
                    .map(|((unit, _), r)| match r {
                        Ok(task) => UnitDispatched {
                            unit_id: *unit,
                            assigned: true,
                            task_id: Some(task),
                            error: None,
                        },
                        Err(refusal) => UnitDispatched {
                            unit_id: *unit,
                            assigned: false,
                            task_id: None,
                            error: Some(crate::error::ApiError::from(refusal).body().error),
                        },
                    })
                    .collect();
                let assigned = results.iter().filter(|r| r.assigned).count();
                Ok((
                    changes,
                    crate::routes::own_answer(&Dispatched {
                        incident_id: incident,
                        assigned,
                        results,
                    }),
                ))
            })
            .await
    }

    /// Assigns one unit by rule, as the dispatcher, with a key derived from the incident and
    /// the unit: a restart catching up assigns nothing twice.
    async fn assign_by_rule(
        &self,
        incident: IncidentId,
        unit: UnitId,
        rule: &str,
    ) -> Result<bool, CommandError> {
        let key = IdempotencyKey::try_from(format!(
            "auto-{}",
            Uuid::new_v5(&TASK_NAMESPACE, format!("{incident}\u{0}{unit}").as_bytes())
        ))
        .expect("a UUID with a prefix is a valid key");
        let command = Self::command(
            "dispatcher",
            &format!("auto-dispatch: {rule}"),
            key,
            incident,
            Some(&[unit]),
        );
        let executed = self.assign(&command, incident, &[unit]).await?;
        Ok(executed.answer["assigned"] == 1)
    }

    /// Dispatches an incident a rule allows, filling its plan with the recommended units.
    pub async fn auto_dispatch(&self, incident: IncidentId) -> Result<usize, DispatchError> {
        let rule = {
            let board = self.0.board.read().expect("board lock");
            let Some(i) = board.incidents.get(&incident) else {
                return Ok(0);
            };
            match self
                .0
                .rules
                .auto_dispatch_rule(i.incident_type, i.source, i.priority)
            {
                Some(r) => r.name.clone(),
                None => return Ok(0),
            }
        };
        let mut assigned = 0;
        let mut refused: Vec<UnitId> = Vec::new();
        for _ in 0..MAX_AUTO_TRIES {
            let answer = self.recommendation(incident)?;
            let picks: Vec<UnitId> = answer
                .recommendation
                .picks()
                .map(|c| c.unit)
                .filter(|u| !refused.contains(u))
                .collect();
            if picks.is_empty() {
                break;
            }
            let mut all_done = true;
            for unit in picks {
                match self.assign_by_rule(incident, unit, &rule).await {
                    Ok(true) => {
                        assigned += 1;
                        self.0
                            .board
                            .write()
                            .expect("board lock")
                            .incidents
                            .get_mut(&incident)
                            .map(|i| i.units.insert(unit));
                    }
                    Ok(false) => {
                        tracing::info!(%incident, %unit, "automatic assignment refused; trying another unit");
                        refused.push(unit);
                        all_done = false;
                    }
                    Err(e) => {
                        tracing::info!(%incident, %unit, error = %e, "automatic assignment failed; trying another unit");
                        refused.push(unit);
                        all_done = false;
                    }
                }
            }
            if all_done {
                break;
            }
        }
        if assigned > 0 {
            tracing::info!(%incident, units = assigned, %rule, "dispatched by rule");
        }
        Ok(assigned)
    }

    /// The command runner assignments go through.
    pub fn runner(&self) -> &Runner {
        &self.0.runner
    }

    /// The automatic dispatch and preemption rules.
    pub fn rules(&self) -> &DispatchRules {
        &self.0.rules
    }

    /// The coverage of the city by available units of `kinds` within `target`.
    pub fn coverage(&self, kinds: &[UnitKind], target: Duration) -> CoverageReport {
        coverage(&self.0.index.read().expect("index lock"), kinds, target)
    }
}

/// `GET /api/incidents/{id}/recommendation`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecommendationAnswer {
    /// The incident.
    pub incident_id: IncidentId,
    /// Units already assigned to it (counted against its plan unless overdue).
    pub already_sent: Vec<UnitId>,
    /// Assigned units whose crews did not acknowledge in time (a replacement is recommended).
    pub not_acknowledged_in_time: Vec<UnitId>,
    /// The rule that dispatches it automatically, if any.
    pub auto_dispatch_rule: Option<String>,
    /// Candidates per kind still needed, with ETAs and reasons; shortfalls.
    pub recommendation: Recommendation,
    /// Units a rule allows to be taken from less urgent incidents, for the shortfall.
    pub preemptions: Vec<Preemption>,
    /// Call signs of the units named above.
    pub call_signs: HashMap<UnitId, String>,
}

/// The answer to `POST /api/incidents/{id}/dispatch`, with the log `position` of its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dispatched {
    /// The incident.
    pub incident_id: IncidentId,
    /// How many units were assigned.
    pub assigned: usize,
    /// Per unit asked for, in the order asked.
    pub results: Vec<UnitDispatched>,
}

/// Whether one unit was assigned, with its task or why not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnitDispatched {
    /// The unit.
    pub unit_id: UnitId,
    /// Whether it was assigned.
    pub assigned: bool,
    /// Its task, when assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Why not, when not: as the error body of a single assignment would say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_core::incident::{IncidentCommand, ReportSource};
    use muster_core::unit::UnitCommand;
    use muster_core::value::{Agency, CallSign, CallerDetails, LatLon, StationCode};
    use muster_store::MemoryStore;

    fn meta() -> EventMetadata {
        EventMetadata {
            actor: Some("test".into()),
            ..Default::default()
        }
    }

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::try_from(text.to_owned()).unwrap()
    }

    fn cmd(text: &str) -> Command {
        Command {
            key: CommandKey::new("test", key(text)),
            fingerprint: Fingerprint::of(text, &serde_json::Value::Null),
            metadata: meta(),
        }
    }

    async fn unit_command(
        runner: &Runner,
        text: &str,
        unit: UnitId,
        command: UnitCommand,
    ) -> muster_app::Executed<()> {
        runner
            .execute(&cmd(text), |s| {
                Ok((
                    muster_core::combined::unit_command(s, unit, command.clone())?,
                    (),
                ))
            })
            .await
            .unwrap()
    }

    async fn engine_at(
        runner: &Runner,
        n: usize,
        station: &muster_geodata::model::Station,
    ) -> (UnitId, Position) {
        let unit = UnitId::new_v7();
        let at = Utc::now();
        let code = StationCode::parse(&station_code(&station.id)).unwrap();
        unit_command(
            runner,
            &format!("register-{n:04}"),
            unit,
            UnitCommand::Register {
                unit_id: unit,
                kind: UnitKind::Engine,
                call_sign: CallSign::parse(&format!("E{n}")).unwrap(),
                agency: Agency::parse("city-fire").unwrap(),
                home_station: code.clone(),
                capabilities: BTreeSet::new(),
                at,
            },
        )
        .await;
        let executed = unit_command(
            runner,
            &format!("position-{n:04}"),
            unit,
            UnitCommand::ReportPosition {
                position: LatLon::from_lat_lon(station.location.lat(), station.location.lon())
                    .unwrap(),
                heading_deg: None,
                speed_m_s: None,
                accuracy_m: None,
                at,
            },
        )
        .await;
        (unit, executed.position().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_not_acknowledged_in_time_gets_a_replacement_recommended() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let runner = Runner::new(store.clone());
        let city = crate::areas::Areas::from_setting("bundled")
            .unwrap()
            .1
            .unwrap();
        let d = Dispatcher::new(
            Some(&city),
            runner.clone(),
            DispatchRules::default(),
            ResponsePlans::default_set(),
        )
        .unwrap()
        .unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(d.clone().run(store.clone(), stop));
        let fire: Vec<_> = city
            .stations
            .iter()
            .filter(|s| s.kind == muster_geodata::model::StationKind::Fire)
            .collect();
        let mut engines = Vec::new();
        for (n, station) in fire.iter().enumerate() {
            engines.push(engine_at(&runner, n, station).await.0);
        }
        let incident = IncidentId::new_v7();
        let at = fire[0].location;
        let report = IncidentCommand::Report {
            incident_id: incident,
            source: ReportSource::Hotline,
            location: LatLon::from_lat_lon(at.lat(), at.lon()).unwrap(),
            incident_type: IncidentType::VehicleFire,
            priority: Priority::P3,
            caller: CallerDetails::default(),
            call_received_at: Utc::now(),
            at: Utc::now(),
        };
        let reported = runner
            .execute(&cmd("report-0001"), |s| {
                Ok((
                    muster_core::combined::incident_command(s, incident, report.clone())?,
                    (),
                ))
            })
            .await
            .unwrap();
        assert!(
            d.wait_for(reported.position().unwrap(), Duration::from_secs(10))
                .await
        );
        let first = d.recommendation(incident).unwrap();
        let pick = first
            .recommendation
            .picks()
            .next()
            .expect("an engine is recommended")
            .unit;
        let accept = Dispatcher::command(
            "test",
            "operator",
            key("accept-0001"),
            incident,
            Some(&[pick]),
        );
        let answer = d.assign(&accept, incident, &[pick]).await.unwrap().answer;
        assert_eq!(answer["assigned"], 1, "{answer}");
        let task = runner
            .unit(pick)
            .await
            .unwrap()
            .unit
            .unwrap()
            .active_task
            .unwrap()
            .task;

        let alert = muster_mobile::alerts::TaskAckOverdue {
            task,
            incident,
            unit: pick,
            assigned_at: Utc::now(),
            timeout_secs: 60,
            at: Utc::now(),
        };
        let stored = store
            .append(
                &muster_mobile::alerts::alert_stream(task),
                muster_store::ExpectedState::Any,
                vec![muster_mobile::alerts::overdue_event(&alert)],
            )
            .await
            .unwrap();
        assert!(d.wait_for(stored.position, Duration::from_secs(10)).await);
        let again = d.recommendation(incident).unwrap();
        assert_eq!(again.not_acknowledged_in_time, vec![pick]);
        let replacement = again
            .recommendation
            .picks()
            .next()
            .unwrap_or_else(|| panic!("no replacement: {again:?}"))
            .unit;
        assert_ne!(
            replacement, pick,
            "the unit that did not acknowledge was recommended again"
        );
        assert!(engines.contains(&replacement));
    }
}
