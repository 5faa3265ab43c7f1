//! A fleet of two daemons on this host, through the real binary: `wait` across hosts (`--any`
//! and all, host-qualified names and selectors, the exit-status rule, an unreachable host) and
//! `--json` over a fleet as ONE document. Each daemon is reached over its own ipc socket by a
//! context of its own; no namespaces are needed for these (see `fleet.rs` for real links).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;

/// Two daemons and a contexts file naming them `a` and `b` (and `gone`, a daemon that is not
/// there).
struct Fleet {
    a: Daemon,
    b: Daemon,
    config: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    fn start() -> Fleet {
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = Daemon::start(dirs[0].path());
        let b = Daemon::start(dirs[1].path());
        let config = dirs[2].path().to_path_buf();
        let gone = format!("ipc://{}", dirs[3].path().join("control.sock").display());
        let fleet = Fleet {
            a,
            b,
            config,
            _dirs: dirs,
        };
        for (name, control) in [
            ("a", fleet.a.control.clone()),
            ("b", fleet.b.control.clone()),
            ("gone", gone),
        ] {
            ok(fleet.run(&["context", "add", name, "--control", &control]));
        }
        fleet
    }

    fn command(&self, args: &[&str]) -> Command {
        command(&self.config, args)
    }

    fn run(&self, args: &[&str]) -> Output {
        output_of(self.command(args))
    }

    /// Start a command that runs until the test makes it end.
    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// An agent on `host` that ends with the exit code written to its stdin.
    fn waiter(&self, host: &str, name: &str, label: &str) {
        ok(self.run(&[
            "--context",
            host,
            "spawn",
            "-i",
            "--name",
            name,
            "-l",
            label,
            "--",
            "sh",
            "-c",
            "read code; exit $code",
        ]));
    }

    /// `get` requests `host`'s daemon has served.
    fn gets(&self, host: &str) -> u64 {
        let stats: serde_json::Value =
            serde_json::from_str(&ok(self.run(&["--context", host, "--json", "stats"]))).unwrap();
        stats["requests"]["get"].as_u64().unwrap_or(0)
    }

    /// Until `host`'s daemon has served more than `before` `get`s: an unbounded wait has
    /// resolved its agents there (it looks each up by id before waiting on it), so ending them
    /// now cannot race its selection.
    fn wait_until_waiting(&self, host: &str, before: u64) {
        wait_for("the wait to look its agents up", || {
            (self.gets(host) > before).then_some(())
        });
    }

    fn state(&self, host: &str, agent: &str) -> String {
        let shown: serde_json::Value =
            serde_json::from_str(&ok(self.run(&["--context", host, "--json", "show", agent])))
                .unwrap();
        shown["state"].as_str().unwrap().to_owned()
    }
}

fn command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(drover_bin());
    command
        .args(args)
        .env("DROVER_CONFIG_DIR", config)
        .env_remove("DROVER_CONTROL")
        .env_remove("DROVER_CONTEXT");
    command
}

/// `(host, name, exit_code)` of each item of a JSON array of agents.
fn hosts_names_codes(json: &serde_json::Value) -> Vec<(String, String, i64)> {
    json.as_array()
        .unwrap_or_else(|| panic!("one JSON array: {json}"))
        .iter()
        .map(|item| {
            (
                item["host"].as_str().unwrap().to_owned(),
                item["name"].as_str().unwrap().to_owned(),
                item["exit_code"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn wait_over_a_fleet_returns_at_the_first_end_or_every_end_on_any_host() {
    let fleet = Fleet::start();
    for host in ["a", "b"] {
        fleet.waiter(host, "w", "job=w");
    }
    // `--any` with a selector over both hosts: B's agent ends first; A's is still running.
    let (gets_a, gets_b) = (fleet.gets("a"), fleet.gets("b"));
    let any = fleet.spawn(&["--context", "a,b", "wait", "--any", "-l", "job=w"]);
    fleet.wait_until_waiting("a", gets_a);
    fleet.wait_until_waiting("b", gets_b);
    ok(fleet.run(&["--context", "b", "send", "w", "3"]));
    let waited = wait_output(any);
    assert_eq!(waited.status.code(), Some(3), "{}", stderr(&waited));
    assert_eq!(stdout(&waited), "b/w exited code 3\n");
    assert_eq!(stderr(&waited), "");
    assert_eq!(fleet.state("a", "w"), "running");

    // Every one, by host-qualified name: A's ends with 0, B's ended with 3; the status is the
    // first non-zero in the order given, and `--json` is one array, each agent with its host.
    let all = fleet.spawn(&["--json", "wait", "a/w", "b/w"]);
    ok(fleet.run(&["--context", "a", "send", "w", "0"]));
    let waited = wait_output(all);
    assert_eq!(waited.status.code(), Some(3), "{}", stderr(&waited));
    let json: serde_json::Value = serde_json::from_str(&stdout(&waited)).unwrap();
    assert_eq!(
        hosts_names_codes(&json),
        [("a".into(), "w".into(), 0), ("b".into(), "w".into(), 3)]
    );
    // In text, a line per agent, named HOST/NAME.
    let text = fleet.run(&["wait", "b/w", "a/w"]);
    assert_eq!(text.status.code(), Some(3), "{}", stderr(&text));
    assert_eq!(stdout(&text), "b/w exited code 3\na/w exited code 0\n");

    // One host-qualified agent is that host's own `wait`: its one JSON object, as `show`.
    let one: serde_json::Value =
        serde_json::from_str(&ok(fleet.run(&["--json", "wait", "a/w"]))).unwrap();
    assert_eq!(one.get("host"), None);
    assert_eq!(one["name"], "w");
    assert_eq!(one["exit_code"], 0);

    // A fleet with a host that is not there: it is reported, the others are still waited for,
    // and the status says the answer is incomplete.
    fleet.waiter("a", "u", "job=u");
    let gets_a = fleet.gets("a");
    let partial = fleet.spawn(&["--context", "a,gone", "wait", "-l", "job=u"]);
    fleet.wait_until_waiting("a", gets_a);
    ok(fleet.run(&["--context", "a", "send", "u", "0"]));
    let waited = wait_output(partial);
    assert_eq!(waited.status.code(), Some(1), "{}", stderr(&waited));
    assert_eq!(stdout(&waited), "a/u exited code 0\n");
    let err = stderr(&waited);
    assert!(err.starts_with("drover: gone: unreachable: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Agents that already ended count for a selector: reported at once, their codes kept.
    let ended = fleet.run(&["--context", "a,b", "wait", "-l", "job=w"]);
    assert_eq!(stderr(&ended), "");
    assert_eq!(ended.status.code(), Some(3));
    assert_eq!(stdout(&ended), "a/w exited code 0\nb/w exited code 3\n");
    // Nothing matches on any host.
    let none = fleet.run(&["--context", "a,b", "wait", "-l", "job=nothing"]);
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(stderr(&none), "drover: no agent matches\n");
}

#[test]
fn json_over_a_fleet_is_one_document_with_each_agents_host() {
    let fleet = Fleet::start();
    for host in ["a", "b"] {
        for name in ["k1", "k2"] {
            fleet.waiter(host, name, "job=k");
        }
    }
    // `ls --json`: one array over both hosts, newest first.
    let listed: serde_json::Value =
        serde_json::from_str(&ok(fleet.run(&["--context", "a,b", "--json", "ls"]))).unwrap();
    let pairs: Vec<(String, String)> = hosts_names_codes(&listed)
        .into_iter()
        .map(|(host, name, _)| (host, name))
        .collect();
    let expected = |names: &[(&str, &str)]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|(h, n)| ((*h).to_owned(), (*n).to_owned()))
            .collect()
    };
    assert_eq!(
        pairs,
        expected(&[("b", "k2"), ("b", "k1"), ("a", "k2"), ("a", "k1")])
    );
    // `ls --jsonl`: one object a line, each with its host.
    let lines = ok(fleet.run(&["--context", "a,b", "ls", "--jsonl", "--sort", "name"]));
    let hosts: Vec<(String, String)> = lines
        .lines()
        .map(|line| {
            let item: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                item["host"].as_str().unwrap().to_owned(),
                item["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        expected(&[("b", "k1"), ("a", "k1"), ("b", "k2"), ("a", "k2")])
    );

    // A bulk verb over the fleet: one array of both hosts' outcomes, each with its host.
    let killed = fleet.run(&["--context", "a,b", "--json", "kill", "-l", "job=k"]);
    let json: serde_json::Value = serde_json::from_str(&ok(killed)).unwrap();
    let mut outcomes: Vec<(String, String, bool)> = json
        .as_array()
        .unwrap_or_else(|| panic!("one JSON array: {json}"))
        .iter()
        .map(|item| {
            (
                item["host"].as_str().unwrap().to_owned(),
                item["info"]["name"].as_str().unwrap().to_owned(),
                item["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    outcomes.sort();
    let all_ok = |names: &[(&str, &str)]| -> Vec<(String, String, bool)> {
        names
            .iter()
            .map(|(h, n)| ((*h).to_owned(), (*n).to_owned(), true))
            .collect()
    };
    assert_eq!(
        outcomes,
        all_ok(&[("a", "k1"), ("a", "k2"), ("b", "k1"), ("b", "k2")])
    );
    // Waiting across hosts for killed agents: 128 + SIGKILL, like a shell.
    let killed = fleet.run(&["wait", "a/k1", "b/k2"]);
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    assert_eq!(
        stdout(&killed),
        "a/k1 killed signal KILL\nb/k2 killed signal KILL\n"
    );
    // Host-qualified names on two hosts: one array too.
    let removed = fleet.run(&["--json", "rm", "a/k1", "b/k2"]);
    let json: serde_json::Value = serde_json::from_str(&ok(removed)).unwrap();
    let hosts: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["a", "b"]);
}

#[test]
fn a_named_context_beats_an_endpoint_left_in_the_environment() {
    let fleet = Fleet::start();
    let daemon_id = |cmd: Command| -> String {
        let health: serde_json::Value = serde_json::from_str(&ok(output_of(cmd))).unwrap();
        health["daemon"].as_str().unwrap().to_owned()
    };
    let id_a = daemon_id(fleet.command(&["--context", "a", "--json", "health"]));
    let id_b = daemon_id(fleet.command(&["--context", "b", "--json", "health"]));
    assert_ne!(id_a, id_b);
    // `DROVER_CONTROL` exported for A: a command naming B goes to B, by flag or variable.
    let mut flag = fleet.command(&["--context", "b", "--json", "health"]);
    flag.env("DROVER_CONTROL", &fleet.a.control);
    assert_eq!(daemon_id(flag), id_b);
    let mut variable = fleet.command(&["--json", "health"]);
    variable
        .env("DROVER_CONTROL", &fleet.a.control)
        .env("DROVER_CONTEXT", "b");
    assert_eq!(daemon_id(variable), id_b);
    // With no context named, the variable is the endpoint; as a flag it applies even to a
    // named context (a one-off endpoint for it).
    let mut alone = fleet.command(&["--json", "health"]);
    alone.env("DROVER_CONTROL", &fleet.a.control);
    assert_eq!(daemon_id(alone), id_a);
    let control_a = fleet.a.control.clone();
    let both = fleet.command(&[
        "--context",
        "b",
        "--control",
        &control_a,
        "--json",
        "health",
    ]);
    assert_eq!(daemon_id(both), id_a);
}

#[test]
fn auth_refuses_to_act_here_for_a_command_that_names_another_daemon() {
    let fleet = Fleet::start();
    let state_a = fleet.a.state_dir.to_str().unwrap().to_owned();
    let server_key_a = std::fs::read_to_string(fleet.a.state_dir.join("server.key.pub")).unwrap();
    for args in [
        vec!["--context", "a", "auth", "server-key"],
        vec!["--context", "b", "auth", "token", "ls"],
        vec!["--control", &fleet.b.control, "auth", "revoke", "laptop"],
    ] {
        let refused = fleet.run(&args);
        assert_eq!(refused.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("run `drover auth` on that daemon's host"),
            "{stderr}"
        );
    }
    // A state directory from the environment does not override the refusal.
    let mut env_dir = fleet.command(&["--context", "b", "auth", "ls"]);
    env_dir.env("DROVER_STATE_DIR", &state_a);
    let refused = output_of(env_dir);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("names context b"));
    // The current context counts too.
    ok(fleet.run(&["context", "use", "b"]));
    let refused = fleet.run(&["auth", "server-key"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("names context b"));
    // A state directory named outright is this host's: served, whatever the context.
    let shown = ok(fleet.run(&["auth", "--state-dir", &state_a, "server-key"]));
    assert_eq!(shown.trim(), server_key_a.trim());
    // A keypair of the user's own belongs to no daemon.
    let key = fleet.config.join("mine.key");
    ok(fleet.run(&["auth", "keygen", "--out", key.to_str().unwrap()]));
    assert!(key.exists());
}

#[test]
fn concurrent_context_commands_each_apply_and_none_loses_another() {
    let config = tempfile::tempdir().unwrap();
    let endpoint = |i: usize| format!("ipc:///nowhere/{i}/control.sock");
    ok(output_of(command(
        config.path(),
        &["context", "add", "kept", "--control", &endpoint(99)],
    )));
    for round in 0..3 {
        let children: Vec<(String, Child)> = (0..8)
            .map(|i| {
                let name = format!("r{round}c{i}");
                let child = command(
                    config.path(),
                    &["context", "add", &name, "--control", &endpoint(i)],
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
                (name, child)
            })
            .collect();
        for (name, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let listed: serde_json::Value = serde_json::from_str(&ok(output_of(command(
        config.path(),
        &["--json", "context", "ls"],
    ))))
    .unwrap();
    let text = listed.to_string();
    for name in std::iter::once("kept".to_owned())
        .chain((0..3).flat_map(|r| (0..8).map(move |i| format!("r{r}c{i}"))))
    {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "{name} missing: {text}"
        );
    }
    // Reading takes no lock (a read-only config directory can still be listed).
    let reader = tempfile::tempdir().unwrap();
    ok(output_of(command(reader.path(), &["context", "ls"])));
    assert!(!reader.path().join("contexts.toml.lock").exists());
    // No writer's temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(config.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}
