//! A drive along a road route in time: the route's points with the milliseconds at which a
//! unit passes each (spread by distance over the route's travel time), and where the unit
//! is at any moment of it. The drill engine (virtual time) and live drills (wall time)
//! move their units with it.

use muster_core::value::{IncidentType, Service, UnitKind};
use muster_geodata::{City, LatLon, Router};

/// Where a moving unit is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Its incident.
    Incident,
    /// A hospital, with a patient.
    Hospital,
    /// Its station.
    Station,
}

/// The agency code drills give a kind's units.
pub fn agency(kind: UnitKind) -> &'static str {
    match kind.service() {
        Service::Fire => "city-fire",
        Service::Ems => "city-ems",
        Service::Police => "city-police",
    }
}

/// Whether a unit of `kind` may take a patient from an incident of type `t` to hospital:
/// ambulances, from EMS-led incidents, collisions and assaults.
pub fn may_transport(kind: UnitKind, t: IncidentType) -> bool {
    matches!(kind, UnitKind::AlsAmbulance | UnitKind::BlsAmbulance)
        && (matches!(t.lead_service(), Service::Ems)
            || matches!(t, IncidentType::TrafficCollision | IncidentType::Assault))
}

/// The hospital nearest `here` in a straight line, if the city has one.
pub fn nearest_hospital(city: &City, here: LatLon) -> Option<LatLon> {
    city.hospitals
        .iter()
        .min_by(|a, b| {
            here.haversine_distance_m(a.location)
                .total_cmp(&here.haversine_distance_m(b.location))
        })
        .map(|h| h.location)
}

/// Speed of a unit off the road network (or cut off by a closure): 30 km/h, straight.
const OFF_ROAD_M_S: f64 = 30.0 / 3.6;

/// The points of a drive, each with the milliseconds from its start, ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    points: Vec<(i64, LatLon)>,
}

impl Path {
    /// The road route from `from` to `to`; a straight line at 30 km/h (at least a second)
    /// when the router finds none.
    pub fn along(router: &Router, from: LatLon, to: LatLon) -> Self {
        let points = match router.route(from, to) {
            Ok(route) if route.points.len() >= 2 => {
                let total_ms = route.travel_time.as_millis() as i64;
                let mut cum = Vec::with_capacity(route.points.len());
                let mut acc = 0.0;
                cum.push(0.0);
                for w in route.points.windows(2) {
                    acc += w[0].haversine_distance_m(w[1]);
                    cum.push(acc);
                }
                route
                    .points
                    .iter()
                    .zip(cum)
                    .map(|(p, d)| {
                        let t = if acc > 0.0 {
                            (d / acc * total_ms as f64).round() as i64
                        } else {
                            total_ms
                        };
                        (t, *p)
                    })
                    .collect()
            }
            _ => {
                let ms = (from.haversine_distance_m(to) / OFF_ROAD_M_S * 1000.0).round() as i64;
                vec![(0, from), (ms.max(1_000), to)]
            }
        };
        Self { points }
    }

    /// How long the drive takes, milliseconds.
    pub fn total_ms(&self) -> i64 {
        self.points.last().map_or(0, |p| p.0)
    }

    /// Where it ends.
    pub fn end(&self) -> Option<LatLon> {
        self.points.last().map(|p| p.1)
    }

    /// Where the unit is `ms` milliseconds into the drive, its heading (degrees, 0 before it
    /// moves) and its speed (m/s, 0 before it moves and once it has arrived).
    pub fn at(&self, ms: i64) -> (LatLon, f64, f64) {
        let i = self.points.partition_point(|p| p.0 <= ms);
        if i == 0 {
            return (self.points[0].1, 0.0, 0.0);
        }
        if i >= self.points.len() {
            let n = self.points.len();
            let heading = if n >= 2 {
                heading(self.points[n - 2].1, self.points[n - 1].1)
            } else {
                0.0
            };
            return (self.points[n - 1].1, heading, 0.0);
        }
        let (t0, a) = self.points[i - 1];
        let (t1, b) = self.points[i];
        let (f, speed) = if t1 > t0 {
            (
                (ms - t0) as f64 / (t1 - t0) as f64,
                a.haversine_distance_m(b) / ((t1 - t0) as f64 / 1000.0),
            )
        } else {
            (1.0, 0.0)
        };
        let p = LatLon::from_lat_lon(
            a.lat_deg() + (b.lat_deg() - a.lat_deg()) * f,
            a.lon_deg() + (b.lon_deg() - a.lon_deg()) * f,
        )
        .unwrap_or(a);
        (p, heading(a, b), speed)
    }
}

/// The heading from `a` to `b`, degrees clockwise from north, to a tenth of a degree (so a
/// drill's log does not depend on the last bits of trigonometry).
pub fn heading(a: LatLon, b: LatLon) -> f64 {
    let dy = b.lat_deg() - a.lat_deg();
    let dx = (b.lon_deg() - a.lon_deg()) * a.lat_deg().to_radians().cos();
    let h = dx.atan2(dy).to_degrees();
    let h = if h < 0.0 { h + 360.0 } else { h };
    let h = (h * 10.0).round() / 10.0;
    if h >= 360.0 { 0.0 } else { h }
}
