//! The unit aggregate: registration, the status state machine, position reports, and tasks
//! (the assignment of the unit to an incident).
//!
//! # One active task per unit, even under concurrency
//! Tasks live in the unit's stream, so the unit aggregate alone decides whether the unit is
//! free: [`UnitCommand::AssignTask`] is refused with [`RefusalKind::UnitBusy`] (naming the
//! incident and task that hold the unit) while it has an active task. Two operators, or two
//! server nodes, may both decide on the same old state at the same instant; the caller must
//! therefore append the events with `ExpectedState::Revision(r)`, where `r` is the revision of
//! the last unit event it read (see [`crate::event::expected_state_after`]). The store lets
//! exactly one append through; the other gets a conflict, reads the stream again, decides
//! again, and is now refused with `UnitBusy`. Position reports also advance the revision, so a
//! conflict is a reason to re-read and retry, not an answer to give the operator.
//!
//! # Status machine
//! | from \ to | how |
//! |---|---|
//! | available, returning | -> dispatched only by [`UnitCommand::AssignTask`]; -> out of service |
//! | dispatched | -> en route, on scene; -> available by declining or completing the task |
//! | en route | -> on scene; -> available by completing (standing down) |
//! | on scene | -> transporting; -> returning (completes the task) |
//! | transporting | -> at hospital |
//! | at hospital | -> returning (completes the task) |
//! | returning | -> available, out of service, or a new task |
//! | out of service | -> available |
//!
//! A unit has an active task exactly when it is dispatched, en route, on scene, transporting
//! or at hospital. Every other change is refused with the reason.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::ids::{IncidentId, TaskId, UnitId};
use crate::value::{Agency, CallSign, Capability, LatLon, NoteText, StationCode, UnitKind};

/// A unit's status.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// In service and free.
    Available,
    /// Assigned to an incident, not yet moving.
    Dispatched,
    /// On the way.
    EnRoute,
    /// At the incident.
    OnScene,
    /// Carrying a patient to hospital.
    Transporting,
    /// At the hospital.
    AtHospital,
    /// Free again, on the way back to station (can take a new task).
    Returning,
    /// Not available for tasks.
    OutOfService,
}

impl UnitStatus {
    /// Every status.
    pub const ALL: [UnitStatus; 8] = [
        Self::Available,
        Self::Dispatched,
        Self::EnRoute,
        Self::OnScene,
        Self::Transporting,
        Self::AtHospital,
        Self::Returning,
        Self::OutOfService,
    ];

    /// Whether a unit in this status holds an active task.
    pub fn is_committed(self) -> bool {
        matches!(
            self,
            Self::Dispatched
                | Self::EnRoute
                | Self::OnScene
                | Self::Transporting
                | Self::AtHospital
        )
    }

    /// Whether a unit in this status can be given a task.
    pub fn can_take_task(self) -> bool {
        matches!(self, Self::Available | Self::Returning)
    }

    /// Stable code, as in JSON.
    pub fn code(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Dispatched => "dispatched",
            Self::EnRoute => "en_route",
            Self::OnScene => "on_scene",
            Self::Transporting => "transporting",
            Self::AtHospital => "at_hospital",
            Self::Returning => "returning",
            Self::OutOfService => "out_of_service",
        }
    }
}

impl fmt::Display for UnitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code().replace('_', " "))
    }
}

/// What happened to a unit. Stored in the stream `unit-<id>`; tasks included, so that the
/// unit stream's revision guards against double assignment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UnitEvent {
    /// A unit joined the fleet; it starts available.
    UnitRegistered {
        /// Its id (also in the stream name).
        unit_id: UnitId,
        /// What it is.
        kind: UnitKind,
        /// Its radio name.
        call_sign: CallSign,
        /// Whose it is.
        agency: Agency,
        /// Where it is based.
        home_station: StationCode,
        /// What it can do.
        capabilities: BTreeSet<Capability>,
        /// When.
        at: DateTime<Utc>,
    },
    /// What the unit can do changed (a paramedic joined or left the crew, equipment fitted).
    UnitCapabilitiesChanged {
        /// What it can do now.
        capabilities: BTreeSet<Capability>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The status changed.
    UnitStatusChanged {
        /// Before.
        from: UnitStatus,
        /// After.
        to: UnitStatus,
        /// The incident of the unit's task, if it has one (before the change, when the change
        /// ends the task).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<IncidentId>,
        /// That task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// An AVL position fix.
    UnitPositionReported {
        /// Where.
        position: LatLon,
        /// Heading, degrees clockwise from north, [0, 360).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heading_deg: Option<f64>,
        /// Speed over ground.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speed_m_s: Option<f64>,
        /// Horizontal accuracy radius.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy_m: Option<f64>,
        /// When the fix was taken.
        at: DateTime<Utc>,
    },
    /// The unit was assigned to an incident.
    TaskAssigned {
        /// The task.
        task: TaskId,
        /// The incident.
        incident: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The unit's crew acknowledged the task.
    TaskAcknowledged {
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The unit's crew declined the task before moving.
    TaskDeclined {
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// Why, if they said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<NoteText>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The task ended: the unit cleared the incident, or was stood down.
    TaskCompleted {
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an operator or a unit's crew asks of a unit.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitCommand {
    /// Register a new unit.
    Register {
        /// Its id, chosen by the caller.
        unit_id: UnitId,
        /// What it is.
        kind: UnitKind,
        /// Its radio name.
        call_sign: CallSign,
        /// Whose it is.
        agency: Agency,
        /// Where it is based.
        home_station: StationCode,
        /// What it can do.
        capabilities: BTreeSet<Capability>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Change what the unit can do.
    ChangeCapabilities {
        /// What it can do now.
        capabilities: BTreeSet<Capability>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Change the status (see the module docs for what is allowed).
    ChangeStatus {
        /// The new status.
        to: UnitStatus,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Record a position fix.
    ReportPosition {
        /// Where.
        position: LatLon,
        /// Heading, degrees clockwise from north, [0, 360).
        heading_deg: Option<f64>,
        /// Speed over ground, >= 0.
        speed_m_s: Option<f64>,
        /// Accuracy radius, >= 0.
        accuracy_m: Option<f64>,
        /// When the fix was taken.
        at: DateTime<Utc>,
    },
    /// Assign the unit to an incident. Append the result with the unit stream's expected
    /// revision (see the module docs).
    AssignTask {
        /// The new task's id, chosen by the caller.
        task: TaskId,
        /// The incident.
        incident: IncidentId,
        /// Now.
        at: DateTime<Utc>,
    },
    /// The crew acknowledges the task.
    AcknowledgeTask {
        /// The task.
        task: TaskId,
        /// Now.
        at: DateTime<Utc>,
    },
    /// The crew declines the task (only before moving).
    DeclineTask {
        /// The task.
        task: TaskId,
        /// Why.
        reason: Option<NoteText>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// The task ends: cleared from the incident (-> returning) or stood down before arriving
    /// (-> available). Not while transporting a patient.
    CompleteTask {
        /// The task.
        task: TaskId,
        /// Now.
        at: DateTime<Utc>,
    },
}

/// The unit's one active task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveTask {
    /// The task.
    pub task: TaskId,
    /// The incident.
    pub incident: IncidentId,
    /// Whether the crew acknowledged it.
    pub acknowledged: bool,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
}

/// The last position fix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PositionFix {
    /// Where.
    pub position: LatLon,
    /// Heading, degrees.
    pub heading_deg: Option<f64>,
    /// Speed.
    pub speed_m_s: Option<f64>,
    /// Accuracy.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken.
    pub at: DateTime<Utc>,
}

/// A registered unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Its id.
    pub id: UnitId,
    /// What it is.
    pub kind: UnitKind,
    /// Its radio name.
    pub call_sign: CallSign,
    /// Whose it is.
    pub agency: Agency,
    /// Where it is based.
    pub home_station: StationCode,
    /// What it can do.
    pub capabilities: BTreeSet<Capability>,
    /// Its status.
    pub status: UnitStatus,
    /// Since when.
    pub status_since: DateTime<Utc>,
    /// Its active task, if any (exactly when the status is committed).
    pub active_task: Option<ActiveTask>,
    /// The newest position fix (by fix time, so a late fix from an offline queue does not
    /// move the unit back).
    pub last_fix: Option<PositionFix>,
}

/// The unit aggregate's state: `None` until registered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UnitState {
    /// The unit, once registered.
    pub unit: Option<Unit>,
}

fn check_optional(
    what: &str,
    value: Option<f64>,
    ok: impl Fn(f64) -> bool,
    rule: &str,
) -> Result<(), Refusal> {
    match value {
        Some(v) if !v.is_finite() || !ok(v) => Err(Refusal::invalid(format!(
            "{what} {v} is not valid: it must be {rule}"
        ))),
        _ => Ok(()),
    }
}

impl Aggregate for UnitState {
    type Command = UnitCommand;
    type Event = UnitEvent;

    fn decide(&self, command: UnitCommand) -> Result<Vec<UnitEvent>, Refusal> {
        use UnitCommand as C;
        use UnitEvent as E;
        if let C::Register {
            unit_id,
            kind,
            call_sign,
            agency,
            home_station,
            capabilities,
            at,
        } = command
        {
            if let Some(existing) = &self.unit {
                return Err(Refusal::new(
                    RefusalKind::AlreadyExists,
                    format!(
                        "unit {} ({}) is already registered",
                        existing.call_sign, existing.id
                    ),
                ));
            }
            return Ok(vec![E::UnitRegistered {
                unit_id,
                kind,
                call_sign,
                agency,
                home_station,
                capabilities,
                at,
            }]);
        }
        let unit = self
            .unit
            .as_ref()
            .ok_or_else(|| Refusal::not_found("the unit is not registered"))?;
        let name = &unit.call_sign;
        match command {
            C::Register { .. } => unreachable!("handled above"),
            C::ReportPosition {
                position,
                heading_deg,
                speed_m_s,
                accuracy_m,
                at,
            } => {
                check_optional(
                    "heading",
                    heading_deg,
                    |v| (0.0..360.0).contains(&v),
                    "from 0 up to 360 degrees",
                )?;
                check_optional("speed", speed_m_s, |v| v >= 0.0, "0 m/s or more")?;
                check_optional("accuracy", accuracy_m, |v| v >= 0.0, "0 m or more")?;
                Ok(vec![E::UnitPositionReported {
                    position,
                    heading_deg,
                    speed_m_s,
                    accuracy_m,
                    at,
                }])
            }
            C::AssignTask { task, incident, at } => {
                if let Some(active) = unit.active_task {
                    if active.task == task && active.incident == incident {
                        return Ok(vec![]);
                    }
                    return Err(Refusal::new(
                        RefusalKind::UnitBusy {
                            incident: active.incident,
                            task: active.task,
                        },
                        format!(
                            "unit {name} is already assigned to incident {} (task {})",
                            active.incident, active.task
                        ),
                    ));
                }
                if !unit.status.can_take_task() {
                    return Err(Refusal::transition(format!(
                        "unit {name} is {} and cannot take a task",
                        unit.status
                    )));
                }
                Ok(vec![
                    E::TaskAssigned { task, incident, at },
                    E::UnitStatusChanged {
                        from: unit.status,
                        to: UnitStatus::Dispatched,
                        incident: Some(incident),
                        task: Some(task),
                        at,
                    },
                ])
            }
            C::AcknowledgeTask { task, at } => {
                let active = active_task(unit, task)?;
                Ok(if active.acknowledged {
                    vec![]
                } else {
                    vec![E::TaskAcknowledged {
                        task,
                        incident: active.incident,
                        at,
                    }]
                })
            }
            C::DeclineTask { task, reason, at } => {
                let active = active_task(unit, task)?;
                if unit.status != UnitStatus::Dispatched {
                    return Err(Refusal::transition(format!(
                        "unit {name} is {} on incident {}; a task can be declined only before moving",
                        unit.status, active.incident
                    )));
                }
                Ok(vec![
                    E::TaskDeclined {
                        task,
                        incident: active.incident,
                        reason,
                        at,
                    },
                    E::UnitStatusChanged {
                        from: unit.status,
                        to: UnitStatus::Available,
                        incident: Some(active.incident),
                        task: Some(active.task),
                        at,
                    },
                ])
            }
            C::CompleteTask { task, at } => {
                let active = active_task(unit, task)?;
                complete(unit, active, at)
            }
            C::ChangeStatus { to, at } => change_status(unit, to, at),
            C::ChangeCapabilities { capabilities, at } => {
                Ok(if capabilities == unit.capabilities {
                    vec![]
                } else {
                    vec![E::UnitCapabilitiesChanged { capabilities, at }]
                })
            }
        }
    }

    fn apply(&mut self, event: &UnitEvent) {
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
            if self.unit.is_none() {
                self.unit = Some(Unit {
                    id: *unit_id,
                    kind: *kind,
                    call_sign: call_sign.clone(),
                    agency: agency.clone(),
                    home_station: home_station.clone(),
                    capabilities: capabilities.clone(),
                    status: UnitStatus::Available,
                    status_since: *at,
                    active_task: None,
                    last_fix: None,
                });
            }
            return;
        }
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        match event {
            E::UnitRegistered { .. } => {}
            E::UnitCapabilitiesChanged { capabilities, .. } => {
                unit.capabilities = capabilities.clone();
            }
            E::UnitStatusChanged { to, at, .. } => {
                unit.status = *to;
                unit.status_since = *at;
            }
            E::UnitPositionReported {
                position,
                heading_deg,
                speed_m_s,
                accuracy_m,
                at,
            } => {
                if unit.last_fix.is_none_or(|f| f.at <= *at) {
                    unit.last_fix = Some(PositionFix {
                        position: *position,
                        heading_deg: *heading_deg,
                        speed_m_s: *speed_m_s,
                        accuracy_m: *accuracy_m,
                        at: *at,
                    });
                }
            }
            E::TaskAssigned { task, incident, at } => {
                unit.active_task = Some(ActiveTask {
                    task: *task,
                    incident: *incident,
                    acknowledged: false,
                    assigned_at: *at,
                });
            }
            E::TaskAcknowledged { task, .. } => {
                if let Some(active) = unit.active_task.as_mut().filter(|a| a.task == *task) {
                    active.acknowledged = true;
                }
            }
            E::TaskDeclined { task, .. } | E::TaskCompleted { task, .. } => {
                if unit.active_task.is_some_and(|a| a.task == *task) {
                    unit.active_task = None;
                }
            }
        }
    }
}

fn active_task(unit: &Unit, task: TaskId) -> Result<ActiveTask, Refusal> {
    match unit.active_task {
        Some(active) if active.task == task => Ok(active),
        Some(active) => Err(Refusal::transition(format!(
            "task {task} is not unit {}'s active task; its active task is {} on incident {}",
            unit.call_sign, active.task, active.incident
        ))),
        None => Err(Refusal::transition(format!(
            "task {task} is not active: unit {} has no active task",
            unit.call_sign
        ))),
    }
}

fn complete(unit: &Unit, active: ActiveTask, at: DateTime<Utc>) -> Result<Vec<UnitEvent>, Refusal> {
    let to = match unit.status {
        UnitStatus::Dispatched | UnitStatus::EnRoute => UnitStatus::Available,
        UnitStatus::OnScene | UnitStatus::AtHospital => UnitStatus::Returning,
        UnitStatus::Transporting => {
            return Err(Refusal::transition(format!(
                "unit {} is transporting a patient; it can complete its task at the hospital",
                unit.call_sign
            )));
        }
        other => {
            return Err(Refusal::transition(format!(
                "unit {} is {other} and has no task to complete",
                unit.call_sign
            )));
        }
    };
    Ok(vec![
        UnitEvent::TaskCompleted {
            task: active.task,
            incident: active.incident,
            at,
        },
        UnitEvent::UnitStatusChanged {
            from: unit.status,
            to,
            incident: Some(active.incident),
            task: Some(active.task),
            at,
        },
    ])
}

fn change_status(
    unit: &Unit,
    to: UnitStatus,
    at: DateTime<Utc>,
) -> Result<Vec<UnitEvent>, Refusal> {
    use UnitStatus as S;
    let from = unit.status;
    let name = &unit.call_sign;
    let refuse = |why: String| {
        Err(Refusal::transition(format!(
            "unit {name} cannot go from {from} to {to}: {why}"
        )))
    };
    if from == to {
        return refuse(format!("it is already {to}"));
    }
    let changed = |task: Option<ActiveTask>| {
        Ok(vec![UnitEvent::UnitStatusChanged {
            from,
            to,
            incident: task.map(|a| a.incident),
            task: task.map(|a| a.task),
            at,
        }])
    };
    let incident = unit.active_task.map(|a| a.incident);
    let busy = || {
        format!(
            "it has an active task on incident {}; complete or decline it first",
            incident.map_or_else(String::new, |i| i.to_string())
        )
    };
    match (from, to) {
        (_, S::Dispatched) => refuse("a unit is dispatched only by assigning it a task".into()),
        (S::Dispatched, S::EnRoute) => changed(unit.active_task),
        (_, S::EnRoute) => refuse("only a dispatched unit goes en route".into()),
        (S::Dispatched | S::EnRoute, S::OnScene) => changed(unit.active_task),
        (_, S::OnScene) => refuse("only a dispatched or en route unit arrives on scene".into()),
        (S::OnScene, S::Transporting) => changed(unit.active_task),
        (_, S::Transporting) => refuse("only a unit on scene starts transporting".into()),
        (S::Transporting, S::AtHospital) => changed(unit.active_task),
        (_, S::AtHospital) => refuse("only a transporting unit arrives at hospital".into()),
        (S::OnScene | S::AtHospital, S::Returning) => match unit.active_task {
            Some(active) => complete(unit, active, at),
            None => changed(None),
        },
        (S::Transporting, S::Returning) => {
            refuse("it is transporting a patient; it must reach the hospital first".into())
        }
        (_, S::Returning) => refuse("only a unit leaving a scene or a hospital returns".into()),
        (S::Returning | S::OutOfService, S::Available) => changed(None),
        (_, S::Available) => refuse(busy()),
        (S::Available | S::Returning, S::OutOfService) => changed(None),
        (_, S::OutOfService) => refuse(busy()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::testing::Given;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn uid() -> UnitId {
        UnitId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn inc(n: u128) -> IncidentId {
        IncidentId::from_uuid(uuid::Uuid::from_u128(1000 + n))
    }

    fn task(n: u128) -> TaskId {
        TaskId::from_uuid(uuid::Uuid::from_u128(2000 + n))
    }

    fn registered() -> Vec<UnitEvent> {
        vec![UnitEvent::UnitRegistered {
            unit_id: uid(),
            kind: UnitKind::Engine,
            call_sign: CallSign::parse("E7").unwrap(),
            agency: Agency::parse("city-fire").unwrap(),
            home_station: StationCode::parse("station-7").unwrap(),
            capabilities: [Capability::parse("aed").unwrap()].into_iter().collect(),
            at: t(0),
        }]
    }

    fn assigned(n: u128, s: i64) -> Vec<UnitEvent> {
        vec![
            UnitEvent::TaskAssigned {
                task: task(n),
                incident: inc(n),
                at: t(s),
            },
            UnitEvent::UnitStatusChanged {
                from: UnitStatus::Available,
                to: UnitStatus::Dispatched,
                incident: Some(inc(n)),
                task: Some(task(n)),
                at: t(s),
            },
        ]
    }

    fn status(from: UnitStatus, to: UnitStatus, n: Option<u128>, s: i64) -> UnitEvent {
        UnitEvent::UnitStatusChanged {
            from,
            to,
            incident: n.map(inc),
            task: n.map(task),
            at: t(s),
        }
    }

    fn given(parts: &[Vec<UnitEvent>]) -> Given<UnitState> {
        Given::events(parts.iter().flatten().cloned())
    }

    #[test]
    fn register_once() {
        let state = Given::<UnitState>::nothing()
            .when(UnitCommand::Register {
                unit_id: uid(),
                kind: UnitKind::Engine,
                call_sign: CallSign::parse("e7").unwrap(),
                agency: Agency::parse("city-fire").unwrap(),
                home_station: StationCode::parse("station-7").unwrap(),
                capabilities: [Capability::parse("aed").unwrap()].into_iter().collect(),
                at: t(0),
            })
            .then_events(registered());
        assert_eq!(state.unit.as_ref().unwrap().status, UnitStatus::Available);
        given(&[registered()])
            .when(UnitCommand::Register {
                unit_id: uid(),
                kind: UnitKind::Ladder,
                call_sign: CallSign::parse("L1").unwrap(),
                agency: Agency::parse("city-fire").unwrap(),
                home_station: StationCode::parse("station-1").unwrap(),
                capabilities: BTreeSet::new(),
                at: t(1),
            })
            .then_refused(RefusalKind::AlreadyExists);
    }

    #[test]
    fn capabilities_change() {
        let als: BTreeSet<Capability> = [
            Capability::parse("aed").unwrap(),
            Capability::parse("als").unwrap(),
        ]
        .into_iter()
        .collect();
        let state = given(&[registered()])
            .when(UnitCommand::ChangeCapabilities {
                capabilities: als.clone(),
                at: t(5),
            })
            .then_events([UnitEvent::UnitCapabilitiesChanged {
                capabilities: als.clone(),
                at: t(5),
            }]);
        assert_eq!(state.unit.unwrap().capabilities, als);
        given(&[registered()])
            .when(UnitCommand::ChangeCapabilities {
                capabilities: [Capability::parse("aed").unwrap()].into_iter().collect(),
                at: t(5),
            })
            .then_nothing();
    }

    #[test]
    fn an_unregistered_unit_is_not_found() {
        Given::<UnitState>::nothing()
            .when(UnitCommand::ChangeStatus {
                to: UnitStatus::OutOfService,
                at: t(1),
            })
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn assignment_dispatches_and_a_second_one_names_the_winner() {
        let state = given(&[registered()])
            .when(UnitCommand::AssignTask {
                task: task(1),
                incident: inc(1),
                at: t(10),
            })
            .then_events(assigned(1, 10));
        let unit = state.unit.unwrap();
        assert_eq!(unit.status, UnitStatus::Dispatched);
        assert_eq!(unit.active_task.map(|a| a.incident), Some(inc(1)));

        let refusal = given(&[registered(), assigned(1, 10)])
            .when(UnitCommand::AssignTask {
                task: task(2),
                incident: inc(2),
                at: t(11),
            })
            .then_refused(RefusalKind::UnitBusy {
                incident: inc(1),
                task: task(1),
            });
        assert!(
            refusal.reason.contains(&inc(1).to_string()),
            "{}",
            refusal.reason
        );

        // The same assignment again (a retry) changes nothing.
        given(&[registered(), assigned(1, 10)])
            .when(UnitCommand::AssignTask {
                task: task(1),
                incident: inc(1),
                at: t(12),
            })
            .then_nothing();
    }

    #[test]
    fn an_out_of_service_unit_takes_no_task() {
        given(&[
            registered(),
            vec![status(
                UnitStatus::Available,
                UnitStatus::OutOfService,
                None,
                5,
            )],
        ])
        .when(UnitCommand::AssignTask {
            task: task(1),
            incident: inc(1),
            at: t(10),
        })
        .then_refused_saying(RefusalKind::InvalidTransition, "out of service");
    }

    #[test]
    fn a_full_ambulance_run() {
        use UnitStatus as S;
        let mut past: Vec<UnitEvent> = [registered(), assigned(1, 10)].concat();
        let steps: Vec<(UnitCommand, Vec<UnitEvent>)> = vec![
            (
                UnitCommand::AcknowledgeTask {
                    task: task(1),
                    at: t(12),
                },
                vec![UnitEvent::TaskAcknowledged {
                    task: task(1),
                    incident: inc(1),
                    at: t(12),
                }],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::EnRoute,
                    at: t(60),
                },
                vec![status(S::Dispatched, S::EnRoute, Some(1), 60)],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::OnScene,
                    at: t(300),
                },
                vec![status(S::EnRoute, S::OnScene, Some(1), 300)],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::Transporting,
                    at: t(900),
                },
                vec![status(S::OnScene, S::Transporting, Some(1), 900)],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::AtHospital,
                    at: t(1500),
                },
                vec![status(S::Transporting, S::AtHospital, Some(1), 1500)],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::Returning,
                    at: t(2000),
                },
                vec![
                    UnitEvent::TaskCompleted {
                        task: task(1),
                        incident: inc(1),
                        at: t(2000),
                    },
                    status(S::AtHospital, S::Returning, Some(1), 2000),
                ],
            ),
            (
                UnitCommand::ChangeStatus {
                    to: S::Available,
                    at: t(2600),
                },
                vec![status(S::Returning, S::Available, None, 2600)],
            ),
        ];
        for (command, events) in steps {
            Given::<UnitState>::events(past.clone())
                .when(command)
                .then_events(events.clone());
            past.extend(events);
        }
        let unit = UnitState::replay(&past).unit.unwrap();
        assert_eq!(unit.status, S::Available);
        assert_eq!(unit.active_task, None);
    }

    #[test]
    fn invalid_status_changes_are_refused_with_a_reason() {
        use UnitStatus as S;
        let available = vec![registered()];
        let dispatched = vec![registered(), assigned(1, 10)];
        let transporting = vec![
            registered(),
            assigned(1, 10),
            vec![
                status(S::Dispatched, S::OnScene, Some(1), 20),
                status(S::OnScene, S::Transporting, Some(1), 30),
            ],
        ];
        let out = vec![
            registered(),
            vec![status(S::Available, S::OutOfService, None, 5)],
        ];
        let table: Vec<(&Vec<Vec<UnitEvent>>, UnitStatus, &str, &str)> = vec![
            (&available, S::Available, "already available", "no change"),
            (
                &available,
                S::Dispatched,
                "only by assigning",
                "dispatch without a task",
            ),
            (
                &available,
                S::EnRoute,
                "only a dispatched unit",
                "en route without a task",
            ),
            (
                &available,
                S::OnScene,
                "only a dispatched or en route",
                "on scene from nowhere",
            ),
            (
                &available,
                S::Transporting,
                "only a unit on scene",
                "transporting from available",
            ),
            (
                &available,
                S::AtHospital,
                "only a transporting unit",
                "at hospital from available",
            ),
            (
                &available,
                S::Returning,
                "leaving a scene or a hospital",
                "returning from available",
            ),
            (
                &dispatched,
                S::Available,
                "complete or decline it first",
                "dropping a task by a status change",
            ),
            (
                &dispatched,
                S::OutOfService,
                "complete or decline it first",
                "out of service while on a task",
            ),
            (
                &dispatched,
                S::Transporting,
                "only a unit on scene",
                "transporting before arriving",
            ),
            (
                &transporting,
                S::Returning,
                "reach the hospital first",
                "returning with a patient",
            ),
            (
                &transporting,
                S::Available,
                "complete or decline it first",
                "available with a patient",
            ),
            (
                &out,
                S::EnRoute,
                "only a dispatched unit",
                "en route while out of service",
            ),
            (
                &out,
                S::Returning,
                "leaving a scene or a hospital",
                "returning while out of service",
            ),
        ];
        for (past, to, text, why) in table {
            let then = given(past).when(UnitCommand::ChangeStatus { to, at: t(100) });
            let refusal = match then.result() {
                Err(r) => r.clone(),
                Ok(events) => panic!("{why}: expected a refusal, got {events:?}"),
            };
            assert_eq!(refusal.kind, RefusalKind::InvalidTransition, "{why}");
            assert!(
                refusal.reason.contains(text),
                "{why}: {:?} should say {text:?}",
                refusal.reason
            );
        }
    }

    #[test]
    fn decline_only_before_moving() {
        use UnitStatus as S;
        given(&[registered(), assigned(1, 10)])
            .when(UnitCommand::DeclineTask {
                task: task(1),
                reason: None,
                at: t(15),
            })
            .then_events([
                UnitEvent::TaskDeclined {
                    task: task(1),
                    incident: inc(1),
                    reason: None,
                    at: t(15),
                },
                status(S::Dispatched, S::Available, Some(1), 15),
            ]);
        given(&[
            registered(),
            assigned(1, 10),
            vec![status(S::Dispatched, S::EnRoute, Some(1), 20)],
        ])
        .when(UnitCommand::DeclineTask {
            task: task(1),
            reason: None,
            at: t(25),
        })
        .then_refused_saying(RefusalKind::InvalidTransition, "only before moving");
        given(&[registered(), assigned(1, 10)])
            .when(UnitCommand::DeclineTask {
                task: task(9),
                reason: None,
                at: t(15),
            })
            .then_refused_saying(RefusalKind::InvalidTransition, "not unit E7's active task");
    }

    #[test]
    fn completing_stands_down_or_returns() {
        use UnitStatus as S;
        given(&[
            registered(),
            assigned(1, 10),
            vec![status(S::Dispatched, S::EnRoute, Some(1), 20)],
        ])
        .when(UnitCommand::CompleteTask {
            task: task(1),
            at: t(30),
        })
        .then_events([
            UnitEvent::TaskCompleted {
                task: task(1),
                incident: inc(1),
                at: t(30),
            },
            status(S::EnRoute, S::Available, Some(1), 30),
        ]);
        given(&[
            registered(),
            assigned(1, 10),
            vec![status(S::Dispatched, S::OnScene, Some(1), 20)],
        ])
        .when(UnitCommand::CompleteTask {
            task: task(1),
            at: t(30),
        })
        .then_events([
            UnitEvent::TaskCompleted {
                task: task(1),
                incident: inc(1),
                at: t(30),
            },
            status(S::OnScene, S::Returning, Some(1), 30),
        ]);
        given(&[registered()])
            .when(UnitCommand::CompleteTask {
                task: task(1),
                at: t(30),
            })
            .then_refused_saying(RefusalKind::InvalidTransition, "no active task");
    }

    #[test]
    fn a_returning_unit_can_take_a_new_task() {
        use UnitStatus as S;
        let past = [
            registered(),
            assigned(1, 10),
            vec![
                status(S::Dispatched, S::OnScene, Some(1), 20),
                UnitEvent::TaskCompleted {
                    task: task(1),
                    incident: inc(1),
                    at: t(30),
                },
                status(S::OnScene, S::Returning, Some(1), 30),
            ],
        ];
        given(&past)
            .when(UnitCommand::AssignTask {
                task: task(2),
                incident: inc(2),
                at: t(40),
            })
            .then_events([
                UnitEvent::TaskAssigned {
                    task: task(2),
                    incident: inc(2),
                    at: t(40),
                },
                status(S::Returning, S::Dispatched, Some(2), 40),
            ]);
    }

    #[test]
    fn position_reports_are_checked_and_the_newest_fix_wins() {
        let here = LatLon::from_lat_lon(52.5, 13.4).unwrap();
        let report = |heading: Option<f64>, speed: Option<f64>, accuracy: Option<f64>, s: i64| {
            UnitCommand::ReportPosition {
                position: here,
                heading_deg: heading,
                speed_m_s: speed,
                accuracy_m: accuracy,
                at: t(s),
            }
        };
        let table = [
            (report(Some(360.0), None, None, 1), "heading 360 is 0"),
            (report(Some(-1.0), None, None, 1), "negative heading"),
            (report(Some(f64::NAN), None, None, 1), "NaN heading"),
            (report(None, Some(-0.5), None, 1), "negative speed"),
            (report(None, Some(f64::INFINITY), None, 1), "infinite speed"),
            (report(None, None, Some(-3.0), 1), "negative accuracy"),
        ];
        for (command, why) in table {
            let refusal = given(&[registered()])
                .when(command)
                .then_refused(RefusalKind::Invalid);
            assert!(
                refusal.reason.contains("must be"),
                "{why}: {}",
                refusal.reason
            );
        }
        let newer = UnitEvent::UnitPositionReported {
            position: here,
            heading_deg: Some(90.0),
            speed_m_s: None,
            accuracy_m: None,
            at: t(20),
        };
        let late = UnitEvent::UnitPositionReported {
            position: here,
            heading_deg: Some(180.0),
            speed_m_s: None,
            accuracy_m: None,
            at: t(10),
        };
        let state = UnitState::replay(&[registered(), vec![newer, late]].concat());
        assert_eq!(
            state.unit.unwrap().last_fix.unwrap().heading_deg,
            Some(90.0)
        );
    }
}
