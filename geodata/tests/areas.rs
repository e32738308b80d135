//! First-due station areas against routed travel times.

use std::sync::Arc;

use geo::{Distance, Euclidean, LineString, Point, Polygon};
use muster_geodata::Router;
use muster_geodata::areas::first_due;
use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::model::StationKind;

#[test]
fn every_node_belongs_to_the_fire_station_that_reaches_it_first() {
    let city = Arc::new(generate(GenerateParams::new(13.0, 5).unwrap()));
    let router = Router::new(Arc::clone(&city)).unwrap();
    let fire: Vec<usize> = (0..city.stations.len())
        .filter(|&i| city.stations[i].kind == StationKind::Fire)
        .collect();
    assert_eq!(fire.len(), 9);
    let projection = city.projection();
    let labels = first_due(&city.nodes, &city.roads, &city.stations, &projection);
    for node in (0..city.nodes.len()).step_by(37) {
        let at = city.nodes[node];
        let sources: Vec<_> = fire.iter().map(|&i| city.stations[i].location).collect();
        let times: Vec<_> = router
            .travel_times_to(&sources, at)
            .unwrap()
            .into_iter()
            .map(|t| t.unwrap())
            .collect();
        let quickest = *times.iter().min().unwrap();
        let label = labels[node].expect("every node is reached") as usize;
        let k = fire.iter().position(|&i| i == label).unwrap();
        assert_eq!(times[k], quickest, "node {node}");
    }
    // One area per fire station, holding the station itself.
    assert_eq!(city.station_areas.len(), fire.len());
    for area in &city.station_areas {
        let station = &city.stations[area.station as usize];
        assert_eq!(station.kind, StationKind::Fire);
        let ring: Vec<(f64, f64)> = area
            .ring
            .iter()
            .map(|p| {
                let xy = projection.project(*p);
                (xy.x_m, xy.y_m)
            })
            .collect();
        let polygon = Polygon::new(LineString::from(ring), vec![]);
        let s = projection.project(station.location);
        let d = Euclidean.distance(&polygon, &Point::new(s.x_m, s.y_m));
        assert!(d < 1.0, "{} is {d} m outside its area", station.id);
    }
}
