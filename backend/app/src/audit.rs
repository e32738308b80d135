//! Recording reads of personal data in the audit trail ([`muster_core::audit`]): written
//! before the data is disclosed, so that a failed record means no disclosure.

use chrono::Utc;
use muster_core::IncidentId;
use muster_core::audit::AuditEvent;
use muster_store::{EventMetadata, EventStore, ExpectedState, StoreError};
use uuid::Uuid;

/// Which caller details a disclosure holds: `name`, `call_back`; empty when there are none.
pub fn caller_fields(name: bool, call_back: bool) -> Vec<String> {
    [(name, "name"), (call_back, "call_back")]
        .into_iter()
        .filter(|(present, _)| *present)
        .map(|(_, f)| f.to_owned())
        .collect()
}

/// Records that `incident`'s caller details (`fields`) are disclosed `via` (`api`,
/// `device`) to the actor `metadata` names. Nothing is recorded when `fields` is empty.
pub async fn record_caller_read(
    store: &dyn EventStore,
    incident: IncidentId,
    fields: Vec<String>,
    via: &str,
    metadata: EventMetadata,
) -> Result<(), StoreError> {
    if fields.is_empty() {
        return Ok(());
    }
    let event = AuditEvent::CallerDetailsRead {
        incident,
        fields,
        via: via.to_owned(),
        at: Utc::now(),
    };
    let new = muster_core::event::encode(&event, Uuid::now_v7(), metadata)
        .map_err(|e| StoreError::Storage(format!("cannot encode an audit record: {e}")))?;
    store
        .append(&incident.audit_stream(), ExpectedState::Any, vec![new])
        .await?;
    Ok(())
}

/// An incident's caller details in the clear, as they may be disclosed: `None` when they were
/// erased (the incident says so, or its key is gone), opened with the incident's data key
/// when they are sealed, as they are when they were stored before sealing.
pub async fn caller_in_clear(
    store: &dyn EventStore,
    incident: &muster_core::incident::Incident,
) -> Result<Option<muster_core::value::CallerDetails>, StoreError> {
    if incident.caller_erased {
        return Ok(None);
    }
    if incident.caller.sealed.is_none() {
        return Ok(Some(incident.caller.clone()));
    }
    let Some(key) = store.data_key(incident.id.as_uuid(), false).await? else {
        return Ok(None);
    };
    muster_core::sealing::open(&key, incident.id, &incident.caller)
        .map(Some)
        .map_err(|e| StoreError::Storage(format!("incident {}: {e}", incident.id)))
}
