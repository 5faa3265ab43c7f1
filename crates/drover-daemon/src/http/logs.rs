//! `GET /v1/agents/{agent}/logs`: stored history as JSON, NDJSON or plain text, or, with
//! `follow=true`, a Server-Sent Events stream (see `follow.rs`).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use drover_proto::op::{AgentArgs, ReadLogsArgs, ReadLogsResult};
use drover_proto::{ErrorCode, Request, Seq, StreamKind};

use super::body::AgentPath;
use super::follow::{self, FollowFrom};
use super::query::Params;
use super::{call, record, sse, ApiError, AppState, REQUEST_TIMEOUT};
use crate::handler::Reply;

/// How history is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `{"records": [...], "first_seq", "next_seq", "truncated", "end_seq", "output_bytes",
    /// "disk_bytes"}`.
    Json,
    /// One record's JSON per line.
    Ndjson,
    /// The records' bytes, concatenated.
    Text,
}

impl Format {
    /// `format=` wins; else the `Accept` header; else JSON.
    fn choose(params: &Params, headers: &HeaderMap) -> Result<Format, ApiError> {
        if let Some(format) = params.get("format") {
            return match format {
                "json" => Ok(Format::Json),
                "ndjson" => Ok(Format::Ndjson),
                "text" => Ok(Format::Text),
                other => Err(ApiError::bad_request(format!(
                    "format {other:?} is not json, ndjson or text"
                ))),
            };
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(if accept.contains("application/x-ndjson") {
            Format::Ndjson
        } else if accept.contains("text/plain") {
            Format::Text
        } else {
            Format::Json
        })
    }
}

/// `GET /v1/agents/{agent}/logs?since_seq=&until_seq=&tail=&since=&stream=&limit=&format=&follow=`.
pub(super) async fn get(
    State(http): State<AppState>,
    AgentPath(agent): AgentPath,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let stream = match params.get("stream") {
        None => None,
        Some("stdout") => Some(StreamKind::Stdout),
        Some("stderr") => Some(StreamKind::Stderr),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "stream {other:?} is not stdout or stderr"
            )))
        }
    };
    if params.flag("follow")? {
        if !sse::is_accepted(&headers) {
            return Err(ApiError::bad_request(
                "follow=true answers with text/event-stream; send Accept: text/event-stream",
            ));
        }
        let from = FollowFrom {
            last_event_id: sse::last_event_id(&headers).map_err(ApiError::bad_request)?,
            since_seq: params.parse("since_seq")?,
            tail: params.parse("tail")?,
            since: params.time("since")?,
            stream,
        };
        // Resolve through the shared handler so errors (not_found) match the other routes.
        let info = match call(&http.shared, Request::Get(AgentArgs { agent })).await? {
            Reply::Agent(result) => result.agent,
            _ => return Err(ApiError::new(ErrorCode::Internal, "get returned no agent")),
        };
        return follow::start(&http, info, &from);
    }
    let format = Format::choose(&params, &headers)?;
    let args = ReadLogsArgs {
        agent,
        since_seq: params.parse::<u64>("since_seq")?.map(Seq),
        until_seq: params.parse::<u64>("until_seq")?.map(Seq),
        tail: params.parse("tail")?,
        since: params.time("since")?,
        stream,
        limit: params.parse("limit")?,
    };
    let read = tokio::time::timeout(REQUEST_TIMEOUT, call(&http.shared, Request::ReadLogs(args)))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Timeout, "reading the log took too long"))??;
    let Reply::ReadLogs(read) = read else {
        return Err(ApiError::new(
            ErrorCode::Internal,
            "read_logs returned no records",
        ));
    };
    Ok(render(format, &read))
}

/// History in the chosen format. NDJSON and text carry the read's bounds in headers.
fn render(format: Format, read: &ReadLogsResult) -> Response {
    let mut response = match format {
        Format::Json => axum::Json(record::ReadLogsJson::from(read)).into_response(),
        Format::Ndjson => {
            let mut out = Vec::with_capacity(read.records.len() * 128);
            for record in &read.records {
                record::write(&mut out, record);
                out.push(b'\n');
            }
            ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
        }
        Format::Text => {
            let out: Vec<u8> = read
                .records
                .iter()
                .flat_map(|r| r.data.iter().copied())
                .collect();
            // The records' raw bytes: UTF-8 is not guaranteed, so no charset is claimed.
            ([(header::CONTENT_TYPE, "text/plain")], out).into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-drover-first-seq", HeaderValue::from(read.first_seq.0));
    headers.insert("x-drover-next-seq", HeaderValue::from(read.next_seq.0));
    headers.insert("x-drover-end-seq", HeaderValue::from(read.end_seq.0));
    headers.insert(
        "x-drover-truncated",
        HeaderValue::from(u64::from(read.truncated)),
    );
    headers.insert(
        "x-drover-output-bytes",
        HeaderValue::from(read.output_bytes),
    );
    headers.insert("x-drover-disk-bytes", HeaderValue::from(read.disk_bytes));
    response
}
