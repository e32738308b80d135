//! The client library a responder app builds on: one [`Client`] keeps a connection to the
//! gateway, reconnects with backoff after a drop, resumes from the last sequence number it
//! processed, hands the app each task once ([`ClientEvent::Task`]), and sends the app's
//! commands in order, queueing them while offline.
//!
//! The bookkeeping is [`ClientState`], free of I/O: the app could persist
//! [`ClientState::last_seq`] and the pending commands to survive a restart (pass the sequence
//! number back as [`ClientConfig::resume_after`]).
//!
//! Commands go one at a time: the next is sent when the gateway answered the previous one
//! (`done`, or an error that retrying cannot fix). After a drop the unanswered command is
//! sent again with the same key, which the gateway recognises, so nothing is doubled and the
//! order holds even when a command is rate-limited.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use muster_core::unit::UnitStatus;
use muster_core::value::{IdempotencyKey, IncidentType, LatLon, Priority};
use muster_core::{IncidentId, TaskId, UnitId};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use crate::protocol::{
    ClientMessage, ErrorCode, Outcome, PROTOCOL_VERSION, ServerMessage, Snapshot, TaskState,
    TaskView, close,
};

/// Task ids remembered to drop a task delivered again.
pub const SEEN_TASKS: usize = 4096;

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The gateway's address: `wss://host:port` (TLS) or `ws://host:port`.
    pub url: String,
    /// Whom a `wss://` gateway's certificate must be issued by ([`crate::tls::client_config`]:
    /// the system's roots, plus a CA file); `None`: the system's roots. Verification is never
    /// skipped.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The responder's token.
    pub token: String,
    /// The unit, checked by the gateway against the token when given.
    pub unit: Option<UnitId>,
    /// The last sequence number processed before this client started (from the app's own
    /// storage), or `None` for a resync.
    pub resume_after: Option<u64>,
    /// First wait before reconnecting; doubles up to `reconnect_max`, with jitter.
    pub reconnect_min: Duration,
    /// Longest wait before reconnecting.
    pub reconnect_max: Duration,
    /// A connection silent this long is taken for dead (the gateway pings every 10 s).
    pub silence_timeout: Duration,
}

impl ClientConfig {
    /// Defaults for a phone: reconnect after 0.5 s up to 30 s, dead after 30 s of silence.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            token: token.into(),
            unit: None,
            resume_after: None,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            silence_timeout: Duration::from_secs(30),
        }
    }
}

/// What the client tells the app.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// Connected and authenticated.
    Connected {
        /// The gateway's session id.
        session: Uuid,
    },
    /// The connection dropped; the client reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A task, given to the app once.
    Task {
        /// Its sequence number.
        seq: u64,
        /// The task.
        task: TaskView,
    },
    /// A task's state changed.
    TaskUpdate {
        /// Its sequence number.
        seq: u64,
        /// The task.
        task: TaskId,
        /// Its incident.
        incident: IncidentId,
        /// What happened.
        state: TaskState,
        /// When.
        at: DateTime<Utc>,
    },
    /// The gateway sent the unit's current state instead of a replay; the app replaces what
    /// it shows. An active task not seen before also comes as a [`ClientEvent::Task`].
    Resync {
        /// The sequence number it is at.
        seq: u64,
        /// The unit now.
        snapshot: Snapshot,
    },
    /// A command was carried out.
    Done {
        /// Its key.
        key: IdempotencyKey,
        /// How.
        outcome: Outcome,
        /// For a field incident, the incident.
        incident: Option<IncidentId>,
    },
    /// A command was refused for good.
    Failed {
        /// Its key.
        key: IdempotencyKey,
        /// Why.
        code: ErrorCode,
        /// Why, in words.
        message: String,
    },
    /// The gateway refused the connection for a reason reconnecting cannot fix (bad token,
    /// unsupported version); the client stopped.
    Fatal {
        /// Why.
        reason: String,
    },
}

/// A fresh idempotency key.
pub fn new_key() -> IdempotencyKey {
    IdempotencyKey::try_from(Uuid::now_v7().to_string())
        .unwrap_or_else(|_| unreachable!("a uuid is a valid key"))
}

/// The client's bookkeeping, without I/O.
#[derive(Debug, Default)]
pub struct ClientState {
    /// The highest sequence number processed.
    pub last_seq: Option<u64>,
    seen: HashSet<TaskId>,
    seen_order: VecDeque<TaskId>,
    /// Commands not yet answered, oldest first; the first is in flight when connected.
    pub pending: VecDeque<ClientMessage>,
}

impl ClientState {
    /// A state resuming after `last_seq`.
    pub fn new(last_seq: Option<u64>) -> Self {
        Self {
            last_seq,
            ..Self::default()
        }
    }

    fn fresh(&mut self, seq: u64) -> bool {
        if self.last_seq.is_some_and(|last| seq <= last) {
            return false;
        }
        self.last_seq = Some(seq);
        true
    }

    fn first_sight(&mut self, task: TaskId) -> bool {
        if !self.seen.insert(task) {
            return false;
        }
        self.seen_order.push_back(task);
        if self.seen_order.len() > SEEN_TASKS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    /// Takes in a message from the gateway: the events for the app, and whether the
    /// front pending command was answered.
    pub fn on_message(&mut self, message: ServerMessage) -> Vec<ClientEvent> {
        let mut out = Vec::new();
        match message {
            ServerMessage::Welcome { session, .. } => out.push(ClientEvent::Connected { session }),
            ServerMessage::Task { seq, task } => {
                if self.fresh(seq) && self.first_sight(task.task) {
                    out.push(ClientEvent::Task { seq, task });
                }
            }
            ServerMessage::TaskUpdate {
                seq,
                task,
                incident,
                state,
                at,
            } => {
                if self.fresh(seq) {
                    out.push(ClientEvent::TaskUpdate {
                        seq,
                        task,
                        incident,
                        state,
                        at,
                    });
                }
            }
            ServerMessage::Resync { seq, snapshot } => {
                self.last_seq = Some(seq);
                let unseen = snapshot
                    .active_task
                    .clone()
                    .filter(|t| self.first_sight(t.task));
                out.push(ClientEvent::Resync { seq, snapshot });
                if let Some(task) = unseen {
                    out.push(ClientEvent::Task { seq, task });
                }
            }
            ServerMessage::Done {
                key,
                outcome,
                incident,
            } => {
                if self.pending.front().and_then(|m| m.key()) == Some(&key) {
                    self.pending.pop_front();
                }
                out.push(ClientEvent::Done {
                    key,
                    outcome,
                    incident,
                });
            }
            ServerMessage::Error {
                code, message, key, ..
            } => {
                let front = self.pending.front().and_then(|m| m.key()).cloned();
                if let (Some(front), Some(key)) = (front, key)
                    && front.as_str() == key
                    && !code.is_retryable()
                {
                    self.pending.pop_front();
                    out.push(ClientEvent::Failed {
                        key: front,
                        code,
                        message,
                    });
                } else {
                    tracing::debug!(?code, %message, "gateway error");
                }
            }
            ServerMessage::Pong { .. } => {}
        }
        out
    }
}

enum Control {
    Send(ClientMessage),
    Stop,
}

/// A connection to the gateway that survives drops. Drive it by reading [`Client::next`].
#[derive(Debug)]
pub struct Client {
    control: mpsc::UnboundedSender<Control>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Send(m) => write!(f, "Send({:?})", m.key()),
            Control::Stop => f.write_str("Stop"),
        }
    }
}

impl Client {
    /// Starts connecting.
    pub fn start(config: ClientConfig) -> Self {
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(config, control_rx, events_tx));
        Self {
            control,
            events,
            task,
        }
    }

    /// The next event; `None` once the client stopped.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// Queues a command (any message with a key); it is sent when connected, in order.
    pub fn send(&self, command: ClientMessage) {
        let _ = self.control.send(Control::Send(command));
    }

    /// Acknowledges a task (the crew accepts it).
    pub fn acknowledge(&self, task: TaskId) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::AcknowledgeTask {
            key: key.clone(),
            task,
            at: Utc::now(),
        });
        key
    }

    /// Completes a task.
    pub fn complete(&self, task: TaskId) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::CompleteTask {
            key: key.clone(),
            task,
            at: Utc::now(),
        });
        key
    }

    /// Declines a task.
    pub fn decline(&self, task: TaskId, reason: Option<String>) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::DeclineTask {
            key: key.clone(),
            task,
            reason,
            at: Utc::now(),
        });
        key
    }

    /// Reports a status.
    pub fn status(&self, status: UnitStatus) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::Status {
            key: key.clone(),
            status,
            at: Utc::now(),
        });
        key
    }

    /// Reports a position.
    pub fn position(
        &self,
        position: LatLon,
        heading_deg: Option<f64>,
        speed_m_s: Option<f64>,
    ) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::Position {
            key: key.clone(),
            position,
            heading_deg,
            speed_m_s,
            accuracy_m: None,
            at: Utc::now(),
        });
        key
    }

    /// Reports a new incident from the field.
    pub fn field_incident(
        &self,
        location: LatLon,
        incident_type: IncidentType,
        priority: Priority,
    ) -> IdempotencyKey {
        let key = new_key();
        self.send(ClientMessage::FieldIncident {
            key: key.clone(),
            location,
            incident_type,
            priority,
            at: Utc::now(),
        });
        key
    }

    /// Closes the connection and stops.
    pub async fn stop(self) {
        let _ = self.control.send(Control::Stop);
        let _ = self.task.await;
    }
}

/// Why one connection ended.
enum Ended {
    Dropped(String),
    Fatal(String),
    Stopped,
}

async fn drive(
    config: ClientConfig,
    mut control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::UnboundedSender<ClientEvent>,
) {
    let mut state = ClientState::new(config.resume_after);
    let mut backoff = config.reconnect_min;
    loop {
        let ended = connection(&config, &mut state, &mut control, &events, &mut backoff).await;
        match ended {
            Ended::Stopped => return,
            Ended::Fatal(reason) => {
                let _ = events.send(ClientEvent::Fatal { reason });
                return;
            }
            Ended::Dropped(reason) => {
                let _ = events.send(ClientEvent::Disconnected { reason });
            }
        }
        let jitter = if backoff.is_zero() {
            Duration::ZERO
        } else {
            backoff.mul_f64(rand::rng().random_range(0.5..1.0))
        };
        let wake = Instant::now() + jitter;
        // Keep taking commands while waiting.
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => break,
                c = control.recv() => match c {
                    Some(Control::Send(m)) => state.pending.push_back(m),
                    Some(Control::Stop) | None => return,
                },
            }
        }
        backoff = (backoff * 2).clamp(config.reconnect_min, config.reconnect_max);
    }
}

async fn connection(
    config: &ClientConfig,
    state: &mut ClientState,
    control: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::UnboundedSender<ClientEvent>,
    backoff: &mut Duration,
) -> Ended {
    let connect = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_tls_with_config(
            config.url.as_str(),
            None,
            false,
            config.tls.clone().map(tokio_tungstenite::Connector::Rustls),
        ),
    );
    let mut ws = match connect.await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => return Ended::Dropped(format!("could not connect: {e}")),
        Err(_) => return Ended::Dropped("connecting timed out".into()),
    };
    let hello = ClientMessage::Hello {
        v: PROTOCOL_VERSION,
        token: config.token.clone(),
        unit: config.unit,
        resume_after: state.last_seq,
    };
    if let Err(e) = ws.send(Message::text(hello.to_json())).await {
        return Ended::Dropped(format!("could not send hello: {e}"));
    }
    let mut welcomed = false;
    let mut in_flight = false;
    let mut retry_at: Option<Instant> = None;
    let mut last_heard = Instant::now();
    loop {
        if welcomed
            && !in_flight
            && retry_at.is_none()
            && let Some(front) = state.pending.front()
        {
            if let Err(e) = ws.send(Message::text(front.to_json())).await {
                return Ended::Dropped(format!("could not send: {e}"));
            }
            in_flight = true;
        }
        let silence = tokio::time::sleep_until(last_heard + config.silence_timeout);
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Send(m)) => state.pending.push_back(m),
                Some(Control::Stop) | None => {
                    let _ = ws.close(None).await;
                    return Ended::Stopped;
                }
            },
            _ = silence => return Ended::Dropped("the gateway went silent".into()),
            _ = retry => {
                retry_at = None;
                in_flight = false;
            }
            frame = ws.next() => {
                last_heard = Instant::now();
                let text = match frame {
                    None => return Ended::Dropped("the connection ended".into()),
                    Some(Err(e)) => return Ended::Dropped(format!("transport error: {e}")),
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((u16::from(CloseCode::Status), String::new()));
                        let why = format!("closed by the gateway ({code}): {reason}");
                        return if matches!(code, close::AUTH_FAILED | close::UNSUPPORTED_VERSION | close::HELLO_EXPECTED) {
                            Ended::Fatal(why)
                        } else {
                            Ended::Dropped(why)
                        };
                    }
                    Some(Ok(_)) => continue,
                };
                let message: ServerMessage = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "a message from the gateway could not be read");
                        continue;
                    }
                };
                if let ServerMessage::Error { code, key: Some(key), retry_after_ms, .. } = &message
                    && code.is_retryable()
                    && state.pending.front().and_then(|m| m.key()).is_some_and(|k| k.as_str() == key)
                {
                    let wait = Duration::from_millis(retry_after_ms.unwrap_or(1000));
                    retry_at = Some(Instant::now() + wait);
                    continue;
                }
                let answered_before = state.pending.len();
                let seq = message.seq();
                if matches!(message, ServerMessage::Welcome { .. }) {
                    welcomed = true;
                    *backoff = config.reconnect_min;
                }
                for event in state.on_message(message) {
                    let _ = events.send(event);
                }
                if state.pending.len() < answered_before {
                    in_flight = false;
                }
                if let Some(seq) = seq {
                    let ack = ClientMessage::Ack { seq };
                    if let Err(e) = ws.send(Message::text(ack.to_json())).await {
                        return Ended::Dropped(format!("could not send: {e}"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u128) -> TaskView {
        TaskView {
            task: TaskId::from_uuid(Uuid::from_u128(n)),
            incident: IncidentId::from_uuid(Uuid::from_u128(1000 + n)),
            assigned_at: Utc::now(),
            incident_type: None,
            priority: None,
            location: None,
            call_back: None,
        }
    }

    #[test]
    fn a_task_delivered_twice_reaches_the_app_once() {
        let mut state = ClientState::new(None);
        let first = state.on_message(ServerMessage::Task {
            seq: 3,
            task: view(1),
        });
        assert_eq!(first.len(), 1);
        // The same delivery again (a replay after a drop).
        assert!(
            state
                .on_message(ServerMessage::Task {
                    seq: 3,
                    task: view(1)
                })
                .is_empty()
        );
        // The same task under another number (a resync that names it).
        let resync = state.on_message(ServerMessage::Resync {
            seq: 9,
            snapshot: Snapshot {
                status: Some(UnitStatus::Dispatched),
                active_task: Some(view(1)),
                acknowledged: false,
            },
        });
        assert_eq!(resync.len(), 1, "only the resync itself: {resync:?}");
        // A new task in a resync is handed over as a task too.
        let resync = state.on_message(ServerMessage::Resync {
            seq: 12,
            snapshot: Snapshot {
                status: Some(UnitStatus::Dispatched),
                active_task: Some(view(2)),
                acknowledged: false,
            },
        });
        assert!(matches!(
            resync.as_slice(),
            [
                ClientEvent::Resync { .. },
                ClientEvent::Task { seq: 12, .. }
            ]
        ));
        assert_eq!(state.last_seq, Some(12));
        assert!(
            state
                .on_message(ServerMessage::Task {
                    seq: 11,
                    task: view(3)
                })
                .is_empty(),
            "older than the resync"
        );
    }

    #[test]
    fn answers_take_commands_off_the_queue_only_when_final() {
        let mut state = ClientState::new(None);
        let key = new_key();
        state.pending.push_back(ClientMessage::Status {
            key: key.clone(),
            status: UnitStatus::EnRoute,
            at: Utc::now(),
        });
        state.on_message(ServerMessage::Error {
            code: ErrorCode::RateLimited,
            message: "slow".into(),
            key: Some(key.as_str().into()),
            retry_after_ms: Some(10),
        });
        assert_eq!(
            state.pending.len(),
            1,
            "a retryable error keeps the command"
        );
        let events = state.on_message(ServerMessage::error_for(
            ErrorCode::Refused,
            "no",
            Some(key.as_str().into()),
        ));
        assert!(state.pending.is_empty());
        assert!(matches!(
            events.as_slice(),
            [ClientEvent::Failed {
                code: ErrorCode::Refused,
                ..
            }]
        ));
    }
}
