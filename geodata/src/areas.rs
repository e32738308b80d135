//! Station areas: the part of the road network each fire station reaches first.
//!
//! One Dijkstra search from every fire station at once, over the emergency-vehicle travel
//! times of the road graph, labels each road node with the station that reaches it
//! soonest (ties go to the lower station index). Each station's area is the concave hull of
//! its nodes, for the wall display and for "inside the area's geofence" reasons; dispatch
//! itself ranks by routed travel time, not by these polygons.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use geo::{ConcaveHull, MultiPoint, Point};
use serde::{Deserialize, Serialize};

use crate::graph::{Adjacency, arcs};
use crate::model::{NodeIdx, Road, Station, StationKind};
use crate::point::{LatLon, PlanarM, Projection};

/// The first-due area of one station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationArea {
    /// Index into `City::stations`.
    pub station: u32,
    /// Outer ring, not closed.
    pub ring: Vec<LatLon>,
}

/// For every node, the index (into `stations`) of the fire station that reaches it first by
/// road, or `None` if no fire station reaches it. Stations start from their nearest node.
pub fn first_due(
    nodes: &[LatLon],
    roads: &[Road],
    stations: &[Station],
    projection: &Projection,
) -> Vec<Option<u32>> {
    let adjacency = Adjacency::new(
        nodes.len(),
        arcs(roads)
            .into_iter()
            .map(|a| (a.tail, a.head, roads[a.road as usize].travel_time_ms())),
    );
    let planar: Vec<PlanarM> = nodes.iter().map(|p| projection.project(*p)).collect();
    let mut best: Vec<(u64, u32)> = vec![(u64::MAX, u32::MAX); nodes.len()];
    let mut heap = BinaryHeap::new();
    for (i, s) in stations.iter().enumerate() {
        if s.kind != StationKind::Fire {
            continue;
        }
        let at = projection.project(s.location);
        let Some(node) = (0..nodes.len()).min_by(|&a, &b| {
            planar[a]
                .distance_m(at)
                .total_cmp(&planar[b].distance_m(at))
        }) else {
            continue;
        };
        heap.push(Reverse((0u64, i as u32, node as NodeIdx)));
    }
    while let Some(Reverse((d, station, v))) = heap.pop() {
        if (d, station) >= best[v as usize] {
            continue;
        }
        best[v as usize] = (d, station);
        for &(head, w) in adjacency.out(v) {
            let nd = d + u64::from(w);
            if (nd, station) < best[head as usize] {
                heap.push(Reverse((nd, station, head)));
            }
        }
    }
    best.into_iter()
        .map(|(d, s)| (d != u64::MAX).then_some(s))
        .collect()
}

/// The first-due area of every fire station that reaches at least three nodes.
pub fn station_areas(
    nodes: &[LatLon],
    roads: &[Road],
    stations: &[Station],
    projection: &Projection,
) -> Vec<StationArea> {
    let labels = first_due(nodes, roads, stations, projection);
    let mut members: Vec<Vec<Point>> = vec![Vec::new(); stations.len()];
    for (node, label) in labels.iter().enumerate() {
        if let Some(s) = label {
            let p = projection.project(nodes[node]);
            members[*s as usize].push(Point::new(p.x_m, p.y_m));
        }
    }
    members
        .into_iter()
        .enumerate()
        .filter(|(_, pts)| pts.len() >= 3)
        .map(|(station, pts)| {
            let hull = MultiPoint::new(pts).concave_hull();
            let mut ring: Vec<LatLon> = hull
                .exterior()
                .coords()
                .filter_map(|c| projection.unproject(PlanarM { x_m: c.x, y_m: c.y }))
                .collect();
            if ring.len() > 1 && ring.first() == ring.last() {
                ring.pop();
            }
            StationArea {
                station: station as u32,
                ring,
            }
        })
        .collect()
}
