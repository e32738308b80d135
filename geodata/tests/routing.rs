//! Routing against a plain Dijkstra oracle, coverage answers, and road conditions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::graph::arcs;
use muster_geodata::model::City;
use muster_geodata::routing::{RoadCondition, RoadConditions, Snap, TimeMultiplier, part_ms};
use muster_geodata::{LatLon, RouteError, Router};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn small_city() -> Arc<City> {
    Arc::new(generate(GenerateParams::new(4.0, 11).unwrap()))
}

/// Per-road arc times under `conditions`, `None` where not drivable.
fn arc_times(city: &City, conditions: &RoadConditions) -> Vec<(Option<u64>, Option<u64>)> {
    city.roads
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let base = u64::from(r.travel_time_ms());
            let w = match conditions.get(&(i as u32)) {
                None => Some(base),
                Some(RoadCondition::Closed) => None,
                Some(RoadCondition::Slowed(m)) => {
                    Some(((base as f64 * m.get()).round() as u64).max(1))
                }
            };
            (
                w.filter(|_| r.direction.forward()),
                w.filter(|_| r.direction.backward()),
            )
        })
        .collect()
}

/// Plain Dijkstra over every arc, from a point part-way along a road to another.
fn oracle(city: &City, conditions: &RoadConditions, s: &Snap, t: &Snap) -> Option<u64> {
    let times = arc_times(city, conditions);
    let n = city.nodes.len();
    let mut adj: Vec<Vec<(u32, u64)>> = vec![Vec::new(); n];
    for a in arcs(&city.roads) {
        let (along, against) = times[a.road as usize];
        if let Some(w) = if a.along { along } else { against } {
            adj[a.tail as usize].push((a.head, w));
        }
    }
    let mut dist = vec![u64::MAX; n];
    let mut heap = BinaryHeap::new();
    let sr = &city.roads[s.road as usize];
    let (s_along, s_against) = times[s.road as usize];
    if let Some(w) = s_along {
        heap.push(Reverse((part_ms(w as u32, 1.0 - s.fraction), sr.to)));
    }
    if let Some(w) = s_against {
        heap.push(Reverse((part_ms(w as u32, s.fraction), sr.from)));
    }
    // Standing on a road's end is standing on its node.
    if s.fraction == 0.0 {
        heap.push(Reverse((0, sr.from)));
    }
    if s.fraction == 1.0 {
        heap.push(Reverse((0, sr.to)));
    }
    while let Some(Reverse((d, v))) = heap.pop() {
        if d >= dist[v as usize] {
            continue;
        }
        dist[v as usize] = d;
        for &(h, w) in &adj[v as usize] {
            if d + w < dist[h as usize] {
                heap.push(Reverse((d + w, h)));
            }
        }
    }
    let tr = &city.roads[t.road as usize];
    let (t_along, t_against) = times[t.road as usize];
    let mut best = u64::MAX;
    if let Some(w) = t_along
        && dist[tr.from as usize] != u64::MAX
    {
        best = best.min(dist[tr.from as usize] + part_ms(w as u32, t.fraction));
    }
    if let Some(w) = t_against
        && dist[tr.to as usize] != u64::MAX
    {
        best = best.min(dist[tr.to as usize] + part_ms(w as u32, 1.0 - t.fraction));
    }
    if t.fraction == 0.0 && dist[tr.from as usize] != u64::MAX {
        best = best.min(dist[tr.from as usize]);
    }
    if t.fraction == 1.0 && dist[tr.to as usize] != u64::MAX {
        best = best.min(dist[tr.to as usize]);
    }
    if s.road == t.road {
        if let Some(w) = s_along
            && t.fraction >= s.fraction
        {
            best = best.min(part_ms(w as u32, t.fraction - s.fraction));
        }
        if let Some(w) = s_against
            && s.fraction >= t.fraction
        {
            best = best.min(part_ms(w as u32, s.fraction - t.fraction));
        }
    }
    (best != u64::MAX).then_some(best)
}

fn random_point(city: &City, rng: &mut ChaCha8Rng) -> LatLon {
    let b = city.meta.bounds;
    LatLon::from_lat_lon(
        rng.random_range(b.south_west.lat_deg()..=b.north_east.lat_deg()),
        rng.random_range(b.south_west.lon_deg()..=b.north_east.lon_deg()),
    )
    .unwrap()
}

fn check_against_oracle(router: &Router, conditions: &RoadConditions, pairs: usize, seed: u64) {
    let city = router.city();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut checked = 0;
    // Sources in batches of 20 to one target: every answer of the many-to-one query
    // is compared with the oracle, and one in ten with the one-to-one query too.
    while checked < pairs {
        let target = random_point(city, &mut rng);
        let sources: Vec<LatLon> = (0..20).map(|_| random_point(city, &mut rng)).collect();
        let Ok(t_snap) = router.snap(target) else {
            continue;
        };
        let answers = router.travel_times_to(&sources, target).unwrap();
        for (k, (source, got)) in sources.iter().zip(answers).enumerate() {
            let s_snap = router.snap(*source).unwrap();
            let want = oracle(city, conditions, &s_snap, &t_snap);
            let got_ms = got.as_ref().ok().map(|d| d.as_millis() as u64);
            assert_eq!(got_ms, want, "{source:?} -> {target:?}");
            if want.is_none() {
                assert!(matches!(got, Err(RouteError::Unreachable { .. })));
            }
            if k == 0 {
                let by_dijkstra = router
                    .travel_times_to_by_dijkstra(&sources, target)
                    .unwrap();
                let by_ch = router.travel_times_to(&sources, target).unwrap();
                assert_eq!(by_dijkstra, by_ch);
            }
            if k % 10 == 0 {
                let single = router.travel_time(*source, target).ok();
                assert_eq!(single.map(|d| d.as_millis() as u64), want);
            }
            checked += 1;
        }
    }
}

#[test]
fn routing_equals_dijkstra_on_10000_seeded_random_pairs() {
    let router = Router::new(small_city()).unwrap();
    check_against_oracle(&router, &RoadConditions::new(), 10_000, 42);
}

#[test]
fn snapping_finds_the_nearest_road_like_a_full_scan() {
    let router = Router::new(small_city()).unwrap();
    let city = router.city().clone();
    let projection = city.projection();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..300 {
        let p = random_point(&city, &mut rng);
        let snap = router.snap(p).unwrap();
        let q = projection.project(p);
        // Brute force: distance to every segment of every road.
        let best = city
            .roads
            .iter()
            .flat_map(|r| {
                let pts: Vec<_> = r
                    .polyline(&city.nodes)
                    .map(|x| projection.project(x))
                    .collect();
                pts.windows(2)
                    .map(|w| {
                        let (a, b) = (w[0], w[1]);
                        let (dx, dy) = (b.x_m - a.x_m, b.y_m - a.y_m);
                        let t = (((q.x_m - a.x_m) * dx + (q.y_m - a.y_m) * dy)
                            / (dx * dx + dy * dy))
                            .clamp(0.0, 1.0);
                        (q.x_m - a.x_m - t * dx).hypot(q.y_m - a.y_m - t * dy)
                    })
                    .collect::<Vec<_>>()
            })
            .fold(f64::INFINITY, f64::min);
        assert!(
            (snap.distance_m - best).abs() < 1e-6,
            "{} vs {best}",
            snap.distance_m
        );
    }
}

#[test]
fn points_outside_the_city_are_outside_coverage_not_a_panic() {
    let router = Router::new(small_city()).unwrap();
    let inside = router.city().meta.bounds.centre();
    let far = [
        LatLon::from_lat_lon(0.0, 0.0).unwrap(),
        LatLon::from_lat_lon(-89.9, 179.9).unwrap(),
        LatLon::from_lat_lon(inside.lat_deg() + 0.5, inside.lon_deg()).unwrap(),
    ];
    for p in far {
        assert!(matches!(
            router.travel_time(inside, p),
            Err(RouteError::OutsideCoverage { .. })
        ));
        let answers = router.travel_times_to(&[p, inside], inside).unwrap();
        assert!(matches!(
            answers[0],
            Err(RouteError::OutsideCoverage { .. })
        ));
        assert_eq!(answers[1], Ok(Duration::ZERO));
    }
}

#[test]
fn queries_are_answered_while_a_preparation_runs() {
    let city = Arc::new(generate(GenerateParams::new(30.0, 3).unwrap()));
    let router = Router::new(Arc::clone(&city)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let points: Vec<LatLon> = (0..200).map(|_| random_point(&city, &mut rng)).collect();
    let before: Vec<_> = points
        .windows(2)
        .map(|w| router.travel_time(w[0], w[1]))
        .collect();
    let closures: RoadConditions = (0..200)
        .map(|_| {
            (
                rng.random_range(0..city.roads.len() as u32),
                RoadCondition::Closed,
            )
        })
        .collect();
    let preparation = router.set_conditions(closures);
    // Queries keep being answered, from the old graph, while the new one is prepared.
    let mut answered_meanwhile = 0;
    let mut k = 0;
    while !preparation.is_in_force() {
        let i = k % before.len();
        let answer = router.travel_time(points[i], points[i + 1]);
        if !preparation.is_in_force() {
            assert_eq!(answer, before[i]);
            answered_meanwhile += 1;
        }
        k += 1;
    }
    assert!(
        answered_meanwhile > 0,
        "no query was answered during the preparation"
    );
    preparation.wait();
}

#[test]
fn the_river_makes_straight_line_distance_mislead() {
    let city = generate(GenerateParams::new(30.0, 7).unwrap());
    let projection = city.projection();
    let router = Router::new(Arc::new(city)).unwrap();
    let river = &router.city().map_lines[0].points;
    // Two points 600 m apart, on either side of the river, far from a bridge.
    // river[90] is 1.5 km west of the centre; bridges are 6 km apart, one at the centre.
    let mid = projection.project(river[90]);
    let north = projection
        .unproject(muster_geodata::point::PlanarM {
            x_m: mid.x_m + 10.0,
            y_m: mid.y_m + 300.0,
        })
        .unwrap();
    let south = projection
        .unproject(muster_geodata::point::PlanarM {
            x_m: mid.x_m + 10.0,
            y_m: mid.y_m - 300.0,
        })
        .unwrap();
    let t = router.travel_time(north, south).unwrap();
    // 600 m at 60 km/h is 36 s; the detour to a bridge takes minutes.
    assert!(t > Duration::from_secs(180), "{t:?}");
}

#[test]
fn closures_and_slowdowns_change_answers_after_the_swap() {
    let router = Router::new(small_city()).unwrap();
    let city = router.city().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut conditions = RoadConditions::new();
    for _ in 0..60 {
        let road = rng.random_range(0..city.roads.len() as u32);
        let cond = if rng.random_bool(0.5) {
            RoadCondition::Closed
        } else {
            RoadCondition::Slowed(TimeMultiplier::new(rng.random_range(1.0..5.0)).unwrap())
        };
        conditions.insert(road, cond);
    }
    let a = random_point(&city, &mut rng);
    let b = random_point(&city, &mut rng);
    let before = router.travel_time(a, b);
    let preparation = router.set_conditions(conditions.clone());
    // While preparing, queries answer from the graph in force (old or new), never block.
    let during = router.travel_time(a, b);
    let generation = preparation.wait();
    assert_eq!(router.generation(), generation);
    assert_eq!(router.conditions(), conditions);
    let after = router.travel_time(a, b);
    assert!(during == before || during == after);
    check_against_oracle(&router, &conditions, 2_000, 43);
    // Lifting the conditions restores the original answers.
    router.set_conditions(RoadConditions::new()).wait();
    assert_eq!(router.travel_time(a, b), before);
}

#[test]
fn the_last_request_wins_and_bursts_are_coalesced() {
    let router = Router::new(small_city()).unwrap();
    let mut requests = Vec::new();
    for road in 0..20 {
        requests.push(router.set_conditions(RoadConditions::from([(road, RoadCondition::Closed)])));
    }
    let last = router.set_conditions(RoadConditions::new());
    let last_generation = last.generation();
    for (k, r) in requests.into_iter().enumerate() {
        let requested = r.generation();
        assert!(r.wait() >= requested, "request {k}");
    }
    assert_eq!(last.wait(), last_generation);
    assert_eq!(router.generation(), last_generation);
    assert!(router.conditions().is_empty());
}

#[test]
fn bad_multipliers_are_refused() {
    for bad in [0.5, f64::NAN, f64::INFINITY, 1000.0] {
        assert!(TimeMultiplier::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn routes_follow_connected_roads_from_start_to_end() {
    let router = Router::new(small_city()).unwrap();
    let city = router.city().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for _ in 0..500 {
        let (a, b) = (random_point(&city, &mut rng), random_point(&city, &mut rng));
        let Ok(route) = router.route(a, b) else {
            assert!(router.travel_time(a, b).is_err());
            continue;
        };
        assert_eq!(Ok(route.travel_time), router.travel_time(a, b));
        let (sa, sb) = (router.snap(a).unwrap(), router.snap(b).unwrap());
        assert!(route.points[0].haversine_distance_m(sa.on_road) < 1.0);
        assert!(
            route
                .points
                .last()
                .unwrap()
                .haversine_distance_m(sb.on_road)
                < 1.0
        );
        for w in route.roads.windows(2) {
            let (r0, r1) = (&city.roads[w[0] as usize], &city.roads[w[1] as usize]);
            let shared = [r0.from, r0.to]
                .iter()
                .any(|n| *n == r1.from || *n == r1.to);
            assert!(shared, "roads {} and {} do not meet", w[0], w[1]);
        }
        // No jumps: consecutive points are at most one road segment apart.
        for w in route.points.windows(2) {
            assert!(w[0].haversine_distance_m(w[1]) < 400.0);
        }
    }
}

#[test]
fn a_point_inside_a_closure_is_reached_at_its_edge_and_one_off_the_map_is_not() {
    let router = Router::new(small_city()).unwrap();
    let city = router.city().clone();
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let inside = random_point(&city, &mut rng);
    let from = random_point(&city, &mut rng);
    let closed: RoadConditions = router
        .roads_near(inside, 800.0)
        .into_iter()
        .map(|r| (r, RoadCondition::Closed))
        .collect();
    assert!(!closed.is_empty());
    router.set_conditions(closed.clone()).wait();
    let snap = router.snap(inside).expect("reached at the closure's edge");
    assert!(
        !closed.contains_key(&snap.road),
        "snapped to a closed road {}",
        snap.road
    );
    assert!(snap.distance_m > 500.0, "{}", snap.distance_m);
    if from.haversine_distance_m(inside) > 1_500.0 {
        assert!(router.travel_time(from, inside).is_ok());
    }
    // Off the map there is no road at all, closed or open, within reach.
    let b = city.meta.bounds;
    let off =
        LatLon::from_lat_lon(b.north_east.lat_deg() + 0.1, b.north_east.lon_deg() + 0.1).unwrap();
    assert!(matches!(
        router.snap(off),
        Err(RouteError::OutsideCoverage { .. })
    ));
}
