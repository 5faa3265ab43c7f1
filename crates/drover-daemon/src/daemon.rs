//! The daemon's shared state and its main loop.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_proto::{AgentId, DaemonId};
use drover_store::Store;
use drover_supervisor::backend::BackendTable;

use crate::agent::LiveAgent;
use crate::caller::Via;
use crate::event::EventBus;
use crate::publish::Publisher;
use crate::{
    auth, control, http, publish, restart, retention, Config, DaemonError, Listeners,
    ShutdownPolicy,
};

/// Daemon-wide counters, reported by `stats` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spawns: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) followers: AtomicU64,
    /// Bytes of records waiting in every agent's backlog (the store refused them).
    pub(crate) backlog_bytes: AtomicU64,
    /// Records lost for good: the agent ended while the store refused them.
    pub(crate) records_dropped: AtomicU64,
    /// Control replies dropped: the client was gone, or did not read for `control::STALL`.
    pub(crate) replies_dropped: AtomicU64,
}

/// Per-op request counters and latency sums, by op name.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    pub(crate) by_op: HashMap<&'static str, (u64, Duration)>,
    pub(crate) errors: HashMap<&'static str, u64>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) daemon_id: DaemonId,
    pub(crate) started: Instant,
    pub(crate) store: Store,
    pub(crate) backends: BackendTable,
    /// How agents are started (under holders, or in-process) and where holders live.
    pub(crate) holders: crate::holders::Holders,
    pub(crate) publisher: Publisher,
    pub(crate) events: EventBus,
    /// The thread that reads AI agents' output into their activity.
    pub(crate) readers: crate::reading::Readers,
    pub(crate) counters: Counters,
    /// The PUB endpoint clients can connect to over TCP (CURVE).
    pub(crate) pub_endpoint: String,
    /// The ipc PUB endpoint (trusted by file permission), when bound.
    pub(crate) pub_ipc: Option<String>,
    // Live agents by id. A std Mutex: held only to look up, insert or remove an entry, never
    // across an await and never while calling into the supervisor or the store.
    pub(crate) live: Mutex<HashMap<AgentId, Arc<LiveAgent>>>,
    // Serialises spawns so the live-agent limit and name uniqueness are checked and claimed
    // atomically. Held across the (synchronous) registry insert, never across an await.
    pub(crate) spawn_gate: Mutex<()>,
    /// Set (under the spawn gate) when shutdown begins: spawns are refused from then on, so the
    /// agents to stop are exactly the live ones.
    pub(crate) shutting_down: AtomicBool,
    /// Notified when an agent ends, so ended agents beyond the limit are pruned promptly.
    pub(crate) agent_ended: tokio::sync::Notify,
    pub(crate) requests: Mutex<RequestStats>,
    /// Agents by state as of a change count (`EventBus::version`): every state change bumps it,
    /// so the counts are current while it is unchanged, and `health` skips the registry query.
    pub(crate) state_counts: Mutex<Option<(u64, BTreeMap<String, u64>)>>,
}

impl Shared {
    /// The live agent with this id, if it is still live.
    pub(crate) fn live(&self, id: AgentId) -> Option<Arc<LiveAgent>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(&id).cloned()
    }

    /// Whether the agent with this id is still live.
    pub(crate) fn is_live(&self, id: AgentId) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.contains_key(&id)
    }

    /// Drop a live agent that reached a terminal state.
    pub(crate) fn forget(&self, id: AgentId) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&id);
    }

    /// Every live agent.
    pub(crate) fn live_agents(&self) -> Vec<Arc<LiveAgent>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values().cloned().collect()
    }

    /// How many agents are live.
    pub(crate) fn live_count(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Count one request and its latency.
    pub(crate) fn count_request(
        &self,
        op: &'static str,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        let mut stats = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = stats.by_op.entry(op).or_default();
        entry.0 += 1;
        entry.1 += elapsed;
        if let Some(code) = error {
            *stats.errors.entry(code).or_default() += 1;
        }
    }
}

/// Serve on bound listeners until `shutdown` resolves; then stop (or leave) the agents, flush
/// the store and return.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // Agents (and holders) start with the default for signals we were started with ignored.
    let _ignored = crate::signals::handle_ignored();
    let Listeners {
        context,
        zap,
        auth,
        control: control_sockets,
        publish: pub_sockets,
        http: http_listener,
        addresses,
        lock,
        store,
    } = listeners;
    // First, while this process holds few descriptors: the holder spawner inherits none of
    // them, and every later agent start goes through it.
    let holders = crate::holders::Holders::start(&config)?;
    let mut backends = BackendTable::builtin();
    backends.merge(config.backends.clone());
    let (publisher, pub_queue) = Publisher::new(config.pub_queue);
    let last_event = store.last_event_seq()?;
    let events = EventBus::new(store.clone(), publisher.clone(), last_event);
    let shared = Arc::new(Shared {
        config,
        daemon_id: DaemonId::new(),
        started: Instant::now(),
        store,
        backends,
        holders,
        publisher,
        events,
        counters: Counters::default(),
        pub_endpoint: addresses.publish.clone(),
        pub_ipc: addresses.pub_ipc.clone(),
        live: Mutex::new(HashMap::new()),
        spawn_gate: Mutex::new(()),
        shutting_down: AtomicBool::new(false),
        agent_ended: tokio::sync::Notify::new(),
        requests: Mutex::new(RequestStats::default()),
        state_counts: Mutex::new(None),
        readers: crate::reading::Readers::start().map_err(|e| DaemonError::Io {
            context: "starting the activity reader thread".into(),
            source: e,
        })?,
    });
    restart::repair_histories(&shared)?;
    restart::reattach(&shared).await?;
    // The live logs are open again: the rest are ended agents', whose last segments global
    // retention may take.
    shared.store.settle();

    let events_shared = Arc::clone(&shared);
    let live_shared = Arc::clone(&shared);
    let mut zap_task = tokio::spawn(auth::zap::run(zap, auth.clone()));
    let reload_task = tokio::spawn(auth::reload_on_hangup(auth.clone()));
    let watch_task = tokio::spawn(auth::watch_revocations(auth.clone()));
    let pub_tcp = addresses.publish.clone();
    let publisher_task = tokio::spawn(publish::run(
        pub_sockets
            .into_iter()
            .map(|(socket, via)| publish::PubSocket {
                socket,
                rebind: (via == Via::Tcp).then(|| pub_tcp.clone()),
            })
            .collect(),
        pub_queue,
        shared.daemon_id,
        move || events_shared.events.last(),
        move |id: &AgentId| live_shared.is_live(*id),
        auth.revocations(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let control_tasks = control_sockets.into_iter().map(|(socket, via)| {
        control::spawn(
            socket,
            via,
            Arc::clone(&shared),
            auth.clone(),
            stop_rx.clone(),
        )
    });
    let mut tasks: Vec<_> = control_tasks.collect();
    tasks.push(tokio::spawn(http::serve(
        http_listener,
        Arc::clone(&shared),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(retention::run(Arc::clone(&shared), stop_rx)));

    let zap_died = tokio::select! {
        () = shutdown => false,
        ended = &mut zap_task => {
            // Without its handler libzmq would accept any CURVE key: stop rather than serve so.
            tracing::error!(
                ?ended,
                "the ZAP handler stopped: shutting down, since CURVE handshakes would go unchecked"
            );
            true
        }
    };
    if zap_died {
        // At once, not after the agents' grace: the control sockets stop serving and the PUB
        // sockets close, so no handshake goes unchecked meanwhile.
        let _ = stop_tx.send(true);
        publisher_task.abort();
    }
    tracing::info!("shutting down");
    {
        let _gate = shared.spawn_gate.lock().unwrap_or_else(|p| p.into_inner());
        shared.shutting_down.store(true, Ordering::SeqCst);
    }
    let live = shared.live_agents().len();
    match shared.config.on_shutdown {
        ShutdownPolicy::Stop => {
            if live > 0 {
                // Said, so that agents found `killed` afterwards are not a mystery.
                tracing::warn!(
                    agents = live,
                    "stopping the running agents (on_shutdown = \"stop\"; \"leave\", or \
                     --leave-agents, keeps them running for the next daemon)"
                );
            }
            stop_all(&shared).await;
        }
        ShutdownPolicy::Leave => {
            if live > 0 {
                tracing::info!(
                    agents = live,
                    "leaving the running agents to their holders for the next daemon"
                );
            }
            detach_all(&shared).await;
        }
    }
    let _ = stop_tx.send(true);
    // Every step is bounded: requests in flight and open streams get a moment to finish.
    // Whatever has not finished by then is aborted, so nothing outlives `run`.
    for mut task in tasks {
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            task.abort();
        }
    }
    // Let the last events (the agents' exits) reach subscribers.
    let flushed = async {
        while !shared.publisher.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let _ = tokio::time::timeout(DRAIN, flushed).await;
    publisher_task.abort();
    // Gone (its PUB sockets closed) before the ZAP handler goes, below: libzmq lets every key
    // through a CURVE socket without one. (A control socket's thread may still serve then; a
    // request on a connection no ZAP handler vouched for has no User-Id, so no role.)
    let _ = tokio::time::timeout(DRAIN, publisher_task).await;
    if let Err(error) = shared.events.flush() {
        // What a restart then shows: agents that ended during the outage are `lost`.
        tracing::error!(
            %error,
            changes = shared.events.queued(),
            "the registry still refuses state changes kept in memory; they are lost"
        );
    }
    zap_task.abort();
    reload_task.abort();
    watch_task.abort();
    // Sockets hold the context; it ends (with linger 0, at once) when the last one is gone.
    drop(context);
    shared.store.sync()?;
    if shared.config.on_shutdown == ShutdownPolicy::Leave {
        // Agents left running must outlive `run`: when the last handle to an agent goes, its
        // actor ends and drops the child, which kills it. The process is about to exit, so the
        // handles are leaked on purpose rather than raced against that exit.
        std::mem::forget(shared.live_agents());
    }
    drop(lock);
    Ok(())
}

/// How long each shutdown step may take beyond the agents' grace.
const DRAIN: Duration = Duration::from_secs(5);

/// Let go of every held agent: its holder keeps it running and spools its output for the next
/// daemon, and nothing of this daemon writes about it any more.
async fn detach_all(shared: &Arc<Shared>) {
    for agent in shared.live_agents() {
        if let Some(handle) = agent.handle() {
            handle.detach().await;
        }
    }
}

/// Stop every live agent with the default grace and wait for all of them; bounded by the grace
/// plus a margin, since SIGKILL ends even an agent that ignores SIGTERM.
async fn stop_all(shared: &Arc<Shared>) {
    let grace = shared.config.default_grace;
    let agents = shared.live_agents();
    let mut waits = Vec::new();
    for agent in agents {
        waits.push(tokio::spawn(async move {
            // Waiting to restart: it ends as its last run did.
            if agent.cancel_restart() {
                let mut ended = agent.ended.clone();
                let _ = ended.wait_for(|ended| *ended).await;
                return;
            }
            // An agent registered just before shutdown gets its handle a moment later.
            let Some(handle) = agent.handle_when_started().await else {
                return;
            };
            let _ = handle.stop(grace).await;
            handle.wait().await;
        }));
    }
    let all = futures::future::join_all(waits);
    if tokio::time::timeout(grace + Duration::from_secs(5), all)
        .await
        .is_err()
    {
        tracing::warn!("some agents did not end within the grace period");
    }
}
