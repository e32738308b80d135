//! Recommendations: which units to send to an incident, by road travel time.
//!
//! The incident's response plan says which unit kinds and how many. For each kind, candidates
//! come from the R-tree nearest first (straight line, planar metres, between points on the
//! road network); their road travel times come from one many-to-one query per round. The
//! search widens in rounds until no unit further away can beat the ones found: a unit at
//! straight-line distance d needs at least d / v_max seconds by road, where v_max is the
//! fastest road speed in the city. So the answer is the nearest by road, not an
//! approximation, and a river between the incident and the straight-line nearest unit is
//! handled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use muster_geodata::{LatLon, RouteError};
use serde::Serialize;

use super::index::{IndexedUnit, UnitIndex, Whereabouts};
use crate::ids::UnitId;
use crate::runcard::ResponsePlan;
use crate::value::{Agency, Capability, UnitKind};

/// Most candidates of one kind whose travel time is computed for one recommendation.
pub const MAX_EXAMINED_PER_KIND: usize = 400;
/// Candidates in the first round of a kind, beyond the count asked for.
const FIRST_ROUND_EXTRA: usize = 4;

/// An incident to recommend for.
#[derive(Clone, Debug)]
pub struct IncidentSpec {
    /// Where it is.
    pub location: LatLon,
    /// The agency whose incident it is; units of other agencies are marked as such.
    pub agency: Option<Agency>,
    /// Capabilities every unit sent must have.
    pub required_capabilities: Vec<Capability>,
}

/// Why a candidate is where it is in the list.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Road travel time, the ranking key.
    Eta {
        /// Seconds.
        eta_s: f64,
    },
    /// Straight-line distance, for comparison.
    Distance {
        /// Metres.
        distance_m: f64,
    },
    /// Its home station is in the incident's area.
    InsideArea {
        /// The area.
        district: String,
    },
    /// Its home station is in another area than the incident.
    OtherArea {
        /// The unit's area.
        home: String,
        /// The incident's area.
        incident: Option<String>,
    },
    /// It belongs to another agency (mutual aid).
    OtherAgency {
        /// Its agency.
        agency: String,
    },
    /// No fresh position: ranked from its home station.
    FromStation {
        /// Age of its last fix, if it had one, seconds.
        stale_fix_age_s: Option<i64>,
    },
}

/// A ranked candidate.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    /// The unit.
    pub unit: UnitId,
    /// Its kind.
    pub kind: UnitKind,
    /// Road travel time to the incident.
    pub eta_s: f64,
    /// Straight-line distance to the incident, metres.
    pub distance_m: f64,
    /// The reasons, ETA first.
    pub reasons: Vec<Reason>,
}

/// The candidates of one kind the plan asks for.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KindCandidates {
    /// The kind.
    pub kind: UnitKind,
    /// How many the plan asks for.
    pub wanted: u8,
    /// Ranked by ETA: the first `wanted` are the recommendation, the rest alternatives.
    pub candidates: Vec<Candidate>,
    /// Whether the search proved that no other unit of this kind is nearer by road.
    pub exhaustive: bool,
}

/// A kind the plan asks for that cannot be filled now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Shortfall {
    /// The kind.
    pub kind: UnitKind,
    /// How many the plan asks for.
    pub wanted: u8,
    /// How many available units can reach the incident.
    pub found: u8,
}

/// A recommendation.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// Per kind, in plan order.
    pub kinds: Vec<KindCandidates>,
    /// What is missing; empty when the plan can be filled.
    pub shortfall: Vec<Shortfall>,
    /// The incident's area, if inside one.
    pub district: Option<String>,
}

impl Recommendation {
    /// The units recommended: the first `wanted` of each kind.
    pub fn picks(&self) -> impl Iterator<Item = &Candidate> {
        self.kinds
            .iter()
            .flat_map(|k| k.candidates.iter().take(usize::from(k.wanted)))
    }
}

/// Why there is no recommendation at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RecommendError {
    /// The incident is not near any road of the city.
    #[error("the incident at {point} is outside coverage: no road within reach")]
    OutsideCoverage {
        /// Where.
        point: LatLon,
    },
}

/// The fastest road speed in the city, metres per second, with a margin for rounding.
pub fn max_speed_m_s(index: &UnitIndex) -> f64 {
    let kmh = index
        .router()
        .city()
        .roads
        .iter()
        .map(|r| r.speed_kmh)
        .max()
        .unwrap_or(1);
    f64::from(kmh) / 3.6 * 1.02
}

/// Recommends units for `incident` following `plan`, excluding `exclude` (units already
/// declined or assigned).
pub fn recommend(
    index: &UnitIndex,
    incident: &IncidentSpec,
    plan: &ResponsePlan,
    exclude: &[UnitId],
    now: DateTime<Utc>,
) -> Result<Recommendation, RecommendError> {
    let router = index.router();
    let target = router
        .snap(incident.location)
        .map_err(|_| RecommendError::OutsideCoverage {
            point: incident.location,
        })?;
    let projection = router.city().projection();
    let target_xy = projection.project(target.on_road);
    let district = router
        .city()
        .district_at(incident.location)
        .map(|d| d.id.clone());
    let v_max = max_speed_m_s(index);

    let mut kinds = Vec::with_capacity(plan.units.len());
    let mut shortfall = Vec::new();
    for need in &plan.units {
        let wanted = usize::from(need.count);
        let search = nearest_by_road(
            index,
            need.kind,
            incident.location,
            target_xy,
            wanted,
            v_max,
            |u| {
                !exclude.contains(&u.id)
                    && incident
                        .required_capabilities
                        .iter()
                        .all(|c| u.capabilities.contains(c))
            },
        )
        .map_err(|_| RecommendError::OutsideCoverage {
            point: incident.location,
        })?;
        if search.found.len() < wanted {
            shortfall.push(Shortfall {
                kind: need.kind,
                wanted: need.count,
                found: search.found.len() as u8,
            });
        }
        let candidates = search
            .found
            .into_iter()
            .take(wanted + 3)
            .map(|(eta, unit, d)| candidate(unit, eta, d, incident, district.as_deref(), now))
            .collect();
        kinds.push(KindCandidates {
            kind: need.kind,
            wanted: need.count,
            candidates,
            exhaustive: search.exhaustive,
        });
    }
    Ok(Recommendation {
        kinds,
        shortfall,
        district,
    })
}

/// The units of one kind nearest to a point by road, and whether that is proven.
#[derive(Debug)]
pub(crate) struct RoadSearch<'a> {
    /// (travel time, unit, straight-line metres), fastest first.
    pub found: Vec<(Duration, &'a IndexedUnit, f64)>,
    /// No unit left out can be faster than the `wanted`-th found.
    pub exhaustive: bool,
}

/// Finds at least `wanted` units of `kind` (passing `keep`) nearest to `target` by road,
/// widening in rounds until the straight-line bound proves no further unit is faster.
pub(crate) fn nearest_by_road<'a>(
    index: &'a UnitIndex,
    kind: UnitKind,
    target: LatLon,
    target_xy: muster_geodata::point::PlanarM,
    wanted: usize,
    v_max_m_s: f64,
    keep: impl Fn(&IndexedUnit) -> bool,
) -> Result<RoadSearch<'a>, RouteError> {
    let router = index.router();
    let mut pool = index
        .nearest(kind, target_xy)
        .filter(|(u, _)| keep(u))
        .peekable();
    let mut found: Vec<(Duration, &IndexedUnit, f64)> = Vec::new();
    let mut examined = 0;
    let mut round = wanted + FIRST_ROUND_EXTRA;
    let mut exhaustive = false;
    loop {
        let chunk: Vec<(&IndexedUnit, f64)> = pool
            .by_ref()
            .take(round.min(MAX_EXAMINED_PER_KIND - examined))
            .collect();
        if chunk.is_empty() {
            exhaustive = true;
            break;
        }
        examined += chunk.len();
        let sources: Vec<LatLon> = chunk
            .iter()
            .map(|(u, _)| position(u).expect("units in the tree have a place"))
            .collect();
        let etas = router.travel_times_to(&sources, target)?;
        for ((unit, d), eta) in chunk.into_iter().zip(etas) {
            if let Ok(eta) = eta {
                found.push((eta, unit, d));
            }
        }
        // Ties broken by unit id, so equal candidates rank the same whatever the tree's shape.
        found.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.2.total_cmp(&b.2))
                .then(a.1.id.cmp(&b.1.id))
        });
        match pool.peek() {
            None => {
                exhaustive = true;
                break;
            }
            Some((_, next_d)) if found.len() >= wanted.max(1) => {
                let bound = Duration::from_secs_f64(next_d / v_max_m_s);
                if bound >= found[wanted.max(1) - 1].0 {
                    exhaustive = true;
                    break;
                }
            }
            Some(_) => {}
        }
        if examined >= MAX_EXAMINED_PER_KIND {
            break;
        }
        round *= 2;
    }
    Ok(RoadSearch { found, exhaustive })
}

fn position(unit: &IndexedUnit) -> Option<LatLon> {
    match unit.whereabouts {
        Whereabouts::Fix { at, .. } | Whereabouts::Station { at, .. } => Some(at),
        Whereabouts::Unknown => None,
    }
}

fn candidate(
    unit: &IndexedUnit,
    eta: Duration,
    distance_m: f64,
    incident: &IncidentSpec,
    district: Option<&str>,
    now: DateTime<Utc>,
) -> Candidate {
    let eta_s = eta.as_secs_f64();
    let mut reasons = vec![Reason::Eta { eta_s }, Reason::Distance { distance_m }];
    match (&unit.home_district, district) {
        (Some(home), Some(here)) if home == here => reasons.push(Reason::InsideArea {
            district: home.clone(),
        }),
        (Some(home), here) => reasons.push(Reason::OtherArea {
            home: home.clone(),
            incident: here.map(str::to_owned),
        }),
        _ => {}
    }
    if let Some(agency) = &incident.agency
        && &unit.agency != agency
    {
        reasons.push(Reason::OtherAgency {
            agency: unit.agency.as_str().to_owned(),
        });
    }
    if let Whereabouts::Station { stale_fix, .. } = unit.whereabouts {
        reasons.push(Reason::FromStation {
            stale_fix_age_s: stale_fix.map(|t| (now - t).num_seconds()),
        });
    }
    Candidate {
        unit: unit.id,
        kind: unit.kind,
        eta_s,
        distance_m,
        reasons,
    }
}
