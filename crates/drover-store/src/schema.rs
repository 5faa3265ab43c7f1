//! Registry schema and its migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Each migration runs in its own
//! transaction together with the version bump, so a crash leaves the schema at a whole version.
//! New versions append to `MIGRATIONS`; applied ones are never edited.

use rusqlite::Connection;

use crate::StoreError;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: agents, their labels (for filtering), lifecycle events.
    "CREATE TABLE agents (
        id          TEXT PRIMARY KEY,      -- hyphenated UUID v7
        name        TEXT,
        backend     TEXT NOT NULL,
        state       TEXT NOT NULL,         -- AgentState wire string
        pid         INTEGER,
        started_at  INTEGER,
        ended_at    INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        error       TEXT,
        created_at  INTEGER NOT NULL,      -- unix ns
        labels      TEXT NOT NULL,         -- JSON object
        spec        TEXT NOT NULL,         -- JSON AgentSpec
        log_budget  INTEGER                -- per-agent log budget override, bytes
    ) STRICT;
    CREATE INDEX agents_order ON agents (created_at, id);
    CREATE INDEX agents_name ON agents (name, created_at);
    CREATE INDEX agents_state ON agents (state);
    CREATE TABLE agent_labels (
        agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
        key      TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (agent_id, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX agent_labels_kv ON agent_labels (key, value);
    CREATE TABLE events (
        event_seq INTEGER PRIMARY KEY,
        ts        INTEGER NOT NULL,
        agent     TEXT NOT NULL,
        kind      TEXT NOT NULL,
        state     TEXT NOT NULL,
        exit_code INTEGER,
        signal    INTEGER
    ) STRICT;",
    // 2: the range a `log_dropped` event names; each agent's lost records (at most one range:
    // records are dropped only when an agent ends with the store refusing them).
    "ALTER TABLE events ADD COLUMN dropped_from INTEGER;
    ALTER TABLE events ADD COLUMN dropped_to INTEGER;
    CREATE TABLE log_gaps (
        agent_id TEXT PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
        from_seq INTEGER NOT NULL,
        to_seq   INTEGER NOT NULL
    ) STRICT;",
    // 3: agents by short handle (the id's last 8 hex digits, `AgentId::handle`), unique so that
    // a handle names one agent.
    "CREATE UNIQUE INDEX agents_handle ON agents (substr(id, 29));",
    // 4: what an AI agent is doing (JSON `Activity`, set by its backend's parser), on the
    // agent and on `activity` events.
    "ALTER TABLE agents ADD COLUMN activity TEXT;
    ALTER TABLE events ADD COLUMN activity TEXT;",
    // 5: restart policies: the restarts so far, when a restarting agent's next run starts, a
    // timeout end, and the run each event belongs to.
    "ALTER TABLE agents ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN restart_at INTEGER;
    ALTER TABLE agents ADD COLUMN timed_out INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN run INTEGER NOT NULL DEFAULT 1;",
];

/// The schema version this code writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

/// Bring the database to [`VERSION`]. A database from a newer Drover is refused.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| StoreError::sqlite("reading registry schema version", e))?;
    if current > VERSION {
        return Err(StoreError::corrupt(
            "registry.sqlite3",
            format!("schema version {current} is newer than this build's {VERSION}"),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let to = i + 1;
        let context = || format!("migrating registry schema to version {to}");
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(context(), e))?;
        tx.execute_batch(sql)
            .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version = {to}")))
            .and_then(|()| tx.commit())
            .map_err(|e| StoreError::sqlite(context(), e))?;
    }
    Ok(())
}
