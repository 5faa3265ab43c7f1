//! REST routes over the ops: health, agents, lifecycle actions, stdin, wait.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use drover_proto::op::{
    AgentArgs, ListArgs, NoArgs, SignalArgs, SignalSpec, SpawnArgs, StopArgs, WaitArgs,
    WriteStdinArgs,
};
use drover_proto::{AgentState, Request};
use serde::Deserialize;

use super::body::{AgentPath, JsonBody, RawBody};
use super::query::Params;
use super::{call, reply_json, ApiError, AppState};

/// `wait` gives up after this long when the request names no `timeout_ms`.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Longest `wait` a request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// `GET /v1/health`.
pub(super) async fn health(State(http): State<AppState>) -> Result<Response, ApiError> {
    Ok(reply_json(
        call(&http.shared, Request::Health(NoArgs {})).await?,
    ))
}

/// `GET /v1/agents?state=&label=k=v&limit=&cursor=&specs=`: one page, as the `list` op.
pub(super) async fn list(
    State(http): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let state = params
        .get("state")
        .map(|s| {
            AgentState::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown agent state {s:?}")))
        })
        .transpose()?;
    let mut labels = BTreeMap::new();
    for label in params.all("label") {
        let (key, value) = label.split_once('=').ok_or_else(|| {
            ApiError::bad_request(format!("label filter {label:?} is not key=value"))
        })?;
        labels.insert(key.to_owned(), value.to_owned());
    }
    let args = ListArgs {
        state,
        labels,
        limit: params.parse("limit")?,
        cursor: params.get("cursor").map(str::to_owned),
        specs: params.flag("specs")?,
    };
    Ok(reply_json(call(&http.shared, Request::List(args)).await?))
}

/// `POST /v1/agents` with `{"spec": {...}}`: 201 and `{"agent": ...}`.
pub(super) async fn spawn(
    State(http): State<AppState>,
    JsonBody(args): JsonBody<SpawnArgs>,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Spawn(args)).await?;
    let mut response = reply_json(reply);
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// `GET /v1/agents/{agent}`.
pub(super) async fn get(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Get(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// `DELETE /v1/agents/{agent}`: a terminal agent and its logs.
pub(super) async fn remove(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Remove(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// `POST /v1/agents/{agent}/pause`.
pub(super) async fn pause(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Pause(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// `POST /v1/agents/{agent}/resume`.
pub(super) async fn resume(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Resume(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// `POST /v1/agents/{agent}/kill`.
pub(super) async fn kill(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::Kill(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// The optional body of `stop`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct StopBody {
    grace_ms: Option<u64>,
}

/// `POST /v1/agents/{agent}/stop` with an optional `{"grace_ms": n}`.
pub(super) async fn stop(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
    JsonBody(body): JsonBody<StopBody>,
) -> Result<Response, ApiError> {
    let args = StopArgs {
        agent,
        grace_ms: body.grace_ms,
    };
    Ok(reply_json(call(&http.shared, Request::Stop(args)).await?))
}

/// The body of `signal`.
#[derive(Debug, Deserialize)]
pub(super) struct SignalBody {
    signal: SignalSpec,
}

/// `POST /v1/agents/{agent}/signal` with `{"signal": "TERM" | "SIGTERM" | 15}`.
pub(super) async fn signal(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
    JsonBody(body): JsonBody<SignalBody>,
) -> Result<Response, ApiError> {
    let args = SignalArgs {
        agent,
        signal: body.signal,
    };
    Ok(reply_json(call(&http.shared, Request::Signal(args)).await?))
}

/// `POST /v1/agents/{agent}/stdin`: the raw body is queued for the agent's stdin.
pub(super) async fn write_stdin(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
    RawBody(data): RawBody,
) -> Result<Response, ApiError> {
    let args = WriteStdinArgs {
        agent,
        data: data.to_vec(),
    };
    let reply = call(&http.shared, Request::WriteStdin(args)).await?;
    Ok(reply_json(reply))
}

/// `POST /v1/agents/{agent}/stdin/close`.
pub(super) async fn close_stdin(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
) -> Result<Response, ApiError> {
    let reply = call(&http.shared, Request::CloseStdin(AgentArgs { agent })).await?;
    Ok(reply_json(reply))
}

/// `GET /v1/agents/{agent}/wait?timeout_ms=`: until the agent is terminal; `timeout` (504) when
/// the wait (default 30 s, at most 600 s) expires first.
pub(super) async fn wait(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
    params: Params,
) -> Result<Response, ApiError> {
    let wanted = params
        .parse::<u64>("timeout_ms")?
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_WAIT);
    if wanted > MAX_WAIT {
        return Err(ApiError::bad_request(format!(
            "timeout_ms exceeds the maximum of {} ms",
            MAX_WAIT.as_millis()
        )));
    }
    let args = WaitArgs {
        agent,
        timeout_ms: Some(u64::try_from(wanted.as_millis()).unwrap_or(u64::MAX)),
    };
    let reply = call(&http.shared, Request::Wait(args)).await?;
    Ok(reply_json(reply))
}
