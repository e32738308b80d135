//! The duplicate check for a new call: open incidents of a related type, within a distance
//! (geodesic metres, haversine) and a time window, nearest first. It suggests; the call
//! taker decides and, if so, merges.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::IncidentId;
use crate::incident::Incident;
use crate::value::{IncidentType, InvalidValue, LatLon};

/// How near in space and time a report must be to count as a likely duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DuplicateWindow {
    /// Largest distance between the two locations, metres along the Earth's surface.
    pub max_distance_m: f64,
    /// Largest time between the open incident's report and the new call, seconds.
    pub max_age_s: i64,
}

impl DuplicateWindow {
    /// 500 m and 30 minutes.
    pub const DEFAULT: DuplicateWindow = DuplicateWindow {
        max_distance_m: 500.0,
        max_age_s: 30 * 60,
    };

    /// A window; the distance must be finite and not negative, the age not negative.
    pub fn new(max_distance_m: f64, max_age_s: i64) -> Result<Self, InvalidValue> {
        if !max_distance_m.is_finite() || max_distance_m < 0.0 {
            return Err(InvalidValue {
                what: "duplicate distance",
                reason: format!("{max_distance_m} m is not a finite distance of 0 m or more"),
            });
        }
        if max_age_s < 0 {
            return Err(InvalidValue {
                what: "duplicate window",
                reason: format!("{max_age_s} s is negative"),
            });
        }
        Ok(Self {
            max_distance_m,
            max_age_s,
        })
    }
}

impl Default for DuplicateWindow {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What the check needs to know of an open incident.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpenIncident {
    /// Its id.
    pub id: IncidentId,
    /// Where.
    pub location: LatLon,
    /// What.
    pub incident_type: IncidentType,
    /// When it was reported.
    pub reported_at: DateTime<Utc>,
}

impl OpenIncident {
    /// The check's view of an incident; `None` once it is closed or merged.
    pub fn from_incident(incident: &Incident) -> Option<Self> {
        incident.is_open().then_some(Self {
            id: incident.id,
            location: incident.location,
            incident_type: incident.incident_type,
            reported_at: incident.entered_at,
        })
    }
}

/// The new call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NewCall {
    /// Where.
    pub location: LatLon,
    /// What.
    pub incident_type: IncidentType,
    /// When.
    pub at: DateTime<Utc>,
}

/// A likely duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DuplicateSuggestion {
    /// The open incident.
    pub incident: IncidentId,
    /// Geodesic distance from the new call, metres.
    pub distance_m: f64,
    /// Time from the incident's report to the new call, seconds (negative if the incident
    /// was reported after the call's time, as when calls are entered late).
    pub age_s: i64,
    /// Whether the types are the same (not just related).
    pub same_type: bool,
}

/// The open incidents that may be the new call's emergency: related type, within the window
/// in space and (either side in) time. Nearest first; ties by the same type first, then the
/// most recent.
pub fn suggest_duplicates<'a>(
    open: impl IntoIterator<Item = &'a OpenIncident>,
    call: &NewCall,
    window: &DuplicateWindow,
) -> Vec<DuplicateSuggestion> {
    let mut found: Vec<DuplicateSuggestion> = open
        .into_iter()
        .filter(|o| o.incident_type.is_related_to(call.incident_type))
        .filter_map(|o| {
            let age_s = (call.at - o.reported_at).num_seconds();
            if age_s.abs() > window.max_age_s {
                return None;
            }
            let distance_m = o.location.haversine_distance_m(call.location);
            (distance_m <= window.max_distance_m).then_some(DuplicateSuggestion {
                incident: o.id,
                distance_m,
                age_s,
                same_type: o.incident_type == call.incident_type,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        a.distance_m
            .total_cmp(&b.distance_m)
            .then(b.same_type.cmp(&a.same_type))
            .then(a.age_s.abs().cmp(&b.age_s.abs()))
            .then(a.incident.cmp(&b.incident))
    });
    found
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn open(n: u128, lat: f64, lon: f64, ty: IncidentType, s: i64) -> OpenIncident {
        OpenIncident {
            id: IncidentId::from_uuid(Uuid::from_u128(n)),
            location: LatLon::from_lat_lon(lat, lon).unwrap(),
            incident_type: ty,
            reported_at: t(s),
        }
    }

    #[test]
    fn finds_related_nearby_recent_incidents_nearest_first() {
        use IncidentType::*;
        // 0.001° of latitude is about 111 m.
        let call = NewCall {
            location: LatLon::from_lat_lon(60.0, 10.0).unwrap(),
            incident_type: StructureFire,
            at: t(600),
        };
        let incidents = [
            open(1, 60.003, 10.0, FireAlarm, 500), // ~334 m, related, in time: yes
            open(2, 60.001, 10.0, StructureFire, 590), // ~111 m, same type: yes, first
            open(3, 60.0, 10.0, Burglary, 590),    // same place, unrelated type: no
            open(4, 60.01, 10.0, StructureFire, 590), // ~1.1 km: no
            open(5, 60.0, 10.0, StructureFire, -1500), // 35 min before: no
            // 0.008° of longitude at 60° N is ~445 m (it would be ~890 m at the equator, and
            // Euclidean on degrees would say 0.008): yes.
            open(6, 60.0, 10.008, VehicleFire, 600),
            // 0.01° of longitude at 60° N is ~556 m: no.
            open(7, 60.0, 10.01, StructureFire, 600),
        ];
        let found = suggest_duplicates(&incidents, &call, &DuplicateWindow::DEFAULT);
        let ids: Vec<u128> = found
            .iter()
            .map(|s| s.incident.as_uuid().as_u128())
            .collect();
        assert_eq!(ids, vec![2, 1, 6]);
        assert!(
            (found[0].distance_m - 111.2).abs() < 1.0,
            "{}",
            found[0].distance_m
        );
        assert!(found[0].same_type && !found[1].same_type);
        assert_eq!(found[1].age_s, 100);
    }

    #[test]
    fn closed_incidents_are_not_candidates() {
        use crate::decision::Aggregate;
        use crate::incident::{IncidentCommand, IncidentState, ReportSource};
        use crate::value::{CallerDetails, Disposition, Priority};
        let id = IncidentId::from_uuid(Uuid::from_u128(1));
        let (state, _) = IncidentState::default()
            .execute(IncidentCommand::Report {
                incident_id: id,
                source: ReportSource::Hotline,
                location: LatLon::from_lat_lon(1.0, 2.0).unwrap(),
                incident_type: IncidentType::Medical,
                priority: Priority::P3,
                caller: CallerDetails::default(),
                call_received_at: t(0),
                at: t(10),
            })
            .unwrap();
        let open = OpenIncident::from_incident(state.incident.as_ref().unwrap()).unwrap();
        assert_eq!((open.id, open.reported_at), (id, t(10)));
        let (closed, _) = state
            .execute(IncidentCommand::Close {
                disposition: Disposition::Resolved,
                at: t(20),
            })
            .unwrap();
        assert_eq!(
            OpenIncident::from_incident(closed.incident.as_ref().unwrap()),
            None
        );
    }

    #[test]
    fn windows_refuse_nonsense() {
        let table = [
            (f64::NAN, 60, "NaN distance"),
            (f64::INFINITY, 60, "infinite distance"),
            (-1.0, 60, "negative distance"),
            (100.0, -1, "negative age"),
        ];
        for (d, a, why) in table {
            assert!(DuplicateWindow::new(d, a).is_err(), "{why}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6475_706c),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Against a brute-force oracle: exactly the related incidents inside both limits are
        /// suggested, sorted by distance.
        #[test]
        fn matches_the_oracle(
            seeds in proptest::collection::vec((-0.02f64..0.02, -0.02f64..0.02, 0usize..19, -3600i64..3600), 0..40),
            call_type in 0usize..19,
            max_distance_m in 0.0f64..3000.0,
            max_age_s in 0i64..3600,
        ) {
            let base = (45.0, 7.0);
            let incidents: Vec<OpenIncident> = seeds
                .iter()
                .enumerate()
                .map(|(i, (dlat, dlon, ty, s))| open(i as u128, base.0 + dlat, base.1 + dlon, IncidentType::ALL[*ty], *s))
                .collect();
            let call = NewCall {
                location: LatLon::from_lat_lon(base.0, base.1).unwrap(),
                incident_type: IncidentType::ALL[call_type],
                at: t(0),
            };
            let window = DuplicateWindow::new(max_distance_m, max_age_s).unwrap();
            let found = suggest_duplicates(&incidents, &call, &window);
            let mut expected: Vec<IncidentId> = Vec::new();
            for o in &incidents {
                let d = o.location.haversine_distance_m(call.location);
                let age = (call.at - o.reported_at).num_seconds().abs();
                if o.incident_type.is_related_to(call.incident_type) && d <= max_distance_m && age <= max_age_s {
                    expected.push(o.id);
                }
            }
            let mut got: Vec<IncidentId> = found.iter().map(|s| s.incident).collect();
            got.sort();
            expected.sort();
            prop_assert_eq!(got, expected);
            prop_assert!(found.windows(2).all(|w| w[0].distance_m <= w[1].distance_m));
        }
    }
}
