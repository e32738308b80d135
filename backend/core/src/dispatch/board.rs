//! The dispatch board: the open incidents as the dispatcher plans them, folded from the log.
//! For each incident, the units sent to it, the units released from it (declined, or
//! stood down before reaching the scene), the units whose crews
//! did not acknowledge in time, and the units that reached its scene; for each unit, the
//! incident it is committed to.
//!
//! From these it answers what an incident still needs ([`Board::needs`]: its run card less
//! the units that count, and the units not to recommend again) and when a rule dispatches it
//! without an operator ([`Board::apply_incident`] and the other folds say which incident a
//! rule wants (re)planned now). The server's dispatcher and the drill engine plan from the
//! same board.

use std::collections::{BTreeSet, HashMap};

use super::index::UnitIndex;
use super::policy::{AutoDispatchRule, Commitment, DispatchRules};
use super::recommend::IncidentSpec;
use crate::alert::AlertEvent;
use crate::ids::{IncidentId, UnitId};
use crate::incident::IncidentEvent;
use crate::runcard::{ResponsePlan, ResponsePlans};
use crate::unit::{UnitEvent, UnitStatus};
use crate::value::{IncidentSource, IncidentType, LatLon, Priority};

/// An open incident as the dispatcher sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenIncident {
    /// Where it is.
    pub location: LatLon,
    /// Its type.
    pub incident_type: IncidentType,
    /// Its priority.
    pub priority: Priority,
    /// Where it came from.
    pub source: IncidentSource,
    /// Units assigned to it now.
    pub units: BTreeSet<UnitId>,
    /// Units that left it without serving it (declined, or stood down before reaching the
    /// scene): not recommended for it again.
    pub released: BTreeSet<UnitId>,
    /// Assigned units whose crews did not acknowledge in time: not counted as sent.
    pub overdue: BTreeSet<UnitId>,
    /// Units that reached the scene: they count toward the run card after they clear, so a
    /// unit that has done its part is not asked for again. (A unit stood down before
    /// arriving, to go elsewhere, leaves a need behind.)
    pub served: BTreeSet<UnitId>,
}

/// What an incident still needs.
#[derive(Clone, Debug)]
pub struct Needs {
    /// Where and for whom.
    pub spec: IncidentSpec,
    /// Its run card less the units that count (kinds with nothing left are dropped).
    pub plan: ResponsePlan,
    /// Units not to recommend: those sent and those released from it.
    pub exclude: Vec<UnitId>,
}

/// Why an incident's needs cannot be told.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NeedsError {
    /// The incident is not open (never reported, closed or merged).
    #[error("there is no open incident {0}")]
    NotOpen(IncidentId),
    /// No response plan covers it.
    #[error("no response plan covers {incident_type:?} at {priority:?}")]
    NoPlan {
        /// Its type.
        incident_type: IncidentType,
        /// Its priority.
        priority: Priority,
    },
}

/// The board. Folds are pure; what they return is the incident a rule wants dispatched now.
#[derive(Clone, Debug, Default)]
pub struct Board {
    incidents: HashMap<IncidentId, OpenIncident>,
    commitments: HashMap<UnitId, IncidentId>,
    call_signs: HashMap<UnitId, String>,
}

impl Board {
    /// An open incident.
    pub fn incident(&self, id: IncidentId) -> Option<&OpenIncident> {
        self.incidents.get(&id)
    }

    /// A unit's call sign.
    pub fn call_sign(&self, unit: UnitId) -> Option<&str> {
        self.call_signs.get(&unit).map(String::as_str)
    }

    /// The rule that dispatches an open incident without an operator, if any.
    pub fn auto_rule<'r>(
        &self,
        id: IncidentId,
        rules: &'r DispatchRules,
    ) -> Option<&'r AutoDispatchRule> {
        let i = self.incidents.get(&id)?;
        rules.auto_dispatch_rule(i.incident_type, i.source, i.priority)
    }

    /// Open incidents a rule dispatches that have no unit yet (reported while no dispatcher
    /// ran), in id order.
    pub fn waiting_for_rule(&self, rules: &DispatchRules) -> Vec<IncidentId> {
        let mut waiting: Vec<IncidentId> = self
            .incidents
            .iter()
            .filter(|(_, i)| {
                i.units.is_empty()
                    && rules
                        .auto_dispatch_rule(i.incident_type, i.source, i.priority)
                        .is_some()
            })
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        waiting
    }

    /// Units committed to incidents other than `except`, with those incidents' priorities.
    pub fn commitments(&self, except: IncidentId) -> Vec<Commitment> {
        let mut out: Vec<Commitment> = self
            .commitments
            .iter()
            .filter(|(_, i)| **i != except)
            .filter_map(|(u, i)| {
                self.incidents.get(i).map(|inc| Commitment {
                    unit: *u,
                    incident: *i,
                    priority: inc.priority,
                })
            })
            .collect();
        out.sort_by_key(|c| (c.unit, c.incident));
        out
    }

    /// What an open incident still needs: its run card less the units that count (sent and
    /// not overdue, or served), and the units not to recommend again.
    pub fn needs(
        &self,
        id: IncidentId,
        plans: &ResponsePlans,
        index: &UnitIndex,
    ) -> Result<Needs, NeedsError> {
        let open = self.incidents.get(&id).ok_or(NeedsError::NotOpen(id))?;
        let mut plan = plans
            .plan_for(open.incident_type, open.priority)
            .cloned()
            .ok_or(NeedsError::NoPlan {
                incident_type: open.incident_type,
                priority: open.priority,
            })?;
        let counted: BTreeSet<UnitId> = open.units.union(&open.served).copied().collect();
        for need in &mut plan.units {
            let sent = counted
                .difference(&open.overdue)
                .filter(|u| index.unit(**u).is_some_and(|x| x.kind == need.kind))
                .count();
            need.count = need.count.saturating_sub(sent.min(255) as u8);
        }
        plan.units.retain(|n| n.count > 0);
        Ok(Needs {
            spec: IncidentSpec {
                location: open.location,
                agency: None,
                required_capabilities: vec![],
            },
            plan,
            exclude: open
                .units
                .iter()
                .chain(open.released.iter())
                .copied()
                .collect(),
        })
    }

    /// Records a unit sent to an incident before its assignment comes back through the log
    /// (an automatic dispatch filling several slots in a row).
    pub fn mark_sent(&mut self, incident: IncidentId, unit: UnitId) {
        if let Some(i) = self.incidents.get_mut(&incident) {
            i.units.insert(unit);
        }
    }

    /// Folds an incident event in. Answers the incident when a rule dispatches it (a new
    /// report a rule covers).
    pub fn apply_incident(
        &mut self,
        incident: IncidentId,
        event: &IncidentEvent,
        rules: &DispatchRules,
    ) -> Option<IncidentId> {
        let open = self.incidents.get_mut(&incident);
        match (event, open) {
            (
                IncidentEvent::IncidentReported {
                    source,
                    location,
                    incident_type,
                    priority,
                    ..
                },
                _,
            ) => {
                self.incidents.insert(
                    incident,
                    OpenIncident {
                        location: *location,
                        incident_type: *incident_type,
                        priority: *priority,
                        source: source.kind(),
                        units: BTreeSet::new(),
                        released: BTreeSet::new(),
                        overdue: BTreeSet::new(),
                        served: BTreeSet::new(),
                    },
                );
                self.auto_rule(incident, rules).map(|_| incident)
            }
            (
                IncidentEvent::IncidentTriaged {
                    incident_type,
                    priority,
                    ..
                },
                Some(i),
            ) => {
                i.incident_type = *incident_type;
                i.priority = *priority;
                None
            }
            (IncidentEvent::IncidentLocationUpdated { location, .. }, Some(i)) => {
                i.location = *location;
                None
            }
            (IncidentEvent::IncidentTypeUpdated { incident_type, .. }, Some(i)) => {
                i.incident_type = *incident_type;
                None
            }
            (IncidentEvent::IncidentPriorityUpdated { priority, .. }, Some(i)) => {
                i.priority = *priority;
                None
            }
            (IncidentEvent::IncidentClosed { .. } | IncidentEvent::IncidentMerged { .. }, _) => {
                self.incidents.remove(&incident);
                None
            }
            _ => None,
        }
    }

    /// Folds a unit event in. Answers the incident a rule wants planned again (a decline of
    /// an incident a rule dispatches).
    pub fn apply_unit(
        &mut self,
        unit: UnitId,
        event: &UnitEvent,
        rules: &DispatchRules,
    ) -> Option<IncidentId> {
        match event {
            UnitEvent::UnitRegistered { call_sign, .. } => {
                self.call_signs.insert(unit, call_sign.as_str().to_owned());
                None
            }
            UnitEvent::UnitStatusChanged { to, .. } => {
                if *to == UnitStatus::OnScene
                    && let Some(incident) = self.commitments.get(&unit).copied()
                    && let Some(i) = self.incidents.get_mut(&incident)
                {
                    i.served.insert(unit);
                }
                None
            }
            UnitEvent::TaskAssigned { incident, .. } => {
                self.commitments.insert(unit, *incident);
                self.mark_sent(*incident, unit);
                None
            }
            UnitEvent::TaskAcknowledged { incident, .. } => {
                if let Some(i) = self.incidents.get_mut(incident) {
                    i.overdue.remove(&unit);
                }
                None
            }
            UnitEvent::TaskDeclined { incident, .. } => {
                self.commitments.remove(&unit);
                let i = self.incidents.get_mut(incident)?;
                i.units.remove(&unit);
                i.overdue.remove(&unit);
                i.released.insert(unit);
                self.auto_rule(*incident, rules).map(|_| *incident)
            }
            UnitEvent::TaskCompleted { incident, .. } => {
                self.commitments.remove(&unit);
                if let Some(i) = self.incidents.get_mut(incident) {
                    i.units.remove(&unit);
                    i.overdue.remove(&unit);
                    if !i.served.contains(&unit) {
                        i.released.insert(unit);
                    }
                }
                None
            }
            UnitEvent::UnitCapabilitiesChanged { .. } | UnitEvent::UnitPositionReported { .. } => {
                None
            }
        }
    }

    /// Folds an operator alert in: a crew that did not acknowledge in time no longer counts
    /// as sent. Answers the incident when a rule wants it planned again.
    pub fn apply_alert(&mut self, event: &AlertEvent, rules: &DispatchRules) -> Option<IncidentId> {
        let AlertEvent::TaskAckOverdue { incident, unit, .. } = event;
        let i = self.incidents.get_mut(incident)?;
        if !i.units.contains(unit) {
            return None;
        }
        i.overdue.insert(*unit);
        self.auto_rule(*incident, rules).map(|_| *incident)
    }
}
