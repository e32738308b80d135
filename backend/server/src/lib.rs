//! Muster's server: the operator API on actix-web, the wall-display websocket feed, the
//! projections that feed both, and the command handling behind them. The `muster` binary
//! (`src/main.rs`) parses arguments and runs this library; `muster bench` lives beside it
//! (`src/bench/`), built only with the `bench` feature, so the library and `muster serve`
//! carry no benchmark code or dependencies.
//!
//! # Layout
//! - [`config`]: `muster serve` configuration (TOML file, `MUSTER_…` overrides).
//! - [`app`]: wiring and lifecycle: [`app::Application::build`], `port()`,
//!   `run_until_stopped()`, graceful shutdown, `/healthz`, `/readyz`, demo units.
//! - [`auth`]: bearer tokens and roles (operator, responder, planner, admin): configured
//!   users' tokens, machines' API tokens, single sign-on JWTs.
//! - [`oidc`]: single sign-on: JWTs verified against the OpenID Connect provider's keys.
//! - [`api_tokens`]: machines' API tokens: their shape, and the registry that checks them
//!   against the log.
//! - [`security`]: security headers, the lockout of clients that present unknown tokens,
//!   the Origin check of websockets.
//! - [`error`]: the one error body and the status of each kind of failure.
//! - [`dispatcher`]: the live unit index fed from the log, recommendations, coverage,
//!   accepting recommendations, and dispatch by rule.
//! - [`edge`]: strict request bodies, the command (key, fingerprint, metadata) of a request,
//!   actix's own refusals in the one error body, 405 with `Allow`. Commands run through
//!   `muster_app::Runner`, the one write path.
//! - [`routes`]: the HTTP routes, a module per resource (incidents, units, sensors,
//!   dispatch, roads, devices, admin, layers, wall, feed): commands and views as JSON, GeoJSON
//!   layers, the wall-display websocket (snapshot, deltas with positions, resume).
//! - [`views`]: the projection of `$all` into boards, area counts and layers, its
//!   checkpointed file and the rebuild.
//! - [`areas`]: city districts or grid cells for per-area counts.
//! - [`openapi`]: the OpenAPI document.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "256"]

pub mod api_tokens;
pub mod app;
pub mod areas;
pub mod auth;
pub mod config;
pub mod dispatcher;
pub mod edge;
pub mod error;
pub mod oidc;
pub mod openapi;
pub mod routes;
pub mod security;
pub mod tickets;
pub mod trail;
pub mod views;

pub use app::Application;
pub use config::Config;
