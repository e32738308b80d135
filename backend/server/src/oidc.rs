//! Single sign-on: bearer tokens that are JWTs issued by the dispatch centre's OpenID Connect
//! provider, verified against the provider's published keys.
//!
//! A token is accepted when
//! - its header names an algorithm on the allow-list (asymmetric only: `alg: none` and every
//!   `HS*` are refused whatever the configuration says, so a token "signed" with the
//!   provider's public key as an HMAC secret is refused) and a key id (`kid`);
//! - that key is one of the provider's (its JWKS, found through the discovery document
//!   `<issuer>/.well-known/openid-configuration` → `jwks_uri`) and fits the algorithm;
//! - the signature verifies; `iss` is the configured issuer, `aud` names the configured
//!   audience, `exp` has not passed and `nbf` has (both with `leeway_s` of slack);
//! - its claims name the user (`name_claim`, default `sub`) and exactly one Muster role
//!   (`roles_claim`, a text or a list of texts; other values in a list are ignored). The
//!   agency (`agency_claim`) and a responder's unit (`unit_claim`) are optional.
//!
//! The keys are fetched on first use and kept. They are fetched again when a token names a
//! key id that is not among them (the provider rotated its keys), and in the background once
//! they are older than `jwks_refresh_s`; never twice within `jwks_min_refresh_s`, so tokens
//! with made-up key ids cannot make Muster hammer the provider. A failed fetch keeps the keys
//! it had.
//!
//! The audit trail names such a token `jwt:<issuer>#<jti>` (or `#<sub>` when it has no
//! `jti`), never the token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::auth::{Caller, Role};

/// How long one fetch of the discovery document or the JWKS may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest discovery document or JWKS read, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// The longest token looked at, bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The most `leeway_s` may be, seconds.
pub const MAX_LEEWAY_S: u64 = 300;

/// The algorithms allowed unless the configuration says otherwise.
pub const DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "PS256", "ES256"];

/// The `[oidc]` table of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer identifier, exactly as its tokens' `iss` says
    /// (`https://login.example.org/realms/dispatch`). Its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience tokens must name in `aud` (the client id Muster has at the provider).
    pub audience: String,
    /// The claim naming the user, recorded as the actor of their commands.
    pub name_claim: String,
    /// The claim holding the user's Muster role (`operator`, `responder`, `planner`,
    /// `admin`): a text, or a list of texts holding exactly one of them.
    pub roles_claim: String,
    /// The claim holding the user's agency (optional in tokens).
    pub agency_claim: String,
    /// The claim holding a responder's unit id (optional in tokens).
    pub unit_claim: String,
    /// Signature algorithms accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256,
    /// ES384, EdDSA.
    pub algorithms: Vec<String>,
    /// Slack for `exp` and `nbf`, seconds (clocks differ a little).
    pub leeway_s: u64,
    /// The keys are fetched again in the background once they are this old, seconds.
    pub jwks_refresh_s: u64,
    /// The keys are never fetched twice within this many seconds, whatever tokens say.
    pub jwks_min_refresh_s: u64,
    /// CA certificates (PEM) to trust for the provider besides the system's roots.
    pub ca_cert: Option<PathBuf>,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            name_claim: "sub".into(),
            roles_claim: "muster_roles".into(),
            agency_claim: "agency".into(),
            unit_claim: "muster_unit".into(),
            algorithms: DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect(),
            leeway_s: 30,
            jwks_refresh_s: 3600,
            jwks_min_refresh_s: 30,
            ca_cert: None,
        }
    }
}

/// The asymmetric algorithms Muster verifies.
const ASYMMETRIC: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

fn asymmetric(name: &str) -> Option<Algorithm> {
    ASYMMETRIC.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

fn asymmetric_names() -> String {
    ASYMMETRIC
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl OidcConfig {
    /// Checks every value; the error names the key and what is wrong.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.issuer.trim().is_empty() {
            bail!("oidc.issuer must be set (MUSTER_OIDC_ISSUER): the provider's issuer URL");
        }
        check_url("oidc.issuer", &self.issuer)?;
        if self.audience.trim().is_empty() {
            bail!(
                "oidc.audience must be set (MUSTER_OIDC_AUDIENCE): the audience Muster's tokens name"
            );
        }
        for (key, claim) in [
            ("oidc.name_claim", &self.name_claim),
            ("oidc.roles_claim", &self.roles_claim),
            ("oidc.agency_claim", &self.agency_claim),
            ("oidc.unit_claim", &self.unit_claim),
        ] {
            if claim.trim().is_empty() {
                bail!("{key} must name a claim");
            }
        }
        self.allowed_algorithms()?;
        if self.leeway_s > MAX_LEEWAY_S {
            bail!(
                "oidc.leeway_s must be at most {MAX_LEEWAY_S} seconds, not {}",
                self.leeway_s
            );
        }
        if self.jwks_min_refresh_s == 0 {
            bail!("oidc.jwks_min_refresh_s must be at least 1 second");
        }
        if self.jwks_refresh_s < self.jwks_min_refresh_s {
            bail!(
                "oidc.jwks_refresh_s ({}) must be at least oidc.jwks_min_refresh_s ({})",
                self.jwks_refresh_s,
                self.jwks_min_refresh_s
            );
        }
        Ok(())
    }

    /// The allow-list, parsed: asymmetric algorithms only.
    pub fn allowed_algorithms(&self) -> anyhow::Result<Vec<Algorithm>> {
        if self.algorithms.is_empty() {
            anyhow::bail!(
                "oidc.algorithms must name at least one algorithm: {}",
                asymmetric_names()
            );
        }
        self.algorithms
            .iter()
            .map(|name| {
                asymmetric(name.trim()).ok_or_else(|| {
                    if name.trim().eq_ignore_ascii_case("none") || name.trim().starts_with("HS") {
                        anyhow::anyhow!(
                            "oidc.algorithms: {name:?} is not accepted: tokens must be signed with the provider's private key; use {}",
                            asymmetric_names()
                        )
                    } else {
                        anyhow::anyhow!(
                            "oidc.algorithms: {name:?} is not a known algorithm; use {}",
                            asymmetric_names()
                        )
                    }
                })
            })
            .collect()
    }
}

/// An address Muster fetches keys from: `https://`, or `http://` on a loopback host only.
fn check_url(key: &str, url: &str) -> anyhow::Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| anyhow::anyhow!("{key} is not a URL ({e}): {url:?}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => anyhow::bail!(
            "{key} must be an https:// address (http:// only on a loopback host), not {url:?}"
        ),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        anyhow::bail!("{key} must have no query or fragment: {url:?}");
    }
    Ok(parsed)
}

/// Whether a bearer token has the shape of a JWT: three base64url parts, the first a JSON
/// object (`eyJ`).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// Why a token was refused. The messages say what is wrong, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRefusal {
    /// Not a readable JWT.
    #[error("the single sign-on token is not a well-formed JWT")]
    Malformed,
    /// `alg: none` or a symmetric algorithm.
    #[error(
        "the single sign-on token's algorithm {0} is not accepted: tokens must be signed with the provider's private key"
    )]
    Forbidden(String),
    /// An asymmetric algorithm not on the allow-list.
    #[error(
        "the single sign-on token's algorithm {0} is not among those allowed (oidc.algorithms)"
    )]
    NotAllowed(String),
    /// No `kid` in the header.
    #[error("the single sign-on token names no key (kid)")]
    NoKeyId,
    /// The key is not the provider's.
    #[error("the single sign-on token's key (kid) is not one of the provider's keys")]
    UnknownKey,
    /// The provider's keys could not be fetched.
    #[error(
        "the provider's keys cannot be fetched now, so the single sign-on token cannot be checked"
    )]
    NoKeys,
    /// The key does not fit the algorithm.
    #[error("the single sign-on token's algorithm does not fit its key")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the single sign-on token's signature is not valid")]
    BadSignature,
    /// `exp` passed.
    #[error("the single sign-on token expired")]
    Expired,
    /// `nbf` ahead.
    #[error("the single sign-on token is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is another.
    #[error("the single sign-on token was issued by another issuer (iss)")]
    WrongIssuer,
    /// `aud` names another.
    #[error("the single sign-on token is meant for another audience (aud)")]
    WrongAudience,
    /// A claim is missing or unusable.
    #[error("the single sign-on token's claims are not acceptable: {0}")]
    Claims(String),
}

/// One of the provider's keys.
struct Key {
    key: DecodingKey,
    family: jsonwebtoken::AlgorithmFamily,
    /// The algorithm the JWKS pins the key to, when it says.
    alg: Option<String>,
}

/// The keys and when they were fetched.
#[derive(Default)]
struct Keys {
    by_kid: Arc<HashMap<String, Arc<Key>>>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried.
    tried_at: Option<Instant>,
}

/// Why the keys would be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchReason {
    /// A token names a key id not among the keys.
    UnknownKey,
    /// The keys are older than the refresh period (or were never fetched).
    Stale,
}

/// Whether a fetch may run now: never within `floor` of the last try; then always for an
/// unknown key, and for stale keys once they are `refresh` old (or were never fetched).
pub fn fetch_due(
    now: Instant,
    tried_at: Option<Instant>,
    fetched_at: Option<Instant>,
    reason: FetchReason,
    refresh: Duration,
    floor: Duration,
) -> bool {
    if tried_at.is_some_and(|t| now.saturating_duration_since(t) < floor) {
        return false;
    }
    match reason {
        FetchReason::UnknownKey => true,
        FetchReason::Stale => {
            fetched_at.is_none_or(|t| now.saturating_duration_since(t) >= refresh)
        }
    }
}

/// The claims settings, parsed.
#[derive(Debug, Clone)]
struct Claims {
    name: String,
    roles: String,
    agency: String,
    unit: String,
}

/// Verifies single sign-on tokens. Cheap to share: one per server.
pub struct Oidc {
    issuer: String,
    audience: String,
    claims: Claims,
    algorithms: Vec<Algorithm>,
    leeway_s: u64,
    refresh: Duration,
    floor: Duration,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// Fetches made (for the operator's metrics and the tests).
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The part of the discovery document Muster reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The part of a token's header Muster reads before anything else.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
}

impl Oidc {
    /// A verifier for this configuration (checked first). Nothing is fetched yet.
    pub fn new(config: &OidcConfig) -> anyhow::Result<Self> {
        config.check()?;
        let tls = muster_mobile::tls::client_config(config.ca_cert.as_deref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self {
            issuer: config.issuer.trim().to_owned(),
            audience: config.audience.trim().to_owned(),
            claims: Claims {
                name: config.name_claim.clone(),
                roles: config.roles_claim.clone(),
                agency: config.agency_claim.clone(),
                unit: config.unit_claim.clone(),
            },
            algorithms: config.allowed_algorithms()?,
            leeway_s: config.leeway_s,
            refresh: Duration::from_secs(config.jwks_refresh_s),
            floor: Duration::from_secs(config.jwks_min_refresh_s),
            http,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            fetches: Default::default(),
        })
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// How many times the keys were fetched (tried), since start.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller a token names, or why it is refused.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Caller, JwtRefusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtRefusal::Malformed);
        }
        // The algorithm first, from the raw header: `none` and HS* are refused by name.
        let raw: RawHeader = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(JwtRefusal::Malformed)?;
        let alg_name = raw.alg.ok_or(JwtRefusal::Malformed)?;
        let alg = match asymmetric(&alg_name) {
            Some(alg) => alg,
            None if alg_name.eq_ignore_ascii_case("none") || alg_name.starts_with("HS") => {
                return Err(JwtRefusal::Forbidden(shorten(&alg_name)));
            }
            None => return Err(JwtRefusal::NotAllowed(shorten(&alg_name))),
        };
        if !self.algorithms.contains(&alg) {
            return Err(JwtRefusal::NotAllowed(alg_name));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Malformed)?;
        let kid = header.kid.ok_or(JwtRefusal::NoKeyId)?;
        let key = self.key(&kid).await?;
        if key.family != alg.family() || key.alg.as_deref().is_some_and(|a| a != alg_name) {
            return Err(JwtRefusal::KeyMismatch);
        }
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::InvalidSignature => JwtRefusal::BadSignature,
                    K::ExpiredSignature => JwtRefusal::Expired,
                    K::ImmatureSignature => JwtRefusal::NotYetValid,
                    K::InvalidIssuer => JwtRefusal::WrongIssuer,
                    K::InvalidAudience => JwtRefusal::WrongAudience,
                    K::InvalidAlgorithm => JwtRefusal::KeyMismatch,
                    K::MissingRequiredClaim(c) => {
                        JwtRefusal::Claims(format!("the {} claim is missing", shorten(c)))
                    }
                    K::InvalidClaimFormat(c) => {
                        JwtRefusal::Claims(format!("the {} claim has the wrong type", shorten(c)))
                    }
                    _ => JwtRefusal::Malformed,
                }
            })?;
        self.caller(&data.claims)
    }

    /// The caller the verified claims name.
    fn caller(&self, claims: &Map<String, Value>) -> Result<Caller, JwtRefusal> {
        let text = |claim: &str| -> Result<Option<&str>, JwtRefusal> {
            match claims.get(claim) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
                Some(_) => Err(JwtRefusal::Claims(format!(
                    "the {} claim must be a non-empty text",
                    shorten(claim)
                ))),
            }
        };
        let name = text(&self.claims.name)?
            .ok_or_else(|| {
                JwtRefusal::Claims(format!(
                    "the {} claim naming the user is missing",
                    shorten(&self.claims.name)
                ))
            })?
            .to_owned();
        if name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(JwtRefusal::Claims(format!(
                "the {} claim must be 1 to 128 printable characters",
                shorten(&self.claims.name)
            )));
        }
        let role = self.role(claims.get(&self.claims.roles))?;
        let agency = text(&self.claims.agency)?
            .map(|a| {
                muster_core::value::Agency::parse(a)
                    .map(|a| a.as_str().to_owned())
                    .map_err(|_| {
                        JwtRefusal::Claims(format!(
                            "the {} claim is not an agency code (letters, digits, '_' and '-')",
                            shorten(&self.claims.agency)
                        ))
                    })
            })
            .transpose()?;
        let unit = text(&self.claims.unit)?
            .map(|u| {
                muster_core::UnitId::parse(u).map_err(|_| {
                    JwtRefusal::Claims(format!(
                        "the {} claim is not a unit id (a UUID)",
                        shorten(&self.claims.unit)
                    ))
                })
            })
            .transpose()?;
        let id = text("jti")?.or(text("sub")?).unwrap_or("-");
        Ok(Caller {
            name,
            role,
            unit: unit.filter(|_| role == Role::Responder),
            agency,
            credential: Some(format!("jwt:{}#{}", self.issuer, shorten(id))),
        })
    }

    /// The one Muster role in the roles claim.
    fn role(&self, value: Option<&Value>) -> Result<Role, JwtRefusal> {
        let claim = shorten(&self.claims.roles);
        let names: Vec<&str> = match value {
            None | Some(Value::Null) => {
                return Err(JwtRefusal::Claims(format!(
                    "the {claim} claim naming the user's Muster role is missing"
                )));
            }
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => {
                return Err(JwtRefusal::Claims(format!(
                    "the {claim} claim must be a text or a list of texts"
                )));
            }
        };
        let mut roles: Vec<Role> = names
            .iter()
            .filter_map(|n| Role::ALL.into_iter().find(|r| r.as_str() == n.trim()))
            .collect();
        roles.dedup();
        match roles.as_slice() {
            [one] => Ok(*one),
            [] => Err(JwtRefusal::Claims(format!(
                "the {claim} claim names no Muster role (operator, responder, planner, admin)"
            ))),
            _ => Err(JwtRefusal::Claims(format!(
                "the {claim} claim names several Muster roles; a user has one"
            ))),
        }
    }

    /// The key with this id: from the keys at hand, fetched when there are none, when the
    /// id is unknown, or (in the background) when they are stale.
    async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<Key>, JwtRefusal> {
        let (found, stale) = {
            let keys = self.keys();
            let stale = fetch_due(
                Instant::now(),
                keys.tried_at,
                keys.fetched_at,
                FetchReason::Stale,
                self.refresh,
                self.floor,
            );
            (keys.by_kid.get(kid).cloned(), stale)
        };
        if let Some(key) = found {
            if stale {
                let me = self.clone();
                tokio::spawn(async move { me.refresh(FetchReason::Stale).await });
            }
            return Ok(key);
        }
        self.refresh(FetchReason::UnknownKey).await;
        let keys = self.keys();
        match keys.by_kid.get(kid) {
            Some(key) => Ok(key.clone()),
            None if keys.fetched_at.is_none() => Err(JwtRefusal::NoKeys),
            None => Err(JwtRefusal::UnknownKey),
        }
    }

    /// Fetches the keys when [`fetch_due`] allows; one fetch at a time, and a caller that
    /// waited for another's fetch does not fetch again.
    async fn refresh(&self, reason: FetchReason) {
        let asked = Instant::now();
        let _one = self.fetching.lock().await;
        let (tried_at, fetched_at) = {
            let keys = self.keys();
            (keys.tried_at, keys.fetched_at)
        };
        if tried_at.is_some_and(|t| t >= asked) {
            return;
        }
        let now = Instant::now();
        if !fetch_due(now, tried_at, fetched_at, reason, self.refresh, self.floor) {
            return;
        }
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .tried_at = Some(now);
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch().await {
            Ok(by_kid) => {
                tracing::info!(
                    issuer = %self.issuer,
                    keys = by_kid.len(),
                    ?reason,
                    "single sign-on: fetched the provider's keys"
                );
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                keys.by_kid = Arc::new(by_kid);
                keys.fetched_at = Some(Instant::now());
            }
            Err(e) => tracing::warn!(
                issuer = %self.issuer,
                "single sign-on: the provider's keys could not be fetched (the keys at hand stay): {e:#}"
            ),
        }
    }

    /// Reads the discovery document, then the JWKS it names.
    async fn fetch(&self) -> anyhow::Result<HashMap<String, Arc<Key>>> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = serde_json::from_slice(&self.get(&discovery_url).await?)
            .map_err(|e| {
                anyhow::anyhow!("the discovery document {discovery_url} is not usable: {e}")
            })?;
        if discovery.issuer != self.issuer {
            anyhow::bail!(
                "the discovery document names the issuer {:?}, not the configured {:?}",
                shorten(&discovery.issuer),
                self.issuer
            );
        }
        let jwks_uri = check_url("the discovery document's jwks_uri", &discovery.jwks_uri)?;
        let set: JwkSet = serde_json::from_slice(&self.get(jwks_uri.as_str()).await?)
            .map_err(|e| anyhow::anyhow!("the JWKS at {jwks_uri} is not usable: {e}"))?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => jsonwebtoken::AlgorithmFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => jsonwebtoken::AlgorithmFamily::Ec,
                AlgorithmParameters::OctetKeyPair(_) => jsonwebtoken::AlgorithmFamily::Ed,
                // Symmetric or unknown keys are never used.
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::debug!(%kid, "single sign-on: a key of the JWKS is not usable");
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().map(str::to_owned));
            by_kid.insert(kid, Arc::new(Key { key, family, alg }));
        }
        Ok(by_kid)
    }

    /// GETs a document of at most [`MAX_DOCUMENT_BYTES`].
    async fn get(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            anyhow::bail!("GET {url}: HTTP {}", response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                anyhow::bail!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes");
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A text from a token, at most 64 characters and without control characters, for
/// messages and the audit trail.
fn shorten(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_are_spaced_by_the_floor_and_stale_keys_are_refreshed() {
        let t0 = Instant::now();
        let (refresh, floor) = (Duration::from_secs(3600), Duration::from_secs(30));
        let s = Duration::from_secs;
        let due =
            |now, tried, fetched, reason| fetch_due(now, tried, fetched, reason, refresh, floor);
        // Never fetched: fetch.
        assert!(due(t0, None, None, FetchReason::Stale));
        assert!(due(t0, None, None, FetchReason::UnknownKey));
        // Unknown keys: only once the floor has passed since the last try.
        assert!(!due(
            t0 + s(29),
            Some(t0),
            Some(t0),
            FetchReason::UnknownKey
        ));
        assert!(due(t0 + s(30), Some(t0), Some(t0), FetchReason::UnknownKey));
        // Fresh keys are not fetched again; stale ones are.
        assert!(!due(t0 + s(3599), Some(t0), Some(t0), FetchReason::Stale));
        assert!(due(t0 + s(3600), Some(t0), Some(t0), FetchReason::Stale));
        // A failed try is retried after the floor.
        assert!(!due(t0 + s(10), Some(t0), None, FetchReason::Stale));
        assert!(due(t0 + s(31), Some(t0), None, FetchReason::Stale));
    }

    #[test]
    fn bad_settings_are_refused_with_what_is_wrong() {
        let good = OidcConfig {
            issuer: "https://login.example.org/realms/dispatch".into(),
            audience: "muster".into(),
            ..OidcConfig::default()
        };
        good.check().unwrap();
        OidcConfig {
            issuer: "http://127.0.0.1:8081".into(),
            ..good.clone()
        }
        .check()
        .unwrap();
        let table: Vec<(OidcConfig, &str, &str)> = vec![
            (
                OidcConfig {
                    issuer: String::new(),
                    ..good.clone()
                },
                "oidc.issuer must be set",
                "no issuer",
            ),
            (
                OidcConfig {
                    issuer: "http://login.example.org".into(),
                    ..good.clone()
                },
                "https://",
                "plain http to another host",
            ),
            (
                OidcConfig {
                    audience: " ".into(),
                    ..good.clone()
                },
                "oidc.audience",
                "no audience",
            ),
            (
                OidcConfig {
                    algorithms: vec!["HS256".into()],
                    ..good.clone()
                },
                "is not accepted",
                "a symmetric algorithm",
            ),
            (
                OidcConfig {
                    algorithms: vec!["none".into()],
                    ..good.clone()
                },
                "is not accepted",
                "no signature",
            ),
            (
                OidcConfig {
                    algorithms: vec!["RS1".into()],
                    ..good.clone()
                },
                "not a known algorithm",
                "an unknown algorithm",
            ),
            (
                OidcConfig {
                    algorithms: vec![],
                    ..good.clone()
                },
                "at least one",
                "no algorithm",
            ),
            (
                OidcConfig {
                    leeway_s: 301,
                    ..good.clone()
                },
                "leeway_s",
                "too much leeway",
            ),
            (
                OidcConfig {
                    jwks_min_refresh_s: 0,
                    ..good.clone()
                },
                "jwks_min_refresh_s",
                "no floor",
            ),
            (
                OidcConfig {
                    jwks_refresh_s: 10,
                    ..good.clone()
                },
                "jwks_refresh_s",
                "refresh below the floor",
            ),
            (
                OidcConfig {
                    roles_claim: String::new(),
                    ..good.clone()
                },
                "oidc.roles_claim",
                "no roles claim",
            ),
        ];
        for (config, expected, why) in table {
            let e = config.check().expect_err(why).to_string();
            assert!(e.contains(expected), "{why}: {e}");
        }
    }

    fn verifier() -> Oidc {
        Oidc::new(&OidcConfig {
            issuer: "https://login.example.org".into(),
            audience: "muster".into(),
            ..OidcConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn claims_name_the_user_role_agency_and_unit() {
        let oidc = verifier();
        let unit = "01930000-0000-7000-8000-0000000000a1";
        let claims = |v: Value| v.as_object().unwrap().clone();
        let c = oidc
            .caller(&claims(serde_json::json!({
                "sub": "alice", "jti": "t-1", "muster_roles": ["offline_access", "responder"],
                "agency": "city-fire", "muster_unit": unit
            })))
            .unwrap();
        assert_eq!(c.name, "alice");
        assert_eq!(c.role, Role::Responder);
        assert_eq!(c.agency.as_deref(), Some("city-fire"));
        assert_eq!(c.unit.map(|u| u.to_string()).as_deref(), Some(unit));
        assert_eq!(
            c.credential.as_deref(),
            Some("jwt:https://login.example.org#t-1")
        );
        let table = [
            (serde_json::json!({"sub": "a"}), "missing", "no role"),
            (
                serde_json::json!({"sub": "a", "muster_roles": "king"}),
                "no Muster role",
                "an unknown role",
            ),
            (
                serde_json::json!({"sub": "a", "muster_roles": ["admin", "planner"]}),
                "several",
                "two roles",
            ),
            (
                serde_json::json!({"sub": "a", "muster_roles": 3}),
                "a text or a list",
                "a number",
            ),
            (
                serde_json::json!({"muster_roles": "planner"}),
                "naming the user",
                "no name",
            ),
            (
                serde_json::json!({"sub": "a", "muster_roles": "planner", "agency": "fire dept"}),
                "agency code",
                "an agency with a space",
            ),
            (
                serde_json::json!({"sub": "a", "muster_roles": "responder", "muster_unit": "E7"}),
                "unit id",
                "a unit that is no id",
            ),
        ];
        for (v, expected, why) in table {
            let e = oidc.caller(&claims(v)).expect_err(why).to_string();
            assert!(e.contains(expected), "{why}: {e}");
        }
    }

    #[test]
    fn only_jwt_shapes_are_taken_for_jwts() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!looks_like_jwt("dispatch-test-token-operator-0123456789"));
        assert!(!looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0"));
    }
}
