//! Helpers shared by the gateway's tests: a store with units and tasks, tokens, and a device
//! talking to a session through channels.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use muster_core::event::{EventIds, encode_batch, expected_state_after};
use muster_core::unit::{UnitCommand, UnitEvent, UnitState};
use muster_core::value::{Agency, CallSign, StationCode, UnitKind};
use muster_core::{Aggregate, IncidentId, TaskId, UnitId};
use muster_mobile::delivery::Hub;
use muster_mobile::protocol::{ClientMessage, ServerMessage};
use muster_mobile::session::{GatewayStats, SessionContext, SessionEnd, run_session};
use muster_mobile::token::HmacTokens;
use muster_store::{
    Direction, EventMetadata, EventStore, MemoryStore, ReadFrom, RecordedEvent, StreamRevision,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub const SECRET: [u8; 32] = [42u8; 32];

pub fn tokens() -> HmacTokens {
    HmacTokens::new(SECRET.to_vec()).unwrap()
}

pub fn token_for(unit: UnitId) -> String {
    tokens().issue(unit, Utc::now() + chrono::Duration::hours(1))
}

pub fn memory_store() -> Arc<dyn EventStore> {
    Arc::new(MemoryStore::new())
}

pub async fn unit_events(store: &Arc<dyn EventStore>, unit: UnitId) -> Vec<RecordedEvent> {
    store
        .read_stream(
            &unit.stream_name(),
            Direction::Forwards,
            ReadFrom::Start,
            100_000,
        )
        .await
        .unwrap_or_default()
}

async fn state_of(
    store: &Arc<dyn EventStore>,
    unit: UnitId,
) -> (UnitState, Option<StreamRevision>) {
    let recorded = unit_events(store, unit).await;
    let events: Vec<UnitEvent> = recorded
        .iter()
        .map(|r| muster_core::event::decode(r).unwrap())
        .collect();
    (
        UnitState::replay(&events),
        recorded.last().map(|r| r.revision),
    )
}

/// Decides `command` on the unit's current state and appends the result (operator side).
pub async fn unit_command(store: &Arc<dyn EventStore>, unit: UnitId, command: UnitCommand) {
    let (state, last) = state_of(store, unit).await;
    let events = state.decide(command).unwrap();
    let stream = unit.stream_name();
    let new = encode_batch(&stream, &events, EventIds::Fresh, &EventMetadata::default()).unwrap();
    store
        .append(&stream, expected_state_after(last), new)
        .await
        .unwrap();
}

pub async fn register_unit(store: &Arc<dyn EventStore>, call_sign: &str) -> UnitId {
    let unit = UnitId::new_v7();
    unit_command(
        store,
        unit,
        UnitCommand::Register {
            unit_id: unit,
            kind: UnitKind::parse("engine").unwrap(),
            call_sign: CallSign::parse(call_sign).unwrap(),
            agency: Agency::parse("fire").unwrap(),
            home_station: StationCode::parse("s1").unwrap(),
            capabilities: BTreeSet::new(),
            at: Utc::now(),
        },
    )
    .await;
    unit
}

pub async fn assign(store: &Arc<dyn EventStore>, unit: UnitId) -> TaskId {
    let task = TaskId::new_v7();
    unit_command(
        store,
        unit,
        UnitCommand::AssignTask {
            task,
            incident: IncidentId::new_v7(),
            at: Utc::now(),
        },
    )
    .await;
    task
}

pub async fn complete(store: &Arc<dyn EventStore>, unit: UnitId, task: TaskId) {
    unit_command(
        store,
        unit,
        UnitCommand::CompleteTask {
            task,
            at: Utc::now(),
        },
    )
    .await;
}

/// A session context with a running hub.
pub fn context(store: &Arc<dyn EventStore>) -> Arc<SessionContext> {
    let (hub, subscription) = Hub::new(store);
    tokio::spawn(hub.clone().run(subscription, std::future::pending()));
    Arc::new(SessionContext {
        store: store.clone(),
        verifier: Arc::new(tokens()),
        hub,
        stats: Arc::new(GatewayStats::default()),
        lockout: Arc::new(muster_mobile::lockout::Lockout::default()),
        node: None,
    })
}

/// The device's side of a session run over channels.
pub struct Device {
    pub to_gateway: mpsc::UnboundedSender<Result<Message, WsError>>,
    pub from_gateway: mpsc::UnboundedReceiver<Message>,
    pub session: JoinHandle<SessionEnd>,
    pub stop: watch::Sender<bool>,
}

pub fn connect(ctx: &Arc<SessionContext>) -> Device {
    let (to_gateway, incoming) = mpsc::unbounded();
    let (outgoing, from_gateway) = mpsc::unbounded();
    let (stop, stop_rx) = watch::channel(false);
    let session = tokio::spawn(run_session(incoming, outgoing, ctx.clone(), stop_rx));
    Device {
        to_gateway,
        from_gateway,
        session,
        stop,
    }
}

/// Waiting longer than this for the gateway means a bug (not a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(20);

impl Device {
    pub async fn send(&mut self, message: &ClientMessage) {
        self.send_text(&message.to_json()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        let _ = self.to_gateway.send(Ok(Message::text(text))).await;
    }

    pub async fn hello(&mut self, token: String, resume_after: Option<u64>) {
        self.send(&ClientMessage::Hello {
            v: 1,
            token,
            unit: None,
            resume_after,
        })
        .await;
    }

    /// The next frame the gateway sent.
    pub async fn frame(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.from_gateway.next())
            .await
            .expect("the gateway answers")
    }

    /// The next protocol message, skipping pings.
    pub async fn recv(&mut self) -> ServerMessage {
        loop {
            match self.frame().await.expect("the session is open") {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The close code, after skipping any messages before it.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.frame().await {
                Some(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Some(_) => continue,
                None => return None,
            }
        }
    }
}

/// An operator assigning and completing one unit's tasks, keeping the unit's state between
/// commands instead of reading the whole stream each time.
pub struct Operator {
    store: Arc<dyn EventStore>,
    unit: UnitId,
    state: UnitState,
    last: Option<StreamRevision>,
}

impl Operator {
    pub async fn new(store: &Arc<dyn EventStore>, unit: UnitId) -> Self {
        let (state, last) = state_of(store, unit).await;
        Self {
            store: store.clone(),
            unit,
            state,
            last,
        }
    }

    pub async fn command(&mut self, command: UnitCommand) {
        let events = self.state.decide(command).unwrap();
        let stream = self.unit.stream_name();
        let new =
            encode_batch(&stream, &events, EventIds::Fresh, &EventMetadata::default()).unwrap();
        let result = self
            .store
            .append(&stream, expected_state_after(self.last), new)
            .await
            .unwrap();
        for e in &events {
            self.state.apply(e);
        }
        self.last = Some(result.next_expected_revision);
    }

    pub async fn assign(&mut self) -> TaskId {
        let task = TaskId::new_v7();
        self.command(UnitCommand::AssignTask {
            task,
            incident: IncidentId::new_v7(),
            at: Utc::now(),
        })
        .await;
        task
    }

    pub async fn complete(&mut self, task: TaskId) {
        self.command(UnitCommand::CompleteTask {
            task,
            at: Utc::now(),
        })
        .await;
    }
}
