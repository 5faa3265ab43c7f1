//! Several agents at once: named, chosen by a label selector (`-l`), or `--all`; acted on
//! through `batch`, with one line of outcome per agent.

use std::collections::BTreeMap;

use drover_client::Client;
use drover_proto::limits::MAX_BATCH;
use drover_proto::op::{AgentRef, BatchArgs, BatchItem, ListArgs};
use drover_proto::{AgentInfo, AgentState, Op};

use super::Ctx;
use crate::output;
use crate::selector;

/// Which agents a verb acts on.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "targets", required = true, multiple = false)]
pub(crate) struct Targets {
    /// Agent ids, handles, unique id prefixes, or names.
    #[arg(group = "targets")]
    pub(crate) agents: Vec<String>,
    /// Agents whose labels match (repeatable, all must hold): k=v, k!=v, 'k in (a,b)',
    /// 'k notin (a,b)', k, !k.
    #[arg(
        long = "selector",
        visible_alias = "label",
        short = 'l',
        value_name = "SELECTOR",
        group = "targets"
    )]
    pub(crate) selector: Vec<String>,
    /// Every agent the verb applies to.
    #[arg(long, group = "targets")]
    pub(crate) all: bool,
}

/// Commands whose named agents may live on several hosts (`HOST/AGENT`): each host gets a
/// copy with its own agents (see [`crate::fleet::route`]).
pub(crate) trait Refs: Clone {
    /// The agents named on the command line (none for a selector or `--all`).
    fn refs(&self) -> &[String];
    /// The same command naming `refs` instead.
    fn set_refs(&mut self, refs: Vec<String>);
}

impl Refs for Targets {
    fn refs(&self) -> &[String] {
        &self.agents
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        self.agents = refs;
    }
}

/// An agent a verb acts on.
#[derive(Clone, Debug)]
pub(crate) struct Picked {
    /// What is sent to the daemon: as named, or the full id.
    pub(crate) reference: String,
    /// What the report shows: as named, or the agent's name or handle.
    pub(crate) label: String,
}

/// The states a verb applies to when agents are chosen by selector or `--all`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Applies {
    /// Agents still running (stop, kill, wait...), or waiting to restart.
    Live,
    /// Agents with a process now (signal): live, but not waiting to restart.
    Running,
    /// Agents that can be paused: running (pause).
    Pausable,
    /// Agents that can be resumed: paused (resume).
    Resumable,
    /// Ended agents (rm, prune).
    Ended,
    /// Any agent.
    Any,
}

impl Applies {
    fn admits(self, state: AgentState) -> bool {
        match self {
            Applies::Live => !state.is_terminal(),
            Applies::Running => !state.is_terminal() && state != AgentState::Restarting,
            Applies::Pausable => state == AgentState::Running,
            Applies::Resumable => state == AgentState::Paused,
            Applies::Ended => state.is_terminal(),
            Applies::Any => true,
        }
    }
}

impl Targets {
    /// Whether exactly one agent was named (its outcome prints as a single JSON object).
    pub(crate) fn is_one(&self) -> bool {
        self.agents.len() == 1
    }

    /// The references to act on: the named ones as given (the daemon resolves them and says
    /// which it cannot), else the full ids of the agents that the selector or `--all` picks.
    pub(crate) async fn resolve(
        &self,
        client: &Client,
        applies: Applies,
    ) -> anyhow::Result<Vec<String>> {
        Ok(self
            .pick(client, applies)
            .await?
            .into_iter()
            .map(|picked| picked.reference)
            .collect())
    }

    /// [`Targets::resolve`], each with the label to report it by.
    pub(crate) async fn pick(
        &self,
        client: &Client,
        applies: Applies,
    ) -> anyhow::Result<Vec<Picked>> {
        if !self.agents.is_empty() {
            return Ok(self
                .agents
                .iter()
                .map(|agent| Picked {
                    reference: agent.clone(),
                    label: agent.clone(),
                })
                .collect());
        }
        Ok(select(client, &self.selector, applies)
            .await?
            .iter()
            .map(|agent| Picked {
                reference: agent.id.to_string(),
                label: output::label(agent),
            })
            .collect())
    }
}

/// The agents whose labels match every selector flag and whose state `applies` admits
/// (all agents for no flags), oldest first, with their specs when `specs`. An invalid
/// selector is an error.
pub(crate) async fn select_with(
    client: &Client,
    flags: &[String],
    applies: Applies,
    specs: bool,
) -> anyhow::Result<Vec<AgentInfo>> {
    let selector = selector::parse_all(flags)?;
    // The daemon filters by the `k=v` part; the rest is checked here.
    let agents = client
        .list_all(ListArgs {
            labels: selector.equalities(),
            specs,
            ..ListArgs::default()
        })
        .await?;
    Ok(agents
        .into_iter()
        .filter(|agent| selector.matches(&agent.labels) && applies.admits(agent.state()))
        .collect())
}

/// [`select_with`] without specs.
pub(crate) async fn select(
    client: &Client,
    flags: &[String],
    applies: Applies,
) -> anyhow::Result<Vec<AgentInfo>> {
    select_with(client, flags, applies, false).await
}

/// Apply `op` to every agent through `batch` (in batches of the daemon's limit).
pub(crate) async fn batch(
    client: &Client,
    op: Op,
    agents: &[String],
    args: BTreeMap<String, rmpv::Value>,
) -> anyhow::Result<Vec<BatchItem>> {
    let mut results = Vec::with_capacity(agents.len());
    for chunk in agents.chunks(MAX_BATCH) {
        let reply = client
            .batch(BatchArgs {
                op,
                agents: chunk.iter().map(AgentRef::new).collect(),
                args: args.clone(),
                fail_fast: false,
            })
            .await?;
        results.extend(reply.results);
    }
    Ok(results)
}

/// Tally of outcomes: the exit status is the first failure's code, else 0.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    status: i32,
    /// What `--json` prints for several agents.
    items: Vec<serde_json::Value>,
}

impl Outcome {
    /// One agent's success, reported as `VERB LABEL (STATE)`.
    pub(crate) fn done(&mut self, ctx: &Ctx, verb: &str, info: &AgentInfo) -> anyhow::Result<()> {
        if ctx.json {
            self.items
                .push(serde_json::json!({ "agent": info.id, "ok": true, "info": info }));
            return Ok(());
        }
        super::agent_op::report(ctx, verb, info)
    }

    /// One agent's success without an agent to show (`rm`): `VERB LABEL`, and the
    /// reference sent in JSON.
    pub(crate) fn done_ref(
        &mut self,
        ctx: &Ctx,
        verb: &str,
        reference: &str,
        label: &str,
    ) -> anyhow::Result<()> {
        if ctx.json {
            self.items
                .push(serde_json::json!({ "agent": reference, "ok": true }));
            return Ok(());
        }
        crate::outln!("{verb} {}", ctx.qualify(label))?;
        Ok(())
    }

    /// One agent's failure, on stderr.
    pub(crate) fn failed(
        &mut self,
        ctx: &Ctx,
        agent: &str,
        code: drover_proto::ErrorCode,
        message: &str,
    ) {
        eprintln!(
            "drover: {}: {code}: {}",
            crate::output::shown(ctx.qualify(agent)),
            crate::output::shown(message)
        );
        if ctx.json {
            self.items.push(serde_json::json!({
                "agent": agent,
                "ok": false,
                "error": { "code": code, "message": message },
            }));
        }
        if self.status == 0 {
            self.status = code.exit_code();
        }
    }

    /// A batch item's failure.
    pub(crate) fn failed_item(&mut self, ctx: &Ctx, item: &BatchItem) {
        match &item.error {
            Some(error) => self.failed(ctx, &item.agent.0, error.code, &error.message),
            None => self.failed(
                ctx,
                &item.agent.0,
                drover_proto::ErrorCode::Internal,
                "failed",
            ),
        }
    }

    /// A client error for one agent.
    pub(crate) fn failed_call(
        &mut self,
        ctx: &Ctx,
        agent: &str,
        error: &drover_client::ClientError,
    ) {
        let code = error.code().unwrap_or(drover_proto::ErrorCode::Internal);
        eprintln!(
            "drover: {}: {}",
            crate::output::shown(ctx.qualify(agent)),
            crate::output::shown(error)
        );
        if ctx.json {
            self.items.push(serde_json::json!({
                "agent": agent,
                "ok": false,
                "error": { "code": code, "message": error.to_string() },
            }));
        }
        if self.status == 0 {
            self.status = error.code().map(|c| c.exit_code()).unwrap_or(1);
        }
    }

    /// Print the JSON of several agents (one agent's was printed as it came), or hand it to
    /// the fleet's one document, and return the exit status.
    pub(crate) fn finish(self, ctx: &Ctx, one: bool) -> anyhow::Result<i32> {
        if let Some(sink) = &ctx.json_sink {
            sink.extend(ctx.host.as_deref(), self.items);
            return Ok(self.status);
        }
        if ctx.json {
            if one {
                match self.items.into_iter().next() {
                    Some(item) if !item["info"].is_null() => output::json(&item["info"])?,
                    _ => {}
                }
            } else {
                output::json(&self.items)?;
            }
        }
        Ok(self.status)
    }
}

/// A selector that matched nothing is said on stderr, as `kubectl` says "No resources found":
/// silence reads like success on something. (On one host of several, the fleet view says it.)
pub(crate) fn say_if_none(ctx: &Ctx, agents: &[String]) {
    if agents.is_empty() && !ctx.json && ctx.host.is_none() {
        eprintln!("drover: no agent matches");
    }
}
