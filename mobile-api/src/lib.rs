//! Muster's responder protocol, the mobile gateway, the client library and the device
//! simulator.
//!
//! A responder's device holds one websocket to the gateway. The gateway authenticates it with
//! a token bound to a unit, delivers the unit's tasks with sequence numbers derived from the
//! unit's stream (so every gateway node numbers them alike), resumes after a drop from the
//! last sequence number the device saw, or sends a snapshot when it cannot, and carries out
//! the device's commands with idempotency keys so that a retry never doubles an event.
//! `PROTOCOL.md` beside this crate's manifest documents protocol v1.
//!
//! # Layout
//! - [`protocol`]: the messages of protocol v1 (serde types), error and close codes, and the
//!   two-step parser of incoming frames.
//! - [`limits`]: message size, rate limit, heartbeats, queue depth, as named constants.
//! - [`origin`]: which browser origins may open a websocket (the gateway's and the wall
//!   feed's rule).
//! - [`token`]: the [`token::TokenVerifier`] trait and HMAC-signed tokens with an expiry.
//! - [`commands`]: device commands carried out against the store through core's decisions.
//! - [`delivery`]: what a device is sent: catch-up or resync, and the [`delivery::Hub`]
//!   that fans `$all` out to connections through bounded queues.
//! - [`alerts`]: the watchdog that records an operator alert for a task not acknowledged in
//!   time.
//! - [`session`]: one connection's logic, generic over `Sink`/`Stream`.
//! - [`gateway`]: the listener loop, `run(listener, …, shutdown)`, plain or TLS.
//! - [`tls`]: certificates from PEM files reloaded on SIGHUP, the rustls configurations of
//!   listeners and clients (system roots plus a CA file), the refusal of plaintext
//!   listeners other machines reach.
//! - [`client`]: the client library: reconnects, resumes, deduplicates, queues commands
//!   while offline.
//! - [`responder`]: the device simulator behind `muster responder`.
//! - [`bench`](mod@bench): `muster bench gateway`.
//! - [`cli`]: argument structs and run functions of `muster gateway`, `muster responder`
//!   and `muster bench gateway`.

pub mod alerts;
pub mod bench;
pub mod cli;
pub mod client;
pub mod commands;
pub mod delivery;
pub mod gateway;
pub mod limits;
pub mod lockout;
pub mod origin;
pub mod protocol;
pub mod responder;
pub mod session;
pub mod tls;
pub mod token;
