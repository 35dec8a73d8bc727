// Shared by the browser test scripts: launching Debian's chromium through
// playwright-core, a small assertion helper, and screenshots on failure.
//
// The scripts are run by browser_test.go, which starts a real Parley server
// and passes its URL (and what else a script needs) in the environment.
// A script exits 0 when every check passed; otherwise it saves a screenshot
// of every open page (and the pages' console output) under
// PARLEY_ARTIFACTS, prints where, and exits 1.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run the script through browser_test.go)`);
  return v;
}

/** Fails the script with msg unless cond holds. */
export function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

// The flags this machine's chromium needs (see .ci/run): no sandbox as root,
// no GPU, and none of the background connections to Google's services that
// a closed network refuses. Playwright adds --headless and starts every
// launch with a fresh, empty profile directory of its own.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Runs fn(browser, track) and reports the outcome. track(name, page)
 * registers a page for screenshots and console capture.
 */
export async function run(name, fn) {
  const artifacts = join(env('PARLEY_ARTIFACTS'), name);
  const started = Date.now();
  const pages = new Map();
  const logs = [];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const track = (label, page) => {
    pages.set(label, page);
    page.on('console', (m) => logs.push(`[${label}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`[${label}] pageerror: ${e.message}`));
    return page;
  };
  let failed = false;
  try {
    await fn(browser, track);
    console.log(`${name}: ok in ${Date.now() - started} ms`);
  } catch (err) {
    failed = true;
    console.error(`${name}: FAILED after ${Date.now() - started} ms: ${err?.stack || err}`);
    mkdirSync(artifacts, { recursive: true });
    for (const [label, page] of pages) {
      const file = join(artifacts, `${label}.png`);
      try {
        await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
        console.error(`screenshot: ${file}`);
      } catch (e) {
        console.error(`screenshot of ${label} failed: ${e.message}`);
      }
    }
    const logFile = join(artifacts, 'console.log');
    writeFileSync(logFile, logs.join('\n') + '\n');
    console.error(`browser console: ${logFile}`);
  } finally {
    await browser.close().catch(() => {});
  }
  process.exit(failed ? 1 : 0);
}
