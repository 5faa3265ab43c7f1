// Drives the dashboard in headless Chromium (Debian's /usr/bin/chromium through playwright-core)
// against a real daemon started by tests/http_dashboard.rs, which passes:
//   node dashboard.mjs <page-url> <daemon-url> <control-token> <read-token> <agent-id> <lines> <shots>
// The page is loaded through <page-url>, a relay in front of the daemon whose `POST /__cut`
// drops every connection it relays (a network failure on demand); this script's own API calls
// go straight to <daemon-url>.
// The agent prints `line 1` .. `line <lines>` and keeps running. Every step asserts; any failure
// exits non-zero with the reason, and the Rust test prints it.

import assert from "node:assert/strict";
import { launch, logIn, watch } from "./page.mjs";

const [base, daemon, controlToken, readToken, agentId, linesArg, shots] = process.argv.slice(2);
const lines = Number(linesArg);
const TIMEOUT = 30_000;

const browser = await launch();

async function api(method, path, token, body) {
  const response = await fetch(`${daemon}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

async function loggedIn(token) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  watch(page, errors);
  await logIn(page, base, token, TIMEOUT);
  return { context, page, errors };
}

const rowOf = (page, id) => page.locator(`tr[data-id="${id}"]`);

try {
  // --- control role -------------------------------------------------------------------------
  const { page, errors } = await loggedIn(controlToken);
  assert.equal(await page.locator("#role").textContent(), "role: control");

  // The agent spawned before the page loaded is listed.
  await rowOf(page, agentId).waitFor({ timeout: TIMEOUT });

  // An agent spawned by another client appears without a reload (the events stream).
  const other = await api("POST", "/v1/agents", controlToken, {
    spec: { argv: ["sh", "-c", "echo other; exec sleep 1000"], name: "from-another-client" },
  });
  assert.equal(other.status, 201, JSON.stringify(other.json));
  const otherId = other.json.agent.id;
  await rowOf(page, otherId).waitFor({ timeout: TIMEOUT });
  await page.locator(`tr[data-id="${otherId}"].state-running`).waitFor({ timeout: TIMEOUT });

  // The agent's log follows to the exact last line, every line there once and in order.
  await rowOf(page, agentId).click();
  // 200,000 lines through SSE into a page: allow for a machine busy with other tests.
  await page.locator("#line-count", { hasText: `${lines} lines` }).waitFor({ timeout: 3 * TIMEOUT });
  const last = page.locator(`#log .line[data-seq="${lines}"]`);
  await last.waitFor({ timeout: TIMEOUT });
  assert.equal(await last.textContent(), `line ${lines}`);
  await page.screenshot({ path: `${shots}/dashboard-agent.png` });

  // Search reaches the first line of a long log (the view renders only what is in sight).
  await page.fill("#search", "line 1");
  await page.press("#search", "Enter");
  const first = page.locator('#log .line.match[data-seq="1"]');
  await first.waitFor({ timeout: TIMEOUT });
  assert.equal(await first.textContent(), "line 1");

  // Stop from the page: the state changes in the page and in the daemon.
  await page.click('button[data-action="stop"]');
  await page.locator("#agent-state", { hasText: /killed|exited/ }).waitFor({ timeout: TIMEOUT });
  const stopped = await api("GET", `/v1/agents/${agentId}`, controlToken);
  assert.match(stopped.json.agent.state, /killed|exited/);
  // The search left the view at line 1; jump back to the end, where the exit is noted.
  await page.click("#jump");
  await page.locator("#log .line.notice", { hasText: /killed|exited/ }).waitFor({ timeout: TIMEOUT });

  // A refused action shows the daemon's typed error.
  await page.click('button[data-action="pause"]');
  await page.locator("#agent-error", { hasText: "invalid_state" }).waitFor({ timeout: TIMEOUT });

  // The spawn form starts an agent and opens its log.
  await page.click("#spawn-open");
  await page.fill('#spawn-form input[name="argv"]', '["sh", "-c", "echo from-the-form"]');
  await page.fill('#spawn-form input[name="name"]', "formed");
  await page.fill('#spawn-form input[name="labels"]', "team=ui");
  await page.click('#spawn-form button[value="spawn"]');
  await page.locator("#log .line", { hasText: "from-the-form" }).waitFor({ timeout: TIMEOUT });
  // A malformed field is shown, not sent.
  await page.click("#spawn-open");
  await page.fill('#spawn-form input[name="argv"]', "true");
  await page.fill('#spawn-form input[name="labels"]', "novalue");
  await page.click('#spawn-form button[value="spawn"]');
  await page.locator("#spawn-error", { hasText: "is not KEY=VALUE" }).waitFor({ timeout: TIMEOUT });
  // An invalid spec (no command, no backend) gets the daemon's typed error on the form.
  await page.fill('#spawn-form input[name="argv"]', "");
  await page.fill('#spawn-form input[name="labels"]', "");
  await page.click('#spawn-form button[value="spawn"]');
  await page.locator("#spawn-error", { hasText: "bad_request" }).waitFor({ timeout: TIMEOUT });
  await page.click("#spawn-cancel");

  // Agent output is text, never markup: HTML stays literal, ANSI colour becomes a class.
  const markup = await api("POST", "/v1/agents", controlToken, {
    spec: {
      argv: ["sh", "-c", `printf '<img src=x onerror="document.title=1">\\033[31mred\\033[0m\\n'`],
    },
  });
  await rowOf(page, markup.json.agent.id).click();
  const marked = page.locator("#log .line", { hasText: "red" }).first();
  await marked.waitFor({ timeout: TIMEOUT });
  assert.equal(await marked.textContent(), '<img src=x onerror="document.title=1">red');
  assert.equal(await page.locator("#log img").count(), 0);
  assert.equal(await marked.locator("span.fg31").textContent(), "red");
  assert.notEqual(await page.title(), "1");

  // A signal chosen in the page reaches the agent.
  const trapper = await api("POST", "/v1/agents", controlToken, {
    spec: { argv: ["sh", "-c", 'trap "echo got-usr1; exit 3" USR1; echo ready; while :; do sleep 0.05; done'] },
  });
  await rowOf(page, trapper.json.agent.id).click();
  await page.locator("#log .line", { hasText: "ready" }).waitFor({ timeout: TIMEOUT });
  await page.selectOption("#signal", "USR1");
  await page.click("#signal-send");
  await page.locator("#log .line", { hasText: "got-usr1" }).waitFor({ timeout: TIMEOUT });
  await page.locator("#log .line.notice", { hasText: "exited code 3" }).waitFor({ timeout: TIMEOUT });

  // The network drops mid-stream: EventSource reconnects with Last-Event-ID and the log has
  // every line once, in order (the page flags any seq that does not follow the last).
  const ticks = 1500;
  const ticker = await api("POST", "/v1/agents", controlToken, {
    spec: { argv: ["sh", "-c", `for i in $(seq 1 ${ticks}); do echo "tick $i"; sleep 0.004; done`] },
  });
  await rowOf(page, ticker.json.agent.id).click();
  await page.locator("#log .line", { hasText: "tick 20" }).first().waitFor({ timeout: TIMEOUT });
  const cut = await fetch(`${base}/__cut`, { method: "POST" });
  assert.equal(cut.status, 204);
  await page.locator("#stream-state", { hasText: "reconnecting" }).waitFor({ timeout: TIMEOUT });
  await page.locator("#log .line.notice", { hasText: "exited code 0" }).waitFor({ timeout: TIMEOUT });
  assert.equal(await page.locator("#line-count").textContent(), `${ticks} lines`);
  assert.equal(await page.locator("#log .line", { hasText: "missing from the stream" }).count(), 0);
  assert.equal(await page.locator(`#log .line[data-seq="${ticks}"]`).textContent(), `tick ${ticks}`);

  // Several agents followed together, each line prefixed with its agent's name.
  for (const name of ["pair-a", "pair-b"]) {
    const pair = await api("POST", "/v1/agents", controlToken, {
      spec: {
        name,
        labels: { pair: "yes" },
        argv: ["sh", "-c", `for i in 1 2 3; do echo "${name} $i"; sleep 0.05; done`],
      },
    });
    assert.equal(pair.status, 201, JSON.stringify(pair.json));
  }
  await page.fill("#filter", "pair=yes");
  await page.locator('tr:has-text("pair-b")').waitFor({ timeout: TIMEOUT });
  await page.click("#follow-shown");
  for (const name of ["pair-a", "pair-b"]) {
    const line = page.locator("#log .line", { hasText: `${name} 3` });
    await line.waitFor({ timeout: TIMEOUT });
    assert.equal(await line.textContent(), `${name} | ${name} 3`);
  }
  assert.equal(await page.locator('button[data-action="kill"]').isVisible(), false);
  await page.locator("#stream-state", { hasText: "ended" }).waitFor({ timeout: TIMEOUT });
  await page.fill("#filter", "");

  // Filtering by label keeps only the form's agent.
  await page.fill("#filter", "team=ui");
  await page.locator("tbody tr").first().waitFor({ timeout: TIMEOUT });
  assert.equal(await page.locator("tbody tr").count(), 1);
  await page.fill("#filter", "");
  await page.click("#agent-close");
  await page.screenshot({ path: `${shots}/dashboard-fleet.png` });
  assert.deepEqual(errors, [], "no script errors");

  // --- read role ----------------------------------------------------------------------------
  const reader = await loggedIn(readToken);
  assert.equal(await reader.page.locator("#role").textContent(), "role: read");
  await rowOf(reader.page, otherId).click();
  await reader.page.locator("#log .line", { hasText: "other" }).waitFor({ timeout: TIMEOUT });
  assert.equal(await reader.page.locator('button[data-action="kill"]').isVisible(), false);
  assert.equal(await reader.page.locator("#spawn-open").isVisible(), false);
  // A forged action from the page (cookie and the daemon's own Origin) is refused with 403.
  const forged = await reader.page.evaluate(async (id) => {
    const response = await fetch(`/v1/agents/${id}/kill`, { method: "POST" });
    return { status: response.status, body: await response.json() };
  }, otherId);
  assert.equal(forged.status, 403, JSON.stringify(forged));
  assert.equal(forged.body.error.code, "unauthorized");
  const still = await api("GET", `/v1/agents/${otherId}`, controlToken);
  assert.equal(still.json.agent.state, "running");
  assert.deepEqual(reader.errors, [], "no script errors");

  await api("POST", `/v1/agents/${otherId}/kill`, controlToken);
  console.log("dashboard: every step passed");
} finally {
  await browser.close();
}
