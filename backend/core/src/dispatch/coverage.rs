//! Coverage: which areas have no available unit within a target travel time, and which
//! unit could move up to cover each (a recommendation only).

use std::collections::HashMap;
use std::time::Duration;

use muster_geodata::LatLon;
use serde::Serialize;

use super::index::UnitIndex;
use super::recommend::{max_speed_m_s, nearest_by_road};
use crate::ids::UnitId;
use crate::value::UnitKind;

/// Units looked at per area when choosing a move-up.
const MOVE_UP_CANDIDATES: usize = 8;

/// An area without a unit of the kinds asked within the target time.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UncoveredArea {
    /// The area.
    pub district: String,
    /// Its name.
    pub name: String,
    /// The fastest available unit's travel time to its centre, if any can reach it.
    pub best_eta_s: Option<f64>,
}

/// A suggested move: a unit from an area that keeps another unit goes to stand by in an
/// uncovered one.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MoveUp {
    /// The unit.
    pub unit: UnitId,
    /// Its home area.
    pub from_district: Option<String>,
    /// The area it would cover.
    pub to_district: String,
    /// Its travel time to that area's centre, seconds.
    pub eta_s: f64,
}

/// The coverage of the city by units of some kinds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CoverageReport {
    /// The target travel time, seconds.
    pub target_s: f64,
    /// Areas covered.
    pub covered: usize,
    /// Areas not covered.
    pub uncovered: Vec<UncoveredArea>,
    /// Suggested move-ups, at most one per uncovered area and per unit.
    pub move_ups: Vec<MoveUp>,
}

/// The centre of a ring (the mean of its points, good enough for a district).
fn centre(ring: &[LatLon]) -> Option<LatLon> {
    if ring.is_empty() {
        return None;
    }
    let n = ring.len() as f64;
    let lat = ring.iter().map(|p| p.lat_deg()).sum::<f64>() / n;
    let lon = ring.iter().map(|p| p.lon_deg()).sum::<f64>() / n;
    LatLon::from_lat_lon(lat, lon).ok()
}

/// Reports the areas without an available unit of `kinds` within `target`, with move-ups.
pub fn coverage(index: &UnitIndex, kinds: &[UnitKind], target: Duration) -> CoverageReport {
    let router = index.router();
    let city = router.city();
    let projection = city.projection();
    let v_max = max_speed_m_s(index);
    let mut report = CoverageReport {
        target_s: target.as_secs_f64(),
        ..Default::default()
    };

    // Available units per home area, to know which areas can spare one.
    let mut available_per_area: HashMap<Option<String>, usize> = HashMap::new();
    for unit in index
        .units()
        .filter(|u| u.status.can_take_task() && kinds.contains(&u.kind))
    {
        *available_per_area
            .entry(unit.home_district.clone())
            .or_insert(0) += 1;
    }
    let mut moved: Vec<UnitId> = Vec::new();
    for district in &city.districts {
        let Some(centre) = centre(&district.ring) else {
            continue;
        };
        let Ok(snap) = router.snap(centre) else {
            continue;
        };
        let xy = projection.project(snap.on_road);
        let mut best: Vec<(Duration, UnitId, Option<String>)> = Vec::new();
        for &kind in kinds {
            if let Ok(search) = nearest_by_road(
                index,
                kind,
                snap.on_road,
                xy,
                MOVE_UP_CANDIDATES,
                v_max,
                |_| true,
            ) {
                best.extend(
                    search
                        .found
                        .into_iter()
                        .map(|(eta, u, _)| (eta, u.id, u.home_district.clone())),
                );
            }
        }
        best.sort_by_key(|b| b.0);
        let fastest = best.first().map(|b| b.0);
        if fastest.is_some_and(|eta| eta <= target) {
            report.covered += 1;
            continue;
        }
        report.uncovered.push(UncoveredArea {
            district: district.id.clone(),
            name: district.name.clone(),
            best_eta_s: fastest.map(|d| d.as_secs_f64()),
        });
        let spare = best.into_iter().find(|(_, unit, home)| {
            !moved.contains(unit) && available_per_area.get(home).copied().unwrap_or(0) >= 2
        });
        if let Some((eta, unit, home)) = spare {
            if let Some(n) = available_per_area.get_mut(&home) {
                *n -= 1;
            }
            moved.push(unit);
            report.move_ups.push(MoveUp {
                unit,
                from_district: home,
                to_district: district.id.clone(),
                eta_s: eta.as_secs_f64(),
            });
        }
    }
    report
}
