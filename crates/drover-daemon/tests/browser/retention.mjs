// A log pane that resumes past retention says once which records are gone, in headless Chromium
// (Debian's /usr/bin/chromium through playwright-core), against a real daemon started by
// tests/http_dashboard.rs with a 64 KiB log budget, which passes:
//   node retention.mjs <page-url> <daemon-url> <control-token>
// The page is loaded through <page-url>, a relay whose `POST /__down` drops every connection and
// refuses new ones until `POST /__up`; this script's own API calls go straight to <daemon-url>.

import assert from "node:assert/strict";
import { launch, logIn } from "./page.mjs";

const [base, daemon, token] = process.argv.slice(2);
const TIMEOUT = 30_000;
const LINES = 8000;

const browser = await launch();

async function api(method, path, body) {
  const response = await fetch(`${daemon}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}` },
    body,
  });
  return { status: response.status, json: await response.json() };
}

async function network(state) {
  const response = await fetch(`${base}/__${state}`, { method: "POST" });
  assert.equal(response.status, 204, `switching the network ${state}`);
}

// Poll the daemon until `probe` holds (the daemon's own state, not the page's).
async function until(what, probe) {
  const deadline = Date.now() + TIMEOUT;
  while (!(await probe())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await logIn(page, base, token, TIMEOUT);

  // Two lines, then, once told, many small appends: retention removes the oldest as it goes.
  const script =
    `echo line 1; echo line 2; read go; for i in $(seq 3 ${LINES}); do echo line $i; ` +
    `if [ $((i % 80)) = 0 ]; then sleep 0.002; fi; done; exec sleep 1000`;
  const spawned = await fetch(`${daemon}/v1/agents`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: JSON.stringify({ spec: { argv: ["sh", "-c", script], stdin: "pipe" } }),
  });
  assert.equal(spawned.status, 201);
  const id = (await spawned.json()).agent.id;
  await page.locator(`tr[data-id="${id}"]`).click();
  await page.locator("#line-count", { hasText: /^2 lines$/ }).waitFor({ timeout: TIMEOUT });

  // The pane's stream drops with line 2 its last; the rest is printed, and the start of it
  // removed, before it can reconnect.
  await network("down");
  await page.locator("#stream-state", { hasText: "reconnecting" }).waitFor({ timeout: TIMEOUT });
  assert.equal((await api("POST", `/v1/agents/${id}/stdin`, "go\n")).status, 200);
  let first = 0;
  await until("every line stored and the oldest removed", async () => {
    const read = (await api("GET", `/v1/agents/${id}/logs?limit=1`)).json;
    first = read.first_seq;
    return read.end_seq === LINES + 1 && first > 3;
  });
  await network("up");

  // Every kept line once, and the cut said once: as removed, not also as missing.
  const kept = 2 + LINES - first + 1;
  await page.locator("#line-count", { hasText: new RegExp(`^${kept} lines$`) }).waitFor({ timeout: TIMEOUT });
  await page.fill("#search", "removed by retention");
  await page.press("#search", "Enter");
  const notice = page.locator("#log .line.notice.match");
  await notice.waitFor({ timeout: TIMEOUT });
  assert.equal(await notice.textContent(), `records 3..${first - 1} were removed by retention`);
  // Searching on wraps around to the same single notice.
  await page.press("#search", "Enter");
  assert.equal(await notice.textContent(), `records 3..${first - 1} were removed by retention`);
  assert.equal(await page.locator("#agent-error").textContent(), "");
  await page.fill("#search", "missing from the stream");
  await page.press("#search", "Enter");
  await page.locator("#agent-error", { hasText: "is not in the log" }).waitFor({ timeout: TIMEOUT });
  assert.deepEqual(errors, [], "no script errors");
  console.log("retention: every step passed");
} finally {
  await browser.close();
}
