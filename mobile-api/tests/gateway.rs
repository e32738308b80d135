//! The gateway on real loopback sockets: size limit, shutdown, and the client library through
//! a proxy that cuts connections at random points (seeded), mid-frame included.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::Utc;
use common::*;
use futures::{SinkExt, StreamExt};
use muster_core::TaskId;
use muster_core::unit::{UnitEvent, UnitStatus};
use muster_core::value::LatLon;
use muster_mobile::client::{Client, ClientConfig, ClientEvent};
use muster_mobile::gateway::{self, GatewayConfig};
use muster_mobile::limits::MAX_MESSAGE_BYTES;
use muster_mobile::protocol::{ClientMessage, ServerMessage, close};
use muster_store::EventStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

struct RunningGateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_gateway(store: &Arc<dyn EventStore>) -> RunningGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let store = store.clone();
        async move {
            gateway::run(
                listener,
                store,
                Arc::new(tokens()),
                GatewayConfig::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
        }
    });
    RunningGateway {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn raw_device(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    tokio_tungstenite::connect_async(format!("ws://{addr}"))
        .await
        .unwrap()
        .0
}

async fn next_close(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the gateway answers")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_and_shutdown_with_1001() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let mut gw = start_gateway(&store).await;
    // Too big before hello.
    let mut ws = raw_device(gw.addr).await;
    ws.send(Message::text("x".repeat(MAX_MESSAGE_BYTES + 1)))
        .await
        .unwrap();
    assert_eq!(next_close(&mut ws).await, Some(close::TOO_BIG));
    // Too big after hello.
    let mut ws = raw_device(gw.addr).await;
    let hello = ClientMessage::Hello {
        v: 1,
        token: token_for(unit),
        unit: Some(unit),
        resume_after: Some(1),
    };
    ws.send(Message::text(hello.to_json())).await.unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(matches!(
        serde_json::from_str(welcome.to_text().unwrap()).unwrap(),
        ServerMessage::Welcome { .. }
    ));
    let padding = "p".repeat(MAX_MESSAGE_BYTES);
    ws.send(Message::text(format!(
        "{{\"type\":\"ping\",\"pad\":\"{padding}\"}}"
    )))
    .await
    .unwrap();
    assert_eq!(next_close(&mut ws).await, Some(close::TOO_BIG));
    // Just under the limit is read (and refused for its unknown field, not its size).
    let mut ws = raw_device(gw.addr).await;
    ws.send(Message::text(hello.to_json())).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let pad = "p".repeat(MAX_MESSAGE_BYTES - 100);
    ws.send(Message::text(format!(
        "{{\"type\":\"ping\",\"pad\":\"{pad}\"}}"
    )))
    .await
    .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(matches!(
        serde_json::from_str(reply.to_text().unwrap()).unwrap(),
        ServerMessage::Error { .. }
    ));
    // Shutdown.
    gw.stop.take().unwrap().send(()).unwrap();
    assert_eq!(next_close(&mut ws).await, Some(close::GOING_AWAY));
    gw.task.await.unwrap();
}

#[tokio::test]
async fn a_real_socket_with_an_expired_token_is_told_why() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let gw = start_gateway(&store).await;
    let mut ws = raw_device(gw.addr).await;
    let expired = tokens().issue(unit, Utc::now() - chrono::Duration::minutes(1));
    let hello = ClientMessage::Hello {
        v: 1,
        token: expired,
        unit: None,
        resume_after: None,
    };
    ws.send(Message::text(hello.to_json())).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    match serde_json::from_str(reply.to_text().unwrap()).unwrap() {
        ServerMessage::Error { code, message, .. } => {
            assert_eq!(code, muster_mobile::protocol::ErrorCode::AuthFailed);
            assert!(message.contains("expired"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(next_close(&mut ws).await, Some(close::AUTH_FAILED));
    // Not JSON at all, over a real socket.
    let mut ws = raw_device(gw.addr).await;
    ws.send(Message::text("<html>")).await.unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("\"malformed\""));
    assert_eq!(next_close(&mut ws).await, Some(close::HELLO_EXPECTED));
}

/// A TCP proxy that cuts each connection after a random number of bytes in the chosen
/// direction, until it has cut `target` connections; then it passes everything.
struct ChaosProxy {
    addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
}

async fn chaos_proxy(
    upstream: SocketAddr,
    seed: u64,
    target: usize,
    max_budget: usize,
    cut_upstream: bool,
) -> ChaosProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let counter = cuts.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let budget = if counter.load(Ordering::SeqCst) < target {
                Some(rng.random_range(1..=max_budget))
            } else {
                None
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (down_budget, up_budget) = if cut_upstream {
                    (None, budget)
                } else {
                    (budget, None)
                };
                let down = pump(&mut sr, &mut cw, down_budget);
                let up = pump(&mut cr, &mut sw, up_budget);
                let cut = tokio::select! {
                    cut = down => cut,
                    cut = up => cut,
                };
                if cut {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                // Dropping both halves of both sockets closes them.
            });
        }
    });
    ChaosProxy { addr, cuts }
}

/// Copies until EOF (false) or until `budget` bytes passed (true: cut).
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    mut budget: Option<usize>,
) -> bool {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let pass = budget.map_or(n, |b| n.min(b));
        if to.write_all(&buf[..pass]).await.is_err() {
            return false;
        }
        if let Some(b) = budget.as_mut() {
            *b -= pass;
            if *b == 0 {
                return true;
            }
        }
    }
}

fn fast_reconnects(url: String, token: String) -> ClientConfig {
    let mut config = ClientConfig::new(url, token);
    config.reconnect_min = std::time::Duration::from_millis(1);
    config.reconnect_max = std::time::Duration::from_millis(5);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_disconnects_lose_and_repeat_no_task() {
    const DISCONNECTS: usize = 1000;
    const WINDOW: u64 = 8;
    if std::env::var("DEBUG_CHAOS").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("muster_mobile=trace")
            .with_test_writer()
            .try_init();
    }
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let gw = start_gateway(&store).await;
    let proxy = chaos_proxy(gw.addr, 7, DISCONNECTS, 1500, false).await;
    let mut client = Client::start(fast_reconnects(
        format!("ws://{}", proxy.addr),
        token_for(unit),
    ));
    // The app: records every task it is handed.
    // A first connection gets a snapshot; tasks count from then on.
    loop {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .unwrap()
            .unwrap()
        {
            ClientEvent::Resync { .. } => break,
            ClientEvent::Fatal { reason } => panic!("{reason}"),
            _ => {}
        }
    }
    let processed = Arc::new(AtomicU64::new(0));
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<TaskId>();
    let app = tokio::spawn({
        let processed = processed.clone();
        async move {
            let mut disconnects = 0usize;
            while let Some(event) = client.next().await {
                if std::env::var("DEBUG_CHAOS").is_ok() {
                    eprintln!("{event:?}");
                }
                match event {
                    ClientEvent::Task { task, .. } => {
                        seen_tx.send(task.task).unwrap();
                        processed.fetch_add(1, Ordering::SeqCst);
                    }
                    ClientEvent::Disconnected { .. } => disconnects += 1,
                    ClientEvent::Fatal { reason } => panic!("{reason}"),
                    _ => {}
                }
                if processed.load(Ordering::SeqCst) == u64::MAX {
                    break;
                }
            }
            disconnects
        }
    });
    // The operators: a stream of tasks, at most WINDOW ahead of the app, until the proxy has
    // cut the connection DISCONNECTS times.
    let mut operator = Operator::new(&store, unit).await;
    let mut assigned = Vec::new();
    let mut waits = 0u64;
    while proxy.cuts.load(Ordering::SeqCst) < DISCONNECTS {
        while assigned.len() as u64 > processed.load(Ordering::SeqCst) + WINDOW {
            tokio::task::yield_now().await;
            waits += 1;
            assert!(waits < 500_000_000, "the client stopped making progress");
        }
        let task = operator.assign().await;
        assigned.push(task);
        operator.complete(task).await;
    }
    // Every task reaches the app, once, in order.
    let mut seen = Vec::new();
    while seen.len() < assigned.len() {
        let task = tokio::time::timeout(PATIENCE, seen_rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "every task arrives: {} of {} seen, {} cuts",
                    seen.len(),
                    assigned.len(),
                    proxy.cuts.load(Ordering::SeqCst)
                )
            })
            .unwrap();
        seen.push(task);
    }
    assert_eq!(seen, assigned, "each task once, in order");
    assert!(proxy.cuts.load(Ordering::SeqCst) >= DISCONNECTS);
    assert!(assigned.len() > 100, "{} tasks", assigned.len());
    // Nothing more arrives: no late duplicate.
    let extra = operator.assign().await;
    let next = tokio::time::timeout(PATIENCE, seen_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next, extra);
    app.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_across_drops_are_appended_once_and_in_order() {
    const COMMANDS: usize = 300;
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let gw = start_gateway(&store).await;
    // Cut the device's own sending, mid-command included.
    let proxy = chaos_proxy(gw.addr, 11, 200, 900, true).await;
    let mut client = Client::start(fast_reconnects(
        format!("ws://{}", proxy.addr),
        token_for(unit),
    ));
    let base = Utc::now();
    let mut keys = Vec::new();
    for i in 0..COMMANDS {
        let key = muster_mobile::client::new_key();
        keys.push(key.clone());
        client.send(ClientMessage::Position {
            key,
            position: LatLon::from_lat_lon(60.0 + i as f64 * 1e-4, 24.9).unwrap(),
            heading_deg: None,
            speed_m_s: None,
            accuracy_m: None,
            at: base + chrono::Duration::milliseconds(i as i64),
        });
    }
    let mut done = HashSet::new();
    while done.len() < COMMANDS {
        match tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("progress")
            .unwrap()
        {
            ClientEvent::Done { key, .. } => {
                done.insert(key);
            }
            ClientEvent::Failed { message, .. } => panic!("{message}"),
            ClientEvent::Fatal { reason } => panic!("{reason}"),
            _ => {}
        }
    }
    let positions: Vec<f64> = unit_events(&store, unit)
        .await
        .iter()
        .filter_map(
            |r| match muster_core::event::decode::<UnitEvent>(r).unwrap() {
                UnitEvent::UnitPositionReported { position, .. } => Some(position.lat_deg()),
                _ => None,
            },
        )
        .collect();
    assert_eq!(positions.len(), COMMANDS, "each command appended once");
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in the order sent"
    );
    assert!(
        proxy.cuts.load(Ordering::SeqCst) >= 50,
        "{} cuts",
        proxy.cuts.load(Ordering::SeqCst)
    );
    // A status change still works afterwards.
    let key = client.status(UnitStatus::OutOfService);
    loop {
        if let ClientEvent::Done { key: k, .. } = tokio::time::timeout(PATIENCE, client.next())
            .await
            .unwrap()
            .unwrap()
            && k == key
        {
            break;
        }
    }
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_responder_works_a_task_from_assignment_to_available() {
    use muster_mobile::responder::{self, ResponderConfig};
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let gw = start_gateway(&store).await;
    let mut client = ClientConfig::new(format!("ws://{}", gw.addr), token_for(unit));
    client.unit = Some(unit);
    let config = ResponderConfig {
        client,
        route: vec![
            LatLon::from_lat_lon(60.1699, 24.9384).unwrap(),
            LatLon::from_lat_lon(60.1710, 24.9420).unwrap(),
        ],
        speed_m_s: 100.0,
        position_every: std::time::Duration::from_millis(5),
        on_scene_for: std::time::Duration::from_millis(20),
        tasks: Some(1),
    };
    let sim = tokio::spawn(responder::run(config, std::future::pending()));
    // Assign once the responder is connected (it resyncs first; a task assigned before would
    // come in the snapshot, which works too).
    let task = assign(&store, unit).await;
    let report = tokio::time::timeout(PATIENCE, sim)
        .await
        .expect("the responder finishes")
        .unwrap()
        .unwrap();
    assert_eq!(report.tasks_completed, 1);
    assert!(report.positions_sent >= 2, "{report:?}");
    assert_eq!(report.commands_refused, 0, "{report:?}");
    let events: Vec<UnitEvent> = unit_events(&store, unit)
        .await
        .iter()
        .map(|r| muster_core::event::decode(r).unwrap())
        .collect();
    let statuses: Vec<UnitStatus> = events
        .iter()
        .filter_map(|e| match e {
            UnitEvent::UnitStatusChanged { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            UnitStatus::Dispatched,
            UnitStatus::EnRoute,
            UnitStatus::OnScene,
            UnitStatus::Returning,
            UnitStatus::Available
        ]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, UnitEvent::TaskAcknowledged { task: t, .. } if *t == task))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, UnitEvent::TaskCompleted { task: t, .. } if *t == task))
    );
    let positions = events
        .iter()
        .filter(|e| matches!(e, UnitEvent::UnitPositionReported { .. }))
        .count();
    assert_eq!(positions, report.positions_sent);
}

/// Reports an incident straight into the store (the operator side), for tasks to point at.
async fn report_incident(store: &Arc<dyn EventStore>) -> muster_core::IncidentId {
    use muster_core::decision::Aggregate;
    use muster_core::event::{EventIds, encode_batch};
    use muster_core::incident::{IncidentCommand, IncidentState, ReportSource};
    use muster_core::value::{CallerDetails, IncidentType, Priority};
    let id = muster_core::IncidentId::new_v7();
    let events = IncidentState::default()
        .decide(IncidentCommand::Report {
            incident_id: id,
            source: ReportSource::Hotline,
            location: LatLon::from_lat_lon(60.1710, 24.9420).unwrap(),
            incident_type: IncidentType::parse("medical").unwrap(),
            priority: Priority::P2,
            caller: CallerDetails::default(),
            call_received_at: Utc::now(),
            at: Utc::now(),
        })
        .unwrap();
    let stream = id.stream_name();
    let new = encode_batch(
        &stream,
        &events,
        EventIds::Fresh,
        &muster_store::EventMetadata::default(),
    )
    .unwrap();
    store
        .append(&stream, muster_store::ExpectedState::NoStream, new)
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crews_progress_through_the_gateway_records_the_incidents_time_points() {
    use muster_core::incident::{IncidentEvent, TimePoint};
    use muster_mobile::responder::{self, ResponderConfig};
    let store = memory_store();
    let unit = register_unit(&store, "E2").await;
    let incident = report_incident(&store).await;
    let gw = start_gateway(&store).await;
    let mut client = ClientConfig::new(format!("ws://{}", gw.addr), token_for(unit));
    client.unit = Some(unit);
    let config = ResponderConfig {
        client,
        route: vec![LatLon::from_lat_lon(60.1699, 24.9384).unwrap()],
        speed_m_s: 100.0,
        position_every: std::time::Duration::from_millis(5),
        on_scene_for: std::time::Duration::from_millis(20),
        tasks: Some(1),
    };
    let sim = tokio::spawn(responder::run(config, std::future::pending()));
    let task = TaskId::new_v7();
    // The operator side assigns through the write path: the unit and the incident's dispatch
    // time point in one append.
    let runner = muster_app::Runner::new(store.clone());
    let command = muster_app::Command {
        key: muster_app::CommandKey::new(
            "operator",
            muster_core::value::IdempotencyKey::try_from("assign-0001".to_owned()).unwrap(),
        ),
        fingerprint: muster_app::Fingerprint::of("assign", &serde_json::Value::Null),
        metadata: muster_store::EventMetadata::default(),
    };
    let now = Utc::now();
    runner
        .execute(&command, |s| {
            Ok((
                muster_core::combined::assign(s, incident, unit, task, now)?,
                (),
            ))
        })
        .await
        .unwrap();
    let report = tokio::time::timeout(PATIENCE, sim)
        .await
        .expect("the responder finishes")
        .unwrap()
        .unwrap();
    assert_eq!(report.tasks_completed, 1, "{report:?}");
    let recorded = store
        .read_stream(
            &incident.stream_name(),
            muster_store::Direction::Forwards,
            muster_store::ReadFrom::Start,
            usize::MAX,
        )
        .await
        .unwrap();
    let points: Vec<TimePoint> = recorded
        .iter()
        .filter_map(
            |r| match muster_core::event::decode::<IncidentEvent>(r).unwrap() {
                IncidentEvent::TimePointRecorded {
                    point,
                    unit: Some(u),
                    task: Some(t),
                    ..
                } if u == unit && t == task => Some(point),
                _ => None,
            },
        )
        .collect();
    // Dispatched follows the operator's assignment; the crew's own steps come through the
    // gateway.
    for point in [
        TimePoint::Dispatched,
        TimePoint::EnRoute,
        TimePoint::OnScene,
        TimePoint::Cleared,
    ] {
        assert_eq!(
            points.iter().filter(|p| **p == point).count(),
            1,
            "{point:?} recorded once from the device's report: {points:?}"
        );
    }
}
