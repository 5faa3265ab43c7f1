// Takes the dashboard through network outages and ended sessions in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core), against a real daemon started by
// tests/http_dashboard.rs, which passes:
//   node session.mjs <page-url> <daemon-url> <control-token> <victim-id>
// The page is loaded through <page-url>, a relay whose `POST /__down` drops every connection and
// refuses new ones until `POST /__up`; this script's own API calls go straight to <daemon-url>.
// <victim-id> runs `sleep 1000` and was running before the page opened. Every step asserts and
// waits on a condition; any failure exits non-zero with the reason, and the Rust test prints it.

import assert from "node:assert/strict";
import { launch, watch } from "./page.mjs";

const [base, daemon, token, victim] = process.argv.slice(2);
const TIMEOUT = 30_000;

const browser = await launch();

async function api(method, path, headers = { Authorization: `Bearer ${token}` }, body) {
  const response = await fetch(`${daemon}${path}`, {
    method,
    headers: { ...headers, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : {} };
}

async function network(state) {
  const response = await fetch(`${base}/__${state}`, { method: "POST" });
  assert.equal(response.status, 204, `switching the network ${state}`);
}

async function spawn(name) {
  const spawned = await api("POST", "/v1/agents", undefined, {
    spec: { name, argv: ["sleep", "1000"] },
  });
  assert.equal(spawned.status, 201, JSON.stringify(spawned.json));
  return spawned.json.agent.id;
}

// The page's own cookie, as a header a script off the page can send.
async function sessionCookie(context) {
  const cookie = (await context.cookies()).find((c) => c.name === "drover_session");
  assert.ok(cookie, "the login set the session cookie");
  return `drover_session=${cookie.value}`;
}

// Whether the page's own credential still works, asked from the page.
const sessionStatus = (page) => page.evaluate(() => fetch("/v1/session").then((r) => r.status));

async function logIn(page) {
  await page.locator("#login").waitFor({ state: "visible", timeout: TIMEOUT });
  await page.fill("#login-token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible", timeout: TIMEOUT });
  assert.equal(await page.locator("#role").textContent(), "role: control");
}

async function loggedOut(page) {
  await page.locator("#login").waitFor({ state: "visible", timeout: TIMEOUT });
  assert.equal(await page.locator("#app").isVisible(), false);
  assert.equal(await page.locator("#logout").isVisible(), false);
  assert.equal(await page.locator("#agents tr").count(), 0, "nothing of the fleet is kept");
}

// The table follows the fleet: an agent spawned now appears, running, without a reload.
async function isLive(page) {
  await page.locator("#feed", { hasText: /^live$/ }).waitFor({ timeout: TIMEOUT });
  const id = await spawn(`live-${Date.now()}`);
  await page.locator(`tr[data-id="${id}"].state-running`).waitFor({ timeout: TIMEOUT });
  await api("POST", `/v1/agents/${id}/kill`);
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  watch(page, errors);
  // What the page asks the daemon: listings, and the Last-Event-ID its feed resumes with.
  const asked = [];
  page.on("request", async (request) => {
    const path = new URL(request.url()).pathname;
    if (path !== "/v1/agents" && path !== "/v1/events") return;
    const ask = { path, resume: undefined };
    asked.push(ask); // in the order asked; the headers come later
    ask.resume = (await request.allHeaders())["last-event-id"];
  });
  await page.goto(`${base}/`);
  await logIn(page);
  await page.locator(`tr[data-id="${victim}"].state-running`).waitFor({ timeout: TIMEOUT });
  await page.locator("#feed", { hasText: /^live$/ }).waitFor({ timeout: TIMEOUT });
  assert.deepEqual(
    asked.map((a) => a.path),
    ["/v1/events", "/v1/agents"],
    "subscribed first, then listed",
  );

  // --- An outage before any event reached the page -----------------------------------------
  // The feed has only the daemon's opening `id:` frame; it resumes from that, so the events of
  // the outage arrive, and the page does not list again.
  asked.length = 0;
  await network("down");
  await page.locator("#feed", { hasText: "reconnecting" }).waitFor({ timeout: TIMEOUT });
  const killed = await api("POST", `/v1/agents/${victim}/kill`);
  assert.equal(killed.status, 200, JSON.stringify(killed.json));
  const waited = await api("GET", `/v1/agents/${victim}/wait?timeout_ms=30000`);
  assert.equal(waited.json.agent.state, "killed");
  await network("up");
  await page.locator(`tr[data-id="${victim}"].state-killed`).waitFor({ timeout: TIMEOUT });
  await page.locator("#feed", { hasText: /^live$/ }).waitFor({ timeout: TIMEOUT });
  const resumed = asked.filter((a) => a.path === "/v1/events");
  assert.ok(resumed.length >= 1, "the feed reconnected");
  assert.ok(
    resumed.every((a) => /^[0-9]+$/.test(a.resume ?? "")),
    `every reconnect carried Last-Event-ID: ${JSON.stringify(resumed)}`,
  );
  assert.equal(asked.filter((a) => a.path === "/v1/agents").length, 0, "no listing again");
  await isLive(page);

  // --- Logged out in another tab ------------------------------------------------------------
  // The feed gets `unauthorized`; the login form comes back; logging in makes it live again.
  const other = await context.newPage();
  watch(other, errors);
  await other.goto(`${base}/`);
  await other.locator("#app").waitFor({ state: "visible", timeout: TIMEOUT });
  await other.click("#logout");
  await loggedOut(other);
  await loggedOut(page);
  assert.equal(await sessionStatus(page), 401);
  await logIn(page);
  await page.locator(`tr[data-id="${victim}"].state-killed`).waitFor({ timeout: TIMEOUT });
  await isLive(page);

  // --- The session ends during an outage ----------------------------------------------------
  // The feed's reconnect is refused with 401 and EventSource closes for good: the page notices.
  await network("down");
  await page.locator("#feed", { hasText: "reconnecting" }).waitFor({ timeout: TIMEOUT });
  const ended = await api("POST", "/logout", { Cookie: await sessionCookie(context) });
  assert.equal(ended.status, 204);
  await network("up");
  await loggedOut(page);
  await logIn(page);
  await isLive(page);

  // --- "Log out" -----------------------------------------------------------------------------
  const cookie = await sessionCookie(context);
  assert.equal((await api("GET", "/v1/session", { Cookie: cookie })).status, 200);
  await page.click("#logout");
  await loggedOut(page);
  assert.equal(await sessionStatus(page), 401);
  // Ended on the daemon, not only in the browser: a copy of the cookie is refused.
  assert.equal((await api("GET", "/v1/session", { Cookie: cookie })).status, 401);
  await logIn(page);
  await isLive(page);

  assert.deepEqual(errors, [], "no script errors");
  console.log("session: every step passed");
} finally {
  await browser.close();
}
