//! The PUB socket: log batches, lifecycle events and heartbeats.
//!
//! Capture and control never wait on subscribers: they hand messages to a bounded queue with
//! `try_send`. The publisher task drains the queue, merges consecutive batches of the same agent
//! (so a chatty agent costs few ZeroMQ messages) and sends. If the queue is full the message is
//! dropped and counted; subscribers see the `seq` (or `event_seq`) jump and refill from the store
//! over the control socket, as the protocol prescribes. Per-subscriber buffering is bounded by
//! the PUB socket's `SNDHWM`: libzmq drops for a subscriber whose queue is full.
//!
//! Every message goes to each PUB socket (the CURVE one on TCP and the trusted one on ipc), sent
//! with `DONTWAIT`, which a PUB socket never refuses, so this task never blocks a worker. The
//! sends also let libzmq take in new subscriptions; the heartbeat does so when all is quiet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::{topic, AgentId, DaemonId, Event, Heartbeat, Record, RecordBatch};
use tokio::sync::mpsc;

/// Messages queued for the PUB socket.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Log(AgentId, Vec<Record>),
    Event(Box<Event>),
}

/// The queue side of the publisher; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Publisher {
    queue: mpsc::Sender<Outgoing>,
    dropped: Arc<AtomicU64>,
}

/// Records merged into one published batch at most.
const MAX_BATCH_RECORDS: usize = 4096;
/// Record bytes merged into one published batch at most (a single batch from capture may be
/// larger only if one read produced it; capture reads at most 64 KiB at a time).
const MAX_BATCH_BYTES: usize = 1024 * 1024;

impl Publisher {
    /// A publisher whose queue holds `capacity` messages (each may carry many records).
    pub(crate) fn new(capacity: usize) -> (Publisher, mpsc::Receiver<Outgoing>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let publisher = Publisher {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (publisher, receiver)
    }

    /// Queue a batch of an agent's records; never blocks.
    pub(crate) fn log(&self, agent: AgentId, records: Vec<Record>) {
        if self.queue.try_send(Outgoing::Log(agent, records)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queue an event; never blocks.
    pub(crate) fn event(&self, event: Event) {
        if self
            .queue
            .try_send(Outgoing::Event(Box::new(event)))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether everything queued has been taken by the publisher task.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.capacity() == self.queue.max_capacity()
    }

    /// Messages dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Publish until the queue closes; a heartbeat goes out every second.
pub(crate) async fn run(
    sockets: Vec<zmq::Socket>,
    mut queue: mpsc::Receiver<Outgoing>,
    daemon: DaemonId,
    last_event: impl Fn() -> drover_proto::EventSeq,
) {
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut pending: Vec<Outgoing> = Vec::with_capacity(256);
    loop {
        tokio::select! {
            received = queue.recv_many(&mut pending, 256) => {
                if received == 0 {
                    return;
                }
                for (topic, body) in merge(pending.drain(..)) {
                    send(&sockets, &topic, &body);
                }
            }
            _ = heartbeat.tick() => {
                let beat = Heartbeat { daemon, ts: drover_proto::now_ns(), event_seq: last_event() };
                if let Ok(body) = drover_proto::encode(&beat) {
                    send(&sockets, topic::HEARTBEAT, &body);
                }
            }
        }
    }
}

fn send(sockets: &[zmq::Socket], topic: &str, body: &[u8]) {
    for socket in sockets {
        let frames: [&[u8]; 2] = [topic.as_bytes(), body];
        if let Err(error) = socket.send_multipart(frames, zmq::DONTWAIT) {
            tracing::warn!(%error, "publishing");
        }
    }
}

/// Encode queued messages, merging runs of the same agent's consecutive records.
fn merge(messages: impl Iterator<Item = Outgoing>) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // The batch being built and its record bytes.
    let mut current: Option<(RecordBatch, usize)> = None;
    let flush = |batch: RecordBatch, out: &mut Vec<(String, Vec<u8>)>| {
        let body = drover_proto::encode_batch(&batch);
        out.push((topic::log(batch.agent), body));
    };
    for message in messages {
        match message {
            Outgoing::Log(agent, records) => {
                let bytes: usize = records.iter().map(|r| r.data.len()).sum();
                match current.as_mut() {
                    Some((batch, batch_bytes))
                        if batch.agent == agent
                            && batch.records.len() + records.len() <= MAX_BATCH_RECORDS
                            && *batch_bytes + bytes <= MAX_BATCH_BYTES
                            && batch.records.last().map(|r| r.seq.next())
                                == records.first().map(|r| r.seq) =>
                    {
                        batch.records.extend(records);
                        *batch_bytes += bytes;
                    }
                    _ => {
                        if let Some((batch, _)) = current.take() {
                            flush(batch, &mut out);
                        }
                        current = Some((RecordBatch { agent, records }, bytes));
                    }
                }
            }
            Outgoing::Event(event) => {
                if let Some((batch, _)) = current.take() {
                    flush(batch, &mut out);
                }
                if let Ok(body) = drover_proto::encode(&event) {
                    out.push((topic::event(event.agent), body));
                }
            }
        }
    }
    if let Some((batch, _)) = current.take() {
        flush(batch, &mut out);
    }
    out
}
