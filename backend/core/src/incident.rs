//! The incident aggregate: reported, triaged, dispatched, units en route / on scene, closed;
//! merged into another when two reports are the same emergency. Closed stays closed.
//!
//! The incident stream also holds the NFPA time points ([`TimePoint`]) as events: the call
//! received and entry times when the incident is reported, and per unit the dispatched,
//! en route, on scene and cleared times, which the server records here as it sees the unit's
//! own events (see [`crate::reaction`]). Reports are computed from these events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::ids::{AlarmId, IncidentId, SensorId, TaskId, UnitId};
use crate::value::{
    CallerDetails, Disposition, IncidentSource, IncidentType, LatLon, NoteText, Priority,
};

/// Where a report came from, with the reference to its origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportSource {
    /// A call taker on the emergency line.
    Hotline,
    /// A sensor's alarm.
    Sensor {
        /// The sensor.
        sensor: SensorId,
        /// Its ongoing alarm.
        alarm: AlarmId,
    },
    /// A field unit.
    Field {
        /// The unit that raised it.
        unit: UnitId,
    },
    /// A citizen's report through an app or a web form.
    Citizen,
}

impl ReportSource {
    /// The source without its reference.
    pub fn kind(&self) -> IncidentSource {
        match self {
            Self::Hotline => IncidentSource::Hotline,
            Self::Sensor { .. } => IncidentSource::Sensor,
            Self::Field { .. } => IncidentSource::Field,
            Self::Citizen => IncidentSource::Citizen,
        }
    }
}

/// The NFPA 1221 / 1225 time points of an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimePoint {
    /// The call was answered (the alarm arrived).
    CallReceived,
    /// The incident was entered into the system.
    Entry,
    /// A unit was dispatched.
    Dispatched,
    /// A unit started moving.
    EnRoute,
    /// A unit arrived.
    OnScene,
    /// A unit left the incident (completed, declined, stood down, or the incident closed).
    Cleared,
}

impl TimePoint {
    /// Whether the point belongs to a unit (as opposed to the call).
    pub fn is_unit_point(self) -> bool {
        matches!(
            self,
            Self::Dispatched | Self::EnRoute | Self::OnScene | Self::Cleared
        )
    }
}

/// What happened to an incident. Stored in the stream `incident-<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum IncidentEvent {
    /// A new incident.
    IncidentReported {
        /// Its id (also in the stream name).
        incident_id: IncidentId,
        /// Where the report came from.
        source: ReportSource,
        /// Where the emergency is.
        location: LatLon,
        /// What it is.
        incident_type: IncidentType,
        /// How urgent.
        priority: Priority,
        /// Who called (personal data).
        #[serde(default)]
        caller: CallerDetails,
        /// When it was entered.
        at: DateTime<Utc>,
    },
    /// A call taker confirmed type and priority.
    IncidentTriaged {
        /// The confirmed type.
        incident_type: IncidentType,
        /// The confirmed priority.
        priority: Priority,
        /// When.
        at: DateTime<Utc>,
    },
    /// The location was corrected.
    IncidentLocationUpdated {
        /// The new location.
        location: LatLon,
        /// When.
        at: DateTime<Utc>,
    },
    /// The type was changed.
    IncidentTypeUpdated {
        /// The new type.
        incident_type: IncidentType,
        /// When.
        at: DateTime<Utc>,
    },
    /// The priority was changed.
    IncidentPriorityUpdated {
        /// The new priority.
        priority: Priority,
        /// When.
        at: DateTime<Utc>,
    },
    /// A note was added.
    IncidentNoteAdded {
        /// The note.
        text: NoteText,
        /// When.
        at: DateTime<Utc>,
    },
    /// This incident was a duplicate and was merged into another; it has ended.
    IncidentMerged {
        /// The incident that goes on.
        into: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Another incident was merged into this one.
    IncidentDuplicateAbsorbed {
        /// The duplicate.
        from: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
    /// An NFPA time point.
    TimePointRecorded {
        /// Which point.
        point: TimePoint,
        /// The unit, for unit points.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<UnitId>,
        /// The unit's task, for unit points.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<TaskId>,
        /// When it happened.
        at: DateTime<Utc>,
    },
    /// The incident was closed; it stays closed.
    IncidentClosed {
        /// How it ended.
        disposition: Disposition,
        /// When.
        at: DateTime<Utc>,
    },
    /// The caller's details were erased on request: their key is destroyed and they are
    /// never disclosed again.
    CallerDetailsErased {
        /// Who erased them.
        by: String,
        /// Why (the request, its reference).
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an operator, a sensor rule or a field unit asks of an incident.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentCommand {
    /// Report a new incident.
    Report {
        /// The new incident's id, chosen by the caller.
        incident_id: IncidentId,
        /// Where the report came from.
        source: ReportSource,
        /// Where.
        location: LatLon,
        /// What.
        incident_type: IncidentType,
        /// How urgent.
        priority: Priority,
        /// Who called.
        caller: CallerDetails,
        /// When the call was answered (or the alarm arrived): the NFPA "call received" point.
        call_received_at: DateTime<Utc>,
        /// Now: the NFPA "entry" point.
        at: DateTime<Utc>,
    },
    /// Confirm type and priority after questioning the caller.
    Triage {
        /// The type.
        incident_type: IncidentType,
        /// The priority.
        priority: Priority,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Correct the location.
    UpdateLocation {
        /// The new location.
        location: LatLon,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Change the type.
    UpdateType {
        /// The new type.
        incident_type: IncidentType,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Change the priority.
    UpdatePriority {
        /// The new priority.
        priority: Priority,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Add a note.
    AddNote {
        /// The note.
        text: NoteText,
        /// Now.
        at: DateTime<Utc>,
    },
    /// This incident is a duplicate of `into`: end it. Refused while units are on it.
    ///
    /// A merge touches two streams. The caller decides this command first (without
    /// appending), then appends [`IncidentCommand::AbsorbDuplicate`] to `into` (refused if
    /// `into` has ended), then appends this one with its expected revision.
    MergeInto {
        /// The incident that goes on.
        into: IncidentId,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Record that `from` was merged into this incident.
    AbsorbDuplicate {
        /// The duplicate.
        from: IncidentId,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Record a unit's time point (dispatched, en route, on scene, cleared), as seen on the
    /// unit's stream.
    RecordUnitProgress {
        /// The unit.
        unit: UnitId,
        /// Its task.
        task: TaskId,
        /// Which point.
        point: TimePoint,
        /// When it happened.
        at: DateTime<Utc>,
    },
    /// Close the incident. Units still on it are cleared in the same step; the caller then
    /// completes their tasks on the unit streams.
    Close {
        /// How it ended.
        disposition: Disposition,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Erase the caller's details, open or closed incident alike.
    EraseCaller {
        /// Who.
        by: String,
        /// Why (1 to 500 characters).
        reason: String,
        /// Now.
        at: DateTime<Utc>,
    },
}

/// Longest reason for an erasure, in characters.
pub const MAX_ERASURE_REASON_CHARS: usize = 500;

/// Where the incident is in its life, derived from its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// Entered, not yet triaged, no unit.
    Reported,
    /// Type and priority confirmed, no unit on it.
    Triaged,
    /// At least one unit dispatched, none moving or arrived yet.
    Dispatched,
    /// At least one unit en route, none arrived.
    UnitsEnRoute,
    /// At least one unit on scene.
    UnitsOnScene,
    /// Closed.
    Closed,
    /// Merged into another incident.
    Merged,
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reported => "reported",
            Self::Triaged => "triaged",
            Self::Dispatched => "dispatched",
            Self::UnitsEnRoute => "units en route",
            Self::UnitsOnScene => "units on scene",
            Self::Closed => "closed",
            Self::Merged => "merged",
        })
    }
}

/// How far a unit has got on this incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnitProgress {
    /// Dispatched.
    Dispatched,
    /// Moving.
    EnRoute,
    /// Arrived.
    OnScene,
    /// Left.
    Cleared,
}

/// A unit's time points on this incident (its latest task here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitOnIncident {
    /// The task.
    pub task: TaskId,
    /// How far it got.
    pub progress: UnitProgress,
    /// Dispatched at.
    pub dispatched_at: DateTime<Utc>,
    /// En route at.
    pub en_route_at: Option<DateTime<Utc>>,
    /// On scene at.
    pub on_scene_at: Option<DateTime<Utc>>,
    /// Cleared at.
    pub cleared_at: Option<DateTime<Utc>>,
}

impl UnitOnIncident {
    /// Whether the unit is still on the incident.
    pub fn is_active(&self) -> bool {
        self.progress != UnitProgress::Cleared
    }
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentEnd {
    /// Closed.
    Closed {
        /// How.
        disposition: Disposition,
        /// When.
        at: DateTime<Utc>,
    },
    /// Merged into another incident.
    Merged {
        /// Which.
        into: IncidentId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// An incident that has been reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    /// Its id.
    pub id: IncidentId,
    /// Where the report came from.
    pub source: ReportSource,
    /// Where.
    pub location: LatLon,
    /// What.
    pub incident_type: IncidentType,
    /// How urgent.
    pub priority: Priority,
    /// Who called (personal data).
    pub caller: CallerDetails,
    /// Whether the caller's details were erased (then `caller` is never disclosed).
    pub caller_erased: bool,
    /// Whether type and priority were confirmed.
    pub triaged: bool,
    /// When the call was received.
    pub call_received_at: Option<DateTime<Utc>>,
    /// When it was entered.
    pub entered_at: DateTime<Utc>,
    /// Every unit that has had a task on it, by unit.
    pub units: BTreeMap<UnitId, UnitOnIncident>,
    /// How many notes.
    pub note_count: u32,
    /// Incidents merged into this one.
    pub absorbed: BTreeSet<IncidentId>,
    /// How it ended, if it has.
    pub end: Option<IncidentEnd>,
}

impl Incident {
    /// Where it is in its life.
    pub fn status(&self) -> IncidentStatus {
        match self.end {
            Some(IncidentEnd::Closed { .. }) => return IncidentStatus::Closed,
            Some(IncidentEnd::Merged { .. }) => return IncidentStatus::Merged,
            None => {}
        }
        let best = self
            .units
            .values()
            .filter(|u| u.is_active())
            .map(|u| u.progress)
            .max();
        match best {
            Some(UnitProgress::OnScene) => IncidentStatus::UnitsOnScene,
            Some(UnitProgress::EnRoute) => IncidentStatus::UnitsEnRoute,
            Some(UnitProgress::Dispatched) => IncidentStatus::Dispatched,
            Some(UnitProgress::Cleared) | None if self.triaged => IncidentStatus::Triaged,
            Some(UnitProgress::Cleared) | None => IncidentStatus::Reported,
        }
    }

    /// Whether it is still open (neither closed nor merged).
    pub fn is_open(&self) -> bool {
        self.end.is_none()
    }

    /// The units still on it, with their tasks.
    pub fn active_units(&self) -> impl Iterator<Item = (UnitId, TaskId)> + '_ {
        self.units
            .iter()
            .filter(|(_, u)| u.is_active())
            .map(|(id, u)| (*id, u.task))
    }
}

/// The incident aggregate's state: `None` until it is reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentState {
    /// The incident, once reported.
    pub incident: Option<Incident>,
}

impl IncidentState {
    fn open(&self) -> Result<&Incident, Refusal> {
        let incident = self
            .incident
            .as_ref()
            .ok_or_else(|| Refusal::not_found("the incident has not been reported"))?;
        match incident.end {
            None => Ok(incident),
            Some(IncidentEnd::Closed { .. }) => Err(Refusal::new(
                RefusalKind::Ended,
                format!(
                    "incident {} is closed; a closed incident stays closed",
                    incident.id
                ),
            )),
            Some(IncidentEnd::Merged { into, .. }) => Err(Refusal::new(
                RefusalKind::Ended,
                format!(
                    "incident {} was merged into incident {into}; use that one",
                    incident.id
                ),
            )),
        }
    }
}

impl Aggregate for IncidentState {
    type Command = IncidentCommand;
    type Event = IncidentEvent;

    fn decide(&self, command: IncidentCommand) -> Result<Vec<IncidentEvent>, Refusal> {
        use IncidentCommand as C;
        use IncidentEvent as E;
        if let C::Report {
            incident_id,
            source,
            location,
            incident_type,
            priority,
            caller,
            call_received_at,
            at,
        } = command
        {
            if let Some(existing) = &self.incident {
                return Err(Refusal::new(
                    RefusalKind::AlreadyExists,
                    format!("incident {} has already been reported", existing.id),
                ));
            }
            if call_received_at > at {
                return Err(Refusal::invalid(
                    "the call cannot be received after the incident was entered",
                ));
            }
            return Ok(vec![
                E::IncidentReported {
                    incident_id,
                    source,
                    location,
                    incident_type,
                    priority,
                    caller,
                    at,
                },
                E::TimePointRecorded {
                    point: TimePoint::CallReceived,
                    unit: None,
                    task: None,
                    at: call_received_at,
                },
                E::TimePointRecorded {
                    point: TimePoint::Entry,
                    unit: None,
                    task: None,
                    at,
                },
            ]);
        }
        if let C::EraseCaller { by, reason, at } = command {
            let Some(incident) = &self.incident else {
                return Err(Refusal::not_found("the incident has not been reported"));
            };
            let reason = reason.trim().to_owned();
            if reason.is_empty() || reason.chars().count() > MAX_ERASURE_REASON_CHARS {
                return Err(Refusal::invalid(format!(
                    "an erasure needs a reason of 1 to {MAX_ERASURE_REASON_CHARS} characters"
                )));
            }
            if incident.caller_erased {
                return Ok(Vec::new());
            }
            return Ok(vec![E::CallerDetailsErased { by, reason, at }]);
        }

        // A unit leaving an incident that has ended (it was cleared when the incident closed)
        // changes nothing, so the reaction to the unit's own completion is harmless.
        if let C::RecordUnitProgress {
            unit,
            point: TimePoint::Cleared,
            ..
        } = &command
            && let Some(incident) = &self.incident
            && !incident.is_open()
            && incident.units.get(unit).is_none_or(|u| !u.is_active())
        {
            return Ok(vec![]);
        }

        let incident = self.open()?;
        match command {
            C::Report { .. } | C::EraseCaller { .. } => unreachable!("handled above"),
            C::Triage {
                incident_type,
                priority,
                at,
            } => {
                if incident.triaged {
                    return Err(Refusal::transition(format!(
                        "incident {} has already been triaged; update its type or priority instead",
                        incident.id
                    )));
                }
                Ok(vec![E::IncidentTriaged {
                    incident_type,
                    priority,
                    at,
                }])
            }
            C::UpdateLocation { location, at } => Ok(if location == incident.location {
                vec![]
            } else {
                vec![E::IncidentLocationUpdated { location, at }]
            }),
            C::UpdateType { incident_type, at } => Ok(if incident_type == incident.incident_type {
                vec![]
            } else {
                vec![E::IncidentTypeUpdated { incident_type, at }]
            }),
            C::UpdatePriority { priority, at } => Ok(if priority == incident.priority {
                vec![]
            } else {
                vec![E::IncidentPriorityUpdated { priority, at }]
            }),
            C::AddNote { text, at } => Ok(vec![E::IncidentNoteAdded { text, at }]),
            C::MergeInto { into, at } => {
                if into == incident.id {
                    return Err(Refusal::invalid("an incident cannot be merged into itself"));
                }
                let active: Vec<String> = incident
                    .active_units()
                    .map(|(u, _)| u.to_string())
                    .collect();
                if !active.is_empty() {
                    return Err(Refusal::transition(format!(
                        "incident {} still has units on it ({}); clear or reassign them before merging",
                        incident.id,
                        active.join(", ")
                    )));
                }
                Ok(vec![E::IncidentMerged { into, at }])
            }
            C::AbsorbDuplicate { from, at } => {
                if from == incident.id {
                    return Err(Refusal::invalid("an incident cannot absorb itself"));
                }
                Ok(if incident.absorbed.contains(&from) {
                    vec![]
                } else {
                    vec![E::IncidentDuplicateAbsorbed { from, at }]
                })
            }
            C::RecordUnitProgress {
                unit,
                task,
                point,
                at,
            } => decide_progress(incident, unit, task, point, at),
            C::Close { disposition, at } => {
                let mut events: Vec<IncidentEvent> = incident
                    .active_units()
                    .map(|(unit, task)| E::TimePointRecorded {
                        point: TimePoint::Cleared,
                        unit: Some(unit),
                        task: Some(task),
                        at,
                    })
                    .collect();
                events.push(E::IncidentClosed { disposition, at });
                Ok(events)
            }
        }
    }

    fn apply(&mut self, event: &IncidentEvent) {
        use IncidentEvent as E;
        if let E::IncidentReported {
            incident_id,
            source,
            location,
            incident_type,
            priority,
            caller,
            at,
        } = event
        {
            if self.incident.is_none() {
                self.incident = Some(Incident {
                    id: *incident_id,
                    source: source.clone(),
                    location: *location,
                    incident_type: *incident_type,
                    priority: *priority,
                    caller: caller.clone(),
                    caller_erased: false,
                    triaged: false,
                    call_received_at: None,
                    entered_at: *at,
                    units: BTreeMap::new(),
                    note_count: 0,
                    absorbed: BTreeSet::new(),
                    end: None,
                });
            }
            return;
        }
        let Some(incident) = self.incident.as_mut() else {
            return;
        };
        match event {
            E::IncidentReported { .. } => {}
            E::IncidentTriaged {
                incident_type,
                priority,
                ..
            } => {
                incident.triaged = true;
                incident.incident_type = *incident_type;
                incident.priority = *priority;
            }
            E::IncidentLocationUpdated { location, .. } => incident.location = *location,
            E::IncidentTypeUpdated { incident_type, .. } => incident.incident_type = *incident_type,
            E::IncidentPriorityUpdated { priority, .. } => incident.priority = *priority,
            E::IncidentNoteAdded { .. } => {
                incident.note_count = incident.note_count.saturating_add(1)
            }
            E::IncidentMerged { into, at } => {
                if incident.end.is_none() {
                    incident.end = Some(IncidentEnd::Merged {
                        into: *into,
                        at: *at,
                    });
                }
            }
            E::IncidentDuplicateAbsorbed { from, .. } => {
                incident.absorbed.insert(*from);
            }
            E::TimePointRecorded {
                point,
                unit,
                task,
                at,
            } => match (point, unit, task) {
                (TimePoint::CallReceived, _, _) => incident.call_received_at = Some(*at),
                (TimePoint::Entry, _, _) => {}
                (TimePoint::Dispatched, Some(unit), Some(task)) => {
                    incident.units.insert(
                        *unit,
                        UnitOnIncident {
                            task: *task,
                            progress: UnitProgress::Dispatched,
                            dispatched_at: *at,
                            en_route_at: None,
                            on_scene_at: None,
                            cleared_at: None,
                        },
                    );
                }
                (point, Some(unit), _) => {
                    if let Some(u) = incident.units.get_mut(unit) {
                        match point {
                            TimePoint::EnRoute => {
                                u.progress = u.progress.max(UnitProgress::EnRoute);
                                u.en_route_at = Some(*at);
                            }
                            TimePoint::OnScene => {
                                u.progress = u.progress.max(UnitProgress::OnScene);
                                u.on_scene_at = Some(*at);
                            }
                            TimePoint::Cleared => {
                                u.progress = UnitProgress::Cleared;
                                u.cleared_at = Some(*at);
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            },
            E::IncidentClosed { disposition, at } => {
                if incident.end.is_none() {
                    incident.end = Some(IncidentEnd::Closed {
                        disposition: *disposition,
                        at: *at,
                    });
                }
            }
            E::CallerDetailsErased { .. } => {
                incident.caller_erased = true;
                incident.caller = CallerDetails::default();
            }
        }
    }
}

fn decide_progress(
    incident: &Incident,
    unit: UnitId,
    task: TaskId,
    point: TimePoint,
    at: DateTime<Utc>,
) -> Result<Vec<IncidentEvent>, Refusal> {
    let event = || {
        vec![IncidentEvent::TimePointRecorded {
            point,
            unit: Some(unit),
            task: Some(task),
            at,
        }]
    };
    let current = incident.units.get(&unit).filter(|u| u.is_active());
    if let Some(current) = current
        && current.task != task
    {
        return Err(Refusal::transition(format!(
            "unit {unit} is already on incident {} under task {}",
            incident.id, current.task
        )));
    }
    match point {
        TimePoint::CallReceived | TimePoint::Entry => Err(Refusal::invalid(
            "the call received and entry times are recorded when the incident is reported",
        )),
        TimePoint::Dispatched => Ok(if current.is_some() { vec![] } else { event() }),
        TimePoint::EnRoute | TimePoint::OnScene => {
            let Some(current) = current else {
                return Err(Refusal::transition(format!(
                    "unit {unit} has not been dispatched to incident {}",
                    incident.id
                )));
            };
            let wanted = if point == TimePoint::EnRoute {
                UnitProgress::EnRoute
            } else {
                UnitProgress::OnScene
            };
            if current.progress == wanted {
                Ok(vec![])
            } else if current.progress > wanted {
                Err(Refusal::transition(format!(
                    "unit {unit} is already on scene at incident {}",
                    incident.id
                )))
            } else {
                Ok(event())
            }
        }
        TimePoint::Cleared => Ok(if current.is_some() { event() } else { vec![] }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::testing::Given;
    use crate::value::{PersonName, PhoneNumber};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn here() -> LatLon {
        LatLon::from_lat_lon(52.52, 13.405).unwrap()
    }

    fn id() -> IncidentId {
        IncidentId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn unit(n: u128) -> UnitId {
        UnitId::from_uuid(uuid::Uuid::from_u128(100 + n))
    }

    fn task(n: u128) -> TaskId {
        TaskId::from_uuid(uuid::Uuid::from_u128(200 + n))
    }

    fn reported() -> Vec<IncidentEvent> {
        vec![
            IncidentEvent::IncidentReported {
                incident_id: id(),
                source: ReportSource::Hotline,
                location: here(),
                incident_type: IncidentType::StructureFire,
                priority: Priority::P2,
                caller: CallerDetails::default(),
                at: t(30),
            },
            IncidentEvent::TimePointRecorded {
                point: TimePoint::CallReceived,
                unit: None,
                task: None,
                at: t(0),
            },
            IncidentEvent::TimePointRecorded {
                point: TimePoint::Entry,
                unit: None,
                task: None,
                at: t(30),
            },
        ]
    }

    fn progress(u: u128, point: TimePoint, s: i64) -> IncidentEvent {
        IncidentEvent::TimePointRecorded {
            point,
            unit: Some(unit(u)),
            task: Some(task(u)),
            at: t(s),
        }
    }

    fn record(u: u128, point: TimePoint, s: i64) -> IncidentCommand {
        IncidentCommand::RecordUnitProgress {
            unit: unit(u),
            task: task(u),
            point,
            at: t(s),
        }
    }

    fn closed() -> Vec<IncidentEvent> {
        let mut e = reported();
        e.push(IncidentEvent::IncidentClosed {
            disposition: Disposition::Resolved,
            at: t(900),
        });
        e
    }

    #[test]
    fn a_hotline_call_is_reported_with_its_time_points() {
        let caller = CallerDetails {
            name: Some(PersonName::parse("A. Caller").unwrap()),
            call_back: Some(PhoneNumber::parse("+15551234567").unwrap()),
            sealed: None,
        };
        let state = Given::<IncidentState>::nothing()
            .when(IncidentCommand::Report {
                incident_id: id(),
                source: ReportSource::Hotline,
                location: here(),
                incident_type: IncidentType::StructureFire,
                priority: Priority::P2,
                caller: caller.clone(),
                call_received_at: t(0),
                at: t(30),
            })
            .then_events({
                let mut e = reported();
                if let IncidentEvent::IncidentReported { caller: c, .. } = &mut e[0] {
                    *c = caller;
                }
                e
            });
        let incident = state.incident.unwrap();
        assert_eq!(incident.status(), IncidentStatus::Reported);
        assert_eq!(incident.call_received_at, Some(t(0)));
    }

    #[test]
    fn reporting_twice_or_out_of_order_is_refused() {
        let report = |received: i64| IncidentCommand::Report {
            incident_id: id(),
            source: ReportSource::Citizen,
            location: here(),
            incident_type: IncidentType::Medical,
            priority: Priority::P3,
            caller: CallerDetails::default(),
            call_received_at: t(received),
            at: t(30),
        };
        Given::<IncidentState>::events(reported())
            .when(report(0))
            .then_refused(RefusalKind::AlreadyExists);
        Given::<IncidentState>::nothing()
            .when(report(31))
            .then_refused_saying(RefusalKind::Invalid, "received after");
    }

    #[test]
    fn commands_on_an_unknown_incident_are_not_found() {
        Given::<IncidentState>::nothing()
            .when(IncidentCommand::UpdatePriority {
                priority: Priority::P1,
                at: t(1),
            })
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn triage_then_updates() {
        let state = Given::<IncidentState>::events(reported())
            .when(IncidentCommand::Triage {
                incident_type: IncidentType::FireAlarm,
                priority: Priority::P3,
                at: t(40),
            })
            .then_events([IncidentEvent::IncidentTriaged {
                incident_type: IncidentType::FireAlarm,
                priority: Priority::P3,
                at: t(40),
            }]);
        assert_eq!(
            state.incident.as_ref().unwrap().status(),
            IncidentStatus::Triaged
        );
        assert_eq!(
            state.incident.as_ref().unwrap().incident_type,
            IncidentType::FireAlarm
        );

        let mut past = reported();
        past.push(IncidentEvent::IncidentTriaged {
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P3,
            at: t(40),
        });
        Given::<IncidentState>::events(past.clone())
            .when(IncidentCommand::Triage {
                incident_type: IncidentType::FireAlarm,
                priority: Priority::P3,
                at: t(41),
            })
            .then_refused_saying(RefusalKind::InvalidTransition, "already been triaged");
        Given::<IncidentState>::events(past.clone())
            .when(IncidentCommand::UpdatePriority {
                priority: Priority::P3,
                at: t(41),
            })
            .then_nothing();
        Given::<IncidentState>::events(past)
            .when(IncidentCommand::UpdatePriority {
                priority: Priority::P1,
                at: t(41),
            })
            .then_events([IncidentEvent::IncidentPriorityUpdated {
                priority: Priority::P1,
                at: t(41),
            }]);
    }

    #[test]
    fn unit_progress_drives_the_status() {
        let mut past = reported();
        let steps = [
            (
                record(1, TimePoint::Dispatched, 60),
                progress(1, TimePoint::Dispatched, 60),
                IncidentStatus::Dispatched,
            ),
            (
                record(1, TimePoint::EnRoute, 90),
                progress(1, TimePoint::EnRoute, 90),
                IncidentStatus::UnitsEnRoute,
            ),
            (
                record(2, TimePoint::Dispatched, 95),
                progress(2, TimePoint::Dispatched, 95),
                IncidentStatus::UnitsEnRoute,
            ),
            (
                record(1, TimePoint::OnScene, 300),
                progress(1, TimePoint::OnScene, 300),
                IncidentStatus::UnitsOnScene,
            ),
            (
                record(1, TimePoint::Cleared, 600),
                progress(1, TimePoint::Cleared, 600),
                IncidentStatus::Dispatched,
            ),
            (
                record(2, TimePoint::Cleared, 610),
                progress(2, TimePoint::Cleared, 610),
                IncidentStatus::Reported,
            ),
        ];
        for (command, event, status) in steps {
            let state = Given::<IncidentState>::events(past.clone())
                .when(command)
                .then_events([event.clone()]);
            assert_eq!(state.incident.unwrap().status(), status, "after {event:?}");
            past.push(event);
        }
    }

    #[test]
    fn unit_progress_repeats_change_nothing_and_backwards_is_refused() {
        let mut past = reported();
        past.push(progress(1, TimePoint::Dispatched, 60));
        past.push(progress(1, TimePoint::OnScene, 200));
        Given::<IncidentState>::events(past.clone())
            .when(record(1, TimePoint::Dispatched, 61))
            .then_nothing();
        Given::<IncidentState>::events(past.clone())
            .when(record(1, TimePoint::OnScene, 201))
            .then_nothing();
        Given::<IncidentState>::events(past.clone())
            .when(record(1, TimePoint::EnRoute, 210))
            .then_refused_saying(RefusalKind::InvalidTransition, "already on scene");
        Given::<IncidentState>::events(past.clone())
            .when(record(3, TimePoint::OnScene, 210))
            .then_refused_saying(RefusalKind::InvalidTransition, "has not been dispatched");
        Given::<IncidentState>::events(past.clone())
            .when(record(3, TimePoint::Cleared, 210))
            .then_nothing();
        Given::<IncidentState>::events(past)
            .when(record(1, TimePoint::Entry, 210))
            .then_refused(RefusalKind::Invalid);
    }

    #[test]
    fn closing_clears_the_units_and_closed_stays_closed() {
        let mut past = reported();
        past.push(progress(1, TimePoint::Dispatched, 60));
        past.push(progress(2, TimePoint::Dispatched, 61));
        past.push(progress(2, TimePoint::Cleared, 70));
        let state = Given::<IncidentState>::events(past.clone())
            .when(IncidentCommand::Close {
                disposition: Disposition::Resolved,
                at: t(900),
            })
            .then_events([
                progress(1, TimePoint::Cleared, 900),
                IncidentEvent::IncidentClosed {
                    disposition: Disposition::Resolved,
                    at: t(900),
                },
            ]);
        assert_eq!(
            state.incident.as_ref().unwrap().status(),
            IncidentStatus::Closed
        );
        assert_eq!(state.incident.as_ref().unwrap().active_units().count(), 0);

        let table: Vec<(IncidentCommand, &str)> = vec![
            (
                IncidentCommand::Close {
                    disposition: Disposition::Resolved,
                    at: t(901),
                },
                "closing twice",
            ),
            (
                IncidentCommand::UpdatePriority {
                    priority: Priority::P1,
                    at: t(901),
                },
                "a new priority",
            ),
            (
                IncidentCommand::AddNote {
                    text: NoteText::parse("late note").unwrap(),
                    at: t(901),
                },
                "a note",
            ),
            (record(3, TimePoint::Dispatched, 901), "dispatching a unit"),
            (
                IncidentCommand::MergeInto {
                    into: IncidentId::from_uuid(uuid::Uuid::from_u128(2)),
                    at: t(901),
                },
                "merging",
            ),
        ];
        for (command, why) in table {
            let refusal = Given::<IncidentState>::events(closed())
                .when(command)
                .then_refused(RefusalKind::Ended);
            assert!(
                refusal.reason.contains("stays closed"),
                "{why}: {}",
                refusal.reason
            );
        }
        // The unit's own completion arriving later is harmless.
        Given::<IncidentState>::events(closed())
            .when(record(1, TimePoint::Cleared, 950))
            .then_nothing();
    }

    #[test]
    fn merging() {
        let other = IncidentId::from_uuid(uuid::Uuid::from_u128(2));
        let state = Given::<IncidentState>::events(reported())
            .when(IncidentCommand::MergeInto {
                into: other,
                at: t(50),
            })
            .then_events([IncidentEvent::IncidentMerged {
                into: other,
                at: t(50),
            }]);
        assert_eq!(state.incident.unwrap().status(), IncidentStatus::Merged);

        let mut merged = reported();
        merged.push(IncidentEvent::IncidentMerged {
            into: other,
            at: t(50),
        });
        Given::<IncidentState>::events(merged)
            .when(IncidentCommand::AddNote {
                text: NoteText::parse("x").unwrap(),
                at: t(51),
            })
            .then_refused_saying(RefusalKind::Ended, "merged into");

        Given::<IncidentState>::events(reported())
            .when(IncidentCommand::MergeInto {
                into: id(),
                at: t(50),
            })
            .then_refused_saying(RefusalKind::Invalid, "itself");

        let mut busy = reported();
        busy.push(progress(1, TimePoint::Dispatched, 40));
        Given::<IncidentState>::events(busy)
            .when(IncidentCommand::MergeInto {
                into: other,
                at: t(50),
            })
            .then_refused_saying(RefusalKind::InvalidTransition, "still has units");

        let mut absorbed = reported();
        absorbed.push(IncidentEvent::IncidentDuplicateAbsorbed {
            from: other,
            at: t(50),
        });
        Given::<IncidentState>::events(absorbed)
            .when(IncidentCommand::AbsorbDuplicate {
                from: other,
                at: t(51),
            })
            .then_nothing();
    }
}
