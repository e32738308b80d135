//! The dispatch board and the index fold, given / when / then: what an incident still needs
//! as units are sent, decline, do not answer, reach the scene and clear; when a rule wants an
//! incident dispatched; and a fix from a clock running ahead.

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::router;
use muster_core::alert::AlertEvent;
use muster_core::dispatch::{Board, DispatchRules, NeedsError, Stations, UnitIndex, Whereabouts};
use muster_core::incident::{IncidentEvent, ReportSource};
use muster_core::runcard::ResponsePlans;
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::{
    Agency, CallSign, CallerDetails, Disposition, IncidentType, Priority, StationCode, UnitKind,
};
use muster_core::{IncidentId, TaskId, UnitId};
use uuid::Uuid;

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap() + Duration::seconds(s)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

struct Given {
    board: Board,
    index: UnitIndex,
    stations: Stations,
    rules: DispatchRules,
    plans: ResponsePlans,
}

impl Given {
    fn new() -> Self {
        let router = router();
        Self {
            stations: Stations::of_city(router.city()),
            index: UnitIndex::new(router, Duration::minutes(30)),
            board: Board::default(),
            rules: DispatchRules::default(),
            plans: ResponsePlans::default_set(),
        }
    }

    fn unit(&mut self, unit: UnitId, event: UnitEvent) -> Option<IncidentId> {
        self.index.apply(unit, &event, t(0), t(0), &self.stations);
        self.board.apply_unit(unit, &event, &self.rules)
    }

    fn engine(&mut self, n: u128) -> UnitId {
        let unit = UnitId::from_uuid(id(n));
        let router = router();
        let station = &router.city().stations[0];
        self.unit(
            unit,
            UnitEvent::UnitRegistered {
                unit_id: unit,
                kind: UnitKind::Engine,
                call_sign: CallSign::parse(&format!("E{n}")).unwrap(),
                agency: Agency::parse("city-fire").unwrap(),
                home_station: StationCode::parse(&station.id).unwrap(),
                capabilities: BTreeSet::new(),
                at: t(0),
            },
        );
        unit
    }

    fn report(&mut self, n: u128, source: ReportSource, priority: Priority) -> Option<IncidentId> {
        let incident = IncidentId::from_uuid(id(n));
        let at = router().city().stations[0].location;
        self.board.apply_incident(
            incident,
            &IncidentEvent::IncidentReported {
                incident_id: incident,
                source,
                location: at,
                incident_type: IncidentType::StructureFire,
                priority,
                caller: CallerDetails::default(),
                at: t(0),
            },
            &self.rules,
        )
    }

    fn assign(&mut self, unit: UnitId, incident: IncidentId, task: TaskId) {
        self.unit(
            unit,
            UnitEvent::TaskAssigned {
                task,
                incident,
                at: t(1),
            },
        );
        self.unit(unit, status(UnitStatus::Available, UnitStatus::Dispatched));
    }

    /// Engines the run card still wants, and the units not to recommend.
    fn engines_needed(&self, incident: IncidentId) -> (u8, Vec<UnitId>) {
        let needs = self
            .board
            .needs(incident, &self.plans, &self.index)
            .unwrap();
        let engines = needs
            .plan
            .units
            .iter()
            .filter(|n| n.kind == UnitKind::Engine)
            .map(|n| n.count)
            .sum();
        (engines, needs.exclude)
    }
}

fn status(from: UnitStatus, to: UnitStatus) -> UnitEvent {
    UnitEvent::UnitStatusChanged {
        from,
        to,
        incident: None,
        task: None,
        at: t(2),
    }
}

#[test]
fn an_incident_needs_its_run_card_less_the_units_that_count() {
    let mut g = Given::new();
    let (a, b) = (g.engine(1), g.engine(2));
    let incident = IncidentId::from_uuid(id(10));
    assert_eq!(g.report(10, ReportSource::Hotline, Priority::P2), None);
    let (wanted, exclude) = g.engines_needed(incident);
    assert!(wanted >= 1, "a structure fire wants engines");
    assert!(exclude.is_empty());

    // Sent: counts, and is not recommended again.
    let task_a = TaskId::from_uuid(id(100));
    g.assign(a, incident, task_a);
    assert_eq!(g.engines_needed(incident), (wanted - 1, vec![a]));

    // Declined: needed again, never recommended again.
    g.unit(
        a,
        UnitEvent::TaskDeclined {
            task: task_a,
            incident,
            reason: None,
            at: t(3),
        },
    );
    assert_eq!(g.engines_needed(incident), (wanted, vec![a]));

    // Not acknowledged in time: still sent, no longer counted.
    let task_b = TaskId::from_uuid(id(101));
    g.assign(b, incident, task_b);
    let overdue = AlertEvent::TaskAckOverdue {
        task: task_b,
        incident,
        unit: b,
        assigned_at: t(1),
        timeout_secs: 60,
        at: t(61),
    };
    g.board.apply_alert(&overdue, &g.rules);
    assert_eq!(g.engines_needed(incident).0, wanted);
    // Its crew answers after all: counted again.
    g.unit(
        b,
        UnitEvent::TaskAcknowledged {
            task: task_b,
            incident,
            at: t(62),
        },
    );
    assert_eq!(g.engines_needed(incident).0, wanted - 1);

    // Reached the scene and cleared: it did its part and still counts, and may be sent
    // again only by an operator.
    g.unit(b, status(UnitStatus::Dispatched, UnitStatus::OnScene));
    g.unit(
        b,
        UnitEvent::TaskCompleted {
            task: task_b,
            incident,
            at: t(600),
        },
    );
    let (still, exclude) = g.engines_needed(incident);
    assert_eq!(
        still,
        wanted - 1,
        "a unit that served counts after it clears"
    );
    assert!(!exclude.contains(&b), "a unit that served is not released");

    // Closed: nothing is planned for it.
    g.board.apply_incident(
        incident,
        &IncidentEvent::IncidentClosed {
            disposition: Disposition::Resolved,
            at: t(700),
        },
        &g.rules,
    );
    assert!(matches!(
        g.board.needs(incident, &g.plans, &g.index),
        Err(NeedsError::NotOpen(_))
    ));
}

#[test]
fn a_unit_stood_down_before_arriving_is_not_recommended_again() {
    let mut g = Given::new();
    let a = g.engine(1);
    let incident = IncidentId::from_uuid(id(10));
    g.report(10, ReportSource::Hotline, Priority::P3);
    let (wanted, _) = g.engines_needed(incident);
    let task = TaskId::from_uuid(id(100));
    g.assign(a, incident, task);
    g.unit(
        a,
        UnitEvent::TaskCompleted {
            task,
            incident,
            at: t(30),
        },
    );
    assert_eq!(g.engines_needed(incident), (wanted, vec![a]));
}

#[test]
fn a_rule_asks_for_its_incidents_and_only_those() {
    let mut g = Given::new();
    let a = g.engine(1);
    let sensor = ReportSource::Sensor {
        sensor: muster_core::SensorId::from_uuid(id(5)),
        alarm: muster_core::AlarmId::from_uuid(id(6)),
    };
    // The default rules dispatch a P1 sensor alarm of fire, not a P3 call.
    let auto = IncidentId::from_uuid(id(10));
    assert_eq!(g.report(10, sensor, Priority::P1), Some(auto));
    assert_eq!(g.report(11, ReportSource::Hotline, Priority::P3), None);
    assert_eq!(g.board.waiting_for_rule(&g.rules), vec![auto]);

    let task = TaskId::from_uuid(id(100));
    g.assign(a, auto, task);
    assert!(g.board.waiting_for_rule(&g.rules).is_empty());
    let overdue = AlertEvent::TaskAckOverdue {
        task,
        incident: auto,
        unit: a,
        assigned_at: t(1),
        timeout_secs: 60,
        at: t(61),
    };
    assert_eq!(g.board.apply_alert(&overdue, &g.rules), Some(auto));
    let declined = UnitEvent::TaskDeclined {
        task,
        incident: auto,
        reason: None,
        at: t(62),
    };
    assert_eq!(g.unit(a, declined), Some(auto), "a decline re-plans it");
    let stranger = AlertEvent::TaskAckOverdue {
        task,
        incident: auto,
        unit: UnitId::from_uuid(id(99)),
        assigned_at: t(1),
        timeout_secs: 60,
        at: t(61),
    };
    assert_eq!(
        g.board.apply_alert(&stranger, &g.rules),
        None,
        "an alert for a unit not sent changes nothing"
    );
}

#[test]
fn a_fix_from_a_clock_running_ahead_counts_as_taken_when_recorded() {
    let mut g = Given::new();
    let a = g.engine(1);
    let city = router();
    let (p, q) = (
        city.city().stations[1].location,
        city.city().stations[2].location,
    );
    let fix =
        |at: muster_geodata::LatLon, claimed: DateTime<Utc>| UnitEvent::UnitPositionReported {
            position: at,
            heading_deg: None,
            speed_m_s: None,
            accuracy_m: None,
            at: claimed,
        };
    // A phone stamped the year 9999; the store recorded it at t(10).
    let far = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    g.index.apply(a, &fix(p, far), t(10), t(10), &g.stations);
    let Whereabouts::Fix { taken, .. } = g.index.unit(a).unwrap().whereabouts else {
        panic!("the fix was not applied: {:?}", g.index.unit(a));
    };
    assert_eq!(taken, t(10));
    // The next honest fix moves the unit on.
    g.index.apply(a, &fix(q, t(20)), t(20), t(20), &g.stations);
    let Whereabouts::Fix { taken, .. } = g.index.unit(a).unwrap().whereabouts else {
        panic!("no fix");
    };
    assert_eq!(taken, t(20), "a future stamp froze the unit");
}
