//! The on-disk form of one event: a CRC-32 over a versioned, length-prefixed record.
//!
//! ```text
//! crc32 (4, over everything after it) | format (1) | revision (8) | id (16)
//! | schema version (4) | recorded at, µs since the epoch (8)
//! | stream (2 + n) | type (2 + n) | metadata (binary) | data (4 + n, JSON)
//! ```
//! The metadata is actor, source, correlation id, causation id and occurrence time, each
//! optional; format 2 adds a count and that many tagged optional texts (peer, node,
//! credential, role, agency). Format 1 records are read as they are.
//! The position is the key of the record, so it is not repeated inside.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::types::{EventMetadata, NewEvent, Position, RecordedEvent, StreamName, StreamRevision};

const FORMAT: u8 = 2;

/// Tags of format 2's additional metadata texts.
const TAG_PEER: u8 = 1;
const TAG_NODE: u8 = 2;
const TAG_CREDENTIAL: u8 = 3;
const TAG_ROLE: u8 = 4;
const TAG_AGENCY: u8 = 5;

/// Why a stored record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub String);

pub(crate) fn encode(
    stream: &StreamName,
    revision: StreamRevision,
    recorded_at: DateTime<Utc>,
    event: &NewEvent,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(FORMAT);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    out.extend_from_slice(&event.schema_version.to_le_bytes());
    out.extend_from_slice(&recorded_at.timestamp_micros().to_le_bytes());
    put_str(out, stream.as_str());
    put_str(out, &event.event_type);
    let m = &event.metadata;
    put_opt_str(out, m.actor.as_deref());
    put_opt_str(out, m.source.as_deref());
    put_opt_uuid(out, m.correlation_id);
    put_opt_uuid(out, m.causation_id);
    match m.occurred_at {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.timestamp_micros().to_le_bytes());
        }
        None => out.push(0),
    }
    let extras = [
        (TAG_PEER, m.peer.as_deref()),
        (TAG_NODE, m.node.as_deref()),
        (TAG_CREDENTIAL, m.credential.as_deref()),
        (TAG_ROLE, m.role.as_deref()),
        (TAG_AGENCY, m.agency.as_deref()),
    ];
    out.push(extras.iter().filter(|(_, v)| v.is_some()).count() as u8);
    for (tag, value) in extras {
        if value.is_some() {
            out.push(tag);
            put_opt_str(out, value);
        }
    }
    out.extend_from_slice(&(event.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&event.data);
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        None => out.push(0),
    }
}

fn put_opt_uuid(out: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(id.as_bytes());
        }
        None => out.push(0),
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "record ends at byte {} but needs {} more",
                    self.buf.len(),
                    n
                ))
            })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }
    fn str(&mut self, len: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| DecodeError("text is not UTF-8".into()))
    }
    fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => {
                let len = self.u32()? as usize;
                self.str(len).map(Some)
            }
        }
    }
    fn opt_uuid(&mut self) -> Result<Option<Uuid>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.uuid().map(Some),
        }
    }
}

fn micros(t: u64) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::from_timestamp_micros(t as i64)
        .ok_or_else(|| DecodeError(format!("timestamp {t} out of range")))
}

/// Checks the CRC and decodes a record stored at `position`.
pub(crate) fn decode(position: Position, buf: &[u8]) -> Result<RecordedEvent, DecodeError> {
    if buf.len() < 5 {
        return Err(DecodeError(format!(
            "record is {} bytes, too short",
            buf.len()
        )));
    }
    let stored = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(&buf[4..]);
    if stored != actual {
        return Err(DecodeError(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x}) over {} bytes",
            buf.len()
        )));
    }
    let mut r = Reader { buf, at: 4 };
    let format = r.u8()?;
    if format != 1 && format != FORMAT {
        return Err(DecodeError(format!("unknown record format {format}")));
    }
    let revision = r.u64()?;
    let id = r.uuid()?;
    let schema_version = r.u32()?;
    let recorded_at = micros(r.u64()?)?;
    let len = r.u16()? as usize;
    let stream = StreamName::parse(r.str(len)?).map_err(|e| DecodeError(e.to_string()))?;
    let len = r.u16()? as usize;
    let event_type = r.str(len)?;
    let actor = r.opt_str()?;
    let source = r.opt_str()?;
    let correlation_id = r.opt_uuid()?;
    let causation_id = r.opt_uuid()?;
    let occurred_at = match r.u8()? {
        0 => None,
        _ => Some(micros(r.u64()?)?),
    };
    let (mut peer, mut node, mut credential, mut role, mut agency) = (None, None, None, None, None);
    if format >= 2 {
        for _ in 0..r.u8()? {
            let tag = r.u8()?;
            let value = r.opt_str()?;
            match tag {
                TAG_PEER => peer = value,
                TAG_NODE => node = value,
                TAG_CREDENTIAL => credential = value,
                TAG_ROLE => role = value,
                TAG_AGENCY => agency = value,
                other => return Err(DecodeError(format!("unknown metadata tag {other}"))),
            }
        }
    }
    let len = r.u32()? as usize;
    let data = r.take(len)?.to_vec();
    if r.at != buf.len() {
        return Err(DecodeError(format!(
            "{} unexpected bytes after the record",
            buf.len() - r.at
        )));
    }
    Ok(RecordedEvent {
        stream,
        revision,
        position,
        id,
        event_type,
        schema_version,
        data,
        metadata: EventMetadata {
            actor,
            source,
            correlation_id,
            causation_id,
            occurred_at,
            peer,
            node,
            credential,
            role,
            agency,
        },
        recorded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (StreamName, NewEvent) {
        let stream = StreamName::parse("incident-1").unwrap();
        let event = NewEvent::from_json_bytes(
            Uuid::new_v4(),
            "IncidentReported",
            2,
            br#"{"a":1}"#.to_vec(),
        )
        .unwrap()
        .with_metadata(EventMetadata {
            actor: Some("op-7".into()),
            source: None,
            correlation_id: Some(Uuid::new_v4()),
            causation_id: None,
            occurred_at: Some(DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap()),
            peer: Some("192.0.2.7".into()),
            node: None,
            credential: Some("token:0123456789abcdef".into()),
            role: Some("operator".into()),
            agency: Some("fire".into()),
        });
        (stream, event)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let (stream, event) = sample();
        let now = DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap();
        let mut buf = Vec::new();
        encode(&stream, 5, now, &event, &mut buf);
        let back = decode(Position(9), &buf).unwrap();
        assert!(back.same_as(&stream, &event));
        assert_eq!(
            (back.revision, back.position, back.recorded_at),
            (5, Position(9), now)
        );
    }

    #[test]
    fn format_1_records_read_as_they_were() {
        let (stream, mut event) = sample();
        event.metadata.peer = None;
        event.metadata.credential = None;
        event.metadata.role = None;
        event.metadata.agency = None;
        let now = DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap();
        let mut buf = Vec::new();
        encode(&stream, 5, now, &event, &mut buf);
        // Format 1 is format 2 without the count of additional texts (here 0), just before
        // the data's length.
        let count_at = buf.len() - event.data.len() - 4 - 1;
        assert_eq!(buf[count_at], 0);
        buf.remove(count_at);
        buf[4] = 1;
        let crc = crc32fast::hash(&buf[4..]);
        buf[..4].copy_from_slice(&crc.to_le_bytes());
        let back = decode(Position(9), &buf).unwrap();
        assert!(back.same_as(&stream, &event));
    }

    #[test]
    fn every_single_flipped_bit_is_detected() {
        let (stream, event) = sample();
        let mut buf = Vec::new();
        encode(&stream, 0, Utc::now(), &event, &mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(Position(0), &bad).is_err(),
                    "flip at byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn truncated_records_are_refused() {
        let (stream, event) = sample();
        let mut buf = Vec::new();
        encode(&stream, 0, Utc::now(), &event, &mut buf);
        for len in 0..buf.len() {
            assert!(
                decode(Position(0), &buf[..len]).is_err(),
                "record cut to {len} bytes accepted"
            );
        }
    }
}
