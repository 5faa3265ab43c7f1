//! `drover events`: lifecycle events, stored and (with `-f`) live, resumable by number.

use std::collections::HashMap;
use std::io::Write;

use drover_client::Client;
use drover_proto::AgentId;
use drover_proto::{Event, EventSeq};

use super::{reconnect, Ctx};

#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Args {
    /// Keep following live events.
    #[arg(long, short)]
    follow: bool,
    /// Start after this event number (a bare integer: resume where a previous run stopped),
    /// or at this time: a duration ago (10m, 2h, 1d) or RFC 3339 (2026-12-02T11:00:00Z).
    #[arg(long, value_parser = parse_since)]
    since: Option<Since>,
    /// Only events before this time (same forms as --since's times); not with -f.
    #[arg(long, value_parser = crate::duration::time, conflicts_with = "follow")]
    until: Option<i64>,
}

/// Where `--since` starts.
#[derive(Clone, Copy, Debug)]
enum Since {
    /// After this event number.
    Event(u64),
    /// At this time (unix ns).
    Time(i64),
}

fn parse_since(text: &str) -> Result<Since, String> {
    match text.trim().parse::<u64>() {
        Ok(number) => Ok(Since::Event(number)),
        Err(_) => crate::duration::time(text).map(Since::Time),
    }
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let Some(hosts) = ctx.hosts()? else {
        return run_one(ctx, args).await;
    };
    // Several hosts: stored events host after host; live ones from every host at once, each
    // line naming the agent `HOST/NAME` (JSON: `host`), each host resuming on its own.
    let shares: Vec<Ctx> = hosts.iter().map(|host| ctx.on(host, true)).collect();
    let mut status = 0;
    if !args.follow {
        for share in &shares {
            let result = run_one(share, args.clone()).await;
            crate::fleet::fold(&mut status, true, share.host.as_deref(), result)?;
        }
        return Ok(status);
    }
    let runs = shares.iter().map(|share| {
        let args = args.clone();
        async move {
            match run_one(share, args).await {
                Ok(code) => code,
                Err(error) => {
                    let host = share.host.as_deref().unwrap_or("?");
                    eprintln!(
                        "drover: {host}: {}",
                        crate::output::shown(format_args!("{error:#}"))
                    );
                    crate::output::exit_code(&error)
                }
            }
        }
    });
    let codes = futures::future::join_all(runs).await;
    Ok(codes.into_iter().find(|code| *code != 0).unwrap_or(0))
}

/// `events` on one daemon.
async fn run_one(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = match ctx.client().await {
        Ok(client) => client,
        // One host of several, followed: wait for it as for one that goes away later.
        Err(error) if args.follow && ctx.host.is_some() && !reconnect::is_permanent(&error) => {
            let host = ctx.host.as_deref().unwrap_or("?");
            eprintln!(
                "drover: {host}: unreachable: {}",
                crate::output::shown(format_args!("{error:#}"))
            );
            reconnect::wait_for_daemon(ctx, true).await?.0
        }
        Err(error) => return Err(error),
    };
    let (after, from_ts) = match args.since {
        Some(Since::Event(number)) => (Some(EventSeq(number)), None),
        // Events are stored in time order: the stored ones are read from the start and those
        // before the time skipped.
        Some(Since::Time(ts)) => (Some(EventSeq(0)), Some(ts)),
        None => (None, None),
    };
    let wanted = |event: &Event| {
        from_ts.is_none_or(|ts| event.ts >= ts) && args.until.is_none_or(|ts| event.ts < ts)
    };
    if !args.follow {
        let mut after = after;
        let mut names = Names::default();
        loop {
            let read = client.read_events(after, None).await?;
            let Some(last) = read.events.last() else {
                break;
            };
            after = Some(last.event_seq);
            for event in read.events.iter().filter(|e| wanted(e)) {
                print(ctx, &client, &mut names, event).await?;
            }
        }
        return Ok(0);
    }
    // Across daemon restarts: go on after the last event printed (numbers are kept in the
    // registry, so nothing is missed or printed twice).
    let mut client = client;
    let mut daemon = client.health().await?.daemon;
    // "From now on" as a number, so a restart knows where now was.
    let mut after = match after {
        Some(after) => after,
        None => client.read_events(None, Some(1)).await?.last_event_seq,
    };
    loop {
        let mut names = Names::default();
        {
            let mut follower = client.follow_events(Some(after)).await?;
            let gone = reconnect::gone(&client, daemon);
            tokio::pin!(gone);
            loop {
                let event = tokio::select! {
                    event = follower.next() => event,
                    () = &mut gone => break,
                };
                match event {
                    Ok(event) => {
                        after = event.event_seq;
                        if wanted(&event) {
                            print(ctx, &client, &mut names, &event).await?;
                        }
                    }
                    Err(_) if !reconnect::is_there(&client, daemon).await => break,
                    Err(error) => return Err(error.into()),
                }
            }
        }
        (client, daemon) = reconnect::wait_for_daemon(ctx, false).await?;
    }
}

/// Display names by agent, looked up once each; bounded by the agents the daemon holds, and
/// cleared if it grows past that anyway.
#[derive(Default)]
struct Names(HashMap<AgentId, String>);

impl Names {
    async fn of(&mut self, client: &Client, agent: AgentId) -> String {
        if let Some(name) = self.0.get(&agent) {
            return name.clone();
        }
        let name = match client.get(&agent.to_string()).await {
            Ok(info) => super::logs::display_name(&info),
            Err(_) => agent.handle(),
        };
        if self.0.len() > 100_000 {
            self.0.clear();
        }
        self.0.insert(agent, name.clone());
        name
    }
}

async fn print(ctx: &Ctx, client: &Client, names: &mut Names, event: &Event) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if ctx.json {
        match &ctx.host {
            Some(host) => {
                let mut value = serde_json::to_value(event)?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("host".into(), host.as_str().into());
                }
                serde_json::to_writer(&mut out, &value)?;
            }
            None => serde_json::to_writer(&mut out, event)?,
        }
        writeln!(out)?;
        return Ok(out.flush()?);
    }
    drop(out);
    // A removed agent shows its handle.
    // A daemon's name for the agent (another host's, perhaps): shown, never run.
    let who = crate::output::shown(ctx.qualify(&names.of(client, event.agent).await));
    let mut line = format!(
        "{:>6}  {}  {:<12} {:<8} {}",
        event.event_seq,
        crate::output::clock(event.ts),
        who,
        event.kind.as_str(),
        event.state.as_str()
    );
    if let Some(code) = event.exit_code {
        line.push_str(&format!(" code {code}"));
    }
    if let Some(signal) = event.signal {
        line.push_str(&format!(" signal {}", crate::output::signal_name(signal)));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(out.flush()?)
}
