//! The drill engine: a discrete-event simulation in virtual time that drives the real core.
//!
//! A priority queue holds timed events (a call answered, an incident entered, a dispatch, a
//! crew acknowledging, a unit turning out, a position fix along its route, an arrival, …),
//! ordered by virtual time and then by the order they were scheduled, so a run depends on
//! nothing but the scenario and the seed. Every change goes through the core's aggregates
//! (`decide` / `apply`), is encoded with the core's event schema and appended to a real
//! [`EventStore`] with the stream's expected revision; the core's reactions turn unit events
//! into incident time points. Units are chosen by the core's dispatcher ([`UnitIndex`],
//! [`recommend`], [`assign_jointly`]) over the geodata router, and move along the router's
//! road routes.
//!
//! Ids of incidents, units, tasks and events come from a generator seeded by the drill's
//! seed, and event times are virtual, so the canonical log ([`crate::log`]) is the same byte
//! for byte for the same scenario and seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use muster_core::decision::Aggregate;
use muster_core::dispatch::{
    Board, DispatchRules, Needs, PendingIncident, Stations, UnitIndex, assign_jointly, recommend,
};
use muster_core::event::{EventIds, EventSchema, encode_batch, expected_state_after};
use muster_core::ids::{AlarmId, IncidentId, SensorId, TaskId, UnitId};
use muster_core::incident::{IncidentCommand, IncidentState, ReportSource};
use muster_core::reaction::{incident_progress, sensor_follow_up};
use muster_core::runcard::ResponsePlans;
use muster_core::sensor::{
    Crossing, Reading, SensorCommand, SensorState, Threshold, ThresholdSpec,
};
use muster_core::unit::{UnitCommand, UnitState, UnitStatus};
use muster_core::value::{
    Agency, CallSign, CallerDetails, Disposition, IncidentType, MetricName, Priority, SensorKind,
    Service, StationCode, UnitKind,
};
use muster_geodata::routing::RoadCondition;
use muster_geodata::{LatLon, Router};
use muster_store::{EventMetadata, EventStore, MemoryStore, StreamName, StreamRevision};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::drive::{Dest, Path, agency, may_transport, nearest_hospital};
use crate::scenario::{Policy, Range, Scenario, Scripted};

/// Everything that can go wrong while a drill runs (the scenario was checked before).
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The city cannot be routed on.
    #[error("the city cannot be routed on: {0}")]
    City(String),
    /// The store refused an append (a bug: the engine holds the only writer).
    #[error("the store refused an append to {stream}: {reason}")]
    Store {
        /// The stream.
        stream: String,
        /// Why.
        reason: String,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] muster_core::EncodeError),
}

/// Options that are not part of the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The seed (ids, calls, behaviour).
    pub seed: u64,
    /// Overrides the scenario's policy.
    pub policy: Option<Policy>,
    /// Calls to use instead of the generator's (a replayed log's, for "what if" runs).
    pub calls: Option<Vec<Call>>,
}

/// A call for help: when it was answered and what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Milliseconds from the drill's start when the call was answered.
    pub at_ms: i64,
    /// Where.
    pub location: LatLon,
    /// What.
    pub incident_type: IncidentType,
    /// How urgent.
    pub priority: Priority,
    /// From a sensor alarm rather than the hotline.
    pub sensor: bool,
    /// Milliseconds from answering to entry, if known (a replayed call); else drawn.
    pub entry_after_ms: Option<i64>,
}

/// What a finished drill hands back.
#[derive(Debug)]
pub struct DrillOutcome {
    /// The store holding the log.
    pub store: Arc<MemoryStore>,
    /// Calls handled.
    pub calls: usize,
    /// Events appended.
    pub events: u64,
    /// Commands the core refused (expected: races the engine provokes on purpose are none,
    /// so this is normally 0; reported so a change in the core shows up).
    pub refusals: u64,
    /// Routes computed.
    pub routes: u64,
    /// Virtual end.
    pub end: DateTime<Utc>,
    /// The policy used.
    pub policy: Policy,
}

/// Progress callback: virtual milliseconds done, of total.
pub type Progress<'a> = &'a mut dyn FnMut(i64, i64);

// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    CallAnswered(usize),
    Entry(usize),
    Dispatch(usize),
    DispatchRound,
    Ack { unit: usize, epoch: u64 },
    Decline { unit: usize, epoch: u64 },
    NoAnswer { unit: usize, epoch: u64 },
    Turnout { unit: usize, epoch: u64 },
    Fix { unit: usize, epoch: u64 },
    Arrive { unit: usize, epoch: u64 },
    SceneDone { unit: usize, epoch: u64 },
    HospitalDone { unit: usize, epoch: u64 },
    ShiftStart(usize),
    ShiftEnd(usize),
    Closure { index: usize, on: bool },
    Retry,
    StaleRefresh,
}

#[derive(Debug)]
struct Movement {
    start_ms: i64,
    path: Path,
    dest: Dest,
}

#[derive(Debug)]
struct SimUnit {
    id: UnitId,
    kind: UnitKind,
    stream: StreamName,
    revision: Option<StreamRevision>,
    state: UnitState,
    station: LatLon,
    pos: LatLon,
    epoch: u64,
    movement: Option<Movement>,
    incident: Option<usize>,
    off_duty: bool,
}

#[derive(Debug)]
struct SimIncident {
    id: IncidentId,
    stream: StreamName,
    revision: Option<StreamRevision>,
    state: IncidentState,
    call: Call,
    assigned: Vec<usize>,
    waiting: bool,
    closed: bool,
    any_on_scene: bool,
}

struct Engine<'a> {
    scenario: &'a Scenario,
    policy: Policy,
    store: Arc<MemoryStore>,
    router: Arc<Router>,
    index: UnitIndex,
    /// The fleet's home stations, for the index.
    stations: Stations,
    /// The open incidents as the dispatcher plans them: what each still needs.
    board: Board,
    /// No rule dispatches by itself here: the drill's policy dispatches every call.
    rules: DispatchRules,
    plans: ResponsePlans,
    start: DateTime<Utc>,
    now_ms: i64,
    end_ms: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    ids: ChaCha8Rng,
    behaviour: ChaCha8Rng,
    units: Vec<SimUnit>,
    incidents: Vec<SimIncident>,
    incident_by_id: HashMap<IncidentId, usize>,
    calls: Vec<Call>,
    /// The calls are a recording's, scripted calls included: script only road closures.
    replaying: bool,
    kinds_in_fleet: BTreeMap<UnitKind, u32>,
    round_pending: Vec<usize>,
    round_scheduled: bool,
    retry_scheduled: bool,
    waiting: std::collections::BTreeSet<usize>,
    /// Units freed since the last retry round, by kind, in the order they were freed.
    freed: BTreeMap<UnitKind, Vec<usize>>,
    closures: Vec<Vec<u32>>,
    events: u64,
    refusals: u64,
    routes: u64,
    metadata: EventMetadata,
}

/// Runs a drill to its end.
pub fn run(
    scenario: &Scenario,
    options: &RunOptions,
    progress: Progress<'_>,
) -> Result<DrillOutcome, DrillError> {
    let router =
        Arc::new(Router::new(scenario.city.clone()).map_err(|e| DrillError::City(e.to_string()))?);
    run_with_router(scenario, options, router, progress)
}

/// Runs a drill on a router already prepared for the scenario's city (benchmarks prepare it
/// once). Road closures change the router's conditions and restore them at the end.
pub fn run_with_router(
    scenario: &Scenario,
    options: &RunOptions,
    router: Arc<Router>,
    progress: Progress<'_>,
) -> Result<DrillOutcome, DrillError> {
    let (mut engine, calls_rng) = Engine::new(scenario, options, router);
    let result = engine.run(progress, calls_rng);
    // Leave the router as it was found.
    if !engine.closures.is_empty() {
        engine.router.set_conditions(Default::default()).wait();
    }
    result
}

impl<'a> Engine<'a> {
    /// An engine at the start of a drill, nothing registered or scheduled yet, and the random
    /// stream of the call generator (the scripted events draw from it next).
    fn new(
        scenario: &'a Scenario,
        options: &RunOptions,
        router: Arc<Router>,
    ) -> (Self, ChaCha8Rng) {
        let seed = options.seed;
        let mut calls_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6361_6c6c);
        let end_ms = (scenario.duration_hours * 3_600_000.0).round() as i64;
        let calls = match &options.calls {
            Some(c) => c.iter().filter(|c| c.at_ms <= end_ms).cloned().collect(),
            None => crate::calls::generate(scenario, &mut calls_rng, end_ms),
        };
        let engine = Engine {
            scenario,
            policy: options.policy.unwrap_or(scenario.dispatch.policy),
            store: Arc::new(MemoryStore::new()),
            index: UnitIndex::new(router.clone(), muster_core::dispatch::DEFAULT_STALE_AFTER),
            stations: Stations::default(),
            board: Board::default(),
            rules: DispatchRules {
                auto_dispatch: Vec::new(),
                ..DispatchRules::default()
            },
            router,
            plans: ResponsePlans::default_set(),
            start: scenario.start,
            now_ms: 0,
            end_ms,
            seq: 0,
            queue: BinaryHeap::new(),
            ids: ChaCha8Rng::seed_from_u64(seed ^ 0x0069_6473),
            behaviour: ChaCha8Rng::seed_from_u64(seed ^ 0x0062_6568_6176),
            units: Vec::new(),
            incidents: Vec::new(),
            incident_by_id: HashMap::new(),
            calls,
            replaying: options.calls.is_some(),
            kinds_in_fleet: BTreeMap::new(),
            round_pending: Vec::new(),
            round_scheduled: false,
            retry_scheduled: false,
            waiting: Default::default(),
            freed: Default::default(),
            closures: Vec::new(),
            events: 0,
            refusals: 0,
            routes: 0,
            metadata: EventMetadata {
                actor: Some("drill".into()),
                source: Some("drill".into()),
                ..EventMetadata::default()
            },
        };
        (engine, calls_rng)
    }
}

impl Engine<'_> {
    fn at(&self) -> DateTime<Utc> {
        self.start + Duration::milliseconds(self.now_ms)
    }

    fn schedule(&mut self, at_ms: i64, ev: Ev) {
        self.seq += 1;
        self.queue
            .push(Reverse((at_ms.max(self.now_ms), self.seq, ev)));
    }

    fn new_uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.ids.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn draw(&mut self, r: Range) -> f64 {
        if r.max > r.min {
            self.behaviour.random_range(r.min..=r.max)
        } else {
            r.min
        }
    }

    fn draw_ms(&mut self, r: Range) -> i64 {
        (self.draw(r) * 1000.0).round() as i64
    }

    fn append<E: EventSchema>(
        &mut self,
        stream: &StreamName,
        revision: Option<StreamRevision>,
        events: &[E],
    ) -> Result<Option<StreamRevision>, DrillError> {
        if events.is_empty() {
            return Ok(revision);
        }
        let cause = self.new_uuid();
        let mut metadata = self.metadata.clone();
        metadata.occurred_at = Some(self.at());
        let batch = encode_batch(stream, events, EventIds::CausedBy(cause), &metadata)?;
        let result = futures::executor::block_on(self.store.append(
            stream,
            expected_state_after(revision),
            batch,
        ))
        .map_err(|e| DrillError::Store {
            stream: stream.to_string(),
            reason: e.to_string(),
        })?;
        self.events += events.len() as u64;
        Ok(Some(result.next_expected_revision))
    }

    /// Decides a unit command, appends its events, and runs the reactions on its incident.
    fn unit_command(&mut self, u: usize, command: UnitCommand) -> Result<bool, DrillError> {
        let (next, events) = match self.units[u].state.execute(command) {
            Ok(x) => x,
            Err(_) => {
                self.refusals += 1;
                return Ok(false);
            }
        };
        let stream = self.units[u].stream.clone();
        let rev = self.append(&stream, self.units[u].revision, &events)?;
        let unit = &mut self.units[u];
        unit.revision = rev;
        unit.state = next;
        let id = unit.id;
        let at = self.at();
        for e in &events {
            self.index.apply(id, e, at, at, &self.stations);
            self.board.apply_unit(id, e, &self.rules);
        }
        for e in &events {
            if let Some((incident, cmd)) = incident_progress(id, e)
                && let Some(&i) = self.incident_by_id.get(&incident)
            {
                self.incident_command(i, cmd)?;
            }
        }
        Ok(true)
    }

    fn incident_command(&mut self, i: usize, command: IncidentCommand) -> Result<bool, DrillError> {
        let (next, events) = match self.incidents[i].state.execute(command) {
            Ok(x) => x,
            Err(_) => {
                self.refusals += 1;
                return Ok(false);
            }
        };
        let stream = self.incidents[i].stream.clone();
        let rev = self.append(&stream, self.incidents[i].revision, &events)?;
        self.incidents[i].revision = rev;
        self.incidents[i].state = next;
        let id = self.incidents[i].id;
        for e in &events {
            self.board.apply_incident(id, e, &self.rules);
        }
        Ok(true)
    }

    fn run(
        &mut self,
        progress: Progress<'_>,
        mut calls_rng: ChaCha8Rng,
    ) -> Result<DrillOutcome, DrillError> {
        self.register_fleet()?;
        for (i, call) in self.calls.clone().iter().enumerate() {
            self.schedule(call.at_ms, Ev::CallAnswered(i));
        }
        self.script(&mut calls_rng)?;
        self.schedule(5 * 60_000, Ev::StaleRefresh);
        let mut last_report = 0;
        while let Some(Reverse((at, _, ev))) = self.queue.pop() {
            if at > self.end_ms {
                break;
            }
            self.now_ms = at;
            if at - last_report >= 60_000 {
                progress(at, self.end_ms);
                last_report = at;
            }
            self.handle(ev)?;
        }
        progress(self.end_ms, self.end_ms);
        Ok(DrillOutcome {
            store: self.store.clone(),
            calls: self.incidents.len(),
            events: self.events,
            refusals: self.refusals,
            routes: self.routes,
            end: self.start + Duration::milliseconds(self.end_ms),
            policy: self.policy,
        })
    }

    fn register_fleet(&mut self) -> Result<(), DrillError> {
        let mut numbers: BTreeMap<UnitKind, u32> = BTreeMap::new();
        for entry in &self.scenario.fleet {
            for _ in 0..entry.count {
                let n = numbers.entry(entry.kind).or_default();
                *n += 1;
                let id = UnitId::from_uuid(self.new_uuid());
                let call_sign = CallSign::parse(&format!("{}{}", prefix(entry.kind), n))
                    .expect("short call sign");
                let command = UnitCommand::Register {
                    unit_id: id,
                    kind: entry.kind,
                    call_sign,
                    agency: Agency::parse(agency(entry.kind)).expect("valid code"),
                    home_station: StationCode::parse(&entry.station)
                        .expect("station ids are codes"),
                    capabilities: entry.capabilities.clone(),
                    at: self.at(),
                };
                let u = self.units.len();
                self.units.push(SimUnit {
                    id,
                    kind: entry.kind,
                    stream: id.stream_name(),
                    revision: None,
                    state: UnitState::default(),
                    station: entry.location,
                    pos: entry.location,
                    epoch: 0,
                    movement: None,
                    incident: None,
                    off_duty: false,
                });
                self.stations.insert(&entry.station, entry.location);
                self.unit_command(u, command)?;
                *self.kinds_in_fleet.entry(entry.kind).or_default() += 1;
                if let Some((start_h, hours)) = entry.shift {
                    // Shifts keep the clock: `start_hour` is an hour of the day (UTC, like
                    // `start`), whatever hour the drill begins. Yesterday's shift may still
                    // be on when it begins.
                    let midnight = self.start.date_naive().and_time(NaiveTime::MIN).and_utc();
                    let after_midnight_ms = (self.start - midnight).num_milliseconds();
                    let mut on_now = false;
                    let mut day = -1i64;
                    loop {
                        let on =
                            day * 86_400_000 + (start_h * 3_600_000.0) as i64 - after_midnight_ms;
                        if on >= self.end_ms.max(1) {
                            break;
                        }
                        let off = on + (hours * 3_600_000.0) as i64;
                        if off > 0 {
                            on_now |= on <= 0;
                            if on >= 0 {
                                self.schedule(on, Ev::ShiftStart(u));
                            }
                            self.schedule(off, Ev::ShiftEnd(u));
                        }
                        day += 1;
                    }
                    if !on_now {
                        self.units[u].off_duty = true;
                        self.set_status(u, UnitStatus::OutOfService)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn script(&mut self, rng: &mut ChaCha8Rng) -> Result<(), DrillError> {
        for (index, event) in self.scenario.events.clone().iter().enumerate() {
            if self.replaying && !matches!(event, Scripted::RoadClosure { .. }) {
                continue;
            }
            match *event {
                Scripted::MajorIncident { .. } | Scripted::SensorStorm { .. } => {
                    for call in crate::calls::scripted(self.scenario, event, rng) {
                        self.add_call(call);
                    }
                }
                Scripted::RoadClosure {
                    at_min,
                    until_min,
                    location,
                    radius_m,
                } => {
                    let roads = self.router.roads_near(location, radius_m);
                    self.closures.push(roads);
                    self.schedule((at_min * 60_000.0) as i64, Ev::Closure { index, on: true });
                    self.schedule(
                        (until_min * 60_000.0) as i64,
                        Ev::Closure { index, on: false },
                    );
                }
            }
        }
        // Closures: keep a slot per scripted event so indexes line up.
        let mut slots = vec![Vec::new(); self.scenario.events.len()];
        let mut it = std::mem::take(&mut self.closures).into_iter();
        for (i, e) in self.scenario.events.iter().enumerate() {
            if matches!(e, Scripted::RoadClosure { .. }) {
                slots[i] = it.next().unwrap_or_default();
            }
        }
        self.closures = slots;
        Ok(())
    }

    fn add_call(&mut self, call: Call) {
        let i = self.calls.len();
        let at = call.at_ms;
        self.calls.push(call);
        self.schedule(at, Ev::CallAnswered(i));
    }

    fn handle(&mut self, ev: Ev) -> Result<(), DrillError> {
        match ev {
            Ev::CallAnswered(c) => {
                let call = &self.calls[c];
                let after = match call.entry_after_ms {
                    Some(ms) => ms,
                    None => {
                        let r = self.scenario.dispatch.entry_s;
                        self.draw_ms(r)
                    }
                };
                self.schedule(self.now_ms + after, Ev::Entry(c));
            }
            Ev::Entry(c) => self.enter(c)?,
            Ev::Dispatch(i) => match self.policy {
                Policy::Closest => self.dispatch_closest(i)?,
                Policy::Joint => {
                    self.round_pending.push(i);
                    if !self.round_scheduled {
                        self.round_scheduled = true;
                        let w = (self.scenario.dispatch.batch_window_s * 1000.0) as i64;
                        self.schedule(self.now_ms + w, Ev::DispatchRound);
                    }
                }
            },
            Ev::DispatchRound => {
                self.round_scheduled = false;
                let pending = std::mem::take(&mut self.round_pending);
                self.dispatch_jointly(pending)?;
            }
            Ev::Retry => {
                self.retry_scheduled = false;
                // Only incidents that need a kind freed since the last round can gain, and
                // each freed unit serves at most one of them: the most urgent, then oldest,
                // that has not already lost it (declined, or stood down). A unit taken since,
                // or gone off duty, serves none.
                let mut freed = std::mem::take(&mut self.freed);
                for units in freed.values_mut() {
                    units.retain(|&u| self.can_take_task(u));
                }
                let mut candidates: Vec<usize> = self.waiting.iter().copied().collect();
                candidates.sort_by_key(|&i| (self.incidents[i].call.priority, i));
                let mut waiting = Vec::new();
                for i in candidates {
                    if freed.values().all(Vec::is_empty) {
                        break;
                    }
                    let Some(needs) = self.needs(i) else { continue };
                    let mut wanted = false;
                    for need in &needs.plan.units {
                        if let Some(units) = freed.get_mut(&need.kind)
                            && let Some(at) = units
                                .iter()
                                .position(|&u| !needs.exclude.contains(&self.units[u].id))
                        {
                            units.remove(at);
                            wanted = true;
                        }
                    }
                    if wanted {
                        waiting.push(i);
                    }
                }
                match self.policy {
                    Policy::Closest => {
                        for i in waiting {
                            self.dispatch_closest(i)?;
                        }
                    }
                    Policy::Joint => self.dispatch_jointly(waiting)?,
                }
            }
            Ev::Ack { unit, epoch } if self.units[unit].epoch == epoch => {
                if let Some(task) = self.task_of(unit) {
                    self.unit_command(
                        unit,
                        UnitCommand::AcknowledgeTask {
                            task,
                            at: self.at(),
                        },
                    )?;
                }
            }
            Ev::Decline { unit, epoch } if self.units[unit].epoch == epoch => {
                if let Some(task) = self.task_of(unit) {
                    self.unit_command(
                        unit,
                        UnitCommand::DeclineTask {
                            task,
                            reason: None,
                            at: self.at(),
                        },
                    )?;
                    self.release(unit, true)?;
                }
            }
            Ev::NoAnswer { unit, epoch } if self.units[unit].epoch == epoch => {
                // Not acknowledged in time: the dispatcher stands the unit down and sends
                // another.
                let acknowledged = self.units[unit]
                    .state
                    .unit
                    .as_ref()
                    .and_then(|u| u.active_task)
                    .is_some_and(|t| t.acknowledged);
                if !acknowledged && let Some(task) = self.task_of(unit) {
                    self.unit_command(
                        unit,
                        UnitCommand::CompleteTask {
                            task,
                            at: self.at(),
                        },
                    )?;
                    self.release(unit, true)?;
                }
            }
            Ev::Turnout { unit, epoch } if self.units[unit].epoch == epoch => {
                self.set_status(unit, UnitStatus::EnRoute)?;
                let target = self.units[unit]
                    .incident
                    .map(|i| self.incidents[i].call.location);
                if let Some(target) = target {
                    self.move_unit(unit, target, Dest::Incident);
                }
            }
            Ev::Fix { unit, epoch } if self.units[unit].epoch == epoch => {
                let Some(m) = &self.units[unit].movement else {
                    return Ok(());
                };
                let (pos, heading, _) = m.path.at(self.now_ms - m.start_ms);
                let arrive_at = m.start_ms + m.path.total_ms();
                self.report_position(unit, pos, Some(heading))?;
                let next =
                    self.now_ms + (self.scenario.responders.position_interval_s * 1000.0) as i64;
                if next < arrive_at {
                    self.schedule(next, Ev::Fix { unit, epoch });
                }
            }
            Ev::Arrive { unit, epoch } if self.units[unit].epoch == epoch => self.arrive(unit)?,
            Ev::SceneDone { unit, epoch } if self.units[unit].epoch == epoch => {
                self.scene_done(unit)?
            }
            Ev::HospitalDone { unit, epoch } if self.units[unit].epoch == epoch => {
                if let Some(task) = self.task_of(unit) {
                    self.unit_command(
                        unit,
                        UnitCommand::CompleteTask {
                            task,
                            at: self.at(),
                        },
                    )?;
                    self.after_task(unit)?;
                }
            }
            Ev::ShiftStart(unit) => {
                let u = &mut self.units[unit];
                u.off_duty = false;
                if u.state
                    .unit
                    .as_ref()
                    .is_some_and(|x| x.status == UnitStatus::OutOfService)
                {
                    self.set_status(unit, UnitStatus::Available)?;
                    self.kick_retry(unit);
                }
            }
            Ev::ShiftEnd(unit) => {
                self.units[unit].off_duty = true;
                let status = self.units[unit].state.unit.as_ref().map(|x| x.status);
                if matches!(status, Some(UnitStatus::Available | UnitStatus::Returning)) {
                    self.set_status(unit, UnitStatus::OutOfService)?;
                }
            }
            Ev::Closure { index, on } => {
                let mut conditions = self.router.conditions();
                for road in &self.closures[index] {
                    if on {
                        conditions.insert(*road, RoadCondition::Closed);
                    } else {
                        conditions.remove(road);
                    }
                }
                // Waiting makes the change take effect at this virtual instant, whatever
                // the machine's speed: the drill stays deterministic.
                self.router.set_conditions(conditions).wait();
            }
            Ev::StaleRefresh => {
                self.index.refresh_stale(self.at());
                self.schedule(self.now_ms + 5 * 60_000, Ev::StaleRefresh);
            }
            // A stale event of a unit whose task or movement has changed since.
            Ev::Ack { .. }
            | Ev::Decline { .. }
            | Ev::NoAnswer { .. }
            | Ev::Turnout { .. }
            | Ev::Fix { .. }
            | Ev::Arrive { .. }
            | Ev::SceneDone { .. }
            | Ev::HospitalDone { .. } => {}
        }
        Ok(())
    }

    fn task_of(&self, unit: usize) -> Option<TaskId> {
        self.units[unit]
            .state
            .unit
            .as_ref()
            .and_then(|u| u.active_task)
            .map(|t| t.task)
    }

    /// A unit became free: incidents waiting for its kind get another round soon.
    fn kick_retry(&mut self, u: usize) {
        let units = self.freed.entry(self.units[u].kind).or_default();
        if !units.contains(&u) {
            units.push(u);
        }
        if !self.retry_scheduled && !self.waiting.is_empty() {
            self.retry_scheduled = true;
            self.schedule(self.now_ms + 1_000, Ev::Retry);
        }
    }

    /// On duty and in a status that takes a task.
    fn can_take_task(&self, u: usize) -> bool {
        let unit = &self.units[u];
        !unit.off_duty
            && unit
                .state
                .unit
                .as_ref()
                .is_some_and(|x| x.status.can_take_task())
    }

    fn enter(&mut self, c: usize) -> Result<(), DrillError> {
        let call = self.calls[c].clone();
        let id = IncidentId::from_uuid(self.new_uuid());
        let i = self.incidents.len();
        self.incidents.push(SimIncident {
            id,
            stream: id.stream_name(),
            revision: None,
            state: IncidentState::default(),
            call: call.clone(),
            assigned: Vec::new(),
            waiting: false,
            closed: false,
            any_on_scene: false,
        });
        self.incident_by_id.insert(id, i);
        let received = self.start + Duration::milliseconds(call.at_ms);
        let location = call.location;
        if call.sensor {
            // A sensor alarm: the sensor registers, its reading raises an alarm, and the
            // core's sensor rule reports the incident.
            let sensor = SensorId::from_uuid(self.new_uuid());
            let alarm = AlarmId::from_uuid(self.new_uuid());
            let metric = MetricName::parse("smoke_obscuration").expect("valid");
            let threshold = Threshold::try_from(ThresholdSpec {
                metric: metric.clone(),
                crossing: Crossing::Above,
                raise_at: 10.0,
                clear_at: 5.0,
                incident_type: call.incident_type,
                priority: call.priority,
            })
            .expect("valid threshold");
            let stream = sensor.stream_name();
            let mut state = SensorState::default();
            let mut rev = None;
            for command in [
                SensorCommand::Register {
                    sensor_id: sensor,
                    kind: SensorKind::parse("smoke_detector").expect("valid"),
                    location,
                    thresholds: vec![threshold],
                    at: received,
                },
                SensorCommand::Ingest {
                    reading: Reading::new(metric.clone(), 25.0, received).expect("finite"),
                    new_alarm: alarm,
                    new_incident: id,
                },
            ] {
                match state.execute(command) {
                    Ok((next, events)) => {
                        rev = self.append(&stream, rev, &events)?;
                        state = next;
                        for e in &events {
                            if let Some((_, cmd)) = sensor_follow_up(sensor, e) {
                                self.incident_command(i, cmd)?;
                            }
                        }
                    }
                    Err(_) => self.refusals += 1,
                }
            }
        } else {
            self.incident_command(
                i,
                IncidentCommand::Report {
                    incident_id: id,
                    source: ReportSource::Hotline,
                    location,
                    incident_type: call.incident_type,
                    priority: call.priority,
                    caller: CallerDetails::default(),
                    call_received_at: received,
                    at: self.at(),
                },
            )?;
            self.incident_command(
                i,
                IncidentCommand::Triage {
                    incident_type: call.incident_type,
                    priority: call.priority,
                    at: self.at(),
                },
            )?;
        }
        let delay = if call.sensor {
            5_000
        } else {
            self.draw_ms(self.scenario.dispatch.dispatch_s)
        };
        self.schedule(self.now_ms + delay, Ev::Dispatch(i));
        Ok(())
    }

    /// What an open incident still needs (the board's answer, less kinds the fleet does not
    /// have at all, which can never be sent); `None` once it is closed or has no plan.
    fn needs(&self, i: usize) -> Option<Needs> {
        let inc = &self.incidents[i];
        if inc.closed {
            return None;
        }
        let mut needs = self.board.needs(inc.id, &self.plans, &self.index).ok()?;
        needs
            .plan
            .units
            .retain(|u| self.kinds_in_fleet.contains_key(&u.kind));
        Some(needs)
    }

    /// Whether an incident still needs units.
    fn needs_units(&self, i: usize) -> bool {
        self.needs(i).is_some_and(|n| !n.plan.units.is_empty())
    }

    fn dispatch_closest(&mut self, i: usize) -> Result<(), DrillError> {
        let Some(needs) = self.needs(i).filter(|n| !n.plan.units.is_empty()) else {
            self.incidents[i].waiting = false;
            self.waiting.remove(&i);
            return Ok(());
        };
        let picks: Vec<UnitId> = match recommend(
            &self.index,
            &needs.spec,
            &needs.plan,
            &needs.exclude,
            self.at(),
        ) {
            Ok(rec) => rec.picks().map(|c| c.unit).collect(),
            Err(_) => Vec::new(),
        };
        for unit in picks {
            self.assign(unit, i)?;
        }
        self.update_waiting(i);
        Ok(())
    }

    fn dispatch_jointly(&mut self, pending: Vec<usize>) -> Result<(), DrillError> {
        let pending: Vec<(usize, Needs)> = pending
            .into_iter()
            .filter_map(|i| self.needs(i).map(|n| (i, n)))
            .filter(|(_, n)| !n.plan.units.is_empty())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<PendingIncident> = pending
            .iter()
            .map(|(i, needs)| PendingIncident {
                spec: needs.spec.clone(),
                priority: self.incidents[*i].call.priority,
                plan: needs.plan.clone(),
            })
            .collect();
        let plan = assign_jointly(&self.index, &batch);
        for a in &plan.assignments {
            let (i, needs) = &pending[a.incident];
            if !needs.exclude.contains(&a.unit) {
                self.assign(a.unit, *i)?;
            }
        }
        for (i, _) in pending {
            self.update_waiting(i);
        }
        Ok(())
    }

    fn update_waiting(&mut self, i: usize) {
        let waiting = self.needs_units(i);
        self.incidents[i].waiting = waiting;
        if waiting {
            self.waiting.insert(i);
        } else {
            self.waiting.remove(&i);
        }
    }

    fn assign(&mut self, unit_id: UnitId, i: usize) -> Result<(), DrillError> {
        let Some(u) = self.unit_index_of(unit_id) else {
            return Ok(());
        };
        let task = TaskId::from_uuid(self.new_uuid());
        let incident = self.incidents[i].id;
        // A returning unit is stopped where it is.
        if let Some(m) = self.units[u].movement.take() {
            self.units[u].pos = m.path.at(self.now_ms - m.start_ms).0;
        }
        if !self.unit_command(
            u,
            UnitCommand::AssignTask {
                task,
                incident,
                at: self.at(),
            },
        )? {
            return Ok(());
        }
        let unit = &mut self.units[u];
        unit.epoch += 1;
        unit.incident = Some(i);
        let epoch = unit.epoch;
        let kind = unit.kind;
        self.incidents[i].assigned.push(u);
        let r = &self.scenario.responders;
        let (p_unreachable, p_decline, ack, turnout) = (
            r.unreachable_probability,
            r.decline_probability,
            r.ack_s,
            match kind.service() {
                Service::Ems => r.turnout_ems_s,
                Service::Fire => r.turnout_fire_s,
                Service::Police => r.turnout_police_s,
            },
        );
        let x: f64 = self.behaviour.random();
        if x < p_unreachable {
            let timeout = (self.scenario.dispatch.ack_timeout_s * 1000.0) as i64;
            self.schedule(self.now_ms + timeout, Ev::NoAnswer { unit: u, epoch });
        } else if x < p_unreachable + p_decline {
            let after = self.draw_ms(ack);
            self.schedule(self.now_ms + after, Ev::Decline { unit: u, epoch });
        } else {
            let after = self.draw_ms(ack);
            let out = self.draw_ms(turnout).max(after);
            self.schedule(self.now_ms + after, Ev::Ack { unit: u, epoch });
            self.schedule(self.now_ms + out, Ev::Turnout { unit: u, epoch });
        }
        Ok(())
    }

    fn unit_index_of(&self, id: UnitId) -> Option<usize> {
        self.units.iter().position(|u| u.id == id)
    }

    /// The unit left its incident without serving it (declined, or stood down): the board
    /// has it released from the incident, which needs another unit of its kind.
    fn release(&mut self, u: usize, redispatch: bool) -> Result<(), DrillError> {
        let unit = &mut self.units[u];
        unit.epoch += 1;
        if let Some(i) = unit.incident.take() {
            let inc = &mut self.incidents[i];
            inc.assigned.retain(|x| *x != u);
            if redispatch && !inc.closed {
                self.schedule(self.now_ms, Ev::Dispatch(i));
                // It waits for a unit from now on, so the retry below looks past it.
                self.update_waiting(i);
            }
        }
        self.go_off_if_due(u)?;
        self.kick_retry(u);
        Ok(())
    }

    fn move_unit(&mut self, u: usize, target: LatLon, dest: Dest) {
        let from = self.units[u].pos;
        self.routes += 1;
        let path = Path::along(&self.router, from, target);
        let m = Movement {
            start_ms: self.now_ms,
            path,
            dest,
        };
        let arrive = self.now_ms + m.path.total_ms().max(1_000);
        let unit = &mut self.units[u];
        unit.epoch += 1;
        let epoch = unit.epoch;
        unit.movement = Some(m);
        let interval = (self.scenario.responders.position_interval_s * 1000.0) as i64;
        if self.now_ms + interval < arrive {
            self.schedule(self.now_ms + interval, Ev::Fix { unit: u, epoch });
        }
        self.schedule(arrive, Ev::Arrive { unit: u, epoch });
    }

    fn report_position(
        &mut self,
        u: usize,
        pos: LatLon,
        heading: Option<f64>,
    ) -> Result<(), DrillError> {
        self.units[u].pos = pos;
        let at = self.at();
        let position = pos;
        self.unit_command(
            u,
            UnitCommand::ReportPosition {
                position,
                heading_deg: heading,
                speed_m_s: None,
                accuracy_m: Some(10.0),
                at,
            },
        )?;
        Ok(())
    }

    fn arrive(&mut self, u: usize) -> Result<(), DrillError> {
        let Some(m) = self.units[u].movement.take() else {
            return Ok(());
        };
        let end = m.path.end().unwrap_or(self.units[u].pos);
        self.report_position(u, end, None)?;
        let epoch = self.units[u].epoch;
        match m.dest {
            Dest::Incident => {
                self.set_status(u, UnitStatus::OnScene)?;
                if let Some(i) = self.units[u].incident {
                    self.incidents[i].any_on_scene = true;
                    let t = self.incidents[i].call.incident_type;
                    let r = self.scenario.calls.on_scene(t);
                    let ms = (self.draw(r) * 60_000.0) as i64;
                    self.schedule(self.now_ms + ms, Ev::SceneDone { unit: u, epoch });
                }
            }
            Dest::Hospital => {
                self.set_status(u, UnitStatus::AtHospital)?;
                let ms = (self.draw(self.scenario.calls.at_hospital_min) * 60_000.0) as i64;
                self.schedule(self.now_ms + ms, Ev::HospitalDone { unit: u, epoch });
            }
            Dest::Station => {
                let status = self.units[u].state.unit.as_ref().map(|x| x.status);
                if status == Some(UnitStatus::Returning) {
                    self.set_status(u, UnitStatus::Available)?;
                }
                self.go_off_if_due(u)?;
            }
        }
        Ok(())
    }

    fn scene_done(&mut self, u: usize) -> Result<(), DrillError> {
        let Some(i) = self.units[u].incident else {
            return Ok(());
        };
        let t = self.incidents[i].call.incident_type;
        let transports = may_transport(self.units[u].kind, t);
        if transports
            && self
                .behaviour
                .random_bool(self.scenario.calls.transport_probability)
            && !self.scenario.city.hospitals.is_empty()
        {
            self.set_status(u, UnitStatus::Transporting)?;
            let here = self.units[u].pos;
            let hospital = nearest_hospital(&self.scenario.city, here).expect("checked non-empty");
            self.move_unit(u, hospital, Dest::Hospital);
            return Ok(());
        }
        if let Some(task) = self.task_of(u) {
            self.unit_command(
                u,
                UnitCommand::CompleteTask {
                    task,
                    at: self.at(),
                },
            )?;
        }
        self.after_task(u)
    }

    /// The unit's task is complete: close the incident if it was the last unit, head home.
    fn after_task(&mut self, u: usize) -> Result<(), DrillError> {
        if let Some(i) = self.units[u].incident.take() {
            self.incidents[i].assigned.retain(|x| *x != u);
            let inc = &self.incidents[i];
            if inc.assigned.is_empty() && inc.any_on_scene && !inc.closed {
                self.incidents[i].closed = true;
                self.incidents[i].waiting = false;
                self.waiting.remove(&i);
                self.incident_command(
                    i,
                    IncidentCommand::Close {
                        disposition: Disposition::Resolved,
                        at: self.at(),
                    },
                )?;
            }
        }
        let station = self.units[u].station;
        self.move_unit(u, station, Dest::Station);
        self.go_off_if_due(u)?;
        self.kick_retry(u);
        Ok(())
    }

    /// The unit's status changes now (a crew's report or a shift).
    fn set_status(&mut self, u: usize, to: UnitStatus) -> Result<bool, DrillError> {
        self.unit_command(u, UnitCommand::ChangeStatus { to, at: self.at() })
    }

    fn go_off_if_due(&mut self, u: usize) -> Result<(), DrillError> {
        let status = self.units[u].state.unit.as_ref().map(|x| x.status);
        if self.units[u].off_duty
            && matches!(status, Some(UnitStatus::Available | UnitStatus::Returning))
        {
            self.set_status(u, UnitStatus::OutOfService)?;
        }
        Ok(())
    }
}

/// The call-sign prefix of a kind (`E` for engines, `M` for ALS ambulances, …).
pub(crate) fn prefix(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Engine => "E",
        UnitKind::Ladder => "L",
        UnitKind::HeavyRescue => "R",
        UnitKind::Hazmat => "HM",
        UnitKind::Tanker => "T",
        UnitKind::Brush => "B",
        UnitKind::Boat => "BT",
        UnitKind::FireCommand => "C",
        UnitKind::AlsAmbulance => "M",
        UnitKind::BlsAmbulance => "A",
        UnitKind::EmsSupervisor => "EMS",
        UnitKind::PatrolCar => "P",
        UnitKind::PoliceSupervisor => "PS",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// One ambulance, no declines or silent devices unless a test makes them, and no delays
    /// between a call, its entry and its dispatch.
    const ONE_AMBULANCE: &str = r#"
name = "one ambulance"
start = "2026-03-02T12:00:00Z"
duration_hours = 1

[city]
bundled = "helsinki"

[dispatch]
entry_s = [0, 0]
dispatch_s = [0, 0]

[responders]
ack_s = [10, 10]
turnout_ems_s = [60, 60]
decline_probability = 0
unreachable_probability = 0

[calls]
per_day = 0

[[fleet]]
stations = "st-ambulance-A1"
kind = "bls_ambulance"
count = 1
"#;

    fn medical_call(scenario: &Scenario, address: usize) -> Call {
        Call {
            at_ms: 0,
            location: scenario.city.addresses[address].location,
            incident_type: IncidentType::Medical,
            priority: Priority::P3,
            sensor: false,
            entry_after_ms: Some(0),
        }
    }

    /// Handles the queued events up to `until_ms`.
    fn run_until(engine: &mut Engine<'_>, until_ms: i64) {
        while let Some(Reverse((at, _, _))) = engine.queue.peek()
            && *at <= until_ms
        {
            let Reverse((at, _, ev)) = engine.queue.pop().expect("peeked");
            engine.now_ms = at;
            engine.handle(ev).expect("the drill runs");
        }
        engine.now_ms = until_ms;
    }

    #[test]
    fn a_unit_that_declines_one_incident_goes_to_the_next_waiting_one() {
        let scenario = Scenario::parse(Path::new("one-ambulance.toml"), ONE_AMBULANCE)
            .expect("the test scenario is valid");
        let router = Arc::new(Router::new(scenario.city.clone()).expect("routable"));
        let calls = vec![medical_call(&scenario, 0), medical_call(&scenario, 1)];
        let options = RunOptions {
            seed: 1,
            policy: None,
            calls: Some(calls),
        };
        let (mut engine, _) = Engine::new(&scenario, &options, router);
        engine.register_fleet().unwrap();
        engine.enter(0).unwrap();
        engine.enter(1).unwrap();
        run_until(&mut engine, 0);
        // The only ambulance went to the first incident; the second waits for it.
        assert_eq!(engine.incidents[0].assigned, vec![0]);
        assert!(engine.incidents[1].waiting);

        // The crew declines the first incident.
        let epoch = engine.units[0].epoch;
        engine.handle(Ev::Decline { unit: 0, epoch }).unwrap();
        run_until(&mut engine, 5_000);

        // The first incident will not get it again; the second, waiting, does.
        assert_eq!(engine.incidents[1].assigned, vec![0]);
        assert!(engine.incidents[0].waiting && engine.incidents[0].assigned.is_empty());
        assert_eq!(engine.refusals, 0);
    }

    /// The unit's shift events as (hours from the drill's start, on duty).
    fn shift_of(start: &str, shift: &str) -> (bool, Vec<(f64, bool)>) {
        let text = ONE_AMBULANCE
            .replace("2026-03-02T12:00:00Z", start)
            .replace("duration_hours = 1", "duration_hours = 24")
            .replace("count = 1\n", &format!("count = 1\nshift = {shift}\n"));
        let scenario = Scenario::parse(Path::new("shift.toml"), &text).expect("valid");
        let router = Arc::new(Router::new(scenario.city.clone()).expect("routable"));
        let options = RunOptions {
            seed: 1,
            policy: None,
            calls: Some(Vec::new()),
        };
        let (mut engine, _) = Engine::new(&scenario, &options, router);
        engine.register_fleet().unwrap();
        let mut events: Vec<(i64, u64, Ev)> = engine.queue.drain().map(|Reverse(e)| e).collect();
        events.sort();
        let changes = events
            .into_iter()
            .filter_map(|(at, _, ev)| match ev {
                Ev::ShiftStart(_) => Some((at as f64 / 3_600_000.0, true)),
                Ev::ShiftEnd(_) => Some((at as f64 / 3_600_000.0, false)),
                _ => None,
            })
            .collect();
        (!engine.units[0].off_duty, changes)
    }

    #[test]
    fn shifts_keep_the_clock_whatever_hour_the_drill_begins() {
        let noon_to_midnight = "{ start_hour = 12, hours = 12 }";
        // A drill from noon: the noon-to-midnight crew is on from the start.
        assert_eq!(
            shift_of("2026-03-02T12:00:00Z", noon_to_midnight),
            (true, vec![(0.0, true), (12.0, false)])
        );
        // A drill from midnight: on at noon, off at midnight.
        assert_eq!(
            shift_of("2026-03-02T00:00:00Z", noon_to_midnight),
            (false, vec![(12.0, true), (24.0, false)])
        );
        // A night shift, 20:00 to 06:00, seen from a drill that begins at 02:00: last night's
        // crew goes off at 06:00, tonight's comes on at 20:00 and off after the drill.
        assert_eq!(
            shift_of("2026-03-02T02:00:00Z", "{ start_hour = 20, hours = 10 }"),
            (true, vec![(4.0, false), (18.0, true), (28.0, false)])
        );
    }
}
