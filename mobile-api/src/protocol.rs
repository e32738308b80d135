//! Protocol v1 between a responder's device and the gateway: JSON text frames over one
//! websocket, every message an object with a `type`. `PROTOCOL.md` in this crate documents
//! each message with an example; the tests below parse those examples.
//!
//! Incoming frames are parsed in two steps ([`parse_client_message`]): first the envelope
//! (`type`, and `key` when there is one) so that an error can name the command it is about,
//! then the whole message into domain types, so handlers never see raw strings.

use chrono::{DateTime, Utc};
use muster_core::unit::UnitStatus;
use muster_core::value::{IdempotencyKey, IncidentType, LatLon, Priority};
use muster_core::{IncidentId, TaskId, UnitId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The protocol version this build speaks. A `hello` with another `v` is refused with
/// [`ErrorCode::UnsupportedVersion`] and close code [`close::UNSUPPORTED_VERSION`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Close codes the gateway uses, with the reason text in the close frame.
pub mod close {
    /// The gateway is shutting down; reconnect (to another node).
    pub const GOING_AWAY: u16 = 1001;
    /// A policy violation: no `hello` in time, or too many messages over the rate limit.
    pub const POLICY: u16 = 1008;
    /// A frame or message over [`crate::limits::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// The gateway failed (the store is unavailable); reconnect later.
    pub const INTERNAL: u16 = 1011;
    /// The device read too slowly and its queue filled up; reconnect and resume.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The first message was not a valid `hello`.
    pub const HELLO_EXPECTED: u16 = 4000;
    /// The `hello` asked for a protocol version this gateway does not speak.
    pub const UNSUPPORTED_VERSION: u16 = 4001;
    /// The token is malformed, forged, expired, or not for the unit named.
    pub const AUTH_FAILED: u16 = 4003;
}

/// A message from the device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// The first message on every connection.
    Hello {
        /// The protocol version the device speaks.
        v: u32,
        /// The responder's token, bound to one unit.
        token: String,
        /// The unit the device acts for; must be the token's unit when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<UnitId>,
        /// The last sequence number the device saw; absent on a first connection (the
        /// gateway then answers with a `resync`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_after: Option<u64>,
    },
    /// The device received everything up to `seq`.
    Ack {
        /// The sequence number.
        seq: u64,
    },
    /// The crew acknowledges its task.
    AcknowledgeTask {
        /// Idempotency key.
        key: IdempotencyKey,
        /// The task.
        task: TaskId,
        /// When, on the device.
        at: DateTime<Utc>,
    },
    /// The crew declines its task (only before moving).
    DeclineTask {
        /// Idempotency key.
        key: IdempotencyKey,
        /// The task.
        task: TaskId,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When, on the device.
        at: DateTime<Utc>,
    },
    /// The crew completes (clears) its task.
    CompleteTask {
        /// Idempotency key.
        key: IdempotencyKey,
        /// The task.
        task: TaskId,
        /// When, on the device.
        at: DateTime<Utc>,
    },
    /// A status change.
    Status {
        /// Idempotency key.
        key: IdempotencyKey,
        /// The new status.
        status: UnitStatus,
        /// When, on the device.
        at: DateTime<Utc>,
    },
    /// A position fix.
    Position {
        /// Idempotency key.
        key: IdempotencyKey,
        /// Where (`{"lat": .., "lon": ..}`, degrees).
        position: LatLon,
        /// Heading, degrees clockwise from north, [0, 360).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heading_deg: Option<f64>,
        /// Speed over ground.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speed_m_s: Option<f64>,
        /// Accuracy radius.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        accuracy_m: Option<f64>,
        /// When the fix was taken.
        at: DateTime<Utc>,
    },
    /// A new incident seen in the field.
    FieldIncident {
        /// Idempotency key; the incident's id is derived from it.
        key: IdempotencyKey,
        /// Where.
        location: LatLon,
        /// What.
        incident_type: IncidentType,
        /// How urgent.
        priority: Priority,
        /// When it was seen.
        at: DateTime<Utc>,
    },
    /// Application-level heartbeat; answered with `pong`.
    Ping {
        /// Echoed back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientMessage {
    /// The idempotency key of a command.
    pub fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            Self::AcknowledgeTask { key, .. }
            | Self::DeclineTask { key, .. }
            | Self::CompleteTask { key, .. }
            | Self::Status { key, .. }
            | Self::Position { key, .. }
            | Self::FieldIncident { key, .. } => Some(key),
            Self::Hello { .. } | Self::Ack { .. } | Self::Ping { .. } => None,
        }
    }

    /// The message as one JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The message types a device may send, for error messages.
pub const CLIENT_MESSAGE_TYPES: &[&str] = &[
    "hello",
    "ack",
    "acknowledge_task",
    "decline_task",
    "complete_task",
    "status",
    "position",
    "field_incident",
    "ping",
];

/// A task as the device sees it. `Debug` masks the call-back number.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// The task.
    pub task: TaskId,
    /// Its incident.
    pub incident: IncidentId,
    /// When it was assigned.
    pub assigned_at: DateTime<Utc>,
    /// What the incident is, when the incident is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_type: Option<IncidentType>,
    /// How urgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Where to go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LatLon>,
    /// The caller's call-back number (personal data; never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_back: Option<String>,
}

impl std::fmt::Debug for TaskView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskView")
            .field("task", &self.task)
            .field("incident", &self.incident)
            .field("assigned_at", &self.assigned_at)
            .field("incident_type", &self.incident_type)
            .field("priority", &self.priority)
            .field("location", &self.location)
            .field("call_back", &self.call_back.as_ref().map(|_| "<masked>"))
            .finish()
    }
}

/// What happened to a task after it was assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// The crew acknowledged it.
    Acknowledged,
    /// The crew declined it.
    Declined,
    /// It ended (cleared or stood down).
    Completed,
}

/// The unit as it is now, sent in a `resync`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The unit's status; absent when the unit is not registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<UnitStatus>,
    /// Its active task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_task: Option<TaskView>,
    /// Whether the crew acknowledged the active task.
    #[serde(default)]
    pub acknowledged: bool,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its events were appended now.
    Applied,
    /// A command with this key was applied before; nothing was appended this time.
    Duplicate,
    /// The command changes nothing (a repeated acknowledgement).
    Unchanged,
}

/// Why the gateway refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not an object with a string `type`.
    Malformed,
    /// The `type` is not one of protocol v1's.
    UnknownType,
    /// A known type with missing, extra or invalid fields.
    InvalidMessage,
    /// The `hello` asked for another protocol version.
    UnsupportedVersion,
    /// The first message must be `hello`; or `hello` was sent twice.
    HelloExpected,
    /// The token is malformed, forged or expired.
    AuthFailed,
    /// The token is valid but not for the unit named.
    Forbidden,
    /// The domain refused the command (see the message); do not retry as is.
    Refused,
    /// The command conflicts with a concurrent change; retry with the same key.
    Conflict,
    /// Too many messages; the message was dropped. Retry after `retry_after_ms`.
    RateLimited,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// The gateway failed; retry with the same key later.
    Internal,
}

impl ErrorCode {
    /// Whether a command refused with this code may succeed when retried as is.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Conflict | Self::RateLimited | Self::Internal)
    }
}

/// A message from the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The `hello` was accepted.
    Welcome {
        /// The protocol version.
        v: u32,
        /// The unit this connection acts for.
        unit: UnitId,
        /// This connection's id (for support logs).
        session: Uuid,
        /// Seconds between the gateway's pings; it drops a connection silent for longer
        /// than [`crate::limits::IDLE_TIMEOUT`].
        heartbeat_secs: u64,
        /// Largest message accepted, in bytes.
        max_message_bytes: usize,
    },
    /// A task for the unit.
    Task {
        /// Sequence number: the unit stream revision of the assignment.
        seq: u64,
        /// The task.
        #[serde(flatten)]
        task: TaskView,
    },
    /// A task's state changed.
    TaskUpdate {
        /// Sequence number.
        seq: u64,
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// What happened.
        state: TaskState,
        /// When.
        at: DateTime<Utc>,
    },
    /// The position the device asked to resume from is not available (or it gave none):
    /// here is the unit as it is now; continue from `seq`.
    Resync {
        /// The sequence number the snapshot is at.
        seq: u64,
        /// The unit now.
        snapshot: Snapshot,
    },
    /// A command was carried out.
    Done {
        /// The command's key.
        key: IdempotencyKey,
        /// How.
        outcome: Outcome,
        /// For a field incident: the incident's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident: Option<IncidentId>,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's nonce.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
    /// Something was refused.
    Error {
        /// Why, for programs.
        code: ErrorCode,
        /// Why, in words.
        message: String,
        /// The key of the command refused, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// For `rate_limited`: when to try again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerMessage {
    /// The incident whose call-back number this message discloses, if it does (a task, or a
    /// resync's active task): such a disclosure is recorded in the audit trail first.
    pub fn discloses_call_back(&self) -> Option<IncidentId> {
        let task = match self {
            Self::Task { task, .. } => Some(task),
            Self::Resync { snapshot, .. } => snapshot.active_task.as_ref(),
            _ => None,
        }?;
        task.call_back.is_some().then_some(task.incident)
    }

    /// An error without a key.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            key: None,
            retry_after_ms: None,
        }
    }

    /// An error about the command with this key.
    pub fn error_for(code: ErrorCode, message: impl Into<String>, key: Option<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            key,
            retry_after_ms: None,
        }
    }

    /// The sequence number of a delivery.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Task { seq, .. } | Self::TaskUpdate { seq, .. } | Self::Resync { seq, .. } => {
                Some(*seq)
            }
            _ => None,
        }
    }

    /// The message as one JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why an incoming text frame is not a message: the error to send back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The code.
    pub code: ErrorCode,
    /// What is wrong.
    pub message: String,
    /// The command's key, when the envelope had a string `key`.
    pub key: Option<String>,
}

impl ParseError {
    /// The error message for the device.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::error_for(self.code, self.message.clone(), self.key.clone())
    }
}

/// Parses one text frame from a device.
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
        code: ErrorCode::Malformed,
        message: format!("the frame is not valid JSON: {}", short(&e.to_string())),
        key: None,
    })?;
    let Some(object) = value.as_object() else {
        return Err(ParseError {
            code: ErrorCode::Malformed,
            message: "a message must be a JSON object".into(),
            key: None,
        });
    };
    let key = object
        .get("key")
        .and_then(|k| k.as_str())
        .map(|k| k.chars().take(128).collect::<String>());
    let Some(kind) = object
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Err(ParseError {
            code: ErrorCode::Malformed,
            message: "a message needs a string field \"type\"".into(),
            key,
        });
    };
    let kind = kind.as_str();
    if !CLIENT_MESSAGE_TYPES.contains(&kind) {
        return Err(ParseError {
            code: ErrorCode::UnknownType,
            message: format!(
                "message type {:?} is not part of protocol v{PROTOCOL_VERSION}; known: {}",
                short(kind),
                CLIENT_MESSAGE_TYPES.join(", ")
            ),
            key,
        });
    }
    let version = object.get("v").and_then(|v| v.as_u64());
    if kind == "hello"
        && let Some(v) = version
        && v != u64::from(PROTOCOL_VERSION)
    {
        return Err(ParseError {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "protocol version {v} is not supported; this gateway speaks version {PROTOCOL_VERSION}"
            ),
            key,
        });
    }
    serde_json::from_value(value).map_err(|e| ParseError {
        code: ErrorCode::InvalidMessage,
        message: format!("{kind}: {}", short(&e.to_string())),
        key,
    })
}

fn short(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn key(k: &str) -> IdempotencyKey {
        IdempotencyKey::try_from(k).unwrap()
    }

    fn task_id() -> TaskId {
        TaskId::parse("01930000-0000-7000-8000-000000000002").unwrap()
    }

    fn incident_id() -> IncidentId {
        IncidentId::parse("01930000-0000-7000-8000-000000000001").unwrap()
    }

    fn unit_id() -> UnitId {
        UnitId::parse("01930000-0000-7000-8000-0000000000aa").unwrap()
    }

    fn every_client_message() -> Vec<ClientMessage> {
        let at = t("2026-11-23T10:00:00Z");
        let here = LatLon::from_lat_lon(60.17, 24.94).unwrap();
        vec![
            ClientMessage::Hello {
                v: 1,
                token: "tok".into(),
                unit: Some(unit_id()),
                resume_after: Some(7),
            },
            ClientMessage::Hello {
                v: 1,
                token: "tok".into(),
                unit: None,
                resume_after: None,
            },
            ClientMessage::Ack { seq: 9 },
            ClientMessage::AcknowledgeTask {
                key: key("ack-0001"),
                task: task_id(),
                at,
            },
            ClientMessage::DeclineTask {
                key: key("dec-0001"),
                task: task_id(),
                reason: Some("flat tyre".into()),
                at,
            },
            ClientMessage::CompleteTask {
                key: key("cmp-0001"),
                task: task_id(),
                at,
            },
            ClientMessage::Status {
                key: key("sts-0001"),
                status: UnitStatus::EnRoute,
                at,
            },
            ClientMessage::Position {
                key: key("pos-0001"),
                position: here,
                heading_deg: Some(90.0),
                speed_m_s: Some(12.5),
                accuracy_m: None,
                at,
            },
            ClientMessage::FieldIncident {
                key: key("inc-0001"),
                location: here,
                incident_type: IncidentType::Medical,
                priority: Priority::P2,
                at,
            },
            ClientMessage::Ping { nonce: Some(3) },
        ]
    }

    fn every_server_message() -> Vec<ServerMessage> {
        let at = t("2026-11-23T10:00:00Z");
        let view = TaskView {
            task: task_id(),
            incident: incident_id(),
            assigned_at: at,
            incident_type: Some(IncidentType::StructureFire),
            priority: Some(Priority::P1),
            location: Some(LatLon::from_lat_lon(60.17, 24.94).unwrap()),
            call_back: None,
        };
        vec![
            ServerMessage::Welcome {
                v: 1,
                unit: unit_id(),
                session: Uuid::from_u128(5),
                heartbeat_secs: 10,
                max_message_bytes: 65536,
            },
            ServerMessage::Task {
                seq: 12,
                task: view.clone(),
            },
            ServerMessage::TaskUpdate {
                seq: 13,
                task: task_id(),
                incident: incident_id(),
                state: TaskState::Acknowledged,
                at,
            },
            ServerMessage::Resync {
                seq: 14,
                snapshot: Snapshot {
                    status: Some(UnitStatus::Dispatched),
                    active_task: Some(view),
                    acknowledged: false,
                },
            },
            ServerMessage::Done {
                key: key("inc-0001"),
                outcome: Outcome::Applied,
                incident: Some(incident_id()),
            },
            ServerMessage::Pong { nonce: None },
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
                key: Some("pos-0001".into()),
                retry_after_ms: Some(250),
            },
        ]
    }

    #[test]
    fn debug_masks_the_call_back_number() {
        let view = TaskView {
            task: task_id(),
            incident: incident_id(),
            assigned_at: t("2026-11-23T10:00:00Z"),
            incident_type: None,
            priority: None,
            location: None,
            call_back: Some("+358401234567".into()),
        };
        let shown = format!("{view:?}");
        assert!(!shown.contains("358401234567"), "{shown}");
        assert!(shown.contains("masked"));
    }

    #[test]
    fn every_message_round_trips() {
        for m in every_client_message() {
            let json = m.to_json();
            assert_eq!(parse_client_message(&json), Ok(m.clone()), "{json}");
        }
        for m in every_server_message() {
            let json = m.to_json();
            let back: ServerMessage = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m, "{json}");
        }
    }

    /// Every `json` block of PROTOCOL.md that follows a "device ->" or "gateway ->" line
    /// parses as the message type it documents.
    #[test]
    fn documented_examples_parse() {
        let doc = include_str!("../PROTOCOL.md");
        let mut client = 0;
        let mut server = 0;
        let mut direction = None;
        let mut lines = doc.lines();
        while let Some(line) = lines.next() {
            if line.starts_with("device ->") {
                direction = Some(true);
            } else if line.starts_with("gateway ->") {
                direction = Some(false);
            } else if line.trim() == "```json" {
                let block: String = lines
                    .by_ref()
                    .take_while(|l| l.trim() != "```")
                    .collect::<Vec<_>>()
                    .join("\n");
                match direction.take() {
                    Some(true) => {
                        parse_client_message(&block).unwrap_or_else(|e| panic!("{block}\n{e:?}"));
                        client += 1;
                    }
                    Some(false) => {
                        serde_json::from_str::<ServerMessage>(&block)
                            .unwrap_or_else(|e| panic!("{block}\n{e}"));
                        server += 1;
                    }
                    None => panic!("a json block without a direction line: {block}"),
                }
            }
        }
        assert!(
            client >= CLIENT_MESSAGE_TYPES.len(),
            "{client} device examples"
        );
        assert!(server >= 7, "{server} gateway examples");
    }

    #[test]
    fn bad_frames_say_why() {
        let cases: &[(&str, ErrorCode, &str)] = &[
            ("not json", ErrorCode::Malformed, "not JSON at all"),
            ("[1,2]", ErrorCode::Malformed, "an array, not an object"),
            ("{\"v\":1}", ErrorCode::Malformed, "no type"),
            ("{\"type\":7}", ErrorCode::Malformed, "type is not a string"),
            (
                "{\"type\":\"teleport\"}",
                ErrorCode::UnknownType,
                "unknown type",
            ),
            (
                "{\"type\":\"hello\",\"v\":2,\"token\":\"x\"}",
                ErrorCode::UnsupportedVersion,
                "a future version",
            ),
            (
                "{\"type\":\"hello\",\"v\":1}",
                ErrorCode::InvalidMessage,
                "no token",
            ),
            (
                "{\"type\":\"ack\",\"seq\":-1}",
                ErrorCode::InvalidMessage,
                "negative sequence",
            ),
            (
                "{\"type\":\"ack\",\"seq\":1,\"extra\":true}",
                ErrorCode::InvalidMessage,
                "unknown field",
            ),
            (
                "{\"type\":\"status\",\"key\":\"k\",\"status\":\"en_route\",\"at\":\"2026-11-23T10:00:00Z\"}",
                ErrorCode::InvalidMessage,
                "key too short",
            ),
            (
                "{\"type\":\"status\",\"key\":\"sts-00001\",\"status\":\"flying\",\"at\":\"2026-11-23T10:00:00Z\"}",
                ErrorCode::InvalidMessage,
                "unknown status",
            ),
            (
                "{\"type\":\"position\",\"key\":\"pos-00001\",\"position\":{\"lat\":91,\"lon\":0},\"at\":\"2026-11-23T10:00:00Z\"}",
                ErrorCode::InvalidMessage,
                "latitude out of range",
            ),
        ];
        for (frame, code, why) in cases {
            let e = parse_client_message(frame).expect_err(why);
            assert_eq!(e.code, *code, "{why}: {}", e.message);
            assert!(!e.message.is_empty(), "{why}");
        }
        let e = parse_client_message(
            "{\"type\":\"status\",\"key\":\"sts-00001\",\"status\":\"flying\",\"at\":\"x\"}",
        )
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("sts-00001"),
            "errors name the command's key"
        );
    }
}
