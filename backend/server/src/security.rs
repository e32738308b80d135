//! Controls at the edge of the operator API, beside authentication ([`crate::auth`]):
//!
//! - [`headers`]: security headers on every answer (a content security policy with no inline
//!   script and no framing, `nosniff`, no referrer) and `Cache-Control: no-store` on every
//!   API answer without a cache policy of its own, since API answers may hold caller details;
//!   `Strict-Transport-Security` on answers over TLS.
//! - [`Lockout`]: clients (by peer address) that present unknown tokens too often are answered
//!   429 with `Retry-After` for a while (`lockout_failures` in the configuration), and every refused token is logged with the peer
//!   address. A known token is always taken: a dispatch centre behind one address must not be
//!   locked out by one misconfigured screen, and tokens are 128-bit random, beyond guessing.
//! - [`origin_allowed`]: the Origin check of websocket upgrades (the wall feed; the mobile
//!   gateway has its own copy of the rule).

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

/// `Strict-Transport-Security` on answers over TLS: browsers use https only for a year.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds the security headers to every answer, and logs each answer at debug level (method,
/// path and status; never the query or a body).
pub async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let api = req.path().starts_with("/api/") || req.path() == "/readyz";
    let tls = req.app_config().secure();
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
    if tls {
        set(
            h,
            header::STRICT_TRANSPORT_SECURITY,
            STRICT_TRANSPORT_SECURITY,
        );
    }
    Ok(res)
}

pub use muster_mobile::lockout::{DEFAULT_LOCKOUT_FAILURES, Lockout};

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

/// Reads whose cost grows with the log (`/api/wall/at` folds it up to a moment; the
/// response-time statistics read the day): a few at a time for the whole server, and a rate
/// per caller, so that one screen or script cannot take the processors from dispatch.
#[derive(Debug)]
pub struct ExpensiveReads {
    slots: tokio::sync::Semaphore,
    callers: std::sync::Mutex<std::collections::HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: std::time::Instant,
}

impl ExpensiveReads {
    /// Expensive reads a caller may make a second, on average.
    pub const PER_SECOND: f64 = 10.0;
    /// And in a burst.
    pub const BURST: f64 = 30.0;
    /// How long a read waits for one of the server's slots before 503.
    pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    /// Callers remembered at most; past it, full buckets are dropped.
    const MAX_CALLERS: usize = 65_536;

    /// `slots` such reads at once for the whole server (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(slots.max(1)),
            callers: std::sync::Mutex::default(),
        }
    }

    /// As many at once as the machine has processors.
    pub fn per_processor() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Admits one read by `caller`: a slot to hold while it runs, 429 with `Retry-After`
    /// over the caller's rate, 503 when no slot frees within [`Self::WAIT`].
    pub async fn admit(
        &self,
        caller: &str,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, crate::error::ApiError> {
        self.take(caller, std::time::Instant::now())?;
        match tokio::time::timeout(Self::WAIT, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(crate::error::ApiError::unavailable(
                "the server is busy with other long reads; try again in a moment",
            )
            .with_retry_after(1)),
        }
    }

    fn take(&self, caller: &str, now: std::time::Instant) -> Result<(), crate::error::ApiError> {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        if callers.len() >= Self::MAX_CALLERS {
            callers.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * Self::PER_SECOND < Self::BURST
            });
        }
        let b = callers.entry(caller.to_owned()).or_insert(Bucket {
            tokens: Self::BURST,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * Self::PER_SECOND).min(Self::BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / Self::PER_SECOND).ceil().max(1.0) as u64;
        Err(crate::error::ApiError::too_many(
            format!(
                "over {} long reads a second from this user; try again in {wait} s",
                Self::PER_SECOND
            ),
            wait,
        ))
    }
}

/// Requests handled at once, at most (`max_concurrent_requests` in the configuration).
#[derive(Debug)]
pub struct RequestSlots(pub tokio::sync::Semaphore);

/// Default of `max_concurrent_requests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;

/// Answers 503 with `Retry-After` when [`RequestSlots`] are all taken, instead of queueing
/// without bound. Health checks always pass.
pub async fn concurrency(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let health = matches!(req.path(), "/healthz" | "/readyz");
    let slots = req
        .app_data::<actix_web::web::Data<RequestSlots>>()
        .cloned();
    let permit = match (&slots, health) {
        (Some(slots), false) => match slots.0.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                let e = crate::error::ApiError::unavailable(
                    "the server is handling as many requests as it takes at once; try again in a moment",
                )
                .with_retry_after(1);
                let res = actix_web::ResponseError::error_response(&e);
                return Ok(req.into_response(res).map_into_right_body());
            }
        },
        _ => None,
    };
    let res = next.call(req).await?;
    drop(permit);
    Ok(res.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_rate_waits_and_others_do_not() {
        let reads = ExpensiveReads::new(1);
        let now = std::time::Instant::now();
        for i in 0..ExpensiveReads::BURST as usize {
            assert!(reads.take("wall-1", now).is_ok(), "read {i} of the burst");
        }
        let e = reads.take("wall-1", now).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert_eq!(e.retry_after(), Some(1));
        assert!(reads.take("wall-2", now).is_ok());
        // A second later, ten more.
        let later = now + std::time::Duration::from_secs(1);
        for _ in 0..ExpensiveReads::PER_SECOND as usize {
            assert!(reads.take("wall-1", later).is_ok());
        }
        assert!(reads.take("wall-1", later).is_err());
    }
}
