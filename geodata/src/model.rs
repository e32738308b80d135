//! The city model: road graph, streets and addresses, areas, stations, hospitals and
//! base-map features. Everything here is plain data that the city file stores.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::point::{LatLon, PlanarM, Projection};

/// Attribution that must travel with anything derived from OpenStreetMap data.
pub const OSM_ATTRIBUTION: &str = "© OpenStreetMap contributors, ODbL";

/// Index of a road-graph node in [`City::nodes`].
pub type NodeIdx = u32;
/// Index of a road in [`City::roads`].
pub type RoadIdx = u32;
/// Index of a street name in [`City::streets`].
pub type StreetIdx = u32;

/// A whole city, as loaded from a city file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct City {
    pub meta: CityMeta,
    /// Road-graph nodes: intersections and dead ends.
    pub nodes: Vec<LatLon>,
    /// Roads between two nodes, with their shape.
    pub roads: Vec<Road>,
    /// Street names, referenced by roads and addresses.
    pub streets: Vec<String>,
    pub addresses: Vec<Address>,
    pub districts: Vec<District>,
    pub stations: Vec<Station>,
    pub hospitals: Vec<Hospital>,
    /// First-due areas of the fire stations (see [`crate::areas`]).
    pub station_areas: Vec<crate::areas::StationArea>,
    /// Non-road base-map lines (water, railways) for the wall display.
    pub map_lines: Vec<MapLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CityMeta {
    pub name: String,
    /// Where the data came from, e.g. the PBF file name or the generator's parameters.
    pub source: String,
    /// Licence attribution to show wherever the map is shown ([`OSM_ATTRIBUTION`] for OSM).
    pub attribution: String,
    /// Covered area; points outside it are "outside coverage".
    pub bounds: Bounds,
}

/// A latitude/longitude rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub south_west: LatLon,
    pub north_east: LatLon,
}

impl Bounds {
    pub fn contains(&self, p: LatLon) -> bool {
        (self.south_west.lat_deg()..=self.north_east.lat_deg()).contains(&p.lat_deg())
            && (self.south_west.lon_deg()..=self.north_east.lon_deg()).contains(&p.lon_deg())
    }

    pub fn centre(&self) -> LatLon {
        LatLon::from_lat_lon(
            (self.south_west.lat_deg() + self.north_east.lat_deg()) / 2.0,
            (self.south_west.lon_deg() + self.north_east.lon_deg()) / 2.0,
        )
        .expect("the middle of two valid points is valid")
    }

    /// The smallest rectangle holding every point; `None` for no points.
    pub fn around(points: impl IntoIterator<Item = LatLon>) -> Option<Bounds> {
        let mut it = points.into_iter();
        let first = it.next()?;
        let (mut s, mut w, mut n, mut e) = (
            first.lat_deg(),
            first.lon_deg(),
            first.lat_deg(),
            first.lon_deg(),
        );
        for p in it {
            s = s.min(p.lat_deg());
            n = n.max(p.lat_deg());
            w = w.min(p.lon_deg());
            e = e.max(p.lon_deg());
        }
        Some(Bounds {
            south_west: LatLon::from_lat_lon(s, w).ok()?,
            north_east: LatLon::from_lat_lon(n, e).ok()?,
        })
    }
}

/// OpenStreetMap-style road classes, used for speeds and map styling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoadClass {
    Motorway,
    Trunk,
    Primary,
    Secondary,
    Tertiary,
    Unclassified,
    Residential,
    LivingStreet,
    Service,
    /// Pedestrian zones and busways: open to emergency vehicles at low speed.
    Pedestrian,
}

impl RoadClass {
    /// Parses an OSM `highway=*` value; `None` for ways emergency vehicles cannot use
    /// (footways, cycleways, steps, paths, tracks, construction, …). `_link` roads map to
    /// their parent class and the flag says so.
    pub fn from_osm_highway(value: &str) -> Option<(RoadClass, bool)> {
        let (base, link) = match value.strip_suffix("_link") {
            Some(base) => (base, true),
            None => (value, false),
        };
        let class = match base {
            "motorway" => RoadClass::Motorway,
            "trunk" => RoadClass::Trunk,
            "primary" => RoadClass::Primary,
            "secondary" => RoadClass::Secondary,
            "tertiary" => RoadClass::Tertiary,
            "unclassified" | "road" => RoadClass::Unclassified,
            "residential" => RoadClass::Residential,
            "living_street" => RoadClass::LivingStreet,
            "service" => RoadClass::Service,
            "pedestrian" | "busway" | "bus_guideway" if !link => RoadClass::Pedestrian,
            _ => return None,
        };
        Some((class, link))
    }

    /// Planning speed of an emergency vehicle on this class of road, km/h. Emergency
    /// vehicles may exceed posted limits with lights and siren, so the figures are class
    /// averages including junction delays, not the legal limits.
    pub fn emergency_speed_kmh(self) -> u8 {
        match self {
            RoadClass::Motorway => 100,
            RoadClass::Trunk => 80,
            RoadClass::Primary => 60,
            RoadClass::Secondary => 55,
            RoadClass::Tertiary => 50,
            RoadClass::Unclassified => 40,
            RoadClass::Residential => 35,
            RoadClass::LivingStreet => 15,
            RoadClass::Service => 20,
            RoadClass::Pedestrian => 10,
        }
    }

    /// Speed on a `_link` (ramp) of this class, km/h.
    pub fn emergency_link_speed_kmh(self) -> u8 {
        (u16::from(self.emergency_speed_kmh()) * 6 / 10) as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoadClass::Motorway => "motorway",
            RoadClass::Trunk => "trunk",
            RoadClass::Primary => "primary",
            RoadClass::Secondary => "secondary",
            RoadClass::Tertiary => "tertiary",
            RoadClass::Unclassified => "unclassified",
            RoadClass::Residential => "residential",
            RoadClass::LivingStreet => "living_street",
            RoadClass::Service => "service",
            RoadClass::Pedestrian => "pedestrian",
        }
    }
}

/// Which ways a road may be driven, relative to its `from` -> `to` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Both,
    /// One-way from `from` to `to`.
    Forward,
    /// One-way from `to` to `from`.
    Backward,
}

impl Direction {
    pub fn forward(self) -> bool {
        matches!(self, Direction::Both | Direction::Forward)
    }

    pub fn backward(self) -> bool {
        matches!(self, Direction::Both | Direction::Backward)
    }
}

/// A road between two graph nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Road {
    pub from: NodeIdx,
    pub to: NodeIdx,
    /// Shape points between the two end nodes (not including them).
    pub shape: Vec<LatLon>,
    pub direction: Direction,
    pub class: RoadClass,
    /// Emergency-vehicle speed used for travel times, km/h.
    pub speed_kmh: u8,
    /// Length along the shape on the sphere, metres.
    pub length_m: f32,
    pub street: Option<StreetIdx>,
}

impl Road {
    /// Travel time along the whole road, milliseconds; at least 1.
    pub fn travel_time_ms(&self) -> u32 {
        travel_time_ms(f64::from(self.length_m), self.speed_kmh)
    }

    /// Every point of the road from `from` to `to`, shape included.
    pub fn polyline<'a>(&'a self, nodes: &'a [LatLon]) -> impl Iterator<Item = LatLon> + 'a {
        std::iter::once(nodes[self.from as usize])
            .chain(self.shape.iter().copied())
            .chain(std::iter::once(nodes[self.to as usize]))
    }
}

/// Milliseconds to drive `length_m` at `speed_kmh` (at least 1, so no free edges).
pub fn travel_time_ms(length_m: f64, speed_kmh: u8) -> u32 {
    let speed_m_per_ms = f64::from(speed_kmh.max(1)) / 3600.0;
    ((length_m / speed_m_per_ms).round() as u32).max(1)
}

/// A house number on a street.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub street: StreetIdx,
    /// As written in the source, e.g. "12", "12a", "3-5".
    pub number: String,
    pub location: LatLon,
}

/// A district or station area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct District {
    pub id: String,
    pub name: String,
    /// Outer ring, not closed (the last point joins the first).
    pub ring: Vec<LatLon>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StationKind {
    Fire,
    Ambulance,
    Police,
}

impl StationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StationKind::Fire => "fire",
            StationKind::Ambulance => "ambulance",
            StationKind::Police => "police",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Station {
    pub id: String,
    pub name: String,
    pub kind: StationKind,
    pub location: LatLon,
    /// Index into [`City::districts`] of the area it covers first.
    pub district: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hospital {
    pub id: String,
    pub name: String,
    pub location: LatLon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapLineKind {
    Water,
    Railway,
    Coastline,
}

impl MapLineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MapLineKind::Water => "water",
            MapLineKind::Railway => "railway",
            MapLineKind::Coastline => "coastline",
        }
    }
}

/// A base-map line that is not a road.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapLine {
    pub kind: MapLineKind,
    pub points: Vec<LatLon>,
}

fn lonlat(p: LatLon) -> Value {
    json!([p.lon_deg(), p.lat_deg()])
}

/// A city whose parts do not fit together (an index out of range, a road to nowhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inconsistent city: {0}")]
pub struct InvalidCity(pub String);

impl City {
    /// Checks that every index points at something and that every node is on a road, so
    /// code using a loaded city can index without checks. Import and generation always
    /// produce valid cities; this guards against hand-made or foreign files.
    pub fn validate(&self) -> Result<(), InvalidCity> {
        let bad = |what: String| Err(InvalidCity(what));
        let (n, streets) = (self.nodes.len(), self.streets.len());
        if self.roads.is_empty() {
            return bad("it has no roads".into());
        }
        if n > u32::MAX as usize / 2 {
            return bad(format!("{n} nodes is more than this build supports"));
        }
        let mut on_road = vec![false; n];
        for (i, r) in self.roads.iter().enumerate() {
            if r.from as usize >= n || r.to as usize >= n {
                return bad(format!("road {i} joins a node that does not exist"));
            }
            if r.from == r.to {
                return bad(format!("road {i} starts and ends at the same node"));
            }
            if r.street.is_some_and(|s| s as usize >= streets) {
                return bad(format!("road {i} names a street that does not exist"));
            }
            if !(r.length_m.is_finite() && r.length_m >= 0.0) || r.speed_kmh == 0 {
                return bad(format!("road {i} has no usable length or speed"));
            }
            on_road[r.from as usize] = true;
            on_road[r.to as usize] = true;
        }
        if let Some(i) = on_road.iter().position(|&x| !x) {
            return bad(format!("node {i} is on no road"));
        }
        if let Some(i) = self
            .addresses
            .iter()
            .position(|a| a.street as usize >= streets)
        {
            return bad(format!("address {i} names a street that does not exist"));
        }
        if let Some(s) = self
            .stations
            .iter()
            .find(|s| s.district as usize >= self.districts.len().max(1))
        {
            return bad(format!(
                "station {} is in a district that does not exist",
                s.id
            ));
        }
        Ok(())
    }

    /// The local plane used for snapping and areas, centred on the city.
    pub fn projection(&self) -> Projection {
        Projection::new(self.meta.bounds.centre())
    }

    pub fn street_name(&self, street: StreetIdx) -> Option<&str> {
        self.streets.get(street as usize).map(String::as_str)
    }

    /// The district whose polygon holds `p`, if any.
    pub fn district_at(&self, p: LatLon) -> Option<&District> {
        use geo::{Contains, Coord, LineString, Point, Polygon};
        let proj = self.projection();
        let xy = proj.project(p);
        self.districts.iter().find(|d| {
            let ring: Vec<Coord> = d
                .ring
                .iter()
                .map(|q| {
                    let PlanarM { x_m, y_m } = proj.project(*q);
                    Coord { x: x_m, y: y_m }
                })
                .collect();
            Polygon::new(LineString::new(ring), vec![]).contains(&Point::new(xy.x_m, xy.y_m))
        })
    }

    /// The base map as an RFC 7946 GeoJSON FeatureCollection (longitude first): roads with
    /// class, name and one-way flag; water and railway lines; districts; stations; hospitals.
    /// The collection carries the city's attribution.
    pub fn base_map_geojson(&self) -> Value {
        let mut features = Vec::with_capacity(self.roads.len() + self.map_lines.len() + 64);
        for road in &self.roads {
            let coords: Vec<Value> = road.polyline(&self.nodes).map(lonlat).collect();
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {
                    "layer": "road",
                    "class": road.class.as_str(),
                    "name": road.street.and_then(|s| self.street_name(s)),
                    "oneway": road.direction != Direction::Both,
                },
            }));
        }
        for line in &self.map_lines {
            let coords: Vec<Value> = line.points.iter().copied().map(lonlat).collect();
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {"layer": line.kind.as_str()},
            }));
        }
        for d in &self.districts {
            let mut ring: Vec<Value> = d.ring.iter().copied().map(lonlat).collect();
            if let Some(first) = d.ring.first() {
                ring.push(lonlat(*first));
            }
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"layer": "district", "id": d.id, "name": d.name},
            }));
        }
        for a in &self.station_areas {
            let mut ring: Vec<Value> = a.ring.iter().copied().map(lonlat).collect();
            if let Some(first) = a.ring.first() {
                ring.push(lonlat(*first));
            }
            let station = &self.stations[a.station as usize];
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"layer": "station_area", "station": station.id, "name": station.name},
            }));
        }
        for s in &self.stations {
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(s.location)},
                "properties": {"layer": "station", "id": s.id, "name": s.name, "kind": s.kind.as_str()},
            }));
        }
        for h in &self.hospitals {
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": lonlat(h.location)},
                "properties": {"layer": "hospital", "id": h.id, "name": h.name},
            }));
        }
        json!({
            "type": "FeatureCollection",
            "attribution": self.meta.attribution,
            "features": features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highway_values_parse_to_classes_or_are_refused() {
        assert_eq!(
            RoadClass::from_osm_highway("primary_link"),
            Some((RoadClass::Primary, true))
        );
        assert_eq!(
            RoadClass::from_osm_highway("residential"),
            Some((RoadClass::Residential, false))
        );
        for refused in [
            "footway",
            "cycleway",
            "steps",
            "path",
            "construction",
            "pedestrian_link",
        ] {
            assert_eq!(RoadClass::from_osm_highway(refused), None, "{refused}");
        }
    }

    #[test]
    fn travel_time_is_length_over_speed_and_never_zero() {
        // 1 km at 60 km/h is one minute.
        assert_eq!(travel_time_ms(1000.0, 60), 60_000);
        assert_eq!(travel_time_ms(0.0, 60), 1);
    }
}
