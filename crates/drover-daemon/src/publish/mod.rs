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
//!
//! A subscription makes no requests, so a revoked key's connection would go on receiving: when
//! a reload of the allowed keys takes a key away ([`crate::auth::Auth::revocations`]), this task
//! unbinds the TCP socket's endpoint, which ends every connection accepted on it, and binds it
//! again at once. Subscribers with a key still allowed reconnect (libzmq does it on its own),
//! pass the handshake again, and refill the records they missed from the store by seq, as after
//! any gap; a revoked key is refused at its handshake.
//!
//! The sockets are XPUBs, so this task learns which topic prefixes someone subscribes to
//! ([`Subscriptions`]), and a log batch nobody subscribed to is not encoded at all (it was a
//! sixth of the daemon's CPU in a follow over HTTP, with no ZeroMQ subscriber). That never
//! costs a subscriber a record the lossless recipe would not recover: the subscriptions are read
//! right before the batches are decided, after any earlier heartbeat was sent. A subscription
//! libzmq takes in after that read is one made a moment later; a subscriber proves its
//! subscription live by its first heartbeat, which this task sends after every batch decided
//! without it, and every record is stored before it is queued here, so the store read the
//! recipe does on that heartbeat has them. Events and heartbeats always go out.
//!
//! A drop shows as a `seq` jump only at an agent's next batch, so each heartbeat also carries
//! every live agent's log end ([`LogEnds`]): the seq after the last record of it this task sent,
//! or dropped. A subscriber that stopped reading while an agent printed, and lost the last
//! batches, learns of them from the first heartbeat that reaches it once it reads again, even
//! when the agent is quiet by then. The heartbeat goes out after everything queued before it
//! ([`Outlet::beat`]): the latest event number is read and the batches refused by the full
//! queue are taken in first, then the messages queued ahead of them are sent, so every record
//! below a log end (unless dropped) and every event up to its `event_seq` precede it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_proto::{topic, AgentId, DaemonId, Event, EventSeq, Heartbeat, Record, RecordBatch};
use tokio::sync::mpsc;

mod log_ends;
mod subscriptions;

use log_ends::{LogEnds, Refused};
use subscriptions::Subscriptions;

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
    refused: Refused,
}

/// The publisher task's side of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    messages: mpsc::Receiver<Outgoing>,
    refused: Refused,
}

/// Records merged into one published batch at most.
const MAX_BATCH_RECORDS: usize = 4096;
/// Record bytes merged into one published batch at most (a single batch from capture may be
/// larger only if one read produced it; capture reads at most 64 KiB at a time).
const MAX_BATCH_BYTES: usize = 1024 * 1024;

impl Publisher {
    /// A publisher whose queue holds `capacity` messages (each may carry many records).
    pub(crate) fn new(capacity: usize) -> (Publisher, Queue) {
        let (queue, messages) = mpsc::channel(capacity.max(1));
        let refused = Refused::default();
        let publisher = Publisher {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            refused: refused.clone(),
        };
        (publisher, Queue { messages, refused })
    }

    /// Queue a batch of an agent's records; never blocks.
    pub(crate) fn log(&self, agent: AgentId, records: Vec<Record>) {
        if let Err(full) = self.queue.try_send(Outgoing::Log(agent, records)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Outgoing::Log(_, records) = full.into_inner() {
                if let Some(last) = records.last() {
                    self.refused.note(agent, last.seq.next());
                }
            }
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

/// A socket to publish on; `rebind` is its TCP endpoint, ended and bound again when a key is
/// revoked (`None` for the ipc socket, trusted by file permission).
pub(crate) struct PubSocket {
    pub(crate) socket: zmq::Socket,
    pub(crate) rebind: Option<String>,
}

/// Queued messages taken and sent in one round at most.
const ROUND: usize = 256;

/// Publish until the queue closes; a heartbeat goes out every second, with the log ends of the
/// agents `is_live` says still are.
pub(crate) async fn run(
    sockets: Vec<PubSocket>,
    mut queue: Queue,
    daemon: DaemonId,
    last_event: impl Fn() -> EventSeq,
    is_live: impl Fn(&AgentId) -> bool,
    mut revocations: tokio::sync::watch::Receiver<u64>,
) {
    // Endpoints that could not be bound again yet: retried with each heartbeat.
    let mut unbound: Vec<usize> = Vec::new();
    let mut watching = true;
    let (sockets, endpoints): (Vec<zmq::Socket>, Vec<Option<String>>) =
        sockets.into_iter().map(|s| (s.socket, s.rebind)).unzip();
    let mut outlet = Outlet::new(sockets);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            received = queue.messages.recv_many(&mut outlet.pending, ROUND) => {
                if received == 0 {
                    return;
                }
                outlet.send_round();
            }
            changed = revocations.changed(), if watching => {
                if changed.is_err() {
                    // The key table is gone (the daemon is stopping): nothing more to watch.
                    watching = false;
                    continue;
                }
                for (i, endpoint) in endpoints.iter().enumerate() {
                    let Some(endpoint) = endpoint else { continue };
                    if let Err(error) = outlet.sockets[i].unbind(endpoint) {
                        tracing::error!(%error, endpoint, "ending the PUB connections after a revocation");
                    }
                    if !unbound.contains(&i) {
                        unbound.push(i);
                    }
                }
                // libzmq closes the listener on its I/O thread: the port may not be free at
                // once. A few quick tries, then one a second with the heartbeat.
                for pause_ms in [0u64, 5, 10, 20, 40, 80] {
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    rebind(&outlet.sockets, &endpoints, &mut unbound, false);
                    if unbound.is_empty() {
                        break;
                    }
                }
                tracing::info!("a key was revoked: PUB connections ended; allowed subscribers reconnect");
            }
            _ = heartbeat.tick() => {
                if !unbound.is_empty() {
                    rebind(&outlet.sockets, &endpoints, &mut unbound, true);
                }
                outlet.beat(&mut queue, daemon, &last_event, &is_live);
            }
        }
    }
}

/// The sending side of the publisher task: its sockets, what their subscribers want, the
/// messages of the round being sent, and the log ends of what went out.
struct Outlet {
    sockets: Vec<zmq::Socket>,
    subscriptions: Vec<Subscriptions>,
    pending: Vec<Outgoing>,
    ends: LogEnds,
}

impl Outlet {
    fn new(sockets: Vec<zmq::Socket>) -> Outlet {
        Outlet {
            subscriptions: sockets.iter().map(|_| Subscriptions::default()).collect(),
            sockets,
            pending: Vec::with_capacity(ROUND),
            ends: LogEnds::default(),
        }
    }

    /// Send the messages of this round, decided against the subscriptions as of now.
    fn send_round(&mut self) {
        for (socket, subscribed) in self.sockets.iter().zip(self.subscriptions.iter_mut()) {
            subscribed.read(socket);
        }
        let subscriptions = &self.subscriptions;
        let wanted = |topic: &[u8]| subscriptions.iter().any(|s| s.matches(topic));
        self.ends.take_sent(&self.pending);
        for (topic, body) in merge(self.pending.drain(..), wanted) {
            send(&self.sockets, &topic, &body);
        }
    }

    /// Send a heartbeat, after every record below its log ends and every event up to its
    /// `event_seq`.
    fn beat(
        &mut self,
        queue: &mut Queue,
        daemon: DaemonId,
        last_event: impl Fn() -> EventSeq,
        is_live: impl Fn(&AgentId) -> bool,
    ) {
        // Events are queued as they are numbered (under `EventBus::last`), and batches the
        // full queue refused came after those it holds: so what is queued now, sent below in
        // rounds, holds every event up to this number and every record before those refused.
        let event_seq = last_event();
        let refused = queue.refused.take();
        let mut left = queue.messages.len();
        while left > 0 {
            let take = left.min(ROUND);
            for _ in 0..take {
                if let Ok(message) = queue.messages.try_recv() {
                    self.pending.push(message);
                }
            }
            left -= take;
            self.send_round();
        }
        self.ends.take_refused(refused);
        let beat = Heartbeat {
            daemon,
            ts: drover_proto::now_ns(),
            event_seq,
            log_ends: self.ends.for_heartbeat(is_live),
        };
        if let Ok(body) = drover_proto::encode(&beat) {
            send(&self.sockets, topic::HEARTBEAT, &body);
        }
    }
}

/// Bind each socket of `unbound` to its endpoint again; those that fail stay listed for the
/// next try (logged when `log`: the retries each second).
fn rebind(
    sockets: &[zmq::Socket],
    endpoints: &[Option<String>],
    unbound: &mut Vec<usize>,
    log: bool,
) {
    unbound.retain(|&i| {
        let Some(endpoint) = &endpoints[i] else {
            return false;
        };
        match sockets[i].bind(endpoint) {
            Ok(()) => false,
            Err(error) => {
                if log {
                    tracing::warn!(%error, endpoint, "binding the PUB endpoint again; retrying every second");
                }
                true
            }
        }
    });
}

fn send(sockets: &[zmq::Socket], topic: &str, body: &[u8]) {
    for socket in sockets {
        if let Err(error) = drover_zmq::send_frames(socket, &[topic.as_bytes(), body]) {
            tracing::warn!(%error, "publishing");
        }
    }
}

/// Encode queued messages, merging runs of the same agent's consecutive records; a log batch
/// whose topic `wanted` refuses is dropped unencoded.
fn merge(
    messages: impl Iterator<Item = Outgoing>,
    wanted: impl Fn(&[u8]) -> bool,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // The batch being built and its record bytes.
    let mut current: Option<(RecordBatch, usize)> = None;
    let flush = |batch: RecordBatch, out: &mut Vec<(String, Vec<u8>)>| {
        let topic = topic::log(batch.agent);
        if wanted(topic.as_bytes()) {
            let body = drover_proto::encode_batch(&batch);
            out.push((topic, body));
        }
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

#[cfg(test)]
pub(super) mod tests {
    use super::{Outlet, Publisher};
    use drover_proto::limits::DEFAULT_MAX_FRAME;
    use drover_proto::{AgentId, AgentState, DaemonId, Event, EventKind, EventSeq, Heartbeat};
    use drover_proto::{Record, RecordBatch, Seq, StreamKind};

    /// Records with these seqs.
    pub(crate) fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
        seqs.map(|seq| Record {
            seq: Seq(seq),
            ts: 0,
            stream: StreamKind::Stdout,
            data: b"x\n".to_vec(),
            partial: false,
        })
        .collect()
    }

    /// A heartbeat goes out after everything queued before the batches the full queue refused
    /// (which its log ends count) and every event up to its `event_seq`, even when more is
    /// queued than one round takes.
    #[test]
    fn a_heartbeat_comes_after_every_record_and_event_it_counts() {
        let context = zmq::Context::new();
        let xpub = context.socket(zmq::XPUB).unwrap();
        xpub.bind("inproc://log-ends").unwrap();
        let sub = context.socket(zmq::SUB).unwrap();
        sub.connect("inproc://log-ends").unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.set_rcvtimeo(30_000).unwrap();
        // The subscription waits on the XPUB, so the first round takes it in.
        assert_eq!(xpub.poll(zmq::POLLIN, 30_000).unwrap(), 1);

        let rounds = super::ROUND + 44;
        let (publisher, mut queue) = Publisher::new(rounds + 1);
        let (a, b) = (AgentId::new(), AgentId::new());
        // Two agents taking turns, so that no two batches merge: one message each.
        for i in 0..rounds as u64 {
            let agent = if i % 2 == 0 { a } else { b };
            let seq = i / 2 + 1;
            publisher.log(agent, records(seq..=seq));
        }
        publisher.event(Event {
            event_seq: EventSeq(1),
            ts: 0,
            agent: a,
            kind: EventKind::State,
            state: AgentState::Running,
            exit_code: None,
            signal: None,
            dropped: None,
            activity: None,
            run: 1,
        });
        publisher.log(b, records(1000..=1009));
        assert_eq!(publisher.dropped(), 1, "the queue was full");

        let mut outlet = Outlet::new(vec![xpub]);
        outlet.beat(&mut queue, DaemonId::new(), || EventSeq(1), |_| true);
        let mut seqs = std::collections::BTreeMap::<AgentId, Vec<u64>>::new();
        let mut events = Vec::new();
        let beat = loop {
            let frames = sub.recv_multipart(0).expect("a message within 30 s");
            let body = &frames[1];
            if frames[0] == b"hb" {
                break drover_proto::decode::<Heartbeat>(body, DEFAULT_MAX_FRAME).unwrap();
            } else if frames[0].starts_with(b"evt.") {
                events.push(drover_proto::decode::<Event>(body, DEFAULT_MAX_FRAME).unwrap());
            } else {
                let batch: RecordBatch = drover_proto::decode(body, DEFAULT_MAX_FRAME).unwrap();
                let seen = seqs.entry(batch.agent).or_default();
                seen.extend(batch.records.iter().map(|r| r.seq.0));
            }
        };
        let half = (rounds / 2) as u64;
        assert_eq!(seqs[&a], (1..=half).collect::<Vec<_>>());
        assert_eq!(seqs[&b], (1..=half).collect::<Vec<_>>());
        assert_eq!(events.len(), 1);
        assert_eq!(beat.event_seq, EventSeq(1));
        assert_eq!(
            beat.log_ends,
            [(a, Seq(half + 1)), (b, Seq(1010))].into(),
            "b's end counts its refused batch"
        );
    }
}
