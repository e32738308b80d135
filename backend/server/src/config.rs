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
//! lockout_failures = 20     # refused tokens (API, feed tickets) or forged device tokens
//!                           # (gateway hello) from one address within a minute before its
//!                           # refused tokens get 429 / close 1013 for a minute
//! max_concurrent_requests = 1024   # requests handled at once; more get 503 with Retry-After
//! tls_cert = "/etc/muster/tls/chain.pem"   # TLS on the API, the wall feed and the gateway:
//! tls_key = "/etc/muster/tls/key.pem"      # PEM chain (own certificate first) and its key,
//!                           # both read again on SIGHUP
//! tls_proxy = false         # true: a TLS-terminating proxy is in front, so plaintext
//!                           # listeners may bind addresses other than loopback
//!
//! [[users]]
//! name = "alice"
//! role = "operator"
//! token = "a-long-random-token-of-16-or-more-characters"
//!
//! [oidc]                    # single sign-on: JWTs from an OpenID Connect provider
//! issuer = "https://login.example.org/realms/dispatch"   # as its tokens' iss says
//! audience = "muster"       # what their aud must name
//! name_claim = "sub"        # the user's name in the audit trail
//! roles_claim = "muster_roles"   # operator, responder, planner or admin (a text or a list)
//! agency_claim = "agency"   # optional in tokens
//! unit_claim = "muster_unit"     # a responder's unit id, optional in tokens
//! algorithms = ["RS256", "PS256", "ES256"]   # asymmetric only
//! leeway_s = 30             # slack for exp and nbf
//! jwks_refresh_s = 3600     # the provider's keys are fetched again when this old
//! jwks_min_refresh_s = 30   # and never twice within this (unknown key ids included)
//! # ca_cert = "/etc/muster/idp-ca.pem"   # CA certificates for the provider, besides the system's
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
//! | `MUSTER_TLS_CERT` | `tls_cert` |
//! | `MUSTER_TLS_KEY` | `tls_key` |
//! | `MUSTER_TLS_PROXY` | `tls_proxy` (`true` or `false`) |
//! | `MUSTER_OIDC_ISSUER` | `oidc.issuer` |
//! | `MUSTER_OIDC_AUDIENCE` | `oidc.audience` |
//! | `MUSTER_OIDC_NAME_CLAIM` | `oidc.name_claim` |
//! | `MUSTER_OIDC_ROLES_CLAIM` | `oidc.roles_claim` |
//! | `MUSTER_OIDC_AGENCY_CLAIM` | `oidc.agency_claim` |
//! | `MUSTER_OIDC_UNIT_CLAIM` | `oidc.unit_claim` |
//! | `MUSTER_OIDC_ALGORITHMS` | `oidc.algorithms`, separated by commas |
//! | `MUSTER_OIDC_LEEWAY_S` | `oidc.leeway_s` |
//! | `MUSTER_OIDC_JWKS_REFRESH_S` | `oidc.jwks_refresh_s` |
//! | `MUSTER_OIDC_JWKS_MIN_REFRESH_S` | `oidc.jwks_min_refresh_s` |
//! | `MUSTER_OIDC_CA_CERT` | `oidc.ca_cert` |
//!
//! Any `MUSTER_OIDC_…` variable turns single sign-on on (with the defaults of the others);
//! then the issuer and the audience must be set.
//!
//! Without TLS, `bind` and (when the gateway runs) `gateway_bind` must be loopback addresses
//! unless `tls_proxy` is true ([`Config::check_plaintext`]): a dispatch centre's tokens and
//! callers' details never cross a network in the clear by accident.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::auth::{Role, UserConfig};
use crate::oidc::OidcConfig;

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
    /// Refused tokens from one address within a minute after which its refused tokens get
    /// 429 for a minute (known tokens always work).
    pub lockout_failures: u32,
    /// Requests handled at once; more get 503 with `Retry-After` (health checks always pass).
    pub max_concurrent_requests: usize,
    /// The PEM certificate chain (the server's own certificate first, then intermediates)
    /// presented by the operator API, the wall feed and the mobile gateway; with `tls_key`.
    /// Both files are read again on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A TLS-terminating proxy is in front: plaintext listeners may bind addresses other
    /// than loopback.
    pub tls_proxy: bool,
    /// Single sign-on: bearer JWTs from this OpenID Connect provider ([`crate::oidc`]).
    pub oidc: Option<OidcConfig>,
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
            tls_cert: None,
            tls_key: None,
            tls_proxy: false,
            oidc: None,
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
                "MUSTER_TLS_CERT" => self.tls_cert = Some(PathBuf::from(&value)),
                "MUSTER_TLS_KEY" => self.tls_key = Some(PathBuf::from(&value)),
                "MUSTER_TLS_PROXY" => {
                    self.tls_proxy = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" | "" => false,
                        _ => bail!("MUSTER_TLS_PROXY must be true or false, not {value:?}"),
                    }
                }
                oidc if oidc.starts_with("MUSTER_OIDC_") => self.apply_oidc_env(oidc, &value)?,
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

    /// Applies one `MUSTER_OIDC_…` variable.
    fn apply_oidc_env(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let oidc = self.oidc.get_or_insert_with(OidcConfig::default);
        let text = value.trim().to_owned();
        let seconds = || -> anyhow::Result<u64> {
            text.parse()
                .with_context(|| format!("{key} must be a whole number of seconds"))
        };
        match key {
            "MUSTER_OIDC_ISSUER" => oidc.issuer = text.clone(),
            "MUSTER_OIDC_AUDIENCE" => oidc.audience = text.clone(),
            "MUSTER_OIDC_NAME_CLAIM" => oidc.name_claim = text.clone(),
            "MUSTER_OIDC_ROLES_CLAIM" => oidc.roles_claim = text.clone(),
            "MUSTER_OIDC_AGENCY_CLAIM" => oidc.agency_claim = text.clone(),
            "MUSTER_OIDC_UNIT_CLAIM" => oidc.unit_claim = text.clone(),
            "MUSTER_OIDC_ALGORITHMS" => {
                oidc.algorithms = text
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "MUSTER_OIDC_LEEWAY_S" => oidc.leeway_s = seconds()?,
            "MUSTER_OIDC_JWKS_REFRESH_S" => oidc.jwks_refresh_s = seconds()?,
            "MUSTER_OIDC_JWKS_MIN_REFRESH_S" => oidc.jwks_min_refresh_s = seconds()?,
            "MUSTER_OIDC_CA_CERT" => oidc.ca_cert = Some(PathBuf::from(value)),
            _ => bail!(
                "{key} is not a setting; the single sign-on variables are MUSTER_OIDC_ISSUER, \
                 MUSTER_OIDC_AUDIENCE, MUSTER_OIDC_NAME_CLAIM, MUSTER_OIDC_ROLES_CLAIM, \
                 MUSTER_OIDC_AGENCY_CLAIM, MUSTER_OIDC_UNIT_CLAIM, MUSTER_OIDC_ALGORITHMS, \
                 MUSTER_OIDC_LEEWAY_S, MUSTER_OIDC_JWKS_REFRESH_S, \
                 MUSTER_OIDC_JWKS_MIN_REFRESH_S, MUSTER_OIDC_CA_CERT"
            ),
        }
        Ok(())
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
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!(
                "tls_cert and tls_key go together (MUSTER_TLS_CERT, MUSTER_TLS_KEY): set both, or neither for no TLS"
            );
        }
        if let Some(oidc) = &self.oidc {
            oidc.check()?;
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

impl Config {
    /// The certificate and key files when TLS is configured.
    pub fn tls_files(&self) -> Option<muster_mobile::tls::CertificateFiles> {
        Some(muster_mobile::tls::CertificateFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    /// Refuses plaintext listeners that other machines reach: without TLS, the API's
    /// address `api` and, when the gateway runs, `gateway_bind` must be loopback, unless
    /// `tls_proxy` says a TLS-terminating proxy is in front.
    pub fn check_plaintext(&self, api: &str) -> anyhow::Result<()> {
        if self.tls_files().is_some() {
            return Ok(());
        }
        let remedy = "Set tls_cert and tls_key (MUSTER_TLS_CERT, MUSTER_TLS_KEY; \
                      ops/local-ca.sh makes a pair for trials), or tls_proxy = true \
                      (MUSTER_TLS_PROXY=true) when a TLS-terminating proxy is in front.";
        muster_mobile::tls::check_plaintext_bind("bind", api, self.tls_proxy, remedy)?;
        if self.token_secret.is_some() && self.gateway_bind != "off" {
            muster_mobile::tls::check_plaintext_bind(
                "gateway_bind",
                &self.gateway_bind,
                self.tls_proxy,
                remedy,
            )?;
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
    fn tls_settings_come_from_the_file_and_the_environment() {
        let mut c = Config::from_toml(
            "tls_cert = \"/etc/muster/chain.pem\"\ntls_key = \"/etc/muster/key.pem\"\n",
        )
        .unwrap();
        c.check().unwrap();
        assert_eq!(
            c.tls_files().map(|f| f.cert),
            Some(PathBuf::from("/etc/muster/chain.pem"))
        );
        c.apply_env([
            ("MUSTER_TLS_CERT".into(), "/run/chain.pem".into()),
            ("MUSTER_TLS_KEY".into(), "/run/key.pem".into()),
            ("MUSTER_TLS_PROXY".into(), "true".into()),
        ])
        .unwrap();
        assert_eq!(c.tls_key, Some(PathBuf::from("/run/key.pem")));
        assert!(c.tls_proxy);
    }

    #[test]
    fn bad_tls_settings_are_refused_with_what_is_wrong() {
        for (vars, expected, why) in [
            (
                vec![("MUSTER_TLS_CERT", "/c.pem")],
                "go together",
                "a certificate without its key",
            ),
            (
                vec![("MUSTER_TLS_KEY", "/k.pem")],
                "go together",
                "a key without its certificate",
            ),
            (
                vec![("MUSTER_TLS_PROXY", "maybe")],
                "true or false",
                "a proxy setting that is not a truth value",
            ),
        ] {
            let e = Config::default()
                .apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .expect_err(why)
                .to_string();
            assert!(e.contains(expected), "{why}: {e}");
        }
    }

    #[test]
    fn plaintext_listeners_other_machines_reach_need_tls_or_a_proxy() {
        let gateway = |bind: &str| Config {
            gateway_bind: bind.into(),
            token_secret: Some(TokenSecret::new("a-secret-of-more-than-thirty-two-bytes")),
            ..Config::default()
        };
        for (config, api, ok, why) in [
            (Config::default(), "127.0.0.1:8080", true, "loopback"),
            (Config::default(), "[::1]:8080", true, "IPv6 loopback"),
            (Config::default(), "0.0.0.0:8080", false, "every interface"),
            (Config::default(), "192.0.2.7:8080", false, "an interface"),
            (
                gateway("0.0.0.0:7450"),
                "127.0.0.1:8080",
                false,
                "a reachable gateway",
            ),
            (
                Config {
                    gateway_bind: "0.0.0.0:7450".into(),
                    ..Config::default()
                },
                "127.0.0.1:8080",
                true,
                "no gateway runs without a token secret",
            ),
            (gateway("off"), "127.0.0.1:8080", true, "the gateway is off"),
            (
                Config {
                    tls_proxy: true,
                    ..gateway("0.0.0.0:7450")
                },
                "0.0.0.0:8080",
                true,
                "a proxy terminates TLS",
            ),
            (
                Config {
                    tls_cert: Some("c.pem".into()),
                    tls_key: Some("k.pem".into()),
                    ..gateway("0.0.0.0:7450")
                },
                "0.0.0.0:8080",
                true,
                "TLS",
            ),
        ] {
            let got = config.check_plaintext(api);
            assert_eq!(got.is_ok(), ok, "{why}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains("tls_cert"), "{why}: {e}");
            }
        }
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
    fn single_sign_on_comes_from_the_file_and_the_environment() {
        let mut c = Config::from_toml(
            "[oidc]\nissuer = \"https://login.example.org/realms/dispatch\"\naudience = \"muster\"\nroles_claim = \"groups\"\n",
        )
        .unwrap();
        c.check().unwrap();
        let oidc = c.oidc.as_ref().unwrap();
        assert_eq!(oidc.roles_claim, "groups");
        assert_eq!(oidc.name_claim, "sub");
        assert_eq!(oidc.algorithms, ["RS256", "PS256", "ES256"]);
        c.apply_env([
            ("MUSTER_OIDC_ALGORITHMS".into(), "ES256, EdDSA".into()),
            ("MUSTER_OIDC_JWKS_MIN_REFRESH_S".into(), "60".into()),
            ("MUSTER_OIDC_AGENCY_CLAIM".into(), "org".into()),
        ])
        .unwrap();
        let oidc = c.oidc.as_ref().unwrap();
        assert_eq!(oidc.algorithms, ["ES256", "EdDSA"]);
        assert_eq!(oidc.jwks_min_refresh_s, 60);
        assert_eq!(oidc.agency_claim, "org");

        let mut c = Config::default();
        c.apply_env([
            ("MUSTER_OIDC_ISSUER".into(), "http://127.0.0.1:9000".into()),
            ("MUSTER_OIDC_AUDIENCE".into(), "muster".into()),
        ])
        .unwrap();
        assert_eq!(c.oidc.unwrap().issuer, "http://127.0.0.1:9000");
    }

    #[test]
    fn bad_single_sign_on_settings_are_refused_with_what_is_wrong() {
        for (vars, expected, why) in [
            (
                vec![("MUSTER_OIDC_AUDIENCE", "muster")],
                "oidc.issuer must be set",
                "an audience without an issuer",
            ),
            (
                vec![("MUSTER_OIDC_ISSUER", "https://login.example.org")],
                "oidc.audience must be set",
                "an issuer without an audience",
            ),
            (
                vec![
                    ("MUSTER_OIDC_ISSUER", "https://login.example.org"),
                    ("MUSTER_OIDC_AUDIENCE", "muster"),
                    ("MUSTER_OIDC_ALGORITHMS", "RS256,HS256"),
                ],
                "is not accepted",
                "a symmetric algorithm",
            ),
            (
                vec![("MUSTER_OIDC_LEEWAY_S", "soon")],
                "whole number",
                "leeway that is no number",
            ),
            (
                vec![("MUSTER_OIDC_ISSUR", "https://login.example.org")],
                "not a setting",
                "a misspelt variable",
            ),
        ] {
            let e = Config::default()
                .apply_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .expect_err(why)
                .to_string();
            assert!(e.contains(expected), "{why}: {e}");
        }
        let e = Config::from_toml("[oidc]\nissuer = \"https://x.example\"\naudiance = \"m\"\n")
            .expect_err("a misspelt key")
            .to_string();
        assert!(e.contains("audiance"), "{e}");
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
