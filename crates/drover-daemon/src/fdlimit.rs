//! The file descriptors the daemon may open: the soft `RLIMIT_NOFILE` is raised to the hard limit
//! at start, and a `max_agents` the limit cannot carry is refused before anything is bound.
//!
//! What one live agent under a holder holds, at most ([`FDS_PER_HELD_AGENT`]): the socket to its
//! holder. Its pipes are the holder's.
//!
//! What one live agent run in-process (no holder configured) holds, at most
//! ([`FDS_PER_AGENT`]):
//! 1. the read end of its stdout pipe and 2. of its stderr pipe (the two streams are kept apart
//!    and drained separately, guarantee 2);
//! 3. the pidfd tokio's reaper uses to learn the child exited without polling;
//! 4. the write end of its stdin pipe, only when the spec asks for `stdin: pipe`.
//!
//! Everything else comes out of a reserve: [`RESERVED_FDS`] for the registry (3 SQLite files), the
//! lock file, the listening sockets, libzmq's descriptors and ZeroMQ client connections; one per
//! HTTP connection the listeners may hold at once (`http_max_connections` on each of
//! [`HTTP_LISTENERS`]); and two per allowed stream (`max_streams`: one reading the store, one
//! feeding the connection).
//!
//! And the store's open log segments: one per live agent that wrote (a segment is opened at a
//! log's first record and kept for group commit), but never more than `max_open_writers`
//! (1,024) for long, however many agents write: the store's syncer closes the writers appended
//! to longest ago. So they cost `min(max_agents, max_open_writers)`.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::DaemonError;

/// File descriptors one live in-process agent may hold at most (see the module documentation).
pub const FDS_PER_AGENT: u64 = 4;

/// File descriptors one live agent under a holder may hold at most: its socket.
pub const FDS_PER_HELD_AGENT: u64 = 1;

/// File descriptors kept for the daemon itself, besides HTTP connections and streams.
pub const RESERVED_FDS: u64 = 256;

/// HTTP listeners, each holding up to `http_max_connections`: TCP and the unix socket.
pub const HTTP_LISTENERS: u64 = 2;

/// The reserve for everything but agents and their log segments (see the module
/// documentation).
pub fn reserve(max_streams: usize, http_max_connections: usize) -> u64 {
    let streams = u64::try_from(max_streams).unwrap_or(u64::MAX);
    let connections = u64::try_from(http_max_connections).unwrap_or(u64::MAX);
    RESERVED_FDS
        .saturating_add(HTTP_LISTENERS.saturating_mul(connections))
        .saturating_add(streams.saturating_mul(2))
}

/// The descriptors `agents` live agents need with the reserve: `per_agent` each, one open log
/// segment each up to `max_open_writers`, and `reserve`.
pub fn needed(agents: u64, per_agent: u64, max_open_writers: u64, reserve: u64) -> u64 {
    agents
        .saturating_mul(per_agent)
        .saturating_add(agents.min(max_open_writers))
        .saturating_add(reserve)
}

/// The soft and hard limit after raising the soft one as far as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The limit in force now.
    pub soft: u64,
    /// The ceiling an unprivileged process may raise it to.
    pub hard: u64,
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (the kernel's `nr_open` when the hard limit
/// is unlimited), and return both.
pub fn raise() -> Result<FdLimit, DaemonError> {
    let io = |context: &str, e: nix::Error| DaemonError::Io {
        context: context.to_owned(),
        source: std::io::Error::from(e),
    };
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| io("reading the open-files limit (RLIMIT_NOFILE)", e))?;
    // Agents get the limit the daemon was started with (the first one seen: a second raise
    // finds it raised already).
    drover_supervisor::set_agent_open_files(soft);
    let ceiling = if hard == nix::sys::resource::RLIM_INFINITY {
        nr_open().unwrap_or(soft)
    } else {
        hard
    };
    if soft < ceiling {
        setrlimit(Resource::RLIMIT_NOFILE, ceiling, hard)
            .map_err(|e| io("raising the open-files limit (RLIMIT_NOFILE)", e))?;
    }
    Ok(FdLimit {
        soft: soft.max(ceiling),
        hard: ceiling,
    })
}

/// The most descriptors a process may have, whatever its limit says.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuse a `max_agents` whose descriptors (`per_agent` each), with the reserve, exceed `limit`.
pub fn check(
    limit: FdLimit,
    max_agents: usize,
    max_streams: usize,
    http_max_connections: usize,
    max_open_writers: usize,
    per_agent: u64,
) -> Result<(), DaemonError> {
    let agents = u64::try_from(max_agents).unwrap_or(u64::MAX);
    let writers = u64::try_from(max_open_writers).unwrap_or(u64::MAX);
    let reserve = reserve(max_streams, http_max_connections);
    let needed = needed(agents, per_agent, writers, reserve);
    if needed <= limit.soft {
        return Ok(());
    }
    let room = limit.soft.saturating_sub(reserve);
    let per_agent = per_agent.max(1);
    // With a segment each while they fit under the cap, then without.
    let fit = match room / (per_agent + 1) {
        fit if fit <= writers => fit,
        _ => room.saturating_sub(writers) / per_agent,
    };
    let segments = agents.min(writers);
    Err(DaemonError::Config {
        reason: format!(
            "max_agents {max_agents} needs {max_agents} × {per_agent} file descriptors per \
             agent + {segments} open log segments (at most max_open_writers {writers}) + \
             {reserve} for the daemon ({RESERVED_FDS} + {HTTP_LISTENERS} × \
             http_max_connections {http_max_connections} + 2 × max_streams {max_streams}) = \
             {needed}, but the open-files limit is {} (hard limit {}): at most {fit} agents \
             fit; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_agents",
            limit.soft, limit.hard
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arithmetic_is_in_the_message() {
        let limit = FdLimit {
            soft: 20_000,
            hard: 20_000,
        };
        check(limit, 4_296, 256, 512, 1024, FDS_PER_AGENT).expect("4296 × 4 + 1024 + 1792");
        // The figure: 10,000 agents under holders on a 20,000 limit, with room to spare.
        check(limit, 10_000, 256, 512, 1024, FDS_PER_HELD_AGENT).expect("10000 + 1024 + 1792");
        check(limit, 17_184, 256, 512, 1024, FDS_PER_HELD_AGENT).expect("= 20000 fits");
        check(limit, 17_185, 256, 512, 1024, FDS_PER_HELD_AGENT).expect_err("20001");
        // Few agents: each may keep its segment open.
        let small = FdLimit {
            soft: 600,
            hard: 600,
        };
        check(small, 92, 16, 64, 1024, FDS_PER_HELD_AGENT).expect("92 × 2 + 416 = 600");
        let error = check(limit, 10_100, 256, 512, 1024, FDS_PER_AGENT)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            error,
            "invalid configuration: max_agents 10100 needs 10100 × 4 file descriptors per agent \
             + 1024 open log segments (at most max_open_writers 1024) + 1792 for the daemon \
             (256 + 2 × http_max_connections 512 + 2 × max_streams 256) = 43216, but the \
             open-files limit is 20000 (hard limit 20000): at most 4296 agents fit; raise the \
             hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_agents"
        );
        let error = check(small, 93, 16, 64, 1024, FDS_PER_HELD_AGENT)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("at most 92 agents fit"), "{error}");
    }
}
