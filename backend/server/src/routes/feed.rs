//! The wall-display feed (`GET /api/feed`, a websocket): first a snapshot of the views with
//! its log position, then one delta per change, each with the position of the event that
//! made it. A display that reconnects with `?after=<last position it saw>` gets only the
//! deltas it missed (a `resume` message, then those deltas) when the server's backlog still
//! holds them, else a fresh snapshot.
//!
//! A browser opens the socket with a one-time ticket (`POST /api/feed/ticket`, then
//! `?ticket=…`, see [`crate::tickets`]); other clients may send their bearer token in the
//! `Authorization` header instead.
//!
//! Messages (JSON text frames):
//! - `{"type": "snapshot", "position": P, "incidents": [...], "units": [...]}`
//! - `{"type": "resume", "after": P}`
//! - `{"type": "delta", "position": P, "incident": {...}}` or `… "unit": {...}}`

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message;
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use muster_store::Position;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::{Allowed, AppState, Read};
use crate::auth::{Caller, READERS};
use crate::error::ApiError;
use crate::tickets::FeedTickets;
use crate::views::{Live, Views};

/// The largest frame a display may send (it only sends pings and closes).
pub const MAX_INCOMING_FRAME_BYTES: usize = 4 * 1024;

/// The first messages of a session: what brings a display from `after` to the live state.
pub fn opening(live: &Live, after: Option<Position>) -> Vec<String> {
    if let Some(after) = after
        && let Some(deltas) = live.deltas_after(after)
    {
        let mut out = vec![json!({"type": "resume", "after": after}).to_string()];
        out.extend(deltas.into_iter().map(|d| d.json.to_string()));
        return out;
    }
    vec![live.state.snapshot_json()]
}

#[derive(Debug, Deserialize)]
struct FeedQuery {
    after: Option<u64>,
    ticket: Option<String>,
}

/// The answer to `POST /api/feed/ticket`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedTicket {
    /// Open `GET /api/feed?ticket=<ticket>` with it, once, before `expires_at`.
    pub ticket: String,
    /// When it stops being taken (30 s after it was issued).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// `POST /api/feed/ticket`: a one-time ticket for the feed, for the caller of the request.
pub async fn ticket(
    tickets: web::Data<FeedTickets>,
    allowed: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let (ticket, expires_at) = tickets.issue(&allowed.0, chrono::Utc::now());
    Ok(HttpResponse::Created().json(FeedTicket { ticket, expires_at }))
}

/// The caller of a feed upgrade: a one-time `ticket` in the address, or a bearer token in
/// the `Authorization` header (clients that can set headers).
async fn feed_caller(
    req: &HttpRequest,
    tickets: &FeedTickets,
    ticket: Option<&str>,
) -> Result<Caller, ApiError> {
    let caller = match ticket {
        Some(ticket) => tickets
            .redeem(ticket, chrono::Utc::now())
            .map_err(|e| crate::auth::refused(req, &e.to_string()))?,
        None => crate::auth::authenticate(req).await?,
    };
    caller.require(READERS)?;
    Ok(caller)
}

/// Stops every feed session when the server shuts down.
#[derive(Clone, Debug)]
pub struct FeedShutdown(pub watch::Receiver<bool>);

/// `GET /api/feed`: upgrades to a websocket and runs the session.
pub async fn feed(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    shutdown: web::Data<FeedShutdown>,
    origins: Option<web::Data<crate::security::AllowedOrigins>>,
    tickets: web::Data<FeedTickets>,
) -> Result<HttpResponse, ApiError> {
    let q = web::Query::<FeedQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    feed_caller(&req, &tickets, q.ticket.as_deref()).await?;
    let allowed = origins.as_ref().map_or(&[][..], |o| o.0.as_slice());
    if !crate::security::origin_allowed(req.headers(), allowed) {
        tracing::warn!(
            peer = %req.peer_addr().map_or("unknown".to_owned(), |p| p.ip().to_string()),
            "a wall feed upgrade from another site was refused"
        );
        return Err(ApiError::forbidden(
            "this page's origin may not open the feed; add it to allowed_origins in the configuration",
        ));
    }
    let after = q.after.map(Position);
    let (response, session, incoming) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request(
            "not_a_websocket",
            format!("open the feed as a websocket: {e}"),
        )
    })?;
    let incoming = incoming
        .max_frame_size(MAX_INCOMING_FRAME_BYTES)
        .map(|m| match m {
            Ok(Message::Ping(bytes)) => FeedIn::Ping(bytes),
            Ok(Message::Close(_)) | Err(_) => FeedIn::Close,
            Ok(_) => FeedIn::Other,
        });
    let (out, mut outbox) = futures::channel::mpsc::channel::<FeedOut>(OUTBOX);
    let mut socket = session;
    actix_web::rt::spawn(async move {
        while let Some(message) = outbox.next().await {
            let sent = match message {
                FeedOut::Text(text) => socket.text(text).await,
                FeedOut::Pong(bytes) => socket.pong(&bytes).await,
                FeedOut::Close => break,
            };
            if sent.is_err() {
                return;
            }
        }
        let _ = socket.close(None).await;
    });
    actix_web::rt::spawn(run_session(
        state.views.clone(),
        after,
        out,
        incoming,
        shutdown.0.clone(),
    ));
    Ok(response)
}

/// Messages the session sends a display.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedOut {
    /// A JSON message.
    Text(String),
    /// The answer to a ping.
    Pong(Bytes),
    /// The end of the session.
    Close,
}

/// What a display sends, as far as the session cares.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedIn {
    /// A ping, to be answered.
    Ping(Bytes),
    /// The display goes (or its socket failed).
    Close,
    /// Anything else, ignored.
    Other,
}

/// Messages queued for one display's socket.
const OUTBOX: usize = 64;

/// One display's session, over any sink of outgoing and stream of incoming messages: the
/// opening ([`opening`]), then deltas as they come, a fresh snapshot if the display fell too
/// far behind, pongs for pings, and a close when the display goes or the server stops.
pub async fn run_session<O, I>(
    views: Views,
    after: Option<Position>,
    mut out: O,
    mut incoming: I,
    mut shutdown: watch::Receiver<bool>,
) where
    O: Sink<FeedOut> + Unpin,
    I: Stream<Item = FeedIn> + Unpin,
{
    let (first, mut rx) = views.read_and_subscribe(|live| opening(live, after));
    for message in first {
        if out.send(FeedOut::Text(message)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            delta = rx.recv() => match delta {
                Ok(delta) => {
                    if out.send(FeedOut::Text(delta.json.to_string())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Too slow to follow: start again from a snapshot.
                    let (snapshot, fresh) =
                        views.read_and_subscribe(|live| live.state.snapshot_json());
                    rx = fresh;
                    if out.send(FeedOut::Text(snapshot)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            message = incoming.next() => match message {
                Some(FeedIn::Ping(bytes)) => {
                    if out.send(FeedOut::Pong(bytes)).await.is_err() {
                        return;
                    }
                }
                Some(FeedIn::Close) | None => break,
                Some(FeedIn::Other) => {}
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
    let _ = out.send(FeedOut::Close).await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use muster_core::IncidentId;
    use muster_core::event::{EventIds, encode_batch};
    use muster_core::incident::{IncidentEvent, ReportSource};
    use muster_core::value::{CallerDetails, IncidentType, LatLon, Priority};
    use muster_store::{EventMetadata, RecordedEvent};
    use serde_json::Value;

    use super::*;
    use crate::areas::Areas;
    use crate::views::ViewState;

    fn reported(position: u64) -> RecordedEvent {
        let id = IncidentId::new_v7();
        let stream = id.stream_name();
        let event = IncidentEvent::IncidentReported {
            incident_id: id,
            source: ReportSource::Hotline,
            location: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
            incident_type: IncidentType::Medical,
            priority: Priority::P2,
            caller: CallerDetails::default(),
            at: chrono::Utc::now(),
        };
        let new = encode_batch(
            &stream,
            &[event],
            EventIds::Fresh,
            &EventMetadata::default(),
        )
        .unwrap()
        .remove(0);
        RecordedEvent {
            stream,
            revision: 0,
            position: Position(position),
            id: new.id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            data: new.data,
            metadata: new.metadata,
            recorded_at: chrono::Utc::now(),
        }
    }

    fn kinds(messages: &[String]) -> Vec<(String, Option<u64>)> {
        messages
            .iter()
            .map(|m| {
                let v: Value = serde_json::from_str(m).unwrap();
                (
                    v["type"].as_str().unwrap().to_owned(),
                    v["position"].as_u64(),
                )
            })
            .collect()
    }

    #[test]
    fn a_new_display_gets_a_snapshot_and_a_returning_one_the_deltas_it_missed() {
        let views = Views::new(ViewState::default(), Areas::grid());
        views.apply_batch(&[reported(0), reported(1)]).unwrap();
        let (first, mut rx) = views.read_and_subscribe(|live| opening(live, None));
        assert_eq!(kinds(&first), vec![("snapshot".into(), Some(1))]);
        views.apply_batch(&[reported(2)]).unwrap();
        assert_eq!(rx.try_recv().unwrap().position, Position(2));

        let resumed = views.read(|live| opening(live, Some(Position(0))));
        assert_eq!(
            kinds(&resumed),
            vec![
                ("resume".into(), None),
                ("delta".into(), Some(1)),
                ("delta".into(), Some(2))
            ]
        );
        let up_to_date = views.read(|live| opening(live, Some(Position(2))));
        assert_eq!(kinds(&up_to_date), vec![("resume".into(), None)]);
        // A position from the future (another store) gets a snapshot.
        let future = views.read(|live| opening(live, Some(Position(99))));
        assert_eq!(kinds(&future)[0].0, "snapshot");
    }

    #[tokio::test]
    async fn a_session_sends_the_opening_then_deltas_answers_pings_and_closes_on_shutdown() {
        let views = Views::new(ViewState::default(), Areas::grid());
        views.apply_batch(&[reported(0)]).unwrap();
        let (out_tx, mut out_rx) = futures::channel::mpsc::channel::<FeedOut>(16);
        let (mut in_tx, in_rx) = futures::channel::mpsc::channel::<FeedIn>(16);
        let (stop_tx, stop_rx) = watch::channel(false);
        let session = tokio::spawn(run_session(views.clone(), None, out_tx, in_rx, stop_rx));
        let text = |m: Option<FeedOut>| match m {
            Some(FeedOut::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("expected a text message, got {other:?}"),
        };
        let snapshot = text(out_rx.next().await);
        assert_eq!(snapshot["type"], "snapshot");
        views.apply_batch(&[reported(1)]).unwrap();
        let delta = text(out_rx.next().await);
        assert_eq!(
            (delta["type"].as_str(), delta["position"].as_u64()),
            (Some("delta"), Some(1))
        );
        in_tx
            .send(FeedIn::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        assert_eq!(
            out_rx.next().await,
            Some(FeedOut::Pong(Bytes::from_static(b"hi")))
        );
        stop_tx.send_replace(true);
        assert_eq!(out_rx.next().await, Some(FeedOut::Close));
        session.await.unwrap();
    }

    #[tokio::test]
    async fn a_display_that_leaves_ends_its_session() {
        let views = Views::new(ViewState::default(), Areas::grid());
        let (out_tx, mut out_rx) = futures::channel::mpsc::channel::<FeedOut>(16);
        let (mut in_tx, in_rx) = futures::channel::mpsc::channel::<FeedIn>(16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let session = tokio::spawn(run_session(
            views,
            Some(Position(5)),
            out_tx,
            in_rx,
            stop_rx,
        ));
        assert!(matches!(out_rx.next().await, Some(FeedOut::Text(_))));
        in_tx.send(FeedIn::Close).await.unwrap();
        assert_eq!(out_rx.next().await, Some(FeedOut::Close));
        session.await.unwrap();
    }

    #[test]
    fn views_restored_from_a_checkpoint_cannot_resume_from_before_it() {
        let mut state = ViewState::default();
        state.fold(&reported(0), &Areas::grid()).unwrap();
        state.fold(&reported(1), &Areas::grid()).unwrap();
        let views = Views::new(state, Areas::grid());
        views.apply_batch(&[reported(2)]).unwrap();
        let from_before = views.read(|live| opening(live, Some(Position(0))));
        assert_eq!(kinds(&from_before)[0].0, "snapshot");
        let from_checkpoint = views.read(|live| opening(live, Some(Position(1))));
        assert_eq!(
            kinds(&from_checkpoint),
            vec![("resume".into(), None), ("delta".into(), Some(2))]
        );
    }
}
