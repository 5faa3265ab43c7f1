// What every dashboard script starts with: Debian's Chromium through playwright-core, a page
// logged in to the dashboard, and a strict call of the daemon's API.

import assert from "node:assert/strict";
import { chromium } from "playwright-core";

// Headless Chromium as the tests run it (as root, in a container: no sandbox, no GPU, no
// /dev/shm of any size).
export const launch = () =>
  chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });

// Collect what fails on `page` into `errors`: its exceptions and console errors. Refused requests
// and dropped connections are logged by the browser as failed loads: those are the network and
// the API answering, not the page failing.
export function watch(page, errors) {
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on(
    "console",
    (message) =>
      message.type() === "error" &&
      !message.text().startsWith("Failed to load resource") &&
      errors.push(message.text()),
  );
}

// Open the dashboard at `base` in `page` and log in with `token`: the app is shown once it is.
export async function logIn(page, base, token, timeout) {
  await page.goto(`${base}/`);
  await page.locator("#login-token").waitFor({ timeout });
  await page.fill("#login-token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible", timeout });
}

// `api(method, path, body)` against `daemon` with `token`: a JSON body in and out, and any
// answer but 2xx fails the script with the daemon's error.
export const strictApi = (daemon, token) =>
  async function api(method, path, body) {
    const response = await fetch(`${daemon}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  };
