//! Muster's event store.
//!
//! Every state change in Muster is an event appended to a stream (`incident-<id>`,
//! `unit-<id>`, …); every event also has a place in one global, gap-free order, `$all`.
//! Views are projections of `$all` and can always be rebuilt from it.
//!
//! The semantics follow KurrentDB (formerly EventStoreDB): appends carry an expected stream
//! state and fail with a typed conflict when it does not hold; appends are idempotent by event
//! id, permanently; reads go forwards or backwards; subscriptions catch up from any position
//! and then go live with no gap and no duplicate; stream metadata sets max count, max age and
//! soft deletion.
//!
//! # Layout
//! - [`types`]: stream names, positions, expected states, events, metadata, limits.
//! - [`error`]: [`StoreError`] and [`InvalidInput`].
//! - [`store`]: the [`EventStore`] trait every backend implements.
//! - [`subscription`]: catch-up-then-live subscriptions that work over any backend.
//! - [`embedded`]: the default backend, a redb file with one group-committing writer.
//! - `postgres` (feature `postgres`): the PostgreSQL backend, for several nodes on one database.
//! - [`memory`]: an in-memory store, the reference model the property tests compare against.
//! - `contract` (feature `contract`, and in tests): the suite every backend must pass.

pub mod embedded;
pub mod error;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rules;
pub mod store;
pub mod subscription;
pub mod types;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{InvalidInput, Result, StoreError};
pub use memory::MemoryStore;
pub use store::{EventStore, EventStoreExt};
pub use subscription::{AllSubscription, StreamSubscription, SubscribeFrom};
pub use types::*;
