//! Bearer tokens with roles. No anonymous write: every API call names a user through its
//! token, and each route says which roles may call it.
//!
//! A bearer token is one of
//! - a configured user's token (`[[users]]`), named in the audit trail `token:<16 hex digits
//!   of its SHA-256>`;
//! - a machine's API token (`mat_…`, [`crate::api_tokens`]), `api-token:<id>`;
//! - a single sign-on JWT from the configured OpenID Connect provider ([`crate::oidc`]),
//!   `jwt:<issuer>#<jti or sub>`, its role and agency from its claims.
//!
//! | role | may |
//! |---|---|
//! | `operator` | take calls, register sensors and units, assign, close, read every view |
//! | `responder` | change its unit's status and position, acknowledge / decline / complete tasks, read views |
//! | `planner` | read views |
//! | `admin` | everything |

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::security::Lockout;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A dispatch-centre operator or call taker.
    Operator,
    /// A field responder (a unit's crew).
    Responder,
    /// A planner: reads views.
    Planner,
    /// An administrator: everything.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Operator, Role::Responder, Role::Planner, Role::Admin];

    /// The role's name, as in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Responder => "responder",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }
}

/// Roles that may read views.
pub const READERS: &[Role] = &[Role::Operator, Role::Responder, Role::Planner, Role::Admin];
/// Roles that may run dispatch-centre commands.
pub const DISPATCH: &[Role] = &[Role::Operator, Role::Admin];
/// Roles that may administer: erase personal data, read the audit trail, manage API tokens.
pub const ADMIN: &[Role] = &[Role::Admin];
/// Roles that may report a unit's own status, position and task progress.
pub const FIELD: &[Role] = &[Role::Operator, Role::Responder, Role::Admin];

/// A user as the configuration names it.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user's name, recorded as the actor of the events they cause.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Their bearer token (at least 16 characters).
    pub token: String,
    /// For a responder: the unit whose crew they are. A responder acts on that unit only
    /// (status, position, task steps); without one, on none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<muster_core::UnitId>,
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"…")
            .finish()
    }
}

/// The smallest token length accepted in a configuration.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The user behind a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// For a responder, the unit whose crew they are.
    pub unit: Option<muster_core::UnitId>,
    /// The agency they act for, when their credential names one (a single sign-on token's
    /// agency claim, an API token's agency); recorded with their commands.
    pub agency: Option<String>,
    /// The credential presented, by an id that does not reveal it (`token:<fingerprint>`,
    /// `jwt:<issuer>#<token id or subject>`, `api-token:<id>`), recorded with the caller's
    /// commands.
    pub credential: Option<String>,
}

impl Caller {
    /// Refuses with 403 when a responder acts on a unit other than their own. Dispatch-centre
    /// roles act on every unit.
    pub fn acts_for(&self, unit: muster_core::UnitId) -> Result<(), ApiError> {
        if self.role != Role::Responder || self.unit == Some(unit) {
            return Ok(());
        }
        Err(ApiError::forbidden(match self.unit {
            Some(own) => format!(
                "responder {} acts for unit {own} only, not for unit {unit}",
                self.name
            ),
            None => format!(
                "responder {} has no unit in the users configuration (`unit`), so may not act for unit {unit}",
                self.name
            ),
        }))
    }

    /// Refuses with 403 unless the caller has one of these roles.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "role {} may not do this; it needs one of: {}",
            self.role.as_str(),
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// Every known token.
#[derive(Clone, Default)]
pub struct Tokens {
    by_token: Arc<HashMap<String, Caller>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} users)", self.by_token.len())
    }
}

impl Tokens {
    /// The tokens of these users; refuses short tokens and duplicates.
    pub fn new(users: &[UserConfig]) -> anyhow::Result<Self> {
        let mut by_token = HashMap::new();
        for u in users {
            anyhow::ensure!(
                u.token.chars().count() >= MIN_TOKEN_CHARS,
                "the token of user {:?} is shorter than {MIN_TOKEN_CHARS} characters",
                u.name
            );
            let old = by_token.insert(
                u.token.clone(),
                Caller {
                    name: u.name.clone(),
                    role: u.role,
                    unit: u.unit,
                    agency: None,
                    credential: Some(credential_id(&u.token)),
                },
            );
            anyhow::ensure!(old.is_none(), "two users share a token (user {:?})", u.name);
        }
        Ok(Self {
            by_token: Arc::new(by_token),
        })
    }

    /// The caller a token belongs to.
    pub fn caller(&self, token: &str) -> Option<&Caller> {
        self.by_token.get(token)
    }

    /// Whether a configured user has this name.
    pub fn has_user(&self, name: &str) -> bool {
        self.by_token.values().any(|c| c.name == name)
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

/// Names a bearer token in the audit trail without revealing it: `token:` and the first 16
/// hex digits of its SHA-256.
pub fn credential_id(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

/// A fresh random token: 32 hex digits.
pub fn new_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The demo users, one per role, with fresh tokens.
pub fn demo_users() -> Vec<UserConfig> {
    Role::ALL
        .iter()
        .map(|role| UserConfig {
            name: format!("demo-{}", role.as_str()),
            role: *role,
            token: new_token(),
            unit: None,
        })
        .collect()
}

/// The token of a request: `Authorization: Bearer <token>`. A token in the address
/// (`?access_token=`) is refused on every route: addresses end up in logs, histories and
/// `Referer` headers. The wall feed, which browsers open without headers, takes a one-time
/// ticket instead ([`crate::tickets`]).
fn token_of(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.0)
        .unwrap_or_default();
    if query.contains_key("access_token") {
        return Err(ApiError::unauthorized(
            "a token in the address (access_token) is not taken; send it as \
             \"Authorization: Bearer <token>\" (the wall feed takes a one-time ticket from \
             POST /api/feed/ticket)",
        ));
    }
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
        let token = value.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be \"Bearer <token>\"")
        })?;
        return Ok(Some(token.trim().to_owned()));
    }
    Ok(None)
}

/// Refuses a credential: logged with the peer address and path (never the credential) and
/// counted towards the peer's [`Lockout`]; 429 with `Retry-After` once it is locked out,
/// else 401 with `reason`.
pub fn refused(req: &HttpRequest, reason: &str) -> ApiError {
    let lockout = req.app_data::<web::Data<Lockout>>();
    let peer = req.peer_addr().map(|a| a.ip());
    tracing::warn!(
        peer = %peer.map_or("unknown".to_owned(), |p| p.to_string()),
        path = %req.path(),
        "authentication refused: {reason}"
    );
    if let (Some(lockout), Some(peer)) = (lockout, peer) {
        if let Some(wait) = lockout.locked(peer) {
            return ApiError::too_many(
                format!("too many refused tokens from this address; try again in {wait} s"),
                wait,
            );
        }
        if let Some(wait) = lockout.failed(peer) {
            tracing::warn!(%peer, "locked out for {wait} s after repeated refused tokens");
        }
    }
    ApiError::unauthorized(reason.to_owned())
}

/// The caller of a request, or the refusal: 401 for a missing, unknown, expired, revoked or
/// otherwise refused token, 429 with `Retry-After` for a refused token from a client locked
/// out ([`Lockout`]). Refused tokens are logged with the peer address and why, never with
/// the token, and counted towards the lockout; a request with no token at all is neither
/// (it is no guess). 503 when a token cannot be checked now (the provider's keys or the
/// log cannot be read).
pub async fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let tokens = req
        .app_data::<web::Data<Tokens>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no token table")))?;
    let token = match token_of(req) {
        Ok(Some(t)) => t,
        // No token at all is not a guess: 401, not counted.
        Ok(None) => return Err(ApiError::unauthorized("a bearer token is required")),
        Err(e) => return Err(refused(req, &e.message)),
    };
    if let Some(caller) = tokens.caller(&token) {
        return Ok(caller.clone());
    }
    if crate::api_tokens::looks_like(&token)
        && let Some(registry) = req.app_data::<web::Data<crate::api_tokens::ApiTokenRegistry>>()
    {
        // A locked-out address does not make the node read the log for its guesses.
        let locked = match (req.app_data::<web::Data<Lockout>>(), req.peer_addr()) {
            (Some(lockout), Some(peer)) => lockout.locked(peer.ip()).is_some(),
            _ => false,
        };
        return match registry.caller(&token, !locked).await {
            Ok(caller) => Ok(caller),
            Err(e @ crate::api_tokens::ApiTokenRefusal::Unavailable) => {
                Err(ApiError::unavailable(e.to_string()).with_retry_after(1))
            }
            Err(e) => Err(refused(req, &e.to_string())),
        };
    }
    if crate::oidc::looks_like_jwt(&token) {
        let Some(oidc) = req.app_data::<web::Data<crate::oidc::Oidc>>() else {
            return Err(refused(
                req,
                "the bearer token is a JWT, but single sign-on is not configured here",
            ));
        };
        return match oidc.clone().into_inner().verify(&token).await {
            Ok(caller) => Ok(caller),
            Err(e @ crate::oidc::JwtRefusal::NoKeys) => {
                tracing::warn!(peer = ?req.peer_addr().map(|a| a.ip()), "authentication not possible: {e}");
                Err(ApiError::unavailable(e.to_string()).with_retry_after(5))
            }
            Err(e) => Err(refused(req, &e.to_string())),
        };
    }
    Err(refused(req, "the bearer token is not known"))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = futures::future::LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_shared_tokens_are_refused() {
        let user = |name: &str, token: &str| UserConfig {
            name: name.into(),
            role: Role::Operator,
            token: token.into(),
            unit: None,
        };
        assert!(Tokens::new(&[user("a", "short")]).is_err());
        let t = "0123456789abcdef0123";
        assert!(Tokens::new(&[user("a", t), user("b", t)]).is_err());
        let tokens = Tokens::new(&[user("a", t)]).unwrap();
        assert_eq!(tokens.caller(t).unwrap().name, "a");
        assert!(tokens.caller("0123456789abcdef0124").is_none());
    }

    #[test]
    fn roles_are_checked() {
        let planner = Caller {
            name: "p".into(),
            role: Role::Planner,
            unit: None,
            agency: None,
            credential: None,
        };
        assert!(planner.require(READERS).is_ok());
        let e = planner.require(DISPATCH).unwrap_err();
        assert_eq!(e.status.as_u16(), 403);
    }

    #[test]
    fn debug_hides_tokens() {
        let users = demo_users();
        assert_eq!(users.len(), 4);
        assert!(!format!("{:?}", users[0]).contains(&users[0].token));
    }
}
