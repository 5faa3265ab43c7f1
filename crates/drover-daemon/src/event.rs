//! Lifecycle events: numbered daemon-wide, persisted, then published.

use std::sync::Mutex;

use drover_proto::{AgentId, AgentInfo, Event, EventKind, EventSeq};
use drover_store::Store;
use tokio::sync::broadcast;

use crate::publish::Publisher;

/// Assigns `event_seq`, stores the event, publishes it on PUB and to in-process followers.
#[derive(Debug)]
pub(crate) struct EventBus {
    // Held while numbering, storing and queueing one event, so events are stored and published
    // in `event_seq` order. Every step under it is synchronous and short; never held across an
    // await.
    last: Mutex<EventSeq>,
    store: Store,
    publisher: Publisher,
    live: broadcast::Sender<Event>,
}

impl EventBus {
    pub(crate) fn new(store: Store, publisher: Publisher, last: EventSeq) -> EventBus {
        let (live, _) = broadcast::channel(4096);
        EventBus {
            last: Mutex::new(last),
            store,
            publisher,
            live,
        }
    }

    /// Emit one event about `agent` as it now is.
    pub(crate) fn emit(&self, kind: EventKind, agent: &AgentInfo) -> Event {
        self.emit_for(kind, agent.id, agent)
    }

    fn emit_for(&self, kind: EventKind, id: AgentId, agent: &AgentInfo) -> Event {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.0 += 1;
        let event = Event {
            event_seq: *last,
            ts: drover_proto::now_ns(),
            agent: id,
            kind,
            state: agent.state(),
            exit_code: agent.status.exit_code(),
            signal: agent.status.signal(),
        };
        if let Err(error) = self.store.append_event(&event) {
            tracing::error!(%error, "storing event");
        }
        self.publisher.event(event.clone());
        let _ = self.live.send(event.clone());
        event
    }

    /// The latest event number.
    pub(crate) fn last(&self) -> EventSeq {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live events from now on (for SSE followers).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
