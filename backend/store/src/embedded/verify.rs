//! Full checks and consistent copies of an embedded store.

use std::collections::HashMap;
use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;

use super::{
    DATA_KEYS, EVENT_IDS, EVENTS, META, META_HEAD, STORE_FILE, STREAM_INDEX, STREAMS, codec,
    storage,
};
use crate::error::{Result, StoreError};
use crate::rules::StreamInfo;
use crate::types::{Position, StoreStats};

/// Problems reported at most; the count goes on past it.
const MAX_PROBLEMS: usize = 100;
/// Entries copied per transaction of a backup.
const BACKUP_CHUNK: usize = 50_000;

/// What a full check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Streams checked.
    pub streams: u64,
    /// The head counter.
    pub head: u64,
    /// Problems found, each naming the place (at most 100 listed).
    pub problems: Vec<String>,
    /// Problems found in all.
    pub problem_count: u64,
}

impl VerifyReport {
    pub(crate) fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }
}

/// Scans every event and index entry: checksums, a gap-free `$all`, contiguous stream
/// revisions, and indexes that agree with the events.
pub(crate) fn verify(db: &Database, path: &Path) -> Result<VerifyReport> {
    let run = || -> Result<VerifyReport> {
        let txn = db.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let streams = txn.open_table(STREAMS).map_err(storage)?;
        let index = txn.open_table(STREAM_INDEX).map_err(storage)?;
        let ids = txn.open_table(EVENT_IDS).map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        let mut report = VerifyReport {
            head: meta
                .get(META_HEAD)
                .map_err(storage)?
                .map(|v| v.value())
                .unwrap_or(0),
            ..Default::default()
        };

        let mut infos: HashMap<String, (u64, StreamInfo, u64)> = HashMap::new();
        for entry in streams.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            match StreamInfo::decode(v.value()) {
                Some((id, info)) => {
                    infos.insert(k.value().to_owned(), (id, info, 0));
                }
                None => report.problem(format!("stream record of {:?} is damaged", k.value())),
            }
        }
        report.streams = infos.len() as u64;

        let mut expected = 0u64;
        for entry in events.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let position = k.value();
            if position != expected {
                report.problem(format!(
                    "$all has a gap: events {expected} to {} are missing",
                    position.saturating_sub(1)
                ));
            }
            expected = position + 1;
            report.events += 1;
            let event = match codec::decode(Position(position), v.value()) {
                Ok(e) => e,
                Err(e) => {
                    report.problem(format!(
                        "event at position {position} in {}: {}",
                        path.display(),
                        e.0
                    ));
                    continue;
                }
            };
            match ids
                .get(event.id.as_u128())
                .map_err(storage)?
                .map(|v| v.value())
            {
                Some(p) if p == position => {}
                other => report.problem(format!(
                    "event {} at position {position}: the id index points to {other:?}",
                    event.id
                )),
            }
            match infos.get_mut(event.stream.as_str()) {
                None => report.problem(format!(
                    "event at position {position}: stream {} is not registered",
                    event.stream
                )),
                Some((id, _, seen)) => {
                    if event.revision != *seen {
                        report.problem(format!(
                            "stream {} is not contiguous: revision {} at position {position}, expected {}",
                            event.stream, event.revision, seen
                        ));
                    }
                    *seen = event.revision + 1;
                    match index.get((*id, event.revision)).map_err(storage)?.map(|v| v.value()) {
                        Some(p) if p == position => {}
                        other => report.problem(format!(
                            "stream {} revision {}: the stream index points to {other:?}, the event is at {position}",
                            event.stream, event.revision
                        )),
                    }
                }
            }
        }
        if expected != report.head {
            report.problem(format!(
                "the head counter is {} but $all ends at {expected}",
                report.head
            ));
        }
        for (name, (_, info, seen)) in &infos {
            if info.next_revision != *seen {
                report.problem(format!(
                    "stream {name}: the stream record says {} events, $all holds {seen}",
                    info.next_revision
                ));
            }
        }
        let index_len = index.len().map_err(storage)?;
        if index_len != report.events {
            report.problem(format!(
                "the stream index has {index_len} entries for {} events",
                report.events
            ));
        }
        let ids_len = ids.len().map_err(storage)?;
        if ids_len != report.events {
            report.problem(format!(
                "the id index has {ids_len} entries for {} events",
                report.events
            ));
        }
        Ok(report)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(StoreError::Corrupt {
            file: path.to_owned(),
            detail: "the database engine failed while scanning the file".into(),
            position: None,
        })
    })
}

/// Copies every table, as of one read snapshot, into a new store in `dir`.
pub(crate) fn backup(db: &Database, source: &Path, dir: &Path) -> Result<StoreStats> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::Storage(format!("cannot create {}: {e}", dir.display())))?;
    let target = dir.join(STORE_FILE);
    if target.exists() {
        return Err(StoreError::Storage(format!(
            "{} exists already; back up into an empty directory",
            target.display()
        )));
    }
    let partial = dir.join(format!("{STORE_FILE}.partial"));
    let _ = std::fs::remove_file(&partial);
    let out = Database::create(&partial)
        .map_err(|e| StoreError::Storage(format!("cannot create {}: {e}", partial.display())))?;
    let snapshot = db.begin_read().map_err(storage)?;
    copy_table(&snapshot, &out, EVENTS)?;
    copy_table(&snapshot, &out, STREAMS)?;
    copy_table(&snapshot, &out, STREAM_INDEX)?;
    copy_table(&snapshot, &out, EVENT_IDS)?;
    copy_table(&snapshot, &out, META)?;
    // The data keys go with the log: without them a restored log's caller details are lost.
    match snapshot.open_table(DATA_KEYS) {
        Ok(_) => copy_table(&snapshot, &out, DATA_KEYS)?,
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(storage(e)),
    }
    let events = snapshot
        .open_table(EVENTS)
        .map_err(storage)?
        .len()
        .map_err(storage)?;
    let streams = snapshot
        .open_table(STREAMS)
        .map_err(storage)?
        .len()
        .map_err(storage)?;
    let head = snapshot
        .open_table(META)
        .map_err(storage)?
        .get(META_HEAD)
        .map_err(storage)?
        .map(|v| v.value())
        .unwrap_or(0);
    drop(out);
    std::fs::rename(&partial, &target)
        .map_err(|e| StoreError::Storage(format!("cannot rename the backup: {e}")))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    tracing::info!(from = %source.display(), to = %target.display(), events, "backup written");
    Ok(StoreStats {
        events,
        streams,
        head: Position(head),
        file_bytes: std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0),
    })
}

fn copy_table<K, V>(
    snapshot: &redb::ReadTransaction,
    out: &Database,
    table: TableDefinition<K, V>,
) -> Result<()>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
    for<'a> K::SelfType<'a>: Sized,
{
    let source = snapshot.open_table(table).map_err(storage)?;
    let mut iter = source.iter().map_err(storage)?;
    loop {
        let mut txn = out.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        let mut copied = 0;
        {
            let mut dest = txn.open_table(table).map_err(storage)?;
            for entry in iter.by_ref() {
                let (k, v) = entry.map_err(storage)?;
                dest.insert(k.value(), v.value()).map_err(storage)?;
                copied += 1;
                if copied == BACKUP_CHUNK {
                    break;
                }
            }
        }
        txn.commit().map_err(storage)?;
        if copied < BACKUP_CHUNK {
            return Ok(());
        }
    }
}
