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
//! when the agent is quiet by then. The heartbeat goes out after everything queued before it:
//! batches refused by the full queue are taken in first, then the messages queued ahead of
//! them are sent, so every record below a log end precedes the heartbeat (or was dropped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::limits::MAX_HEARTBEAT_LOG_ENDS;
use drover_proto::{topic, AgentId, DaemonId, Event, Heartbeat, Record, RecordBatch, Seq};
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
    refused: Refused,
}

/// The publisher task's side of the queue.
#[derive(Debug)]
pub(crate) struct Queue {
    messages: mpsc::Receiver<Outgoing>,
    refused: Refused,
}

/// For each agent, the seq after the last record of its batches the full queue refused: the
/// next heartbeat's log ends take them in. A leaf lock, taken only when the queue is full.
#[derive(Clone, Debug, Default)]
struct Refused(Arc<Mutex<HashMap<AgentId, Seq>>>);

impl Refused {
    fn note(&self, agent: AgentId, end: Seq) {
        advance(
            &mut self.0.lock().unwrap_or_else(|p| p.into_inner()),
            agent,
            end,
        );
    }

    fn take(&self) -> HashMap<AgentId, Seq> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Raise `agent`'s entry in `ends` to `end` (never lower it).
fn advance(ends: &mut HashMap<AgentId, Seq>, agent: AgentId, end: Seq) {
    let entry = ends.entry(agent).or_insert(end);
    *entry = (*entry).max(end);
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

/// What the heartbeats' `log_ends` say: for each agent, the seq after the last record sent or
/// dropped. Bounded by the live agents: those no longer live are forgotten at each heartbeat.
#[derive(Debug, Default)]
pub(crate) struct LogEnds {
    ends: HashMap<AgentId, Seq>,
    /// Heartbeats so far: with more agents than one heartbeat carries, where this one starts.
    round: usize,
}

impl LogEnds {
    /// Take in the queued messages about to be sent.
    fn saw(&mut self, messages: &[Outgoing]) {
        for message in messages {
            if let Outgoing::Log(agent, records) = message {
                if let Some(last) = records.last() {
                    advance(&mut self.ends, *agent, last.seq.next());
                }
            }
        }
    }

    /// Take in what the full queue refused.
    fn refused(&mut self, refused: HashMap<AgentId, Seq>) {
        for (agent, end) in refused {
            advance(&mut self.ends, agent, end);
        }
    }

    /// This heartbeat's log ends: agents no longer live (`is_live` says) are forgotten, and past
    /// [`MAX_HEARTBEAT_LOG_ENDS`] agents each heartbeat carries the next ones in turn.
    fn due(&mut self, is_live: impl Fn(&AgentId) -> bool) -> BTreeMap<AgentId, Seq> {
        self.ends.retain(|agent, _| is_live(agent));
        let count = self.ends.len();
        let round = self.round;
        self.round = self.round.wrapping_add(1);
        if count <= MAX_HEARTBEAT_LOG_ENDS {
            return self.ends.iter().map(|(a, s)| (*a, *s)).collect();
        }
        let mut all: Vec<(AgentId, Seq)> = self.ends.iter().map(|(a, s)| (*a, *s)).collect();
        all.sort_unstable();
        let start = round.wrapping_mul(MAX_HEARTBEAT_LOG_ENDS) % count;
        all.into_iter()
            .cycle()
            .skip(start)
            .take(MAX_HEARTBEAT_LOG_ENDS)
            .collect()
    }
}

/// Publish until the queue closes; a heartbeat goes out every second, with the log ends of the
/// agents `is_live` says still are.
pub(crate) async fn run(
    sockets: Vec<PubSocket>,
    mut queue: Queue,
    daemon: DaemonId,
    last_event: impl Fn() -> drover_proto::EventSeq,
    is_live: impl Fn(&AgentId) -> bool,
    mut revocations: tokio::sync::watch::Receiver<u64>,
) {
    // Endpoints that could not be bound again yet: retried with each heartbeat.
    let mut unbound: Vec<usize> = Vec::new();
    let mut watching = true;
    let (sockets, endpoints): (Vec<zmq::Socket>, Vec<Option<String>>) =
        sockets.into_iter().map(|s| (s.socket, s.rebind)).unzip();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let mut pending: Vec<Outgoing> = Vec::with_capacity(256);
    let mut subscriptions: Vec<Subscriptions> =
        sockets.iter().map(|_| Subscriptions::default()).collect();
    let mut ends = LogEnds::default();
    loop {
        tokio::select! {
            received = queue.messages.recv_many(&mut pending, 256) => {
                if received == 0 {
                    return;
                }
                send_round(&sockets, &mut subscriptions, &mut ends, &mut pending);
            }
            changed = revocations.changed(), if watching => {
                if changed.is_err() {
                    // The key table is gone (the daemon is stopping): nothing more to watch.
                    watching = false;
                    continue;
                }
                for (i, endpoint) in endpoints.iter().enumerate() {
                    let Some(endpoint) = endpoint else { continue };
                    if let Err(error) = sockets[i].unbind(endpoint) {
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
                    rebind(&sockets, &endpoints, &mut unbound, false);
                    if unbound.is_empty() {
                        break;
                    }
                }
                tracing::info!("a key was revoked: PUB connections ended; allowed subscribers reconnect");
            }
            _ = heartbeat.tick() => {
                if !unbound.is_empty() {
                    rebind(&sockets, &endpoints, &mut unbound, true);
                }
                // What the full queue refused, then everything queued before it, goes out
                // before the heartbeat whose log ends count it.
                let refused = queue.refused.take();
                for _ in 0..queue.messages.len() {
                    match queue.messages.try_recv() {
                        Ok(message) => pending.push(message),
                        Err(_) => break,
                    }
                }
                send_round(&sockets, &mut subscriptions, &mut ends, &mut pending);
                ends.refused(refused);
                let beat = Heartbeat {
                    daemon,
                    ts: drover_proto::now_ns(),
                    event_seq: last_event(),
                    log_ends: ends.due(&is_live),
                };
                if let Ok(body) = drover_proto::encode(&beat) {
                    send(&sockets, topic::HEARTBEAT, &body);
                }
            }
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

/// Send the queued messages `pending`, decided against the subscriptions as of now.
fn send_round(
    sockets: &[zmq::Socket],
    subscriptions: &mut [Subscriptions],
    ends: &mut LogEnds,
    pending: &mut Vec<Outgoing>,
) {
    for (socket, subscribed) in sockets.iter().zip(subscriptions.iter_mut()) {
        subscribed.read(socket);
    }
    let wanted = |topic: &[u8]| subscriptions.iter().any(|s| s.matches(topic));
    ends.saw(pending);
    for (topic, body) in merge(pending.drain(..), wanted) {
        send(sockets, &topic, &body);
    }
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

/// Distinct prefixes one XPUB socket keeps track of; past this many (a subscriber making up
/// topics) the socket is taken to want everything from then on.
const MOST_PREFIXES: usize = 4096;

/// The topic prefixes subscribed on one XPUB socket, from the subscription messages libzmq
/// passes up: `1` and the prefix when a prefix gets its first subscriber on the socket, `0` and
/// the prefix when its last one unsubscribes or goes away.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// The prefixes, and how many there are of each length (for lookups by a topic's prefixes).
    prefixes: HashSet<Vec<u8>>,
    lengths: HashMap<usize, usize>,
    /// Too many prefixes were seen: everything is wanted.
    saturated: bool,
}

impl Subscriptions {
    /// Take in every subscription message waiting on `socket` (never blocks).
    pub(crate) fn read(&mut self, socket: &zmq::Socket) {
        // All of them: a round decided without one libzmq has taken in could skip a batch its
        // subscriber should get (see the module documentation), so `EINTR` is retried.
        while let Ok(message) = drover_zmq::again(|| socket.recv_bytes(zmq::DONTWAIT)) {
            self.apply(&message);
        }
    }

    /// One subscription message.
    pub(crate) fn apply(&mut self, message: &[u8]) {
        let Some((&kind, prefix)) = message.split_first() else {
            return;
        };
        match kind {
            1 => {
                if self.prefixes.contains(prefix) {
                    return;
                }
                if self.prefixes.len() >= MOST_PREFIXES {
                    self.saturated = true;
                    return;
                }
                self.prefixes.insert(prefix.to_vec());
                *self.lengths.entry(prefix.len()).or_default() += 1;
            }
            0 if self.prefixes.remove(prefix) => {
                if let Some(count) = self.lengths.get_mut(&prefix.len()) {
                    *count -= 1;
                    if *count == 0 {
                        self.lengths.remove(&prefix.len());
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether a subscriber of this socket would receive `topic`.
    pub(crate) fn matches(&self, topic: &[u8]) -> bool {
        self.saturated
            || self
                .lengths
                .keys()
                .any(|&len| topic.get(..len).is_some_and(|p| self.prefixes.contains(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::{LogEnds, Outgoing, PubSocket, Publisher, Subscriptions, MAX_HEARTBEAT_LOG_ENDS};
    use drover_proto::limits::DEFAULT_MAX_FRAME;
    use drover_proto::StreamKind;
    use drover_proto::{AgentId, DaemonId, EventSeq, Heartbeat, Record, RecordBatch, Seq};

    fn records(seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
        seqs.map(|seq| Record {
            seq: Seq(seq),
            ts: 0,
            stream: StreamKind::Stdout,
            data: b"x\n".to_vec(),
            partial: false,
        })
        .collect()
    }

    #[test]
    fn log_ends_count_what_was_sent_and_refused_for_live_agents_only() {
        let (a, b, c) = (AgentId::new(), AgentId::new(), AgentId::new());
        let mut ends = LogEnds::default();
        ends.saw(&[
            Outgoing::Log(a, records(1..=5)),
            Outgoing::Log(b, records(1..=3)),
        ]);
        ends.refused([(c, Seq(8)), (a, Seq(4))].into());
        let due = ends.due(|_| true);
        assert_eq!(
            due,
            [(a, Seq(6)), (b, Seq(4)), (c, Seq(8))].into(),
            "never lowered"
        );
        ends.saw(&[Outgoing::Log(b, records(4..=4))]);
        let due = ends.due(|agent| *agent != c);
        assert_eq!(due, [(a, Seq(6)), (b, Seq(5))].into());
        assert_eq!(
            ends.due(|_| true).len(),
            2,
            "c is forgotten once it is not live"
        );
    }

    #[test]
    fn past_the_limit_each_heartbeat_carries_the_next_agents_in_turn() {
        let agents: Vec<AgentId> = (0..MAX_HEARTBEAT_LOG_ENDS + 100)
            .map(|_| AgentId::new())
            .collect();
        let mut ends = LogEnds::default();
        for agent in &agents {
            ends.saw(&[Outgoing::Log(*agent, records(1..=1))]);
        }
        let first = ends.due(|_| true);
        let second = ends.due(|_| true);
        assert_eq!(first.len(), MAX_HEARTBEAT_LOG_ENDS);
        assert_eq!(second.len(), MAX_HEARTBEAT_LOG_ENDS);
        let covered: std::collections::HashSet<&AgentId> =
            first.keys().chain(second.keys()).collect();
        assert_eq!(
            covered.len(),
            agents.len(),
            "two heartbeats cover every agent"
        );
    }

    /// Records queued before those the full queue refused go out before the heartbeat whose
    /// log ends count the refused ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_comes_after_every_record_below_its_log_ends() {
        let context = zmq::Context::new();
        let xpub = context.socket(zmq::XPUB).unwrap();
        xpub.bind("inproc://log-ends").unwrap();
        let sub = context.socket(zmq::SUB).unwrap();
        sub.connect("inproc://log-ends").unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.set_rcvtimeo(30_000).unwrap();
        // The subscription waits on the XPUB, so the publisher's first round takes it in.
        assert_eq!(xpub.poll(zmq::POLLIN, 30_000).unwrap(), 1);

        let (publisher, queue) = Publisher::new(2);
        let agent = AgentId::new();
        publisher.log(agent, records(1..=3));
        publisher.log(agent, records(4..=5));
        publisher.log(agent, records(6..=9));
        assert_eq!(publisher.dropped(), 1, "the queue holds two");
        let (_revoke, revocations) = tokio::sync::watch::channel(0);
        let task = tokio::spawn(super::run(
            vec![PubSocket {
                socket: xpub,
                rebind: None,
            }],
            queue,
            DaemonId::new(),
            || EventSeq(0),
            |_| true,
            revocations,
        ));
        let received = tokio::task::spawn_blocking(move || {
            let mut seqs = Vec::new();
            loop {
                let frames = sub.recv_multipart(0).expect("a message within 30 s");
                if frames[0] == b"hb" {
                    let beat: Heartbeat =
                        drover_proto::decode(&frames[1], DEFAULT_MAX_FRAME).unwrap();
                    if let Some(end) = beat.log_ends.get(&agent) {
                        return (seqs, *end);
                    }
                } else {
                    let batch: RecordBatch =
                        drover_proto::decode(&frames[1], DEFAULT_MAX_FRAME).unwrap();
                    seqs.extend(batch.records.iter().map(|r| r.seq.0));
                }
            }
        })
        .await
        .unwrap();
        task.abort();
        assert_eq!(received, ((1..=5).collect(), Seq(10)));
    }

    #[test]
    fn prefixes_come_and_go_and_too_many_mean_everything() {
        let mut subs = Subscriptions::default();
        let topic = b"log.01a23908-abd3-76ee-b2cb-f41daf8a5614";
        assert!(!subs.matches(topic));
        subs.apply(b"\x01hb");
        subs.apply(b"\x01evt.");
        assert!(!subs.matches(topic));
        subs.apply(b"\x01log.01a23908-abd3-76ee-b2cb-f41daf8a5614");
        assert!(subs.matches(topic));
        assert!(!subs.matches(b"log.01a23908-abd3-76ee-b2cb-f41daf8a5615"));
        subs.apply(b"\x01log.");
        subs.apply(b"\x00log.01a23908-abd3-76ee-b2cb-f41daf8a5614");
        assert!(subs.matches(topic), "log. still matches");
        subs.apply(b"\x00log.");
        assert!(!subs.matches(topic));
        subs.apply(b"\x01");
        assert!(subs.matches(topic), "the empty prefix matches everything");
        subs.apply(b"\x00");
        assert!(!subs.matches(topic));
        // Malformed messages change nothing.
        subs.apply(b"");
        subs.apply(b"\x02log.");
        assert!(!subs.matches(topic));
        for n in 0..super::MOST_PREFIXES {
            subs.apply(format!("\x01x{n}").as_bytes());
        }
        assert!(subs.matches(topic), "saturated: everything is wanted");
    }
}
