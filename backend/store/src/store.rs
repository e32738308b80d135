//! The [`EventStore`] trait every backend implements.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::Result;
use crate::subscription::{AllSubscription, StreamSubscription, SubscribeFrom};
use crate::types::{
    AppendResult, DataKey, Direction, ExpectedState, METADATA_EVENT_TYPE, NewEvent, Position,
    ReadFrom, RecordedEvent, StoreStats, StreamAppend, StreamMetadata, StreamName, StreamRevision,
};

/// An append-only event store with KurrentDB semantics.
///
/// - `append` checks the expected state, writes the batch atomically, and answers only once
///   the events are durable.
/// - Appends are idempotent by event id, for ever: re-sending a stored batch writes nothing and
///   answers as the first time.
/// - `$all` is one gap-free order: a reader at a position has seen every event committed
///   before it. Positions increase along `$all` but need not be dense (the embedded store's
///   are; PostgreSQL's are not), so code above the store never counts events by subtracting
///   positions.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if the stream is in the `expected` state.
    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedState,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult>;

    /// Appends to several streams in one atomic step: every part's expected state is checked,
    /// and either every part is written, with consecutive positions in the order given, or
    /// none is. A decision that touches several aggregates (an assignment: the incident and
    /// the unit) is appended this way, so each stream's expected revision guards it.
    ///
    /// Idempotent like [`EventStore::append`]: when every part is stored already the first
    /// answers are given; when only some are, the append is an
    /// [`crate::StoreError::IdClash`]. A stream may appear once, and never together with its
    /// metadata stream. Answers one result per part, in order.
    async fn append_many(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>>;

    /// Reads up to `limit` events of a stream, honouring its metadata (truncation, max count,
    /// max age). A stream that does not exist or was soft-deleted is
    /// [`crate::StoreError::StreamNotFound`].
    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of `$all` starting at `from` (included), oldest first.
    async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of `$all` ending just before `before`, newest first.
    async fn read_all_backwards(
        &self,
        before: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// The stream's current metadata (default when none was set).
    async fn stream_metadata(&self, stream: &StreamName) -> Result<StreamMetadata>;

    /// Sets a stream's metadata by appending to its metadata stream.
    async fn set_stream_metadata(
        &self,
        stream: &StreamName,
        expected_meta: ExpectedState,
        metadata: StreamMetadata,
    ) -> Result<AppendResult> {
        let event = NewEvent::json(uuid::Uuid::now_v7(), METADATA_EVENT_TYPE, 1, &metadata)?;
        self.append(&stream.metastream()?, expected_meta, vec![event])
            .await
    }

    /// Soft-deletes a stream: its events stay in `$all`, reads of the stream find nothing,
    /// and a later append recreates it with revisions going on from where they were.
    async fn delete_stream(&self, stream: &StreamName, expected: ExpectedState)
    -> Result<Position>;

    /// Revision of the stream's last event, `None` when it has none.
    async fn stream_revision(&self, stream: &StreamName) -> Result<Option<StreamRevision>>;

    /// The position right after the last event of `$all` that the store has seen committed:
    /// every event before it is committed, and none will ever commit before it.
    fn head(&self) -> Position;

    /// Follows [`EventStore::head`]; changes after each commit.
    fn watch_head(&self) -> watch::Receiver<Position>;

    /// Whether the store has been closed; subscriptions end when it is.
    fn is_closed(&self) -> bool {
        false
    }

    /// Store-wide figures.
    async fn stats(&self) -> Result<StoreStats>;

    /// The key that seals `owner`'s personal data, made (and stored durably) when `create`
    /// and there is none yet. `None` when there is none: never made, or destroyed. Once
    /// destroyed, an owner never gets a key again.
    async fn data_key(&self, owner: uuid::Uuid, create: bool) -> Result<Option<DataKey>>;

    /// Destroys `owner`'s key, so that what it sealed can never be read again; whether there
    /// was one to destroy. Idempotent.
    async fn destroy_data_key(&self, owner: uuid::Uuid) -> Result<bool>;

    /// Whether this node leads `role` (work that must run on one node of those sharing the
    /// store: automatic dispatch, the acknowledgement watchdog), following changes. A store
    /// used by one process only (the embedded one) always leads; PostgreSQL elects one
    /// leader per role among the nodes and moves it when the leader goes.
    fn leadership(&self, role: &str) -> watch::Receiver<bool> {
        let _ = role;
        watch::channel(true).1
    }
}

/// Subscriptions, for every store.
pub trait EventStoreExt {
    /// Subscribes to `$all`: catch-up from `from`, then live, with no gap and no duplicate.
    fn subscribe_all(&self, from: SubscribeFrom<Position>) -> AllSubscription;
    /// Subscribes to one stream: catch-up from `from`, then live.
    fn subscribe_stream(
        &self,
        stream: StreamName,
        from: SubscribeFrom<StreamRevision>,
    ) -> StreamSubscription;
}

impl EventStoreExt for std::sync::Arc<dyn EventStore> {
    fn subscribe_all(&self, from: SubscribeFrom<Position>) -> AllSubscription {
        AllSubscription::new(self.clone(), from)
    }

    fn subscribe_stream(
        &self,
        stream: StreamName,
        from: SubscribeFrom<StreamRevision>,
    ) -> StreamSubscription {
        StreamSubscription::new(self.clone(), stream, from)
    }
}
