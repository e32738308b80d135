//! The mobile gateway: accepts websocket connections on a listener the caller bound, runs a
//! [`session`](crate::session) for each, one [`Hub`] reading `$all` for all of them, and the
//! [`AckWatchdog`]. Stops when the shutdown future resolves: sessions get close code 1001 and
//! the gateway waits for them to end. With [`GatewayConfig::tls`] every connection speaks
//! TLS (`wss://`) before the websocket handshake.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use muster_store::EventStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::http::header::{HOST, HeaderValue, ORIGIN};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::alerts::AckWatchdog;
use crate::delivery::Hub;
use crate::limits::{HELLO_TIMEOUT, MAX_CONNECTIONS, MAX_MESSAGE_BYTES};
use crate::session::{GatewayStats, SessionContext, run_session_from};
use crate::token::TokenVerifier;

/// Default time a crew has to acknowledge a task before the operators are alerted.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of the read buffer of each connection; messages larger than this still arrive (the
/// buffer grows up to [`MAX_MESSAGE_BYTES`]).
pub const READ_BUFFER_BYTES: usize = 4096;

/// How the gateway behaves.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Time a crew has to acknowledge a task; `None` runs no watchdog (another node does).
    pub ack_timeout: Option<Duration>,
    /// Most connections at once.
    pub max_connections: usize,
    /// Browser origins besides the gateway's own address that may connect
    /// ([`crate::origin::allowed`]).
    pub allowed_origins: Vec<String>,
    /// The port of the operator server beside this gateway: its pages on the same host name
    /// (the responder app) may connect ([`crate::origin::sibling`]).
    pub web_port: Option<u16>,
    /// Forged or malformed tokens from one address within a minute before it is locked out
    /// ([`crate::lockout::Lockout`]).
    pub lockout_failures: u32,
    /// This node's name, recorded with the devices' commands.
    pub node: Option<String>,
    /// TLS for every connection ([`crate::tls::server_config`]); `None`: plain `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            ack_timeout: Some(DEFAULT_ACK_TIMEOUT),
            max_connections: MAX_CONNECTIONS,
            allowed_origins: Vec::new(),
            web_port: None,
            lockout_failures: crate::lockout::DEFAULT_LOCKOUT_FAILURES,
            node: None,
            tls: None,
        }
    }
}

/// The websocket settings of every connection: the size limits (close 1009 above them) and
/// small buffers, so that idle connections cost little memory.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
}

/// Runs the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn EventStore>,
    verifier: Arc<dyn TokenVerifier>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Arc<GatewayStats> {
    let stats = Arc::new(GatewayStats::default());
    run_with_stats(listener, store, verifier, config, stats.clone(), shutdown).await;
    stats
}

/// [`run`], counting into `stats` (which the caller can read while it runs).
pub async fn run_with_stats(
    listener: TcpListener,
    store: Arc<dyn EventStore>,
    verifier: Arc<dyn TokenVerifier>,
    config: GatewayConfig,
    stats: Arc<GatewayStats>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (hub, subscription) = Hub::new(&store);
    let hub_task = tokio::spawn(hub.clone().run(subscription, wait_stop(stop_rx.clone())));
    let watchdog = config.ack_timeout.map(|timeout| {
        tokio::spawn(AckWatchdog::new(store.clone(), timeout).run(wait_stop(stop_rx.clone())))
    });
    let ctx = Arc::new(SessionContext {
        store,
        verifier,
        hub,
        stats: stats.clone(),
        lockout: Arc::new(crate::lockout::Lockout::new(config.lockout_failures)),
        node: config.node,
    });
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let allowed_origins = Arc::new(Origins {
        list: config.allowed_origins,
        web_port: config.web_port,
    });
    let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let stop = stop_rx.clone();
        let origins = allowed_origins.clone();
        let tls = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(tls) = tls else {
                return serve_connection(tcp, peer, ctx, stop, &origins).await;
            };
            // The TLS handshake has as long as the websocket upgrade after it.
            match tokio::time::timeout(HELLO_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => serve_connection(stream, peer, ctx, stop, &origins).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every session holds a slot until it ends.
    let _ = slots.acquire_many(config.max_connections as u32).await;
    let _ = hub_task.await;
    if let Some(w) = watchdog {
        let _ = w.await;
    }
}

/// The browser origins a connection may come from.
#[derive(Debug)]
struct Origins {
    list: Vec<String>,
    web_port: Option<u16>,
}

/// One connection, plain or TLS: the websocket upgrade (with the Origin check), then a
/// session.
async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    ctx: Arc<SessionContext>,
    stop: watch::Receiver<bool>,
    origins: &Origins,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The refusal's type is tungstenite's, as its handshake callback takes it.
    #[allow(clippy::result_large_err)]
    let check_origin = |req: &Request, res: Response| {
        let text = |name| {
            req.headers()
                .get(name)
                .map(|v: &HeaderValue| v.to_str().unwrap_or("null"))
        };
        let (origin, host) = (text(ORIGIN), text(HOST));
        if crate::origin::allowed(origin, host, &origins.list)
            || origins
                .web_port
                .is_some_and(|port| crate::origin::sibling(origin, host, port))
        {
            return Ok(res);
        }
        tracing::warn!(%peer, "a gateway upgrade from another site was refused");
        let mut refusal = ErrorResponse::new(Some(
            "this page's origin may not open the gateway; add it to allowed_origins".to_owned(),
        ));
        *refusal.status_mut() = StatusCode::FORBIDDEN;
        Err(refusal)
    };
    let handshake = tokio::time::timeout(
        HELLO_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(
            stream,
            check_origin,
            Some(websocket_config()),
        ),
    )
    .await;
    let ws = match handshake {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "websocket handshake timed out");
            return;
        }
    };
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let (sink, stream) = ws.split();
    let end = run_session_from(Some(peer.ip()), stream, sink, ctx.clone(), stop).await;
    ctx.stats.connections.fetch_sub(1, Ordering::Relaxed);
    if end.code == Some(crate::protocol::close::AUTH_FAILED) {
        // A refused or expired device token: logged with the peer, never the token.
        tracing::warn!(%peer, unit = ?end.unit, reason = %end.reason, "device authentication refused");
    } else {
        tracing::debug!(%peer, unit = ?end.unit, code = ?end.code, reason = %end.reason, "session ended");
    }
}

async fn wait_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
