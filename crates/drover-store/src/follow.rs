//! Following a log: stored records from a seq, then live appends, with no gap and no duplicate.
//!
//! The follower subscribes to the agent's live feed *under the log lock*, noting the log's end at
//! that instant (`store_end`). Everything before `store_end` is read from the store, in chunks of
//! at most `CHUNK` records (and `CHUNK_BYTES`); everything from it on arrives on the feed.
//! Batches are de-duplicated by seq.
//!
//! A follower that falls behind the bounded feed (`broadcast` reports `Lagged`) does not lose
//! anything: it re-reads the missed range from the store and carries on, yielding plain
//! `Records`. `FollowItem::Lag` is yielded only when records it still needed are no longer in the
//! store (removed by retention while it lagged, or unreadable); it names the exact range skipped.

use std::sync::Arc;

use drover_proto::{Record, Seq};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::log::{AgentLog, Batch};
use crate::read;

/// Records read from the store per step.
const CHUNK: u32 = 4096;
/// Record bytes read from the store at once by a follower: what one follower holds in memory.
const CHUNK_BYTES: usize = 1024 * 1024;

/// What a follower yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowItem {
    /// Consecutive records, in order, continuing exactly where the previous item ended.
    Records(Vec<Record>),
    /// Records `from..=to` were skipped: no longer in the store (retention removed them while
    /// the follower lagged, or they were never stored: the agent ended while the disk was
    /// full, see `LogRead::dropped`). `read()` can confirm.
    Lag { from: Seq, to: Seq },
    /// The follow started at `requested`, before the oldest kept record; it continues from
    /// `first_available`.
    Truncated {
        requested: Seq,
        first_available: Seq,
    },
}

/// A follower of one agent's log. Dropping it unsubscribes; it holds no lock.
#[derive(Debug)]
pub struct Follower {
    log: Arc<AgentLog>,
    rx: Option<broadcast::Receiver<Batch>>,
    /// The next seq to yield.
    next: Seq,
    /// Seqs below this (and from `next`) come from the store.
    store_end: Seq,
    /// The seq the caller asked for, until the first store read has answered it.
    requested: Option<Seq>,
    /// A live batch that arrived ahead of `next`; yielded once the store has filled the gap.
    held: Option<Batch>,
}

impl Follower {
    pub(crate) fn new(log: Arc<AgentLog>, since: Seq) -> Follower {
        let (rx, store_end) = {
            let st = log.lock();
            (st.live.as_ref().map(|tx| tx.subscribe()), st.next_seq)
        };
        Follower {
            log,
            rx,
            next: since.max(Seq::FIRST),
            store_end,
            requested: Some(since),
            held: None,
        }
    }

    /// The next item; `None` once the log is closed and everything was yielded.
    pub async fn next(&mut self) -> Option<FollowItem> {
        loop {
            if self.next < self.store_end {
                if let Some(item) = self.read_stored().await {
                    return Some(item);
                }
                continue;
            }
            if let Some(batch) = self.held.take() {
                if let Some(item) = self.take(batch) {
                    return Some(item);
                }
                continue;
            }
            let Some(rx) = self.rx.as_mut() else {
                // Closed: anything appended before the close is in the store.
                let (end, dropped) = {
                    let st = self.log.lock();
                    (st.next_seq, st.dropped)
                };
                if self.next < end {
                    self.store_end = end;
                    continue;
                }
                // The log ended with records the store could not keep: say which, once.
                if let Some(range) = dropped.filter(|r| self.next >= r.from && self.next <= r.to) {
                    let from = self.next;
                    self.next = range.to.next();
                    self.store_end = self.next;
                    return Some(FollowItem::Lag { from, to: range.to });
                }
                return None;
            };
            match rx.recv().await {
                Ok(batch) => {
                    if let Some(item) = self.take(batch) {
                        return Some(item);
                    }
                }
                // The feed dropped batches for us: everything missed is in the store.
                Err(RecvError::Lagged(_)) => self.store_end = self.log.next_seq(),
                Err(RecvError::Closed) => self.rx = None,
            }
        }
    }

    /// Yield the part of a live batch at or after `next`; hold it if it starts ahead of `next`.
    fn take(&mut self, batch: Batch) -> Option<FollowItem> {
        let (first, last) = (batch.first()?.seq, batch.last()?.seq);
        if last < self.next {
            return None;
        }
        if first > self.next {
            self.store_end = self.store_end.max(first);
            self.held = Some(batch);
            return None;
        }
        let skip = (self.next.0 - first.0) as usize;
        self.requested = None;
        self.next = last.next();
        Some(FollowItem::Records(batch[skip..].to_vec()))
    }

    /// One chunk of `[next, store_end)` from the store, or a Truncated/Lag marker.
    async fn read_stored(&mut self) -> Option<FollowItem> {
        let (from, until, log) = (self.next, self.store_end, self.log.clone());
        let result =
            tokio::task::spawn_blocking(move || read::range(&log, from, until, CHUNK, CHUNK_BYTES))
                .await;
        let requested = self.requested.take();
        let read = match result {
            Ok(Ok(read)) => read,
            failure => {
                // Not silent: the caller learns the exact range it did not get.
                let error = match failure {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::warn!(agent = %self.log.id, %from, %until, %error, "follower could not read the store");
                self.next = until;
                return Some(FollowItem::Lag {
                    from,
                    to: Seq(until.0 - 1),
                });
            }
        };
        if read.first_seq > from && read.truncated {
            // Retention removed [from, first_seq); skip it, saying so.
            self.next = read.first_seq;
            return Some(match requested {
                Some(requested) => FollowItem::Truncated {
                    requested,
                    first_available: read.first_seq,
                },
                None => FollowItem::Lag {
                    from,
                    to: Seq(read.first_seq.0 - 1),
                },
            });
        }
        if read.records.is_empty() {
            // Nothing there (the log was removed under us): continue with the live feed.
            self.store_end = self.next;
            return None;
        }
        self.next = read.next_seq;
        Some(FollowItem::Records(read.records))
    }
}
