//! Enrolling a crew's device: each token issued for a unit's phone is audited in the stream
//! `device-<unit id>` (who, for which unit, until when, and a fingerprint of the token, never
//! the token). Only a registered unit gets one ([`crate::combined::issue_device_token`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal};
use crate::ids::UnitId;

/// Longest validity of a device token, hours (a shift and a half).
pub const MAX_VALID_HOURS: u32 = 18;

/// What happened to a unit's device enrolment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DeviceEvent {
    /// A token was issued for the unit's device.
    DeviceTokenIssued {
        /// The unit.
        unit: UnitId,
        /// Who asked for it.
        issued_by: String,
        /// When it stops being accepted.
        expires_at: DateTime<Utc>,
        /// The first 16 hex digits of the token's SHA-256: names it without revealing it.
        fingerprint: String,
        /// When it was issued.
        at: DateTime<Utc>,
    },
}

/// What an operator asks of a unit's device enrolment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceCommand {
    /// Record a token issued for the unit's device.
    IssueToken {
        /// The unit.
        unit: UnitId,
        /// Who.
        issued_by: String,
        /// Until when.
        expires_at: DateTime<Utc>,
        /// The token's fingerprint.
        fingerprint: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// A unit's device enrolment: the tokens issued so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// How many tokens were issued.
    pub issued: u64,
    /// Until when the newest token is valid.
    pub newest_expires_at: Option<DateTime<Utc>>,
}

impl Aggregate for DeviceState {
    type Command = DeviceCommand;
    type Event = DeviceEvent;

    fn decide(&self, command: DeviceCommand) -> Result<Vec<DeviceEvent>, Refusal> {
        let DeviceCommand::IssueToken {
            unit,
            issued_by,
            expires_at,
            fingerprint,
            at,
        } = command;
        if expires_at <= at || expires_at > at + chrono::Duration::hours(MAX_VALID_HOURS.into()) {
            return Err(Refusal::invalid(format!(
                "a device token must be valid for up to {MAX_VALID_HOURS} hours from its issue"
            )));
        }
        if fingerprint.len() != 16 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Refusal::invalid(
                "a token's fingerprint is 16 hex digits of its SHA-256",
            ));
        }
        Ok(vec![DeviceEvent::DeviceTokenIssued {
            unit,
            issued_by,
            expires_at,
            fingerprint,
            at,
        }])
    }

    fn apply(&mut self, event: &DeviceEvent) {
        let DeviceEvent::DeviceTokenIssued { expires_at, .. } = event;
        self.issued += 1;
        self.newest_expires_at = Some(*expires_at);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;
    use crate::RefusalKind;

    fn issue(hours: i64, fingerprint: &str) -> DeviceCommand {
        let at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        DeviceCommand::IssueToken {
            unit: UnitId::from_uuid(Uuid::from_u128(2)),
            issued_by: "op".into(),
            expires_at: at + Duration::hours(hours),
            fingerprint: fingerprint.into(),
            at,
        }
    }

    #[test]
    fn tokens_are_counted() {
        let (once, _) = DeviceState::default()
            .execute(issue(12, "0123456789abcdef"))
            .unwrap();
        let (twice, _) = once.execute(issue(18, "0123456789abcdef")).unwrap();
        assert_eq!(twice.issued, 2);
        assert_eq!(
            twice.newest_expires_at,
            Some(Utc.timestamp_opt(1_790_000_000 + 18 * 3600, 0).unwrap())
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let table = [
            (issue(0, "0123456789abcdef"), "expires when issued"),
            (
                issue(19, "0123456789abcdef"),
                "longer than a shift and a half",
            ),
            (issue(12, "0123456789abcde"), "fingerprint one digit short"),
            (issue(12, "0123456789abcdeg"), "fingerprint not hex"),
        ];
        for (command, why) in table {
            let refused = DeviceState::default().decide(command).unwrap_err();
            assert_eq!(refused.kind, RefusalKind::Invalid, "{why}");
        }
    }
}
