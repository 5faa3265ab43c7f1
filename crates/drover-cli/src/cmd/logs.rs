//! `drover logs`: an agent's stored output, or (`-f`) a live follow of one, several or all.

use std::io::Write;

use anyhow::Context;
use drover_client::follow::Selection;
use drover_client::{FollowEvent, FollowOptions, Follower};
use drover_proto::op::{AgentRef, ReadLogsArgs};
use std::collections::{HashMap, HashSet};

use drover_agent::pretty::Pretty;
use drover_agent::ParserKind;
use drover_proto::{limits, AgentId, AgentInfo, Record, Seq, StreamKind};

use super::{reconnect, Ctx};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent ids, unique id prefixes, or names; `HOST/AGENT` for an agent on another context.
    pub(crate) agents: Vec<String>,
    /// Follow live output; ends when the named agents have all ended.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// Every agent, including ones spawned later (with -f).
    #[arg(long, conflicts_with_all = ["agents", "selector"])]
    all: bool,
    /// Agents whose labels match (repeatable): k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k,
    /// !k. With -f and only k=v terms, also agents spawned later.
    #[arg(
        long = "selector",
        visible_alias = "label",
        short = 'l',
        value_name = "SELECTOR",
        conflicts_with = "agents"
    )]
    selector: Vec<String>,
    /// Start at this record number.
    #[arg(long)]
    since_seq: Option<u64>,
    /// Start with the last N records (0: only new output, with -f).
    #[arg(long, short = 'n')]
    tail: Option<u32>,
    /// Start at this time: a duration ago (10m, 2h, 1d), RFC 3339 (2026-12-02T11:00:00Z) or
    /// unix nanoseconds.
    #[arg(long, value_parser = crate::duration::time)]
    since: Option<i64>,
    /// Stop before this time (same forms as --since); not with -f.
    #[arg(long, value_parser = crate::duration::time, conflicts_with = "follow")]
    until: Option<i64>,
    /// Only stdout (out) or stderr (err).
    #[arg(long, value_parser = parse_stream)]
    stream: Option<StreamKind>,
    /// Prefix each line with its capture time.
    #[arg(long, short = 't')]
    timestamps: bool,
    /// Never prefix lines with the agent's name.
    #[arg(long)]
    no_prefix: bool,
    /// Render AI agents' structured output (claude, codex, gemini, opencode) as a readable
    /// transcript: text, tool calls, shortened tool results, the final result with turns and
    /// cost. Other lines and other agents' output pass through untouched.
    #[arg(long)]
    pretty: bool,
}

fn parse_stream(text: &str) -> Result<StreamKind, String> {
    match text {
        "out" | "stdout" => Ok(StreamKind::Stdout),
        "err" | "stderr" => Ok(StreamKind::Stderr),
        other => Err(format!("unknown stream {other:?} (out or err)")),
    }
}

pub(crate) async fn run(ctx: &Ctx, mut args: Args) -> anyhow::Result<i32> {
    let shares = crate::fleet::route(ctx, &args.agents)?;
    if shares.len() > 1 || shares.iter().any(|share| share.ctx.host.is_some()) {
        return crate::fleet::logs::run(shares, &args).await;
    }
    let Some(share) = shares.into_iter().next() else {
        anyhow::bail!("no daemon selected");
    };
    let ctx = &share.ctx;
    if !share.refs.is_empty() {
        args.agents = share.refs;
    }
    let client = ctx.client().await?;
    let Some(selection) = selection(&client, &args, &args.agents).await? else {
        eprintln!("drover: no agent matches");
        return Ok(0);
    };
    let many = !matches!(&selection, Selection::Agents(a) if a.len() == 1);
    let printer = printer(ctx, &args, many);
    if !args.follow {
        return history(&client, &selection, &args, &printer).await;
    }
    follow_across_restarts(ctx, client, selection, follow_options(&args), &printer).await?;
    Ok(0)
}

/// What to follow on one daemon: `--all`, a label selector, or the agents `refs` named there;
/// `None` when a selector the daemon cannot apply itself matches nothing now.
pub(crate) async fn selection(
    client: &drover_client::Client,
    args: &Args,
    refs: &[String],
) -> anyhow::Result<Option<Selection>> {
    Ok(Some(if args.all {
        Selection::All
    } else if !args.selector.is_empty() {
        let selector = crate::selector::parse_all(&args.selector)?;
        if selector.is_only_equalities() {
            Selection::Labels(selector.equalities())
        } else {
            // The daemon selects by k=v only: the agents matching now.
            let agents =
                super::many::select(client, &args.selector, super::many::Applies::Any).await?;
            if agents.is_empty() {
                return Ok(None);
            }
            Selection::Agents(agents.iter().map(|a| a.id.to_string()).collect())
        }
    } else if refs.is_empty() {
        anyhow::bail!("name an agent, or use --all or --label");
    } else {
        Selection::Agents(refs.to_vec())
    }))
}

/// How `args` wants records printed; `many` prefixes each line with its agent (and on one host
/// of several, `ctx`'s host).
pub(crate) fn printer(ctx: &Ctx, args: &Args, many: bool) -> Printer {
    Printer {
        // JSON lines stay byte-exact.
        pretty: (args.pretty && !ctx.json).then(Default::default),
        timestamps: args.timestamps,
        prefix: many && !args.no_prefix,
        json: ctx.json,
        host: ctx.host.clone(),
    }
}

/// Where a follow starts, from the flags.
pub(crate) fn follow_options(args: &Args) -> FollowOptions {
    FollowOptions {
        since_seq: args.since_seq.map(Seq),
        tail: args.tail,
        since: args.since,
        stream: args.stream,
        until_exit: true,
        resume: Default::default(),
    }
}

/// Follow until the selection ends; when the daemon goes away, wait for it and go on from the
/// first record not yet printed of each agent (nothing missed, nothing twice). Returns the
/// client of the daemon the follow ended on.
///
/// Agents named on the command line are followed by id after the first connection: a name
/// may belong to a new agent by then. Those whose end was printed are done, and one removed
/// while the daemon was away is said so and dropped, rather than ending the follow of the rest.
pub(crate) async fn follow_across_restarts(
    ctx: &Ctx,
    mut client: drover_client::Client,
    mut selection: Selection,
    mut options: FollowOptions,
    printer: &Printer,
) -> anyhow::Result<drover_client::Client> {
    let mut daemon = client.health().await?.daemon;
    // Whether the daemon is still there is asked on a connection of its own: on a slow link a
    // refill's large reads hold every later reply on the follow's connection behind them, and
    // a check queued there took a daemon busy sending for one that was gone (and the follow,
    // started again, asked for the same reads: it never got further).
    let mut probe = ctx.client().await.ok();
    let mut ended = HashSet::new();
    loop {
        let mut follower = client.follow(selection.clone(), options.clone()).await?;
        let finished = tokio::select! {
            result = follow(&mut follower, printer, &mut ended) => match result {
                Ok(()) => true,
                Err(_) if !reconnect::is_there(probe.as_ref().unwrap_or(&client), daemon).await => {
                    false
                }
                Err(error) => return Err(error),
            },
            () = reconnect::gone(probe.as_ref().unwrap_or(&client), daemon) => false,
        };
        if finished {
            drop(follower);
            return Ok(client);
        }
        // Agents not followed yet (spawned meanwhile, on an open selection) are new: all of
        // their output is.
        let resume = follower.resume_points();
        options.since_seq = Some(Seq::FIRST);
        drop(follower);
        if let Selection::Agents(_) = selection {
            let left: Vec<String> = resume
                .keys()
                .filter(|id| !ended.contains(*id))
                .map(ToString::to_string)
                .collect();
            if left.is_empty() {
                return Ok(client);
            }
            selection = Selection::Agents(left);
        }
        options.resume.extend(resume);
        (client, daemon) = reconnect::wait_for_daemon(ctx, false).await?;
        // Without a connection of its own (the daemon went again), liveness is asked on the
        // follow's, as before: the next check notices.
        probe = ctx.client().await.ok();
        if let Selection::Agents(ids) = &selection {
            let kept = still_there(&client, ids).await?;
            if kept.is_empty() {
                return Ok(client);
            }
            selection = Selection::Agents(kept);
        }
    }
}

/// The agents of `ids` the daemon still has; of the others, that they were removed.
async fn still_there(
    client: &drover_client::Client,
    ids: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut kept = Vec::with_capacity(ids.len());
    for id in ids {
        match client.get(id).await {
            Ok(_) => kept.push(id.clone()),
            Err(drover_client::ClientError::Remote(e))
                if e.code == drover_proto::ErrorCode::NotFound =>
            {
                eprintln!("drover: {id}: removed while the daemon was away; no more of its output");
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(kept)
}

/// Print live events until the follow ends; adds each agent whose end it printed to `ended`.
pub(crate) async fn follow(
    follower: &mut Follower<'_>,
    printer: &Printer,
    ended: &mut HashSet<AgentId>,
) -> anyhow::Result<()> {
    while let Some(event) = follower.next().await? {
        match event {
            FollowEvent::Records { agent, records } => {
                let info = follower.agent(agent);
                let name = info.map(display_name).unwrap_or_else(|| agent.handle());
                printer.parser(agent, info);
                printer.records(agent, &name, &records)?;
            }
            FollowEvent::Truncated {
                agent,
                requested,
                first_available,
            } => eprintln!(
                "drover: {agent}: records {requested}..{} were removed by retention",
                first_available.0.saturating_sub(1)
            ),
            FollowEvent::Dropped { agent, from, to } => eprintln!(
                "drover: {agent}: records {from}..{to} could not be stored (the disk was full) \
                 and are lost"
            ),
            // An ended agent prints nothing more: its renderer goes, so an open follow holds
            // renderers for the agents still running only.
            FollowEvent::Exit(info) => {
                printer.forget(info.id);
                ended.insert(info.id);
            }
            FollowEvent::Gap { .. } => {}
        }
    }
    Ok(())
}

pub(crate) async fn history(
    client: &drover_client::Client,
    selection: &Selection,
    args: &Args,
    printer: &Printer,
) -> anyhow::Result<i32> {
    let agents: Vec<AgentInfo> = match selection {
        Selection::Agents(refs) => {
            let mut agents = Vec::new();
            for reference in refs {
                agents.push(client.get(reference).await?);
            }
            agents
        }
        Selection::Labels(labels) => {
            client
                .list_all(drover_proto::op::ListArgs {
                    labels: labels.clone(),
                    ..Default::default()
                })
                .await?
        }
        Selection::All => client.list_all(Default::default()).await?,
    };
    for agent in agents {
        let name = display_name(&agent);
        printer.parser(agent.id, Some(&agent));
        let mut query = ReadLogsArgs::new(AgentRef::new(agent.id.to_string()));
        query.since_seq = args.since_seq.map(Seq);
        query.tail = args.tail;
        query.since = args.since;
        query.stream = args.stream;
        query.limit = Some(limits::MAX_READ_LIMIT);
        let read = client
            .read_logs(query.clone())
            .await
            .with_context(|| format!("reading logs of {name}"))?;
        if read.truncated {
            eprintln!(
                "drover: {name}: older records were removed by retention; from {}",
                read.first_seq
            );
        }
        let (records, reached) = before(&read.records, args.until);
        printer.records(agent.id, &name, records)?;
        say_lost(&name, read.dropped);
        if reached {
            continue;
        }
        // Page on up to what was stored when the read began: a reply holds at most 10 000
        // records or 8 MiB, and `--tail` counts from there too.
        let end = read.end_seq;
        let mut next = read.next_seq;
        query.tail = None;
        query.until_seq = Some(end);
        while next < end {
            query.since_seq = Some(next);
            let read = client
                .read_logs(query.clone())
                .await
                .with_context(|| format!("reading logs of {name}"))?;
            if read.truncated {
                eprintln!(
                    "drover: {name}: records {next}..{} were removed by retention while reading",
                    read.first_seq.0.saturating_sub(1)
                );
            }
            let (records, reached) = before(&read.records, args.until);
            printer.records(agent.id, &name, records)?;
            say_lost(&name, read.dropped);
            if reached || read.next_seq <= next {
                break;
            }
            next = read.next_seq;
        }
    }
    Ok(0)
}

/// Say on stderr that the records of `dropped` (which a read passed) were lost for good.
fn say_lost(name: &str, dropped: Option<drover_proto::SeqRange>) {
    if let Some(range) = dropped {
        eprintln!(
            "drover: {}: records {} to {} were lost: the daemon could not store them",
            crate::output::shown(name),
            range.from,
            range.to
        );
    }
}

/// The records captured before `until` (all without it), and whether one at or after it was
/// seen: captures are in time order, so nothing later can be earlier.
fn before(records: &[Record], until: Option<i64>) -> (&[Record], bool) {
    let Some(until) = until else {
        return (records, false);
    };
    let end = records.partition_point(|record| record.ts < until);
    (&records[..end], end < records.len())
}

/// An agent's name, or its short handle.
pub(crate) fn display_name(agent: &AgentInfo) -> String {
    crate::output::label(agent)
}

/// Bytes of output gathered before a write.
const OUT_BUFFER: usize = 64 * 1024;

/// How records are written to stdout/stderr.
pub(crate) struct Printer {
    /// `--pretty`: each agent's transcript renderer and the piece of a line it waits for the
    /// rest of (bounded: a piece longer than `MAX_LINE` passes through raw).
    pub(crate) pretty: Option<std::cell::RefCell<HashMap<AgentId, Transcript>>>,
    pub(crate) timestamps: bool,
    pub(crate) prefix: bool,
    pub(crate) json: bool,
    /// The host's context name, on one host of several: prefixes become `[HOST/NAME]` and
    /// JSON lines carry `host`.
    pub(crate) host: Option<String>,
}

/// Whose line is open (printed without its newline yet), on which stream (0 stdout, 1 stderr):
/// an agent, on a host when several are followed. One for both streams, as a terminal shows
/// them together; shared by every printer of the process (one per host).
type OpenLine = Option<(usize, Option<String>, AgentId)>;
static OPEN_LINE: std::sync::Mutex<OpenLine> = std::sync::Mutex::new(None);

/// One agent's transcript rendering.
pub(crate) struct Transcript {
    pretty: Pretty,
    partial: Vec<u8>,
}

impl Printer {
    /// Learn which parser renders `agent`'s output (from its activity: the daemon's backend
    /// table says, for custom backends too); no parser, no rendering.
    pub(crate) fn parser(&self, id: AgentId, agent: Option<&AgentInfo>) {
        let Some(pretty) = &self.pretty else {
            return;
        };
        let mut map = pretty.borrow_mut();
        if map.contains_key(&id) {
            return;
        }
        let kind = agent
            .and_then(|a| a.activity.as_ref())
            .and_then(|a| a.parser.parse::<ParserKind>().ok());
        map.insert(
            id,
            Transcript {
                pretty: Pretty::new(kind),
                partial: Vec::new(),
            },
        );
    }

    /// Drop `id`'s transcript renderer (the agent ended).
    pub(crate) fn forget(&self, id: AgentId) {
        if let Some(pretty) = &self.pretty {
            pretty.borrow_mut().remove(&id);
        }
    }

    /// A stdout record rendered as transcript text, or `None` to write it as it is.
    fn render(&self, id: AgentId, record: &Record) -> Option<Vec<u8>> {
        let pretty = self.pretty.as_ref()?;
        if record.stream != StreamKind::Stdout {
            return None;
        }
        let mut map = pretty.borrow_mut();
        let transcript = map.get_mut(&id)?;
        if record.partial {
            if transcript.partial.len() + record.data.len() > drover_agent::MAX_LINE {
                let mut raw = std::mem::take(&mut transcript.partial);
                raw.extend_from_slice(&record.data);
                return Some(raw);
            }
            transcript.partial.extend_from_slice(&record.data);
            return Some(Vec::new());
        }
        let line = if transcript.partial.is_empty() {
            std::borrow::Cow::Borrowed(&record.data[..])
        } else {
            let mut line = std::mem::take(&mut transcript.partial);
            line.extend_from_slice(&record.data);
            std::borrow::Cow::Owned(line)
        };
        Some(match transcript.pretty.line(&line) {
            Some(text) => text.into_bytes(),
            None => line.into_owned(),
        })
    }

    /// Write records byte-exact to the matching stream, with optional prefixes (`name`);
    /// JSON lines carry the full `id`.
    pub(crate) fn records(
        &self,
        id: AgentId,
        name: &str,
        records: &[Record],
    ) -> anyhow::Result<()> {
        // One write per batch rather than per line (stdout is line-buffered): a follow of
        // 100-byte lines spent most of its time in `write`. Switching streams flushes the other
        // first, so stdout and stderr lines keep their order on a shared terminal.
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        let mut out = std::io::BufWriter::with_capacity(OUT_BUFFER, stdout.lock());
        let mut err = std::io::BufWriter::with_capacity(OUT_BUFFER, stderr.lock());
        let mut open = OPEN_LINE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let decorated = self.prefix || self.timestamps;
        let mut last = StreamKind::Stdout;
        for record in records {
            if record.stream != last {
                match last {
                    StreamKind::Stdout => out.flush()?,
                    StreamKind::Stderr => err.flush()?,
                }
                last = record.stream;
            }
            if self.json {
                let mut line = serde_json::json!({
                    "agent": id.to_string(),
                    "seq": record.seq.0,
                    "ts": record.ts,
                    "stream": record.stream.as_str(),
                    "partial": record.partial,
                });
                if let Some(host) = &self.host {
                    line["host"] = host.as_str().into();
                }
                // Byte-exact, as on the HTTP API: text when the bytes are UTF-8, else base64.
                match std::str::from_utf8(&record.data) {
                    Ok(text) => line["text"] = text.into(),
                    Err(_) => {
                        use base64::Engine as _;
                        let b64 = base64::engine::general_purpose::STANDARD.encode(&record.data);
                        line["data_b64"] = b64.into();
                    }
                }
                writeln!(out, "{line}")?;
                continue;
            }
            let stream = usize::from(record.stream == StreamKind::Stderr);
            let me = Some((stream, self.host.clone(), id));
            let rendered = self.render(id, record);
            let data = rendered.as_deref().unwrap_or(&record.data);
            if data.is_empty() {
                continue;
            }
            // A rendered record may be several lines, or a piece of one (streamed text): each
            // line gets the prefix once, at its start.
            let pieces: Vec<&[u8]> = if rendered.is_some() {
                data.split_inclusive(|b| *b == b'\n').collect()
            } else {
                vec![data]
            };
            for piece in pieces {
                // A line goes on where it stopped (a partial record, streamed text): its prefix
                // was written. Another's open line (on either stream) is ended first, so that
                // every line printed starts with the prefix of the agent it is from.
                if decorated && *open != me {
                    // A rendered newline that only ends this agent's text, which another's
                    // line ended already.
                    if rendered.is_some() && piece == b"\n" {
                        continue;
                    }
                    if let Some((other, ..)) = open.take() {
                        let ended: &mut dyn Write = if other == 0 { &mut out } else { &mut err };
                        ended.write_all(b"\n")?;
                        ended.flush()?;
                    }
                }
                let sink: &mut dyn Write = if stream == 0 { &mut out } else { &mut err };
                if *open != me {
                    // The name is a daemon's (another host's, perhaps): shown, never run.
                    match (&self.host, self.prefix) {
                        (Some(host), true) => {
                            write!(sink, "[{host}/{}] ", drover_agent::printable(name, false))?
                        }
                        (None, true) => {
                            write!(sink, "[{}] ", drover_agent::printable(name, false))?
                        }
                        (_, false) => {}
                    }
                    if self.timestamps {
                        write!(sink, "{} ", rfc3339(record.ts))?;
                    }
                }
                sink.write_all(piece)?;
                *open = if piece.ends_with(b"\n") {
                    None
                } else {
                    me.clone()
                };
            }
        }
        out.flush()?;
        err.flush()?;
        Ok(())
    }
}

/// Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), without a date-time dependency.
pub(crate) fn rfc3339(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let millis = ts.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_000_000),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
