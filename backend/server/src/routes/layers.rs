//! Map layers: GeoJSON of incidents and units, counts per area.

use actix_web::{HttpRequest, HttpResponse, web};
use muster_core::value::LatLon;
use serde::Serialize;
use serde_json::Value;

use super::{Allowed, AppState, Read, view_query, wait_views};
use crate::error::ApiError;

async fn area_counts(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    wait_views(&state, &q).await;
    Ok(HttpResponse::Ok().json(state.views.read(|live| live.state.area_counts())))
}

/// A GeoJSON bounding box: west, south, east, north (RFC 7946 §5). West greater than east
/// crosses the antimeridian.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    west: f64,
    south: f64,
    east: f64,
    north: f64,
}

impl BBox {
    /// Parses `west,south,east,north` in degrees.
    pub fn parse(text: &str) -> Result<BBox, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_bbox",
                format!("bbox must be west,south,east,north in degrees: {why}"),
            )
        };
        let parts: Vec<f64> = text
            .split(',')
            .map(|p| p.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad("each part must be a number"))?;
        let [west, south, east, north] = parts[..] else {
            return Err(bad("it needs exactly four numbers"));
        };
        if parts.iter().any(|v| !v.is_finite()) {
            return Err(bad("numbers must be finite"));
        }
        if !(-180.0..=180.0).contains(&west) || !(-180.0..=180.0).contains(&east) {
            return Err(bad("longitudes must be within -180..180"));
        }
        if !(-90.0..=90.0).contains(&south) || !(-90.0..=90.0).contains(&north) {
            return Err(bad("latitudes must be within -90..90"));
        }
        if south > north {
            return Err(bad("south must not be north of north"));
        }
        Ok(BBox {
            west,
            south,
            east,
            north,
        })
    }

    /// Whether a point is inside (edges included).
    pub fn contains(&self, p: LatLon) -> bool {
        let (lat, lon) = (p.lat_deg(), p.lon_deg());
        let lon_ok = if self.west <= self.east {
            (self.west..=self.east).contains(&lon)
        } else {
            lon >= self.west || lon <= self.east
        };
        lon_ok && (self.south..=self.north).contains(&lat)
    }
}

/// An RFC 7946 FeatureCollection of points, with the log position of the views it shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PointFeatures {
    /// `FeatureCollection`.
    #[serde(rename = "type")]
    pub kind: FeatureCollectionType,
    /// The features.
    pub features: Vec<PointFeature>,
    /// The last log position the views applied (none before the first event).
    pub position: Option<u64>,
}

/// The type of a FeatureCollection.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub enum FeatureCollectionType {
    /// The only one.
    FeatureCollection,
}

/// A point feature: a board row's properties, its location as the geometry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PointFeature {
    /// `Feature`.
    #[serde(rename = "type")]
    pub kind: FeatureType,
    /// The row's id.
    pub id: String,
    /// Where.
    pub geometry: Point,
    /// The board row without its `location`.
    #[schema(value_type = Object)]
    pub properties: Value,
}

/// The type of a Feature.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub enum FeatureType {
    /// The only one.
    Feature,
}

/// An RFC 7946 point: longitude first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// `Point`.
    #[serde(rename = "type")]
    pub kind: PointType,
    /// Longitude, latitude, degrees.
    #[schema(min_items = 2, max_items = 2)]
    pub coordinates: [f64; 2],
}

/// The type of a point geometry.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
pub enum PointType {
    /// The only one.
    Point,
}

fn feature(id: String, location: LatLon, row: &impl Serialize) -> PointFeature {
    let mut properties = serde_json::to_value(row).expect("board rows serialize to JSON");
    if let Value::Object(p) = &mut properties {
        p.remove("location");
    }
    PointFeature {
        kind: FeatureType::Feature,
        id,
        geometry: Point {
            kind: PointType::Point,
            coordinates: location.to_geojson_position(),
        },
        properties,
    }
}

fn geojson(features: PointFeatures) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/geo+json")
        .body(serde_json::to_string(&features).expect("features serialize to JSON"))
}

async fn geo_incidents(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    let bbox = q.bbox.as_deref().map(BBox::parse).transpose()?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        let features = live
            .state
            .incidents
            .values()
            .filter(|r| q.include_closed || r.is_open())
            .filter(|r| bbox.is_none_or(|b| b.contains(r.location)))
            .map(|r| feature(r.id.to_string(), r.location, r))
            .collect();
        PointFeatures {
            kind: FeatureCollectionType::FeatureCollection,
            features,
            position: live.state.last.map(|p| p.0),
        }
    });
    Ok(geojson(body))
}

async fn geo_units(
    state: web::Data<AppState>,
    _: Allowed<Read>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = view_query(&req)?;
    let bbox = q.bbox.as_deref().map(BBox::parse).transpose()?;
    wait_views(&state, &q).await;
    let body = state.views.read(|live| {
        let features = live
            .state
            .units
            .values()
            .filter_map(|r| r.location.map(|l| (r, l)))
            .filter(|(_, l)| bbox.is_none_or(|b| b.contains(*l)))
            .map(|(r, l)| feature(r.id.to_string(), l, r))
            .collect();
        PointFeatures {
            kind: FeatureCollectionType::FeatureCollection,
            features,
            position: live.state.last.map(|p| p.0),
        }
    });
    Ok(geojson(body))
}

/// The layer routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/areas", web::get().to(area_counts))
        .route("/api/geo/incidents", web::get().to(geo_incidents))
        .route("/api/geo/units", web::get().to(geo_units));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bboxes_are_checked_and_may_cross_the_antimeridian() {
        let cases = [
            ("1,2,3", "three numbers"),
            ("a,b,c,d", "not numbers"),
            ("0,0,1,NaN", "NaN"),
            ("0,0,1,inf", "infinite"),
            ("0,91,1,92", "latitude out of range"),
            ("-181,0,1,1", "longitude out of range"),
            ("0,10,1,5", "south north of north"),
        ];
        for (text, why) in cases {
            assert!(BBox::parse(text).is_err(), "{why}: {text}");
        }
        let b = BBox::parse("170,-10,-170,10").unwrap();
        assert!(b.contains(LatLon::from_lat_lon(0.0, 179.0).unwrap()));
        assert!(b.contains(LatLon::from_lat_lon(0.0, -175.0).unwrap()));
        assert!(!b.contains(LatLon::from_lat_lon(0.0, 0.0).unwrap()));
        let h = BBox::parse("24.9,60.1,25.0,60.2").unwrap();
        assert!(h.contains(LatLon::from_lat_lon(60.17, 24.94).unwrap()));
        assert!(!h.contains(LatLon::from_lat_lon(60.17, 25.04).unwrap()));
    }
}
