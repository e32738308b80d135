//! API tokens for machines (a computer-aided dispatch bridge, a reporting job): created and
//! revoked by an administrator, each with a name, a role, an optional agency and an expiry.
//! They live in one stream, `api-tokens`, so every node that reads the log knows every token
//! and every revocation.
//!
//! The log holds a token's SHA-256 digest, never the token: a token is 256 random bits, so
//! its digest cannot be turned back into it by guessing, and a fast hash is the right one for
//! a secret of that strength (a slow password hash is for secrets people choose).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::ids::UnitId;
use crate::value::Agency;

/// Longest validity of an API token, days.
pub const MAX_VALID_DAYS: u32 = 366;

/// Longest name of an API token, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Longest reason for a revocation, characters.
pub const MAX_REASON_CHARS: usize = 500;

/// What happened to the API tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ApiTokenEvent {
    /// A token was created.
    ApiTokenCreated {
        /// Its id: names it in the audit trail (`api-token:<id>`) and when it is revoked.
        token_id: Uuid,
        /// The machine's name, recorded as the actor of its commands.
        name: String,
        /// Its role (`operator`, `responder`, `planner`, `admin`).
        role: String,
        /// The agency it acts for, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agency: Option<Agency>,
        /// For a responder's token: the unit it acts for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<UnitId>,
        /// The SHA-256 of the token, 64 hex digits.
        digest: String,
        /// When it stops being accepted.
        expires_at: DateTime<Utc>,
        /// Who created it.
        created_by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A token was revoked: refused from now on.
    ApiTokenRevoked {
        /// The token.
        token_id: Uuid,
        /// Who revoked it.
        revoked_by: String,
        /// Why, when the administrator said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an administrator asks of the API tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTokenCommand {
    /// Record a new token.
    Create {
        /// Its id.
        token_id: Uuid,
        /// The machine's name.
        name: String,
        /// Its role.
        role: String,
        /// Its agency.
        agency: Option<Agency>,
        /// A responder token's unit.
        unit: Option<UnitId>,
        /// The token's SHA-256, hex.
        digest: String,
        /// Until when.
        expires_at: DateTime<Utc>,
        /// Who.
        created_by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Revoke a token.
    Revoke {
        /// The token.
        token_id: Uuid,
        /// Who.
        revoked_by: String,
        /// Why.
        reason: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
}

/// One API token as the log tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub token_id: Uuid,
    /// The machine's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its agency.
    pub agency: Option<Agency>,
    /// A responder token's unit.
    pub unit: Option<UnitId>,
    /// The token's SHA-256, hex.
    pub digest: String,
    /// Until when it is accepted.
    pub expires_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, and by whom.
    pub revoked: Option<(DateTime<Utc>, String)>,
}

impl ApiToken {
    /// Whether it is accepted at `now`: not revoked, not expired.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && now < self.expires_at
    }
}

/// Every API token: the state of the stream `api-tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiTokens {
    /// The tokens, oldest first.
    tokens: Vec<ApiToken>,
    /// Index of each token by its digest.
    by_digest: HashMap<String, usize>,
    /// Index of each token by its id.
    by_id: HashMap<Uuid, usize>,
}

impl ApiTokens {
    /// Every token, oldest first.
    pub fn all(&self) -> &[ApiToken] {
        &self.tokens
    }

    /// The token with this SHA-256 digest (hex), valid or not.
    pub fn by_digest(&self, digest: &str) -> Option<&ApiToken> {
        self.by_digest.get(digest).map(|&i| &self.tokens[i])
    }

    /// The token with this id.
    pub fn get(&self, token_id: Uuid) -> Option<&ApiToken> {
        self.by_id.get(&token_id).map(|&i| &self.tokens[i])
    }
}

/// Whether `name` may name an API token: 1 to [`MAX_NAME_CHARS`] characters, ASCII letters,
/// digits, `.`, `_` and `-`.
fn check_name(name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::invalid(format!(
            "an API token's name has 1 to {MAX_NAME_CHARS} characters: letters, digits, '.', '_' and '-'"
        )))
    }
}

impl Aggregate for ApiTokens {
    type Command = ApiTokenCommand;
    type Event = ApiTokenEvent;

    fn decide(&self, command: ApiTokenCommand) -> Result<Vec<ApiTokenEvent>, Refusal> {
        match command {
            ApiTokenCommand::Create {
                token_id,
                name,
                role,
                agency,
                unit,
                digest,
                expires_at,
                created_by,
                at,
            } => {
                check_name(&name)?;
                if self.by_id.contains_key(&token_id) {
                    return Err(Refusal::new(
                        RefusalKind::AlreadyExists,
                        format!("an API token with id {token_id} exists already"),
                    ));
                }
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Refusal::invalid(
                        "an API token's digest is the 64 hex digits of its SHA-256",
                    ));
                }
                if self.by_digest.contains_key(&digest) {
                    return Err(Refusal::new(
                        RefusalKind::AlreadyExists,
                        "an API token with this digest exists already",
                    ));
                }
                if expires_at <= at
                    || expires_at > at + chrono::Duration::days(MAX_VALID_DAYS.into())
                {
                    return Err(Refusal::invalid(format!(
                        "an API token expires after its creation and within {MAX_VALID_DAYS} days of it"
                    )));
                }
                if unit.is_some() && role != "responder" {
                    return Err(Refusal::invalid(
                        "only a responder's API token acts for a unit",
                    ));
                }
                Ok(vec![ApiTokenEvent::ApiTokenCreated {
                    token_id,
                    name,
                    role,
                    agency,
                    unit,
                    digest,
                    expires_at,
                    created_by,
                    at,
                }])
            }
            ApiTokenCommand::Revoke {
                token_id,
                revoked_by,
                reason,
                at,
            } => {
                if let Some(r) = &reason
                    && (r.trim().is_empty() || r.chars().count() > MAX_REASON_CHARS)
                {
                    return Err(Refusal::invalid(format!(
                        "a revocation's reason has 1 to {MAX_REASON_CHARS} characters"
                    )));
                }
                let Some(token) = self.get(token_id) else {
                    return Err(Refusal::not_found(format!(
                        "there is no API token {token_id}"
                    )));
                };
                if token.revoked.is_some() {
                    return Ok(Vec::new());
                }
                Ok(vec![ApiTokenEvent::ApiTokenRevoked {
                    token_id,
                    revoked_by,
                    reason,
                    at,
                }])
            }
        }
    }

    fn apply(&mut self, event: &ApiTokenEvent) {
        match event {
            ApiTokenEvent::ApiTokenCreated {
                token_id,
                name,
                role,
                agency,
                unit,
                digest,
                expires_at,
                created_by,
                at,
            } => {
                if self.by_id.contains_key(token_id) || self.by_digest.contains_key(digest) {
                    return;
                }
                let i = self.tokens.len();
                self.tokens.push(ApiToken {
                    token_id: *token_id,
                    name: name.clone(),
                    role: role.clone(),
                    agency: agency.clone(),
                    unit: *unit,
                    digest: digest.clone(),
                    expires_at: *expires_at,
                    created_by: created_by.clone(),
                    created_at: *at,
                    revoked: None,
                });
                self.by_id.insert(*token_id, i);
                self.by_digest.insert(digest.clone(), i);
            }
            ApiTokenEvent::ApiTokenRevoked {
                token_id,
                revoked_by,
                at,
                ..
            } => {
                if let Some(&i) = self.by_id.get(token_id)
                    && self.tokens[i].revoked.is_none()
                {
                    self.tokens[i].revoked = Some((*at, revoked_by.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000, 0).unwrap()
    }

    fn create(id: u128, digest: &str, days: i64) -> ApiTokenCommand {
        ApiTokenCommand::Create {
            token_id: Uuid::from_u128(id),
            name: "cad-bridge".into(),
            role: "operator".into(),
            agency: Some(Agency::parse("city-fire").unwrap()),
            unit: None,
            digest: digest.into(),
            expires_at: at() + Duration::days(days),
            created_by: "admin".into(),
            at: at(),
        }
    }

    fn revoke(id: u128) -> ApiTokenCommand {
        ApiTokenCommand::Revoke {
            token_id: Uuid::from_u128(id),
            revoked_by: "admin".into(),
            reason: Some("rotated".into()),
            at: at() + Duration::hours(1),
        }
    }

    const DIGEST_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const DIGEST_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn a_token_is_found_by_its_digest_until_it_is_revoked_or_expires() {
        let (state, _) = ApiTokens::default()
            .execute(create(1, DIGEST_A, 30))
            .unwrap();
        let token = state.by_digest(DIGEST_A).unwrap();
        assert_eq!(token.token_id, Uuid::from_u128(1));
        assert!(token.is_valid_at(at()));
        assert!(!token.is_valid_at(at() + Duration::days(30)));
        assert!(state.by_digest(DIGEST_B).is_none());

        let (state, events) = state.execute(revoke(1)).unwrap();
        assert_eq!(events.len(), 1);
        assert!(!state.by_digest(DIGEST_A).unwrap().is_valid_at(at()));
        // Again: nothing new.
        assert!(state.decide(revoke(1)).unwrap().is_empty());
        assert_eq!(
            state.decide(revoke(2)).unwrap_err().kind,
            RefusalKind::NotFound
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let (given, _) = ApiTokens::default()
            .execute(create(1, DIGEST_A, 30))
            .unwrap();
        let named = |name: &str| {
            let mut c = create(9, DIGEST_B, 30);
            if let ApiTokenCommand::Create { name: n, .. } = &mut c {
                *n = name.into();
            }
            c
        };
        let with_unit = {
            let mut c = create(9, DIGEST_B, 30);
            if let ApiTokenCommand::Create { unit, .. } = &mut c {
                *unit = Some(UnitId::from_uuid(Uuid::from_u128(5)));
            }
            c
        };
        let table = [
            (
                create(1, DIGEST_B, 30),
                RefusalKind::AlreadyExists,
                "id taken",
            ),
            (
                create(9, DIGEST_A, 30),
                RefusalKind::AlreadyExists,
                "digest taken",
            ),
            (
                create(9, &DIGEST_B[1..], 30),
                RefusalKind::Invalid,
                "digest short",
            ),
            (
                create(9, DIGEST_B, 0),
                RefusalKind::Invalid,
                "expires when created",
            ),
            (
                create(9, DIGEST_B, 367),
                RefusalKind::Invalid,
                "longer than a year",
            ),
            (named(""), RefusalKind::Invalid, "no name"),
            (
                named("cad bridge"),
                RefusalKind::Invalid,
                "a space in the name",
            ),
            (
                named(&"x".repeat(65)),
                RefusalKind::Invalid,
                "a name too long",
            ),
            (with_unit, RefusalKind::Invalid, "a unit for an operator"),
        ];
        for (command, kind, why) in table {
            assert_eq!(given.decide(command).unwrap_err().kind, kind, "{why}");
        }
    }
}
