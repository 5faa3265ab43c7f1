//! The file descriptors the daemon may open: the soft `RLIMIT_NOFILE` is raised to the hard limit
//! at start, and a `max_agents` the limit cannot carry is refused before anything is bound.
//!
//! What one live agent under a holder holds, at most ([`FDS_PER_HELD_AGENT`]): the socket to its
//! holder, and its open log segment (opened at its first record, kept for group commit). Its
//! pipes are the holder's.
//!
//! What one live agent run in-process (no holder configured) holds, at most
//! ([`FDS_PER_AGENT`]):
//! 1. the read end of its stdout pipe and 2. of its stderr pipe (the two streams are kept apart
//!    and drained separately, guarantee 2);
//! 3. the pidfd tokio's reaper uses to learn the child exited without polling;
//! 4. its open log segment (opened at its first record, kept for group commit);
//! 5. the write end of its stdin pipe, only when the spec asks for `stdin: pipe`.
//!
//! Everything else comes out of a reserve: [`RESERVED_FDS`] for the registry (3 SQLite files), the
//! lock file, the listening sockets, libzmq's descriptors and ZeroMQ client connections; one per
//! HTTP connection the listeners may hold at once (`http_max_connections` on each of
//! [`HTTP_LISTENERS`]); and two per allowed stream (`max_streams`: one reading the store, one
//! feeding the connection).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::DaemonError;

/// File descriptors one live in-process agent may hold at most (see the module documentation).
pub const FDS_PER_AGENT: u64 = 5;

/// File descriptors one live agent under a holder may hold at most: its socket and its log.
pub const FDS_PER_HELD_AGENT: u64 = 2;

/// File descriptors kept for the daemon itself, besides HTTP connections and streams.
pub const RESERVED_FDS: u64 = 256;

/// HTTP listeners, each holding up to `http_max_connections`: TCP and the unix socket.
pub const HTTP_LISTENERS: u64 = 2;

/// The reserve for everything but agents (see the module documentation).
pub fn reserve(max_streams: usize, http_max_connections: usize) -> u64 {
    let streams = u64::try_from(max_streams).unwrap_or(u64::MAX);
    let connections = u64::try_from(http_max_connections).unwrap_or(u64::MAX);
    RESERVED_FDS
        .saturating_add(HTTP_LISTENERS.saturating_mul(connections))
        .saturating_add(streams.saturating_mul(2))
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
    per_agent: u64,
) -> Result<(), DaemonError> {
    let agents = u64::try_from(max_agents).unwrap_or(u64::MAX);
    let reserve = reserve(max_streams, http_max_connections);
    let needed = agents.saturating_mul(per_agent).saturating_add(reserve);
    if needed <= limit.soft {
        return Ok(());
    }
    let fit = limit.soft.saturating_sub(reserve) / per_agent.max(1);
    Err(DaemonError::Config {
        reason: format!(
            "max_agents {max_agents} needs {max_agents} × {per_agent} file descriptors per \
             agent + {reserve} for the daemon ({RESERVED_FDS} + {HTTP_LISTENERS} × \
             http_max_connections {http_max_connections} + 2 × max_streams {max_streams}) \
             = {needed}, but the open-files limit is {} (hard limit {}): at most {fit} agents \
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
        check(limit, 3_641, 256, 512, FDS_PER_AGENT).expect("3641 × 5 + 1792 = 19997 fits");
        check(limit, 9_104, 256, 512, FDS_PER_HELD_AGENT).expect("9104 × 2 + 1792 = 20000 fits");
        let error = check(limit, 10_100, 256, 512, FDS_PER_AGENT)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            error,
            "invalid configuration: max_agents 10100 needs 10100 × 5 file descriptors per agent \
             + 1792 for the daemon (256 + 2 × http_max_connections 512 + 2 × max_streams 256) = \
             52292, but the open-files limit is 20000 (hard limit 20000): at most 3641 agents \
             fit; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower max_agents"
        );
    }
}
