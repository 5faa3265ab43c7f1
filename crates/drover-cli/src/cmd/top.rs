//! `drover top`: live CPU and memory of each running agent, from `/proc` of its process group.

use std::time::{Duration, Instant};

use drover_proto::AgentInfo;

use super::many::{self, Applies};
use super::Ctx;
use crate::output;
use crate::procfs::{self, Usage};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover top                        refresh every 2 s until Ctrl-C
  drover top -n 1 --interval 1s     one measurement over one second
  drover top -l team=a              only agents labelled team=a")]
pub(crate) struct Args {
    /// Time between refreshes (CPU is measured over it).
    #[arg(long, default_value = "2s", value_parser = crate::duration::parse)]
    interval: Duration,
    /// Stop after this many refreshes [default: never].
    #[arg(long, short = 'n')]
    iterations: Option<u64>,
    /// Only agents whose labels match: k=v, k!=v, 'k in (a,b)', k, !k.
    #[arg(
        long = "selector",
        visible_alias = "label",
        short = 'l',
        value_name = "SELECTOR"
    )]
    selector: Vec<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    if !ctx.target()?.is_local() {
        anyhow::bail!(
            "top reads /proc on this host, and this daemon runs on another one: run it there"
        );
    }
    if args.interval.is_zero() {
        anyhow::bail!("--interval must be positive");
    }
    let client = ctx.client().await?;
    let ticks_per_second = clock_ticks()?;
    let page_bytes = page_size()?;
    let mut before = procfs::by_group()?;
    let mut measured_at = Instant::now();
    let mut frame = 0u64;
    while args.iterations.is_none_or(|n| frame < n) {
        tokio::time::sleep(args.interval).await;
        let agents = many::select(&client, &args.selector, Applies::Live).await?;
        let now = procfs::by_group()?;
        let elapsed = measured_at.elapsed().as_secs_f64();
        measured_at = Instant::now();
        let rows: Vec<Vec<String>> = agents
            .iter()
            .filter_map(|agent| {
                let group = agent.status.pid()?;
                let usage = now.get(&group).copied().unwrap_or_default();
                let earlier = before.get(&group).copied().unwrap_or(usage);
                let ticks = usage.cpu_ticks.saturating_sub(earlier.cpu_ticks);
                let cpu = ticks as f64 / ticks_per_second / elapsed * 100.0;
                Some(row(agent, group, usage, cpu, usage.rss_pages * page_bytes))
            })
            .collect();
        before = now;
        frame += 1;
        if output::is_colour() {
            // Redraw in place on a terminal, like top(1).
            crate::outln!("\x1b[H\x1b[2J")?;
        } else if frame > 1 {
            crate::outln!()?;
        }
        output::table(
            &["ID", "NAME", "PID", "PROCS", "CPU%", "MEM", "STATE"],
            &rows,
        )?;
    }
    Ok(0)
}

fn row(agent: &AgentInfo, group: u32, usage: Usage, cpu: f64, rss: u64) -> Vec<String> {
    vec![
        agent.id.handle(),
        agent.name.clone().unwrap_or_else(|| "-".into()),
        group.to_string(),
        usage.processes.to_string(),
        format!("{cpu:.1}"),
        bytes(rss),
        agent.state().as_str().to_owned(),
    ]
}

/// `812K`, `12.3M`, `1.1G`.
fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let n = n as f64;
    if n < K * K {
        format!("{:.0}K", n / K)
    } else if n < K * K * K {
        format!("{:.1}M", n / K / K)
    } else {
        format!("{:.1}G", n / K / K / K)
    }
}

fn clock_ticks() -> anyhow::Result<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .filter(|t| *t > 0)
        .ok_or_else(|| anyhow::anyhow!("the clock tick rate is unknown"))?;
    Ok(ticks as f64)
}

fn page_size() -> anyhow::Result<u64> {
    let size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| anyhow::anyhow!("the page size is unknown"))?;
    Ok(size)
}
