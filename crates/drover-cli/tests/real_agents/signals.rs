//! `drover stop` and `drover pause`/`resume` of a real claude in the middle of a slow stream.
//! `--include-partial-messages` makes claude print each text delta as it arrives, so "the
//! stream has begun" is a line in the agent's log, not a guess about time.

use serde_json::{json, Value};

use super::cli::Cli;
use super::rig::{Copies, Rig};
use super::runs::session_in;
use crate::common::{ok, wait_for};

const FULL: &str = "One two three four five six seven eight nine ten.";

/// The text deltas claude printed, joined.
fn streamed_text(lines: &[Value]) -> String {
    lines
        .iter()
        .filter(|l| l["type"] == "stream_event")
        .filter_map(|l| l["event"]["delta"]["text"].as_str())
        .collect()
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// `log` up to its last newline: a live log may end with the start of a line.
fn whole_lines(log: &[u8]) -> &[u8] {
    &log[..log.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)]
}

/// Waits until `agent` has printed its first text delta; the log so far, whole lines.
fn wait_for_first_delta(rig: &Rig, agent: &str) -> Vec<u8> {
    wait_for("claude's first text delta", || {
        let log = rig.logs(agent, "out");
        let whole = whole_lines(&log);
        (!streamed_text(&json_lines(whole)).is_empty()).then(|| whole.to_vec())
    })
}

#[test]
fn stopping_claude_mid_stream_ends_it_truthfully() {
    let script = json!({"turns": [{"text": FULL, "chunks": 10, "delay_ms": 500}]});
    let rig = Rig::new(Cli::Claude, &script, Copies::None);
    let id = rig.spawn("stopped", "Count to ten.", &["--include-partial-messages"]);
    let before = wait_for_first_delta(&rig, &id);
    ok(rig.daemon.drover(&["stop", &id]));
    let info = rig.wait(&id);

    // claude took its stop signal (SIGINT) as an interrupt: it closed its stream with a
    // record of it and exited 0 by itself. Drover says exactly that: stopping, then an exit
    // with code 0 (not a kill).
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["exit_code"], 0, "{info}");
    assert_eq!(info["signal"], Value::Null, "{info}");
    let states: Vec<Value> = rig
        .events(&id, "state")
        .iter()
        .map(|e| e["state"].clone())
        .collect();
    assert_eq!(states, [json!("running"), json!("stopping")]);
    let exits = rig.events(&id, "exit");
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["exit_code"], 0, "{exits:?}");

    // Asked for, so failed without attention, whatever claude's exit code.
    let activity = &info["activity"];
    assert_eq!(activity["phase"], "failed");
    assert_eq!(activity["attention"], json!([]));
    // claude answers SIGINT with an error `result` line, or, when the signal lands before its
    // stream reached a point it can close, exits 0 without one (seen in CI, log kept in the
    // message): the activity says what claude said, and no result is made up.
    let out = rig.logs(&id, "out");
    let closed = json_lines(&out).iter().any(|line| line["type"] == "result");
    assert_eq!(
        activity["is_error"],
        closed,
        "{info}\nthe log: {}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(rig.phases(&id).last().map(String::as_str), Some("failed"));

    // Everything printed before the stop is kept, then claude's own closing lines.
    let log = rig.logs(&id, "out");
    assert!(
        log.starts_with(&before),
        "the log before the stop was changed"
    );
    let lines = json_lines(&log);
    assert_eq!(
        activity["session_id"].as_str(),
        session_in(&lines[0]).as_deref()
    );
    let last = lines.last().expect("a line");
    if closed {
        // claude closed its stream: its result says it was interrupted.
        assert_eq!(last["type"], "result", "{last}");
        assert_eq!(last["subtype"], "error_during_execution", "{last}");
        assert!(
            lines.iter().any(|l| l["type"] == "user"
                && l["message"]["content"][0]["text"] == "[Request interrupted by user]"),
            "no interrupt record (a signal other than SIGINT?)"
        );
    } else {
        // The signal landed before a point claude can close from (see above): its log ends
        // mid-stream, as it printed it, and nothing was added after it.
        assert_eq!(last["type"], "stream_event", "{last}");
    }
    // Stopped mid-stream: part of the text, never all of it.
    let streamed = streamed_text(&lines);
    assert!(
        !streamed.is_empty() && FULL.starts_with(&streamed) && streamed != FULL,
        "{streamed:?}"
    );
    assert_eq!(rig.mock.model_calls().len(), 1);
}

#[test]
fn pausing_claude_mid_stream_loses_no_output() {
    let script = json!({"turns": [{"text": FULL, "chunks": 5, "delay_ms": 800}]});
    let rig = Rig::new(Cli::Claude, &script, Copies::Kept);
    let id = rig.spawn("paused", "Count to ten.", &["--include-partial-messages"]);
    wait_for_first_delta(&rig, &id);
    ok(rig.daemon.drover(&["pause", &id]));
    assert_eq!(rig.show(&id)["state"], "paused");
    let call = rig.mock.model_calls()[0]["n"]
        .as_u64()
        .expect("request number");
    assert!(
        !rig.mock.is_answered(call),
        "the stream ended before the pause: this run proves nothing"
    );
    // The rest of the stream is sent while claude is stopped; it waits in the socket.
    rig.mock.wait_answered(call);
    let during = rig.logs(&id, "out");
    assert!(
        !streamed_text(&json_lines(whole_lines(&during))).contains(FULL),
        "claude printed while paused"
    );
    ok(rig.daemon.drover(&["resume", &id]));
    let info = rig.wait(&id);
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(info["exit_code"], 0, "{info}");

    // Byte for byte what claude wrote, and all of the text.
    let (out, err) = rig.copied();
    let log = rig.logs(&id, "out");
    assert_eq!(log, out);
    assert_eq!(rig.logs(&id, "err"), err);
    let lines = json_lines(&log);
    assert_eq!(streamed_text(&lines), FULL);
    let activity = &info["activity"];
    assert_eq!(activity["phase"], "done");
    assert_eq!(activity["result"], FULL);
    assert_eq!(activity["attention"], json!([]));
}
