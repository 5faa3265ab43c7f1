//! The live side of a follow: what arrives on the SUB socket.

use drover_proto::{
    topic, AgentId, Event, EventKind, EventSeq, Heartbeat, Record, RecordBatch, Seq,
};

use super::{FollowEvent, Follower, Selection, MAX_PUB_MESSAGE};
use crate::ClientError;

impl Follower<'_> {
    pub(super) async fn on_message(
        &mut self,
        topic: &[u8],
        body: &[u8],
    ) -> Result<(), ClientError> {
        // A message that does not decode is treated like a lost one: re-read from the store.
        if topic.starts_with(topic::LOG_PREFIX.as_bytes()) {
            if let Some((agent, highest)) = drover_proto::peek_batch(body) {
                if self.drops(agent, highest) {
                    return Ok(());
                }
            }
            match drover_proto::decode_batch(body, MAX_PUB_MESSAGE) {
                Ok(batch) => self.on_batch(batch).await,
                Err(_) => self.reconcile().await,
            }
        } else if topic.starts_with(topic::EVENT_PREFIX.as_bytes()) {
            match drover_proto::decode::<Event>(body, MAX_PUB_MESSAGE) {
                Ok(event) => self.on_event(event).await,
                Err(_) => self.reconcile().await,
            }
        } else if topic == topic::HEARTBEAT.as_bytes() {
            match drover_proto::decode::<Heartbeat>(body, MAX_PUB_MESSAGE) {
                Ok(beat) => self.on_heartbeat(beat).await,
                Err(_) => Ok(()),
            }
        } else {
            Ok(())
        }
    }

    /// Whether [`Self::on_batch`] would drop every record of a batch of `agent`'s whose highest
    /// seq is `highest`, so it need not be decoded: the agent is caught up past it, or is behind
    /// (its next store read covers the batch), or has ended. After a refill, the batches queued
    /// meanwhile are all of this kind.
    fn drops(&self, agent: AgentId, highest: Seq) -> bool {
        self.tracks
            .get(&agent)
            .is_some_and(|track| !track.caught_up || track.done || highest < track.next)
    }

    pub(super) async fn on_batch(&mut self, batch: RecordBatch) -> Result<(), ClientError> {
        if !self.tracks.contains_key(&batch.agent) {
            // A new agent in an open selection: learn about it, then read it from the store.
            if !matches!(self.selection, Selection::Agents(_)) {
                self.discover(batch.agent).await?;
            }
            return Ok(());
        }
        let Some(track) = self.tracks.get_mut(&batch.agent) else {
            return Ok(());
        };
        if !track.caught_up || track.done {
            return Ok(());
        }
        let fresh: Vec<Record> = batch
            .records
            .into_iter()
            .filter(|r| r.seq >= track.next)
            .collect();
        let Some(first) = fresh.first() else {
            return Ok(());
        };
        if first.seq > track.next {
            // A gap: the store has the missing records; read from there.
            self.ready.push_back(FollowEvent::Gap {
                agent: batch.agent,
                from: track.next,
                to: Seq(first.seq.0 - 1),
            });
            track.caught_up = false;
            track.gap_reported = true;
            return Ok(());
        }
        if let Some(last) = fresh.last() {
            track.next = last.seq.next();
        }
        let stream = self.options.stream;
        let records: Vec<Record> = fresh
            .into_iter()
            .filter(|r| stream.is_none_or(|s| s == r.stream))
            .collect();
        if !records.is_empty() {
            self.ready.push_back(FollowEvent::Records {
                agent: batch.agent,
                records,
            });
        }
        Ok(())
    }

    /// Read the events after `last` and before `upto` from the store and report the lost log
    /// ranges among them. At most `MISSED_PAGES` pages: past that (a follower that missed that
    /// much), the reconcile that follows is what it gets.
    async fn missed_drops(&mut self, last: EventSeq, upto: EventSeq) -> Result<(), ClientError> {
        const PAGE: u32 = 1000;
        const MISSED_PAGES: usize = 16;
        let mut after = last;
        for _ in 0..MISSED_PAGES {
            let page = self.client.read_events(Some(after), Some(PAGE)).await?;
            let Some(newest) = page.events.last().map(|e| e.event_seq) else {
                return Ok(());
            };
            for missed in page.events.iter().filter(|e| e.event_seq < upto) {
                if let (EventKind::LogDropped, Some(range)) = (missed.kind, missed.dropped) {
                    self.report_dropped(missed.agent, range);
                }
            }
            if newest.0 + 1 >= upto.0 {
                return Ok(());
            }
            after = newest;
        }
        Ok(())
    }

    pub(super) async fn on_event(&mut self, event: Event) -> Result<(), ClientError> {
        let previous = self.last_event;
        let missed = previous.is_some_and(|last| event.event_seq.0 > last.0 + 1);
        self.last_event = Some(event.event_seq.max(self.last_event.unwrap_or_default()));
        if missed {
            // The PUB socket dropped events (a slow follower): the store has them. A lost
            // range of a log is announced only by its event, which a reconcile cannot see.
            if let Some(last) = previous {
                self.missed_drops(last, event.event_seq).await?;
            }
            if event.kind == EventKind::LogDropped {
                if let Some(range) = event.dropped {
                    self.report_dropped(event.agent, range);
                }
            }
            return self.reconcile().await;
        }
        match event.kind {
            EventKind::Spawned => {
                if !matches!(self.selection, Selection::Agents(_)) {
                    self.discover(event.agent).await?;
                }
            }
            EventKind::Exit | EventKind::Lost => {
                if self.tracks.contains_key(&event.agent) {
                    match self.client.get(&event.agent.to_string()).await {
                        Ok(info) => self.mark_ended(info),
                        // Removed right after it ended: its logs went with it.
                        Err(ClientError::Remote(e))
                            if e.code == drover_proto::ErrorCode::NotFound =>
                        {
                            if let Some(track) = self.tracks.get_mut(&event.agent) {
                                track.done = true;
                            }
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
            EventKind::Removed => {
                if matches!(self.selection, Selection::Agents(_)) {
                    // Named agents stay listed (done), so the follow knows when all have ended.
                    if let Some(track) = self.tracks.get_mut(&event.agent) {
                        track.done = true;
                    }
                } else {
                    // Open follows forget removed agents, so what they hold is bounded by the
                    // registry (which prunes ended agents), not by every agent ever seen.
                    self.tracks.remove(&event.agent);
                    self.ignored.remove(&event.agent);
                }
            }
            // Records a live follower may already have delivered were never stored.
            EventKind::LogDropped => {
                if let Some(range) = event.dropped {
                    self.report_dropped(event.agent, range);
                }
            }
            // What an agent does is not what a log follow tracks; a kind from a newer daemon
            // is ignored.
            EventKind::Activity | EventKind::Unknown => {}
            // A restart goes on with the same log (its seqs continue): only the state changes.
            EventKind::State | EventKind::Restarted => {
                if let Some(track) = self.tracks.get_mut(&event.agent) {
                    track.info.status = match self.client.get(&event.agent.to_string()).await {
                        Ok(info) => info.status,
                        Err(_) => return Ok(()),
                    };
                }
            }
        }
        Ok(())
    }

    pub(super) async fn on_heartbeat(&mut self, beat: Heartbeat) -> Result<(), ClientError> {
        let first = self.daemon.is_none();
        let restarted = self.daemon.is_some_and(|daemon| daemon != beat.daemon);
        let missed = self
            .last_event
            .is_some_and(|last| beat.event_seq.0 > last.0);
        self.daemon = Some(beat.daemon);
        if first || restarted || missed {
            let previous = self.last_event;
            self.last_event = Some(beat.event_seq);
            // As for a missed event (`on_event`): a lost range of a log is announced only by
            // its `log_dropped` event, which a reconcile cannot see.
            if let (true, Some(last)) = (missed, previous) {
                self.missed_drops(last, EventSeq(beat.event_seq.0 + 1))
                    .await?;
            }
            return self.reconcile().await;
        }
        // Every record below an agent's log end went out before this heartbeat: any not
        // delivered yet were dropped on the way (the last batches before the agent went quiet).
        // The store read reports the gap it fills. Records the store does not hold yet (a full
        // disk keeps them in the daemon's backlog) are read again at the next heartbeat that
        // still shows the gap: once a second per such agent, until the store takes them. They
        // were published already, so no batch will bring them while the agent stays quiet.
        for (agent, end) in beat.log_ends {
            let Some(track) = self.tracks.get_mut(&agent) else {
                continue;
            };
            if track.caught_up && !track.done && end > track.next {
                track.caught_up = false;
            }
        }
        Ok(())
    }
}
