#!/usr/bin/env python3
"""Re-records the real-CLI transcripts in crates/drover-agent/tests/fixtures/real/ (see README.md).

    tests/agents/record.py [CASE_PREFIX ...]

Runs each pinned CLI from tests/agents/node_modules against mock_model.py with a scratch HOME and
cwd, using the argv of Drover's built-in backend plus the extra arguments Drover appends, and saves
the CLI's stdout byte for byte as <cli>-<scenario>.jsonl (stderr beside it as .stderr.txt). Checks
what each case must show (a resumed run's request carries the first run's answer) and writes the
fixture README. As root it re-executes itself in a new network namespace with only loopback up, so
a CLI that tries to reach the internet fails here instead of leaking out.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "crates/drover-agent/tests/fixtures/real"
BIN = HERE / "node_modules/.bin"
TIMEOUT = 120
INTERRUPT_AFTER = 2.5
TASK = "Run the scripted step."
NEXT = "Continue with the next step."

PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex",
            "gemini": "@google/gemini-cli", "opencode": "opencode-ai"}

GEMINI_SETTINGS = {"security": {"auth": {"selectedType": "gemini-api-key"}},
                   "privacy": {"usageStatisticsEnabled": False},
                   # maxAttempts 1: a 5xx fails at once instead of ten tries with backoff.
                   "general": {"disableAutoUpdate": True, "disableUpdateNag": True,
                               "maxAttempts": 1},
                   "telemetry": {"enabled": False}}


def codex_config(port):
    return f"""model_provider = "mock"
model = "mock-model"

[model_providers.mock]
name = "Mock"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"
env_key = "MOCK_API_KEY"
request_max_retries = 0
stream_max_retries = 0
"""


def opencode_config(port):
    return json.dumps({
        "provider": {"mock": {
            "npm": "@ai-sdk/openai-compatible", "name": "Mock",
            "options": {"baseURL": f"http://127.0.0.1:{port}/v1", "apiKey": "sk-mock"},
            # A price (USD per million tokens) so that the step_finish lines carry a cost.
            "models": {"mock-model": {"name": "Mock Model", "cost": {"input": 3, "output": 15}}}}},
        "model": "mock/mock-model", "small_model": "mock/mock-model",
        "autoupdate": False, "share": "disabled"}, indent=2) + "\n"


def setup(cli, home, port):
    """Writes the CLI's config under `home`; returns (env, files written) for the fixture README."""
    if cli == "claude":
        return {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}", "ANTHROPIC_API_KEY": "sk-mock",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "CLAUDE_CODE_MAX_RETRIES": "0"}, {}
    if cli == "codex":
        text = codex_config(port)
        (home / ".codex").mkdir()
        (home / ".codex/config.toml").write_text(text)
        return {"MOCK_API_KEY": "sk-mock"}, {"$HOME/.codex/config.toml": text}
    if cli == "gemini":
        text = json.dumps(GEMINI_SETTINGS, indent=2) + "\n"
        (home / ".gemini").mkdir()
        (home / ".gemini/settings.json").write_text(text)
        return {"GEMINI_API_KEY": "mock-key", "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
                "GEMINI_CLI_TRUST_WORKSPACE": "true"}, {"$HOME/.gemini/settings.json": text}
    text = opencode_config(port)
    (home / ".config/opencode").mkdir(parents=True)
    (home / ".config/opencode/opencode.json").write_text(text)
    return {"OPENCODE_DISABLE_AUTOUPDATE": "1", "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1", "OPENCODE_DISABLE_LSP_DOWNLOAD": "1"}, \
        {"$HOME/.config/opencode/opencode.json": text}


def backend(cli, task, extra=(), resume=None):
    """The argv of Drover's built-in backend (no --model), `extra` appended as Drover does; with
    `resume`, each CLI's own way to continue session `resume`."""
    if cli == "claude":
        head = ["claude", "--resume", resume] if resume else ["claude"]
        return head + ["-p", task, "--output-format", "stream-json", "--verbose", *extra]
    if cli == "codex":
        return ["codex", "exec", "--json", *(["resume", resume] if resume else []), task, *extra]
    if cli == "gemini":
        return ["gemini", "-p", task, *extra, *(["--resume", resume] if resume else [])]
    return ["opencode", "run", "--format", "json", *(["--session", resume] if resume else []),
            task, *extra]


# Extra arguments every run of a CLI needs (appended after the backend's words, as `drover spawn
# --backend X -- ARGS` does).
BASE_EXTRA = {
    "claude": [],
    "codex": ["--skip-git-repo-check"],
    "gemini": ["--output-format", "stream-json", "--model", "gemini-2.5-pro"],
    "opencode": [],
}

# (cli, scenario, mock script, extra args beyond BASE_EXTRA, what it shows[, signal sent])
CASES = [
    ("claude", "plain", "plain", [], "a plain answer"),
    ("claude", "tool", "tool", ["--allowedTools", "Bash"], "Bash runs `echo`, then a final answer"),
    ("claude", "error", "error", [], "HTTP 400 from the API"),
    ("claude", "error-500", "error-500", [], "HTTP 500 with CLAUDE_CODE_MAX_RETRIES=0"),
    ("claude", "max-turns", "tool", ["--allowedTools", "Bash", "--max-turns", "1"],
     "a tool call stopped by --max-turns 1"),
    ("claude", "permission-denial", "deny", [],
     "`touch` needs permission, default mode denies it in -p"),
    ("claude", "slow", "slow", ["--include-partial-messages"],
     "a 5-chunk stream 300 ms apart, with stream_event deltas"),
    ("claude", "resume", "resume", [], "a second run with --resume <session_id>"),
    ("claude", "sigint", "very-slow", [],
     "SIGINT 2.5 s into a 10 s stream (Drover's stop signal for claude)", signal.SIGINT),
    ("claude", "sigterm", "very-slow", [], "SIGTERM 2.5 s into a 10 s stream", signal.SIGTERM),
    ("codex", "plain", "plain", [], "a plain answer"),
    ("codex", "tool", "tool", [], "exec_command runs `echo`, then a final answer"),
    ("codex", "error", "error", [], "HTTP 400 from the API"),
    ("codex", "resume", "resume", [], "a second run: codex exec --json resume <thread_id>"),
    ("gemini", "plain", "plain", None, "a plain answer, model auto (routed: a classifier call)"),
    ("gemini", "tool", "tool", ["--yolo"], "run_shell_command runs `echo` (needs --yolo)"),
    ("gemini", "error", "error", [], "HTTP 400 from the API"),
    ("gemini", "error-500", "error-500", [], "HTTP 500 with settings general.maxAttempts 1"),
    ("gemini", "resume", "resume", [], "a second run with --resume <session_id>"),
    ("opencode", "plain", "plain", [], "a plain answer"),
    ("opencode", "tool", "tool", [], "bash runs `echo`, then a final answer"),
    ("opencode", "error", "error", [], "HTTP 400 from the API"),
    ("opencode", "resume", "resume", [], "a second run with --session <sessionID>"),
    ("codex", "slow", "slow", [], "a 5-chunk stream 300 ms apart"),
    ("gemini", "slow", "slow", [], "a 5-chunk stream 300 ms apart"),
    ("opencode", "slow", "slow", [], "a 5-chunk stream 300 ms apart"),
]


def session_id(cli, stdout):
    """The session id a CLI printed, read the way a parser would."""
    for line in stdout.splitlines():
        ev = json.loads(line)
        sid = ev.get("session_id") or ev.get("thread_id") or ev.get("sessionID")
        if sid:
            return sid
    raise RuntimeError(f"{cli}: no session id in its output")


class Mock:
    """mock_model.py serving one script, its request log in `log`."""

    def __init__(self, script, log):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "mock_model.py"), str(HERE / "scripts" / f"{script}.json"),
             "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline())
        self.log = log

    def requests(self):
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r for r in lines if "method" in r]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def run(argv, cwd, env, mock, sig=None):
    """Runs one CLI to its end; with `sig`, sends it that signal INTERRUPT_AFTER seconds after the
    mock has seen its first model request (mid-stream with the very-slow script)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if sig:
        deadline = time.monotonic() + TIMEOUT
        while not (mock.log.exists() and "POST" in mock.log.read_text()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]}: no model request within {TIMEOUT} s")
            time.sleep(0.05)
        time.sleep(INTERRUPT_AFTER)
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def record(case, scratch):
    cli, scenario, script, extra, _ = case[:5]
    sig = case[5] if len(case) > 5 else None
    extra = [] if extra is None else BASE_EXTRA[cli] + extra
    if case[3] is None:  # gemini plain: the backend's own words only plus the output format
        extra = ["--output-format", "stream-json"]
    base = scratch / f"{cli}-{scenario}"
    home, work = base / "home", base / "work"
    home.mkdir(parents=True)
    work.mkdir()
    mock = Mock(script, base / "requests.jsonl")
    try:
        cli_env, files = setup(cli, home, mock.port)
        env = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(home), "TMPDIR": str(base),
               "LANG": "C.UTF-8", **cli_env}
        runs = []
        argv = backend(cli, TASK, extra)
        runs.append((argv, *run(argv, work, env, mock, sig)))
        if scenario == "resume":
            sid = session_id(cli, runs[0][2].decode())
            argv = backend(cli, NEXT, extra, resume=sid)
            runs.append((argv, *run(argv, work, env, mock)))
            bodies = [json.dumps(r["body"]) for r in mock.requests()]
            if "First answer." not in bodies[-1]:
                raise RuntimeError(f"{cli}: the resumed request does not carry the first answer")
        requests = mock.requests()
    finally:
        mock.stop()
    names = [f"{cli}-{scenario}-first", f"{cli}-{scenario}"] if len(runs) == 2 else \
        [f"{cli}-{scenario}"]
    for name, (argv, code, out, err) in zip(names, runs):
        (OUT / f"{name}.jsonl").write_bytes(out)
        (OUT / f"{name}.stderr.txt").write_bytes(err)
        print(f"{name}: exit {code}, {len(out.splitlines())} lines, {len(requests)} requests",
              flush=True)
    env_shown = {k: v.replace(str(mock.port), "PORT") for k, v in cli_env.items()}
    return [{"name": name, "argv": argv, "exit": code, "env": env_shown,
             "files": {k: v.replace(str(mock.port), "PORT") for k, v in files.items()},
             "script": script,
             "what": (f"the first run, whose session {cli}-{scenario}.jsonl resumes"
                      if name.endswith("-first") else case[4]),
             "requests": [f"{r['method']} {r['path']}" for r in requests]}
            for name, (argv, code, _, _) in zip(names, runs)]


def version(cli):
    pkg = json.loads((HERE / "node_modules" / PACKAGES[cli] / "package.json").read_text())
    return f"{PACKAGES[cli]} {pkg['version']}"


def readme(entries):
    lines = ["# Real agent CLI transcripts", "",
             "Recorded by `tests/agents/record.py` (do not edit by hand: re-run it when a CLI changes).",
             "Each `<cli>-<scenario>.jsonl` is the CLI's stdout byte for byte; `.stderr.txt` is its",
             "stderr. Every run had a fresh scratch `HOME` and cwd, `TMPDIR` under the scratch dir,",
             "stdin from /dev/null, `PATH` with tests/agents/node_modules/.bin first, `LANG=C.UTF-8`,",
             "and ran in a network namespace with only loopback. The model was",
             "`tests/agents/mock_model.py tests/agents/scripts/<script>.json` on 127.0.0.1:PORT.",
             "Ids, timestamps, durations, temporary paths and the port differ",
             "between recordings; token counts (100 in, 20 out per model call) do not.", "",
             "## Versions", ""]
    lines += [f"- {version(cli)}" for cli in PACKAGES] + [""]
    seen_cli = None
    for e in entries:
        cli = e["name"].split("-")[0]
        if cli != seen_cli:
            seen_cli = cli
            lines += [f"## {cli}", "", "env (besides the above): " + ", ".join(
                f"`{k}={v}`" for k, v in e["env"].items()), ""]
            for path, text in e["files"].items():
                lines += [f"{path}:", "", "```", text.rstrip("\n"), "```", ""]
        argv = " ".join(a if a.replace("-", "").replace("_", "").replace("/", "").replace(
            ".", "").isalnum() else json.dumps(a) for a in e["argv"])
        lines += [f"### {e['name']}.jsonl", "", f"{e['what']}; script `{e['script']}.json`; "
                  f"exit code {e['exit']}.", "", "```", argv, "```", "",
                  ("mock saw (both runs): " if "resume" in e["name"] else "mock saw: ") + ", ".join(f"`{r}`" for r in e["requests"]), ""]
    (OUT / "README.md").write_text("\n".join(lines))


def main():
    if os.geteuid() == 0 and not os.environ.get("DROVER_RECORD_NETNS") and shutil.which("unshare"):
        os.environ["DROVER_RECORD_NETNS"] = "1"
        os.execvp("unshare", ["unshare", "--net", "sh", "-c",
                              'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv])
    wanted = sys.argv[1:]
    cases = [c for c in CASES if not wanted or any(f"{c[0]}-{c[1]}".startswith(w) for w in wanted)]
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="drover-record-") as tmp:
        for case in cases:
            entries += record(case, Path(tmp))
    if not wanted:
        readme(entries)


if __name__ == "__main__":
    main()
