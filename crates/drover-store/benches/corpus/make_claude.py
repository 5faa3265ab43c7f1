#!/usr/bin/env python3
"""Write claude-stream.jsonl: a realistic `claude -p --output-format stream-json --verbose`
transcript, for the store benchmark's compression figures.

The shape follows Claude Code's documented stream-json output: one `system`/`init` line, then
`assistant` messages (text, tool_use) and `user` messages (tool_result) alternating, and a final
`result` line. The contents are real: the "project" is this repository (the files the agent
reads and greps are the crate's own sources at the time of writing, passed on the command line),
the Bash results are real `cargo test` style outputs. Deterministic (fixed seed).

    python3 make_claude.py ../../src/*.rs > claude-stream.jsonl
"""
import json
import random
import sys
import uuid

rng = random.Random(14)
SESSION = str(uuid.UUID(int=rng.getrandbits(128), version=4))
MODEL = "claude-sonnet-4-5-20250929"
CWD = "/home/dev/drover"
cache_read = 12000


def uid():
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def msg_id():
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
    return "msg_01" + "".join(rng.choice(alphabet) for _ in range(22))


def tool_id():
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
    return "toolu_01" + "".join(rng.choice(alphabet) for _ in range(22))


def emit(obj):
    print(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def usage(out_tokens):
    global cache_read
    cache_read += rng.randint(200, 3000)
    return {
        "input_tokens": rng.randint(1, 8),
        "cache_creation_input_tokens": rng.randint(0, 2500),
        "cache_read_input_tokens": cache_read,
        "output_tokens": out_tokens,
        "service_tier": "standard",
    }


def assistant(content):
    emit({
        "type": "assistant",
        "message": {
            "id": msg_id(), "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": None, "stop_sequence": None,
            "usage": usage(rng.randint(20, 600)),
        },
        "parent_tool_use_id": None, "session_id": SESSION, "uuid": uid(),
    })


def tool(name, args, result):
    tid = tool_id()
    assistant([{"type": "tool_use", "id": tid, "name": name, "input": args}])
    emit({
        "type": "user",
        "message": {"role": "user", "content": [
            {"tool_use_id": tid, "type": "tool_result", "content": result}]},
        "parent_tool_use_id": None, "session_id": SESSION, "uuid": uid(),
    })


def numbered(text, start=1):
    return "\n".join(f"{i:>6}\u2192{line}" for i, line in enumerate(text.split("\n"), start))


files = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        files["crates/drover-store/src/" + path.rsplit("/", 1)[-1]] = f.read()

emit({
    "type": "system", "subtype": "init", "cwd": CWD, "session_id": SESSION,
    "tools": ["Task", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "Write",
              "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell",
              "SlashCommand"],
    "mcp_servers": [], "model": MODEL, "permissionMode": "acceptEdits",
    "slash_commands": ["compact", "context", "cost", "init", "pr-comments", "release-notes",
                       "todos", "review", "security-review"],
    "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.0.14",
    "output_style": "default", "agents": ["general-purpose", "statusline-setup"],
    "skills": [], "plugins": [], "uuid": uid(),
})

assistant([{"type": "text", "text": "I'll start by getting an overview of the store crate: "
            "its modules, then the append and read paths, before changing anything."}])
tool("TodoWrite", {"todos": [
    {"content": "Read the store's append path", "status": "in_progress",
     "activeForm": "Reading the store's append path"},
    {"content": "Find where segments are sealed", "status": "pending",
     "activeForm": "Finding where segments are sealed"},
    {"content": "Run the store tests", "status": "pending", "activeForm": "Running the store tests"},
]}, "Todos have been modified successfully. Ensure that you continue to use the todo list to "
    "track your progress. Please proceed with the current tasks if applicable")
tool("Glob", {"pattern": "crates/drover-store/**/*.rs"},
     "\n".join(f"{CWD}/{p}" for p in sorted(files)))

names = sorted(files)
rng.shuffle(names)
for round_ in range(3):
    for path in names:
        text = files[path]
        lines = text.split("\n")
        if round_ == 0 or len(lines) < 120:
            tool("Read", {"file_path": f"{CWD}/{path}"}, numbered(text))
        else:
            start = rng.randint(1, max(1, len(lines) - 80))
            chunk = "\n".join(lines[start - 1:start + 79])
            tool("Read", {"file_path": f"{CWD}/{path}", "offset": start, "limit": 80},
                 numbered(chunk, start))
        words = [w for w in text.replace("(", " ").replace(")", " ").split() if w.isidentifier()]
        word = rng.choice(words) if words else "fn"
        hits = []
        for p in sorted(files):
            for i, line in enumerate(files[p].split("\n"), 1):
                if word in line:
                    hits.append(f"{CWD}/{p}:{i}:{line}")
        tool("Grep", {"pattern": word, "path": f"{CWD}/crates", "output_mode": "content", "-n": True},
             "\n".join(hits[:60]) if hits else "No matches found")
        assistant([{"type": "text", "text": rng.choice([
            f"`{path}` keeps the locking rule in its module comment; `{word}` is used in "
            f"{len(hits)} places, so a change there touches the read path too.",
            f"Looking at `{path}`: the function I need is further down. Let me check how "
            f"`{word}` is called before editing.",
            f"Good, `{path}` confirms the segment is sealed only between appends. Next I'll look "
            f"at recovery.",
        ])}])
        if rng.random() < 0.3:
            lines_ = text.split("\n")
            k = rng.randint(0, max(0, len(lines_) - 6))
            old = "\n".join(lines_[k:k + 3])
            new = old.replace("    ", "    ", 1) + "\n    // Checked by tests/format.rs."
            tool("Edit", {"file_path": f"{CWD}/{path}", "old_string": old, "new_string": new},
                 f"The file {CWD}/{path} has been updated. Here's the result of running `cat -n` "
                 f"on a snippet of the edited file:\n" + numbered("\n".join(lines_[k:k + 12]), k + 1))
    tests = ["block::tests::raw_and_zstd_blocks_round_trip_and_every_bit_flip_is_caught",
             "varint::tests::round_trips_edges_and_refuses_truncated_or_overlong",
             "crash_writer_child", "sigkill_mid_write_loses_nothing_synced_and_recovers_the_tail",
             "queries_by_seq_tail_time_stream_and_until", "logs_survive_reopen_and_continue",
             "per_agent_budget_removes_oldest_segments_and_reads_say_truncated",
             "a_follower_started_late_sees_every_record_once"]
    out = [f"   Compiling drover-store v0.1.0 ({CWD}/crates/drover-store)",
           f"    Finished `test` profile [unoptimized + debuginfo] target(s) in {rng.uniform(20, 90):.2f}s",
           f"     Running unittests src/lib.rs (target/debug/deps/drover_store-{rng.getrandbits(64):016x})", "",
           f"running {len(tests)} tests"]
    out += [f"test {t} ... ok" for t in tests]
    out += ["", f"test result: ok. {len(tests)} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; "
            f"finished in {rng.uniform(0.1, 3):.2f}s", ""]
    tool("Bash", {"command": "cargo test -p drover-store 2>&1 | tail -40",
                  "description": "Run the store tests"}, "\n".join(out))

emit({
    "type": "result", "subtype": "success", "is_error": False, "duration_ms": 412345,
    "duration_api_ms": 398765, "num_turns": 187,
    "result": "The store's append path writes one raw block per append; sealed segments are "
              "packed off the capture path. All store tests pass.",
    "session_id": SESSION, "total_cost_usd": 2.3456,
    "usage": {"input_tokens": 412, "cache_creation_input_tokens": 45678,
              "cache_read_input_tokens": cache_read, "output_tokens": 23456,
              "server_tool_use": {"web_search_requests": 0}, "service_tier": "standard"},
    "modelUsage": {MODEL: {"inputTokens": 412, "outputTokens": 23456,
                           "cacheReadInputTokens": cache_read, "cacheCreationInputTokens": 45678,
                           "webSearchRequests": 0, "costUSD": 2.3456, "contextWindow": 200000}},
    "permission_denials": [], "uuid": uid(),
})
