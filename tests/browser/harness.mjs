// What every browser test script shares: its inputs from the environment, the step runner
// (numbered steps, a failure stops the chain, a screenshot of each open page on failure),
// the files through which a script and its Rust test meet, and the watchdog and exit code.
//
// A script ends with `await finish(run, { overallMs, cleanup })`; it exits 0 only if every step
// passed, and prints "N passed, M failed" (the Rust side looks for " passed, 0 failed").

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

/** An environment variable, or `fallback`, or exit 2 with a clear message. */
export function env(name, fallback) {
  const v = process.env[name];
  if (v != null && v !== '') return v;
  if (fallback !== undefined) return fallback;
  console.error(`error: environment variable ${name} is required`);
  process.exit(2);
}

/** The relay's base URL (LIFELINE_URL), without a trailing slash. */
export const BASE = env('LIFELINE_URL').replace(/\/+$/, '');
if (!/^https?:\/\//.test(BASE)) {
  console.error(`error: LIFELINE_URL must start with https:// (got ${BASE})`);
  process.exit(2);
}

/** Where screenshots go (LIFELINE_ARTIFACTS, created). */
export const ARTIFACTS = path.resolve(env('LIFELINE_ARTIFACTS', 'artifacts'));
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** Debian's Chromium unless CHROMIUM says otherwise. */
export const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
if (!fs.existsSync(CHROMIUM)) {
  console.error(`error: no browser at ${CHROMIUM} (set CHROMIUM)`);
  process.exit(2);
}

/** Headless Chromium as every script runs it. */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Signs a representative in on the login page and waits for the console. */
export async function consoleLogin(page, user, password) {
  await page.goto(`${BASE}/login`);
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === '/console'),
    page.locator('form:has(input[name=password]) button').first().click(),
  ]);
}

/**
 * Ends the open session from the console, opens its entry in the recent sessions and
 * returns the report's events table.
 */
export async function endAndOpenReport(page, session) {
  await page.click('[data-testid=end-session]');
  await page.locator('[data-testid=presence][data-online=ended]').waitFor();
  const recent = page.locator(`[data-testid=recent-sessions] [data-session-id="${session}"] button`).first();
  await recent.waitFor({ state: 'visible' });
  await recent.click();
  const dialog = page.locator('[data-testid=transcript]');
  await dialog.waitFor({ state: 'visible' });
  return dialog.locator('[data-testid=transcript-events]');
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Pages to photograph when a step fails (add each page a script opens). */
export const pages = new Set();

const tally = { passed: 0, failed: 0, skipped: 0, chainBroken: false, failures: [] };

async function failureScreenshots(name) {
  let i = 0;
  for (const p of pages) {
    if (p.isClosed()) continue;
    const slug = name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
    const file = path.join(ARTIFACTS, `failure-${slug}-${i++}.png`);
    await p.screenshot({ path: file, fullPage: true, timeout: 5000 }).catch(() => {});
    console.log(`      screenshot: ${file}`);
  }
}

/**
 * Runs one step and returns what it returned. Steps of the chain are skipped once one of
 * them failed; `{ chain: false }` steps run anyway and do not break the chain.
 */
export async function step(name, fn, { chain = true } = {}) {
  if (chain && tally.chainBroken) {
    tally.skipped += 1;
    console.log(`SKIP  ${name}`);
    return undefined;
  }
  const t0 = Date.now();
  try {
    const detail = await fn();
    tally.passed += 1;
    console.log(`ok    ${name}${detail ? ` — ${detail}` : ''} (${Date.now() - t0} ms)`);
    return detail;
  } catch (e) {
    tally.failed += 1;
    if (chain) tally.chainBroken = true;
    const msg = e && e.message ? e.message.split('\n').slice(0, 8).join('\n      ') : String(e);
    tally.failures.push(`${name}: ${msg}`);
    console.log(`FAIL  ${name}\n      ${msg}`);
    await failureScreenshots(name);
    return undefined;
  }
}

/** A full-page screenshot into the artifacts; returns the file name. */
export async function shot(page, file) {
  await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: true });
  return file;
}

/**
 * The folder (LIFELINE_SYNC) through which a script and its Rust test take turns:
 * `done(name)` writes `<name>.done` there, `waitDone(name)` waits for the test's.
 */
export function syncFiles() {
  const dir = env('LIFELINE_SYNC');
  return {
    dir,
    done: (name) => fs.writeFileSync(path.join(dir, `${name}.done`), String(Date.now())),
    async waitDone(name, timeout = 60_000) {
      const file = path.join(dir, `${name}.done`);
      const end = Date.now() + timeout;
      while (!fs.existsSync(file)) {
        if (Date.now() > end) throw new Error(`the test side never finished "${name}"`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/**
 * Runs the script's `run`, then `cleanup` (close the browser…), under a watchdog of
 * `overallMs`; prints the tally and exits 0 only if every step passed.
 */
export async function finish(run, { overallMs, cleanup = async () => {} }) {
  let cleaned = false;
  const clean = async () => {
    if (cleaned) return;
    cleaned = true;
    await cleanup().catch(() => {});
  };
  const watchdog = setTimeout(() => {
    console.log(`FAIL  the whole run took longer than ${overallMs / 1000} s`);
    tally.failed += 1;
    clean().finally(() => process.exit(1));
  }, overallMs);
  try {
    await run();
  } catch (e) {
    tally.failed += 1;
    tally.failures.push(`setup: ${e && e.message ? e.message : e}`);
    console.log(`FAIL  setup\n      ${e && e.stack ? e.stack : e}`);
  } finally {
    await clean();
    clearTimeout(watchdog);
  }
  console.log(`artifacts in ${ARTIFACTS}`);
  if (tally.skipped) console.log(`${tally.skipped} skipped after a failure`);
  if (tally.failures.length) console.log(`failures:\n  ${tally.failures.join('\n  ')}`);
  console.log(`${tally.passed} passed, ${tally.failed} failed`);
  process.exit(tally.failed === 0 && tally.skipped === 0 ? 0 : 1);
}
