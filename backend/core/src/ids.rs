//! Identifiers: UUID newtypes, one per kind of thing, and the stream each aggregate lives in.

use std::fmt;
use std::str::FromStr;

use muster_store::StreamName;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An id that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} id {input:?} is not a UUID")]
pub struct InvalidId {
    /// Which kind of id was expected.
    pub what: &'static str,
    /// The input, shortened to 64 characters.
    pub input: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUID v7).
            pub fn new_v7() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated (or any other standard) text form of a UUID.
            pub fn parse(input: &str) -> Result<Self, InvalidId> {
                Uuid::parse_str(input.trim()).map(Self).map_err(|_| InvalidId {
                    what: $what,
                    input: input.chars().take(64).collect(),
                })
            }
        }

        crate::schema::json_schema!($name, stringify!($name),
            serde_json::json!({"type": "string", "format": "uuid", "description": concat!("A ", $what, " id.")}));

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

uuid_id!(
    /// An incident; its events live in the stream `incident-<id>`.
    IncidentId,
    "incident"
);
uuid_id!(
    /// A unit (an engine, an ambulance, a patrol car); its events, tasks included, live in
    /// the stream `unit-<id>`.
    UnitId,
    "unit"
);
uuid_id!(
    /// A sensor; its events live in the stream `sensor-<id>`.
    SensorId,
    "sensor"
);
uuid_id!(
    /// A task: one assignment of one unit to one incident.
    TaskId,
    "task"
);
uuid_id!(
    /// One ongoing alarm of a sensor, from the threshold crossing to its clearing.
    AlarmId,
    "alarm"
);
uuid_id!(
    /// A road closure; its events live in the stream `road-closure-<id>`.
    ClosureId,
    "road closure"
);

/// Prefix of incident streams.
pub const INCIDENT_STREAM_PREFIX: &str = "incident-";
/// Prefix of unit streams.
pub const UNIT_STREAM_PREFIX: &str = "unit-";
/// Prefix of sensor streams.
pub const SENSOR_STREAM_PREFIX: &str = "sensor-";
/// Prefix of road closure streams.
pub const ROAD_CLOSURE_STREAM_PREFIX: &str = "road-closure-";
/// Prefix of a unit's device enrolment streams, `device-<unit id>`.
pub const DEVICE_STREAM_PREFIX: &str = "device-";
/// Prefix of a task's operator alerts, `alert-<task id>`.
pub const ALERT_STREAM_PREFIX: &str = "alert-";
/// Prefix of an incident's audit trail of reads, `audit-<incident id>`.
pub const AUDIT_STREAM_PREFIX: &str = "audit-";
/// The one stream of the machines' API tokens.
pub const API_TOKENS_STREAM: &str = "api-tokens";

/// The stream of the machines' API tokens, `api-tokens`.
pub fn api_tokens_stream() -> StreamName {
    StreamName::parse(API_TOKENS_STREAM).expect("a valid stream name")
}

fn stream(prefix: &str, id: Uuid) -> StreamName {
    // A prefix plus a hyphenated UUID is always a valid stream name: short, printable, trimmed.
    StreamName::parse(format!("{prefix}{id}")).expect("prefix + UUID is a valid stream name")
}

impl IncidentId {
    /// The incident's stream, `incident-<id>`.
    pub fn stream_name(&self) -> StreamName {
        stream(INCIDENT_STREAM_PREFIX, self.0)
    }
}

impl UnitId {
    /// The unit's stream, `unit-<id>`.
    pub fn stream_name(&self) -> StreamName {
        stream(UNIT_STREAM_PREFIX, self.0)
    }
}

impl SensorId {
    /// The sensor's stream, `sensor-<id>`.
    pub fn stream_name(&self) -> StreamName {
        stream(SENSOR_STREAM_PREFIX, self.0)
    }
}

impl ClosureId {
    /// The closure's stream, `road-closure-<id>`.
    pub fn stream_name(&self) -> StreamName {
        stream(ROAD_CLOSURE_STREAM_PREFIX, self.0)
    }
}

impl IncidentId {
    /// The stream of the incident's audit trail of reads, `audit-<id>`.
    pub fn audit_stream(&self) -> StreamName {
        stream(AUDIT_STREAM_PREFIX, self.0)
    }
}

impl UnitId {
    /// The stream of the unit's device enrolments, `device-<id>`.
    pub fn device_stream(&self) -> StreamName {
        stream(DEVICE_STREAM_PREFIX, self.0)
    }
}

impl TaskId {
    /// The stream of the task's operator alerts, `alert-<id>`.
    pub fn alert_stream(&self) -> StreamName {
        stream(ALERT_STREAM_PREFIX, self.0)
    }
}

/// Which aggregate a stream belongs to, read from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggregateRef {
    /// `incident-<id>`.
    Incident(IncidentId),
    /// `unit-<id>`.
    Unit(UnitId),
    /// `sensor-<id>`.
    Sensor(SensorId),
    /// `road-closure-<id>`.
    RoadClosure(ClosureId),
    /// `device-<unit id>`: the enrolments of a unit's device.
    Device(UnitId),
    /// `alert-<task id>`: the operator alerts about a task.
    Alert(TaskId),
    /// `audit-<incident id>`: the reads of an incident's personal data.
    Audit(IncidentId),
    /// `api-tokens`: the machines' API tokens.
    ApiTokens,
}

impl AggregateRef {
    /// Reads a stream name; `None` for streams that are not a domain aggregate's (system
    /// streams, other prefixes, a suffix that is not a UUID).
    pub fn from_stream(stream: &StreamName) -> Option<Self> {
        let name = stream.as_str();
        let uuid = |rest: &str| Uuid::parse_str(rest).ok();
        if name == API_TOKENS_STREAM {
            Some(Self::ApiTokens)
        } else if let Some(rest) = name.strip_prefix(INCIDENT_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Incident(IncidentId(u)))
        } else if let Some(rest) = name.strip_prefix(UNIT_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Unit(UnitId(u)))
        } else if let Some(rest) = name.strip_prefix(SENSOR_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Sensor(SensorId(u)))
        } else if let Some(rest) = name.strip_prefix(ROAD_CLOSURE_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::RoadClosure(ClosureId(u)))
        } else if let Some(rest) = name.strip_prefix(DEVICE_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Device(UnitId(u)))
        } else if let Some(rest) = name.strip_prefix(ALERT_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Alert(TaskId(u)))
        } else if let Some(rest) = name.strip_prefix(AUDIT_STREAM_PREFIX) {
            uuid(rest).map(|u| Self::Audit(IncidentId(u)))
        } else {
            None
        }
    }

    /// The aggregate's stream.
    pub fn stream_name(&self) -> StreamName {
        match self {
            Self::Incident(id) => id.stream_name(),
            Self::Unit(id) => id.stream_name(),
            Self::Sensor(id) => id.stream_name(),
            Self::RoadClosure(id) => id.stream_name(),
            Self::Device(unit) => unit.device_stream(),
            Self::Alert(task) => task.alert_stream(),
            Self::Audit(incident) => incident.audit_stream(),
            Self::ApiTokens => api_tokens_stream(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip() {
        let i = IncidentId::new_v7();
        let u = UnitId::new_v7();
        let s = SensorId::new_v7();
        assert_eq!(i.stream_name().as_str(), format!("incident-{i}"));
        let c = ClosureId::new_v7();
        let t = TaskId::new_v7();
        assert_eq!(c.stream_name().as_str(), format!("road-closure-{c}"));
        assert_eq!(u.device_stream().as_str(), format!("device-{u}"));
        assert_eq!(t.alert_stream().as_str(), format!("alert-{t}"));
        for r in [
            AggregateRef::Incident(i),
            AggregateRef::Unit(u),
            AggregateRef::Sensor(s),
            AggregateRef::RoadClosure(c),
            AggregateRef::Device(u),
            AggregateRef::Alert(t),
            AggregateRef::ApiTokens,
        ] {
            assert_eq!(AggregateRef::from_stream(&r.stream_name()), Some(r));
        }
    }

    #[test]
    fn foreign_streams_are_not_aggregates() {
        let table = [
            ("$all", "a system stream"),
            ("incident-", "no id after the prefix"),
            ("incident-42", "the id is not a UUID"),
            (
                "vehicle-6f1c7f5e-5a8e-4a53-9a0c-2f7b5e1f6d10",
                "an unknown prefix",
            ),
            ("road-closure-7", "a closure id that is not a UUID"),
            (
                "$idempotency-6f1c7f5e-5a8e-4a53-9a0c-2f7b5e1f6d10",
                "a command record",
            ),
        ];
        for (name, why) in table {
            let stream = StreamName::parse(name).unwrap();
            assert_eq!(AggregateRef::from_stream(&stream), None, "{name}: {why}");
        }
    }

    #[test]
    fn bad_ids_are_refused() {
        let table = [
            ("", "empty"),
            ("42", "a number, not a UUID"),
            ("6f1c7f5e-5a8e-4a53-9a0c-2f7b5e1f6d1", "one hex digit short"),
            (
                "6f1c7f5e-5a8e-4a53-9a0c-2f7b5e1f6d1g",
                "a letter that is not hex",
            ),
        ];
        for (input, why) in table {
            assert!(
                IncidentId::parse(input).is_err(),
                "{input:?} should be refused: {why}"
            );
        }
        assert!(IncidentId::parse(" 6f1c7f5e-5a8e-4a53-9a0c-2f7b5e1f6d10 ").is_ok());
    }
}
