//! Decisions over several aggregates at once: what a command means for every stream it
//! touches, decided together so that one atomic append carries it with each stream's
//! expected revision.
//!
//! - An assignment is decided against the incident (reported, open, and it records the
//!   dispatch) *and* the unit (free to take it): a closed incident or a busy unit refuses it.
//! - A unit's task and status events record their time points on the task's incident in the
//!   same decision ([`reaction::incident_progress`]).
//! - Closing an incident completes the tasks of the units it cleared in the same decision.
//! - A sensor's alarm reports its incident, and its clearing notes it, in the same decision.
//! - A device token is issued only for a registered unit.
//! - An acknowledgement alert is raised only while the unit still holds the task
//!   unacknowledged.
//! - Machines' API tokens are created and revoked in their one stream.
//!
//! The states come from a [`States`]: the caller (the command runner) supplies them, and its
//! error type can ask for a stream it has not loaded yet, so a decision reads only the
//! aggregates it needs.

use crate::alert::{AlertCommand, AlertEvent, AlertState};
use crate::api_token::{ApiTokenCommand, ApiTokenEvent, ApiTokens};
use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::device::{DeviceCommand, DeviceEvent, DeviceState};
use crate::ids::{ClosureId, IncidentId, SensorId, TaskId, UnitId};
use crate::incident::{IncidentCommand, IncidentEvent, IncidentState};
use crate::reaction;
use crate::road::{RoadClosureCommand, RoadClosureEvent, RoadClosureState};
use crate::runcard::ResponsePlan;
use crate::sensor::{SensorCommand, SensorEvent, SensorState};
use crate::unit::{UnitCommand, UnitEvent, UnitState};
use crate::value::{Disposition, UnitKind};
use chrono::{DateTime, Utc};

/// The aggregates a decision may read.
pub trait States {
    /// Why a state is not there: a refusal, or (for the runner) "load this stream first".
    type Error: From<Refusal>;
    /// An incident's state (the default state when it was never reported).
    fn incident(&self, id: IncidentId) -> Result<&IncidentState, Self::Error>;
    /// A unit's state.
    fn unit(&self, id: UnitId) -> Result<&UnitState, Self::Error>;
    /// A sensor's state.
    fn sensor(&self, id: SensorId) -> Result<&SensorState, Self::Error>;
    /// A road closure's state.
    fn road_closure(&self, id: ClosureId) -> Result<&RoadClosureState, Self::Error>;
    /// A unit's device enrolment.
    fn device(&self, unit: UnitId) -> Result<&DeviceState, Self::Error>;
    /// A task's alerts.
    fn alert(&self, task: TaskId) -> Result<&AlertState, Self::Error>;
    /// The machines' API tokens.
    fn api_tokens(&self) -> Result<&ApiTokens, Self::Error>;
}

/// The events a decision appends, by aggregate, and the side effects it left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Incident events, by incident, in order.
    pub incidents: Vec<(IncidentId, Vec<IncidentEvent>)>,
    /// Unit events, by unit, in order.
    pub units: Vec<(UnitId, Vec<UnitEvent>)>,
    /// Sensor events, by sensor, in order.
    pub sensors: Vec<(SensorId, Vec<SensorEvent>)>,
    /// Road closure events, by closure.
    pub road_closures: Vec<(ClosureId, Vec<RoadClosureEvent>)>,
    /// Device enrolment events, by unit.
    pub devices: Vec<(UnitId, Vec<DeviceEvent>)>,
    /// Alerts, by task.
    pub alerts: Vec<(TaskId, Vec<AlertEvent>)>,
    /// API token events, in order.
    pub api_tokens: Vec<ApiTokenEvent>,
    /// Effects on other aggregates that their state refused (a time point on an incident
    /// that has ended, a unit still transporting when its incident closes): the command
    /// went through without them.
    pub skipped: Vec<Refusal>,
}

impl Changes {
    /// Whether the decision appends nothing.
    pub fn is_empty(&self) -> bool {
        self.incidents.iter().all(|(_, e)| e.is_empty())
            && self.units.iter().all(|(_, e)| e.is_empty())
            && self.sensors.iter().all(|(_, e)| e.is_empty())
            && self.road_closures.iter().all(|(_, e)| e.is_empty())
            && self.devices.iter().all(|(_, e)| e.is_empty())
            && self.alerts.iter().all(|(_, e)| e.is_empty())
            && self.api_tokens.is_empty()
    }

    /// Adds incident events (after any already there for the incident).
    pub fn incident(&mut self, id: IncidentId, events: Vec<IncidentEvent>) {
        push(&mut self.incidents, id, events);
    }

    /// Adds unit events.
    pub fn unit(&mut self, id: UnitId, events: Vec<UnitEvent>) {
        push(&mut self.units, id, events);
    }

    /// Adds sensor events.
    pub fn sensor(&mut self, id: SensorId, events: Vec<SensorEvent>) {
        push(&mut self.sensors, id, events);
    }

    /// Adds road closure events.
    pub fn road_closure(&mut self, id: ClosureId, events: Vec<RoadClosureEvent>) {
        push(&mut self.road_closures, id, events);
    }

    /// Adds device enrolment events.
    pub fn device(&mut self, unit: UnitId, events: Vec<DeviceEvent>) {
        push(&mut self.devices, unit, events);
    }

    /// Adds alerts.
    pub fn alert(&mut self, task: TaskId, events: Vec<AlertEvent>) {
        push(&mut self.alerts, task, events);
    }

    /// The events added for one incident.
    pub fn incident_events(&self, id: IncidentId) -> &[IncidentEvent] {
        self.incidents
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(&[], |(_, e)| e.as_slice())
    }

    /// The events added for one unit.
    pub fn unit_events(&self, id: UnitId) -> &[UnitEvent] {
        self.units
            .iter()
            .find(|(i, _)| *i == id)
            .map_or(&[], |(_, e)| e.as_slice())
    }
}

fn push<K: PartialEq, E>(parts: &mut Vec<(K, Vec<E>)>, id: K, events: Vec<E>) {
    if events.is_empty() {
        return;
    }
    match parts.iter_mut().find(|(k, _)| *k == id) {
        Some((_, existing)) => existing.extend(events),
        None => parts.push((id, events)),
    }
}

/// A state after the events a decision already added for it.
fn after<A: Aggregate>(state: &A, added: &[A::Event]) -> A {
    let mut next = state.clone();
    for e in added {
        next.apply(e);
    }
    next
}

/// A command on one road closure.
pub fn road_closure_command<S: States>(
    states: &S,
    id: ClosureId,
    command: RoadClosureCommand,
) -> Result<Changes, S::Error> {
    let mut changes = Changes::default();
    changes.road_closure(id, states.road_closure(id)?.decide(command)?);
    Ok(changes)
}

/// Records a token issued for a unit's device, or revokes tokens: the unit must be registered.
pub fn issue_device_token<S: States>(
    states: &S,
    command: DeviceCommand,
) -> Result<Changes, S::Error> {
    let unit = command.unit();
    if states.unit(unit)?.unit.is_none() {
        return Err(Refusal::not_found(format!("there is no unit {unit}")).into());
    }
    let mut changes = Changes::default();
    changes.device(unit, states.device(unit)?.decide(command)?);
    Ok(changes)
}

/// Creates or revokes a machine's API token.
pub fn api_token_command<S: States>(
    states: &S,
    command: ApiTokenCommand,
) -> Result<Changes, S::Error> {
    Ok(Changes {
        api_tokens: states.api_tokens()?.decide(command)?,
        ..Changes::default()
    })
}

/// Raises a task's overdue acknowledgement, decided against the unit: nothing when the unit
/// no longer holds the task unacknowledged (it was acknowledged, declined or completed
/// meanwhile), or when the alert was raised already.
pub fn task_ack_overdue<S: States>(states: &S, command: AlertCommand) -> Result<Changes, S::Error> {
    let AlertCommand::RaiseAckOverdue { task, unit, .. } = command;
    let pending = states
        .unit(unit)?
        .unit
        .as_ref()
        .and_then(|u| u.active_task.as_ref())
        .is_some_and(|t| t.task == task && !t.acknowledged);
    let mut changes = Changes::default();
    if pending {
        changes.alert(task, states.alert(task)?.decide(command)?);
    }
    Ok(changes)
}

/// A command on one incident.
pub fn incident_command<S: States>(
    states: &S,
    id: IncidentId,
    command: IncidentCommand,
) -> Result<Changes, S::Error> {
    let mut changes = Changes::default();
    changes.incident(id, states.incident(id)?.decide(command)?);
    Ok(changes)
}

/// Assigns a unit to an incident on an operator's word: the incident must be reported and
/// open and records the dispatch; the unit must be free to take it (a unit already on this
/// task changes nothing).
pub fn assign<S: States>(
    states: &S,
    incident: IncidentId,
    unit: UnitId,
    task: TaskId,
    at: DateTime<Utc>,
) -> Result<Changes, S::Error> {
    let (changes, mut results) =
        assign_units(states, incident, &[(unit, task)], Authority::Operator, at)?;
    match results.pop() {
        Some(Err(refusal)) => Err(refusal.into()),
        _ => Ok(changes),
    }
}

/// Per unit of [`assign_units`], in order: the task it is on for the incident, or why not.
pub type Assigned = Vec<Result<TaskId, Refusal>>;

/// On whose word units are assigned.
#[derive(Clone, Copy, Debug)]
pub enum Authority<'a> {
    /// An operator's explicit choice: sent whatever the run card says (an override).
    Operator,
    /// A dispatch rule: only while the incident's run card still needs a unit of the kind.
    /// Units of the kind on the incident count (those that reached the scene count after they
    /// clear), except a crew that did not acknowledge in time.
    Rule(&'a ResponsePlan),
}

/// How many units of `kind` count toward the run card of an incident as it stands.
fn counted<S: States>(
    states: &S,
    incident: &crate::incident::Incident,
    kind: UnitKind,
) -> Result<u32, S::Error> {
    let mut n = 0;
    for (unit, on) in &incident.units {
        if !(on.is_active() || on.on_scene_at.is_some()) {
            continue;
        }
        let Some(u) = states.unit(*unit)?.unit.as_ref() else {
            continue;
        };
        if u.kind != kind {
            continue;
        }
        let waiting = on.is_active()
            && on.on_scene_at.is_none()
            && u.active_task
                .as_ref()
                .is_some_and(|t| t.task == on.task && !t.acknowledged);
        if waiting && states.alert(on.task)?.ack_overdue_at.is_some() {
            continue;
        }
        n += 1;
    }
    Ok(n)
}

/// Assigns several units to one incident in one decision: the incident must be reported and
/// open (else the whole command is refused); each unit is decided in turn on the incident as
/// the earlier ones left it, and one that cannot take the task is answered with its refusal
/// while the others go. Answers, per unit in order, the task it is on for this incident.
pub fn assign_units<S: States>(
    states: &S,
    incident: IncidentId,
    units: &[(UnitId, TaskId)],
    authority: Authority<'_>,
    at: DateTime<Utc>,
) -> Result<(Changes, Assigned), S::Error> {
    let incident_state = states.incident(incident)?;
    match &incident_state.incident {
        None => {
            return Err(Refusal::not_found(format!("there is no incident {incident}")).into());
        }
        Some(i) if !i.is_open() => {
            return Err(Refusal::new(
                RefusalKind::Ended,
                format!("incident {incident} has ended; no unit can be assigned to it"),
            )
            .into());
        }
        Some(_) => {}
    }
    let mut next = incident_state.clone();
    let mut changes = Changes::default();
    let mut results = Vec::with_capacity(units.len());
    for &(unit, task) in units {
        let unit_state = states.unit(unit)?;
        if let (Authority::Rule(plan), Some(u), Some(i)) =
            (authority, unit_state.unit.as_ref(), next.incident.as_ref())
        {
            let wanted: u32 = plan
                .units
                .iter()
                .filter(|n| n.kind == u.kind)
                .map(|n| u32::from(n.count))
                .sum();
            let on_it = i.units.get(&unit).is_some_and(|on| on.is_active());
            if !on_it && counted(states, i, u.kind)? >= wanted {
                results.push(Err(Refusal::new(
                    RefusalKind::NotNeeded,
                    format!(
                        "the incident's run card needs {wanted} {} and has them",
                        u.kind.code()
                    ),
                )));
                continue;
            }
        }
        let unit_events = match unit_state.decide(UnitCommand::AssignTask { task, incident, at }) {
            Ok(events) => events,
            Err(refusal) => {
                results.push(Err(refusal));
                continue;
            }
        };
        if unit_events.is_empty() {
            let on = unit_state.unit.as_ref().and_then(|u| u.active_task);
            results.push(Ok(on.map_or(task, |t| t.task)));
            continue;
        }
        let mut progressed = next.clone();
        let mut incident_events = Vec::new();
        let mut refused = None;
        for e in &unit_events {
            if let Some((_, command)) = reaction::incident_progress(unit, e) {
                match progressed.execute(command) {
                    Ok((after, events)) => {
                        progressed = after;
                        incident_events.extend(events);
                    }
                    Err(r) => refused = Some(r),
                }
            }
        }
        if let Some(r) = refused {
            results.push(Err(r));
            continue;
        }
        next = progressed;
        changes.unit(unit, unit_events);
        changes.incident(incident, incident_events);
        results.push(Ok(task));
    }
    Ok((changes, results))
}

/// A command on one unit (anything but an assignment, which is [`assign`]), with the time
/// points its events record on their incidents.
pub fn unit_command<S: States>(
    states: &S,
    unit: UnitId,
    command: UnitCommand,
) -> Result<Changes, S::Error> {
    if let UnitCommand::AssignTask { task, incident, at } = command {
        return assign(states, incident, unit, task, at);
    }
    let events = states.unit(unit)?.decide(command)?;
    let mut changes = Changes::default();
    record_progress(states, unit, &events, &mut changes)?;
    changes.unit(unit, events);
    Ok(changes)
}

/// Records on their incidents the time points of a unit's new events; an incident that
/// refuses one (it has ended) is noted in [`Changes::skipped`].
fn record_progress<S: States>(
    states: &S,
    unit: UnitId,
    events: &[UnitEvent],
    changes: &mut Changes,
) -> Result<(), S::Error> {
    for e in events {
        if let Some((incident, command)) = reaction::incident_progress(unit, e) {
            on_incident(states, incident, command, changes)?;
        }
    }
    Ok(())
}

/// Decides an effect on an incident, on the incident as the decision's earlier events left
/// it; one it refuses (it has ended) is noted in [`Changes::skipped`].
fn on_incident<S: States>(
    states: &S,
    incident: IncidentId,
    command: IncidentCommand,
    changes: &mut Changes,
) -> Result<(), S::Error> {
    let state = after(
        states.incident(incident)?,
        changes.incident_events(incident),
    );
    match state.decide(command) {
        Ok(events) => changes.incident(incident, events),
        Err(refusal) => changes.skipped.push(refusal),
    }
    Ok(())
}

/// Closes an incident and, in the same decision, completes the tasks of the units it
/// cleared (a unit still transporting a patient refuses until it reaches the hospital).
pub fn close<S: States>(
    states: &S,
    incident: IncidentId,
    disposition: Disposition,
    at: DateTime<Utc>,
) -> Result<Changes, S::Error> {
    let events = states
        .incident(incident)?
        .decide(IncidentCommand::Close { disposition, at })?;
    let mut changes = Changes::default();
    for (unit, command) in reaction::units_released_by_close(&events) {
        match states.unit(unit)?.decide(command) {
            Ok(unit_events) => changes.unit(unit, unit_events),
            Err(refusal) => changes.skipped.push(refusal),
        }
    }
    changes.incident(incident, events);
    Ok(changes)
}

/// A command on one sensor, with the incident its alarm reports (or its clearing notes) in
/// the same decision.
pub fn sensor_command<S: States>(
    states: &S,
    sensor: SensorId,
    command: SensorCommand,
) -> Result<Changes, S::Error> {
    let events = states.sensor(sensor)?.decide(command)?;
    let mut changes = Changes::default();
    for e in &events {
        if let Some((incident, command)) = reaction::sensor_follow_up(sensor, e) {
            on_incident(states, incident, command, &mut changes)?;
        }
    }
    changes.sensor(sensor, events);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;
    use crate::incident::{ReportSource, TimePoint};
    use crate::unit::UnitStatus;
    use crate::value::{
        Agency, CallSign, CallerDetails, IncidentType, LatLon, Priority, StationCode, UnitKind,
    };

    #[derive(Default)]
    struct Given {
        incidents: HashMap<IncidentId, IncidentState>,
        units: HashMap<UnitId, UnitState>,
        sensors: HashMap<SensorId, SensorState>,
        alerts: HashMap<TaskId, AlertState>,
        empty_incident: IncidentState,
        empty_unit: UnitState,
        empty_sensor: SensorState,
        empty_closure: RoadClosureState,
        empty_device: DeviceState,
        empty_alert: AlertState,
        api_tokens: ApiTokens,
    }

    impl States for Given {
        type Error = Refusal;
        fn api_tokens(&self) -> Result<&ApiTokens, Refusal> {
            Ok(&self.api_tokens)
        }
        fn incident(&self, id: IncidentId) -> Result<&IncidentState, Refusal> {
            Ok(self.incidents.get(&id).unwrap_or(&self.empty_incident))
        }
        fn unit(&self, id: UnitId) -> Result<&UnitState, Refusal> {
            Ok(self.units.get(&id).unwrap_or(&self.empty_unit))
        }
        fn sensor(&self, id: SensorId) -> Result<&SensorState, Refusal> {
            Ok(self.sensors.get(&id).unwrap_or(&self.empty_sensor))
        }
        fn road_closure(&self, _: ClosureId) -> Result<&RoadClosureState, Refusal> {
            Ok(&self.empty_closure)
        }
        fn device(&self, _: UnitId) -> Result<&DeviceState, Refusal> {
            Ok(&self.empty_device)
        }
        fn alert(&self, task: TaskId) -> Result<&AlertState, Refusal> {
            Ok(self.alerts.get(&task).unwrap_or(&self.empty_alert))
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn ids() -> (IncidentId, UnitId, TaskId) {
        (
            IncidentId::from_uuid(Uuid::from_u128(1)),
            UnitId::from_uuid(Uuid::from_u128(2)),
            TaskId::from_uuid(Uuid::from_u128(3)),
        )
    }

    fn given() -> Given {
        let (incident, unit, _) = ids();
        let mut g = Given::default();
        let reported = IncidentState::default()
            .execute(IncidentCommand::Report {
                incident_id: incident,
                source: ReportSource::Hotline,
                location: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
                incident_type: IncidentType::StructureFire,
                priority: Priority::P1,
                caller: CallerDetails::default(),
                call_received_at: t(0),
                at: t(1),
            })
            .unwrap()
            .0;
        g.incidents.insert(incident, reported);
        let registered = UnitState::default()
            .execute(UnitCommand::Register {
                unit_id: unit,
                kind: UnitKind::Engine,
                call_sign: CallSign::parse("E1").unwrap(),
                agency: Agency::parse("fire").unwrap(),
                home_station: StationCode::parse("s1").unwrap(),
                capabilities: BTreeSet::new(),
                at: t(0),
            })
            .unwrap()
            .0;
        g.units.insert(unit, registered);
        g
    }

    fn apply(g: &mut Given, changes: &Changes) {
        for (id, events) in &changes.incidents {
            let s = g.incidents.entry(*id).or_default();
            *s = after(s, events);
        }
        for (id, events) in &changes.units {
            let s = g.units.entry(*id).or_default();
            *s = after(s, events);
        }
    }

    /// A second engine, registered.
    fn second_engine(g: &mut Given) -> UnitId {
        let unit = UnitId::from_uuid(Uuid::from_u128(20));
        let registered = UnitState::default()
            .execute(UnitCommand::Register {
                unit_id: unit,
                kind: UnitKind::Engine,
                call_sign: CallSign::parse("E2").unwrap(),
                agency: Agency::parse("fire").unwrap(),
                home_station: StationCode::parse("s1").unwrap(),
                capabilities: BTreeSet::new(),
                at: t(0),
            })
            .unwrap()
            .0;
        g.units.insert(unit, registered);
        unit
    }

    #[test]
    fn a_rule_sends_only_what_the_run_card_still_needs_and_an_operator_anything() {
        let (incident, first, task) = ids();
        let mut g = given();
        let second = second_engine(&mut g);
        let one_engine = ResponsePlan {
            incident_type: IncidentType::StructureFire,
            priority: None,
            units: vec![crate::runcard::UnitRequirement {
                kind: UnitKind::Engine,
                count: 1,
            }],
        };
        let rule = Authority::Rule(&one_engine);
        let other_task = TaskId::from_uuid(Uuid::from_u128(30));
        let (sent, results) = assign_units(&g, incident, &[(first, task)], rule, t(5)).unwrap();
        assert_eq!(results, vec![Ok(task)]);
        apply(&mut g, &sent);

        // The card's one engine is on it: a rule sends no second, an operator may.
        let (changes, results) =
            assign_units(&g, incident, &[(second, other_task)], rule, t(6)).unwrap();
        assert!(changes.is_empty());
        assert!(
            matches!(&results[..], [Err(r)] if r.kind == RefusalKind::NotNeeded),
            "{results:?}"
        );
        let (changes, results) = assign_units(
            &g,
            incident,
            &[(second, other_task)],
            Authority::Operator,
            t(6),
        )
        .unwrap();
        assert_eq!(results, vec![Ok(other_task)]);
        assert!(!changes.is_empty());

        // The first crew did not acknowledge in time: it no longer counts, so a rule
        // sends a replacement.
        let overdue = AlertState::default()
            .execute(AlertCommand::RaiseAckOverdue {
                task,
                incident,
                unit: first,
                assigned_at: t(5),
                timeout_secs: 60,
            })
            .unwrap()
            .0;
        g.alerts.insert(task, overdue);
        let (_, results) =
            assign_units(&g, incident, &[(second, other_task)], rule, t(70)).unwrap();
        assert_eq!(
            results,
            vec![Ok(other_task)],
            "a crew that did not answer in time does not count"
        );
    }

    #[test]
    fn a_device_token_needs_a_registered_unit() {
        let (_, unit, _) = ids();
        let issue = |unit| DeviceCommand::IssueToken {
            unit,
            issued_by: "op".into(),
            expires_at: t(3600),
            fingerprint: "0123456789abcdef".into(),
            token_id: Uuid::from_u128(77),
            at: t(0),
        };
        let changes = issue_device_token(&given(), issue(unit)).unwrap();
        assert_eq!(changes.devices.len(), 1);
        assert!(changes.units.is_empty(), "the unit's stream is only read");
        let stranger = UnitId::from_uuid(Uuid::from_u128(99));
        let refused = issue_device_token(&given(), issue(stranger)).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::NotFound);
    }

    #[test]
    fn an_overdue_alert_is_raised_only_while_the_task_waits() {
        let (incident, unit, task) = ids();
        let mut g = given();
        let assigned = assign(&g, incident, unit, task, t(5)).unwrap();
        apply(&mut g, &assigned);
        let raise = || AlertCommand::RaiseAckOverdue {
            task,
            incident,
            unit,
            assigned_at: t(5),
            timeout_secs: 60,
        };
        let raised = task_ack_overdue(&g, raise()).unwrap();
        assert!(matches!(
            raised.alerts.as_slice(),
            [(t, events)] if *t == task && events.len() == 1
        ));
        let once = after(&AlertState::default(), &raised.alerts[0].1);
        g.alerts.insert(task, once);
        assert!(
            task_ack_overdue(&g, raise()).unwrap().is_empty(),
            "raised once"
        );
        g.alerts.clear();
        let acked = g.units[&unit]
            .decide(UnitCommand::AcknowledgeTask { task, at: t(20) })
            .unwrap();
        let s = g.units.get_mut(&unit).unwrap();
        *s = after(s, &acked);
        assert!(
            task_ack_overdue(&g, raise()).unwrap().is_empty(),
            "an acknowledged task raises nothing"
        );
    }

    #[test]
    fn an_assignment_writes_the_unit_and_the_incident_together() {
        let (incident, unit, task) = ids();
        let changes = assign(&given(), incident, unit, task, t(5)).unwrap();
        assert!(matches!(
            changes.unit_events(unit),
            [
                UnitEvent::TaskAssigned { .. },
                UnitEvent::UnitStatusChanged { .. }
            ]
        ));
        assert!(matches!(
            changes.incident_events(incident),
            [IncidentEvent::TimePointRecorded {
                point: TimePoint::Dispatched,
                ..
            }]
        ));
    }

    #[test]
    fn no_unit_is_assigned_to_an_incident_that_does_not_exist_or_has_ended() {
        let (incident, unit, task) = ids();
        let nobody = IncidentId::from_uuid(Uuid::from_u128(99));
        let refusal = assign(&given(), nobody, unit, task, t(5)).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::NotFound);

        let mut g = given();
        let closed = close(&g, incident, Disposition::FalseAlarm, t(4)).unwrap();
        apply(&mut g, &closed);
        let refusal = assign(&g, incident, unit, task, t(5)).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::Ended);
    }

    #[test]
    fn a_busy_unit_refuses_a_second_incident() {
        let (incident, unit, task) = ids();
        let mut g = given();
        let assigned = assign(&g, incident, unit, task, t(5)).unwrap();
        apply(&mut g, &assigned);
        let other = IncidentId::from_uuid(Uuid::from_u128(7));
        g.incidents.insert(other, g.incidents[&incident].clone());
        let refusal =
            assign(&g, other, unit, TaskId::from_uuid(Uuid::from_u128(8)), t(6)).unwrap_err();
        assert!(matches!(refusal.kind, RefusalKind::UnitBusy { .. }));
        // The same task again changes nothing.
        assert!(assign(&g, incident, unit, task, t(7)).unwrap().is_empty());
    }

    #[test]
    fn progress_and_close_touch_both_streams_in_one_decision() {
        let (incident, unit, task) = ids();
        let mut g = given();
        let assigned = assign(&g, incident, unit, task, t(5)).unwrap();
        apply(&mut g, &assigned);
        let en_route = unit_command(
            &g,
            unit,
            UnitCommand::ChangeStatus {
                to: UnitStatus::EnRoute,
                at: t(30),
            },
        )
        .unwrap();
        assert!(matches!(
            en_route.incident_events(incident),
            [IncidentEvent::TimePointRecorded {
                point: TimePoint::EnRoute,
                ..
            }]
        ));
        apply(&mut g, &en_route);
        let closed = close(&g, incident, Disposition::FalseAlarm, t(60)).unwrap();
        assert!(matches!(
            closed.unit_events(unit),
            [UnitEvent::TaskCompleted { .. }, ..]
        ));
        apply(&mut g, &closed);
        let u = g.units[&unit].unit.as_ref().unwrap();
        assert!(u.active_task.is_none(), "the close released the unit");
    }
}
