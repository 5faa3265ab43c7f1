//! `drover show`: one agent in detail.

use drover_proto::op::{AgentRef, ReadLogsArgs};

use super::agent_op::One;
use super::Ctx;
use crate::output;

pub(crate) async fn run(ctx: &Ctx, args: One) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agent = client.get(&args.agent).await?;
    if ctx.json {
        output::json(&agent)?;
        return Ok(0);
    }
    let colour = output::is_colour();
    let mut lines = vec![
        ("id", agent.id.to_string()),
        ("name", agent.name.clone().unwrap_or_else(|| "-".into())),
        ("backend", agent.backend.clone()),
        ("state", output::state(agent.state(), colour)),
    ];
    let detail = output::status_detail(&agent);
    if !detail.is_empty() {
        lines.push(("status", detail));
    }
    if let Some(pid) = agent.status.pid() {
        lines.push(("pid", pid.to_string()));
    }
    if let Some(restart) = &agent.spec.restart {
        let most = restart
            .max_restarts
            .map_or_else(String::new, |most| format!(" (at most {most})"));
        lines.push((
            "restarts",
            format!(
                "{}{most}, policy {}; this is run {}",
                agent.restarts,
                restart.policy.as_str(),
                agent.restarts.saturating_add(1)
            ),
        ));
    }
    lines.push(("created", output::ago(agent.created_at)));
    if let Some(start) = agent.status.started_at() {
        lines.push(("started", output::ago(start)));
    }
    if let Some(end) = agent.status.ended_at() {
        lines.push(("ended", output::ago(end)));
    }
    if !agent.spec.argv.is_empty() {
        lines.push(("argv", format!("{:?}", agent.spec.argv)));
    }
    if let Some(task) = &agent.spec.task {
        lines.push(("task", drover_agent::printable(task, true).into_owned()));
    }
    if let Some(model) = &agent.spec.model {
        lines.push(("model", model.clone()));
    }
    if let Some(cwd) = &agent.spec.cwd {
        lines.push(("cwd", cwd.clone()));
    }
    if !agent.labels.is_empty() {
        let labels: Vec<String> = agent
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(("labels", labels.join(",")));
    }
    // The log's extent and size: a read of no records (the last 0) answers just that.
    let log = client
        .read_logs(ReadLogsArgs {
            tail: Some(0),
            ..ReadLogsArgs::new(AgentRef::new(agent.id.to_string()))
        })
        .await?;
    lines.push((
        "log",
        format!(
            "seq {}..{}, {} of output kept, {} on disk",
            log.first_seq,
            log.end_seq,
            bytes(log.output_bytes),
            bytes(log.disk_bytes)
        ),
    ));
    if let Some(parent) = agent.spec.parent {
        lines.push(("parent", parent.to_string()));
    }
    if let Some(activity) = &agent.activity {
        // What the agent's output said: shown, never run by the terminal.
        lines.extend(
            activity_lines(activity)
                .into_iter()
                .map(|(key, value)| (key, drover_agent::printable(&value, false).into_owned())),
        );
    }
    for (key, value) in lines {
        // What a daemon or a spawner chose (a label, a model, a path) is shown, never run; the
        // state is ours, in colour, and the task keeps its lines (made printable above).
        if key == "state" || key == "task" {
            crate::outln!("{key:<8} {value}")?;
        } else {
            crate::outln!("{key:<8} {}", output::shown(&value))?;
        }
    }
    Ok(0)
}

/// What an AI agent is doing, one `show` line each.
fn activity_lines(a: &drover_proto::Activity) -> Vec<(&'static str, String)> {
    let mut lines = vec![("phase", a.phase.as_str().to_owned())];
    if let Some(session) = &a.session_id {
        lines.push(("session", session.clone()));
    }
    if let Some(model) = &a.model {
        lines.push(("model", model.clone()));
    }
    lines.push(("turns", a.turns.to_string()));
    let t = &a.tokens;
    lines.push((
        "tokens",
        format!(
            "{} in, {} out, {} cache read, {} cache write",
            t.input, t.output, t.cache_read, t.cache_write
        ),
    ));
    if let Some(cost) = a.cost_usd {
        lines.push(("cost", format!("${:.4}", cost.dollars())));
    }
    let earlier = &a.earlier_runs;
    if !earlier.is_none() {
        let t = &earlier.tokens;
        let cost = earlier
            .cost_usd
            .map_or_else(String::new, |c| format!(", ${:.4}", c.dollars()));
        lines.push((
            "earlier",
            format!(
                "{} runs: {} turns, {} in, {} out, {} cache read, {} cache write{cost}",
                earlier.runs, earlier.turns, t.input, t.output, t.cache_read, t.cache_write
            ),
        ));
    }
    if let Some(tool) = &a.current_tool {
        lines.push(("tool", format!("{}: {}", tool.name, tool.summary)));
    }
    for attention in &a.attention {
        lines.push((
            "needs",
            format!("{}: {}", attention.reason.as_str(), attention.detail),
        ));
    }
    if let Some(result) = &a.result {
        let label = if a.is_error { "error" } else { "result" };
        lines.push((label, result.replace('\n', " ")));
    } else if let Some(text) = &a.last_text {
        lines.push(("said", text.replace('\n', " ")));
    }
    if a.ignored_lines > 0 {
        lines.push((
            "ignored",
            format!("{} lines not understood", a.ignored_lines),
        ));
    }
    lines
}

/// A byte count for people: `512 B`, `1.5 KiB`, `64.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(super::bytes(0), "0 B");
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(64 << 20), "64.0 MiB");
        assert_eq!(super::bytes(3 << 40), "3.0 TiB");
    }
}
