//! The audit trail of reads of personal data. Commands carry their own audit in their events'
//! metadata (who, with which credential and role, from which address and node, through which
//! source); a read leaves no event of its own, so each disclosure of an incident's caller
//! details is recorded as an event in the stream `audit-<incident id>`, with the same
//! metadata. The stream is written before the details are answered: no record, no details.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::IncidentId;

/// A record in the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AuditEvent {
    /// An incident's caller details were disclosed.
    CallerDetailsRead {
        /// The incident.
        incident: IncidentId,
        /// Which details: `name`, `call_back`.
        fields: Vec<String>,
        /// How: `api` (`GET /api/incidents/{id}`) or `device` (a task delivered to a unit's
        /// device, with the call-back number).
        via: String,
        /// When.
        at: DateTime<Utc>,
    },
}
