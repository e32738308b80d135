//! Muster's domain: the event schema, pure decisions (state + command -> events or a typed
//! refusal), response plans, the sensor alarm rule and the duplicate check. No network I/O
//! lives here: times and new ids come in with the commands, so every decision is a pure
//! function that tests can call directly.
//!
//! # Layout
//! - [`value`]: domain value types parsed at the edge: [`value::LatLon`],
//!   [`value::Priority`], [`value::PhoneNumber`] and [`value::PersonName`] (personal data,
//!   masked in `Debug`), incident types, unit kinds, capabilities, call signs, notes,
//!   [`value::IdempotencyKey`].
//! - [`ids`]: UUID newtypes for incidents, units, sensors, tasks, alarms and road closures,
//!   and the stream each aggregate lives in (`incident-<id>`, `unit-<id>`, `sensor-<id>`,
//!   `road-closure-<id>`, `device-<unit id>`, `alert-<task id>`).
//! - [`combined`]: decisions over several aggregates at once (an assignment over the incident
//!   and the unit, a close that releases its units, a unit's progress on its incident, a
//!   sensor alarm's incident), appended together by the command runner.
//! - [`decision`]: the [`decision::Aggregate`] trait (`decide` / `apply` / `replay`) and the
//!   typed [`decision::Refusal`].
//! - [`incident`]: the incident aggregate and the NFPA time points.
//! - [`unit`](mod@unit): the unit aggregate: status state machine, position reports, tasks; the unit
//!   stream's revision is the guard against double assignment.
//! - [`sensor`]: the sensor registry aggregate and the alarm rule (one incident per ongoing
//!   alarm, the clearing recorded).
//! - [`road`]: road closures (`road-closure-<id>`), which the dispatcher's routing leaves out.
//! - [`device`]: the audit of the tokens issued for a unit's device (`device-<unit id>`).
//! - [`alert`]: operator alerts about a task (`alert-<task id>`): an acknowledgement overdue.
//! - [`api_token`]: machines' API tokens, created and revoked in the stream `api-tokens`
//!   (their digests, never the tokens).
//! - [`reaction`]: what one aggregate's events ask of another's commands (a unit's
//!   progress recorded on its incident; a sensor alarm reported as an incident).
//! - [`event`]: the event schema on the wire: names, schema versions, conversion to
//!   `muster_store::NewEvent` and back from `muster_store::RecordedEvent` with upcasting.
//! - [`runcard`]: response plans (run cards) as data, loadable from TOML or JSON, with a
//!   default set.
//! - [`duplicates`]: the duplicate check for a new call (geodesic distance, time window,
//!   related types).
//! - [`schema`]: the JSON Schemas of the value types, for the API contract (OpenAPI).
//! - [`stats`]: nearest-rank percentiles and medians, the one rule for every report.
//! - [`testing`]: a given / when / then harness for decisions.
//! - [`dispatch`]: the live unit index (R-tree), recommendations by road travel time, joint
//!   assignment for surges, coverage and move-ups.
//!
//! # Handling a command
//! 1. Parse the request into value types ([`value`]); a parse error is the user's mistake.
//! 2. The command runner (`muster_app::Runner`) answers a repeat from its idempotency record.
//! 3. It loads the aggregates the decision asks for and calls the pure decision: one
//!    aggregate's [`decision::Aggregate::decide`], or one of [`combined`] over several. A
//!    [`decision::Refusal`] is the answer (its kind says 404, 409 or 422).
//! 4. It encodes the events ([`event::encode_batch`]) and appends every stream the decision
//!    touched in one atomic append, each with [`event::expected_state_after`] the revision it
//!    decided on. On a conflict it loads again and decides again: for a unit this is how the
//!    loser of a simultaneous assignment learns which incident won
//!    ([`decision::RefusalKind::UnitBusy`]).

pub mod alert;
pub mod api_token;
pub mod audit;
pub mod combined;
pub mod decision;
pub mod device;
pub mod dispatch;
pub mod duplicates;
pub mod event;
pub mod ids;
pub mod incident;
pub mod reaction;
pub mod road;
pub mod runcard;
pub mod schema;
pub mod sealing;
pub mod sensor;
pub mod stats;
pub mod testing;
pub mod unit;
pub mod value;

pub use decision::{Aggregate, Refusal, RefusalKind};
pub use event::{DecodeError, DomainEvent, EncodeError};

pub use ids::{AggregateRef, AlarmId, ClosureId, IncidentId, SensorId, TaskId, UnitId};
