//! The control-plane client: typed calls for every op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::op::{
    AgentArgs, AgentRef, AgentResult, BatchArgs, BatchResult, EmptyResult, HealthResult, ListArgs,
    ListResult, NoArgs, ReadEventsArgs, ReadEventsResult, ReadLogsArgs, ReadLogsResult, SignalArgs,
    SignalSpec, SpawnArgs, StatsResult, StopArgs, StreamInfoArgs, StreamInfoResult, WaitArgs,
    WriteStdinArgs, WriteStdinResult,
};
use drover_proto::{limits, AgentInfo, AgentSpec, DaemonId, EventSeq, Request};
use serde::de::DeserializeOwned;

use crate::connection::Connection;
use crate::{ClientError, CurveClient};

/// How a client connects and how long it waits.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long to wait for the daemon to accept the connection.
    pub connect_timeout: Duration,
    /// Default deadline of each request (a `wait` adds its own timeout on top).
    pub request_timeout: Duration,
    /// Largest reply accepted.
    pub max_frame: usize,
    /// CURVE keys, required for a `tcp://` endpoint; ipc endpoints need none.
    pub curve: Option<CurveClient>,
    /// The PUB endpoint to follow on, instead of the one `stream_info` names (e.g. when the
    /// daemon is reached through a tunnel or a NAT).
    pub pub_endpoint: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            max_frame: limits::DEFAULT_MAX_FRAME,
            curve: None,
            pub_endpoint: None,
        }
    }
}

/// A decoded reply: its id, and the result or the daemon's error.
type Decoded<R> = (rmpv::Value, Result<R, drover_proto::ErrorBody>);

/// A connection to one daemon's control socket. Cheap to share: calls may run concurrently.
#[derive(Debug)]
pub struct Client {
    endpoint: String,
    options: ClientOptions,
    // The current connection. A std Mutex: it is only held to clone or swap the Arc, never
    // across an await.
    connection: Mutex<Arc<Connection>>,
    next_id: AtomicU64,
}

impl Client {
    /// Connect to a control endpoint such as `tcp://127.0.0.1:7710`.
    pub async fn connect(endpoint: &str) -> Result<Client, ClientError> {
        Self::connect_with(endpoint, ClientOptions::default()).await
    }

    /// Connect with explicit options.
    pub async fn connect_with(
        endpoint: &str,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let connection = Connection::open(
            endpoint,
            options.connect_timeout,
            options.max_frame,
            options.curve.as_ref(),
        )
        .await?;
        Ok(Client {
            endpoint: endpoint.to_owned(),
            options,
            connection: Mutex::new(Arc::new(connection)),
            next_id: AtomicU64::new(1),
        })
    }

    /// The options it was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Send any request and decode its result.
    pub async fn call<R: DeserializeOwned>(&self, request: Request) -> Result<R, ClientError> {
        let deadline = self.options.request_timeout + extra_wait(&request);
        self.call_within(request, deadline, drover_proto::decode_reply::<R>)
            .await
    }

    async fn call_within<R>(
        &self,
        request: Request,
        deadline: Duration,
        decode: fn(&[u8], usize) -> Result<Decoded<R>, drover_proto::ProtoError>,
    ) -> Result<R, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = drover_proto::encode_request(&rmpv::Value::from(id), &request)?;
        let connection = self.current();
        // Past the daemon's per-connection bound the request waits here, not for a refusal; the
        // deadline runs from its send.
        let _slot = connection.slot().await;
        let reply = match tokio::time::timeout(deadline, connection.request(id, body)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => {
                // The socket lost its peer (the daemon went away): the next call gets a fresh
                // socket rather than this dead one.
                self.replace(&connection).await;
                return Err(error);
            }
            Err(_) => {
                self.replace(&connection).await;
                return Err(ClientError::Timeout {
                    op: request.op().as_str(),
                    after: deadline,
                });
            }
        };
        let (_, result) = decode(&reply, self.options.max_frame)?;
        result.map_err(ClientError::Remote)
    }

    fn current(&self) -> Arc<Connection> {
        let guard = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&guard)
    }

    /// Replace `stale` by a fresh socket, unless another caller already did. Requests still in
    /// flight on the stale connection keep it alive until they finish; ids are never reused, so
    /// no late reply can reach a later request.
    async fn replace(&self, stale: &Arc<Connection>) {
        let Ok(fresh) = Connection::open(
            &self.endpoint,
            self.options.connect_timeout,
            self.options.max_frame,
            self.options.curve.as_ref(),
        )
        .await
        else {
            return;
        };
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if Arc::ptr_eq(&guard, stale) {
            *guard = Arc::new(fresh);
        }
    }

    /// `health`.
    pub async fn health(&self) -> Result<HealthResult, ClientError> {
        self.call(Request::Health(NoArgs {})).await
    }

    /// `health` given `limit` to answer. Past it the connection is taken for dead and the next
    /// call opens a fresh one: a connection whose daemon went away is never answered again,
    /// whoever answers at its endpoint now.
    pub async fn health_within(&self, limit: Duration) -> Result<HealthResult, ClientError> {
        self.call_within(
            Request::Health(NoArgs {}),
            limit,
            drover_proto::decode_reply::<HealthResult>,
        )
        .await
    }

    /// `stats`.
    pub async fn stats(&self) -> Result<StatsResult, ClientError> {
        self.call(Request::Stats(NoArgs {})).await
    }

    /// `spawn`.
    pub async fn spawn(&self, spec: AgentSpec) -> Result<AgentInfo, ClientError> {
        let result: AgentResult = self.call(Request::Spawn(SpawnArgs { spec })).await?;
        Ok(result.agent)
    }

    /// `list`: one page of agents (see [`Client::list_page`] for its cursor, and
    /// [`Client::list_all`] for every page).
    pub async fn list(&self, args: ListArgs) -> Result<Vec<AgentInfo>, ClientError> {
        Ok(self.list_page(args).await?.agents)
    }

    /// `list`: one page of agents and the cursor of the next.
    pub async fn list_page(&self, args: ListArgs) -> Result<ListResult, ClientError> {
        self.call(Request::List(args)).await
    }

    /// Every agent matching `args`, paging through `list` from `args.cursor` (the start when
    /// nil) until the daemon names no next page; `args.limit` caps the total. Agents spawned
    /// while paging appear at the end (list order is creation order); agents removed meanwhile
    /// may be missing, and none is returned twice.
    pub async fn list_all(&self, mut args: ListArgs) -> Result<Vec<AgentInfo>, ClientError> {
        let total = args.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut agents = Vec::new();
        loop {
            if let Some(total) = total {
                let left = total.saturating_sub(agents.len());
                if left == 0 {
                    return Ok(agents);
                }
                args.limit = Some(u32::try_from(left).unwrap_or(u32::MAX));
            }
            let page = self.list_page(args.clone()).await?;
            agents.extend(page.agents);
            match page.next_cursor {
                Some(cursor) => args.cursor = Some(cursor),
                None => return Ok(agents),
            }
        }
    }

    /// `get`.
    pub async fn get(&self, agent: &str) -> Result<AgentInfo, ClientError> {
        self.agent_op(Request::Get(agent_args(agent))).await
    }

    /// `pause`.
    pub async fn pause(&self, agent: &str) -> Result<AgentInfo, ClientError> {
        self.agent_op(Request::Pause(agent_args(agent))).await
    }

    /// `resume`.
    pub async fn resume(&self, agent: &str) -> Result<AgentInfo, ClientError> {
        self.agent_op(Request::Resume(agent_args(agent))).await
    }

    /// `kill`.
    pub async fn kill(&self, agent: &str) -> Result<AgentInfo, ClientError> {
        self.agent_op(Request::Kill(agent_args(agent))).await
    }

    /// `stop`, with the daemon's default grace when `grace` is `None`.
    pub async fn stop(
        &self,
        agent: &str,
        grace: Option<Duration>,
    ) -> Result<AgentInfo, ClientError> {
        let grace_ms = grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
        self.agent_op(Request::Stop(StopArgs {
            agent: AgentRef::new(agent),
            grace_ms,
        }))
        .await
    }

    /// `signal`.
    pub async fn signal(&self, agent: &str, signal: SignalSpec) -> Result<AgentInfo, ClientError> {
        self.agent_op(Request::Signal(SignalArgs {
            agent: AgentRef::new(agent),
            signal,
        }))
        .await
    }

    /// `wait`: until the agent is terminal, or `timeout` passes (error code `timeout`).
    /// Without a timeout, a loop of rounds no longer than the request timeout (at most 30 s).
    pub async fn wait(
        &self,
        agent: &str,
        timeout: Option<Duration>,
    ) -> Result<AgentInfo, ClientError> {
        match timeout {
            Some(timeout) => self.wait_once(agent, timeout).await,
            None => {
                let round =
                    WAIT_ROUND.min(self.options.request_timeout.max(Duration::from_secs(1)));
                self.wait_in_rounds(agent, None, round).await
            }
        }
    }

    /// `wait` as a loop of bounded rounds of `round`, until the agent is terminal or `timeout`
    /// passes: a daemon restart or a lost reply costs one round, never the whole wait, and
    /// between rounds the request's slot is free for the connection's other callers. By id: a
    /// name may pass to a newer agent between rounds. A round that goes unanswered (no daemon)
    /// is followed by 10 s of asking for one; a daemon gone for good ends the wait
    /// with an error rather than leaving it to loop forever. The wait for a slot in the client
    /// counts against `timeout` too.
    pub async fn wait_in_rounds(
        &self,
        agent: &str,
        timeout: Option<Duration>,
        round: Duration,
    ) -> Result<AgentInfo, ClientError> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let id = self.get(agent).await?.id.to_string();
        // A round in flight when the daemon goes is never answered: the daemon is asked each
        // second whether it is still the same one while a long round runs, and a round it lost
        // is asked again at once rather than after its own deadline (a minute). Short rounds
        // (many agents waited for on one connection, [`Client::wait_in_rounds`] with a round of
        // seconds) are not probed: each probe would take one of the connection's 64 requests
        // in flight from the waits, and a lost short round costs its deadline only.
        let probed = round >= PROBED_ROUND;
        let mut daemon = if probed {
            Some(self.health().await?.daemon)
        } else {
            None
        };
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            let this_round = left.map_or(round, |left| left.min(round));
            let asked = async {
                let asked = self.wait_once(&id, this_round);
                match (left, timeout) {
                    (Some(left), Some(timeout)) => tokio::time::timeout(left, asked)
                        .await
                        .unwrap_or(Err(ClientError::Timeout {
                            op: "wait",
                            after: timeout,
                        })),
                    _ => asked.await,
                }
            };
            let answer = tokio::select! {
                answer = asked => answer,
                moved = async {
                    match daemon {
                        Some(daemon) => self.moved(daemon, PROBE_EVERY).await,
                        None => std::future::pending().await,
                    }
                } => {
                    match moved {
                        Some(replaced) => daemon = Some(replaced),
                        None => {
                            if !self.answers_within(DAEMON_GONE).await {
                                return Err(ClientError::Disconnected(format!(
                                    "no daemon at {} answered for {} s while waiting for {agent}",
                                    self.endpoint,
                                    DAEMON_GONE.as_secs()
                                )));
                            }
                            daemon = self.health().await.map(|h| h.daemon).ok().or(daemon);
                        }
                    }
                    continue;
                }
            };
            let more_time = left.is_none_or(|left| left > this_round);
            match answer {
                // The daemon's own "not yet".
                Err(ClientError::Remote(body))
                    if body.code == drover_proto::ErrorCode::Timeout && more_time => {}
                // No answer at all: a daemon restarting answers again soon.
                Err(error) if error.is_unanswered() && more_time => {
                    if !self.answers_within(DAEMON_GONE).await {
                        return Err(ClientError::Disconnected(format!(
                            "no daemon at {} answered for {} s while waiting for {agent} \
                             ({error})",
                            self.endpoint,
                            DAEMON_GONE.as_secs()
                        )));
                    }
                }
                other => return other,
            }
        }
    }

    /// Resolves when `daemon` is no longer the one answering (asked every `every`, each given a
    /// second): with the one that answers instead, or `None` when none answers. What a long
    /// `wait` and the CLI's follows watch to notice a daemon that went away.
    pub async fn moved(&self, daemon: DaemonId, every: Duration) -> Option<DaemonId> {
        loop {
            tokio::time::sleep(every).await;
            match self.health_within(Duration::from_secs(1)).await {
                Ok(health) if health.daemon == daemon => {}
                Ok(health) => return Some(health.daemon),
                Err(_) => return None,
            }
        }
    }

    /// Whether the daemon answers a `health` within `limit` (probing about once a second).
    async fn answers_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.health_within(Duration::from_secs(1)).await.is_ok() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_once(&self, agent: &str, timeout: Duration) -> Result<AgentInfo, ClientError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let request = Request::Wait(WaitArgs {
            agent: AgentRef::new(agent),
            timeout_ms: Some(timeout_ms),
        });
        let result: AgentResult = self.call(request).await?;
        Ok(result.agent)
    }

    /// `write_stdin`; returns the bytes queued.
    pub async fn write_stdin(&self, agent: &str, data: Vec<u8>) -> Result<u64, ClientError> {
        let result: WriteStdinResult = self
            .call(Request::WriteStdin(WriteStdinArgs {
                agent: AgentRef::new(agent),
                data,
            }))
            .await?;
        Ok(result.written)
    }

    /// `close_stdin`.
    pub async fn close_stdin(&self, agent: &str) -> Result<(), ClientError> {
        let _: EmptyResult = self.call(Request::CloseStdin(agent_args(agent))).await?;
        Ok(())
    }

    /// `remove`.
    pub async fn remove(&self, agent: &str) -> Result<(), ClientError> {
        let _: EmptyResult = self.call(Request::Remove(agent_args(agent))).await?;
        Ok(())
    }

    /// `read_logs`.
    pub async fn read_logs(&self, args: ReadLogsArgs) -> Result<ReadLogsResult, ClientError> {
        let request = Request::ReadLogs(args);
        let deadline = self.options.request_timeout + extra_wait(&request);
        // Its records are read directly rather than through serde: replies carry thousands.
        self.call_within(request, deadline, drover_proto::decode_read_logs_reply)
            .await
    }

    /// `stream_info`.
    pub async fn stream_info(&self, agent: Option<&str>) -> Result<StreamInfoResult, ClientError> {
        self.call(Request::StreamInfo(StreamInfoArgs {
            agent: agent.map(AgentRef::new),
        }))
        .await
    }

    /// `read_events`: stored events numbered after `after`.
    pub async fn read_events(
        &self,
        after: Option<EventSeq>,
        limit: Option<u32>,
    ) -> Result<ReadEventsResult, ClientError> {
        self.call(Request::ReadEvents(ReadEventsArgs { after, limit }))
            .await
    }

    /// `batch`.
    pub async fn batch(&self, args: BatchArgs) -> Result<BatchResult, ClientError> {
        self.call(Request::Batch(args)).await
    }

    async fn agent_op(&self, request: Request) -> Result<AgentInfo, ClientError> {
        let result: AgentResult = self.call(request).await?;
        Ok(result.agent)
    }
}

fn agent_args(agent: &str) -> AgentArgs {
    AgentArgs {
        agent: AgentRef::new(agent),
    }
}

/// A `wait` may legitimately take as long as its own timeout; give it that on top.
fn extra_wait(request: &Request) -> Duration {
    match request {
        Request::Wait(WaitArgs {
            timeout_ms: Some(ms),
            ..
        }) => Duration::from_millis(*ms),
        _ => Duration::ZERO,
    }
}

/// One round of an unbounded `wait`.
const WAIT_ROUND: Duration = Duration::from_secs(30);

/// How long an unbounded `wait` whose round went unanswered keeps asking for a daemon before it
/// gives up (a restart takes well under a second).
const DAEMON_GONE: Duration = Duration::from_secs(10);
/// `wait` rounds at least this long are probed for a daemon that went (every [`PROBE_EVERY`]).
const PROBED_ROUND: Duration = Duration::from_secs(10);
const PROBE_EVERY: Duration = Duration::from_secs(1);
