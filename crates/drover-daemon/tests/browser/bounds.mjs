// The dashboard's bounds under load, in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core), against a real daemon started by tests/http_dashboard.rs, which passes:
//   node bounds.mjs <page-url> <daemon-url> <control-token>
// First, a burst of agents while the page shows a large fleet table: the table is rendered far
// fewer times than events arrive, rows are built only for the new agents, and the final table is
// exactly the daemon's. Then an agent printing long lines past the log pane's byte bound: the pane
// keeps at most that many bytes, exactly the newest lines, and says how many it let go.
// Every step asserts; any failure exits non-zero with the reason, and the Rust test prints it.

import assert from "node:assert/strict";
import { launch, logIn, strictApi } from "./page.mjs";

const [base, daemon, token] = process.argv.slice(2);
const TIMEOUT = 60_000;
// Agents in the table before the burst, and in the burst.
const TABLE = 1000;
const BURST = 100;
// The pane's bound (app.js's MAX_BYTES), and the agent that goes past it.
const MAX_BYTES = 32 * 1024 * 1024;
const LONG_LINES = 3000;
const LONG = 16_000;

const api = strictApi(daemon, token);

const spawn = async (argv, labels) => (await api("POST", "/v1/agents", { spec: { argv, labels } })).agent.id;

// Every agent the daemon has, page after page.
async function listAll() {
  const agents = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/agents${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ""}`);
    agents.push(...page.agents);
    cursor = page.next_cursor;
  } while (cursor);
  return agents;
}

// The newest event's number: an events stream opens with it as a bare `id:` frame.
async function newestEvent() {
  const abort = new AbortController();
  const response = await fetch(`${daemon}/v1/events`, {
    headers: { Authorization: `Bearer ${token}` },
    signal: abort.signal,
  });
  assert.equal(response.status, 200);
  const reader = response.body.getReader();
  let text = "";
  while (!text.includes("\n\n")) {
    const { value, done } = await reader.read();
    assert.ok(!done, "the events stream ended before its id frame");
    text += new TextDecoder().decode(value);
  }
  abort.abort();
  const found = /^id: (\d+)$/m.exec(text);
  assert.ok(found, `no id frame in ${JSON.stringify(text)}`);
  return Number(found[1]);
}

// Poll until `probe` holds.
async function until(what, probe) {
  const deadline = Date.now() + TIMEOUT;
  while (!(await probe())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const browser = await launch();

try {
  // --- a large table, then a burst ------------------------------------------------------------
  for (let i = 0; i < TABLE; i += 20) {
    await Promise.all(Array.from({ length: 20 }, () => spawn(["true"], { batch: "table" })));
  }
  await until("the table's agents to end", async () =>
    (await listAll()).every((agent) => agent.state === "exited"),
  );

  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await logIn(page, base, token, TIMEOUT);
  await page.locator("#counts", { hasText: new RegExp(`^${TABLE} exited$`) }).waitFor({ timeout: TIMEOUT });
  assert.equal(await page.locator("#agents tr").count(), TABLE);

  // Rows the page builds from now on: every row added to the table that it never held before.
  await page.evaluate(() => {
    const seen = new WeakSet(document.querySelectorAll("#agents tr"));
    window.built = 0;
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) {
          if (!seen.has(node)) window.built += 1;
          seen.add(node);
        }
      }
    }).observe(document.getElementById("agents"), { childList: true });
  });
  const renders = async () => Number(await page.locator("body").getAttribute("data-fleet-renders"));
  const rendersBefore = await renders();
  const eventsBefore = await newestEvent();
  await Promise.all(Array.from({ length: BURST }, () => spawn(["true"], { batch: "burst" })));
  const total = TABLE + BURST;
  await until("the daemon to see the burst end", async () =>
    (await listAll()).every((agent) => agent.state === "exited"),
  );
  const events = (await newestEvent()) - eventsBefore;
  await page.locator("#counts", { hasText: new RegExp(`^${total} exited$`) }).waitFor({ timeout: TIMEOUT });
  await page.locator(`#agents tr:nth-child(${total})`).waitFor({ timeout: TIMEOUT });
  const rendered = (await renders()) - rendersBefore;
  const built = await page.evaluate(() => window.built);
  console.log(`burst: ${events} events, ${rendered} table renders, ${built} rows built`);
  // Every burst agent brings at least `spawned` and `exit`.
  assert.ok(events >= 2 * BURST, `${events} events`);
  assert.ok(rendered > 0 && rendered * 3 <= events, `${rendered} renders for ${events} events`);
  assert.equal(built, BURST, "rows are built only for the new agents");

  // The table is exactly the daemon's: every agent once, newest first, with its state and code.
  const agents = (await listAll()).sort((a, b) => b.created_at - a.created_at);
  assert.equal(agents.length, total);
  const rows = await page
    .locator("#agents tr")
    .evaluateAll((rows) => rows.map((row) => [row.dataset.id, ...[...row.cells].map((c) => c.textContent)]));
  assert.deepEqual(
    rows.map(([id, , state, , , labels, exit]) => [id, state, labels, exit]),
    agents.map((agent) => [agent.id, agent.state, `batch=${agent.labels.batch}`, String(agent.exit_code)]),
  );
  assert.equal(await page.locator("#agents tr.state-exited").count(), total);
  console.log("ok: a burst renders the table once per frame, not once per event, and exactly");

  // --- a log past the pane's byte bound ---------------------------------------------------------
  const filler = "x".repeat(LONG);
  const script = `s=${filler}; i=1; while [ $i -le ${LONG_LINES} ]; do echo "$i $s"; i=$((i+1)); done`;
  const long = await spawn(["sh", "-c", script], { batch: "long" });
  await page.locator(`tr[data-id="${long}"]`).click();
  const log = page.locator("#log");
  const held = async () => Number(await log.getAttribute("data-bytes"));
  const count = page.locator("#line-count");
  const done = new RegExp(`^${LONG_LINES} lines \\((\\d+) older lines let go\\)$`);
  // Within the bound all along, not only at the end.
  await until("every line and the exit", async () => {
    const bytes = await held();
    assert.ok(bytes <= MAX_BYTES, `the pane holds ${bytes} bytes`);
    return done.test(await count.textContent()) && (await page.locator("#stream-state").textContent()) === "ended";
  });
  const dropped = Number(done.exec(await count.textContent())[1]);
  // The pane keeps exactly the newest lines: dropped + 1 ..= LONG_LINES and the exit notice.
  const textOf = (i) => `${i} ${filler}\n`;
  const notice = "— exited code 0 —";
  let expected = notice.length;
  for (let i = dropped + 1; i <= LONG_LINES; i++) expected += textOf(i).length;
  const bytes = await held();
  assert.ok(dropped > 0, "lines were let go");
  assert.equal(bytes, expected, `the pane holds lines ${dropped + 1}..=${LONG_LINES}`);
  assert.ok(bytes <= MAX_BYTES, `${bytes} bytes`);
  // Let go in chunks, down to 7/8 of the bound: not more than that.
  assert.ok(bytes + textOf(dropped).length > (MAX_BYTES * 7) / 8, `${bytes} bytes after ${dropped} let go`);
  const shown = page.locator("#log-lines div");
  await shown.last().filter({ hasText: notice }).waitFor({ timeout: TIMEOUT });
  const texts = await shown.allTextContents();
  assert.equal(texts.at(-2), `${LONG_LINES} ${filler}`, "the newest line is shown");
  // The oldest line kept is the first after those let go.
  await log.evaluate((view) => (view.scrollTop = 0));
  await shown.first().filter({ hasText: new RegExp(`^${dropped + 1} x`) }).waitFor({ timeout: TIMEOUT });
  console.log(`ok: the pane holds ${bytes} bytes, ${dropped} older lines let go`);

  assert.deepEqual(errors, [], "no script errors");
  console.log("bounds: every step passed");
} finally {
  await browser.close();
}
