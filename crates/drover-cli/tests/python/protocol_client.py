#!/usr/bin/env python3
"""A foreign Drover client, written only from docs/PROTOCOL.md.

Usage: protocol_client.py <path-to-drover-binary>

Starts `drover serve` on loopback with port 0 everywhere, drives the control socket with raw
MessagePack over a DEALER socket (several requests in flight, replies matched by `id`) and once
over a REQ socket, follows the PUB socket with a SUB socket, and checks what the document says.
Needs nothing but pyzmq and msgpack. Exit status 0 on success; on failure a message on stderr and
a non-zero status. Every receive is bounded by a poll timeout; the whole run takes a few seconds.
"""

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq
import zmq.utils.monitor

RUN_DEADLINE = time.monotonic() + 55.0  # the whole run stays under 60 s
RECV_TIMEOUT_S = 10.0
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
STATES = {
    "starting", "running", "paused", "stopping", "restarting", "exited", "killed",
    "failed_to_start", "lost",
}
TERMINAL = {"exited", "killed", "failed_to_start", "lost"}
EVENT_KINDS = {
    "spawned", "state", "exit", "lost", "removed", "log_dropped", "activity", "restarted",
}

TICKER_SCRIPT = (
    "echo ready; i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); sleep 0.01; done; sleep 100"
)


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def step(name, detail=""):
    print(f"ok  {name}" + (f": {detail}" if detail else ""), flush=True)


def remaining(limit=RECV_TIMEOUT_S):
    left = RUN_DEADLINE - time.monotonic()
    if left <= 0:
        raise Failure("the whole run exceeded its 55 s budget")
    return min(limit, left)


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(body):
    return msgpack.unpackb(body, raw=False)


# --------------------------------------------------------------------------------------------
# CURVE (PROTOCOL.md, "Security"): every TCP endpoint needs an allowed client key.

# Filled in by `run`: the client keypair and the server's public key, all z85 (bytes).
CURVE = {}


def secure(sock):
    """Set a socket up as a CURVE client of the daemon, with our allowed key."""
    sock.curve_serverkey = CURVE["server"]
    sock.curve_publickey = CURVE["public"]
    sock.curve_secretkey = CURVE["secret"]
    return sock


def allow_key(state_dir, public, role, comment):
    """Append a line to the allowed-keys file, as `drover auth allow` would."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "allowed_keys")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{public.decode()} {role} {comment}\n")


# --------------------------------------------------------------------------------------------
# Daemon


def start_daemon(drover, state_dir, stderr_file):
    cmd = [
        drover, "serve",
        "--state-dir", state_dir,
        "--control", "tcp://127.0.0.1:0",
        "--pub", "tcp://127.0.0.1:0",
        "--http", "127.0.0.1:0",
        "--no-ipc",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_file, stdin=subprocess.DEVNULL)
    proc.state_dir = state_dir
    return proc


def read_ready_line(proc, timeout=15.0):
    """Reads stdout until the `drover ready ...` line; returns its key=value pairs."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip()
                if text.startswith("drover ready "):
                    pairs = {}
                    for tok in text[len("drover ready "):].split():
                        check("=" in tok, f"ready line token without '=': {tok!r} in {text!r}")
                        key, value = tok.split("=", 1)
                        pairs[key] = value
                    return text, pairs
                print(f"    (daemon stdout before ready: {text!r})", flush=True)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no 'drover ready' line on stdout within {timeout} s (got {buf!r})")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise Failure(
                    f"daemon stdout closed before the ready line (exit status {proc.poll()}, got {buf!r})"
                )
            buf += chunk
    finally:
        sel.close()


def stop_daemon(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        print("    daemon did not exit 15 s after SIGTERM; sending SIGKILL", file=sys.stderr)
        proc.kill()
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# Control socket


class Dealer:
    """A DEALER client: several requests in flight, replies correlated by `id`."""

    def __init__(self, ctx, endpoint):
        self.sock = secure(ctx.socket(zmq.DEALER))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.next_id = 1
        self.replies = {}  # id (hashable form) -> reply, arrived but not yet claimed

    @staticmethod
    def key(rid):
        # ids may be arrays (decoded as lists): use a hashable form
        return repr(rid)

    def send(self, op, rid=None, **args):
        if rid is None:
            rid = self.next_id
            self.next_id += 1
        self.sock.send(pack({"v": 1, "id": rid, "op": op, **args}))
        return rid

    def send_raw(self, frames):
        self.sock.send_multipart(frames)

    def recv_one(self, timeout):
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        frames = self.sock.recv_multipart()
        check(len(frames) == 1, f"DEALER reply must be one frame [body], got {len(frames)} frames: {frames!r}")
        reply = unpack(frames[0])
        check(isinstance(reply, dict), f"reply body must be a map, got {reply!r}")
        return reply

    def wait_for(self, rid, timeout=RECV_TIMEOUT_S):
        """Returns the reply whose id is `rid`, stashing any other reply that arrives first."""
        k = self.key(rid)
        deadline = time.monotonic() + remaining(timeout)
        while k not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no reply for request id {rid!r} within {timeout} s")
            reply = self.recv_one(left)
            if reply is None:
                continue
            self.replies[self.key(reply.get("id"))] = reply
        reply = self.replies.pop(k)
        check_envelope(reply, rid)
        return reply

    def call(self, op, timeout=RECV_TIMEOUT_S, **args):
        return self.wait_for(self.send(op, **args), timeout)

    def ok(self, op, timeout=RECV_TIMEOUT_S, **args):
        reply = self.call(op, timeout, **args)
        check(reply["ok"] is True, f"{op} {args!r} failed: {reply.get('error')!r}")
        return reply

    def err(self, op, code, **args):
        reply = self.call(op, **args)
        check(reply["ok"] is False, f"{op} {args!r} should fail with {code}, got {reply!r}")
        check_error(reply, code, f"{op} {args!r}")
        return reply


def check_envelope(reply, rid):
    check(reply.get("v") == 1, f"reply v must be 1: {reply!r}")
    check(reply.get("id") == rid, f"reply id {reply.get('id')!r} is not the request id {rid!r}")
    check(isinstance(reply.get("ok"), bool), f"reply ok must be a bool: {reply!r}")
    keys = list(reply.keys())
    check(keys[:3] == ["v", "id", "ok"], f"reply key order must start v, id, ok; got {keys}")


def check_error(reply, code, what):
    error = reply.get("error")
    check(isinstance(error, dict), f"{what}: error must be a map {{code, message}}, got {error!r}")
    check(error.get("code") == code, f"{what}: error code {error.get('code')!r}, expected {code!r} ({error!r})")
    check(isinstance(error.get("message"), str) and error["message"], f"{what}: error message must be a non-empty str")


def check_agent_info(info, what):
    check(isinstance(info, dict), f"{what}: AgentInfo must be a map, got {info!r}")
    check(isinstance(info.get("id"), str) and UUID_RE.match(info["id"]),
          f"{what}: id must be a hyphenated lowercase UUIDv7 string, got {info.get('id')!r}")
    check(info.get("state") in STATES, f"{what}: unknown state {info.get('state')!r}")
    check(isinstance(info.get("backend"), str), f"{what}: backend must be a str")
    check(isinstance(info.get("created_at"), int) and info["created_at"] > 10**18,
          f"{what}: created_at must be unix ns, got {info.get('created_at')!r}")
    check(isinstance(info.get("labels"), dict), f"{what}: labels must be a map")
    check(isinstance(info.get("spec"), dict), f"{what}: spec must be a map")
    state = info["state"]
    if state in ("running", "paused", "stopping"):
        check(isinstance(info.get("pid"), int) and info["pid"] > 0, f"{what}: {state} agent needs a pid: {info!r}")
        check(isinstance(info.get("started_at"), int), f"{what}: {state} agent needs started_at")
        check(info.get("ended_at") is None, f"{what}: live agent must not have ended_at")
    if state in ("exited", "killed"):
        check(info.get("pid") is None, f"{what}: {state} agent must have pid nil, got {info.get('pid')!r}")
        check(isinstance(info.get("ended_at"), int), f"{what}: {state} agent needs ended_at")
    return info


# --------------------------------------------------------------------------------------------
# SUB socket


class Follower:
    """A SUB socket that buffers everything it receives, per PROTOCOL.md's PUB section."""

    def __init__(self, ctx, endpoint, topics):
        self.sock = secure(ctx.socket(zmq.SUB))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        self.sock.connect(endpoint)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        self.logs = {}  # agent id -> list of records, in arrival order
        self.batches = 0
        self.events = []
        self.heartbeats = []

    def pump(self, timeout):
        """Receives for up to `timeout` seconds (returns early once the socket is idle after data)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not self.sock.poll(int(left * 1000), zmq.POLLIN):
                return
            while self.sock.poll(0, zmq.POLLIN):
                self.handle(self.sock.recv_multipart())

    def handle(self, frames):
        check(len(frames) == 2, f"PUB message must be [topic, body], got {len(frames)} frames")
        topic, body = frames
        topic = topic.decode("utf-8")
        msg = unpack(body)
        check(isinstance(msg, dict), f"PUB body on {topic} must be a map, got {msg!r}")
        if topic.startswith("log."):
            agent = topic[len("log."):]
            check(msg.get("agent") == agent, f"RecordBatch agent {msg.get('agent')!r} != topic {topic!r}")
            records = msg.get("records")
            check(isinstance(records, list) and records, f"RecordBatch records must be a non-empty array: {msg!r}")
            for prev, cur in zip(records, records[1:]):
                check(cur["seq"] == prev["seq"] + 1, f"RecordBatch on {topic} has a gap: {prev['seq']} -> {cur['seq']}")
            for r in records:
                check_record(r, f"live record of {agent}")
            self.logs.setdefault(agent, []).extend(records)
            self.batches += 1
        elif topic.startswith("evt."):
            agent = topic[len("evt."):]
            check(msg.get("agent") == agent, f"Event agent {msg.get('agent')!r} != topic {topic!r}")
            check(msg.get("kind") in EVENT_KINDS, f"unknown event kind {msg.get('kind')!r}")
            check(msg.get("state") in STATES, f"event state {msg.get('state')!r} unknown")
            check(isinstance(msg.get("event_seq"), int) and msg["event_seq"] >= 1, f"bad event_seq in {msg!r}")
            check(isinstance(msg.get("ts"), int) and msg["ts"] > 10**18, f"event ts must be unix ns: {msg!r}")
            self.events.append(msg)
        elif topic == "hb":
            check(isinstance(msg.get("daemon"), str) and UUID_RE.match(msg["daemon"]), f"heartbeat daemon: {msg!r}")
            check(isinstance(msg.get("ts"), int) and msg["ts"] > 10**18, f"heartbeat ts must be unix ns: {msg!r}")
            check(isinstance(msg.get("event_seq"), int) and msg["event_seq"] >= 0, f"heartbeat event_seq: {msg!r}")
            ends = msg.get("log_ends", {})
            check(isinstance(ends, dict) and all(UUID_RE.match(a) and isinstance(e, int) and e >= 2
                                                 for a, e in ends.items()), f"heartbeat log_ends: {msg!r}")
            for agent, end in ends.items():
                seen = self.logs.get(agent, [])
                check(not seen or end > seen[-1]["seq"],
                      f"a log end ({end}) comes after every record below it (last seen {seen[-1]['seq'] if seen else None})")
            self.heartbeats.append(msg)
        else:
            raise Failure(f"unexpected PUB topic {topic!r}")

    def pump_until(self, cond, what, timeout=RECV_TIMEOUT_S):
        deadline = time.monotonic() + remaining(timeout)
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"timed out after {timeout} s waiting on the SUB socket for {what}")
            self.pump(min(left, 0.2))

    def events_of(self, agent):
        return [e for e in self.events if e["agent"] == agent]


def check_record(r, what):
    check(isinstance(r, dict), f"{what}: record must be a map: {r!r}")
    check(isinstance(r.get("seq"), int) and r["seq"] >= 1, f"{what}: seq must be an int >= 1: {r!r}")
    check(isinstance(r.get("ts"), int) and r["ts"] > 10**18, f"{what}: ts must be unix ns: {r!r}")
    check(r.get("stream") in ("stdout", "stderr"), f"{what}: stream must be stdout/stderr: {r!r}")
    check(isinstance(r.get("data"), bytes), f"{what}: data must be MessagePack bin (bytes), got {type(r.get('data'))}")
    partial = r.get("partial", False)
    check(isinstance(partial, bool), f"{what}: partial must be a bool: {r!r}")
    if not partial:
        check(r["data"].endswith(b"\n"), f"{what}: non-partial record must end with a newline: {r!r}")


def read_all_logs(dealer, agent, since_seq=1, limit=None):
    """read_logs from `since_seq`, looping on next_seq until a reply has no records."""
    records = []
    next_seq = since_seq
    for _ in range(1000):
        args = {"agent": agent, "since_seq": next_seq}
        if limit is not None:
            args["limit"] = limit
        reply = dealer.ok("read_logs", **args)
        for field, kind in (("records", list), ("first_seq", int), ("next_seq", int), ("truncated", bool)):
            check(isinstance(reply.get(field), kind), f"read_logs {field} must be {kind.__name__}: {reply!r}")
        if not reply["records"]:
            check(reply["next_seq"] == next_seq, f"read_logs with no records should keep next_seq {next_seq}: {reply!r}")
            return records, next_seq
        for r in reply["records"]:
            check_record(r, f"read_logs record of {agent}")
        check(reply["records"][0]["seq"] == next_seq,
              f"read_logs since_seq={next_seq} began at {reply['records'][0]['seq']}")
        check(reply["next_seq"] == reply["records"][-1]["seq"] + 1,
              f"read_logs next_seq {reply['next_seq']} is not the last seq + 1")
        records.extend(reply["records"])
        next_seq = reply["next_seq"]
    raise Failure("read_logs never returned an empty page")


def wait_for_logs(dealer, agent, cond, what, timeout=RECV_TIMEOUT_S):
    deadline = time.monotonic() + remaining(timeout)
    while True:
        records, next_seq = read_all_logs(dealer, agent)
        if cond(records):
            return records, next_seq
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}; logs so far: {[r['data'] for r in records]!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# The scenario


def run(drover, state_dir, daemon_stderr, live_pgids):
    public, secret = zmq.curve_keypair()
    CURVE.update(public=public, secret=secret)
    allow_key(state_dir, public, "control", "python protocol client")
    daemon = start_daemon(drover, state_dir, daemon_stderr)
    ctx = zmq.Context()
    try:
        scenario(daemon, ctx, live_pgids)
    finally:
        ctx.destroy(linger=0)
        stop_daemon(daemon)
    check(daemon.returncode == 0, f"daemon exited with status {daemon.returncode} after SIGTERM (expected 0)")
    step("daemon stopped on SIGTERM", "exit status 0")


def scenario(daemon, ctx, live_pgids):
    # ---- ready line
    line, ready = read_ready_line(daemon)
    for key in ("control", "pub", "http"):
        check(key in ready, f"ready line lacks {key}=: {line!r}")
    check("ipc" not in ready, f"--no-ipc given, yet the ready line names an ipc socket: {line!r}")
    check(ready["control"].startswith("tcp://127.0.0.1:") and not ready["control"].endswith(":0"),
          f"control must be the real bound tcp address: {ready['control']!r}")
    check(ready["http"].startswith("http://127.0.0.1:"), f"http must be a real http address: {ready['http']!r}")
    step("ready line", line)

    # The server's public key is in the state directory (`drover auth` prints it too).
    with open(os.path.join(daemon.state_dir, "server.key.pub"), "rb") as f:
        CURVE["server"] = f.read().strip()
    check(len(CURVE["server"]) == 40, f"server key must be 40 z85 characters: {CURVE['server']!r}")

    # ---- without a key, or with a key the daemon does not allow: no connection, no reply
    for name, keys in (("no key", None), ("an unknown key", zmq.curve_keypair())):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if keys is not None:
            sock.curve_serverkey = CURVE["server"]
            sock.curve_publickey, sock.curve_secretkey = keys
        monitor = sock.get_monitor_socket()
        sock.connect(ready["control"])
        sock.send(pack({"v": 1, "id": 1, "op": "health"}))
        failed = None
        deadline = time.monotonic() + 5
        while failed is None and time.monotonic() < deadline:
            if monitor.poll(int((deadline - time.monotonic()) * 1000), zmq.POLLIN):
                event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
                if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                    failed = event
                check(event != zmq.EVENT_HANDSHAKE_SUCCEEDED, f"{name}: the handshake succeeded")
        check(failed is not None, f"{name}: the handshake did not fail within 5 s")
        check(not sock.poll(200, zmq.POLLIN), f"{name}: got a reply")
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
    step("refused without an allowed key", "the handshake fails; nothing is answered")

    dealer = Dealer(ctx, ready["control"])

    # ---- concurrent requests on DEALER, ids of several MessagePack types echoed verbatim
    rid_health = dealer.send("health")
    rid_info = dealer.send("stream_info", rid="stream-info")
    rid_list = dealer.send("list", rid=[7, "list"])
    rid_stats = dealer.send("stats", rid={"k": 1})
    info = dealer.wait_for(rid_info)
    stats = dealer.wait_for(rid_stats)
    listing = dealer.wait_for(rid_list)
    health = dealer.wait_for(rid_health)
    for name, reply in (("health", health), ("stream_info", info), ("list", listing), ("stats", stats)):
        check(reply["ok"] is True, f"{name} failed: {reply!r}")
    check(health["protocol"] == 1, f"health protocol must be 1: {health!r}")
    check(isinstance(health["version"], str) and health["version"], f"health version: {health!r}")
    check(isinstance(health["daemon"], str) and UUID_RE.match(health["daemon"]), f"health daemon: {health!r}")
    check(isinstance(health["uptime_ms"], int), f"health uptime_ms: {health!r}")
    check(isinstance(health["agents"], dict), f"health agents must be a map: {health!r}")
    check(listing["agents"] == [], f"a fresh daemon lists no agents: {listing!r}")
    check(isinstance(stats["spawns"], int) and isinstance(stats["requests"], dict), f"stats: {stats!r}")
    daemon_id = health["daemon"]
    step("DEALER health/stream_info/list/stats in flight together",
         f"version {health['version']}, daemon {daemon_id}, ids echoed verbatim")

    # ---- REQ socket, one request then its reply
    req = secure(ctx.socket(zmq.REQ))
    req.setsockopt(zmq.LINGER, 0)
    req.connect(ready["control"])
    req.send(pack({"v": 1, "id": "req-health", "op": "health"}))
    check(req.poll(int(remaining() * 1000), zmq.POLLIN), "no reply on the REQ socket")
    req_frames = req.recv_multipart()
    check(len(req_frames) == 1, f"REQ strips the empty delimiter: expected 1 frame, got {req_frames!r}")
    req_reply = unpack(req_frames[0])
    check_envelope(req_reply, "req-health")
    check(req_reply["ok"] is True and req_reply["daemon"] == daemon_id, f"REQ health: {req_reply!r}")
    req.close()
    step("REQ health", f"uptime_ms {req_reply['uptime_ms']}")

    # ---- SUB socket, from stream_info
    check(isinstance(info["pub"], str) and info["pub"].startswith("tcp://127.0.0.1:"),
          f"stream_info pub must be a real address: {info!r}")
    check("0.0.0.0" not in info["pub"], f"stream_info pub must never be 0.0.0.0: {info!r}")
    check(info["pub"] == ready["pub"], f"stream_info pub {info['pub']!r} != ready line pub {ready['pub']!r}")
    check(sorted(info["topics"]) == ["evt.", "log."], f"stream_info without agent: topics log. and evt.: {info!r}")
    check(info["heartbeat"] == "hb", f"heartbeat topic must be hb: {info!r}")
    sub = Follower(ctx, info["pub"], list(info["topics"]) + [info["heartbeat"]])
    # A heartbeat arrives every second; once one is here, the subscription is live (no slow joiner).
    sub.pump_until(lambda: sub.heartbeats, "a first heartbeat", timeout=5)
    hb = sub.heartbeats[0]
    check(hb["daemon"] == daemon_id, f"heartbeat daemon {hb['daemon']!r} != health daemon {daemon_id!r}")
    step("SUB subscribed from stream_info", f"pub {info['pub']}, topics {info['topics'] + [info['heartbeat']]}, "
         f"heartbeat event_seq {hb['event_seq']}")

    # ---- spawn the ticker
    spec = {
        "name": "py-ticker",
        "backend": "command",
        "argv": ["sh", "-c", TICKER_SCRIPT],
        "labels": {"suite": "python-protocol"},
    }
    spawned = dealer.ok("spawn", spec=spec)
    ticker = check_agent_info(spawned["agent"], "spawn reply")
    tid = ticker["id"]
    if ticker.get("pid"):
        live_pgids[tid] = ticker["pid"]
    check(ticker["name"] == "py-ticker" and ticker["backend"] == "command", f"spawn reply: {ticker!r}")
    check(ticker["state"] in ("starting", "running"), f"new agent should be starting/running: {ticker!r}")
    check(ticker["labels"] == spec["labels"], f"labels are a copy of the spec's: {ticker!r}")
    check(ticker["spec"].get("argv") == spec["argv"], f"spec echoed with argv: {ticker['spec']!r}")
    step("spawn command agent", f"{tid} state {ticker['state']} pid {ticker.get('pid')}")

    # ---- list
    listing = dealer.ok("list", labels={"suite": "python-protocol"})
    found = [a for a in listing["agents"] if a["id"] == tid]
    check(len(found) == 1, f"list by label must find the ticker: {listing!r}")
    check(found[0]["state"] == "running", f"listed ticker should be running: {found[0]!r}")
    running = dealer.ok("list", state="running")
    check(any(a["id"] == tid for a in running["agents"]), "list state=running must include the ticker")
    none = dealer.ok("list", labels={"suite": "other"})
    check(none["agents"] == [], f"list with a non-matching label must be empty: {none!r}")
    check("spec" not in found[0], f"list leaves specs out unless asked: {found[0]!r}")
    check(listing.get("next_cursor") is None, f"one page, no next cursor: {listing!r}")
    with_specs = dealer.ok("list", labels={"suite": "python-protocol"}, specs=True)
    check(with_specs["agents"][0]["spec"].get("argv") == spec["argv"], "list specs=True carries specs")
    # Paging: one agent per page, following next_cursor until it is nil.
    second = dealer.ok("spawn", spec={"argv": ["true"], "labels": {"suite": "python-protocol"}})
    paged, cursor = [], None
    while True:
        page = dealer.ok("list", labels={"suite": "python-protocol"}, limit=1, cursor=cursor)
        paged += [a["id"] for a in page["agents"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
        check(isinstance(cursor, str), f"next_cursor is a string: {page!r}")
    check(paged == [tid, second["agent"]["id"]], f"pages cover every agent once, oldest first: {paged!r}")
    dealer.ok("wait", agent=second["agent"]["id"], timeout_ms=30000)
    dealer.ok("remove", agent=second["agent"]["id"])
    step("list", f"found {tid[:8]} running (label and state filters, pages, specs on request)")

    # ---- get by id, by prefix, by name
    for ref in (tid, tid[:13], "py-ticker"):
        got = check_agent_info(dealer.ok("get", agent=ref)["agent"], f"get {ref}")
        check(got["id"] == tid, f"get {ref!r} returned {got['id']}")
        check(got["state"] == "running", f"get {ref!r}: state {got['state']}")
        live_pgids[tid] = got["pid"]
    step("get", "by full id, id prefix and name")

    # ---- let it print some lines, then pause / resume
    wait_for_logs(dealer, tid, lambda rs: len(rs) >= 5, "the ticker's first lines")
    paused = check_agent_info(dealer.ok("pause", agent=tid)["agent"], "pause reply")
    check(paused["state"] == "paused", f"pause reply state {paused['state']!r}")
    check(dealer.ok("get", agent=tid)["agent"]["state"] == "paused", "get after pause must say paused")
    # a paused agent prints nothing (after a moment for the daemon to drain what the pipe held)
    time.sleep(0.2)
    before, _ = read_all_logs(dealer, tid)
    time.sleep(0.2)
    after, _ = read_all_logs(dealer, tid)
    if before and before[-1]["data"] != b"line 49\n":
        check(len(after) == len(before), f"a paused agent kept printing: {len(before)} -> {len(after)} records")
    resumed = check_agent_info(dealer.ok("resume", agent=tid)["agent"], "resume reply")
    check(resumed["state"] == "running", f"resume reply state {resumed['state']!r}")
    step("pause / resume", f"paused at {len(before)} records, then running")

    # ---- read_logs
    records, next_seq = wait_for_logs(
        dealer, tid, lambda rs: any(r["data"] == b"line 49\n" for r in rs), "line 49", timeout=15
    )
    check(records[0]["seq"] == 1, f"seq starts at 1, got {records[0]['seq']}")
    for prev, cur in zip(records, records[1:]):
        check(cur["seq"] == prev["seq"] + 1, f"seq must be consecutive: {prev['seq']} -> {cur['seq']}")
    check(records[0]["data"] == b"ready\n", f"first record is b'ready\\n', got {records[0]['data']!r}")
    check(records[0]["stream"] == "stdout" and records[0]["partial"] is False, f"first record: {records[0]!r}")
    stdout = b"".join(r["data"] for r in records if r["stream"] == "stdout")
    expected = b"ready\n" + b"".join(b"line %d\n" % i for i in range(50))
    check(stdout == expected, f"stdout reassembled from records differs:\n{stdout!r}\n!=\n{expected!r}")
    check(next_seq == len(records) + 1, f"next_seq {next_seq} after {len(records)} records")
    # paging with a small limit gives the same records
    paged, _ = read_all_logs(dealer, tid, limit=7)
    check([r["seq"] for r in paged] == [r["seq"] for r in records], "paging with limit=7 must give the same seqs")
    tail = dealer.ok("read_logs", agent=tid, tail=3)
    check([r["data"] for r in tail["records"]] == [b"line 47\n", b"line 48\n", b"line 49\n"],
          f"tail=3 must be the last three lines: {tail['records']!r}")
    window = dealer.ok("read_logs", agent=tid, since_seq=2, until_seq=4)
    check([r["seq"] for r in window["records"]] == [2, 3] and window["next_seq"] == 4,
          f"since_seq=2 until_seq=4 must give seqs 2, 3 and next_seq 4: {window!r}")
    step("read_logs", f"{len(records)} records, seq 1..{next_seq - 1} consecutive, first {records[0]['data']!r}, "
         f"paging/tail/until_seq consistent")

    # ---- live logs on the SUB socket match the stored ones
    sub.pump_until(lambda: len(sub.logs.get(tid, [])) >= len(records), f"{len(records)} live records of the ticker")
    by_seq = {r["seq"]: r for r in records}
    for r in sub.logs[tid]:
        check(r["seq"] in by_seq and by_seq[r["seq"]]["data"] == r["data"],
              f"live record seq {r['seq']} {r['data']!r} differs from read_logs")
    step("SUB log batches", f"{sub.batches} batches {{agent, records}}, {len(sub.logs[tid])} records, same as read_logs")

    # ---- the quiet, still running ticker's log end is in the next heartbeat
    beats = len(sub.heartbeats)
    sub.pump_until(lambda: len(sub.heartbeats) > beats, "a heartbeat after the ticker's last line")
    ends = sub.heartbeats[-1].get("log_ends", {})
    check(ends.get(tid) == next_seq, f"the heartbeat's log end for the ticker is {ends.get(tid)}, the store's {next_seq}")
    step("SUB heartbeat log_ends", f"{len(ends)} agents, the quiet ticker's end {next_seq}")

    # ---- write_stdin to a live agent spawned with stdin null
    dealer.err("write_stdin", "stdin_closed", agent=tid, data=b"x")
    dealer.err("close_stdin", "stdin_closed", agent=tid)
    step("stdin of a stdin-null agent", "write_stdin and close_stdin are stdin_closed")

    # ---- concurrency: a pending wait does not block other requests
    rid_wait = dealer.send("wait", agent=tid, timeout_ms=20000)
    rid_get = dealer.send("get", agent=tid)
    got = dealer.wait_for(rid_get)  # must come back while the wait is still pending
    check(got["ok"] is True and got["agent"]["state"] == "running", f"get during wait: {got!r}")
    check(dealer.key(rid_wait) not in dealer.replies, "wait replied before the agent ended")
    short = dealer.call("wait", agent=tid, timeout_ms=100)
    check(short["ok"] is False, f"wait with timeout_ms=100 on a live agent must fail: {short!r}")
    check_error(short, "timeout", "short wait")
    step("concurrent requests", "get and a timed-out wait answered while a long wait is pending")

    # ---- kill -> wait -> killed, signal 9
    killed = check_agent_info(dealer.ok("kill", agent=tid)["agent"], "kill reply")
    check(killed["state"] in ("running", "killed", "stopping"), f"kill reply state {killed['state']!r}")
    waited = dealer.wait_for(rid_wait, timeout=15)
    check(waited["ok"] is True, f"wait failed: {waited!r}")
    final = check_agent_info(waited["agent"], "wait reply")
    check(final["state"] == "killed", f"after kill the agent is killed, got {final['state']!r}")
    check(final["signal"] == 9, f"killed by SIGKILL: signal must be 9, got {final['signal']!r}")
    check(final["exit_code"] is None, f"a killed agent has exit_code nil: {final!r}")
    live_pgids.pop(tid, None)
    again = dealer.ok("wait", agent=tid, timeout_ms=1000)
    check(again["agent"]["state"] == "killed", "wait on a terminal agent replies at once")
    step("kill / wait", f"kill reply state {killed['state']}, then wait: state killed, signal {final['signal']}")

    # ---- lifecycle events on the SUB socket
    sub.pump_until(lambda: any(e["kind"] == "exit" for e in sub.events_of(tid)), "the ticker's exit event")
    evts = sub.events_of(tid)
    kinds = [e["kind"] for e in evts]
    check(kinds[0] == "spawned", f"the first event of an agent is spawned: {kinds}")
    seqs = [e["event_seq"] for e in sub.events]
    check(all(b > a for a, b in zip(seqs, seqs[1:])), f"event_seq must increase: {seqs}")
    check(any(e["kind"] == "state" and e["state"] == "paused" for e in evts), f"a state event to paused: {evts!r}")
    states_after_pause = [e["state"] for e in evts[[e["state"] for e in evts].index("paused"):]]
    check("running" in states_after_pause, f"a state event back to running after paused: {evts!r}")
    exit_evt = [e for e in evts if e["kind"] == "exit"][-1]
    check(exit_evt["state"] == "killed" and exit_evt.get("signal") == 9 and exit_evt.get("exit_code") is None,
          f"exit event of a killed agent: {exit_evt!r}")
    chain = " -> ".join("%s:%s#%d" % (e["kind"], e["state"], e["event_seq"]) for e in evts)
    step("SUB events", chain)

    # ---- heartbeats
    sub.pump_until(lambda: any(h["event_seq"] >= exit_evt["event_seq"] for h in sub.heartbeats),
                   "a heartbeat reporting the latest event_seq", timeout=5)
    hb = sub.heartbeats[-1]
    check(hb["daemon"] == daemon_id, "heartbeat daemon id must stay the same")
    check(all(b["ts"] >= a["ts"] for a, b in zip(sub.heartbeats, sub.heartbeats[1:])), "heartbeat ts must not go back")
    step("SUB heartbeats", f"{len(sub.heartbeats)} received, latest event_seq {hb['event_seq']}, daemon {hb['daemon'][:8]}")

    # ---- error replies
    unknown = dealer.err("get", "not_found", agent="no-such-agent")
    check(unknown["id"] is not None, "error replies echo the id")
    dealer.err("frobnicate", "bad_request")
    dealer.err("get", "bad_request")  # missing required argument
    dealer.err("pause", "invalid_state", agent=tid)  # a killed agent cannot be paused
    dealer.err("list", "bad_request", labels=None)  # a non-nil default sent as nil
    dealer.err("spawn", "bad_request", spec={"name": "bad name!"})
    rid_v2 = "v2"
    dealer.sock.send(pack({"v": 2, "id": rid_v2, "op": "health"}))
    v2 = dealer.wait_for(rid_v2)
    check(v2["ok"] is False, f"v 2 must be refused: {v2!r}")
    check_error(v2, "unsupported_version", "v=2")
    dealer.sock.send(b"\xc1 not msgpack")
    junk = dealer.wait_for(None)
    check(junk["ok"] is False, f"a non-MessagePack body must be refused: {junk!r}")
    check_error(junk, "bad_request", "non-MessagePack body")
    dealer.sock.send(pack([1, 2, 3]))
    arr = dealer.wait_for(None)
    check(arr["ok"] is False, f"a body that is not a map must be refused: {arr!r}")
    check_error(arr, "bad_request", "array body")
    dealer.sock.send_multipart([b"one", pack({"v": 1, "id": 1, "op": "health"})])
    shape = dealer.wait_for(None)
    check(shape["ok"] is False, f"two non-empty frames must be refused: {shape!r}")
    check_error(shape, "bad_request", "two-frame request")
    step("error replies", "not_found, bad_request (unknown op, missing arg, nil labels, bad spec, junk, "
         "non-map, bad shape), invalid_state, unsupported_version")

    # ---- stdin: write_stdin / close_stdin with cat
    cat = check_agent_info(
        dealer.ok("spawn", spec={"name": "py-cat", "argv": ["cat"], "stdin": "pipe"})["agent"], "spawn cat"
    )
    cid = cat["id"]
    if cat.get("pid"):
        live_pgids[cid] = cat["pid"]
    w1 = dealer.ok("write_stdin", agent="py-cat", data=b"hello \x00\xff bytes\n")
    check(w1["written"] == 15, f"written must count the queued bytes (15): {w1!r}")
    w2 = dealer.ok("write_stdin", agent=cid, data="second line, a str\n")
    check(w2["written"] == len("second line, a str\n"), f"write_stdin of a str: {w2!r}")
    dealer.err("remove", "invalid_state", agent=cid)  # still live
    dead = dealer.call("write_stdin", agent=tid, data=b"x")  # killed, and never a pipe
    check(dead["ok"] is False and dead["error"]["code"] in ("stdin_closed", "invalid_state"),
          f"write_stdin to a killed agent without a pipe: {dead!r}")
    closed = dealer.ok("close_stdin", agent=cid)
    check(set(closed.keys()) == {"v", "id", "ok"}, f"close_stdin replies with the envelope only: {closed!r}")
    cat_final = check_agent_info(dealer.ok("wait", agent=cid, timeout_ms=10000)["agent"], "wait cat")
    check(cat_final["state"] == "exited" and cat_final["exit_code"] == 0,
          f"cat exits 0 at end of input: {cat_final!r}")
    live_pgids.pop(cid, None)
    cat_records, _ = read_all_logs(dealer, cid)
    echoed = b"".join(r["data"] for r in cat_records if r["stream"] == "stdout")
    check(echoed == b"hello \x00\xff bytes\nsecond line, a str\n", f"cat must echo the bytes written: {echoed!r}")
    step("write_stdin / close_stdin", f"{w1['written'] + w2['written']} bytes echoed by cat, exit 0 "
         f"(write_stdin to a killed agent: {dead['error']['code']})")

    # ---- remove
    for ref, name in ((tid, "py-ticker"), ("py-cat", "py-cat")):
        removed = dealer.ok("remove", agent=ref)
        check(set(removed.keys()) == {"v", "id", "ok"}, f"remove replies with the envelope only: {removed!r}")
        dealer.err("get", "not_found", agent=name)
        dealer.err("read_logs", "not_found", agent=name)
    sub.pump_until(lambda: {e["agent"] for e in sub.events if e["kind"] == "removed"} >= {tid, cid},
                   "removed events for both agents")
    removed_states = sorted({e["state"] for e in sub.events if e["kind"] == "removed"})
    listing = dealer.ok("list")
    check(listing["agents"] == [], f"list after remove must be empty: {listing!r}")
    stats = dealer.ok("stats")
    check(stats["spawns"] >= 2 and stats["agents_total"] == 0 and stats["agents_live"] == 0, f"stats: {stats!r}")
    check(stats["requests"].get("read_logs", 0) > 0, f"stats requests by op: {stats['requests']!r}")
    check(stats["errors"].get("not_found", 0) > 0, f"stats errors by code: {stats['errors']!r}")
    step("remove", f"both agents gone (get/read_logs not_found, removed events with state {removed_states}, "
         "empty list)")


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} <path-to-drover-binary>", file=sys.stderr)
        return 2
    drover = argv[1]
    if not os.access(drover, os.X_OK):
        print(f"FAIL: {drover!r} is not an executable", file=sys.stderr)
        return 2
    state_dir = tempfile.mkdtemp(prefix="drover-pyproto-")
    stderr_path = os.path.join(state_dir, "daemon.stderr")
    live_pgids = {}
    started = time.monotonic()
    status = 1
    try:
        with open(stderr_path, "wb") as daemon_stderr:
            run(drover, os.path.join(state_dir, "state"), daemon_stderr, live_pgids)
        status = 0
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - any error is a failure with a message
        import traceback

        traceback.print_exc()
        print(f"FAIL: unexpected {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        # Agents a failed run left behind (the daemon normally stops them on SIGTERM).
        for pgid in live_pgids.values():
            if not isinstance(pgid, int) or pgid <= 1:
                continue  # never signal init's group or our own (0)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if status != 0:
            try:
                with open(stderr_path, "rb") as f:
                    tail = f.read()[-4000:].decode("utf-8", "replace")
                print(f"--- daemon stderr (tail) ---\n{tail}", file=sys.stderr)
            except OSError:
                pass
        shutil.rmtree(state_dir, ignore_errors=True)
    if status == 0:
        print(f"PASS: protocol_client.py in {time.monotonic() - started:.1f} s", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
