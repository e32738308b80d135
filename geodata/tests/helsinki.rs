//! The bundled sample city: a real OpenStreetMap extract of central Helsinki.

use std::path::PathBuf;
use std::sync::Arc;

use muster_geodata::format;
use muster_geodata::graph::{arcs, strongly_connected_components};
use muster_geodata::import::{ImportError, ImportOptions, import_pbf, import_to_file};
use muster_geodata::model::{City, Direction, RoadClass};
use muster_geodata::{LatLon, OSM_ATTRIBUTION, RouteError, Router};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The source extract lives in `shared/data` beside the repository (see its README).
fn sample_pbf() -> PathBuf {
    let path = std::env::var_os("MUSTER_HELSINKI_PBF")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data/helsinki-centre.osm.pbf"));
    assert!(
        path.exists(),
        "{} is missing: get it as shared/data/README.md says, or set MUSTER_HELSINKI_PBF",
        path.display()
    );
    path
}

fn committed_city() -> City {
    format::load(&repo_root().join("geodata/cities/helsinki.city")).unwrap()
}

fn import() -> City {
    import_pbf(&sample_pbf(), &ImportOptions::named("Helsinki (centre)")).unwrap()
}

#[test]
fn router_and_geocoder_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Router>();
    shareable::<muster_geodata::geocode::Geocoder>();
    shareable::<City>();
}

#[test]
fn import_is_sane() {
    let city = import();
    assert_eq!(city.meta.attribution, OSM_ATTRIBUTION);
    assert!(city.nodes.len() > 500, "{} nodes", city.nodes.len());
    assert!(city.roads.len() > 800, "{} roads", city.roads.len());
    assert!(city.streets.len() > 80, "{} streets", city.streets.len());
    assert!(
        city.addresses.len() > 400,
        "{} addresses",
        city.addresses.len()
    );
    assert!(city.roads.iter().any(|r| r.direction != Direction::Both));
    assert!(city.roads.iter().any(|r| r.class == RoadClass::Primary));
    assert!(
        city.roads
            .iter()
            .all(|r| r.length_m > 0.0 && r.length_m < 5_000.0)
    );
    assert_eq!(city.districts.len(), 4);
    assert!(city.stations.len() >= 5);
    assert_eq!(city.hospitals.len(), 1);
    assert!(city.stations.iter().all(|s| s.name.starts_with("Demo ")));
    // Inside the extract's box (24.9352,60.1642 — 24.9534,60.1791), give or take clipping.
    let b = city.meta.bounds;
    assert!(b.south_west.lat_deg() > 60.15 && b.north_east.lat_deg() < 60.19);
    assert!(b.south_west.lon_deg() > 24.92 && b.north_east.lon_deg() < 24.97);
    // Every node reaches every other.
    let comp = strongly_connected_components(city.nodes.len(), &arcs(&city.roads));
    assert!(comp.iter().all(|&c| c == comp[0]));
}

#[test]
fn committed_city_loads_and_matches_a_fresh_import() {
    let committed = committed_city();
    assert_eq!(
        committed,
        import(),
        "geodata/cities/helsinki.city is stale; regenerate it with \
         `muster geodata import ../shared/data/helsinki-centre.osm.pbf --name 'Helsinki (centre)' \
         --out geodata/cities/helsinki.city`"
    );
}

#[test]
fn routes_across_the_centre_and_refuses_points_outside() {
    let router = Router::new(Arc::new(committed_city())).unwrap();
    // Rautatientori (railway square) to Kauppatori (market square).
    let rautatientori = LatLon::from_lat_lon(60.1706, 24.9448).unwrap();
    let kauppatori = LatLon::from_lat_lon(60.1675, 24.9526).unwrap();
    let t = router.travel_time(rautatientori, kauppatori).unwrap();
    let straight_m = rautatientori.haversine_distance_m(kauppatori);
    assert!(t.as_secs_f64() > straight_m / (60.0 / 3.6), "{t:?}");
    assert!(t.as_secs_f64() < 600.0, "{t:?}");
    let tallinn = LatLon::from_lat_lon(59.437, 24.7536).unwrap();
    assert!(matches!(
        router.travel_time(rautatientori, tallinn),
        Err(RouteError::OutsideCoverage { .. })
    ));
}

#[test]
fn truncated_or_corrupt_pbf_is_a_clear_error() {
    let bytes = std::fs::read(sample_pbf()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut flipped = bytes.clone();
    for b in &mut flipped[2000..2100] {
        *b ^= 0x5a;
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut in half", bytes[..bytes.len() / 2].to_vec()),
        ("cut near the start", bytes[..100].to_vec()),
        ("bytes scrambled", flipped),
        (
            "not a PBF at all",
            b"<?xml version='1.0'?><osm></osm>".to_vec(),
        ),
        ("empty", Vec::new()),
    ];
    for (why, data) in cases {
        let path = dir.path().join("bad.osm.pbf");
        std::fs::write(&path, &data).unwrap();
        let err = import_pbf(&path, &ImportOptions::named("bad")).expect_err(why);
        assert!(
            matches!(
                err,
                ImportError::Corrupt { .. }
                    | ImportError::NotPbf { .. }
                    | ImportError::NoRoads { .. }
            ),
            "{why}: {err}"
        );
        assert!(err.to_string().contains("bad.osm.pbf"), "{why}: {err}");
    }
}

#[test]
fn a_failed_import_leaves_no_city_file_and_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample_pbf()).unwrap();
    let bad = dir.path().join("cut.osm.pbf");
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = dir.path().join("city.city");
    let options = ImportOptions::named("x");
    assert!(import_to_file(&bad, &out, &options).is_err());
    assert!(!out.exists());
    // A good import, then a failed one over it: the good one stays.
    import_to_file(&sample_pbf(), &out, &options).unwrap();
    let good = std::fs::read(&out).unwrap();
    assert!(import_to_file(&bad, &out, &options).is_err());
    assert_eq!(std::fs::read(&out).unwrap(), good);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn geocoding_finds_real_addresses_and_back() {
    use muster_geodata::geocode::{AddressQuery, GeocodeError, Geocoder};
    let city = Arc::new(committed_city());
    let geo = Geocoder::new(Arc::clone(&city));
    // Every address in the city geocodes to itself (first occurrence of street + number).
    // (House numbers with a comma, such as "13 A, 5. krs.", hold more than a number.)
    for a in city
        .addresses
        .iter()
        .filter(|a| !a.number.contains(','))
        .step_by(7)
    {
        let street = &city.streets[a.street as usize];
        let q = AddressQuery::parse(&format!("{street} {}", a.number)).unwrap();
        let hit = geo.geocode(&q).unwrap();
        assert!(hit.exact, "{street} {}", a.number);
        assert_eq!(hit.street.to_lowercase(), street.to_lowercase());
        let back = geo.reverse(hit.location).unwrap();
        assert!(back.distance_m < 1.0, "{street} {} -> {back}", a.number);
    }
    // A real one, typed as a caller would.
    let hit = geo
        .geocode(&AddressQuery::parse("mannerheimintie 5, Helsinki").unwrap())
        .unwrap();
    assert_eq!(hit.street, "Mannerheimintie");
    assert!(
        hit.location
            .haversine_distance_m(LatLon::from_lat_lon(60.1686, 24.9414).unwrap())
            < 400.0
    );
    // Unknown number on a known street: the nearest number, not exact.
    let near = geo
        .geocode(&AddressQuery::parse("Mannerheimintie 9999").unwrap())
        .unwrap();
    assert!(!near.exact);
    // Unknown street: a typed error with suggestions.
    let err = geo
        .geocode(&AddressQuery::parse("Mannerheimin 5").unwrap())
        .unwrap_err();
    assert!(
        matches!(err, GeocodeError::NoSuchStreet { ref suggestions, .. } if suggestions.contains(&"Mannerheimintie".to_string())),
        "{err}"
    );
    // Far from everything: no answer rather than a wrong one.
    assert_eq!(geo.reverse(LatLon::from_lat_lon(60.0, 25.5).unwrap()), None);
}

#[test]
fn base_map_is_geojson_with_attribution_and_districts_hold_their_stations() {
    let city = committed_city();
    let map = city.base_map_geojson();
    assert_eq!(map["type"], "FeatureCollection");
    assert_eq!(map["attribution"], OSM_ATTRIBUTION);
    let features = map["features"].as_array().unwrap();
    let roads: Vec<_> = features
        .iter()
        .filter(|f| f["properties"]["layer"] == "road")
        .collect();
    assert_eq!(roads.len(), city.roads.len());
    // RFC 7946: longitude first. Helsinki is at about 24.9 E, 60.17 N.
    let first = &roads[0]["geometry"]["coordinates"][0];
    assert!((24.9..25.0).contains(&first[0].as_f64().unwrap()));
    assert!((60.1..60.2).contains(&first[1].as_f64().unwrap()));
    assert!(
        features
            .iter()
            .any(|f| f["properties"]["layer"] == "district")
    );
    assert!(
        features
            .iter()
            .any(|f| f["properties"]["layer"] == "hospital")
    );
    for s in &city.stations {
        let d = city
            .district_at(s.location)
            .expect("every demo station is in a district");
        assert_eq!(d, &city.districts[s.district as usize], "{}", s.id);
    }
    assert_eq!(
        city.district_at(LatLon::from_lat_lon(60.3, 25.2).unwrap()),
        None
    );
}
