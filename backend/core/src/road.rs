//! Road closures: an operator closes the roads within a radius of a point (a fire, a crash,
//! a flooded underpass) and reopens them later. Each closure is an aggregate in the stream
//! `road-closure-<id>`: `RoadClosed`, then, once lifted, `RoadReopened`. The dispatcher's
//! routing leaves the roads of every closure in force out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::decision::{Aggregate, Refusal, RefusalKind};
use crate::ids::ClosureId;
use crate::value::LatLon;

/// Smallest radius of a closure, metres.
pub const MIN_RADIUS_M: f64 = 5.0;
/// Largest radius of a closure, metres.
pub const MAX_RADIUS_M: f64 = 2_000.0;
/// Longest note on a closure, characters.
pub const MAX_NOTE_CHARS: usize = 500;

/// What happened to a road closure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RoadClosureEvent {
    /// Roads within `radius_m` of `location` are closed.
    RoadClosed {
        /// The closure (also in the stream name).
        closure: ClosureId,
        /// Its centre.
        location: LatLon,
        /// Its radius, metres.
        radius_m: f64,
        /// Why, for the operators.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// Who closed it.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The roads of the closure are open again.
    RoadReopened {
        /// The closure.
        closure: ClosureId,
        /// Who reopened it.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// What an operator asks of a closure.
#[derive(Clone, Debug, PartialEq)]
pub enum RoadClosureCommand {
    /// Close the roads around a point.
    Close {
        /// The new closure's id.
        closure: ClosureId,
        /// Centre.
        location: LatLon,
        /// Radius, metres ([`MIN_RADIUS_M`] to [`MAX_RADIUS_M`]).
        radius_m: f64,
        /// Why (at most [`MAX_NOTE_CHARS`]).
        note: Option<String>,
        /// Who.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Open them again. Reopening an open closure changes nothing.
    Reopen {
        /// Who.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// A closure in force or lifted.
#[derive(Clone, Debug, PartialEq)]
pub struct Closure {
    /// Its id.
    pub closure: ClosureId,
    /// Centre.
    pub location: LatLon,
    /// Radius, metres.
    pub radius_m: f64,
    /// Why.
    pub note: Option<String>,
    /// Who closed it.
    pub by: String,
    /// Since when.
    pub since: DateTime<Utc>,
    /// When it was reopened, if it was.
    pub reopened_at: Option<DateTime<Utc>>,
}

/// A closure's state: `None` until closed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoadClosureState {
    /// The closure, once made.
    pub closure: Option<Closure>,
}

impl RoadClosureState {
    /// Whether the roads are closed now.
    pub fn in_force(&self) -> bool {
        self.closure
            .as_ref()
            .is_some_and(|c| c.reopened_at.is_none())
    }
}

impl Aggregate for RoadClosureState {
    type Command = RoadClosureCommand;
    type Event = RoadClosureEvent;

    fn decide(&self, command: RoadClosureCommand) -> Result<Vec<RoadClosureEvent>, Refusal> {
        match command {
            RoadClosureCommand::Close {
                closure,
                location,
                radius_m,
                note,
                by,
                at,
            } => {
                if self.closure.is_some() {
                    return Err(Refusal::new(
                        RefusalKind::AlreadyExists,
                        format!("road closure {closure} exists already"),
                    ));
                }
                if !(radius_m.is_finite() && (MIN_RADIUS_M..=MAX_RADIUS_M).contains(&radius_m)) {
                    return Err(Refusal::invalid(format!(
                        "radius_m must be from {MIN_RADIUS_M} to {MAX_RADIUS_M} metres"
                    )));
                }
                if note
                    .as_ref()
                    .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
                {
                    return Err(Refusal::invalid(format!(
                        "note must be at most {MAX_NOTE_CHARS} characters"
                    )));
                }
                Ok(vec![RoadClosureEvent::RoadClosed {
                    closure,
                    location,
                    radius_m,
                    note,
                    by,
                    at,
                }])
            }
            RoadClosureCommand::Reopen { by, at } => match &self.closure {
                None => Err(Refusal::not_found("there is no such road closure")),
                Some(c) if c.reopened_at.is_some() => Ok(Vec::new()),
                Some(c) => Ok(vec![RoadClosureEvent::RoadReopened {
                    closure: c.closure,
                    by,
                    at,
                }]),
            },
        }
    }

    fn apply(&mut self, event: &RoadClosureEvent) {
        match event {
            RoadClosureEvent::RoadClosed {
                closure,
                location,
                radius_m,
                note,
                by,
                at,
            } => {
                if self.closure.is_none() {
                    self.closure = Some(Closure {
                        closure: *closure,
                        location: *location,
                        radius_m: *radius_m,
                        note: note.clone(),
                        by: by.clone(),
                        since: *at,
                        reopened_at: None,
                    });
                }
            }
            RoadClosureEvent::RoadReopened { at, .. } => {
                if let Some(c) = &mut self.closure {
                    c.reopened_at.get_or_insert(*at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn close(radius_m: f64, note: Option<String>) -> RoadClosureCommand {
        RoadClosureCommand::Close {
            closure: ClosureId::from_uuid(Uuid::from_u128(7)),
            location: LatLon::from_lat_lon(60.17, 24.94).unwrap(),
            radius_m,
            note,
            by: "op".into(),
            at: t(0),
        }
    }

    #[test]
    fn a_closure_is_made_once_and_reopened_once() {
        let (closed, events) = RoadClosureState::default()
            .execute(close(100.0, None))
            .unwrap();
        assert_eq!(events.len(), 1);
        assert!(closed.in_force());
        let again = closed.decide(close(100.0, None)).unwrap_err();
        assert_eq!(again.kind, RefusalKind::AlreadyExists);
        let reopen = || RoadClosureCommand::Reopen {
            by: "op".into(),
            at: t(60),
        };
        let (open, events) = closed.execute(reopen()).unwrap();
        assert!(matches!(
            events.as_slice(),
            [RoadClosureEvent::RoadReopened { .. }]
        ));
        assert!(!open.in_force());
        assert_eq!(open.closure.as_ref().unwrap().reopened_at, Some(t(60)));
        assert_eq!(
            open.decide(reopen()).unwrap(),
            vec![],
            "reopening an open closure changes nothing"
        );
    }

    #[test]
    fn bad_closures_are_refused() {
        let table = [
            (close(4.9, None), "radius below the smallest"),
            (close(2_000.1, None), "radius above the largest"),
            (close(f64::NAN, None), "radius not a number"),
            (close(100.0, Some("x".repeat(501))), "note too long"),
        ];
        for (command, why) in table {
            let refused = RoadClosureState::default().decide(command).unwrap_err();
            assert_eq!(refused.kind, RefusalKind::Invalid, "{why}");
        }
        let unknown = RoadClosureState::default()
            .decide(RoadClosureCommand::Reopen {
                by: "op".into(),
                at: t(0),
            })
            .unwrap_err();
        assert_eq!(unknown.kind, RefusalKind::NotFound);
    }
}
