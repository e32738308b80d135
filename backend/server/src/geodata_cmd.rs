//! `muster geodata …`: import, generate and inspect city files; route and geocode on them;
//! and `muster bench geodata`: routing and import figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use muster_core::stats::{median, nearest_rank};
use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::geocode::{AddressQuery, Geocoder};
use muster_geodata::import::{ImportOptions, import_pbf, import_to_file};
use muster_geodata::routing::{RoadCondition, RoadConditions};
use muster_geodata::{City, LatLon, Router, format};
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Arguments of `muster geodata`.
#[derive(Debug, Args)]
pub struct GeodataArgs {
    #[command(subcommand)]
    command: GeodataCommand,
}

#[derive(Debug, Subcommand)]
enum GeodataCommand {
    /// Import an OpenStreetMap PBF extract into a city file.
    Import {
        /// The `.osm.pbf` extract.
        pbf: PathBuf,
        /// The city file to write (replaced atomically; nothing is written on error).
        #[arg(long)]
        out: PathBuf,
        /// The city's display name (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Demo districts: the city's box cut into GRID × GRID cells.
        #[arg(long, default_value_t = 2)]
        district_grid: u32,
        /// Demo hospitals: one per cell of a GRID × GRID cut.
        #[arg(long, default_value_t = 1)]
        hospital_grid: u32,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Generate a city for scale tests: road hierarchy, one-ways, a river with few bridges.
    Generate {
        #[arg(long, default_value_t = 30.0)]
        size_km: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print what a city file holds.
    Info { city: PathBuf },
    /// Travel time by road between two points ("lat,lon").
    Route {
        city: PathBuf,
        #[arg(long, value_parser = parse_latlon)]
        from: LatLon,
        #[arg(long, value_parser = parse_latlon)]
        to: LatLon,
    },
    /// Street and house number to a position.
    Geocode { city: PathBuf, address: String },
    /// A position ("lat,lon") to the nearest address.
    Reverse {
        city: PathBuf,
        #[arg(value_parser = parse_latlon)]
        at: LatLon,
    },
    /// Write the base map (roads, water, districts, stations, hospitals) as GeoJSON.
    Geojson {
        city: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Same as `muster bench geodata`.
    Bench(GeodataBenchArgs),
}

fn parse_latlon(s: &str) -> Result<LatLon, String> {
    let (lat, lon) = s
        .split_once(',')
        .ok_or_else(|| format!("expected \"lat,lon\", got \"{s}\""))?;
    let lat: f64 = lat.trim().parse().map_err(|e| format!("latitude: {e}"))?;
    let lon: f64 = lon.trim().parse().map_err(|e| format!("longitude: {e}"))?;
    LatLon::from_lat_lon(lat, lon).map_err(|e| e.to_string())
}

fn load(path: &Path) -> anyhow::Result<City> {
    Ok(format::load(path)?)
}

/// Runs `muster geodata …`.
pub fn run(args: GeodataArgs) -> anyhow::Result<()> {
    match args.command {
        GeodataCommand::Import {
            pbf,
            out,
            name,
            district_grid,
            hospital_grid,
            quiet,
        } => {
            let started = Instant::now();
            let name = name.unwrap_or_else(|| {
                pbf.file_name()
                    .map(|n| n.to_string_lossy().trim_end_matches(".osm.pbf").to_string())
                    .unwrap_or_else(|| "city".into())
            });
            let options = ImportOptions {
                name,
                progress: !quiet,
                demo_district_grid: district_grid.max(1),
                demo_hospital_grid: hospital_grid.max(1),
            };
            let city = import_to_file(&pbf, &out, &options)?;
            eprintln!(
                "imported {} in {:.2} s: {} nodes, {} roads, {} streets, {} addresses -> {}",
                pbf.display(),
                started.elapsed().as_secs_f64(),
                city.nodes.len(),
                city.roads.len(),
                city.streets.len(),
                city.addresses.len(),
                out.display()
            );
            eprintln!("{}", city.meta.attribution);
            Ok(())
        }
        GeodataCommand::Generate { size_km, seed, out } => {
            let city = generate(GenerateParams::new(size_km, seed)?);
            format::save(&city, &out)?;
            eprintln!(
                "generated {}: {} nodes, {} roads -> {}",
                city.meta.name,
                city.nodes.len(),
                city.roads.len(),
                out.display()
            );
            Ok(())
        }
        GeodataCommand::Info { city } => {
            let c = load(&city)?;
            let b = c.meta.bounds;
            println!("name:        {}", c.meta.name);
            println!("source:      {}", c.meta.source);
            println!("attribution: {}", c.meta.attribution);
            println!("bounds:      {} .. {}", b.south_west, b.north_east);
            println!("nodes:       {}", c.nodes.len());
            println!("roads:       {}", c.roads.len());
            println!("streets:     {}", c.streets.len());
            println!("addresses:   {}", c.addresses.len());
            println!("districts:   {}", c.districts.len());
            println!("stations:    {}", c.stations.len());
            println!("hospitals:   {}", c.hospitals.len());
            println!("map lines:   {}", c.map_lines.len());
            Ok(())
        }
        GeodataCommand::Route { city, from, to } => {
            let router = Router::new(Arc::new(load(&city)?))?;
            let route = router.route(from, to)?;
            let length_m: f64 = route
                .points
                .windows(2)
                .map(|w| w[0].haversine_distance_m(w[1]))
                .sum();
            println!(
                "{:.1} s by road, {length_m:.0} m over {} roads ({:.0} m in a straight line)",
                route.travel_time.as_secs_f64(),
                route.roads.len(),
                from.haversine_distance_m(to)
            );
            Ok(())
        }
        GeodataCommand::Geocode { city, address } => {
            let c = load(&city)?;
            let hit = Geocoder::new(Arc::new(c)).geocode(&AddressQuery::parse(&address)?)?;
            println!(
                "{} {}: {}{}",
                hit.street,
                hit.number.as_deref().unwrap_or(""),
                hit.location,
                if hit.exact { "" } else { " (nearest match)" }
            );
            Ok(())
        }
        GeodataCommand::Reverse { city, at } => {
            let c = load(&city)?;
            match Geocoder::new(Arc::new(c)).reverse(at) {
                Some(hit) => println!("{hit} ({:.0} m away)", hit.distance_m),
                None => bail!("no address or named road near {at}"),
            }
            Ok(())
        }
        GeodataCommand::Geojson { city, out } => {
            let c = load(&city)?;
            let text = serde_json::to_string(&c.base_map_geojson())?;
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            Ok(())
        }
        GeodataCommand::Bench(args) => bench(args),
    }
}

/// Arguments of `muster bench geodata`.
#[derive(Debug, Args)]
pub struct GeodataBenchArgs {
    /// Runs of each measurement; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Many-to-one queries per run.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Size of the generated city, km.
    #[arg(long, default_value_t = 30.0)]
    size_km: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The Helsinki extract to time the import with.
    #[arg(long, default_value = "../shared/data/helsinki-centre.osm.pbf")]
    pbf: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

struct Figure {
    name: &'static str,
    unit: &'static str,
    runs: Vec<f64>,
    /// The target, if any: the median must be at or below it.
    target: Option<f64>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    nearest_rank(sorted, q).unwrap_or(f64::NAN)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `muster bench geodata`.
pub fn bench(args: GeodataBenchArgs) -> anyhow::Result<()> {
    let runs = args.runs.max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let params = GenerateParams::new(args.size_km, args.seed)?;
    let started = Instant::now();
    let city = Arc::new(generate(params));
    let generate_ms = ms(started.elapsed());
    eprintln!(
        "generated {} km city ({} nodes, {} roads) in {generate_ms:.0} ms",
        args.size_km,
        city.nodes.len(),
        city.roads.len()
    );

    let mut prepare = Vec::new();
    let mut router = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = Router::new(Arc::clone(&city))?;
        prepare.push(ms(t.elapsed()));
        router = Some(r);
    }
    let router = router.expect("at least one run");

    let b = city.meta.bounds;
    let random_point = |rng: &mut rand::rngs::StdRng| {
        LatLon::from_lat_lon(
            rng.random_range(b.south_west.lat_deg()..=b.north_east.lat_deg()),
            rng.random_range(b.south_west.lon_deg()..=b.north_east.lon_deg()),
        )
        .expect("inside the bounds")
    };
    // Points that are on the map (not in the river, not outside).
    let mut covered = Vec::new();
    while covered.len() < 21 * 500 {
        let p = random_point(&mut rng);
        if router.snap(p).is_ok() {
            covered.push(p);
        }
    }

    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    let (mut base_p50, mut base_p99) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut lat_ms = Vec::with_capacity(args.queries);
        let mut base_ms = Vec::with_capacity(args.queries / 10);
        for q in 0..args.queries {
            let k = rng.random_range(0..covered.len() / 21) * 21;
            let target = covered[k];
            let sources = &covered[k + 1..k + 21];
            let t = Instant::now();
            let answers = router.travel_times_to(sources, target)?;
            lat_ms.push(ms(t.elapsed()));
            // The baseline (one plain Dijkstra search from the target) is slow: one in ten.
            if q % 10 == 0 {
                let t = Instant::now();
                let baseline = router.travel_times_to_by_dijkstra(sources, target)?;
                base_ms.push(ms(t.elapsed()));
                if baseline != answers {
                    bail!("hierarchy and plain Dijkstra disagree for target {target}");
                }
            }
            std::hint::black_box(answers);
        }
        lat_ms.sort_by(f64::total_cmp);
        base_ms.sort_by(f64::total_cmp);
        p50.push(percentile(&lat_ms, 0.50));
        p99.push(percentile(&lat_ms, 0.99));
        base_p50.push(percentile(&base_ms, 0.50));
        base_p99.push(percentile(&base_ms, 0.99));
    }

    let mut snap_us = Vec::new();
    let snap_points: Vec<LatLon> = (0..100_000).map(|_| random_point(&mut rng)).collect();
    for _ in 0..runs {
        let t = Instant::now();
        for p in &snap_points {
            let _ = std::hint::black_box(router.snap(*p));
        }
        snap_us.push(t.elapsed().as_secs_f64() * 1e6 / snap_points.len() as f64);
    }

    let mut reprepare = Vec::new();
    for run in 0..runs {
        let mut conditions = RoadConditions::new();
        for _ in 0..50 {
            conditions.insert(
                rng.random_range(0..city.roads.len() as u32),
                RoadCondition::Closed,
            );
        }
        if run % 2 == 1 {
            conditions.clear();
        }
        let t = Instant::now();
        router.set_conditions(conditions).wait();
        reprepare.push(ms(t.elapsed()));
    }

    let mut import = Vec::new();
    let mut load_city = Vec::new();
    if args.pbf.exists() {
        for _ in 0..runs {
            let t = Instant::now();
            let helsinki = import_pbf(&args.pbf, &ImportOptions::named("Helsinki (centre)"))?;
            import.push(ms(t.elapsed()));
            let bytes = format::to_bytes(&helsinki)?;
            let t = Instant::now();
            std::hint::black_box(format::from_bytes(&bytes, &args.pbf)?);
            load_city.push(ms(t.elapsed()));
        }
    } else {
        eprintln!(
            "{} not found: Helsinki import not measured",
            args.pbf.display()
        );
    }

    let figures = vec![
        Figure {
            name: "many-to-one 20->1 p50",
            unit: "ms",
            runs: p50,
            target: None,
        },
        Figure {
            name: "many-to-one 20->1 p99",
            unit: "ms",
            runs: p99,
            target: Some(1.0),
        },
        Figure {
            name: "baseline: plain Dijkstra p50",
            unit: "ms",
            runs: base_p50,
            target: None,
        },
        Figure {
            name: "baseline: plain Dijkstra p99",
            unit: "ms",
            runs: base_p99,
            target: None,
        },
        Figure {
            name: "preparation (R-tree + CH)",
            unit: "ms",
            runs: prepare,
            target: Some(30_000.0),
        },
        Figure {
            name: "re-preparation, 50 closures",
            unit: "ms",
            runs: reprepare,
            target: None,
        },
        Figure {
            name: "snap to road",
            unit: "us",
            runs: snap_us,
            target: Some(5.0),
        },
        Figure {
            name: "Helsinki import",
            unit: "ms",
            runs: import,
            target: Some(2_000.0),
        },
        Figure {
            name: "Helsinki city decode",
            unit: "ms",
            runs: load_city,
            target: None,
        },
    ];

    // Figures not measured in this run (no Helsinki extract found) are left out.
    let figures: Vec<Figure> = figures.into_iter().filter(|f| !f.runs.is_empty()).collect();

    if args.json {
        let results: Vec<_> = figures
            .iter()
            .map(|f| {
                let m = median(&f.runs);
                json!({
                    "name": f.name,
                    "unit": f.unit,
                    "median": m,
                    "runs": f.runs,
                    "target": f.target,
                    "met": f.target.map(|t| m <= t),
                })
            })
            .collect();
        let out = json!({
            "benchmark": "geodata",
            "city": {
                "size_km": args.size_km,
                "seed": args.seed,
                "nodes": city.nodes.len(),
                "roads": city.roads.len(),
            },
            "runs": runs,
            "queries_per_run": args.queries,
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "geodata bench: {} km generated city, seed {}, {} nodes, {} roads; medians of {runs} runs",
            args.size_km,
            args.seed,
            city.nodes.len(),
            city.roads.len()
        );
        println!(
            "{:<30} {:>12} {:>6} {:>12} {:>6}",
            "figure", "median", "unit", "target", "met"
        );
        for f in &figures {
            let m = median(&f.runs);
            let (target, met) = match f.target {
                Some(t) => (format!("<= {t}"), if m <= t { "yes" } else { "NO" }),
                None => (String::from("-"), ""),
            };
            println!(
                "{:<30} {:>12.4} {:>6} {:>12} {:>6}",
                f.name, m, f.unit, target, met
            );
        }
    }
    Ok(())
}
