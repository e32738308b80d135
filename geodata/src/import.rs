//! Import from an OpenStreetMap PBF extract.
//!
//! Two passes over the file keep memory bounded by what is kept, not by the extract:
//! 1. **Ways.** Drivable `highway=*` ways (with class, direction, street name), buildings
//!    and other ways carrying an address (two roughly opposite nodes of each, enough to
//!    place the address), and base-map lines (water, railways, coastline) are kept as
//!    lists of node ids; every node id they use is noted.
//! 2. **Nodes.** Coordinates are kept only for noted node ids (a sorted id list and a
//!    parallel coordinate list: 16 bytes a node); nodes that carry an address become
//!    addresses.
//!
//! Ways are then split into roads at every node shared by two drivable ways and at their
//! ends; a node referenced but missing from a clipped extract also ends a road. Only the
//! largest strongly connected part of the road graph is kept, so every kept place can reach
//! every other. Demo services are placed by [`crate::demo`].
//!
//! Map data © OpenStreetMap contributors, ODbL: the attribution is stored in the city.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use osmpbf::{BlobDecode, BlobReader, PrimitiveBlock};

use crate::demo;
use crate::graph::keep_largest_component;
use crate::model::{
    Address, Bounds, City, CityMeta, Direction, MapLine, MapLineKind, OSM_ATTRIBUTION, Road,
    RoadClass, StreetIdx,
};
use crate::point::LatLon;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not a readable OpenStreetMap PBF file (truncated or corrupt?) near byte {offset}: {source}"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        #[source]
        source: osmpbf::Error,
    },
    #[error("{path} is not an OpenStreetMap PBF file: it does not start with an OSMHeader block")]
    NotPbf { path: PathBuf },
    #[error("{path} holds no drivable roads")]
    NoRoads { path: PathBuf },
    #[error(transparent)]
    Write(#[from] crate::format::CityFileError),
}

/// Imports `pbf` and writes the city file `out` atomically: on any error, `out` is left as
/// it was (absent, or the previous city) and no temporary file remains.
pub fn import_to_file(
    pbf: &Path,
    out: &Path,
    options: &ImportOptions,
) -> Result<City, ImportError> {
    let city = import_pbf(pbf, options)?;
    crate::format::save(&city, out)?;
    Ok(city)
}

/// What to import and how to report progress.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The city's display name.
    pub name: String,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Demo districts are a `grid × grid` cut of the city's box (see [`crate::demo`]).
    pub demo_district_grid: u32,
    pub demo_hospital_grid: u32,
}

impl ImportOptions {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            progress: false,
            demo_district_grid: 2,
            demo_hospital_grid: 1,
        }
    }
}

/// Counts bytes read, for progress and for naming the spot of an error.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct RawRoad {
    refs: Vec<i64>,
    class: RoadClass,
    link: bool,
    direction: Direction,
    street: Option<StreetIdx>,
}

struct RawAddress {
    refs: [i64; 2],
    street: StreetIdx,
    number: String,
}

#[derive(Default)]
struct Collected {
    roads: Vec<RawRoad>,
    way_addresses: Vec<RawAddress>,
    lines: Vec<(MapLineKind, Vec<i64>)>,
    /// Node id -> number of road ways using it (ends count twice).
    road_node_uses: HashMap<i64, u8>,
    streets: Vec<String>,
    street_index: HashMap<String, StreetIdx>,
}

impl Collected {
    fn street(&mut self, name: &str) -> StreetIdx {
        if let Some(&i) = self.street_index.get(name) {
            return i;
        }
        let i = self.streets.len() as StreetIdx;
        self.streets.push(name.to_string());
        self.street_index.insert(name.to_string(), i);
        i
    }
}

/// Imports a PBF file into a city (nothing is written; see [`crate::format::save`]).
pub fn import_pbf(path: &Path, options: &ImportOptions) -> Result<City, ImportError> {
    let file_len = std::fs::metadata(path)
        .map_err(|source| ImportError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let bar = if options.progress {
        let bar = ProgressBar::with_draw_target(Some(file_len * 2), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                .expect("constant template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // Pass 1: ways.
    bar.set_message("ways");
    let mut c = Collected::default();
    for_each_block(path, &bar, 0, |block| {
        for group in block.groups() {
            for way in group.ways() {
                collect_way(&mut c, way.refs().collect(), way.tags());
            }
        }
    })?;
    if c.roads.is_empty() {
        return Err(ImportError::NoRoads {
            path: path.to_path_buf(),
        });
    }

    // Pass 2: coordinates of the noted nodes, and address nodes.
    let mut ids: Vec<i64> = c.road_node_uses.keys().copied().collect();
    ids.extend(c.way_addresses.iter().flat_map(|a| a.refs.iter().copied()));
    ids.extend(c.lines.iter().flat_map(|(_, r)| r.iter().copied()));
    ids.sort_unstable();
    ids.dedup();
    let mut coords: Vec<Option<LatLon>> = vec![None; ids.len()];
    let mut node_addresses: Vec<(String, String, LatLon)> = Vec::new();
    bar.set_message("nodes");
    let mut cursor = 0usize;
    let mut see_node =
        |id: i64, lat_e7: i32, lon_e7: i32, tags: &mut dyn Iterator<Item = (&str, &str)>| {
            let Some(p) = LatLon::from_e7(lat_e7, lon_e7) else {
                return;
            };
            // Extracts list nodes by ascending id, so a cursor finds each noted id in
            // amortised constant time; an out-of-order id falls back to a binary search.
            if cursor > 0 && ids[cursor - 1] >= id {
                cursor = ids.partition_point(|&x| x < id);
            }
            while cursor < ids.len() && ids[cursor] < id {
                cursor += 1;
            }
            if cursor < ids.len() && ids[cursor] == id {
                coords[cursor] = Some(p);
                cursor += 1;
            }
            let (mut street, mut number) = (None, None);
            for (k, v) in tags {
                match k {
                    "addr:street" => street = Some(v),
                    "addr:housenumber" => number = Some(v),
                    _ => {}
                }
            }
            if let (Some(s), Some(n)) = (street, number) {
                node_addresses.push((s.to_string(), n.to_string(), p));
            }
        };
    for_each_block(path, &bar, file_len, |block| {
        for group in block.groups() {
            for n in group.dense_nodes() {
                see_node(n.id(), n.decimicro_lat(), n.decimicro_lon(), &mut n.tags());
            }
            for n in group.nodes() {
                see_node(n.id(), n.decimicro_lat(), n.decimicro_lon(), &mut n.tags());
            }
        }
    })?;
    bar.finish_and_clear();
    let coord_of = |id: i64| ids.binary_search(&id).ok().and_then(|i| coords[i]);

    // Roads: split ways at shared nodes, ends and missing nodes.
    let mut node_of: HashMap<i64, u32> = HashMap::new();
    let mut nodes: Vec<LatLon> = Vec::new();
    let mut node_index = |id: i64, p: LatLon| {
        *node_of.entry(id).or_insert_with(|| {
            nodes.push(p);
            (nodes.len() - 1) as u32
        })
    };
    let mut roads: Vec<Road> = Vec::new();
    for raw in &c.roads {
        let mut piece: Vec<(i64, LatLon)> = Vec::new();
        let flush = |piece: &mut Vec<(i64, LatLon)>,
                     roads: &mut Vec<Road>,
                     node_index: &mut dyn FnMut(i64, LatLon) -> u32| {
            if piece.len() >= 2 {
                // A loop back to its start gets a node in the middle, so it stays routable.
                let splits: Vec<Vec<(i64, LatLon)>> =
                    if piece[0].0 == piece[piece.len() - 1].0 && piece.len() >= 3 {
                        let mid = piece.len() / 2;
                        vec![piece[..=mid].to_vec(), piece[mid..].to_vec()]
                    } else {
                        vec![piece.clone()]
                    };
                for part in splits {
                    let (first, last) = (part[0], part[part.len() - 1]);
                    if first.0 == last.0 {
                        continue;
                    }
                    let length_m: f64 = part
                        .windows(2)
                        .map(|w| w[0].1.haversine_distance_m(w[1].1))
                        .sum();
                    roads.push(Road {
                        from: node_index(first.0, first.1),
                        to: node_index(last.0, last.1),
                        shape: part[1..part.len() - 1].iter().map(|x| x.1).collect(),
                        direction: raw.direction,
                        class: raw.class,
                        speed_kmh: if raw.link {
                            raw.class.emergency_link_speed_kmh()
                        } else {
                            raw.class.emergency_speed_kmh()
                        },
                        length_m: length_m as f32,
                        street: raw.street,
                    });
                }
            }
            piece.clear();
        };
        let last = raw.refs.len() - 1;
        for (k, &id) in raw.refs.iter().enumerate() {
            let Some(p) = coord_of(id) else {
                flush(&mut piece, &mut roads, &mut node_index);
                continue;
            };
            piece.push((id, p));
            let junction = c.road_node_uses.get(&id).copied().unwrap_or(0) >= 2;
            if k > 0 && k < last && junction && piece.len() >= 2 {
                flush(&mut piece, &mut roads, &mut node_index);
                piece.push((id, p));
            }
        }
        flush(&mut piece, &mut roads, &mut node_index);
    }
    let (nodes, roads) = keep_largest_component(&nodes, roads);
    if roads.is_empty() {
        return Err(ImportError::NoRoads {
            path: path.to_path_buf(),
        });
    }
    let bounds = Bounds::around(nodes.iter().copied()).expect("roads have nodes");

    // Addresses: from nodes, and from ways at the mean of their two kept nodes; the first
    // one of each street + number wins.
    let mut addresses: Vec<Address> = Vec::with_capacity(node_addresses.len());
    for (street, number, location) in node_addresses {
        addresses.push(Address {
            street: c.street(&street),
            number,
            location,
        });
    }
    for a in std::mem::take(&mut c.way_addresses) {
        let pts: Vec<LatLon> = a.refs.iter().filter_map(|&id| coord_of(id)).collect();
        if pts.is_empty() {
            continue;
        }
        let n = pts.len() as f64;
        let lat = pts.iter().map(|p| p.lat_deg()).sum::<f64>() / n;
        let lon = pts.iter().map(|p| p.lon_deg()).sum::<f64>() / n;
        if let Ok(location) = LatLon::from_lat_lon(lat, lon) {
            addresses.push(Address {
                street: a.street,
                number: a.number,
                location,
            });
        }
    }
    let mut order: Vec<u32> = (0..addresses.len() as u32).collect();
    order.sort_by(|&x, &y| {
        let (a, b) = (&addresses[x as usize], &addresses[y as usize]);
        (a.street, &a.number, x).cmp(&(b.street, &b.number, y))
    });
    let mut keep = vec![false; addresses.len()];
    for (k, &i) in order.iter().enumerate() {
        let a = &addresses[i as usize];
        keep[i as usize] = k == 0 || {
            let prev = &addresses[order[k - 1] as usize];
            (prev.street, &prev.number) != (a.street, &a.number)
        };
    }
    let mut keep = keep.into_iter();
    addresses.retain(|_| keep.next().unwrap_or(false));
    let map_lines = c
        .lines
        .iter()
        .filter_map(|(kind, refs)| {
            let points: Vec<LatLon> = refs.iter().filter_map(|&id| coord_of(id)).collect();
            (points.len() >= 2).then_some(MapLine {
                kind: *kind,
                points,
            })
        })
        .collect();
    let services = demo::place(
        &nodes,
        bounds,
        options.demo_district_grid,
        options.demo_hospital_grid,
    );
    let station_areas = crate::areas::station_areas(
        &nodes,
        &roads,
        &services.stations,
        &crate::point::Projection::new(bounds.centre()),
    );
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(City {
        meta: CityMeta {
            name: options.name.clone(),
            source: format!("OpenStreetMap extract {file_name}"),
            attribution: OSM_ATTRIBUTION.to_string(),
            bounds,
        },
        nodes,
        roads,
        streets: c.streets,
        addresses,
        districts: services.districts,
        stations: services.stations,
        hospitals: services.hospitals,
        station_areas,
        map_lines,
    })
}

/// Reads every data block of the file in order.
fn for_each_block(
    path: &Path,
    bar: &ProgressBar,
    bar_base: u64,
    mut f: impl FnMut(&PrimitiveBlock),
) -> Result<(), ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let read = Arc::new(AtomicU64::new(0));
    let reader = BlobReader::new(Counting {
        inner: BufReader::with_capacity(1 << 16, file),
        read: Arc::clone(&read),
    });
    let corrupt = |source| ImportError::Corrupt {
        path: path.to_path_buf(),
        offset: read.load(Ordering::Relaxed),
        source,
    };
    let mut first = true;
    for blob in reader {
        let blob = blob.map_err(corrupt)?;
        let decoded = blob.decode().map_err(corrupt)?;
        match decoded {
            BlobDecode::OsmHeader(_) => {}
            BlobDecode::OsmData(block) if !first => f(&block),
            BlobDecode::OsmData(_) | BlobDecode::Unknown(_) if first => {
                return Err(ImportError::NotPbf {
                    path: path.to_path_buf(),
                });
            }
            BlobDecode::OsmData(_) | BlobDecode::Unknown(_) => {}
        }
        first = false;
        bar.set_position(bar_base + read.load(Ordering::Relaxed));
    }
    if first {
        return Err(ImportError::NotPbf {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn collect_way<'a>(
    c: &mut Collected,
    refs: Vec<i64>,
    tags: impl Iterator<Item = (&'a str, &'a str)>,
) {
    let mut highway = None;
    let (mut oneway, mut junction, mut access, mut emergency, mut area) =
        (None, None, None, None, None);
    let (mut name, mut addr_street, mut addr_number) = (None, None, None);
    let (mut waterway, mut railway, mut natural) = (None, None, None);
    for (k, v) in tags {
        match k {
            "highway" => highway = Some(v),
            "oneway" => oneway = Some(v),
            "junction" => junction = Some(v),
            "access" | "motor_vehicle" => access = Some(v),
            "emergency" => emergency = Some(v),
            "area" => area = Some(v),
            "name" => name = Some(v),
            "addr:street" => addr_street = Some(v),
            "addr:housenumber" => addr_number = Some(v),
            "waterway" => waterway = Some(v),
            "railway" => railway = Some(v),
            "natural" => natural = Some(v),
            _ => {}
        }
    }
    if refs.len() < 2 {
        return;
    }
    if let (Some(s), Some(n)) = (addr_street, addr_number) {
        let street = c.street(s);
        c.way_addresses.push(RawAddress {
            // Two roughly opposite corners place the address near the building's middle
            // without keeping the coordinates of every building node.
            refs: [refs[0], refs[(refs.len() - 1) / 2]],
            street,
            number: n.to_string(),
        });
    }
    let line_kind = match (waterway, railway, natural) {
        (Some("river" | "stream" | "canal"), _, _) => Some(MapLineKind::Water),
        (_, Some("rail" | "tram" | "subway" | "light_rail"), _) => Some(MapLineKind::Railway),
        (_, _, Some("coastline")) => Some(MapLineKind::Coastline),
        (_, _, Some("water")) => Some(MapLineKind::Water),
        _ => None,
    };
    if let Some(kind) = line_kind {
        c.lines.push((kind, refs.clone()));
    }
    let Some((class, link)) = highway.and_then(RoadClass::from_osm_highway) else {
        return;
    };
    let emergency_allowed = matches!(emergency, Some("yes" | "designated"));
    if area == Some("yes") || (access == Some("no") && !emergency_allowed) {
        return;
    }
    let direction = match oneway {
        Some("yes" | "true" | "1") => Direction::Forward,
        Some("-1" | "reverse") => Direction::Backward,
        Some("no" | "false" | "0") => Direction::Both,
        _ if matches!(junction, Some("roundabout" | "circular")) => Direction::Forward,
        _ if class == RoadClass::Motorway => Direction::Forward,
        _ => Direction::Both,
    };
    let street = name.map(|n| c.street(n));
    let last = refs.len() - 1;
    for (k, &id) in refs.iter().enumerate() {
        let uses = c.road_node_uses.entry(id).or_insert(0);
        *uses = uses.saturating_add(if k == 0 || k == last { 2 } else { 1 });
    }
    c.roads.push(RawRoad {
        refs,
        class,
        link,
        direction,
        street,
    });
}
