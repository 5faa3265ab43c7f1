//! `drover-store`: where the Drover daemon keeps what must survive it.
//!
//! Two stores under one state directory:
//! - the **registry** (`registry.sqlite3`, SQLite in WAL mode): one row per agent, lifecycle
//!   events, a versioned schema with migrations, one small transaction per change;
//! - the **logs** (`logs/<agent_id>/*.seg|*.pack`): every record an agent printed, in compact
//!   CRC-checked blocks (delta seqs and timestamps, varint lengths), appended raw to the active
//!   segment and packed into zstd blocks once sealed (off the capture path), with
//!   group-committed fsyncs, crash recovery, a sparse index for fast tail/seq/time queries,
//!   per-agent budgets of output bytes and a global budget of disk bytes, and a follow primitive
//!   (stored history, then live appends, no gap, no duplicate).
//!
//! It does not run processes, split output into records, speak any network protocol or publish
//! on ZeroMQ: the daemon does those and calls this crate. It does no async IO of its own; every
//! call is a short blocking operation except `Follower::next`, which awaits the live feed and
//! reads history on tokio's blocking pool.

mod block;
mod commit;
mod config;
mod error;
mod events;
mod follow;
mod index;
mod journal;
mod log;
mod migrate;
mod pack;
mod read;
mod recover;
mod registry;
mod retention;
mod row;
mod schema;
mod segment;
mod store;
mod syncer;
mod v1;
mod varint;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use drover_proto::{AgentId, AgentState, Record, Seq, SeqRange, StreamKind};

pub use block::MAX_DATA as MAX_RECORD_BYTES;
pub use config::StoreConfig;
pub use error::StoreError;
pub use follow::{FollowItem, Follower};
pub use journal::{Change, Committed};
pub use read::MAX_READ_BYTES;
pub use store::Store;

use crate::log::{AgentLog, LogState};

/// The mode of every file the store creates: agent output and specs (with their environment)
/// are for the daemon's user alone, whatever the umask.
pub(crate) const PRIVATE_FILE: u32 = 0o600;

/// Create `dir` and its missing parents for the daemon's user alone (0700); an existing `dir`
/// is narrowed to 0700 too (a store made by an older version under the umask).
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Which agents `Store::list` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only agents in this state.
    pub state: Option<AgentState>,
    /// Only agents carrying every one of these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// At most this many (the oldest first).
    pub limit: Option<u32>,
    /// Only agents after this one in list order: its `(created_at, id)` (a page's cursor).
    pub after: Option<(i64, AgentId)>,
}

/// A log query. Start = the latest of `since_seq`, the start of the last `tail` records before
/// the end, and the first record with `ts >= since`; then up to `limit` records before
/// `until_seq`, optionally of one stream only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// First seq wanted (inclusive).
    pub since_seq: Option<Seq>,
    /// Stop before this seq (exclusive).
    pub until_seq: Option<Seq>,
    /// The last `tail` records (of all streams) before the end.
    pub tail: Option<u32>,
    /// First record with `ts >= since` (unix ns).
    pub since: Option<i64>,
    /// Only this stream.
    pub stream: Option<StreamKind>,
    /// Most records returned; 0 means `DEFAULT_READ_LIMIT`, larger than `MAX_READ_LIMIT` is
    /// clamped. Also capped at `MAX_READ_BYTES` of data (at least one record).
    pub limit: u32,
}

/// The answer to a log query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRead {
    /// The records, consecutive unless a stream filter skipped some.
    pub records: Vec<Record>,
    /// The first seq the log still keeps.
    pub first_seq: Seq,
    /// Where to continue: the seq after the last record scanned (not just returned).
    pub next_seq: Seq,
    /// The requested start was removed by retention; the read began at `first_seq`.
    pub truncated: bool,
    /// The read reached records that were lost for good (the agent ended while the store
    /// refused them): this range; `next_seq` continues after it.
    pub dropped: Option<SeqRange>,
}

/// A log's extent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The first seq kept (equals `next_seq` for an empty log).
    pub first_seq: Seq,
    /// The seq after the log's end: the next append's seq, or after the records lost at the end
    /// (`LogRead::dropped`) if any.
    pub next_seq: Seq,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes of output kept: the data of the records from `first_seq` on.
    pub output: u64,
}

/// State shared by the store handles and the syncer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: StoreConfig,
    pub logs_dir: PathBuf,
    pub logs: RwLock<HashMap<AgentId, Arc<AgentLog>>>,
    /// Bytes of all segment files.
    pub usage: AtomicU64,
    /// Logs with an open writer (see [`log::WriterSlot`]).
    pub open_writers: Arc<std::sync::atomic::AtomicUsize>,
    /// Wakes the syncer.
    sync_waker: Waker,
    /// Wakes the packer (a segment was sealed).
    pub pack_waker: Waker,
    pub shutdown: AtomicBool,
}

/// Wakes one background thread early.
#[derive(Debug, Default)]
pub(crate) struct Waker {
    kicked: Mutex<bool>,
    cv: Condvar,
}

impl Waker {
    pub fn kick(&self) {
        *self.kicked.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Sleep until kicked, `shutdown` or `timeout`; true when shutting down.
    pub fn wait(&self, shutdown: &AtomicBool, timeout: Duration) -> bool {
        let guard = self.kicked.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |kicked| {
                !*kicked && !shutdown.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
        shutdown.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn new(config: StoreConfig, logs_dir: PathBuf) -> Shared {
        Shared {
            config,
            logs_dir,
            logs: RwLock::new(HashMap::new()),
            usage: AtomicU64::new(0),
            open_writers: Arc::default(),
            sync_waker: Waker::default(),
            pack_waker: Waker::default(),
            shutdown: AtomicBool::new(false),
        }
    }

    /// Wake the syncer now.
    pub fn kick(&self) {
        self.sync_waker.kick();
    }

    /// Sleep until kicked or `timeout`; true when the store is shutting down.
    pub fn wait_for_kick(&self, timeout: Duration) -> bool {
        self.sync_waker.wait(&self.shutdown, timeout)
    }

    /// Wake every background thread (at shutdown).
    pub fn kick_all(&self) {
        self.sync_waker.kick();
        self.pack_waker.kick();
    }

    pub fn log(&self, id: AgentId) -> Option<Arc<AgentLog>> {
        let logs = self.logs.read().unwrap_or_else(|p| p.into_inner());
        logs.get(&id).cloned()
    }

    /// The agent's log, created empty (no files until the first append) if unknown.
    pub fn log_or_create(&self, id: AgentId) -> Arc<AgentLog> {
        if let Some(log) = self.log(id) {
            return log;
        }
        let mut logs = self.logs.write().unwrap_or_else(|p| p.into_inner());
        logs.entry(id)
            .or_insert_with(|| {
                let dir = self.logs_dir.join(id.to_hyphenated());
                Arc::new(AgentLog::new(
                    id,
                    LogState::new(dir, self.config.agent_budget),
                ))
            })
            .clone()
    }

    pub fn all_logs(&self) -> Vec<Arc<AgentLog>> {
        let logs = self.logs.read().unwrap_or_else(|p| p.into_inner());
        logs.values().cloned().collect()
    }
}
