//! The contract every backend passes. A backend's tests call [`contract_tests!`] with a
//! function that makes a fresh, empty store; each case below becomes one test.
//!
//! The property test runs random sequences of appends, deletes and metadata changes against
//! the backend and against `Oracle`, a model written here with none of the backends' code
//! (one list of events, everything else found by scanning it), and requires the same answers
//! and the same logs.
//!
//! The reopen cases need [`Fixture::reopen`] and [`Fixture::crash_copy`]; a backend that keeps
//! nothing leaves them `None` and the cases say they were skipped.

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use uuid::Uuid;

use crate::{
    AppendResult, CurrentState, Direction, EventStore, EventStoreExt, ExpectedState, InvalidInput,
    MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_STREAM_NAME_BYTES, NewEvent, Position, ReadFrom,
    RecordedEvent, StoreError, StreamAppend, StreamMetadata, StreamName, SubscribeFrom,
};

/// A fresh store and whatever keeps it alive (a temporary directory, a database).
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn EventStore>,
    /// Dropped after the store.
    pub guard: Box<dyn Any + Send>,
    /// Opens the store again from what `guard` keeps, once every handle of `store` is dropped.
    /// `None` for a backend that keeps nothing across a reopen.
    pub reopen: Option<Reopen>,
    /// While `store` stays open, opens a copy of what a process killed at this moment would
    /// leave behind (nothing closed, nothing flushed on the way out), with the copy's guard.
    /// `None` for a backend without such a state.
    pub crash_copy: Option<CrashCopy>,
}

/// What keeps a fixture's store alive.
pub type Guard = dyn Any + Send;
/// See [`Fixture::reopen`].
pub type Reopen = fn(&Guard) -> Arc<dyn EventStore>;
/// See [`Fixture::crash_copy`].
pub type CrashCopy = fn(&Guard) -> (Arc<dyn EventStore>, Box<Guard>);

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fixture")
    }
}

/// Longest a contract test waits for a condition.
const DEADLINE: Duration = Duration::from_secs(30);

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

fn event(n: u32) -> NewEvent {
    NewEvent::json(
        Uuid::new_v4(),
        "Tested",
        1,
        &serde_json::json!({ "n": n, "pad": "x".repeat(40) }),
    )
    .unwrap()
}

fn events(n: u32) -> Vec<NewEvent> {
    (0..n).map(event).collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Every event of `$all`, oldest first.
pub async fn whole_log(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    loop {
        let from = out.last().map_or(Position::START, |e| e.position.next());
        let page = store.read_all(from, 1000).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The position of the `n`-th event of `$all` (0 for the first). Positions increase along
/// `$all` but need not be dense (PostgreSQL's and KurrentDB's are not).
/// Waits (up to the deadline) for the event to be in `$all`.
pub async fn nth(store: &dyn EventStore, n: usize) -> Position {
    within(&format!("event number {n} in $all"), async {
        loop {
            if let Some(e) = whole_log(store).await.get(n) {
                return e.position;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Waits until the head is right after the last event of `$all`: a store whose head follows
/// its commits a moment later (PostgreSQL's) has then seen them.
pub async fn settle(store: &dyn EventStore) {
    within("the head to settle", async {
        loop {
            let want = whole_log(store)
                .await
                .last()
                .map_or(Position::START, |e| e.position.next());
            if store.head() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until the head is past `position`: every acknowledged event up to it is then in `$all`.
pub async fn wait_past(store: &dyn EventStore, position: Position) {
    within("the head to pass an acknowledged append", async {
        while store.head() <= position {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Requires `$all` to hold exactly `n` events and, once the store has seen its own commits,
/// the head to be right after the last of them.
pub async fn assert_head(store: &dyn EventStore, n: usize) {
    within("the head to settle", async {
        loop {
            let log = whole_log(store).await;
            assert!(
                log.len() <= n,
                "$all has {} events, expected {n}",
                log.len()
            );
            let want = log.last().map_or(Position::START, |e| e.position.next());
            if log.len() == n && store.head() == want {
                return;
            }
            assert!(
                store.head() <= want || log.len() < n,
                "the head {:?} is past the last event of $all ({want:?})",
                store.head()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Generates one `#[tokio::test]` per contract case for a backend.
#[macro_export]
macro_rules! contract_tests {
    // `?factory`: a factory answering `Option<Fixture>`, `None` when its backend is not there
    // (each case then passes, saying it was skipped).
    (? $factory:path) => {
        $crate::contract_tests!(@every optional $factory);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn matches_reference_model() {
            if $factory().await.is_some() {
                $crate::contract::matches_reference_model(|| async { $factory().await.unwrap() })
                    .await;
            }
        }
    };
    ($factory:path) => {
        $crate::contract_tests!(@every cases $factory);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn matches_reference_model() {
            $crate::contract::matches_reference_model(|| $factory()).await;
        }
    };
    (@every $kind:ident $factory:path) => {
        $crate::contract_tests!(@$kind $factory;
            append_creates_stream_and_reads_back,
            expected_states_are_checked,
            conflict_reports_actual_revision,
            batches_are_atomic,
            appends_are_idempotent_by_id,
            id_clashes_are_refused,
            reads_go_both_ways_with_limits,
            all_is_gap_free_and_ordered,
            bad_input_is_refused_and_writes_nothing,
            metadata_max_count_and_max_age,
            soft_delete_hides_and_recreates,
            subscribe_all_catch_up_then_live,
            subscribe_all_seam_under_concurrent_writes,
            subscribe_stream_catch_up_then_live,
            slow_subscriber_neither_blocks_nor_is_dropped,
            race_of_64_writers_one_winner_per_revision,
            multi_stream_appends_are_atomic,
            multi_stream_appends_are_idempotent,
            multi_stream_race_one_winner,
            reopen_keeps_everything,
            crash_keeps_every_acknowledged_append,
            data_keys_are_made_once_and_destroyed_for_ever
        );
    };
    (@optional $factory:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(fixture) = $factory().await {
                    $crate::contract::$case(fixture).await;
                }
            }
        )*
    };
    (@cases $factory:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::contract::$case($factory().await).await;
            }
        )*
    };
}

/// A data key is made once per owner and kept (across a reopen where the backend keeps
/// anything); destroyed, it is gone for ever and is never made again.
pub async fn data_keys_are_made_once_and_destroyed_for_ever(f: Fixture) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(f.store.data_key(a, false).await.unwrap(), None);
    let key = f
        .store
        .data_key(a, true)
        .await
        .unwrap()
        .expect("a key made");
    assert_eq!(f.store.data_key(a, true).await.unwrap(), Some(key.clone()));
    assert_eq!(f.store.data_key(a, false).await.unwrap(), Some(key.clone()));
    let other = f
        .store
        .data_key(b, true)
        .await
        .unwrap()
        .expect("a key made");
    assert_ne!(key, other);
    assert!(f.store.destroy_data_key(a).await.unwrap());
    assert!(
        !f.store.destroy_data_key(a).await.unwrap(),
        "destroyed twice"
    );
    assert_eq!(f.store.data_key(a, false).await.unwrap(), None);
    assert_eq!(f.store.data_key(a, true).await.unwrap(), None, "made again");
    if let Some(reopen) = f.reopen {
        drop(f.store);
        let store = reopen(&*f.guard);
        assert_eq!(store.data_key(a, true).await.unwrap(), None);
        assert_eq!(store.data_key(b, false).await.unwrap(), Some(other));
    }
}

/// A new stream takes events at revision 0, and they read back unchanged.
pub async fn append_creates_stream_and_reads_back(f: Fixture) {
    let s = stream("incident-1");
    let batch = events(3);
    let result = f
        .store
        .append(&s, ExpectedState::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(result.next_expected_revision, 2);
    assert_eq!(result.position, nth(f.store.as_ref(), 2).await);
    let read = f
        .store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, (stored, sent)) in read.iter().zip(&batch).enumerate() {
        assert!(
            stored.same_as(&s, sent),
            "event {i} differs from what was sent"
        );
        assert_eq!(stored.revision, i as u64);
        assert_eq!(stored.position, nth(f.store.as_ref(), i).await);
    }
    assert_head(f.store.as_ref(), 3).await;
    assert_eq!(f.store.stream_revision(&s).await.unwrap(), Some(2));
}

/// Any, no stream, stream exists and exact revision, each accepted and refused as KurrentDB does.
pub async fn expected_states_are_checked(f: Fixture) {
    let s = stream("unit-1");
    let st = &f.store;
    assert!(
        st.append(&s, ExpectedState::StreamExists, events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        st.append(&s, ExpectedState::Revision(0), events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    st.append(&s, ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    assert!(
        st.append(&s, ExpectedState::NoStream, events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    st.append(&s, ExpectedState::StreamExists, events(1))
        .await
        .unwrap();
    st.append(&s, ExpectedState::Revision(1), events(2))
        .await
        .unwrap();
    assert!(
        st.append(&s, ExpectedState::Revision(1), events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    let r = st.append(&s, ExpectedState::Any, events(1)).await.unwrap();
    assert_eq!(r.next_expected_revision, 4);
    assert_head(st.as_ref(), 5).await;
}

/// A conflict is typed and says what the stream actually is.
pub async fn conflict_reports_actual_revision(f: Fixture) {
    let s = stream("unit-2");
    f.store
        .append(&s, ExpectedState::NoStream, events(4))
        .await
        .unwrap();
    match f
        .store
        .append(&s, ExpectedState::Revision(1), events(1))
        .await
    {
        Err(StoreError::WrongExpectedState {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream, s);
            assert_eq!(expected, ExpectedState::Revision(1));
            assert_eq!(actual, CurrentState::Revision(3));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let other = stream("unit-3");
    match f
        .store
        .append(&other, ExpectedState::StreamExists, events(1))
        .await
    {
        Err(StoreError::WrongExpectedState {
            actual: CurrentState::NoStream,
            ..
        }) => {}
        other => panic!("expected a no-stream conflict, got {other:?}"),
    }
}

/// A refused batch leaves nothing behind, not even its valid events.
pub async fn batches_are_atomic(f: Fixture) {
    let s = stream("incident-2");
    f.store
        .append(&s, ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    let mut batch = events(3);
    batch[2].data = b"{not json".to_vec();
    let err = f
        .store
        .append(&s, ExpectedState::Any, batch.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Invalid(InvalidInput::Data { .. })),
        "{err:?}"
    );
    assert_head(f.store.as_ref(), 1).await;
    assert!(
        f.store
            .append(&s, ExpectedState::Revision(7), events(3))
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert_head(f.store.as_ref(), 1).await;
    let ids: HashSet<Uuid> = batch.iter().map(|e| e.id).collect();
    let all = f.store.read_all(Position::START, 100).await.unwrap();
    assert!(
        all.iter().all(|e| !ids.contains(&e.id)),
        "part of a refused batch was stored"
    );
}

/// Re-sending a stored append succeeds, answers as the first time, and writes nothing, even
/// when the stream has moved on and the retry's expected state no longer holds.
pub async fn appends_are_idempotent_by_id(f: Fixture) {
    let s = stream("incident-3");
    let batch = events(2);
    let first = f
        .store
        .append(&s, ExpectedState::NoStream, batch.clone())
        .await
        .unwrap();
    let again = f
        .store
        .append(&s, ExpectedState::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(first, again);
    f.store
        .append(&s, ExpectedState::Any, events(3))
        .await
        .unwrap();
    let late = f
        .store
        .append(&s, ExpectedState::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(first, late);
    assert_head(f.store.as_ref(), 5).await;
    assert_eq!(
        f.store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, 100)
            .await
            .unwrap()
            .len(),
        5
    );
}

/// An id stored with another event, or a batch only partly stored, is an error.
pub async fn id_clashes_are_refused(f: Fixture) {
    let s = stream("incident-4");
    let batch = events(2);
    f.store
        .append(&s, ExpectedState::NoStream, batch.clone())
        .await
        .unwrap();

    let mut changed = batch.clone();
    changed[0].data = br#"{"n":99}"#.to_vec();
    assert!(matches!(
        f.store.append(&s, ExpectedState::Any, changed).await,
        Err(StoreError::IdClash { .. })
    ));
    let elsewhere = stream("incident-5");
    assert!(matches!(
        f.store
            .append(&elsewhere, ExpectedState::Any, batch.clone())
            .await,
        Err(StoreError::IdClash { .. })
    ));
    let mut partial = vec![batch[0].clone()];
    partial.push(event(7));
    assert!(matches!(
        f.store.append(&s, ExpectedState::Any, partial).await,
        Err(StoreError::IdClash { .. })
    ));
    assert_head(f.store.as_ref(), 2).await;
}

/// Stream reads forwards and backwards, from a revision, with a limit.
pub async fn reads_go_both_ways_with_limits(f: Fixture) {
    let s = stream("unit-9");
    f.store
        .append(&s, ExpectedState::NoStream, events(10))
        .await
        .unwrap();
    f.store
        .append(&stream("noise"), ExpectedState::Any, events(5))
        .await
        .unwrap();
    let revs = |v: Vec<RecordedEvent>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
    let st = &f.store;
    let cases: [(Direction, ReadFrom, usize, &[u64]); 4] = [
        (Direction::Forwards, ReadFrom::Start, 3, &[0, 1, 2]),
        (Direction::Forwards, ReadFrom::Revision(8), 5, &[8, 9]),
        (Direction::Backwards, ReadFrom::End, 3, &[9, 8, 7]),
        (Direction::Backwards, ReadFrom::Revision(2), 10, &[2, 1, 0]),
    ];
    for (direction, from, limit, want) in cases {
        let got = revs(st.read_stream(&s, direction, from, limit).await.unwrap());
        assert_eq!(got, want, "{direction:?} from {from:?}, limit {limit}");
    }
    assert!(
        st.read_stream(&s, Direction::Forwards, ReadFrom::Revision(10), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        st.read_stream(&s, Direction::Forwards, ReadFrom::End, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        st.read_stream(&stream("never"), Direction::Forwards, ReadFrom::Start, 5)
            .await,
        Err(StoreError::StreamNotFound(_))
    ));
}

/// `$all` holds every event once, in commit order, with positions 0, 1, 2, …
pub async fn all_is_gap_free_and_ordered(f: Fixture) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("writer-{w}"));
            for i in 0..10 {
                store
                    .append(&s, ExpectedState::Revision(i).into_first(i), events(3))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_head(f.store.as_ref(), 240).await;
    let all = f.store.read_all(Position::START, 1000).await.unwrap();
    assert_eq!(all.len(), 240);
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "$all is not in increasing positions"
    );
    let at = |i: usize| all[i].position;
    let tail = f.store.read_all(at(230), 5).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.position).collect::<Vec<_>>(),
        (230..235).map(at).collect::<Vec<_>>()
    );
    // A read from between two positions starts at the next event.
    let between = f.store.read_all(at(229).next(), 1).await.unwrap();
    assert_eq!(between[0].position, at(230));
    let back = f.store.read_all_backwards(at(239).next(), 3).await.unwrap();
    assert_eq!(
        back.iter().map(|e| e.position).collect::<Vec<_>>(),
        [at(239), at(238), at(237)]
    );
    let head = f.store.head();
    assert_eq!(head, at(239).next());
    assert!(f.store.read_all(head, 5).await.unwrap().is_empty());
    let mut last_rev = std::collections::HashMap::new();
    for e in &all {
        let prev = last_rev.insert(e.stream.clone(), e.revision);
        assert_eq!(
            prev.map_or(0, |p| p + 1),
            e.revision,
            "stream {} not contiguous in $all",
            e.stream
        );
    }
}

trait FirstAppend {
    fn into_first(self, i: u64) -> ExpectedState;
}

impl FirstAppend for ExpectedState {
    /// For a writer appending batches of three: no stream first, then the last revision.
    fn into_first(self, i: u64) -> ExpectedState {
        if i == 0 {
            ExpectedState::NoStream
        } else {
            ExpectedState::Revision(i * 3 - 1)
        }
    }
}

/// Each bad input is refused with a typed error that says what is wrong, and nothing is written.
pub async fn bad_input_is_refused_and_writes_nothing(f: Fixture) {
    let s = stream("incident-6");
    f.store
        .append(&s, ExpectedState::NoStream, events(1))
        .await
        .unwrap();

    for (why, name) in [
        ("empty", String::new()),
        ("too long", "x".repeat(MAX_STREAM_NAME_BYTES + 1)),
        ("control character", "incident-\n1".to_owned()),
        ("NUL byte", "incident\0".to_owned()),
        ("surrounding space", " incident-1".to_owned()),
    ] {
        assert!(
            matches!(
                StreamName::parse(name),
                Err(InvalidInput::StreamName { .. })
            ),
            "stream name accepted: {why}"
        );
    }

    let big = NewEvent {
        id: Uuid::new_v4(),
        event_type: "Big".into(),
        schema_version: 1,
        data: format!("\"{}\"", "x".repeat(MAX_EVENT_BYTES)).into_bytes(),
        metadata: Default::default(),
    };
    let mut bad_type = event(1);
    bad_type.event_type = "Bad\ttype".into();
    let mut empty_type = event(1);
    empty_type.event_type = String::new();
    let mut not_json = event(1);
    not_json.data = b"{\"a\": }".to_vec();
    let dup = event(1);
    let cases: Vec<(&str, Vec<NewEvent>)> = vec![
        ("empty batch", vec![]),
        ("event over the size limit", vec![event(1), big]),
        (
            "batch over the event limit",
            (0..MAX_BATCH_EVENTS as u32 + 1).map(event).collect(),
        ),
        ("control character in the type", vec![bad_type]),
        ("empty type", vec![empty_type]),
        ("data not JSON", vec![not_json]),
        ("same id twice", vec![dup.clone(), dup]),
    ];
    for (why, batch) in cases {
        match f.store.append(&s, ExpectedState::Any, batch).await {
            Err(StoreError::Invalid(e)) => assert!(!e.to_string().is_empty(), "{why}: no message"),
            other => panic!("{why}: expected an invalid-input error, got {other:?}"),
        }
    }
    assert_head(f.store.as_ref(), 1).await;
    let meta = stream("$$incident-6");
    assert!(
        f.store
            .append(&meta, ExpectedState::Any, events(1))
            .await
            .unwrap_err()
            .is_invalid()
    );
}

/// Max count and max age limit what a stream read returns; `$all` keeps everything.
pub async fn metadata_max_count_and_max_age(f: Fixture) {
    let s = stream("sensor-1");
    f.store
        .append(&s, ExpectedState::NoStream, events(10))
        .await
        .unwrap();
    assert_eq!(
        f.store.stream_metadata(&s).await.unwrap(),
        StreamMetadata::default()
    );
    let meta = StreamMetadata {
        max_count: Some(3),
        ..Default::default()
    };
    f.store
        .set_stream_metadata(&s, ExpectedState::NoStream, meta.clone())
        .await
        .unwrap();
    assert_eq!(f.store.stream_metadata(&s).await.unwrap(), meta);
    let read = f
        .store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 100)
        .await
        .unwrap();
    assert_eq!(
        read.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    let back = f
        .store
        .read_stream(&s, Direction::Backwards, ReadFrom::End, 100)
        .await
        .unwrap();
    assert_eq!(back.len(), 3);

    let aged = StreamMetadata {
        max_age_secs: Some(3600),
        ..Default::default()
    };
    f.store
        .set_stream_metadata(&s, ExpectedState::Revision(0), aged)
        .await
        .unwrap();
    assert_eq!(
        f.store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, 100)
            .await
            .unwrap()
            .len(),
        10
    );
    let expired = StreamMetadata {
        max_age_secs: Some(0),
        ..Default::default()
    };
    f.store
        .set_stream_metadata(&s, ExpectedState::Revision(1), expired)
        .await
        .unwrap();
    assert!(
        f.store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        f.store
            .set_stream_metadata(&s, ExpectedState::Revision(0), StreamMetadata::default())
            .await
            .unwrap_err()
            .is_conflict()
    );
    let all = f.store.read_all(Position::START, 100).await.unwrap();
    assert_eq!(
        all.iter().filter(|e| e.stream == s).count(),
        10,
        "$all lost events"
    );
}

/// A soft-deleted stream reads as not found, stays in `$all`, and an append recreates it with
/// revisions going on.
pub async fn soft_delete_hides_and_recreates(f: Fixture) {
    let s = stream("incident-7");
    f.store
        .append(&s, ExpectedState::NoStream, events(3))
        .await
        .unwrap();
    assert!(
        f.store
            .delete_stream(&s, ExpectedState::Revision(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    f.store
        .delete_stream(&s, ExpectedState::Revision(2))
        .await
        .unwrap();
    assert!(matches!(
        f.store
            .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
            .await,
        Err(StoreError::StreamNotFound(_))
    ));
    assert!(
        f.store
            .append(&s, ExpectedState::StreamExists, events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(
        f.store
            .delete_stream(&s, ExpectedState::Any)
            .await
            .unwrap_err()
            .is_conflict()
    );
    let all = f.store.read_all(Position::START, 100).await.unwrap();
    assert_eq!(all.iter().filter(|e| e.stream == s).count(), 3);
    let r = f
        .store
        .append(&s, ExpectedState::NoStream, events(2))
        .await
        .unwrap();
    assert_eq!(r.next_expected_revision, 4);
    let read = f
        .store
        .read_stream(&s, Direction::Forwards, ReadFrom::Start, 10)
        .await
        .unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), [3, 4]);
}

/// Catch-up from the start, from a position and from the end, then live events.
pub async fn subscribe_all_catch_up_then_live(f: Fixture) {
    let s = stream("incident-8");
    f.store
        .append(&s, ExpectedState::NoStream, events(5))
        .await
        .unwrap();
    let mut from_start = f.store.subscribe_all(SubscribeFrom::Start);
    assert_head(f.store.as_ref(), 5).await;
    let mut after_two = f
        .store
        .subscribe_all(SubscribeFrom::After(nth(f.store.as_ref(), 2).await));
    let mut from_end = f.store.subscribe_all(SubscribeFrom::End);
    for i in 0..5 {
        assert_eq!(
            within("catch-up", from_start.next())
                .await
                .unwrap()
                .position,
            nth(f.store.as_ref(), i).await
        );
    }
    for i in 3..5 {
        assert_eq!(
            within("catch-up", after_two.next()).await.unwrap().position,
            nth(f.store.as_ref(), i).await
        );
    }
    assert!(from_end.try_next().await.unwrap().is_none());
    f.store
        .append(&s, ExpectedState::Any, events(2))
        .await
        .unwrap();
    assert_head(f.store.as_ref(), 7).await;
    for sub in [&mut from_start, &mut after_two, &mut from_end] {
        for i in 5..7 {
            assert_eq!(
                within("live event", sub.next()).await.unwrap().position,
                nth(f.store.as_ref(), i).await
            );
        }
    }
}

/// Writers keep appending while a subscriber catches up: it sees every position once, in order.
pub async fn subscribe_all_seam_under_concurrent_writes(f: Fixture) {
    f.store
        .append(&stream("seed"), ExpectedState::Any, events(50))
        .await
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = f.store.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    store
                        .append(&stream(&format!("seam-{w}")), ExpectedState::Any, events(2))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut sub = f.store.subscribe_all(SubscribeFrom::Start);
    let total = 50 + 4 * 25 * 2;
    let mut seen = Vec::with_capacity(total);
    for _ in 0..total {
        let e = within("every event", sub.next()).await.unwrap();
        seen.push(e.position);
    }
    let log: Vec<Position> = whole_log(f.store.as_ref())
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(seen, log, "gap or duplicate at the seam");
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        sub.try_next().await.unwrap().is_none(),
        "an event was delivered twice"
    );
}

/// A stream subscription sees only its stream, catch-up then live.
pub async fn subscribe_stream_catch_up_then_live(f: Fixture) {
    let s = stream("unit-10");
    f.store
        .append(&s, ExpectedState::NoStream, events(3))
        .await
        .unwrap();
    f.store
        .append(&stream("other"), ExpectedState::Any, events(3))
        .await
        .unwrap();
    let mut sub = f.store.subscribe_stream(s.clone(), SubscribeFrom::After(0));
    assert_head(f.store.as_ref(), 6).await;
    let mut live_only = f.store.subscribe_stream(s.clone(), SubscribeFrom::End);
    let mut not_yet = f
        .store
        .subscribe_stream(stream("unit-11"), SubscribeFrom::Start);
    assert_eq!(
        within("stream event", sub.next()).await.unwrap().revision,
        1
    );
    assert_eq!(
        within("stream event", sub.next()).await.unwrap().revision,
        2
    );
    f.store
        .append(&stream("other"), ExpectedState::Any, events(1))
        .await
        .unwrap();
    f.store
        .append(&s, ExpectedState::Any, events(1))
        .await
        .unwrap();
    f.store
        .append(&stream("unit-11"), ExpectedState::Any, events(1))
        .await
        .unwrap();
    let e = within("live stream event", sub.next()).await.unwrap();
    assert_eq!((e.stream.as_str(), e.revision), ("unit-10", 3));
    assert_eq!(
        within("live-only event", live_only.next())
            .await
            .unwrap()
            .revision,
        3
    );
    assert_eq!(
        within("new stream event", not_yet.next())
            .await
            .unwrap()
            .stream
            .as_str(),
        "unit-11"
    );
}

/// Writers finish while a subscriber reads nothing; the subscriber then gets every event.
pub async fn slow_subscriber_neither_blocks_nor_is_dropped(f: Fixture) {
    let mut idle = f.store.subscribe_all(SubscribeFrom::Start);
    let s = stream("busy");
    within("writers not blocked by an idle subscriber", async {
        for _ in 0..20 {
            f.store
                .append(&s, ExpectedState::Any, events(100))
                .await
                .unwrap();
        }
    })
    .await;
    assert_head(f.store.as_ref(), 2000).await;
    let log = whole_log(f.store.as_ref()).await;
    for e in &log {
        assert_eq!(
            within("late reader", idle.next()).await.unwrap().position,
            e.position
        );
    }
}

/// 64 tasks append at the same expected revision at once, round after round: one wins each
/// round, the other 63 are refused with the winner's revision.
pub async fn race_of_64_writers_one_winner_per_revision(f: Fixture) {
    const TASKS: usize = 64;
    const ROUNDS: u64 = 8;
    let s = stream("unit-race");
    f.store
        .append(&s, ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = f.store.clone();
                let barrier = barrier.clone();
                let s = s.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .append(&s, ExpectedState::Revision(round), events(1))
                        .await
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    winners += 1;
                    assert_eq!(r.next_expected_revision, round + 1);
                }
                Err(StoreError::WrongExpectedState { actual, .. }) => {
                    assert_eq!(actual, CurrentState::Revision(round + 1));
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: {winners} winners");
    }
    assert_eq!(f.store.stream_revision(&s).await.unwrap(), Some(ROUNDS));
}

fn part(name: &str, expected: ExpectedState, n: u32) -> StreamAppend {
    StreamAppend::new(stream(name), expected, events(n))
}

/// An append to several streams writes every part with consecutive positions, or, when one
/// part's expected state does not hold, none of them.
pub async fn multi_stream_appends_are_atomic(f: Fixture) {
    let st = &f.store;
    let results = st
        .append_many(vec![
            part("incident-m1", ExpectedState::NoStream, 2),
            part("unit-m1", ExpectedState::NoStream, 1),
        ])
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            AppendResult {
                next_expected_revision: 1,
                position: nth(st.as_ref(), 1).await
            },
            AppendResult {
                next_expected_revision: 0,
                position: nth(st.as_ref(), 2).await
            },
        ]
    );
    let refused = st
        .append_many(vec![
            part("incident-m1", ExpectedState::Revision(1), 1),
            part("unit-m1", ExpectedState::Revision(7), 1),
        ])
        .await
        .unwrap_err();
    match refused {
        StoreError::WrongExpectedState { stream, actual, .. } => {
            assert_eq!(stream.as_str(), "unit-m1");
            assert_eq!(actual, CurrentState::Revision(0));
        }
        other => panic!("expected a conflict on unit-m1, got {other:?}"),
    }
    assert_head(st.as_ref(), 3).await;
    assert_eq!(
        st.stream_revision(&stream("incident-m1")).await.unwrap(),
        Some(1),
        "the part whose expected state held was not written either"
    );
    let bad_cases: Vec<(&str, Vec<StreamAppend>)> = vec![
        ("no parts", vec![]),
        (
            "a stream twice",
            vec![
                part("unit-m2", ExpectedState::Any, 1),
                part("unit-m2", ExpectedState::Any, 1),
            ],
        ),
        (
            "a stream with its metadata stream",
            vec![part("unit-m3", ExpectedState::Any, 1), {
                let meta = NewEvent::json(
                    Uuid::new_v4(),
                    crate::METADATA_EVENT_TYPE,
                    1,
                    &StreamMetadata::default(),
                )
                .unwrap();
                StreamAppend::new(stream("$$unit-m3"), ExpectedState::Any, vec![meta])
            }],
        ),
        (
            "an empty part",
            vec![
                part("unit-m4", ExpectedState::Any, 1),
                part("unit-m5", ExpectedState::Any, 0),
            ],
        ),
        ("one event id in two parts", {
            let shared = events(1);
            vec![
                StreamAppend::new(stream("unit-m6"), ExpectedState::Any, shared.clone()),
                StreamAppend::new(stream("unit-m7"), ExpectedState::Any, shared),
            ]
        }),
    ];
    for (why, parts) in bad_cases {
        match st.append_many(parts).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{why}: expected an invalid-input refusal, got {other:?}"),
        }
    }
    assert_head(st.as_ref(), 3).await;
}

/// Re-sending a stored multi-stream append answers as the first time; re-sending one part
/// with a new part beside it is a clash.
pub async fn multi_stream_appends_are_idempotent(f: Fixture) {
    let st = &f.store;
    let parts = vec![
        part("incident-i1", ExpectedState::NoStream, 1),
        part("unit-i1", ExpectedState::NoStream, 2),
    ];
    let first = st.append_many(parts.clone()).await.unwrap();
    let again = st.append_many(parts.clone()).await.unwrap();
    assert_eq!(first, again);
    assert_head(st.as_ref(), 3).await;
    let mixed = vec![
        parts[0].clone(),
        part("unit-i2", ExpectedState::NoStream, 1),
    ];
    match st.append_many(mixed).await {
        Err(StoreError::IdClash { .. }) => {}
        other => panic!("expected an id clash, got {other:?}"),
    }
    assert_head(st.as_ref(), 3).await;
}

/// Many writers book one unit onto different incidents at once, each guarding both
/// streams: exactly one wins, and no incident of a loser was written.
pub async fn multi_stream_race_one_winner(f: Fixture) {
    const TASKS: usize = 64;
    let unit = stream("unit-contested");
    f.store
        .append(&unit, ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = f.store.clone();
            let barrier = barrier.clone();
            let unit = unit.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append_many(vec![
                        StreamAppend::new(unit, ExpectedState::Revision(0), events(1)),
                        part(&format!("incident-r{i}"), ExpectedState::NoStream, 1),
                    ])
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => winners.push(i),
            Err(e) if e.is_conflict() => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    for i in 0..TASKS {
        let written = f
            .store
            .stream_revision(&stream(&format!("incident-r{i}")))
            .await
            .unwrap();
        assert_eq!(written.is_some(), winners.contains(&i), "incident-r{i}");
    }
    assert_head(f.store.as_ref(), 3).await;
}

/// Everything a store keeps survives closing it and opening it again: events, revisions,
/// soft deletes, metadata, the head, and the ids that make a retried append a no-op.
pub async fn reopen_keeps_everything(f: Fixture) {
    let Some(reopen) = f.reopen else {
        println!("skipped: this backend keeps nothing across a reopen");
        return;
    };
    let names = [stream("kept-1"), stream("kept-2"), stream("kept-3")];
    let first = events(3);
    let st = &f.store;
    let first_result = st
        .append(&names[0], ExpectedState::NoStream, first.clone())
        .await
        .unwrap();
    st.append(&names[1], ExpectedState::NoStream, events(2))
        .await
        .unwrap();
    st.append(&names[1], ExpectedState::Revision(1), events(3))
        .await
        .unwrap();
    let three = StreamMetadata {
        max_count: Some(3),
        ..Default::default()
    };
    st.set_stream_metadata(&names[1], ExpectedState::Any, three.clone())
        .await
        .unwrap();
    st.append(&names[2], ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    st.delete_stream(&names[2], ExpectedState::Revision(0))
        .await
        .unwrap();
    assert_head(st.as_ref(), 11).await;
    let before = describe(st.as_ref(), &names).await;
    let head = st.head();
    assert_eq!(
        Arc::strong_count(&f.store),
        1,
        "the case holds the only handle"
    );
    drop(f.store);

    let st = reopen(&*f.guard);
    assert_eq!(
        describe(st.as_ref(), &names).await,
        before,
        "the reopened store differs"
    );
    assert_eq!(st.stream_metadata(&names[1]).await.unwrap(), three);
    let again = st
        .append(&names[0], ExpectedState::NoStream, first.clone())
        .await
        .unwrap();
    assert_eq!(
        again, first_result,
        "a retry after the reopen answers as before"
    );
    assert_eq!(st.head(), head, "and writes nothing");
    assert!(
        st.append(&names[0], ExpectedState::NoStream, events(1))
            .await
            .unwrap_err()
            .is_conflict()
    );
    let next = st
        .append(&names[0], ExpectedState::Revision(2), events(1))
        .await
        .unwrap();
    assert_eq!(next.next_expected_revision, 3);
    assert!(
        next.position >= head,
        "the first append after the reopen is at {:?}, before the head {head:?}",
        next.position
    );
    let recreated = st
        .append(&names[2], ExpectedState::NoStream, events(1))
        .await
        .unwrap();
    assert_eq!(
        recreated.next_expected_revision, 1,
        "a deleted stream stays deleted"
    );
    let fresh = stream("kept-4");
    st.append(&fresh, ExpectedState::NoStream, events(2))
        .await
        .unwrap();
    let read = st
        .read_stream(&fresh, Direction::Forwards, ReadFrom::Start, 10)
        .await
        .unwrap();
    assert_head(st.as_ref(), 15).await;
    assert_eq!(
        read.iter()
            .map(|e| (e.revision, e.position))
            .collect::<Vec<_>>(),
        [
            (0, nth(st.as_ref(), 13).await),
            (1, nth(st.as_ref(), 14).await)
        ],
        "a stream made after the reopen is a stream of its own"
    );
    let old = st
        .read_stream(&names[0], Direction::Forwards, ReadFrom::Start, 10)
        .await
        .unwrap();
    assert_eq!(
        old.iter()
            .map(|e| (e.stream.as_str(), e.position))
            .collect::<Vec<_>>(),
        [
            ("kept-1", nth(st.as_ref(), 0).await),
            ("kept-1", nth(st.as_ref(), 1).await),
            ("kept-1", nth(st.as_ref(), 2).await),
            ("kept-1", nth(st.as_ref(), 11).await)
        ],
        "a stream from before the reopen keeps its own events"
    );
}

/// A store left as a killed process leaves it holds every acknowledged append, unchanged and
/// gap-free, and takes appends and retries as if it had never stopped.
pub async fn crash_keeps_every_acknowledged_append(f: Fixture) {
    let Some(crash_copy) = f.crash_copy else {
        println!("skipped: this backend has no state for a crash to leave behind");
        return;
    };
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("crash-{w}"));
            let mut sent = Vec::new();
            for i in 0..10 {
                let batch = events(3);
                let expected = ExpectedState::Any.into_first(i);
                store.append(&s, expected, batch.clone()).await.unwrap();
                sent.push(batch);
            }
            (s, sent)
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.push(t.await.unwrap());
    }
    assert_head(f.store.as_ref(), 120).await;
    let head = f.store.head();
    let before = whole_log(f.store.as_ref()).await;

    let (st, _copy) = crash_copy(&*f.guard);
    assert_eq!(st.head(), head, "the head after the crash");
    let all = st.read_all(Position::START, 1000).await.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        before.iter().map(|e| e.position).collect::<Vec<_>>(),
        "$all changed by the crash"
    );
    for (s, sent) in &acknowledged {
        let read = st
            .read_stream(s, Direction::Forwards, ReadFrom::Start, 100)
            .await
            .unwrap();
        let sent: Vec<&NewEvent> = sent.iter().flatten().collect();
        assert_eq!(read.len(), sent.len(), "{s}: events after the crash");
        for (i, (stored, sent)) in read.iter().zip(sent).enumerate() {
            assert!(
                stored.same_as(s, sent),
                "{s}: event {i} changed by the crash"
            );
            assert_eq!(stored.revision, i as u64);
        }
    }
    let (s, sent) = &acknowledged[0];
    let retry = st
        .append(s, ExpectedState::NoStream, sent[0].clone())
        .await
        .unwrap();
    assert_eq!(
        retry.next_expected_revision, 2,
        "a retry after the crash is a no-op"
    );
    assert_eq!(st.head(), head);
    let next = st
        .append(s, ExpectedState::Revision(29), events(1))
        .await
        .unwrap();
    assert_eq!(
        next,
        AppendResult {
            next_expected_revision: 30,
            position: head
        }
    );
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        expected: ExpectedState,
        count: u32,
        replay: Option<usize>,
    },
    Delete {
        stream: usize,
        expected: ExpectedState,
    },
    MaxCount {
        stream: usize,
        max: Option<u64>,
    },
}

fn expected_strategy() -> impl Strategy<Value = ExpectedState> {
    prop_oneof![
        Just(ExpectedState::Any),
        Just(ExpectedState::NoStream),
        Just(ExpectedState::StreamExists),
        (0u64..6).prop_map(ExpectedState::Revision),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, expected_strategy(), 1u32..4, proptest::option::weighted(0.2, 0usize..50))
            .prop_map(|(stream, expected, count, replay)| Op::Append { stream, expected, count, replay }),
        1 => (0usize..3, expected_strategy()).prop_map(|(stream, expected)| Op::Delete { stream, expected }),
        1 => (0usize..3, proptest::option::of(1u64..4)).prop_map(|(stream, max)| Op::MaxCount { stream, max }),
    ]
}

fn outcome<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(StoreError::WrongExpectedState { actual, .. }) => format!("conflict {actual:?}"),
        Err(StoreError::IdClash { id, .. }) => format!("clash {id}"),
        Err(e) => format!("error {e}"),
    }
}

/// Each event's place in `$all` (0 for the first), by position: the stores are compared by
/// places, since positions need not be dense.
type Places = std::collections::HashMap<Position, u64>;

async fn places(store: &dyn EventStore) -> Places {
    whole_log(store)
        .await
        .iter()
        .enumerate()
        .map(|(i, e)| (e.position, i as u64))
        .collect()
}

/// Rewrites each `@position` in a line as `@place`.
fn in_places(line: &str, places: &Places) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<u64>() {
            Ok(p) => {
                let place = places.get(&Position(p)).map_or(u64::MAX, |i| *i);
                out.push_str(&place.to_string());
            }
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Comparable view of an event: system-made ids (of metadata events) are left out.
fn shape(e: &RecordedEvent, places: &Places) -> Shape {
    let id = (!e.stream.is_metastream()).then_some(e.id);
    (
        e.stream.to_string(),
        e.revision,
        places.get(&e.position).copied().unwrap_or(u64::MAX),
        id,
        e.event_type.clone(),
        e.data.clone(),
    )
}

async fn run_ops(
    store: &dyn EventStore,
    ops: &[Op],
    batches: &mut Vec<Vec<NewEvent>>,
    make: bool,
) -> Vec<String> {
    let names = [stream("p-0"), stream("p-1"), stream("p-2")];
    let mut log = Vec::new();
    let mut made = 0;
    let mut acknowledged: Option<Position> = None;
    let mut ack = |p: Position| acknowledged = acknowledged.max(Some(p));
    for (i, op) in ops.iter().enumerate() {
        let line = match op {
            Op::Append {
                stream,
                expected,
                count,
                replay,
            } => {
                let batch = op_batch(i, *count, *replay, &mut made, batches, make);
                let r = store.append(&names[*stream], *expected, batch).await;
                if let Ok(r) = &r {
                    ack(r.position);
                }
                outcome(&r)
            }
            Op::Delete { stream, expected } => {
                let r = store.delete_stream(&names[*stream], *expected).await;
                if let Ok(p) = &r {
                    ack(*p);
                }
                outcome(&r)
            }
            Op::MaxCount { stream, max } => {
                let meta = StreamMetadata {
                    max_count: *max,
                    ..Default::default()
                };
                let r = store
                    .set_stream_metadata(&names[*stream], ExpectedState::Any, meta)
                    .await;
                if let Ok(r) = &r {
                    ack(r.position);
                }
                outcome(&r)
            }
        };
        log.push(line);
    }
    if let Some(p) = acknowledged {
        wait_past(store, p).await;
    }
    let places = places(store).await;
    let mut log: Vec<String> = log.iter().map(|l| in_places(l, &places)).collect();
    log.extend(describe(store, &names).await);
    log
}

/// The batch an append op sends: an earlier one again, or the next new one (made here when
/// `make`, taken from `batches` otherwise).
fn op_batch(
    op: usize,
    count: u32,
    replay: Option<usize>,
    made: &mut usize,
    batches: &mut Vec<Vec<NewEvent>>,
    make: bool,
) -> Vec<NewEvent> {
    if let Some(r) = replay.filter(|r| *r < *made) {
        return batches[r].clone();
    }
    if make {
        batches.push(
            (0..count)
                .map(|n| NewEvent::json(Uuid::new_v4(), "Prop", 1, &(op, n)).unwrap())
                .collect(),
        );
    }
    *made += 1;
    batches[*made - 1].clone()
}

/// What a store holds, as comparable lines: each stream read both ways and its revision, then
/// `$all` and the head.
async fn describe(store: &dyn EventStore, names: &[StreamName]) -> Vec<String> {
    settle(store).await;
    let places = places(store).await;
    let shape = |e: &RecordedEvent| shape(e, &places);
    let mut log = Vec::new();
    for name in names {
        let fwd = store
            .read_stream(name, Direction::Forwards, ReadFrom::Start, 1000)
            .await;
        log.push(format!(
            "{name} forwards {:?}",
            fwd.map(|v| v.iter().map(shape).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        ));
        let back = store
            .read_stream(name, Direction::Backwards, ReadFrom::End, 2)
            .await;
        log.push(format!(
            "{name} backwards {:?}",
            back.map(|v| v.iter().map(shape).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        ));
        log.push(format!(
            "{name} revision {:?}",
            store.stream_revision(name).await.map_err(|e| e.to_string())
        ));
    }
    let all = store.read_all(Position::START, 10_000).await.unwrap();
    log.push(format!(
        "$all {:?}",
        all.iter().map(shape).collect::<Vec<_>>()
    ));
    let head = store.head();
    let before_head = all.iter().filter(|e| e.position < head).count() as u64;
    assert!(
        all.last().is_none_or(|e| e.position.next() == head),
        "the head {head:?} is not right after the last event"
    );
    log.push(format!("head {:?}", Position(before_head)));
    log
}

/// Random sequences of operations give the same answers and the same log as `Oracle`.
pub async fn matches_reference_model<F, Fut>(factory: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Fixture>,
{
    let config = proptest::test_runner::Config {
        cases: 24,
        failure_persistence: None,
        ..Default::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        config,
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let handle = tokio::runtime::Handle::current();
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..30), |ops| {
        let (backend_log, model_log) = tokio::task::block_in_place(|| {
            handle.block_on(async {
                let fresh = factory().await;
                let mut batches = Vec::new();
                let a = run_ops(fresh.store.as_ref(), &ops, &mut batches, true).await;
                let b = oracle_log(&ops, &mut batches);
                (a, b)
            })
        });
        for (i, (a, b)) in backend_log.iter().zip(&model_log).enumerate() {
            prop_assert_eq!(a, b, "step {} of {:?}", i, ops);
        }
        prop_assert_eq!(backend_log.len(), model_log.len());
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The store's semantics written out plainly, for the property test: one list of every event
/// ever appended, in commit order; a stream's revision, state, metadata and readable events
/// are all found by scanning that list.
#[derive(Debug, Default)]
struct Oracle {
    all: Vec<(StreamName, u64, NewEvent)>,
}

impl Oracle {
    fn in_stream<'a>(&'a self, s: &'a StreamName) -> impl Iterator<Item = (u64, &'a NewEvent)> {
        self.all
            .iter()
            .enumerate()
            .filter(move |(_, (name, _, _))| name == s)
            .map(|(position, (_, _, e))| (position as u64, e))
    }

    fn events_in(&self, s: &StreamName) -> u64 {
        self.in_stream(s).count() as u64
    }

    fn metadata(&self, s: &StreamName) -> StreamMetadata {
        let meta = s.metastream().unwrap();
        self.in_stream(&meta)
            .last()
            .map(|(_, e)| serde_json::from_slice(&e.data).unwrap())
            .unwrap_or_default()
    }

    fn state(&self, s: &StreamName) -> CurrentState {
        let n = self.events_in(s);
        let deleted_up_to = self.metadata(s).truncate_before.unwrap_or(0);
        match n {
            0 => CurrentState::NoStream,
            _ if !s.is_metastream() && deleted_up_to >= n => CurrentState::Deleted(n - 1),
            _ => CurrentState::Revision(n - 1),
        }
    }

    fn met(expected: ExpectedState, state: CurrentState) -> bool {
        match (expected, state) {
            (ExpectedState::Any, _) => true,
            (ExpectedState::NoStream, s) => !matches!(s, CurrentState::Revision(_)),
            (ExpectedState::StreamExists, s) => matches!(s, CurrentState::Revision(_)),
            (ExpectedState::Revision(_), CurrentState::NoStream) => false,
            (ExpectedState::Revision(want), CurrentState::Revision(have))
            | (ExpectedState::Revision(want), CurrentState::Deleted(have)) => want == have,
        }
    }

    fn conflict(s: &StreamName, expected: ExpectedState, actual: CurrentState) -> StoreError {
        StoreError::WrongExpectedState {
            stream: s.clone(),
            expected,
            actual,
        }
    }

    fn append(
        &mut self,
        s: &StreamName,
        expected: ExpectedState,
        batch: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let stored = |id: Uuid| self.all.iter().position(|(_, _, e)| e.id == id);
        if batch.iter().any(|e| stored(e.id).is_some()) {
            let mut last = 0;
            for e in &batch {
                match stored(e.id) {
                    Some(p) if &self.all[p].0 == s && &self.all[p].2 == e => last = p,
                    _ => {
                        return Err(StoreError::IdClash {
                            id: e.id,
                            detail: String::new(),
                        });
                    }
                }
            }
            return Ok(AppendResult {
                next_expected_revision: self.all[last].1,
                position: Position(last as u64),
            });
        }
        let actual = self.state(s);
        if !Self::met(expected, actual) {
            return Err(Self::conflict(s, expected, actual));
        }
        for e in batch {
            let revision = self.events_in(s);
            self.all.push((s.clone(), revision, e));
        }
        Ok(AppendResult {
            next_expected_revision: self.events_in(s) - 1,
            position: Position(self.all.len() as u64 - 1),
        })
    }

    fn set_metadata(&mut self, s: &StreamName, meta: &StreamMetadata) -> AppendResult {
        let event = NewEvent::json(Uuid::new_v4(), crate::METADATA_EVENT_TYPE, 1, meta).unwrap();
        self.append(&s.metastream().unwrap(), ExpectedState::Any, vec![event])
            .unwrap()
    }

    fn delete(&mut self, s: &StreamName, expected: ExpectedState) -> Result<Position, StoreError> {
        let actual = self.state(s);
        if !Self::met(expected, actual) || !matches!(actual, CurrentState::Revision(_)) {
            return Err(Self::conflict(s, expected, actual));
        }
        let mut meta = self.metadata(s);
        meta.truncate_before = Some(self.events_in(s));
        Ok(self.set_metadata(s, &meta).position)
    }

    /// The stream's readable events, oldest first, as [`shape`] shows them.
    fn read(&self, s: &StreamName) -> Result<Vec<Shape>, String> {
        if !matches!(self.state(s), CurrentState::Revision(_)) {
            return Err(StoreError::StreamNotFound(s.clone()).to_string());
        }
        let meta = self.metadata(s);
        let n = self.events_in(s);
        let mut first = meta.truncate_before.unwrap_or(0);
        if let Some(max) = meta.max_count {
            first = first.max(n.saturating_sub(max));
        }
        Ok(self
            .in_stream(s)
            .enumerate()
            .skip(first as usize)
            .map(|(revision, (position, e))| Self::shape_of(s, revision as u64, position, e))
            .collect())
    }

    fn shape_of(s: &StreamName, revision: u64, position: u64, e: &NewEvent) -> Shape {
        (
            s.to_string(),
            revision,
            position,
            (!s.is_metastream()).then_some(e.id),
            e.event_type.clone(),
            e.data.clone(),
        )
    }
}

type Shape = (String, u64, u64, Option<Uuid>, String, Vec<u8>);

/// What [`run_ops`] logs for a backend, as the oracle answers it, sending the same batches.
fn oracle_log(ops: &[Op], batches: &mut Vec<Vec<NewEvent>>) -> Vec<String> {
    let names = [stream("p-0"), stream("p-1"), stream("p-2")];
    let mut oracle = Oracle::default();
    let mut log = Vec::new();
    let mut made = 0;
    for (i, op) in ops.iter().enumerate() {
        log.push(match op {
            Op::Append {
                stream,
                expected,
                count,
                replay,
            } => {
                let batch = op_batch(i, *count, *replay, &mut made, batches, false);
                outcome(&oracle.append(&names[*stream], *expected, batch))
            }
            Op::Delete { stream, expected } => outcome(&oracle.delete(&names[*stream], *expected)),
            Op::MaxCount { stream, max } => {
                let meta = StreamMetadata {
                    max_count: *max,
                    ..Default::default()
                };
                outcome(&Ok::<_, StoreError>(
                    oracle.set_metadata(&names[*stream], &meta),
                ))
            }
        });
    }
    for name in &names {
        let fwd = oracle.read(name);
        log.push(format!("{name} forwards {fwd:?}"));
        let back = fwd.map(|v| v.into_iter().rev().take(2).collect::<Vec<_>>());
        log.push(format!("{name} backwards {back:?}"));
        let revision = Ok::<_, String>(oracle.events_in(name).checked_sub(1));
        log.push(format!("{name} revision {revision:?}"));
    }
    let all: Vec<Shape> = (oracle.all.iter().enumerate())
        .map(|(p, (s, r, e))| Oracle::shape_of(s, *r, p as u64, e))
        .collect();
    log.push(format!("$all {all:?}"));
    log.push(format!("head {:?}", Position(oracle.all.len() as u64)));
    log
}
