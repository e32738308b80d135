//! A generated city for scale tests and drills: deterministic by seed.
//!
//! Layout, on a square of `size_km` a side:
//! - a street grid every [`BLOCK_M`] metres with jittered intersections; every 10th line is a
//!   primary arterial, every 5th a tertiary street, the rest residential;
//! - some residential streets are one-way, in alternating directions, and a few short
//!   residential links are missing, so blocks are not all alike;
//! - a river meanders west to east across the middle; only every 30th north-south line
//!   (every 6 km at the default block size) crosses it on a bridge, so straight-line distance
//!   misleads across the water;
//! - house numbers on the west-east streets: odd on the north side, even on the south,
//!   two per block, rising eastwards, so geocoding works here too;
//! - demo districts, stations and hospitals placed by [`crate::demo::place`].
//!
//! The city sits in the open North Atlantic (around 55° N, 30° W) so it is never mistaken
//! for a real place.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::demo;
use crate::graph::keep_largest_component;
use crate::model::{
    Address, Bounds, City, CityMeta, Direction, MapLine, MapLineKind, Road, RoadClass, StreetIdx,
};
use crate::point::{LatLon, PlanarM, Projection};

/// Distance between neighbouring parallel streets, metres.
pub const BLOCK_M: f64 = 200.0;
/// Distance of a house from the middle of its street, metres.
const ADDRESS_SETBACK_M: f64 = 25.0;
/// Half the river's width, metres; no intersection lies in the water.
const RIVER_HALF_WIDTH_M: f64 = 90.0;
/// Every this many north-south lines, one carries a bridge.
const BRIDGE_EVERY: usize = 30;
/// Sizes accepted by [`GenerateParams::new`], kilometres.
pub const SIZE_KM_RANGE: std::ops::RangeInclusive<f64> = 1.0..=100.0;

/// Validated generator input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateParams {
    size_km: f64,
    seed: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("city size must be {lo} to {hi} km, got {0}", lo = SIZE_KM_RANGE.start(), hi = SIZE_KM_RANGE.end())]
pub struct BadSize(pub f64);

impl GenerateParams {
    pub fn new(size_km: f64, seed: u64) -> Result<Self, BadSize> {
        if size_km.is_finite() && SIZE_KM_RANGE.contains(&size_km) {
            Ok(Self { size_km, seed })
        } else {
            Err(BadSize(size_km))
        }
    }
}

/// Builds the city described in the module docs.
pub fn generate(params: GenerateParams) -> City {
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let size_m = params.size_km * 1000.0;
    let n = (size_m / BLOCK_M).round() as usize + 1;
    let centre = LatLon::from_lat_lon(55.0, -30.0).expect("constant");
    let projection = Projection::new(centre);
    let half = size_m / 2.0;
    let phase = rng.random_range(0.0..std::f64::consts::TAU);
    let amplitude_m = size_m * 0.08;
    let river_y =
        |x_m: f64| amplitude_m * (x_m / size_m * 3.0 * std::f64::consts::PI + phase).sin();
    let in_river = |p: PlanarM| (p.y_m - river_y(p.x_m)).abs() < RIVER_HALF_WIDTH_M;
    let across_river = |a: PlanarM, b: PlanarM| {
        (a.y_m - river_y(a.x_m)).signum() != (b.y_m - river_y(b.x_m)).signum()
    };

    // Grid intersections, jittered; None where the river is.
    let mut grid: Vec<Option<u32>> = vec![None; n * n];
    let mut points: Vec<PlanarM> = Vec::new();
    for j in 0..n {
        for i in 0..n {
            let jitter = BLOCK_M * 0.15;
            let p = PlanarM {
                x_m: -half + i as f64 * BLOCK_M + rng.random_range(-jitter..=jitter),
                y_m: -half + j as f64 * BLOCK_M + rng.random_range(-jitter..=jitter),
            };
            if !in_river(p) {
                grid[j * n + i] = Some(points.len() as u32);
                points.push(p);
            }
        }
    }
    let nodes: Vec<LatLon> = points
        .iter()
        .map(|p| {
            projection
                .unproject(*p)
                .expect("a city-sized square fits on Earth")
        })
        .collect();

    let class_of = |line: usize| match line {
        l if l % 10 == 0 => RoadClass::Primary,
        l if l % 5 == 0 => RoadClass::Tertiary,
        _ => RoadClass::Residential,
    };
    let mut streets: Vec<String> = Vec::new();
    let mut street_for = |west_east: bool, line: usize| -> StreetIdx {
        let kind = match (west_east, class_of(line)) {
            (true, RoadClass::Primary) => "Boulevard",
            (true, _) => "Street",
            (false, RoadClass::Primary) => "Parkway",
            (false, _) => "Avenue",
        };
        let name = format!("{} {kind}", street_word(line));
        streets.push(name);
        (streets.len() - 1) as StreetIdx
    };
    let mut roads = Vec::new();
    let mut addresses = Vec::new();
    let add = |roads: &mut Vec<Road>,
               rng: &mut ChaCha8Rng,
               a: u32,
               b: u32,
               class: RoadClass,
               one_way: Option<Direction>,
               street: StreetIdx| {
        if class == RoadClass::Residential && one_way.is_none() && rng.random_bool(0.06) {
            return; // a missing link
        }
        let length_m = nodes[a as usize].haversine_distance_m(nodes[b as usize]) as f32;
        roads.push(Road {
            from: a,
            to: b,
            shape: Vec::new(),
            direction: one_way.unwrap_or(Direction::Both),
            class,
            speed_kmh: class.emergency_speed_kmh(),
            length_m,
            street: Some(street),
        });
    };
    // West-east streets (rows).
    for j in 0..n {
        let class = class_of(j);
        let street = street_for(true, j);
        let one_way = (class == RoadClass::Residential && j % 3 == 1).then_some(if j % 2 == 0 {
            Direction::Forward
        } else {
            Direction::Backward
        });
        for i in 0..n - 1 {
            if let (Some(a), Some(b)) = (grid[j * n + i], grid[j * n + i + 1])
                && !across_river(points[a as usize], points[b as usize])
            {
                add(&mut roads, &mut rng, a, b, class, one_way, street);
                // House numbers: odd on the north side, even on the south, rising eastwards.
                let (pa, pb) = (points[a as usize], points[b as usize]);
                let mid = PlanarM {
                    x_m: (pa.x_m + pb.x_m) / 2.0,
                    y_m: (pa.y_m + pb.y_m) / 2.0,
                };
                for (number, dy) in [
                    (2 * i + 1, ADDRESS_SETBACK_M),
                    (2 * i + 2, -ADDRESS_SETBACK_M),
                ] {
                    let p = PlanarM {
                        x_m: mid.x_m,
                        y_m: mid.y_m + dy,
                    };
                    if let Some(location) = projection.unproject(p) {
                        addresses.push(Address {
                            street,
                            number: number.to_string(),
                            location,
                        });
                    }
                }
            }
        }
    }
    // South-north streets (columns); only bridge columns jump over the river.
    for i in 0..n {
        let class = class_of(i);
        let street = street_for(false, i);
        let one_way = (class == RoadClass::Residential && i % 3 == 2).then_some(if i % 2 == 0 {
            Direction::Forward
        } else {
            Direction::Backward
        });
        let bridge = i % BRIDGE_EVERY == BRIDGE_EVERY / 2;
        let mut prev: Option<(usize, u32)> = None;
        for j in 0..n {
            let Some(b) = grid[j * n + i] else { continue };
            if let Some((pj, a)) = prev {
                let crosses = j - pj > 1 || across_river(points[a as usize], points[b as usize]);
                if !crosses {
                    add(&mut roads, &mut rng, a, b, class, one_way, street);
                } else if bridge {
                    add(&mut roads, &mut rng, a, b, RoadClass::Primary, None, street);
                }
            }
            prev = Some((j, b));
        }
    }
    // Rows cut by the river leave stubs; keep what is mutually reachable.
    let (nodes, roads) = keep_largest_component(&nodes, roads);
    let bounds = Bounds::around(nodes.iter().copied()).expect("a generated city has roads");
    let grid_districts = (params.size_km / 6.0).ceil().max(1.0) as u32;
    let grid_hospitals = (params.size_km / 15.0).ceil().max(1.0) as u32;
    let services = demo::place(&nodes, bounds, grid_districts, grid_hospitals);
    let station_areas = crate::areas::station_areas(
        &nodes,
        &roads,
        &services.stations,
        &Projection::new(bounds.centre()),
    );
    let river: Vec<LatLon> = (0..=200)
        .filter_map(|k| {
            let x_m = -half + size_m * f64::from(k) / 200.0;
            projection.unproject(PlanarM {
                x_m,
                y_m: river_y(x_m),
            })
        })
        .collect();
    City {
        meta: CityMeta {
            name: format!("Generated city {} km, seed {}", params.size_km, params.seed),
            source: format!(
                "muster geodata generate --size-km {} --seed {}",
                params.size_km, params.seed
            ),
            attribution: "Generated by Muster; no real place".into(),
            bounds,
        },
        nodes,
        roads,
        streets,
        addresses,
        districts: services.districts,
        stations: services.stations,
        hospitals: services.hospitals,
        station_areas,
        map_lines: vec![MapLine {
            kind: MapLineKind::Water,
            points: river,
        }],
    }
}

/// A made-up, digit-free street name word for grid line `k`, distinct for every `k` below
/// 960 (house numbers follow street names, so names must not contain numbers).
fn street_word(k: usize) -> String {
    const HEADS: [&str; 24] = [
        "Al", "Bir", "Ced", "Dal", "El", "Fern", "Glen", "Hol", "Ivy", "Jun", "Kel", "Lin", "Mar",
        "Nor", "Oak", "Pin", "Quin", "Ros", "Sel", "Tam", "Ul", "Val", "Wil", "Yar",
    ];
    const TAILS: [&str; 8] = [
        "ton", "wood", "field", "brook", "dale", "ford", "mere", "ley",
    ];
    const PREFIXES: [&str; 5] = ["", "Upper ", "Lower ", "Old ", "New "];
    format!(
        "{}{}{}",
        PREFIXES[(k / 192) % PREFIXES.len()],
        HEADS[k % 24],
        TAILS[(k / 24) % 8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_city_other_seed_other_city() {
        let a = generate(GenerateParams::new(3.0, 1).unwrap());
        let b = generate(GenerateParams::new(3.0, 1).unwrap());
        let c = generate(GenerateParams::new(3.0, 2).unwrap());
        assert_eq!(a, b);
        assert_ne!(a.nodes, c.nodes);
    }

    #[test]
    fn street_words_are_distinct_and_digit_free() {
        let words: std::collections::HashSet<String> = (0..960).map(street_word).collect();
        assert_eq!(words.len(), 960);
        assert!(words.iter().all(|w| !w.chars().any(|c| c.is_ascii_digit())));
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        for bad in [0.0, -5.0, f64::NAN, 1000.0] {
            assert!(GenerateParams::new(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn has_hierarchy_one_ways_bridges_and_services() {
        let city = generate(GenerateParams::new(30.0, 7).unwrap());
        let count = |c: RoadClass| city.roads.iter().filter(|r| r.class == c).count();
        assert!(count(RoadClass::Primary) > 100);
        assert!(count(RoadClass::Residential) > count(RoadClass::Primary));
        assert!(city.roads.iter().any(|r| r.direction != Direction::Both));
        assert!(city.nodes.len() > 15_000, "{} nodes", city.nodes.len());
        assert_eq!(city.districts.len(), 25);
        assert!(city.stations.len() >= 25);
        assert_eq!(city.hospitals.len(), 4);
        let geocoder = crate::geocode::Geocoder::new(std::sync::Arc::new(city.clone()));
        for a in city.addresses.iter().step_by(997) {
            let text = format!("{} {}", city.streets[a.street as usize], a.number);
            let hit = geocoder
                .geocode(&crate::geocode::AddressQuery::parse(&text).unwrap())
                .unwrap();
            assert!(hit.exact && hit.location == a.location, "{text}");
            assert_eq!(geocoder.reverse(a.location).unwrap().to_string(), text);
        }
    }
}
