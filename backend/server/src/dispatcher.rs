//! The dispatcher in the server: it keeps the live unit index and the open incidents current
//! from `$all`, answers recommendations and coverage, turns accepted recommendations into
//! assignments, and dispatches by rule (automatic dispatch, and a new unit after a decline
//! of an automatically dispatched incident).
//!
//! Assignments go through the same command path as an operator's (the unit stream's expected
//! revision guards against double booking), with idempotency keys derived from the incident
//! and the unit, so a repeat (a restart catching up, a retried request) writes nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use muster_core::combined::{self, States};
use muster_core::dispatch::{
    Board, CoverageReport, DispatchRules, NeedsError, Preemption, Recommendation, Stations,
    UnitIndex, coverage, preemptions, recommend,
};
use muster_core::event::DomainEvent;
use muster_core::incident::IncidentEvent;
use muster_core::road::RoadClosureEvent;
use muster_core::runcard::{ResponsePlan, ResponsePlans};
use muster_core::unit::UnitEvent;
use muster_core::value::{IdempotencyKey, IncidentType, Priority, UnitKind};
use muster_core::{AggregateRef, ClosureId, IncidentId, TaskId, UnitId};
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
/// Longest an automatic dispatch waits for the index to catch up with the log after a refusal.
const AUTO_CATCH_UP: Duration = Duration::from_secs(2);

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
    /// The recommender refused the request.
    #[error("{0}")]
    Recommend(String),
    /// An assignment did not go through.
    #[error(transparent)]
    Command(#[from] CommandError),
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
    pub closure_id: ClosureId,
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
    closures: RwLock<std::collections::BTreeMap<ClosureId, ClosureInForce>>,
    index: RwLock<UnitIndex>,
    board: RwLock<Board>,
    rules: DispatchRules,
    plans: ResponsePlans,
    runner: Runner,
    stations: Stations,
    caught_up: AtomicBool,
    /// Whether this node leads automatic dispatch among the nodes sharing the store.
    leading: AtomicBool,
    /// One automatic dispatch at a time: each chooses from an index that holds the ones
    /// before it, so a storm of alarms does not race for the same nearest units.
    auto_turn: tokio::sync::Mutex<()>,
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

pub use muster_core::dispatch::{station_code, station_slug};

impl Dispatcher {
    /// A dispatcher on `city`'s roads; `None` without a city (no routing, no dispatching).
    pub fn new(
        city: Option<&City>,
        runner: Runner,
        rules: DispatchRules,
        plans: ResponsePlans,
    ) -> anyhow::Result<Option<Self>> {
        let Some(city) = city else { return Ok(None) };
        let stations = Stations::of_city(city);
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
            leading: AtomicBool::new(true),
            auto_turn: tokio::sync::Mutex::new(()),
            applied: watch::channel(Position::START).0,
        }))))
    }

    /// Follows `$all` until `stop` turns true: applies every event to the index and the board,
    /// and dispatches by rule once caught up, while this node leads automatic dispatch (one
    /// node of those sharing a PostgreSQL store does; a node that takes over dispatches what
    /// waits).
    pub async fn run(self, store: Arc<dyn EventStore>, mut stop: watch::Receiver<bool>) {
        let mut leader = store.leadership("dispatcher");
        let mut follows_leadership = true;
        self.0
            .leading
            .store(*leader.borrow_and_update(), Ordering::SeqCst);
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
                changed = leader.changed(), if follows_leadership => match changed {
                    Ok(()) => {
                        let leads = *leader.borrow_and_update();
                        self.0.leading.store(leads, Ordering::SeqCst);
                        if leads && self.is_caught_up() {
                            self.dispatch_waiting();
                        }
                    }
                    // A store with one process: the leadership never changes.
                    Err(_) => follows_leadership = false,
                },
                _ = stop.changed() => return,
            }
        }
    }

    /// Whether this node leads automatic dispatch.
    pub fn is_leading(&self) -> bool {
        self.0.leading.load(Ordering::SeqCst)
    }

    /// Waits until the event at `position` is applied, at most `timeout`; whether it is.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> bool {
        let mut rx = self.0.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until every event committed before `head` is applied, at most `timeout`;
    /// whether it is.
    pub async fn wait_for_head(&self, head: Position, timeout: Duration) -> bool {
        let mut rx = self.0.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next >= head))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the dispatcher has applied the whole log it found at start.
    pub fn is_caught_up(&self) -> bool {
        self.0.caught_up.load(Ordering::SeqCst)
    }

    async fn caught_up(&self) {
        self.0.caught_up.store(true, Ordering::SeqCst);
        self.dispatch_waiting();
    }

    /// Dispatches the incidents reported while no dispatcher ran (or none led), that a rule
    /// dispatches and that have no unit yet.
    fn dispatch_waiting(&self) {
        let waiting = self
            .0
            .board
            .read()
            .expect("board lock")
            .waiting_for_rule(&self.0.rules);
        for id in waiting {
            self.spawn_auto(id);
        }
    }

    /// How many roads a closure of `radius_m` around `location` would close.
    pub fn roads_near(&self, location: muster_core::value::LatLon, radius_m: f64) -> usize {
        self.0.router.roads_near(location, radius_m).len()
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
    fn apply_road(&self, event: RoadClosureEvent) {
        let mut closures = self.0.closures.write().expect("closures lock");
        match event {
            RoadClosureEvent::RoadClosed {
                closure,
                location,
                radius_m,
                note,
                by,
                at,
            } => {
                let road_ids = self.0.router.roads_near(location, radius_m);
                closures.insert(
                    closure,
                    ClosureInForce {
                        closure_id: closure,
                        location,
                        radius_m,
                        roads: road_ids.len(),
                        note,
                        by,
                        since: at,
                        road_ids,
                    },
                );
            }
            RoadClosureEvent::RoadReopened { closure, .. } => {
                closures.remove(&closure);
            }
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
        if !self.is_leading() {
            return;
        }
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
        let Ok((aggregate, event)) = DomainEvent::from_recorded(recorded) else {
            return;
        };
        let now = Utc::now();
        match (aggregate, event) {
            (AggregateRef::Unit(unit), DomainEvent::Unit(event)) => {
                self.apply_unit(unit, event, now, recorded.recorded_at, live);
            }
            (AggregateRef::Incident(incident), DomainEvent::Incident(event)) => {
                self.apply_incident(incident, event, live);
            }
            (_, DomainEvent::RoadClosure(event)) => self.apply_road(event),
            (_, DomainEvent::Alert(event)) => {
                let replan = self
                    .0
                    .board
                    .write()
                    .expect("board lock")
                    .apply_alert(&event, &self.0.rules);
                self.replan(replan, live);
            }
            _ => {}
        }
    }

    /// Dispatches an incident a rule wants (re)planned, once the log is caught up.
    fn replan(&self, incident: Option<IncidentId>, live: bool) {
        if let Some(incident) = incident
            && live
        {
            self.spawn_auto(incident);
        }
    }

    /// Folds one unit event into the index (core's one fold, [`UnitIndex::apply`]) and the
    /// board.
    fn apply_unit(
        &self,
        unit: UnitId,
        event: UnitEvent,
        now: chrono::DateTime<Utc>,
        recorded_at: chrono::DateTime<Utc>,
        live: bool,
    ) {
        self.0.index.write().expect("index lock").apply(
            unit,
            &event,
            recorded_at,
            now,
            &self.0.stations,
        );
        let replan =
            self.0
                .board
                .write()
                .expect("board lock")
                .apply_unit(unit, &event, &self.0.rules);
        self.replan(replan, live);
    }

    fn apply_incident(&self, incident: IncidentId, event: IncidentEvent, live: bool) {
        let replan = self.0.board.write().expect("board lock").apply_incident(
            incident,
            &event,
            &self.0.rules,
        );
        self.replan(replan, live);
    }

    /// The recommendation for an open incident, with the preemptions a rule allows for what
    /// it cannot fill.
    pub fn recommendation(
        &self,
        incident: IncidentId,
    ) -> Result<RecommendationAnswer, DispatchError> {
        self.recommendation_without(incident, &[])
    }

    /// The recommendation for `incident` leaving out `refused` too (units an automatic
    /// dispatch found taken, before this node's index shows them taken).
    fn recommendation_without(
        &self,
        incident: IncidentId,
        refused: &[UnitId],
    ) -> Result<RecommendationAnswer, DispatchError> {
        let board = self.0.board.read().expect("board lock");
        let index = self.0.index.read().expect("index lock");
        let open = board
            .incident(incident)
            .ok_or(DispatchError::NoOpenIncident(incident))?;
        let mut needs = board
            .needs(incident, &self.0.plans, &index)
            .map_err(|e| match e {
                NeedsError::NotOpen(id) => DispatchError::NoOpenIncident(id),
                NeedsError::NoPlan {
                    incident_type,
                    priority,
                } => DispatchError::NoPlan {
                    incident_type,
                    priority,
                },
            })?;
        needs.exclude.extend_from_slice(refused);
        let recommendation =
            recommend(&index, &needs.spec, &needs.plan, &needs.exclude, Utc::now())
                .map_err(|e| DispatchError::Recommend(e.to_string()))?;
        let preempt = if recommendation.shortfall.is_empty() {
            Vec::new()
        } else {
            preemptions(
                &index,
                &self.0.rules,
                &needs.spec,
                open.priority,
                &recommendation.shortfall,
                &board.commitments(incident),
            )
        };
        let call_signs = recommendation
            .kinds
            .iter()
            .flat_map(|k| k.candidates.iter())
            .map(|c| c.unit)
            .chain(preempt.iter().map(|p| p.unit))
            .filter_map(|u| board.call_sign(u).map(|c| (u, c.to_owned())))
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
                ..EventMetadata::default()
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
        authority: Authority,
    ) -> Result<Executed<serde_json::Value>, CommandError> {
        let now = Utc::now();
        let plans = &self.0.plans;
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
                // A rule sends only what the incident's run card, as the decision reads it,
                // still needs; an operator may send anything.
                let plan = match authority {
                    Authority::Operator => None,
                    Authority::Rule => Some(
                        s.incident(incident)?
                            .incident
                            .as_ref()
                            .and_then(|i| plans.plan_for(i.incident_type, i.priority))
                            .cloned()
                            .unwrap_or(ResponsePlan {
                                incident_type: IncidentType::Other,
                                priority: None,
                                units: Vec::new(),
                            }),
                    ),
                };
                let authority = plan
                    .as_ref()
                    .map_or(combined::Authority::Operator, combined::Authority::Rule);
                let (changes, results) =
                    combined::assign_units(s, incident, &tasks, authority, now)?;
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
    ) -> Result<Option<Position>, CommandError> {
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
        let executed = self
            .assign(&command, incident, &[unit], Authority::Rule)
            .await?;
        Ok((executed.answer["assigned"] == 1).then_some(executed.record_position))
    }

    /// Dispatches an incident a rule allows, filling its plan with the recommended units.
    pub async fn auto_dispatch(&self, incident: IncidentId) -> Result<usize, DispatchError> {
        let Some(rule) = self
            .0
            .board
            .read()
            .expect("board lock")
            .auto_rule(incident, &self.0.rules)
            .map(|r| r.name.clone())
        else {
            return Ok(0);
        };
        let _turn = self.0.auto_turn.lock().await;
        let mut assigned = 0;
        let mut refused: Vec<UnitId> = Vec::new();
        for _ in 0..MAX_AUTO_TRIES {
            let answer = self.recommendation_without(incident, &refused)?;
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
                    Ok(Some(position)) => {
                        assigned += 1;
                        self.0
                            .board
                            .write()
                            .expect("board lock")
                            .mark_sent(incident, unit);
                        // The next automatic dispatch chooses from an index that has this one.
                        self.wait_for(position, AUTO_CATCH_UP).await;
                    }
                    Ok(None) => {
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
            // A refusal means this node's index was behind the log (another assignment of the
            // same unit, in a storm of alarms): the refused units are left out of the next
            // choice, made after catching up with the log as this node knows it.
            let head = self.0.runner.store().head();
            self.wait_for_head(head, AUTO_CATCH_UP).await;
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

/// On whose word the dispatcher assigns units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    /// An operator's explicit choice (an override of the run card if need be).
    Operator,
    /// A dispatch rule: only while the incident's run card still needs the unit's kind.
    Rule,
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
    use muster_core::value::{Agency, CallSign, CallerDetails, StationCode};
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
                capabilities: std::collections::BTreeSet::new(),
                at,
            },
        )
        .await;
        let executed = unit_command(
            runner,
            &format!("position-{n:04}"),
            unit,
            UnitCommand::ReportPosition {
                position: station.location,
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
            location: at,
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
        let answer = d
            .assign(&accept, incident, &[pick], Authority::Operator)
            .await
            .unwrap()
            .answer;
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

        let raise = muster_core::alert::AlertCommand::RaiseAckOverdue {
            task,
            incident,
            unit: pick,
            assigned_at: Utc::now(),
            timeout_secs: 60,
        };
        assert!(
            muster_mobile::alerts::raise_overdue(&runner, raise)
                .await
                .unwrap()
        );
        let stored = store
            .read_stream(
                &task.alert_stream(),
                muster_store::Direction::Forwards,
                muster_store::ReadFrom::Start,
                1,
            )
            .await
            .unwrap();
        assert!(
            d.wait_for(stored[0].position, Duration::from_secs(10))
                .await
        );
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
