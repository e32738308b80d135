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
