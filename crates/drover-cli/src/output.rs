//! Printing: aligned tables, relative times, colour only on a terminal, `--json` for scripts.

use std::io::{IsTerminal, Write};

use drover_client::ClientError;
use drover_proto::{AgentInfo, AgentState};

/// The exit status for an error: the wire code's entry in the table, else 1.
pub(crate) fn exit_code(error: &anyhow::Error) -> i32 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
        .and_then(ClientError::code)
        .map(|code| code.exit_code())
        .unwrap_or(1)
}

/// Print a value as pretty JSON.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Whether to colour stdout: only on a terminal, and never when `NO_COLOR` is set to anything
/// non-empty (https://no-color.org).
pub(crate) fn is_colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// A state name, coloured on a terminal.
pub(crate) fn state(state: AgentState, colour: bool) -> String {
    let name = state.as_str();
    if !colour {
        return name.to_owned();
    }
    let code = match state {
        AgentState::Running => "32",
        AgentState::Paused
        | AgentState::Stopping
        | AgentState::Starting
        | AgentState::Restarting => "33",
        AgentState::Exited => "36",
        AgentState::Killed | AgentState::FailedToStart | AgentState::Lost => "31",
    };
    format!("\x1b[{code}m{name}\x1b[0m")
}

/// "3s ago", "5m ago", "2h ago", "4d ago".
pub(crate) fn ago(ts_ns: i64) -> String {
    let secs = (drover_proto::now_ns() - ts_ns).max(0) / 1_000_000_000;
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// Unix nanoseconds as a UTC wall-clock time, `HH:MM:SS.mmm`.
pub(crate) fn clock(ts_ns: i64) -> String {
    let millis = ts_ns.div_euclid(1_000_000);
    let day_ms = millis.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        (day_ms / 60_000) % 60,
        (day_ms / 1000) % 60,
        day_ms % 1000
    )
}

/// A duration in compact form: "850ms", "12s", "3m04s", "2h05m".
pub(crate) fn duration(ns: i64) -> String {
    let ms = ns.max(0) / 1_000_000;
    match ms {
        m if m < 1000 => format!("{m}ms"),
        m if m < 60_000 => format!("{}s", m / 1000),
        m if m < 3_600_000 => format!("{}m{:02}s", m / 60_000, (m / 1000) % 60),
        m => format!("{}h{:02}m", m / 3_600_000, (m / 60_000) % 60),
    }
}

/// An agent's name, or its short handle (unique among the daemon's agents, and accepted
/// wherever an agent is named).
pub(crate) fn label(agent: &AgentInfo) -> String {
    agent.name.clone().unwrap_or_else(|| agent.id.handle())
}

/// How an agent ended (restarting: how its last run ended, and when the next starts), or how
/// long it has run.
pub(crate) fn status_detail(agent: &AgentInfo) -> String {
    let status = &agent.status;
    let ended = if let Some(code) = status.exit_code() {
        Some(format!("code {code}"))
    } else {
        status
            .signal()
            .map(|signal| format!("signal {}", signal_name(signal)))
    };
    if let Some(ended) = ended {
        if let Some(at) = status.restart_at() {
            let wait = duration((at - drover_proto::now_ns()).max(0));
            return format!("{ended}, restarts in {wait}");
        }
        if agent.timed_out {
            let how = status.signal().map_or(ended.clone(), signal_name);
            return format!("timed out ({how})");
        }
        return ended;
    }
    if let Some(error) = status.error() {
        return error.to_owned();
    }
    match (status.started_at(), status.ended_at()) {
        (Some(start), None) => format!("up {}", duration(drover_proto::now_ns() - start)),
        _ => String::new(),
    }
}

/// Linux signal names by number (without `SIG`), for display.
const SIGNALS: [(i32, &str); 31] = [
    (1, "HUP"),
    (2, "INT"),
    (3, "QUIT"),
    (4, "ILL"),
    (5, "TRAP"),
    (6, "ABRT"),
    (7, "BUS"),
    (8, "FPE"),
    (9, "KILL"),
    (10, "USR1"),
    (11, "SEGV"),
    (12, "USR2"),
    (13, "PIPE"),
    (14, "ALRM"),
    (15, "TERM"),
    (16, "STKFLT"),
    (17, "CHLD"),
    (18, "CONT"),
    (19, "STOP"),
    (20, "TSTP"),
    (21, "TTIN"),
    (22, "TTOU"),
    (23, "URG"),
    (24, "XCPU"),
    (25, "XFSZ"),
    (26, "VTALRM"),
    (27, "PROF"),
    (28, "WINCH"),
    (29, "IO"),
    (30, "PWR"),
    (31, "SYS"),
];

/// A signal's name (`TERM`), or its number when it has none here (real-time signals).
pub(crate) fn signal_name(signal: i32) -> String {
    SIGNALS
        .iter()
        .find(|(number, _)| *number == signal)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| signal.to_string())
}

/// A signal as the user typed it (`15`, `sigterm`, `TERM`), shown by name.
pub(crate) fn signal_label(text: &str) -> String {
    match text.parse::<i32>() {
        Ok(number) => signal_name(number),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            upper.strip_prefix("SIG").unwrap_or(&upper).to_owned()
        }
    }
}

/// Text a daemon sent (an error's message, an agent's name from another host) as it is shown
/// on a terminal: control characters become visible escapes (`drover_agent::printable`).
pub(crate) fn shown(text: impl std::fmt::Display) -> String {
    drover_agent::printable(&text.to_string(), false).into_owned()
}

/// [`shown`], with its line breaks kept (a message of several lines), every line after the
/// first indented: a message (a remote daemon's, or an argv it echoes) cannot print a line that
/// looks like one of ours (`drover: error: ...`).
pub(crate) fn shown_lines(text: impl std::fmt::Display) -> String {
    drover_agent::printable(&text.to_string(), true).replace('\n', "\n  ")
}

/// Print rows as an aligned table with a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(visible_len(cell));
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell
                } else {
                    let pad = widths[i] - visible_len(&cell);
                    format!("{cell}{}", " ".repeat(pad + 2))
                }
            })
            .collect::<String>()
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| (*h).to_owned()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row.clone()))?;
    }
    Ok(())
}

/// Length without ANSI colour escapes.
fn visible_len(cell: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in cell.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}
