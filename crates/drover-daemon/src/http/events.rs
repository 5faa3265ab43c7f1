//! `GET /v1/events`: lifecycle events as Server-Sent Events, resumable by `event_seq`.
//!
//! Each event is `id: <event_seq>`, `event: <kind>` (`spawned`, `state`, `exit`, `lost`,
//! `removed`, `log_dropped`, `activity`, `restarted`), `data:` the event as JSON. The stream subscribes to the live bus *before* reading
//! the store, so the replayed part and the live part meet with no gap; events are de-duplicated
//! by `event_seq`. A subscriber that lags the bounded bus refills from the store, and a range
//! that is no longer stored is announced as `event: gap` with `{from, to}`.
//!
//! Every stream opens with a bare `id: <event_seq>` frame: the number it continues after (the
//! newest event when opened without `since`). An SSE frame with only an `id` dispatches nothing
//! but sets the client's last event id, so an `EventSource` that drops before the first event
//! arrived still reconnects with `Last-Event-ID` and misses nothing of the outage.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use drover_proto::op::AgentArgs;
use drover_proto::{AgentId, ErrorCode, Event, EventSeq, Request};
use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::query::Params;
use super::sse::{self, Source};
use super::{call, ApiError, AppState, Http};
use crate::handler::Reply;

/// Events read from the store per step.
const PAGE: u32 = 1000;

/// `GET /v1/events?since=<event_seq>&agent=<ref>`: events after `since` (or after the
/// `Last-Event-ID`, which wins); without either, only events from now on.
pub(super) async fn follow(
    State(http): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = open(&http, &headers, &params).await;
    http.shared.count_request(
        "follow_events",
        started.elapsed(),
        result.as_ref().err().map(|e| e.0.code.as_str()),
    );
    Ok(sse::response(result?, http.stop.clone()))
}

async fn open(
    http: &Arc<Http>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<EventSource, ApiError> {
    if !sse::is_accepted(headers) {
        return Err(ApiError::bad_request(
            "/v1/events answers with text/event-stream; send Accept: text/event-stream",
        ));
    }
    let counted = StreamGuard::new(Arc::clone(http)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::LimitReached,
            format!(
                "{} event streams are open, the maximum",
                http.shared.config.max_streams
            ),
        )
    })?;
    let since = match sse::last_event_id(headers).map_err(ApiError::bad_request)? {
        Some(id) => Some(id),
        None => params.parse::<u64>("since")?,
    };
    let agent = match params.get("agent") {
        None => None,
        Some(agent) => {
            let args = AgentArgs {
                agent: drover_proto::op::AgentRef::new(agent),
            };
            match call(&http.shared, Request::Get(args)).await? {
                Reply::Agent(result) => Some(result.agent.id),
                _ => return Err(ApiError::new(ErrorCode::Internal, "get returned no agent")),
            }
        }
    };
    // Subscribe first: every event numbered after `last()` reaches this receiver.
    let live = http.shared.events.subscribe();
    let newest = http.shared.events.last();
    let (last, backlog) = match since {
        // A number no event has had yet is a mistake (a `Last-Event-ID` kept across a reset
        // state directory, a typo): waiting silently for numbering to pass it would look like a
        // quiet daemon. As for a log stream's seq past the log's end.
        Some(since) if since > newest.0 => {
            return Err(ApiError::bad_request(format!(
                "no event after {since}: the last event is {}",
                newest.0
            )))
        }
        Some(since) => (EventSeq(since), true),
        None => (newest, false),
    };
    Ok(EventSource {
        counted,
        live,
        last,
        opening: true,
        backlog,
        held: None,
        agent,
    })
}

/// Counts an open `/v1/events` stream for exactly as long as it exists.
#[derive(Debug)]
struct StreamGuard(Arc<Http>);

impl StreamGuard {
    /// Count one more stream, unless that would pass the maximum.
    fn new(http: Arc<Http>) -> Option<StreamGuard> {
        let before = http.event_followers.fetch_add(1, Ordering::Relaxed);
        // Constructed even when refused, so its drop undoes the increment.
        let guard = StreamGuard(http);
        (before < guard.0.shared.config.max_streams as u64).then_some(guard)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.event_followers.fetch_sub(1, Ordering::Relaxed);
    }
}

struct EventSource {
    /// Also the way to the daemon's state.
    counted: StreamGuard,
    live: broadcast::Receiver<Event>,
    /// The last `event_seq` accounted for (sent, filtered out, or announced as a gap).
    last: EventSeq,
    /// The bare `id: <last>` frame that opens the stream is still to be sent.
    opening: bool,
    /// Events after `last` are to be read from the store before the live feed.
    backlog: bool,
    /// A live event that arrived ahead of `last + 1`; sent after the store fills the gap.
    held: Option<Event>,
    /// Only this agent's events.
    agent: Option<AgentId>,
}

#[derive(Serialize)]
struct Gap {
    from: EventSeq,
    to: EventSeq,
}

impl Source for EventSource {
    async fn next_frames(&mut self) -> Option<Vec<u8>> {
        if std::mem::take(&mut self.opening) {
            // At once, not with the first event: the client has a resume point from the start.
            return Some(format!("id: {}\n\n", self.last.0).into_bytes());
        }
        loop {
            let mut out = Vec::new();
            if self.backlog {
                let store = self.counted.0.shared.store.clone();
                let after = self.last;
                let page = tokio::task::spawn_blocking(move || store.events_since(after, PAGE))
                    .await
                    .ok()
                    .and_then(|read| {
                        read.map_err(|error| tracing::warn!(%error, "reading events"))
                            .ok()
                    })
                    .unwrap_or_default();
                // A page that moves nothing forward ends the backlog as an empty one does: the
                // next read would be the same.
                let stuck = page.last().is_none_or(|event| event.event_seq <= self.last);
                if stuck {
                    self.backlog = false;
                    if let Some(event) = self.held.take() {
                        self.push(&mut out, &event);
                    }
                } else {
                    for event in &page {
                        self.push(&mut out, event);
                    }
                }
            } else {
                match self.live.recv().await {
                    Ok(event) if event.event_seq <= self.last => continue,
                    Ok(event) if event.event_seq.0 > self.last.0 + 1 => {
                        self.backlog = true;
                        self.held = Some(event);
                        continue;
                    }
                    Ok(event) => self.push(&mut out, &event),
                    // Missed events are in the store.
                    Err(RecvError::Lagged(_)) => {
                        self.backlog = true;
                        continue;
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

impl EventSource {
    /// Frame `event` unless it was accounted for already, announcing any hole before it.
    fn push(&mut self, out: &mut Vec<u8>, event: &Event) {
        if event.event_seq <= self.last {
            return;
        }
        if event.event_seq.0 > self.last.0 + 1 {
            let gap = Gap {
                from: EventSeq(self.last.0 + 1),
                to: EventSeq(event.event_seq.0 - 1),
            };
            sse::push_json_event(out, Some(gap.to.0), "gap", &gap);
        }
        self.last = event.event_seq;
        if self.agent.is_some_and(|agent| agent != event.agent) {
            return;
        }
        sse::push_json_event(out, Some(event.event_seq.0), event.kind.as_str(), event);
    }
}
