#!/usr/bin/env python3
"""Write MessagePack fixtures the way a Python client or publisher would.

The bytes land in ../data/python/*.msgpack and are checked in; tests/python_bytes.rs decodes them
with the Rust codec, so Python is not needed at test time. Regenerate after changing this script:

    python3 -m venv .venv && .venv/bin/pip install msgpack
    .venv/bin/python crates/drover-proto/tests/python/gen_fixtures.py

Only the `msgpack` package is used. Everything is packed with `use_bin_type=True` (bytes become
`bin`, str becomes `str`), as a careful Python client does. Dict order is insertion order, so the
output is deterministic.
"""

import os

import msgpack

AGENT = "0190a3f2-5b1c-7d4e-8f00-0123456789ab"
DAEMON = "0190a3f0-0000-7000-8000-00000000da01"
T0 = 1_720_000_000_000_000_000

FIXTURES = {
    # Requests. Extra fields a newer or sloppier client might add must be ignored; optional
    # fields are left out to take their defaults.
    "request_health": {"v": 1, "id": "h-1", "op": "health"},
    "request_spawn": {
        "v": 1,
        "id": 1,
        "op": "spawn",
        "spec": {
            "backend": "claude",
            "task": "fix the failing test",
            "labels": {"team": "core"},
            "stdin": "pipe",
            "timeout_ms": 60_000,
            "priority": "high",  # unknown spec field
        },
        "client": "drover-py/0.1",  # unknown envelope field
    },
    "request_spawn_minimal": {"v": 1, "id": 2, "op": "spawn", "spec": {"argv": ["echo", "hi"]}},
    "request_list": {"v": 1, "id": 3, "op": "list", "state": "running", "labels": {"team": "core"}},
    "request_list_no_id": {"v": 1, "op": "list"},
    "request_stop": {
        "v": 1,
        "id": "c0ffee",
        "op": "stop",
        "agent": "build-1",
        "grace_ms": 2500,
        "trace": {"span": 5, "tags": ["a", "b"]},  # unknown, nested
    },
    "request_stop_default_grace": {"v": 1, "id": 4, "op": "stop", "agent": "0190a3f2"},
    "request_signal_name": {"v": 1, "id": 5, "op": "signal", "agent": "build-1", "signal": "SIGUSR1"},
    "request_signal_number": {"v": 1, "id": 6, "op": "signal", "agent": "build-1", "signal": 15},
    "request_write_stdin_bytes": {
        "v": 1,
        "id": 7,
        "op": "write_stdin",
        "agent": "build-1",
        "data": b"line one\n\xff\x00",
    },
    "request_write_stdin_str": {
        "v": 1,
        "id": 8,
        "op": "write_stdin",
        "agent": "build-1",
        "data": "h\u00e9llo\n",
    },
    "request_read_logs": {
        "v": 1,
        "id": 9,
        "op": "read_logs",
        "agent": AGENT,
        "since_seq": 10,
        "stream": "stderr",
        "limit": 500,
    },
    "request_read_logs_tail": {"v": 1, "id": 10, "op": "read_logs", "agent": "build-1", "tail": 20},
    "request_stream_info": {"v": 1, "id": 11, "op": "stream_info"},
    "request_wait": {"v": 1, "id": [b"corr", 12], "op": "wait", "agent": "build-1", "timeout_ms": 30_000},
    "request_batch": {
        "v": 1,
        "id": 13,
        "op": "batch",
        "batch_op": "signal",
        "agents": ["build-1", "build-2", AGENT],
        "args": {"signal": "TERM"},
        "fail_fast": True,
    },
    "request_batch_defaults": {"v": 1, "id": 14, "op": "batch", "batch_op": "kill", "agents": ["build-1"]},
    # What a Python publisher (or a fake daemon in a Python test) would send.
    "record": {"seq": 7, "ts": T0 + 123_456_789, "stream": "stdout", "data": b"\xfe\xffraw\n", "partial": False},
    "record_batch": {
        "agent": AGENT,
        "records": [
            {"seq": 8, "ts": T0 + 1, "stream": "stderr", "data": b"warning: x\n"},  # no partial
            {"seq": 9, "ts": T0 + 2, "stream": "stdout", "data": b"no newline", "partial": True},
        ],
    },
    "event": {"event_seq": 42, "ts": T0 + 5, "agent": AGENT, "kind": "exit", "state": "exited", "exit_code": 3},
    "heartbeat": {"daemon": DAEMON, "ts": T0 + 10, "event_seq": 42, "load": 0.5},
    "heartbeat_log_ends": {"daemon": DAEMON, "ts": T0 + 11, "event_seq": 43, "log_ends": {AGENT: 7}},
    # Replies as a Python fake daemon would write them: a flat AgentInfo with absent fields left
    # out, an error, and an error code this protocol version does not know.
    "reply_get": {
        "v": 1,
        "id": 15,
        "ok": True,
        "agent": {
            "id": AGENT,
            "name": "build-1",
            "backend": "command",
            "state": "running",
            "pid": 4242,
            "created_at": T0,
            "started_at": T0 + 1_000_000,
            "spec": {"name": "build-1", "argv": ["make", "-j4"]},
        },
    },
    "reply_error": {"v": 1, "id": 16, "ok": False, "error": {"code": "not_found", "message": "no agent matches \"x\""}},
    "reply_error_unknown_code": {"v": 1, "id": 17, "ok": False, "error": {"code": "quota_exceeded", "message": "later"}},
}


def main() -> None:
    out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "python")
    os.makedirs(out_dir, exist_ok=True)
    for name, message in FIXTURES.items():
        with open(os.path.join(out_dir, name + ".msgpack"), "wb") as f:
            f.write(msgpack.packb(message, use_bin_type=True))
    print(f"wrote {len(FIXTURES)} fixtures to {os.path.normpath(out_dir)}")


if __name__ == "__main__":
    main()
