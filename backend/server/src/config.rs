//! `muster serve` configuration: a TOML file, then `MUSTER_…` environment variables over it,
//! then command-line flags over both.
//!
//! ```toml
//! data_dir = "data"
//! store = "embedded"        # or "postgres://user@host:port/db" (several nodes on one database)
//! bind = "127.0.0.1:8080"
//! workers = 2
//! max_body_bytes = 65536
//! shutdown_timeout_s = 30
//! city = "bundled"          # areas: "bundled" (Helsinki), "grid", or a city file path
//! gateway_bind = "127.0.0.1:7450"   # the mobile gateway for responders' devices; "off": none
//! token_secret = "…"        # signs responders' device tokens (32 bytes or more); without
//!                           # it no gateway runs (`--demo` makes a random one)
//! allowed_origins = ["https://wall.example.org"]   # browser origins besides the server's
//!                           # own that may open the wall feed and the gateway (websockets)
//! lockout_failures = 20     # unknown tokens (API, feed tickets) or forged device tokens
//!                           # (gateway hello) from one address within a minute before its
//!                           # refused tokens get 429 / close 1013 for a minute
//! max_concurrent_requests = 1024   # requests handled at once; more get 503 with Retry-After
//!
//! [[users]]
//! name = "alice"
//! role = "operator"
//! token = "a-long-random-token-of-16-or-more-characters"
//! ```
//!
//! | variable | field |
//! |---|---|
//! | `MUSTER_DATA_DIR` | `data_dir` |
//! | `MUSTER_STORE` | `store` |
//! | `MUSTER_BIND` | `bind` |
//! | `MUSTER_WORKERS` | `workers` |
//! | `MUSTER_MAX_BODY_BYTES` | `max_body_bytes` |
//! | `MUSTER_SHUTDOWN_TIMEOUT_S` | `shutdown_timeout_s` |
//! | `MUSTER_CITY` | `city` |
//! | `MUSTER_LOCKOUT_FAILURES` | `lockout_failures` |
//! | `MUSTER_MAX_CONCURRENT_REQUESTS` | `max_concurrent_requests` |
//! | `MUSTER_ALLOWED_ORIGINS` | `allowed_origins`, separated by commas |
//! | `MUSTER_USERS` | more users, `name:role:token` (a responder: `name:role:token:unit id`) separated by commas |
//! | `MUSTER_GATEWAY_BIND` | `gateway_bind` |
//! | `MUSTER_TOKEN_SECRET` | `token_secret` |

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::auth::{Role, UserConfig};

/// The largest request body accepted by default: 64 KiB. Larger bodies get 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything `muster serve` needs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the views live, and the event store when it is embedded.
    pub data_dir: PathBuf,
    /// The event store: `embedded` (in `data_dir`) or a PostgreSQL connection string
    /// (`postgres://…` or `postgresql://…`).
    pub store: String,
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// HTTP worker threads.
    pub workers: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long a graceful shutdown waits for requests in flight, seconds.
    pub shutdown_timeout_s: u64,
    /// Where areas come from: `bundled` (the bundled Helsinki city's districts), `grid`
    /// (only the grid), or the path of a city file.
    pub city: String,
    /// Users and their tokens.
    pub users: Vec<UserConfig>,
    /// Where the mobile gateway listens (`off`: it does not run).
    pub gateway_bind: String,
    /// The secret that signs responders' device tokens; no gateway runs without one.
    pub token_secret: Option<TokenSecret>,
    /// Web origins (`https://host[:port]`) besides the server's own that may open its
    /// websockets (the wall feed and the mobile gateway) from a browser. A browser upgrade
    /// from any other origin is refused with 403.
    pub allowed_origins: Vec<String>,
    /// Unknown tokens from one address within a minute after which its unknown tokens get
    /// 429 for a minute (known tokens always work).
    pub lockout_failures: u32,
    /// Requests handled at once; more get 503 with `Retry-After` (health checks always pass).
    pub max_concurrent_requests: usize,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(***)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            store: "embedded".into(),
            bind: "127.0.0.1:8080".into(),
            workers: 2,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_timeout_s: 30,
            city: "bundled".into(),
            users: Vec::new(),
            gateway_bind: "127.0.0.1:7450".into(),
            token_secret: None,
            allowed_origins: Vec::new(),
            lockout_failures: crate::security::DEFAULT_LOCKOUT_FAILURES,
            max_concurrent_requests: crate::security::DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }
}

impl Config {
    /// Reads a TOML file (the defaults when `path` is `None`), then applies the `MUSTER_…`
    /// variables of the process environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                Self::from_toml(&text).with_context(|| format!("in config file {}", p.display()))?
            }
            None => Self::default(),
        };
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `MUSTER_…` variables over the current values.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        for (key, value) in vars {
            let number = |what: &str| -> anyhow::Result<u64> {
                value
                    .trim()
                    .parse()
                    .with_context(|| format!("{what} must be a whole number"))
            };
            match key.as_str() {
                "MUSTER_DATA_DIR" => self.data_dir = PathBuf::from(&value),
                "MUSTER_STORE" => self.store = value.trim().to_owned(),
                "MUSTER_BIND" => self.bind = value.clone(),
                "MUSTER_WORKERS" => self.workers = number("MUSTER_WORKERS")? as usize,
                "MUSTER_MAX_BODY_BYTES" => {
                    self.max_body_bytes = number("MUSTER_MAX_BODY_BYTES")? as usize
                }
                "MUSTER_SHUTDOWN_TIMEOUT_S" => {
                    self.shutdown_timeout_s = number("MUSTER_SHUTDOWN_TIMEOUT_S")?
                }
                "MUSTER_CITY" => self.city = value.clone(),
                "MUSTER_ALLOWED_ORIGINS" => {
                    self.allowed_origins = value
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "MUSTER_LOCKOUT_FAILURES" => {
                    self.lockout_failures = u32::try_from(number("MUSTER_LOCKOUT_FAILURES")?)
                        .context("MUSTER_LOCKOUT_FAILURES is too large")?
                }
                "MUSTER_MAX_CONCURRENT_REQUESTS" => {
                    self.max_concurrent_requests =
                        usize::try_from(number("MUSTER_MAX_CONCURRENT_REQUESTS")?)
                            .context("MUSTER_MAX_CONCURRENT_REQUESTS is too large")?
                }
                "MUSTER_GATEWAY_BIND" => self.gateway_bind = value.clone(),
                "MUSTER_TOKEN_SECRET" => self.token_secret = Some(TokenSecret::new(value.trim())),
                "MUSTER_USERS" => {
                    for item in value.split(',').filter(|s| !s.trim().is_empty()) {
                        self.users.push(parse_user(item)?);
                    }
                }
                _ => {}
            }
        }
        self.check()
    }

    /// Checks values that have a range.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.workers == 0 || self.workers > 64 {
            bail!("workers must be between 1 and 64, not {}", self.workers);
        }
        if self.store != "embedded" && !muster_store::postgres::is_postgres_url(&self.store) {
            bail!(
                "store must be \"embedded\" or a PostgreSQL connection string (postgres://…), not {:?}",
                self.store.chars().take(40).collect::<String>()
            );
        }
        for origin in &self.allowed_origins {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/') || r.contains('*')) {
                bail!(
                    "allowed_origins entries are scheme://host[:port] with no path or wildcard, not {origin:?}"
                );
            }
        }
        if self.lockout_failures == 0 {
            bail!("lockout_failures must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.max_concurrent_requests) {
            bail!(
                "max_concurrent_requests must be between 1 and 1000000, not {}",
                self.max_concurrent_requests
            );
        }
        if self.max_body_bytes < 1024 {
            bail!("max_body_bytes must be at least 1024");
        }
        if let Some(secret) = &self.token_secret
            && secret.expose().len() < muster_mobile::token::MIN_SECRET_BYTES
        {
            bail!(
                "token_secret must have at least {} bytes",
                muster_mobile::token::MIN_SECRET_BYTES
            );
        }
        Ok(())
    }
}

fn parse_user(item: &str) -> anyhow::Result<UserConfig> {
    let mut parts = item.trim().splitn(3, ':');
    let (Some(name), Some(role), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("MUSTER_USERS entries are name:role:token (a responder: name:role:token:unit id)");
    };
    let role = Role::ALL
        .into_iter()
        .find(|r| r.as_str() == role)
        .with_context(|| format!("unknown role {role:?} in MUSTER_USERS"))?;
    // A unit id after the token's last colon binds a responder to their unit.
    let (token, unit) = match rest
        .rsplit_once(':')
        .and_then(|(t, u)| muster_core::UnitId::parse(u).ok().map(|u| (t, Some(u))))
    {
        Some((t, u)) => (t, u),
        None => (rest, None),
    };
    Ok(UserConfig {
        name: name.into(),
        role,
        token: token.into(),
        unit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::from_toml(
            "data_dir = \"/var/muster\"\nbind = \"0.0.0.0:80\"\n[[users]]\nname = \"a\"\nrole = \"planner\"\ntoken = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/muster"));
        c.apply_env([
            ("MUSTER_BIND".to_string(), "127.0.0.1:0".to_string()),
            ("MUSTER_USERS".into(), "b:operator:fedcba9876543210".into()),
            ("HOME".into(), "/root".into()),
            (
                "MUSTER_ALLOWED_ORIGINS".into(),
                "https://wall.example, http://10.0.0.5:8080".into(),
            ),
            ("MUSTER_LOCKOUT_FAILURES".into(), "50".into()),
        ])
        .unwrap();
        assert_eq!(
            c.allowed_origins,
            ["https://wall.example", "http://10.0.0.5:8080"]
        );
        assert_eq!(c.lockout_failures, 50);
        assert_eq!(c.bind, "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/var/muster"));
        assert_eq!(c.users.len(), 2);
        assert_eq!(c.users[1].role, Role::Operator);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::from_toml("nonsense = 1").is_err());
        let mut c = Config::default();
        assert!(
            c.apply_env([("MUSTER_WORKERS".into(), "many".into())])
                .is_err()
        );
        assert!(
            c.apply_env([("MUSTER_USERS".into(), "x:king:0123456789abcdef".into())])
                .is_err()
        );
        assert!(
            Config::default()
                .apply_env([("MUSTER_LOCKOUT_FAILURES".into(), "0".into())])
                .is_err()
        );
        assert!(
            Config::default()
                .apply_env([("MUSTER_ALLOWED_ORIGINS".into(), "*".into())])
                .is_err()
        );
    }

    #[test]
    fn a_responder_is_bound_to_a_unit_after_the_token() {
        let unit = "01930000-0000-7000-8000-0000000000a1";
        let mut c = Config::default();
        c.apply_env([(
            "MUSTER_USERS".into(),
            format!("r:responder:0123456789abcdef:{unit},o:operator:with:colons:0123456789"),
        )])
        .unwrap();
        assert_eq!(c.users[0].token, "0123456789abcdef");
        assert_eq!(
            c.users[0].unit.map(|u| u.to_string()).as_deref(),
            Some(unit)
        );
        assert_eq!(c.users[1].token, "with:colons:0123456789");
        assert_eq!(c.users[1].unit, None);
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = Config::from_toml(include_str!("../../../ops/muster.example.toml")).unwrap();
        c.check().unwrap();
        assert!(
            c.users
                .iter()
                .any(|u| u.role == Role::Responder && u.unit.is_some())
        );
    }
}
