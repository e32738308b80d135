//! Dispatch rules as data: which incidents are dispatched without waiting for an operator,
//! when a more urgent incident may take a unit already sent to a less urgent one, and how
//! long a task may wait for its acknowledgement before the incident is planned again.
//!
//! Rules only say what is allowed; the recommendation still picks the units, and every
//! automatic action is recorded in the log with the rule that allowed it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::index::{UnitIndex, Whereabouts};
use super::recommend::{IncidentSpec, Shortfall};
use crate::ids::{IncidentId, UnitId};
use crate::unit::UnitStatus;
use crate::value::{IncidentSource, IncidentType, Priority, UnitKind};

/// Default time a pushed task may wait for the device's acknowledgement.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Dispatch without an operator for matching incidents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoDispatchRule {
    /// Shown in the log and to operators.
    pub name: String,
    /// Incident types it applies to; empty for any.
    #[serde(default)]
    pub incident_types: Vec<IncidentType>,
    /// Sources it applies to; empty for any.
    #[serde(default)]
    pub sources: Vec<IncidentSource>,
    /// The least urgent priority it applies to (P1: only P1).
    pub up_to_priority: Priority,
}

/// Lets an incident take a unit already sent to a less urgent one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreemptionRule {
    /// Shown in the log and to operators.
    pub name: String,
    /// The least urgent priority that may take a unit (P1: only P1 incidents).
    pub for_up_to_priority: Priority,
    /// The most urgent priority a unit may be taken from (P4: from P4 and P5 incidents).
    pub from_priority_or_lower: Priority,
    /// Unit kinds it applies to; empty for any.
    #[serde(default)]
    pub kinds: Vec<UnitKind>,
}

/// The dispatch rules of a centre.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchRules {
    /// Automatic dispatch.
    #[serde(default)]
    pub auto_dispatch: Vec<AutoDispatchRule>,
    /// Preemption.
    #[serde(default)]
    pub preemption: Vec<PreemptionRule>,
    /// Seconds a task may wait for its acknowledgement.
    #[serde(default = "default_ack_timeout_s")]
    pub ack_timeout_s: u64,
}

fn default_ack_timeout_s() -> u64 {
    DEFAULT_ACK_TIMEOUT.as_secs()
}

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML of the right shape.
    #[error("dispatch rules: {0}")]
    Parse(#[from] toml::de::Error),
    /// Inconsistent.
    #[error("dispatch rules: {0}")]
    Invalid(String),
}

impl Default for DispatchRules {
    /// A P1 fire alarm from a sensor is dispatched at once; a P1 incident may take a unit
    /// from a P4 or P5 one; tasks wait 60 s for their acknowledgement.
    fn default() -> Self {
        Self {
            auto_dispatch: vec![AutoDispatchRule {
                name: "P1 sensor fire alarm".into(),
                incident_types: vec![IncidentType::FireAlarm, IncidentType::StructureFire],
                sources: vec![IncidentSource::Sensor],
                up_to_priority: Priority::P1,
            }],
            preemption: vec![PreemptionRule {
                name: "P1 takes from P4-P5".into(),
                for_up_to_priority: Priority::P1,
                from_priority_or_lower: Priority::P4,
                kinds: vec![],
            }],
            ack_timeout_s: default_ack_timeout_s(),
        }
    }
}

impl DispatchRules {
    /// Reads rules from TOML and checks them.
    pub fn from_toml_str(text: &str) -> Result<Self, RulesError> {
        let rules: DispatchRules = toml::from_str(text)?;
        rules.check()?;
        Ok(rules)
    }

    fn check(&self) -> Result<(), RulesError> {
        if self.ack_timeout_s == 0 {
            return Err(RulesError::Invalid(
                "ack_timeout_s must be at least 1".into(),
            ));
        }
        for rule in &self.preemption {
            if rule.from_priority_or_lower <= rule.for_up_to_priority {
                return Err(RulesError::Invalid(format!(
                    "preemption rule {:?} would let {:?} take units from incidents as urgent as itself ({:?})",
                    rule.name, rule.for_up_to_priority, rule.from_priority_or_lower
                )));
            }
        }
        Ok(())
    }

    /// The time a task may wait for its acknowledgement.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_s)
    }

    /// The rule that lets this incident be dispatched without an operator, if any.
    pub fn auto_dispatch_rule(
        &self,
        incident_type: IncidentType,
        source: IncidentSource,
        priority: Priority,
    ) -> Option<&AutoDispatchRule> {
        self.auto_dispatch.iter().find(|r| {
            priority <= r.up_to_priority
                && (r.incident_types.is_empty() || r.incident_types.contains(&incident_type))
                && (r.sources.is_empty() || r.sources.contains(&source))
        })
    }

    fn preemption_rule(
        &self,
        for_priority: Priority,
        from_priority: Priority,
        kind: UnitKind,
    ) -> Option<&PreemptionRule> {
        self.preemption.iter().find(|r| {
            for_priority <= r.for_up_to_priority
                && from_priority >= r.from_priority_or_lower
                && (r.kinds.is_empty() || r.kinds.contains(&kind))
        })
    }
}

/// A unit committed to an incident, as the server knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commitment {
    /// The unit.
    pub unit: UnitId,
    /// The incident it is sent to.
    pub incident: IncidentId,
    /// That incident's priority.
    pub priority: Priority,
}

/// A unit a rule allows to be taken from a less urgent incident.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Preemption {
    /// The unit.
    pub unit: UnitId,
    /// Its kind.
    pub kind: UnitKind,
    /// The incident it leaves, which goes back in the queue.
    pub from_incident: IncidentId,
    /// Road travel time to the new incident, seconds.
    pub eta_s: f64,
    /// The rule that allows it.
    pub rule: String,
}

/// For each kind a recommendation could not fill, the units a rule allows to be taken from
/// less urgent incidents, fastest first, as many as are missing. Only units not yet on scene
/// (dispatched or en route) are taken.
pub fn preemptions(
    index: &UnitIndex,
    rules: &DispatchRules,
    incident: &IncidentSpec,
    priority: Priority,
    shortfall: &[Shortfall],
    committed: &[Commitment],
) -> Vec<Preemption> {
    let mut out = Vec::new();
    for short in shortfall {
        let missing = usize::from(short.wanted.saturating_sub(short.found));
        let mut options: Vec<(&Commitment, muster_geodata::LatLon, String)> = committed
            .iter()
            .filter_map(|c| {
                let unit = index.unit(c.unit)?;
                if unit.kind != short.kind
                    || !matches!(unit.status, UnitStatus::Dispatched | UnitStatus::EnRoute)
                {
                    return None;
                }
                let rule = rules.preemption_rule(priority, c.priority, unit.kind)?;
                let at = match unit.whereabouts {
                    Whereabouts::Fix { at, .. } | Whereabouts::Station { at, .. } => at,
                    Whereabouts::Unknown => return None,
                };
                Some((c, at, rule.name.clone()))
            })
            .collect();
        if options.is_empty() || missing == 0 {
            continue;
        }
        let sources: Vec<muster_geodata::LatLon> = options.iter().map(|o| o.1).collect();
        let Ok(times) = index.router().travel_times_to(&sources, incident.location) else {
            continue;
        };
        let mut ranked: Vec<(Duration, usize)> = times
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| t.ok().map(|t| (t, i)))
            .collect();
        ranked.sort();
        for (eta, i) in ranked.into_iter().take(missing) {
            let (c, _, rule) = &mut options[i];
            out.push(Preemption {
                unit: c.unit,
                kind: short.kind,
                from_incident: c.incident,
                eta_s: eta.as_secs_f64(),
                rule: std::mem::take(rule),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rules_dispatch_sensor_fire_alarms_at_p1_only() {
        let rules = DispatchRules::default();
        let fire = IncidentType::FireAlarm;
        assert!(
            rules
                .auto_dispatch_rule(fire, IncidentSource::Sensor, Priority::P1)
                .is_some()
        );
        assert!(
            rules
                .auto_dispatch_rule(fire, IncidentSource::Sensor, Priority::P2)
                .is_none()
        );
        assert!(
            rules
                .auto_dispatch_rule(fire, IncidentSource::Hotline, Priority::P1)
                .is_none()
        );
        assert!(
            rules
                .auto_dispatch_rule(IncidentType::Medical, IncidentSource::Sensor, Priority::P1)
                .is_none()
        );
    }

    #[test]
    fn preemption_only_goes_from_less_to_more_urgent_as_a_rule_allows() {
        let rules = DispatchRules::default();
        let k = UnitKind::Engine;
        assert!(
            rules
                .preemption_rule(Priority::P1, Priority::P4, k)
                .is_some()
        );
        assert!(
            rules
                .preemption_rule(Priority::P1, Priority::P5, k)
                .is_some()
        );
        assert!(
            rules
                .preemption_rule(Priority::P1, Priority::P3, k)
                .is_none()
        );
        assert!(
            rules
                .preemption_rule(Priority::P2, Priority::P5, k)
                .is_none()
        );
    }

    #[test]
    fn rules_load_from_toml_and_bad_rules_are_refused_with_the_reason() {
        let text = r#"
            ack_timeout_s = 45
            [[auto_dispatch]]
            name = "cardiac arrest"
            incident_types = ["cardiac_arrest"]
            up_to_priority = "P1"
        "#;
        let rules = DispatchRules::from_toml_str(text).unwrap();
        assert_eq!(rules.ack_timeout(), Duration::from_secs(45));
        assert!(rules.preemption.is_empty());
        assert!(
            rules
                .auto_dispatch_rule(
                    IncidentType::CardiacArrest,
                    IncidentSource::Hotline,
                    Priority::P1
                )
                .is_some()
        );

        for (why, bad) in [
            ("unknown key", "speed = 3"),
            ("zero timeout", "ack_timeout_s = 0"),
            (
                "unknown incident type",
                "[[auto_dispatch]]\nname = \"x\"\nincident_types = [\"alien\"]\nup_to_priority = \"P1\"",
            ),
            (
                "preempting an equally urgent incident",
                "[[preemption]]\nname = \"x\"\nfor_up_to_priority = \"P2\"\nfrom_priority_or_lower = \"P2\"",
            ),
        ] {
            let err = DispatchRules::from_toml_str(bad).expect_err(why);
            assert!(!err.to_string().is_empty(), "{why}");
        }
    }
}
