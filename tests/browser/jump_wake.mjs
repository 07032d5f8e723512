// "Wake" in the console's jump list, end to end: the console in Chromium against the real
// relay and a real passive jump client (installed from the downloaded installer, run by the
// service runner); the Rust side is services/relay/tests/jump_passive.rs
// (`waking_a_passive_client_from_the_console_in_chromium`).
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SYNC LIFELINE_ARTIFACTS
//   LIFELINE_JUMP_NAME (the client's name as the relay shows it)
//
// Turns: after waking it the script writes `woken.done`; the test stops the client and
// writes `stopped.done` once the relay lists it offline; the second wake-up then fails.
//
// Exits 0 only if every step passed.

import path from 'node:path';
import {
  ARTIFACTS, BASE, check, consoleLogin, env, finish, launch, pages, step, syncFiles,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 240_000;

const NAME = env('LIFELINE_JUMP_NAME');
const { done, waitDone } = syncFiles();

let browser;
let page;

async function run() {
  browser = await launch();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 }, locale: 'en-GB' });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => console.log(`      [page error] ${e.message}`));
  const row = () => page.locator('[data-testid=jump-client]').first();
  const panel = () => page.locator('[data-testid=jump-panel]');

  await step('a. the passive client is listed offline, with "Wake"', async () => {
    await consoleLogin(page, env('LIFELINE_REP_USER'), env('LIFELINE_REP_PASSWORD'));
    await page.locator('[data-testid=jump-client][data-online=false]').waitFor();
    const name = (await row().locator('[data-testid=jump-name]').innerText()).trim();
    check(name === NAME, `name shown: ${name}`);
    const state = (await row().locator('[data-testid=jump-state]').innerText()).trim();
    check(state === 'Passive', `state: ${state}`);
    const wake = row().locator('[data-testid=jump-wake]');
    check((await wake.innerText()).trim() === 'Wake', 'the Wake button');
    check((await wake.getAttribute('title')).includes('without opening a session'), 'its hint');
    await panel().screenshot({ path: path.join(ARTIFACTS, 'jump-wake-before.png') });
    return state;
  });

  await step('b. "Wake" brings it online without a session', async () => {
    await row().locator('[data-testid=jump-wake]').click();
    await page.locator('[data-testid=jump-client][data-online=true]').waitFor({ timeout: 45_000 });
    check(await row().locator('[data-testid=jump-wake]').count() === 0, 'no Wake button once online');
    check(await row().locator('[data-testid=jump-go]').isEnabled(), '"Jump" is offered');
    check(await page.locator('[data-testid=queue-entry]').count() === 0, 'no session was opened');
    check(await page.locator('[data-testid=toast]').count() === 0, 'no error shown');
    await panel().screenshot({ path: path.join(ARTIFACTS, 'jump-wake-online.png') });
    done('woken');
  });

  await step('c. a computer that does not answer: said so, still offline', async () => {
    await waitDone('stopped', 90_000);
    await page.locator('[data-testid=jump-client][data-online=false]').waitFor({ timeout: 30_000 });
    await row().locator('[data-testid=jump-wake]').click();
    const toast = page.locator('[data-testid=toast]');
    await toast.waitFor({ timeout: 45_000 });
    const text = (await toast.locator('.toast-text').innerText()).trim();
    check(text.includes(`"${NAME}" did not answer the wake-up`), `toast: ${text}`);
    await page.locator('[data-testid=jump-client][data-online=false] [data-testid=jump-wake]:not([disabled])').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'jump-wake-failed.png') });
    return text;
  });

  for (const [lang, wake] of [['fr', 'Réveiller'], ['de', 'Wecken']]) {
    await step(`d. the button in ${lang}`, async () => {
      await page.goto(`${BASE}/console?lang=${lang}`);
      const shown = (await row().locator('[data-testid=jump-wake]').innerText()).trim();
      check(shown === wake, `button: ${shown}`);
      return shown;
    }, { chain: false });
  }
}

finish(run, { overallMs: OVERALL_TIMEOUT, cleanup: async () => { if (browser) await browser.close(); } });
