//! Made-up emergency services for demo cities: districts, stations and hospitals placed by
//! a fixed, documented rule, so the same city file always gets the same layout.
//!
//! **None of these are real.** For an imported OpenStreetMap city they only give the demo
//! something to dispatch from; names start with "Demo" so no one mistakes them for the
//! real services of the place.
//!
//! The rule, on the city's bounding box:
//! - Districts: the box cut into `grid × grid` equal cells, named by column letter and row
//!   number from the south-west ("A1" is south-west).
//! - In each district: a fire station at the road node nearest the cell's centre, and an
//!   ambulance station at the road node nearest the point a quarter of the cell's width east
//!   and a quarter of its height north of the centre; each only if that node is inside
//!   the cell.
//! - One police station at the road node nearest the centre of the whole box.
//! - Hospitals: the box cut into `hospital_grid × hospital_grid` cells, one hospital at the
//!   road node nearest each cell's centre.

use rstar::RTree;
use rstar::primitives::GeomWithData;

use crate::model::{Bounds, District, Hospital, Station, StationKind};
use crate::point::{LatLon, PlanarM, Projection};

/// The made-up layout for a city.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoServices {
    pub districts: Vec<District>,
    pub stations: Vec<Station>,
    pub hospitals: Vec<Hospital>,
}

/// Places districts, stations and hospitals by the rule in the module docs.
pub fn place(nodes: &[LatLon], bounds: Bounds, grid: u32, hospital_grid: u32) -> DemoServices {
    let projection = Projection::new(bounds.centre());
    let tree: RTree<GeomWithData<[f64; 2], usize>> = RTree::bulk_load(
        nodes
            .iter()
            .enumerate()
            .map(|(i, p)| GeomWithData::new(projection.project(*p).as_array(), i))
            .collect(),
    );
    let sw = projection.project(bounds.south_west);
    let ne = projection.project(bounds.north_east);
    let nearest = |x_m: f64, y_m: f64| {
        tree.nearest_neighbor(&[x_m, y_m])
            .map(|n| (nodes[n.data], projection.project(nodes[n.data])))
    };
    let at = |x_m: f64, y_m: f64| {
        projection
            .unproject(PlanarM { x_m, y_m })
            .expect("inside the city's box")
    };
    let cell = |g: u32, col: u32, row: u32| {
        let w = (ne.x_m - sw.x_m) / f64::from(g);
        let h = (ne.y_m - sw.y_m) / f64::from(g);
        let x0 = sw.x_m + w * f64::from(col);
        let y0 = sw.y_m + h * f64::from(row);
        (x0, y0, w, h)
    };
    let inside = |p: PlanarM, (x0, y0, w, h): (f64, f64, f64, f64)| {
        p.x_m >= x0 && p.x_m <= x0 + w && p.y_m >= y0 && p.y_m <= y0 + h
    };

    let mut districts = Vec::new();
    let mut stations = Vec::new();
    for row in 0..grid {
        for col in 0..grid {
            let code = format!("{}{}", column_letter(col), row + 1);
            let c = cell(grid, col, row);
            let (x0, y0, w, h) = c;
            let district = districts.len() as u32;
            districts.push(District {
                id: format!("d-{code}"),
                name: format!("Demo district {code}"),
                ring: vec![
                    at(x0, y0),
                    at(x0 + w, y0),
                    at(x0 + w, y0 + h),
                    at(x0, y0 + h),
                ],
            });
            let (cx, cy) = (x0 + w / 2.0, y0 + h / 2.0);
            let spots = [
                (StationKind::Fire, cx, cy),
                (StationKind::Ambulance, cx + w / 4.0, cy + h / 4.0),
            ];
            for (kind, x, y) in spots {
                if let Some((location, xy)) = nearest(x, y).filter(|(_, xy)| inside(*xy, c)) {
                    let _ = xy;
                    stations.push(Station {
                        id: format!("st-{}-{code}", kind.as_str()),
                        name: format!("Demo {} station {code}", kind.as_str()),
                        kind,
                        location,
                        district,
                    });
                }
            }
        }
    }
    if let Some((location, xy)) = nearest((sw.x_m + ne.x_m) / 2.0, (sw.y_m + ne.y_m) / 2.0) {
        let district = (0..grid * grid)
            .find(|&d| inside(xy, cell(grid, d % grid, d / grid)))
            .unwrap_or(0);
        stations.push(Station {
            id: "st-police-central".into(),
            name: "Demo police station Central".into(),
            kind: StationKind::Police,
            location,
            district,
        });
    }
    let mut hospitals = Vec::new();
    for row in 0..hospital_grid {
        for col in 0..hospital_grid {
            let (x0, y0, w, h) = cell(hospital_grid, col, row);
            if let Some((location, _)) = nearest(x0 + w / 2.0, y0 + h / 2.0) {
                let n = hospitals.len() + 1;
                hospitals.push(Hospital {
                    id: format!("h-{n}"),
                    name: format!("Demo hospital {n}"),
                    location,
                });
            }
        }
    }
    DemoServices {
        districts,
        stations,
        hospitals,
    }
}

fn column_letter(col: u32) -> String {
    let mut s = String::new();
    let mut c = col;
    loop {
        s.insert(0, char::from(b'A' + (c % 26) as u8));
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_letters_go_past_z() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
    }
}
