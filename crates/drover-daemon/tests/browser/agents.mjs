// Drives the dashboard's view of AI agents in headless Chromium against a real daemon started
// by tests/http_dashboard.rs, which passes:
//   node agents.mjs <page-url> <daemon-url> <control-token> <fake-bin-dir> <transcripts-dir> <shots>
// <fake-bin-dir> holds `claude`, the fake agent CLI replaying a recorded transcript. Every step
// asserts; any failure exits non-zero with the reason, and the Rust test prints it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { launch, logIn, strictApi } from "./page.mjs";

const [base, daemon, token, bin, transcripts, shots] = process.argv.slice(2);
const TIMEOUT = 30_000;

const api = strictApi(daemon, token);

const spawn = async (name, transcript) =>
  (
    await api("POST", "/v1/agents", {
      spec: {
        name,
        backend: "claude",
        task: "Run the scripted step.",
        env: {
          PATH: `${bin}:${process.env.PATH}`,
          DROVER_FAKE_TRANSCRIPT: `${transcripts}/${transcript}.jsonl`,
        },
      },
    })
  ).agent;

const sessionOf = (transcript) =>
  JSON.parse(readFileSync(`${transcripts}/${transcript}.jsonl`, "utf8").split("\n")[0]).session_id;

const browser = await launch();

try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  await logIn(page, base, token, TIMEOUT);

  // Spawned after the page listed the fleet: their activity arrives as `activity` events.
  const tool = await spawn("tool", "claude-tool");
  const denied = await spawn("denied", "claude-permission-denial");
  const row = (id) => page.locator(`tr[data-id="${id}"]`);
  const cells = async (id) => (await row(id).locator("td").allTextContents()).slice(6);
  // Locator waits only: the page's Content-Security-Policy forbids evaluating strings.
  for (const id of [tool.id, denied.id]) {
    await row(id).locator("td:nth-child(7)", { hasText: /^done/ }).waitFor({ timeout: TIMEOUT });
  }
  assert.deepEqual(await cells(tool.id), ["done", "2", "$0.0016"]);
  assert.deepEqual(await cells(denied.id), ["done !", "2", "$0.0016"]);
  assert.match(await row(denied.id).getAttribute("title"), /permission_denied: Bash: touch drover-out.txt/);
  console.log("ok: the fleet shows phase, turns and cost; the denied agent is marked");

  // Newest first puts `denied` first anyway; sorting by name puts `tool` after it, so sort by
  // name descending (tool, denied) and ask for attention first.
  await page.click('th[data-sort="name"]');
  await page.click('th[data-sort="name"]');
  const order = async () => page.locator("#agents tr").evaluateAll((rows) => rows.map((r) => r.dataset.id));
  assert.deepEqual((await order()).slice(0, 2), [tool.id, denied.id]);
  await page.check("#attention-first");
  assert.deepEqual((await order()).slice(0, 2), [denied.id, tool.id]);
  console.log("ok: agents that need a person sort first");

  // The agent pane: its activity, and its log as a transcript.
  await row(tool.id).click();
  await page.locator("#activity").waitFor({ state: "visible", timeout: TIMEOUT });
  const summary = await page.locator("#activity-summary").textContent();
  assert.match(summary, /^done · claude-opus-5-5 · 2 turns · 200 in · 40 out · \$0\.0016/);
  assert.ok(summary.includes(`session ${sessionOf("claude-tool")}`), summary);
  await page.locator("#line-count", { hasText: /^5 lines/ }).waitFor({ timeout: TIMEOUT });
  await page.check("#transcript");
  const lines = () => page.locator("#log-lines div").allTextContents();
  await page.locator("#log-lines div", { hasText: /^✓ done/ }).waitFor({ timeout: TIMEOUT });
  const transcript = await lines();
  for (const expected of [
    "→ Bash: echo drover-tool-ran",
    "  ← drover-tool-ran",
    "The command printed drover-tool-ran.",
    "✓ done · 2 turns · 200 in · 40 out · $0.0016",
  ]) {
    assert.ok(transcript.includes(expected), `${expected} not in ${JSON.stringify(transcript)}`);
  }
  await page.screenshot({ path: `${shots}/dashboard-activity.png` });
  await page.uncheck("#transcript");
  // The view re-renders on the next animation frame: wait for it, then check the whole log.
  await page.locator("#log-lines div").first().filter({ hasText: /^\{"type":"system"/ })
    .waitFor({ timeout: TIMEOUT });
  const raw = await lines();
  assert.equal(raw.length, 6, `the raw log is back: ${JSON.stringify(raw)}`);
  assert.equal(raw[5], "— exited code 0 —");
  assert.ok(raw[0].startsWith('{"type":"system"'), "the raw log starts with claude's system line");
  console.log("ok: the pane shows the activity and the transcript");

  // Download: the daemon sends the agent's whole log to a file, byte for byte (not the pane's
  // text).
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: TIMEOUT }),
    page.click("#download"),
  ]);
  assert.equal(download.suggestedFilename(), "tool.log");
  const saved = readFileSync(await download.path());
  assert.ok(
    saved.equals(readFileSync(`${transcripts}/claude-tool.jsonl`)),
    `the download is the agent's output byte for byte: ${saved.length} bytes`,
  );
  console.log("ok: Download saves the agent's whole log");

  // Continue the session.
  await page.fill("#continue-prompt", "now say goodbye");
  await page.click("#continue-form button[type=submit]");
  await page.locator("#agent-title", { hasText: /^(?!tool$)/ }).waitFor({ timeout: TIMEOUT });
  const { agents } = await api("GET", "/v1/agents?specs=true");
  const next = agents.find((a) => a.parent === tool.id);
  assert.ok(next, "an agent continues `tool`");
  assert.equal(next.spec.resume, sessionOf("claude-tool"));
  assert.equal(next.spec.task, "now say goodbye");
  console.log("ok: continue starts an agent resuming the session");

  // A restart policy's agent: run 1 replays the whole session and exits 1, run 2 the same and
  // exits 0. The table counts both runs (4 turns, $0.0032), as `drover cost` does; the pane says
  // what the earlier run used beside the current run's counts.
  const marker = `${shots}/first-run-done`;
  const { agent: twice } = await api("POST", "/v1/agents", {
    spec: {
      name: "twice",
      backend: "claude",
      task: "Run the scripted step.",
      restart: { policy: "on-failure", backoff_ms: 10 },
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        DROVER_FAKE_TRANSCRIPT: `${transcripts}/claude-tool.jsonl`,
        DROVER_FAKE_FIRST_RUN: marker,
      },
    },
  });
  await row(twice.id).locator("td:nth-child(2)", { hasText: /^exited$/ }).waitFor({ timeout: TIMEOUT });
  await row(twice.id).locator("td:nth-child(7)", { hasText: /^done/ }).waitFor({ timeout: TIMEOUT });
  assert.deepEqual(await cells(twice.id), ["done", "4", "$0.0032"]);
  await row(twice.id).click();
  await page
    .locator("#activity-summary", { hasText: "earlier runs: 1, 2 turns, $0.0016" })
    .waitFor({ timeout: TIMEOUT });
  assert.match(
    await page.locator("#activity-summary").textContent(),
    /^done · claude-opus-5-5 · 2 turns · 200 in · 40 out · \$0\.0016/,
  );
  console.log("ok: a restarted agent's runs are all counted");

  assert.deepEqual(errors, []);
  console.log("every step passed");
} finally {
  await browser.close();
}
