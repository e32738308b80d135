//! WGS 84 points and the local planar projection (metres) used for every distance.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Coordinates are stored at OpenStreetMap's precision: 1e-7 degrees (about 1 cm).
const E7: f64 = 1e7;

/// A validated WGS 84 position. Construct with [`LatLon::new`]; NaN, infinities and
/// out-of-range values are refused, so every `LatLon` in the program is usable.
///
/// Stored (and serialised) at 1e-7 degree precision, like OpenStreetMap.
#[derive(Clone, Copy, PartialEq)]
pub struct LatLon {
    lat_e7: i32,
    lon_e7: i32,
}

/// Why a pair of numbers is not a position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LatLonError {
    #[error("latitude {0} is not a finite number in -90..=90")]
    Latitude(f64),
    #[error("longitude {0} is not a finite number in -180..=180")]
    Longitude(f64),
}

impl LatLon {
    /// Parses degrees into a position.
    pub fn new(lat: f64, lon: f64) -> Result<Self, LatLonError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(LatLonError::Latitude(lat));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(LatLonError::Longitude(lon));
        }
        Ok(Self {
            lat_e7: (lat * E7).round() as i32,
            lon_e7: (lon * E7).round() as i32,
        })
    }

    /// From OSM's decimicro-degrees; `None` when out of range.
    pub fn from_e7(lat_e7: i32, lon_e7: i32) -> Option<Self> {
        let ok = (-900_000_000..=900_000_000).contains(&lat_e7)
            && (-1_800_000_000..=1_800_000_000).contains(&lon_e7);
        ok.then_some(Self { lat_e7, lon_e7 })
    }

    pub fn lat(self) -> f64 {
        f64::from(self.lat_e7) / E7
    }

    pub fn lon(self) -> f64 {
        f64::from(self.lon_e7) / E7
    }

    /// Great-circle distance on the mean-radius sphere, metres.
    pub fn haversine_m(self, other: LatLon) -> f64 {
        use geo::{Distance, Haversine, Point};
        Haversine.distance(
            Point::new(self.lon(), self.lat()),
            Point::new(other.lon(), other.lat()),
        )
    }
}

impl fmt::Debug for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatLon({:.7}, {:.7})", self.lat(), self.lon())
    }
}

impl fmt::Display for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6},{:.6}", self.lat(), self.lon())
    }
}

impl Serialize for LatLon {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.lat_e7, self.lon_e7).serialize(s)
    }
}

impl<'de> Deserialize<'de> for LatLon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (lat_e7, lon_e7) = <(i32, i32)>::deserialize(d)?;
        LatLon::from_e7(lat_e7, lon_e7)
            .ok_or_else(|| serde::de::Error::custom("coordinate out of range"))
    }
}

/// A point in the city's local plane, metres east (`x_m`) and north (`y_m`) of the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanarM {
    pub x_m: f64,
    pub y_m: f64,
}

impl PlanarM {
    pub fn distance_m(self, other: PlanarM) -> f64 {
        (self.x_m - other.x_m).hypot(self.y_m - other.y_m)
    }

    pub fn as_array(self) -> [f64; 2] {
        [self.x_m, self.y_m]
    }
}

/// An equirectangular projection centred on the city: metres east and north of `origin`.
///
/// Over a city (tens of kilometres) its scale error stays within a few tenths of a percent,
/// which is enough for snapping and nearest-neighbour candidates; road lengths themselves
/// are measured on the sphere ([`LatLon::haversine_m`]).
#[derive(Debug, Clone, Copy)]
pub struct Projection {
    origin: LatLon,
    metres_per_deg_lat: f64,
    metres_per_deg_lon: f64,
}

impl Projection {
    pub fn new(origin: LatLon) -> Self {
        let metres_per_deg_lat = EARTH_RADIUS_M.to_radians();
        Self {
            origin,
            metres_per_deg_lat,
            metres_per_deg_lon: metres_per_deg_lat * origin.lat().to_radians().cos(),
        }
    }

    pub fn origin(&self) -> LatLon {
        self.origin
    }

    pub fn project(&self, p: LatLon) -> PlanarM {
        PlanarM {
            x_m: (p.lon() - self.origin.lon()) * self.metres_per_deg_lon,
            y_m: (p.lat() - self.origin.lat()) * self.metres_per_deg_lat,
        }
    }

    /// The inverse of [`Projection::project`]; `None` if the result leaves the globe.
    pub fn unproject(&self, p: PlanarM) -> Option<LatLon> {
        LatLon::new(
            self.origin.lat() + p.y_m / self.metres_per_deg_lat,
            self.origin.lon() + p.x_m / self.metres_per_deg_lon,
        )
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_coordinates_are_refused() {
        let cases = [
            (f64::NAN, 0.0, "NaN latitude"),
            (0.0, f64::INFINITY, "infinite longitude"),
            (90.1, 0.0, "latitude past the pole"),
            (0.0, -180.5, "longitude past the antimeridian"),
        ];
        for (lat, lon, why) in cases {
            assert!(LatLon::new(lat, lon).is_err(), "{why}");
        }
    }

    #[test]
    fn projection_round_trips_and_measures_metres() {
        let origin = LatLon::new(60.17, 24.94).unwrap();
        let proj = Projection::new(origin);
        let p = LatLon::new(60.18, 24.96).unwrap();
        let xy = proj.project(p);
        let back = proj.unproject(xy).unwrap();
        assert!((back.lat() - p.lat()).abs() < 1e-7 && (back.lon() - p.lon()).abs() < 1e-7);
        let planar = xy.distance_m(PlanarM { x_m: 0.0, y_m: 0.0 });
        let sphere = origin.haversine_m(p);
        assert!(
            (planar - sphere).abs() / sphere < 0.003,
            "{planar} vs {sphere}"
        );
    }
}
