//! Lifecycle events in the registry database: appended one row at a time, the newest
//! `max_events` kept, read back in `event_seq` order so followers can resume.

use drover_proto::{AgentId, AgentState, Event, EventKind, EventSeq, Seq, SeqRange};
use rusqlite::{params, Connection, Row};

use crate::registry::Registry;
use crate::StoreError;

const KINDS: [EventKind; 8] = [
    EventKind::Spawned,
    EventKind::State,
    EventKind::Exit,
    EventKind::Lost,
    EventKind::Removed,
    EventKind::LogDropped,
    EventKind::Activity,
    EventKind::Restarted,
];

/// Insert one numbered event inside a transaction.
pub(crate) fn insert_event(conn: &Connection, event: &Event) -> Result<(), StoreError> {
    let activity = event
        .activity
        .as_ref()
        .map(|a| crate::row::json(a, "activity"))
        .transpose()?;
    conn.execute(
        "INSERT INTO events (event_seq, ts, agent, kind, state, exit_code, signal, \
         dropped_from, dropped_to, activity, run) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11)",
        params![
            event.event_seq.0 as i64,
            event.ts,
            event.agent.to_hyphenated(),
            event.kind.as_str(),
            event.state.as_str(),
            event.exit_code,
            event.signal,
            event.dropped.map(|r| r.from.0 as i64),
            event.dropped.map(|r| r.to.0 as i64),
            activity,
            event.run,
        ],
    )
    .map_err(|e| StoreError::sqlite(format!("appending event {}", event.event_seq), e))?;
    Ok(())
}

/// Drop the events older than the newest `max_events` (up to `last`).
pub(crate) fn trim_events(
    conn: &Connection,
    last: EventSeq,
    max_events: u64,
) -> Result<(), StoreError> {
    // A primary-key range delete: nothing to do (and nearly free) until the table is full.
    let keep_after = last.0.saturating_sub(max_events);
    conn.execute(
        "DELETE FROM events WHERE event_seq <= ?1",
        [keep_after as i64],
    )
    .map_err(|e| StoreError::sqlite(format!("trimming events before {last}"), e))?;
    Ok(())
}

impl Registry {
    /// Insert one event and drop those older than the newest `max_events`, in one transaction.
    pub fn append_event(&self, event: &Event, max_events: u64) -> Result<(), StoreError> {
        let ctx = || format!("appending event {}", event.event_seq);
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| StoreError::sqlite(ctx(), e))?;
        insert_event(&tx, event)?;
        trim_events(&tx, event.event_seq, max_events)?;
        tx.commit().map_err(|e| StoreError::sqlite(ctx(), e))
    }

    pub fn events_since(&self, after: EventSeq, limit: u32) -> Result<Vec<Event>, StoreError> {
        let ctx = "reading events";
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT event_seq, ts, agent, kind, state, exit_code, signal, dropped_from, \
                 dropped_to, activity, run FROM events \
                 WHERE event_seq > ?1 ORDER BY event_seq LIMIT ?2",
            )
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        // SQLite integers are i64: no event is numbered past that, so nothing comes after it.
        let Ok(after) = i64::try_from(after.0) else {
            return Ok(Vec::new());
        };
        let rows = stmt
            .query_map(params![after, limit], raw_event)
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| StoreError::sqlite(ctx, e))?.into_event()?);
        }
        Ok(out)
    }

    /// Each agent's last stored event kind, and the time of the oldest stored event (older
    /// events were trimmed). One pass over the events table, for the repair at startup.
    pub fn last_kinds(
        &self,
    ) -> Result<(std::collections::HashMap<AgentId, EventKind>, Option<i64>), StoreError> {
        let ctx = "reading event histories";
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT agent, kind, ts FROM events ORDER BY event_seq")
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| StoreError::sqlite(ctx, e))?;
        let mut last = std::collections::HashMap::new();
        let mut oldest = None;
        for row in rows {
            let (agent, kind, ts) = row.map_err(|e| StoreError::sqlite(ctx, e))?;
            oldest.get_or_insert(ts);
            let (Ok(agent), Some(kind)) = (
                agent.parse::<AgentId>(),
                KINDS.into_iter().find(|k| k.as_str() == kind),
            ) else {
                continue;
            };
            last.insert(agent, kind);
        }
        Ok((last, oldest))
    }

    pub fn last_event_seq(&self) -> Result<EventSeq, StoreError> {
        let max: Option<i64> = self
            .lock()
            .query_row("SELECT max(event_seq) FROM events", [], |r| r.get(0))
            .map_err(|e| StoreError::sqlite("reading last event seq", e))?;
        Ok(EventSeq(max.unwrap_or(0).max(0) as u64))
    }
}

type RawEvent = (
    i64,
    i64,
    String,
    String,
    String,
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    u32,
);

fn raw_event(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

trait IntoEvent {
    fn into_event(self) -> Result<Event, StoreError>;
}

impl IntoEvent for RawEvent {
    fn into_event(self) -> Result<Event, StoreError> {
        let (seq, ts, agent, kind, state, exit_code, signal, from, to, activity, run) = self;
        let bad =
            |what: String| StoreError::corrupt("registry.sqlite3", format!("event {seq}: {what}"));
        Ok(Event {
            event_seq: EventSeq(seq.max(0) as u64),
            ts,
            agent: agent.parse().map_err(|e| bad(format!("agent id: {e}")))?,
            kind: KINDS
                .into_iter()
                .find(|k| k.as_str() == kind)
                .ok_or_else(|| bad(format!("unknown kind {kind:?}")))?,
            state: AgentState::parse(&state)
                .ok_or_else(|| bad(format!("unknown state {state:?}")))?,
            exit_code,
            signal,
            dropped: match (from, to) {
                (Some(from), Some(to)) => Some(SeqRange {
                    from: Seq(from.max(1) as u64),
                    to: Seq(to.max(1) as u64),
                }),
                _ => None,
            },
            activity: activity
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| bad(format!("activity: {e}")))?,
            run: run.max(1),
        })
    }
}
