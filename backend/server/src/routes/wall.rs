//! The wall display's share of the server: the built web app (static files from
//! `backend/web/dist`), the city's base map, address lookup, and the city as it was at a
//! past moment of the log (time travel). `docs/wall-display.md` describes the page.
//!
//! Routes (reads need any role's token; the page itself needs none):
//! - `GET /api/wall/city`: name, attribution, bounds, base map (roads, water, rail),
//!   districts, stations and hospitals, as GeoJSON.
//! - `GET /api/wall/geocode?q=Mannerheimintie 5`: the address's point, or 422 saying why not.
//! - `GET /api/wall/timeline`: the log's head and the times of its first and last events.
//! - `GET /api/wall/at?time=<RFC 3339>` or `?position=P`: the views folded from the start of
//!   the log up to that moment, in the shape of the feed's snapshot.
//! - `GET /api/wall/response-times`: today's (UTC) response times from the log's NFPA time
//!   points: call received to first unit dispatched and to first unit on scene, p50 and p90.
//! - `GET /`, `GET /<file>`: the web app; unknown paths without an extension get `index.html`.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use muster_core::value::LatLon;
use muster_geodata::geocode::{AddressQuery, Geocoder};
use muster_geodata::model::City;
use muster_store::{EventStore, Position};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Allowed, AppState, Read};
use crate::error::ApiError;
use crate::security::ExpensiveReads;
use crate::views::{IncidentRow, UnitRow, ViewState};

/// `GET /api/wall/city`: the configured city for the base map.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CityMap {
    /// The city's name.
    pub name: String,
    /// Whose map data it is.
    pub attribution: String,
    /// South-west and north-east corners, `[lat, lon]` each.
    pub bounds: [[f64; 2]; 2],
    /// Roads, water and rail as an RFC 7946 FeatureCollection.
    #[schema(value_type = Object)]
    pub base: Value,
    /// The districts (polygons) as a FeatureCollection.
    #[schema(value_type = Object)]
    pub districts: Value,
    /// The stations (points) as a FeatureCollection.
    #[schema(value_type = Object)]
    pub stations: Value,
    /// The hospitals (points) as a FeatureCollection.
    #[schema(value_type = Object)]
    pub hospitals: Value,
}

/// `GET /api/wall/geocode`: where an address is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AddressFound {
    /// The street, as the city names it.
    pub street: String,
    /// The house number found, if any.
    pub number: Option<String>,
    /// Whether that house number was found (otherwise the street's nearest point).
    pub exact: bool,
    /// Where.
    pub location: LatLon,
}

/// `GET /api/wall/timeline`: the log's head and its first and last events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    /// The next log position to be written.
    pub head: u64,
    /// The first event, if any.
    pub first: Option<LogMoment>,
    /// The last event, if any.
    pub last: Option<LogMoment>,
}

/// An event's place in the log and time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogMoment {
    /// Log position.
    pub position: u64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// `GET /api/wall/at`: the views as they were, in the shape of the feed's snapshot.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    /// `history`.
    #[serde(rename = "type")]
    pub kind: HistoryType,
    /// The last log position folded (none before the first event).
    pub position: Option<u64>,
    /// Every incident as it was.
    pub incidents: Vec<IncidentRow>,
    /// Every unit as it was.
    pub units: Vec<UnitRow>,
    /// The moment asked for (none when asked by position).
    pub at: Option<DateTime<Utc>>,
    /// When the last event folded was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
}

/// The type of a [`History`] message.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryType {
    /// The only one.
    History,
}

/// `GET /api/wall/response-times`: today's (UTC) response times.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResponseTimesToday {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// Calls received today.
    pub calls: u64,
    /// Call received to first unit dispatched, seconds.
    pub call_to_dispatch_s: Percentiles,
    /// Call received to first unit on scene, seconds.
    pub call_to_on_scene_s: Percentiles,
}

/// Nearest-rank percentiles of some durations, seconds (none without any).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    /// How many.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
}

/// Events read from the store per batch while folding a past moment.
const REPLAY_BATCH: usize = 2_000;
/// The most events a time-travel request folds; a longer log answers 422.
pub const MAX_REPLAY_EVENTS: u64 = 5_000_000;
/// The longest address query accepted.
const MAX_GEOCODE_CHARS: usize = 200;

/// What the wall routes share.
pub struct WallState {
    city: Option<Arc<City>>,
    geocoder: OnceLock<Option<Geocoder>>,
    city_json: OnceLock<String>,
    store: Arc<dyn EventStore>,
    dist: PathBuf,
    times: tokio::sync::Mutex<ResponseTimes>,
}

/// Time points per incident, folded from the log as far as `next`.
#[derive(Debug, Default)]
struct ResponseTimes {
    next: Position,
    incidents: HashMap<muster_core::IncidentId, Points>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Points {
    call: Option<DateTime<Utc>>,
    dispatched: Option<DateTime<Utc>>,
    on_scene: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for WallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WallState")
            .field("dist", &self.dist)
            .finish()
    }
}

impl WallState {
    /// State for the wall routes: the city (if the server has one), the store, and the
    /// folder of the built app ([`dist_dir`]).
    pub fn new(city: Option<City>, store: Arc<dyn EventStore>) -> Self {
        Self {
            city: city.map(Arc::new),
            geocoder: OnceLock::new(),
            city_json: OnceLock::new(),
            store,
            dist: dist_dir(),
            times: Default::default(),
        }
    }
}

/// The web project's folder: `MUSTER_WEB_DIR`, else `backend/web` of the source tree this
/// binary was built from, else `backend/web` under the current directory.
pub fn web_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MUSTER_WEB_DIR") {
        return PathBuf::from(dir);
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    if built_from.join("package.json").exists() {
        built_from
    } else {
        PathBuf::from("backend/web")
    }
}

/// The built app: `MUSTER_WEB_DIST`, else `dist` in [`web_dir`].
pub fn dist_dir() -> PathBuf {
    std::env::var_os("MUSTER_WEB_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| web_dir().join("dist"))
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    let mut newest = meta.modified().ok()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = newest_mtime(&entry.path()) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

/// Builds the wall display and the responder app with npm when their sources are newer than
/// the built copies (or there are none). Skipped with `MUSTER_WEB_BUILD=0`, or for an app
/// whose sources are not there (an installed binary). A missing npm or a failed build is
/// reported and the server runs without that app.
pub fn ensure_built() {
    if std::env::var("MUSTER_WEB_BUILD").is_ok_and(|v| v == "0") {
        return;
    }
    build_if_stale("wall display", &web_dir());
    if let Some(app) = super::responder::dist_dir().parent() {
        build_if_stale("responder app", app);
    }
}

/// Builds the npm app in `dir` (`npm ci` when its lock file changed, then `npm run build`)
/// when its sources are newer than `dir/dist`.
fn build_if_stale(what: &str, dir: &Path) {
    let dir = dir.to_path_buf();
    if !dir.join("package.json").exists() || is_current(&dir) {
        return;
    }
    // Servers starting at once (tests, several nodes on one machine) build one at a time; the
    // ones that waited find the build current.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".build.lock"));
    let _held = match lock {
        Ok(file) => match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => Some(file),
            Err(e) => {
                eprintln!(
                    "{what}: cannot lock {} ({e}); building anyway",
                    dir.display()
                );
                None
            }
        },
        Err(e) => {
            eprintln!(
                "{what}: cannot open a build lock in {} ({e}); building anyway",
                dir.display()
            );
            None
        }
    };
    if is_current(&dir) {
        return;
    }
    build(what, &dir);
}

/// Whether `dir/dist` is newer than every source of the app in `dir`.
fn is_current(dir: &Path) -> bool {
    let built = std::fs::metadata(dir.join("dist/index.html"))
        .and_then(|m| m.modified())
        .ok();
    let sources = [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "public",
    ]
    .iter()
    .filter_map(|p| newest_mtime(&dir.join(p)))
    .max();
    built.is_some() && sources.is_some_and(|s| Some(s) <= built)
}

/// `npm ci` when the lock file is newer than the installed packages, then `npm run build`.
fn build(what: &str, dir: &Path) {
    let dir = dir.to_path_buf();
    let run = |args: &[&str]| -> Result<(), String> {
        eprintln!("{what}: npm {} (in {})", args.join(" "), dir.display());
        let status = std::process::Command::new("npm")
            .args(args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("could not run npm: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("npm {} failed ({status})", args.join(" ")))
        }
    };
    let lock = newest_mtime(&dir.join("package-lock.json"));
    let installed = newest_mtime(&dir.join("node_modules/.package-lock.json"));
    let result = if installed.is_none() || lock > installed {
        run(&["ci", "--no-audit", "--no-fund"])
    } else {
        Ok(())
    }
    .and_then(|()| run(&["run", "build"]));
    if let Err(e) = result {
        eprintln!("{what} not built: {e}; the API runs without it");
    }
}

fn lat_lon(p: muster_geodata::point::LatLon) -> Value {
    json!([p.lon_deg(), p.lat_deg()])
}

fn city_document(city: &City) -> String {
    let districts: Vec<Value> = city
        .districts
        .iter()
        .map(|d| {
            let mut ring: Vec<Value> = d.ring.iter().map(|p| lat_lon(*p)).collect();
            if let Some(first) = ring.first().cloned() {
                ring.push(first);
            }
            json!({"type": "Feature", "id": d.id,
                   "geometry": {"type": "Polygon", "coordinates": [ring]},
                   "properties": {"id": d.id, "name": d.name}})
        })
        .collect();
    let stations: Vec<Value> = city
        .stations
        .iter()
        .map(|s| {
            json!({"type": "Feature", "id": s.id,
                   "geometry": {"type": "Point", "coordinates": lat_lon(s.location)},
                   "properties": {"id": s.id, "name": s.name, "kind": s.kind.as_str()}})
        })
        .collect();
    let hospitals: Vec<Value> = city
        .hospitals
        .iter()
        .map(|h| {
            json!({"type": "Feature", "id": h.id,
                   "geometry": {"type": "Point", "coordinates": lat_lon(h.location)},
                   "properties": {"id": h.id, "name": h.name}})
        })
        .collect();
    let b = city.meta.bounds;
    let collection =
        |features: Vec<Value>| json!({"type": "FeatureCollection", "features": features});
    let doc = CityMap {
        name: city.meta.name.clone(),
        attribution: city.meta.attribution.clone(),
        bounds: [
            [b.south_west.lat_deg(), b.south_west.lon_deg()],
            [b.north_east.lat_deg(), b.north_east.lon_deg()],
        ],
        base: city.base_map_geojson(),
        districts: collection(districts),
        stations: collection(stations),
        hospitals: collection(hospitals),
    };
    serde_json::to_string(&doc).expect("the city map serializes to JSON")
}

async fn city(wall: web::Data<WallState>, _: Allowed<Read>) -> Result<HttpResponse, ApiError> {
    let Some(city) = wall.city.clone() else {
        return Err(ApiError::not_found(
            "this server has no city file (areas are a grid); there is no base map",
        ));
    };
    let wall2 = wall.clone();
    let body = web::block(move || wall2.city_json.get_or_init(|| city_document(&city)).clone())
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(body))
}

#[derive(Debug, Deserialize)]
struct GeocodeQuery {
    q: Option<String>,
}

async fn geocode(
    wall: web::Data<WallState>,
    query: web::Query<GeocodeQuery>,
    _: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let text = query.q.clone().unwrap_or_default();
    if text.trim().is_empty() {
        return Err(
            ApiError::invalid("type a street name, and a house number if known")
                .with_details(json!({"field": "address"})),
        );
    }
    if text.chars().count() > MAX_GEOCODE_CHARS {
        return Err(ApiError::invalid(format!(
            "the address is longer than {MAX_GEOCODE_CHARS} characters"
        ))
        .with_details(json!({"field": "address"})));
    }
    let Some(city) = wall.city.clone() else {
        return Err(ApiError::not_found(
            "this server has no city file to look addresses up in",
        ));
    };
    let wall2 = wall.clone();
    let hit = web::block(move || {
        let geocoder = wall2
            .geocoder
            .get_or_init(|| Some(Geocoder::new(city)))
            .as_ref()
            .expect("set above");
        AddressQuery::parse(&text).and_then(|q| geocoder.geocode(&q))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::invalid(e.to_string()).with_details(json!({"field": "address"})))?;
    Ok(HttpResponse::Ok().json(AddressFound {
        street: hit.street,
        number: hit.number,
        exact: hit.exact,
        location: hit.location,
    }))
}

async fn timeline(wall: web::Data<WallState>, _: Allowed<Read>) -> Result<HttpResponse, ApiError> {
    let head = wall.store.head();
    let first = wall
        .store
        .read_all(Position::START, 1)
        .await
        .map_err(ApiError::internal)?;
    let last = wall
        .store
        .read_all_backwards(head, 1)
        .await
        .map_err(ApiError::internal)?;
    let moment = |e: &muster_store::RecordedEvent| LogMoment {
        position: e.position.0,
        at: e.recorded_at,
    };
    Ok(HttpResponse::Ok().json(Timeline {
        head: head.0,
        first: first.first().map(moment),
        last: last.first().map(moment),
    }))
}

#[derive(Debug, Deserialize)]
struct AtQuery {
    time: Option<String>,
    position: Option<u64>,
}

/// Folds the log from its start up to (and including) the last event recorded at or before
/// `time`, or at or before `position`.
pub async fn state_at(
    store: &dyn EventStore,
    areas: &crate::areas::Areas,
    time: Option<DateTime<Utc>>,
    position: Option<Position>,
) -> Result<(ViewState, Option<DateTime<Utc>>), ApiError> {
    let mut state = ViewState::default();
    let mut from = Position::START;
    let mut folded: u64 = 0;
    let mut last_at = None;
    'read: loop {
        let batch = store
            .read_all(from, REPLAY_BATCH)
            .await
            .map_err(ApiError::internal)?;
        let Some(last) = batch.last() else { break };
        from = last.position.next();
        for event in &batch {
            if time.is_some_and(|t| event.recorded_at > t)
                || position.is_some_and(|p| event.position > p)
            {
                break 'read;
            }
            state.fold(event, areas).map_err(ApiError::internal)?;
            last_at = Some(event.recorded_at);
            folded += 1;
            if folded > MAX_REPLAY_EVENTS {
                return Err(ApiError::invalid(format!(
                    "that moment is more than {MAX_REPLAY_EVENTS} events into the log; time travel stops there"
                )));
            }
        }
        if batch.len() < REPLAY_BATCH {
            break;
        }
    }
    Ok((state, last_at))
}

async fn at(
    wall: web::Data<WallState>,
    state: web::Data<AppState>,
    query: web::Query<AtQuery>,
    reads: web::Data<ExpensiveReads>,
    allowed: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let _slot = reads.admit(&allowed.0.name).await?;
    let time = match &query.time {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    ApiError::invalid(format!(
                        "time must be RFC 3339, such as 2026-11-23T20:00:00Z: {e}"
                    ))
                    .with_details(json!({"field": "time"}))
                })?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    if time.is_none() && query.position.is_none() {
        return Err(ApiError::invalid(
            "give time=<RFC 3339> or position=<log position>",
        ));
    }
    let (folded, last_at) = state_at(
        wall.store.as_ref(),
        state.views.areas(),
        time,
        query.position.map(Position),
    )
    .await?;
    Ok(HttpResponse::Ok().json(History {
        kind: HistoryType::History,
        position: folded.last.map(|p| p.0),
        incidents: folded.incidents.into_values().collect(),
        units: folded.units.into_values().collect(),
        at: time,
        last_event_at: last_at,
    }))
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    muster_core::stats::nearest_rank(sorted, p / 100.0)
}

async fn response_times(
    wall: web::Data<WallState>,
    reads: web::Data<ExpensiveReads>,
    allowed: Allowed<Read>,
) -> Result<HttpResponse, ApiError> {
    let _slot = reads.admit(&allowed.0.name).await?;
    use muster_core::incident::{IncidentEvent, TimePoint};
    let mut times = wall.times.lock().await;
    loop {
        let batch = wall
            .store
            .read_all(times.next, REPLAY_BATCH)
            .await
            .map_err(ApiError::internal)?;
        let Some(last) = batch.last() else { break };
        times.next = last.position.next();
        for event in &batch {
            let Some(muster_core::AggregateRef::Incident(id)) =
                muster_core::AggregateRef::from_stream(&event.stream)
            else {
                continue;
            };
            let Ok(IncidentEvent::TimePointRecorded { point, at, .. }) =
                muster_core::event::decode::<IncidentEvent>(event)
            else {
                continue;
            };
            let p = times.incidents.entry(id).or_default();
            let slot = match point {
                TimePoint::CallReceived => &mut p.call,
                TimePoint::Dispatched => &mut p.dispatched,
                TimePoint::OnScene => &mut p.on_scene,
                _ => continue,
            };
            if slot.is_none_or(|t| at < t) {
                *slot = Some(at);
            }
        }
        if batch.len() < REPLAY_BATCH {
            break;
        }
    }
    let today = Utc::now().date_naive();
    let mut calls = 0;
    let (mut to_dispatch, mut to_scene) = (Vec::new(), Vec::new());
    for p in times.incidents.values() {
        let Some(call) = p.call.filter(|c| c.date_naive() == today) else {
            continue;
        };
        calls += 1;
        if let Some(d) = p.dispatched {
            to_dispatch.push((d - call).num_milliseconds() as f64 / 1000.0);
        }
        if let Some(o) = p.on_scene {
            to_scene.push((o - call).num_milliseconds() as f64 / 1000.0);
        }
    }
    drop(times);
    to_dispatch.sort_by(f64::total_cmp);
    to_scene.sort_by(f64::total_cmp);
    let percentiles = |sorted: &[f64]| Percentiles {
        count: sorted.len(),
        p50: percentile(sorted, 50.0),
        p90: percentile(sorted, 90.0),
    };
    Ok(HttpResponse::Ok().json(ResponseTimesToday {
        day: today.to_string(),
        calls,
        call_to_dispatch_s: percentiles(&to_dispatch),
        call_to_on_scene_s: percentiles(&to_scene),
    }))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn static_file(
    req: HttpRequest,
    wall: web::Data<WallState>,
) -> Result<HttpResponse, ApiError> {
    let raw = req.match_info().query("tail");
    if raw.starts_with("api/") || raw == "api" {
        // An API path no route took: 405 with `Allow` when another method takes it, else 404.
        return Ok(crate::edge::no_route(req).await);
    }
    let rel = Path::new(raw);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApiError::not_found("no such file"));
    }
    let mut path = wall.dist.join(rel);
    if raw.is_empty() || (!path.is_file() && rel.extension().is_none()) {
        path = wall.dist.join("index.html");
    }
    let body = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) if path.ends_with("index.html") => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "web_app_not_built",
                "the wall display is not built: run `npm ci && npm run build` in backend/web",
            ));
        }
        Err(_) => return Err(ApiError::not_found(format!("no file {raw}"))),
    };
    let cache = if raw.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type(&path))
        .insert_header(("Cache-Control", cache))
        .body(body))
}

/// Mounts the wall routes; the static catch-all comes last, so mount this after the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/wall/city", web::get().to(city))
        .route("/api/wall/geocode", web::get().to(geocode))
        .route("/api/wall/timeline", web::get().to(timeline))
        .route("/api/wall/at", web::get().to(at))
        .route("/api/wall/response-times", web::get().to(response_times))
        .route("/{tail:.*}", web::get().to(static_file));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&xs, 50.0), Some(5.0));
        assert_eq!(percentile(&xs, 90.0), Some(9.0));
        assert_eq!(percentile(&[42.0], 90.0), Some(42.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a/index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("assets/x.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.bin")), "application/octet-stream");
    }
}
