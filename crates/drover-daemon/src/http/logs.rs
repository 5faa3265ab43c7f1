//! `GET /v1/agents/{agent}/logs`: stored history as JSON, NDJSON or plain text, or, with
//! `follow=true`, a Server-Sent Events stream (see `follow.rs`), or, with `download=true`, the
//! whole range as one streamed file.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use drover_proto::limits::MAX_READ_LIMIT;
use drover_proto::op::{AgentArgs, AgentRef, ReadLogsArgs, ReadLogsResult};
use drover_proto::{AgentInfo, ErrorCode, Request, Seq, StreamKind};

use super::body::AgentPath;
use super::follow::{self, FollowFrom};
use super::query::Params;
use super::{auth, call, record, sse, ApiError, AppState, REQUEST_TIMEOUT};
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
        if params.flag("download")? {
            return Err(ApiError::bad_request(
                "follow=true and download=true do not go together: a download ends",
            ));
        }
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
    let download = params.flag("download")?;
    let format = match (download, params.get("format")) {
        // A file is text unless asked otherwise, whatever the browser's `Accept`.
        (true, None) => Format::Text,
        _ => Format::choose(&params, &headers)?,
    };
    if download {
        if format == Format::Json {
            return Err(ApiError::bad_request(
                "download=true answers format=text or format=ndjson",
            ));
        }
        if params.get("limit").is_some() {
            return Err(ApiError::bad_request(
                "download=true is the whole range; limit does not apply",
            ));
        }
    }
    let args = ReadLogsArgs {
        agent,
        since_seq: params.parse::<u64>("since_seq")?.map(Seq),
        until_seq: params.parse::<u64>("until_seq")?.map(Seq),
        tail: params.parse("tail")?,
        since: params.time("since")?,
        stream,
        limit: params.parse("limit")?,
    };
    if download {
        return download_file(&http, format, args).await;
    }
    Ok(render(format, &read_page(&http, args).await?))
}

/// One `read_logs` call, bounded by the request timeout.
async fn read_page(http: &AppState, args: ReadLogsArgs) -> Result<ReadLogsResult, ApiError> {
    let read = tokio::time::timeout(REQUEST_TIMEOUT, call(&http.shared, Request::ReadLogs(args)))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Timeout, "reading the log took too long"))??;
    let Reply::ReadLogs(read) = read else {
        return Err(ApiError::new(
            ErrorCode::Internal,
            "read_logs returned no records",
        ));
    };
    Ok(read)
}

/// `download=true`: every record of the range as one file (`Content-Disposition: attachment`),
/// read a page of [`MAX_READ_LIMIT`] records at a time as the client takes it, so memory stays
/// one page whatever the log's size. The range ends where the log ended when the download
/// began (or at `until_seq`). Errors before the first byte are answered as usual; a failure
/// after it (a read error, retention removing records not yet sent, shutdown, the credential
/// revoked) aborts the connection, so the client sees an incomplete transfer rather than a
/// file with a hole in it.
async fn download_file(
    http: &AppState,
    format: Format,
    args: ReadLogsArgs,
) -> Result<Response, ApiError> {
    let caller = auth::CALLER
        .try_with(|caller| *caller)
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "request without a caller"))?;
    // The agent by its id from here on: a name reused while the file is sent changes nothing.
    let info = match call(&http.shared, Request::Get(AgentArgs { agent: args.agent })).await? {
        Reply::Agent(result) => result.agent,
        _ => return Err(ApiError::new(ErrorCode::Internal, "get returned no agent")),
    };
    let agent = AgentRef::new(info.id.to_string());
    let first = read_page(
        http,
        ReadLogsArgs {
            agent: agent.clone(),
            limit: Some(MAX_READ_LIMIT),
            ..args
        },
    )
    .await?;
    let end = args
        .until_seq
        .map_or(first.end_seq, |until| until.min(first.end_seq));
    let pages = Pages {
        http: http.clone(),
        caller,
        args: ReadLogsArgs {
            agent,
            since_seq: Some(first.next_seq),
            until_seq: Some(end),
            tail: None,
            since: None,
            stream: args.stream,
            limit: Some(MAX_READ_LIMIT),
        },
        end,
        format,
        stop: http.stop.clone(),
    };
    let first_bytes = Bytes::from(body_bytes(format, &first));
    let body = futures::stream::unfold(
        (Some(first_bytes), Some(pages)),
        |(first, pages)| async move {
            if let Some(bytes) = first {
                return Some((Ok(bytes), (None, pages)));
            }
            let mut pages = pages?;
            match pages.next().await? {
                Ok(bytes) => Some((Ok(bytes), (None, Some(pages)))),
                Err(error) => Some((Err(error), (None, None))),
            }
        },
    );
    let mut response = render(format, &first);
    *response.body_mut() = Body::from_stream(body);
    let headers = response.headers_mut();
    headers.insert("x-drover-next-seq", HeaderValue::from(end.0));
    let extension = if format == Format::Ndjson {
        "ndjson"
    } else {
        "log"
    };
    let file = format!("{}.{extension}", file_name(&info));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The pages of a download after its first.
struct Pages {
    http: AppState,
    caller: crate::caller::Caller,
    /// The next page's read: `since_seq` is where it starts.
    args: ReadLogsArgs,
    end: Seq,
    format: Format,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Pages {
    /// The next page's bytes; `None` once the range is sent.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let since = self.args.since_seq?;
        if since >= self.end {
            return None;
        }
        let read = tokio::select! {
            biased;
            _ = self.stop.wait_for(|stopped| *stopped) => {
                return Some(Err(std::io::Error::other("the daemon is shutting down")));
            }
            read = auth::CALLER.scope(self.caller, read_page(&self.http, self.args.clone())) => read,
        };
        let read = match read {
            Ok(read) => read,
            Err(error) => return Some(Err(std::io::Error::other(error.0.message))),
        };
        if read.truncated {
            return Some(Err(std::io::Error::other(
                "retention removed records before they were sent",
            )));
        }
        if read.next_seq <= since {
            // Short of the end and no further: ending here would pass a short file for whole.
            return Some(Err(std::io::Error::other(
                "the log read stopped short of the download's end",
            )));
        }
        self.args.since_seq = Some(read.next_seq);
        Some(Ok(Bytes::from(body_bytes(self.format, &read))))
    }
}

/// The read's bounds as `X-Drover-*` headers (every format carries them).
fn set_bounds(headers: &mut HeaderMap, read: &ReadLogsResult) {
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
}

/// A download's file name: the agent's name, else its id, kept to letters, digits, `.`, `-`
/// and `_` (anything else becomes `_`), so the header needs no quoting rules.
fn file_name(info: &AgentInfo) -> String {
    let base = info.name.clone().unwrap_or_else(|| info.id.to_string());
    let base = base
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    // No hidden file (`...` is a valid name).
    match base.trim_start_matches('.') {
        "" => info.id.to_string(),
        rest => rest.to_owned(),
    }
}

/// A page's records as NDJSON lines or their bytes (JSON is rendered whole by [`render`]).
fn body_bytes(format: Format, read: &ReadLogsResult) -> Vec<u8> {
    match format {
        Format::Ndjson => {
            let mut out = Vec::with_capacity(read.records.len() * 128);
            for record in &read.records {
                record::write(&mut out, record);
                out.push(b'\n');
            }
            out
        }
        Format::Text | Format::Json => read
            .records
            .iter()
            .flat_map(|r| r.data.iter().copied())
            .collect(),
    }
}

/// History in the chosen format. NDJSON and text carry the read's bounds in headers.
fn render(format: Format, read: &ReadLogsResult) -> Response {
    let mut response = match format {
        Format::Json => axum::Json(record::ReadLogsJson::from(read)).into_response(),
        Format::Ndjson => (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            body_bytes(format, read),
        )
            .into_response(),
        // The records' raw bytes: UTF-8 is not guaranteed, so no charset is claimed.
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain")],
            body_bytes(format, read),
        )
            .into_response(),
    };
    set_bounds(response.headers_mut(), read);
    response
}
