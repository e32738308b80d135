//! Muster's write path. Every writer (the operator API, the dispatcher, the mobile gateway,
//! road closures, live drills through those) changes state through one [`Runner`]: it loads
//! the aggregates a decision reads, calls the pure decision (`muster_core::combined`),
//! appends every stream the decision touches in one atomic multi-stream append with each
//! stream's expected revision, and retries a lost race at most [`MAX_ATTEMPTS`] times.
//!
//! Idempotency keys are records in the store, written in the same append as the command's
//! events: a repeat gets the first answer on any node after any restart, and the same key
//! with another request is [`CommandError::KeyReused`].
//!
//! # Layout
//! - [`runner`]: [`Runner`], [`Command`], [`CommandKey`], [`Fingerprint`], [`Executed`],
//!   [`CommandError`], and the idempotency record.

pub mod audit;
pub mod runner;

pub use runner::{
    Command, CommandError, CommandKey, Executed, Fingerprint, MAX_ATTEMPTS, Runner, Snapshot, Step,
};
