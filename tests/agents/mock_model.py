#!/usr/bin/env python3
"""A scripted mock model server for running the real agent CLIs offline (see README.md).

    mock_model.py SCRIPT.json [--log REQUESTS.jsonl]

Listens on 127.0.0.1 port 0, prints the port as its one ready line on stdout, and serves until
killed. It speaks the four wire formats the CLIs use, all streaming over SSE:

  POST /v1/messages                      Anthropic Messages (claude); also .../count_tokens
  POST /v1/responses                     OpenAI Responses (codex)
  POST /v1/chat/completions              OpenAI Chat Completions (opencode)
  POST /v1beta/models/M:streamGenerateContent?alt=sse   Gemini (gemini-cli); also :generateContent
                                         and :countTokens

Each "main" request (one that offers the agent's tools) takes the next turn of the script:

  {"turns": [
     {"text": "Hello."},                            a plain answer
     {"shell": "echo hi"},                          a call of the CLI's own shell tool
     {"error": {"status": 500, "message": "boom"}}, an HTTP error in the CLI's API dialect
     {"text": "slow", "chunks": 5, "delay_ms": 200} a slow stream (text split in 5 deltas)
   ],
   "usage": {"input": 100, "output": 20}}           optional token counts on every answer

The shell tool is found among the tools the request offers (Bash, shell, exec_command,
run_shell_command, bash, ...) and its required string/array arguments are filled from the schema,
so the CLI itself executes the command. Requests without tools (titles, classifiers) get a short
fixed answer and take no turn. When the script is exhausted the answer says so, so a test sees it.
A client error (an "error" turn with a 4xx status) ends the script: every later main request gets
the same error, as a real API refuses a conversation it found invalid however it is retried
(claude 2.1.332 retries a 400 without its experimental betas, then with features turned off).
Every request is appended to the --log file as one JSON line: {"n", "method", "path", "body"};
when the answer to POST request n has been written out to its end, {"answered": n} follows (a
test waits on it to know a slow stream is over on the mock's side).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHELL_TOOLS = ("Bash", "shell", "exec_command", "shell_command", "run_shell_command", "bash")
AUX_TEXT = "Mock title"


class Script:
    """The scripted turns, taken in order by main requests, and the request log."""

    def __init__(self, path, log_path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.turns = list(doc["turns"])
        self.usage = {"input": 100, "output": 20, **doc.get("usage", {})}
        self.log_path = log_path
        self.lock = threading.Lock()
        self.taken = 0
        self.logged = 0
        # The 4xx error turn that ended the script, if one did.
        self.refused = None

    def next_turn(self):
        with self.lock:
            if self.refused is not None:
                return self.refused
            if self.taken >= len(self.turns):
                return {"text": "mock: script exhausted"}
            self.taken += 1
            turn = self.turns[self.taken - 1]
            if 400 <= turn.get("error", {}).get("status", 0) < 500:
                self.refused = turn
            return turn

    def record(self, method, path, body):
        """Logs a request; returns its number."""
        with self.lock:
            self.logged += 1
            self.write({"n": self.logged, "method": method, "path": path, "body": body})
            return self.logged

    def answered(self, n):
        with self.lock:
            self.write({"answered": n})

    def write(self, line):
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")


def chunks_of(turn):
    """The text of a turn split into `chunks` deltas (one by default)."""
    text = turn.get("text", "")
    n = max(1, min(int(turn.get("chunks", 1)), len(text) or 1))
    step = -(-len(text) // n)
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def shell_call(tools, command):
    """(name, arguments) calling the first shell tool among `tools` [(name, json schema)]."""
    by_name = dict(tools)
    name = next((t for t in SHELL_TOOLS if t in by_name), None)
    if name is None:
        raise ValueError(f"no shell tool among {sorted(by_name)}")
    schema = by_name[name] or {}
    props = schema.get("properties", {})
    args = {}
    for key in schema.get("required", []) or ["command"]:
        kind = props.get(key, {}).get("type")
        if key in ("command", "cmd"):
            args[key] = ["bash", "-lc", command] if kind == "array" else command
        elif kind == "string":
            args[key] = "Run the scripted command"
    if "command" in props and "command" not in args and "cmd" not in args:
        args["command"] = command
    return name, args


def fill(schema):
    """A minimal value matching a JSON schema: what an auxiliary structured request is answered."""
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: fill(props.get(k, {})) for k in schema.get("required", props)}
    return {"string": "mock", "integer": 1, "number": 1, "boolean": False, "array": []}.get(kind)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script = None  # set by main

    def log_message(self, fmt, *args):
        sys.stderr.write("mock: " + (fmt % args) + "\n")

    # --- plumbing -------------------------------------------------------------------------

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, data, event=None):
        text = (f"event: {event}\n" if event else "") + "data: " + (
            data if isinstance(data, str) else json.dumps(data)) + "\n\n"
        self.wfile.write(text.encode())
        self.wfile.flush()

    def pause(self, turn):
        if turn.get("delay_ms"):
            time.sleep(turn["delay_ms"] / 1000)

    def do_GET(self):
        self.script.record("GET", self.path, None)
        self.send_json(404, {"error": {"message": f"mock: no GET {self.path}"}})

    def do_HEAD(self):
        self.script.record("HEAD", self.path, None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.body()
        n = self.script.record("POST", self.path, body)
        try:
            self.answer(body)
        finally:
            self.script.answered(n)

    def answer(self, body):
        path = self.path.split("?")[0]
        if not isinstance(body, dict):
            body = {}
        if path.endswith("/messages/count_tokens"):
            return self.send_json(200, {"input_tokens": self.script.usage["input"]})
        if path.endswith("/messages"):
            return self.anthropic(body)
        if path.endswith("/responses"):
            return self.openai_responses(body)
        if path.endswith("/chat/completions"):
            return self.chat(body)
        if path.endswith(":countTokens"):
            return self.send_json(200, {"totalTokens": self.script.usage["input"]})
        if path.endswith(":streamGenerateContent") or path.endswith(":generateContent"):
            return self.gemini(body, stream=path.endswith(":streamGenerateContent"))
        self.send_json(404, {"error": {"message": f"mock: no POST {path}"}})

    def take(self, has_tools):
        return self.script.next_turn() if has_tools else {"text": AUX_TEXT, "aux": True}

    def resolve(self, turn, tools):
        """`turn` with its shell call resolved against `tools` [(name, schema)] into "call": a
        CLI that offers no shell tool (gemini without --yolo) gets a text saying so instead."""
        if "shell" not in turn:
            return turn
        try:
            return dict(turn, call=shell_call(tools, turn["shell"]))
        except ValueError as e:
            sys.stderr.write(f"mock: cannot script a shell call: {e}\n")
            return {"text": f"mock: cannot script a shell call: {e}"}

    # --- Anthropic Messages ---------------------------------------------------------------

    def anthropic(self, req):
        tools = [(t.get("name"), t.get("input_schema")) for t in req.get("tools") or []]
        turn = self.resolve(self.take(bool(tools)), tools)
        if "error" in turn:
            err = turn["error"]
            return self.send_json(err.get("status", 500), {"type": "error", "error": {
                "type": err.get("type", "api_error"), "message": err.get("message", "mock error")}})
        u = self.script.usage
        usage = {"input_tokens": u["input"], "output_tokens": u["output"],
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        msg = {"id": f"msg_mock_{self.script.logged}", "type": "message", "role": "assistant",
               "model": req.get("model", "mock"), "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": dict(usage, output_tokens=1)}
        if "call" in turn:
            name, args = turn["call"]
            block = {"type": "tool_use", "id": f"toolu_mock_{self.script.logged}",
                     "name": name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(args)}
            stop = "tool_use"
        else:
            block, delta, stop = {"type": "text", "text": ""}, None, "end_turn"
        if not req.get("stream"):
            if delta:
                block["input"] = args
            else:
                block["text"] = turn.get("text", "")
            return self.send_json(200, dict(msg, content=[block], stop_reason=stop, usage=usage))
        self.start_sse()
        self.sse({"type": "message_start", "message": msg}, "message_start")
        self.sse({"type": "content_block_start", "index": 0, "content_block": block},
                 "content_block_start")
        for piece in ([delta] if delta else
                      [{"type": "text_delta", "text": c} for c in chunks_of(turn)]):
            self.pause(turn)
            self.sse({"type": "content_block_delta", "index": 0, "delta": piece},
                     "content_block_delta")
        self.sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self.sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": u["output"]}}, "message_delta")
        self.sse({"type": "message_stop"}, "message_stop")

    # --- OpenAI Responses -----------------------------------------------------------------

    def openai_responses(self, req):
        tools = [(t.get("name"), t.get("parameters")) for t in req.get("tools") or []]
        turn = self.resolve(self.take(bool(tools)), tools)
        if "error" in turn:
            err = turn["error"]
            return self.send_json(err.get("status", 500), {"error": {
                "type": err.get("type", "server_error"), "message": err.get("message", "mock error"),
                "code": None, "param": None}})
        u = self.script.usage
        rid = f"resp_mock_{self.script.logged}"
        base = {"id": rid, "object": "response", "created_at": int(time.time()),
                "model": req.get("model", "mock"), "status": "in_progress", "output": []}
        self.start_sse()
        seq = iter(range(1_000_000))

        def ev(kind, **fields):
            self.sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        ev("response.created", response=base)
        if "call" in turn:
            name, args = turn["call"]
            item = {"type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}",
                    "name": name, "arguments": json.dumps(args), "status": "completed"}
            ev("response.output_item.added", output_index=0, item=dict(item, arguments="",
                                                                       status="in_progress"))
            ev("response.function_call_arguments.delta", item_id=item["id"], output_index=0,
               delta=item["arguments"])
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=0,
               arguments=item["arguments"])
        else:
            text = turn.get("text", "")
            item = {"type": "message", "id": f"msg_{rid}", "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}
            ev("response.output_item.added", output_index=0, item=dict(item, content=[],
                                                                       status="in_progress"))
            part = {"type": "output_text", "text": "", "annotations": []}
            ev("response.content_part.added", item_id=item["id"], output_index=0,
               content_index=0, part=part)
            for c in chunks_of(turn):
                self.pause(turn)
                ev("response.output_text.delta", item_id=item["id"], output_index=0,
                   content_index=0, delta=c)
            ev("response.output_text.done", item_id=item["id"], output_index=0, content_index=0,
               text=text)
            ev("response.content_part.done", item_id=item["id"], output_index=0,
               content_index=0, part=dict(part, text=text))
        ev("response.output_item.done", output_index=0, item=item)
        usage = {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": u["input"] + u["output"]}
        ev("response.completed", response=dict(base, status="completed", output=[item],
                                                usage=usage))

    # --- OpenAI Chat Completions ----------------------------------------------------------

    def chat(self, req):
        tools = [(t["function"].get("name"), t["function"].get("parameters"))
                 for t in req.get("tools") or [] if "function" in t]
        turn = self.resolve(self.take(bool(tools)), tools)
        if "error" in turn:
            err = turn["error"]
            return self.send_json(err.get("status", 500), {"error": {
                "type": err.get("type", "server_error"), "message": err.get("message", "mock error"),
                "code": None, "param": None}})
        u = self.script.usage
        cid = f"chatcmpl-mock-{self.script.logged}"
        model = req.get("model", "mock")

        def chunk(delta, finish=None, **extra):
            return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish}], **extra}

        usage = {"prompt_tokens": u["input"], "completion_tokens": u["output"],
                 "total_tokens": u["input"] + u["output"]}
        if not req.get("stream"):
            text = turn.get("text", "")
            return self.send_json(200, {"id": cid, "object": "chat.completion", "model": model,
                                        "created": int(time.time()), "usage": usage,
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant",
                                                                 "content": text}}]})
        self.start_sse()
        if "call" in turn:
            name, args = turn["call"]
            self.sse(chunk({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": f"call_{cid}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)}}]}))
            finish = "tool_calls"
        else:
            self.sse(chunk({"role": "assistant", "content": ""}))
            for c in chunks_of(turn):
                self.pause(turn)
                self.sse(chunk({"content": c}))
            finish = "stop"
        self.sse(chunk({}, finish))
        self.sse({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                  "model": model, "choices": [], "usage": usage})
        self.sse("[DONE]")

    # --- Gemini ---------------------------------------------------------------------------

    def gemini(self, req, stream):
        tools = [(d.get("name"), d.get("parametersJsonSchema") or d.get("parameters"))
                 for t in req.get("tools") or [] for d in t.get("functionDeclarations") or []]
        turn = self.resolve(self.take(bool(tools)), tools)
        config = req.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if turn.get("aux") and schema:
            turn = {"text": json.dumps(fill(schema)), "aux": True}
        if "error" in turn:
            err = turn["error"]
            status = err.get("status", 500)
            return self.send_json(status, {"error": {
                "code": status, "message": err.get("message", "mock error"),
                "status": err.get("type", "INTERNAL")}})
        u = self.script.usage
        model = self.path.split("/models/")[-1].split(":")[0]
        if "call" in turn:
            name, args = turn["call"]
            parts_list = [[{"functionCall": {"name": name, "args": args}}]]
        else:
            parts_list = [[{"text": c}] for c in chunks_of(turn)]
        usage = {"promptTokenCount": u["input"], "candidatesTokenCount": u["output"],
                 "totalTokenCount": u["input"] + u["output"]}

        def response(parts, last):
            cand = {"content": {"role": "model", "parts": parts}, "index": 0}
            out = {"candidates": [cand], "modelVersion": model}
            if last:
                cand["finishReason"] = "STOP"
                out["usageMetadata"] = usage
            return out

        if not stream:
            text = "".join(p[0].get("text", "") for p in parts_list)
            parts = parts_list[0] if "call" in turn else [{"text": text}]
            return self.send_json(200, response(parts, True))
        self.start_sse()
        for i, parts in enumerate(parts_list):
            self.pause(turn)
            self.sse(response(parts, i == len(parts_list) - 1))


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    log = args[args.index("--log") + 1] if "--log" in args else None
    Handler.script = Script(args[0], log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
