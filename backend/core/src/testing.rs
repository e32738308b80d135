//! A given / when / then harness for decisions: given past events, when a command, then these
//! events or this refusal.
//!
//! ```
//! use muster_core::testing::Given;
//! use muster_core::unit::{UnitCommand, UnitState};
//! # use muster_core::decision::RefusalKind;
//! # use chrono::{TimeZone, Utc};
//! # let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
//! Given::<UnitState>::nothing()
//!     .when(UnitCommand::ReportPosition {
//!         position: muster_core::value::LatLon::from_lat_lon(52.5, 13.4).unwrap(),
//!         heading_deg: None,
//!         speed_m_s: None,
//!         accuracy_m: None,
//!         at,
//!     })
//!     .then_refused(RefusalKind::NotFound);
//! ```

use std::fmt;

use crate::decision::{Aggregate, Refusal, RefusalKind};

/// The past events of a test.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    state: A,
    events: Vec<A::Event>,
}

impl<A: Aggregate> Given<A> {
    /// No past events: the stream does not exist.
    pub fn nothing() -> Self {
        Self {
            state: A::default(),
            events: Vec::new(),
        }
    }

    /// These past events.
    pub fn events(events: impl IntoIterator<Item = A::Event>) -> Self {
        let events: Vec<A::Event> = events.into_iter().collect();
        Self {
            state: A::replay(&events),
            events,
        }
    }

    /// The state the past events give.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The command under test.
    pub fn when(self, command: A::Command) -> Then<A> {
        let command_text = format!("{command:?}");
        let result = self.state.decide(command);
        Then {
            given: self,
            command_text,
            result,
        }
    }
}

/// The outcome of a command, to check.
pub struct Then<A: Aggregate> {
    given: Given<A>,
    command_text: String,
    result: Result<Vec<A::Event>, Refusal>,
}

impl<A: Aggregate> fmt::Debug for Then<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("given", &self.given.events)
            .field("when", &self.command_text)
            .field("result", &self.result)
            .finish()
    }
}

impl<A: Aggregate> Then<A> {
    /// Asserts that the command produced exactly these events; returns the state after them.
    #[track_caller]
    pub fn then_events(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "\ngiven {:#?}\nwhen {}\nthe events differ",
                    self.given.events, self.command_text
                );
                let mut state = self.given.state;
                for e in &events {
                    state.apply(e);
                }
                state
            }
            Err(refusal) => panic!(
                "\ngiven {:#?}\nwhen {}\nexpected events {:#?}\nbut refused: {refusal} ({:?})",
                self.given.events, self.command_text, expected, refusal.kind
            ),
        }
    }

    /// Asserts that the command produced no event (it changed nothing).
    #[track_caller]
    pub fn then_nothing(self) -> A {
        self.then_events([])
    }

    /// Asserts that the command was refused with this kind; returns the refusal to check its
    /// reason.
    #[track_caller]
    pub fn then_refused(self, kind: RefusalKind) -> Refusal {
        match self.result {
            Ok(events) => panic!(
                "\ngiven {:#?}\nwhen {}\nexpected a refusal ({kind:?}) but got events {events:#?}",
                self.given.events, self.command_text
            ),
            Err(refusal) => {
                assert_eq!(
                    refusal.kind, kind,
                    "\ngiven {:#?}\nwhen {}\nrefused for another reason: {refusal}",
                    self.given.events, self.command_text
                );
                assert!(!refusal.reason.trim().is_empty(), "a refusal must say why");
                refusal
            }
        }
    }

    /// Asserts that the command was refused with this kind and a reason containing `text`.
    #[track_caller]
    pub fn then_refused_saying(self, kind: RefusalKind, text: &str) -> Refusal {
        let refusal = self.then_refused(kind);
        assert!(
            refusal.reason.contains(text),
            "the reason {:?} should mention {text:?}",
            refusal.reason
        );
        refusal
    }

    /// The raw outcome.
    pub fn result(&self) -> &Result<Vec<A::Event>, Refusal> {
        &self.result
    }
}
