//! Enrolling a crew's device: each token issued for a unit's phone is audited in the stream
//! `device-<unit id>` (who, for which unit, until when, its id and a fingerprint of the token,
//! never the token). Only a registered unit gets one ([`crate::combined::issue_device_token`]).
//!
//! A token is revoked by its id, or all of a unit's live tokens at once: one
//! `DeviceTokenRevoked` event per token, in the same stream, so that every gateway following
//! the log closes the sessions opened with it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decision::{Aggregate, Refusal, RefusalKind};
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
        /// The token's id, written in the token; tokens issued before tokens had ids have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_id: Option<Uuid>,
        /// When it was issued.
        at: DateTime<Utc>,
    },
    /// A token was revoked: the gateway refuses it from now on and closes its sessions.
    DeviceTokenRevoked {
        /// The unit.
        unit: UnitId,
        /// The token.
        token_id: Uuid,
        /// Who revoked it.
        revoked_by: String,
        /// Why, when the operator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Longest reason for a revocation, in characters.
pub const MAX_REASON_CHARS: usize = 500;

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
        /// The token's id.
        token_id: Uuid,
        /// When.
        at: DateTime<Utc>,
    },
    /// Revoke one token of the unit, or every token of the unit still valid at `at`.
    RevokeTokens {
        /// The unit.
        unit: UnitId,
        /// The token; `None` for all of the unit's live tokens.
        token_id: Option<Uuid>,
        /// Who.
        revoked_by: String,
        /// Why.
        reason: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
}

impl DeviceCommand {
    /// The unit the command is about.
    pub fn unit(&self) -> UnitId {
        match self {
            Self::IssueToken { unit, .. } | Self::RevokeTokens { unit, .. } => *unit,
        }
    }
}

/// A token issued for a unit's device, as the log tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// Its id (`None` for tokens issued before tokens had ids).
    pub token_id: Option<Uuid>,
    /// The first 16 hex digits of its SHA-256.
    pub fingerprint: String,
    /// Who asked for it.
    pub issued_by: String,
    /// When.
    pub issued_at: DateTime<Utc>,
    /// Until when.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A unit's device enrolment: the tokens issued so far, and which were revoked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceState {
    /// How many tokens were issued.
    pub issued: u64,
    /// Until when the newest token is valid.
    pub newest_expires_at: Option<DateTime<Utc>>,
    /// Every token issued, oldest first.
    pub tokens: Vec<IssuedToken>,
}

impl DeviceState {
    /// Whether the token with this id was revoked.
    pub fn is_revoked(&self, token_id: Uuid) -> bool {
        self.tokens
            .iter()
            .any(|t| t.token_id == Some(token_id) && t.revoked_at.is_some())
    }
}

impl Aggregate for DeviceState {
    type Command = DeviceCommand;
    type Event = DeviceEvent;

    fn decide(&self, command: DeviceCommand) -> Result<Vec<DeviceEvent>, Refusal> {
        let (unit, issued_by, expires_at, fingerprint, token_id, at) = match command {
            DeviceCommand::IssueToken {
                unit,
                issued_by,
                expires_at,
                fingerprint,
                token_id,
                at,
            } => (unit, issued_by, expires_at, fingerprint, token_id, at),
            DeviceCommand::RevokeTokens {
                unit,
                token_id,
                revoked_by,
                reason,
                at,
            } => return self.revoke(unit, token_id, revoked_by, reason, at),
        };
        if self.tokens.iter().any(|t| t.token_id == Some(token_id)) {
            return Err(Refusal::new(
                RefusalKind::AlreadyExists,
                format!("a token with id {token_id} was issued already"),
            ));
        }
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
            token_id: Some(token_id),
            at,
        }])
    }

    fn apply(&mut self, event: &DeviceEvent) {
        match event {
            DeviceEvent::DeviceTokenIssued {
                issued_by,
                expires_at,
                fingerprint,
                token_id,
                at,
                ..
            } => {
                self.issued += 1;
                self.newest_expires_at = Some(*expires_at);
                self.tokens.push(IssuedToken {
                    token_id: *token_id,
                    fingerprint: fingerprint.clone(),
                    issued_by: issued_by.clone(),
                    issued_at: *at,
                    expires_at: *expires_at,
                    revoked_at: None,
                });
            }
            DeviceEvent::DeviceTokenRevoked { token_id, at, .. } => {
                if let Some(t) = self
                    .tokens
                    .iter_mut()
                    .find(|t| t.token_id == Some(*token_id) && t.revoked_at.is_none())
                {
                    t.revoked_at = Some(*at);
                }
            }
        }
    }
}

impl DeviceState {
    /// One token by its id (it must have been issued for this unit; revoking it again is
    /// nothing new), or every token still valid at `at` and not revoked yet.
    fn revoke(
        &self,
        unit: UnitId,
        token_id: Option<Uuid>,
        revoked_by: String,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeviceEvent>, Refusal> {
        if let Some(r) = &reason
            && (r.trim().is_empty() || r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(Refusal::invalid(format!(
                "a revocation's reason has 1 to {MAX_REASON_CHARS} characters"
            )));
        }
        let ids: Vec<Uuid> = match token_id {
            Some(id) => {
                let Some(token) = self.tokens.iter().find(|t| t.token_id == Some(id)) else {
                    return Err(Refusal::not_found(format!(
                        "no device token {id} was issued for unit {unit}"
                    )));
                };
                if token.revoked_at.is_some() {
                    Vec::new()
                } else {
                    vec![id]
                }
            }
            None => self
                .tokens
                .iter()
                .filter(|t| t.revoked_at.is_none() && t.expires_at > at)
                .filter_map(|t| t.token_id)
                .collect(),
        };
        Ok(ids
            .into_iter()
            .map(|token_id| DeviceEvent::DeviceTokenRevoked {
                unit,
                token_id,
                revoked_by: revoked_by.clone(),
                reason: reason.clone(),
                at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;

    fn issue(hours: i64, fingerprint: &str) -> DeviceCommand {
        issue_id(hours, fingerprint, Uuid::new_v4())
    }

    fn issue_id(hours: i64, fingerprint: &str, token_id: Uuid) -> DeviceCommand {
        let at = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
        DeviceCommand::IssueToken {
            unit: UnitId::from_uuid(Uuid::from_u128(2)),
            issued_by: "op".into(),
            expires_at: at + Duration::hours(hours),
            fingerprint: fingerprint.into(),
            token_id,
            at,
        }
    }

    fn revoke(token_id: Option<Uuid>, after_hours: i64) -> DeviceCommand {
        DeviceCommand::RevokeTokens {
            unit: UnitId::from_uuid(Uuid::from_u128(2)),
            token_id,
            revoked_by: "op".into(),
            reason: Some("phone lost".into()),
            at: Utc.timestamp_opt(1_790_000_000, 0).unwrap() + Duration::hours(after_hours),
        }
    }

    fn revoked_ids(events: &[DeviceEvent]) -> Vec<Uuid> {
        events
            .iter()
            .map(|e| match e {
                DeviceEvent::DeviceTokenRevoked { token_id, .. } => *token_id,
                other => panic!("not a revocation: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_token_or_all_live_tokens_are_revoked_once() {
        let (a, b, c) = (
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
        );
        let (state, _) = DeviceState::default()
            .execute(issue_id(1, "0123456789abcdef", a))
            .unwrap();
        let (state, _) = state.execute(issue_id(12, "0123456789abcdef", b)).unwrap();
        let (state, _) = state.execute(issue_id(12, "0123456789abcdef", c)).unwrap();

        let (state, events) = state.execute(revoke(Some(b), 0)).unwrap();
        assert_eq!(revoked_ids(&events), vec![b]);
        assert!(state.is_revoked(b) && !state.is_revoked(a) && !state.is_revoked(c));
        // Again: nothing new.
        assert!(state.decide(revoke(Some(b), 0)).unwrap().is_empty());
        // All, two hours later: `a` expired already, `b` was revoked; only `c` is left.
        let (state, events) = state.execute(revoke(None, 2)).unwrap();
        assert_eq!(revoked_ids(&events), vec![c]);
        assert!(state.is_revoked(c));
        assert!(state.decide(revoke(None, 2)).unwrap().is_empty());

        let stranger = state
            .decide(revoke(Some(Uuid::from_u128(99)), 0))
            .unwrap_err();
        assert_eq!(stranger.kind, RefusalKind::NotFound);
        let again = state
            .decide(issue_id(1, "0123456789abcdef", a))
            .unwrap_err();
        assert_eq!(again.kind, RefusalKind::AlreadyExists);
        let mut blank = revoke(Some(c), 0);
        if let DeviceCommand::RevokeTokens { reason, .. } = &mut blank {
            *reason = Some("  ".into());
        }
        assert_eq!(state.decide(blank).unwrap_err().kind, RefusalKind::Invalid);
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
