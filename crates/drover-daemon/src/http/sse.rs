//! Server-Sent Events framing, keep-alives and shutdown, shared by every stream.
//!
//! A stream is a [`Source`] polled by hyper's connection task through the response body: no task
//! of its own, so when the client goes away hyper drops the body, and with it the source and
//! everything it holds (a store follower, a broadcast receiver, a counter guard). Hyper polls the
//! body only when it can write, so a slow client back-pressures its own source and nobody else.
//!
//! Frames are written by hand rather than with `axum::response::sse`: a source hands over many
//! events at once (a whole store chunk) as one buffer, which is what makes hundreds of thousands
//! of events a second possible.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// A comment frame is sent when nothing else was for this long, so proxies and clients see the
/// connection is alive (and a vanished client is noticed on the write).
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// Something that produces SSE frames.
pub(crate) trait Source: Send + 'static {
    /// The next frames (one or more complete events); `None` once the stream is over.
    fn next_frames(&mut self) -> impl Future<Output = Option<Vec<u8>>> + Send;
}

/// Append one event: `id:` (when given), `event:`, one `data:` line, and the blank line.
/// `data` must hold no newline (compact JSON never does).
pub(crate) fn push_event(out: &mut Vec<u8>, id: Option<u64>, event: &str, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.to_string().as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// Append one event whose data is `value` as JSON.
pub(crate) fn push_json_event(
    out: &mut Vec<u8>,
    id: Option<u64>,
    event: &str,
    value: &impl serde::Serialize,
) {
    let data = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    push_event(out, id, event, &data);
}

/// A `text/event-stream` response driven by `source`, with keep-alive comments, ending when the
/// source ends or the daemon shuts down.
pub(crate) fn response(source: impl Source, stop: watch::Receiver<bool>) -> Response {
    let frames = futures::stream::unfold(Some((source, stop)), |state| async move {
        let (mut source, mut stop) = state?;
        let frames = tokio::select! {
            biased;
            // Shutdown (or the server gone): end the stream so graceful shutdown can finish.
            _ = stop.wait_for(|stopped| *stopped) => return None,
            next = tokio::time::timeout(KEEP_ALIVE, source.next_frames()) => match next {
                Err(_) => Bytes::from_static(KEEP_ALIVE_FRAME),
                Ok(Some(frames)) => Bytes::from(frames),
                Ok(None) => return None,
            },
        };
        Some((Ok::<_, Infallible>(frames), Some((source, stop))))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

/// Whether the client accepts an event stream (`EventSource` sends `text/event-stream`; no
/// `Accept` or `*/*` is taken as yes).
pub(crate) fn is_accepted(headers: &axum::http::HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    accept.is_empty()
        || accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .any(|media| media == "text/event-stream" || media == "*/*" || media == "text/*")
}

/// The `Last-Event-ID` header as a number, if present; a malformed one is an error.
pub(crate) fn last_event_id(headers: &axum::http::HeaderMap) -> Result<Option<u64>, String> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|e| e.to_string())?.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| format!("Last-Event-ID {text:?} is not a number"))
        }
    }
}
