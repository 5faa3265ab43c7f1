//! The agent registry: one SQLite row per agent, one small transaction per change.
//!
//! The connection sits behind a `std::sync::Mutex`: every statement is short (indexed lookups,
//! single-row writes), the lock is never held across `.await`, and SQLite serialises writers
//! anyway. WAL mode lets the file be read by tools while the daemon writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use drover_proto::{AgentId, AgentInfo, AgentState, AgentStatus, Event, Runs, Seq, SeqRange};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::journal::Change;
use crate::row::{json, parse_id, parse_state, raw_row, RawAgent};
use crate::{schema, ListFilter, StoreError};

const COLS: &str = "id, name, backend, state, pid, started_at, ended_at, exit_code, signal, \
                    error, created_at, labels, spec, activity, restarts, restart_at, timed_out";

/// The registry database.
#[derive(Debug)]
pub struct Registry {
    conn: Mutex<Connection>,
}

/// The registry holds every spec, environment values included: its file is created 0600 before
/// SQLite opens it (SQLite gives its `-wal` and `-shm` files the database file's mode), and the
/// files of a registry an older version made under the umask are narrowed to 0600.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::PRIVATE_FILE)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::metadata(&name) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(
                    &name,
                    std::fs::Permissions::from_mode(crate::PRIVATE_FILE),
                )?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Registry {
    /// Open (creating) `path`, set WAL with group-commit durability, run migrations.
    pub fn open(path: &Path) -> Result<Registry, StoreError> {
        let ctx = || format!("opening registry {}", path.display());
        private_files(path).map_err(|e| StoreError::io(ctx(), e))?;
        let mut conn = Connection::open(path).map_err(|e| StoreError::sqlite(ctx(), e))?;
        // WAL with synchronous=NORMAL: a committed change is in the WAL file when the call
        // returns, so a daemon crash (even SIGKILL) loses nothing; an OS crash or power loss may
        // lose the last commits since SQLite's last WAL sync, the same promise as the logs' group
        // commit. FULL would fsync every state change and event, and made spawning a short-lived
        // agent cost six fsyncs.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| StoreError::sqlite(ctx(), e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        schema::migrate(&mut conn)?;
        Ok(Registry {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-changed (transactions roll
        // back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert_agent(&self, info: &AgentInfo) -> Result<(), StoreError> {
        let ctx = || format!("inserting agent {}", info.id);
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        insert_in(&tx, info)?;
        tx.commit().map_err(|e| StoreError::sqlite(ctx(), e))
    }

    /// Apply `entries` (each change with its numbered event) in one transaction, then keep
    /// only the newest `max_events` events. All or nothing.
    pub fn apply(&self, entries: &[(Change, Event)], max_events: u64) -> Result<(), StoreError> {
        let Some((_, last)) = entries.last() else {
            return Ok(());
        };
        let ctx = || format!("recording event {}", last.event_seq);
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        for (change, event) in entries {
            match change {
                Change::Insert(info) => insert_in(&tx, info)?,
                // A row that is gone (removed behind the journal's back) is no reason to refuse
                // the rest: a change that could never be stored would hold every later one.
                Change::Status(id, status, runs) => {
                    update_in(&tx, *id, status, *runs)?;
                }
                Change::Activity(id, activity) => {
                    let activity = json(activity.as_ref(), "activity")?;
                    tx.execute(
                        "UPDATE agents SET activity = ?2 WHERE id = ?1",
                        params![id.to_hyphenated(), activity],
                    )
                    .map_err(|e| {
                        StoreError::sqlite(format!("updating activity of agent {id}"), e)
                    })?;
                }
                Change::Remove(id) => {
                    let removed = tx
                        .execute("DELETE FROM agents WHERE id = ?1", [id.to_hyphenated()])
                        .map_err(|e| StoreError::sqlite(format!("removing agent {id}"), e))?;
                    if removed == 0 {
                        return Err(StoreError::NotFound(id.to_string()));
                    }
                }
                Change::LogDropped(id, range) => {
                    tx.execute(
                        "INSERT INTO log_gaps (agent_id, from_seq, to_seq) \
                         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM agents WHERE id = ?1) \
                         ON CONFLICT (agent_id) DO UPDATE SET from_seq = min(from_seq, ?2), \
                         to_seq = max(to_seq, ?3)",
                        params![id.to_hyphenated(), range.from.0 as i64, range.to.0 as i64],
                    )
                    .map_err(|e| {
                        StoreError::sqlite(format!("recording dropped records of agent {id}"), e)
                    })?;
                }
            }
            crate::events::insert_event(&tx, event)?;
        }
        crate::events::trim_events(&tx, last.event_seq, max_events)?;
        tx.commit().map_err(|e| StoreError::sqlite(ctx(), e))
    }

    /// Every recorded range of lost records, by agent.
    pub fn log_gaps(&self) -> Result<Vec<(AgentId, SeqRange)>, StoreError> {
        let ctx = "reading dropped log ranges";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT agent_id, from_seq, to_seq FROM log_gaps")
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, from, to) = row.map_err(|e| StoreError::sqlite(ctx, e))?;
            let range = SeqRange {
                from: Seq(from.max(1) as u64),
                to: Seq(to.max(1) as u64),
            };
            out.push((parse_id(&id)?, range));
        }
        Ok(out)
    }
}

/// Insert an agent's row and labels inside `tx`, refusing a name a live agent holds.
fn insert_in(tx: &Connection, info: &AgentInfo) -> Result<(), StoreError> {
    let ctx = || format!("inserting agent {}", info.id);
    let labels = json(&info.labels, "labels")?;
    let spec = json(&info.spec, "spec")?;
    let activity = info
        .activity
        .as_ref()
        .map(|a| json(a, "activity"))
        .transpose()?;
    let s = &info.status;
    if let Some(name) = &info.name {
        if !info.state().is_terminal() && live_name_taken(tx, name)? {
            return Err(StoreError::NameTaken(name.clone()));
        }
    }
    tx.execute(
        &format!("INSERT INTO agents ({COLS}, log_budget) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
        params![
            info.id.to_hyphenated(), info.name, info.backend, info.state().as_str(), s.pid(),
            s.started_at(), s.ended_at(), s.exit_code(), s.signal(), s.error(),
            info.created_at, labels, spec, activity, info.restarts, s.restart_at(),
            info.timed_out, info.spec.log_budget.map(|b| b as i64),
        ],
    )
    .map_err(|e| StoreError::sqlite(ctx(), e))?;
    for (key, value) in &info.labels {
        tx.execute(
            "INSERT INTO agent_labels (agent_id, key, value) VALUES (?1, ?2, ?3)",
            params![info.id.to_hyphenated(), key, value],
        )
        .map_err(|e| StoreError::sqlite(ctx(), e))?;
    }
    Ok(())
}

/// Set an agent's status inside `conn`; how many rows changed (0: no such agent).
fn update_in(
    conn: &Connection,
    id: AgentId,
    s: &AgentStatus,
    runs: Runs,
) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE agents SET state = ?2, pid = ?3, started_at = ?4, ended_at = ?5, \
         exit_code = ?6, signal = ?7, error = ?8, restarts = ?9, restart_at = ?10, \
         timed_out = ?11 WHERE id = ?1",
        params![
            id.to_hyphenated(),
            s.state().as_str(),
            s.pid(),
            s.started_at(),
            s.ended_at(),
            s.exit_code(),
            s.signal(),
            s.error(),
            runs.restarts,
            s.restart_at(),
            runs.timed_out,
        ],
    )
    .map_err(|e| StoreError::sqlite(format!("updating status of agent {id}"), e))
}

impl Registry {
    pub fn update_status(
        &self,
        id: AgentId,
        s: &AgentStatus,
        runs: Runs,
    ) -> Result<(), StoreError> {
        let changed = update_in(&self.lock(), id, s, runs)?;
        if changed == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(())
    }

    pub fn agent(&self, id: AgentId) -> Result<Option<AgentInfo>, StoreError> {
        self.query_one(
            &format!("SELECT {COLS} FROM agents WHERE id = ?1"),
            &id.to_hyphenated(),
        )
    }

    /// The newest agent with this name.
    pub fn by_name(&self, name: &str) -> Result<Option<AgentInfo>, StoreError> {
        self.query_one(
            &format!("SELECT {COLS} FROM agents WHERE name = ?1 ORDER BY created_at DESC, id DESC LIMIT 1"),
            name,
        )
    }

    /// The agent whose short handle (the id's last 8 hex digits) is `handle`.
    pub fn by_handle(&self, handle: &str) -> Result<Option<AgentInfo>, StoreError> {
        // The same expression as the `agents_handle` index, so the lookup uses it.
        self.query_one(
            &format!("SELECT {COLS} FROM agents WHERE substr(id, 29) = ?1"),
            handle,
        )
    }

    /// The agent whose short handle starts with `prefix` (shorter than a handle), if exactly
    /// one does, and how many do.
    pub fn by_handle_prefix(&self, prefix: &str) -> Result<(Option<AgentInfo>, u64), StoreError> {
        // A range on the `agents_handle` index's expression.
        self.unique_start("substr(id, 29)", prefix, "handle")
    }

    /// The agent whose id starts with `prefix`, if exactly one does, and how many do.
    pub fn by_prefix(&self, prefix: &str) -> Result<(Option<AgentInfo>, u64), StoreError> {
        // Ids are lowercase hex and '-', so a range scan on the primary key finds the prefix.
        self.unique_start("id", prefix, "id")
    }

    /// The agent whose `column` (an indexed expression of ours, never input) starts with
    /// `prefix`, if exactly one does, and how many do: a range scan, counted first.
    fn unique_start(
        &self,
        column: &str,
        prefix: &str,
        what: &str,
    ) -> Result<(Option<AgentInfo>, u64), StoreError> {
        let ctx = || format!("resolving {what} prefix {prefix:?}");
        let upper = format!("{prefix}\u{7f}");
        let range = format!("FROM agents WHERE {column} >= ?1 AND {column} < ?2");
        let conn = self.lock();
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) {range}"),
                params![prefix, upper],
                |r| r.get(0),
            )
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        let count = count.max(0) as u64;
        if count != 1 {
            return Ok((None, count));
        }
        let raw = conn
            .query_row(
                &format!("SELECT {COLS} {range}"),
                params![prefix, upper],
                raw_row,
            )
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        Ok((Some(raw.into_info()?), 1))
    }

    pub fn list(&self, filter: &ListFilter) -> Result<Vec<AgentInfo>, StoreError> {
        let mut out = Vec::new();
        self.list_each(filter, |info| {
            out.push(info);
            true
        })?;
        Ok(out)
    }

    /// Hands the agents matching `filter` to `each`, oldest first, one row at a time, until it
    /// returns false: a caller with a byte budget never holds more rows than it keeps.
    pub fn list_each(
        &self,
        filter: &ListFilter,
        mut each: impl FnMut(AgentInfo) -> bool,
    ) -> Result<(), StoreError> {
        let mut sql = format!("SELECT {COLS} FROM agents WHERE 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(state) = filter.state {
            args.push(state.as_str().to_owned());
            sql += &format!(" AND state = ?{}", args.len());
        }
        for (key, value) in &filter.labels {
            args.push(key.clone());
            args.push(value.clone());
            sql += &format!(
                " AND id IN (SELECT agent_id FROM agent_labels WHERE key = ?{} AND value = ?{})",
                args.len() - 1,
                args.len()
            );
        }
        if let Some((created_at, id)) = filter.after {
            args.push(created_at.to_string());
            args.push(id.to_hyphenated());
            // Row-value comparison in the order of the `agents_order` index.
            sql += &format!(
                " AND (created_at, id) > (CAST(?{} AS INTEGER), ?{})",
                args.len() - 1,
                args.len()
            );
        }
        sql += " ORDER BY created_at, id";
        if let Some(limit) = filter.limit {
            sql += &format!(" LIMIT {limit}");
        }
        let ctx = "listing agents";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let rows = stmt
            .query_map(params_from_iter(args), raw_row)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        for row in rows {
            if !each(row.map_err(|e| StoreError::sqlite(ctx, e))?.into_info()?) {
                break;
            }
        }
        Ok(())
    }

    /// Ids of the `limit` ended agents that ended first (for pruning), oldest end first.
    pub fn oldest_ended(&self, limit: u32) -> Result<Vec<AgentId>, StoreError> {
        let sql = format!(
            "SELECT id FROM agents WHERE state IN ({}) ORDER BY ended_at, created_at, id LIMIT ?1",
            terminal_states()
        );
        let ctx = "listing the oldest ended agents";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let ids = stmt
            .query_map([limit], |row| row.get::<_, String>(0))
            .map_err(|e| StoreError::sqlite(ctx, e))?
            .filter_map(|id| id.ok().and_then(|id| id.parse::<AgentId>().ok()))
            .collect();
        Ok(ids)
    }

    pub fn live_agents(&self) -> Result<Vec<AgentInfo>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM agents WHERE state NOT IN ({}) ORDER BY created_at, id",
            terminal_states()
        );
        self.query_many(&sql, Vec::new())
    }

    /// Delete the agent's row (its labels go by cascade). False if there was none.
    pub fn remove_agent(&self, id: AgentId) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM agents WHERE id = ?1", [id.to_hyphenated()])
            .map_err(|e| StoreError::sqlite(format!("removing agent {id}"), e))?;
        Ok(n > 0)
    }

    pub fn count_by_state(&self) -> Result<BTreeMap<AgentState, u64>, StoreError> {
        let sql = "SELECT state, count(*) FROM agents GROUP BY state";
        self.text_int_pairs("counting agents by state", sql)?
            .into_iter()
            .map(|(state, n)| Ok((parse_state(&state)?, n.max(0) as u64)))
            .collect()
    }

    /// Per-agent log budget overrides recorded from specs.
    pub fn log_budgets(&self) -> Result<Vec<(AgentId, u64)>, StoreError> {
        let sql = "SELECT id, log_budget FROM agents WHERE log_budget IS NOT NULL";
        self.text_int_pairs("reading log budgets", sql)?
            .into_iter()
            .map(|(id, budget)| Ok((parse_id(&id)?, budget.max(0) as u64)))
            .collect()
    }

    /// Rows of (text, integer) from a query without parameters.
    fn text_int_pairs(&self, ctx: &str, sql: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        rows.map(|row| row.map_err(|e| StoreError::sqlite(ctx, e)))
            .collect()
    }

    fn query_one(&self, sql: &str, arg: &str) -> Result<Option<AgentInfo>, StoreError> {
        let raw = self
            .lock()
            .query_row(sql, [arg], raw_row)
            .optional()
            .map_err(|e| StoreError::sqlite(format!("looking up agent {arg:?}"), e))?;
        raw.map(RawAgent::into_info).transpose()
    }

    fn query_many(&self, sql: &str, args: Vec<String>) -> Result<Vec<AgentInfo>, StoreError> {
        let ctx = "listing agents";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let rows = stmt
            .query_map(params_from_iter(args), raw_row)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| StoreError::sqlite(ctx, e))?.into_info()?);
        }
        Ok(out)
    }
}

fn live_name_taken(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT state FROM agents WHERE name = ?1")
        .map_err(|e| StoreError::sqlite("checking agent name", e))?;
    let states = stmt
        .query_map([name], |r| r.get::<_, String>(0))
        .map_err(|e| StoreError::sqlite("checking agent name", e))?;
    for state in states {
        let state = state.map_err(|e| StoreError::sqlite("checking agent name", e))?;
        if !parse_state(&state)?.is_terminal() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The terminal states as an SQL list: `'exited', 'killed', ...`.
fn terminal_states() -> String {
    let names: Vec<String> = AgentState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    names.join(", ")
}
