//! Registry changes and their events, one transaction each, kept in memory while the registry
//! refuses them.
//!
//! Every change of the registry (a new agent, a state change, a removal, a dropped log range)
//! is written in the same SQLite transaction as the lifecycle event that announces it, so a
//! crash leaves both or neither. The store numbers events as it writes them: a number is
//! consumed only by an event that is stored, so stored events never have holes and the daemon
//! (which publishes only what `commit` returns) never publishes a number a later run reuses.
//!
//! When the registry refuses a state change (a full disk), `commit_or_queue` keeps it, with its
//! event, in an in-memory queue, in order; every read of the registry overlays the queued
//! states, so clients see the truth (an agent that ended is `exited`, not `running`) while the
//! row is behind. `flush_queued` (retried by the daemon with backoff) writes the whole queue in
//! one transaction once the disk takes it. The queue holds one entry per state change made
//! during the outage: bounded by the agents' lifecycles, not by their output.

use std::collections::{HashMap, VecDeque};

use drover_proto::{Activity, AgentId, AgentInfo, AgentStatus, Event, EventSeq, Runs, SeqRange};

use crate::StoreError;

/// What a change does to the registry, besides storing its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Record a new agent (refused if a live agent holds its name).
    Insert(Box<AgentInfo>),
    /// Set an agent's status, and what its runs add to it.
    Status(AgentId, AgentStatus, Runs),
    /// Delete the agent's row and its whole log.
    Remove(AgentId),
    /// Records `range` of the agent's log are lost for good: remembered so reads and follows
    /// report the range instead of ending silently short.
    LogDropped(AgentId, SeqRange),
    /// Set what an AI agent is doing (its parser's reading of its output).
    Activity(AgentId, Box<Activity>),
}

impl Change {
    /// Whether this change may wait in memory when the registry refuses it. A new agent or a
    /// removal is refused instead (the caller answers its client with the error).
    pub(crate) fn may_queue(&self) -> bool {
        matches!(
            self,
            Change::Status(..) | Change::LogDropped(..) | Change::Activity(..)
        )
    }
}

/// The outcome of [`crate::Store::commit_or_queue`].
#[derive(Debug)]
pub struct Committed {
    /// Events now stored, numbered, in order: earlier queued ones first, then this change's
    /// (unless it was queued). Publish exactly these.
    pub stored: Vec<Event>,
    /// Set when this change was queued instead of stored: why the registry refused.
    pub queued: Option<StoreError>,
}

/// The event numbering and the changes waiting for the registry.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The last event number stored.
    pub last: EventSeq,
    /// Changes the registry refused, oldest first, with their (not yet numbered) events.
    pub queue: VecDeque<(Change, Event)>,
}

impl Journal {
    /// Number `entries` from `last + 1` (the numbers are consumed only if they are stored).
    pub fn number(&self, entries: &mut [(Change, Event)]) {
        for (i, (_, event)) in entries.iter_mut().enumerate() {
            event.event_seq = EventSeq(self.last.0 + 1 + i as u64);
        }
    }

    /// The newest queued status of each agent with one.
    pub fn overlay(&self) -> HashMap<AgentId, (AgentStatus, Runs)> {
        let mut out = HashMap::new();
        for (change, _) in &self.queue {
            if let Change::Status(id, status, runs) = change {
                out.insert(*id, (status.clone(), *runs));
            }
        }
        out
    }
}
