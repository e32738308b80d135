//! Muster's drill engine: scenarios, simulated responders, replay and reports.
//!
//! A drill runs the real core (aggregates, event schema, reactions, dispatcher) and a real
//! event store in virtual time, driven by a scenario file and a seed. The same scenario and
//! seed give the same canonical event log, byte for byte; reports are computed from that log.
//!
//! # Layout
//! - [`scenario`]: scenario files (TOML): city, fleet and shifts, call generator, scripted
//!   events, dispatch policy; checked before anything runs, errors name file, line and key.
//! - [`calls`]: the call generator (arrivals by hour and area, type and priority mix).
//! - [`drive`]: a drive along a road route in time, for the engine and live drills.
//! - [`engine`]: the discrete-event engine: virtual clock, event queue, simulated responders,
//!   the core's decisions and dispatcher, appends to the store.
//! - [`log`]: the canonical log (JSON lines without the store's wall-clock `recorded_at`),
//!   its SHA-256, and reading logs back (canonical or `muster store dump` output).
//! - [`report`]: response-time distributions against NFPA 1710 / 1225, unit utilisation and
//!   coverage gaps, computed from a log; JSON.
//! - [`html`]: the self-contained HTML report with inline SVG charts, and side-by-side
//!   comparisons.
//! - [`replay`]: replaying a recorded log into the engine's projections at any speed, and
//!   re-running its calls under another dispatch policy ("what if").
//! - [`server`]: replaying a recorded log into a running `muster serve` through its operator
//!   API, paced at a speed, so the wall display shows it.
//! - [`live`]: live drills: a scenario played against a running server in scaled wall time,
//!   calls through the operator API, the server's dispatcher consulted, and a simulated
//!   device per unit on the mobile gateway.
//! - [`cli`]: argument structs and run functions for `muster drill …` and `muster bench drill`.

pub mod calls;
pub mod cli;
pub mod drive;
pub mod engine;
pub mod html;
pub mod live;
pub mod log;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod server;
