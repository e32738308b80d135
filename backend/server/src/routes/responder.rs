//! The responder app's share of the server: the crew's phone app (static files from
//! `mobile-api/app/dist`) at `/responder/`, and where its gateway is.
//!
//! The app speaks protocol v1 (`mobile-api/PROTOCOL.md`) to the mobile gateway, which listens
//! on its own port: a page from this server opening `ws://<host>:<gateway port>` is another
//! origin. So the app's pages carry a content security policy whose `connect-src` names
//! exactly that one address besides `'self'` (the host name the page was loaded from, the
//! gateway's port and scheme), and the gateway takes upgrades from this server's own pages
//! ([`muster_mobile::origin::sibling`]). Nothing is proxied: the device's socket goes to the
//! gateway as every other device's does.
//!
//! Routes (none needs a token: the app holds the device token and shows it to no one):
//! - `GET /responder`: redirects to `/responder/`.
//! - `GET /responder/gateway.json`: `{"port": 7450, "tls": false}`, or 404 when the server
//!   runs no gateway.
//! - `GET /responder/<file>`: the app; unknown paths without an extension get `index.html`;
//!   a clear 404 page when the app is not built.

use std::path::{Component, Path, PathBuf};

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::error::ApiError;
use crate::security::CONTENT_SECURITY_POLICY;

/// The mobile gateway as the app needs to find it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct GatewayAddress {
    /// Its port, on the host name the app was loaded from.
    pub port: u16,
    /// Whether it speaks TLS (`wss://`).
    pub tls: bool,
}

/// What the responder routes share.
#[derive(Debug)]
pub struct ResponderState {
    dist: PathBuf,
    gateway: Option<GatewayAddress>,
}

impl ResponderState {
    /// State for the responder routes: the built app ([`dist_dir`]) and the gateway, if any.
    pub fn new(gateway: Option<GatewayAddress>) -> Self {
        Self {
            dist: dist_dir(),
            gateway,
        }
    }
}

/// The built app: `MUSTER_RESPONDER_DIST`, else `mobile-api/app/dist` of the source tree this
/// binary was built from, else `mobile-api/app/dist` under the current directory.
pub fn dist_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MUSTER_RESPONDER_DIST") {
        return PathBuf::from(dir);
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mobile-api/app");
    if built_from.join("package.json").exists() {
        built_from.join("dist")
    } else {
        PathBuf::from("mobile-api/app/dist")
    }
}

/// The host name of a `Host` header (`name`, `name:port`, `[v6]:port`), when it is made of
/// the characters a host name or address may have, so it can stand in a header.
fn host_name(host: &str) -> Option<&str> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (v6, _) = rest.split_once(']')?;
        if !v6
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        &host[..v6.len() + 2]
    } else {
        host.split(':').next()?
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    ok.then_some(name)
}

/// The app's content security policy: the server's own, with the gateway on this host name
/// added to `connect-src`. Without a gateway (or with a host header that is not a host
/// name), the server's own policy.
fn policy(host: Option<&str>, gateway: Option<GatewayAddress>) -> String {
    match (host.and_then(host_name), gateway) {
        (Some(name), Some(g)) => {
            let scheme = if g.tls { "wss" } else { "ws" };
            CONTENT_SECURITY_POLICY.replace(
                "connect-src 'self';",
                &format!("connect-src 'self' {scheme}://{name}:{};", g.port),
            )
        }
        _ => CONTENT_SECURITY_POLICY.to_owned(),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Responder app not built</title>\
<h1>The responder app is not built</h1>\
<p>Run <code>npm ci &amp;&amp; npm run build</code> in <code>mobile-api/app</code>, \
or point <code>MUSTER_RESPONDER_DIST</code> at a built copy, then reload.</p>";

async fn redirect() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header((header::LOCATION, "/responder/"))
        .finish()
}

async fn gateway(state: web::Data<ResponderState>) -> Result<HttpResponse, ApiError> {
    match state.gateway {
        Some(g) => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .json(g)),
        None => Err(ApiError::not_found(
            "this server runs no mobile gateway (set token_secret and gateway_bind)",
        )),
    }
}

async fn static_file(req: HttpRequest, state: web::Data<ResponderState>) -> HttpResponse {
    let raw = req.match_info().query("tail");
    let rel = Path::new(raw);
    let csp = policy(req.connection_info().host().into(), state.gateway);
    let answer = |status: StatusCode, kind: &str, cache: &str, body: Vec<u8>| {
        HttpResponse::build(status)
            .content_type(kind.to_owned())
            .insert_header((header::CACHE_CONTROL, cache.to_owned()))
            .insert_header((header::CONTENT_SECURITY_POLICY, csp.clone()))
            .body(body)
    };
    let html = "text/html; charset=utf-8";
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return answer(
            StatusCode::NOT_FOUND,
            html,
            "no-cache",
            b"no such file".to_vec(),
        );
    }
    let mut path = state.dist.join(rel);
    if raw.is_empty() || (!path.is_file() && rel.extension().is_none()) {
        path = state.dist.join("index.html");
    }
    match tokio::fs::read(&path).await {
        Ok(body) => {
            let cache = if raw.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            answer(StatusCode::OK, content_type(&path), cache, body)
        }
        Err(_) if path.ends_with("index.html") => answer(
            StatusCode::NOT_FOUND,
            html,
            "no-store",
            NOT_BUILT.as_bytes().to_vec(),
        ),
        Err(_) => answer(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no-cache",
            format!("no file {raw}").into_bytes(),
        ),
    }
}

/// Mounts the responder routes; mount before the wall display's catch-all.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/responder", web::get().to(redirect))
        .route("/responder/gateway.json", web::get().to(gateway))
        .route("/responder/{tail:.*}", web::get().to(static_file));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_that_cannot_stand_in_a_policy_are_refused() {
        let cases = [
            (
                "muster.example:8080",
                Some("muster.example"),
                "name and port",
            ),
            ("127.0.0.1:8080", Some("127.0.0.1"), "an address"),
            ("[::1]:8080", Some("[::1]"), "an IPv6 address"),
            ("muster.example", Some("muster.example"), "no port"),
            ("a; script-src *", None, "a directive smuggled in"),
            ("a b", None, "a space"),
            ("[::1 x]:80", None, "junk in brackets"),
            ("", None, "empty"),
            (":8080", None, "no name"),
        ];
        for (host, expected, why) in cases {
            assert_eq!(host_name(host), expected, "{why}: {host:?}");
        }
    }

    #[test]
    fn the_policy_adds_the_gateway_on_the_pages_host_only() {
        let g = Some(GatewayAddress {
            port: 7450,
            tls: false,
        });
        let p = policy(Some("muster.example:8080"), g);
        assert!(
            p.contains("connect-src 'self' ws://muster.example:7450;"),
            "{p}"
        );
        assert!(p.contains("script-src 'self';"));
        let tls = policy(
            Some("m.example"),
            Some(GatewayAddress {
                port: 7450,
                tls: true,
            }),
        );
        assert!(
            tls.contains("connect-src 'self' wss://m.example:7450;"),
            "{tls}"
        );
        assert_eq!(policy(Some("x y"), g), CONTENT_SECURITY_POLICY);
        assert_eq!(policy(Some("m.example"), None), CONTENT_SECURITY_POLICY);
        assert!(CONTENT_SECURITY_POLICY.contains("connect-src 'self';"));
    }
}
