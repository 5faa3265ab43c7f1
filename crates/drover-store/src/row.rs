//! Registry rows: turning stored columns back into checked [`AgentInfo`] values.

use drover_proto::{AgentId, AgentInfo, AgentState, AgentStatus};
use rusqlite::Row;

use crate::StoreError;

pub fn json<T: serde::Serialize + ?Sized>(v: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::corrupt("registry.sqlite3", format!("encoding {what}: {e}")))
}

pub fn parse_state(s: &str) -> Result<AgentState, StoreError> {
    AgentState::parse(s)
        .ok_or_else(|| StoreError::corrupt("registry.sqlite3", format!("unknown state {s:?}")))
}

pub fn parse_id(s: &str) -> Result<AgentId, StoreError> {
    s.parse()
        .map_err(|e| StoreError::corrupt("registry.sqlite3", format!("bad agent id {s:?}: {e}")))
}

/// A row as stored, before it is checked and turned into an [`AgentInfo`].
pub struct RawAgent {
    id: String,
    name: Option<String>,
    backend: String,
    state: String,
    pid: Option<u32>,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<String>,
    created_at: i64,
    labels: String,
    spec: String,
    activity: Option<String>,
    restarts: u32,
    restart_at: Option<i64>,
    timed_out: bool,
}

pub fn raw_row(r: &Row<'_>) -> rusqlite::Result<RawAgent> {
    Ok(RawAgent {
        id: r.get(0)?,
        name: r.get(1)?,
        backend: r.get(2)?,
        state: r.get(3)?,
        pid: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        exit_code: r.get(7)?,
        signal: r.get(8)?,
        error: r.get(9)?,
        created_at: r.get(10)?,
        labels: r.get(11)?,
        spec: r.get(12)?,
        activity: r.get(13)?,
        restarts: r.get(14)?,
        restart_at: r.get(15)?,
        timed_out: r.get(16)?,
    })
}

impl RawAgent {
    pub fn into_info(self) -> Result<AgentInfo, StoreError> {
        let id = parse_id(&self.id)?;
        let bad =
            |what: &str| StoreError::corrupt("registry.sqlite3", format!("agent {id}: {what}"));
        let need = |v: Option<i64>, what: &str| v.ok_or_else(|| bad(what));
        let pid = || self.pid.ok_or_else(|| bad("missing pid"));
        let started = need(self.started_at, "missing started_at");
        let status = match parse_state(&self.state)? {
            AgentState::Starting => AgentStatus::Starting,
            AgentState::Running => AgentStatus::Running {
                pid: pid()?,
                started_at: started?,
            },
            AgentState::Paused => AgentStatus::Paused {
                pid: pid()?,
                started_at: started?,
            },
            AgentState::Stopping => AgentStatus::Stopping {
                pid: pid()?,
                started_at: started?,
            },
            AgentState::Restarting => AgentStatus::Restarting {
                code: self.exit_code,
                signal: self.signal,
                started_at: started?,
                ended_at: need(self.ended_at, "missing ended_at")?,
                restart_at: need(self.restart_at, "missing restart_at")?,
            },
            AgentState::Exited => AgentStatus::Exited {
                code: self.exit_code.ok_or_else(|| bad("missing exit_code"))?,
                started_at: started?,
                ended_at: need(self.ended_at, "missing ended_at")?,
            },
            AgentState::Killed => AgentStatus::Killed {
                signal: self.signal.ok_or_else(|| bad("missing signal"))?,
                started_at: started?,
                ended_at: need(self.ended_at, "missing ended_at")?,
            },
            AgentState::FailedToStart => AgentStatus::FailedToStart {
                error: self.error.unwrap_or_default(),
                ended_at: need(self.ended_at, "missing ended_at")?,
            },
            AgentState::Lost => AgentStatus::Lost {
                pid: self.pid,
                started_at: self.started_at,
                ended_at: need(self.ended_at, "missing ended_at")?,
                error: self.error,
            },
        };
        Ok(AgentInfo {
            id,
            name: self.name,
            backend: self.backend,
            status,
            created_at: self.created_at,
            labels: serde_json::from_str(&self.labels).map_err(|e| bad(&format!("labels: {e}")))?,
            spec: serde_json::from_str(&self.spec).map_err(|e| bad(&format!("spec: {e}")))?,
            activity: self
                .activity
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad(&format!("activity: {e}")))?,
            restarts: self.restarts,
            timed_out: self.timed_out,
        })
    }
}
