//! The live index of units: an R-tree of the units that can take a task, at their position
//! snapped to the road network, in the city's planar metres.
//!
//! Position reports and status changes update it in place (a remove and an insert in the
//! tree), never by rebuilding it. A unit whose newest fix is older than the configured limit
//! is moved to its home station by [`UnitIndex::refresh_stale`], and recommendations say so.
//!
//! [`UnitIndex::apply`] is the one fold of a unit's events into the index: the server's
//! dispatcher, drills, replays and reports all call it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use muster_geodata::Router;
use muster_geodata::point::PlanarM;
use rstar::{AABB, PointDistance, RTree, RTreeObject};

use crate::ids::UnitId;
use crate::unit::{UnitEvent, UnitStatus};
use crate::value::{Agency, Capability, StationCode, UnitKind};

/// Default age after which a unit's position no longer counts and its station stands in
/// (one published CAD system uses 30 minutes).
pub const DEFAULT_STALE_AFTER: Duration = Duration::minutes(30);

/// One unit in a tree (one tree per unit kind).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Entry {
    pub unit: UnitId,
    pub kind: UnitKind,
    pub xy: [f64; 2],
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_point(self.xy)
    }
}

impl PointDistance for Entry {
    fn distance_2(&self, point: &[f64; 2]) -> f64 {
        let (dx, dy) = (self.xy[0] - point[0], self.xy[1] - point[1]);
        dx * dx + dy * dy
    }
}

/// Where a unit is taken to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Whereabouts {
    /// Its newest position fix, taken at this time.
    Fix {
        /// Snapped to the road, WGS 84.
        at: muster_geodata::LatLon,
        /// When the fix was taken.
        taken: DateTime<Utc>,
    },
    /// Its home station: no fix, or the fix is older than the limit.
    Station {
        /// The station's position on the road.
        at: muster_geodata::LatLon,
        /// The stale fix, if any.
        stale_fix: Option<DateTime<Utc>>,
    },
    /// Neither a usable fix nor a station inside the city: not a candidate.
    Unknown,
}

/// What the index knows of a unit.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexedUnit {
    /// The unit.
    pub id: UnitId,
    /// Its kind.
    pub kind: UnitKind,
    /// Its capabilities.
    pub capabilities: BTreeSet<Capability>,
    /// Its agency.
    pub agency: Agency,
    /// Its status.
    pub status: UnitStatus,
    /// Its home station's position, if inside the city.
    pub station: Option<muster_geodata::LatLon>,
    /// The district of its home station, if known.
    pub home_district: Option<String>,
    /// Where it is taken to be.
    pub whereabouts: Whereabouts,
    xy: Option<[f64; 2]>,
    in_tree: bool,
}

/// What a change to the index did, for the bench and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The unit is in the tree at its new place.
    Indexed,
    /// The unit is known but not a candidate (busy, or nowhere known).
    NotACandidate,
    /// The position is outside the city's roads: kept out of the tree.
    OutsideCoverage,
    /// No such unit.
    UnknownUnit,
}

/// A city station's id with characters other than letters, digits, `-` and `_` replaced by `-`.
pub fn station_slug(station_id: &str) -> String {
    station_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The station code a unit registered at a city station carries: `s-` and its slug.
pub fn station_code(station_id: &str) -> String {
    format!("s-{}", station_slug(station_id)).to_lowercase()
}

/// Where units' home stations are, by the codes units register with: a city station's
/// [`station_code`] or its own id (any case).
#[derive(Clone, Debug, Default)]
pub struct Stations(HashMap<String, muster_geodata::LatLon>);

impl Stations {
    /// The stations of a city.
    pub fn of_city(city: &muster_geodata::model::City) -> Self {
        let mut stations = Self::default();
        for s in &city.stations {
            stations.insert(&s.id, s.location);
            stations.insert(&station_code(&s.id), s.location);
        }
        stations
    }

    /// Adds a station under `code`.
    pub fn insert(&mut self, code: &str, at: muster_geodata::LatLon) {
        self.0.insert(code.to_lowercase(), at);
    }

    /// The station of a code.
    pub fn get(&self, code: &StationCode) -> Option<muster_geodata::LatLon> {
        self.0.get(&code.as_str().to_lowercase()).copied()
    }
}

/// The live unit index.
pub struct UnitIndex {
    router: Arc<Router>,
    trees: HashMap<UnitKind, RTree<Entry>>,
    units: HashMap<UnitId, IndexedUnit>,
    stale_after: Duration,
}

impl std::fmt::Debug for UnitIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitIndex")
            .field("units", &self.units.len())
            .field("candidates", &self.candidates())
            .finish()
    }
}

/// A unit to add to the index.
#[derive(Clone, Debug)]
pub struct NewUnit {
    /// The unit.
    pub id: UnitId,
    /// Its kind.
    pub kind: UnitKind,
    /// Its capabilities.
    pub capabilities: BTreeSet<Capability>,
    /// Its agency.
    pub agency: Agency,
    /// Its status.
    pub status: UnitStatus,
    /// Its home station's position.
    pub station: Option<muster_geodata::LatLon>,
}

impl UnitIndex {
    /// An empty index on the roads of `router`'s city.
    pub fn new(router: Arc<Router>, stale_after: Duration) -> Self {
        Self {
            router,
            trees: HashMap::new(),
            units: HashMap::new(),
            stale_after,
        }
    }

    /// The router whose roads the index snaps to.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Units known.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Whether no unit is known.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Units that are candidates now.
    pub fn candidates(&self) -> usize {
        self.trees.values().map(RTree::size).sum()
    }

    /// A unit as the index knows it.
    pub fn unit(&self, id: UnitId) -> Option<&IndexedUnit> {
        self.units.get(&id)
    }

    /// Every unit known.
    pub fn units(&self) -> impl Iterator<Item = &IndexedUnit> {
        self.units.values()
    }

    /// The limit after which a fix is stale.
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    fn snap(&self, p: muster_geodata::LatLon) -> Option<(muster_geodata::LatLon, [f64; 2])> {
        let snap = self.router.snap(p).ok()?;
        let xy = self
            .router
            .city()
            .projection()
            .project(snap.on_road)
            .as_array();
        Some((snap.on_road, xy))
    }

    /// Adds or replaces a unit (registered, or loaded from the log). It starts at its station.
    pub fn upsert(&mut self, unit: NewUnit) -> Applied {
        self.take_out(unit.id);
        let station = unit.station.and_then(|s| self.snap(s));
        let home_district = unit
            .station
            .and_then(|s| self.router.city().district_at(s))
            .map(|d| d.id.clone());
        let (whereabouts, xy) = match station {
            Some((at, xy)) => (
                Whereabouts::Station {
                    at,
                    stale_fix: None,
                },
                Some(xy),
            ),
            None => (Whereabouts::Unknown, None),
        };
        self.units.insert(
            unit.id,
            IndexedUnit {
                id: unit.id,
                kind: unit.kind,
                capabilities: unit.capabilities,
                agency: unit.agency,
                status: unit.status,
                station: station.map(|s| s.0),
                home_district,
                whereabouts,
                xy,
                in_tree: false,
            },
        );
        self.put_in(unit.id)
    }

    /// Folds one of `unit`'s events into the index. `recorded_at` is when the log recorded it
    /// and `now` the time the index runs at (wall time live, the log's time in a replay): a
    /// fix counts as taken no later than it was recorded, so a device whose clock runs ahead
    /// cannot hold the unit at an old place.
    pub fn apply(
        &mut self,
        unit: UnitId,
        event: &UnitEvent,
        recorded_at: DateTime<Utc>,
        now: DateTime<Utc>,
        stations: &Stations,
    ) -> Applied {
        match event {
            UnitEvent::UnitRegistered {
                kind,
                agency,
                home_station,
                capabilities,
                ..
            } => self.upsert(NewUnit {
                id: unit,
                kind: *kind,
                capabilities: capabilities.clone(),
                agency: agency.clone(),
                status: UnitStatus::Available,
                station: stations.get(home_station),
            }),
            UnitEvent::UnitCapabilitiesChanged { capabilities, .. } => {
                let Some(u) = self.units.get_mut(&unit) else {
                    return Applied::UnknownUnit;
                };
                u.capabilities = capabilities.clone();
                if u.in_tree {
                    Applied::Indexed
                } else {
                    Applied::NotACandidate
                }
            }
            UnitEvent::UnitStatusChanged { to, .. } => self.set_status(unit, *to),
            UnitEvent::UnitPositionReported { position, at, .. } => {
                self.report_position(unit, *position, (*at).min(recorded_at), now)
            }
            _ => match self.units.get(&unit) {
                None => Applied::UnknownUnit,
                Some(u) if u.in_tree => Applied::Indexed,
                Some(_) => Applied::NotACandidate,
            },
        }
    }

    /// Applies a position fix taken at `taken`. Older fixes than the one held are ignored.
    pub fn report_position(
        &mut self,
        id: UnitId,
        at: muster_geodata::LatLon,
        taken: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Applied {
        let Some(unit) = self.units.get(&id) else {
            return Applied::UnknownUnit;
        };
        let older_than_held =
            matches!(unit.whereabouts, Whereabouts::Fix { taken: held, .. } if taken < held);
        if older_than_held || now - taken > self.stale_after {
            return if unit.in_tree {
                Applied::Indexed
            } else {
                Applied::NotACandidate
            };
        }
        let Some((on_road, xy)) = self.snap(at) else {
            return Applied::OutsideCoverage;
        };
        self.take_out(id);
        let unit = self.units.get_mut(&id).expect("checked above");
        unit.whereabouts = Whereabouts::Fix { at: on_road, taken };
        unit.xy = Some(xy);
        self.put_in(id)
    }

    /// Applies a status change: a unit that can take a task is in the tree, others are not.
    pub fn set_status(&mut self, id: UnitId, status: UnitStatus) -> Applied {
        let Some(unit) = self.units.get_mut(&id) else {
            return Applied::UnknownUnit;
        };
        unit.status = status;
        self.take_out(id);
        self.put_in(id)
    }

    /// Removes a unit.
    pub fn remove(&mut self, id: UnitId) {
        self.take_out(id);
        self.units.remove(&id);
    }

    /// Moves every unit whose fix is older than the limit to its station. Returns how many.
    pub fn refresh_stale(&mut self, now: DateTime<Utc>) -> usize {
        let stale: Vec<UnitId> = self
            .units
            .values()
            .filter(|u| matches!(u.whereabouts, Whereabouts::Fix { taken, .. } if now - taken > self.stale_after))
            .map(|u| u.id)
            .collect();
        // In id order: the tree's shape (and so the order of equal neighbours) must not
        // depend on the hash map's.
        let mut stale = stale;
        stale.sort_unstable();
        for id in &stale {
            self.take_out(*id);
            let station = self.units[id].station;
            let xy = station.map(|s| self.router.city().projection().project(s).as_array());
            let unit = self.units.get_mut(id).expect("listed above");
            let stale_fix = match unit.whereabouts {
                Whereabouts::Fix { taken, .. } => Some(taken),
                _ => None,
            };
            unit.whereabouts = match station {
                Some(at) => Whereabouts::Station { at, stale_fix },
                None => Whereabouts::Unknown,
            };
            unit.xy = xy;
            self.put_in(*id);
        }
        stale.len()
    }

    fn take_out(&mut self, id: UnitId) {
        if let Some(unit) = self.units.get_mut(&id)
            && unit.in_tree
        {
            let xy = unit.xy.expect("a unit in the tree has a place");
            let entry = Entry {
                unit: id,
                kind: unit.kind,
                xy,
            };
            let removed = self
                .trees
                .get_mut(&unit.kind)
                .and_then(|t| t.remove(&entry));
            debug_assert!(removed.is_some(), "unit {id} was not where the index said");
            unit.in_tree = false;
        }
    }

    fn put_in(&mut self, id: UnitId) -> Applied {
        let unit = self.units.get_mut(&id).expect("known unit");
        match (unit.status.can_take_task(), unit.xy) {
            (true, Some(xy)) => {
                self.trees.entry(unit.kind).or_default().insert(Entry {
                    unit: id,
                    kind: unit.kind,
                    xy,
                });
                unit.in_tree = true;
                Applied::Indexed
            }
            _ => Applied::NotACandidate,
        }
    }

    /// Candidates of `kind` by straight-line distance from `target` (planar metres), nearest
    /// first, with that distance.
    pub(crate) fn nearest(
        &self,
        kind: UnitKind,
        target: PlanarM,
    ) -> impl Iterator<Item = (&IndexedUnit, f64)> + '_ {
        self.trees
            .get(&kind)
            .into_iter()
            .flat_map(move |t| t.nearest_neighbor_iter_with_distance_2(&target.as_array()))
            .map(|(e, d2)| (&self.units[&e.unit], d2.sqrt()))
    }
}
