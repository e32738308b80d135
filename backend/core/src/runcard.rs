//! Response plans (run cards) as data: an incident type, and optionally a priority, maps to
//! the unit kinds and counts to send. Loaded from TOML or JSON; [`ResponsePlans::default_set`]
//! covers every incident type for fire, EMS and police.
//!
//! ```toml
//! [[plan]]
//! incident_type = "structure_fire"
//! units = [{ kind = "engine", count = 3 }, { kind = "ladder", count = 1 }]
//!
//! [[plan]]
//! incident_type = "structure_fire"
//! priority = "P1"          # more specific: used for P1 structure fires
//! units = [{ kind = "engine", count = 4 }, { kind = "ladder", count = 2 }]
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::value::{IncidentType, Priority, UnitKind};

/// Most units of one kind a plan may ask for.
pub const MAX_UNITS_PER_KIND: u8 = 20;

/// A response plan file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunCardError {
    /// Not valid TOML, or not the shape of a plan file.
    #[error("response plans are not valid TOML: {0}")]
    Toml(String),
    /// Not valid JSON, or not the shape of a plan file.
    #[error("response plans are not valid JSON: {0}")]
    Json(String),
    /// Well-formed but contradictory or out of bounds.
    #[error("response plans are not valid: {0}")]
    Invalid(String),
}

/// Units of one kind a plan asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitRequirement {
    /// The kind.
    pub kind: UnitKind,
    /// How many, 1 to [`MAX_UNITS_PER_KIND`].
    pub count: u8,
}

/// One run card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsePlan {
    /// The incident type it answers.
    pub incident_type: IncidentType,
    /// The priority it is for; `None` for any priority without a plan of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// What to send.
    pub units: Vec<UnitRequirement>,
}

impl ResponsePlan {
    /// Units in all.
    pub fn total_units(&self) -> u32 {
        self.units.iter().map(|u| u32::from(u.count)).sum()
    }
}

/// A checked set of run cards: every plan sends at least one unit, counts are 1 to 20, a kind
/// appears once per plan, and no two plans have the same type and priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlanFile", into = "PlanFile")]
pub struct ResponsePlans {
    plans: Vec<ResponsePlan>,
}

/// The file shape: a list of `[[plan]]` tables (TOML) or `{"plan": [...]}` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The plans.
    #[serde(default)]
    pub plan: Vec<ResponsePlan>,
}

impl TryFrom<PlanFile> for ResponsePlans {
    type Error = RunCardError;
    fn try_from(file: PlanFile) -> Result<Self, Self::Error> {
        let mut keys = BTreeSet::new();
        for plan in &file.plan {
            let name = match plan.priority {
                Some(p) => format!("{} {p}", plan.incident_type),
                None => plan.incident_type.to_string(),
            };
            if !keys.insert((plan.incident_type, plan.priority)) {
                return Err(RunCardError::Invalid(format!(
                    "the plan for {name} is given twice"
                )));
            }
            if plan.units.is_empty() {
                return Err(RunCardError::Invalid(format!(
                    "the plan for {name} sends no unit"
                )));
            }
            let mut kinds = BTreeSet::new();
            for u in &plan.units {
                if !kinds.insert(u.kind) {
                    return Err(RunCardError::Invalid(format!(
                        "the plan for {name} lists {} twice; give one count",
                        u.kind
                    )));
                }
                if u.count == 0 || u.count > MAX_UNITS_PER_KIND {
                    return Err(RunCardError::Invalid(format!(
                        "the plan for {name} asks for {} {}; the count must be 1 to {MAX_UNITS_PER_KIND}",
                        u.count, u.kind
                    )));
                }
            }
        }
        Ok(Self { plans: file.plan })
    }
}

impl From<ResponsePlans> for PlanFile {
    fn from(p: ResponsePlans) -> Self {
        PlanFile { plan: p.plans }
    }
}

impl ResponsePlans {
    /// Parses a TOML plan file.
    pub fn from_toml_str(text: &str) -> Result<Self, RunCardError> {
        let file: PlanFile =
            toml::from_str(text).map_err(|e| RunCardError::Toml(e.message().to_owned()))?;
        Self::try_from(file)
    }

    /// Parses a JSON plan file.
    pub fn from_json_str(text: &str) -> Result<Self, RunCardError> {
        let file: PlanFile =
            serde_json::from_str(text).map_err(|e| RunCardError::Json(e.to_string()))?;
        Self::try_from(file)
    }

    /// The default plans, from [`DEFAULT_PLANS_TOML`].
    pub fn default_set() -> Self {
        Self::from_toml_str(DEFAULT_PLANS_TOML).expect("the bundled response plans are valid")
    }

    /// The plan for an incident: the one for its type and priority, else the one for its type.
    pub fn plan_for(
        &self,
        incident_type: IncidentType,
        priority: Priority,
    ) -> Option<&ResponsePlan> {
        let exact = self
            .plans
            .iter()
            .find(|p| p.incident_type == incident_type && p.priority == Some(priority));
        exact.or_else(|| {
            self.plans
                .iter()
                .find(|p| p.incident_type == incident_type && p.priority.is_none())
        })
    }

    /// All plans, in file order.
    pub fn plans(&self) -> &[ResponsePlan] {
        &self.plans
    }
}

/// The bundled default run cards, a starting point for a city's own.
pub const DEFAULT_PLANS_TOML: &str = r#"
# Fire
[[plan]]
incident_type = "structure_fire"
units = [{ kind = "engine", count = 3 }, { kind = "ladder", count = 1 }, { kind = "fire_command", count = 1 }, { kind = "bls_ambulance", count = 1 }]

[[plan]]
incident_type = "structure_fire"
priority = "P1"
units = [{ kind = "engine", count = 4 }, { kind = "ladder", count = 2 }, { kind = "heavy_rescue", count = 1 }, { kind = "fire_command", count = 1 }, { kind = "als_ambulance", count = 1 }]

[[plan]]
incident_type = "vehicle_fire"
units = [{ kind = "engine", count = 1 }]

[[plan]]
incident_type = "wildland_fire"
units = [{ kind = "brush", count = 2 }, { kind = "engine", count = 1 }, { kind = "tanker", count = 1 }]

[[plan]]
incident_type = "fire_alarm"
units = [{ kind = "engine", count = 1 }, { kind = "ladder", count = 1 }]

[[plan]]
incident_type = "gas_leak"
units = [{ kind = "engine", count = 1 }]

[[plan]]
incident_type = "hazmat"
units = [{ kind = "hazmat", count = 1 }, { kind = "engine", count = 2 }, { kind = "fire_command", count = 1 }, { kind = "als_ambulance", count = 1 }]

[[plan]]
incident_type = "rescue"
units = [{ kind = "heavy_rescue", count = 1 }, { kind = "engine", count = 1 }, { kind = "als_ambulance", count = 1 }]

[[plan]]
incident_type = "water_rescue"
units = [{ kind = "boat", count = 1 }, { kind = "engine", count = 1 }, { kind = "als_ambulance", count = 1 }]

[[plan]]
incident_type = "flooding"
units = [{ kind = "engine", count = 1 }]

[[plan]]
incident_type = "other"
units = [{ kind = "engine", count = 1 }]

# Fire, EMS and police together
[[plan]]
incident_type = "traffic_collision"
units = [{ kind = "engine", count = 1 }, { kind = "als_ambulance", count = 1 }, { kind = "patrol_car", count = 1 }]

[[plan]]
incident_type = "traffic_collision"
priority = "P1"
units = [{ kind = "heavy_rescue", count = 1 }, { kind = "engine", count = 1 }, { kind = "als_ambulance", count = 2 }, { kind = "patrol_car", count = 2 }]

# EMS
[[plan]]
incident_type = "medical"
units = [{ kind = "bls_ambulance", count = 1 }]

[[plan]]
incident_type = "medical"
priority = "P1"
units = [{ kind = "als_ambulance", count = 1 }, { kind = "engine", count = 1 }]

[[plan]]
incident_type = "cardiac_arrest"
units = [{ kind = "als_ambulance", count = 1 }, { kind = "engine", count = 1 }, { kind = "ems_supervisor", count = 1 }]

[[plan]]
incident_type = "overdose"
units = [{ kind = "als_ambulance", count = 1 }, { kind = "patrol_car", count = 1 }]

# Police
[[plan]]
incident_type = "assault"
units = [{ kind = "patrol_car", count = 2 }, { kind = "bls_ambulance", count = 1 }]

[[plan]]
incident_type = "burglary"
units = [{ kind = "patrol_car", count = 1 }]

[[plan]]
incident_type = "robbery"
units = [{ kind = "patrol_car", count = 2 }]

[[plan]]
incident_type = "disturbance"
units = [{ kind = "patrol_car", count = 2 }]

[[plan]]
incident_type = "shots_fired"
units = [{ kind = "patrol_car", count = 3 }, { kind = "police_supervisor", count = 1 }, { kind = "als_ambulance", count = 1 }]
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_covers_every_type_and_priority() {
        let plans = ResponsePlans::default_set();
        for t in IncidentType::ALL {
            for p in Priority::ALL {
                let plan = plans
                    .plan_for(*t, p)
                    .unwrap_or_else(|| panic!("no plan for {t} {p}"));
                assert!(plan.total_units() >= 1);
            }
        }
    }

    #[test]
    fn a_priority_plan_beats_the_general_one() {
        let plans = ResponsePlans::default_set();
        let p1 = plans
            .plan_for(IncidentType::StructureFire, Priority::P1)
            .unwrap();
        let p3 = plans
            .plan_for(IncidentType::StructureFire, Priority::P3)
            .unwrap();
        assert_eq!(p1.priority, Some(Priority::P1));
        assert_eq!(p3.priority, None);
        assert!(p1.total_units() > p3.total_units());
    }

    #[test]
    fn json_and_toml_load_the_same_plans() {
        let plans = ResponsePlans::default_set();
        let json = serde_json::to_string(&plans).unwrap();
        assert_eq!(ResponsePlans::from_json_str(&json).unwrap(), plans);
        let toml_text = toml::to_string(&plans).unwrap();
        assert_eq!(ResponsePlans::from_toml_str(&toml_text).unwrap(), plans);
    }

    #[test]
    fn bad_plan_files_are_refused() {
        let table = [
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = []",
                "a plan that sends nobody",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"bls_ambulance\", count = 0 }]",
                "a count of zero",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"bls_ambulance\", count = 21 }]",
                "over 20 of a kind",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"bls_ambulance\", count = -1 }]",
                "a negative count",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"bls_ambulance\", count = 1 }, { kind = \"bls_ambulance\", count = 2 }]",
                "a kind listed twice",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"bls_ambulance\", count = 1 }]\n[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"engine\", count = 1 }]",
                "two plans for the same type and priority",
            ),
            (
                "[[plan]]\nincident_type = \"alien_landing\"\nunits = [{ kind = \"engine\", count = 1 }]",
                "an unknown incident type",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"spaceship\", count = 1 }]",
                "an unknown unit kind",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\npriority = \"P9\"\nunits = [{ kind = \"engine\", count = 1 }]",
                "a priority off the scale",
            ),
            (
                "[[plan]]\nincident_type = \"medical\"\nunits = [{ kind = \"engine\", count = 1, crew = 4 }]",
                "an unknown field",
            ),
            ("[[plan]\nincident_type = ", "not TOML at all"),
        ];
        for (text, why) in table {
            assert!(ResponsePlans::from_toml_str(text).is_err(), "{why}");
        }
        assert!(
            ResponsePlans::from_json_str(
                "{\"plan\": [{\"incident_type\": \"medical\", \"units\": []}]}"
            )
            .is_err()
        );
        assert!(ResponsePlans::from_json_str("not json").is_err());
    }
}
