//! Areas for per-area counts: the districts of a city file when a point lies in one, else a
//! cell of a fixed grid.
//!
//! The grid cell is 0.01° of latitude by 0.02° of longitude (about 1.1 km by 1.1 km at 60° N,
//! narrower towards the equator, wider towards the poles), numbered from the south-west
//! corner of the world: `grid-<row>-<col>`, with `row = floor((lat + 90) / 0.01)` and
//! `col = floor((lon + 180) / 0.02)`. A cell is only a bucket for counting, not a district
//! anyone drew; it keeps counts meaningful where no city file covers the place.
//!
//! The area of an incident or a unit is fixed when the view applies its event. Changing the
//! city means rebuilding the views (`muster projections rebuild`).

use std::path::Path;

use anyhow::Context;
use geo::{Contains, Coord, LineString, Point, Polygon};
use muster_core::value::LatLon;
use muster_geodata::model::City;
use muster_geodata::point::Projection;
use serde::{Deserialize, Serialize};

/// Grid cell height, degrees of latitude.
pub const GRID_LAT_DEG: f64 = 0.01;
/// Grid cell width, degrees of longitude.
pub const GRID_LON_DEG: f64 = 0.02;

/// An area: id and name.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct AreaRef {
    /// Stable id: a district id of the city, or `grid-<row>-<col>`.
    pub id: String,
    /// For people.
    pub name: String,
}

struct District {
    id: String,
    name: String,
    polygon: Polygon<f64>,
}

/// Where areas come from.
pub struct Areas {
    projection: Option<Projection>,
    districts: Vec<District>,
    city_name: Option<String>,
}

impl std::fmt::Debug for Areas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Areas")
            .field("city", &self.city_name)
            .field("districts", &self.districts.len())
            .finish()
    }
}

impl Areas {
    /// Only the grid.
    pub fn grid() -> Self {
        Self {
            projection: None,
            districts: Vec::new(),
            city_name: None,
        }
    }

    /// The districts of a city, the grid elsewhere.
    pub fn from_city(city: &City) -> Self {
        let projection = city.projection();
        let districts = city
            .districts
            .iter()
            .map(|d| {
                let ring: Vec<Coord> = d
                    .ring
                    .iter()
                    .map(|q| {
                        let p = projection.project(*q);
                        Coord { x: p.x_m, y: p.y_m }
                    })
                    .collect();
                District {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    polygon: Polygon::new(LineString::new(ring), vec![]),
                }
            })
            .collect();
        Self {
            projection: Some(projection),
            districts,
            city_name: Some(city.meta.name.clone()),
        }
    }

    /// Areas as configured: `bundled`, `grid`, or a city file's path.
    pub fn from_setting(setting: &str) -> anyhow::Result<(Self, Option<City>)> {
        match setting {
            "grid" => Ok((Self::grid(), None)),
            "bundled" => {
                let city = muster_geodata::format::bundled("helsinki")
                    .expect("helsinki is bundled")
                    .context("reading the bundled city")?;
                Ok((Self::from_city(&city), Some(city)))
            }
            path => {
                let city = muster_geodata::format::load(Path::new(path))
                    .with_context(|| format!("loading city file {path}"))?;
                Ok((Self::from_city(&city), Some(city)))
            }
        }
    }

    /// The city whose districts are used, if any.
    pub fn city_name(&self) -> Option<&str> {
        self.city_name.as_deref()
    }

    /// The area of a point.
    pub fn area_of(&self, p: LatLon) -> AreaRef {
        if let Some(projection) = &self.projection {
            let xy = projection.project(p);
            let point = Point::new(xy.x_m, xy.y_m);
            if let Some(d) = self.districts.iter().find(|d| d.polygon.contains(&point)) {
                return AreaRef {
                    id: d.id.clone(),
                    name: d.name.clone(),
                };
            }
        }
        grid_cell(p)
    }
}

/// The grid cell of a point (see the module docs).
pub fn grid_cell(p: LatLon) -> AreaRef {
    let row = ((p.lat_deg() + 90.0) / GRID_LAT_DEG).floor() as i64;
    let col = ((p.lon_deg() + 180.0) / GRID_LON_DEG).floor() as i64;
    let south = row as f64 * GRID_LAT_DEG - 90.0;
    let west = col as f64 * GRID_LON_DEG - 180.0;
    AreaRef {
        id: format!("grid-{row}-{col}"),
        name: format!("grid cell from {south:.2}° N, {west:.2}° E"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_cells_split_at_their_edges() {
        let a = grid_cell(LatLon::from_lat_lon(60.169, 24.938).unwrap());
        let b = grid_cell(LatLon::from_lat_lon(60.1695, 24.9385).unwrap());
        let c = grid_cell(LatLon::from_lat_lon(60.181, 24.938).unwrap());
        assert_eq!(a, b);
        assert_ne!(a.id, c.id);
        assert_eq!(a.id, "grid-15016-10246");
    }

    #[test]
    fn the_bundled_city_gives_districts_inside_and_the_grid_outside() {
        let (areas, city) = Areas::from_setting("bundled").unwrap();
        let city = city.unwrap();
        let station = &city.stations[0];
        let inside = station.location;
        assert!(!areas.area_of(inside).id.starts_with("grid-"));
        let far = LatLon::from_lat_lon(-33.9, 18.4).unwrap();
        assert!(areas.area_of(far).id.starts_with("grid-"));
    }
}
