//! Resumable following of lifecycle events.
//!
//! Events are numbered daemon-wide (`event_seq`), so the recipe is the one for logs with a single
//! counter: subscribe to `evt.` and `hb`, read stored events after the resume point with
//! `read_events`, then continue live, skipping numbers already delivered and re-reading from the
//! store on any jump (a live event beyond the next number, or a heartbeat announcing one).

use std::collections::VecDeque;
use std::time::Duration;

use drover_proto::{limits, topic, DaemonId, Event, EventSeq, Heartbeat};
use drover_zmq::Async;

use crate::{Client, ClientError};

/// How long without any message before re-reading the store (heartbeats come every second).
const SILENCE: Duration = Duration::from_secs(3);

/// A live, resumable follow of every agent's lifecycle events.
pub struct EventFollower<'c> {
    client: &'c Client,
    socket: Async,
    next: EventSeq,
    caught_up: bool,
    ready: VecDeque<Event>,
    daemon: Option<DaemonId>,
}

impl std::fmt::Debug for EventFollower<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventFollower")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Follow events numbered after `after` (all kept events when `None`), then live.
    pub async fn follow_events(
        &self,
        after: Option<EventSeq>,
    ) -> Result<EventFollower<'_>, ClientError> {
        let topics = [topic::EVENT_PREFIX.to_owned(), topic::HEARTBEAT.to_owned()];
        let socket = self.subscriber(&topics).await?;
        Ok(EventFollower {
            client: self,
            socket,
            next: EventSeq(after.map_or(1, |seq| seq.0 + 1)),
            caught_up: false,
            ready: VecDeque::new(),
            daemon: None,
        })
    }
}

impl EventFollower<'_> {
    /// The next event, in `event_seq` order, each once. Events removed by retention before they
    /// could be read are skipped.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if !self.caught_up {
                self.refill().await?;
                continue;
            }
            match tokio::time::timeout(SILENCE, self.socket.recv()).await {
                Ok(Ok(frames)) => {
                    if let [topic, body] = frames.as_slice() {
                        self.on_message(topic, body)?;
                    }
                }
                Ok(Err(error)) => return Err(ClientError::Disconnected(error.to_string())),
                Err(_) => self.caught_up = false,
            }
        }
    }

    async fn refill(&mut self) -> Result<(), ClientError> {
        let limit = limits::DEFAULT_READ_LIMIT;
        let read = self
            .client
            .read_events(Some(EventSeq(self.next.0.saturating_sub(1))), Some(limit))
            .await?;
        let complete = read.events.len() < limit as usize;
        for event in read.events {
            if event.event_seq >= self.next {
                self.next = EventSeq(event.event_seq.0 + 1);
                self.ready.push_back(event);
            }
        }
        if complete {
            self.caught_up = true;
        }
        Ok(())
    }

    fn on_message(&mut self, topic: &[u8], body: &[u8]) -> Result<(), ClientError> {
        let max = limits::DEFAULT_MAX_FRAME;
        if topic == topic::HEARTBEAT.as_bytes() {
            let beat: Heartbeat = drover_proto::decode(body, max)?;
            let restarted = self.daemon.is_some_and(|d| d != beat.daemon);
            let first = self.daemon.is_none();
            self.daemon = Some(beat.daemon);
            // The first heartbeat proves the subscription is live: re-read once to cover what
            // was published before it was. A heartbeat ahead of us means we missed events.
            if first || restarted || beat.event_seq >= self.next {
                self.caught_up = false;
            }
            return Ok(());
        }
        let event: Event = drover_proto::decode(body, max)?;
        if event.event_seq < self.next {
            return Ok(());
        }
        if event.event_seq > self.next {
            self.caught_up = false;
            return Ok(());
        }
        self.next = EventSeq(event.event_seq.0 + 1);
        self.ready.push_back(event);
        Ok(())
    }
}
