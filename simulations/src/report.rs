//! Reports computed from an event log alone: response-time distributions against the NFPA
//! targets, unit utilisation and coverage gaps over time.
//!
//! Definitions (all from the incident streams' time points and the unit streams' statuses):
//! - **call processing**: call received to the first unit dispatched (NFPA 1225: 60 s at
//!   the 90th percentile);
//! - **turnout**: a unit's dispatch to its en route (NFPA 1710: 60 s EMS, 80 s fire and
//!   others, 90th percentile);
//! - **travel**: a unit's en route to its on scene; **first engine travel** is the travel of
//!   the first engine to arrive at an incident (240 s); **full first alarm** is, for a
//!   structure fire, the longest travel among the units of its first dispatch (480 s);
//! - **total**: call received to the first unit on scene.
//!
//! Units dispatched but never en route (declined, stood down) count in call processing but
//! not in turnout or travel. Coverage is sampled every 15 virtual minutes by replaying the
//! units' statuses and positions into the core's [`UnitIndex`] and asking
//! [`coverage`](muster_core::dispatch::coverage()) which districts have no engine (or no
//! ambulance) within 480 s by road.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use muster_core::dispatch::{Stations, UnitIndex, coverage};
use muster_core::event::DomainEvent;
use muster_core::ids::{AggregateRef, IncidentId, TaskId, UnitId};
use muster_core::incident::{IncidentEvent, TimePoint};
use muster_core::stats::nearest_rank;
use muster_core::unit::UnitEvent;
use muster_core::value::{IncidentType, Priority, Service, UnitKind};
use muster_geodata::Router;
use muster_store::RecordedEvent;
use serde::Serialize;

/// NFPA 1225 call processing target, seconds.
pub const CALL_PROCESSING_TARGET_S: f64 = 60.0;
/// NFPA 1710 turnout target for EMS, seconds.
pub const TURNOUT_EMS_TARGET_S: f64 = 60.0;
/// NFPA 1710 turnout target for fire (and others), seconds.
pub const TURNOUT_FIRE_TARGET_S: f64 = 80.0;
/// NFPA 1710 first engine travel target, seconds.
pub const FIRST_ENGINE_TRAVEL_TARGET_S: f64 = 240.0;
/// NFPA 1710 full first alarm travel target, seconds.
pub const FULL_FIRST_ALARM_TARGET_S: f64 = 480.0;
/// Coverage samples, every this many minutes.
pub const COVERAGE_EVERY_MIN: i64 = 15;

/// Quantiles of one measure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Distribution {
    /// Samples.
    pub count: usize,
    /// Median, seconds.
    pub p50_s: Option<f64>,
    /// 90th percentile, seconds.
    pub p90_s: Option<f64>,
    /// Largest, seconds.
    pub max_s: Option<f64>,
    /// Counts per 30-second bin (the last bin holds everything beyond).
    pub histogram_30s: Vec<usize>,
}

impl Distribution {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        let mut histogram_30s = vec![0; 40];
        for x in &v {
            let b = ((x / 30.0) as usize).min(39);
            histogram_30s[b] += 1;
        }
        Distribution {
            count: v.len(),
            p50_s: nearest_rank(&v, 0.5),
            p90_s: nearest_rank(&v, 0.9),
            max_s: v.last().copied(),
            histogram_30s,
        }
    }
}

/// A measure against its target.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    /// What is measured.
    pub measure: String,
    /// The standard.
    pub standard: String,
    /// Target at the 90th percentile, seconds.
    pub target_s: f64,
    /// The distribution.
    pub distribution: Distribution,
    /// Share of samples within the target.
    pub within_share: Option<f64>,
    /// Whether the 90th percentile meets the target.
    pub met: Option<bool>,
}

/// The four measures, for one group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Measures {
    /// Call received to first dispatch.
    pub call_processing: Distribution,
    /// Dispatch to en route.
    pub turnout: Distribution,
    /// En route to on scene.
    pub travel: Distribution,
    /// Call received to first on scene.
    pub total: Distribution,
}

/// Utilisation of one unit kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Utilisation {
    /// Units of the kind.
    pub units: usize,
    /// Share of unit-time committed to a task.
    pub committed_share: f64,
    /// Tasks.
    pub tasks: usize,
}

/// A coverage sample.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoverageSample {
    /// Minutes from the log's start.
    pub minute: i64,
    /// Districts without an engine within 480 s.
    pub without_engine: Vec<String>,
    /// Districts without an ambulance within 480 s.
    pub without_ambulance: Vec<String>,
}

/// A report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// What it is of.
    pub title: String,
    /// Events read.
    pub events: usize,
    /// Incidents.
    pub incidents: usize,
    /// Incidents closed.
    pub closed: usize,
    /// Incidents no unit reached.
    pub never_reached: usize,
    /// Start of the log (first event).
    pub start: Option<DateTime<Utc>>,
    /// End of the log (last event).
    pub end: Option<DateTime<Utc>>,
    /// The targets.
    pub targets: Vec<Target>,
    /// Measures over everything.
    pub overall: Measures,
    /// By district.
    pub by_area: BTreeMap<String, Measures>,
    /// By priority.
    pub by_priority: BTreeMap<String, Measures>,
    /// Turnout and travel by unit kind (call processing and total are per incident, and
    /// repeated for the kinds present).
    pub by_unit_kind: BTreeMap<String, Measures>,
    /// Utilisation by unit kind.
    pub utilisation: BTreeMap<String, Utilisation>,
    /// Coverage over time (empty without a city).
    pub coverage: Vec<CoverageSample>,
    /// The log's SHA-256, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_sha256: Option<String>,
}

#[derive(Default)]
struct Inc {
    incident_type: Option<IncidentType>,
    priority: Option<Priority>,
    area: String,
    received: Option<DateTime<Utc>>,
    closed: bool,
    tasks: Vec<TaskId>,
}

#[derive(Default, Clone, Copy)]
struct TaskTimes {
    unit: Option<UnitId>,
    incident: Option<IncidentId>,
    dispatched: Option<DateTime<Utc>>,
    en_route: Option<DateTime<Utc>>,
    on_scene: Option<DateTime<Utc>>,
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

#[derive(Default)]
struct Samples {
    call_processing: Vec<f64>,
    turnout: Vec<f64>,
    travel: Vec<f64>,
    total: Vec<f64>,
}

impl Samples {
    fn measures(self) -> Measures {
        Measures {
            call_processing: Distribution::of(self.call_processing),
            turnout: Distribution::of(self.turnout),
            travel: Distribution::of(self.travel),
            total: Distribution::of(self.total),
        }
    }
}

/// Builds the report of a log. With a router (for the log's city), coverage over time is
/// sampled too.
pub fn build(title: &str, events: &[RecordedEvent], router: Option<Arc<Router>>) -> Report {
    let city = router.as_ref().map(|r| r.city().clone());
    let mut kinds: HashMap<UnitId, UnitKind> = HashMap::new();
    let mut incidents: BTreeMap<IncidentId, Inc> = BTreeMap::new();
    let mut tasks: HashMap<TaskId, TaskTimes> = HashMap::new();
    let mut committed_since: HashMap<UnitId, DateTime<Utc>> = HashMap::new();
    let mut committed_ms: HashMap<UnitKind, i64> = HashMap::new();
    let mut task_count: HashMap<UnitKind, usize> = HashMap::new();
    let stations = router
        .as_ref()
        .map(|r| Stations::of_city(r.city()))
        .unwrap_or_default();
    let mut index = router
        .clone()
        .map(|r| UnitIndex::new(r, muster_core::dispatch::DEFAULT_STALE_AFTER));
    let mut coverage_samples = Vec::new();
    let start = events
        .first()
        .map(|e| e.metadata.occurred_at.unwrap_or(e.recorded_at));
    let end = events
        .last()
        .map(|e| e.metadata.occurred_at.unwrap_or(e.recorded_at));
    let mut next_sample = start;

    for e in events {
        let Ok((aggregate, event)) = DomainEvent::from_recorded(e) else {
            continue;
        };
        let now = e.metadata.occurred_at.unwrap_or(e.recorded_at);
        while let (Some(ix), Some(t)) = (index.as_mut(), next_sample) {
            if t > now {
                break;
            }
            ix.refresh_stale(t);
            let minute = (t - start.expect("set with next_sample")).num_minutes();
            let target = std::time::Duration::from_secs(480);
            let engines = coverage(ix, &[UnitKind::Engine], target);
            let ambulances = coverage(
                ix,
                &[UnitKind::AlsAmbulance, UnitKind::BlsAmbulance],
                target,
            );
            coverage_samples.push(CoverageSample {
                minute,
                without_engine: engines
                    .uncovered
                    .iter()
                    .map(|a| a.district.clone())
                    .collect(),
                without_ambulance: ambulances
                    .uncovered
                    .iter()
                    .map(|a| a.district.clone())
                    .collect(),
            });
            next_sample = Some(t + Duration::minutes(COVERAGE_EVERY_MIN));
        }
        match (aggregate, event) {
            (AggregateRef::Unit(id), DomainEvent::Unit(ev)) => {
                if let Some(ix) = index.as_mut() {
                    ix.apply(id, &ev, now, now, &stations);
                }
                match ev {
                    UnitEvent::UnitRegistered { kind, .. } => {
                        kinds.insert(id, kind);
                    }
                    UnitEvent::UnitStatusChanged { from, to, at, .. } => {
                        if to.is_committed() && !from.is_committed() {
                            committed_since.insert(id, at);
                        } else if !to.is_committed()
                            && from.is_committed()
                            && let Some(since) = committed_since.remove(&id)
                            && let Some(kind) = kinds.get(&id)
                        {
                            *committed_ms.entry(*kind).or_default() +=
                                (at - since).num_milliseconds();
                        }
                    }
                    UnitEvent::TaskAssigned { .. } => {
                        if let Some(kind) = kinds.get(&id) {
                            *task_count.entry(*kind).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
            (AggregateRef::Incident(id), DomainEvent::Incident(ev)) => {
                let inc = incidents.entry(id).or_default();
                match ev {
                    IncidentEvent::IncidentReported {
                        incident_type,
                        priority,
                        location,
                        ..
                    } => {
                        inc.incident_type = Some(incident_type);
                        inc.priority = Some(priority);
                        inc.area = city
                            .as_ref()
                            .and_then(|c| c.district_at(location).map(|d| d.id.clone()))
                            .unwrap_or_else(|| "unknown".into());
                    }
                    IncidentEvent::IncidentTriaged {
                        incident_type,
                        priority,
                        ..
                    } => {
                        inc.incident_type = Some(incident_type);
                        inc.priority = Some(priority);
                    }
                    IncidentEvent::IncidentClosed { .. } => inc.closed = true,
                    IncidentEvent::TimePointRecorded {
                        point,
                        unit,
                        task,
                        at,
                    } => match (point, task) {
                        (TimePoint::CallReceived, _) => inc.received = Some(at),
                        (_, Some(task)) => {
                            let t = tasks.entry(task).or_default();
                            t.unit = unit.or(t.unit);
                            t.incident = Some(id);
                            match point {
                                TimePoint::Dispatched => {
                                    t.dispatched = Some(at);
                                    inc.tasks.push(task);
                                }
                                TimePoint::EnRoute => t.en_route = Some(at),
                                TimePoint::OnScene => t.on_scene = Some(at),
                                _ => {}
                            }
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Units still committed at the end count up to the end.
    if let Some(end) = end {
        for (id, since) in &committed_since {
            if let Some(kind) = kinds.get(id) {
                *committed_ms.entry(*kind).or_default() += (end - *since).num_milliseconds();
            }
        }
    }

    let mut overall = Samples::default();
    let mut by_area: BTreeMap<String, Samples> = BTreeMap::new();
    let mut by_priority: BTreeMap<String, Samples> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, Samples> = BTreeMap::new();
    let (mut turnout_ems, mut turnout_fire, mut first_engine, mut full_alarm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut never_reached = 0;
    for inc in incidents.values() {
        let Some(received) = inc.received else {
            continue;
        };
        let area = inc.area.clone();
        let priority = inc.priority.map_or("?".into(), |p| p.to_string());
        let times: Vec<TaskTimes> = inc
            .tasks
            .iter()
            .filter_map(|t| tasks.get(t).copied())
            .collect();
        let first_dispatch = times.iter().filter_map(|t| t.dispatched).min();
        let first_on_scene = times.iter().filter_map(|t| t.on_scene).min();
        if first_on_scene.is_none() {
            never_reached += 1;
        }
        let push = |s: &mut Samples| {
            if let Some(d) = first_dispatch {
                s.call_processing.push(secs(received, d));
            }
            if let Some(o) = first_on_scene {
                s.total.push(secs(received, o));
            }
        };
        push(&mut overall);
        push(by_area.entry(area.clone()).or_default());
        push(by_priority.entry(priority.clone()).or_default());
        let mut engine_arrivals: Vec<(DateTime<Utc>, f64)> = Vec::new();
        let mut first_alarm_travel: Vec<f64> = Vec::new();
        let mut first_alarm_complete = true;
        for t in &times {
            let kind = t.unit.and_then(|u| kinds.get(&u)).copied();
            let kind_key = kind.map_or("?".into(), |k| k.code().to_owned());
            let initial = matches!((t.dispatched, first_dispatch), (Some(d), Some(f)) if d - f <= Duration::seconds(60));
            if let (Some(d), Some(r)) = (t.dispatched, t.en_route) {
                let turnout = secs(d, r);
                for s in [
                    &mut overall,
                    by_area.entry(area.clone()).or_default(),
                    by_priority.entry(priority.clone()).or_default(),
                    by_kind.entry(kind_key.clone()).or_default(),
                ] {
                    s.turnout.push(turnout);
                }
                match kind.map(|k| k.service()) {
                    Some(Service::Ems) => turnout_ems.push(turnout),
                    Some(_) => turnout_fire.push(turnout),
                    None => {}
                }
            }
            if let (Some(r), Some(o)) = (t.en_route, t.on_scene) {
                let travel = secs(r, o);
                for s in [
                    &mut overall,
                    by_area.entry(area.clone()).or_default(),
                    by_priority.entry(priority.clone()).or_default(),
                    by_kind.entry(kind_key.clone()).or_default(),
                ] {
                    s.travel.push(travel);
                }
                if kind == Some(UnitKind::Engine) {
                    engine_arrivals.push((o, travel));
                }
                if initial {
                    first_alarm_travel.push(travel);
                }
            } else if initial {
                first_alarm_complete = false;
            }
        }
        if let Some((_, travel)) = engine_arrivals.iter().min_by_key(|(o, _)| *o) {
            first_engine.push(*travel);
        }
        if inc.incident_type == Some(IncidentType::StructureFire)
            && first_alarm_complete
            && !first_alarm_travel.is_empty()
        {
            full_alarm.push(first_alarm_travel.iter().copied().fold(0.0, f64::max));
        }
    }

    let target = |measure: &str, standard: &str, target_s: f64, v: Vec<f64>| {
        let within = if v.is_empty() {
            None
        } else {
            Some(v.iter().filter(|x| **x <= target_s).count() as f64 / v.len() as f64)
        };
        let distribution = Distribution::of(v);
        Target {
            measure: measure.into(),
            standard: standard.into(),
            target_s,
            met: distribution.p90_s.map(|p| p <= target_s),
            within_share: within,
            distribution,
        }
    };
    let targets = vec![
        target(
            "call processing",
            "NFPA 1225",
            CALL_PROCESSING_TARGET_S,
            overall.call_processing.clone(),
        ),
        target(
            "turnout, EMS",
            "NFPA 1710",
            TURNOUT_EMS_TARGET_S,
            turnout_ems,
        ),
        target(
            "turnout, fire and others",
            "NFPA 1710",
            TURNOUT_FIRE_TARGET_S,
            turnout_fire,
        ),
        target(
            "first engine travel",
            "NFPA 1710",
            FIRST_ENGINE_TRAVEL_TARGET_S,
            first_engine,
        ),
        target(
            "full first alarm travel (structure fires)",
            "NFPA 1710",
            FULL_FIRST_ALARM_TARGET_S,
            full_alarm,
        ),
    ];

    let duration_ms = match (start, end) {
        (Some(a), Some(b)) => (b - a).num_milliseconds().max(1),
        _ => 1,
    };
    let mut unit_counts: BTreeMap<UnitKind, usize> = BTreeMap::new();
    for k in kinds.values() {
        *unit_counts.entry(*k).or_default() += 1;
    }
    let utilisation = unit_counts
        .iter()
        .map(|(k, n)| {
            let busy = committed_ms.get(k).copied().unwrap_or(0) as f64;
            (
                k.code().to_owned(),
                Utilisation {
                    units: *n,
                    committed_share: busy / (*n as f64 * duration_ms as f64),
                    tasks: task_count.get(k).copied().unwrap_or(0),
                },
            )
        })
        .collect();

    Report {
        title: title.into(),
        events: events.len(),
        incidents: incidents.values().filter(|i| i.received.is_some()).count(),
        closed: incidents.values().filter(|i| i.closed).count(),
        never_reached,
        start,
        end,
        targets,
        overall: overall.measures(),
        by_area: by_area
            .into_iter()
            .map(|(k, v)| (k, v.measures()))
            .collect(),
        by_priority: by_priority
            .into_iter()
            .map(|(k, v)| (k, v.measures()))
            .collect(),
        by_unit_kind: by_kind
            .into_iter()
            .map(|(k, v)| (k, v.measures()))
            .collect(),
        utilisation,
        coverage: coverage_samples,
        log_sha256: None,
    }
}

#[cfg(test)]
mod tests {
    //! A small log whose answers are worked out by hand: ten medical calls, one structure
    //! fire with three units and one call no unit reached.

    use std::collections::BTreeSet;

    use chrono::TimeZone;
    use muster_core::event::encode;
    use muster_core::incident::ReportSource;
    use muster_core::value::{Agency, CallSign, CallerDetails, LatLon, StationCode};
    use muster_store::{EventMetadata, Position, StreamName};
    use uuid::Uuid;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[derive(Default)]
    struct Log {
        events: Vec<RecordedEvent>,
        revisions: HashMap<String, u64>,
        ids: u128,
    }

    impl Log {
        fn next_id(&mut self) -> Uuid {
            self.ids += 1;
            Uuid::from_u128(self.ids)
        }

        fn push<E: muster_core::event::EventSchema>(
            &mut self,
            stream: StreamName,
            event: &E,
            at: DateTime<Utc>,
        ) {
            let id = self.next_id();
            let metadata = EventMetadata {
                occurred_at: Some(at),
                ..Default::default()
            };
            let new = encode(event, id, metadata).unwrap();
            let revision = self
                .revisions
                .entry(stream.as_str().to_owned())
                .or_insert(0);
            self.events.push(RecordedEvent {
                stream,
                revision: *revision,
                position: Position(self.events.len() as u64 + 1),
                id: new.id,
                event_type: new.event_type,
                schema_version: new.schema_version,
                data: new.data,
                metadata: new.metadata,
                recorded_at: at,
            });
            *revision += 1;
        }

        fn unit(&mut self, kind: UnitKind, call_sign: &str) -> UnitId {
            let id = UnitId::from_uuid(self.next_id());
            let event = UnitEvent::UnitRegistered {
                unit_id: id,
                kind,
                call_sign: CallSign::parse(call_sign).unwrap(),
                agency: Agency::parse("city").unwrap(),
                home_station: StationCode::parse("st-1").unwrap(),
                capabilities: BTreeSet::new(),
                at: t(0),
            };
            self.push(id.stream_name(), &event, t(0));
            id
        }

        fn call(&mut self, incident_type: IncidentType, received_s: i64) -> IncidentId {
            let id = IncidentId::from_uuid(self.next_id());
            let reported = IncidentEvent::IncidentReported {
                incident_id: id,
                source: ReportSource::Hotline,
                location: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
                incident_type,
                priority: Priority::P1,
                caller: CallerDetails::default(),
                at: t(received_s),
            };
            self.push(id.stream_name(), &reported, t(received_s));
            self.point(id, TimePoint::CallReceived, None, None, received_s);
            id
        }

        fn point(
            &mut self,
            incident: IncidentId,
            point: TimePoint,
            unit: Option<UnitId>,
            task: Option<TaskId>,
            at_s: i64,
        ) {
            let event = IncidentEvent::TimePointRecorded {
                point,
                unit,
                task,
                at: t(at_s),
            };
            self.push(incident.stream_name(), &event, t(at_s));
        }

        /// A unit's task on an incident: dispatched, then en route and on scene if given.
        fn task(
            &mut self,
            incident: IncidentId,
            unit: UnitId,
            dispatched_s: i64,
            en_route_s: Option<i64>,
            on_scene_s: Option<i64>,
        ) {
            let task = TaskId::from_uuid(self.next_id());
            let (u, k) = (Some(unit), Some(task));
            self.point(incident, TimePoint::Dispatched, u, k, dispatched_s);
            if let Some(s) = en_route_s {
                self.point(incident, TimePoint::EnRoute, u, k, s);
            }
            if let Some(s) = on_scene_s {
                self.point(incident, TimePoint::OnScene, u, k, s);
            }
        }
    }

    /// Ten medical calls, 10 to 100 s of call processing, each an ambulance with a turnout of
    /// 55 to 64 s and 300 s of travel; a structure fire: two engines and a ladder in the first
    /// dispatch, a second ladder later; a call dispatched to a unit that never turned out.
    fn known_log() -> Vec<RecordedEvent> {
        let mut log = Log::default();
        let ambulance = log.unit(UnitKind::AlsAmbulance, "M1");
        let e1 = log.unit(UnitKind::Engine, "E1");
        let e2 = log.unit(UnitKind::Engine, "E2");
        let l1 = log.unit(UnitKind::Ladder, "L1");
        let l2 = log.unit(UnitKind::Ladder, "L2");
        for i in 0..10 {
            let start = 10_000 * (i + 1);
            let call = log.call(IncidentType::Medical, start);
            let d = start + 10 * (i + 1);
            log.task(call, ambulance, d, Some(d + 55 + i), Some(d + 55 + i + 300));
        }
        let fire = log.call(IncidentType::StructureFire, 200_000);
        // First engine: dispatched at +70, turnout 70 s, travel 200 s.
        log.task(fire, e1, 200_070, Some(200_140), Some(200_340));
        // Second engine, 40 s after the first dispatch: turnout 90 s, travel 270 s.
        log.task(fire, e2, 200_110, Some(200_200), Some(200_470));
        // A ladder 60 s after the first dispatch, still of the first alarm: turnout 40 s,
        // travel 500 s.
        log.task(fire, l1, 200_130, Some(200_170), Some(200_670));
        // A ladder sent 10 minutes later is not of the first alarm: turnout 30 s, travel 900 s.
        log.task(fire, l2, 200_700, Some(200_730), Some(201_630));
        // Dispatched after 120 s to a unit that never turned out.
        let unreached = log.call(IncidentType::Medical, 300_000);
        log.task(unreached, ambulance, 300_120, None, None);
        log.events
    }

    fn target<'a>(report: &'a Report, measure: &str) -> &'a Target {
        report
            .targets
            .iter()
            .find(|t| t.measure == measure)
            .unwrap_or_else(|| panic!("no target {measure:?}"))
    }

    #[test]
    fn percentiles_are_nearest_rank_over_the_log() {
        let report = build("known", &known_log(), None);
        assert_eq!(report.incidents, 12);
        assert_eq!(report.never_reached, 1);
        // Call processing: 10, 20, ..., 100 s, the fire's 70 s and the unreached call's 120 s.
        let cp = &target(&report, "call processing").distribution;
        assert_eq!(cp.count, 12);
        // Sorted: 10 20 30 40 50 60 70 70 80 90 100 120; ranks 6 and 11 (10.8 rounded up).
        assert_eq!(cp.p50_s, Some(60.0));
        assert_eq!(cp.p90_s, Some(100.0));
        assert_eq!(cp.max_s, Some(120.0));
        assert_eq!(cp.histogram_30s[..6], [2, 3, 4, 2, 1, 0]);
        assert_eq!(report.overall.call_processing, *cp);
        // EMS turnout 55..=64 s: the 5th and the 9th of ten.
        let ems = &target(&report, "turnout, EMS").distribution;
        assert_eq!(
            (ems.count, ems.p50_s, ems.p90_s),
            (10, Some(59.0), Some(63.0))
        );
        // Call to first on scene: 365 + 11 k s for k = 0..=9, and the fire's 340 s.
        let total = &report.overall.total;
        assert_eq!(total.count, 11);
        assert_eq!(total.p50_s, Some(409.0));
        assert_eq!(total.max_s, Some(464.0));
    }

    #[test]
    fn nfpa_verdicts_compare_the_90th_percentile_with_the_target() {
        let report = build("known", &known_log(), None);
        let verdict = |m: &str| {
            let t = target(&report, m);
            (t.distribution.p90_s, t.met, t.within_share)
        };
        // 100 s at p90 against 60 s; six of twelve within.
        assert_eq!(
            verdict("call processing"),
            (Some(100.0), Some(false), Some(0.5))
        );
        // 63 s against 60 s: missed, though six of ten were within.
        assert_eq!(
            verdict("turnout, EMS"),
            (Some(63.0), Some(false), Some(0.6))
        );
        // Fire: 70, 90, 40 and 30 s against 80 s: rank 4 of 4 is 90 s, three of four within.
        assert_eq!(
            verdict("turnout, fire and others"),
            (Some(90.0), Some(false), Some(0.75))
        );
        // The first engine to arrive travelled 200 s (the other engine's 270 s does not count).
        assert_eq!(
            verdict("first engine travel"),
            (Some(200.0), Some(true), Some(1.0))
        );
        // The first alarm (dispatched within 60 s of the first unit): 200, 270 and 500 s;
        // the ladder sent later (900 s) is not part of it.
        assert_eq!(
            verdict("full first alarm travel (structure fires)"),
            (Some(500.0), Some(false), Some(0.0))
        );
    }

    #[test]
    fn a_log_without_samples_gives_no_verdict() {
        let report = build("empty", &[], None);
        for t in &report.targets {
            assert_eq!(t.distribution.count, 0, "{}", t.measure);
            assert_eq!((t.met, t.within_share), (None, None), "{}", t.measure);
        }
    }
}
