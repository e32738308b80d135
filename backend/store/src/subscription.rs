//! Catch-up subscriptions for any [`EventStore`].
//!
//! A subscription reads the log in pages from its position; once it has read everything
//! committed it waits for the store's head to move, then reads again. It never holds events
//! in a queue the writer fills, so a slow subscriber cannot block writers and is never
//! dropped: it simply reads further behind and catches up. The seam between catch-up and live
//! is the same code path, so there is no gap and no duplicate there.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::store::EventStore;
use crate::types::{Direction, Position, ReadFrom, RecordedEvent, StreamName, StreamRevision};

/// Events a subscription reads per page.
pub const SUBSCRIPTION_PAGE: usize = 1024;

/// Longest wait between tries while the store is unavailable (a database failing over).
const UNAVAILABLE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// A read that waits out [`StoreError::Unavailable`] (a lost connection, a failover), trying
/// again with backoff until the store answers or closes: a subscriber pauses, and goes on from
/// where it was, rather than ending.
async fn patiently<T, F, Fut>(store: &dyn EventStore, mut read: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut backoff = std::time::Duration::from_millis(50);
    let mut warned = false;
    loop {
        match read().await {
            Err(StoreError::Unavailable(why)) if !store.is_closed() => {
                if !warned {
                    tracing::warn!("a subscription waits for the event store: {why}");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(UNAVAILABLE_BACKOFF_MAX);
            }
            other => {
                if warned && other.is_ok() {
                    tracing::info!("a subscription goes on: the event store answers again");
                }
                return other;
            }
        }
    }
}

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeFrom<P> {
    /// From the first event.
    Start,
    /// From the event right after this one.
    After(P),
    /// Only events after the store's head when the subscription is made. A store whose head
    /// follows its commits a moment later (PostgreSQL) may then also hand out events committed
    /// just before: never fewer, at worst a few more.
    End,
}

/// A subscription to `$all`. Call [`AllSubscription::next`] in a loop.
pub struct AllSubscription {
    store: Arc<dyn EventStore>,
    head: watch::Receiver<Position>,
    next: Position,
    buffer: VecDeque<RecordedEvent>,
}

impl std::fmt::Debug for AllSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllSubscription")
            .field("next", &self.next)
            .finish()
    }
}

impl AllSubscription {
    pub(crate) fn new(store: Arc<dyn EventStore>, from: SubscribeFrom<Position>) -> Self {
        let head = store.watch_head();
        let next = match from {
            SubscribeFrom::Start => Position::START,
            SubscribeFrom::After(p) => p.next(),
            SubscribeFrom::End => *head.borrow(),
        };
        Self {
            store,
            head,
            next,
            buffer: VecDeque::new(),
        }
    }

    /// The position of the next event this subscription will hand out.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The next event, waiting for one to be committed when caught up. An unavailable store
    /// is waited out; other errors (a closed store, corrupt data) end the subscription.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.position.next();
                return Ok(event);
            }
            let next = self.next;
            if *self.head.borrow_and_update() > next {
                let store = &*self.store;
                let page = patiently(store, || store.read_all(next, SUBSCRIPTION_PAGE)).await?;
                if page.is_empty() {
                    return Err(StoreError::Storage(format!(
                        "$all ends before the committed head (reading from {next})"
                    )));
                }
                self.buffer.extend(page);
                continue;
            }
            if self.store.is_closed() || self.head.changed().await.is_err() {
                if self.store.head() > next {
                    continue;
                }
                return Err(StoreError::Closed);
            }
        }
    }

    /// The next event if one is committed already, without waiting.
    pub async fn try_next(&mut self) -> Result<Option<RecordedEvent>> {
        if self.buffer.is_empty() && self.store.head() <= self.next {
            return Ok(None);
        }
        self.next().await.map(Some)
    }
}

/// A subscription to one stream. Call [`StreamSubscription::next`] in a loop.
pub struct StreamSubscription {
    store: Arc<dyn EventStore>,
    stream: StreamName,
    head: watch::Receiver<Position>,
    next: Option<StreamRevision>,
    /// For a subscription from the end: the head when it was made; later events are new.
    created_at: Position,
    checked_until: Position,
    buffer: VecDeque<RecordedEvent>,
}

impl std::fmt::Debug for StreamSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSubscription")
            .field("stream", &self.stream)
            .field("next", &self.next)
            .finish()
    }
}

impl StreamSubscription {
    pub(crate) fn new(
        store: Arc<dyn EventStore>,
        stream: StreamName,
        from: SubscribeFrom<StreamRevision>,
    ) -> Self {
        let head = store.watch_head();
        let created_at = *head.borrow();
        let next = match from {
            SubscribeFrom::Start => Some(0),
            SubscribeFrom::After(r) => Some(r + 1),
            SubscribeFrom::End => None,
        };
        Self {
            store,
            stream,
            head,
            next,
            created_at,
            checked_until: Position::START,
            buffer: VecDeque::new(),
        }
    }

    /// The revision of the first event committed after the subscription was made.
    async fn first_revision_after_creation(&mut self) -> Result<StreamRevision> {
        let Some(last) = self.store.stream_revision(&self.stream).await? else {
            return Ok(0);
        };
        let mut first = last + 1;
        loop {
            let page = match self
                .store
                .read_stream(
                    &self.stream,
                    Direction::Backwards,
                    ReadFrom::Revision(first.saturating_sub(1)),
                    64,
                )
                .await
            {
                Ok(page) => page,
                Err(StoreError::StreamNotFound(_)) => return Ok(first),
                Err(e) => return Err(e),
            };
            let newer = page
                .iter()
                .take_while(|e| e.position >= self.created_at)
                .count();
            if let Some(oldest_new) = page.get(newer.wrapping_sub(1)).filter(|_| newer > 0) {
                first = oldest_new.revision;
            }
            if newer < page.len() || page.len() < 64 || first == 0 {
                return Ok(first);
            }
        }
    }

    /// The next event of the stream, waiting for one when caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = Some(event.revision + 1);
                return Ok(event);
            }
            let head_now = *self.head.borrow_and_update();
            let next = match self.next {
                Some(r) => r,
                None => {
                    let r = self.first_revision_after_creation().await?;
                    self.next = Some(r);
                    r
                }
            };
            if head_now > self.checked_until {
                let (store, stream) = (&*self.store, &self.stream);
                let page = match patiently(store, || {
                    store.read_stream(
                        stream,
                        Direction::Forwards,
                        ReadFrom::Revision(next),
                        SUBSCRIPTION_PAGE,
                    )
                })
                .await
                {
                    Ok(page) => page,
                    Err(StoreError::StreamNotFound(_)) => Vec::new(),
                    Err(e) => return Err(e),
                };
                if page.len() < SUBSCRIPTION_PAGE {
                    self.checked_until = head_now;
                }
                self.buffer
                    .extend(page.into_iter().filter(|e| e.revision >= next));
                continue;
            }
            if self.store.is_closed() || self.head.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }
}
