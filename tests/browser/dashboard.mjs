// Drives the /ui dashboard in real headless Chromium (Debian's /usr/bin/chromium) with playwright-core.
// Run by test_dashboard.py, which starts the real control plane, operator and API and passes KT_BROWSER as JSON:
//   {url, key, forbidden: [strings of another user's task that must never appear], artifacts, chromium, profile}
// Prints one JSON line with what it saw; exits non-zero (with the reason) when a check fails.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const cfg = JSON.parse(process.env.KT_BROWSER);
mkdirSync(cfg.artifacts, { recursive: true });
const shot = (name) => join(cfg.artifacts, name);
const checks = [];
const check = (ok, what) => { checks.push(what); if (!ok) throw new Error("check failed: " + what); };

const context = await chromium.launchPersistentContext(cfg.profile, {
  executablePath: cfg.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const leaks = [];
try {
  const page = context.pages()[0] || await context.newPage();
  // Another user's task must never reach this browser: not in any response, not in the DOM at any moment.
  await page.addInitScript((forbidden) => {
    window.__foreign = [];
    const scan = () => {
      const text = document.documentElement ? document.documentElement.innerHTML : "";
      for (const word of forbidden) if (text.includes(word)) window.__foreign.push(word);
    };
    new MutationObserver(scan).observe(document, { subtree: true, childList: true, characterData: true });
  }, cfg.forbidden);
  const failures = [];
  page.on("response", async (response) => {
    if (!response.url().startsWith(cfg.url)) return;
    if (response.status() >= 400) failures.push(response.status() + " " + new URL(response.url()).pathname);
    try {
      const body = await response.text();
      for (const word of cfg.forbidden) if (body.includes(word)) leaks.push(response.url() + " holds " + word);
    } catch { /* streamed bodies (SSE) are read by the page itself; the DOM check covers what they carry */ }
  });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  let navigations = 0;
  page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations += 1; });

  // 1. /ui asks for a key; a wrong one is refused
  await page.goto(cfg.url + "/ui");
  await page.waitForSelector("#login:not([hidden])");
  await page.screenshot({ path: shot("01-sign-in.png") });
  await page.fill("#api-key", "not-a-key");
  await page.click("#login-form button");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("not valid"));
  check(true, "a wrong key is refused");

  // 2. sign in: the queue, workers, limits and chart load, and the live stream connects
  await page.fill("#api-key", cfg.key);
  await page.click("#login-form button");
  await page.waitForSelector("#queue-summary");
  await page.waitForSelector("#worker-table");
  await page.waitForSelector("#throughput");
  await page.waitForFunction(() => document.getElementById("live-state").dataset.state === "on");
  check((await page.textContent("#who")).includes(cfg.user), "signed in as the key's user");
  const workers = await page.$$eval("#worker-table tbody tr", (rows) => rows.map((r) => r.dataset.worker));
  check(workers.includes("gpu-a100-1") && workers.includes("gpu-h100-1"), "the GPU nodes are listed as workers");
  const navigationsBefore = navigations;

  // 3. submit a task from the form
  await page.fill("#submit-name", cfg.taskName);
  await page.fill("#submit-annotations", JSON.stringify(cfg.annotations));
  await page.click("#submit-button");
  const link = await page.waitForSelector("#submitted-link");
  const taskId = (await link.textContent()).trim();
  check(taskId.length > 0, "the form answers the new task's id");

  // 4. it goes running, then completed, with no reload: only the SSE stream drives the page
  const row = (status) => `tr[data-task-id="${taskId}"] .badge.${status}`;
  await page.waitForSelector(row("running"), { timeout: 120000 });
  await page.screenshot({ path: shot("02-overview-running.png"), fullPage: true });
  await page.waitForSelector(`#finished ${row("completed")}`, { timeout: 120000 });
  check(navigations === navigationsBefore, "no reload or navigation while the task ran");
  const live = await page.evaluate(() => window.ktLive);
  check(live.events >= 2 && live.lastEventId, "updates came through the SSE stream");
  // the usage panel and its chart refresh (debounced) from the same events: the completion is counted
  await page.waitForFunction(() => /[1-9]\d* completed/.test(document.getElementById("usage").textContent));
  await page.screenshot({ path: shot("03-overview-completed.png"), fullPage: true });
  await (await page.$("#usage")).screenshot({ path: shot("04-limits-usage-chart.png") });
  await (await page.$("#workers")).screenshot({ path: shot("05-workers.png") });

  // 5. the task's page: timeline, executions, logs, result
  await page.click(`#finished tr[data-task-id="${taskId}"] a`);
  await page.waitForSelector("#task-status.completed");
  const timeline = await page.$$eval("#task-timeline li", (items) => items.map((i) => i.textContent));
  check(timeline.some((t) => t.includes("created")) && timeline.some((t) => t.includes("started")),
        "the timeline shows created and started");
  const executions = await page.$$eval("#task-executions tbody tr", (rows) => rows.length);
  check(executions === 1, "one execution is listed");
  check((await page.textContent("#task-result")).includes("42"), "the result is shown");
  await page.waitForFunction((want) => document.getElementById("task-logs").textContent.includes(want), cfg.logLine);
  check(true, "the logs are shown");
  await page.screenshot({ path: shot("06-task-page.png"), fullPage: true });

  // 6. another user's task never appeared
  const foreign = await page.evaluate(() => window.__foreign);
  check(foreign.length === 0, "no other user's task in the DOM: " + foreign.join(","));
  check(leaks.length === 0, "no other user's task in any response: " + leaks.join("; "));
  // the only refusals: the wrong key's sign-in check, and the favicon this dashboard does not have
  const unexpected = failures.filter((f) => f !== "401 /api/v1/users/me/limits" && f !== "404 /favicon.ico");
  check(unexpected.length === 0 && failures.filter((f) => f.startsWith("401")).length === 1,
        "no failed request but the wrong key's: " + failures.join(", "));
  const serious = consoleErrors.filter((e) => !e.startsWith("Failed to load resource"));
  check(serious.length === 0, "no console errors: " + serious.join(" | "));
  console.log(JSON.stringify({ ok: true, taskId, checks, liveEvents: live.events }));
} finally {
  await context.close();
}
