//! Request handlers: one file per op, dispatched by an exhaustive match. ZeroMQ and HTTP both
//! come through [`dispatch`].

mod batch;
mod close_stdin;
mod get;
mod health;
mod kill;
mod list;
mod pause;
mod read_events;
mod read_logs;
mod remove;
mod resume;
mod signal;
pub(crate) mod spawn;
mod stats;
mod stop;
mod stream_info;
mod wait;
mod write_stdin;

use std::sync::Arc;

use drover_proto::op::{
    AgentRef, AgentResult, BatchResult, EmptyResult, HealthResult, ListResult, ReadEventsResult,
    ReadLogsResult, StatsResult, StreamInfoResult, WriteStdinResult,
};
use drover_proto::{AgentInfo, ErrorBody, ErrorCode, ProtoError, ReplyBody, Request};
use drover_supervisor::{Handle, Status};

use crate::agent::{convert_status, LiveAgent};
use crate::caller::Caller;
use crate::daemon::Shared;
use crate::error::store_error;

/// A successful result of any op.
// One short-lived value per request; boxing the agent variants would cost more than the size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Reply {
    Health(HealthResult),
    Agent(AgentResult),
    List(ListResult),
    Empty(EmptyResult),
    WriteStdin(WriteStdinResult),
    ReadLogs(ReadLogsResult),
    StreamInfo(StreamInfoResult),
    Batch(BatchResult),
    Stats(StatsResult),
    ReadEvents(ReadEventsResult),
}

impl Reply {
    /// Encode as a v1 reply envelope.
    pub(crate) fn encode(self, id: &rmpv::Value) -> Result<Vec<u8>, ProtoError> {
        use drover_proto::encode_reply as enc;
        match self {
            Reply::Health(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::Agent(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::List(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::Empty(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::WriteStdin(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::ReadLogs(r) => drover_proto::encode_read_logs_reply(id, r),
            Reply::StreamInfo(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::Batch(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::Stats(r) => enc(id, ReplyBody::Ok(&r)),
            Reply::ReadEvents(r) => enc(id, ReplyBody::Ok(&r)),
        }
    }

    /// This reply as a caller without the `control` role sees it: every agent's environment
    /// values (API keys, as a rule) replaced by [`REDACTED`]; the names stay. (A batch's items
    /// were each dispatched, and redacted, on their own.)
    pub(crate) fn without_secrets(self) -> Reply {
        match self {
            Reply::Agent(mut r) => {
                redact(&mut r.agent);
                Reply::Agent(r)
            }
            Reply::List(mut r) => {
                r.agents.iter_mut().for_each(redact);
                Reply::List(r)
            }
            other => other,
        }
    }

    /// The agent this reply carries, if any.
    pub(crate) fn agent(&self) -> Option<&AgentInfo> {
        match self {
            Reply::Agent(r) => Some(&r.agent),
            _ => None,
        }
    }
}

/// What a caller without the `control` role sees in place of an environment value.
pub(crate) const REDACTED: &str = "<redacted>";

fn redact(agent: &mut AgentInfo) {
    for value in agent.spec.env.values_mut() {
        REDACTED.clone_into(value);
    }
}

/// What every handler returns.
pub(crate) type OpResult = Result<Reply, ErrorBody>;

/// Serve one request, once the caller's role allows it. A caller without the `control` role
/// gets agents' environment values redacted ([`Reply::without_secrets`]).
pub(crate) async fn dispatch(shared: &Arc<Shared>, caller: Caller, request: Request) -> OpResult {
    let needed = request.required_role();
    if !caller.role.allows(needed) {
        return Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            format!(
                "{} needs the {needed} role; this credential has {}",
                request.op().as_str(),
                caller.role
            ),
        ));
    }
    let sees_secrets = caller.role.allows(drover_proto::Role::Control);
    let result = serve(shared, caller, request).await;
    if sees_secrets {
        result
    } else {
        result.map(Reply::without_secrets)
    }
}

async fn serve(shared: &Arc<Shared>, caller: Caller, request: Request) -> OpResult {
    match request {
        Request::Health(_) => health::handle(shared),
        Request::Spawn(args) => spawn::handle(shared, args).await,
        Request::List(args) => blocking(shared, move |s| list::handle(s, args)).await,
        Request::Get(args) => get::handle(shared, &args.agent),
        Request::Pause(args) => pause::handle(shared, &args.agent).await,
        Request::Resume(args) => resume::handle(shared, &args.agent).await,
        Request::Stop(args) => stop::handle(shared, args).await,
        Request::Kill(args) => kill::handle(shared, &args.agent).await,
        Request::Signal(args) => signal::handle(shared, args).await,
        Request::WriteStdin(args) => write_stdin::handle(shared, args).await,
        Request::CloseStdin(args) => close_stdin::handle(shared, &args.agent).await,
        Request::ReadLogs(args) => blocking(shared, move |s| read_logs::handle(s, args)).await,
        Request::StreamInfo(args) => stream_info::handle(shared, caller, args),
        Request::Wait(args) => wait::handle(shared, args).await,
        Request::Remove(args) => remove::handle(shared, &args.agent),
        Request::Batch(args) => batch::handle(shared, caller, args).await,
        Request::Stats(_) => stats::handle(shared),
        Request::ReadEvents(args) => blocking(shared, move |s| read_events::handle(s, args)).await,
    }
}

/// Large reads (`read_logs`, `list`, `read_events`) running at once.
static BLOCKING_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Run a handler that reads many records or rows on the blocking pool: it may read megabytes
/// from disk, and on the async workers it would stall capture and every other request.
async fn blocking(
    shared: &Arc<Shared>,
    handler: impl FnOnce(&Shared) -> OpResult + Send + 'static,
) -> OpResult {
    // A few at a time: on a small machine many large reads at once would starve the async
    // workers (capture, every other request); the rest wait their turn here.
    let Ok(_turn) = BLOCKING_READS.acquire().await else {
        return Err(ErrorBody::new(ErrorCode::Internal, "the read queue closed"));
    };
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || handler(&shared))
        .await
        .unwrap_or_else(|error| {
            Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("a read failed: {error}"),
            ))
        })
}

/// Whether `request` is answered from memory alone, with no registry query, no process started
/// and nothing to wait for: `health` while its cache holds, and `get` / `stream_info` of a live
/// agent named by its full id. The control task serves these itself (see `control.rs`).
pub(crate) fn is_in_memory(shared: &Shared, request: &Request) -> bool {
    let live = |agent: &AgentRef| {
        agent
            .0
            .parse::<drover_proto::AgentId>()
            .is_ok_and(|id| shared.live(id).is_some())
    };
    match request {
        Request::Health(_) => health::is_cached(shared),
        Request::Get(args) => live(&args.agent),
        Request::StreamInfo(args) => args.agent.as_ref().is_none_or(live),
        _ => false,
    }
}

/// Look an agent up by id, unique id prefix or name.
pub(crate) fn resolve(shared: &Shared, agent: &AgentRef) -> Result<AgentInfo, ErrorBody> {
    // A live agent named by its full id is answered from memory: its watch holds exactly what
    // the registry was last told.
    if let Ok(id) = agent.0.parse::<drover_proto::AgentId>() {
        if let Some(live) = shared.live(id) {
            return Ok(live.info.borrow().clone());
        }
    }
    shared.store.resolve(&agent.0).map_err(store_error)
}

/// The live agent behind a reference, or `invalid_state` when it is no longer live.
pub(crate) async fn live(
    shared: &Shared,
    agent: &AgentRef,
    op: &str,
) -> Result<(AgentInfo, Arc<LiveAgent>, Handle), ErrorBody> {
    let info = resolve(shared, agent)?;
    let not_live = |info: &AgentInfo| {
        ErrorBody::new(
            ErrorCode::InvalidState,
            format!(
                "cannot {op} agent {}: it is {}",
                info.id,
                info.state().as_str()
            ),
        )
    };
    if info.state().is_terminal() {
        return Err(not_live(&info));
    }
    if info.state() == drover_proto::AgentState::Restarting {
        return Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!(
                "cannot {op} agent {}: it is restarting (stop or kill it to cancel the restart)",
                info.id
            ),
        ));
    }
    let live = shared.live(info.id).ok_or_else(|| not_live(&info))?;
    let handle = live
        .handle_when_started()
        .await
        .ok_or_else(|| not_live(&info))?;
    Ok((info, live, handle))
}

/// For `stop` and `kill` of an agent waiting to restart: cancel the restart, and answer with
/// the agent ended as its last run did. `None` when the agent is not restarting (any more: its
/// next run may be starting, and is then waited for), so the op goes on as usual.
pub(crate) async fn end_restart(
    shared: &Shared,
    agent: &AgentRef,
) -> Result<Option<Reply>, ErrorBody> {
    let info = resolve(shared, agent)?;
    if info.state() != drover_proto::AgentState::Restarting {
        return Ok(None);
    }
    let Some(live) = shared.live(info.id) else {
        return Ok(None);
    };
    let mut watch = live.info.clone();
    if live.cancel_restart() {
        let mut ended = live.ended.clone();
        let _ = tokio::time::timeout(
            crate::restarting::STARTING_RUN,
            ended.wait_for(|ended| *ended),
        )
        .await;
        let agent = watch.borrow_and_update().clone();
        return Ok(Some(Reply::Agent(AgentResult { agent })));
    }
    // The next run is starting: act on it once it runs.
    let _ = tokio::time::timeout(
        crate::restarting::STARTING_RUN,
        watch.wait_for(|info| {
            !matches!(
                info.state(),
                drover_proto::AgentState::Restarting | drover_proto::AgentState::Starting
            )
        }),
    )
    .await;
    Ok(None)
}

/// The agent after an op that returned its new status.
pub(crate) fn after(live: &LiveAgent, status: &Status) -> Reply {
    let mut agent = live.info.borrow().clone();
    let status = convert_status(status);
    // The observer may already hold a newer state; never report an older one.
    if !agent.state().is_terminal() {
        agent.status = status;
    }
    Reply::Agent(AgentResult { agent })
}
