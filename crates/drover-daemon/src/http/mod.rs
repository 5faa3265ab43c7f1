//! The HTTP API under `/v1`: JSON mirrors of the ops, and Server-Sent Events streams.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use drover_proto::{ErrorBody, Request};
use tokio::sync::watch;

use crate::daemon::Shared;
use crate::handler::{self, Reply};

/// The router, split from serving so tests can drive it directly.
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .with_state(shared)
}

/// Serve HTTP until `stop` turns true.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let shutdown = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    if let Err(error) = axum::serve(listener, app(shared))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "HTTP server failed");
    }
}

/// A wire error as an HTTP response: the code's status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(serde_json::json!({ "error": self.0 }))).into_response()
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Result<Response, ApiError> {
    let reply = handler::dispatch(&shared, Request::Health(Default::default()))
        .await
        .map_err(ApiError)?;
    match reply {
        Reply::Health(result) => Ok(Json(result).into_response()),
        _ => Err(ApiError(ErrorBody::new(
            drover_proto::ErrorCode::Internal,
            "health returned an unexpected reply",
        ))),
    }
}
