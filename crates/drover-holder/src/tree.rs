//! Processes under the holder, and an agent's strays after its holder died, found in `/proc`.

use std::collections::HashSet;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Direct children of `pid` (`/proc/PID/task/*/children`; the holder is single-threaded, but
/// every task is read so a thread's children are not missed).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// SIGKILLs the process group `pgid` and every process below the holder (`me`). Because the
/// holder is a child subreaper, a process whose parent died is re-parented to it, so killing
/// its direct children repeatedly reaches every descendant, including those that left the
/// group with `setsid` or double-forked. Returns how many processes were signalled.
pub fn kill_all(me: u32, pgid: Option<u32>) -> usize {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let mut signalled = 0;
    for child in children(me) {
        if let Ok(pid) = i32::try_from(child) {
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                signalled += 1;
            }
        }
    }
    signalled
}

/// True while `pid` is a process that has not ended (a zombie has).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether `pid` has `path` open (a holder its spool: how a pid is told from a reused one).
pub fn has_open(pid: u32, path: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    })
}

/// Processes whose environment carries `AGENT_ENV=<id>` for one of `ids` (an agent's stray
/// processes once its holder is gone: every process of an agent inherits the variable unless
/// it clears its environment), with the id each belongs to. Only processes this user may read
/// are seen, which are the only ones it could signal anyway.
pub fn find_by_agent(ids: &HashSet<String>) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    if ids.is_empty() {
        return out;
    }
    let prefix = format!("{}=", crate::AGENT_ENV);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let found = environ
            .split(|b| *b == 0)
            .filter_map(|var| var.strip_prefix(prefix.as_bytes()))
            .filter_map(|value| std::str::from_utf8(value).ok())
            .find(|value| ids.contains(*value));
        if let Some(id) = found {
            out.push((pid, id.to_owned()));
        }
    }
    out
}

/// SIGKILLs every process of the agents `ids` (found by [`find_by_agent`]) until none is left
/// or `rounds` scans found nothing new to kill; returns the pids signalled.
pub fn kill_agents(ids: &HashSet<String>) -> Vec<u32> {
    let mut killed = Vec::new();
    for _ in 0..8 {
        let found = find_by_agent(ids);
        let mut any = false;
        for (pid, _) in found {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
                any = true;
                if !killed.contains(&pid) {
                    killed.push(pid);
                }
            }
        }
        if !any {
            break;
        }
    }
    killed
}

/// Start time of `pid` in unix nanoseconds (from `/proc/PID/stat` and the uptime), and its
/// process group.
fn start_and_group(pid: u32) -> Option<(i64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state, ppid, pgrp, ... starttime is the 20th (field 22 of stat(5)).
    let pgrp: u32 = fields.get(2)?.parse().ok()?;
    let ticks: i64 = fields.get(19)?.parse().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100);
    // Age from the uptime clock (10 ms resolution), then back from now: the boot time in
    // /proc/stat is whole seconds and drifts from the wall clock.
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age_ns = (uptime * 1e9) as i64 - ticks * (1_000_000_000 / per_second);
    Some((crate::unix_nanos() - age_ns, pgrp))
}

/// How far a recorded start time may be from the kernel's (the holder stamps the start just
/// after the spawn returns, which a loaded machine may delay).
const START_SLACK_NS: i64 = 5_000_000_000;

/// SIGKILLs what is left of the process group `pgid` of an agent that started at
/// `started_at` (unix ns), for agents whose holder is gone. A group id is not reused while any
/// process is in the group, so members are the agent's; but if a process with pid `pgid` now
/// exists and started at another time, the id was recycled and nothing is touched. Returns
/// the pids signalled.
pub fn kill_group_of(pgid: u32, started_at: i64) -> Vec<u32> {
    if let Some((leader_start, _)) = start_and_group(pgid) {
        if (leader_start - started_at).abs() > START_SLACK_NS {
            return Vec::new();
        }
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((_, group)) = start_and_group(pid) else {
            continue;
        };
        if group == pgid {
            if let Ok(raw) = i32::try_from(pid) {
                if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
                    killed.push(pid);
                }
            }
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_start_time_is_read_within_a_second_of_the_clock() {
        let before = crate::unix_nanos();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let after = crate::unix_nanos();
        let (start, _) = start_and_group(child.id()).unwrap_or_else(|| panic!("no stat"));
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            start > before - 1_000_000_000 && start < after + 1_000_000_000,
            "start {start} not within a second of {before}..{after}"
        );
    }
}
