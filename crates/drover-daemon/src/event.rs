//! Lifecycle events: each stored with the registry change it announces, then published.
//!
//! The store numbers an event when it stores it, in the same transaction as its change, and
//! only stored events are published: an `event_seq` a client has seen is never reused by a
//! later run, and stored events have no holes. When the registry refuses a state change (a full
//! disk) the store keeps it in memory (reads show it at once) and this bus retries with bounded
//! backoff, publishing the events once they are stored.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::{AgentInfo, Event, EventKind, EventSeq, SeqRange};
use drover_store::{Change, Store, StoreError};
use tokio::sync::broadcast;

use crate::publish::Publisher;

/// State changes that may wait for the registry before `pause` and `resume` are refused: what
/// waits is then bounded by this plus three changes per agent (running, exit, `log_dropped`),
/// which no request can add to.
pub(crate) const MAX_QUEUED_BY_REQUEST: usize = 1024;

/// First retry of changes the registry refused; the wait doubles up to `RETRY_AT_MOST`.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// Stores changes with their events, publishes stored events on PUB and to in-process
/// followers.
#[derive(Debug, Clone)]
pub(crate) struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // Held while storing and queueing the events of one change, so events are published in
    // `event_seq` order. Every step under it is synchronous and short; never held across an
    // await.
    last: Mutex<EventSeq>,
    /// Bumped by every change, stored or queued: what a cache of registry answers keys on.
    version: AtomicU64,
    /// A retry task is running.
    retrying: AtomicBool,
    store: Store,
    publisher: Publisher,
    live: broadcast::Sender<Event>,
}

impl EventBus {
    pub(crate) fn new(store: Store, publisher: Publisher, last: EventSeq) -> EventBus {
        let (live, _) = broadcast::channel(4096);
        EventBus {
            inner: Arc::new(Inner {
                last: Mutex::new(last),
                version: AtomicU64::new(0),
                retrying: AtomicBool::new(false),
                store,
                publisher,
                live,
            }),
        }
    }

    /// Apply `change` with its event of `kind` about `agent` (as it now is), or refuse: a new
    /// agent, a removal, or a change the caller must not report done unless it is stored.
    pub(crate) fn commit(
        &self,
        change: Change,
        kind: EventKind,
        agent: &AgentInfo,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut last = inner.lock_last();
        let stored = inner.store.commit(change, draft(kind, agent, None))?;
        inner.version.fetch_add(1, Ordering::Relaxed);
        inner.publish(&mut last, stored);
        Ok(())
    }

    /// Record a state change (or records lost) with its event; if the registry refuses it, it
    /// waits in memory (every read shows it already) and is retried until stored.
    pub(crate) fn record(
        &self,
        change: Change,
        kind: EventKind,
        agent: &AgentInfo,
        dropped: Option<SeqRange>,
    ) {
        let inner = &self.inner;
        let mut last = inner.lock_last();
        let committed = inner
            .store
            .commit_or_queue(change, draft(kind, agent, dropped));
        inner.version.fetch_add(1, Ordering::Relaxed);
        inner.publish(&mut last, committed.stored);
        drop(last);
        if let Some(error) = committed.queued {
            self.retry_later(&error);
        }
    }

    /// Try once more to store what waits (at shutdown); the error says what could not be.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut last = inner.lock_last();
        let stored = inner.store.flush_queued()?;
        inner.publish(&mut last, stored);
        Ok(())
    }

    /// Start the retry task unless one runs; logged once per outage.
    fn retry_later(&self, error: &StoreError) {
        if self.inner.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(
            %error,
            "the registry refused a state change; keeping it in memory (clients see it) and \
             retrying; its event is published once stored"
        );
        self.spawn_retry();
    }

    /// Retry until the store takes everything waiting (the caller set `retrying`).
    fn spawn_retry(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (never in the daemon): the next change or the shutdown flush retries.
            self.inner.retrying.store(false, Ordering::SeqCst);
            return;
        };
        let bus = self.clone();
        runtime.spawn(async move {
            let mut wait = RETRY_FIRST;
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_AT_MOST);
                let flushed = {
                    let inner = &bus.inner;
                    let mut last = inner.lock_last();
                    inner.store.flush_queued().map(|stored| {
                        let n = stored.len();
                        inner.publish(&mut last, stored);
                        n
                    })
                };
                if let Ok(n) = flushed {
                    bus.inner.retrying.store(false, Ordering::SeqCst);
                    tracing::info!(changes = n, "the registry took the waiting state changes");
                    // A change queued between the flush and the flag is not left waiting.
                    if bus.inner.store.queued() > 0
                        && !bus.inner.retrying.swap(true, Ordering::SeqCst)
                    {
                        bus.spawn_retry();
                    }
                    return;
                }
            }
        });
    }

    /// The latest event number published.
    pub(crate) fn last(&self) -> EventSeq {
        *self.inner.lock_last()
    }

    /// Changes recorded so far (stored or waiting): changes whenever a registry answer may.
    pub(crate) fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Relaxed)
    }

    /// State changes waiting for the registry.
    pub(crate) fn queued(&self) -> usize {
        self.inner.store.queued()
    }

    /// Refuse a request that would add a state change while [`MAX_QUEUED_BY_REQUEST`] of them
    /// already wait for the registry (a full disk), so memory stays bounded.
    pub(crate) fn check_room(&self, op: &str) -> Result<(), drover_proto::ErrorBody> {
        let queued = self.queued();
        if queued < MAX_QUEUED_BY_REQUEST {
            return Ok(());
        }
        Err(drover_proto::ErrorBody::new(
            drover_proto::ErrorCode::LimitReached,
            format!(
                "cannot {op}: the registry cannot be written (is the disk full?) and {queued} \
                 state changes already wait in memory (at most {MAX_QUEUED_BY_REQUEST}); retry \
                 once they are stored"
            ),
        ))
    }

    /// Live events from now on (for SSE followers).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.live.subscribe()
    }
}

impl Inner {
    fn lock_last(&self) -> std::sync::MutexGuard<'_, EventSeq> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publish stored events, in order (the caller holds `last`).
    fn publish(&self, last: &mut EventSeq, stored: Vec<Event>) {
        for event in stored {
            *last = event.event_seq;
            self.publisher.event(event.clone());
            let _ = self.live.send(event);
        }
    }
}

/// An event about `agent` as it now is; the store numbers it.
fn draft(kind: EventKind, agent: &AgentInfo, dropped: Option<SeqRange>) -> Event {
    Event {
        event_seq: EventSeq(0),
        ts: drover_proto::now_ns(),
        agent: agent.id,
        kind,
        state: agent.state(),
        exit_code: agent.status.exit_code(),
        signal: agent.status.signal(),
        dropped,
        activity: (kind == EventKind::Activity)
            .then(|| agent.activity.clone())
            .flatten(),
        run: agent.restarts.saturating_add(1),
    }
}
