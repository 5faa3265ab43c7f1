//! `GET /metrics`: the daemon's counters in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use drover_proto::AgentState;

use super::{ApiError, AppState};
use crate::error::store_error;

/// Render every metric.
pub(super) async fn render(State(http): State<AppState>) -> Result<Response, ApiError> {
    let shared = &http.shared;
    let counts = shared
        .store
        .count_by_state()
        .map_err(|e| ApiError::from(store_error(e)))?;
    let mut out = String::with_capacity(4096);
    out.push_str("# HELP drover_agents Agents known, by state.\n# TYPE drover_agents gauge\n");
    for state in AgentState::ALL {
        let n = counts.get(&state).copied().unwrap_or(0);
        let _ = writeln!(out, "drover_agents{{state=\"{}\"}} {n}", state.as_str());
    }
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let single: [(&str, &str, &str, u64); 15] = [
        (
            "drover_agents_live",
            "gauge",
            "Agents with a live process.",
            shared.live_count() as u64,
        ),
        (
            "drover_spawns_total",
            "counter",
            "Agents spawned since the daemon started.",
            load(&shared.counters.spawns),
        ),
        (
            "drover_records_total",
            "counter",
            "Log records captured since the daemon started.",
            load(&shared.counters.records),
        ),
        (
            "drover_captured_bytes_total",
            "counter",
            "Log bytes captured since the daemon started.",
            load(&shared.counters.bytes),
        ),
        (
            "drover_followers",
            "gauge",
            "Open SSE log followers.",
            load(&shared.counters.followers),
        ),
        (
            "drover_event_followers",
            "gauge",
            "Open SSE event streams.",
            load(&http.event_followers),
        ),
        (
            "drover_http_stalled_total",
            "counter",
            "HTTP connections closed because the peer read nothing of a response for 30 s.",
            load(&http.stalled),
        ),
        (
            "drover_replies_dropped_total",
            "counter",
            "Control replies dropped: the client was gone or had not read them for 10 s.",
            load(&shared.counters.replies_dropped),
        ),
        (
            "drover_events_total",
            "counter",
            "The latest lifecycle event number.",
            shared.events.last().0,
        ),
        (
            "drover_log_disk_bytes",
            "gauge",
            "Bytes of logs and registry on disk.",
            shared.store.disk_usage(),
        ),
        (
            "drover_log_output_bytes",
            "gauge",
            "Bytes of output the logs keep (record data, before compression).",
            shared.store.output_bytes(),
        ),
        (
            "drover_records_dropped_total",
            "counter",
            "Log records lost for good: the agent ended while the store refused them.",
            load(&shared.counters.records_dropped),
        ),
        (
            "drover_store_backlog_bytes",
            "gauge",
            "Bytes of captured output kept in memory because the store refused them (a full disk).",
            load(&shared.counters.backlog_bytes),
        ),
        (
            "drover_registry_queued",
            "gauge",
            "State changes kept in memory because the registry refused them (a full disk).",
            shared.events.queued() as u64,
        ),
        (
            "drover_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            shared.started.elapsed().as_secs(),
        ),
    ];
    for (name, kind, help, value) in single {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let (mut by_op, mut errors) = {
        let stats = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
        let by_op: Vec<_> = stats.by_op.iter().map(|(op, v)| (*op, *v)).collect();
        let errors: Vec<_> = stats.errors.iter().map(|(c, n)| (*c, *n)).collect();
        (by_op, errors)
    };
    by_op.sort_unstable();
    errors.sort_unstable();
    let _ = writeln!(
        out,
        "# HELP drover_request_duration_seconds Requests served (control socket and HTTP), by op, \
         with their total latency.\n# TYPE drover_request_duration_seconds summary"
    );
    for (op, (count, total)) in &by_op {
        let _ = writeln!(
            out,
            "drover_request_duration_seconds_count{{op=\"{op}\"}} {count}\n\
             drover_request_duration_seconds_sum{{op=\"{op}\"}} {:.6}",
            total.as_secs_f64()
        );
    }
    let _ = writeln!(
        out,
        "# HELP drover_request_errors_total Requests refused, by error code.\n\
         # TYPE drover_request_errors_total counter"
    );
    for (code, n) in &errors {
        let _ = writeln!(out, "drover_request_errors_total{{code=\"{code}\"}} {n}");
    }
    super::agent_metrics::render(shared, &mut out).map_err(|e| ApiError::from(store_error(e)))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
