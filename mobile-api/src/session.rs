//! One device connection, from `hello` to close. Generic over the message [`Stream`] and
//! [`Sink`] so that tests drive it through channels; the gateway hands it the two halves of
//! a websocket.
//!
//! 1. The first message must be a `hello` (within [`HELLO_TIMEOUT`]) with a valid token;
//!    otherwise the device gets an error message and a close code saying why.
//! 2. The connection registers with the [`Hub`], then reads what the device missed
//!    ([`delivery::start`]): a replay after its last sequence number, or a resync snapshot.
//!    Live events that the replay already covered are skipped by revision.
//! 3. Then it serves commands, delivers live task events, and pings; it closes on silence
//!    ([`IDLE_TIMEOUT`]), on a full queue, on an oversized message, or on shutdown.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use futures::{Sink, SinkExt, Stream, StreamExt};
use muster_core::UnitId;
use muster_store::EventStore;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use uuid::Uuid;

use crate::commands::UnitCommands;
use crate::delivery::{self, Hub, Start};
use crate::limits::{
    HELLO_TIMEOUT, IDLE_TIMEOUT, MAX_MESSAGE_BYTES, PING_INTERVAL, RATE_BURST, RATE_PER_SEC,
    RATE_STRIKES_BEFORE_CLOSE, WRITE_TIMEOUT,
};
use crate::lockout::Lockout;
use crate::protocol::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage, close, parse_client_message,
};
use crate::token::{TokenError, TokenVerifier};

/// Counters of one gateway, shared by its sessions.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections authenticated since start.
    pub sessions: AtomicU64,
    /// Task deliveries sent.
    pub deliveries: AtomicU64,
    /// Commands carried out (applied, duplicate or unchanged).
    pub commands: AtomicU64,
}

/// What every session of a gateway shares.
pub struct SessionContext {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// Who may connect.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Live task events.
    pub hub: Arc<Hub>,
    /// Counters.
    pub stats: Arc<GatewayStats>,
    /// Peers that presented forged or malformed tokens too often.
    pub lockout: Arc<Lockout>,
    /// This node's name, recorded with the devices' commands.
    pub node: Option<String>,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionEnd {
    /// The close code the gateway sent, if it closed the connection.
    pub code: Option<u16>,
    /// Why, in words.
    pub reason: String,
    /// The unit, if the device authenticated.
    pub unit: Option<UnitId>,
}

/// A token bucket: [`RATE_PER_SEC`] messages a second on average, bursts of [`RATE_BURST`].
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    fn new() -> Self {
        Self {
            tokens: f64::from(RATE_BURST),
            at: Instant::now(),
        }
    }

    /// Takes a token; when there is none, how long until there is one.
    fn take(&mut self) -> Result<(), std::time::Duration> {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(RATE_PER_SEC);
        self.tokens = (self.tokens + refill).min(f64::from(RATE_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / f64::from(RATE_PER_SEC);
            Err(std::time::Duration::from_secs_f64(wait))
        }
    }
}

struct Conn<Si> {
    sink: Si,
    unit: Option<UnitId>,
}

impl<Si> Conn<Si>
where
    Si: Sink<Message> + Unpin,
    Si::Error: fmt::Display,
{
    async fn send(&mut self, message: &ServerMessage) -> Result<(), SessionEnd> {
        self.send_raw(Message::text(message.to_json())).await
    }

    async fn send_raw(&mut self, message: Message) -> Result<(), SessionEnd> {
        match timeout(WRITE_TIMEOUT, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.end(None, format!("could not write to the device: {e}"))),
            Err(_) => Err(self.end(
                None,
                format!("the device did not read for {} s", WRITE_TIMEOUT.as_secs()),
            )),
        }
    }

    fn end(&self, code: Option<u16>, reason: impl Into<String>) -> SessionEnd {
        SessionEnd {
            code,
            reason: reason.into(),
            unit: self.unit,
        }
    }

    /// Sends a close frame (best effort) and ends the session.
    async fn close(&mut self, code: u16, reason: &str) -> SessionEnd {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = timeout(WRITE_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
        let _ = timeout(WRITE_TIMEOUT, self.sink.close()).await;
        self.end(Some(code), reason)
    }

    /// Sends an error message, then closes.
    async fn refuse(&mut self, error: ServerMessage, code: u16, reason: &str) -> SessionEnd {
        if let Err(end) = self.send(&error).await {
            return end;
        }
        self.close(code, reason).await
    }

    /// Refuses the device's token: the `error` with this code, then close 4003 (get a new
    /// token; do not retry with this one).
    async fn refuse_token(&mut self, code: ErrorCode, reason: String) -> SessionEnd {
        self.refuse(
            ServerMessage::error(code, reason.clone()),
            close::AUTH_FAILED,
            &reason,
        )
        .await
    }
}

/// Why a session opened with a revoked token is refused or closed.
const REVOKED_REASON: &str = "the device token was revoked";

fn too_big_reason() -> String {
    format!("message over {MAX_MESSAGE_BYTES} bytes")
}

/// Runs one device connection to its end.
pub async fn run_session<St, Si>(
    stream: St,
    sink: Si,
    ctx: Arc<SessionContext>,
    shutdown: watch::Receiver<bool>,
) -> SessionEnd
where
    St: Stream<Item = Result<Message, WsError>> + Unpin,
    Si: Sink<Message> + Unpin,
    Si::Error: fmt::Display,
{
    run_session_from(None, stream, sink, ctx, shutdown).await
}

/// [`run_session`] for a device at `peer`: forged or malformed tokens count towards the
/// peer's lockout ([`SessionContext::lockout`]), and a locked-out peer's refused tokens are
/// answered `rate_limited` and close 1013 instead of `auth_failed`.
pub async fn run_session_from<St, Si>(
    peer: Option<IpAddr>,
    mut stream: St,
    sink: Si,
    ctx: Arc<SessionContext>,
    mut shutdown: watch::Receiver<bool>,
) -> SessionEnd
where
    St: Stream<Item = Result<Message, WsError>> + Unpin,
    Si: Sink<Message> + Unpin,
    Si::Error: fmt::Display,
{
    let mut conn = Conn { sink, unit: None };
    // 1. hello
    let hello_deadline = Instant::now() + HELLO_TIMEOUT;
    let hello = loop {
        let frame = match timeout_at(hello_deadline, stream.next()).await {
            Err(_) => {
                let reason = format!("no hello within {} s", HELLO_TIMEOUT.as_secs());
                return conn
                    .refuse(
                        ServerMessage::error(ErrorCode::HelloExpected, reason.clone()),
                        close::POLICY,
                        &reason,
                    )
                    .await;
            }
            Ok(None) => return conn.end(None, "the device went away before hello"),
            Ok(Some(frame)) => frame,
        };
        match frame {
            Ok(Message::Text(text)) => match parse_client_message(&text) {
                Ok(ClientMessage::Hello {
                    token,
                    unit,
                    resume_after,
                    ..
                }) => break (token, unit, resume_after),
                Ok(_) => {
                    let reason = "the first message must be hello";
                    return conn
                        .refuse(
                            ServerMessage::error(ErrorCode::HelloExpected, reason),
                            close::HELLO_EXPECTED,
                            reason,
                        )
                        .await;
                }
                Err(e) => {
                    let code = if e.code == ErrorCode::UnsupportedVersion {
                        close::UNSUPPORTED_VERSION
                    } else {
                        close::HELLO_EXPECTED
                    };
                    let reason = if e.code == ErrorCode::UnsupportedVersion {
                        format!("protocol version {PROTOCOL_VERSION} only")
                    } else {
                        "the first message must be a valid hello".to_owned()
                    };
                    return conn.refuse(e.to_message(), code, &reason).await;
                }
            },
            Ok(Message::Binary(_)) => {
                let reason = "binary frames are not part of the protocol";
                return conn
                    .refuse(
                        ServerMessage::error(ErrorCode::BinaryNotSupported, reason),
                        close::HELLO_EXPECTED,
                        reason,
                    )
                    .await;
            }
            Ok(Message::Close(_)) => return conn.end(None, "the device closed before hello"),
            Ok(_) => continue,
            Err(WsError::Capacity(_)) => {
                return conn.close(close::TOO_BIG, &too_big_reason()).await;
            }
            Err(e) => return conn.end(None, format!("transport error before hello: {e}")),
        }
    };
    let (token, claimed_unit, resume_after) = hello;
    let (unit, token_id, token_expires_at) = match ctx.verifier.verify(&token, Utc::now()) {
        Ok(v) => (v.unit, v.token_id, v.expires_at),
        Err(e) => {
            if let Some(peer) = peer {
                if let Some(wait) = ctx.lockout.locked(peer) {
                    let reason =
                        format!("too many refused tokens from this address; try again in {wait} s");
                    let error = ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        message: reason.clone(),
                        key: None,
                        retry_after_ms: Some(wait * 1000),
                    };
                    return conn.refuse(error, close::TRY_AGAIN_LATER, &reason).await;
                }
                // A forgery or a guess counts; an expired token is a device that was away.
                if matches!(e, TokenError::Malformed(_) | TokenError::BadSignature)
                    && let Some(wait) = ctx.lockout.failed(peer)
                {
                    tracing::warn!(%peer, "locked out of the gateway for {wait} s after repeated refused tokens");
                }
            }
            return conn
                .refuse_token(ErrorCode::AuthFailed, e.to_string())
                .await;
        }
    };
    if let Some(claimed) = claimed_unit
        && claimed != unit
    {
        let reason = format!("the token is for unit {unit}, not for unit {claimed}");
        return conn.refuse_token(ErrorCode::Forbidden, reason).await;
    }
    conn.unit = Some(unit);
    ctx.stats.sessions.fetch_add(1, Ordering::Relaxed);

    // 2. catch up, then live. Registered before the token's revocations are read, so that
    // one committed after the read still reaches this session through the hub.
    let mut registration = ctx.hub.register(unit);
    match delivery::device_state(ctx.store.as_ref(), unit).await {
        Ok(device) if device.is_revoked(token_id) => {
            return conn
                .refuse_token(ErrorCode::AuthFailed, REVOKED_REASON.to_owned())
                .await;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, %unit, "could not read the unit's device tokens");
            return conn
                .refuse(
                    ServerMessage::error(ErrorCode::Internal, "the event store is unavailable"),
                    close::INTERNAL,
                    "the event store is unavailable",
                )
                .await;
        }
    }
    let start = match delivery::start(ctx.store.as_ref(), unit, resume_after).await {
        Ok(start) => start,
        Err(e) => {
            tracing::error!(error = %e, %unit, "could not read the unit's stream");
            return conn
                .refuse(
                    ServerMessage::error(ErrorCode::Internal, "the event store is unavailable"),
                    close::INTERNAL,
                    "the event store is unavailable",
                )
                .await;
        }
    };
    // The device's commands, and the audit of what it is shown, carry where it is from.
    let mut commands = UnitCommands::new(ctx.store.clone(), unit).with_origin(
        peer,
        ctx.node.clone(),
        Some(token_id),
    );
    let welcome = ServerMessage::Welcome {
        v: PROTOCOL_VERSION,
        unit,
        session: Uuid::now_v7(),
        heartbeat_secs: PING_INTERVAL.as_secs(),
        max_message_bytes: MAX_MESSAGE_BYTES,
    };
    if let Err(end) = conn.send(&welcome).await {
        return end;
    }
    // The next unit stream revision the device has not been given.
    tracing::trace!(%unit, ?resume_after, resync = matches!(start, Start::Resync { .. }), "session start");
    let mut watermark = match start {
        Start::Replay { events, next } => {
            for recorded in &events {
                if let Err(end) = deliver(&mut conn, &ctx, &commands, recorded).await {
                    return end;
                }
            }
            next
        }
        Start::Resync { seq, snapshot } => {
            let resync = ServerMessage::Resync { seq, snapshot };
            if let Err(end) = audited(&mut conn, &ctx, &commands, &resync).await {
                return end;
            }
            if let Err(end) = conn.send(&resync).await {
                return end;
            }
            seq
        }
    };

    // 3. serve
    let mut rate = RateLimit::new();
    let mut strikes = 0u32;
    let mut last_heard = Instant::now();
    let mut acked = 0u64;
    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The session lasts as long as its token: then the device must come back with a new one.
    let token_expiry = Instant::now()
        + (token_expires_at - Utc::now())
            .to_std()
            .unwrap_or(std::time::Duration::ZERO)
            .min(std::time::Duration::from_secs(366 * 24 * 3600));
    loop {
        tokio::select! {
            biased;
            _ = stopping(&mut shutdown) => {
                return conn.close(close::GOING_AWAY, "the gateway is shutting down").await;
            }
            () = tokio::time::sleep_until(token_expiry) => {
                let reason = format!("the device token expired at {token_expires_at}");
                return conn.refuse_token(ErrorCode::AuthFailed, reason).await;
            }
            frame = stream.next() => {
                last_heard = Instant::now();
                let text = match frame {
                    None => return conn.end(None, "the device went away"),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let e = ServerMessage::error(
                            ErrorCode::BinaryNotSupported,
                            "binary frames are not part of the protocol; send JSON text",
                        );
                        if let Err(end) = conn.send(&e).await {
                            return end;
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) => return conn.end(None, "the device closed"),
                    Some(Ok(_)) => continue,
                    Some(Err(WsError::Capacity(_))) => {
                        return conn.close(close::TOO_BIG, &too_big_reason()).await;
                    }
                    Some(Err(e)) => return conn.end(None, format!("transport error: {e}")),
                };
                let parsed = parse_client_message(&text);
                // Acknowledgements cost nothing but a comparison; everything else counts.
                let counted = !matches!(parsed, Ok(ClientMessage::Ack { .. }));
                if counted && let Err(wait) = rate.take() {
                    strikes += 1;
                    if strikes > RATE_STRIKES_BEFORE_CLOSE {
                        return conn
                            .close(close::POLICY, "too many messages over the rate limit")
                            .await;
                    }
                    let key = parsed
                        .ok()
                        .and_then(|m| m.key().map(|k| k.as_str().to_owned()));
                    let e = ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        message: format!(
                            "over {RATE_PER_SEC} messages a second; the message was dropped"
                        ),
                        key,
                        retry_after_ms: Some(wait.as_millis().max(1) as u64),
                    };
                    if let Err(end) = conn.send(&e).await {
                        return end;
                    }
                    continue;
                }
                let reply = match parsed {
                    Err(e) => e.to_message(),
                    Ok(ClientMessage::Hello { .. }) => ServerMessage::error(
                        ErrorCode::HelloExpected,
                        "hello was already accepted on this connection",
                    ),
                    Ok(ClientMessage::Ack { seq }) => {
                        acked = acked.max(seq);
                        tracing::trace!(%unit, acked, "delivery acknowledged");
                        continue;
                    }
                    Ok(ClientMessage::Ping { nonce }) => ServerMessage::Pong { nonce },
                    Ok(command) => {
                        let key = command.key().cloned();
                        match commands.execute(&command).await {
                            Ok(done) => {
                                ctx.stats.commands.fetch_add(1, Ordering::Relaxed);
                                match key {
                                    Some(key) => ServerMessage::Done {
                                        key,
                                        outcome: done.outcome,
                                        incident: done.incident,
                                    },
                                    None => continue,
                                }
                            }
                            Err(e) => ServerMessage::error_for(
                                e.code,
                                e.message,
                                key.map(|k| k.as_str().to_owned()),
                            ),
                        }
                    }
                };
                if let Err(end) = conn.send(&reply).await {
                    return end;
                }
            }
            event = registration.events.recv() => {
                let Some(recorded) = event else {
                    if ctx.hub.is_stopped() {
                        return conn
                            .close(close::INTERNAL, "the gateway stopped following the event store")
                            .await;
                    }
                    return conn
                        .close(
                            close::TRY_AGAIN_LATER,
                            "deliveries queued up faster than the device read them; reconnect and resume",
                        )
                        .await;
                };
                if recorded.event_type == delivery::REVOKED_TYPE {
                    if delivery::revoked_token(&recorded) == Some(token_id) {
                        return conn
                            .refuse_token(ErrorCode::AuthFailed, REVOKED_REASON.to_owned())
                            .await;
                    }
                    continue;
                }
                if recorded.revision < watermark {
                    tracing::trace!(%unit, revision = recorded.revision, watermark, "live event already replayed");
                    continue;
                }
                tracing::trace!(%unit, revision = recorded.revision, "live delivery");
                watermark = recorded.revision + 1;
                if let Err(end) = deliver(&mut conn, &ctx, &commands, &recorded).await {
                    return end;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= IDLE_TIMEOUT {
                    let reason = format!("nothing heard for {} s", IDLE_TIMEOUT.as_secs());
                    return conn.close(close::POLICY, &reason).await;
                }
                if let Err(end) = conn.send_raw(Message::Ping(Vec::new().into())).await {
                    return end;
                }
            }
        }
    }
}

/// Resolves when the gateway stops; never, if its sender is gone.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Records the disclosure of a call-back number in `message`, if it has one, in the audit
/// trail; the session ends (close 1011) when it cannot, and the message is not sent.
async fn audited<Si>(
    conn: &mut Conn<Si>,
    ctx: &SessionContext,
    commands: &UnitCommands,
    message: &ServerMessage,
) -> Result<(), SessionEnd>
where
    Si: Sink<Message> + Unpin,
    Si::Error: fmt::Display,
{
    let Some(incident) = message.discloses_call_back() else {
        return Ok(());
    };
    let fields = muster_app::audit::caller_fields(false, true);
    if let Err(e) = muster_app::audit::record_caller_read(
        ctx.store.as_ref(),
        incident,
        fields,
        "device",
        commands.audit_metadata(),
    )
    .await
    {
        tracing::error!(error = %e, %incident, "could not record a disclosure in the audit trail");
        return Err(conn
            .close(close::INTERNAL, "the event store is unavailable")
            .await);
    }
    Ok(())
}

async fn deliver<Si>(
    conn: &mut Conn<Si>,
    ctx: &SessionContext,
    commands: &UnitCommands,
    recorded: &muster_store::RecordedEvent,
) -> Result<(), SessionEnd>
where
    Si: Sink<Message> + Unpin,
    Si::Error: fmt::Display,
{
    match delivery::message_for(ctx.store.as_ref(), recorded).await {
        Ok(Some(message)) => {
            audited(conn, ctx, commands, &message).await?;
            conn.send(&message).await?;
            ctx.stats.deliveries.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            // A task event this build cannot read: skip it rather than stall the device.
            tracing::error!(error = %e, stream = %recorded.stream, revision = recorded.revision,
                "a unit event could not be decoded for delivery");
            Ok(())
        }
    }
}
