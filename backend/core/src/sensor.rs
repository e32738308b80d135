//! Sensors: the registry aggregate (id, kind, location, thresholds) and the alarm rule.
//!
//! Readings are not events: a sensor may report every second. What the log records is the
//! threshold crossings: [`SensorEvent::SensorAlarmRaised`] when a reading crosses a threshold
//! while no alarm is ongoing for that metric (one incident per ongoing alarm, not one per
//! reading), and [`SensorEvent::SensorAlarmCleared`] when a reading is back past the clearing
//! level. Between the two levels (hysteresis) nothing changes, so a value wobbling around the
//! threshold raises one alarm, not a storm.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::ids::{AlarmId, IncidentId, SensorId};
use crate::value::{IncidentType, InvalidValue, LatLon, MetricName, Priority, SensorKind, finite};

/// Which side of a threshold is the alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// Alarm when the value is at or above `raise_at`; cleared when below `clear_at`.
    Above,
    /// Alarm when the value is at or below `raise_at`; cleared when above `clear_at`.
    Below,
}

/// A checked threshold: finite levels, the clearing level on the safe side of the raising
/// level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThresholdSpec", into = "ThresholdSpec")]
pub struct Threshold {
    spec: ThresholdSpec,
}

/// A threshold as written in a sensor's configuration; [`Threshold::try_from`] checks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Threshold)]
pub struct ThresholdSpec {
    /// The measured quantity.
    pub metric: MetricName,
    /// Which side is the alarm.
    pub crossing: Crossing,
    /// The level that raises the alarm.
    pub raise_at: f64,
    /// The level that clears it (equal to `raise_at` for no hysteresis).
    pub clear_at: f64,
    /// The incident type to report.
    pub incident_type: IncidentType,
    /// The incident priority to report.
    pub priority: Priority,
}

impl utoipa::PartialSchema for Threshold {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <ThresholdSpec as utoipa::PartialSchema>::schema()
    }
}
impl utoipa::ToSchema for Threshold {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Threshold")
    }
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <ThresholdSpec as utoipa::ToSchema>::schemas(schemas);
    }
}

impl TryFrom<ThresholdSpec> for Threshold {
    type Error = InvalidValue;
    fn try_from(spec: ThresholdSpec) -> Result<Self, Self::Error> {
        finite("threshold raise_at", spec.raise_at)?;
        finite("threshold clear_at", spec.clear_at)?;
        let ok = match spec.crossing {
            Crossing::Above => spec.clear_at <= spec.raise_at,
            Crossing::Below => spec.clear_at >= spec.raise_at,
        };
        if !ok {
            return Err(InvalidValue {
                what: "threshold",
                reason: format!(
                    "for {} the clearing level {} must be on the safe side of the raising level {}",
                    spec.metric, spec.clear_at, spec.raise_at
                ),
            });
        }
        Ok(Self { spec })
    }
}

impl From<Threshold> for ThresholdSpec {
    fn from(t: Threshold) -> Self {
        t.spec
    }
}

impl Threshold {
    /// The settings.
    pub fn spec(&self) -> &ThresholdSpec {
        &self.spec
    }

    /// The measured quantity.
    pub fn metric(&self) -> &MetricName {
        &self.spec.metric
    }
}

/// One reading: a finite value of a metric at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    metric: MetricName,
    value: f64,
    at: DateTime<Utc>,
}

impl Reading {
    /// A reading; refuses NaN and infinities.
    pub fn new(metric: MetricName, value: f64, at: DateTime<Utc>) -> Result<Self, InvalidValue> {
        Ok(Self {
            metric,
            value: finite("reading", value)?,
            at,
        })
    }

    /// The metric.
    pub fn metric(&self) -> &MetricName {
        &self.metric
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// When it was measured.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// What a reading means for a metric's alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlarmStep {
    /// No alarm was ongoing and the reading crossed the raising level.
    Raise,
    /// An alarm was ongoing and the reading is past the clearing level.
    Clear,
    /// Nothing changes.
    Hold,
}

/// The alarm rule: given a threshold, whether an alarm is ongoing, and a value.
pub fn alarm_step(threshold: &Threshold, ongoing: bool, value: f64) -> AlarmStep {
    let t = &threshold.spec;
    let (raised, cleared) = match t.crossing {
        Crossing::Above => (value >= t.raise_at, value < t.clear_at),
        Crossing::Below => (value <= t.raise_at, value > t.clear_at),
    };
    match (ongoing, raised, cleared) {
        (false, true, _) => AlarmStep::Raise,
        (true, _, true) => AlarmStep::Clear,
        _ => AlarmStep::Hold,
    }
}

/// What happened to a sensor. Stored in the stream `sensor-<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum SensorEvent {
    /// A sensor joined the registry.
    SensorRegistered {
        /// Its id (also in the stream name).
        sensor_id: SensorId,
        /// What it is.
        kind: SensorKind,
        /// Where it is.
        location: LatLon,
        /// Its thresholds, at most one per metric.
        thresholds: Vec<Threshold>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The sensor was moved or its thresholds changed. Ongoing alarms go on, judged by the
    /// new thresholds from now on.
    SensorReconfigured {
        /// Where it is now.
        location: LatLon,
        /// Its thresholds now.
        thresholds: Vec<Threshold>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A reading crossed a threshold: an alarm starts and an incident is to be reported.
    SensorAlarmRaised {
        /// The alarm.
        alarm: AlarmId,
        /// The incident to report for it.
        incident: IncidentId,
        /// The metric.
        metric: MetricName,
        /// The reading.
        value: f64,
        /// The sensor's location, where the incident is.
        location: LatLon,
        /// The incident's type.
        incident_type: IncidentType,
        /// The incident's priority.
        priority: Priority,
        /// When the reading was taken.
        at: DateTime<Utc>,
    },
    /// A reading went back past the clearing level: the alarm ends.
    SensorAlarmCleared {
        /// The alarm.
        alarm: AlarmId,
        /// Its incident.
        incident: IncidentId,
        /// The metric.
        metric: MetricName,
        /// The reading.
        value: f64,
        /// When the reading was taken.
        at: DateTime<Utc>,
    },
}

/// What the registry or the ingest asks of a sensor.
#[derive(Clone, Debug, PartialEq)]
pub enum SensorCommand {
    /// Register a sensor.
    Register {
        /// Its id.
        sensor_id: SensorId,
        /// What it is.
        kind: SensorKind,
        /// Where.
        location: LatLon,
        /// Its thresholds, at most one per metric.
        thresholds: Vec<Threshold>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// Move the sensor or change its thresholds. A metric with an ongoing alarm keeps a
    /// threshold until the alarm clears.
    Reconfigure {
        /// Where it is now.
        location: LatLon,
        /// Its thresholds now, at most one per metric.
        thresholds: Vec<Threshold>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// A reading arrived. The ids are used only if it raises an alarm; the caller makes them
    /// (from the reading's idempotency key, so a resent reading raises the same alarm).
    Ingest {
        /// The reading.
        reading: Reading,
        /// The id for a new alarm.
        new_alarm: AlarmId,
        /// The id for the new alarm's incident.
        new_incident: IncidentId,
    },
}

/// An ongoing alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OngoingAlarm {
    /// The alarm.
    pub alarm: AlarmId,
    /// Its incident.
    pub incident: IncidentId,
    /// When it was raised.
    pub raised_at: DateTime<Utc>,
}

/// A registered sensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Sensor {
    /// Its id.
    pub id: SensorId,
    /// What it is.
    pub kind: SensorKind,
    /// Where.
    pub location: LatLon,
    /// Its thresholds.
    pub thresholds: Vec<Threshold>,
    /// Ongoing alarms, by metric.
    pub ongoing: BTreeMap<MetricName, OngoingAlarm>,
}

/// The sensor aggregate's state: `None` until registered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SensorState {
    /// The sensor, once registered.
    pub sensor: Option<Sensor>,
}

impl Aggregate for SensorState {
    type Command = SensorCommand;
    type Event = SensorEvent;

    fn decide(&self, command: SensorCommand) -> Result<Vec<SensorEvent>, Refusal> {
        match command {
            SensorCommand::Register {
                sensor_id,
                kind,
                location,
                thresholds,
                at,
            } => {
                if self.sensor.is_some() {
                    return Err(Refusal::new(
                        RefusalKind::AlreadyExists,
                        format!("sensor {sensor_id} is already registered"),
                    ));
                }
                one_threshold_per_metric(&thresholds)?;
                Ok(vec![SensorEvent::SensorRegistered {
                    sensor_id,
                    kind,
                    location,
                    thresholds,
                    at,
                }])
            }
            SensorCommand::Reconfigure {
                location,
                thresholds,
                at,
            } => {
                let sensor = self
                    .sensor
                    .as_ref()
                    .ok_or_else(|| Refusal::not_found("the sensor is not registered"))?;
                one_threshold_per_metric(&thresholds)?;
                if let Some(metric) = sensor
                    .ongoing
                    .keys()
                    .find(|m| !thresholds.iter().any(|t| t.metric() == *m))
                {
                    return Err(Refusal::transition(format!(
                        "metric {metric} has an ongoing alarm; keep its threshold until the alarm clears"
                    )));
                }
                if location == sensor.location && thresholds == sensor.thresholds {
                    return Ok(vec![]);
                }
                Ok(vec![SensorEvent::SensorReconfigured {
                    location,
                    thresholds,
                    at,
                }])
            }
            SensorCommand::Ingest {
                reading,
                new_alarm,
                new_incident,
            } => {
                let sensor = self
                    .sensor
                    .as_ref()
                    .ok_or_else(|| Refusal::not_found("the sensor is not registered"))?;
                // A metric without a threshold is not watched.
                let Some(threshold) = sensor
                    .thresholds
                    .iter()
                    .find(|t| t.metric() == reading.metric())
                else {
                    return Ok(vec![]);
                };
                let ongoing = sensor.ongoing.get(reading.metric());
                // A reading older than the alarm (delivered late) says nothing about its end.
                if ongoing.is_some_and(|o| reading.at() < o.raised_at) {
                    return Ok(vec![]);
                }
                Ok(
                    match (
                        alarm_step(threshold, ongoing.is_some(), reading.value()),
                        ongoing,
                    ) {
                        (AlarmStep::Raise, _) => vec![SensorEvent::SensorAlarmRaised {
                            alarm: new_alarm,
                            incident: new_incident,
                            metric: reading.metric().clone(),
                            value: reading.value(),
                            location: sensor.location,
                            incident_type: threshold.spec().incident_type,
                            priority: threshold.spec().priority,
                            at: reading.at(),
                        }],
                        (AlarmStep::Clear, Some(o)) => vec![SensorEvent::SensorAlarmCleared {
                            alarm: o.alarm,
                            incident: o.incident,
                            metric: reading.metric().clone(),
                            value: reading.value(),
                            at: reading.at(),
                        }],
                        _ => vec![],
                    },
                )
            }
        }
    }

    fn apply(&mut self, event: &SensorEvent) {
        match event {
            SensorEvent::SensorRegistered {
                sensor_id,
                kind,
                location,
                thresholds,
                ..
            } => {
                if self.sensor.is_none() {
                    self.sensor = Some(Sensor {
                        id: *sensor_id,
                        kind: kind.clone(),
                        location: *location,
                        thresholds: thresholds.clone(),
                        ongoing: BTreeMap::new(),
                    });
                }
            }
            SensorEvent::SensorReconfigured {
                location,
                thresholds,
                ..
            } => {
                if let Some(s) = self.sensor.as_mut() {
                    s.location = *location;
                    s.thresholds = thresholds.clone();
                }
            }
            SensorEvent::SensorAlarmRaised {
                alarm,
                incident,
                metric,
                at,
                ..
            } => {
                if let Some(s) = self.sensor.as_mut() {
                    s.ongoing.insert(
                        metric.clone(),
                        OngoingAlarm {
                            alarm: *alarm,
                            incident: *incident,
                            raised_at: *at,
                        },
                    );
                }
            }
            SensorEvent::SensorAlarmCleared { alarm, metric, .. } => {
                if let Some(s) = self.sensor.as_mut()
                    && s.ongoing.get(metric).is_some_and(|o| o.alarm == *alarm)
                {
                    s.ongoing.remove(metric);
                }
            }
        }
    }
}

fn one_threshold_per_metric(thresholds: &[Threshold]) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for t in thresholds {
        if !seen.insert(t.metric()) {
            return Err(Refusal::invalid(format!(
                "metric {} has more than one threshold; give it one",
                t.metric()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::testing::Given;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn temp() -> MetricName {
        MetricName::parse("temperature_c").unwrap()
    }

    fn threshold() -> Threshold {
        Threshold::try_from(ThresholdSpec {
            metric: temp(),
            crossing: Crossing::Above,
            raise_at: 60.0,
            clear_at: 45.0,
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P2,
        })
        .unwrap()
    }

    fn sid() -> SensorId {
        SensorId::from_uuid(uuid::Uuid::from_u128(5))
    }

    fn here() -> LatLon {
        LatLon::from_lat_lon(48.1, 11.5).unwrap()
    }

    fn registered() -> SensorEvent {
        SensorEvent::SensorRegistered {
            sensor_id: sid(),
            kind: SensorKind::parse("heat_detector").unwrap(),
            location: here(),
            thresholds: vec![threshold()],
            at: t(0),
        }
    }

    fn ids(n: u128) -> (AlarmId, IncidentId) {
        (
            AlarmId::from_uuid(uuid::Uuid::from_u128(50 + n)),
            IncidentId::from_uuid(uuid::Uuid::from_u128(500 + n)),
        )
    }

    fn ingest(value: f64, s: i64, n: u128) -> SensorCommand {
        let (new_alarm, new_incident) = ids(n);
        SensorCommand::Ingest {
            reading: Reading::new(temp(), value, t(s)).unwrap(),
            new_alarm,
            new_incident,
        }
    }

    fn raised(value: f64, s: i64, n: u128) -> SensorEvent {
        let (alarm, incident) = ids(n);
        SensorEvent::SensorAlarmRaised {
            alarm,
            incident,
            metric: temp(),
            value,
            location: here(),
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P2,
            at: t(s),
        }
    }

    #[test]
    fn one_alarm_per_crossing_not_per_reading_and_the_clearing_is_recorded() {
        let mut past = vec![registered()];
        // (value, expected events) for successive readings, one second apart.
        let script: Vec<(f64, Vec<SensorEvent>)> = vec![
            (20.0, vec![]),
            (61.0, vec![raised(61.0, 2, 2)]),
            (75.0, vec![]),
            (50.0, vec![]), // between the levels: still burning
            (62.0, vec![]),
            (
                44.9,
                vec![SensorEvent::SensorAlarmCleared {
                    alarm: ids(2).0,
                    incident: ids(2).1,
                    metric: temp(),
                    value: 44.9,
                    at: t(6),
                }],
            ),
            (59.0, vec![]),
            (60.0, vec![raised(60.0, 8, 8)]),
        ];
        for (i, (value, expected)) in script.into_iter().enumerate() {
            let n = i as u128 + 1;
            Given::<SensorState>::events(past.clone())
                .when(ingest(value, n as i64, n))
                .then_events(expected.clone());
            past.extend(expected);
        }
        let raised_count = past
            .iter()
            .filter(|e| matches!(e, SensorEvent::SensorAlarmRaised { .. }))
            .count();
        assert_eq!(raised_count, 2);
    }

    #[test]
    fn late_and_unwatched_readings_change_nothing() {
        let past = vec![registered(), raised(70.0, 100, 1)];
        Given::<SensorState>::events(past.clone())
            .when(ingest(10.0, 99, 2))
            .then_nothing();
        let humidity = MetricName::parse("humidity_pct").unwrap();
        Given::<SensorState>::events(past)
            .when(SensorCommand::Ingest {
                reading: Reading::new(humidity, 99.0, t(101)).unwrap(),
                new_alarm: ids(3).0,
                new_incident: ids(3).1,
            })
            .then_nothing();
    }

    #[test]
    fn unknown_sensor_and_double_registration() {
        Given::<SensorState>::nothing()
            .when(ingest(70.0, 1, 1))
            .then_refused(RefusalKind::NotFound);
        Given::<SensorState>::events([registered()])
            .when(SensorCommand::Register {
                sensor_id: sid(),
                kind: SensorKind::parse("gas").unwrap(),
                location: here(),
                thresholds: vec![],
                at: t(1),
            })
            .then_refused(RefusalKind::AlreadyExists);
        Given::<SensorState>::nothing()
            .when(SensorCommand::Register {
                sensor_id: sid(),
                kind: SensorKind::parse("gas").unwrap(),
                location: here(),
                thresholds: vec![threshold(), threshold()],
                at: t(1),
            })
            .then_refused_saying(RefusalKind::Invalid, "more than one threshold");
    }

    #[test]
    fn reconfiguring_keeps_ongoing_alarms_watched() {
        let elsewhere = LatLon::from_lat_lon(48.2, 11.6).unwrap();
        let state = Given::<SensorState>::events([registered()])
            .when(SensorCommand::Reconfigure {
                location: elsewhere,
                thresholds: vec![],
                at: t(5),
            })
            .then_events([SensorEvent::SensorReconfigured {
                location: elsewhere,
                thresholds: vec![],
                at: t(5),
            }]);
        assert_eq!(state.sensor.unwrap().location, elsewhere);
        Given::<SensorState>::events([registered()])
            .when(SensorCommand::Reconfigure {
                location: here(),
                thresholds: vec![threshold()],
                at: t(5),
            })
            .then_nothing();
        Given::<SensorState>::events([registered(), raised(70.0, 1, 1)])
            .when(SensorCommand::Reconfigure {
                location: here(),
                thresholds: vec![],
                at: t(5),
            })
            .then_refused_saying(RefusalKind::InvalidTransition, "ongoing alarm");
        Given::<SensorState>::nothing()
            .when(SensorCommand::Reconfigure {
                location: here(),
                thresholds: vec![],
                at: t(5),
            })
            .then_refused(RefusalKind::NotFound);
    }

    #[test]
    fn below_thresholds_work_the_other_way() {
        let low = Threshold::try_from(ThresholdSpec {
            metric: MetricName::parse("pressure_bar").unwrap(),
            crossing: Crossing::Below,
            raise_at: 2.0,
            clear_at: 3.0,
            incident_type: IncidentType::Other,
            priority: Priority::P4,
        })
        .unwrap();
        assert_eq!(alarm_step(&low, false, 2.5), AlarmStep::Hold);
        assert_eq!(alarm_step(&low, false, 2.0), AlarmStep::Raise);
        assert_eq!(alarm_step(&low, true, 2.9), AlarmStep::Hold);
        assert_eq!(alarm_step(&low, true, 3.1), AlarmStep::Clear);
    }

    #[test]
    fn bad_thresholds_and_readings_are_refused() {
        let spec = |crossing, raise_at, clear_at| ThresholdSpec {
            metric: temp(),
            crossing,
            raise_at,
            clear_at,
            incident_type: IncidentType::FireAlarm,
            priority: Priority::P2,
        };
        let table = [
            (
                spec(Crossing::Above, f64::NAN, 40.0),
                "raising level is NaN",
            ),
            (
                spec(Crossing::Above, 60.0, f64::INFINITY),
                "clearing level is infinite",
            ),
            (
                spec(Crossing::Above, 60.0, 70.0),
                "an above-alarm that clears only above its own level",
            ),
            (
                spec(Crossing::Below, 2.0, 1.0),
                "a below-alarm that clears only below its own level",
            ),
        ];
        for (spec, why) in table {
            assert!(Threshold::try_from(spec).is_err(), "{why}");
        }
        let json = r#"{"metric":"temperature_c","crossing":"above","raise_at":60,"clear_at":70,"incident_type":"fire_alarm","priority":"P2"}"#;
        assert!(
            serde_json::from_str::<Threshold>(json).is_err(),
            "JSON goes through the same check"
        );
        for (v, why) in [(f64::NAN, "NaN"), (f64::NEG_INFINITY, "minus infinity")] {
            assert!(Reading::new(temp(), v, t(0)).is_err(), "{why}");
        }
    }
}
