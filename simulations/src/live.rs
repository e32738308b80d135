//! Live drills: a scenario played against a running `muster serve` in wall time (scaled by a
//! speed), through the same interfaces real people use, so operators train on the real wall
//! display and the server's own dispatcher decides:
//!
//! - **Calls** come from the scenario's generator (and its scripted major incidents and
//!   sensor storms) and are entered through the operator API (`POST /api/incidents`; sensor
//!   alarms as sensor registrations and readings).
//! - **The operator** consults the server's recommendation for each incident and sends it
//!   (`GET …/recommendation`, `POST …/dispatch`), checks again while the incident is open
//!   (a declined task, or one not acknowledged in time, needs a replacement), and closes the
//!   incident when its last unit has cleared.
//! - **Each unit** of the scenario's fleet is registered through the API and gets a device
//!   token (`POST /api/units/{id}/device-token`); a simulated crew device connects to the
//!   mobile gateway with it and works the tasks the server pushes: it acknowledges (or, now
//!   and then, declines, or stays silent as a device out of reach), turns out, drives the
//!   road route reporting positions, reports on scene, transports to hospital, completes the
//!   task and drives back to its station.
//!
//! - **Road closures** of the scenario are entered (`POST /api/roads/closures`) and lifted
//!   at their times, so the server's dispatcher routes around them.
//!
//! Durations come from the scenario and are divided by the speed; the server stamps events
//! with the wall clock, so at speeds above 1 its response times are compressed by the speed.
//! Every unit stays on duty (shifts are not played).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use muster_core::ids::{IncidentId, TaskId, UnitId};
use muster_core::unit::UnitStatus;
use muster_core::value::{IncidentType, Service, UnitKind};
use muster_geodata::{LatLon, Router};
use muster_mobile::client::{Client, ClientConfig, ClientEvent};
use muster_mobile::protocol::TaskState;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::drive::{Dest, Path, agency, may_transport, nearest_hospital};
use crate::engine::Call;
use crate::scenario::{Range, Scenario, Scripted};

/// Namespace of the ids of units a live drill registers: the same scenario registers the
/// same units on every run, so a second run reuses them.
const UNIT_NAMESPACE: Uuid = Uuid::from_u128(0x6d75_7374_6572_6c69_7665_2d75_6e69_7401);

/// How often (virtual seconds) the operator looks again at an open incident.
const RECHECK_S: f64 = 30.0;

/// Least wall time between a device's position reports, seconds: at high speeds a device
/// reports less often than the scenario says rather than flood the gateway (which allows
/// a device 20 messages a second).
const MIN_FIX_WALL_S: f64 = 0.5;

/// How a live drill runs.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The server's address, such as `http://127.0.0.1:8080` or
    /// `https://dispatch.example.org:8443`.
    pub server: String,
    /// An operator's token.
    pub token: String,
    /// The mobile gateway's address (`wss://host:port` or `ws://host:port`); `None`: the
    /// server's host and the gateway port the server names, `wss` when the server's address
    /// is `https`.
    pub gateway: Option<String>,
    /// Whom the certificates of an https server and a wss gateway must be issued by
    /// ([`crate::server::client_tls`]); `None`: the system's roots. Never skipped.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Virtual seconds per wall second.
    pub speed: f64,
    /// Seed of the calls and the crews' behaviour.
    pub seed: u64,
    /// Virtual hours of calls; `None`: the scenario's duration.
    pub hours: Option<f64>,
    /// Start over (with the next seed) when the calls run out, until stopped.
    pub repeat: bool,
    /// How long (virtual hours) incidents still open when the calls end may run their
    /// course before the drill stops.
    pub drain_hours: f64,
}

/// What a live drill did so far.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LiveStats {
    /// Units registered (or found registered) and played.
    pub units: usize,
    /// Device connections established (reconnections included).
    pub connections: usize,
    /// Device connections lost.
    pub disconnects: usize,
    /// Calls entered (hotline and sensor alarms).
    pub calls: usize,
    /// Recommendations read.
    pub recommendations: usize,
    /// Units the server's dispatch assigned on the operator's request.
    pub units_sent: usize,
    /// Tasks the devices received.
    pub tasks_received: usize,
    /// Tasks acknowledged.
    pub acknowledged: usize,
    /// Tasks declined.
    pub declined: usize,
    /// Tasks left unanswered (a device out of reach).
    pub unanswered: usize,
    /// Tasks completed by the crews.
    pub completed: usize,
    /// Position reports sent.
    pub positions: usize,
    /// Incidents the operator closed.
    pub closed: usize,
    /// Road closures entered.
    pub road_closures: usize,
    /// Device commands the gateway refused.
    pub device_refusals: usize,
    /// API calls the server refused (4xx).
    pub api_refusals: usize,
    /// A few refusals, for the operator to read.
    pub examples: Vec<String>,
    /// Virtual hours played.
    pub virtual_hours: f64,
}

impl LiveStats {
    /// Incidents open now: entered and not yet closed.
    pub fn open_incidents(&self) -> usize {
        self.calls - self.closed
    }
}

type Shared = Arc<Mutex<LiveStats>>;

fn note(stats: &Shared, f: impl FnOnce(&mut LiveStats)) {
    f(&mut stats.lock().expect("stats lock"));
}

fn refused(stats: &Shared, what: String) {
    tracing::warn!("live drill: refused: {what}");
    note(stats, |s| {
        s.api_refusals += 1;
        if s.examples.len() < 8 {
            s.examples.push(what);
        }
    });
}

/// The wall clock scaled to the drill's virtual time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    speed: f64,
}

impl Clock {
    fn wall(&self, virtual_s: f64) -> Duration {
        Duration::from_secs_f64((virtual_s / self.speed).max(0.0))
    }

    fn at(&self, virtual_ms: i64) -> Instant {
        self.start + self.wall(virtual_ms as f64 / 1000.0)
    }

    fn virtual_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * self.speed
    }
}

fn draw(rng: &mut ChaCha8Rng, r: Range) -> f64 {
    if r.max > r.min {
        rng.random_range(r.min..r.max)
    } else {
        r.min
    }
}

// ---------------------------------------------------------------------------------------------
// The operator API

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    run: Uuid,
    stats: Shared,
}

enum Answer {
    Ok(Value),
    Refused(u16, Value),
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token);
            if let Some(body) = &body {
                request = request
                    .header(
                        "Idempotency-Key",
                        format!("live-{}-{}", self.run, Uuid::now_v7().simple()),
                    )
                    .json(body);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let value: Value = response.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        return Ok(Answer::Ok(value));
                    }
                    if status.is_client_error() {
                        return Ok(Answer::Refused(status.as_u16(), value));
                    }
                    if attempt >= 5 {
                        bail!("{method} {path}: the server failed with {status}: {value}");
                    }
                }
                Err(e) if attempt >= 5 => {
                    return Err(e).with_context(|| format!("{method} {path}: no answer"));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }

    /// POST; a refusal is counted and noted, and answers `None`.
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Option<Value>> {
        match self.send(reqwest::Method::POST, path, Some(body)).await? {
            Answer::Ok(v) => Ok(Some(v)),
            Answer::Refused(status, v) => {
                refused(&self.stats, format!("POST {path}: {status} {v}"));
                Ok(None)
            }
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        match self.send(reqwest::Method::GET, path, None).await? {
            Answer::Ok(v) => Ok(Some(v)),
            Answer::Refused(status, v) => {
                refused(&self.stats, format!("GET {path}: {status} {v}"));
                Ok(None)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Incidents, as the operator keeps track of them

#[derive(Debug, Default)]
struct Board {
    incidents: HashMap<IncidentId, Tracked>,
}

#[derive(Debug, Default)]
struct Tracked {
    /// Units working a task of it now.
    working: BTreeSet<UnitId>,
    /// Tasks completed by a crew.
    cleared: usize,
    closed: bool,
    changed: Arc<Notify>,
}

type SharedBoard = Arc<Mutex<Board>>;

fn board_update(board: &SharedBoard, incident: IncidentId, f: impl FnOnce(&mut Tracked)) {
    let mut b = board.lock().expect("board lock");
    let t = b.incidents.entry(incident).or_default();
    f(t);
    t.changed.notify_one();
}

// ---------------------------------------------------------------------------------------------
// Units and their devices

#[derive(Debug, Clone)]
struct UnitSpec {
    id: UnitId,
    kind: UnitKind,
    station: LatLon,
}

fn fleet(scenario: &Scenario) -> Vec<(UnitSpec, Value)> {
    let mut numbers: HashMap<UnitKind, u32> = HashMap::new();
    let mut units = Vec::new();
    for entry in &scenario.fleet {
        for _ in 0..entry.count {
            let n = numbers.entry(entry.kind).or_default();
            *n += 1;
            let call_sign = format!("{}{}", crate::engine::prefix(entry.kind), n);
            let id = UnitId::from_uuid(Uuid::new_v5(
                &UNIT_NAMESPACE,
                format!("{}\u{0}{call_sign}", scenario.name).as_bytes(),
            ));
            let body = json!({
                "id": id,
                "kind": entry.kind,
                "call_sign": call_sign,
                "agency": agency(entry.kind),
                "home_station": entry.station,
                "capabilities": entry.capabilities,
                "location": entry.location,
            });
            units.push((
                UnitSpec {
                    id,
                    kind: entry.kind,
                    station: entry.location,
                },
                body,
            ));
        }
    }
    units
}

/// A drive under way: its path (in virtual milliseconds) and when it started.
#[derive(Debug)]
struct Drive {
    started: Instant,
    path: Path,
    dest: Dest,
}

impl Drive {
    fn new(router: &Router, from: LatLon, to: LatLon, dest: Dest) -> Self {
        Self {
            started: Instant::now(),
            path: Path::along(router, from, to),
            dest,
        }
    }
}

/// What a crew is doing.
#[derive(Debug)]
enum Phase {
    /// At the station or parked, waiting for a task.
    Idle,
    /// A task arrived; the crew answers at `wake`.
    Answering { decline: bool },
    /// The device is out of reach: the task goes unanswered until `wake`, then is declined.
    OutOfReach,
    /// Acknowledged; turning out at `wake`.
    TurningOut,
    /// Driving; `wake` is the next position report or the arrival.
    Driving(Drive),
    /// On scene until `wake`.
    OnScene,
    /// At hospital until `wake`.
    AtHospital,
}

#[derive(Debug, Clone, Copy)]
struct Job {
    task: TaskId,
    incident: IncidentId,
    location: LatLon,
    incident_type: IncidentType,
}

struct Device {
    unit: UnitSpec,
    client: Client,
    router: Arc<Router>,
    scenario: Arc<Scenario>,
    clock: Clock,
    rng: ChaCha8Rng,
    stats: Shared,
    board: SharedBoard,
    /// The server's acknowledgement timeout, wall seconds.
    ack_timeout_s: f64,
    pos: LatLon,
    phase: Phase,
    wake: Option<Instant>,
    job: Option<Job>,
    /// The status this device last caused or saw.
    status: Option<UnitStatus>,
}

impl Device {
    fn after(&self, virtual_s: f64) -> Instant {
        Instant::now() + self.clock.wall(virtual_s)
    }

    fn set(&mut self, phase: Phase, wake: Option<Instant>) {
        self.phase = phase;
        self.wake = wake;
    }

    fn send_status(&mut self, status: UnitStatus) {
        self.client.status(status);
        self.status = Some(status);
    }

    fn drive_to(&mut self, to: LatLon, dest: Dest) {
        let drive = Drive::new(&self.router, self.pos, to, dest);
        let interval = self.fix_interval_s();
        let first = (interval * 1000.0).min(drive.path.total_ms() as f64) / 1000.0;
        let wake = self.after(first.max(0.001));
        self.set(Phase::Driving(drive), Some(wake));
    }

    /// Virtual seconds between position reports.
    fn fix_interval_s(&self) -> f64 {
        self.scenario
            .responders
            .position_interval_s
            .max(MIN_FIX_WALL_S * self.clock.speed)
    }

    fn go_home(&mut self) {
        if self.pos.haversine_distance_m(self.unit.station) > 30.0 {
            self.drive_to(self.unit.station, Dest::Station);
        } else {
            if self.status == Some(UnitStatus::Returning) {
                self.send_status(UnitStatus::Available);
            }
            self.set(Phase::Idle, None);
        }
    }

    /// Where the unit is now, if it is driving (the drive is stopped there).
    fn stop_driving(&mut self) {
        if let Phase::Driving(d) = &self.phase {
            let ms = (d.started.elapsed().as_secs_f64() * self.clock.speed * 1000.0) as i64;
            self.pos = d.path.at(ms).0;
        }
    }

    fn end_job(&mut self, completed: bool) {
        if let Some(job) = self.job.take() {
            let unit = self.unit.id;
            board_update(&self.board, job.incident, |t| {
                t.working.remove(&unit);
                if completed {
                    t.cleared += 1;
                }
            });
        }
    }

    fn on_task(
        &mut self,
        task: TaskId,
        incident: IncidentId,
        location: Option<LatLon>,
        t: Option<IncidentType>,
    ) {
        if self.job.is_some_and(|j| j.task == task) {
            return;
        }
        self.stop_driving();
        // A new task replaces whatever the crew did (the server only assigns a unit that is
        // free or returning).
        self.end_job(false);
        let location = location.unwrap_or(self.pos);
        self.job = Some(Job {
            task,
            incident,
            location,
            incident_type: t.unwrap_or(IncidentType::Other),
        });
        self.status = Some(UnitStatus::Dispatched);
        let unit = self.unit.id;
        board_update(&self.board, incident, |t| {
            t.working.insert(unit);
        });
        note(&self.stats, |s| s.tasks_received += 1);
        let r = self.scenario.responders.clone();
        let x: f64 = self.rng.random();
        if x < r.unreachable_probability {
            // Silent until well past the server's timeout, then the crew declines.
            let wake = Instant::now() + Duration::from_secs_f64(self.ack_timeout_s * 1.5 + 1.0);
            note(&self.stats, |s| s.unanswered += 1);
            self.set(Phase::OutOfReach, Some(wake));
        } else {
            let decline = x < r.unreachable_probability + r.decline_probability;
            let ack = draw(&mut self.rng, r.ack_s);
            let wake = self.after(ack);
            self.set(Phase::Answering { decline }, Some(wake));
        }
    }

    fn on_wake(&mut self) {
        tracing::debug!(unit = %self.unit.id, phase = ?self.phase_name(), job = ?self.job.map(|j| j.task), "live drill: device wakes");
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        let out_of_reach = matches!(phase, Phase::OutOfReach);
        self.wake = None;
        match phase {
            Phase::Idle => {}
            Phase::Answering { decline: true } | Phase::OutOfReach => {
                if let Some(job) = self.job {
                    let reason = if out_of_reach {
                        "the device was out of reach"
                    } else {
                        "crew unavailable"
                    };
                    self.client.decline(job.task, Some(reason.into()));
                    note(&self.stats, |s| s.declined += 1);
                }
                self.end_job(false);
                self.status = Some(UnitStatus::Available);
                self.go_home();
            }
            Phase::Answering { .. } => {
                let Some(job) = self.job else {
                    return self.go_home();
                };
                self.client.acknowledge(job.task);
                note(&self.stats, |s| s.acknowledged += 1);
                let r = &self.scenario.responders;
                let turnout = match self.unit.kind.service() {
                    Service::Ems => r.turnout_ems_s,
                    Service::Fire => r.turnout_fire_s,
                    Service::Police => r.turnout_police_s,
                };
                let turnout = draw(&mut self.rng, turnout);
                let wake = self.after(turnout);
                self.set(Phase::TurningOut, Some(wake));
            }
            Phase::TurningOut => {
                let Some(job) = self.job else {
                    return self.go_home();
                };
                self.send_status(UnitStatus::EnRoute);
                self.drive_to(job.location, Dest::Incident);
            }
            Phase::Driving(drive) => {
                let ms = (drive.started.elapsed().as_secs_f64() * self.clock.speed * 1000.0) as i64;
                let total = drive.path.total_ms();
                let (p, heading, speed) = drive.path.at(ms.min(total));
                self.pos = p;
                self.client.position(p, Some(heading), Some(speed));
                note(&self.stats, |s| s.positions += 1);
                if ms < total {
                    let interval_ms = (self.fix_interval_s() * 1000.0) as i64;
                    let next = (ms + interval_ms).min(total);
                    let wake = drive.started + self.clock.wall(next as f64 / 1000.0);
                    self.set(Phase::Driving(drive), Some(wake));
                    return;
                }
                self.arrive(drive.dest);
            }
            Phase::OnScene => self.scene_done(),
            Phase::AtHospital => self.complete(),
        }
    }

    fn arrive(&mut self, dest: Dest) {
        match dest {
            Dest::Incident => {
                let Some(job) = self.job else {
                    return self.go_home();
                };
                self.send_status(UnitStatus::OnScene);
                let minutes = draw(
                    &mut self.rng,
                    self.scenario.calls.on_scene(job.incident_type),
                );
                let wake = self.after(minutes * 60.0);
                self.set(Phase::OnScene, Some(wake));
            }
            Dest::Hospital => {
                self.send_status(UnitStatus::AtHospital);
                let minutes = draw(&mut self.rng, self.scenario.calls.at_hospital_min);
                let wake = self.after(minutes * 60.0);
                self.set(Phase::AtHospital, Some(wake));
            }
            Dest::Station => {
                if self.status == Some(UnitStatus::Returning) {
                    self.send_status(UnitStatus::Available);
                }
                self.set(Phase::Idle, None);
            }
        }
    }

    fn scene_done(&mut self) {
        let Some(job) = self.job else {
            return self.go_home();
        };
        let transports = may_transport(self.unit.kind, job.incident_type);
        let hospital = nearest_hospital(&self.scenario.city, self.pos);
        if let Some(hospital) = hospital
            && transports
            && self
                .rng
                .random_bool(self.scenario.calls.transport_probability)
        {
            self.send_status(UnitStatus::Transporting);
            self.drive_to(hospital, Dest::Hospital);
            return;
        }
        self.complete();
    }

    fn complete(&mut self) {
        if let Some(job) = self.job {
            self.client.complete(job.task);
            note(&self.stats, |s| s.completed += 1);
        }
        self.end_job(true);
        self.status = Some(UnitStatus::Returning);
        self.go_home();
    }

    fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Idle => "idle",
            Phase::Answering { .. } => "answering",
            Phase::OutOfReach => "out of reach",
            Phase::TurningOut => "turning out",
            Phase::Driving(_) => "driving",
            Phase::OnScene => "on scene",
            Phase::AtHospital => "at hospital",
        }
    }

    fn on_event(&mut self, event: ClientEvent) -> bool {
        tracing::debug!(unit = %self.unit.id, phase = ?self.phase_name(), job = ?self.job.map(|j| j.task), "live drill: device event {event:?}");
        match event {
            ClientEvent::Connected { .. } => note(&self.stats, |s| s.connections += 1),
            ClientEvent::Task { task, .. } => {
                self.on_task(task.task, task.incident, task.location, task.incident_type)
            }
            ClientEvent::TaskUpdate { task, state, .. } => {
                // Ended by someone else (the incident closed, the operator stood it down).
                if self.job.is_some_and(|j| j.task == task) && state == TaskState::Completed {
                    self.stop_driving();
                    self.end_job(false);
                    self.status = Some(UnitStatus::Returning);
                    self.go_home();
                }
            }
            ClientEvent::Resync { snapshot, .. } => {
                self.status = snapshot.status;
                if snapshot.active_task.is_none() && self.job.is_some() {
                    self.stop_driving();
                    self.end_job(false);
                    self.go_home();
                }
            }
            ClientEvent::Failed { code, message, .. } => {
                tracing::warn!(unit = %self.unit.id, ?code, "live drill: the gateway refused a device command: {message}");
                let unit = self.unit.id;
                note(&self.stats, |s| {
                    s.device_refusals += 1;
                    if s.examples.len() < 8 {
                        s.examples
                            .push(format!("device of unit {unit}: {code:?}: {message}"));
                    }
                });
            }
            ClientEvent::Fatal { reason } => {
                refused(
                    &self.stats,
                    format!("device of unit {}: {reason}", self.unit.id),
                );
                return false;
            }
            ClientEvent::Disconnected { reason } => {
                tracing::warn!(unit = %self.unit.id, "live drill: a device lost its connection: {reason}");
                note(&self.stats, |s| s.disconnects += 1);
            }
            ClientEvent::Done { .. } => {}
        }
        true
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let wake = self.wake;
            tokio::select! {
                event = self.client.next() => {
                    match event {
                        Some(e) => if !self.on_event(e) { break },
                        None => break,
                    }
                }
                () = async {
                    match wake {
                        Some(w) => tokio::time::sleep_until(w).await,
                        None => std::future::pending().await,
                    }
                } => self.on_wake(),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        self.client.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The drill

/// The calls of one round of the scenario (the generator's and the scripted ones), in order;
/// the round starts `offset_ms` after the scenario's start.
pub fn calls_of(scenario: &Scenario, seed: u64, offset_ms: i64, end_ms: i64) -> Vec<Call> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let day_ms = crate::calls::time_of_day_ms(scenario) + offset_ms;
    let mut calls = crate::calls::generate_from(scenario, &mut rng, day_ms, end_ms);
    for event in &scenario.events {
        calls.extend(crate::calls::scripted(scenario, event, &mut rng));
    }
    calls.retain(|c| c.at_ms < end_ms);
    calls.sort_by_key(|c| c.at_ms);
    calls
}

/// Enters one call and works it as an operator until it is closed or the drill stops.
#[allow(clippy::too_many_arguments)]
async fn work_call(
    api: Api,
    call: Call,
    n: usize,
    clock: Clock,
    scenario: Arc<Scenario>,
    board: SharedBoard,
    mut rng: ChaCha8Rng,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let answered = Utc::now();
    let entry_s = match call.entry_after_ms {
        Some(ms) => ms as f64 / 1000.0,
        None => draw(&mut rng, scenario.dispatch.entry_s),
    };
    tokio::select! {
        () = tokio::time::sleep(clock.wall(entry_s)) => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let location = call.location;
    let entered = if call.sensor {
        let sensor = api
            .post(
                "/api/sensors",
                json!({
                    "kind": "smoke_detector",
                    "location": location,
                    "thresholds": [{
                        "metric": "smoke_obscuration", "crossing": "above",
                        "raise_at": 10.0, "clear_at": 5.0,
                        "incident_type": call.incident_type, "priority": call.priority,
                    }],
                }),
            )
            .await?;
        match sensor.and_then(|s| {
            s.get("sensor_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }) {
            Some(id) => api
                .post(
                    &format!("/api/sensors/{id}/readings"),
                    json!({"metric": "smoke_obscuration", "value": 25.0}),
                )
                .await?
                .and_then(|r| {
                    let incident = r.pointer("/alarm/incident_id")?.as_str()?.parse().ok()?;
                    Some((incident, r.get("position")?.as_u64()?))
                }),
            None => None,
        }
    } else {
        api.post(
            "/api/incidents",
            json!({
                "location": location,
                "incident_type": call.incident_type,
                "priority": call.priority,
                "source": "hotline",
                "call_received_at": answered,
                "caller": {"name": format!("Drill caller {n}")},
            }),
        )
        .await?
        .and_then(|r| {
            let incident = r.get("incident_id")?.as_str()?.parse().ok()?;
            Some((incident, r.get("position")?.as_u64()?))
        })
    };
    let Some((incident, position)) = entered else {
        return Ok(());
    };
    let incident: IncidentId = incident;
    note(&api.stats, |s| s.calls += 1);
    let changed = {
        let mut b = board.lock().expect("board lock");
        b.incidents.entry(incident).or_default().changed.clone()
    };
    let dispatch_s = if call.sensor {
        5.0
    } else {
        draw(&mut rng, scenario.dispatch.dispatch_s)
    };
    tokio::select! {
        () = tokio::time::sleep(clock.wall(dispatch_s)) => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let mut min_position = Some(position);
    loop {
        // Close once the last unit has cleared.
        let (done, closed) = {
            let b = board.lock().expect("board lock");
            b.incidents.get(&incident).map_or((false, false), |t| {
                (t.cleared > 0 && t.working.is_empty(), t.closed)
            })
        };
        if closed {
            break;
        }
        // What the operator's screen shows: no unit of the incident still on a task (one
        // sent a moment ago may not have reached its crew's device yet).
        let done = done
            && api
                .get(&format!("/api/incidents/{incident}"))
                .await?
                .and_then(|i| {
                    i.get("units")?.as_array().map(|units| {
                        units
                            .iter()
                            .all(|u| u.get("active") != Some(&Value::Bool(true)))
                    })
                })
                .unwrap_or(false);
        if done {
            let answer = api
                .post(
                    &format!("/api/incidents/{incident}/close"),
                    json!({"disposition": "resolved"}),
                )
                .await?;
            if answer.is_some() {
                board_update(&board, incident, |t| t.closed = true);
                note(&api.stats, |s| s.closed += 1);
                break;
            }
        } else {
            // Consult the server's dispatcher; send what it recommends.
            let path = match min_position.take() {
                Some(p) => format!("/api/incidents/{incident}/recommendation?min_position={p}"),
                None => format!("/api/incidents/{incident}/recommendation"),
            };
            if let Some(answer) = api.get(&path).await? {
                note(&api.stats, |s| s.recommendations += 1);
                let picks = answer
                    .pointer("/recommendation/kinds")
                    .and_then(Value::as_array)
                    .map_or(0, |kinds| {
                        kinds
                            .iter()
                            .map(|k| {
                                let wanted = k.get("wanted").and_then(Value::as_u64).unwrap_or(0);
                                let have = k
                                    .get("candidates")
                                    .and_then(Value::as_array)
                                    .map_or(0, Vec::len)
                                    as u64;
                                wanted.min(have)
                            })
                            .sum::<u64>()
                    });
                if picks > 0 {
                    let path = format!("/api/incidents/{incident}/dispatch");
                    match api
                        .send(reqwest::Method::POST, &path, Some(json!({})))
                        .await?
                    {
                        Answer::Ok(sent) => {
                            let assigned =
                                sent.get("assigned").and_then(Value::as_u64).unwrap_or(0);
                            note(&api.stats, |s| s.units_sent += assigned as usize);
                        }
                        // The units recommended a moment ago went to another incident first:
                        // the incident waits for the next free unit, as on any busy day.
                        Answer::Refused(409, v) if raced(&v) => {}
                        Answer::Refused(status, v) => {
                            refused(&api.stats, format!("POST {path}: {status} {v}"));
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(clock.wall(RECHECK_S)) => {}
            () = changed.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    Ok(())
}

/// Whether a 409 to "send the recommendation" means only that the units recommended a moment
/// ago went to another incident first: none was left (`no_units`), or every one picked was
/// taken meanwhile (`unit_busy`).
fn raced(answer: &Value) -> bool {
    if answer.pointer("/error/code").and_then(Value::as_str) == Some("no_units") {
        return true;
    }
    answer
        .get("results")
        .and_then(Value::as_array)
        .is_some_and(|results| {
            !results.is_empty()
                && results
                    .iter()
                    .all(|r| r.pointer("/error/code").and_then(Value::as_str) == Some("unit_busy"))
        })
}

/// A scripted road closure, entered and lifted through the operator API as an operator would.
async fn close_roads(
    api: Api,
    from: Instant,
    until: Instant,
    location: LatLon,
    radius_m: f64,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::select! {
        () = tokio::time::sleep_until(from) => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let Some(closed) = api
        .post(
            "/api/roads/closures",
            json!({"location": location, "radius_m": radius_m, "note": "drill: road closure"}),
        )
        .await?
    else {
        return Ok(());
    };
    note(&api.stats, |s| s.road_closures += 1);
    let Some(id) = closed.get("closure_id").and_then(Value::as_str) else {
        return Ok(());
    };
    // Lifted at its time, or when the drill stops: a drill leaves no street closed.
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    api.post(&format!("/api/roads/closures/{id}/reopen"), json!({}))
        .await?;
    Ok(())
}

fn gateway_url(server: &str, port: u64) -> String {
    let (scheme, rest) = match server.strip_prefix("https://") {
        Some(rest) => ("wss", rest),
        None => ("ws", server.trim_start_matches("http://")),
    };
    let host = rest.split('/').next().unwrap_or("127.0.0.1");
    let host = match host.rsplit_once(':') {
        // A port after a host name, an IPv4 address or an IPv6 address's `]`.
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    format!("{scheme}://{host}:{port}")
}

/// Plays `scenario` into the server until its calls run out and every incident is closed
/// (or, with `repeat`, until `stop` turns true). `progress` sees the figures now and then.
pub async fn run(
    scenario: Arc<Scenario>,
    options: LiveOptions,
    stop: watch::Receiver<bool>,
    progress: &mut (dyn FnMut(&LiveStats) + Send),
) -> anyhow::Result<LiveStats> {
    if !(options.speed.is_finite() && options.speed > 0.0) {
        bail!("the speed must be a number greater than 0");
    }
    let stats: Shared = Arc::default();
    let api = Api {
        http: crate::server::http_client(&options.server, options.tls.clone())?,
        base: options.server.trim_end_matches('/').to_owned(),
        token: options.token.clone(),
        run: Uuid::now_v7(),
        stats: stats.clone(),
    };
    let router = Arc::new(
        Router::new(scenario.city.clone())
            .map_err(|e| anyhow::anyhow!("the city cannot be routed on: {e}"))?,
    );
    let rules = api
        .get("/api/dispatch/rules")
        .await?
        .context("the server has no dispatcher (start it with a city), so a live drill has no one to consult")?;
    let ack_timeout_s = rules
        .get("ack_timeout_s")
        .and_then(Value::as_f64)
        .unwrap_or(60.0);
    let board: SharedBoard = Arc::default();
    let clock = Clock {
        start: Instant::now(),
        speed: options.speed,
    };

    // The fleet: registered, enrolled and connected.
    let mut devices = Vec::new();
    for (i, (unit, body)) in fleet(&scenario).into_iter().enumerate() {
        match api
            .send(reqwest::Method::POST, "/api/units", Some(body))
            .await?
        {
            Answer::Ok(_) => {}
            // Registered by an earlier run of the same scenario.
            Answer::Refused(409, _) => {}
            Answer::Refused(status, v) => {
                bail!(
                    "the server refused to register unit {}: {status} {v}",
                    unit.id
                )
            }
        }
        let enrolled = match api
            .send(
                reqwest::Method::POST,
                &format!("/api/units/{}/device-token", unit.id),
                Some(json!({})),
            )
            .await?
        {
            Answer::Ok(v) => v,
            Answer::Refused(status, v) => bail!(
                "no device token for unit {}: {status} {v} (the server must run its mobile gateway, and the token be an operator's)",
                unit.id
            ),
        };
        let token = enrolled
            .get("token")
            .and_then(Value::as_str)
            .context("the device-token answer has no token")?
            .to_owned();
        let url = match &options.gateway {
            Some(g) => g.clone(),
            None => gateway_url(
                &options.server,
                enrolled
                    .get("gateway_port")
                    .and_then(Value::as_u64)
                    .context("the device-token answer names no gateway port")?,
            ),
        };
        let mut config = ClientConfig::new(url, token);
        config.tls = options.tls.clone();
        config.unit = Some(unit.id);
        devices.push(Device {
            pos: unit.station,
            unit,
            client: Client::start(config),
            router: router.clone(),
            scenario: scenario.clone(),
            clock,
            rng: ChaCha8Rng::seed_from_u64(options.seed ^ (0x5eed_0000 + i as u64)),
            stats: stats.clone(),
            board: board.clone(),
            ack_timeout_s,
            phase: Phase::Idle,
            wake: None,
            job: None,
            status: None,
        });
    }
    note(&stats, |s| s.units = devices.len());
    // Devices and operator tasks stop on the caller's stop, or once the drill has drained.
    let (halt, halted) = watch::channel(false);
    {
        let halt = halt.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => { halt.send_replace(true); }
                () = halt.closed() => {}
            }
        });
    }
    let mut running = Vec::new();
    for d in devices {
        running.push(tokio::spawn(d.run(halted.clone())));
    }

    // The calls, round after round.
    let hours = options.hours.unwrap_or(scenario.duration_hours);
    let round_ms = (hours * 3_600_000.0) as i64;
    let mut round = 0u64;
    let mut workers = tokio::task::JoinSet::new();
    let mut stop_rx = stop.clone();
    let mut n = 0;
    'rounds: loop {
        let offset = round as i64 * round_ms;
        let seed = options.seed.wrapping_add(round);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xca11);
        for event in &scenario.events {
            if let Scripted::RoadClosure {
                at_min,
                until_min,
                location,
                radius_m,
            } = *event
                && at_min * 60_000.0 < round_ms as f64
            {
                workers.spawn(close_roads(
                    api.clone(),
                    clock.at(offset + (at_min * 60_000.0) as i64),
                    clock.at(offset + (until_min * 60_000.0) as i64),
                    location,
                    radius_m,
                    halted.clone(),
                ));
            }
        }
        for call in calls_of(&scenario, seed, offset, round_ms) {
            let due = clock.at(offset + call.at_ms);
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {
                        note(&stats, |s| s.virtual_hours = clock.virtual_s() / 3600.0);
                        progress(&stats.lock().expect("stats lock").clone());
                    }
                    _ = stop_rx.wait_for(|s| *s) => break 'rounds,
                }
            }
            while let Some(done) = workers.try_join_next() {
                done.context("an operator task failed")??;
            }
            n += 1;
            workers.spawn(work_call(
                api.clone(),
                call,
                n,
                clock,
                scenario.clone(),
                board.clone(),
                ChaCha8Rng::seed_from_u64(rng.random()),
                halted.clone(),
            ));
        }
        round += 1;
        if !options.repeat {
            break;
        }
        let end = clock.at(round as i64 * round_ms);
        tokio::select! {
            () = tokio::time::sleep_until(end) => {}
            _ = stop_rx.wait_for(|s| *s) => break,
        }
    }
    // The last incidents run their course, for at most `drain_hours` of virtual time.
    let drain_until = Instant::now() + clock.wall(options.drain_hours * 3600.0);
    loop {
        note(&stats, |s| s.virtual_hours = clock.virtual_s() / 3600.0);
        progress(&stats.lock().expect("stats lock").clone());
        tokio::select! {
            done = workers.join_next() => match done {
                Some(r) => r.context("an operator task failed")??,
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = tokio::time::sleep_until(drain_until) => { halt.send_replace(true); }
        }
    }
    halt.send_replace(true);
    for r in running {
        if let Err(e) = r.await
            && e.is_panic()
        {
            refused(&stats, format!("a device failed: {e}"));
        }
    }
    let stats = stats.lock().expect("stats lock").clone();
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// `muster drill live`

/// `muster drill live`
#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// The scenario: a file, or a built-in sample (helsinki, generated-30km); it must be on
    /// the server's city.
    pub scenario: std::path::PathBuf,
    /// The server: https://host:port (TLS) or http://host:port.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An operator's token.
    #[arg(long, env = "MUSTER_TOKEN")]
    pub token: String,
    /// The mobile gateway, wss://host:port or ws://host:port (default: the server's host,
    /// on the port the server names; wss when the server is https).
    #[arg(long)]
    pub gateway: Option<String>,
    /// A PEM file of CA certificates to trust for an https server and a wss gateway besides
    /// the system's roots (such as ops/local-ca.sh's ca.pem). Certificates are always
    /// verified.
    #[arg(long, env = "MUSTER_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Virtual seconds per wall second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Virtual hours of calls (default: the scenario's duration).
    #[arg(long)]
    pub hours: Option<f64>,
    /// Start over with the next seed when the calls run out, until Ctrl-C.
    #[arg(long)]
    pub repeat: bool,
    /// Virtual hours the incidents still open when the calls end may run their course.
    #[arg(long, default_value_t = 2.0)]
    pub drain_hours: f64,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// One line of figures.
pub fn summary_line(s: &LiveStats) -> String {
    format!(
        "{:.1} h: {} calls, {} open, {} closed, {} road closures; {} units sent, {} tasks acknowledged, {} declined, {} unanswered, {} completed; {} positions; {} refused",
        s.virtual_hours,
        s.calls,
        s.open_incidents(),
        s.closed,
        s.road_closures,
        s.units_sent,
        s.acknowledged,
        s.declined,
        s.unanswered,
        s.completed,
        s.positions,
        s.api_refusals + s.device_refusals,
    )
}

/// Runs `muster drill live`.
pub fn run_cli(args: LiveArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        bail!("--speed must be a number greater than 0");
    }
    if let Some(h) = args.hours
        && !(h.is_finite() && h > 0.0)
    {
        bail!("--hours must be a number greater than 0");
    }
    if !(args.drain_hours.is_finite() && args.drain_hours >= 0.0) {
        bail!("--drain-hours must be a number of hours, 0 or more");
    }
    let scenario = Arc::new(
        Scenario::load_file_or_sample(&args.scenario).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut addresses = vec![args.server.as_str()];
    addresses.extend(args.gateway.as_deref());
    let tls = crate::server::client_tls(&addresses, args.ca_cert.as_deref())?;
    let options = LiveOptions {
        server: args.server.clone(),
        token: args.token,
        gateway: args.gateway,
        tls,
        speed: args.speed,
        seed: args.seed.unwrap_or(scenario.seed),
        hours: args.hours,
        repeat: args.repeat,
        drain_hours: args.drain_hours,
    };
    let hours = options.hours.unwrap_or(scenario.duration_hours);
    let mut out = crate::cli::Out::stdout();
    writeln!(
        out,
        "{}: {} units, {hours} h of calls played into {} at {}x ({:.1} wall minutes{}); Ctrl-C stops",
        scenario.name,
        scenario.unit_count(),
        args.server,
        args.speed,
        hours * 60.0 / args.speed,
        if args.repeat { " a round" } else { "" },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let quiet = args.quiet;
    let stats = runtime.block_on(async move {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("stopping: the devices disconnect, open incidents stay open");
                stop.send_replace(true);
            }
        });
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        let stats = run(scenario, options, stopped, &mut |s| {
            bar.set_message(summary_line(s));
            bar.tick();
        })
        .await;
        bar.finish_and_clear();
        stats
    })?;
    writeln!(out, "{}", summary_line(&stats))?;
    for e in &stats.examples {
        writeln!(out, "  {e}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_found_on_the_servers_host_with_its_scheme() {
        for (server, gateway) in [
            ("http://127.0.0.1:8080", "ws://127.0.0.1:7450"),
            (
                "https://dispatch.example.org:8443/",
                "wss://dispatch.example.org:7450",
            ),
            (
                "https://dispatch.example.org",
                "wss://dispatch.example.org:7450",
            ),
            ("https://[::1]:8443", "wss://[::1]:7450"),
        ] {
            assert_eq!(gateway_url(server, 7450), gateway, "{server}");
        }
    }
}
