//! Controls at the edge of the operator API, beside authentication ([`crate::auth`]):
//!
//! - [`headers`]: security headers on every answer (a content security policy with no inline
//!   script and no framing, `nosniff`, no referrer) and `Cache-Control: no-store` on every
//!   API answer without a cache policy of its own, since API answers may hold caller details.
//! - [`Lockout`]: clients (by peer address) that present unknown tokens too often are answered
//!   429 with `Retry-After` for a while (`lockout_failures` in the configuration), and every refused token is logged with the peer
//!   address. A known token is always taken: a dispatch centre behind one address must not be
//!   locked out by one misconfigured screen, and tokens are 128-bit random, beyond guessing.
//! - [`origin_allowed`]: the Origin check of websocket upgrades (the wall feed; the mobile
//!   gateway has its own copy of the rule).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;

/// The content security policy of every answer: the wall display's own scripts, styles,
/// images and websocket only; no inline script, no plugins, no framing. Inline styles are
/// allowed: the page and its map library set `style` attributes (styles cannot run code).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Adds the security headers to every answer, and logs each answer at debug level (method,
/// path and status; never the query or a body).
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/") || req.path() == "/readyz";
    // The path only: a query may hold a token (the feed's) and is never logged. Copied only
    // when the request log is on.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (req.method().clone(), req.path().to_owned()));
    let mut res = next.call(req).await?;
    if let Some((method, path)) = logged {
        tracing::debug!(%method, %path, status = res.status().as_u16(), "answered");
    }
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    Ok(res)
}

/// Unknown tokens per client within [`Lockout::WINDOW`] before it is locked out, by default
/// (`lockout_failures` in the configuration).
pub const DEFAULT_LOCKOUT_FAILURES: u32 = 20;

/// Clients that present unknown tokens too often, by peer address.
#[derive(Debug)]
pub struct Lockout {
    clients: Mutex<HashMap<IpAddr, Failures>>,
    max_failures: u32,
}

impl Default for Lockout {
    fn default() -> Self {
        Self::new(DEFAULT_LOCKOUT_FAILURES)
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    locked_until: Option<Instant>,
}

impl Lockout {
    /// The window in which [`MAX_FAILURES`] failures lock a client out.
    pub const WINDOW: Duration = Duration::from_secs(60);
    /// How long a client stays locked out.
    pub const LOCK: Duration = Duration::from_secs(60);
    /// Clients remembered at most; past it, entries whose window has passed are dropped.
    const MAX_CLIENTS: usize = 65_536;

    /// A lockout after `max_failures` unknown tokens within [`Lockout::WINDOW`].
    pub fn new(max_failures: u32) -> Self {
        Self {
            clients: Mutex::default(),
            max_failures: max_failures.max(1),
        }
    }

    /// Whether `client` is locked out now: the seconds it has to wait.
    pub fn locked(&self, client: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let until = clients.get(&client)?.locked_until?;
        (until > now).then(|| (until - now).as_secs().max(1))
    }

    /// Records a refused token from `client`; answers the seconds it is locked out for when
    /// this failure locked it.
    pub fn failed(&self, client: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= Self::MAX_CLIENTS {
            clients.retain(|_, f| {
                now.duration_since(f.since) < Self::WINDOW
                    || f.locked_until.is_some_and(|u| u > now)
            });
        }
        let f = clients.entry(client).or_insert(Failures {
            since: now,
            count: 0,
            locked_until: None,
        });
        if now.duration_since(f.since) >= Self::WINDOW && f.locked_until.is_none_or(|u| u <= now) {
            *f = Failures {
                since: now,
                count: 0,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.max_failures && f.locked_until.is_none_or(|u| u <= now) {
            f.locked_until = Some(now + Self::LOCK);
            return Some(Self::LOCK.as_secs());
        }
        None
    }
}

/// The origins besides its own that may open the server's websockets (`allowed_origins` in
/// the configuration).
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins(pub Vec<String>);

/// Whether a websocket upgrade may go on, by [`muster_mobile::origin::allowed`]: no
/// `Origin` (not a browser), the request's own host, or an origin in `allowed`.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let text = |name| {
        headers
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap_or("null"))
    };
    muster_mobile::origin::allowed(text(header::ORIGIN), text(header::HOST), allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_locked_out_after_repeated_failures_and_others_are_not() {
        let lockout = Lockout::default();
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 1..DEFAULT_LOCKOUT_FAILURES {
            assert_eq!(lockout.failed(attacker), None);
            assert_eq!(lockout.locked(attacker), None);
        }
        assert_eq!(lockout.failed(attacker), Some(Lockout::LOCK.as_secs()));
        let wait = lockout.locked(attacker).expect("locked");
        assert!(wait >= 1 && wait <= Lockout::LOCK.as_secs());
        assert_eq!(lockout.locked(other), None);
    }
}
