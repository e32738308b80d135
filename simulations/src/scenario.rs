//! Scenario files (TOML): the city, the fleet and its shifts, the call generator, scripted
//! events and the dispatch policy. [`Scenario::load`] parses and checks everything before a
//! drill runs; a mistake is a [`ScenarioError`] naming the file, the line and the key.
//!
//! ```toml
//! name = "Generated city, one day"
//! start = "2026-03-02T00:00:00Z"
//! duration_hours = 24
//! seed = 1
//!
//! [city]
//! generated = { size_km = 30, seed = 1 }   # or: bundled = "helsinki", or: file = "x.city"
//!
//! [dispatch]
//! policy = "closest"                        # or "joint" (min-cost over a batch window)
//!
//! [calls]
//! per_day = 5000
//! mix = [{ incident_type = "medical", weight = 60 }, { incident_type = "structure_fire", weight = 3 }]
//!
//! [[fleet]]
//! stations = "fire"                         # every fire station; or a station id
//! kind = "engine"
//! count = 2
//!
//! [[event]]
//! kind = "road_closure"
//! at_min = 600
//! until_min = 720
//! location = { lat = 55.0, lon = -30.0 }
//! radius_m = 400
//! ```
//!
//! Every key is documented on the fields below and in `docs/drills.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use muster_core::value::{Capability, IncidentType, Priority, UnitKind};
use muster_geodata::generate::{GenerateParams, generate};
use muster_geodata::model::StationKind;
use muster_geodata::{City, LatLon};
use serde::Deserialize;
use toml::Spanned;

/// The sample scenarios built into the binary, by name: `muster drill run helsinki` needs
/// no file.
pub const SAMPLES: [(&str, &str, &str); 2] = [
    (
        "helsinki",
        "simulations/scenarios/helsinki.toml",
        include_str!("../scenarios/helsinki.toml"),
    ),
    (
        "generated-30km",
        "simulations/scenarios/generated-30km.toml",
        include_str!("../scenarios/generated-30km.toml"),
    ),
];

/// Longest drill, hours.
pub const MAX_DURATION_HOURS: f64 = 24.0 * 14.0;
/// Most calls a day the generator accepts.
pub const MAX_CALLS_PER_DAY: f64 = 200_000.0;
/// Most units in one fleet entry.
pub const MAX_UNITS_PER_ENTRY: i64 = 1_000;

/// A scenario that could not be used, with where the mistake is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1 (0 when the whole file is meant).
    pub line: usize,
    /// The key, as a path (`fleet[2].station`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// The file as written

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    name: String,
    #[serde(default)]
    description: String,
    start: S<String>,
    duration_hours: S<f64>,
    #[serde(default)]
    seed: u64,
    city: CityFileSpec,
    #[serde(default)]
    dispatch: Option<DispatchSpec>,
    #[serde(default)]
    responders: Option<ResponderSpec>,
    calls: CallSpec,
    #[serde(default)]
    fleet: Vec<FleetSpec>,
    #[serde(default)]
    event: Vec<EventSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CityFileSpec {
    bundled: Option<S<String>>,
    file: Option<S<String>>,
    generated: Option<GeneratedSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GeneratedSpec {
    size_km: S<f64>,
    #[serde(default)]
    seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchSpec {
    policy: Option<S<String>>,
    batch_window_s: Option<S<f64>>,
    ack_timeout_s: Option<S<f64>>,
    entry_s: Option<S<[f64; 2]>>,
    dispatch_s: Option<S<[f64; 2]>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponderSpec {
    turnout_ems_s: Option<S<[f64; 2]>>,
    turnout_fire_s: Option<S<[f64; 2]>>,
    turnout_police_s: Option<S<[f64; 2]>>,
    ack_s: Option<S<[f64; 2]>>,
    position_interval_s: Option<S<f64>>,
    decline_probability: Option<S<f64>>,
    unreachable_probability: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    per_day: S<f64>,
    hourly: Option<S<Vec<f64>>>,
    #[serde(default)]
    mix: Vec<MixSpec>,
    #[serde(default)]
    areas: Vec<AreaSpec>,
    #[serde(default)]
    on_scene_min: BTreeMap<String, S<[f64; 2]>>,
    transport_probability: Option<S<f64>>,
    at_hospital_min: Option<S<[f64; 2]>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MixSpec {
    incident_type: S<String>,
    weight: S<f64>,
    priorities: Option<S<Vec<f64>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AreaSpec {
    district: S<String>,
    weight: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSpec {
    stations: S<String>,
    kind: S<String>,
    count: S<i64>,
    #[serde(default)]
    capabilities: Vec<S<String>>,
    shift: Option<ShiftSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftSpec {
    start_hour: S<f64>,
    hours: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointSpec {
    lat: f64,
    lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventSpec {
    kind: S<String>,
    at_min: S<f64>,
    until_min: Option<S<f64>>,
    duration_min: Option<S<f64>>,
    location: Option<S<PointSpec>>,
    radius_m: Option<S<f64>>,
    incident_type: Option<S<String>>,
    priority: Option<S<String>>,
    extra_calls: Option<S<i64>>,
    count: Option<S<i64>>,
    district: Option<S<String>>,
}

// ---------------------------------------------------------------------------------------------
// The checked scenario

/// How units are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Each incident as it comes: the nearest suitable units by road.
    Closest,
    /// Incidents waiting within a batch window are assigned together (minimum total
    /// priority-weighted ETA).
    Joint,
}

impl Policy {
    /// Parses `closest` or `joint`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "closest" => Some(Self::Closest),
            "joint" => Some(Self::Joint),
            _ => None,
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closest => "closest",
            Self::Joint => "joint",
        })
    }
}

/// A range of seconds (or minutes), drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Range {
    /// Least.
    pub min: f64,
    /// Most.
    pub max: f64,
}

/// Where the city comes from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CitySource {
    /// A city file.
    File(PathBuf),
    /// The generated city of this size and seed.
    Generated {
        /// Side, km.
        size_km: f64,
        /// Generator seed.
        seed: u64,
    },
}

/// Dispatch settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Dispatch {
    /// The policy.
    pub policy: Policy,
    /// Batch window of the joint policy, seconds.
    pub batch_window_s: f64,
    /// A task not acknowledged within this is taken back and given to another unit, seconds.
    pub ack_timeout_s: f64,
    /// From answering the call to entering the incident, seconds.
    pub entry_s: Range,
    /// From entry to dispatching, seconds.
    pub dispatch_s: Range,
}

/// Simulated responders.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Responders {
    /// Turnout of EMS units, seconds.
    pub turnout_ems_s: Range,
    /// Turnout of fire units, seconds.
    pub turnout_fire_s: Range,
    /// Turnout of police units, seconds.
    pub turnout_police_s: Range,
    /// Time to acknowledge a task, seconds.
    pub ack_s: Range,
    /// Position reports while moving, every this many seconds.
    pub position_interval_s: f64,
    /// Chance a crew declines a task.
    pub decline_probability: f64,
    /// Chance a crew's device does not answer (the task times out).
    pub unreachable_probability: f64,
}

/// One incident type of the call mix.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MixEntry {
    /// The type.
    pub incident_type: IncidentType,
    /// Relative weight.
    pub weight: f64,
    /// Relative weights of P1..P5.
    pub priorities: [f64; 5],
}

/// The call generator.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Calls {
    /// Mean calls a day.
    pub per_day: f64,
    /// Relative weights of the 24 hours of the day.
    pub hourly: [f64; 24],
    /// The incident type mix.
    pub mix: Vec<MixEntry>,
    /// Relative weights of districts (by id); empty: every address alike.
    pub areas: Vec<(String, f64)>,
    /// On-scene time by incident type, minutes; `default` for the others.
    pub on_scene_min: BTreeMap<String, Range>,
    /// Chance an ambulance transports a patient, for EMS-led incidents and collisions.
    pub transport_probability: f64,
    /// Time at hospital, minutes.
    pub at_hospital_min: Range,
}

impl Calls {
    /// On-scene time range for a type, minutes.
    pub fn on_scene(&self, t: IncidentType) -> Range {
        self.on_scene_min
            .get(t.code())
            .or_else(|| self.on_scene_min.get("default"))
            .copied()
            .unwrap_or(Range {
                min: 10.0,
                max: 40.0,
            })
    }
}

/// Units of one kind at one station.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FleetEntry {
    /// The station id in the city.
    pub station: String,
    /// Where it is.
    #[serde(skip)]
    pub location: LatLon,
    /// The kind.
    pub kind: UnitKind,
    /// How many.
    pub count: u32,
    /// Capabilities.
    pub capabilities: BTreeSet<Capability>,
    /// Daily shift: start hour and length in hours; `None` for always on.
    pub shift: Option<(f64, f64)>,
}

/// A scripted event.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scripted {
    /// A large incident (with its full run card) and related calls in the next half hour.
    MajorIncident {
        /// Minutes from the start.
        at_min: f64,
        /// Where.
        #[serde(skip)]
        location: LatLon,
        /// Type.
        incident_type: IncidentType,
        /// Priority.
        priority: Priority,
        /// Further calls nearby.
        extra_calls: u32,
    },
    /// Roads within a radius closed for a while.
    RoadClosure {
        /// Minutes from the start.
        at_min: f64,
        /// Minutes from the start when it reopens.
        until_min: f64,
        /// Centre.
        #[serde(skip)]
        location: LatLon,
        /// Radius, metres.
        radius_m: f64,
    },
    /// Many sensors alarming within a few minutes (a storm).
    SensorStorm {
        /// Minutes from the start.
        at_min: f64,
        /// Over how many minutes.
        duration_min: f64,
        /// How many alarms.
        count: u32,
        /// In which district (`None`: anywhere).
        district: Option<String>,
        /// The incident type the sensors report.
        incident_type: IncidentType,
    },
}

/// A checked scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scenario {
    /// The file it came from.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// What it is about.
    pub description: String,
    /// Virtual start.
    pub start: DateTime<Utc>,
    /// Length, hours.
    pub duration_hours: f64,
    /// The seed in the file (a command line may override it).
    pub seed: u64,
    /// The city.
    pub city_source: CitySource,
    /// Dispatch settings.
    pub dispatch: Dispatch,
    /// Responder behaviour.
    pub responders: Responders,
    /// The call generator.
    pub calls: Calls,
    /// The fleet.
    pub fleet: Vec<FleetEntry>,
    /// Scripted events.
    pub events: Vec<Scripted>,
    /// The city.
    #[serde(skip)]
    pub city: Arc<City>,
}

// ---------------------------------------------------------------------------------------------
// Loading and checking

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            key: key.to_owned(),
            message: message.into(),
        })
    }

    fn non_negative(&self, v: &S<f64>, key: &str) -> Result<f64, ScenarioError> {
        let x = *v.get_ref();
        if !x.is_finite() || x < 0.0 {
            return self.err(
                v.span(),
                key,
                format!("must be a finite number >= 0, got {x}"),
            );
        }
        Ok(x)
    }

    fn positive(&self, v: &S<f64>, key: &str) -> Result<f64, ScenarioError> {
        let x = self.non_negative(v, key)?;
        if x == 0.0 {
            return self.err(v.span(), key, "must be greater than 0");
        }
        Ok(x)
    }

    fn probability(&self, v: &S<f64>, key: &str) -> Result<f64, ScenarioError> {
        let x = *v.get_ref();
        if !(0.0..=1.0).contains(&x) {
            return self.err(
                v.span(),
                key,
                format!("must be a probability from 0 to 1, got {x}"),
            );
        }
        Ok(x)
    }

    fn range(&self, v: &S<[f64; 2]>, key: &str) -> Result<Range, ScenarioError> {
        let [min, max] = *v.get_ref();
        if !(min.is_finite() && max.is_finite() && min >= 0.0 && min <= max) {
            return self.err(
                v.span(),
                key,
                format!("must be [least, most] with 0 <= least <= most, got [{min}, {max}]"),
            );
        }
        Ok(Range { min, max })
    }

    fn opt_range(
        &self,
        v: &Option<S<[f64; 2]>>,
        key: &str,
        default: [f64; 2],
    ) -> Result<Range, ScenarioError> {
        match v {
            Some(v) => self.range(v, key),
            None => Ok(Range {
                min: default[0],
                max: default[1],
            }),
        }
    }

    fn weights(&self, v: &S<Vec<f64>>, key: &str, len: usize) -> Result<Vec<f64>, ScenarioError> {
        let w = v.get_ref();
        if w.len() != len {
            return self.err(
                v.span(),
                key,
                format!("needs {len} weights, got {}", w.len()),
            );
        }
        if let Some(x) = w.iter().find(|x| !x.is_finite() || **x < 0.0) {
            return self.err(
                v.span(),
                key,
                format!("weights must be finite and >= 0, got {x}"),
            );
        }
        if w.iter().sum::<f64>() <= 0.0 {
            return self.err(v.span(), key, "at least one weight must be greater than 0");
        }
        Ok(w.clone())
    }

    fn incident_type(&self, v: &S<String>, key: &str) -> Result<IncidentType, ScenarioError> {
        IncidentType::parse(v.get_ref()).or_else(|e| self.err(v.span(), key, e.to_string()))
    }

    fn point(&self, v: &S<PointSpec>, key: &str, city: &City) -> Result<LatLon, ScenarioError> {
        let p = v.get_ref();
        let point = LatLon::from_lat_lon(p.lat, p.lon)
            .or_else(|e| self.err(v.span(), key, e.to_string()))?;
        if !city.meta.bounds.contains(point) {
            return self.err(
                v.span(),
                key,
                format!(
                    "({}, {}) is outside the city {:?} (bounds {:.5},{:.5} to {:.5},{:.5})",
                    p.lat,
                    p.lon,
                    city.meta.name,
                    city.meta.bounds.south_west.lat_deg(),
                    city.meta.bounds.south_west.lon_deg(),
                    city.meta.bounds.north_east.lat_deg(),
                    city.meta.bounds.north_east.lon_deg()
                ),
            );
        }
        Ok(point)
    }

    fn district(&self, v: &S<String>, key: &str, city: &City) -> Result<String, ScenarioError> {
        let id = v.get_ref();
        if city.districts.iter().any(|d| &d.id == id) {
            Ok(id.clone())
        } else {
            let known: Vec<&str> = city.districts.iter().map(|d| d.id.as_str()).collect();
            self.err(
                v.span(),
                key,
                format!(
                    "district {id:?} does not exist in the city; known: {}",
                    known.join(", ")
                ),
            )
        }
    }
}

fn whole_file(file: &Path, message: impl Into<String>) -> ScenarioError {
    ScenarioError {
        file: file.to_owned(),
        line: 0,
        key: String::new(),
        message: message.into(),
    }
}

/// Default call mix: roughly the share of a European fire and EMS service's calls.
fn default_mix() -> Vec<MixEntry> {
    use IncidentType::*;
    let p = |w: [f64; 5]| w;
    vec![
        MixEntry {
            incident_type: Medical,
            weight: 55.0,
            priorities: p([10.0, 30.0, 40.0, 15.0, 5.0]),
        },
        MixEntry {
            incident_type: CardiacArrest,
            weight: 2.0,
            priorities: p([1.0, 0.0, 0.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: TrafficCollision,
            weight: 8.0,
            priorities: p([15.0, 40.0, 45.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: FireAlarm,
            weight: 10.0,
            priorities: p([0.0, 30.0, 70.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: StructureFire,
            weight: 3.0,
            priorities: p([40.0, 60.0, 0.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: VehicleFire,
            weight: 3.0,
            priorities: p([0.0, 50.0, 50.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: Assault,
            weight: 7.0,
            priorities: p([10.0, 50.0, 40.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: Burglary,
            weight: 7.0,
            priorities: p([0.0, 10.0, 40.0, 50.0, 0.0]),
        },
        MixEntry {
            incident_type: Overdose,
            weight: 3.0,
            priorities: p([30.0, 50.0, 20.0, 0.0, 0.0]),
        },
        MixEntry {
            incident_type: Rescue,
            weight: 2.0,
            priorities: p([30.0, 50.0, 20.0, 0.0, 0.0]),
        },
    ]
}

/// Default hourly weights: quiet at night, busiest in the afternoon and evening.
pub const DEFAULT_HOURLY: [f64; 24] = [
    2.6, 2.2, 1.9, 1.6, 1.4, 1.5, 2.0, 3.0, 4.0, 4.6, 5.0, 5.2, 5.3, 5.3, 5.4, 5.6, 5.8, 5.9, 5.8,
    5.4, 4.9, 4.3, 3.7, 3.1,
];

impl Scenario {
    /// Reads, parses and checks a scenario file, and loads (or generates) its city.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| whole_file(path, format!("cannot be read: {e}")))?;
        Self::parse(path, &text)
    }

    /// A sample scenario built into the binary (`helsinki`, `generated-30km`) when `arg` names
    /// one and no file of that name exists; otherwise the file at `arg`.
    pub fn load_file_or_sample(arg: &Path) -> Result<Scenario, ScenarioError> {
        if !arg.exists()
            && let Some((_, path, text)) =
                SAMPLES.iter().find(|(name, _, _)| arg.as_os_str() == *name)
        {
            return Self::parse(Path::new(path), text);
        }
        Self::load(arg)
    }

    /// Parses and checks a scenario given as text; `path` names it in errors and anchors
    /// relative city files.
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let c = Checker { file: path, text };
        let spec: FileSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| c.line_of(s.start));
            let message = e.message().to_owned();
            let key = message
                .split('`')
                .nth(1)
                .filter(|_| {
                    message.starts_with("unknown field") || message.starts_with("missing field")
                })
                .unwrap_or("")
                .to_owned();
            ScenarioError {
                file: path.to_owned(),
                line,
                key,
                message,
            }
        })?;

        let start = DateTime::parse_from_rfc3339(spec.start.get_ref())
            .map(|d| d.with_timezone(&Utc))
            .or_else(|e| {
                c.err(
                    spec.start.span(),
                    "start",
                    format!("is not an RFC 3339 time: {e}"),
                )
            })?;
        let duration_hours = c.positive(&spec.duration_hours, "duration_hours")?;
        if duration_hours > MAX_DURATION_HOURS {
            return c.err(
                spec.duration_hours.span(),
                "duration_hours",
                format!("at most {MAX_DURATION_HOURS} hours"),
            );
        }

        // The city first: the rest is checked against it.
        let (city_source, city) = load_city(&c, &spec.city)?;

        let d = spec.dispatch.as_ref();
        let policy = match d.and_then(|d| d.policy.as_ref()) {
            None => Policy::Closest,
            Some(p) => Policy::parse(p.get_ref()).map_or_else(
                || {
                    c.err(
                        p.span(),
                        "dispatch.policy",
                        format!("{:?} is not a policy; known: closest, joint", p.get_ref()),
                    )
                },
                Ok,
            )?,
        };
        let dispatch = Dispatch {
            policy,
            batch_window_s: match d.and_then(|d| d.batch_window_s.as_ref()) {
                Some(v) => c.positive(v, "dispatch.batch_window_s")?,
                None => 20.0,
            },
            ack_timeout_s: match d.and_then(|d| d.ack_timeout_s.as_ref()) {
                Some(v) => c.positive(v, "dispatch.ack_timeout_s")?,
                None => 60.0,
            },
            entry_s: c.opt_range(
                &d.and_then(|d| d.entry_s.clone()),
                "dispatch.entry_s",
                [15.0, 45.0],
            )?,
            dispatch_s: c.opt_range(
                &d.and_then(|d| d.dispatch_s.clone()),
                "dispatch.dispatch_s",
                [5.0, 35.0],
            )?,
        };

        let r = spec.responders.as_ref();
        let responders = Responders {
            turnout_ems_s: c.opt_range(
                &r.and_then(|r| r.turnout_ems_s.clone()),
                "responders.turnout_ems_s",
                [25.0, 75.0],
            )?,
            turnout_fire_s: c.opt_range(
                &r.and_then(|r| r.turnout_fire_s.clone()),
                "responders.turnout_fire_s",
                [40.0, 95.0],
            )?,
            turnout_police_s: c.opt_range(
                &r.and_then(|r| r.turnout_police_s.clone()),
                "responders.turnout_police_s",
                [10.0, 40.0],
            )?,
            ack_s: c.opt_range(
                &r.and_then(|r| r.ack_s.clone()),
                "responders.ack_s",
                [3.0, 15.0],
            )?,
            position_interval_s: match r.and_then(|r| r.position_interval_s.as_ref()) {
                Some(v) => {
                    let x = c.positive(v, "responders.position_interval_s")?;
                    if !(1.0..=300.0).contains(&x) {
                        return c.err(
                            v.span(),
                            "responders.position_interval_s",
                            "must be 1 to 300 seconds",
                        );
                    }
                    x
                }
                None => 30.0,
            },
            decline_probability: match r.and_then(|r| r.decline_probability.as_ref()) {
                Some(v) => c.probability(v, "responders.decline_probability")?,
                None => 0.02,
            },
            unreachable_probability: match r.and_then(|r| r.unreachable_probability.as_ref()) {
                Some(v) => c.probability(v, "responders.unreachable_probability")?,
                None => 0.01,
            },
        };

        let calls = check_calls(&c, &spec.calls, &city)?;
        let fleet = check_fleet(&c, &spec.fleet, &city)?;
        let events = check_events(&c, &spec.event, &city, duration_hours)?;

        Ok(Scenario {
            path: path.to_owned(),
            name: spec.name,
            description: spec.description,
            start,
            duration_hours,
            seed: spec.seed,
            city_source,
            dispatch,
            responders,
            calls,
            fleet,
            events,
            city,
        })
    }

    /// Total units in the fleet.
    pub fn unit_count(&self) -> u32 {
        self.fleet.iter().map(|f| f.count).sum()
    }
}

fn load_city(
    c: &Checker<'_>,
    spec: &CityFileSpec,
) -> Result<(CitySource, Arc<City>), ScenarioError> {
    let given = [
        spec.bundled.is_some(),
        spec.file.is_some(),
        spec.generated.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        let line = c.text.find("[city]").map_or(0, |o| c.line_of(o));
        return Err(ScenarioError {
            file: c.file.to_owned(),
            line,
            key: "city".into(),
            message: "give exactly one of bundled, file or generated".into(),
        });
    }
    let from_file = |path: PathBuf, span: std::ops::Range<usize>, key: &str| {
        muster_geodata::format::load(&path)
            .map(|city| (CitySource::File(path.clone()), Arc::new(city)))
            .or_else(|e| c.err(span, key, e.to_string()))
    };
    if let Some(b) = &spec.bundled {
        return match b.get_ref().as_str() {
            name @ "helsinki" => match muster_geodata::format::bundled(name) {
                Some(Ok(city)) => Ok((
                    CitySource::File(PathBuf::from("geodata/cities/helsinki.city")),
                    Arc::new(city),
                )),
                Some(Err(e)) => c.err(b.span(), "city.bundled", e.to_string()),
                None => c.err(b.span(), "city.bundled", "not bundled".to_string()),
            },
            other => c.err(
                b.span(),
                "city.bundled",
                format!("{other:?} is not a bundled city; known: helsinki"),
            ),
        };
    }
    if let Some(f) = &spec.file {
        let base = c.file.parent().unwrap_or(Path::new("."));
        return from_file(base.join(f.get_ref()), f.span(), "city.file");
    }
    let g = spec.generated.as_ref().expect("counted above");
    let size_km = *g.size_km.get_ref();
    let params = GenerateParams::new(size_km, g.seed)
        .or_else(|e| c.err(g.size_km.span(), "city.generated.size_km", e.to_string()))?;
    Ok((
        CitySource::Generated {
            size_km,
            seed: g.seed,
        },
        Arc::new(generate(params)),
    ))
}

fn check_calls(c: &Checker<'_>, spec: &CallSpec, city: &City) -> Result<Calls, ScenarioError> {
    let per_day = c.non_negative(&spec.per_day, "calls.per_day")?;
    if per_day > MAX_CALLS_PER_DAY {
        return c.err(
            spec.per_day.span(),
            "calls.per_day",
            format!("at most {MAX_CALLS_PER_DAY} calls a day"),
        );
    }
    let hourly = match &spec.hourly {
        Some(h) => {
            let w = c.weights(h, "calls.hourly", 24)?;
            let mut a = [0.0; 24];
            a.copy_from_slice(&w);
            a
        }
        None => DEFAULT_HOURLY,
    };
    let mut mix = Vec::new();
    for (i, m) in spec.mix.iter().enumerate() {
        let key = format!("calls.mix[{i}]");
        let incident_type = c.incident_type(&m.incident_type, &format!("{key}.incident_type"))?;
        let weight = c.non_negative(&m.weight, &format!("{key}.weight"))?;
        let priorities = match &m.priorities {
            Some(p) => {
                let w = c.weights(p, &format!("{key}.priorities"), 5)?;
                [w[0], w[1], w[2], w[3], w[4]]
            }
            None => default_mix()
                .into_iter()
                .find(|d| d.incident_type == incident_type)
                .map_or([10.0, 30.0, 40.0, 15.0, 5.0], |d| d.priorities),
        };
        mix.push(MixEntry {
            incident_type,
            weight,
            priorities,
        });
    }
    if mix.is_empty() {
        mix = default_mix();
    } else if mix.iter().map(|m| m.weight).sum::<f64>() <= 0.0 {
        return c.err(
            spec.mix[0].weight.span(),
            "calls.mix",
            "at least one weight must be greater than 0",
        );
    }
    let mut areas = Vec::new();
    for (i, a) in spec.areas.iter().enumerate() {
        let key = format!("calls.areas[{i}]");
        let district = c.district(&a.district, &format!("{key}.district"), city)?;
        let weight = c.non_negative(&a.weight, &format!("{key}.weight"))?;
        areas.push((district, weight));
    }
    let mut on_scene_min = BTreeMap::new();
    for (name, range) in &spec.on_scene_min {
        let key = format!("calls.on_scene_min.{name}");
        if name != "default" && IncidentType::parse(name).is_err() {
            return c.err(
                range.span(),
                &key,
                format!("{name:?} is neither `default` nor an incident type"),
            );
        }
        on_scene_min.insert(name.clone(), c.range(range, &key)?);
    }
    Ok(Calls {
        per_day,
        hourly,
        mix,
        areas,
        on_scene_min,
        transport_probability: match &spec.transport_probability {
            Some(v) => c.probability(v, "calls.transport_probability")?,
            None => 0.6,
        },
        at_hospital_min: c.opt_range(
            &spec.at_hospital_min,
            "calls.at_hospital_min",
            [10.0, 25.0],
        )?,
    })
}

fn check_fleet(
    c: &Checker<'_>,
    spec: &[FleetSpec],
    city: &City,
) -> Result<Vec<FleetEntry>, ScenarioError> {
    let mut fleet = Vec::new();
    for (i, f) in spec.iter().enumerate() {
        let key = format!("fleet[{i}]");
        let kind = UnitKind::parse(f.kind.get_ref())
            .or_else(|e| c.err(f.kind.span(), &format!("{key}.kind"), e.to_string()))?;
        let count = *f.count.get_ref();
        if !(0..=MAX_UNITS_PER_ENTRY).contains(&count) {
            return c.err(
                f.count.span(),
                &format!("{key}.count"),
                format!("must be 0 to {MAX_UNITS_PER_ENTRY}, got {count}"),
            );
        }
        let mut capabilities = BTreeSet::new();
        for (j, cap) in f.capabilities.iter().enumerate() {
            capabilities.insert(Capability::parse(cap.get_ref()).or_else(|e| {
                c.err(
                    cap.span(),
                    &format!("{key}.capabilities[{j}]"),
                    e.to_string(),
                )
            })?);
        }
        let shift = match &f.shift {
            None => None,
            Some(s) => {
                let start = c.non_negative(&s.start_hour, &format!("{key}.shift.start_hour"))?;
                if start >= 24.0 {
                    return c.err(
                        s.start_hour.span(),
                        &format!("{key}.shift.start_hour"),
                        "must be below 24",
                    );
                }
                let hours = c.positive(&s.hours, &format!("{key}.shift.hours"))?;
                if hours > 24.0 {
                    return c.err(s.hours.span(), &format!("{key}.shift.hours"), "at most 24");
                }
                Some((start, hours))
            }
        };
        let which = f.stations.get_ref().as_str();
        let stations: Vec<_> = match which {
            "fire" => city
                .stations
                .iter()
                .filter(|s| s.kind == StationKind::Fire)
                .collect(),
            "ambulance" => city
                .stations
                .iter()
                .filter(|s| s.kind == StationKind::Ambulance)
                .collect(),
            "police" => city
                .stations
                .iter()
                .filter(|s| s.kind == StationKind::Police)
                .collect(),
            "all" => city.stations.iter().collect(),
            id => city
                .stations
                .iter()
                .filter(|s| s.id.eq_ignore_ascii_case(id))
                .collect(),
        };
        if stations.is_empty() {
            let known: Vec<&str> = city.stations.iter().map(|s| s.id.as_str()).collect();
            return c.err(
                f.stations.span(),
                &format!("{key}.stations"),
                format!(
                    "no station {which:?} in the city; use fire, ambulance, police, all or a station id: {}",
                    known.join(", ")
                ),
            );
        }
        for s in stations {
            fleet.push(FleetEntry {
                station: s.id.clone(),
                location: s.location,
                kind,
                count: count as u32,
                capabilities: capabilities.clone(),
                shift,
            });
        }
    }
    if fleet.iter().map(|f| f.count).sum::<u32>() == 0 {
        return Err(whole_file(
            c.file,
            "the fleet has no units: add [[fleet]] entries",
        ));
    }
    Ok(fleet)
}

fn check_events(
    c: &Checker<'_>,
    spec: &[EventSpec],
    city: &City,
    hours: f64,
) -> Result<Vec<Scripted>, ScenarioError> {
    let mut events = Vec::new();
    for (i, e) in spec.iter().enumerate() {
        let key = format!("event[{i}]");
        let at_min = c.non_negative(&e.at_min, &format!("{key}.at_min"))?;
        if at_min > hours * 60.0 {
            return c.err(
                e.at_min.span(),
                &format!("{key}.at_min"),
                format!("is after the drill's end ({} min)", hours * 60.0),
            );
        }
        let need = |what: &str| -> ScenarioError {
            c.err::<()>(
                e.kind.span(),
                &format!("{key}.{what}"),
                format!("kind {:?} needs `{what}`", e.kind.get_ref()),
            )
            .expect_err("err always fails")
        };
        let unused = |present: bool, what: &str| -> Result<(), ScenarioError> {
            if present {
                c.err(
                    e.kind.span(),
                    &format!("{key}.{what}"),
                    format!("is not used by kind {:?}", e.kind.get_ref()),
                )
            } else {
                Ok(())
            }
        };
        let event = match e.kind.get_ref().as_str() {
            "major_incident" => {
                let Some(loc) = &e.location else {
                    return Err(need("location"));
                };
                let Some(t) = &e.incident_type else {
                    return Err(need("incident_type"));
                };
                unused(e.until_min.is_some(), "until_min")?;
                unused(e.radius_m.is_some(), "radius_m")?;
                unused(e.count.is_some(), "count")?;
                unused(e.district.is_some(), "district")?;
                unused(e.duration_min.is_some(), "duration_min")?;
                let priority = match &e.priority {
                    Some(p) => Priority::parse(p.get_ref()).or_else(|err| {
                        c.err(p.span(), &format!("{key}.priority"), err.to_string())
                    })?,
                    None => Priority::P1,
                };
                let extra_calls = match &e.extra_calls {
                    Some(n) if !(0..=500).contains(n.get_ref()) => {
                        return c.err(n.span(), &format!("{key}.extra_calls"), "must be 0 to 500");
                    }
                    Some(n) => *n.get_ref() as u32,
                    None => 0,
                };
                Scripted::MajorIncident {
                    at_min,
                    location: c.point(loc, &format!("{key}.location"), city)?,
                    incident_type: c.incident_type(t, &format!("{key}.incident_type"))?,
                    priority,
                    extra_calls,
                }
            }
            "road_closure" => {
                let Some(loc) = &e.location else {
                    return Err(need("location"));
                };
                let Some(until) = &e.until_min else {
                    return Err(need("until_min"));
                };
                let Some(radius) = &e.radius_m else {
                    return Err(need("radius_m"));
                };
                unused(e.incident_type.is_some(), "incident_type")?;
                unused(e.count.is_some(), "count")?;
                let until_min = c.non_negative(until, &format!("{key}.until_min"))?;
                if until_min <= at_min {
                    return c.err(
                        until.span(),
                        &format!("{key}.until_min"),
                        "must be after at_min",
                    );
                }
                let radius_m = c.positive(radius, &format!("{key}.radius_m"))?;
                if radius_m > 5_000.0 {
                    return c.err(radius.span(), &format!("{key}.radius_m"), "at most 5000 m");
                }
                Scripted::RoadClosure {
                    at_min,
                    until_min,
                    location: c.point(loc, &format!("{key}.location"), city)?,
                    radius_m,
                }
            }
            "sensor_storm" => {
                let Some(n) = &e.count else {
                    return Err(need("count"));
                };
                unused(e.location.is_some(), "location")?;
                unused(e.radius_m.is_some(), "radius_m")?;
                if !(1..=10_000).contains(n.get_ref()) {
                    return c.err(n.span(), &format!("{key}.count"), "must be 1 to 10000");
                }
                let duration_min = match &e.duration_min {
                    Some(v) => c.positive(v, &format!("{key}.duration_min"))?,
                    None => 10.0,
                };
                Scripted::SensorStorm {
                    at_min,
                    duration_min,
                    count: *n.get_ref() as u32,
                    district: e
                        .district
                        .as_ref()
                        .map(|d| c.district(d, &format!("{key}.district"), city))
                        .transpose()?,
                    incident_type: match &e.incident_type {
                        Some(t) => c.incident_type(t, &format!("{key}.incident_type"))?,
                        None => IncidentType::FireAlarm,
                    },
                }
            }
            other => {
                return c.err(
                    e.kind.span(),
                    &format!("{key}.kind"),
                    format!("{other:?} is not an event kind; known: major_incident, road_closure, sensor_storm"),
                );
            }
        };
        events.push(event);
    }
    Ok(events)
}
