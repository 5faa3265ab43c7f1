//! What a test's daemon leaves running when the test does not end it: its holders and their
//! agents, which outlive a daemon by design. A test harness calls [`kill_holders`] when a
//! daemon is dropped without a deliberate stop or crash (a failed test, above all), so a
//! failure does not leave `sleep 3600` agents and their holders behind on the machine.
//! Shared by the daemon's and the CLI's test harnesses (the CLI's includes this file).

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// SIGKILLs every other process with a file open in `state_dir` (holders and the spawner
/// keep their spool, socket or pool directory there), each agent under them first: the
/// process group of every descendant (agents lead their own group, and a holder reaps what
/// escapes it). Best effort: a process that exits meanwhile is skipped.
pub fn kill_holders(state_dir: &Path) {
    let Ok(state_dir) = state_dir.canonicalize() else {
        return;
    };
    let me = std::process::id();
    for pid in pids().filter(|pid| *pid != me) {
        if has_file_under(pid, &state_dir) {
            for descendant in descendants(pid) {
                if let Ok(pid) = i32::try_from(descendant) {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

fn has_file_under(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target: PathBuf| target.starts_with(dir))
    })
}

/// Children, grandchildren and so on, parents before their children.
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        // Each thread lists the children it forked.
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}
