//! The dispatcher: a live R-tree of units, recommendations by road travel time, joint
//! assignment for surges, and coverage with move-up suggestions. Pure computations over the
//! index and the city's router; the server feeds the index from the log and turns accepted
//! recommendations into commands.
//!
//! - [`index`]: the live [`UnitIndex`], updated in place by position reports and status changes.
//! - [`board`]: the open incidents as the dispatcher plans them: what each still needs, and
//!   when a rule dispatches it without an operator.
//! - [`recommend`]: [`recommend()`](recommend::recommend) for one incident, nearest by road,
//!   proven exact by a straight-line bound.
//! - [`surge`]: [`assign_jointly`](surge::assign_jointly) (min-cost) and the greedy baseline.
//! - [`coverage`]: areas without a unit within a target time, with move-ups.
//! - [`policy`]: dispatch rules as data (automatic dispatch, preemption, acknowledgement
//!   timeout) and the preemption candidates they allow.

pub mod board;
pub mod coverage;
pub mod index;
pub mod policy;
pub mod recommend;
pub mod surge;

pub use board::{Board, Needs, NeedsError, OpenIncident};
pub use coverage::{CoverageReport, coverage};
pub use index::{
    Applied, DEFAULT_STALE_AFTER, IndexedUnit, NewUnit, Stations, UnitIndex, Whereabouts,
    station_code, station_slug,
};
pub use policy::{Commitment, DispatchRules, Preemption, preemptions};
pub use recommend::{
    Candidate, IncidentSpec, Reason, RecommendError, Recommendation, Shortfall, recommend,
};
pub use surge::{PendingIncident, SurgePlan, assign_greedily, assign_jointly};
