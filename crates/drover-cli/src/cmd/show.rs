//! `drover show`: one agent in detail.

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
        lines.push(("task", task.clone()));
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
    for (key, value) in lines {
        crate::outln!("{key:<8} {value}")?;
    }
    Ok(0)
}
