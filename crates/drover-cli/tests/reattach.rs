//! A real `drover serve` killed with SIGKILL while 48 agents print numbered lines (fast ones,
//! slow ones, ones that end while it is down): after a restart every agent is re-attached or
//! correctly ended, every log is exactly `1..=N` with the true exit code, and a follower
//! connected before the crash resumes by seq without a gap or a duplicate.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_client::{Client, ClientOptions, FollowEvent, FollowOptions, Selection};
use drover_proto::{Record, Seq, StreamKind};

use common::*;

/// Agents of each kind.
const EACH: usize = 16;

/// `1..=n` as the lines a log holds.
fn lines(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

fn spawn(daemon: &Daemon, name: &str, script: &str) {
    ok(daemon.drover(&["spawn", "--name", name, "--", "sh", "-c", script]));
}

/// True once every agent is in a terminal state.
fn all_ended(daemon: &Daemon) -> bool {
    json(daemon, &["ls"])
        .as_array()
        .unwrap()
        .iter()
        .all(|a| matches!(a["state"].as_str(), Some("exited" | "killed" | "lost")))
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_daemon_killed_while_agents_print_loses_no_line_and_no_exit() {
    let dir = tempfile::tempdir().unwrap();
    let flags = tempfile::tempdir().unwrap();
    let flag = |name: &str| flags.path().join(name).display().to_string();
    let (go, end) = (flag("go"), flag("end"));
    let daemon = Daemon::start(dir.path());
    for i in 0..EACH {
        // Fast: 2,000 lines at once, then wait for `end`, exit 5.
        spawn(
            &daemon,
            &format!("fast{i}"),
            &format!(
                "i=1; while [ $i -le 2000 ]; do echo $i; i=$((i+1)); done; \
                 while [ ! -e {end} ]; do sleep 0.01; done; exit 5"
            ),
        );
        // Slow: a line every 10 ms until `end`, then 20 more, exit 0 (the count is known only
        // at the end: the last record, on stderr).
        spawn(
            &daemon,
            &format!("slow{i}"),
            &format!(
                "i=1; while [ ! -e {end} ]; do echo $i; i=$((i+1)); sleep 0.01; done; \
                 n=$((i+19)); while [ $i -le $n ]; do echo $i; i=$((i+1)); done; echo $n >&2"
            ),
        );
        // Ends while the daemon is down: 100 lines, wait for `go`, 100 more, exit 7.
        spawn(
            &daemon,
            &format!("away{i}"),
            &format!(
                "i=1; while [ $i -le 100 ]; do echo $i; i=$((i+1)); done; \
                 while [ ! -e {go} ]; do sleep 0.01; done; \
                 while [ $i -le 200 ]; do echo $i; i=$((i+1)); done; exit 7"
            ),
        );
    }
    wait_for("every agent's first lines", || {
        (0..EACH)
            .all(|i| {
                stdout(&daemon.drover(&["logs", &format!("away{i}")])).starts_with("1\n")
                    && stdout(&daemon.drover(&["logs", &format!("slow{i}")])).starts_with("1\n")
            })
            .then_some(())
    });
    let away_pids: Vec<u64> = (0..EACH)
        .map(|i| {
            json(&daemon, &["show", &format!("away{i}")])["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // A follower connected before the crash: when its connection fails it follows again from
    // the next seq it needs, as any client may.
    let followed = Arc::new(Mutex::new(Vec::new()));
    let follower = follow_resuming(daemon.control.clone(), "slow0", Arc::clone(&followed));
    wait_for("the follower's first records", || {
        (!followed.lock().unwrap().is_empty()).then_some(())
    });
    daemon.crash();
    // The holders it kept ready, and its spawner's pooled ones, exit with it: nothing started
    // ahead outlives the daemon.
    wait_for("the holders started ahead to exit", || {
        let empty = |name: &str| {
            std::fs::read_dir(dir.path().join(name)).map_or(true, |mut d| d.next().is_none())
        };
        (empty("holders.ready") && empty("holders.pool")).then_some(())
    });

    // While it is down: the `away` agents finish under their holders.
    std::fs::write(&go, b"").unwrap();
    wait_for("the away agents to end while the daemon is down", || {
        away_pids.iter().all(|pid| !alive(*pid)).then_some(())
    });

    let daemon = Daemon::start(dir.path());
    std::fs::write(&end, b"").unwrap();
    wait_for("every agent to end", || all_ended(&daemon).then_some(()));
    for i in 0..EACH {
        let show = |name: &str| json(&daemon, &["show", name]);
        let fast = format!("fast{i}");
        assert_eq!(show(&fast)["exit_code"], 5, "{fast}");
        assert_eq!(
            ok(daemon.drover(&["logs", &fast, "--stream", "stdout"])),
            lines(2000)
        );
        let away = format!("away{i}");
        assert_eq!(show(&away)["exit_code"], 7, "{away}");
        assert_eq!(ok(daemon.drover(&["logs", &away])), lines(200));
        let slow = format!("slow{i}");
        assert_eq!(show(&slow)["exit_code"], 0, "{slow}");
        let n: u32 = stderr(&daemon.drover(&["logs", &slow, "--stream", "stderr"]))
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            ok(daemon.drover(&["logs", &slow, "--stream", "stdout"])),
            lines(n)
        );
    }
    wait_for("the follower to see the end", || {
        follower.is_finished().then_some(())
    });
    follower.join().unwrap();
    let n: u32 = stderr(&daemon.drover(&["logs", "slow0", "--stream", "stderr"]))
        .trim()
        .parse()
        .unwrap();
    let followed = followed.lock().unwrap();
    let seqs: Vec<u64> = followed.iter().map(|r| r.seq.0).collect();
    assert_eq!(
        seqs,
        (1..=u64::from(n) + 1).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let out: Vec<u8> = followed
        .iter()
        .filter(|r| r.stream == StreamKind::Stdout)
        .flat_map(|r| r.data.clone())
        .collect();
    assert_eq!(String::from_utf8(out).unwrap(), lines(n));
    assert_eq!(
        holders_left(dir.path()),
        0,
        "every holder released its agent"
    );
    daemon.stop();
}

/// Follows `agent` until it ends, collecting its records; whenever the connection fails (the
/// daemon is down), follows again from the next seq.
fn follow_resuming(
    control: String,
    agent: &str,
    out: Arc<Mutex<Vec<Record>>>,
) -> std::thread::JoinHandle<()> {
    let agent = agent.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut next = Seq(1);
            loop {
                let options = ClientOptions {
                    request_timeout: Duration::from_millis(500),
                    ..ClientOptions::default()
                };
                let Ok(client) = Client::connect_with(&control, options).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let follow = FollowOptions {
                    since_seq: Some(next),
                    until_exit: true,
                    ..FollowOptions::default()
                };
                let Ok(mut follower) = client
                    .follow(Selection::Agents(vec![agent.clone()]), follow)
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                loop {
                    match follower.next().await {
                        Ok(Some(FollowEvent::Records { records, .. })) => {
                            for record in records {
                                assert_eq!(record.seq, next, "the follower resumed exactly");
                                next = next.next();
                                out.lock().unwrap().push(record);
                            }
                        }
                        Ok(Some(FollowEvent::Exit(_)) | None) => return,
                        Ok(Some(_)) => {}
                        Err(_) => break,
                    }
                }
            }
        });
    })
}

/// Holder directories still present.
fn holders_left(state_dir: &Path) -> usize {
    wait_for("holders to be released", || {
        let n = std::fs::read_dir(state_dir.join("holders")).map_or(0, |d| d.count());
        (n == 0).then_some(0)
    })
}

/// An agent with a stdin pipe keeps it across a daemon restart: the next daemon writes to it
/// and closes it, and the agent sees every byte once.
#[test]
fn a_reattached_agent_still_takes_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &["--leave-agents"]);
    ok(daemon.drover(&["spawn", "-i", "--name", "c", "--", "cat"]));
    ok(daemon.drover(&["send", "c", "before"]));
    wait_for("the first line", || {
        (ok(daemon.drover(&["logs", "c"])) == "before\n").then_some(())
    });
    daemon.stop();
    let daemon = Daemon::start(dir.path());
    assert_eq!(json(&daemon, &["show", "c"])["state"], "running");
    ok(daemon.drover(&["send", "c", "after", "--close"]));
    let waited = daemon.drover(&["wait", "c"]);
    assert_eq!(waited.status.code(), Some(0), "{}", stderr(&waited));
    assert_eq!(ok(daemon.drover(&["logs", "c"])), "before\nafter\n");
    assert_eq!(holders_left(dir.path()), 0);
}

/// Everything a child prints on one of its pipes, as it comes.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// A `drover` child whose stdout and stderr are collected as they come.
fn started(
    daemon: &Daemon,
    args: &[&str],
) -> (std::process::Child, Arc<Mutex<String>>, Arc<Mutex<String>>) {
    let mut child = daemon
        .command(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    (child, out, err)
}

fn says(text: &Arc<Mutex<String>>, what: &str) -> Option<()> {
    text.lock().unwrap().contains(what).then_some(())
}

/// `drover wait` and `drover run` started before a daemon restart (agents left running) go on
/// with the daemon that replaces it: `wait` reports the end, `run` prints every line once and
/// exits with the agent's code. A Ctrl-C while the daemon is away stops the agent once it is
/// back; a second one leaves at once.
#[test]
fn run_and_wait_ride_out_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let leave = ["--leave-agents"];
    let gate = |name: &str| dir.path().join(name);
    let gated = |name: &str, code: u8| {
        format!(
            "echo r1; while [ ! -e {} ]; do sleep 0.05; done; echo r2; echo r3; exit {code}",
            gate(name).display()
        )
    };

    // wait: its round is in flight when the daemon goes. Nothing else asks `health` meanwhile,
    // so one more `health` served is the wait's (it asks which daemon answers, then waits).
    let daemon = Daemon::start_with(dir.path(), &leave);
    ok(daemon.drover(&["spawn", "--name", "ww", "--", "sh", "-c", &gated("g1", 5)]));
    let healths = |daemon: &Daemon| {
        json(daemon, &["stats"])["requests"]["health"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = healths(&daemon);
    let (waiting, printed, said) = started(&daemon, &["wait", "ww"]);
    wait_for("wait is waiting", || {
        (healths(&daemon) > before).then_some(())
    });
    daemon.stop();
    let daemon = Daemon::start_with(dir.path(), &leave);
    std::fs::write(gate("g1"), b"").unwrap();
    let waited = wait_output(waiting);
    assert_eq!(waited.status.code(), Some(5), "{}", said.lock().unwrap());
    assert!(
        says(&printed, "exited code 5").is_some(),
        "{}",
        printed.lock().unwrap()
    );

    // run: every line once, across the restart, and the agent's code.
    let (mut run, printed, said) = started(
        &daemon,
        &["run", "--name", "rr", "--", "sh", "-c", &gated("g2", 3)],
    );
    wait_for("run prints r1", || says(&printed, "r1"));
    daemon.stop();
    let daemon = Daemon::start_with(dir.path(), &leave);
    std::fs::write(gate("g2"), b"").unwrap();
    let status = wait_child(&mut run);
    assert_eq!(status.code(), Some(3), "{}", said.lock().unwrap());
    assert_eq!(printed.lock().unwrap().as_str(), "r1\nr2\nr3\n");
    let told = said.lock().unwrap().clone();
    assert!(told.contains("the daemon went away"), "{told}");
    assert!(told.contains("the daemon is back"), "{told}");

    // Ctrl-C while the daemon is away: the agent is stopped once it is back (SIGTERM: 143).
    let (mut run, said) = interrupted_while_away(daemon, "r2");
    let daemon = Daemon::start_with(dir.path(), &leave);
    assert_eq!(
        wait_child(&mut run).code(),
        Some(143),
        "{}",
        said.lock().unwrap()
    );
    assert_eq!(json(&daemon, &["show", "r2"])["state"], "killed");

    // ...and a second Ctrl-C leaves at once, the agent still running.
    let (mut run, _) = interrupted_while_away(daemon, "r3");
    signal(run.id(), "INT");
    assert_eq!(wait_child(&mut run).code(), Some(130));
    let daemon = Daemon::start(dir.path());
    assert_eq!(json(&daemon, &["show", "r3"])["state"], "running");
    ok(daemon.drover(&["kill", "r3"]));
    assert_eq!(daemon.drover(&["wait", "r3"]).status.code(), Some(137));
}

/// A `drover run --name NAME` of an agent that runs on, whose daemon is stopped (leaving it
/// running) and which is then interrupted once: it holds the stop until a daemon answers.
fn interrupted_while_away(daemon: Daemon, name: &str) -> (std::process::Child, Arc<Mutex<String>>) {
    let script = "echo up; exec sleep 1000";
    let (run, printed, said) = started(&daemon, &["run", "--name", name, "--", "sh", "-c", script]);
    wait_for("run prints up", || says(&printed, "up"));
    daemon.stop();
    wait_for("run notices", || says(&said, "the daemon went away"));
    signal(run.id(), "INT");
    wait_for("run holds the stop", || {
        says(&said, "will be stopped when it is back")
    });
    (run, said)
}
