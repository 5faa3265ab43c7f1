//! Group commit: one background thread fdatasyncs what appends wrote.
//!
//! Appends only `write(2)` into the page cache. The syncer wakes every `sync_interval`, or early
//! when an agent has `sync_records` unsynced records or the global budget is exceeded, and for
//! each log: fdatasyncs sealed segments first, then the directory (new segment files), then the
//! active segment, all on cloned file handles outside the log lock. It also enforces the global
//! budget, closes writer descriptors idle for `writer_idle`, and keeps the open writers under
//! `max_open_writers`.

use std::fs::File;
use std::sync::Arc;

use crate::log::AgentLog;
use crate::{retention, Shared, StoreError};

/// The syncer loop; returns when `shared.shutdown` is set (after a final sync).
pub fn run(shared: Arc<Shared>) {
    loop {
        let stop = shared.wait_for_kick(shared.config.sync_interval);
        for log in shared.all_logs() {
            if let Err(e) = sync_log(&shared, &log) {
                tracing::error!(agent = %log.id, error = %e, "group commit failed; will retry");
            }
            close_if_idle(&shared, &log);
        }
        close_over_cap(&shared);
        retention::trim_global(&shared);
        if stop {
            return;
        }
    }
}

/// Make everything appended to `log` so far durable.
pub fn sync_log(shared: &Shared, log: &AgentLog) -> Result<(), StoreError> {
    let (sealed, active, dir, logs_dir, taken) = {
        let mut st = log.lock();
        if st.unsynced == 0 && st.to_sync.is_empty() && !st.dir_dirty {
            return Ok(());
        }
        let dir = st.dir_dirty.then(|| st.dir.clone());
        let logs_dir = st.dir_new;
        st.dir_dirty = false;
        st.dir_new = false;
        let taken = std::mem::take(&mut st.unsynced);
        (
            // Cloned, not taken: until they are synced they stay listed, so a segment roll
            // meanwhile still sees (and syncs) them; see `LogState::roll_if_full`.
            st.to_sync.clone(),
            st.writer.file(),
            dir,
            logs_dir,
            taken,
        )
    };
    let mut data_failed = false;
    let result: Result<(), StoreError> = (|| {
        for file in &sealed {
            file.sync_data().map_err(|e| {
                data_failed = true;
                StoreError::io("syncing sealed segment", e)
            })?;
        }
        if logs_dir {
            sync_dir(&shared.logs_dir)?;
        }
        if let Some(dir) = &dir {
            sync_dir(dir)?;
        }
        if let Some(file) = &active {
            file.sync_data().map_err(|e| {
                data_failed = true;
                StoreError::io("syncing active segment", e)
            })?;
        }
        Ok(())
    })();
    if let (true, Err(error)) = (data_failed, &result) {
        // fsyncgate: after a failed fdatasync the dirty pages may be gone, and retrying would
        // report success for data that was lost. Stop taking appends for this log instead.
        let mut st = log.lock();
        st.sync_failed = Some(error.to_string());
        tracing::error!(
            agent = %log.id,
            %error,
            "fdatasync failed; this log refuses further appends until the daemon restarts"
        );
        return result;
    }
    let mut st = log.lock();
    if result.is_err() {
        // A directory sync failed: put the work back so the next round retries it.
        st.unsynced += taken;
        st.dir_dirty |= dir.is_some();
        st.dir_new |= logs_dir;
    } else {
        st.to_sync
            .retain(|file| !sealed.iter().any(|done| Arc::ptr_eq(done, file)));
    }
    result
}

fn sync_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Removed meanwhile (agent removal): nothing left to make durable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(
            format!("syncing directory {}", dir.display()),
            e,
        )),
    }
}

/// Release the writer descriptor of a log nobody appended to lately (reopened on demand), so
/// open descriptors track active agents, not all agents ever seen.
/// Past `max_open_writers`, close the writers of the logs appended to longest ago, each once it
/// is synced, down to three quarters of the cap (so a steady trickle of new writers does not
/// close one at every round). A closed writer reopens at its log's next append.
fn close_over_cap(shared: &Shared) {
    use std::sync::atomic::Ordering;
    let cap = shared.config.max_open_writers;
    if shared.open_writers.load(Ordering::Relaxed) <= cap {
        return;
    }
    let target = cap - cap / 4;
    let mut open: Vec<(std::time::Instant, Arc<AgentLog>)> = shared
        .all_logs()
        .into_iter()
        .filter_map(|log| {
            let last = {
                let st = log.lock();
                st.writer.is_open().then_some(st.last_append)
            };
            last.map(|at| (at, log))
        })
        .collect();
    open.sort_by_key(|(at, _)| *at);
    for (_, log) in open {
        if shared.open_writers.load(Ordering::Relaxed) <= target {
            break;
        }
        if sync_log(shared, &log).is_err() {
            continue;
        }
        let mut st = log.lock();
        // An append since the sync: its records are not durable yet; the next round.
        if st.unsynced == 0 && st.to_sync.is_empty() {
            st.writer.close();
        }
    }
}

fn close_if_idle(shared: &Shared, log: &AgentLog) {
    let mut st = log.lock();
    let idle = st.last_append.elapsed() >= shared.config.writer_idle;
    if idle && st.unsynced == 0 && st.to_sync.is_empty() && st.writer.is_open() {
        st.writer.close();
    }
}
