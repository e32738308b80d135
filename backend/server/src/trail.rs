//! The audit trail of an incident or a user, read from the log: every event about the
//! incident (its stream, its `audit-` stream, and the task, alert and device events that name
//! it), every event a user caused, or both at once, with who, role, agency, credential,
//! source, peer address and node. Never the events' data (it may hold caller details).
//! `muster audit` prints it; `GET /api/audit` (admin) answers it.

use muster_core::IncidentId;
use muster_store::{EventStore, Position, RecordedEvent, StoreError};
use serde::Serialize;

/// What the trail is of: everything about an incident, everything a user (or `unit:<id>`
/// for a unit's device) did or read, both (what that user did about that incident), or, with
/// neither, the whole log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// The incident.
    pub incident: Option<IncidentId>,
    /// The user.
    pub user: Option<String>,
}

impl Subject {
    /// Whether `e` belongs to the trail.
    pub fn covers(&self, e: &RecordedEvent) -> bool {
        let by_user = self
            .user
            .as_deref()
            .is_none_or(|name| e.metadata.actor.as_deref() == Some(name));
        by_user && self.incident.is_none_or(|id| about(e, id))
    }
}

/// Whether `e` is about incident `id`: in its stream or its audit stream, or a task, alert or
/// device event that names it.
fn about(e: &RecordedEvent, id: IncidentId) -> bool {
    let stream = e.stream.as_str();
    if stream == id.stream_name().as_str() || stream == id.audit_stream().as_str() {
        return true;
    }
    serde_json::from_slice::<serde_json::Value>(&e.data)
        .ok()
        .and_then(|d| {
            d.get("incident")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        })
        .is_some_and(|i| i == id.to_string())
}

/// One event of the trail.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrailLine {
    /// Its position in the log.
    pub position: u64,
    /// When the store recorded it.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// Its stream.
    pub stream: String,
    /// Its type (`IncidentReported`, `CallerDetailsRead`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who caused it.
    pub actor: Option<String>,
    /// Their role.
    pub role: Option<String>,
    /// The agency they acted for, when their credential names one.
    pub agency: Option<String>,
    /// The credential they presented, by its id.
    pub credential: Option<String>,
    /// Through which source.
    pub source: Option<String>,
    /// From which address.
    pub peer: Option<String>,
    /// Through which node.
    pub node: Option<String>,
    /// When it happened, by the source.
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TrailLine {
    fn of(e: &RecordedEvent) -> Self {
        let m = &e.metadata;
        Self {
            position: e.position.0,
            recorded_at: e.recorded_at,
            stream: e.stream.as_str().to_owned(),
            event_type: e.event_type.clone(),
            actor: m.actor.clone(),
            role: m.role.clone(),
            agency: m.agency.clone(),
            credential: m.credential.clone(),
            source: m.source.clone(),
            peer: m.peer.clone(),
            node: m.node.clone(),
            occurred_at: m.occurred_at,
        }
    }
}

/// Reads the log from its start and hands each line of `subject`'s trail to `each`, oldest
/// first, up to `limit` lines; answers how many.
pub async fn read(
    store: &dyn EventStore,
    subject: &Subject,
    limit: usize,
    mut each: impl FnMut(TrailLine) -> std::io::Result<()>,
) -> Result<usize, TrailError> {
    let mut next = Position::START;
    let mut found = 0;
    loop {
        let page = store.read_all(next, 4096).await?;
        let Some(last) = page.last() else { break };
        next = last.position.next();
        for e in page.iter().filter(|e| subject.covers(e)) {
            if found == limit {
                return Ok(found);
            }
            each(TrailLine::of(e))?;
            found += 1;
        }
    }
    Ok(found)
}

/// Why the trail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
