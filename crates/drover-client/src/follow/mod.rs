//! Lossless live following of agents' logs.
//!
//! The recipe (also in `docs/PROTOCOL.md`): subscribe on the PUB socket first, read what the
//! store holds through `read_logs`, then continue live, dropping any record whose `seq` was
//! already delivered. Any gap — a batch whose first `seq` is beyond the next expected one — is
//! refilled from the store before going on, so the reader sees every record exactly once, in
//! order, however late it starts and however slow it is. A gap at the end of a burst, which no
//! later batch reveals while the agent is quiet, shows at the next heartbeat: it carries each
//! live agent's log end (the seq after its last record published), and is refilled the same
//! way. Lifecycle events arrive on the same socket; since every record is stored before its
//! agent's terminal state is, an agent is finished only after a final store read, and then its
//! exit is reported.
//!
//! Events are numbered daemon-wide, and the heartbeat carries the latest number, so a missed
//! event shows as a jump; the follower then re-reads the state of every agent it follows. The
//! first heartbeat proves the subscription is live, and triggers one more store read to cover
//! anything published before it was.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use drover_proto::op::{AgentRef, ListArgs, ReadLogsArgs, ReadLogsResult};
use drover_proto::{
    limits, topic, AgentId, AgentInfo, DaemonId, EventSeq, Record, Seq, StreamKind,
};
use drover_zmq::Async;

use crate::{Client, ClientError};

mod live;
mod reconcile;

/// Which agents to follow.
#[derive(Clone, Debug)]
pub enum Selection {
    /// These agents (ids, unique prefixes or names).
    Agents(Vec<String>),
    /// Every agent carrying all of these labels, including ones spawned later.
    Labels(BTreeMap<String, String>),
    /// Every agent, including ones spawned later.
    All,
}

/// Where to start and when to end.
#[derive(Clone, Debug, Default)]
pub struct FollowOptions {
    /// Start at this seq (inclusive).
    pub since_seq: Option<Seq>,
    /// Start with the last N records (`0`: only what is printed from now on).
    pub tail: Option<u32>,
    /// Start at the first record captured at or after this time (unix ns), when neither
    /// `since_seq` nor `tail` is given.
    pub since: Option<i64>,
    /// Only records of this stream.
    pub stream: Option<StreamKind>,
    /// Where to start particular agents, beating the options above: the
    /// [`Follower::resume_points`] of an earlier follower, so a new one (after a daemon
    /// restart) goes on without a gap or a duplicate.
    pub resume: BTreeMap<AgentId, Seq>,
    /// End once every followed agent has ended (only for [`Selection::Agents`]).
    pub until_exit: bool,
}

/// What a follower yields.
#[derive(Clone, Debug, PartialEq)]
pub enum FollowEvent {
    /// Consecutive records of one agent, each delivered once, in order.
    Records {
        /// Whose.
        agent: AgentId,
        /// The records.
        records: Vec<Record>,
    },
    /// Retention removed records the follower asked for; it continues at `first_available`.
    Truncated {
        /// Whose.
        agent: AgentId,
        /// The first seq asked for.
        requested: Seq,
        /// The first seq still kept.
        first_available: Seq,
    },
    /// Records `from..=to` come from the store rather than live, next: they were lost in
    /// transit (the reader or the network was too slow, or the subscription was not yet live
    /// when they were published), or a re-check read them before they arrived (after the first
    /// heartbeat, missed events, a silence or a daemon restart; the live copies are then
    /// dropped as duplicates). Nothing is missing either way.
    Gap {
        /// Whose.
        agent: AgentId,
        /// First missed seq.
        from: Seq,
        /// Last missed seq.
        to: Seq,
    },
    /// Records `from..=to` could not be stored (the disk was full when the agent ended) and are
    /// lost for good; the follow continues after them. A follower that received some of them
    /// live learns here that they were never kept.
    Dropped {
        /// Whose.
        agent: AgentId,
        /// First record lost.
        from: Seq,
        /// Last record lost.
        to: Seq,
    },
    /// The agent ended; every record it printed was delivered before this.
    Exit(Box<AgentInfo>),
}

/// How long without any message (heartbeats come every second) before re-checking over the
/// control socket.
const SILENCE: Duration = Duration::from_secs(3);

/// Largest PUB message accepted; the daemon caps its batches far below this.
const MAX_PUB_MESSAGE: usize = 64 * 1024 * 1024;

/// PUB messages the SUB socket keeps while the caller is busy elsewhere (`RCVHWM`). A log batch
/// carries at most 1 MiB of record data (about 1.2 MiB encoded; a fast agent's are about
/// 250 KiB), so this bounds what a follower whose output is blocked (`drover logs -f | less`)
/// holds at about 150 MiB, 30 MiB typically; libzmq's default of 1000 let it grow past a
/// gigabyte. Once it is full the socket stops reading, the daemon's queue for this subscriber
/// (`pub_subscriber_queue`) fills in turn and the daemon drops for it, and the follower refills
/// from the store by seq, as after any gap. Not smaller: a queue that cannot hold what arrives
/// during one refill makes a follower that fell behind a fast agent refill again and again (64
/// messages: 8 runs of 11 at about half the rate in the stream bench, one with 46 refills
/// against 1 at 128; BENCHMARKS.md, Streaming).
const LIVE_QUEUE: i32 = 128;

#[derive(Debug)]
struct Track {
    info: AgentInfo,
    next: Seq,
    /// Where the track started.
    start: Seq,
    /// The seq after the last record handed to the caller.
    delivered: Option<Seq>,
    /// True while live batches can be taken as they come; false means read the store first.
    caught_up: bool,
    /// Set when the agent is known to have ended; reported after the final store read.
    ended: Option<AgentInfo>,
    done: bool,
    /// True once the track first caught up: records read from the store after that were
    /// missed live, and are reported as a gap.
    live: bool,
    /// A gap was already reported for the coming refill.
    gap_reported: bool,
    /// The dropped range last reported (from the log or from its `log_dropped` event).
    dropped: Option<drover_proto::SeqRange>,
}

impl Track {
    /// Whether `range` was reported already. An agent loses records only at the end of its
    /// run, and that ends its log, so it has one lost range: the `log_dropped` event names all
    /// of it, a store read names it from where the reader is (a follower that delivered part
    /// of it live, before the store refused it). Both end at the same seq.
    fn reported(&self, range: drover_proto::SeqRange) -> bool {
        self.dropped.is_some_and(|reported| reported.to >= range.to)
    }
}

/// A store read in flight, as a future that owns what it needs.
type Page<'c> = Pin<Box<dyn Future<Output = Result<ReadLogsResult, ClientError>> + Send + 'c>>;

/// A store read already sent: the next page of a track that is catching up. (The mutex only
/// makes the follower `Sync`; it is reached through `&mut self`, never locked.)
type Prefetch<'c> = (AgentId, Seq, std::sync::Mutex<Page<'c>>);

/// A live follow of one or more agents. Create it with [`Client::follow`].
pub struct Follower<'c> {
    client: &'c Client,
    /// The read of the next page of a long catch-up, sent while the caller handles this page,
    /// so the daemon reads and encodes it meanwhile (one page ahead, so bounded).
    prefetch: Option<Prefetch<'c>>,
    socket: Async,
    selection: Selection,
    options: FollowOptions,
    tracks: HashMap<AgentId, Track>,
    // Agents seen on an open selection that do not match it, so they are looked up only once.
    // Bounded by the number of agents the daemon holds.
    ignored: HashSet<AgentId>,
    ready: VecDeque<FollowEvent>,
    daemon: Option<DaemonId>,
    last_event: Option<EventSeq>,
}

impl std::fmt::Debug for Follower<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("selection", &self.selection)
            .field("tracks", &self.tracks.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Follow the selected agents' logs from the chosen start, live.
    pub async fn follow(
        &self,
        selection: Selection,
        options: FollowOptions,
    ) -> Result<Follower<'_>, ClientError> {
        // Resolve the agents first, then subscribe before reading the store, so nothing
        // published from now on is missed.
        let (agents, mut topics) = match &selection {
            Selection::Agents(refs) => {
                let mut agents = Vec::with_capacity(refs.len());
                for reference in refs {
                    agents.push(self.get(reference).await?);
                }
                let topics: Vec<String> = agents.iter().map(|a| topic::log(a.id)).collect();
                (agents, topics)
            }
            Selection::Labels(_) | Selection::All => {
                (Vec::new(), vec![topic::LOG_PREFIX.to_owned()])
            }
        };
        topics.push(topic::EVENT_PREFIX.to_owned());
        topics.push(topic::HEARTBEAT.to_owned());
        let socket = self.subscriber(&topics).await?;
        let mut follower = Follower {
            client: self,
            prefetch: None,
            socket,
            selection,
            options,
            tracks: HashMap::new(),
            ignored: HashSet::new(),
            ready: VecDeque::new(),
            daemon: None,
            last_event: None,
        };
        let agents = match &follower.selection {
            Selection::Agents(_) => agents,
            Selection::Labels(labels) => follower.list(labels.clone()).await?,
            Selection::All => follower.list(BTreeMap::new()).await?,
        };
        for agent in agents {
            follower.add(agent, true).await?;
        }
        Ok(follower)
    }
}

impl Client {
    /// A SUB socket connected to the daemon's PUB endpoint (on the caller's transport, or the
    /// override in the options) and subscribed to `topics`, with the control connection's CURVE
    /// keys. Returns once the handshake succeeded.
    pub(crate) async fn subscriber(&self, topics: &[String]) -> Result<Async, ClientError> {
        let endpoint = match &self.options().pub_endpoint {
            Some(endpoint) => endpoint.clone(),
            None => self.stream_info(None).await?.pub_endpoint,
        };
        let curve = self.options().curve.as_ref();
        let socket = crate::keys::socket(zmq::SUB, &endpoint, curve, MAX_PUB_MESSAGE)?;
        let fail = |e: zmq::Error| ClientError::Connect {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        };
        socket.1.set_rcvhwm(LIVE_QUEUE).map_err(fail)?;
        for topic in topics {
            socket.1.set_subscribe(topic.as_bytes()).map_err(fail)?;
        }
        let timeout = self.options().connect_timeout;
        crate::connection::connect(socket, &endpoint, timeout, curve.is_some()).await
    }
}

impl Follower<'_> {
    /// The agent as the follower last saw it (for names and prefixes).
    pub fn agent(&self, id: AgentId) -> Option<&AgentInfo> {
        self.tracks.get(&id).map(|track| &track.info)
    }

    /// For each agent followed, the seq of the first record not yet handed to the caller: what
    /// [`FollowOptions::resume`] takes to go on exactly from here.
    pub fn resume_points(&self) -> BTreeMap<AgentId, Seq> {
        self.tracks
            .iter()
            .map(|(id, track)| (*id, track.delivered.unwrap_or(track.start)))
            .collect()
    }

    /// The next event; `None` once every followed agent ended (with `until_exit`).
    pub async fn next(&mut self) -> Result<Option<FollowEvent>, ClientError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                if let FollowEvent::Records { agent, records } = &event {
                    if let (Some(track), Some(last)) = (self.tracks.get_mut(agent), records.last())
                    {
                        track.delivered = Some(last.seq.next());
                    }
                }
                return Ok(Some(event));
            }
            if let Some(id) = self.behind() {
                self.refill(id).await?;
                continue;
            }
            if self.options.until_exit
                && matches!(self.selection, Selection::Agents(_))
                && self.tracks.values().all(|track| track.done)
            {
                return Ok(None);
            }
            match tokio::time::timeout(SILENCE, self.socket.recv()).await {
                Ok(Ok(frames)) => {
                    if let [topic, body] = frames.as_slice() {
                        self.on_message(topic, body).await?;
                    }
                }
                Ok(Err(error)) => return Err(ClientError::Disconnected(error.to_string())),
                // Silence: the daemon may be gone or restarted; ask over the control socket.
                Err(_) => self.reconcile().await?,
            }
        }
    }

    fn behind(&self) -> Option<AgentId> {
        self.tracks
            .iter()
            .find(|(_, track)| !track.done && !track.caught_up)
            .map(|(id, _)| *id)
    }

    async fn list(&self, labels: BTreeMap<String, String>) -> Result<Vec<AgentInfo>, ClientError> {
        self.client
            .list_all(ListArgs {
                labels,
                ..ListArgs::default()
            })
            .await
    }

    /// Start following an agent; `initial` applies the start options (new agents start at 1).
    async fn add(&mut self, agent: AgentInfo, initial: bool) -> Result<(), ClientError> {
        if self.tracks.contains_key(&agent.id) {
            return Ok(());
        }
        let resume = self.options.resume.get(&agent.id).copied();
        let next = match (
            initial.then_some(resume),
            self.options.since_seq,
            self.options.tail,
        ) {
            (Some(Some(seq)), _, _) => seq,
            (Some(None), Some(seq), _) => seq,
            (Some(None), None, Some(tail)) => {
                let mut args = ReadLogsArgs::new(AgentRef::new(agent.id.to_string()));
                args.tail = Some(tail.max(1));
                let read = self.client.read_logs(args).await?;
                if tail == 0 {
                    read.next_seq
                } else {
                    read.records.first().map(|r| r.seq).unwrap_or(read.next_seq)
                }
            }
            (Some(None), None, None) if self.options.since.is_some() => {
                let mut args = ReadLogsArgs::new(AgentRef::new(agent.id.to_string()));
                args.since = self.options.since;
                args.limit = Some(1);
                let read = self.client.read_logs(args).await?;
                read.records.first().map(|r| r.seq).unwrap_or(read.next_seq)
            }
            _ => Seq::FIRST,
        };
        let ended = agent.state().is_terminal().then(|| agent.clone());
        self.tracks.insert(
            agent.id,
            Track {
                info: agent,
                next,
                start: next,
                delivered: None,
                caught_up: false,
                ended,
                done: false,
                live: false,
                gap_reported: false,
                dropped: None,
            },
        );
        Ok(())
    }

    /// One store read for a track that is behind.
    async fn refill(&mut self, id: AgentId) -> Result<(), ClientError> {
        let Some(track) = self.tracks.get_mut(&id) else {
            return Ok(());
        };
        let pending = match self.prefetch.take() {
            Some((agent, since, read)) if agent == id && since == track.next => read
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            _ => page(self.client, id, track.next),
        };
        let read = match pending.await {
            Ok(read) => read,
            // Removed while we followed it: nothing more will come.
            Err(ClientError::Remote(e)) if e.code == drover_proto::ErrorCode::NotFound => {
                track.done = true;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if read.truncated {
            self.ready.push_back(FollowEvent::Truncated {
                agent: id,
                requested: track.next,
                first_available: read.first_seq,
            });
        }
        let complete = read.next_seq >= read.end_seq;
        if let (Some(first), Some(last)) = (read.records.first(), read.records.last()) {
            if track.live && !track.gap_reported {
                self.ready.push_back(FollowEvent::Gap {
                    agent: id,
                    from: first.seq,
                    to: last.seq,
                });
            }
        }
        track.gap_reported = false;
        track.next = read.next_seq.max(track.next);
        let stream = self.options.stream;
        let records: Vec<Record> = read
            .records
            .into_iter()
            .filter(|r| stream.is_none_or(|s| s == r.stream))
            .collect();
        if !records.is_empty() {
            self.ready
                .push_back(FollowEvent::Records { agent: id, records });
        }
        if let Some(range) = read.dropped.filter(|range| !track.reported(*range)) {
            track.dropped = Some(range);
            self.ready.push_back(FollowEvent::Dropped {
                agent: id,
                from: range.from,
                to: range.to,
            });
        }
        if !complete && !track.done {
            // Send the read of the next page now; it is awaited on the next refill.
            let mut next = page(self.client, id, track.next);
            if let Some(read) = poll_once(next.as_mut()).await {
                next = Box::pin(std::future::ready(read));
            }
            self.prefetch = Some((id, track.next, std::sync::Mutex::new(next)));
        }
        if complete {
            track.caught_up = true;
            track.live = true;
            if let Some(info) = track.ended.take() {
                track.done = true;
                track.info = info.clone();
                self.ready.push_back(FollowEvent::Exit(Box::new(info)));
            }
        }
        Ok(())
    }
}

/// The read of `agent`'s records from `since`, as a future that owns what it needs.
fn page(client: &Client, agent: AgentId, since: Seq) -> Page<'_> {
    let mut args = ReadLogsArgs::new(AgentRef::new(agent.to_string()));
    args.since_seq = Some(since);
    args.limit = Some(limits::MAX_READ_LIMIT);
    Box::pin(client.read_logs(args))
}

/// Poll `future` once (which sends a request), returning its output if it is already done.
async fn poll_once<F: Future + ?Sized>(mut future: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(value) => std::task::Poll::Ready(Some(value)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

impl Follower<'_> {
    /// Report a dropped range once, whichever of the log and the event names it first (they
    /// may start at different seqs: see [`Track::reported`]).
    pub(super) fn report_dropped(&mut self, agent: AgentId, range: drover_proto::SeqRange) {
        let Some(track) = self.tracks.get_mut(&agent) else {
            return;
        };
        if track.reported(range) {
            return;
        }
        track.dropped = Some(range);
        self.ready.push_back(FollowEvent::Dropped {
            agent,
            from: range.from,
            to: range.to,
        });
    }
}
