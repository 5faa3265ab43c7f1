// The dashboard's figures, in headless Chromium, for `cargo bench -p drover-daemon --bench
// dashboard` (which starts the daemon and the agents and passes):
//   node measure.mjs <daemon-url> <token> <paced-a> <paced-b> <fast-agent> <million-agent>
// paced-a and paced-b print `<write time ns> …` lines at 1,000/s, fast-agent the same at
// 10,000/s, each once it reads `go` on stdin (so every line measured is live); million-agent
// prints 1,000,000 short lines. Prints one JSON object of figures.

import { launch, logIn } from "./page.mjs";

const [base, token, pacedA, pacedB, fast, million] = process.argv.slice(2);

async function go(agent) {
  const response = await fetch(`${base}/v1/agents/${agent}/stdin`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    body: "go\n",
  });
  if (!response.ok) throw new Error(`go ${agent}: ${response.status}`);
}
const TIMEOUT = 120_000;

const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
await logIn(page, base, token, TIMEOUT);

// `page.waitForFunction` evaluates a string, which the page's CSP (rightly) forbids: poll.
async function until(predicate, arg) {
  const deadline = Date.now() + TIMEOUT;
  while (!(await page.evaluate(predicate, arg))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// Baseline: a bare EventSource in the same page, no rendering: write → event latency.
async function bare(agent, count) {
  const done = page.evaluate(
    ({ agent, count }) =>
      new Promise((resolve) => {
        const latencies = [];
        const source = new EventSource(`/v1/agents/${agent}/logs?follow=true`);
        source.addEventListener("open", () => (window.__open = true));
        source.addEventListener("log", (event) => {
          const record = JSON.parse(event.data);
          const now = performance.timeOrigin + performance.now();
          latencies.push(now - Number(record.text.slice(0, 20)) / 1e6);
          if (latencies.length === count) {
            source.close();
            resolve(latencies);
          }
        });
      }),
    { agent, count },
  );
  await until(() => window.__open === true);
  await go(agent);
  return done;
}

// The dashboard: write → line on screen (a MutationObserver sees it rendered).
async function shown(agent, count) {
  await page.evaluate(() => {
    window.__seen = new Set();
    window.__latencies = [];
    new MutationObserver(() => {
      const now = performance.timeOrigin + performance.now();
      for (const line of document.querySelectorAll("#log-lines .line[data-seq]")) {
        const seq = line.dataset.seq;
        if (window.__seen.has(seq)) continue;
        window.__seen.add(seq);
        window.__latencies.push(now - Number(line.textContent.slice(0, 20)) / 1e6);
      }
    }).observe(document.getElementById("log-lines"), { childList: true, subtree: true });
  });
  await page.locator(`tr[data-id="${agent}"]`).click();
  await page.locator("#stream-state", { hasText: "live" }).waitFor({ timeout: TIMEOUT });
  await go(agent);
  await until((n) => window.__latencies.length >= n, count);
  return page.evaluate(() => window.__latencies);
}

// Frames per second while the view follows a fast agent.
async function fps(agent, seconds) {
  await page.locator(`tr[data-id="${agent}"]`).click();
  await page.locator("#stream-state", { hasText: "live" }).waitFor({ timeout: TIMEOUT });
  await go(agent);
  await page.locator("#log .line[data-seq]").first().waitFor({ timeout: TIMEOUT });
  return page.evaluate(
    (seconds) =>
      new Promise((resolve) => {
        let frames = 0;
        const started = performance.now();
        const tick = () => {
          frames += 1;
          if (performance.now() - started < seconds * 1000) requestAnimationFrame(tick);
          else resolve(frames / seconds);
        };
        requestAnimationFrame(tick);
      }),
    seconds,
  );
}

const cdp = await context.newCDPSession(page);
await cdp.send("Performance.enable");
async function heapMiB() {
  await cdp.send("HeapProfiler.collectGarbage");
  const { metrics } = await cdp.send("Performance.getMetrics");
  return metrics.find((m) => m.name === "JSHeapUsedSize").value / 1048576;
}

const count = 3000;
const baseline = await bare(pacedA, count);
const dashboard = await shown(pacedB, count);
const frames = await fps(fast, 5);
const before = await heapMiB();
await page.locator(`tr[data-id="${million}"]`).click();
await page.locator("#line-count", { hasText: "1000000 lines" }).waitFor({ timeout: TIMEOUT });
const after = await heapMiB();
console.log(
  JSON.stringify({
    bare_p50_ms: percentile(baseline, 50),
    bare_p99_ms: percentile(baseline, 99),
    page_p50_ms: percentile(dashboard, 50),
    page_p99_ms: percentile(dashboard, 99),
    fps_at_10k_lines_s: frames,
    heap_before_mib: before,
    heap_after_1m_lines_mib: after,
  }),
);
await browser.close();
