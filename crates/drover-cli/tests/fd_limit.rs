//! `drover serve` under a lowered open-files limit (set by `sh`'s `ulimit` before it `exec`s the
//! daemon, so the limit is the child's alone): the soft limit is raised to the hard one, a
//! `max_agents` the hard limit cannot carry is refused with the arithmetic, and one it can carry
//! is carried — every agent starts, each with a stdin pipe and an open log.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// `drover serve <extra>` under soft limit 512 and hard limit 600.
fn serve_limited(dir: &Path, extra: &[&str]) -> Command {
    let config = dir.join("drover.toml");
    // 16 streams and 64 HTTP connections per listener: the daemon reserves 256 + 2 × 64 +
    // 2 × 16 = 416 descriptors; each agent under a holder costs it 2 (its socket and its log):
    // (600 - 416) / 2 = 92 agents fit.
    std::fs::write(&config, "max_streams = 16\nhttp_max_connections = 64\n").expect("config");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -S -n 512 && ulimit -H -n 600 && exec "$0" "$@""#)
        .arg(drover_bin())
        .args([
            "serve",
            "--control",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ])
        .args(["--http", "127.0.0.1:0", "--grace-ms", "2000", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .env("DROVER_LOG", "warn");
    command
}

/// `(soft, hard)` "Max open files" of a process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let fields: Vec<&str> = line.split_whitespace().collect();
    (
        fields[3].parse().expect("soft"),
        fields[4].parse().expect("hard"),
    )
}

#[test]
fn a_max_agents_the_hard_limit_cannot_carry_is_refused_with_the_arithmetic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = wait_output(
        serve_limited(dir.path(), &["--max-agents", "93"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start"),
    );
    assert!(!output.status.success(), "refused");
    let message = stderr(&output);
    assert!(
        message.contains(
            "max_agents 93 needs 93 × 1 file descriptors per agent + 93 open log segments (at \
             most max_open_writers 1024) + 416 for the daemon (256 + 2 × http_max_connections \
             64 + 2 × max_streams 16) = 602, but the open-files limit is 600 (hard limit 600): \
             at most 92 agents fit"
        ),
        "{message}"
    );
}

#[test]
fn the_soft_limit_is_raised_and_max_agents_agents_all_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = serve_limited(dir.path(), &["--max-agents", "92"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    assert!(line.starts_with("drover ready "), "{line:?}");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {line:?}"))
            .to_owned()
    };
    // The CLI reaches a local daemon on its ipc socket (TCP needs a CURVE key).
    let (control, tcp, http) = (field("ipc="), field("control="), field("http="));
    assert_eq!(open_files_limit(child.id()), (600, 600));
    let daemon = Daemon {
        child,
        control,
        tcp,
        http,
        state_dir: dir.path().join("state"),
        ended: false,
    };
    for _ in 0..92 {
        ok(daemon.drover(&["spawn", "-i", "--", "sh", "-c", "echo up; exec sleep 100"]));
    }
    let over = daemon.drover(&["spawn", "--", "true"]);
    assert!(stderr(&over).contains("limit_reached"), "{}", stderr(&over));
    // Every agent is running and has written its line (so its log segment is open too).
    let running = wait_for("every agent's first line", || {
        let agents = json(&daemon, &["ls", "--state", "running"]);
        (agents.as_array().map(Vec::len) == Some(92)).then_some(agents)
    });
    for agent in running.as_array().expect("agents") {
        let id = agent["id"].as_str().expect("id");
        wait_for("the agent's line", || {
            (ok(daemon.drover(&["logs", id])) == "up\n").then_some(())
        });
    }
    let failed = json(&daemon, &["ls", "--state", "failed_to_start"]);
    assert_eq!(failed.as_array().map(Vec::len), Some(0), "{failed}");
    daemon.stop();
}
