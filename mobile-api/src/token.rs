//! Responder tokens: who may connect, and for which unit.
//!
//! The gateway asks a [`TokenVerifier`] for the unit a token is bound to. [`HmacTokens`] is
//! the built-in verifier: a token is `mt2.<unit id>.<token id>.<expiry, unix seconds>.<signature>`,
//! the signature an HMAC-SHA256 over everything before it, base64url without padding. Anyone
//! holding the secret can issue tokens; the gateway keeps no table of them. The token id, a
//! random UUID, makes every token distinct and names it when it is revoked: revocations are
//! events in the unit's `device-<unit id>` stream, which the gateway reads at `hello` and
//! follows while the session lasts.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use muster_core::UnitId;
use sha2::Sha256;
use uuid::Uuid;

/// Prefix (and version) of an HMAC token.
pub const TOKEN_PREFIX: &str = "mt2";

/// Prefix of the first version's tokens, which had no id.
const OLD_TOKEN_PREFIX: &str = "mt1";

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest token looked at, in bytes.
pub const MAX_TOKEN_BYTES: usize = 512;

/// Why a token was refused. Never echoes the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this kind.
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match: forged, altered, or signed with another secret.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// It was valid until `expired_at`.
    #[error("the token expired at {expired_at}")]
    Expired {
        /// When it expired.
        expired_at: DateTime<Utc>,
    },
}

/// A valid token: the unit it is bound to, its id, and when it stops being valid (a session
/// opened with it is closed then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The unit.
    pub unit: UnitId,
    /// The token's id, by which it is revoked.
    pub token_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// Tells which unit a token is for.
pub trait TokenVerifier: Send + Sync + 'static {
    /// The unit the token is bound to and its expiry, if the token is valid at `now`.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, TokenError>;
}

/// Issues and verifies HMAC-SHA256 signed tokens bound to a unit, with an expiry.
#[derive(Clone)]
pub struct HmacTokens {
    secret: Vec<u8>,
}

impl fmt::Debug for HmacTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacTokens { secret: <hidden> }")
    }
}

/// A secret that is too short to sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a token secret must have at least {MIN_SECRET_BYTES} bytes")]
pub struct WeakSecret;

impl HmacTokens {
    /// A verifier with this secret (at least [`MIN_SECRET_BYTES`] bytes).
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, WeakSecret> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret);
        }
        Ok(Self { secret })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    /// A token for `unit`, valid until `expires_at`, with a random id.
    pub fn issue(&self, unit: UnitId, expires_at: DateTime<Utc>) -> String {
        self.issue_with_id(unit, Uuid::new_v4(), expires_at)
    }

    /// A token for `unit` with this id, valid until `expires_at`.
    pub fn issue_with_id(&self, unit: UnitId, token_id: Uuid, expires_at: DateTime<Utc>) -> String {
        let body = format!(
            "{TOKEN_PREFIX}.{unit}.{}.{}",
            token_id.simple(),
            expires_at.timestamp()
        );
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{signature}")
    }
}

impl TokenVerifier for HmacTokens {
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed("it is too long"));
        }
        let (body, signature) = token
            .rsplit_once('.')
            .ok_or(TokenError::Malformed("it has no signature"))?;
        if body.starts_with(OLD_TOKEN_PREFIX) && body[OLD_TOKEN_PREFIX.len()..].starts_with('.') {
            return Err(TokenError::Malformed(
                "it is a version-1 token, which cannot be revoked: enrol the device again",
            ));
        }
        let mut parts = body.split('.');
        let (Some(prefix), Some(unit), Some(token_id), Some(expiry), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed("it does not have five parts"));
        };
        if prefix != TOKEN_PREFIX {
            return Err(TokenError::Malformed(
                "it is not a version-2 responder token",
            ));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed("its signature is not base64url"))?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let unit = UnitId::parse(unit).map_err(|_| TokenError::Malformed("bad unit id"))?;
        let token_id =
            Uuid::try_parse(token_id).map_err(|_| TokenError::Malformed("bad token id"))?;
        let expiry: i64 = expiry
            .parse()
            .map_err(|_| TokenError::Malformed("bad expiry"))?;
        let expired_at = DateTime::from_timestamp(expiry, 0)
            .ok_or(TokenError::Malformed("expiry out of range"))?;
        if now >= expired_at {
            return Err(TokenError::Expired { expired_at });
        }
        Ok(Verified {
            unit,
            token_id,
            expires_at: expired_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;

    fn tokens() -> HmacTokens {
        HmacTokens::new(vec![7u8; 32]).unwrap()
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let unit = UnitId::from_uuid(Uuid::from_u128(42));
        let now = Utc::now();
        let id = Uuid::from_u128(7);
        let token = tokens().issue_with_id(unit, id, now + Duration::minutes(5));
        let expires =
            DateTime::from_timestamp((now + Duration::minutes(5)).timestamp(), 0).unwrap();
        assert_eq!(
            tokens().verify(&token, now),
            Ok(Verified {
                unit,
                token_id: id,
                expires_at: expires
            })
        );
        // Two tokens for one unit in the same second differ, and name different ids.
        let (a, b) = (
            tokens().issue(unit, now + Duration::minutes(5)),
            tokens().issue(unit, now + Duration::minutes(5)),
        );
        assert_ne!(a, b);
        assert_ne!(
            tokens().verify(&a, now).unwrap().token_id,
            tokens().verify(&b, now).unwrap().token_id
        );
        assert!(matches!(
            tokens().verify(&token, now + Duration::minutes(5)),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let unit = UnitId::from_uuid(Uuid::from_u128(42));
        let now = Utc::now();
        let good = tokens().issue(unit, now + Duration::minutes(5));
        let other = HmacTokens::new(vec![8u8; 32])
            .unwrap()
            .issue(unit, now + Duration::minutes(5));
        let other_unit = good.replace(
            &unit.to_string(),
            &UnitId::from_uuid(Uuid::from_u128(43)).to_string(),
        );
        let later = {
            let (body, sig) = good.rsplit_once('.').unwrap();
            let (head, _) = body.rsplit_once('.').unwrap();
            format!("{head}.{}.{sig}", now.timestamp() + 999_999)
        };
        let other_id = {
            let id = tokens()
                .verify(&good, now)
                .unwrap()
                .token_id
                .simple()
                .to_string();
            good.replace(&id, &Uuid::from_u128(5).simple().to_string())
        };
        let version_one = {
            // The first version's shape, signed with the right secret.
            let body = format!("mt1.{unit}.{}", now.timestamp() + 300);
            let mut mac = tokens().mac();
            mac.update(body.as_bytes());
            format!(
                "{body}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        type Case<'a> = (&'a str, &'a str, fn(&TokenError) -> bool);
        let cases: &[Case<'_>] = &[
            ("", "empty", |e| matches!(e, TokenError::Malformed(_))),
            ("abc", "no dots", |e| matches!(e, TokenError::Malformed(_))),
            ("a.b.c.d.e", "too many parts", |e| {
                matches!(e, TokenError::Malformed(_))
            }),
            (&other, "signed with another secret", |e| {
                *e == TokenError::BadSignature
            }),
            (&other_unit, "unit swapped", |e| {
                *e == TokenError::BadSignature
            }),
            (&later, "expiry extended", |e| {
                *e == TokenError::BadSignature
            }),
            (&other_id, "id swapped", |e| *e == TokenError::BadSignature),
            (
                &version_one,
                "version 1",
                |e| matches!(e, TokenError::Malformed(m) if m.contains("version-1")),
            ),
        ];
        for (token, why, ok) in cases {
            let e = tokens().verify(token, now).expect_err(why);
            assert!(ok(&e), "{why}: {e:?}");
        }
        assert!(HmacTokens::new(vec![1u8; 31]).is_err());
    }
}
