//! The device simulator behind `muster responder`: connects as a unit through the
//! [`Client`], acknowledges each task, goes en route, drives along its route to the incident
//! reporting positions, arrives on scene, stays a while, completes the task and becomes
//! available again.

use std::collections::VecDeque;
use std::time::Duration;

use muster_core::TaskId;
use muster_core::unit::UnitStatus;
use muster_core::value::{IdempotencyKey, LatLon};
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{Client, ClientConfig, ClientEvent};
use crate::protocol::TaskState;

/// Where a simulated unit starts when no route is given (central Helsinki).
pub const DEFAULT_START: (f64, f64) = (60.1699, 24.9384);

/// How a simulated responder behaves.
#[derive(Clone, Debug)]
pub struct ResponderConfig {
    /// The connection.
    pub client: ClientConfig,
    /// Waypoints driven through on the way to each incident (the incident's location is
    /// appended when the task carries it). The first is the start.
    pub route: Vec<LatLon>,
    /// Driving speed.
    pub speed_m_s: f64,
    /// Time between position reports while moving.
    pub position_every: Duration,
    /// Time spent on scene before completing the task.
    pub on_scene_for: Duration,
    /// Stop after completing this many tasks.
    pub tasks: Option<usize>,
}

/// What a simulated responder did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ResponderReport {
    /// Tasks received.
    pub tasks_received: usize,
    /// Tasks completed.
    pub tasks_completed: usize,
    /// Position reports sent.
    pub positions_sent: usize,
    /// Commands the gateway carried out.
    pub commands_done: usize,
    /// Commands the gateway refused.
    pub commands_refused: usize,
    /// Connections lost (and re-established).
    pub disconnects: usize,
}

struct Job {
    task: TaskId,
    waypoints: VecDeque<LatLon>,
    arrived: Option<Instant>,
}

/// Moves `from` towards `to` by at most `metres`; the new position and whether it arrived.
pub fn step_towards(from: LatLon, to: LatLon, metres: f64) -> (LatLon, bool) {
    let distance = from.haversine_distance_m(to);
    if distance <= metres || distance == 0.0 {
        return (to, true);
    }
    // Over a few hundred metres, interpolating the coordinates by the fraction of the
    // geodesic distance stays within centimetres of the great circle.
    let f = metres / distance;
    let lat = from.lat_deg() + (to.lat_deg() - from.lat_deg()) * f;
    let lon = from.lon_deg() + (to.lon_deg() - from.lon_deg()) * f;
    (LatLon::from_lat_lon(lat, lon).unwrap_or(to), false)
}

fn heading_deg(from: LatLon, to: LatLon) -> f64 {
    let (p1, p2) = (from.lat_deg().to_radians(), to.lat_deg().to_radians());
    let dl = (to.lon_deg() - from.lon_deg()).to_radians();
    let y = dl.sin() * p2.cos();
    let x = p1.cos() * p2.sin() - p1.sin() * p2.cos() * dl.cos();
    let h = y.atan2(x).to_degrees().rem_euclid(360.0);
    if h >= 360.0 { 0.0 } else { h }
}

/// Runs a simulated responder until it completed its tasks, the gateway refused it for
/// good, or `shutdown` resolves.
pub async fn run(
    config: ResponderConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ResponderReport> {
    tokio::pin!(shutdown);
    let mut client = Client::start(config.client.clone());
    let start = config.route.first().copied().unwrap_or_else(|| {
        LatLon::from_lat_lon(DEFAULT_START.0, DEFAULT_START.1)
            .unwrap_or_else(|_| unreachable!("a valid constant"))
    });
    let mut position = start;
    let mut report = ResponderReport::default();
    let mut job: Option<Job> = None;
    let mut ticker = tokio::time::interval(config.position_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let step_m = config.speed_m_s * config.position_every.as_secs_f64();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = client.next() => {
                let Some(event) = event else { break };
                match event {
                    ClientEvent::Task { task, .. } => {
                        report.tasks_received += 1;
                        tracing::info!(task = %task.task, incident = %task.incident, "task received");
                        if job.is_some() {
                            continue;
                        }
                        client.acknowledge(task.task);
                        client.status(UnitStatus::EnRoute);
                        let mut waypoints: VecDeque<LatLon> =
                            config.route.iter().skip(1).copied().collect();
                        if let Some(target) = task.location {
                            waypoints.push_back(target);
                        }
                        if waypoints.is_empty() {
                            // Nowhere known to go: a kilometre east of here.
                            let target = LatLon::from_lat_lon(position.lat_deg(), position.lon_deg() + 0.018)
                                .unwrap_or(position);
                            waypoints.push_back(target);
                        }
                        job = Some(Job { task: task.task, waypoints, arrived: None });
                    }
                    ClientEvent::TaskUpdate { task, state, .. } => {
                        if matches!(state, TaskState::Completed | TaskState::Declined)
                            && job.as_ref().is_some_and(|j| j.task == task)
                        {
                            // Stood down (or our own completion confirmed).
                            job = None;
                        }
                    }
                    ClientEvent::Resync { snapshot, .. } => {
                        if snapshot.active_task.is_none() {
                            job = None;
                        }
                    }
                    ClientEvent::Done { .. } => report.commands_done += 1,
                    ClientEvent::Failed { message, .. } => {
                        report.commands_refused += 1;
                        tracing::warn!(%message, "command refused");
                    }
                    ClientEvent::Disconnected { reason } => {
                        report.disconnects += 1;
                        tracing::info!(%reason, "disconnected; reconnecting");
                    }
                    ClientEvent::Connected { session } => tracing::info!(%session, "connected"),
                    ClientEvent::Fatal { reason } => {
                        client.stop().await;
                        anyhow::bail!("the gateway refused this responder: {reason}");
                    }
                }
            }
            _ = ticker.tick() => {
                let Some(current) = job.as_mut() else { continue };
                if let Some(arrived) = current.arrived {
                    if arrived.elapsed() >= config.on_scene_for {
                        client.complete(current.task);
                        let last = client.status(UnitStatus::Available);
                        report.tasks_completed += 1;
                        job = None;
                        if config.tasks.is_some_and(|n| report.tasks_completed >= n) {
                            // Let the queued commands go out before stopping.
                            drain(&mut client, &mut report, &last).await;
                            break;
                        }
                    }
                    continue;
                }
                let Some(&next) = current.waypoints.front() else { continue };
                let (moved, reached) = step_towards(position, next, step_m);
                let heading = heading_deg(position, next);
                position = moved;
                client.position(position, Some(heading), Some(config.speed_m_s));
                report.positions_sent += 1;
                if reached {
                    current.waypoints.pop_front();
                    if current.waypoints.is_empty() {
                        client.status(UnitStatus::OnScene);
                        current.arrived = Some(Instant::now());
                    }
                }
            }
        }
    }
    client.stop().await;
    Ok(report)
}

/// Waits (up to 30 s) until the command with key `last` was answered: commands go in
/// order, so every command before it was too.
async fn drain(client: &mut Client, report: &mut ResponderReport, last: &IdempotencyKey) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(ClientEvent::Done { key, .. })) => {
                report.commands_done += 1;
                if &key == last {
                    return;
                }
            }
            Ok(Some(ClientEvent::Failed { key, .. })) => {
                report.commands_refused += 1;
                if &key == last {
                    return;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}
