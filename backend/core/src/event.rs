//! The event schema on the wire: every domain event has a type name and a schema version,
//! becomes a `muster_store::NewEvent` with JSON data, and comes back from a
//! `muster_store::RecordedEvent`, upcast first when it was stored in an older shape.
//!
//! The event type is the variant name (`IncidentReported`, `UnitStatusChanged`, …); the JSON
//! data is the variant's fields. The stream says which aggregate the event belongs to, so
//! decoding starts from [`AggregateRef::from_stream`].
//!
//! Events are never rewritten. When a type's shape changes, its version in [`schema_version`]
//! goes up by one and an upcaster from the old version is added to [`Upcasters::current`].

use std::collections::HashMap;

use muster_store::{
    EventMetadata, ExpectedState, InvalidInput, NewEvent, RecordedEvent, StreamName, StreamRevision,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::alert::AlertEvent;
use crate::api_token::ApiTokenEvent;
use crate::audit::AuditEvent;
use crate::device::DeviceEvent;
use crate::ids::AggregateRef;
use crate::incident::IncidentEvent;
use crate::road::RoadClosureEvent;
use crate::sensor::SensorEvent;
use crate::unit::UnitEvent;
use crate::value::IdempotencyKey;

/// Every event type name of one aggregate's event enum.
pub trait EventSchema: Serialize + DeserializeOwned + Clone {
    /// The stream category (`incident`, `unit`, `sensor`, `road-closure`, `device`, `alert`).
    const CATEGORY: &'static str;
    /// Every event type this enum has.
    const EVENT_TYPES: &'static [&'static str];

    /// This event's type name.
    fn event_type(&self) -> &'static str;
}

impl EventSchema for IncidentEvent {
    const CATEGORY: &'static str = "incident";
    const EVENT_TYPES: &'static [&'static str] = &[
        "IncidentReported",
        "IncidentTriaged",
        "IncidentLocationUpdated",
        "IncidentTypeUpdated",
        "IncidentPriorityUpdated",
        "IncidentNoteAdded",
        "IncidentMerged",
        "IncidentDuplicateAbsorbed",
        "TimePointRecorded",
        "IncidentClosed",
        "CallerDetailsErased",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::IncidentReported { .. } => "IncidentReported",
            Self::IncidentTriaged { .. } => "IncidentTriaged",
            Self::IncidentLocationUpdated { .. } => "IncidentLocationUpdated",
            Self::IncidentTypeUpdated { .. } => "IncidentTypeUpdated",
            Self::IncidentPriorityUpdated { .. } => "IncidentPriorityUpdated",
            Self::IncidentNoteAdded { .. } => "IncidentNoteAdded",
            Self::IncidentMerged { .. } => "IncidentMerged",
            Self::IncidentDuplicateAbsorbed { .. } => "IncidentDuplicateAbsorbed",
            Self::TimePointRecorded { .. } => "TimePointRecorded",
            Self::IncidentClosed { .. } => "IncidentClosed",
            Self::CallerDetailsErased { .. } => "CallerDetailsErased",
        }
    }
}

impl EventSchema for UnitEvent {
    const CATEGORY: &'static str = "unit";
    const EVENT_TYPES: &'static [&'static str] = &[
        "UnitRegistered",
        "UnitCapabilitiesChanged",
        "UnitStatusChanged",
        "UnitPositionReported",
        "TaskAssigned",
        "TaskAcknowledged",
        "TaskDeclined",
        "TaskCompleted",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::UnitRegistered { .. } => "UnitRegistered",
            Self::UnitCapabilitiesChanged { .. } => "UnitCapabilitiesChanged",
            Self::UnitStatusChanged { .. } => "UnitStatusChanged",
            Self::UnitPositionReported { .. } => "UnitPositionReported",
            Self::TaskAssigned { .. } => "TaskAssigned",
            Self::TaskAcknowledged { .. } => "TaskAcknowledged",
            Self::TaskDeclined { .. } => "TaskDeclined",
            Self::TaskCompleted { .. } => "TaskCompleted",
        }
    }
}

impl EventSchema for SensorEvent {
    const CATEGORY: &'static str = "sensor";
    const EVENT_TYPES: &'static [&'static str] = &[
        "SensorRegistered",
        "SensorReconfigured",
        "SensorAlarmRaised",
        "SensorAlarmCleared",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            Self::SensorRegistered { .. } => "SensorRegistered",
            Self::SensorReconfigured { .. } => "SensorReconfigured",
            Self::SensorAlarmRaised { .. } => "SensorAlarmRaised",
            Self::SensorAlarmCleared { .. } => "SensorAlarmCleared",
        }
    }
}

impl EventSchema for RoadClosureEvent {
    const CATEGORY: &'static str = "road-closure";
    const EVENT_TYPES: &'static [&'static str] = &["RoadClosed", "RoadReopened"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::RoadClosed { .. } => "RoadClosed",
            Self::RoadReopened { .. } => "RoadReopened",
        }
    }
}

impl EventSchema for DeviceEvent {
    const CATEGORY: &'static str = "device";
    const EVENT_TYPES: &'static [&'static str] = &["DeviceTokenIssued", "DeviceTokenRevoked"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::DeviceTokenIssued { .. } => "DeviceTokenIssued",
            Self::DeviceTokenRevoked { .. } => "DeviceTokenRevoked",
        }
    }
}

impl EventSchema for AuditEvent {
    const CATEGORY: &'static str = "audit";
    const EVENT_TYPES: &'static [&'static str] = &["CallerDetailsRead"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::CallerDetailsRead { .. } => "CallerDetailsRead",
        }
    }
}

impl EventSchema for AlertEvent {
    const CATEGORY: &'static str = "alert";
    const EVENT_TYPES: &'static [&'static str] = &["TaskAckOverdue"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::TaskAckOverdue { .. } => "TaskAckOverdue",
        }
    }
}

impl EventSchema for ApiTokenEvent {
    const CATEGORY: &'static str = "api-tokens";
    const EVENT_TYPES: &'static [&'static str] = &["ApiTokenCreated", "ApiTokenRevoked"];

    fn event_type(&self) -> &'static str {
        match self {
            Self::ApiTokenCreated { .. } => "ApiTokenCreated",
            Self::ApiTokenRevoked { .. } => "ApiTokenRevoked",
        }
    }
}

/// Every event type of every aggregate, by stream category.
pub const EVENT_TYPES: &[(&str, &[&str])] = &[
    (IncidentEvent::CATEGORY, IncidentEvent::EVENT_TYPES),
    (UnitEvent::CATEGORY, UnitEvent::EVENT_TYPES),
    (SensorEvent::CATEGORY, SensorEvent::EVENT_TYPES),
    (RoadClosureEvent::CATEGORY, RoadClosureEvent::EVENT_TYPES),
    (DeviceEvent::CATEGORY, DeviceEvent::EVENT_TYPES),
    (AlertEvent::CATEGORY, AlertEvent::EVENT_TYPES),
    (AuditEvent::CATEGORY, AuditEvent::EVENT_TYPES),
    (ApiTokenEvent::CATEGORY, ApiTokenEvent::EVENT_TYPES),
];

/// The current schema version of an event type; `None` for a type Muster does not know.
/// Every type is at version 1 so far.
pub fn schema_version(event_type: &str) -> Option<u32> {
    let known = EVENT_TYPES
        .iter()
        .flat_map(|(_, types)| types.iter())
        .any(|t| *t == event_type);
    known.then_some(1)
}

/// Any domain event, with the aggregate it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum DomainEvent {
    /// An incident's event.
    Incident(IncidentEvent),
    /// A unit's event (tasks included).
    Unit(UnitEvent),
    /// A sensor's event.
    Sensor(SensorEvent),
    /// A road closure's event.
    RoadClosure(RoadClosureEvent),
    /// A unit's device enrolment.
    Device(DeviceEvent),
    /// An operator alert about a task.
    Alert(AlertEvent),
    /// A record of the audit trail of reads.
    Audit(AuditEvent),
    /// A machine's API token created or revoked.
    ApiToken(ApiTokenEvent),
}

impl DomainEvent {
    /// The event's type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Incident(e) => e.event_type(),
            Self::Unit(e) => e.event_type(),
            Self::Sensor(e) => e.event_type(),
            Self::RoadClosure(e) => e.event_type(),
            Self::Device(e) => e.event_type(),
            Self::Alert(e) => e.event_type(),
            Self::Audit(e) => e.event_type(),
            Self::ApiToken(e) => e.event_type(),
        }
    }

    /// Decodes a stored event with the current upcasters: the aggregate it belongs to (from
    /// its stream) and the event.
    pub fn from_recorded(
        recorded: &RecordedEvent,
    ) -> Result<(AggregateRef, DomainEvent), DecodeError> {
        Self::from_recorded_with(recorded, &Upcasters::current())
    }

    /// Decodes a stored event with these upcasters.
    pub fn from_recorded_with(
        recorded: &RecordedEvent,
        upcasters: &Upcasters,
    ) -> Result<(AggregateRef, DomainEvent), DecodeError> {
        let aggregate = AggregateRef::from_stream(&recorded.stream).ok_or_else(|| {
            DecodeError::ForeignStream {
                stream: recorded.stream.to_string(),
            }
        })?;
        let event = match aggregate {
            AggregateRef::Incident(_) => DomainEvent::Incident(decode_with(recorded, upcasters)?),
            AggregateRef::Unit(_) => DomainEvent::Unit(decode_with(recorded, upcasters)?),
            AggregateRef::Sensor(_) => DomainEvent::Sensor(decode_with(recorded, upcasters)?),
            AggregateRef::RoadClosure(_) => {
                DomainEvent::RoadClosure(decode_with(recorded, upcasters)?)
            }
            AggregateRef::Device(_) => DomainEvent::Device(decode_with(recorded, upcasters)?),
            AggregateRef::Alert(_) => DomainEvent::Alert(decode_with(recorded, upcasters)?),
            AggregateRef::Audit(_) => DomainEvent::Audit(decode_with(recorded, upcasters)?),
            AggregateRef::ApiTokens => DomainEvent::ApiToken(decode_with(recorded, upcasters)?),
        };
        Ok((aggregate, event))
    }
}

/// An event that could not become a `NewEvent`.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The store's checks refused it (too large, for instance).
    #[error(transparent)]
    Store(#[from] InvalidInput),
    /// Serialization failed (a NaN that slipped past the checks, for instance).
    #[error("event {event_type} could not be serialized: {reason}")]
    Serialize {
        /// The event type.
        event_type: &'static str,
        /// What serde said.
        reason: String,
    },
}

/// A stored event that could not be read back. A fault in the log or the code, not the
/// user's: log it with the stream and revision.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The stream is not a domain aggregate's.
    #[error("stream {stream} is not a domain aggregate's stream")]
    ForeignStream {
        /// The stream.
        stream: String,
    },
    /// The event type is not one this build knows for the stream's aggregate.
    #[error("event type {event_type:?} is not known in {category} streams")]
    UnknownType {
        /// The type.
        event_type: String,
        /// The stream category.
        category: &'static str,
    },
    /// The event was written by a newer build.
    #[error(
        "event type {event_type} has schema version {version}, newer than this build's {current}"
    )]
    FutureVersion {
        /// The type.
        event_type: String,
        /// The stored version.
        version: u32,
        /// This build's version.
        current: u32,
    },
    /// No upcaster leads from the stored version to the current one.
    #[error("event type {event_type} has schema version {version} and no upcaster from it")]
    NoUpcaster {
        /// The type.
        event_type: String,
        /// The stored version.
        version: u32,
    },
    /// An upcaster refused the old data.
    #[error("upcasting {event_type} from version {version} failed: {reason}")]
    Upcast {
        /// The type.
        event_type: String,
        /// The version it was upcast from.
        version: u32,
        /// Why.
        reason: String,
    },
    /// The data does not have the shape of the event type.
    #[error(
        "event type {event_type} (stream {stream}, revision {revision}) has data of the wrong shape: {reason}"
    )]
    Data {
        /// The type.
        event_type: String,
        /// The stream.
        stream: String,
        /// The revision.
        revision: StreamRevision,
        /// What serde said. Never the data itself: it may hold personal data.
        reason: String,
    },
}

/// Turns an old shape of an event's JSON data into the next version's shape.
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// Upcasters by event type and the version they upcast from (to that version + 1).
#[derive(Clone, Debug, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), UpcastFn>,
}

impl Upcasters {
    /// The upcasters of this build. Empty while every event type is at version 1.
    pub fn current() -> Self {
        Self::default()
    }

    /// Adds the step from `from_version` to `from_version + 1` of `event_type`.
    pub fn with(mut self, event_type: &str, from_version: u32, step: UpcastFn) -> Self {
        self.steps
            .insert((event_type.to_owned(), from_version), step);
        self
    }

    /// Brings `data` from `version` up to `current`, one step at a time.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: u32,
        current: u32,
        mut data: Value,
    ) -> Result<Value, DecodeError> {
        if version > current {
            return Err(DecodeError::FutureVersion {
                event_type: event_type.to_owned(),
                version,
                current,
            });
        }
        while version < current {
            let step = self
                .steps
                .get(&(event_type.to_owned(), version))
                .ok_or_else(|| DecodeError::NoUpcaster {
                    event_type: event_type.to_owned(),
                    version,
                })?;
            data = step(data).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_owned(),
                version,
                reason,
            })?;
            version += 1;
        }
        Ok(data)
    }
}

/// Decodes a stored event of a known aggregate type, upcasting it to the current version.
pub fn decode<E: EventSchema>(recorded: &RecordedEvent) -> Result<E, DecodeError> {
    decode_with(recorded, &Upcasters::current())
}

/// Decodes a stored event with these upcasters.
pub fn decode_with<E: EventSchema>(
    recorded: &RecordedEvent,
    upcasters: &Upcasters,
) -> Result<E, DecodeError> {
    let event_type = recorded.event_type.as_str();
    let current = E::EVENT_TYPES
        .contains(&event_type)
        .then(|| schema_version(event_type))
        .flatten()
        .ok_or_else(|| DecodeError::UnknownType {
            event_type: event_type.to_owned(),
            category: E::CATEGORY,
        })?;
    let shape_error = |e: serde_json::Error| DecodeError::Data {
        event_type: event_type.to_owned(),
        stream: recorded.stream.to_string(),
        revision: recorded.revision,
        reason: redact_values(&e.to_string()),
    };
    if recorded.schema_version == current {
        // The stored shape is the current one: parse the bytes once, with no detour through
        // a `Value` (rebuilding views decodes every event of the log).
        let mut tagged = Vec::with_capacity(recorded.data.len() + event_type.len() + 20);
        tagged.extend_from_slice(b"{\"type\":\"");
        tagged.extend_from_slice(event_type.as_bytes());
        tagged.extend_from_slice(b"\",\"data\":");
        tagged.extend_from_slice(&recorded.data);
        tagged.push(b'}');
        return serde_json::from_slice(&tagged).map_err(shape_error);
    }
    let data: Value = serde_json::from_slice(&recorded.data).map_err(shape_error)?;
    let data = upcasters.upcast(event_type, recorded.schema_version, current, data)?;
    let tagged = serde_json::json!({ "type": event_type, "data": data });
    serde_json::from_value(tagged).map_err(shape_error)
}

/// serde's messages quote the offending value (`invalid type: string "…"`, `integer `…``,
/// `unknown variant `…``), which may be personal data. Keep the message and what the type
/// expected; drop the quoted values (field names stay).
pub fn redact_values(message: &str) -> String {
    let (head, tail) = message.split_at(message.find(", expected").unwrap_or(message.len()));
    let mut out = String::with_capacity(message.len());
    let mut rest = head;
    while let Some(start) = rest.find(['`', '"']) {
        let delimiter = &rest[start..start + 1];
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find(delimiter);
        if out.ends_with("field ") {
            out.push_str(delimiter);
            out.push_str(end.map_or(after, |e| &after[..e]));
            out.push_str(delimiter);
        } else {
            out.push_str(delimiter);
            out.push('…');
            out.push_str(delimiter);
        }
        rest = end.map_or("", |e| &after[e + 1..]);
    }
    out.push_str(rest);
    out.push_str(tail);
    out
}

/// Turns one event into a `NewEvent` with this id and metadata.
pub fn encode<E: EventSchema>(
    event: &E,
    id: Uuid,
    metadata: EventMetadata,
) -> Result<NewEvent, EncodeError> {
    let event_type = event.event_type();
    let serialize_error = |e: serde_json::Error| EncodeError::Serialize {
        event_type,
        reason: e.to_string(),
    };
    let tagged = serde_json::to_value(event).map_err(serialize_error)?;
    let data = match tagged {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let version = schema_version(event_type).unwrap_or(1);
    Ok(NewEvent::json(id, event_type, version, &data)?.with_metadata(metadata))
}

/// Where the ids of a batch of new events come from.
#[derive(Clone, Copy, Debug)]
pub enum EventIds<'a> {
    /// Derived from the command's idempotency key and the stream: a retry of the command
    /// produces the same ids, and the store writes nothing the second time.
    FromKey(&'a IdempotencyKey),
    /// Derived from the id of the event that caused them (for reactions, see
    /// [`crate::reaction`]): running a reaction twice on the same event appends nothing new.
    CausedBy(Uuid),
    /// Fresh time-ordered UUIDs, for events nothing will ever resend.
    Fresh,
}

impl EventIds<'_> {
    /// The id of the `index`-th event of a batch appended to `stream`.
    pub fn id(&self, stream: &StreamName, index: u32) -> Uuid {
        match self {
            EventIds::FromKey(key) => key.event_id(stream.as_str(), index),
            EventIds::CausedBy(cause) => {
                Uuid::new_v5(cause, format!("{stream}\u{0}{index}").as_bytes())
            }
            EventIds::Fresh => Uuid::now_v7(),
        }
    }
}

/// The events that a command with this idempotency key already appended to `stream`, read
/// from the stream's events, in order. Empty when the command never ran (or appended
/// nothing). A caller that finds them answers with them, as the first time, and appends
/// nothing: deciding again would see the command's own effects and could answer otherwise.
pub fn already_appended<'a>(
    recorded: &'a [RecordedEvent],
    stream: &StreamName,
    key: &IdempotencyKey,
) -> Vec<&'a RecordedEvent> {
    let ids = EventIds::FromKey(key);
    let Some(start) = recorded.iter().position(|r| r.id == ids.id(stream, 0)) else {
        return Vec::new();
    };
    recorded[start..]
        .iter()
        .zip(0u32..)
        .take_while(|(r, i)| r.id == ids.id(stream, *i))
        .map(|(r, _)| r)
        .collect()
}

/// Turns the events a decision produced into the `NewEvent`s of one append to `stream`, all
/// with the same metadata.
pub fn encode_batch<E: EventSchema>(
    stream: &StreamName,
    events: &[E],
    ids: EventIds<'_>,
    metadata: &EventMetadata,
) -> Result<Vec<NewEvent>, EncodeError> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| encode(event, ids.id(stream, i as u32), metadata.clone()))
        .collect()
}

/// The expected state for appending to a stream after reading it: `NoStream` when it had no
/// event, else the revision of the last event read. This is the guard that lets only one of
/// two concurrent decisions on the same state through.
pub fn expected_state_after(last_revision: Option<StreamRevision>) -> ExpectedState {
    match last_revision {
        None => ExpectedState::NoStream,
        Some(r) => ExpectedState::Revision(r),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{DateTime, TimeZone, Utc};
    use muster_store::Position;

    use super::*;
    use crate::ids::{AlarmId, ClosureId, IncidentId, SensorId, TaskId, UnitId};
    use crate::incident::{ReportSource, TimePoint};
    use crate::sensor::{Crossing, Threshold, ThresholdSpec};
    use crate::unit::UnitStatus;
    use crate::value::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn recorded(stream: &StreamName, new: &NewEvent) -> RecordedEvent {
        RecordedEvent {
            stream: stream.clone(),
            revision: 0,
            position: Position(0),
            id: new.id,
            event_type: new.event_type.clone(),
            schema_version: new.schema_version,
            data: new.data.clone(),
            metadata: new.metadata.clone(),
            recorded_at: t(0),
        }
    }

    fn one_of_each() -> Vec<DomainEvent> {
        let here = LatLon::from_lat_lon(52.5, 13.4).unwrap();
        let inc = IncidentId::from_uuid(Uuid::from_u128(1));
        let unit = UnitId::from_uuid(Uuid::from_u128(2));
        let task = TaskId::from_uuid(Uuid::from_u128(3));
        let metric = MetricName::parse("temperature_c").unwrap();
        use crate::incident::IncidentEvent as I;
        use crate::sensor::SensorEvent as S;
        use crate::unit::UnitEvent as U;
        vec![
            DomainEvent::Incident(I::IncidentReported {
                incident_id: inc,
                source: ReportSource::Sensor {
                    sensor: SensorId::from_uuid(Uuid::from_u128(4)),
                    alarm: AlarmId::from_uuid(Uuid::from_u128(5)),
                },
                location: here,
                incident_type: IncidentType::StructureFire,
                priority: Priority::P1,
                caller: CallerDetails {
                    name: Some(PersonName::parse("Erika").unwrap()),
                    call_back: Some(PhoneNumber::parse("+491511234567").unwrap()),
                    sealed: None,
                },
                at: t(1),
            }),
            DomainEvent::Incident(I::IncidentTriaged {
                incident_type: IncidentType::FireAlarm,
                priority: Priority::P2,
                at: t(2),
            }),
            DomainEvent::Incident(I::IncidentLocationUpdated {
                location: here,
                at: t(3),
            }),
            DomainEvent::Incident(I::IncidentTypeUpdated {
                incident_type: IncidentType::Medical,
                at: t(3),
            }),
            DomainEvent::Incident(I::IncidentPriorityUpdated {
                priority: Priority::P5,
                at: t(3),
            }),
            DomainEvent::Incident(I::IncidentNoteAdded {
                text: NoteText::parse("smoke seen").unwrap(),
                at: t(4),
            }),
            DomainEvent::Incident(I::IncidentMerged {
                into: inc,
                at: t(5),
            }),
            DomainEvent::Incident(I::IncidentDuplicateAbsorbed {
                from: inc,
                at: t(5),
            }),
            DomainEvent::Incident(I::TimePointRecorded {
                point: TimePoint::OnScene,
                unit: Some(unit),
                task: Some(task),
                at: t(6),
            }),
            DomainEvent::Incident(I::TimePointRecorded {
                point: TimePoint::CallReceived,
                unit: None,
                task: None,
                at: t(0),
            }),
            DomainEvent::Incident(I::IncidentClosed {
                disposition: Disposition::FalseAlarm,
                at: t(7),
            }),
            DomainEvent::Incident(I::CallerDetailsErased {
                by: "admin-1".into(),
                reason: "request 2026/114".into(),
                at: t(8),
            }),
            DomainEvent::Unit(U::UnitRegistered {
                unit_id: unit,
                kind: UnitKind::AlsAmbulance,
                call_sign: CallSign::parse("M12").unwrap(),
                agency: Agency::parse("ems").unwrap(),
                home_station: StationCode::parse("s1").unwrap(),
                capabilities: BTreeSet::from([Capability::parse("als").unwrap()]),
                at: t(0),
            }),
            DomainEvent::Unit(U::UnitCapabilitiesChanged {
                capabilities: BTreeSet::new(),
                at: t(1),
            }),
            DomainEvent::Unit(U::UnitStatusChanged {
                from: UnitStatus::Dispatched,
                to: UnitStatus::EnRoute,
                incident: Some(inc),
                task: Some(task),
                at: t(1),
            }),
            DomainEvent::Unit(U::UnitPositionReported {
                position: here,
                heading_deg: Some(12.5),
                speed_m_s: Some(13.0),
                accuracy_m: None,
                at: t(2),
            }),
            DomainEvent::Unit(U::TaskAssigned {
                task,
                incident: inc,
                at: t(3),
            }),
            DomainEvent::Unit(U::TaskAcknowledged {
                task,
                incident: inc,
                at: t(3),
            }),
            DomainEvent::Unit(U::TaskDeclined {
                task,
                incident: inc,
                reason: Some(NoteText::parse("no crew").unwrap()),
                at: t(3),
            }),
            DomainEvent::Unit(U::TaskCompleted {
                task,
                incident: inc,
                at: t(3),
            }),
            DomainEvent::Sensor(S::SensorRegistered {
                sensor_id: SensorId::from_uuid(Uuid::from_u128(4)),
                kind: SensorKind::parse("heat").unwrap(),
                location: here,
                thresholds: vec![
                    Threshold::try_from(ThresholdSpec {
                        metric: metric.clone(),
                        crossing: Crossing::Above,
                        raise_at: 60.0,
                        clear_at: 50.0,
                        incident_type: IncidentType::FireAlarm,
                        priority: Priority::P2,
                    })
                    .unwrap(),
                ],
                at: t(0),
            }),
            DomainEvent::Sensor(S::SensorReconfigured {
                location: here,
                thresholds: vec![],
                at: t(1),
            }),
            DomainEvent::Sensor(S::SensorAlarmRaised {
                alarm: AlarmId::from_uuid(Uuid::from_u128(5)),
                incident: inc,
                metric: metric.clone(),
                value: 61.5,
                location: here,
                incident_type: IncidentType::FireAlarm,
                priority: Priority::P2,
                at: t(1),
            }),
            DomainEvent::Sensor(S::SensorAlarmCleared {
                alarm: AlarmId::from_uuid(Uuid::from_u128(5)),
                incident: inc,
                metric,
                value: 40.0,
                at: t(2),
            }),
            DomainEvent::RoadClosure(crate::road::RoadClosureEvent::RoadClosed {
                closure: ClosureId::from_uuid(Uuid::from_u128(6)),
                location: here,
                radius_m: 150.0,
                note: Some("water main burst".into()),
                by: "operator-1".into(),
                at: t(3),
            }),
            DomainEvent::RoadClosure(crate::road::RoadClosureEvent::RoadReopened {
                closure: ClosureId::from_uuid(Uuid::from_u128(6)),
                by: "operator-1".into(),
                at: t(4),
            }),
            DomainEvent::Device(crate::device::DeviceEvent::DeviceTokenIssued {
                unit,
                issued_by: "operator-1".into(),
                expires_at: t(3600),
                fingerprint: "0123456789abcdef".into(),
                token_id: None,
                at: t(0),
            }),
            DomainEvent::Device(crate::device::DeviceEvent::DeviceTokenRevoked {
                unit,
                token_id: Uuid::from_u128(7),
                revoked_by: "operator-1".into(),
                reason: Some("phone lost".into()),
                at: t(5),
            }),
            DomainEvent::Audit(crate::audit::AuditEvent::CallerDetailsRead {
                incident: inc,
                fields: vec!["name".into(), "call_back".into()],
                via: "api".into(),
                at: t(6),
            }),
            DomainEvent::Alert(crate::alert::AlertEvent::TaskAckOverdue {
                task,
                incident: inc,
                unit,
                assigned_at: t(0),
                timeout_secs: 90,
                at: t(90),
            }),
            DomainEvent::ApiToken(ApiTokenEvent::ApiTokenCreated {
                token_id: Uuid::from_u128(8),
                name: "cad-bridge".into(),
                role: "operator".into(),
                agency: Some(crate::value::Agency::parse("city-fire").unwrap()),
                unit: None,
                digest: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                expires_at: t(86_400),
                created_by: "admin-1".into(),
                at: t(0),
            }),
            DomainEvent::ApiToken(ApiTokenEvent::ApiTokenRevoked {
                token_id: Uuid::from_u128(8),
                revoked_by: "admin-1".into(),
                reason: Some("rotated".into()),
                at: t(7),
            }),
        ]
    }

    fn encode_any(event: &DomainEvent, id: Uuid) -> (StreamName, NewEvent) {
        let meta = EventMetadata {
            actor: Some("operator-1".into()),
            ..Default::default()
        };
        match event {
            DomainEvent::Incident(e) => (
                IncidentId::from_uuid(Uuid::from_u128(1)).stream_name(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::Unit(e) => (
                UnitId::from_uuid(Uuid::from_u128(2)).stream_name(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::Sensor(e) => (
                SensorId::from_uuid(Uuid::from_u128(4)).stream_name(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::RoadClosure(e) => (
                ClosureId::from_uuid(Uuid::from_u128(6)).stream_name(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::Device(e) => (
                UnitId::from_uuid(Uuid::from_u128(2)).device_stream(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::Alert(e) => (
                TaskId::from_uuid(Uuid::from_u128(3)).alert_stream(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::Audit(e) => (
                IncidentId::from_uuid(Uuid::from_u128(1)).audit_stream(),
                encode(e, id, meta).unwrap(),
            ),
            DomainEvent::ApiToken(e) => (
                crate::ids::api_tokens_stream(),
                encode(e, id, meta).unwrap(),
            ),
        }
    }

    /// Road closures, token audits and overdue alerts were stored in this shape before they
    /// were core's events; those logs must read the same.
    #[test]
    fn closures_tokens_and_alerts_keep_their_stored_shape() {
        let closure = "00000000-0000-0000-0000-000000000006";
        let unit = "00000000-0000-0000-0000-000000000002";
        let task = "00000000-0000-0000-0000-000000000003";
        let incident = "00000000-0000-0000-0000-000000000001";
        let table = [
            (
                format!("road-closure-{closure}"),
                "RoadClosed",
                format!(
                    r#"{{"closure":"{closure}","location":{{"lat":52.5,"lon":13.4}},"radius_m":150.0,"note":"water main burst","by":"operator-1","at":"2026-09-21T14:13:23Z"}}"#
                ),
            ),
            (
                format!("road-closure-{closure}"),
                "RoadReopened",
                format!(
                    r#"{{"closure":"{closure}","by":"operator-1","at":"2026-09-21T14:13:24Z"}}"#
                ),
            ),
            (
                format!("device-{unit}"),
                "DeviceTokenIssued",
                format!(
                    r#"{{"unit":"{unit}","issued_by":"operator-1","expires_at":"2026-09-21T15:13:20Z","fingerprint":"0123456789abcdef","at":"2026-09-21T14:13:20Z"}}"#
                ),
            ),
            (
                format!("alert-{task}"),
                "TaskAckOverdue",
                format!(
                    r#"{{"task":"{task}","incident":"{incident}","unit":"{unit}","assigned_at":"2026-09-21T14:13:20Z","timeout_secs":90,"at":"2026-09-21T14:14:50Z"}}"#
                ),
            ),
        ];
        let expected = one_of_each();
        for (stream, event_type, data) in table {
            let stream = StreamName::parse(stream).unwrap();
            let mut rec = recorded(
                &stream,
                &NewEvent::json(Uuid::from_u128(9), event_type, 1, &Value::Null).unwrap(),
            );
            rec.data = data.into_bytes();
            let (_, event) =
                DomainEvent::from_recorded(&rec).unwrap_or_else(|e| panic!("{event_type}: {e}"));
            assert!(
                expected.contains(&event),
                "{event_type} decoded as {event:?}"
            );
            let (_, again) = encode_any(&event, Uuid::from_u128(9));
            let stored: Value = serde_json::from_slice(&rec.data).unwrap();
            let written: Value = serde_json::from_slice(&again.data).unwrap();
            assert_eq!(written, stored, "{event_type} is written as it was stored");
        }
    }

    #[test]
    fn every_event_type_round_trips_through_the_store_shape() {
        let events = one_of_each();
        let mut types = BTreeSet::new();
        for (i, event) in events.iter().enumerate() {
            let (stream, new) = encode_any(event, Uuid::from_u128(i as u128));
            assert_eq!(new.event_type, event.event_type());
            assert_eq!(new.schema_version, 1);
            // The data is the fields, not a tagged wrapper.
            let data: Value = serde_json::from_slice(&new.data).unwrap();
            assert!(
                data.get("type").is_none() && data.get("data").is_none(),
                "{}",
                event.event_type()
            );
            let (aggregate, back) = DomainEvent::from_recorded(&recorded(&stream, &new)).unwrap();
            assert_eq!(aggregate.stream_name(), stream);
            assert_eq!(&back, event);
            types.insert(event.event_type());
        }
        let all: BTreeSet<&str> = EVENT_TYPES
            .iter()
            .flat_map(|(_, types)| types.iter())
            .copied()
            .collect();
        assert_eq!(types, all, "the sample covers every event type");
    }

    #[test]
    fn decoding_refuses_what_it_does_not_know() {
        let (stream, new) = encode_any(&one_of_each()[0], Uuid::from_u128(9));
        let unit_stream = UnitId::from_uuid(Uuid::from_u128(2)).stream_name();
        let mut future = recorded(&stream, &new);
        future.schema_version = 2;
        let mut wrong_shape = recorded(&stream, &new);
        wrong_shape.data = br#"{"incident_id": 42}"#.to_vec();
        let mut unknown = recorded(&stream, &new);
        unknown.event_type = "IncidentTeleported".into();
        let table = [
            (
                recorded(&StreamName::parse("orders-1").unwrap(), &new),
                "a stream that is no aggregate's",
            ),
            (
                recorded(&unit_stream, &new),
                "an incident event in a unit stream",
            ),
            (future, "a version newer than this build"),
            (wrong_shape, "data of the wrong shape"),
            (unknown, "an event type nobody defined"),
        ];
        for (rec, why) in table {
            let err = DomainEvent::from_recorded(&rec).expect_err(why);
            assert!(
                !err.to_string().contains("Erika"),
                "{why}: personal data in {err}"
            );
        }
    }

    #[test]
    fn old_versions_are_upcast_on_read() {
        // A version-0 note stored its text under "note"; version 1 calls it "text".
        let stream = IncidentId::from_uuid(Uuid::from_u128(1)).stream_name();
        let old = NewEvent::json(
            Uuid::from_u128(1),
            "IncidentNoteAdded",
            0,
            &serde_json::json!({"note": "old shape", "at": t(1)}),
        )
        .unwrap();
        let rec = recorded(&stream, &old);
        assert!(matches!(
            DomainEvent::from_recorded(&rec),
            Err(DecodeError::NoUpcaster { version: 0, .. })
        ));
        let upcasters = Upcasters::current().with("IncidentNoteAdded", 0, |mut v| {
            let note = v
                .as_object_mut()
                .and_then(|m| m.remove("note"))
                .ok_or("no note field")?;
            v["text"] = note;
            Ok(v)
        });
        let (_, event) = DomainEvent::from_recorded_with(&rec, &upcasters).unwrap();
        assert_eq!(
            event,
            DomainEvent::Incident(IncidentEvent::IncidentNoteAdded {
                text: NoteText::parse("old shape").unwrap(),
                at: t(1)
            })
        );
        let broken = NewEvent::json(
            Uuid::from_u128(2),
            "IncidentNoteAdded",
            0,
            &serde_json::json!({"at": t(1)}),
        )
        .unwrap();
        assert!(matches!(
            DomainEvent::from_recorded_with(&recorded(&stream, &broken), &upcasters),
            Err(DecodeError::Upcast { .. })
        ));
    }

    #[test]
    fn batch_ids_follow_the_idempotency_key() {
        let key = IdempotencyKey::try_from("call-0001-abcdef").unwrap();
        let stream = IncidentId::from_uuid(Uuid::from_u128(1)).stream_name();
        let events: Vec<IncidentEvent> = one_of_each()
            .into_iter()
            .filter_map(|e| match e {
                DomainEvent::Incident(e) => Some(e),
                _ => None,
            })
            .take(3)
            .collect();
        let meta = EventMetadata::default();
        let a = encode_batch(&stream, &events, EventIds::FromKey(&key), &meta).unwrap();
        let b = encode_batch(&stream, &events, EventIds::FromKey(&key), &meta).unwrap();
        assert_eq!(a, b, "a retry produces the very same events");
        let ids: BTreeSet<Uuid> = a.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 3);
        let fresh = encode_batch(&stream, &events, EventIds::Fresh, &meta).unwrap();
        assert_ne!(fresh[0].id, a[0].id);
        let cause = Uuid::from_u128(77);
        let c1 = encode_batch(&stream, &events, EventIds::CausedBy(cause), &meta).unwrap();
        let c2 = encode_batch(&stream, &events, EventIds::CausedBy(cause), &meta).unwrap();
        assert_eq!(c1, c2);
        assert_ne!(c1[0].id, c1[1].id);

        // Finding a command's earlier events by its key.
        let other_key = IdempotencyKey::try_from("call-0002-abcdef").unwrap();
        let earlier =
            encode_batch(&stream, &events[..1], EventIds::FromKey(&other_key), &meta).unwrap();
        let stored: Vec<RecordedEvent> = earlier
            .iter()
            .chain(a.iter())
            .map(|n| recorded(&stream, n))
            .collect();
        let found = already_appended(&stored, &stream, &key);
        assert_eq!(
            found.iter().map(|r| r.id).collect::<Vec<_>>(),
            a.iter().map(|n| n.id).collect::<Vec<_>>()
        );
        let never = IdempotencyKey::try_from("call-0003-abcdef").unwrap();
        assert!(already_appended(&stored, &stream, &never).is_empty());
    }

    /// The stored shape of version 1. A change here is a schema change: bump the version and
    /// add an upcaster instead of editing these.
    #[test]
    fn version_1_shapes_are_fixed() {
        let table: Vec<(DomainEvent, Value)> = {
            let events = one_of_each();
            let find = |name: &str| {
                events
                    .iter()
                    .find(|e| e.event_type() == name)
                    .unwrap()
                    .clone()
            };
            vec![
                (
                    find("IncidentReported"),
                    serde_json::json!({
                        "incident_id": "00000000-0000-0000-0000-000000000001",
                        "source": {"kind": "sensor", "sensor": "00000000-0000-0000-0000-000000000004", "alarm": "00000000-0000-0000-0000-000000000005"},
                        "location": {"lat": 52.5, "lon": 13.4},
                        "incident_type": "structure_fire",
                        "priority": "P1",
                        "caller": {"name": "Erika", "call_back": "+491511234567"},
                        "at": "2026-09-21T14:13:21Z",
                    }),
                ),
                (
                    find("UnitStatusChanged"),
                    serde_json::json!({
                        "from": "dispatched",
                        "to": "en_route",
                        "incident": "00000000-0000-0000-0000-000000000001",
                        "task": "00000000-0000-0000-0000-000000000003",
                        "at": "2026-09-21T14:13:21Z",
                    }),
                ),
                (
                    find("TimePointRecorded"),
                    serde_json::json!({
                        "point": "on_scene",
                        "unit": "00000000-0000-0000-0000-000000000002",
                        "task": "00000000-0000-0000-0000-000000000003",
                        "at": "2026-09-21T14:13:26Z",
                    }),
                ),
                (
                    find("SensorAlarmCleared"),
                    serde_json::json!({
                        "alarm": "00000000-0000-0000-0000-000000000005",
                        "incident": "00000000-0000-0000-0000-000000000001",
                        "metric": "temperature_c",
                        "value": 40.0,
                        "at": "2026-09-21T14:13:22Z",
                    }),
                ),
            ]
        };
        for (event, expected) in table {
            let (_, new) = encode_any(&event, Uuid::from_u128(1));
            let data: Value = serde_json::from_slice(&new.data).unwrap();
            assert_eq!(data, expected, "{}", event.event_type());
        }
    }

    #[test]
    fn decode_errors_do_not_repeat_stored_values() {
        let stream = IncidentId::from_uuid(Uuid::from_u128(1)).stream_name();
        let table = [
            (
                serde_json::json!({"text": 5551234, "at": t(1)}),
                "a number where the note goes",
            ),
            (
                serde_json::json!({"text": "Erika 5551234", "at": "Erika 5551234"}),
                "a string where a time goes",
            ),
        ];
        for (data, why) in table {
            let new = NewEvent::json(Uuid::from_u128(3), "IncidentNoteAdded", 1, &data).unwrap();
            let err = DomainEvent::from_recorded(&recorded(&stream, &new)).expect_err(why);
            let text = err.to_string();
            assert!(
                !text.contains("5551234") && !text.contains("Erika"),
                "{why}: {text}"
            );
        }
        let new = NewEvent::json(
            Uuid::from_u128(4),
            "IncidentPriorityUpdated",
            1,
            &serde_json::json!({"priority": "Erika", "at": t(1)}),
        )
        .unwrap();
        let text = DomainEvent::from_recorded(&recorded(&stream, &new))
            .unwrap_err()
            .to_string();
        assert!(
            !text.contains("Erika") && text.contains("unknown variant"),
            "{text}"
        );
        assert_eq!(redact_values("missing field `at`"), "missing field `at`");
        assert_eq!(redact_values("a \"b\" c \"unterminated"), "a \"…\" c \"…\"");
    }

    #[test]
    fn expected_state_follows_the_last_revision_read() {
        assert_eq!(expected_state_after(None), ExpectedState::NoStream);
        assert_eq!(expected_state_after(Some(4)), ExpectedState::Revision(4));
    }

    #[test]
    fn new_event_debug_hides_caller_details() {
        let (_, new) = encode_any(&one_of_each()[0], Uuid::from_u128(1));
        let debug = format!("{new:?}");
        assert!(
            !debug.contains("Erika") && !debug.contains("1511234567"),
            "{debug}"
        );
        let event_debug = format!("{:?}", one_of_each()[0]);
        assert!(
            !event_debug.contains("Erika") && !event_debug.contains("1511234567"),
            "{event_debug}"
        );
    }
}
