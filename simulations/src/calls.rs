//! The call generator: arrivals by hour of day (a Poisson process whose rate follows the
//! hourly weights of the clock hours the drill runs through), places by district weight (at the city's addresses, so every call is
//! on a street), and the incident type and priority mix.

use muster_core::value::{IncidentType, Priority};
use muster_geodata::{City, LatLon};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::engine::Call;
use crate::scenario::{Scenario, Scripted};

fn pick(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Milliseconds after midnight (UTC) at the scenario's start.
pub fn time_of_day_ms(scenario: &Scenario) -> i64 {
    scenario.start.timestamp_millis().rem_euclid(86_400_000)
}

/// The calls of a drill, in order of time: `end_ms` milliseconds of calls from the
/// scenario's start, the hourly weights following the clock.
pub fn generate(scenario: &Scenario, rng: &mut ChaCha8Rng, end_ms: i64) -> Vec<Call> {
    generate_from(scenario, rng, time_of_day_ms(scenario), end_ms)
}

/// As [`generate`], for a stretch that starts `day_ms` milliseconds after midnight.
pub fn generate_from(
    scenario: &Scenario,
    rng: &mut ChaCha8Rng,
    day_ms: i64,
    end_ms: i64,
) -> Vec<Call> {
    let c = &scenario.calls;
    let city = &scenario.city;
    let hourly_total: f64 = c.hourly.iter().sum();
    // Addresses by district, for weighted areas; every address when no weights are given.
    let places: Vec<LatLon> = if city.addresses.is_empty() {
        city.nodes.clone()
    } else {
        city.addresses.iter().map(|a| a.location).collect()
    };
    let areas: Vec<(Vec<LatLon>, f64)> = if c.areas.is_empty() {
        vec![(places, 1.0)]
    } else {
        c.areas
            .iter()
            .map(|(id, w)| {
                let inside: Vec<LatLon> = places
                    .iter()
                    .copied()
                    .filter(|p| city.district_at(*p).is_some_and(|d| &d.id == id))
                    .collect();
                (inside, *w)
            })
            .filter(|(p, w)| !p.is_empty() && *w > 0.0)
            .collect()
    };
    let area_weights: Vec<f64> = areas.iter().map(|a| a.1).collect();
    let mix_weights: Vec<f64> = c.mix.iter().map(|m| m.weight).collect();
    let mut calls = Vec::new();
    if c.per_day <= 0.0 || areas.is_empty() {
        return calls;
    }
    // Hours of the day on the clock: the drill starts `day_ms` after midnight (UTC).
    let mut segment_start = 0i64;
    while segment_start < end_ms {
        let clock = day_ms + segment_start;
        let hour = (clock.div_euclid(3_600_000) % 24) as usize;
        let per_hour = c.per_day * c.hourly[hour] / hourly_total;
        let segment_end = (segment_start + 3_600_000 - clock.rem_euclid(3_600_000)).min(end_ms);
        if per_hour > 0.0 {
            let mean_gap_ms = 3_600_000.0 / per_hour;
            let mut t = segment_start as f64;
            loop {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                t += -u.ln() * mean_gap_ms;
                if t >= segment_end as f64 {
                    break;
                }
                let area = &areas[pick(&area_weights, rng)].0;
                let location = area[rng.random_range(0..area.len())];
                let mix = &c.mix[pick(&mix_weights, rng)];
                let priority = Priority::ALL[pick(&mix.priorities, rng)];
                calls.push(Call {
                    at_ms: (t.round() as i64).min(segment_end - 1),
                    location,
                    incident_type: mix.incident_type,
                    priority,
                    sensor: false,
                    entry_after_ms: None,
                });
            }
        }
        segment_start = segment_end;
    }
    calls
}

/// A random address within `radius_m` of `centre` (the nearest address when none is).
pub fn point_near(city: &City, centre: LatLon, radius_m: f64, rng: &mut ChaCha8Rng) -> LatLon {
    let near: Vec<LatLon> = city
        .addresses
        .iter()
        .map(|a| a.location)
        .filter(|p| p.haversine_distance_m(centre) <= radius_m)
        .collect();
    if near.is_empty() {
        return centre;
    }
    near[rng.random_range(0..near.len())]
}

/// A random address, in a district if one is given.
pub fn address_in(city: &City, district: Option<&str>, rng: &mut ChaCha8Rng) -> LatLon {
    let all: Vec<LatLon> = city
        .addresses
        .iter()
        .map(|a| a.location)
        .filter(|p| district.is_none_or(|id| city.district_at(*p).is_some_and(|d| d.id == id)))
        .collect();
    if all.is_empty() {
        return city.meta.bounds.centre();
    }
    all[rng.random_range(0..all.len())]
}

/// The calls a scripted event brings: a major incident and the related calls in the next
/// half hour nearby, or the alarms of a sensor storm; none for a road closure.
pub fn scripted(scenario: &Scenario, event: &Scripted, rng: &mut ChaCha8Rng) -> Vec<Call> {
    let mut calls = Vec::new();
    match *event {
        Scripted::MajorIncident {
            at_min,
            location,
            incident_type,
            priority,
            extra_calls,
        } => {
            let at_ms = (at_min * 60_000.0) as i64;
            calls.push(Call {
                at_ms,
                location,
                incident_type,
                priority,
                sensor: false,
                entry_after_ms: None,
            });
            for _ in 0..extra_calls {
                let later = at_ms + rng.random_range(60_000..1_800_000);
                let near = point_near(&scenario.city, location, 600.0, rng);
                let t = if rng.random_bool(0.7) {
                    IncidentType::Medical
                } else {
                    incident_type
                };
                calls.push(Call {
                    at_ms: later,
                    location: near,
                    incident_type: t,
                    priority: Priority::P2,
                    sensor: false,
                    entry_after_ms: None,
                });
            }
        }
        Scripted::SensorStorm {
            at_min,
            duration_min,
            count,
            ref district,
            incident_type,
        } => {
            let at_ms = (at_min * 60_000.0) as i64;
            for _ in 0..count {
                let when = at_ms + rng.random_range(0..(duration_min * 60_000.0) as i64 + 1);
                let location = address_in(&scenario.city, district.as_deref(), rng);
                calls.push(Call {
                    at_ms: when,
                    location,
                    incident_type,
                    priority: Priority::P2,
                    sensor: true,
                    entry_after_ms: Some(0),
                });
            }
        }
        Scripted::RoadClosure { .. } => {}
    }
    calls
}
