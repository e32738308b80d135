//! Road routing: snapping points to roads, travel times, many-to-one queries, and road
//! conditions (closures, slowdowns) applied by re-preparing in the background.
//!
//! Travel times are integer milliseconds on directed arcs (one per drivable direction of a
//! road). A point is snapped to the nearest open road through an R-tree of road segments in
//! the city's plane (metres); a trip starts part-way along that road, so the seeds of a search
//! are the road's end nodes with the remaining fraction of the road's time.
//!
//! The prepared graph (a contraction hierarchy) is immutable. [`Router::set_conditions`]
//! builds a new one on a background thread, reusing the first preparation's node order, and
//! swaps it in atomically; queries in the meantime answer from the previous graph and never
//! wait.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use fast_paths::{FastGraph, InputGraph};
use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

use crate::ch::{UNREACHED, UpwardGraphs};
use crate::graph::{Adjacency, arcs};
use crate::model::{City, InvalidCity, NodeIdx, RoadIdx};
use crate::point::{LatLon, PlanarM, Projection};

/// A point farther than this from every open road is outside coverage.
pub const MAX_SNAP_DISTANCE_M: f64 = 500.0;
/// A point whose roads within [`MAX_SNAP_DISTANCE_M`] are all closed meets the network at
/// the nearest open road up to this far: units are routed to the edge of the closure.
pub const MAX_CLOSURE_REACH_M: f64 = 5_000.0;
/// Most sources accepted by one many-to-one query.
pub const MAX_SOURCES: usize = 10_000;
/// Weight given to closed arcs inside the hierarchy, so that closing roads never changes
/// its shape; any total at or above it means "no open path".
const CLOSED_MS: u64 = 1_000_000_000;
/// Marks an arc that cannot be driven (one-way the other way, or closed).
const NO_ARC: u32 = u32::MAX;

/// Why a route has no answer. None of these is a fault of the router.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("{point} is outside coverage: no open road within {MAX_SNAP_DISTANCE_M} m")]
    OutsideCoverage { point: LatLon },
    #[error("no open road leads from {from} to {to}")]
    Unreachable { from: LatLon, to: LatLon },
    #[error("{count} sources in one query; the limit is {MAX_SOURCES}")]
    TooManySources { count: usize },
}

/// Where a point meets the road network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snap {
    pub road: RoadIdx,
    /// Position along the road from its `from` node (0) to its `to` node (1).
    pub fraction: f64,
    /// The nearest point on the road.
    pub on_road: LatLon,
    /// Planar distance from the query point to the road, metres.
    pub distance_m: f64,
}

/// A route: its travel time and the way it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub travel_time: Duration,
    /// From the start's point on the road to the end's, along every road's shape.
    pub points: Vec<LatLon>,
    /// Roads driven, in order (the first and last possibly only in part).
    pub roads: Vec<RoadIdx>,
}

/// A temporary change to one road.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoadCondition {
    /// Not drivable in either direction.
    Closed,
    /// Travel takes this many times longer.
    Slowed(TimeMultiplier),
}

/// A travel-time multiplier in 1..=100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct TimeMultiplier(f64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a travel-time multiplier must be a number from 1 to 100, got {0}")]
pub struct BadMultiplier(pub f64);

impl TimeMultiplier {
    pub fn new(value: f64) -> Result<Self, BadMultiplier> {
        if value.is_finite() && (1.0..=100.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(BadMultiplier(value))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// The set of road conditions in force, by road.
pub type RoadConditions = BTreeMap<RoadIdx, RoadCondition>;

type Segment = GeomWithData<Line<[f64; 2]>, SegmentRef>;

#[derive(Debug, Clone, Copy, PartialEq)]
struct SegmentRef {
    road: RoadIdx,
    /// Planar distance from the road's start to this segment's start, metres.
    start_m: f64,
}

/// One immutable routing state: arc weights under some conditions and its hierarchy.
struct Prepared {
    generation: u64,
    conditions: RoadConditions,
    /// Per road: time along (`from` -> `to`) and against, ms; `NO_ARC` if not drivable.
    along_ms: Vec<u32>,
    against_ms: Vec<u32>,
    upward: UpwardGraphs,
    /// The same hierarchy as `fast_paths` keeps it, for unpacking paths.
    fast: FastGraph,
}

struct Inner {
    city: Arc<City>,
    projection: Projection,
    segments: RTree<Segment>,
    road_planar_len_m: Vec<f64>,
    /// Roads leaving each node, as (head, road index * 2 + 1 if along the road).
    out_roads: Adjacency,
    /// Roads arriving at each node, as (tail, road index * 2 + 1 if along the road).
    in_roads: Adjacency,
    /// Node order of the first preparation, reused by later ones (much faster).
    node_order: Vec<usize>,
    current: ArcSwap<Prepared>,
    next_generation: AtomicU64,
    worker: Mutex<Worker>,
    /// Notified after every swap (and when the worker fails).
    swapped: Condvar,
}

/// Routing over one city. Cheap to clone; clones share the prepared graph.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("city", &self.inner.city.meta.name)
            .field("generation", &self.generation())
            .finish()
    }
}

/// A requested re-preparation; [`Preparation::wait`] blocks until it (or a later one that
/// superseded it) is in force.
#[derive(Debug)]
pub struct Preparation {
    router: Router,
    generation: u64,
}

impl Preparation {
    /// The generation this request will have, or be superseded by.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the requested conditions, or later ones, answer queries now.
    pub fn is_in_force(&self) -> bool {
        self.router.generation() >= self.generation
    }

    /// Waits until the requested conditions, or later ones, answer queries; returns the
    /// generation in force then (at least [`Preparation::generation`]).
    ///
    /// # Panics
    /// If the background preparation panicked (a bug), rather than waiting forever.
    pub fn wait(self) -> u64 {
        let inner = &self.router.inner;
        let mut worker = inner.worker.lock().expect("worker state lock");
        loop {
            let now = inner.current.load().generation;
            if now >= self.generation {
                return now;
            }
            assert!(!worker.failed, "graph preparation panicked");
            worker = inner.swapped.wait(worker).expect("worker state lock");
        }
    }
}

/// The background preparer's state: at most one preparation runs, and only the latest
/// request waits, so a burst of condition changes costs one or two preparations, not one
/// thread each.
#[derive(Debug, Default)]
struct Worker {
    pending: Option<(u64, RoadConditions)>,
    running: bool,
    failed: bool,
}

/// Marks the worker stopped if preparation unwinds, so waiters do not hang.
struct WorkerGuard<'a>(&'a Inner);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(mut w) = self.0.worker.lock() {
                w.running = false;
                w.failed = true;
            }
            self.0.swapped.notify_all();
        }
    }
}

impl Router {
    /// Prepares routing for `city` (builds the R-tree and the contraction hierarchy).
    /// Cities loaded from a file are already validated; others are checked here.
    pub fn new(city: Arc<City>) -> Result<Self, InvalidCity> {
        city.validate()?;
        let projection = city.projection();
        let mut segments = Vec::new();
        let mut road_planar_len_m = Vec::with_capacity(city.roads.len());
        for (i, road) in city.roads.iter().enumerate() {
            let pts: Vec<PlanarM> = road
                .polyline(&city.nodes)
                .map(|p| projection.project(p))
                .collect();
            let mut start_m = 0.0;
            for w in pts.windows(2) {
                segments.push(Segment::new(
                    Line::new(w[0].as_array(), w[1].as_array()),
                    SegmentRef {
                        road: i as RoadIdx,
                        start_m,
                    },
                ));
                start_m += w[0].distance_m(w[1]);
            }
            road_planar_len_m.push(start_m);
        }
        let segments = RTree::bulk_load(segments);
        let out_roads = Adjacency::new(
            city.nodes.len(),
            arcs(&city.roads)
                .into_iter()
                .map(|a| (a.tail, a.head, a.road * 2 + u32::from(a.along))),
        );
        let in_roads = Adjacency::new(
            city.nodes.len(),
            arcs(&city.roads)
                .into_iter()
                .map(|a| (a.head, a.tail, a.road * 2 + u32::from(a.along))),
        );
        let (along_ms, against_ms) = weights(&city, &RoadConditions::new());
        let input = input_graph(&city, &along_ms, &against_ms);
        let fast = fast_paths::prepare(&input);
        let node_order = fast.get_node_ordering();
        let prepared = Prepared {
            generation: 0,
            conditions: RoadConditions::new(),
            along_ms,
            against_ms,
            upward: upward(&fast, city.nodes.len()),
            fast,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                city,
                projection,
                segments,
                road_planar_len_m,
                out_roads,
                in_roads,
                node_order,
                current: ArcSwap::from_pointee(prepared),
                next_generation: AtomicU64::new(1),
                worker: Mutex::new(Worker::default()),
                swapped: Condvar::new(),
            }),
        })
    }

    pub fn city(&self) -> &Arc<City> {
        &self.inner.city
    }

    /// Generation of the graph answering queries now (0 = no conditions ever applied).
    pub fn generation(&self) -> u64 {
        self.inner.current.load().generation
    }

    /// Conditions in force in the graph answering queries now.
    pub fn conditions(&self) -> RoadConditions {
        self.inner.current.load().conditions.clone()
    }

    /// Replaces the road conditions (the whole set in force). The new graph is prepared on a
    /// background thread and swapped in when ready; until then queries answer from the
    /// current one and never wait. Requests made while a preparation runs are coalesced:
    /// only the latest is prepared next, so the last request always wins.
    pub fn set_conditions(&self, conditions: RoadConditions) -> Preparation {
        let inner = &self.inner;
        let mut worker = inner.worker.lock().expect("worker state lock");
        let generation = inner.next_generation.fetch_add(1, Ordering::SeqCst);
        worker.pending = Some((generation, conditions));
        if !worker.running {
            worker.running = true;
            worker.failed = false;
            let router = self.clone();
            std::thread::spawn(move || router.prepare_pending());
        }
        Preparation {
            router: self.clone(),
            generation,
        }
    }

    /// The background preparer: prepares the latest pending request until none is left.
    fn prepare_pending(&self) {
        let inner = &*self.inner;
        let _guard = WorkerGuard(inner);
        loop {
            let (generation, conditions) = {
                let mut worker = inner.worker.lock().expect("worker state lock");
                match worker.pending.take() {
                    Some(next) => next,
                    None => {
                        worker.running = false;
                        return;
                    }
                }
            };
            let (along_ms, against_ms) = weights(&inner.city, &conditions);
            let input = input_graph(&inner.city, &along_ms, &against_ms);
            let fast = fast_paths::prepare_with_order(&input, &inner.node_order)
                .unwrap_or_else(|_| fast_paths::prepare(&input));
            let prepared = Prepared {
                generation,
                conditions,
                along_ms,
                against_ms,
                upward: upward(&fast, inner.city.nodes.len()),
                fast,
            };
            // Swap under the lock so a waiter cannot miss the notification.
            let _worker = inner.worker.lock().expect("worker state lock");
            inner.current.store(Arc::new(prepared));
            inner.swapped.notify_all();
        }
    }

    /// Roads with any segment within `radius_m` of `p` (for closing roads around a spot).
    pub fn roads_near(&self, p: LatLon, radius_m: f64) -> Vec<RoadIdx> {
        let xy = self.inner.projection.project(p).as_array();
        let mut roads: Vec<RoadIdx> = self
            .inner
            .segments
            .locate_within_distance(xy, radius_m * radius_m)
            .map(|s| s.data.road)
            .collect();
        roads.sort_unstable();
        roads.dedup();
        roads
    }

    /// Snaps `p` to the nearest road that is open in at least one direction.
    pub fn snap(&self, p: LatLon) -> Result<Snap, RouteError> {
        self.snap_in(&self.inner.current.load(), p)
    }

    fn snap_in(&self, prepared: &Prepared, p: LatLon) -> Result<Snap, RouteError> {
        let inner = &*self.inner;
        let xy = inner.projection.project(p);
        let q = xy.as_array();
        let max_d2 = MAX_SNAP_DISTANCE_M * MAX_SNAP_DISTANCE_M;
        let reach_d2 = MAX_CLOSURE_REACH_M * MAX_CLOSURE_REACH_M;
        // Whether a road within reach was passed over because it is closed.
        let mut in_closure = false;
        for (seg, d2) in inner.segments.nearest_neighbor_iter_with_distance_2(&q) {
            if d2 > max_d2 && (!in_closure || d2 > reach_d2) {
                break;
            }
            let road = seg.data.road as usize;
            if prepared.along_ms[road] == NO_ARC && prepared.against_ms[road] == NO_ARC {
                if d2 <= max_d2 && prepared.conditions.contains_key(&seg.data.road) {
                    in_closure = true;
                }
                continue;
            }
            let [ax, ay] = seg.geom().from;
            let [bx, by] = seg.geom().to;
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let t = if len2 > 0.0 {
                (((q[0] - ax) * dx + (q[1] - ay) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let along_m = seg.data.start_m + t * len2.sqrt();
            let total = inner.road_planar_len_m[road];
            let fraction = if total > 0.0 {
                (along_m / total).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let on = PlanarM {
                x_m: ax + t * dx,
                y_m: ay + t * dy,
            };
            return Ok(Snap {
                road: seg.data.road,
                fraction,
                on_road: inner.projection.unproject(on).unwrap_or(p),
                distance_m: d2.sqrt(),
            });
        }
        Err(RouteError::OutsideCoverage { point: p })
    }

    /// Travel time by road from `from` to `to`.
    pub fn travel_time(&self, from: LatLon, to: LatLon) -> Result<Duration, RouteError> {
        let mut all = self.travel_times_to(&[from], to)?;
        all.pop().expect("one source, one answer")
    }

    /// Travel times from every source to one target, in one query (one backward search
    /// from the target, one pruned forward search per source). The outer error is about
    /// the target; each source has its own answer.
    pub fn travel_times_to(
        &self,
        sources: &[LatLon],
        target: LatLon,
    ) -> Result<Vec<Result<Duration, RouteError>>, RouteError> {
        if sources.len() > MAX_SOURCES {
            return Err(RouteError::TooManySources {
                count: sources.len(),
            });
        }
        let prepared = self.inner.current.load();
        let t_snap = self.snap_in(&prepared, target)?;
        let target_seeds = self.target_seeds(&prepared, &t_snap);
        let source_snaps: Vec<Result<Snap, RouteError>> = sources
            .iter()
            .map(|&s| self.snap_in(&prepared, s))
            .collect();
        let seeds: Vec<Vec<(u32, u64)>> = source_snaps
            .iter()
            .map(|s| match s {
                Ok(s) => self.source_seeds(&prepared, s),
                Err(_) => Vec::new(),
            })
            .collect();
        let dists = prepared.upward.many_to_one(&seeds, &target_seeds);
        Ok(source_snaps
            .into_iter()
            .zip(dists)
            .zip(sources)
            .map(|((snap, d), &from)| {
                let snap = snap?;
                let d = d.min(same_road_ms(&prepared, &snap, &t_snap));
                if d >= CLOSED_MS {
                    Err(RouteError::Unreachable { from, to: target })
                } else {
                    Ok(Duration::from_millis(d))
                }
            })
            .collect())
    }

    /// The same answers as [`Router::travel_times_to`] by one plain Dijkstra search backwards
    /// from the target over the whole graph, without the hierarchy: the baseline that
    /// `muster bench geodata` measures the hierarchy against.
    pub fn travel_times_to_by_dijkstra(
        &self,
        sources: &[LatLon],
        target: LatLon,
    ) -> Result<Vec<Result<Duration, RouteError>>, RouteError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let prepared = self.inner.current.load();
        let t_snap = self.snap_in(&prepared, target)?;
        let mut dist = vec![UNREACHED; self.inner.city.nodes.len()];
        let mut heap = BinaryHeap::new();
        for (node, w) in self.target_seeds(&prepared, &t_snap) {
            heap.push(Reverse((w, node)));
        }
        while let Some(Reverse((d, v))) = heap.pop() {
            if d >= dist[v as usize] {
                continue;
            }
            dist[v as usize] = d;
            for &(tail, code) in self.inner.in_roads.out(v) {
                let (road, along) = ((code / 2) as usize, code % 2 == 1);
                let w = if along {
                    prepared.along_ms[road]
                } else {
                    prepared.against_ms[road]
                };
                let w = if w == NO_ARC { CLOSED_MS } else { u64::from(w) };
                if d + w < dist[tail as usize] {
                    heap.push(Reverse((d + w, tail)));
                }
            }
        }
        Ok(sources
            .iter()
            .map(|&from| {
                let s = self.snap_in(&prepared, from)?;
                let via = self
                    .source_seeds(&prepared, &s)
                    .into_iter()
                    .map(|(n, w)| w.saturating_add(dist[n as usize]))
                    .min()
                    .unwrap_or(UNREACHED);
                let d = via.min(same_road_ms(&prepared, &s, &t_snap));
                if d >= CLOSED_MS {
                    Err(RouteError::Unreachable { from, to: target })
                } else {
                    Ok(Duration::from_millis(d))
                }
            })
            .collect())
    }

    /// The quickest route from `from` to `to`, with its geometry (for moving simulated
    /// units along roads and for drawing the route).
    pub fn route(&self, from: LatLon, to: LatLon) -> Result<Route, RouteError> {
        let prepared = self.inner.current.load();
        let s = self.snap_in(&prepared, from)?;
        let t = self.snap_in(&prepared, to)?;
        let direct = same_road_ms(&prepared, &s, &t);
        let seeds = |v: Vec<(NodeIdx, u64)>| -> Vec<(usize, usize)> {
            v.into_iter()
                .map(|(n, w)| (n as usize, w as usize))
                .collect()
        };
        let (ss, ts) = (
            seeds(self.source_seeds(&prepared, &s)),
            seeds(self.target_seeds(&prepared, &t)),
        );
        let path = if ss.is_empty() || ts.is_empty() {
            None
        } else {
            fast_paths::calc_path_multiple_sources_and_targets(&prepared.fast, ss, ts)
        };
        let via = path
            .as_ref()
            .map(|p| p.get_weight() as u64)
            .unwrap_or(UNREACHED);
        let best = via.min(direct);
        if best >= CLOSED_MS {
            return Err(RouteError::Unreachable { from, to });
        }
        if direct <= via {
            return Ok(Route {
                travel_time: Duration::from_millis(direct),
                points: self.road_part(s.road, s.fraction, t.fraction),
                roads: vec![s.road],
            });
        }
        let nodes = path.expect("a path was found").get_nodes().clone();
        let first = nodes[0] as NodeIdx;
        let last = nodes[nodes.len() - 1] as NodeIdx;
        let city = &self.inner.city;
        let s_road = &city.roads[s.road as usize];
        let mut points = self.road_part(
            s.road,
            s.fraction,
            if first == s_road.to { 1.0 } else { 0.0 },
        );
        let mut roads = vec![s.road];
        for w in nodes.windows(2) {
            let (a, b) = (w[0] as NodeIdx, w[1] as NodeIdx);
            let (road, along) = self.quickest_road(&prepared, a, b);
            roads.push(road);
            let (f0, f1) = if along { (0.0, 1.0) } else { (1.0, 0.0) };
            points.extend(self.road_part(road, f0, f1).into_iter().skip(1));
        }
        let t_road = &city.roads[t.road as usize];
        let t_start = if last == t_road.from { 0.0 } else { 1.0 };
        points.extend(
            self.road_part(t.road, t_start, t.fraction)
                .into_iter()
                .skip(1),
        );
        roads.push(t.road);
        roads.dedup();
        Ok(Route {
            travel_time: Duration::from_millis(best),
            points,
            roads,
        })
    }

    /// The quickest open road from `a` to `b` (the path came from it, so one exists).
    fn quickest_road(&self, p: &Prepared, a: NodeIdx, b: NodeIdx) -> (RoadIdx, bool) {
        self.inner
            .out_roads
            .out(a)
            .iter()
            .filter(|(head, _)| *head == b)
            .map(|&(_, code)| {
                let (road, along) = (code / 2, code % 2 == 1);
                let w = if along {
                    p.along_ms[road as usize]
                } else {
                    p.against_ms[road as usize]
                };
                (w, road, along)
            })
            .min()
            .map(|(_, road, along)| (road, along))
            .expect("consecutive path nodes are joined by a road")
    }

    /// Points of a road between two fractions of its length (reversed if `f1 < f0`).
    fn road_part(&self, road: RoadIdx, f0: f64, f1: f64) -> Vec<LatLon> {
        let inner = &*self.inner;
        let r = &inner.city.roads[road as usize];
        let pts: Vec<PlanarM> = r
            .polyline(&inner.city.nodes)
            .map(|p| inner.projection.project(p))
            .collect();
        let total = inner.road_planar_len_m[road as usize];
        let (lo, hi) = (f0.min(f1) * total, f0.max(f1) * total);
        let mut out = Vec::new();
        let mut at = 0.0;
        let lerp = |a: PlanarM, b: PlanarM, t: f64| PlanarM {
            x_m: a.x_m + (b.x_m - a.x_m) * t,
            y_m: a.y_m + (b.y_m - a.y_m) * t,
        };
        for w in pts.windows(2) {
            let len = w[0].distance_m(w[1]);
            let (start, end) = (at, at + len);
            if end >= lo && start <= hi {
                let t0 = if len > 0.0 {
                    ((lo - start) / len).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let t1 = if len > 0.0 {
                    ((hi - start) / len).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                if out.is_empty() {
                    out.push(lerp(w[0], w[1], t0));
                }
                out.push(lerp(w[0], w[1], t1));
            }
            at = end;
        }
        if out.is_empty() {
            out.push(lerp(pts[0], pts[pts.len() - 1], f0.clamp(0.0, 1.0)));
        }
        if f1 < f0 {
            out.reverse();
        }
        out.into_iter()
            .filter_map(|p| inner.projection.unproject(p))
            .collect()
    }

    fn source_seeds(&self, p: &Prepared, s: &Snap) -> Vec<(NodeIdx, u64)> {
        let road = &self.inner.city.roads[s.road as usize];
        let mut seeds = Vec::with_capacity(2);
        let (along, against) = (p.along_ms[s.road as usize], p.against_ms[s.road as usize]);
        if along != NO_ARC {
            seeds.push((road.to, part_ms(along, 1.0 - s.fraction)));
        }
        if against != NO_ARC {
            seeds.push((road.from, part_ms(against, s.fraction)));
        }
        at_end_node(road, s.fraction, &mut seeds);
        seeds
    }

    fn target_seeds(&self, p: &Prepared, t: &Snap) -> Vec<(NodeIdx, u64)> {
        let road = &self.inner.city.roads[t.road as usize];
        let mut seeds = Vec::with_capacity(2);
        let (along, against) = (p.along_ms[t.road as usize], p.against_ms[t.road as usize]);
        if along != NO_ARC {
            seeds.push((road.from, part_ms(along, t.fraction)));
        }
        if against != NO_ARC {
            seeds.push((road.to, part_ms(against, 1.0 - t.fraction)));
        }
        at_end_node(road, t.fraction, &mut seeds);
        seeds
    }
}

/// A point snapped onto the very end of a road stands on that node, where every road at
/// the node is open to it, whichever way the snapped road runs.
fn at_end_node(road: &crate::model::Road, fraction: f64, seeds: &mut Vec<(NodeIdx, u64)>) {
    if fraction <= 0.0 {
        seeds.push((road.from, 0));
    } else if fraction >= 1.0 {
        seeds.push((road.to, 0));
    }
}

/// Time to drive `fraction` of an arc of `whole_ms`.
pub fn part_ms(whole_ms: u32, fraction: f64) -> u64 {
    (f64::from(whole_ms) * fraction.clamp(0.0, 1.0)).round() as u64
}

/// Direct travel when source and target lie on the same road, in an open direction.
fn same_road_ms(p: &Prepared, s: &Snap, t: &Snap) -> u64 {
    if s.road != t.road {
        return UNREACHED;
    }
    let (along, against) = (p.along_ms[s.road as usize], p.against_ms[s.road as usize]);
    let mut best = UNREACHED;
    if along != NO_ARC && t.fraction >= s.fraction {
        best = best.min(part_ms(along, t.fraction - s.fraction));
    }
    if against != NO_ARC && s.fraction >= t.fraction {
        best = best.min(part_ms(against, s.fraction - t.fraction));
    }
    best
}

/// Per-road arc times under `conditions`.
fn weights(city: &City, conditions: &RoadConditions) -> (Vec<u32>, Vec<u32>) {
    let mut along = Vec::with_capacity(city.roads.len());
    let mut against = Vec::with_capacity(city.roads.len());
    for (i, road) in city.roads.iter().enumerate() {
        let base = road.travel_time_ms();
        let w = match conditions.get(&(i as RoadIdx)) {
            None => Some(base),
            Some(RoadCondition::Closed) => None,
            Some(RoadCondition::Slowed(m)) => {
                Some(((f64::from(base) * m.get()).round() as u32).clamp(1, NO_ARC - 1))
            }
        };
        along.push(w.filter(|_| road.direction.forward()).unwrap_or(NO_ARC));
        against.push(w.filter(|_| road.direction.backward()).unwrap_or(NO_ARC));
    }
    (along, against)
}

/// The hierarchy's input: every drivable arc, closed ones at [`CLOSED_MS`] so the graph's
/// shape (and thus the reusable node order) never changes.
fn input_graph(city: &City, along_ms: &[u32], against_ms: &[u32]) -> InputGraph {
    let mut edges: Vec<(NodeIdx, NodeIdx, u64)> = arcs(&city.roads)
        .into_iter()
        .map(|arc| {
            let w = if arc.along {
                along_ms[arc.road as usize]
            } else {
                against_ms[arc.road as usize]
            };
            let w = if w == NO_ARC { CLOSED_MS } else { u64::from(w) };
            (arc.tail, arc.head, w)
        })
        .collect();
    // Parallel roads between the same two nodes: only the quickest matters.
    edges.sort_unstable();
    edges.dedup_by_key(|e| (e.0, e.1));
    let mut input = InputGraph::new();
    for (tail, head, w) in edges {
        input.add_edge(tail as usize, head as usize, w as usize);
    }
    input.freeze();
    input
}

fn upward(fast: &FastGraph, num_nodes: usize) -> UpwardGraphs {
    let up = UpwardGraphs::from_fast_graph(fast);
    assert_eq!(
        up.num_nodes(),
        num_nodes,
        "a validated city has every node on a road"
    );
    up
}
