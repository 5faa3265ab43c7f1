//! `spawn`: validate a spec, render its backend, register the agent and start it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drover_agent::{ParserKind, Tracker};
use drover_proto::limits::{MAX_NAME_LEN, MAX_SPEC_BYTES};
use drover_proto::op::{AgentResult, SpawnArgs};
use drover_proto::{
    AgentId, AgentInfo, AgentSpec, AgentState, AgentStatus, ErrorBody, ErrorCode, EventKind,
    StdinMode,
};
use drover_store::Change;
use drover_supervisor::backend::RenderInput;
use drover_supervisor::{parse_signal, Command, SupervisorConfig};

use super::{OpResult, Reply};
use crate::agent::{AgentObserver, LiveAgent};
use crate::daemon::Shared;
use crate::error::store_error;

/// Smallest per-agent log budget: a few records.
use crate::config::MIN_LOG_BUDGET;
/// Longest session id a spec may resume.
const MAX_SESSION_LEN: usize = 256;
/// Largest per-agent log budget the registry can record.
const MAX_LOG_BUDGET: u64 = i64::MAX as u64;

fn bad(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, message)
}

pub(crate) async fn handle(shared: &Arc<Shared>, args: SpawnArgs) -> OpResult {
    let spec = args.spec;
    validate(&spec)?;
    check_parent(shared, &spec)?;
    let command = render(shared, &spec)?;
    let tracker = tracker(shared, &spec, &command);
    let supervisor_config = supervisor_config(shared, &spec)?;
    let context = spec.context.clone();
    let (id, observer, live) = register(shared, spec, tracker)?;
    let command = with_agent_env(command, id, context);
    let watch = live.info.clone();
    let handle = shared
        .holders
        .spawn(id, 1, command, supervisor_config, observer, 1)
        .await;
    live.set_handle(handle);
    shared.counters.spawns.fetch_add(1, Ordering::Relaxed);
    // Answer once the process runs (or failed to), so the reply carries the pid.
    let mut watch = watch;
    let agent = match watch
        .wait_for(|info| info.state() != AgentState::Starting)
        .await
    {
        Ok(info) => info.clone(),
        Err(_) => shared
            .store
            .agent(id)
            .map_err(store_error)?
            .ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!("agent {id} vanished while starting"),
                )
            })?,
    };
    Ok(Reply::Agent(AgentResult { agent }))
}

/// The command and supervision of a run of agent `id` (the restart policy's next runs render
/// theirs as the first run did).
pub(crate) fn prepare(
    shared: &Shared,
    spec: &AgentSpec,
    id: AgentId,
) -> Result<(Command, SupervisorConfig), ErrorBody> {
    let command = render(shared, spec)?;
    let config = supervisor_config(shared, spec)?;
    Ok((with_agent_env(command, id, spec.context.clone()), config))
}

fn supervisor_config(shared: &Shared, spec: &AgentSpec) -> Result<SupervisorConfig, ErrorBody> {
    Ok(SupervisorConfig {
        max_record: shared.config.max_record,
        max_runtime: spec.timeout_ms.map(Duration::from_millis),
        runtime_grace: shared.config.default_grace,
        stdin_queue: STDIN_QUEUE,
        spool_limit: shared.config.spool_limit,
        stop_signal: stop_signal(shared, spec)?,
        ..SupervisorConfig::default()
    })
}

/// Chunks (of at most 1 MiB) waiting for an agent's stdin: a child that never reads costs at
/// most 16 MiB.
pub(crate) const STDIN_QUEUE: usize = 16;

/// Whether an agent runs with a stdin pipe: its backend's fixed stdin, else its spec's.
pub(crate) fn has_stdin_pipe(shared: &Shared, spec: &AgentSpec) -> bool {
    let fixed = shared
        .backends
        .get(spec.backend_name())
        .and_then(|t| t.stdin);
    fixed.map_or(spec.stdin == StdinMode::Pipe, |mode| {
        mode == drover_supervisor::StdinMode::Pipe
    })
}

/// What the agent finds in its environment: its id, and the spec's context. Not in
/// `DROVER_CONTEXT`: that names the daemon a `drover` command talks to, and an agent that runs
/// `drover` (to spawn helpers of its own) would be sent to a daemon named by the text.
fn with_agent_env(mut command: Command, id: AgentId, context: Option<String>) -> Command {
    command.env.push(("DROVER_AGENT_ID".into(), id.to_string()));
    if let Some(context) = context {
        command.env.push(("DROVER_AGENT_CONTEXT".into(), context));
    }
    command
}

/// Bytes of every string in a spec.
fn spec_bytes(spec: &AgentSpec) -> usize {
    let options = [
        &spec.name,
        &spec.backend,
        &spec.task,
        &spec.model,
        &spec.system_prompt,
        &spec.context,
        &spec.cwd,
        &spec.stop_signal,
        &spec.resume,
    ];
    let maps = spec.env.iter().chain(spec.labels.iter());
    options
        .iter()
        .flat_map(|o| o.as_ref())
        .map(String::len)
        .sum::<usize>()
        + spec.argv.iter().map(String::len).sum::<usize>()
        + maps.map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

fn validate(spec: &AgentSpec) -> Result<(), ErrorBody> {
    let size = spec_bytes(spec);
    if size > MAX_SPEC_BYTES {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("the spec holds {size} bytes; at most {MAX_SPEC_BYTES} are allowed"),
        ));
    }
    if let Some(name) = &spec.name {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad(format!("name must be 1 to {MAX_NAME_LEN} bytes")));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(format!(
                "name {name:?} may only contain ASCII letters, digits, '-', '_' and '.'"
            )));
        }
        // Names become path components and URL segments (`/v1/agents/{name}`), where these two
        // mean this directory and its parent.
        if name == "." || name == ".." {
            return Err(bad(format!("name {name:?} is reserved")));
        }
        // A handle (what `ls` shows) is looked up before a name: this name could never be used.
        if name.len() == drover_proto::HANDLE_LEN && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "name {name:?} is 8 hex digits, the form of an agent's handle; choose another"
            )));
        }
    }
    for (key, value) in &spec.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(bad(format!("invalid environment variable {key:?}")));
        }
    }
    if spec.argv.iter().any(|arg| arg.contains('\0')) {
        return Err(bad("argv elements may not contain NUL bytes"));
    }
    if let Some(cwd) = &spec.cwd {
        if !Path::new(cwd).is_absolute() {
            return Err(bad(format!("cwd {cwd:?} must be an absolute path")));
        }
    }
    if let Some(session) = &spec.resume {
        if session.is_empty() || session.len() > MAX_SESSION_LEN || session.contains('\0') {
            return Err(bad(format!(
                "resume must be a session id of 1 to {MAX_SESSION_LEN} bytes"
            )));
        }
    }
    if spec.timeout_ms == Some(0) {
        return Err(bad("timeout_ms must be positive"));
    }
    if let Some(restart) = &spec.restart {
        validate_restart(restart)?;
    }
    if let Some(budget) = spec.log_budget {
        if !(MIN_LOG_BUDGET..=MAX_LOG_BUDGET).contains(&budget) {
            return Err(bad(format!(
                "log_budget must be {MIN_LOG_BUDGET} to {MAX_LOG_BUDGET} bytes"
            )));
        }
    }
    // Agent CLIs take the task as an argument: one starting with '-' would be read as an
    // option (`--dangerously-skip-permissions`), escaping the backend's template.
    if spec.backend_name() != "command" {
        for (field, value) in [
            ("task", &spec.task),
            ("model", &spec.model),
            ("system_prompt", &spec.system_prompt),
            ("resume", &spec.resume),
        ] {
            if value.as_deref().is_some_and(|v| v.starts_with('-')) {
                return Err(bad(format!(
                    "{field} may not start with '-': the agent's CLI would read it as an option"
                )));
            }
        }
    }
    Ok(())
}

/// Shortest first wait of a restart policy: an agent that fails at once restarts at most this
/// often (before the waits grow).
const MIN_BACKOFF_MS: u64 = 10;
/// Longest wait of a restart policy: a day.
const MAX_BACKOFF_MS: u64 = 86_400_000;
/// The longest wait may not be shorter than this: an agent that fails at once forever restarts
/// at most once a second (each restart is two events and two process starts).
const MIN_MAX_BACKOFF_MS: u64 = 1_000;

fn validate_restart(restart: &drover_proto::Restart) -> Result<(), ErrorBody> {
    if !(MIN_BACKOFF_MS..=MAX_BACKOFF_MS).contains(&restart.backoff_ms) {
        return Err(bad(format!(
            "restart.backoff_ms must be {MIN_BACKOFF_MS} to {MAX_BACKOFF_MS}"
        )));
    }
    let least = restart.backoff_ms.max(MIN_MAX_BACKOFF_MS);
    if !(least..=MAX_BACKOFF_MS).contains(&restart.max_backoff_ms) {
        return Err(bad(format!(
            "restart.max_backoff_ms must be {least} (restart.backoff_ms, and at least \
             {MIN_MAX_BACKOFF_MS}) to {MAX_BACKOFF_MS}"
        )));
    }
    if restart.reset_after_ms == 0 {
        return Err(bad("restart.reset_after_ms must be positive"));
    }
    Ok(())
}

/// The agent `spec.parent` names must exist (any state): `continue` links to it.
fn check_parent(shared: &Shared, spec: &AgentSpec) -> Result<(), ErrorBody> {
    let Some(parent) = spec.parent else {
        return Ok(());
    };
    match shared.store.agent(parent).map_err(store_error)? {
        Some(_) => Ok(()),
        None => Err(ErrorBody::new(
            ErrorCode::NotFound,
            format!("parent agent {parent} not found"),
        )),
    }
}

/// A tracker for the backend's parser (checked when the configuration was loaded), reading the
/// agent's stdout into its activity.
pub(crate) fn tracker(shared: &Shared, spec: &AgentSpec, command: &Command) -> Option<Tracker> {
    let kind = shared
        .backends
        .get(spec.backend_name())?
        .parser
        .as_deref()?
        .parse::<ParserKind>()
        .ok()?;
    let interactive = command.stdin == drover_supervisor::StdinMode::Pipe;
    Some(Tracker::new(kind, interactive))
}

/// For an agent the daemon re-attaches to after a restart: a tracker that has read what its
/// log keeps of its current run (so session, turns and tokens survive the restart, and those of
/// earlier runs are not counted again), or `None` without a parser. The records the holder
/// spooled meanwhile follow through the observer.
///
/// A run's records are those captured from its start on: its holder timestamps both, and a
/// run starts only after the one before it ended (its holder waits for every descendant).
pub(crate) fn tracker_for(shared: &Shared, agent: &AgentInfo) -> Option<Tracker> {
    let kind = shared
        .backends
        .get(agent.spec.backend_name())?
        .parser
        .as_deref()?
        .parse::<ParserKind>()
        .ok()?;
    let mut tracker = Tracker::new(kind, has_stdin_pipe(shared, &agent.spec));
    // No snapshots: nothing is recorded from the replay, only the reading is rebuilt.
    let mut update = drover_agent::Update::capped(0);
    let end = shared.store.log_bounds(agent.id).ok()?.next_seq;
    let mut query = drover_store::LogQuery {
        stream: Some(drover_proto::StreamKind::Stdout),
        // A restart policy's run N reads run N's output only. Recorded as `starting` (the
        // last daemon went between recording the restart and the run's start), it has no start
        // time: rather than count every earlier run's output into it, it reads none of it, and
        // takes up the recorded reading (`Tracker::resume` below) and what it prints next.
        since: (agent.restarts > 0).then(|| agent.status.started_at().unwrap_or(i64::MAX)),
        limit: drover_proto::limits::MAX_READ_LIMIT,
        ..drover_store::LogQuery::default()
    };
    // Bounded by the agent's log budget. A read filtered to stdout may scan stderr records and
    // return none: it goes on from `next_seq` until the end. A read error stops it (the
    // activity is then what was read; the next records go on from there).
    while let Ok(read) = shared.store.read(agent.id, &query) {
        for record in &read.records {
            tracker.feed(&record.data, record.partial, &mut update);
        }
        update.coalesced = 0;
        if read.next_seq >= end || Some(read.next_seq) == query.since_seq {
            break;
        }
        query.since_seq = Some(read.next_seq);
    }
    // Re-attached: what the registry kept stands where the log no longer says it.
    if let Some(recorded) = &agent.activity {
        tracker.resume(recorded);
    }
    Some(tracker)
}

/// The spec's stop signal, else its backend's, else SIGTERM.
fn stop_signal(shared: &Shared, spec: &AgentSpec) -> Result<i32, ErrorBody> {
    let backend = shared
        .backends
        .get(spec.backend_name())
        .and_then(|t| t.stop_signal.clone());
    match spec.stop_signal.as_deref().or(backend.as_deref()) {
        None => Ok(libc_sigterm()),
        Some(name) => parse_signal(name).ok_or_else(|| {
            bad(format!(
                "stop_signal {name:?} is not a signal name or number"
            ))
        }),
    }
}

fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

fn render(shared: &Shared, spec: &AgentSpec) -> Result<Command, ErrorBody> {
    let backend = spec.backend_name();
    // A name that is no backend at all is a mistake to correct, not a permission to ask for.
    let Some(template) = shared.backends.get(backend) else {
        // Those this daemon lets clients use, not every one it has.
        let known: Vec<&str> = shared
            .backends
            .names()
            .filter(|name| {
                shared
                    .config
                    .allowed_backends
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a == name))
            })
            .collect();
        return Err(bad(format!(
            "unknown backend {backend:?} (this daemon offers: {})",
            known.join(", ")
        )));
    };
    if let Some(allowed) = &shared.config.allowed_backends {
        if !allowed.iter().any(|name| name == backend) {
            return Err(ErrorBody::new(
                ErrorCode::Unauthorized,
                format!(
                    "backend {backend:?} is not allowed by this daemon (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    if spec.resume.is_some() && !template.resumes() {
        return Err(bad(format!(
            "backend {backend:?} has no way to resume a session (its command line has no \
             {{session}})"
        )));
    }
    // Extra arguments reach an agent CLI's own flags (`--mcp-config` can start any program):
    // a daemon that restricts which backends clients use refuses them.
    if backend != "command" && !spec.argv.is_empty() && shared.config.allowed_backends.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::Unauthorized,
            format!(
                "this daemon restricts backends, so extra arguments to backend {backend:?} are \
                 not allowed"
            ),
        ));
    }
    let input = RenderInput {
        task: spec.task.as_deref(),
        model: spec.model.as_deref(),
        system_prompt: spec.system_prompt.as_deref(),
        session: spec.resume.as_deref(),
        argv: &spec.argv,
    };
    let (argv, backend_stdin) = shared
        .backends
        .render(backend, &input)
        .map_err(|e| bad(e.to_string()))?;
    let mut argv = argv.into_iter();
    let program = argv
        .next()
        .ok_or_else(|| bad(format!("backend {backend:?} rendered an empty command")))?;
    // A backend that fixes its stdin (claude blocks on an open pipe) wins over the spec.
    let stdin = match backend_stdin {
        Some(mode) => mode,
        None => match spec.stdin {
            StdinMode::Null => drover_supervisor::StdinMode::Null,
            StdinMode::Pipe => drover_supervisor::StdinMode::Pipe,
        },
    };
    Ok(Command {
        program,
        args: argv.collect(),
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // No cwd (a remote client's): the daemon's configured work directory.
        cwd: spec
            .cwd
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| shared.config.agent_work_dir()),
        stdin,
    })
}

/// Check the limits and the name, record the agent and claim its live slot, atomically with
/// other spawns.
fn register(
    shared: &Arc<Shared>,
    spec: AgentSpec,
    tracker: Option<Tracker>,
) -> Result<(AgentId, Arc<AgentObserver>, Arc<LiveAgent>), ErrorBody> {
    let _gate = shared.spawn_gate.lock().unwrap_or_else(|p| p.into_inner());
    if shared
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(ErrorBody::new(
            ErrorCode::InvalidState,
            "the daemon is shutting down",
        ));
    }
    if shared.live_count() >= shared.config.max_agents {
        return Err(ErrorBody::new(
            ErrorCode::LimitReached,
            format!(
                "{} agents are live, the configured maximum",
                shared.config.max_agents
            ),
        ));
    }
    // Name uniqueness among live agents is the registry's to enforce (`NameTaken`).
    let info = AgentInfo {
        id: shared.store.fresh_id().map_err(store_error)?,
        name: spec.name.clone(),
        backend: spec.backend_name().to_owned(),
        status: AgentStatus::Starting,
        created_at: drover_proto::now_ns(),
        labels: spec.labels.clone(),
        spec,
        activity: tracker.as_ref().map(|t| t.activity().clone()),
        restarts: 0,
        timed_out: false,
    };
    let id = info.id;
    let (observer, live) = AgentObserver::new(shared, info.clone(), tracker);
    let live = Arc::new(live);
    // Live slot first, registry row second: once the agent can be found, it is live (a `wait`
    // or `stop` never sees a registered agent without its slot).
    shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, Arc::clone(&live));
    // The registry applies the spec's log budget and refuses a name a live agent holds.
    // The row and its `spawned` event are one transaction.
    let change = Change::Insert(Box::new(info.clone()));
    if let Err(error) = shared.events.commit(change, EventKind::Spawned, &info) {
        shared.forget(id);
        return Err(store_error(error));
    }
    Ok((id, observer, live))
}
