//! Surge: several pending incidents assigned at once, minimising the total priority-weighted
//! travel time (a min-cost assignment), instead of greedily one incident after another.

use std::collections::HashMap;
use std::time::Duration;

use pathfinding::prelude::{Matrix, kuhn_munkres_min};
use serde::Serialize;

use super::index::UnitIndex;
use super::recommend::{IncidentSpec, max_speed_m_s, nearest_by_road};
use crate::ids::UnitId;
use crate::runcard::ResponsePlan;
use crate::value::{Priority, UnitKind};

/// Extra candidates per kind and incident beyond the slots asked for, for the joint choice.
const EXTRA_CANDIDATES: usize = 3;
/// Cost of leaving a slot unfilled: more than any real weighted travel time.
const UNFILLED_COST: i64 = 1_000_000_000_000;

/// A pending incident in a surge.
#[derive(Clone, Debug)]
pub struct PendingIncident {
    /// What and where.
    pub spec: IncidentSpec,
    /// Its priority: weights its travel times.
    pub priority: Priority,
    /// What it needs.
    pub plan: ResponsePlan,
}

/// The weight of a priority's travel time: P1 counts 16 times a P5.
pub fn priority_weight(priority: Priority) -> i64 {
    match priority {
        Priority::P1 => 16,
        Priority::P2 => 8,
        Priority::P3 => 4,
        Priority::P4 => 2,
        Priority::P5 => 1,
    }
}

/// One unit assigned to one incident.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SurgeAssignment {
    /// Index of the incident in the input.
    pub incident: usize,
    /// The unit.
    pub unit: UnitId,
    /// Its kind.
    pub kind: UnitKind,
    /// Road travel time, seconds.
    pub eta_s: f64,
}

/// An assignment of units to a surge of incidents.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SurgePlan {
    /// Who goes where.
    pub assignments: Vec<SurgeAssignment>,
    /// (incident, kind) slots no unit could fill.
    pub unfilled: Vec<(usize, UnitKind)>,
    /// Sum of priority weight × travel time over the assignments, seconds.
    pub weighted_eta_s: f64,
}

struct Slot {
    incident: usize,
    kind: UnitKind,
    weight: i64,
}

/// Candidate travel times: (incident, unit) -> ms.
fn candidate_times(
    index: &UnitIndex,
    incidents: &[PendingIncident],
    slots_per_kind: &HashMap<UnitKind, usize>,
) -> HashMap<(usize, UnitId), u64> {
    let v_max = max_speed_m_s(index);
    let projection = index.router().city().projection();
    let mut times = HashMap::new();
    for (i, incident) in incidents.iter().enumerate() {
        let Ok(target) = index.router().snap(incident.spec.location) else {
            continue;
        };
        let target_xy = projection.project(target.on_road);
        for need in &incident.plan.units {
            let wanted = slots_per_kind.get(&need.kind).copied().unwrap_or(0) + EXTRA_CANDIDATES;
            let keep = |u: &super::index::IndexedUnit| {
                incident
                    .spec
                    .required_capabilities
                    .iter()
                    .all(|c| u.capabilities.contains(c))
            };
            if let Ok(search) = nearest_by_road(
                index,
                need.kind,
                incident.spec.location,
                target_xy,
                wanted,
                v_max,
                keep,
            ) {
                for (eta, unit, _) in search.found.into_iter().take(wanted) {
                    times.insert((i, unit.id), eta.as_millis() as u64);
                }
            }
        }
    }
    times
}

fn slots(incidents: &[PendingIncident]) -> Vec<Slot> {
    incidents
        .iter()
        .enumerate()
        .flat_map(|(i, inc)| {
            inc.plan.units.iter().flat_map(move |need| {
                (0..need.count).map(move |_| Slot {
                    incident: i,
                    kind: need.kind,
                    weight: priority_weight(inc.priority),
                })
            })
        })
        .collect()
}

fn kind_counts(slots: &[Slot]) -> HashMap<UnitKind, usize> {
    let mut counts = HashMap::new();
    for s in slots {
        *counts.entry(s.kind).or_insert(0) += 1;
    }
    counts
}

/// Assigns units to every incident jointly, minimising the total priority-weighted travel time.
pub fn assign_jointly(index: &UnitIndex, incidents: &[PendingIncident]) -> SurgePlan {
    let slots = slots(incidents);
    if slots.is_empty() {
        return SurgePlan::default();
    }
    let times = candidate_times(index, incidents, &kind_counts(&slots));
    let mut units: Vec<UnitId> = times.keys().map(|(_, u)| *u).collect();
    units.sort();
    units.dedup();
    let columns = units.len().max(slots.len());
    let weights = Matrix::from_fn(slots.len(), columns, |(r, c)| {
        let slot = &slots[r];
        match units.get(c) {
            Some(unit) if index.unit(*unit).is_some_and(|u| u.kind == slot.kind) => times
                .get(&(slot.incident, *unit))
                .map_or(UNFILLED_COST, |ms| slot.weight * *ms as i64),
            _ => UNFILLED_COST,
        }
    });
    let (_, columns_of_rows) = kuhn_munkres_min(&weights);
    let mut plan = SurgePlan::default();
    for (r, c) in columns_of_rows.into_iter().enumerate() {
        let slot = &slots[r];
        let cost = weights.get((r, c)).copied().unwrap_or(UNFILLED_COST);
        match units.get(c) {
            Some(unit) if cost < UNFILLED_COST => {
                let ms = times[&(slot.incident, *unit)];
                plan.weighted_eta_s += (slot.weight as f64) * ms as f64 / 1000.0;
                plan.assignments.push(SurgeAssignment {
                    incident: slot.incident,
                    unit: *unit,
                    kind: slot.kind,
                    eta_s: Duration::from_millis(ms).as_secs_f64(),
                });
            }
            _ => plan.unfilled.push((slot.incident, slot.kind)),
        }
    }
    plan
}

/// The baseline: incidents in priority order (then input order), each slot taking the
/// fastest unit still free.
pub fn assign_greedily(index: &UnitIndex, incidents: &[PendingIncident]) -> SurgePlan {
    let slots = slots(incidents);
    let times = candidate_times(index, incidents, &kind_counts(&slots));
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&s| (incidents[slots[s].incident].priority, slots[s].incident));
    let mut taken = std::collections::HashSet::new();
    let mut plan = SurgePlan::default();
    for s in order {
        let slot = &slots[s];
        let best = times
            .iter()
            .filter(|((i, u), _)| {
                *i == slot.incident
                    && !taken.contains(u)
                    && index.unit(*u).is_some_and(|x| x.kind == slot.kind)
            })
            .min_by_key(|((_, u), ms)| (**ms, *u));
        match best {
            Some(((_, unit), ms)) => {
                taken.insert(*unit);
                plan.weighted_eta_s += (slot.weight as f64) * *ms as f64 / 1000.0;
                plan.assignments.push(SurgeAssignment {
                    incident: slot.incident,
                    unit: *unit,
                    kind: slot.kind,
                    eta_s: *ms as f64 / 1000.0,
                });
            }
            None => plan.unfilled.push((slot.incident, slot.kind)),
        }
    }
    plan
}
