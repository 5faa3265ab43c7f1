//! One fleet over several hosts, through the real binary across network namespaces.
//!
//! Hosts B and C each run `drover serve` bound to their end of a veth link to host A; the CLI
//! runs on A with a context per daemon and a fleet of both. Merged `ls`, host-qualified verbs,
//! `logs -f` over both hosts with exact sequences, a dead daemon reported within the deadline
//! while the other answers, and a link outage in the middle of a follow that resumes with
//! nothing missed and nothing twice. CI runs as root; `ip` (iproute2) is required.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{Link, Netns, NetnsDaemon};
use common::*;

/// Host A, where the CLI runs, with its own config directory.
struct Client<'a> {
    host: &'a Netns,
    config: PathBuf,
}

impl Client<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.host.command(drover_bin());
        command
            .args(args)
            .env("DROVER_CONFIG_DIR", &self.config)
            .env_remove("DROVER_CONTROL")
            .env_remove("DROVER_CONTEXT");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        output_of(self.command(args))
    }

    /// Start a command whose stdout and stderr are collected as they come.
    fn spawn(&self, args: &[&str]) -> Streaming {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let kept = Arc::clone(&buffer);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    kept.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            buffer
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Streaming {
            child,
            stdout,
            stderr,
        }
    }
}

/// A running command's output so far.
struct Streaming {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Streaming {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
    /// Wait for the exit (hard timeout) and return its status code.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = wait_for("the follow to end", || self.child.try_wait().unwrap());
        // The pipes close with the process; the collectors then stop.
        wait_for("the output to be collected", || {
            (Arc::strong_count(&self.stdout) == 1 && Arc::strong_count(&self.stderr) == 1)
                .then_some(())
        });
        (status.code(), self.stdout(), self.stderr())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `drover auth ...` against a daemon's state directory (on its host's filesystem).
fn auth(state: &Path, args: &[&str]) -> String {
    ok(Command::new(drover_bin())
        .arg("auth")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap())
}

/// A daemon on its own host, reachable from A over `link`, with A's key allowed.
struct Remote {
    daemon: NetnsDaemon,
    _state: tempfile::TempDir,
    _work: tempfile::TempDir,
}

fn remote(host: &Netns, link: &Link, client_public: &str) -> (Remote, String) {
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    auth(state.path(), &["allow", client_public, "--role", "control"]);
    let server_key = auth(state.path(), &["server-key"]).trim().to_owned();
    let daemon = NetnsDaemon::start(host, link.right, state.path(), work.path());
    let remote = Remote {
        daemon,
        _state: state,
        _work: work,
    };
    (remote, server_key)
}

/// `[host/name] N` lines of a follow's stdout, by prefix, in the order printed.
fn sequences(stdout: &str) -> BTreeMap<String, Vec<u32>> {
    let mut by_agent: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in stdout.lines() {
        let (prefix, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        by_agent
            .entry(prefix.to_owned())
            .or_default()
            .push(rest.parse().unwrap_or_else(|_| panic!("{line:?}")));
    }
    by_agent
}

/// A script printing 1..=n, one line every `pause` seconds.
fn counter(n: u32, pause: &str) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo $i; sleep {pause}; i=$((i+1)); done")
}

const N: u32 = 200;

#[test]
fn one_fleet_over_two_hosts_lists_follows_and_survives_outages() {
    let a = Netns::new('a');
    let b = Netns::new('b');
    let c = Netns::new('c');
    let ab = Link::new(&a, &b);
    let ac = Link::new(&a, &c);
    let config = tempfile::tempdir().unwrap();
    let key = config.path().join("client.key");
    let public = ok(Command::new(drover_bin())
        .args(["auth", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap())
    .trim()
    .to_owned();
    let (remote_b, key_b) = remote(&b, &ab, &public);
    let (mut remote_c, key_c) = remote(&c, &ac, &public);
    let cli = Client {
        host: &a,
        config: config.path().to_path_buf(),
    };
    for (name, daemon, server_key) in [("b", &remote_b, &key_b), ("c", &remote_c, &key_c)] {
        ok(cli.run(&[
            "context",
            "add",
            name,
            "--control",
            &format!("tcp://{}", daemon.daemon.control),
            "--server-key",
            server_key,
            "--key",
            key.to_str().unwrap(),
        ]));
    }
    ok(cli.run(&["context", "fleet", "add", "bc", "b", "c"]));
    assert_eq!(
        ok(cli.run(&["context", "fleet", "ls"])),
        "FLEET  CONTEXTS\nbc     b,c\n"
    );

    // `spawn --context HOST`: the same names on both hosts.
    for host in ["b", "c"] {
        for name in ["p1", "p2"] {
            let script = counter(N, "0");
            ok(cli.run(&[
                "--context",
                host,
                "spawn",
                "--name",
                name,
                "-l",
                "job=p",
                "--",
                "sh",
                "-c",
                &script,
            ]));
        }
    }

    // `logs -f` over both hosts: exactly 1..=N from each agent, prefixed by host and name.
    let follow = cli.spawn(&["logs", "-f", "b/p1", "b/p2", "c/p1", "c/p2"]);
    let (code, out, err) = follow.finish();
    assert_eq!(code, Some(0), "{err}");
    let expected: Vec<u32> = (1..=N).collect();
    let got = sequences(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["[b/p1]", "[b/p2]", "[c/p1]", "[c/p2]"]
    );
    for (agent, seen) in &got {
        assert_eq!(seen, &expected, "{agent}");
    }

    // A host whose context is wrong (c's address with b's server key: the handshake fails) is
    // reported and left, not retried for ever: the follow ends with the other host's agent.
    ok(cli.run(&[
        "context",
        "add",
        "wrong",
        "--control",
        &format!("tcp://{}", remote_c.daemon.control),
        "--server-key",
        &key_b,
        "--key",
        key.to_str().unwrap(),
    ]));
    let follow = cli.spawn(&["logs", "-f", "b/p1", "wrong/p1"]);
    let (code, out, err) = follow.finish();
    assert_ne!(
        code,
        Some(0),
        "the wrong host's failure is the status: {err}"
    );
    assert_eq!(sequences(&out)["[b/p1]"], expected);
    assert!(
        err.contains("drover: wrong: ") && err.contains("handshake"),
        "{err}"
    );
    assert!(!err.contains("back; following on"), "{err}");
    ok(cli.run(&["context", "rm", "wrong"]));

    // Merged `ls`: a HOST column first, both hosts' agents, newest first.
    let listed = ok(cli.run(&["--context", "bc", "ls", "-l", "job=p"]));
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["HOST", "ID", "NAME"], "{listed}");
    let hosts_names: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0], r[2])).collect();
    assert_eq!(
        hosts_names,
        [("c", "p2"), ("c", "p1"), ("b", "p2"), ("b", "p1")],
        "{listed}"
    );
    // `--json`: each agent carries its host; `--all-contexts` is the same fleet here.
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli.run(&["--all-contexts", "--json", "ls"]))).unwrap();
    let mut seen: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| {
            (
                agent["host"].as_str().unwrap().to_owned(),
                agent["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let pairs = |names: &[(&str, &str)]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|(h, n)| ((*h).to_owned(), (*n).to_owned()))
            .collect()
    };
    assert_eq!(
        seen,
        pairs(&[("b", "p1"), ("b", "p2"), ("c", "p1"), ("c", "p2")])
    );
    // One context is today's `ls`: no HOST column.
    let one = ok(cli.run(&["--context", "c", "ls"]));
    assert!(one.starts_with("ID "), "{one}");
    assert_eq!(one.lines().count(), 3, "{one}");

    // Host-qualified references on the verbs: `show` on one host, `rm` on both.
    let shown: serde_json::Value =
        serde_json::from_str(&ok(cli.run(&["--json", "show", "c/p2"]))).unwrap();
    assert_eq!(shown["name"], "p2");
    assert_eq!(shown["state"], "exited");
    assert_eq!(
        ok(cli.run(&["rm", "b/p2", "c/p2"])),
        "removed b/p2\nremoved c/p2\n"
    );
    let unqualified = cli.run(&["--context", "bc", "show", "p1"]);
    assert_eq!(unqualified.status.code(), Some(1));
    assert!(
        stderr(&unqualified).contains("as HOST/p1"),
        "{}",
        stderr(&unqualified)
    );

    // Events of both hosts, each agent named HOST/NAME (a removed one by HOST/HANDLE).
    let events = ok(cli.run(&["--context", "bc", "events"]));
    let spawned = |prefix: &str| {
        events
            .lines()
            .filter(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.get(2).is_some_and(|who| who.starts_with(prefix))
                    && cells.get(3) == Some(&"spawned")
            })
            .count()
    };
    for host in ["b", "c"] {
        assert_eq!(spawned(&format!("{host}/")), 2, "{events}");
        assert_eq!(spawned(&format!("{host}/p1")), 1, "{events}");
    }

    // The link A–B goes down for 5 s in the middle of a follow of both hosts: the follow says
    // so, goes on with C, and resumes B where it stopped.
    for host in ["b", "c"] {
        ok(cli.run(&[
            "--context",
            host,
            "spawn",
            "--name",
            "q",
            "--",
            "sh",
            "-c",
            &counter(N, "0.03"),
        ]));
    }
    let follow = cli.spawn(&["logs", "-f", "b/q", "c/q"]);
    wait_for("B's first lines", || {
        follow.stdout().contains("[b/q] 10\n").then_some(())
    });
    ab.set_up(false);
    wait_for("the follow to notice that B is away", || {
        follow
            .stderr()
            .contains("drover: b: unreachable")
            .then_some(())
    });
    // The outage itself: a deliberate duration, not a synchronisation.
    std::thread::sleep(Duration::from_secs(5));
    ab.set_up(true);
    let (code, out, err) = follow.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("drover: b: back; following on"), "{err}");
    assert!(!err.contains("drover: c:"), "C was never away: {err}");
    let got = sequences(&out);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["[b/q]", "[c/q]"]);
    for (agent, seen) in &got {
        assert_eq!(seen, &expected, "{agent}: no gap, no duplicate");
    }

    // `--all` over the fleet follows agents spawned after it started, on every host.
    let all = cli.spawn(&["--context", "bc", "logs", "-f", "--all", "-n", "0"]);
    // And `events -f` over the fleet (from the first event, so its start cannot race the spawns).
    let live_events = cli.spawn(&["--context", "bc", "events", "-f", "--since", "0"]);
    // `-n 0` shows only what is printed once the follow runs: a probe on each host, ticking
    // until it is seen, says the follow is live on both before the agents under test start.
    for host in ["b", "c"] {
        ok(cli.run(&[
            "--context",
            host,
            "spawn",
            "--name",
            "probe",
            "--",
            "sh",
            "-c",
            "while :; do echo tick; sleep 0.05; done",
        ]));
    }
    wait_for("the follow to be live on both hosts", || {
        let out = all.stdout();
        (out.contains("[b/probe] tick") && out.contains("[c/probe] tick")).then_some(())
    });
    for host in ["b", "c"] {
        ok(cli.run(&["--context", host, "kill", "probe"]));
        // Its exit status is the probe's (killed): only its end matters here.
        let _ = cli.run(&["--context", host, "wait", "probe"]);
        ok(cli.run(&["--context", host, "rm", "probe"]));
    }
    for host in ["b", "c"] {
        ok(cli.run(&[
            "--context",
            host,
            "spawn",
            "-i",
            "--name",
            "late",
            "--",
            "sh",
            "-c",
            "read go; echo late-$go",
        ]));
        ok(cli.run(&["--context", host, "send", "late", host]));
    }
    let late = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|line| line.contains("/late] "))
            .map(str::to_owned)
            .collect()
    };
    let mut lines = wait_for("both late agents' lines", || {
        let lines = late(&all.stdout());
        (lines.len() >= 2).then_some(lines)
    });
    lines.sort();
    assert_eq!(lines, ["[b/late] late-b", "[c/late] late-c"]);
    drop(all);
    for agent in ["b/late", "c/late"] {
        wait_for("the late agents' exits, live", || {
            live_events
                .stdout()
                .lines()
                .any(|line| {
                    let cells: Vec<&str> = line.split_whitespace().collect();
                    cells.get(2) == Some(&agent) && cells.get(3) == Some(&"exit")
                })
                .then_some(())
        });
    }
    drop(live_events);

    // C's daemon dies: `ls` of the fleet says so promptly, and still lists B's agents.
    remote_c.daemon.crash();
    let started = Instant::now();
    let listed = cli.run(&["--context", "bc", "ls"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(listed.status.code(), Some(1), "{}", stderr(&listed));
    let err = stderr(&listed);
    assert!(err.starts_with("drover: c: unreachable: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let names: Vec<(String, String)> = stdout(&listed)
        .lines()
        .skip(1)
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            (cells[0].to_owned(), cells[2].to_owned())
        })
        .collect();
    assert_eq!(names, pairs(&[("b", "late"), ("b", "q"), ("b", "p1")]));
    drop(remote_b);
}
