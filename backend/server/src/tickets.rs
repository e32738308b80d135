//! One-time tickets for the wall feed. A browser opens a websocket without headers, so the
//! feed cannot take the bearer token the way every other route does; putting the token in
//! the address would leave a long-lived credential in proxy logs and browser history. The
//! display asks for a ticket instead (`POST /api/feed/ticket`, with its bearer token) and
//! opens `GET /api/feed?ticket=…` within [`TICKET_TTL_SECS`] seconds.
//!
//! A ticket is `ft1.<payload>.<signature>`: the payload (base64url JSON) names the caller,
//! the expiry and a random nonce; the signature is an HMAC-SHA256 over `ft1.<payload>` with
//! a key derived from `token_secret`, so every node sharing the secret takes the tickets of
//! the others. Without a `token_secret` the key is random and a ticket works on the node
//! that issued it only. A ticket is taken once per node: the node remembers the nonces it
//! took until they expire.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::auth::{Caller, Role};

/// How long a ticket is valid, seconds.
pub const TICKET_TTL_SECS: i64 = 30;

const PREFIX: &str = "ft1";

/// Longest ticket looked at, bytes.
const MAX_TICKET_BYTES: usize = 1024;

/// Why a ticket was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket.
    #[error("the ticket is malformed")]
    Malformed,
    /// Not signed by this deployment.
    #[error("the ticket's signature is not valid")]
    BadSignature,
    /// Too late.
    #[error("the ticket expired; ask for a new one with POST /api/feed/ticket")]
    Expired,
    /// Taken already.
    #[error("the ticket was used already; ask for a new one with POST /api/feed/ticket")]
    Used,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    /// The caller's name.
    n: String,
    /// Their role.
    r: Role,
    /// A responder's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<muster_core::UnitId>,
    /// Expiry, unix seconds.
    x: i64,
    /// Nonce, hex.
    i: String,
    /// The credential the ticket was asked for with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    /// The caller's agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
}

/// Issues and takes feed tickets.
pub struct FeedTickets {
    key: Vec<u8>,
    /// Nonces taken, with their expiry (unix seconds).
    used: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for FeedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedTickets { key: <hidden> }")
    }
}

impl FeedTickets {
    /// Tickets signed with a key derived from `secret` (shared by the nodes that share it),
    /// or with a random key when there is none.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let key = match secret {
            Some(secret) => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(b"muster feed tickets v1");
                mac.finalize().into_bytes().to_vec()
            }
            None => {
                use rand::Rng;
                let key: [u8; 32] = rand::rng().random();
                key.to_vec()
            }
        };
        Self {
            key,
            used: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    /// A ticket for `caller`, and when it expires.
    pub fn issue(&self, caller: &Caller, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        use rand::Rng;
        let expires = now + chrono::Duration::seconds(TICKET_TTL_SECS);
        let nonce: [u8; 16] = rand::rng().random();
        let payload = Payload {
            n: caller.name.clone(),
            r: caller.role,
            u: caller.unit,
            x: expires.timestamp(),
            i: nonce.iter().map(|b| format!("{b:02x}")).collect(),
            c: caller.credential.clone(),
            a: caller.agency.clone(),
        };
        let json = serde_json::to_vec(&payload).expect("a ticket serializes");
        let body = format!("{PREFIX}.{}", URL_SAFE_NO_PAD.encode(json));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{body}.{signature}"), expires)
    }

    /// Takes a ticket: the caller it was issued to, once.
    pub fn redeem(&self, ticket: &str, now: DateTime<Utc>) -> Result<Caller, TicketError> {
        if ticket.len() > MAX_TICKET_BYTES {
            return Err(TicketError::Malformed);
        }
        let (body, signature) = ticket.rsplit_once('.').ok_or(TicketError::Malformed)?;
        let payload = body
            .strip_prefix(PREFIX)
            .and_then(|p| p.strip_prefix('.'))
            .ok_or(TicketError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TicketError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| TicketError::BadSignature)?;
        let payload: Payload = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TicketError::Malformed)?;
        let now = now.timestamp();
        if now >= payload.x {
            return Err(TicketError::Expired);
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, expiry| *expiry > now);
        if used.insert(payload.i, payload.x).is_some() {
            return Err(TicketError::Used);
        }
        Ok(Caller {
            name: payload.n,
            role: payload.r,
            unit: payload.u,
            agency: payload.a,
            credential: payload.c,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            name: "wall-1".into(),
            role: Role::Planner,
            unit: None,
            agency: Some("fire".into()),
            credential: Some("token:0123456789abcdef".into()),
        }
    }

    #[test]
    fn a_ticket_is_taken_once_before_it_expires() {
        let tickets = FeedTickets::new(Some(b"a-secret-of-thirty-two-bytes-or-more"));
        let now = Utc::now();
        let (ticket, expires) = tickets.issue(&caller(), now);
        assert_eq!(expires, now + chrono::Duration::seconds(TICKET_TTL_SECS));
        assert_eq!(tickets.redeem(&ticket, now), Ok(caller()));
        assert_eq!(tickets.redeem(&ticket, now), Err(TicketError::Used));
        let (late, _) = tickets.issue(&caller(), now);
        assert_eq!(
            tickets.redeem(&late, now + chrono::Duration::seconds(TICKET_TTL_SECS)),
            Err(TicketError::Expired)
        );
        // Another node with the same secret takes it; a node with another secret does not.
        let (shared, _) = tickets.issue(&caller(), now);
        let same = FeedTickets::new(Some(b"a-secret-of-thirty-two-bytes-or-more"));
        assert_eq!(same.redeem(&shared, now), Ok(caller()));
        let other = FeedTickets::new(None);
        assert_eq!(other.redeem(&shared, now), Err(TicketError::BadSignature));
    }

    #[test]
    fn altered_tickets_are_refused() {
        let tickets = FeedTickets::new(None);
        let now = Utc::now();
        let (ticket, _) = tickets.issue(&caller(), now);
        let (body, signature) = ticket.rsplit_once('.').unwrap();
        let payload = body.strip_prefix("ft1.").unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let admin = json.replace("\"planner\"", "\"admin\"");
        let promoted = format!("ft1.{}.{signature}", URL_SAFE_NO_PAD.encode(admin));
        for (bad, why, want) in [
            ("", "empty", TicketError::Malformed),
            ("ft1.abc", "no signature", TicketError::Malformed),
            ("xx1.abc.def", "wrong prefix", TicketError::Malformed),
            (promoted.as_str(), "role raised", TicketError::BadSignature),
        ] {
            assert_eq!(tickets.redeem(bad, now), Err(want), "{why}");
        }
        assert_eq!(tickets.redeem(&ticket, now), Ok(caller()));
    }
}
