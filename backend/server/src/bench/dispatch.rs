//! `muster bench dispatch`: recommendations on the generated city.
//!
//! 10,000 units of the usual kinds at 100 stations, each with a fresh position somewhere in
//! the city. Recommendations for random incidents follow the default run cards, road travel
//! times included; the baseline, measured in the same run on the same incidents (each timed
//! right after the recommendation for it), ranks every unit of the kinds needed by one full
//! backward Dijkstra search from the incident: the search depends only on the incident, so
//! one search serves every kind of the run card. While a thread runs recommendations,
//! another applies position reports to the index.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use muster_core::UnitId;
use muster_core::dispatch::{
    IncidentSpec, NewUnit, PendingIncident, UnitIndex, Whereabouts, assign_greedily,
    assign_jointly, recommend,
};
use muster_core::runcard::{ResponsePlan, ResponsePlans};
use muster_core::unit::UnitStatus;
use muster_core::value::{Agency, IncidentType, Priority, UnitKind};
use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::{LatLon, RouteError, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::stats::{Latencies, Summary};

/// Arguments of `muster bench dispatch`.
#[derive(Debug, Args)]
pub struct DispatchBenchArgs {
    /// Size of the generated city, km.
    #[arg(long, default_value_t = 30.0)]
    size_km: f64,
    /// Units in the index.
    #[arg(long, default_value_t = 10_000)]
    units: usize,
    /// Stations the units belong to.
    #[arg(long, default_value_t = 100)]
    stations: usize,
    /// Recommendations per run.
    #[arg(long, default_value_t = 2000)]
    incidents: usize,
    /// Runs; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds of the concurrent position-report run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Seed of the city and the load.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// A short run: 3 runs of 500 recommendations, 1 s of concurrent reports.
    #[arg(long)]
    quick: bool,
}

const INCIDENT_TYPES: [IncidentType; 6] = [
    IncidentType::StructureFire,
    IncidentType::Medical,
    IncidentType::CardiacArrest,
    IncidentType::TrafficCollision,
    IncidentType::Assault,
    IncidentType::FireAlarm,
];

/// Position reports applied per write lock of the index (the server applies a page of the log
/// at a time in the same way).
const REPORTS_PER_LOCK: u64 = 32;

/// Share of each kind among the units, per thousand.
const KIND_MIX: [(UnitKind, u32); 9] = [
    (UnitKind::Engine, 250),
    (UnitKind::Ladder, 80),
    (UnitKind::HeavyRescue, 30),
    (UnitKind::FireCommand, 20),
    (UnitKind::AlsAmbulance, 250),
    (UnitKind::BlsAmbulance, 100),
    (UnitKind::EmsSupervisor, 40),
    (UnitKind::PatrolCar, 200),
    (UnitKind::PoliceSupervisor, 30),
];

#[derive(Debug, Serialize)]
struct Report {
    city_km: f64,
    units: usize,
    stations: usize,
    city_prepare_s: f64,
    recommend_p50_ms: Summary,
    recommend_p99_ms: Summary,
    baseline_full_dijkstra_p50_ms: Summary,
    baseline_full_dijkstra_p99_ms: Summary,
    speedup_p99: f64,
    position_reports_per_s: Summary,
    concurrent_recommend_p99_ms: Summary,
    straight_line_nearest_differs_pct: f64,
    surge_incidents: usize,
    surge_weighted_eta_joint_s: f64,
    surge_weighted_eta_greedy_s: f64,
    surge_gain_pct: f64,
}

fn random_point(rng: &mut StdRng, router: &Router) -> LatLon {
    let b = router.city().meta.bounds;
    loop {
        let p = LatLon::from_lat_lon(
            rng.random_range(b.south_west.lat_deg()..b.north_east.lat_deg()),
            rng.random_range(b.south_west.lon_deg()..b.north_east.lon_deg()),
        )
        .expect("inside the bounds");
        if router.snap(p).is_ok() {
            return p;
        }
    }
}

fn kind_for(rng: &mut StdRng) -> UnitKind {
    let mut pick = rng.random_range(0..1000);
    for (kind, share) in KIND_MIX {
        if pick < share {
            return kind;
        }
        pick -= share;
    }
    UnitKind::Engine
}

/// Runs `muster bench dispatch`.
pub fn run(mut args: DispatchBenchArgs) -> anyhow::Result<()> {
    if args.quick {
        args.runs = 3;
        args.incidents = args.incidents.min(500);
        args.seconds = 1.0;
    }
    if args.units == 0 || args.stations == 0 || args.incidents == 0 || args.runs == 0 {
        bail!("--units, --stations, --incidents and --runs must be positive");
    }
    let say = |text: &str| {
        if !args.json {
            eprintln!("… {text}");
        }
    };
    say(&format!(
        "generating and preparing the {} km city",
        args.size_km
    ));
    let started = Instant::now();
    let city = generate(GenerateParams::new(args.size_km, args.seed)?);
    let router = Arc::new(Router::new(Arc::new(city)).context("the generated city is not valid")?);
    let city_prepare_s = started.elapsed().as_secs_f64();

    let mut rng = StdRng::seed_from_u64(args.seed);
    let now = Utc::now();
    let agency = Agency::parse("city")?;
    let stations: Vec<LatLon> = (0..args.stations)
        .map(|_| random_point(&mut rng, &router))
        .collect();
    let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
    let mut ids = Vec::with_capacity(args.units);
    for i in 0..args.units {
        let id = UnitId::new_v7();
        index.upsert(NewUnit {
            id,
            kind: kind_for(&mut rng),
            capabilities: BTreeSet::new(),
            agency: agency.clone(),
            status: UnitStatus::Available,
            station: Some(stations[i % stations.len()]),
        });
        index.report_position(id, random_point(&mut rng, &router), now, now);
        ids.push(id);
    }
    let plans = ResponsePlans::default_set();
    let incident = |rng: &mut StdRng| -> (IncidentSpec, ResponsePlan, Priority) {
        let kind = INCIDENT_TYPES[rng.random_range(0..INCIDENT_TYPES.len())];
        let priority = Priority::ALL[rng.random_range(0..3)];
        let plan = plans
            .plan_for(kind, priority)
            .cloned()
            .expect("the default set covers every type");
        let spec = IncidentSpec {
            location: random_point(rng, &router),
            agency: None,
            required_capabilities: vec![],
        };
        (spec, plan, priority)
    };

    let (mut rec50, mut rec99, mut base50, mut base99) = (vec![], vec![], vec![], vec![]);
    for run in 0..args.runs {
        say(&format!("recommendations, run {}/{}", run + 1, args.runs));
        let mut rng = StdRng::seed_from_u64(args.seed + 100 + run as u64);
        let cases: Vec<_> = (0..args.incidents).map(|_| incident(&mut rng)).collect();
        let timed = time_cases(&index, &cases, now)?;
        rec50.push(timed.recommend.quantile_ms(0.5));
        rec99.push(timed.recommend.quantile_ms(0.99));
        base50.push(timed.baseline.quantile_ms(0.5));
        base99.push(timed.baseline.quantile_ms(0.99));
    }

    say("straight-line nearest against road nearest");
    let mut rng = StdRng::seed_from_u64(args.seed + 7);
    let (mut differs, mut compared) = (0, 0);
    for _ in 0..1000 {
        let (spec, _, _) = incident(&mut rng);
        let kind = UnitKind::Engine;
        let plan = ResponsePlan {
            incident_type: IncidentType::Other,
            priority: None,
            units: vec![muster_core::runcard::UnitRequirement { kind, count: 1 }],
        };
        let rec = recommend(&index, &spec, &plan, &[], now)?;
        let Some(road) = rec.picks().next() else {
            continue;
        };
        let projection = router.city().projection();
        let here = projection.project(spec.location);
        let straight = index
            .units()
            .filter(|u| u.kind == kind && u.status.can_take_task())
            .filter_map(|u| place(u).map(|p| (u.id, projection.project(p).distance_m(here))))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((id, _)) = straight {
            compared += 1;
            if id != road.unit {
                differs += 1;
            }
        }
    }

    let (mut reports, mut conc99) = (vec![], vec![]);
    let shared = Arc::new(RwLock::new(index));
    for run in 0..args.runs {
        say(&format!(
            "position reports while recommending, run {}/{}",
            run + 1,
            args.runs
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicU64::new(0));
        let writer = {
            let (shared, stop, applied, ids, router) = (
                shared.clone(),
                stop.clone(),
                applied.clone(),
                ids.clone(),
                router.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(run as u64);
                let points: Vec<LatLon> =
                    (0..4096).map(|_| random_point(&mut rng, &router)).collect();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let mut index = shared.write().expect("index lock");
                    let at = Utc::now();
                    for _ in 0..REPORTS_PER_LOCK {
                        let id = ids[rng.random_range(0..ids.len())];
                        index.report_position(id, points[i % points.len()], at, at);
                        i += 1;
                    }
                    drop(index);
                    applied.fetch_add(REPORTS_PER_LOCK, Ordering::Relaxed);
                }
            })
        };
        let mut rng = StdRng::seed_from_u64(args.seed + 1000 + run as u64);
        let mut lat = Latencies::default();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs_f64(args.seconds) {
            let (spec, plan, _) = incident(&mut rng);
            let t = Instant::now();
            let index = shared.read().expect("index lock");
            std::hint::black_box(recommend(&index, &spec, &plan, &[], Utc::now())?);
            drop(index);
            lat.record_ns(t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer thread");
        reports.push(applied.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64());
        conc99.push(lat.quantile_ms(0.99));
    }

    say("surge: joint against greedy");
    let index = shared.read().expect("index lock");
    let mut rng = StdRng::seed_from_u64(args.seed + 5);
    let (mut joint, mut greedy) = (0.0, 0.0);
    // A storm: incidents packed into a 2 km square, so that they compete for the same units.
    let surge_incidents = 40;
    let projection = router.city().projection();
    for _ in 0..10 {
        let centre = projection.project(random_point(&mut rng, &router));
        let pending: Vec<PendingIncident> = (0..surge_incidents)
            .map(|_| {
                let (mut spec, plan, priority) = incident(&mut rng);
                spec.location = loop {
                    let p = muster_geodata::point::PlanarM {
                        x_m: centre.x_m + rng.random_range(-1000.0..1000.0),
                        y_m: centre.y_m + rng.random_range(-1000.0..1000.0),
                    };
                    if let Some(at) = projection
                        .unproject(p)
                        .filter(|at| router.snap(*at).is_ok())
                    {
                        break at;
                    }
                };
                PendingIncident {
                    spec,
                    priority,
                    plan,
                }
            })
            .collect();
        let j = assign_jointly(&index, &pending);
        let g = assign_greedily(&index, &pending);
        anyhow::ensure!(
            j.unfilled.len() <= g.unfilled.len(),
            "joint assignment left more slots empty than greedy"
        );
        joint += j.weighted_eta_s;
        greedy += g.weighted_eta_s;
    }

    let recommend_p99_ms = Summary::of(rec99);
    let baseline_p99 = Summary::of(base99);
    let report = Report {
        city_km: args.size_km,
        units: args.units,
        stations: args.stations,
        city_prepare_s,
        speedup_p99: baseline_p99.median / recommend_p99_ms.median,
        recommend_p50_ms: Summary::of(rec50),
        recommend_p99_ms,
        baseline_full_dijkstra_p50_ms: Summary::of(base50),
        baseline_full_dijkstra_p99_ms: baseline_p99,
        position_reports_per_s: Summary::of(reports),
        concurrent_recommend_p99_ms: Summary::of(conc99),
        straight_line_nearest_differs_pct: 100.0 * differs as f64 / compared.max(1) as f64,
        surge_incidents,
        surge_weighted_eta_joint_s: joint,
        surge_weighted_eta_greedy_s: greedy,
        surge_gain_pct: 100.0 * (greedy - joint) / greedy.max(f64::MIN_POSITIVE),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let r = &report;
        println!(
            "muster bench dispatch: {} km generated city (prepared in {:.1} s), {} units at {} stations, median of {} runs",
            r.city_km, r.city_prepare_s, r.units, r.stations, args.runs
        );
        println!(
            "recommendation (run card, road ETA): p50 {:.3} ms, p99 {:.3} ms; full-Dijkstra baseline p50 {:.3} ms, p99 {:.3} ms (x{:.1} faster at p99)",
            r.recommend_p50_ms.median,
            r.recommend_p99_ms.median,
            r.baseline_full_dijkstra_p50_ms.median,
            r.baseline_full_dijkstra_p99_ms.median,
            r.speedup_p99
        );
        println!(
            "position reports applied while recommending: {:.0}/s; recommendation p99 meanwhile {:.3} ms",
            r.position_reports_per_s.median, r.concurrent_recommend_p99_ms.median
        );
        println!(
            "straight-line nearest engine is not the road-nearest in {:.1} % of 1,000 incidents",
            r.straight_line_nearest_differs_pct
        );
        println!(
            "surge of {} incidents in a 2 km square (x10): priority-weighted ETA joint {:.0} s, greedy {:.0} s, gain {:.1} %",
            r.surge_incidents,
            r.surge_weighted_eta_joint_s,
            r.surge_weighted_eta_greedy_s,
            r.surge_gain_pct
        );
    }
    Ok(())
}

/// One incident to recommend for: where, its run card and its priority.
type Case = (IncidentSpec, ResponsePlan, Priority);

/// The recommender's and the baseline's latencies over the same cases.
struct Timed {
    recommend: Latencies,
    baseline: Latencies,
}

/// Times the recommendation and then the baseline for each case in turn, so that both see
/// the same incidents under the same load.
fn time_cases(index: &UnitIndex, cases: &[Case], now: DateTime<Utc>) -> anyhow::Result<Timed> {
    let router = index.router();
    let mut search =
        |sources: &[LatLon], target: LatLon| router.travel_times_to_by_dijkstra(sources, target);
    let (mut recommend_lat, mut baseline) = (Latencies::default(), Latencies::default());
    for (spec, plan, _) in cases {
        let t = Instant::now();
        let rec = recommend(index, spec, plan, &[], now)?;
        recommend_lat.record_ns(t.elapsed());
        std::hint::black_box(rec);
        let t = Instant::now();
        std::hint::black_box(full_dijkstra(index, spec, plan, &mut search)?);
        baseline.record_ns(t.elapsed());
    }
    Ok(Timed {
        recommend: recommend_lat,
        baseline,
    })
}

fn place(u: &muster_core::dispatch::IndexedUnit) -> Option<LatLon> {
    match u.whereabouts {
        Whereabouts::Fix { at, .. } | Whereabouts::Station { at, .. } => Some(at),
        Whereabouts::Unknown => None,
    }
}

/// Travel times from each source to a target, as [`Router::travel_times_to_by_dijkstra`]
/// answers them.
type TravelTimes = Vec<Result<Duration, RouteError>>;

/// A search for the travel times from sources to a target.
type Search<'a> = dyn FnMut(&[LatLon], LatLon) -> Result<TravelTimes, RouteError> + 'a;

/// The baseline: every unit of the kinds needed, timed by one full Dijkstra search from the
/// incident (`search`), then the nearest of each kind by road. The search is backwards from
/// the target and depends on nothing else, so one serves every kind of the run card.
fn full_dijkstra(
    index: &UnitIndex,
    spec: &IncidentSpec,
    plan: &ResponsePlan,
    search: &mut Search<'_>,
) -> anyhow::Result<Vec<(UnitId, Duration)>> {
    let units: Vec<(UnitId, UnitKind, LatLon)> = index
        .units()
        .filter(|u| plan.units.iter().any(|n| n.kind == u.kind) && u.status.can_take_task())
        .filter_map(|u| place(u).map(|p| (u.id, u.kind, p)))
        .collect();
    let sources: Vec<LatLon> = units.iter().map(|u| u.2).collect();
    let times = search(&sources, spec.location)?;
    let mut ranked: Vec<(Duration, UnitId, UnitKind)> = units
        .iter()
        .zip(times)
        .filter_map(|(u, t)| t.ok().map(|t| (t, u.0, u.1)))
        .collect();
    ranked.sort_unstable_by_key(|r| (r.0, r.1));
    let mut taken = BTreeSet::new();
    let mut picks = Vec::new();
    for need in &plan.units {
        for &(eta, id, _) in ranked
            .iter()
            .filter(|r| r.2 == need.kind && !taken.contains(&r.1))
            .take(usize::from(need.count))
        {
            picks.push((id, eta));
        }
        taken.extend(picks.iter().map(|p| p.0));
    }
    Ok(picks)
}

#[cfg(test)]
mod tests {
    use muster_core::runcard::UnitRequirement;

    use super::*;

    /// A 4 km generated city with 300 units of the usual kinds at 10 stations, and 40
    /// incidents with the default run cards.
    fn setup() -> (UnitIndex, Vec<Case>, DateTime<Utc>) {
        let city = generate(GenerateParams::new(4.0, 3).unwrap());
        let router = Arc::new(Router::new(Arc::new(city)).unwrap());
        let mut rng = StdRng::seed_from_u64(3);
        let now = Utc::now();
        let stations: Vec<LatLon> = (0..10).map(|_| random_point(&mut rng, &router)).collect();
        let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
        for i in 0..300 {
            let id = UnitId::new_v7();
            index.upsert(NewUnit {
                id,
                kind: kind_for(&mut rng),
                capabilities: BTreeSet::new(),
                agency: Agency::parse("city").unwrap(),
                status: UnitStatus::Available,
                station: Some(stations[i % stations.len()]),
            });
            index.report_position(id, random_point(&mut rng, &router), now, now);
        }
        let plans = ResponsePlans::default_set();
        let cases = (0..40)
            .map(|i| {
                let kind = INCIDENT_TYPES[i % INCIDENT_TYPES.len()];
                let priority = Priority::ALL[i % 3];
                let plan = plans.plan_for(kind, priority).cloned().unwrap();
                let spec = IncidentSpec {
                    location: random_point(&mut rng, &router),
                    agency: None,
                    required_capabilities: vec![],
                };
                (spec, plan, priority)
            })
            .collect();
        (index, cases, now)
    }

    #[test]
    fn the_recommender_and_the_baseline_are_timed_on_the_same_cases() {
        let (index, cases, now) = setup();
        // More cases than any prefix the baseline was ever limited to (300).
        let cases: Vec<Case> = cases.iter().cycle().take(400).cloned().collect();
        let timed = time_cases(&index, &cases, now).unwrap();
        assert_eq!(timed.recommend.count(), cases.len() as u64);
        assert_eq!(timed.baseline.count(), cases.len() as u64);
    }

    #[test]
    fn the_baseline_searches_once_per_incident_whatever_its_run_card_needs() {
        let (index, cases, _) = setup();
        let (spec, _, _) = &cases[0];
        let plan = ResponsePlan {
            incident_type: IncidentType::StructureFire,
            priority: None,
            units: [UnitKind::Engine, UnitKind::Ladder, UnitKind::AlsAmbulance]
                .map(|kind| UnitRequirement { kind, count: 2 })
                .to_vec(),
        };
        let mut searches = 0;
        let mut search = |sources: &[LatLon], target: LatLon| {
            searches += 1;
            index.router().travel_times_to_by_dijkstra(sources, target)
        };
        let picks = full_dijkstra(&index, spec, &plan, &mut search).unwrap();
        assert_eq!(searches, 1);
        assert_eq!(picks.len(), 6);
    }

    #[test]
    fn the_baseline_picks_what_the_recommender_picks() {
        let (index, cases, now) = setup();
        let mut search = |sources: &[LatLon], target: LatLon| {
            index.router().travel_times_to_by_dijkstra(sources, target)
        };
        for (i, (spec, plan, _)) in cases.iter().enumerate() {
            let rec = recommend(&index, spec, plan, &[], now).unwrap();
            let want: Vec<(UnitId, u128)> = rec
                .picks()
                .map(|c| (c.unit, (c.eta_s * 1000.0).round() as u128))
                .collect();
            let got: Vec<(UnitId, u128)> = full_dijkstra(&index, spec, plan, &mut search)
                .unwrap()
                .into_iter()
                .map(|(id, eta)| (id, eta.as_millis()))
                .collect();
            assert_eq!(got, want, "case {i}: {:?}", plan.incident_type);
        }
    }
}
