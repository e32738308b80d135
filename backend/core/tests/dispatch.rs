//! The dispatcher on a generated city: nearest by road against a brute-force oracle,
//! incremental index updates, stale positions, shortfalls, surges and coverage.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::router;
use muster_core::UnitId;
use muster_core::dispatch::{
    Applied, IncidentSpec, NewUnit, PendingIncident, Reason, RecommendError, UnitIndex,
    Whereabouts, assign_greedily, assign_jointly, coverage, recommend,
};
use muster_core::runcard::{ResponsePlan, UnitRequirement};
use muster_core::unit::UnitStatus;
use muster_core::value::{Agency, IncidentType, Priority, UnitKind};
use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::{LatLon, Router};
use rand::{Rng, SeedableRng};

const KINDS: [UnitKind; 3] = [
    UnitKind::Engine,
    UnitKind::AlsAmbulance,
    UnitKind::PatrolCar,
];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn random_point(rng: &mut impl Rng, router: &Router) -> LatLon {
    let b = router.city().meta.bounds;
    LatLon::from_lat_lon(
        rng.random_range(b.south_west.lat_deg()..b.north_east.lat_deg()),
        rng.random_range(b.south_west.lon_deg()..b.north_east.lon_deg()),
    )
    .unwrap()
}

fn agency() -> Agency {
    Agency::parse("city").unwrap()
}

/// `per_kind` units of each kind, at random stations, then moved to random positions.
fn populated(per_kind: usize, seed: u64) -> UnitIndex {
    let router = router();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
    let stations = &router.city().stations;
    for kind in KINDS {
        for _ in 0..per_kind {
            let id = UnitId::new_v7();
            let station = stations[rng.random_range(0..stations.len())].location;
            index.upsert(NewUnit {
                id,
                kind,
                capabilities: BTreeSet::new(),
                agency: agency(),
                status: UnitStatus::Available,
                station: Some(station),
            });
            let at = random_point(&mut rng, &router);
            index.report_position(id, at, now(), now());
        }
    }
    index
}

fn plan(kind: UnitKind, count: u8) -> ResponsePlan {
    ResponsePlan {
        incident_type: IncidentType::Other,
        priority: None,
        units: vec![UnitRequirement { kind, count }],
    }
}

fn spec(at: LatLon) -> IncidentSpec {
    IncidentSpec {
        location: at,
        agency: Some(agency()),
        required_capabilities: vec![],
    }
}

fn place(index: &UnitIndex, id: UnitId) -> LatLon {
    match index.unit(id).unwrap().whereabouts {
        Whereabouts::Fix { at, .. } | Whereabouts::Station { at, .. } => at,
        Whereabouts::Unknown => panic!("unit {id} has no place"),
    }
}

#[test]
fn nearest_by_road_equals_a_full_dijkstra_over_every_unit_on_1000_incidents() {
    let index = populated(40, 1);
    let router = router();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (mut checked, mut outside) = (0, 0);
    for case in 0..1000 {
        let at = random_point(&mut rng, &router);
        let kind = KINDS[case % KINDS.len()];
        let count = rng.random_range(1..=3u8);
        let answer = recommend(&index, &spec(at), &plan(kind, count), &[], now());
        let Ok(rec) = answer else {
            assert_eq!(answer, Err(RecommendError::OutsideCoverage { point: at }));
            assert!(
                router.snap(at).is_err(),
                "case {case}: refused a point the router can snap"
            );
            outside += 1;
            continue;
        };
        let units: Vec<UnitId> = index
            .units()
            .filter(|u| u.kind == kind)
            .map(|u| u.id)
            .collect();
        let sources: Vec<LatLon> = units.iter().map(|u| place(&index, *u)).collect();
        let mut oracle: Vec<u128> = router
            .travel_times_to_by_dijkstra(&sources, at)
            .unwrap()
            .into_iter()
            .filter_map(Result::ok)
            .map(|d| d.as_millis())
            .collect();
        oracle.sort_unstable();
        let picks: Vec<u128> = rec
            .picks()
            .map(|c| (c.eta_s * 1000.0).round() as u128)
            .collect();
        let want: Vec<u128> = oracle.into_iter().take(usize::from(count)).collect();
        assert_eq!(picks, want, "case {case}: {count} x {kind:?} at {at}");
        assert!(
            rec.kinds[0].exhaustive,
            "case {case}: the search stopped early"
        );
        checked += 1;
    }
    assert!(
        checked > 900,
        "only {checked} incidents inside coverage ({outside} outside)"
    );
}

#[test]
fn position_reports_and_status_changes_update_the_index_in_place() {
    let router = router();
    let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
    let station = router.city().stations[0].location;
    let id = UnitId::new_v7();
    let new = NewUnit {
        id,
        kind: UnitKind::Engine,
        capabilities: BTreeSet::new(),
        agency: agency(),
        status: UnitStatus::Available,
        station: Some(station),
    };
    assert_eq!(index.upsert(new), Applied::Indexed);
    assert_eq!(index.candidates(), 1);
    assert_eq!(
        index.set_status(id, UnitStatus::Dispatched),
        Applied::NotACandidate
    );
    assert_eq!(index.candidates(), 0);
    let rec = recommend(
        &index,
        &spec(station),
        &plan(UnitKind::Engine, 1),
        &[],
        now(),
    )
    .unwrap();
    assert_eq!(rec.shortfall.len(), 1, "a dispatched unit was recommended");
    assert_eq!(
        index.set_status(id, UnitStatus::Returning),
        Applied::Indexed
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let elsewhere = loop {
        let p = random_point(&mut rng, &router);
        if router.snap(p).is_ok() {
            break p;
        }
    };
    assert_eq!(
        index.report_position(id, elsewhere, now(), now()),
        Applied::Indexed
    );
    assert_eq!(index.candidates(), 1);
    let older = now() - chrono::Duration::minutes(1);
    index.report_position(id, station, older, now());
    let Whereabouts::Fix { taken, .. } = index.unit(id).unwrap().whereabouts else {
        panic!("no fix")
    };
    assert_eq!(taken, now(), "an older fix moved the unit back");
    assert_eq!(
        index.report_position(UnitId::new_v7(), station, now(), now()),
        Applied::UnknownUnit
    );
    let outside = LatLon::from_lat_lon(0.0, 0.0).unwrap();
    assert_eq!(
        index.report_position(id, outside, now(), now()),
        Applied::OutsideCoverage
    );
}

#[test]
fn a_stale_position_gives_way_to_the_station_and_the_reason_says_so() {
    let router = router();
    let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
    let station = router.city().stations[0].location;
    let id = UnitId::new_v7();
    index.upsert(NewUnit {
        id,
        kind: UnitKind::Engine,
        capabilities: BTreeSet::new(),
        agency: agency(),
        status: UnitStatus::Available,
        station: Some(station),
    });
    let fix_at = now() - chrono::Duration::minutes(10);
    let somewhere = router.city().stations.last().unwrap().location;
    index.report_position(id, somewhere, fix_at, now());
    assert_eq!(index.refresh_stale(now()), 0);
    let later = now() + chrono::Duration::minutes(25);
    assert_eq!(index.refresh_stale(later), 1);
    let rec = recommend(
        &index,
        &spec(station),
        &plan(UnitKind::Engine, 1),
        &[],
        later,
    )
    .unwrap();
    let reasons = &rec.kinds[0].candidates[0].reasons;
    assert!(
        reasons.contains(&Reason::FromStation {
            stale_fix_age_s: Some(35 * 60)
        }),
        "reasons: {reasons:?}"
    );
}

#[test]
fn a_kind_that_cannot_be_filled_is_named_with_what_was_found() {
    let index = populated(1, 3);
    let at = router().city().stations[0].location;
    let mut p = plan(UnitKind::Engine, 3);
    p.units.push(UnitRequirement {
        kind: UnitKind::Ladder,
        count: 1,
    });
    let rec = recommend(&index, &spec(at), &p, &[], now()).unwrap();
    let by_kind: Vec<(UnitKind, u8, u8)> = rec
        .shortfall
        .iter()
        .map(|s| (s.kind, s.wanted, s.found))
        .collect();
    assert_eq!(
        by_kind,
        vec![(UnitKind::Engine, 3, 1), (UnitKind::Ladder, 1, 0)]
    );
    let excluded: Vec<UnitId> = rec.picks().map(|c| c.unit).collect();
    let again = recommend(
        &index,
        &spec(at),
        &plan(UnitKind::Engine, 1),
        &excluded,
        now(),
    )
    .unwrap();
    assert_eq!(again.shortfall[0].found, 0, "an excluded unit came back");
}

#[test]
fn joint_assignment_never_costs_more_than_greedy_and_books_no_unit_twice() {
    let router = router();
    for seed in 0..20 {
        let index = populated(6, 100 + seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let incidents: Vec<PendingIncident> = (0..6)
            .map(|i| PendingIncident {
                spec: spec(random_point(&mut rng, &router)),
                priority: [Priority::P1, Priority::P2, Priority::P3][i % 3],
                plan: plan(
                    KINDS[rng.random_range(0..KINDS.len())],
                    rng.random_range(1..=2),
                ),
            })
            .collect();
        let joint = assign_jointly(&index, &incidents);
        let greedy = assign_greedily(&index, &incidents);
        for plan in [&joint, &greedy] {
            let mut units: Vec<UnitId> = plan.assignments.iter().map(|a| a.unit).collect();
            let n = units.len();
            units.sort();
            units.dedup();
            assert_eq!(units.len(), n, "seed {seed}: a unit booked twice");
        }
        assert!(
            joint.unfilled.len() <= greedy.unfilled.len(),
            "seed {seed}: joint left more slots empty"
        );
        if joint.unfilled.len() == greedy.unfilled.len() {
            assert!(
                joint.weighted_eta_s <= greedy.weighted_eta_s + 1e-6,
                "seed {seed}: joint {} > greedy {}",
                joint.weighted_eta_s,
                greedy.weighted_eta_s
            );
        }
    }
}

#[test]
fn areas_without_a_unit_in_time_are_reported_with_move_ups() {
    // 12 km: four districts.
    let router =
        Arc::new(Router::new(Arc::new(generate(GenerateParams::new(12.0, 5).unwrap()))).unwrap());
    let mut index = UnitIndex::new(router.clone(), chrono::Duration::minutes(30));
    let station = router.city().stations[0].location;
    for _ in 0..3 {
        index.upsert(NewUnit {
            id: UnitId::new_v7(),
            kind: UnitKind::Engine,
            capabilities: BTreeSet::new(),
            agency: agency(),
            status: UnitStatus::Available,
            station: Some(station),
        });
    }
    let report = coverage(&index, &[UnitKind::Engine], Duration::from_secs(120));
    let districts = router.city().districts.len();
    assert!(districts >= 4);
    assert_eq!(report.covered + report.uncovered.len(), districts);
    assert!(
        !report.uncovered.is_empty(),
        "one station covers a 6 km city in 2 minutes? {report:?}"
    );
    assert!(
        !report.move_ups.is_empty(),
        "no move-up suggested from a station with three units"
    );
    assert!(
        report.move_ups.len() <= 2,
        "more units moved up than can be spared"
    );
    let everywhere = coverage(&index, &[UnitKind::Engine], Duration::from_secs(24 * 3600));
    assert!(
        everywhere.uncovered.is_empty(),
        "{:?}",
        everywhere.uncovered
    );
}

#[test]
fn a_p1_incident_short_of_units_may_take_one_from_a_p5_incident_by_rule() {
    use muster_core::IncidentId;
    use muster_core::dispatch::{Commitment, DispatchRules, preemptions};
    let router = router();
    let mut index = populated(3, 9);
    let engines: Vec<UnitId> = index
        .units()
        .filter(|u| u.kind == UnitKind::Engine)
        .map(|u| u.id)
        .collect();
    for id in &engines {
        index.set_status(*id, UnitStatus::EnRoute);
    }
    let at = router.city().stations[0].location;
    let rec = recommend(&index, &spec(at), &plan(UnitKind::Engine, 1), &[], now()).unwrap();
    assert_eq!(rec.shortfall.len(), 1);
    let low = IncidentId::new_v7();
    let committed: Vec<Commitment> = engines
        .iter()
        .map(|u| Commitment {
            unit: *u,
            incident: low,
            priority: Priority::P5,
        })
        .collect();
    let rules = DispatchRules::default();
    let taken = preemptions(
        &index,
        &rules,
        &spec(at),
        Priority::P1,
        &rec.shortfall,
        &committed,
    );
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].from_incident, low);
    assert_eq!(taken[0].rule, "P1 takes from P4-P5");
    let sources: Vec<LatLon> = engines.iter().map(|u| place(&index, *u)).collect();
    let fastest = router
        .travel_times_to(&sources, at)
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .min()
        .unwrap();
    assert_eq!(
        (taken[0].eta_s * 1000.0).round() as u128,
        fastest.as_millis(),
        "not the fastest unit"
    );

    let not_allowed = preemptions(
        &index,
        &rules,
        &spec(at),
        Priority::P2,
        &rec.shortfall,
        &committed,
    );
    assert!(not_allowed.is_empty(), "a P2 took a unit without a rule");
    let busy_p3: Vec<Commitment> = committed
        .iter()
        .map(|c| Commitment {
            priority: Priority::P3,
            ..*c
        })
        .collect();
    assert!(
        preemptions(
            &index,
            &rules,
            &spec(at),
            Priority::P1,
            &rec.shortfall,
            &busy_p3
        )
        .is_empty()
    );
}
