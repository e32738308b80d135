//! WGS 84 points and the local planar projection (metres) used for every distance.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Coordinates are stored at OpenStreetMap's precision: 1e-7 degrees (about 1 cm).
const E7: f64 = 1e7;

/// A validated WGS 84 position, the one position type of every crate. Construct with
/// [`LatLon::from_lat_lon`] or [`LatLon::from_lon_lat`] (the names say the order, because
/// GeoJSON puts longitude first and most people say latitude first); NaN, infinities and
/// out-of-range values are refused, so every `LatLon` in the program is usable.
///
/// Held at OpenStreetMap's precision, 1e-7 degrees (about 1 cm). Serialized as
/// `{"lat": .., "lon": ..}` in degrees in human-readable formats (JSON, TOML), which is
/// parsed strictly: only an object with both names, never a bare pair that would leave the
/// order to guesswork. Compact formats (the city file) hold the two 1e-7-degree integers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LatLon {
    lat_e7: i32,
    lon_e7: i32,
}

/// Why a pair of numbers is not a position. Never repeats the numbers: a position may be
/// where a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LatLonError {
    #[error("latitude must be a finite number of degrees from -90 to 90")]
    Latitude,
    #[error("longitude must be a finite number of degrees from -180 to 180")]
    Longitude,
}

impl LatLon {
    /// Latitude first, then longitude, in degrees.
    pub fn from_lat_lon(lat_deg: f64, lon_deg: f64) -> Result<Self, LatLonError> {
        if !lat_deg.is_finite() || !(-90.0..=90.0).contains(&lat_deg) {
            return Err(LatLonError::Latitude);
        }
        if !lon_deg.is_finite() || !(-180.0..=180.0).contains(&lon_deg) {
            return Err(LatLonError::Longitude);
        }
        Ok(Self {
            lat_e7: (lat_deg * E7).round() as i32,
            lon_e7: (lon_deg * E7).round() as i32,
        })
    }

    /// Longitude first (GeoJSON order), then latitude, in degrees.
    pub fn from_lon_lat(lon_deg: f64, lat_deg: f64) -> Result<Self, LatLonError> {
        Self::from_lat_lon(lat_deg, lon_deg)
    }

    /// From OSM's decimicro-degrees; `None` when out of range.
    pub fn from_e7(lat_e7: i32, lon_e7: i32) -> Option<Self> {
        let ok = (-900_000_000..=900_000_000).contains(&lat_e7)
            && (-1_800_000_000..=1_800_000_000).contains(&lon_e7);
        ok.then_some(Self { lat_e7, lon_e7 })
    }

    /// Latitude, degrees north.
    pub fn lat_deg(self) -> f64 {
        f64::from(self.lat_e7) / E7
    }

    /// Longitude, degrees east.
    pub fn lon_deg(self) -> f64 {
        f64::from(self.lon_e7) / E7
    }

    /// `[lon, lat]`, the order of a GeoJSON position.
    pub fn to_geojson_position(self) -> [f64; 2] {
        [self.lon_deg(), self.lat_deg()]
    }

    /// A `geo` point (x = longitude, y = latitude).
    pub fn to_point(self) -> geo::Point<f64> {
        geo::Point::new(self.lon_deg(), self.lat_deg())
    }

    /// Great-circle distance on the mean-radius sphere (haversine), metres.
    pub fn haversine_distance_m(self, other: LatLon) -> f64 {
        use geo::{Distance, Haversine};
        Haversine.distance(self.to_point(), other.to_point())
    }
}

impl fmt::Debug for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatLon({:.7}, {:.7})", self.lat_deg(), self.lon_deg())
    }
}

impl fmt::Display for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6},{:.6}", self.lat_deg(), self.lon_deg())
    }
}

/// The human-readable form.
#[derive(Serialize)]
struct Degrees {
    lat: f64,
    lon: f64,
}

impl Serialize for LatLon {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            Degrees {
                lat: self.lat_deg(),
                lon: self.lon_deg(),
            }
            .serialize(s)
        } else {
            (self.lat_e7, self.lon_e7).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for LatLon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Fields {
                lat: f64,
                lon: f64,
            }
            struct MapOnly;
            impl<'de> serde::de::Visitor<'de> for MapOnly {
                type Value = LatLon;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object with \"lat\" and \"lon\" in degrees and no other field")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<LatLon, A::Error> {
                    let f = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                    LatLon::from_lat_lon(f.lat, f.lon).map_err(serde::de::Error::custom)
                }
            }
            d.deserialize_map(MapOnly)
        } else {
            let (lat_e7, lon_e7) = <(i32, i32)>::deserialize(d)?;
            LatLon::from_e7(lat_e7, lon_e7)
                .ok_or_else(|| serde::de::Error::custom("coordinate out of range"))
        }
    }
}

#[cfg(feature = "schema")]
impl utoipa::PartialSchema for LatLon {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "object", "required": ["lat", "lon"], "additionalProperties": false,
            "description": "WGS 84 degrees (held to 1e-7 degree).",
            "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90},
                           "lon": {"type": "number", "minimum": -180, "maximum": 180}}}))
        .expect("a valid JSON Schema")
    }
}

#[cfg(feature = "schema")]
impl utoipa::ToSchema for LatLon {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("LatLon")
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
            metres_per_deg_lon: metres_per_deg_lat * origin.lat_deg().to_radians().cos(),
        }
    }

    pub fn origin(&self) -> LatLon {
        self.origin
    }

    pub fn project(&self, p: LatLon) -> PlanarM {
        PlanarM {
            x_m: (p.lon_deg() - self.origin.lon_deg()) * self.metres_per_deg_lon,
            y_m: (p.lat_deg() - self.origin.lat_deg()) * self.metres_per_deg_lat,
        }
    }

    /// The inverse of [`Projection::project`]; `None` if the result leaves the globe.
    pub fn unproject(&self, p: PlanarM) -> Option<LatLon> {
        LatLon::from_lat_lon(
            self.origin.lat_deg() + p.y_m / self.metres_per_deg_lat,
            self.origin.lon_deg() + p.x_m / self.metres_per_deg_lon,
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
            (0.0, f64::NAN, "NaN longitude"),
            (f64::INFINITY, 0.0, "infinite latitude"),
            (0.0, f64::NEG_INFINITY, "longitude minus infinity"),
            (90.000_001, 0.0, "latitude above the north pole"),
            (-90.5, 0.0, "latitude below the south pole"),
            (0.0, 180.000_001, "longitude past the antimeridian east"),
            (0.0, -181.0, "longitude past the antimeridian west"),
            (152.5, 13.4, "a longitude where the latitude goes"),
        ];
        for (lat, lon, why) in cases {
            assert!(LatLon::from_lat_lon(lat, lon).is_err(), "{why}");
        }
    }

    #[test]
    fn the_edges_are_accepted_and_the_order_is_named() {
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0), (52.52, 13.405)] {
            let p = LatLon::from_lat_lon(lat, lon).unwrap();
            assert_eq!((p.lat_deg(), p.lon_deg()), (lat, lon));
            assert_eq!(LatLon::from_lon_lat(lon, lat).unwrap(), p);
            assert_eq!(p.to_geojson_position(), [lon, lat]);
        }
        assert_eq!(
            LatLon::from_lat_lon(-0.0, -0.0).unwrap(),
            LatLon::from_lat_lon(0.0, 0.0).unwrap(),
            "-0 and 0 are one place"
        );
    }

    #[test]
    fn json_is_named_degrees_and_checked() {
        let ok: LatLon = serde_json::from_str(r#"{"lat": 52.5, "lon": 13.4}"#).unwrap();
        assert_eq!((ok.lat_deg(), ok.lon_deg()), (52.5, 13.4));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"lat":52.5,"lon":13.4}"#
        );
        let table = [
            (r#"{"lat": 91, "lon": 0}"#, "latitude out of range"),
            (r#"{"lat": 0}"#, "longitude missing"),
            (r#"{"lat": "52", "lon": 13}"#, "latitude is a string"),
            (r#"[52.5, 13.4]"#, "an array does not say which is which"),
            (r#"[525000000, 134000000]"#, "nor does the compact form"),
            (
                r#"{"lat": 1, "lon": 2, "alt": 3}"#,
                "an unknown field, refused as in every body",
            ),
        ];
        for (json, why) in table {
            assert!(
                serde_json::from_str::<LatLon>(json).is_err(),
                "{json}: {why}"
            );
        }
        let bad = serde_json::from_str::<LatLon>(r#"{"lat": 91.25, "lon": 0}"#)
            .unwrap_err()
            .to_string();
        assert!(!bad.contains("91.25"), "the error repeats the value: {bad}");
    }

    #[test]
    fn the_compact_form_holds_the_integers() {
        let p = LatLon::from_lat_lon(60.1699, 24.9384).unwrap();
        let bytes = postcard::to_stdvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<LatLon>(&bytes).unwrap(), p);
        assert_eq!(
            bytes,
            postcard::to_stdvec(&(601_699_000i32, 249_384_000i32)).unwrap()
        );
    }

    #[test]
    fn haversine_distance_is_in_metres() {
        // One degree of latitude is about 111.2 km on the haversine sphere.
        let a = LatLon::from_lat_lon(0.0, 0.0).unwrap();
        let b = LatLon::from_lat_lon(1.0, 0.0).unwrap();
        let d_m = a.haversine_distance_m(b);
        assert!((d_m - 111_195.0).abs() < 100.0, "{d_m}");
        // One degree of longitude at 60° N is half as long as at the equator: not Euclidean
        // on degrees.
        let c = LatLon::from_lat_lon(60.0, 0.0).unwrap();
        let e = LatLon::from_lat_lon(60.0, 1.0).unwrap();
        let d60_m = c.haversine_distance_m(e);
        assert!((d60_m - 55_597.0).abs() < 100.0, "{d60_m}");
    }

    #[test]
    fn projection_round_trips_and_measures_metres() {
        let origin = LatLon::from_lat_lon(60.17, 24.94).unwrap();
        let proj = Projection::new(origin);
        let p = LatLon::from_lat_lon(60.18, 24.96).unwrap();
        let xy = proj.project(p);
        let back = proj.unproject(xy).unwrap();
        assert!(
            (back.lat_deg() - p.lat_deg()).abs() < 1e-7
                && (back.lon_deg() - p.lon_deg()).abs() < 1e-7
        );
        let planar = xy.distance_m(PlanarM { x_m: 0.0, y_m: 0.0 });
        let sphere = origin.haversine_distance_m(p);
        assert!(
            (planar - sphere).abs() / sphere < 0.003,
            "{planar} vs {sphere}"
        );
    }
}
