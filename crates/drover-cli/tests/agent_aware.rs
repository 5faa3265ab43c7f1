//! Agent-awareness end to end: the real daemon runs the built-in backends against a fake agent
//! CLI (`tests/agents/fake-agent` at the repository root, on PATH as claude/codex/gemini/opencode) that checks the
//! command line it is given and replays a transcript recorded from the real CLI; the real
//! client reads the activity, its events, the pretty transcript, continues a session and sums
//! the cost.

mod common;

use std::path::{Path, PathBuf};

use common::{json, ok, wait_for, Daemon};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../drover-agent/tests/fixtures")
}

fn transcript(name: &str) -> PathBuf {
    fixtures().join(format!("real/{name}.jsonl"))
}

/// A directory with the fake agent installed under each CLI's name.
fn fake_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/agents/fake-agent");
    for cli in ["claude", "codex", "gemini", "opencode"] {
        std::os::unix::fs::symlink(&fake, bin.join(cli)).expect("symlink");
    }
    bin
}

struct Fake {
    path: String,
    argv_log: PathBuf,
}

impl Fake {
    fn new(dir: &Path) -> Fake {
        let bin = fake_bin(dir);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Fake {
            path,
            argv_log: dir.join("argv.jsonl"),
        }
    }

    /// `drover spawn -b BACKEND -t TASK` replaying `transcript`; the agent's id.
    fn spawn(&self, daemon: &Daemon, backend: &str, transcript: &Path, extra: &[&str]) -> String {
        let path = format!("PATH={}", self.path);
        let replay = format!("DROVER_FAKE_TRANSCRIPT={}", transcript.display());
        let log = format!("DROVER_FAKE_ARGV_LOG={}", self.argv_log.display());
        let mut args = vec![
            "spawn",
            "-b",
            backend,
            "-t",
            "Run the scripted step.",
            "-e",
            &path,
            "-e",
            &replay,
            "-e",
            &log,
        ];
        args.extend_from_slice(extra);
        ok(daemon.drover(&args)).trim().to_owned()
    }

    /// Each command line the fake was started with.
    fn argvs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.argv_log)
            .expect("argv log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("argv line"))
            .collect()
    }
}

/// A scratch directory, a daemon on it, and the fake agent CLIs.
fn rig() -> (tempfile::TempDir, Daemon, Fake) {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("state"));
    let fake = Fake::new(dir.path());
    (dir, daemon, fake)
}

fn session_of(transcript: &Path) -> String {
    let text = std::fs::read_to_string(transcript).expect("transcript");
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for key in ["session_id", "thread_id", "sessionID"] {
            if let Some(id) = value.get(key).and_then(Value::as_str) {
                return id.to_owned();
            }
        }
    }
    panic!("no session in {}", transcript.display())
}

/// The phases of `agent`'s `activity` events, in `event_seq` order.
fn activity_phases(daemon: &Daemon, agent: &str) -> Vec<String> {
    let out = ok(daemon.drover(&["--json", "events"]));
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("event"))
        .filter(|e| e["agent"] == agent && e["kind"] == "activity")
        .map(|e| e["activity"]["phase"].as_str().expect("phase").to_owned())
        .collect()
}

#[test]
fn a_claude_agent_is_read_live_rendered_continued_and_costed() {
    let (_dir, daemon, fake) = rig();
    let recorded = transcript("claude-tool");
    let id = fake.spawn(&daemon, "claude", &recorded, &["--name", "c1"]);
    ok(daemon.drover(&["wait", "c1"]));

    // The stored bytes are the transcript, untouched.
    let logs = daemon.drover(&["logs", "c1"]);
    assert_eq!(logs.stdout, std::fs::read(&recorded).expect("transcript"));

    let agent = json(&daemon, &["show", "c1"]);
    let activity = &agent["activity"];
    assert_eq!(activity["parser"], "claude-stream-json");
    assert_eq!(activity["session_id"], session_of(&recorded).as_str());
    assert_eq!(activity["phase"], "done");
    assert_eq!(activity["turns"], 2);
    assert_eq!(activity["tokens"]["input"], 200);
    assert_eq!(activity["tokens"]["output"], 40);
    assert_eq!(activity["cost_usd"], 0.0016);
    assert_eq!(activity["result"], "The command printed drover-tool-ran.");
    assert_eq!(activity["attention"], serde_json::json!([]));
    assert_eq!(activity["ignored_lines"], 0);
    assert_eq!(
        activity_phases(&daemon, &id),
        ["working", "tool", "working", "done"]
    );

    // The transcript, rendered.
    let pretty = ok(daemon.drover(&["logs", "--pretty", "c1"]));
    let golden =
        std::fs::read_to_string(fixtures().join("pretty/claude-tool.txt")).expect("golden");
    assert_eq!(pretty, golden);

    // Continue: a new agent resuming the same session, linked to the first.
    let next = ok(daemon.drover(&["continue", "c1", "now say goodbye"]))
        .trim()
        .to_owned();
    ok(daemon.drover(&["wait", &next]));
    let argvs = fake.argvs();
    assert_eq!(argvs.len(), 2);
    assert_eq!(argvs[0]["session"], Value::Null);
    assert_eq!(argvs[1]["session"], session_of(&recorded).as_str());
    assert_eq!(argvs[1]["argv"][1], "now say goodbye");
    let continued = json(&daemon, &["show", &next]);
    assert_eq!(continued["parent"], id.as_str());
    assert_eq!(continued["spec"]["resume"], session_of(&recorded).as_str());

    // ls shows the agent columns; cost sums both runs.
    let table = ok(daemon.drover(&["ls"]));
    let header = table.lines().next().expect("header");
    for column in ["PHASE", "TURNS", "COST"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(table.contains("$0.0016"), "{table}");
    let cost = json(&daemon, &["cost"]);
    assert_eq!(cost["claude"]["agents"], 2);
    assert_eq!(cost["claude"]["cost_usd"], 0.0032);
    assert_eq!(cost["claude"]["turns"], 4);
    assert_eq!(cost["claude"]["tokens"]["input"], 400);

    // The same sums in /metrics (over the unix socket, which needs no token).
    let socket = daemon.state_dir.join("http.sock");
    let metrics = std::process::Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(&socket)
        .arg("http://drover/metrics")
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let labels = "backend=\"claude\",model=\"claude-opus-5-5\"";
    for line in [
        "drover_agent_phase{phase=\"done\"} 2".to_owned(),
        format!("drover_agent_cost_usd{{{labels}}} 0.0032"),
        format!("drover_agent_turns{{{labels}}} 4"),
        format!("drover_agent_tokens{{{labels},kind=\"output\"}} 80"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    daemon.stop();
}

#[test]
fn garbage_in_the_output_changes_only_the_ignored_counter() {
    let (dir, daemon, fake) = rig();
    let clean = std::fs::read(transcript("claude-tool")).expect("transcript");
    let mut dirty = Vec::new();
    let garbage: [&[u8]; 3] = [
        b"plain text\n",
        b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"ty\n",
        b"{\"type\":\"from_the_future\"}\n",
    ];
    for (i, line) in clean.split_inclusive(|b| *b == b'\n').enumerate() {
        dirty.extend_from_slice(garbage[i % garbage.len()]);
        dirty.extend_from_slice(line);
    }
    let path = dir.path().join("dirty.jsonl");
    std::fs::write(&path, &dirty).expect("write");
    fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-tool"),
        &["--name", "clean"],
    );
    fake.spawn(&daemon, "claude", &path, &["--name", "dirty"]);
    ok(daemon.drover(&["wait", "clean", "dirty"]));
    let mut a = json(&daemon, &["show", "clean"])["activity"].clone();
    let mut b = json(&daemon, &["show", "dirty"])["activity"].clone();
    assert_eq!(b["ignored_lines"], 5);
    a["ignored_lines"] = 0.into();
    b["ignored_lines"] = 0.into();
    assert_eq!(a, b);
    daemon.stop();
}

/// Text an agent's JSON decodes to can hold live terminal escapes (a model name, a tool, a
/// file the agent read, its reply): `show`, `cost` and `logs --pretty` print them as visible
/// escapes, never run them, and a newline in a name forges no row.
#[test]
fn escapes_in_what_an_agent_says_are_shown_not_run() {
    let (dir, daemon, fake) = rig();
    let clean = std::fs::read_to_string(transcript("claude-tool")).expect("transcript");
    let mut hostile = clean.clone();
    for (from, to) in [
        (
            r#""model":"claude-opus-5-5"#,
            r#""model":"claude-opus-5-5\u001b]0;PWNED\u0007\nfake-row"#,
        ),
        (r#""name":"Bash""#, r#""name":"Bash\u001b[2J""#),
        (
            r#""command":"echo drover-tool-ran""#,
            r#""command":"echo \u001b[1A\u001b[2Kdrover-tool-ran""#,
        ),
        (
            r#""content":"drover-tool-ran""#,
            r#""content":"\u001b[8mdrover-tool-ran""#,
        ),
        (
            "The command printed drover-tool-ran.",
            r"The command printed\r[x] spoofed \u001b]52;c;cHduZWQ=\u0007.",
        ),
    ] {
        assert!(hostile.contains(from), "{from}");
        hostile = hostile.replace(from, to);
    }
    let path = dir.path().join("hostile.jsonl");
    std::fs::write(&path, &hostile).expect("write");
    fake.spawn(&daemon, "claude", &path, &["--name", "esc"]);
    ok(daemon.drover(&["wait", "esc"]));
    let live = |text: &str| text.chars().any(|c| c.is_control() && c != '\n');

    // The activity keeps names without controls; texts keep them (they are data).
    let activity = json(&daemon, &["show", "esc"])["activity"].clone();
    let model = activity["model"].as_str().expect("model");
    assert!(model.contains("PWNED") && !live(model) && !model.contains('\n'));
    assert!(activity["result"]
        .as_str()
        .expect("result")
        .contains('\u{1b}'));

    let show = ok(daemon.drover(&["show", "esc"]));
    assert!(!live(&show), "{show:?}");
    assert!(
        show.contains(r"result   The command printed\u{d}[x] spoofed \u{1b}]52;c;cHduZWQ=\u{7}."),
        "{show}"
    );
    assert!(!show.lines().any(|l| l.starts_with("fake-row")), "{show}");

    let cost = ok(daemon.drover(&["cost", "--by", "model"]));
    assert!(!live(&cost), "{cost:?}");
    assert!(!cost.lines().any(|l| l.starts_with("fake-row")), "{cost}");
    assert_eq!(
        cost.lines().filter(|l| l.contains("PWNED")).count(),
        1,
        "{cost}"
    );

    let pretty = ok(daemon.drover(&["logs", "--pretty", "esc"]));
    assert!(!live(&pretty), "{pretty:?}");
    assert!(pretty.contains(r"← \u{1b}[8mdrover-tool-ran"), "{pretty}");
    assert!(pretty.contains(r"printed\u{d}[x] spoofed"), "{pretty}");
    // The stored bytes are the agent's, unchanged.
    assert_eq!(ok(daemon.drover(&["logs", "esc"])), hostile);
    daemon.stop();
}

#[test]
fn every_backend_is_accepted_by_its_cli_and_read() {
    let (_dir, daemon, fake) = rig();
    let cases = [
        ("codex", "codex-tool", 200, 40),
        ("gemini", "gemini-tool", 200, 40),
        ("opencode", "opencode-tool", 200, 40),
    ];
    for (backend, name, input, output) in cases {
        let recorded = transcript(name);
        let id = fake.spawn(&daemon, backend, &recorded, &["-m", "mock/mock-model"]);
        let waited = daemon.drover(&["wait", &id]);
        assert!(
            waited.status.success(),
            "{backend}: {}",
            common::stderr(&waited)
        );
        let activity = json(&daemon, &["show", &id])["activity"].clone();
        assert_eq!(
            activity["session_id"],
            session_of(&recorded).as_str(),
            "{backend}"
        );
        assert_eq!(activity["phase"], "done", "{backend}");
        assert_eq!(activity["tokens"]["input"], input, "{backend}");
        assert_eq!(activity["tokens"]["output"], output, "{backend}");
        assert_eq!(
            activity_phases(&daemon, &id),
            ["working", "tool", "working", "done"],
            "{backend}"
        );
        // Continue resumes with each CLI's own flag.
        let next = ok(daemon.drover(&["continue", &id, "next"]))
            .trim()
            .to_owned();
        ok(daemon.drover(&["wait", &next]));
        let last = fake.argvs().pop().expect("argv");
        assert_eq!(last["session"], session_of(&recorded).as_str(), "{backend}");
    }
    // Extra arguments after `--` reach the CLI.
    let id = fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-tool"),
        &["--", "--max-turns", "3"],
    );
    ok(daemon.drover(&["wait", &id]));
    let last = fake.argvs().pop().expect("argv");
    let argv: Vec<&str> = last["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|v| v.as_str().expect("word"))
        .collect();
    assert_eq!(&argv[argv.len() - 2..], ["--max-turns", "3"]);
    daemon.stop();
}

#[test]
fn agents_needing_attention_sort_first() {
    let (_dir, daemon, fake) = rig();
    fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-permission-denial"),
        &["--name", "denied"],
    );
    fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-tool"),
        &["--name", "fine"],
    );
    ok(daemon.drover(&["wait", "denied", "fine"]));
    let denied = json(&daemon, &["show", "denied"]);
    assert_eq!(
        denied["activity"]["attention"][0]["reason"],
        "permission_denied"
    );
    assert_eq!(
        denied["activity"]["attention"][0]["detail"],
        "Bash: touch drover-out.txt"
    );
    // Newest first would put `fine` first; --attention puts `denied` first, marked.
    let table = ok(daemon.drover(&["ls", "--attention"]));
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert!(
        rows[0].contains("denied") && rows[0].contains("done!"),
        "{table}"
    );
    assert!(rows[1].contains("fine"), "{table}");
    let shown = ok(daemon.drover(&["show", "denied"]));
    assert!(
        shown.contains("needs    permission_denied: Bash: touch drover-out.txt"),
        "{shown}"
    );
    daemon.stop();
}

/// claude-tool's transcript with its tool call and result repeated `n` times: init, (call,
/// result) × n, then the final text and result. With `last`, one more tool call (running that
/// command, under its own ids) comes before the final result.
fn flood_of_tool_calls(n: usize, last: Option<&str>) -> Vec<u8> {
    let recorded = std::fs::read(transcript("claude-tool")).expect("transcript");
    let lines: Vec<&[u8]> = recorded.split_inclusive(|b| *b == b'\n').collect();
    let mut flood = lines[0].to_vec();
    for _ in 0..n {
        flood.extend_from_slice(lines[1]);
        flood.extend_from_slice(lines[2]);
    }
    let rest = match last {
        Some(command) => {
            let call = String::from_utf8(lines[1].to_vec())
                .expect("UTF-8")
                .replace("echo drover-tool-ran", command)
                .replace("toolu_mock_2", "toolu_mock_9")
                .replace("msg_mock_2", "msg_mock_9");
            flood.extend_from_slice(call.as_bytes());
            &lines[2..]
        }
        None => &lines[3..],
    };
    for line in rest {
        flood.extend_from_slice(line);
    }
    flood
}

/// An agent that floods its output with tool calls (2 000 phase changes at full speed) cannot
/// flood the registry and the event history: its `activity` events are budgeted and coalesced,
/// and the last one is still its true end.
#[test]
fn a_flood_of_phase_changes_is_coalesced() {
    let (dir, daemon, fake) = rig();
    let flood = flood_of_tool_calls(1000, None);
    let path = dir.path().join("flood.jsonl");
    std::fs::write(&path, &flood).expect("write");
    let pace = "DROVER_FAKE_PACE_MS=0";
    let id = fake.spawn(&daemon, "claude", &path, &["-e", pace]);
    ok(daemon.drover(&["wait", &id]));
    let phases = activity_phases(&daemon, &id);
    assert!(
        phases.len() < 500,
        "{} activity events for 2 000 phase changes",
        phases.len()
    );
    assert_eq!(phases.last().map(String::as_str), Some("done"));
    let activity = json(&daemon, &["show", &id])["activity"].clone();
    assert_eq!(activity["phase"], "done");
    assert_eq!(
        activity["turns"], 2,
        "the result's num_turns is the final word"
    );
    assert_eq!(activity["ignored_lines"], 0);
    daemon.stop();
}

/// A change the budget held back is recorded even when the agent prints nothing more: after a
/// flood of tool calls the agent sits in its last tool call (gated), and its last `activity`
/// event catches up with its live reading without another line of output.
#[test]
fn a_held_back_change_is_recorded_without_more_output() {
    let (dir, daemon, fake) = rig();
    // The last tool call, unlike the others, is left running while the gate is shut.
    let flood = flood_of_tool_calls(300, Some("echo the-last-one"));
    let path = dir.path().join("flood.jsonl");
    std::fs::write(&path, &flood).expect("write");
    let gate = dir.path().join("gate");
    let gate_env = format!("DROVER_FAKE_GATE={}", gate.display());
    let after = format!("DROVER_FAKE_GATE_AFTER={}", 1 + 600 + 1);
    let id = fake.spawn(
        &daemon,
        "claude",
        &path,
        &["-e", "DROVER_FAKE_PACE_MS=0", "-e", &gate_env, "-e", &after],
    );
    let last_event = || {
        ok(daemon.drover(&["--json", "events"]))
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("event"))
            .rfind(|e| e["agent"] == id.as_str() && e["kind"] == "activity")
            .map(|e| e["activity"].clone())
    };
    let live = wait_for("the agent to sit in its last tool call", || {
        let activity = json(&daemon, &["show", &id])["activity"].clone();
        (activity["phase"] == "tool" && activity["current_tool"]["summary"] == "echo the-last-one")
            .then_some(())
            .and_then(|()| {
                // Every line before the gate is read: the live reading no longer changes.
                let again = json(&daemon, &["show", &id])["activity"].clone();
                (again == activity).then_some(activity)
            })
    });
    wait_for("the held change to be recorded", || {
        (last_event().as_ref() == Some(&live)).then_some(())
    });
    std::fs::write(&gate, b"").expect("open the gate");
    ok(daemon.drover(&["wait", &id]));
    assert_eq!(
        activity_phases(&daemon, &id).last().map(String::as_str),
        Some("done")
    );
    daemon.stop();
}

/// `logs --pretty -f` renders a live agent as it runs, and several agents with their prefixes.
#[test]
fn pretty_follows_live_and_several_agents() {
    let (_dir, daemon, fake) = rig();
    fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-tool"),
        &["--name", "one", "-e", "DROVER_FAKE_PACE_MS=100"],
    );
    let followed = ok(daemon.drover(&["logs", "--pretty", "-f", "one"]));
    let golden =
        std::fs::read_to_string(fixtures().join("pretty/claude-tool.txt")).expect("golden");
    assert_eq!(followed, golden);
    fake.spawn(
        &daemon,
        "claude",
        &transcript("claude-tool"),
        &["--name", "two"],
    );
    ok(daemon.drover(&["wait", "two"]));
    let both = ok(daemon.drover(&["logs", "--pretty", "one", "two"]));
    for name in ["one", "two"] {
        assert!(
            both.contains(&format!("[{name}] → Bash: echo drover-tool-ran\n")),
            "{both}"
        );
    }
    daemon.stop();
}

/// A backend that cannot resume a session says so: `continue` of a plain command, and a spec
/// naming a session for a backend without `{session}`.
#[test]
fn continuing_what_cannot_be_continued_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(&dir.path().join("state"));
    ok(daemon.drover(&["spawn", "--name", "plain", "--", "true"]));
    ok(daemon.drover(&["wait", "plain"]));
    let refused = daemon.drover(&["continue", "plain", "next"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        common::stderr(&refused).contains("has no session to continue"),
        "{}",
        common::stderr(&refused)
    );
    let spawn = |spec: Value| -> Value {
        let socket = daemon.state_dir.join("http.sock");
        let out = std::process::Command::new("curl")
            .args(["-sS", "--unix-socket"])
            .arg(&socket)
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(serde_json::json!({ "spec": spec }).to_string())
            .arg("http://drover/v1/agents")
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).expect("JSON answer")
    };
    let refused = |spec: Value, code: &str, says: &str| {
        let answer = spawn(spec);
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{answer}"
        );
    };
    refused(
        serde_json::json!({"backend": "aider", "task": "t", "resume": "s-1"}),
        "bad_request",
        "no way to resume a session",
    );
    // A session that would read as an option, and a parent that does not exist.
    refused(
        serde_json::json!({"backend": "claude", "task": "t", "resume": "--dangerously-skip-permissions"}),
        "bad_request",
        "resume may not start with '-'",
    );
    refused(
        serde_json::json!({"backend": "claude", "task": "t",
                           "parent": "0190a3f2-5b1c-7d4e-8f00-0123456789ab"}),
        "not_found",
        "parent agent 0190a3f2-5b1c-7d4e-8f00-0123456789ab not found",
    );
    // Nothing was started by the refusals; the daemon still answers.
    assert_eq!(json(&daemon, &["ls"]).as_array().map(Vec::len), Some(1));
    daemon.stop();
}

/// A daemon killed with SIGKILL mid-session comes back with the agent's activity whole: it
/// re-reads what the log keeps, then goes on with what the holder kept meanwhile, and the
/// events across both runs are the transcript's phases exactly.
#[test]
fn the_activity_survives_a_daemon_crash_mid_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let daemon = Daemon::start(&state);
    let fake = Fake::new(dir.path());
    let gate = dir.path().join("gate");
    let recorded = transcript("claude-tool");
    let gate_env = format!("DROVER_FAKE_GATE={}", gate.display());
    let id = fake.spawn(
        &daemon,
        "claude",
        &recorded,
        &[
            "--name",
            "held",
            "-e",
            &gate_env,
            "-e",
            "DROVER_FAKE_GATE_AFTER=2",
        ],
    );
    // Held after the init line and the tool call.
    common::wait_for("the tool phase", || {
        (json(&daemon, &["show", "held"])["activity"]["phase"] == "tool").then_some(())
    });
    daemon.crash();
    let daemon = Daemon::start(&state);
    let before = json(&daemon, &["show", "held"])["activity"].clone();
    assert_eq!(before["phase"], "tool", "re-read from the log: {before}");
    assert_eq!(before["session_id"], session_of(&recorded).as_str());
    assert_eq!(before["turns"], 1);
    std::fs::write(&gate, b"").expect("open the gate");
    ok(daemon.drover(&["wait", "held"]));
    let activity = json(&daemon, &["show", "held"])["activity"].clone();
    assert_eq!(activity["phase"], "done");
    assert_eq!(activity["turns"], 2);
    assert_eq!(activity["tokens"]["input"], 200);
    assert_eq!(activity["cost_usd"], 0.0016);
    assert_eq!(
        activity_phases(&daemon, &id),
        ["working", "tool", "working", "done"]
    );
    daemon.stop();
}

/// After a daemon restart, an agent on its second run has the activity of that run alone: the
/// reading is rebuilt from the records of the current run, not from the whole log.
#[test]
fn a_second_runs_activity_survives_a_daemon_restart_without_the_first_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let daemon = Daemon::start_with(&state, &["--leave-agents"]);
    let fake = Fake::new(dir.path());
    let gate = format!("DROVER_FAKE_GATE={}", dir.path().join("gate").display());
    let first = format!("DROVER_FAKE_FIRST_RUN={}", dir.path().join("ran").display());
    let recorded = transcript("claude-tool");
    // Run 1 replays the whole session (2 turns, 200 input tokens) and exits 1; run 2 stops
    // after the init line and the tool call.
    fake.spawn(
        &daemon,
        "claude",
        &recorded,
        &[
            "--name",
            "twice",
            "--restart",
            "on-failure",
            "--restart-delay",
            "10ms",
            "-e",
            &gate,
            "-e",
            "DROVER_FAKE_GATE_AFTER=2",
            "-e",
            &first,
        ],
    );
    let second_run = || {
        let info = json(&daemon, &["show", "twice"]);
        (info["restarts"] == 1 && info["activity"]["phase"] == "tool").then_some(info)
    };
    let live = wait_for("the second run's tool call", second_run)["activity"].clone();
    assert_eq!(
        (live["turns"].as_u64(), live["tokens"]["input"].as_u64()),
        (Some(1), Some(100))
    );
    daemon.stop();
    let daemon = Daemon::start(&state);
    let info = json(&daemon, &["show", "twice"]);
    assert_eq!(
        (info["state"].as_str(), info["restarts"].as_u64()),
        (Some("running"), Some(1))
    );
    let activity = info["activity"].clone();
    assert_eq!(activity["phase"], "tool", "{activity}");
    assert_eq!(activity["turns"], 1, "{activity}");
    assert_eq!(activity["tokens"]["input"], 100, "{activity}");
    // Run 1's use is kept beside run 2's, across the restart too.
    let run_one = serde_json::json!({
        "runs": 1,
        "turns": 2,
        "tokens": {"input": 200, "output": 40, "cache_read": 0, "cache_write": 0},
        "cost_usd": 0.0016
    });
    assert_eq!(activity["earlier_runs"], run_one, "{activity}");
    // The rest of run 2 is read on top of that reading: each change it records counts run 2
    // alone, up to the result's totals.
    std::fs::write(dir.path().join("gate"), b"").expect("open the gate");
    ok(daemon.drover(&["wait", "twice"]));
    let out = ok(daemon.drover(&["--json", "events"]));
    let run_two: Vec<(String, u64, u64)> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("event"))
        .filter(|e| e["kind"] == "activity" && e["run"] == 2)
        .map(|e| {
            let a = &e["activity"];
            let phase = a["phase"].as_str().expect("phase").to_owned();
            let turns = a["turns"].as_u64().expect("turns");
            (phase, turns, a["tokens"]["input"].as_u64().expect("tokens"))
        })
        .collect();
    let expected = [
        ("working", 0, 0),
        ("tool", 1, 100),
        ("working", 1, 100),
        ("done", 2, 200),
    ];
    let expected: Vec<(String, u64, u64)> = expected
        .iter()
        .map(|(p, t, i)| ((*p).to_owned(), *t, *i))
        .collect();
    assert_eq!(run_two, expected);
    // `cost` and `/metrics` count both runs: the restart started a new reading, not a new
    // bill (before, run 1's spend was gone from both).
    let info = json(&daemon, &["show", "twice"]);
    assert_eq!(info["activity"]["earlier_runs"], run_one);
    let cost = json(&daemon, &["cost"]);
    assert_eq!(cost["claude"]["agents"], 1);
    assert_eq!(cost["claude"]["cost_usd"], 0.0032);
    assert_eq!(cost["claude"]["turns"], 4);
    assert_eq!(cost["claude"]["tokens"]["input"], 400);
    let shown = ok(daemon.drover(&["show", "twice"]));
    assert!(
        shown.contains(
            "earlier  1 runs: 2 turns, 200 in, 40 out, 0 cache read, 0 cache write, $0.0016"
        ),
        "{shown}"
    );
    daemon.stop();
}

/// An agent ended on request (`kill`) ends failed without asking anyone; one killed by a
/// signal nobody asked for (the OOM killer, here `kill -9` from outside) asks for a person.
#[test]
fn a_kill_nobody_asked_for_asks_for_a_person() {
    let (dir, daemon, fake) = rig();
    let gate = format!("DROVER_FAKE_GATE={}", dir.path().join("never").display());
    let held = ["-e", gate.as_str(), "-e", "DROVER_FAKE_GATE_AFTER=2"];
    let recorded = transcript("claude-tool");
    let mut asked = held.to_vec();
    asked.extend(["--name", "asked"]);
    let mut crashed = held.to_vec();
    crashed.extend(["--name", "crashed"]);
    fake.spawn(&daemon, "claude", &recorded, &asked);
    fake.spawn(&daemon, "claude", &recorded, &crashed);
    for name in ["asked", "crashed"] {
        common::wait_for("the tool phase", || {
            (json(&daemon, &["show", name])["activity"]["phase"] == "tool").then_some(())
        });
    }
    ok(daemon.drover(&["kill", "asked"]));
    let pid = json(&daemon, &["show", "crashed"])["pid"]
        .as_u64()
        .expect("pid");
    common::signal(pid as u32, "KILL");
    for name in ["asked", "crashed"] {
        common::wait_for("the end", || {
            (json(&daemon, &["show", name])["state"] == "killed").then_some(())
        });
    }
    let asked = json(&daemon, &["show", "asked"])["activity"].clone();
    assert_eq!(asked["phase"], "failed");
    assert_eq!(asked["attention"], serde_json::json!([]));
    let crashed = json(&daemon, &["show", "crashed"])["activity"].clone();
    assert_eq!(crashed["phase"], "failed");
    assert_eq!(crashed["attention"][0]["reason"], "error");
    assert_eq!(
        crashed["attention"][0]["detail"],
        "killed by signal 9 that nobody asked for"
    );
    daemon.stop();
}

/// A codex agent whose log budget removed the start of its log (the `thread.started` line with
/// its thread id, the first turns), re-attached by a new daemon: its reading keeps the thread
/// (what `continue` resumes) and its counts. Before, the reading was rebuilt from what the log
/// kept alone: no session, and the turns and tokens of the kept part only.
#[test]
fn a_reattached_agent_whose_log_was_trimmed_keeps_its_session_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let daemon = Daemon::start_with(&state, &["--leave-agents"]);
    let fake = Fake::new(dir.path());
    let turns = 100;
    let padding = "x".repeat(1400);
    let mut transcript =
        String::from("{\"type\":\"thread.started\",\"thread_id\":\"thread-kept\"}\n");
    for i in 0..turns {
        transcript.push_str("{\"type\":\"turn.started\"}\n");
        transcript.push_str(&format!(
            "{{\"type\":\"item.completed\",\"item\":{{\"id\":\"item_{i}\",\"type\":\"agent_message\",\"text\":\"{padding}\"}}}}\n"
        ));
        transcript.push_str(
            "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}\n",
        );
    }
    let path = dir.path().join("long.jsonl");
    std::fs::write(&path, &transcript).expect("transcript");
    let gate = format!("DROVER_FAKE_GATE={}", dir.path().join("gate").display());
    // The last turn waits: it is read by the new daemon, on top of what it rebuilt.
    let after = format!("DROVER_FAKE_GATE_AFTER={}", 1 + 3 * (turns - 1));
    let id = fake.spawn(
        &daemon,
        "codex",
        &path,
        &[
            "--name",
            "long",
            "--log-budget",
            "65536",
            "-e",
            "DROVER_FAKE_PACE_MS=0",
            "-e",
            &gate,
            "-e",
            &after,
        ],
    );
    wait_for("the budget to remove the log's start", || {
        let logs = ok(daemon.drover(&["logs", "long"]));
        (!logs.contains("thread.started") && logs.matches("turn.completed").count() > 0)
            .then_some(())
    });
    // The registry has the reading of every turn so far (its last `activity` event).
    wait_for("the activity event of the turns so far", || {
        let out = ok(daemon.drover(&["--json", "events"]));
        let last = out
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<Value>(l).expect("event"))
            .find(|e| e["agent"] == id.as_str() && e["kind"] == "activity")?;
        (last["activity"]["turns"] == turns - 1).then_some(())
    });
    daemon.stop();
    let daemon = Daemon::start(&state);
    let activity = json(&daemon, &["show", "long"])["activity"].clone();
    assert_eq!(activity["session_id"], "thread-kept", "{activity}");
    assert_eq!(activity["turns"], turns - 1, "{activity}");
    std::fs::write(dir.path().join("gate"), b"").expect("open the gate");
    ok(daemon.drover(&["wait", "long"]));
    let ended = json(&daemon, &["show", "long"])["activity"].clone();
    assert_eq!(ended["session_id"], "thread-kept", "{ended}");
    assert_eq!(ended["turns"], turns, "{ended}");
    assert_eq!(ended["tokens"]["input"], 10 * turns, "{ended}");
    daemon.stop();
}
