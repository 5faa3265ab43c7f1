// The Drover dashboard: a fleet table kept live by /v1/events, and an agent pane following its
// log over SSE. Everything comes from the documented HTTP API under the login cookie; the page
// holds no token, and shows the login form again whenever the session ends. No framework, no
// build step: this file is served as is.

import { transcriptOf } from "./transcript.js";

const $ = (id) => document.getElementById(id);

// What an agent pane keeps in memory, its raw lines and its transcript together: at most
// MAX_BYTES of text (string lengths), and at most MAX_LINES lines in each (which bounds the
// per-line overhead of short lines). Beyond, the oldest go in chunks, down to TRIM_BYTES or
// MAX_LINES - TRIM lines, so a trim runs once per few MiB, not once per line; the log stays in
// the daemon. Long lines or short, a pane holds about the same memory.
const MAX_BYTES = 32 * 1024 * 1024;
const TRIM_BYTES = MAX_BYTES - MAX_BYTES / 8;
const MAX_LINES = 1_000_000;
const TRIM = 10_000;
// Longest line the transcript assembles from pieces (the parsers' `MAX_LINE`).
const MAX_PARTIAL = 4 * 1024 * 1024;
// Height of one log line in pixels (the stylesheet's `--line`); the view renders only the
// lines in sight, so a million lines scroll like a hundred.
const LINE = 18;

const state = {
  role: null,
  agents: new Map(), // id → AgentInfo
  sort: { key: "created_at", desc: true },
  pane: null, // the open agent pane
};

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : { code: "internal", message: `HTTP ${status}` };
    super(`${error.code}: ${error.message}`);
    this.status = status;
    this.code = error.code;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    if (typeof body === "string") {
      init.body = body;
      init.headers["Content-Type"] = "application/octet-stream";
    } else {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { error: { code: "internal", message: `HTTP ${response.status}: ${text.slice(0, 200)}` } };
  }
  if (!response.ok) {
    // To this page every 401 means its login session is over (it expired, its token was
    // revoked, it logged out in another tab, the daemon restarted); at /login, a wrong token.
    if (response.status === 401 && path !== "/login") sessionEnded();
    throw new ApiError(response.status, json);
  }
  return json;
}

// ---------------------------------------------------------------------------------------------
// Session: logged in, the page holds one events feed and polls health. The session ends on any
// 401, on the feed's `unauthorized` event or at "Log out": the login form comes back, and logging
// in lists and subscribes afresh. A feed refused for another reason (400, 429, a broken
// response) and a failed listing are retried, waiting twice as long each time.

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 30_000;
const HEALTH_MS = 5000;

const session = {
  generation: 0, // bumped at every connect and disconnect: work begun before stops at its next step
  feed: null, // the events feed
  health: 0, // the health poll's interval
  retry: 0, // the pending retry's timer
  delay: 0, // the next retry's wait; 0 after a good start
};

async function start() {
  const generation = disconnect();
  let role;
  try {
    ({ role } = await api("GET", "/v1/session"));
  } catch (error) {
    // A 401 has shown the login form already.
    if (error.status !== 401 && generation === session.generation) retryLater(error);
    return;
  }
  if (generation !== session.generation) return;
  state.role = role;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  document.body.classList.toggle("can-control", role === "control");
  $("role").textContent = `role: ${role}`;
  refreshHealth();
  session.health = setInterval(refreshHealth, HEALTH_MS);
  await connect(generation);
}

// Open the events feed, and list once it is open: the daemon subscribes a stream before it
// answers, so no event after the listing can be missed, and those the feed brings during the
// listing are applied after it. After a network drop the feed resumes by itself with
// Last-Event-ID (the daemon's opening `id:` frame gives it one even before the first event).
async function connect(generation) {
  const feed = followEvents();
  session.feed = feed;
  if (!(await feed.opened) || generation !== session.generation) return;
  try {
    await feed.list();
  } catch (error) {
    if (error.status !== 401 && generation === session.generation) retryLater(error);
    return;
  }
  session.delay = 0;
  $("fleet-error").textContent = "";
}

// Stop the feed, the health poll and any pending retry; the new generation.
function disconnect() {
  session.feed?.close();
  session.feed = null;
  clearInterval(session.health);
  clearTimeout(session.retry);
  return ++session.generation;
}

// Start again later; the fleet table stays as it was meanwhile.
function retryLater(error) {
  disconnect();
  session.delay = Math.min(LAST_RETRY_MS, session.delay * 2 || FIRST_RETRY_MS);
  $("feed").textContent = `${error.message}; retrying in ${session.delay / 1000} s`;
  session.retry = setTimeout(start, session.delay);
}

// The daemon refused a stream: a 401 to this question ends the session (in `api`); anything
// else is retried.
async function refused(what) {
  const generation = session.generation;
  try {
    await api("GET", "/v1/session");
  } catch (error) {
    if (error.status === 401) return;
  }
  if (generation === session.generation) retryLater(new Error(`${what} was refused`));
}

// The session is over: back to the login form, keeping nothing of the fleet.
function sessionEnded() {
  disconnect();
  session.delay = 0;
  closeAgent();
  if ($("spawn").open) $("spawn").close();
  state.role = null;
  state.agents = new Map();
  fleet.rows = new Map();
  $("agents").replaceChildren();
  for (const id of ["role", "feed", "health", "counts", "fleet-error"]) $(id).textContent = "";
  $("logout").hidden = true;
  document.body.classList.remove("can-control");
  showLogin();
}

function showLogin() {
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-token").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("POST", "/login", { token: $("login-token").value });
    $("login-token").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});

// Ends the session on the daemon too, so a copied cookie is worthless from now on.
$("logout").addEventListener("click", async () => {
  try {
    await api("POST", "/logout");
  } catch (error) {
    $("health").textContent = `logging out failed (${error.message})`;
    return;
  }
  sessionEnded();
});

async function refreshHealth() {
  const generation = session.generation;
  let text;
  try {
    const health = await api("GET", "/v1/health");
    const up = Math.round(health.uptime_ms / 1000);
    text = `v${health.version} · up ${duration(up)}`;
  } catch (error) {
    text = `daemon unreachable (${error.message})`;
  }
  if (generation === session.generation) $("health").textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Fleet

// Every agent, page after page.
async function listAgents() {
  const agents = new Map();
  let cursor = null;
  do {
    const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : "";
    const page = await api("GET", `/v1/agents${query}`);
    for (const agent of page.agents) agents.set(agent.id, agent);
    cursor = page.next_cursor;
  } while (cursor);
  return agents;
}

// Lifecycle events keep the table current. An event carries the agent's state, exit code and
// signal, applied at once in `event_seq` order per agent; only an agent the table does not know
// yet is fetched, and a fetched reply never overrides a newer event. Events are held back while
// the fleet is listed (`list`) and applied after it.
function followEvents() {
  const events = new EventSource("/v1/events");
  let closed = false;
  let settle;
  const opened = new Promise((resolve) => (settle = resolve)); // true once open, false if not
  const latest = new Map(); // agent id → the newest event seen for it
  let waiting = []; // events held back until the listing is in; null once applied as they come
  let listings = 0; // listings under way
  let newest = 0; // the listing started last
  $("feed").textContent = "connecting…";
  const apply = (data) => {
    const seen = latest.get(data.agent);
    if (seen && seen.event_seq >= data.event_seq) return;
    latest.set(data.agent, data);
    if (data.kind === "removed") {
      state.agents.delete(data.agent);
      if (state.pane && state.pane.id === data.agent) closeAgent();
      scheduleFleet();
      return;
    }
    const known = state.agents.get(data.agent);
    if (known) {
      Object.assign(known, { state: data.state, exit_code: data.exit_code, signal: data.signal });
      if (data.activity) known.activity = data.activity;
      scheduleFleet();
      if (state.pane && state.pane.id === known.id) showAgentState(known);
      return;
    }
    fetchAgent(data);
  };
  const fetchAgent = async (data) => {
    try {
      const { agent } = await api("GET", `/v1/agents/${data.agent}`);
      if (closed) return;
      const newest = latest.get(agent.id);
      if (newest && newest.kind === "removed") return;
      // The reply is at least as new as the event that asked for it, not as later ones.
      if (newest && newest.event_seq > data.event_seq) {
        Object.assign(agent, { state: newest.state, exit_code: newest.exit_code, signal: newest.signal });
        if (newest.activity) agent.activity = newest.activity;
      }
      state.agents.set(agent.id, agent);
      scheduleFleet();
    } catch (error) {
      if (error.status !== 404 && !closed) $("fleet-error").textContent = error.message;
    }
  };
  const receive = (event) => {
    if (closed) return;
    const data = JSON.parse(event.data);
    if (waiting) waiting.push(data);
    else apply(data);
  };
  const flush = () => {
    const pending = waiting || [];
    waiting = null;
    if (!closed) for (const data of pending) apply(data);
  };
  // List the fleet, holding events back meanwhile. Whether it succeeds or fails, the events held
  // are applied once no listing is under way, so the table never stops following.
  const list = async () => {
    waiting = waiting || [];
    listings += 1;
    const mine = ++newest;
    try {
      const agents = await listAgents();
      // An older listing finishing late must not replace a newer one.
      if (!closed && mine === newest) {
        state.agents = agents;
        scheduleFleet();
      }
    } finally {
      listings -= 1;
      if (listings === 0) flush();
    }
  };
  const close = () => {
    closed = true;
    events.close();
    settle(false);
  };
  const kinds = ["spawned", "state", "exit", "lost", "removed", "log_dropped", "activity", "restarted"];
  for (const kind of kinds) {
    events.addEventListener(kind, receive);
  }
  events.addEventListener("open", () => {
    $("feed").textContent = "live";
    settle(true);
  });
  events.addEventListener("error", () => {
    if (closed) return;
    // A network drop: the browser reconnects on its own, resuming after the last id.
    if (events.readyState === EventSource.CONNECTING) {
      $("feed").textContent = "reconnecting…";
      return;
    }
    // Refused: the browser gives up for good (401, 400, 429, a broken response).
    close();
    refused("the events stream");
  });
  // The session ended (or its role changed) while the stream ran.
  events.addEventListener("unauthorized", () => {
    if (closed) return;
    close();
    refused("the events stream");
  });
  // Numbers no longer stored: list again, applying what arrives meanwhile afterwards.
  events.addEventListener("gap", async () => {
    if (closed) return;
    try {
      await list();
      $("fleet-error").textContent = "";
    } catch (error) {
      if (!closed) $("fleet-error").textContent = `listing the agents again failed: ${error.message}`;
    }
  });
  return { opened, list, close };
}

const needsAttention = (agent) => (agent.activity?.attention?.length ?? 0) > 0;

// Turns and cost of every run of a restart policy's agent (`earlier_runs` and the current one),
// as `drover cost`, `drover ls` and /metrics count them; cost is null when no run reported one.
const allTurns = (a) => a.turns + (a.earlier_runs?.turns ?? 0);
function allCost(a) {
  const earlier = a.earlier_runs?.cost_usd;
  if (a.cost_usd == null && earlier == null) return null;
  return (a.cost_usd ?? 0) + (earlier ?? 0);
}

// What a column sorts by: the agent's own field, or its activity's.
function sortValue(agent, key) {
  const a = agent.activity;
  if (key === "phase") return a ? a.phase : "";
  if (key === "turns") return a ? allTurns(a) : -1;
  if (key === "cost") return a ? allCost(a) ?? -1 : -2;
  return agent[key] ?? "";
}

function phaseCell(agent) {
  const a = agent.activity;
  if (!a) return "";
  return needsAttention(agent) ? `${a.phase} !` : a.phase;
}

function matches(agent, text, wanted) {
  if (wanted && agent.state !== wanted) return false;
  if (!text) return true;
  const labels = Object.entries(agent.labels || {}).map(([k, v]) => `${k}=${v}`);
  const haystack = [agent.id, agent.name || "", agent.backend, agent.state, ...labels].join(" ");
  return haystack.toLowerCase().includes(text.toLowerCase());
}

// The table is rendered at most once per animation frame however many events arrive: events mark
// it dirty (`scheduleFleet`), and the frame renders it. A render filters and sorts every agent
// (cheap) but builds rows only for agents new to the table and rewrites only the rows whose cells
// changed; the rows are moved only when the order changed. `document.body.dataset.fleetRenders`
// counts renders (the browser tests read it).
const fleet = {
  pending: false, // a frame is asked for
  rows: new Map(), // agent id → its row, for the agents shown
  renders: 0,
};

function scheduleFleet() {
  if (fleet.pending) return;
  fleet.pending = true;
  requestAnimationFrame(() => {
    if (fleet.pending) renderFleet();
  });
}

// The cells of an agent's row, as text.
function cellsOf(agent) {
  const exit = agent.exit_code ?? (agent.signal ? signalName(agent.signal) : "");
  const labels = Object.entries(agent.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  return [
    agent.name || agent.id.slice(-12),
    agent.state,
    agent.backend,
    duration(Math.round((Date.now() * 1e6 - agent.created_at) / 1e9)),
    labels,
    String(exit),
    phaseCell(agent),
    agent.activity ? String(allTurns(agent.activity)) : "",
    agent.activity && allCost(agent.activity) != null
      ? `$${allCost(agent.activity).toFixed(4)}`
      : "",
  ];
}

function newRow(id) {
  const row = document.createElement("tr");
  row.dataset.id = id;
  row.tabIndex = 0;
  for (let i = 0; i < 9; i++) row.append(document.createElement("td"));
  const open = () => openAgent(id);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => event.key === "Enter" && open());
  return row;
}

// Bring a row up to date with its agent, touching the DOM only where something changed.
function fillRow(row, agent) {
  const attention = needsAttention(agent);
  const className = `state-${agent.state}${attention ? " attention" : ""}`;
  if (row.className !== className) row.className = className;
  const values = cellsOf(agent);
  for (let i = 0; i < values.length; i++) {
    const cell = row.children[i];
    if (cell.textContent !== values[i]) cell.textContent = values[i];
  }
  const title = attention ? agent.activity.attention.map((a) => `${a.reason}: ${a.detail}`).join("\n") : "";
  if (row.title !== title) row.title = title;
}

function renderFleet() {
  fleet.pending = false;
  fleet.renders += 1;
  document.body.dataset.fleetRenders = String(fleet.renders);
  const text = $("filter").value.trim();
  const wanted = $("state-filter").value;
  const counts = {};
  for (const agent of state.agents.values()) counts[agent.state] = (counts[agent.state] || 0) + 1;
  const summary = Object.entries(counts)
    .map(([name, n]) => `${n} ${name}`)
    .join(" · ");
  if ($("counts").textContent !== summary) $("counts").textContent = summary;
  const { key, desc } = state.sort;
  const attentionFirst = $("attention-first").checked;
  const agents = [...state.agents.values()]
    .filter((agent) => matches(agent, text, wanted))
    .sort((a, b) => {
      if (attentionFirst && needsAttention(a) !== needsAttention(b)) {
        return needsAttention(a) ? -1 : 1;
      }
      const x = sortValue(a, key);
      const y = sortValue(b, key);
      return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
    });
  const rows = new Map();
  const ordered = agents.map((agent) => {
    const row = fleet.rows.get(agent.id) ?? newRow(agent.id);
    fillRow(row, agent);
    rows.set(agent.id, row);
    return row;
  });
  fleet.rows = rows;
  const body = $("agents");
  const children = body.children;
  const same = children.length === ordered.length && ordered.every((row, i) => children[i] === row);
  if (!same) body.replaceChildren(...ordered);
}

$("filter").addEventListener("input", renderFleet);
$("state-filter").addEventListener("change", renderFleet);
$("attention-first").addEventListener("change", renderFleet);
for (const header of document.querySelectorAll("th[data-sort]")) {
  header.addEventListener("click", () => {
    const key = header.dataset.sort;
    state.sort = { key, desc: state.sort.key === key ? !state.sort.desc : false };
    renderFleet();
  });
}

// Signal names, as `kill -l` gives them; others are shown by number.
const SIGNALS = {
  1: "HUP", 2: "INT", 3: "QUIT", 4: "ILL", 6: "ABRT", 8: "FPE", 9: "KILL", 10: "USR1", 11: "SEGV",
  12: "USR2", 13: "PIPE", 14: "ALRM", 15: "TERM", 17: "CHLD", 18: "CONT", 19: "STOP", 20: "TSTP",
};
const signalName = (n) => (SIGNALS[n] ? `SIG${SIGNALS[n]}` : `signal ${n}`);

function duration(seconds) {
  if (seconds < 60) return `${Math.max(0, seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

// ---------------------------------------------------------------------------------------------
// Agent pane: a virtualised log following the SSE stream

// Browsers hold at most six HTTP/1.1 connections per origin and the events stream takes one:
// a merged view follows at most four agents, so one connection stays free for actions.
const MAX_FOLLOWED = 4;

const nameOf = (id) => {
  const agent = state.agents.get(id);
  return agent ? agent.name || agent.id.slice(-12) : id.slice(-12);
};

// One agent (with its actions), or several merged with name prefixes, like `logs -f --all`.
function openAgent(id) {
  openPane([id]);
}

function openPane(ids) {
  closeAgent();
  const multi = ids.length > 1;
  const pane = {
    id: multi ? null : ids[0],
    multi,
    lines: [], // {seq, ts, stream, text, prefix}
    tlines: [], // the same as a transcript, kept only when an agent's backend has a parser
    transcript: ids.some((id) => state.agents.get(id)?.activity?.parser),
    bytes: 0, // the text kept in `lines` and `tlines`, as string lengths
    dropped: 0, // raw lines let go beyond MAX_BYTES or MAX_LINES
    sources: [],
    pending: false,
    match: -1,
    records: 0,
    ended: 0,
  };
  state.pane = pane;
  // Only agents whose backend has a parser have a transcript.
  $("transcript").disabled = !pane.transcript;
  $("agent").hidden = false;
  $("agent").classList.toggle("multi", multi);
  $("agent-title").textContent = multi ? ids.map(nameOf).join(", ") : nameOf(ids[0]);
  $("agent-error").textContent = "";
  $("agent-state").textContent = "";
  const agent = state.agents.get(ids[0]);
  if (!multi && agent) showAgentState(agent);
  for (const id of ids) follow(pane, id, multi ? nameOf(id) : "");
}

function follow(pane, id, prefix) {
  const source = new EventSource(`/v1/agents/${id}/logs?follow=true`);
  pane.sources.push(source);
  let last = 0; // the last seq received from this agent
  let ended = false;
  const notice = (text) => {
    const line = { seq: 0, ts: 0, stream: "notice", text, prefix };
    keep(pane, line);
    if (pane.transcript) keepRow(pane, line);
    trim(pane);
    scheduleRender(pane);
  };
  const reader = transcriptOf(state.agents.get(id)?.activity?.parser);
  let partial = ""; // a stdout line arriving in pieces
  const transcribe = (record, text) => {
    if (!pane.transcript) return;
    if (record.stream !== "stdout") {
      keepRow(pane, { seq: record.seq, ts: record.ts, stream: record.stream, text, prefix });
      return;
    }
    if (record.partial) {
      partial += text;
      // As the parsers do: a line past 4 MiB is shown as it is, in pieces, not kept whole.
      if (partial.length > MAX_PARTIAL) {
        keepRow(pane, { seq: record.seq, ts: record.ts, stream: "stdout", text: partial, prefix });
        partial = "";
      }
      return;
    }
    const whole = partial + text;
    partial = "";
    const rows = reader.line(whole) ?? [whole];
    for (const row of rows) {
      keepRow(pane, { seq: record.seq, ts: record.ts, stream: "stdout", text: row, prefix });
    }
  };
  const live = (text) => state.pane === pane && ($("stream-state").textContent = text);
  source.addEventListener("open", () => live("live"));
  source.addEventListener("error", () => {
    if (ended) return;
    if (source.readyState !== EventSource.CLOSED) return live("reconnecting…");
    // Refused (a 401 once the session ended, a limit): EventSource gives up for good. Asking
    // the session brings the login form back if that is why.
    live("closed by the daemon; reopen to retry");
    api("GET", "/v1/session").catch(() => {});
  });
  // The session ended while the stream ran (the events feed hears it too).
  source.addEventListener("unauthorized", () => {
    ended = true;
    source.close();
    live("the login session ended");
    api("GET", "/v1/session").catch(() => {});
  });
  source.addEventListener("log", (event) => {
    const record = JSON.parse(event.data);
    // The stream resumes after a drop with Last-Event-ID, so seqs continue exactly; anything
    // else would be a bug worth showing, never papering over.
    if (record.seq <= last) return;
    if (last && record.seq !== last + 1) {
      notice(`records ${last + 1}..${record.seq - 1} missing from the stream`);
    }
    last = record.seq;
    pane.records += 1;
    const text = record.text ?? atob(record.data_b64);
    keep(pane, { seq: record.seq, ts: record.ts, stream: record.stream, text, prefix });
    transcribe(record, text);
    trim(pane);
    scheduleRender(pane);
  });
  source.addEventListener("gap", (event) => {
    const gap = JSON.parse(event.data);
    last = Math.max(last, gap.to);
    notice(`records ${gap.from}..${gap.to} were removed by retention before they could be read`);
  });
  // Said once: the record after the cut follows `last` then, so it is not also "missing".
  source.addEventListener("truncated", (event) => {
    const cut = JSON.parse(event.data);
    notice(`records ${cut.requested}..${cut.first_available - 1} were removed by retention`);
    last = Math.max(last, cut.first_available - 1);
  });
  source.addEventListener("exit", (event) => {
    ended = true;
    source.close();
    if (pane.transcript) {
      for (const row of reader.flush()) {
        keepRow(pane, { seq: last, ts: 0, stream: "stdout", text: row, prefix });
      }
    }
    pane.ended += 1;
    if (pane.ended === pane.sources.length) live("ended");
    const end = JSON.parse(event.data);
    const how =
      end.exit_code !== null ? `code ${end.exit_code}` : end.signal ? signalName(end.signal) : "";
    notice(`— ${end.state} ${how} —`);
  });
}

// A raw line kept in the pane.
function keep(pane, line) {
  pane.lines.push(line);
  pane.bytes += line.text.length;
}

// A transcript row kept in the pane, marked with the raw line it came from (the newest), so it
// is let go with that line.
function keepRow(pane, row) {
  row.at = pane.dropped + pane.lines.length - 1;
  pane.tlines.push(row);
  pane.bytes += row.text.length;
}

// Let go of the oldest raw lines, and of the transcript rows made from them, once the pane holds
// more than its bounds; the newest line always stays.
function trim(pane) {
  const { lines, tlines } = pane;
  if (pane.bytes <= MAX_BYTES && lines.length <= MAX_LINES && tlines.length <= MAX_LINES) return;
  let i = 0; // raw lines let go
  let j = 0; // transcript rows let go
  const over = () =>
    pane.bytes > TRIM_BYTES || lines.length - i > MAX_LINES - TRIM || tlines.length - j > MAX_LINES - TRIM;
  while (i < lines.length - 1 && over()) {
    pane.bytes -= lines[i].text.length;
    const at = pane.dropped + i;
    i += 1;
    while (j < tlines.length && tlines[j].at <= at) pane.bytes -= tlines[j++].text.length;
  }
  // Rows from lines that stay (a transcript longer than its log): the oldest of them go too.
  while (j < tlines.length - 1 && over()) pane.bytes -= tlines[j++].text.length;
  // One splice per chunk, not one per line.
  lines.splice(0, i);
  tlines.splice(0, j);
  pane.dropped += i;
  const gone = shown(pane) === tlines ? j : i;
  pane.match = pane.match < gone ? -1 : pane.match - gone;
}

function closeAgent() {
  if (state.pane) for (const source of state.pane.sources) source.close();
  state.pane = null;
  $("agent").hidden = true;
  $("log-lines").replaceChildren();
}

$("follow-shown").addEventListener("click", () => {
  const shown = [...document.querySelectorAll("#agents tr")].map((row) => row.dataset.id);
  if (shown.length === 0) return;
  if (shown.length > MAX_FOLLOWED) {
    $("fleet-error").textContent =
      `${shown.length} agents shown: filter to at most ${MAX_FOLLOWED} to follow them together`;
    return;
  }
  $("fleet-error").textContent = "";
  openPane(shown);
});

function showAgentState(agent) {
  $("agent-state").textContent = agent.state;
  $("agent-state").className = `state-${agent.state}`;
  showActivity(agent);
}

// What an AI agent is doing, on one line above its log; the continue form when it has a
// session to resume.
function showActivity(agent) {
  const a = agent.activity;
  $("activity").hidden = !a;
  $("continue-form").hidden = !(a && a.session_id && state.role === "control");
  if (!a) return;
  const t = a.tokens ?? {};
  const parts = [a.phase];
  if (a.model) parts.push(a.model);
  parts.push(`${a.turns} turn${a.turns === 1 ? "" : "s"}`);
  parts.push(`${t.input ?? 0} in · ${t.output ?? 0} out`);
  if (a.cost_usd != null) parts.push(`$${a.cost_usd.toFixed(4)}`);
  if (a.current_tool) parts.push(`tool ${a.current_tool.name}: ${a.current_tool.summary}`);
  if (a.session_id) parts.push(`session ${a.session_id}`);
  const earlier = a.earlier_runs;
  if (earlier?.runs) {
    const cost = earlier.cost_usd != null ? `, $${earlier.cost_usd.toFixed(4)}` : "";
    parts.push(`earlier runs: ${earlier.runs}, ${earlier.turns} turns${cost}`);
  }
  $("activity-summary").textContent = parts.join(" · ");
  $("activity-attention").textContent = (a.attention ?? [])
    .map((x) => `needs a person: ${x.reason.replace("_", " ")}: ${x.detail}`)
    .join(" — ");
}

// The lines the view shows: the raw log, or the transcript.
const shown = (pane) => ($("transcript").checked && pane.transcript ? pane.tlines : pane.lines);
$("transcript").addEventListener("change", () => {
  if (!state.pane) return;
  state.pane.match = -1;
  state.pane.height = -1;
  scheduleRender(state.pane);
});

function scheduleRender(pane) {
  if (pane.pending) return;
  pane.pending = true;
  requestAnimationFrame(() => {
    pane.pending = false;
    if (state.pane === pane) renderLog(pane);
  });
}

// Render only the lines in view (plus a margin) inside a spacer as tall as the whole log. Row
// elements are reused from frame to frame; a line without escapes is set as plain text.
function renderLog(pane) {
  const lines = shown(pane);
  const view = $("log");
  const follow = $("autoscroll").checked;
  const height = lines.length * LINE;
  if (pane.height !== height) {
    $("log-spacer").style.height = `${height}px`;
    pane.height = height;
  }
  if (follow) view.scrollTop = height;
  const first = Math.max(0, Math.floor(view.scrollTop / LINE) - 10);
  const last = Math.min(lines.length, first + Math.ceil(view.clientHeight / LINE) + 20);
  const stamps = $("timestamps").checked;
  const box = $("log-lines");
  box.style.transform = `translateY(${first * LINE}px)`;
  const count = last - first;
  while (box.children.length < count) box.append(document.createElement("div"));
  while (box.children.length > count) box.lastChild.remove();
  for (let k = 0; k < count; k++) {
    const i = first + k;
    const line = lines[i];
    const row = box.children[k];
    const match = i === pane.match;
    if (row.line === line && row.stamps === stamps && row.match === match) continue;
    row.line = line;
    row.stamps = stamps;
    row.match = match;
    row.className = `line ${line.stream}${match ? " match" : ""}`;
    if (line.seq) row.dataset.seq = line.seq;
    else delete row.dataset.seq;
    const text = line.text.replace(/\n$/, "");
    if (!stamps && !line.prefix && !text.includes("\x1b")) {
      row.textContent = text;
      continue;
    }
    const parts = [];
    if (line.prefix) {
      const prefix = document.createElement("span");
      prefix.className = "prefix";
      prefix.textContent = `${line.prefix} | `;
      parts.push(prefix);
    }
    if (stamps && line.ts) {
      const stamp = document.createElement("span");
      stamp.className = "ts";
      stamp.textContent = new Date(line.ts / 1e6).toISOString().slice(11, 23);
      parts.push(stamp);
    }
    row.replaceChildren(...parts, ...ansi(text));
  }
  const dropped = pane.dropped ? ` (${pane.dropped} older lines let go)` : "";
  $("line-count").textContent = `${pane.records} lines${dropped}`;
  // What the pane holds, for the browser tests.
  view.dataset.bytes = String(pane.bytes);
}

// SGR colours and bold as spans; every other escape sequence is dropped. Text is never HTML.
function ansi(text) {
  const out = [];
  let classes = [];
  const pattern = /\x1b\[([0-9;]*)([A-Za-z])/g;
  let at = 0;
  const push = (chunk) => {
    if (!chunk) return;
    const span = document.createElement("span");
    if (classes.length) span.className = classes.join(" ");
    span.textContent = chunk;
    out.push(span);
  };
  for (let found; (found = pattern.exec(text)); ) {
    push(text.slice(at, found.index));
    at = pattern.lastIndex;
    if (found[2] !== "m") continue;
    for (const code of (found[1] || "0").split(";").map(Number)) {
      if (code === 0) classes = [];
      else if (code === 1) classes.push("bold");
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) {
        classes = classes.filter((c) => !c.startsWith("fg"));
        classes.push(`fg${code}`);
      } else if (code === 39) classes = classes.filter((c) => !c.startsWith("fg"));
    }
  }
  push(text.slice(at));
  return out;
}

$("log").addEventListener("scroll", () => {
  const view = $("log");
  const atEnd = view.scrollTop + view.clientHeight >= view.scrollHeight - LINE;
  if (!atEnd && $("autoscroll").checked) $("autoscroll").checked = false;
  if (state.pane) scheduleRender(state.pane);
});
$("jump").addEventListener("click", () => {
  $("autoscroll").checked = true;
  if (state.pane) scheduleRender(state.pane);
});
$("timestamps").addEventListener("change", () => state.pane && scheduleRender(state.pane));
$("agent-close").addEventListener("click", closeAgent);

$("search").addEventListener("keydown", (event) => {
  const pane = state.pane;
  if (event.key !== "Enter" || !pane) return;
  const needle = $("search").value;
  if (!needle) return;
  const lines = shown(pane);
  const n = lines.length;
  for (let k = 1; k <= n; k++) {
    const i = (pane.match + k) % n;
    if (lines[i].text.includes(needle)) {
      pane.match = i;
      $("autoscroll").checked = false;
      $("log").scrollTop = Math.max(0, i * LINE - $("log").clientHeight / 2);
      scheduleRender(pane);
      return;
    }
  }
  $("agent-error").textContent = `"${needle}" is not in the log`;
});

$("download").addEventListener("click", () => {
  const pane = state.pane;
  if (!pane) return;
  const link = document.createElement("a");
  if (!pane.multi) {
    // One agent: the daemon sends its whole kept log, byte for byte, straight to a file (the
    // pane holds only what it shows, as text).
    link.href = `/v1/agents/${encodeURIComponent(pane.id)}/logs?download=true`;
    link.download = "";
    link.click();
    return;
  }
  // Several agents merged: what the pane shows, each line with its agent's prefix.
  const text = pane.lines
    .filter((l) => l.seq)
    .map((l) => (l.prefix ? `${l.prefix} | ${l.text}` : l.text))
    .join("");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  link.download = `${pane.id ?? "agents"}.log`;
  link.click();
  URL.revokeObjectURL(link.href);
});

// ---------------------------------------------------------------------------------------------
// Actions (control role): each shows the daemon's typed error when refused

const isTerminal = (s) => ["exited", "killed", "failed_to_start", "lost"].includes(s);

async function act(action) {
  const pane = state.pane;
  if (!pane) return;
  $("agent-error").textContent = "";
  try {
    if (action === "remove") {
      await api("DELETE", `/v1/agents/${pane.id}`);
      closeAgent();
      return;
    }
    const { agent } = await api("POST", `/v1/agents/${pane.id}/${action}`);
    // The events stream may already have brought a later state (the end): keep it.
    const known = state.agents.get(agent.id);
    if (!(known && isTerminal(known.state) && !isTerminal(agent.state))) {
      state.agents.set(agent.id, agent);
    }
    showAgentState(state.agents.get(agent.id));
    renderFleet();
  } catch (error) {
    $("agent-error").textContent = error.message;
  }
}

$("signal-send").addEventListener("click", async () => {
  const pane = state.pane;
  if (!pane) return;
  $("agent-error").textContent = "";
  try {
    await api("POST", `/v1/agents/${pane.id}/signal`, { signal: $("signal").value });
  } catch (error) {
    $("agent-error").textContent = error.message;
  }
});

for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => act(button.dataset.action));
}

$("stdin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const pane = state.pane;
  if (!pane) return;
  $("agent-error").textContent = "";
  try {
    await api("POST", `/v1/agents/${pane.id}/stdin`, `${$("stdin").value}\n`);
    $("stdin").value = "";
  } catch (error) {
    $("agent-error").textContent = error.message;
  }
});

// Continue: a new agent resuming this one's session with the next prompt (`drover continue`).
$("continue-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const pane = state.pane;
  if (!pane) return;
  $("agent-error").textContent = "";
  try {
    const { agent: parent } = await api("GET", `/v1/agents/${pane.id}`);
    const session = parent.activity?.session_id;
    if (!session) throw new Error("this agent has no session to continue");
    const spec = { ...parent.spec, task: $("continue-prompt").value, resume: session, parent: parent.id };
    delete spec.name;
    const { agent } = await api("POST", "/v1/agents", { spec });
    $("continue-prompt").value = "";
    state.agents.set(agent.id, agent);
    renderFleet();
    openAgent(agent.id);
  } catch (error) {
    $("agent-error").textContent = error.message;
  }
});

// ---------------------------------------------------------------------------------------------
// Spawn form

function pairs(text) {
  const out = {};
  for (const item of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const at = item.indexOf("=");
    if (at < 1) throw new Error(`"${item}" is not KEY=VALUE`);
    out[item.slice(0, at)] = item.slice(at + 1);
  }
  return out;
}

$("spawn-open").addEventListener("click", () => {
  $("spawn-error").textContent = "";
  $("spawn").showModal();
});
$("spawn-cancel").addEventListener("click", () => $("spawn").close());
$("spawn-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData($("spawn-form"));
  $("spawn-error").textContent = "";
  try {
    const raw = String(form.get("argv")).trim();
    const argv = raw.startsWith("[") ? JSON.parse(raw) : raw ? raw.split(/\s+/) : [];
    const spec = { argv, labels: pairs(String(form.get("labels"))), env: pairs(String(form.get("env"))) };
    for (const key of ["name", "backend", "task", "model", "cwd"]) {
      const value = String(form.get(key)).trim();
      if (value) spec[key] = value;
    }
    if (form.get("stdin")) spec.stdin = "pipe";
    const { agent } = await api("POST", "/v1/agents", { spec });
    state.agents.set(agent.id, agent);
    renderFleet();
    $("spawn").close();
    openAgent(agent.id);
  } catch (error) {
    $("spawn-error").textContent = error.message;
  }
});

start().catch((error) => {
  document.body.textContent = `drover: ${error.message}`;
});
