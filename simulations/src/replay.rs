//! Replaying a recorded log: into the engine's projections (every event decoded and folded
//! into its aggregate, unit statuses and positions into the dispatcher's [`UnitIndex`]) at
//! any speed, and as the calls of a new drill under another policy ("what if").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use muster_core::decision::Aggregate;
use muster_core::dispatch::{Stations, UnitIndex};
use muster_core::event::DomainEvent;
use muster_core::ids::{AggregateRef, IncidentId};
use muster_core::incident::{IncidentEvent, IncidentState, ReportSource, TimePoint};
use muster_core::sensor::SensorState;
use muster_core::unit::{UnitState, UnitStatus};
use muster_geodata::Router;
use muster_store::RecordedEvent;

use crate::engine::Call;

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayStats {
    /// Events folded.
    pub events: usize,
    /// Events that could not be decoded (skipped).
    pub undecodable: usize,
    /// Incidents open at the end.
    pub open_incidents: usize,
    /// Units available at the end.
    pub available_units: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
}

/// Folds every event into its aggregate's state and the unit index. `speed` is virtual
/// seconds per wall second (`None`: as fast as possible); `progress` sees each event's index.
pub fn into_engine(
    events: &[RecordedEvent],
    router: Option<Arc<Router>>,
    speed: Option<f64>,
    progress: &mut dyn FnMut(usize),
) -> ReplayStats {
    let started = Instant::now();
    let mut incidents: HashMap<AggregateRef, IncidentState> = HashMap::new();
    let mut units: HashMap<AggregateRef, UnitState> = HashMap::new();
    let mut sensors: HashMap<AggregateRef, SensorState> = HashMap::new();
    let stations = router
        .as_ref()
        .map(|r| Stations::of_city(r.city()))
        .unwrap_or_default();
    let mut index = router.map(|r| UnitIndex::new(r, muster_core::dispatch::DEFAULT_STALE_AFTER));
    let first: Option<DateTime<Utc>> = events.first().and_then(|e| e.metadata.occurred_at);
    let mut undecodable = 0;
    for (n, e) in events.iter().enumerate() {
        if let (Some(speed), Some(first), Some(at)) = (speed, first, e.metadata.occurred_at) {
            let due = (at - first).num_milliseconds() as f64 / 1000.0 / speed;
            let elapsed = started.elapsed().as_secs_f64();
            if due > elapsed {
                std::thread::sleep(std::time::Duration::from_secs_f64(due - elapsed));
            }
        }
        let Ok((aggregate, event)) = DomainEvent::from_recorded(e) else {
            undecodable += 1;
            continue;
        };
        match event {
            DomainEvent::Incident(ev) => incidents.entry(aggregate).or_default().apply(&ev),
            DomainEvent::Sensor(ev) => sensors.entry(aggregate).or_default().apply(&ev),
            DomainEvent::Unit(ev) => {
                units.entry(aggregate).or_default().apply(&ev);
                if let (Some(ix), AggregateRef::Unit(id)) = (index.as_mut(), aggregate) {
                    let at = e.metadata.occurred_at.unwrap_or(e.recorded_at);
                    ix.apply(id, &ev, at, at, &stations);
                }
            }
            DomainEvent::RoadClosure(_)
            | DomainEvent::Device(_)
            | DomainEvent::Alert(_)
            | DomainEvent::Audit(_)
            | DomainEvent::ApiToken(_) => {}
        }
        if n % 4096 == 0 {
            progress(n);
        }
    }
    progress(events.len());
    ReplayStats {
        events: events.len(),
        undecodable,
        open_incidents: incidents
            .values()
            .filter(|s| s.incident.as_ref().is_some_and(|i| i.is_open()))
            .count(),
        available_units: units
            .values()
            .filter(|s| {
                s.unit
                    .as_ref()
                    .is_some_and(|u| u.status == UnitStatus::Available)
            })
            .count(),
        wall_s: started.elapsed().as_secs_f64(),
    }
}

/// The calls of a recorded log, relative to `start`, for a new drill ("what if"): where,
/// what, how urgent, when answered and how long entry took.
pub fn calls_of(events: &[RecordedEvent], start: DateTime<Utc>) -> Vec<Call> {
    let mut received: HashMap<IncidentId, DateTime<Utc>> = HashMap::new();
    let mut calls = Vec::new();
    let decoded: Vec<(IncidentId, IncidentEvent)> = events
        .iter()
        .filter_map(|e| match DomainEvent::from_recorded(e) {
            Ok((AggregateRef::Incident(id), DomainEvent::Incident(ev))) => Some((id, ev)),
            _ => None,
        })
        .collect();
    for (id, ev) in &decoded {
        if let IncidentEvent::TimePointRecorded {
            point: TimePoint::CallReceived,
            at,
            ..
        } = ev
        {
            received.insert(*id, *at);
        }
    }
    for (id, ev) in decoded {
        if let IncidentEvent::IncidentReported {
            source,
            location,
            incident_type,
            priority,
            at,
            ..
        } = ev
        {
            let answered = received.get(&id).copied().unwrap_or(at);
            calls.push(Call {
                at_ms: (answered - start).num_milliseconds(),
                location,
                incident_type,
                priority,
                sensor: matches!(source, ReportSource::Sensor { .. }),
                entry_after_ms: Some((at - answered).num_milliseconds().max(0)),
            });
        }
    }
    calls.retain(|c| c.at_ms >= 0);
    calls.sort_by_key(|c| c.at_ms);
    calls
}
