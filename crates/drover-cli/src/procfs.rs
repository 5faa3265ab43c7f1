//! Per-process-group CPU time and memory from `/proc`, for `drover top`. An agent is its
//! process group (the group id is the agent's pid), children included.

use std::collections::HashMap;

/// What one process group uses at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Processes in the group.
    pub(crate) processes: u32,
    /// User plus system CPU time, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// Resident memory, in pages.
    pub(crate) rss_pages: u64,
}

/// Usage of every process group on this host, by group id. Processes that exit while the
/// scan runs are skipped.
pub(crate) fn by_group() -> std::io::Result<HashMap<u32, Usage>> {
    let mut groups: HashMap<u32, Usage> = HashMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((group, usage)) = parse_stat(&stat) {
            let total = groups.entry(group).or_default();
            total.processes += 1;
            total.cpu_ticks += usage.cpu_ticks;
            total.rss_pages += usage.rss_pages;
        }
    }
    Ok(groups)
}

/// `(pgrp, usage)` from a `/proc/PID/stat` line (proc(5)). The command name is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, Usage)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15) ... rss(24).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let group = u32::try_from(field(5)?).ok()?;
    Some((
        group,
        Usage {
            processes: 1,
            cpu_ticks: field(14)? + field(15)?,
            rss_pages: field(24)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_with_an_awkward_name() {
        let line = "4242 (a (b) c) S 1 4240 4240 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 \
                    123 4096000 321 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some((
                4240,
                Usage {
                    processes: 1,
                    cpu_ticks: 12,
                    rss_pages: 321,
                }
            ))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_found_in_its_group() {
        let groups = by_group().unwrap();
        let own = nix::unistd::getpgrp().as_raw();
        let usage = groups[&u32::try_from(own).unwrap()];
        assert!(usage.processes >= 1);
        assert!(usage.rss_pages > 0);
    }
}
