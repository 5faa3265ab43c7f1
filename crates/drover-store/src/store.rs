//! The `Store` handle: opening, the registry calls, and the log calls.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use drover_proto::{
    AgentId, AgentInfo, AgentState, AgentStatus, Event, EventSeq, Record, Seq, SeqRange, HANDLE_LEN,
};

use crate::journal::{Change, Journal};
use crate::registry::Registry;
use crate::{
    pack, read, recover, retention, syncer, Follower, ListFilter, LogBounds, LogQuery, LogRead,
    Shared, StoreConfig, StoreError,
};

/// Shortest id prefix `resolve` accepts, so short names are not mistaken for ids.
pub const MIN_PREFIX: usize = 4;

/// The daemon's store. Cheap to clone; all clones share one registry connection, one set of
/// logs and one syncer thread (stopped, after a final sync, when the last clone drops).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    shared: Arc<Shared>,
    pub(crate) registry: Registry,
    // Event numbering and the registry changes waiting for a full disk. Taken before the
    // registry connection's lock when both are needed, never the other way round.
    journal: Mutex<Journal>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    packer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.shared.kick_all();
        for thread in [&self.syncer, &self.packer] {
            let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }
}

impl Store {
    /// Open (creating) the store in `dir`: `dir/registry.sqlite3` and `dir/logs/`. Runs schema
    /// migrations and recovers every log (torn tails cut off, format-1 segments migrated), then
    /// starts the syncer and the packer.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let logs_dir = dir.join("logs");
        crate::private_dir(&logs_dir)
            .map_err(|e| StoreError::io(format!("creating {}", logs_dir.display()), e))?;
        // The packer's work in progress; whatever a crash left there is incomplete.
        let pack_tmp = logs_dir.join(pack::TMP_DIR);
        match fs::remove_dir_all(&pack_tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::io(
                    format!("clearing {}", pack_tmp.display()),
                    e,
                ))
            }
        }
        crate::private_dir(&pack_tmp)
            .map_err(|e| StoreError::io(format!("creating {}", pack_tmp.display()), e))?;
        let registry = Registry::open(&dir.join("registry.sqlite3"))?;
        let shared = Arc::new(Shared::new(config, logs_dir.clone()));
        let budgets: BTreeMap<AgentId, u64> = registry.log_budgets()?.into_iter().collect();
        {
            let mut logs = shared.logs.write().unwrap_or_else(|p| p.into_inner());
            let listing = fs::read_dir(&logs_dir)
                .map_err(|e| StoreError::io(format!("listing {}", logs_dir.display()), e))?;
            for entry in listing {
                let entry = entry
                    .map_err(|e| StoreError::io(format!("listing {}", logs_dir.display()), e))?;
                let Some(id) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<AgentId>().ok())
                else {
                    continue;
                };
                let budget = budgets
                    .get(&id)
                    .copied()
                    .unwrap_or(shared.config.agent_budget);
                let state = recover::load(&entry.path(), id, budget, &shared.config)?;
                shared.usage.fetch_add(state.bytes, Ordering::Relaxed);
                logs.insert(id, Arc::new(crate::log::AgentLog::new(id, state)));
            }
        }
        // Records lost for good at an agent's end (and, after a power loss, whatever before
        // them the recovered log no longer has) are reported as a range, never silently.
        for (id, range) in registry.log_gaps()? {
            let log = shared.log_or_create(id);
            let mut st = log.lock();
            if st.next_seq <= range.to {
                st.dropped = Some(SeqRange {
                    from: st.next_seq,
                    to: range.to,
                });
            }
        }
        for log in shared.all_logs() {
            retention::trim_agent(&mut log.lock(), &shared);
        }
        let journal = Journal {
            last: registry.last_event_seq()?,
            queue: Default::default(),
        };
        retention::trim_global(&shared);
        let thread_shared = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("drover-store-sync".into())
            .spawn(move || syncer::run(thread_shared))
            .map_err(|e| StoreError::io("starting the syncer thread", e))?;
        let thread_shared = shared.clone();
        let packer = std::thread::Builder::new()
            .name("drover-store-pack".into())
            .spawn(move || pack::run(thread_shared));
        let packer = match packer {
            Ok(packer) => packer,
            Err(e) => {
                shared.shutdown.store(true, Ordering::Relaxed);
                shared.kick_all();
                let _ = syncer.join();
                return Err(StoreError::io("starting the packer thread", e));
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                shared,
                registry,
                journal: Mutex::new(journal),
                syncer: Mutex::new(Some(syncer)),
                packer: Mutex::new(Some(packer)),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Close and drop the (empty) log made for an agent whose row was then refused.
    pub(crate) fn forget_new_log(&self, id: AgentId) {
        if let Some(log) = self.shared().log(id) {
            log.close(self.shared());
        }
        let mut logs = self
            .shared()
            .logs
            .write()
            .unwrap_or_else(|p| p.into_inner());
        logs.remove(&id);
    }

    // ---- registry ----

    /// Record a new agent. A non-terminal agent's log is opened for following at once, so a
    /// follower that arrives before its first output waits instead of ending.
    pub fn insert_agent(&self, info: &AgentInfo) -> Result<(), StoreError> {
        // The log first: once the row exists the agent can be found and followed, and a
        // follower must then find a live log, not a closed (ended) one.
        let log = self.shared().log_or_create(info.id);
        if let Some(budget) = info.spec.log_budget {
            log.lock().budget = budget;
        }
        if !info.state().is_terminal() {
            log.open_live(self.shared().config.follow_buffer);
        }
        if let Err(error) = self.inner.registry.insert_agent(info) {
            // Refused (a taken name): forget the empty log made for it.
            self.forget_new_log(info.id);
            return Err(error);
        }
        Ok(())
    }

    /// Set an agent's status and what its runs add to it (one UPDATE).
    pub fn update_status(
        &self,
        id: AgentId,
        status: &AgentStatus,
        runs: drover_proto::Runs,
    ) -> Result<(), StoreError> {
        self.inner.registry.update_status(id, status, runs)
    }

    pub fn agent(&self, id: AgentId) -> Result<Option<AgentInfo>, StoreError> {
        Ok(self
            .inner
            .registry
            .agent(id)?
            .map(|info| self.current(info)))
    }

    /// A fresh agent id whose short handle no agent in the registry has. The registry's unique
    /// index refuses a duplicate anyway (two spawns racing for one handle); this makes that
    /// refusal practically never happen.
    pub fn fresh_id(&self) -> Result<AgentId, StoreError> {
        // 32 random bits: a second try is already rare; after a few the index decides.
        let mut id = AgentId::new();
        for _ in 0..8 {
            if self.inner.registry.by_handle(&id.handle())?.is_none() {
                break;
            }
            id = AgentId::new();
        }
        Ok(id)
    }

    /// Find an agent by exact id; else by its short handle (the id's last 8 hex digits, what
    /// `ls` shows); else by name (the newest agent with it), before any shorter form, as docker
    /// resolves a name before an id prefix; else by a unique start of a handle, or of an id, of
    /// at least [`MIN_PREFIX`] hex characters (or '-' for an id). A start matching several
    /// agents is `Ambiguous`.
    pub fn resolve(&self, reference: &str) -> Result<AgentInfo, StoreError> {
        self.resolve_row(reference).map(|info| self.current(info))
    }

    fn resolve_row(&self, reference: &str) -> Result<AgentInfo, StoreError> {
        let reg = &self.inner.registry;
        if let Ok(id) = reference.parse::<AgentId>() {
            if let Some(info) = reg.agent(id)? {
                return Ok(info);
            }
        }
        let lower = reference.to_ascii_lowercase();
        let hex = lower.bytes().all(|b| b.is_ascii_hexdigit());
        // A whole handle first: `ls` shows it, so it must name that agent (a spawn refuses a
        // name of this form, and an older name of it is reached by id).
        if hex && lower.len() == HANDLE_LEN {
            if let Some(info) = reg.by_handle(&lower)? {
                return Ok(info);
            }
        }
        if let Some(info) = reg.by_name(reference)? {
            return Ok(info);
        }
        let mut matches = 0;
        // The start of what `ls` shows, then the start of the full id: ids made close in time
        // share their first digits, so the handle's are the ones that tell agents apart.
        if hex && (MIN_PREFIX..HANDLE_LEN).contains(&lower.len()) {
            let (info, count) = reg.by_handle_prefix(&lower)?;
            if let Some(info) = info {
                return Ok(info);
            }
            matches += count;
        }
        if lower.len() >= MIN_PREFIX && lower.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            let (info, count) = reg.by_prefix(&lower)?;
            if let Some(info) = info {
                if matches == 0 {
                    return Ok(info);
                }
            }
            matches += count;
        }
        if matches > 1 {
            return Err(StoreError::Ambiguous {
                reference: reference.to_owned(),
                count: matches,
            });
        }
        Err(StoreError::NotFound(reference.to_owned()))
    }

    /// Agents matching `filter`, oldest first (creation time, then id).
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<AgentInfo>, StoreError> {
        let overlay = self.journal().overlay();
        if overlay.is_empty() {
            return self.inner.registry.list(filter);
        }
        // Some states are only in memory: list by the true state, not the row's.
        let unfiltered = ListFilter {
            state: None,
            limit: None,
            ..filter.clone()
        };
        let mut agents = self.inner.registry.list(&unfiltered)?;
        for info in &mut agents {
            if let Some((status, runs)) = overlay.get(&info.id) {
                info.status = status.clone();
                info.set_runs(*runs);
            }
        }
        agents.retain(|info| filter.state.is_none_or(|state| info.state() == state));
        if let Some(limit) = filter.limit {
            agents.truncate(limit as usize);
        }
        Ok(agents)
    }

    /// The agent as it truly is: its row, with a state or activity change still waiting for the
    /// registry.
    fn current(&self, mut info: AgentInfo) -> AgentInfo {
        let journal = self.journal();
        let queue = || journal.queue.iter().rev();
        let queued = queue().find_map(|(change, _)| match change {
            Change::Status(id, status, runs) if *id == info.id => Some((status.clone(), *runs)),
            _ => None,
        });
        if let Some((status, runs)) = queued {
            info.status = status;
            info.set_runs(runs);
        }
        let activity = queue().find_map(|(change, _)| match change {
            Change::Activity(id, activity) if *id == info.id => Some(activity.as_ref().clone()),
            _ => None,
        });
        if activity.is_some() {
            info.activity = activity;
        }
        info
    }

    pub(crate) fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        // Every mutation leaves the journal consistent before it can fail.
        self.inner.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Agents matching `filter`, oldest first, handed to `each` one at a time until it returns
    /// false (so a page with a byte budget reads no more rows than it keeps).
    pub fn list_each(
        &self,
        filter: &ListFilter,
        mut each: impl FnMut(AgentInfo) -> bool,
    ) -> Result<(), StoreError> {
        let overlay = self.journal().overlay();
        if overlay.is_empty() {
            return self.inner.registry.list_each(filter, each);
        }
        // Some states are only in memory (the registry refused them): filter by the true
        // state, not the row's, so rows are read without the state filter and its limit.
        let unfiltered = ListFilter {
            state: None,
            limit: None,
            ..filter.clone()
        };
        let mut handed = 0u64;
        self.inner.registry.list_each(&unfiltered, |mut info| {
            if let Some((status, runs)) = overlay.get(&info.id) {
                info.status = status.clone();
                info.set_runs(*runs);
            }
            if filter.state.is_some_and(|state| info.state() != state) {
                return true;
            }
            if filter.limit.is_some_and(|limit| handed >= u64::from(limit)) {
                return false;
            }
            handed += 1;
            each(info)
        })
    }

    /// Ids of the `limit` agents that ended first, oldest end first (for pruning).
    pub fn oldest_ended(&self, limit: u32) -> Result<Vec<AgentId>, StoreError> {
        self.inner.registry.oldest_ended(limit)
    }

    /// Agents not in a terminal state (at startup: the ones to mark lost).
    pub fn live_agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        let mut agents = self.inner.registry.live_agents()?;
        let overlay = self.journal().overlay();
        for info in &mut agents {
            if let Some((status, runs)) = overlay.get(&info.id) {
                info.status = status.clone();
                info.set_runs(*runs);
            }
        }
        agents.retain(|info| !info.state().is_terminal());
        Ok(agents)
    }

    /// Delete the agent's row and its whole log; its followers end.
    pub fn remove_agent(&self, id: AgentId) -> Result<(), StoreError> {
        let existed = self.inner.registry.remove_agent(id)?;
        if self.shared().log(id).is_none() && !existed {
            return Err(StoreError::NotFound(id.to_string()));
        }
        self.remove_log(id)
    }

    /// Delete the agent's whole log; its followers end.
    pub(crate) fn remove_log(&self, id: AgentId) -> Result<(), StoreError> {
        let log = {
            let mut logs = self
                .shared()
                .logs
                .write()
                .unwrap_or_else(|p| p.into_inner());
            logs.remove(&id)
        };
        let Some(log) = log else {
            return Ok(());
        };
        let mut st = log.lock();
        st.live = None;
        st.writer.close();
        st.to_sync.clear();
        st.segments.clear();
        self.shared().usage.fetch_sub(st.bytes, Ordering::Relaxed);
        st.bytes = 0;
        st.output = 0;
        st.trim = None;
        // Under the log lock, so the packer cannot install a pack meanwhile (its swap checks
        // the segment list, which is empty now); its work in progress lives in `logs/.tmp`.
        match fs::remove_dir_all(&st.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(format!("removing {}", st.dir.display()), e)),
        }
    }

    pub fn count_by_state(&self) -> Result<BTreeMap<AgentState, u64>, StoreError> {
        let mut counts = self.inner.registry.count_by_state()?;
        let overlay = self.journal().overlay();
        for (id, (status, _)) in overlay {
            let Some(row) = self.inner.registry.agent(id)? else {
                continue;
            };
            if let Some(n) = counts.get_mut(&row.state()) {
                *n = n.saturating_sub(1);
            }
            *counts.entry(status.state()).or_default() += 1;
        }
        counts.retain(|_, n| *n > 0);
        Ok(counts)
    }

    // ---- events ----

    /// Store an event numbered by the caller, keeping only the newest `max_events`. The
    /// daemon uses [`Store::commit`], which numbers events and stores each with its change.
    pub fn append_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut journal = self.journal();
        self.inner
            .registry
            .append_event(event, self.shared().config.max_events)?;
        journal.last = journal.last.max(event.event_seq);
        Ok(())
    }

    /// Events with `event_seq > after`, ascending, at most `limit`.
    pub fn events_since(&self, after: EventSeq, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.inner.registry.events_since(after, limit)
    }

    /// The highest stored event seq (0 when none).
    pub fn last_event_seq(&self) -> Result<EventSeq, StoreError> {
        Ok(self.journal().last)
    }

    // ---- logs ----

    /// Append records that continue the agent's log exactly (`records[0].seq == next_seq`,
    /// consecutive), else `SeqMismatch` and nothing is written. One `write(2)` into the page
    /// cache: visible to readers on return, durable at the next group commit. All or nothing: a
    /// failed append (e.g. `DiskFull`) leaves no partial record and the same `next_seq`.
    pub fn append(&self, agent: AgentId, records: &[Record]) -> Result<(), StoreError> {
        self.shared()
            .log_or_create(agent)
            .append(self.shared(), records)
    }

    /// Query an agent's log. An agent without a log reads as empty.
    pub fn read(&self, agent: AgentId, query: &LogQuery) -> Result<LogRead, StoreError> {
        match self.shared().log(agent) {
            Some(log) => {
                let mut read = read::read(&log, query)?;
                let dropped = log.lock().dropped;
                // Reached the end of what is stored, with records lost after it: report the
                // range (from where the reader is) and continue after it.
                if let Some(range) =
                    dropped.filter(|r| read.next_seq >= r.from && read.next_seq <= r.to)
                {
                    let wanted = query.until_seq.is_none_or(|until| until > read.next_seq);
                    if wanted {
                        read.dropped = Some(SeqRange {
                            from: read.next_seq,
                            to: range.to,
                        });
                        read.next_seq = range.to.next();
                    }
                }
                Ok(read)
            }
            None => Ok(LogRead {
                first_seq: Seq::FIRST,
                next_seq: query.since_seq.unwrap_or(Seq::FIRST).max(Seq::FIRST),
                ..LogRead::default()
            }),
        }
    }

    /// Logs holding their active segment open now (at most `max_open_writers` once the
    /// syncer has run; see [`StoreConfig::max_open_writers`]).
    pub fn open_writers(&self) -> usize {
        self.shared()
            .open_writers
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn log_bounds(&self, agent: AgentId) -> Result<LogBounds, StoreError> {
        Ok(match self.shared().log(agent) {
            Some(log) => {
                let st = log.lock();
                LogBounds {
                    first_seq: st.first_seq(),
                    next_seq: st.dropped.map_or(st.next_seq, |r| r.to.next()),
                    bytes: st.bytes,
                    output: st.output,
                }
            }
            None => LogBounds {
                first_seq: Seq::FIRST,
                next_seq: Seq::FIRST,
                bytes: 0,
                output: 0,
            },
        })
    }

    /// Follow the agent's log from `since` (inclusive): see [`Follower`].
    pub fn follow(&self, agent: AgentId, since: Seq) -> Result<Follower, StoreError> {
        Ok(Follower::new(self.shared().log_or_create(agent), since))
    }

    /// Mark the log live (followers wait for appends). Done by `insert_agent` for live agents
    /// and implicitly by nothing else: an append to a closed log does not reopen it.
    pub fn open_log(&self, agent: AgentId) {
        self.shared()
            .log_or_create(agent)
            .open_live(self.shared().config.follow_buffer);
    }

    /// Every log loaded at open that the caller has not opened is closed for good: global
    /// retention may now take its last segment. Until this call it keeps every loaded log's
    /// last segment, which may be the active one of an agent still running under a holder and
    /// not re-attached yet (its records, acknowledged to the holder, exist nowhere else).
    pub fn settle(&self) {
        for log in self.shared().all_logs() {
            log.lock().unsettled = false;
        }
    }

    /// The agent will append no more: followers end once they have drained.
    pub fn close_log(&self, agent: AgentId) {
        if let Some(log) = self.shared().log(agent) {
            log.close(self.shared());
        }
    }

    /// Override one agent's log budget (bytes of output); trims at once if it is now exceeded.
    pub fn set_agent_budget(&self, agent: AgentId, bytes: u64) {
        let log = self.shared().log_or_create(agent);
        let mut st = log.lock();
        st.budget = bytes;
        retention::trim_agent(&mut st, self.shared());
    }

    /// Flush and fdatasync every log now (the registry is synced on each change already).
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut first_error = None;
        for log in self.shared().all_logs() {
            if let Err(e) = syncer::sync_log(self.shared(), &log) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Bytes of output kept in all logs (the data of every record still readable).
    pub fn output_bytes(&self) -> u64 {
        self.shared()
            .all_logs()
            .iter()
            .map(|log| log.lock().output)
            .sum()
    }

    /// Bytes used: all segment files plus the registry database and its WAL.
    pub fn disk_usage(&self) -> u64 {
        let file = |name: &str| fs::metadata(self.inner.dir.join(name)).map_or(0, |m| m.len());
        self.shared().usage.load(Ordering::Relaxed)
            + file("registry.sqlite3")
            + file("registry.sqlite3-wal")
    }
}
