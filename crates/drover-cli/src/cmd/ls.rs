//! `drover ls`: agents in an aligned table, newest first.

use drover_proto::{AgentInfo, AgentState};

use super::many::{self, Applies};
use super::Ctx;
use crate::fleet::HOST_DEADLINE;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover ls                         every agent, newest first
  drover ls -s running -l team=a    running agents labelled team=a
  drover ls -l 'tier in (web,db)'   Kubernetes selectors: k=v, k!=v, in, notin, k, !k
  drover ls --limit 5 --wide        the newest five, with pid, restarts, labels and cwd
  drover ls --attention             agents that need a person first (PHASE ends in !)
  drover ls -q | xargs drover rm    ids only, for scripts
  drover --context b1,b2 ls         both daemons' agents, merged, with a HOST column")]
pub(crate) struct Args {
    /// Only agents in this state (running, paused, exited, ...).
    #[arg(long, short, value_parser = parse_state)]
    state: Option<AgentState>,
    /// Only agents whose labels match (repeatable, all must hold): k=v, k!=v, 'k in (a,b)',
    /// 'k notin (a,b)', k, !k.
    #[arg(
        long = "selector",
        visible_alias = "label",
        short = 'l',
        value_name = "SELECTOR"
    )]
    selector: Vec<String>,
    /// Only the newest N agents (after filtering and before sorting).
    #[arg(long)]
    limit: Option<usize>,
    /// Order: created (newest first, the default), name, state, or ended.
    #[arg(long, value_enum, default_value_t = Sort::Created)]
    sort: Sort,
    /// Oldest first (reverse the order).
    #[arg(long, short)]
    reverse: bool,
    /// Agents that need a person first (permission denied, error, turn limit, a question),
    /// then the chosen order.
    #[arg(long)]
    attention: bool,
    /// More columns: pid, restarts, labels, working directory.
    #[arg(long, short)]
    wide: bool,
    /// Print only full ids, one a line.
    #[arg(long, short, conflicts_with = "wide")]
    quiet: bool,
    /// One JSON object per line instead of one JSON array (`--json`).
    #[arg(long)]
    jsonl: bool,
}

/// The orders `ls` sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Sort {
    Created,
    Name,
    State,
    Ended,
}

fn parse_state(text: &str) -> Result<AgentState, String> {
    AgentState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = AgentState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown state {text:?} (one of {})", names.join(", "))
    })
}

/// An agent as listed, with its host when several were asked.
struct Listed {
    host: Option<String>,
    agent: AgentInfo,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    // Specs only when shown (COMMAND, CWD, JSON): each can be up to 1 MiB.
    let specs = !args.quiet;
    let hosts = ctx.hosts()?;
    let fleet = hosts.is_some();
    let (mut agents, status) = match hosts {
        None => {
            let client = ctx.client().await?;
            let agents = many::select_with(&client, &args.selector, Applies::Any, specs).await?;
            let listed = agents
                .into_iter()
                .map(|agent| Listed { host: None, agent })
                .collect();
            (listed, 0)
        }
        Some(hosts) => gather(ctx, &hosts, &args.selector, specs).await?,
    };
    agents.retain(|listed| args.state.is_none_or(|state| listed.agent.state() == state));
    // Listed oldest first; the newest N are the last N.
    if let Some(limit) = args.limit {
        let skip = agents.len().saturating_sub(limit);
        agents.drain(..skip);
    }
    sort(&mut agents, args.sort);
    if args.reverse {
        agents.reverse();
    }
    if args.attention {
        // Stable: the chosen order holds within each group.
        agents.sort_by_key(|listed| !needs_attention(&listed.agent));
    }
    if args.jsonl {
        for listed in &agents {
            let line = match &listed.host {
                Some(_) => serde_json::to_string(&json_of(listed)?)?,
                None => serde_json::to_string(&listed.agent)?,
            };
            crate::outln!("{line}")?;
        }
        return Ok(status);
    }
    if ctx.json {
        if fleet {
            let all = agents.iter().map(json_of).collect::<Result<Vec<_>, _>>()?;
            output::json(&all)?;
        } else {
            let all: Vec<&AgentInfo> = agents.iter().map(|listed| &listed.agent).collect();
            output::json(&all)?;
        }
        return Ok(status);
    }
    if args.quiet {
        // `HOST/ID`, which every verb on agents takes.
        for listed in &agents {
            match &listed.host {
                Some(host) => crate::outln!("{host}/{}", listed.agent.id)?,
                None => crate::outln!("{}", listed.agent.id)?,
            }
        }
        return Ok(status);
    }
    let colour = output::is_colour();
    // AI agents' columns, when any listed agent has an activity.
    let aware = agents.iter().any(|listed| listed.agent.activity.is_some());
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|listed| {
            let agent = &listed.agent;
            let mut row: Vec<String> = listed.host.iter().cloned().collect();
            // Text a daemon (another host's, perhaps) or a spawner chose is shown, never run.
            row.extend([
                agent.id.handle(),
                output::shown(agent.name.as_deref().unwrap_or("-")),
                output::shown(&agent.backend),
                output::state(agent.state(), colour),
                output::shown(output::status_detail(agent)),
                output::ago(agent.created_at),
            ]);
            if aware {
                row.extend(activity_cells(agent));
            }
            if args.wide {
                row.push(
                    agent
                        .status
                        .pid()
                        .map_or_else(|| "-".into(), |pid| pid.to_string()),
                );
                row.push(agent.restarts.to_string());
                row.push(output::shown(labels(agent)));
                row.push(output::shown(agent.spec.cwd.as_deref().unwrap_or("-")));
            }
            row.push(output::shown(command_line(agent)));
            row
        })
        .collect();
    let mut header = if fleet { vec!["HOST"] } else { Vec::new() };
    header.extend(["ID", "NAME", "BACKEND", "STATE", "STATUS", "CREATED"]);
    if aware {
        header.extend(["PHASE", "TURNS", "COST"]);
    }
    if args.wide {
        header.extend(["PID", "RESTARTS", "LABELS", "CWD"]);
    }
    header.push("COMMAND");
    output::table(&header, &rows)?;
    Ok(status)
}

/// Every host's agents, asked concurrently, oldest first; a host that fails (or does not
/// answer within [`HOST_DEADLINE`]) is reported on stderr as `drover: HOST: unreachable:
/// REASON` and sets the status (1, or the error code's status, e.g. 6 for `unauthorized`),
/// while the others are listed.
async fn gather(
    ctx: &Ctx,
    hosts: &[String],
    selector: &[String],
    specs: bool,
) -> anyhow::Result<(Vec<Listed>, i32)> {
    // A bad selector is the user's error, said once, not once per host.
    crate::selector::parse_all(selector)?;
    let answers = futures::future::join_all(hosts.iter().map(|host| async move {
        let ctx = ctx.on(host, true);
        let listing = async {
            let client = ctx.client().await?;
            many::select_with(&client, selector, Applies::Any, specs).await
        };
        let result = match tokio::time::timeout(HOST_DEADLINE, listing).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "no answer within {} ms",
                HOST_DEADLINE.as_millis()
            )),
        };
        (host, result)
    }))
    .await;
    let mut status = 0;
    let mut listed = Vec::new();
    for (host, result) in answers {
        match result {
            Ok(agents) => listed.extend(agents.into_iter().map(|agent| Listed {
                host: Some(host.clone()),
                agent,
            })),
            Err(error) => {
                eprintln!(
                    "drover: {host}: unreachable: {}",
                    crate::output::shown(format_args!("{error:#}"))
                );
                if status == 0 {
                    status = output::exit_code(&error);
                }
            }
        }
    }
    listed.sort_by_key(|l| (l.agent.created_at, l.agent.id));
    Ok((listed, status))
}

/// An agent's JSON, with `host` when several hosts were asked.
fn json_of(listed: &Listed) -> serde_json::Result<serde_json::Value> {
    crate::fleet::with_host(listed.host.as_deref(), &listed.agent)
}

fn needs_attention(agent: &AgentInfo) -> bool {
    agent.activity.as_ref().is_some_and(|a| a.needs_attention())
}

/// PHASE (with `!` when a person is needed), TURNS and COST, or dashes.
fn activity_cells(agent: &AgentInfo) -> [String; 3] {
    let Some(activity) = &agent.activity else {
        return ["-".into(), "-".into(), "-".into()];
    };
    let mark = if activity.needs_attention() { "!" } else { "" };
    // Every run of a restart policy's agent, as `cost` counts them.
    [
        format!("{}{mark}", activity.phase.as_str()),
        activity.all_turns().to_string(),
        activity
            .all_cost()
            .map_or_else(|| "-".into(), |c| format!("${:.4}", c.dollars())),
    ]
}

/// Sort in place; ties keep creation order, newest first.
fn sort(agents: &mut [Listed], by: Sort) {
    agents.sort_by(|a, b| {
        let (a, b) = (&a.agent, &b.agent);
        let newest_first = (b.created_at, b.id).cmp(&(a.created_at, a.id));
        let primary = match by {
            Sort::Created => std::cmp::Ordering::Equal,
            Sort::Name => a.name.cmp(&b.name),
            Sort::State => a.state().cmp(&b.state()),
            // The most recently ended first; live agents (no end) before them.
            Sort::Ended => b
                .status
                .ended_at()
                .unwrap_or(i64::MAX)
                .cmp(&a.status.ended_at().unwrap_or(i64::MAX)),
        };
        primary.then(newest_first)
    });
}

/// `k=v,k2=v2`, or `-`.
fn labels(agent: &AgentInfo) -> String {
    if agent.labels.is_empty() {
        return "-".into();
    }
    agent
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The agent's command or task, shortened for a table cell.
fn command_line(agent: &AgentInfo) -> String {
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
