//! `drover cost`: what AI agents have cost and used, summed by label, backend and day.

use std::collections::BTreeMap;

use drover_proto::{AgentInfo, Tokens, Usd};

use super::Ctx;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover cost                          by backend
  drover cost --by day                 by day (UTC) the agents were created
  drover cost --by label:team          by the value of label team
  drover cost -l team=a --by model     agents labelled team=a, by model")]
pub(crate) struct Args {
    /// Group by backend, model, day (UTC, of creation), or label:KEY.
    #[arg(long, default_value = "backend", value_parser = parse_group)]
    by: Group,
    /// Only agents whose labels match (repeatable): k=v, k!=v, 'k in (a,b)', k, !k.
    #[arg(long = "selector", visible_alias = "label", short = 'l')]
    selector: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Group {
    Backend,
    Model,
    Day,
    Label(String),
}

fn parse_group(text: &str) -> Result<Group, String> {
    match text {
        "backend" => Ok(Group::Backend),
        "model" => Ok(Group::Model),
        "day" => Ok(Group::Day),
        other => match other.strip_prefix("label:") {
            Some(key) if !key.is_empty() => Ok(Group::Label(key.to_owned())),
            _ => Err(format!(
                "unknown grouping {other:?} (backend, model, day or label:KEY)"
            )),
        },
    }
}

/// One group's sums.
#[derive(Debug, Default, serde::Serialize)]
struct Sum {
    agents: u64,
    /// Agents whose CLI reports a cost (the others count tokens only).
    priced: u64,
    cost_usd: Usd,
    turns: u64,
    tokens: Tokens,
}

fn key(agent: &AgentInfo, by: &Group) -> String {
    match by {
        Group::Backend => agent.backend.clone(),
        Group::Model => agent
            .activity
            .as_ref()
            .and_then(|a| a.model.as_deref())
            .map_or_else(
                || "-".into(),
                |model| drover_agent::printable(model, false).into_owned(),
            ),
        Group::Day => super::logs::rfc3339(agent.created_at)[..10].to_owned(),
        Group::Label(key) => output::shown(agent.labels.get(key).map_or("-", String::as_str)),
    }
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agents =
        super::many::select_with(&client, &args.selector, super::many::Applies::Any, false).await?;
    let mut sums: BTreeMap<String, Sum> = BTreeMap::new();
    for agent in &agents {
        let Some(activity) = &agent.activity else {
            continue;
        };
        let sum = sums.entry(key(agent, &args.by)).or_default();
        sum.agents += 1;
        // Every run of a restart policy's agent, not only the last.
        if let Some(cost) = activity.all_cost() {
            sum.priced += 1;
            sum.cost_usd = sum.cost_usd.saturating_add(cost);
        }
        sum.turns = sum.turns.saturating_add(activity.all_turns());
        sum.tokens.add(&activity.all_tokens());
    }
    if ctx.json {
        return output::json(&sums).map(|()| 0);
    }
    let mut total = Sum::default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (group, sum) in &sums {
        total.agents += sum.agents;
        total.priced += sum.priced;
        total.cost_usd = total.cost_usd.saturating_add(sum.cost_usd);
        total.turns += sum.turns;
        total.tokens.add(&sum.tokens);
        rows.push(row(group, sum));
    }
    if sums.len() > 1 {
        rows.push(row("TOTAL", &total));
    }
    let by = match &args.by {
        Group::Backend => "BACKEND".to_owned(),
        Group::Model => "MODEL".to_owned(),
        Group::Day => "DAY".to_owned(),
        Group::Label(key) => key.to_uppercase(),
    };
    output::table(
        &[
            &by,
            "AGENTS",
            "COST",
            "TURNS",
            "INPUT",
            "OUTPUT",
            "CACHE READ",
            "CACHE WRITE",
        ],
        &rows,
    )?;
    Ok(0)
}

fn row(group: &str, sum: &Sum) -> Vec<String> {
    let cost = if sum.priced == 0 {
        "-".to_owned()
    } else if sum.priced < sum.agents {
        // Some CLIs report no cost: the sum is of those that do.
        format!(
            "${:.4} ({} of {})",
            sum.cost_usd.dollars(),
            sum.priced,
            sum.agents
        )
    } else {
        format!("${:.4}", sum.cost_usd.dollars())
    };
    vec![
        group.to_owned(),
        sum.agents.to_string(),
        cost,
        sum.turns.to_string(),
        sum.tokens.input.to_string(),
        sum.tokens.output.to_string(),
        sum.tokens.cache_read.to_string(),
        sum.tokens.cache_write.to_string(),
    ]
}
