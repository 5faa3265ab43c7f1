//! The AI-agent part of `GET /metrics`: agents by phase, and cost, turns and tokens by backend
//! and model, summed over the agents the registry keeps (ended agents drop out when retention
//! removes them, so these are gauges, not counters). A live agent counts with its latest
//! reading; an ended one with its last.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use drover_proto::{Phase, Tokens, Usd};
use drover_store::ListFilter;

use crate::daemon::Shared;

#[derive(Default)]
struct Sum {
    cost: Usd,
    turns: u64,
    tokens: Tokens,
}

/// Append the agent metrics to `out`.
pub(super) fn render(shared: &Shared, out: &mut String) -> Result<(), drover_store::StoreError> {
    let mut phases: BTreeMap<&'static str, u64> =
        Phase::ALL.iter().map(|p| (p.as_str(), 0)).collect();
    let mut sums: BTreeMap<(String, String), Sum> = BTreeMap::new();
    shared.store.list_each(&ListFilter::default(), |info| {
        let Some(mut activity) = info.activity else {
            return true;
        };
        if let Some(live) = shared.live(info.id) {
            if let Some(latest) = live.info.borrow().activity.clone() {
                activity = latest;
            }
        }
        *phases.entry(activity.phase.as_str()).or_default() += 1;
        let model = activity.model.clone().unwrap_or_default();
        let sum = sums.entry((info.backend, model)).or_default();
        // Every run of a restart policy's agent, not only the last.
        sum.cost = sum
            .cost
            .saturating_add(activity.all_cost().unwrap_or_default());
        sum.turns = sum.turns.saturating_add(activity.all_turns());
        sum.tokens.add(&activity.all_tokens());
        true
    })?;
    out.push_str(
        "# HELP drover_agent_phase AI agents kept, by the phase of their activity.\n\
         # TYPE drover_agent_phase gauge\n",
    );
    for (phase, n) in &phases {
        let _ = writeln!(out, "drover_agent_phase{{phase=\"{phase}\"}} {n}");
    }
    out.push_str(
        "# HELP drover_agent_cost_usd Cost the agent CLIs reported, summed over the agents kept.\n\
         # TYPE drover_agent_cost_usd gauge\n",
    );
    for ((backend, model), sum) in &sums {
        let labels = labels(backend, model);
        let _ = writeln!(
            out,
            "drover_agent_cost_usd{{{labels}}} {}",
            sum.cost.dollars()
        );
    }
    out.push_str(
        "# HELP drover_agent_turns Model round trips, summed over the agents kept.\n\
         # TYPE drover_agent_turns gauge\n",
    );
    for ((backend, model), sum) in &sums {
        let labels = labels(backend, model);
        let _ = writeln!(out, "drover_agent_turns{{{labels}}} {}", sum.turns);
    }
    out.push_str(
        "# HELP drover_agent_tokens Tokens used, by kind, summed over the agents kept.\n\
         # TYPE drover_agent_tokens gauge\n",
    );
    for ((backend, model), sum) in &sums {
        let labels = labels(backend, model);
        let t = &sum.tokens;
        for (kind, n) in [
            ("input", t.input),
            ("output", t.output),
            ("cache_read", t.cache_read),
            ("cache_write", t.cache_write),
        ] {
            let _ = writeln!(out, "drover_agent_tokens{{{labels},kind=\"{kind}\"}} {n}");
        }
    }
    Ok(())
}

fn labels(backend: &str, model: &str) -> String {
    format!(
        "backend=\"{}\",model=\"{}\"",
        escape(backend),
        escape(model)
    )
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
