//! The store's changes with their events: [`Store::commit`], [`Store::commit_or_queue`] and the
//! journal of changes waiting for a full disk (see `journal.rs`), and the repair of histories an
//! older daemon's crash cut short.

use drover_proto::{AgentInfo, Event, EventKind};

use crate::journal::{Change, Committed};
use crate::{ListFilter, Store, StoreError};

impl Store {
    /// Apply `change` and store `event` (numbered here: its `event_seq` is overwritten) in one
    /// transaction, after any changes still queued. Returns every event now stored, in order:
    /// the queued ones first, this one last. On failure nothing is stored, nothing is queued
    /// and no number is consumed.
    pub fn commit(&self, change: Change, event: Event) -> Result<Vec<Event>, StoreError> {
        let mut journal = self.journal();
        let mut entries: Vec<(Change, Event)> = journal.queue.iter().cloned().collect();
        entries.push((change.clone(), event));
        journal.number(&mut entries);
        self.before(&change);
        if let Err(error) = self
            .inner
            .registry
            .apply(&entries, self.shared().config.max_events)
        {
            self.undo(&change);
            return Err(error);
        }
        journal.queue.clear();
        journal.last = entries.last().map_or(journal.last, |(_, e)| e.event_seq);
        drop(journal);
        self.after(&change)?;
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }

    /// Like [`Store::commit`], but a state change (or a dropped range) the registry refuses
    /// waits in memory instead, in order, and every read shows it at once; `flush_queued`
    /// stores it later. A new agent or a removal is never queued: its error is returned in
    /// `queued` and nothing happened.
    pub fn commit_or_queue(&self, change: Change, event: Event) -> Committed {
        if !change.may_queue() {
            return match self.commit(change, event) {
                Ok(stored) => Committed {
                    stored,
                    queued: None,
                },
                Err(error) => Committed {
                    stored: Vec::new(),
                    queued: Some(error),
                },
            };
        }
        if let Change::LogDropped(id, range) = &change {
            // The log learns its end at once: reads and follows report the range from now on.
            let log = self.shared().log_or_create(*id);
            let mut st = log.lock();
            if st.next_seq == range.from {
                st.dropped = Some(*range);
            }
        }
        // Holding the journal across the attempt keeps the queue in order with other commits.
        let mut journal = self.journal();
        let mut entries: Vec<(Change, Event)> = journal.queue.iter().cloned().collect();
        entries.push((change.clone(), event.clone()));
        journal.number(&mut entries);
        match self
            .inner
            .registry
            .apply(&entries, self.shared().config.max_events)
        {
            Ok(()) => {
                journal.queue.clear();
                journal.last = entries.last().map_or(journal.last, |(_, e)| e.event_seq);
                Committed {
                    stored: entries.into_iter().map(|(_, e)| e).collect(),
                    queued: None,
                }
            }
            Err(error) => {
                // An agent's activity waits at most once: a newer reading replaces the one
                // queued (in its place), so a full disk holds one per agent, not one per change.
                if let Change::Activity(id, _) = &change {
                    let queued = journal
                        .queue
                        .iter_mut()
                        .find(|(c, _)| matches!(c, Change::Activity(other, _) if other == id));
                    if let Some(slot) = queued {
                        *slot = (change, event);
                        return Committed {
                            stored: Vec::new(),
                            queued: Some(error),
                        };
                    }
                }
                journal.queue.push_back((change, event));
                Committed {
                    stored: Vec::new(),
                    queued: Some(error),
                }
            }
        }
    }

    /// Store every queued change, in one transaction; returns their events, numbered, in order
    /// (empty when nothing waited). On failure they stay queued.
    pub fn flush_queued(&self) -> Result<Vec<Event>, StoreError> {
        let mut journal = self.journal();
        if journal.queue.is_empty() {
            return Ok(Vec::new());
        }
        let mut entries: Vec<(Change, Event)> = journal.queue.iter().cloned().collect();
        journal.number(&mut entries);
        self.inner
            .registry
            .apply(&entries, self.shared().config.max_events)?;
        journal.queue.clear();
        journal.last = entries.last().map_or(journal.last, |(_, e)| e.event_seq);
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }

    /// Agents whose stored history a crash of an older daemon left incomplete: (agents with no
    /// stored event although newer than the oldest stored event: `spawned` missing; ended
    /// agents whose last stored event is not terminal: `exit`/`lost` missing). Since every
    /// change is stored with its event, a crash of this version leaves neither.
    pub fn incomplete_histories(&self) -> Result<(Vec<AgentInfo>, Vec<AgentInfo>), StoreError> {
        let (last, oldest) = self.inner.registry.last_kinds()?;
        let mut unannounced = Vec::new();
        let mut unended = Vec::new();
        for info in self.inner.registry.list(&ListFilter::default())? {
            match last.get(&info.id) {
                None if oldest.is_none_or(|ts| info.created_at >= ts) => unannounced.push(info),
                None => {}
                Some(kind) => {
                    let ended = matches!(kind, EventKind::Exit | EventKind::Lost);
                    if info.state().is_terminal() && !ended {
                        unended.push(info);
                    }
                }
            }
        }
        Ok((unannounced, unended))
    }

    /// How many changes wait for the registry.
    pub fn queued(&self) -> usize {
        self.journal().queue.len()
    }

    /// Preparation a change needs before its row exists: a new agent's log.
    fn before(&self, change: &Change) {
        if let Change::Insert(info) = change {
            // The log first: once the row exists the agent can be found and followed, and a
            // follower must then find a live log, not a closed (ended) one.
            let log = self.shared().log_or_create(info.id);
            if let Some(budget) = info.spec.log_budget {
                log.lock().budget = budget;
            }
            if !info.state().is_terminal() {
                log.open_live(self.shared().config.follow_buffer);
            }
        }
    }

    /// Undo `before` for a change the registry refused.
    fn undo(&self, change: &Change) {
        if let Change::Insert(info) = change {
            self.forget_new_log(info.id);
        }
    }

    /// Work a stored change implies outside the registry: a removed agent's log files.
    fn after(&self, change: &Change) -> Result<(), StoreError> {
        match change {
            Change::Remove(id) => self.remove_log(*id),
            _ => Ok(()),
        }
    }
}
