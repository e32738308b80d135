//! `muster bench e2e` and `muster bench projections`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use muster_store::{EmbeddedOptions, EmbeddedStore, EventStore, Position};

use crate::areas::Areas;
use crate::views::{ViewDb, rebuild};

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    /// Events read.
    pub events: u64,
    /// Wall time of reading and folding them (not of saving), seconds.
    pub seconds: f64,
    /// The checkpoint saved.
    pub checkpoint: Option<Position>,
}

/// Rebuilds the views of a data directory from its log and saves them.
pub async fn rebuild_views(data_dir: &Path, city: &str) -> anyhow::Result<RebuildReport> {
    let store = Arc::new(
        EmbeddedStore::open(data_dir, EmbeddedOptions::default())
            .with_context(|| format!("opening the event store in {}", data_dir.display()))?,
    );
    let (areas, _) = Areas::from_setting(city)?;
    let started = Instant::now();
    let (state, events) = rebuild(&*store as &dyn EventStore, &areas).await?;
    let seconds = started.elapsed().as_secs_f64();
    let db = ViewDb::open(data_dir)?;
    db.save(&serde_json::to_vec(&state)?)?;
    store.close();
    Ok(RebuildReport {
        events,
        seconds,
        checkpoint: state.last,
    })
}
