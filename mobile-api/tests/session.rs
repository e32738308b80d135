//! The session's logic, driven through channels: delivery and resume, commands and their
//! idempotency, authorisation, bad input, heartbeats, rate limit, slow devices, and the
//! acknowledgement watchdog.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use muster_core::unit::{UnitCommand, UnitStatus};
use muster_core::value::{IdempotencyKey, IncidentType, LatLon, Priority};
use muster_mobile::alerts::{AckWatchdog, TASK_ACK_OVERDUE};
use muster_mobile::delivery::Hub;
use muster_mobile::limits::{IDLE_TIMEOUT, OUTBOUND_QUEUE, PING_INTERVAL, RATE_BURST};
use muster_mobile::protocol::{ClientMessage, ErrorCode, Outcome, ServerMessage, TaskState, close};
use muster_mobile::token::HmacTokens;
use muster_store::{Direction, EventStore, ReadFrom, StoreError};
use tokio_tungstenite::tungstenite::Message;

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::try_from(k).unwrap()
}

async fn welcome(device: &mut Device) {
    assert!(
        matches!(device.recv().await, ServerMessage::Welcome { .. }),
        "welcome first"
    );
}

#[tokio::test]
async fn a_first_connection_gets_a_snapshot_then_live_tasks() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), None).await;
    welcome(&mut device).await;
    let ServerMessage::Resync { seq, snapshot } = device.recv().await else {
        panic!("a resync on a first connection")
    };
    assert_eq!(seq, 1, "one event in the stream");
    assert_eq!(snapshot.status, Some(UnitStatus::Available));
    assert!(snapshot.active_task.is_none());
    let task = assign(&store, unit).await;
    match device.recv().await {
        ServerMessage::Task { seq, task: view } => {
            assert_eq!(view.task, task);
            assert_eq!(seq, 2, "the revision of TaskAssigned plus one");
        }
        other => panic!("expected the task, got {other:?}"),
    }
    complete(&store, unit, task).await;
    assert!(matches!(
        device.recv().await,
        ServerMessage::TaskUpdate {
            state: TaskState::Completed,
            ..
        }
    ));
}

#[tokio::test]
async fn a_reconnect_gets_exactly_what_it_missed() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let t1 = assign(&store, unit).await; // rev 1 (+ status rev 2)
    complete(&store, unit, t1).await; // rev 3 (+ status rev 4)
    let t2 = assign(&store, unit).await; // rev 5
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(2)).await; // saw TaskAssigned t1 (seq 2)
    welcome(&mut device).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = device.recv().await;
        got.push((m.seq().unwrap(), m));
    }
    assert!(
        matches!(&got[0].1, ServerMessage::TaskUpdate { task, state: TaskState::Completed, .. } if *task == t1)
    );
    assert_eq!(got[0].0, 4);
    assert!(matches!(&got[1].1, ServerMessage::Task { task, .. } if task.task == t2));
    assert_eq!(got[1].0, 6);
    // Nothing else is pending: a ping is answered next.
    device.send(&ClientMessage::Ping { nonce: Some(1) }).await;
    assert_eq!(device.recv().await, ServerMessage::Pong { nonce: Some(1) });
}

#[tokio::test]
async fn positions_the_log_cannot_serve_get_a_resync() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let task = assign(&store, unit).await;
    let ctx = context(&store);
    // Past the end: the device saw another log.
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(99)).await;
    welcome(&mut device).await;
    let ServerMessage::Resync { seq, snapshot } = device.recv().await else {
        panic!("resync")
    };
    assert_eq!(seq, 3);
    assert_eq!(snapshot.active_task.map(|t| t.task), Some(task));
    // Truncated: the events after position 1 are no longer readable.
    store
        .set_stream_metadata(
            &unit.stream_name(),
            muster_store::ExpectedState::Any,
            muster_store::StreamMetadata {
                max_count: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    assert!(matches!(
        device.recv().await,
        ServerMessage::Resync { seq: 3, .. }
    ));
}

#[tokio::test]
async fn bad_input_before_hello_is_refused_with_the_reason() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let other_unit = register_unit(&store, "E2").await;
    let ctx = context(&store);
    let expired = tokens().issue(unit, Utc::now() - chrono::Duration::seconds(1));
    let foreign = HmacTokens::new(vec![1u8; 32])
        .unwrap()
        .issue(unit, Utc::now() + chrono::Duration::hours(1));
    let hello = |token: &str, unit_field: Option<muster_core::UnitId>| {
        ClientMessage::Hello {
            v: 1,
            token: token.into(),
            unit: unit_field,
            resume_after: None,
        }
        .to_json()
    };
    let cases: Vec<(String, ErrorCode, u16, &str)> = vec![
        (
            "{not json".into(),
            ErrorCode::Malformed,
            close::HELLO_EXPECTED,
            "malformed JSON",
        ),
        (
            "{\"type\":\"warp\"}".into(),
            ErrorCode::UnknownType,
            close::HELLO_EXPECTED,
            "unknown type",
        ),
        (
            "{\"type\":\"hello\",\"v\":2,\"token\":\"t\"}".into(),
            ErrorCode::UnsupportedVersion,
            close::UNSUPPORTED_VERSION,
            "wrong protocol version",
        ),
        (
            ClientMessage::Ping { nonce: None }.to_json(),
            ErrorCode::HelloExpected,
            close::HELLO_EXPECTED,
            "a message before hello",
        ),
        (
            hello(&expired, None),
            ErrorCode::AuthFailed,
            close::AUTH_FAILED,
            "expired token",
        ),
        (
            hello(&foreign, None),
            ErrorCode::AuthFailed,
            close::AUTH_FAILED,
            "token signed elsewhere",
        ),
        (
            hello("garbage", None),
            ErrorCode::AuthFailed,
            close::AUTH_FAILED,
            "not a token",
        ),
        (
            hello(&token_for(unit), Some(other_unit)),
            ErrorCode::Forbidden,
            close::AUTH_FAILED,
            "token of another unit",
        ),
    ];
    for (frame, code, close_code, why) in cases {
        let mut device = connect(&ctx);
        device.send_text(&frame).await;
        match device.recv().await {
            ServerMessage::Error {
                code: got, message, ..
            } => {
                assert_eq!(got, code, "{why}: {message}");
                assert!(!message.is_empty(), "{why}");
            }
            other => panic!("{why}: expected an error, got {other:?}"),
        }
        assert_eq!(device.close_code().await, Some(close_code), "{why}");
        let end = device.session.await.unwrap();
        assert_eq!(end.code, Some(close_code), "{why}");
    }
    // A binary frame.
    let mut device = connect(&ctx);
    let _ = futures::SinkExt::send(
        &mut device.to_gateway,
        Ok(Message::Binary(vec![1, 2].into())),
    )
    .await;
    assert!(matches!(
        device.recv().await,
        ServerMessage::Error {
            code: ErrorCode::BinaryNotSupported,
            ..
        }
    ));
    assert_eq!(device.close_code().await, Some(close::HELLO_EXPECTED));
}

#[tokio::test]
async fn bad_input_after_hello_gets_an_error_and_the_connection_goes_on() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    let cases: &[(&str, ErrorCode, &str)] = &[
        ("]]", ErrorCode::Malformed, "not JSON"),
        ("\"hello\"", ErrorCode::Malformed, "a string, not an object"),
        (
            "{\"type\":\"self_destruct\"}",
            ErrorCode::UnknownType,
            "unknown type",
        ),
        (
            "{\"type\":\"status\",\"key\":\"abcdefgh\",\"status\":\"asleep\",\"at\":\"2026-11-23T10:00:00Z\"}",
            ErrorCode::InvalidMessage,
            "unknown status",
        ),
        (
            "{\"type\":\"hello\",\"v\":1,\"token\":\"x\"}",
            ErrorCode::HelloExpected,
            "a second hello",
        ),
        (
            "{\"type\":\"status\",\"key\":\"abcdefgh\",\"status\":\"on_scene\",\"at\":\"2026-11-23T10:00:00Z\"}",
            ErrorCode::Refused,
            "a transition the unit does not allow",
        ),
    ];
    for (frame, code, why) in cases {
        device.send_text(frame).await;
        match device.recv().await {
            ServerMessage::Error {
                code: got, message, ..
            } => assert_eq!(got, *code, "{why}: {message}"),
            other => panic!("{why}: got {other:?}"),
        }
    }
    device.send(&ClientMessage::Ping { nonce: Some(7) }).await;
    assert_eq!(device.recv().await, ServerMessage::Pong { nonce: Some(7) });
}

#[tokio::test]
async fn a_device_cannot_act_for_another_unit() {
    let store = memory_store();
    let mine = register_unit(&store, "E1").await;
    let theirs = register_unit(&store, "E2").await;
    let their_task = assign(&store, theirs).await;
    let before = unit_events(&store, theirs).await.len();
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(mine), None).await;
    welcome(&mut device).await;
    device.recv().await; // resync
    for (i, command) in [
        ClientMessage::AcknowledgeTask {
            key: key("steal-0001"),
            task: their_task,
            at: Utc::now(),
        },
        ClientMessage::CompleteTask {
            key: key("steal-0002"),
            task: their_task,
            at: Utc::now(),
        },
        ClientMessage::DeclineTask {
            key: key("steal-0003"),
            task: their_task,
            reason: None,
            at: Utc::now(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        device.send(&command).await;
        match device.recv().await {
            ServerMessage::Error { code, .. } => {
                assert_eq!(code, ErrorCode::Refused, "command {i}")
            }
            other => panic!("command {i}: {other:?}"),
        }
    }
    assert_eq!(
        unit_events(&store, theirs).await.len(),
        before,
        "their stream is untouched"
    );
    // Nor can a device see another unit's tasks.
    let t = assign(&store, mine).await;
    assert!(matches!(device.recv().await, ServerMessage::Task { task, .. } if task.task == t));
}

#[tokio::test]
async fn a_retried_command_is_never_appended_twice() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let task = assign(&store, unit).await;
    let ctx = context(&store);
    let at = Utc::now();
    let commands = [
        ClientMessage::AcknowledgeTask {
            key: key("ack-00000001"),
            task,
            at,
        },
        ClientMessage::Status {
            key: key("sts-00000001"),
            status: UnitStatus::EnRoute,
            at,
        },
        ClientMessage::Position {
            key: key("pos-00000001"),
            position: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
            heading_deg: Some(10.0),
            speed_m_s: Some(5.0),
            accuracy_m: None,
            at,
        },
        ClientMessage::FieldIncident {
            key: key("inc-00000001"),
            location: LatLon::from_lat_lon(60.18, 24.95).unwrap(),
            incident_type: IncidentType::Medical,
            priority: Priority::P2,
            at,
        },
    ];
    let mut incident = None;
    // First connection: everything applied. Second connection (after a "drop"): the same
    // commands with the same keys are duplicates.
    for (round, expected) in [(0, Outcome::Applied), (1, Outcome::Duplicate)] {
        let mut device = connect(&ctx);
        device.hello(token_for(unit), Some(0)).await;
        welcome(&mut device).await;
        for command in &commands {
            device.send(command).await;
            loop {
                match device.recv().await {
                    ServerMessage::Done {
                        key,
                        outcome,
                        incident: i,
                    } => {
                        assert_eq!(Some(&key), command.key());
                        assert_eq!(outcome, expected, "round {round}: {key:?}");
                        if i.is_some() {
                            incident = incident.or(i);
                            assert_eq!(incident, i, "the same incident on a retry");
                        }
                        break;
                    }
                    ServerMessage::Task { .. } | ServerMessage::TaskUpdate { .. } => continue,
                    other => panic!("round {round}: {other:?}"),
                }
            }
        }
    }
    let types: Vec<String> = unit_events(&store, unit)
        .await
        .into_iter()
        .map(|r| r.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "UnitRegistered",
            "TaskAssigned",
            "UnitStatusChanged",
            "TaskAcknowledged",
            "UnitStatusChanged",
            "UnitPositionReported"
        ]
    );
    let incident = incident.expect("the field report names its incident");
    let reported = store
        .read_stream(
            &incident.stream_name(),
            Direction::Forwards,
            ReadFrom::Start,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        reported
            .iter()
            .filter(|r| r.event_type == "IncidentReported")
            .count(),
        1
    );
    // A key names one command: sent again with other fields, it is refused as a reused key
    // and appends nothing.
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(0)).await;
    welcome(&mut device).await;
    device
        .send(&ClientMessage::Status {
            key: key("pos-00000001"),
            status: UnitStatus::OnScene,
            at,
        })
        .await;
    loop {
        match device.recv().await {
            ServerMessage::Error { code, message, .. } => {
                assert_eq!(code, ErrorCode::Refused);
                assert!(message.contains("already used"), "{message}");
                break;
            }
            ServerMessage::Task { .. } | ServerMessage::TaskUpdate { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(unit_events(&store, unit).await.len(), types.len());
}

#[tokio::test]
async fn a_device_clock_far_off_is_refused_with_the_reason_and_nothing_is_stored() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let before = unit_events(&store, unit).await.len();
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), None).await;
    welcome(&mut device).await;
    device.recv().await; // resync
    let cases = [
        (
            "a status stamped 1970",
            ClientMessage::Status {
                key: key("clock-0001"),
                status: UnitStatus::OutOfService,
                at: "1970-01-01T00:00:00Z".parse().unwrap(),
            },
            "behind",
        ),
        (
            "a fix stamped in the year 9999",
            ClientMessage::Position {
                key: key("clock-0002"),
                position: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
                heading_deg: None,
                speed_m_s: None,
                accuracy_m: None,
                at: "9999-12-31T23:59:59Z".parse().unwrap(),
            },
            "ahead",
        ),
    ];
    for (why, message, reason) in cases {
        device.send(&message).await;
        match device.recv().await {
            ServerMessage::Error { code, message, .. } => {
                assert_eq!(code, ErrorCode::Refused, "{why}");
                assert!(message.contains(reason), "{why}: {message}");
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    assert_eq!(
        unit_events(&store, unit).await.len(),
        before,
        "nothing stored"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_device_is_dropped_within_30_seconds() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    let silent_since = tokio::time::Instant::now();
    let mut pings = 0;
    let code = loop {
        match device.frame().await {
            Some(Message::Ping(_)) => pings += 1,
            Some(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(close::POLICY));
    assert!(pings >= 1, "the gateway pinged before giving up");
    let noticed_after = silent_since.elapsed();
    assert!(noticed_after >= IDLE_TIMEOUT, "{noticed_after:?}");
    assert!(
        noticed_after <= IDLE_TIMEOUT + PING_INTERVAL,
        "{noticed_after:?}"
    );
    assert!(noticed_after <= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_device_that_answers_pings_stays_connected() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    for _ in 0..10 {
        match device.frame().await {
            Some(Message::Ping(p)) => device
                .to_gateway
                .unbounded_send(Ok(Message::Pong(p)))
                .unwrap(),
            other => panic!("{other:?}"),
        }
    }
    assert!(!device.session.is_finished());
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    let flood = RATE_BURST as usize + 500;
    for i in 0..flood {
        device
            .to_gateway
            .unbounded_send(Ok(Message::text(
                ClientMessage::Ping {
                    nonce: Some(i as u64),
                }
                .to_json(),
            )))
            .unwrap();
    }
    let mut pongs = 0;
    let mut limited = 0;
    let code = loop {
        match device.frame().await {
            Some(Message::Text(t)) => match serde_json::from_str(&t).unwrap() {
                ServerMessage::Pong { .. } => pongs += 1,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    retry_after_ms,
                    ..
                } => {
                    assert!(retry_after_ms.is_some());
                    limited += 1;
                }
                other => panic!("{other:?}"),
            },
            Some(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Some(_) => {}
            None => break None,
        }
    };
    assert!(pongs >= RATE_BURST as usize, "{pongs}");
    assert!(limited >= 1);
    assert_eq!(code, Some(close::POLICY));
}

#[tokio::test]
async fn a_full_queue_drops_the_connection_from_the_hub() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let (hub, _subscription) = Hub::new(&store);
    let mut registration = hub.register(unit);
    let mut task = None;
    // Fill the queue without reading: each assignment and completion is one task event.
    for _ in 0..=OUTBOUND_QUEUE {
        if let Some(t) = task.take() {
            complete(&store, unit, t).await;
        } else {
            task = Some(assign(&store, unit).await);
        }
    }
    if let Some(t) = task.take() {
        complete(&store, unit, t).await;
    }
    let events = unit_events(&store, unit).await;
    for recorded in events {
        hub.dispatch(recorded);
    }
    assert_eq!(hub.dropped_slow(), 1);
    let mut drained = 0;
    while registration.events.recv().await.is_some() {
        drained += 1;
    }
    assert_eq!(
        drained, OUTBOUND_QUEUE,
        "what was queued is still handed over, then the end"
    );
}

#[tokio::test]
async fn a_device_that_stops_reading_is_closed_and_resumes_later() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    // A sink that accepts nothing: the session blocks on its first write of a delivery.
    let (to_gateway, incoming) = futures::channel::mpsc::unbounded();
    let (outgoing, mut from_gateway) = futures::channel::mpsc::channel::<Message>(0);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let session = tokio::spawn(muster_mobile::session::run_session(
        incoming,
        outgoing,
        ctx.clone(),
        stop_rx,
    ));
    to_gateway
        .unbounded_send(Ok(Message::text(
            ClientMessage::Hello {
                v: 1,
                token: token_for(unit),
                unit: None,
                resume_after: Some(1),
            }
            .to_json(),
        )))
        .unwrap();
    // Read only the welcome.
    let first = futures::StreamExt::next(&mut from_gateway).await.unwrap();
    assert!(matches!(first, Message::Text(_)));
    let mut task = None;
    while ctx.hub.dropped_slow() == 0 {
        match task.take() {
            Some(t) => complete(&store, unit, t).await,
            None => task = Some(assign(&store, unit).await),
        }
        tokio::task::yield_now().await;
    }
    // Now read again: what is in the pipe, then the close.
    let mut code = None;
    while let Some(frame) = futures::StreamExt::next(&mut from_gateway).await {
        if let Message::Close(f) = frame {
            code = f.map(|f| u16::from(f.code));
        }
    }
    assert_eq!(code, Some(close::TRY_AGAIN_LATER));
    assert_eq!(session.await.unwrap().code, Some(close::TRY_AGAIN_LATER));
}

#[tokio::test]
async fn shutdown_closes_with_going_away() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let ctx = context(&store);
    let mut device = connect(&ctx);
    device.hello(token_for(unit), Some(1)).await;
    welcome(&mut device).await;
    device.stop.send(true).unwrap();
    assert_eq!(device.close_code().await, Some(close::GOING_AWAY));
}

#[tokio::test(start_paused = true)]
async fn a_task_not_acknowledged_in_time_raises_one_alert() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let timeout = Duration::from_secs(60);
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watchdog = |store: Arc<dyn EventStore>| {
        let mut stop = stop_rx.clone();
        tokio::spawn(AckWatchdog::new(store, timeout).run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    watchdog(store.clone());
    // A second node watching the same log appends nothing more.
    watchdog(store.clone());
    let late = assign(&store, unit).await;
    let other = register_unit(&store, "E2").await;
    let prompt = assign(&store, other).await;
    unit_command(
        &store,
        other,
        UnitCommand::AcknowledgeTask {
            task: prompt,
            at: Utc::now(),
        },
    )
    .await;
    let alerts = |task| {
        let store = store.clone();
        async move {
            match store
                .read_stream(
                    &muster_core::TaskId::alert_stream(&task),
                    Direction::Forwards,
                    ReadFrom::Start,
                    10,
                )
                .await
            {
                Ok(events) => events,
                Err(StoreError::StreamNotFound(_)) => Vec::new(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    tokio::time::sleep(timeout - Duration::from_secs(5)).await;
    assert!(alerts(late).await.is_empty(), "not before the timeout");
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Let the watchdogs append.
    let mut found = alerts(late).await;
    for _ in 0..100 {
        if !found.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        found = alerts(late).await;
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event_type, TASK_ACK_OVERDUE);
    let data: serde_json::Value = found[0].decode().unwrap();
    assert_eq!(data["unit"], unit.to_string());
    assert!(
        alerts(prompt).await.is_empty(),
        "an acknowledged task raises nothing"
    );
}

#[tokio::test]
async fn two_gateway_nodes_number_the_same_task_alike() {
    let store = memory_store();
    let unit = register_unit(&store, "E1").await;
    let node_a = context(&store);
    let node_b = context(&store);
    let mut on_a = connect(&node_a);
    let mut on_b = connect(&node_b);
    on_a.hello(token_for(unit), Some(1)).await;
    on_b.hello(token_for(unit), Some(1)).await;
    welcome(&mut on_a).await;
    welcome(&mut on_b).await;
    let task = assign(&store, unit).await;
    let a = on_a.recv().await;
    let b = on_b.recv().await;
    assert_eq!(a, b, "the same message, sequence number included");
    assert!(matches!(&a, ServerMessage::Task { task: view, .. } if view.task == task));
    // A device moving from node A to node B resumes where it was.
    drop(on_a);
    let mut moved = connect(&node_b);
    moved.hello(token_for(unit), a.seq()).await;
    welcome(&mut moved).await;
    complete(&store, unit, task).await;
    let next = moved.recv().await;
    assert!(matches!(
        next,
        ServerMessage::TaskUpdate {
            state: TaskState::Completed,
            ..
        }
    ));
    assert_eq!(next, on_b.recv().await);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_says_hello_is_closed() {
    let store = memory_store();
    let ctx = context(&store);
    let mut device = connect(&ctx);
    let opened = tokio::time::Instant::now();
    match device.recv().await {
        ServerMessage::Error { code, .. } => assert_eq!(code, ErrorCode::HelloExpected),
        other => panic!("{other:?}"),
    }
    assert_eq!(device.close_code().await, Some(close::POLICY));
    assert!(opened.elapsed() >= muster_mobile::limits::HELLO_TIMEOUT);
}
