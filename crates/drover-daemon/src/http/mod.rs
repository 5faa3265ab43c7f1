//! The HTTP API under `/v1`: JSON mirrors of the ops, and Server-Sent Events streams.
//!
//! Every REST route builds a proto [`Request`] and goes through [`handler::dispatch`], so HTTP
//! and ZeroMQ share one implementation; this module only translates. Streams (`logs?follow=true`,
//! `/v1/events`) read the store and the event bus directly and are the only routes without a
//! deadline. Errors are always `{"error": {"code", "message"}}` with the code's status, including
//! axum's own rejections (malformed JSON, oversize bodies, unknown routes, wrong methods).
//!
//! Before any route, `guard` (URI length, Host, Origin) and `auth` (the caller: the unix socket,
//! a bearer token or the login cookie, and its role) decide whether the request goes on.
//! `listen` binds the sockets and serves connections with their limits.

mod agent_metrics;
mod agents;
mod auth;
mod body;
mod dashboard;
mod events;
mod follow;
mod guard;
pub(crate) mod listen;
mod login;
mod logs;
mod metrics;
mod query;
mod record;
mod session;
mod sse;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request as HttpRequest};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_proto::limits::MAX_STDIN_WRITE;
use drover_proto::{ErrorBody, ErrorCode, Request};
use tokio::sync::watch;

use crate::daemon::Shared;
use crate::handler::{self, Reply};
use crate::token::TokenTable;

/// Deadline of every route that is not a stream (`wait` has its own, from `timeout_ms`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest JSON request body.
const MAX_JSON_BODY: usize = 1024 * 1024;
/// Largest `POST /login` body (a token, as JSON or a form field): the one body read before any
/// credential, so 512 connections trickling bodies hold at most 2 MiB.
const MAX_LOGIN_BODY: usize = 4 * 1024;

/// What every route sees.
#[derive(Debug)]
pub(crate) struct Http {
    pub(crate) shared: Arc<Shared>,
    /// Turns true at shutdown: every stream ends then, so graceful shutdown can finish.
    pub(crate) stop: watch::Receiver<bool>,
    /// Open `/v1/events` streams (log followers are `shared.counters.followers`).
    pub(crate) event_followers: AtomicU64,
    /// Connections closed because the peer read nothing for `HttpLimits::send_timeout`.
    pub(crate) stalled: Arc<AtomicU64>,
    /// The bearer tokens, re-read when their file changes.
    pub(crate) tokens: TokenTable,
    /// Browser sessions started by `POST /login`.
    pub(crate) sessions: session::Sessions,
}

type AppState = Arc<Http>;

/// The router, split from serving so tests can drive it directly.
pub(crate) fn app(http: AppState) -> Router {
    let bounded = Router::new()
        .route("/v1/health", get(agents::health))
        .route("/v1/agents", get(agents::list).post(agents::spawn))
        .route(
            "/v1/agents/{agent}",
            get(agents::get).delete(agents::remove),
        )
        .route("/v1/agents/{agent}/pause", post(agents::pause))
        .route("/v1/agents/{agent}/resume", post(agents::resume))
        .route("/v1/agents/{agent}/kill", post(agents::kill))
        .route("/v1/agents/{agent}/stop", post(agents::stop))
        .route("/v1/agents/{agent}/signal", post(agents::signal))
        .route(
            "/v1/agents/{agent}/stdin",
            post(agents::write_stdin).layer(DefaultBodyLimit::max(MAX_STDIN_WRITE)),
        )
        .route("/v1/agents/{agent}/stdin/close", post(agents::close_stdin))
        .route("/metrics", get(metrics::render))
        .route(
            "/login",
            get(login::form)
                .post(login::login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/v1/session", get(login::session))
        .route("/", get(dashboard::index))
        .route("/ui/{file}", get(dashboard::asset))
        .route("/logout", post(login::logout))
        .layer(middleware::from_fn(deadline));
    // Streams, and `wait` and `logs`, which bound themselves: `logs` only when not following.
    let unbounded = Router::new()
        .route("/v1/agents/{agent}/wait", get(agents::wait))
        .route("/v1/agents/{agent}/logs", get(logs::get))
        .route("/v1/events", get(events::follow));
    bounded
        .merge(unbounded)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost last: the URI's length, then Host and Origin, then the credential, all
        // before routing.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&http),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&http),
            guard::same_origin,
        ))
        // Agent output is served as text: never let a browser sniff it into HTML or script.
        .layer(middleware::map_response(nosniff))
        .layer(middleware::from_fn(guard::short_uri))
        .with_state(http)
}

async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serve HTTP on every listener until `stop` turns true.
pub(crate) async fn serve(
    listeners: listen::HttpListeners,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let http = Arc::new(Http {
        tokens: TokenTable::new(&shared.config.state_dir),
        sessions: session::Sessions::default(),
        shared,
        stop: stop.clone(),
        event_followers: AtomicU64::new(0),
        stalled: Arc::default(),
    });
    let stalled = Arc::clone(&http.stalled);
    listen::run(listeners, app(http), stalled, stop).await;
}

/// A wire error as an HTTP response: the code's status (or the one given) and
/// `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ErrorBody, Option<StatusCode>);

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> ApiError {
        ApiError(body, None)
    }
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::from(ErrorBody::new(code, message))
    }

    /// `403 unauthorized`: an authenticated caller whose role does not allow the request.
    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError(
            ErrorBody::new(ErrorCode::Unauthorized, message),
            Some(StatusCode::FORBIDDEN),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// `408 timeout`: the request itself did not arrive in time.
    pub(crate) fn request_timeout(message: impl Into<String>) -> ApiError {
        ApiError(
            ErrorBody::new(ErrorCode::Timeout, message),
            Some(StatusCode::REQUEST_TIMEOUT),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.1.unwrap_or_else(|| {
            StatusCode::from_u16(self.0.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        (status, Json(serde_json::json!({ "error": self.0 }))).into_response()
    }
}

/// Run one op through the shared handlers as the request's caller, counting it like the control
/// socket does. The caller was authenticated, so an `unauthorized` refusal is its role: 403.
pub(crate) async fn call(shared: &Arc<Shared>, request: Request) -> Result<Reply, ApiError> {
    let Ok(caller) = auth::CALLER.try_with(|caller| *caller) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "request without an authenticated caller",
        ));
    };
    let op = request.op().as_str();
    let started = Instant::now();
    let result = handler::dispatch(shared, caller, request).await;
    shared.count_request(
        op,
        started.elapsed(),
        result.as_ref().err().map(|e| e.code.as_str()),
    );
    result.map_err(|error| match error.code {
        ErrorCode::Unauthorized => ApiError(error, Some(StatusCode::FORBIDDEN)),
        _ => ApiError::from(error),
    })
}

/// A reply as its JSON body (the same fields as the op's MessagePack result).
pub(crate) fn reply_json(reply: Reply) -> Response {
    match reply {
        Reply::Health(r) => Json(r).into_response(),
        Reply::Agent(r) => Json(r).into_response(),
        Reply::List(r) => Json(r).into_response(),
        Reply::Empty(r) => Json(r).into_response(),
        Reply::WriteStdin(r) => Json(r).into_response(),
        Reply::ReadLogs(r) => Json(record::ReadLogsJson::from(&r)).into_response(),
        Reply::ReadEvents(r) => Json(r).into_response(),
        Reply::StreamInfo(r) => Json(r).into_response(),
        Reply::Batch(r) => Json(r).into_response(),
        Reply::Stats(r) => Json(r).into_response(),
    }
}

/// Give up on a non-stream request after [`REQUEST_TIMEOUT`] with `timeout` (504).
async fn deadline(request: HttpRequest, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!(
                "request not answered within {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

async fn not_found(request: HttpRequest) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
}

async fn method_not_allowed(request: HttpRequest) -> Response {
    let error = ApiError::bad_request(format!(
        "method {} is not allowed on {}",
        request.method(),
        request.uri().path()
    ));
    let mut response = error.into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}
