// Drives the monitor page in headless Chromium for the monitor_browser integration test.
//
// Environment: VCM_MONITOR_URL (the page), VCM_MONITOR_KEY (the API key), VCM_MONITOR_JOB (the
// job name to find), VCM_ARTIFACTS (folder for the screenshot), PLAYWRIGHT_MODULES (the
// node_modules folder that scripts/browser-tools.sh printed).
// Prints one JSON line with what it observed; exits non-zero with a message when a step fails.
"use strict";

const path = require("path");
const fs = require("fs");
const { chromium } = require(path.join(process.env.PLAYWRIGHT_MODULES, "playwright-core"));

const url = process.env.VCM_MONITOR_URL;
const key = process.env.VCM_MONITOR_KEY;
const jobName = process.env.VCM_MONITOR_JOB;
const artifacts = process.env.VCM_ARTIFACTS;
const STEP_TIMEOUT_MS = 90_000;

// Polls `check` from Node until it returns true. Page-side polling (waitForFunction) would
// evaluate strings in the page, which the page's Content-Security-Policy forbids.
async function waitUntil(what, check) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${STEP_TIMEOUT_MS} ms waiting until ${what}`);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(require("os").tmpdir(), "vcm-chromium-"));
  // A persistent context takes the fresh profile folder as Chromium's --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const observed = { dialogs: [], percents: [], states: [], requests: [] };
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("dialog", async (dialog) => {
      observed.dialogs.push(dialog.message());
      await dialog.accept();
    });
    // Every request must stay on the service: the page loads no external asset.
    page.on("request", (request) => observed.requests.push(request.url()));

    await page.goto(url);
    await page.fill("#key", key);
    await page.click("#key-form button[type=submit]");

    const row = page.locator("#jobs tr[data-job-id]", { hasText: jobName });
    await row.waitFor();
    observed.states.push(await row.locator("[data-role=state]").textContent());

    // Progress moves: the row's bar shows a higher percentage after a few refreshes.
    const bar = row.locator(".bar");
    const first = Number(await bar.getAttribute("data-percent"));
    observed.percents.push(first);
    await waitUntil("the progress bar moves", async () =>
      Number(await bar.getAttribute("data-percent")) > first);
    observed.percents.push(Number(await bar.getAttribute("data-percent")));

    await row.click();
    await page.locator("#detail #collections tr").first().waitFor();

    await page.click("#commands button[data-command=pause]");
    const state = row.locator("[data-role=state]");
    await waitUntil("the job is paused", async () => (await state.textContent()) === "paused");
    observed.states.push("paused");
    await page.locator("#commands button[data-command=resume]").waitFor();
    observed.pauseButtonWhilePaused = await page.locator("#commands button[data-command=pause]").count();
    await page.screenshot({ path: path.join(artifacts, "monitor-paused.png"), fullPage: true });

    await page.click("#commands button[data-command=resume]");
    await waitUntil("the job runs again", async () =>
      !["paused", "pausing"].includes(await state.textContent()));
    observed.states.push(await state.textContent());
    observed.pageText = await page.locator("body").innerText();
    await page.screenshot({ path: path.join(artifacts, "monitor.png"), fullPage: true });
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(observed) + "\n");
}

main().catch((error) => {
  process.stderr.write(`monitor browser check failed: ${error.stack || error}\n`);
  process.exit(1);
});
