//! `drover ls`: agents in an aligned table.

use drover_proto::op::ListArgs;
use drover_proto::AgentState;

use super::spawn::key_value;
use super::Ctx;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only agents in this state (running, paused, exited, ...).
    #[arg(long, short, value_parser = parse_state)]
    state: Option<AgentState>,
    /// Only agents with this label (repeatable; all must match).
    #[arg(long = "label", short = 'l', value_name = "K=V", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// At most this many agents.
    #[arg(long)]
    limit: Option<u32>,
    /// Print only ids.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_state(text: &str) -> Result<AgentState, String> {
    AgentState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = AgentState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state {text:?} (one of {})", names.join(", "))
    })
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    // Every page; specs only when shown (the COMMAND column, `--json`).
    let agents = client
        .list_all(ListArgs {
            state: args.state,
            labels: args.labels.into_iter().collect(),
            limit: args.limit,
            cursor: None,
            specs: !args.quiet,
        })
        .await?;
    if ctx.json {
        output::json(&agents)?;
        return Ok(0);
    }
    if args.quiet {
        for agent in &agents {
            crate::outln!("{}", agent.id)?;
        }
        return Ok(0);
    }
    let colour = output::is_tty();
    let width = output::id_width(&agents);
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| {
            vec![
                output::short_id(agent, width),
                agent.name.clone().unwrap_or_else(|| "-".into()),
                agent.backend.clone(),
                output::state(agent.state(), colour),
                output::status_detail(agent),
                output::ago(agent.created_at),
                command_line(agent),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "NAME", "BACKEND", "STATE", "STATUS", "CREATED", "COMMAND",
        ],
        &rows,
    )?;
    Ok(0)
}

/// The agent's command or task, shortened for a table cell.
fn command_line(agent: &drover_proto::AgentInfo) -> String {
    let text = match &agent.spec.task {
        Some(task) => task.clone(),
        None => agent.spec.argv.join(" "),
    };
    let text = text.replace('\n', " ");
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(39).collect::<String>())
    } else {
        text
    }
}
