//! API tokens for machines: `mat_` and 43 base64url characters (256 random bits). An
//! administrator creates one (`POST /api/admin/api-tokens`, answered with the token once),
//! lists them without their secret, and revokes them ([`crate::routes::admin`]). The log
//! keeps each token's SHA-256 (core's [`muster_core::api_token`]), never the token.
//!
//! [`ApiTokenRegistry`] checks a presented token against the tokens the log holds. It reads
//! the stream `api-tokens` again (its tail only, through the runner's cache) when what it
//! knows is older than [`FRESH_FOR`], and at once when it does not know a token, so a token
//! created on one node works on every other at once and a revocation takes effect on every
//! node within [`FRESH_FOR`]. When the store cannot be read and what it knows is stale, it
//! refuses with 503 rather than honour a token that may have been revoked.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use muster_core::api_token::ApiTokens;
use sha2::{Digest, Sha256};

use crate::auth::{Caller, Role};

/// What every API token starts with: secret scanners and people can tell it is Muster's.
pub const TOKEN_PREFIX: &str = "mat_";

/// Random bytes in a token.
pub const SECRET_BYTES: usize = 32;

/// How long what the registry knows of the log is taken as current.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Characters in a token: the prefix and the base64url of [`SECRET_BYTES`].
const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + (SECRET_BYTES * 4).div_ceil(3);

/// A fresh token.
pub fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; SECRET_BYTES] = rand::rng().random();
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A token's SHA-256, 64 hex digits: what the log keeps.
pub fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a bearer token has the shape of an API token.
pub fn looks_like(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why an API token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenRefusal {
    /// No such token.
    #[error("the API token is not known")]
    Unknown,
    /// Revoked.
    #[error("the API token was revoked; ask an administrator for a new one")]
    Revoked,
    /// Expired.
    #[error("the API token expired; ask an administrator for a new one")]
    Expired,
    /// Its role is not one this build knows.
    #[error("the API token's role is not known to this server")]
    UnknownRole,
    /// The log cannot be read to check it.
    #[error("the API token cannot be checked now: the event store cannot be read; try again")]
    Unavailable,
}

struct Known {
    tokens: Arc<ApiTokens>,
    read_at: Option<Instant>,
}

/// The API tokens the log holds, as one node knows them.
pub struct ApiTokenRegistry {
    runner: muster_app::Runner,
    known: RwLock<Known>,
    /// One read of the log at a time.
    reading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ApiTokenRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiTokenRegistry")
    }
}

impl ApiTokenRegistry {
    /// A registry reading the log through this runner.
    pub fn new(runner: muster_app::Runner) -> Self {
        Self {
            runner,
            known: RwLock::new(Known {
                tokens: Arc::default(),
                read_at: None,
            }),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn known(&self) -> (Arc<ApiTokens>, Option<Instant>) {
        let k = self.known.read().unwrap_or_else(|p| p.into_inner());
        (k.tokens.clone(), k.read_at)
    }

    /// Reads the log's tokens again, unless a read that began after `asked` already did.
    async fn read(&self, asked: Instant) -> Result<Arc<ApiTokens>, ApiTokenRefusal> {
        let _one = self.reading.lock().await;
        let (tokens, read_at) = self.known();
        if read_at.is_some_and(|t| t >= asked) {
            return Ok(tokens);
        }
        let started = Instant::now();
        match self.runner.api_tokens().await {
            Ok(tokens) => {
                let tokens = Arc::new(tokens);
                let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
                k.tokens = tokens.clone();
                k.read_at = Some(started);
                Ok(tokens)
            }
            Err(e) => {
                tracing::warn!("API tokens: the log could not be read: {e}");
                Err(ApiTokenRefusal::Unavailable)
            }
        }
    }

    /// Forgets what it knows of the log, so the next check reads it (after a revocation on
    /// this node, which then takes effect here at once).
    pub fn forget(&self) {
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .read_at = None;
    }

    /// The caller an API token names. The log is read again first when what is known is
    /// older than [`FRESH_FOR`], and again when the token is not known and `read_on_miss`.
    pub async fn caller(&self, token: &str, read_on_miss: bool) -> Result<Caller, ApiTokenRefusal> {
        let now = Instant::now();
        let (mut tokens, read_at) = self.known();
        if read_at.is_none_or(|t| now.saturating_duration_since(t) >= FRESH_FOR) {
            tokens = self.read(now).await?;
        }
        let digest = digest(token);
        if tokens.by_digest(&digest).is_none() && read_on_miss {
            tokens = self.read(Instant::now()).await?;
        }
        let found = tokens.by_digest(&digest).ok_or(ApiTokenRefusal::Unknown)?;
        if found.revoked.is_some() {
            return Err(ApiTokenRefusal::Revoked);
        }
        if !found.is_valid_at(Utc::now()) {
            return Err(ApiTokenRefusal::Expired);
        }
        let role = Role::ALL
            .into_iter()
            .find(|r| r.as_str() == found.role)
            .ok_or(ApiTokenRefusal::UnknownRole)?;
        Ok(Caller {
            name: found.name.clone(),
            role,
            unit: found.unit,
            agency: found.agency.as_ref().map(|a| a.as_str().to_owned()),
            credential: Some(format!("api-token:{}", found.token_id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_256_random_bits_and_their_own_shape() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(looks_like(&a), "{a}");
        assert_eq!(a.len(), 47);
        assert_eq!(digest(&a).len(), 64);
        for (bad, why) in [
            ("mat_", "no secret"),
            (&a[..46], "one character short"),
            (
                "dispatch-test-token-operator-0123456789",
                "a configured token",
            ),
        ] {
            assert!(!looks_like(bad), "{why}");
        }
        let mut other = a.clone();
        other.replace_range(10..11, "!");
        assert!(!looks_like(&other), "a character outside base64url");
    }
}
