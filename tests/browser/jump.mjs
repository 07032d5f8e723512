// The console's "Jump clients" panel end to end: the console in Chromium against the real
// relay, while a real jump client (installed from the downloaded installer, run by the
// service runner with an X server as its desktop) is online; the Rust side is
// services/relay/tests/jump.rs (`jump_console_in_chromium`).
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SYNC LIFELINE_ARTIFACTS
//   LIFELINE_JUMP_NAME (the client's name as the relay shows it)
//
// Last, an administrator removes the client from the list ("Remove", with a confirmation);
// the Rust side checks that the client uninstalled itself.
//
// Exits 0 only if every step passed.

import path from 'node:path';
import {
  ARTIFACTS, BASE, check, consoleLogin, env, finish, launch, pages, shot, step,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 300_000;

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const NAME = env('LIFELINE_JUMP_NAME');

let browser;
let page;

async function run() {
  browser = await launch();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 }, locale: 'en-GB' });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => console.log(`      [page error] ${e.message}`));
  // "End session" and "Remove" ask for confirmation: accept, and remember what was asked.
  const asked = [];
  page.on('dialog', (d) => { asked.push(d.message()); d.accept(); });
  const client = () => page.locator('[data-testid=jump-client]');

  await step('a. the panel lists the jump client, online', async () => {
    await consoleLogin(page, REP_USER, REP_PASSWORD);
    await page.locator('[data-testid=jump-client][data-online=true]').waitFor();
    const name = (await client().first().locator('[data-testid=jump-name]').innerText()).trim();
    check(name === NAME, `name shown: ${name}`);
    return name;
  });

  await step('b. search narrows the list, and says when nothing matches', async () => {
    await page.fill('[data-testid=jump-search]', 'no-such-computer-xyz');
    await page.locator('#jump-empty:not([hidden])').waitFor();
    check(await client().count() === 0, 'no client for a search that matches nothing');
    await page.fill('[data-testid=jump-search]', NAME.slice(0, 3));
    await client().first().waitFor();
    return `${await client().count()} client(s) for "${NAME.slice(0, 3)}"`;
  });

  await step('c. rename and comment in place', async () => {
    await page.fill('[data-testid=jump-search]', '');
    await page.waitForResponse((r) => r.url().endsWith('/api/v1/jump/clients?search='));
    await client().first().locator('[data-testid=jump-edit]').click();
    await page.fill('[data-testid=jump-name-input]', 'Reception PC');
    await page.fill('[data-testid=jump-comment-input]', 'Front desk, ground floor');
    await page.click('[data-testid=jump-save]');
    await page.locator('[data-testid=jump-name]', { hasText: 'Reception PC' }).waitFor();
    await page.locator('[data-testid=jump-comment]', { hasText: 'Front desk' }).waitFor();
    await shot(page, 'jump-1-panel-en.png');
  });

  await step('d. "Jump" opens the session and the remote screen appears', async () => {
    await client().first().locator('[data-testid=jump-go]').click();
    await page.locator('[data-testid=session-name]').waitFor({ state: 'visible' });
    await page.locator('[data-testid=screen]').waitFor({ state: 'visible' });
    await page.locator('[data-testid=presence][data-online=true]').waitFor({ timeout: 60_000 });
    await page.click('[data-testid=request-view]');
    await page.locator('[data-testid=perm-view][data-state=granted]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=screen-canvas]').waitFor({ state: 'visible' });
    const end = Date.now() + 30_000;
    let size = [0, 0];
    while (Date.now() < end) {
      size = await page.evaluate(() => {
        const c = document.querySelector('[data-testid=screen-canvas]');
        return [c.width, c.height];
      });
      if (size[0] > 300) break;
      await page.waitForTimeout(100);
    }
    check(size[0] > 300, `canvas is ${size}`);
    await page.waitForTimeout(500);
    await shot(page, 'jump-2-session.png');
    return `canvas ${size.join('x')}`;
  });

  await step('e. the session ends from the console', async () => {
    await page.click('[data-testid=end-session]');
    await page.locator('[data-testid=presence][data-online=ended]').waitFor();
  });

  for (const [lang, title, jump] of [['en', 'Jump clients', 'Jump'], ['fr', 'Clients de saut', 'Se connecter'], ['de', 'Jump-Clients', 'Verbinden']]) {
    await step(`f. the panel in ${lang}`, async () => {
      await page.goto(`${BASE}/console?lang=${lang}`);
      await page.locator('[data-testid=jump-client][data-online=true]').waitFor();
      const shown = (await page.locator('#jump-title [data-i18n=jumpTitle]').textContent()).trim();
      check(shown.startsWith(title), `title: ${shown}`);
      const button = (await client().first().locator('[data-testid=jump-go]').innerText()).trim();
      check(button === jump, `button: ${button}`);
      await page.locator('[data-testid=jump-panel]').screenshot({ path: path.join(ARTIFACTS, `jump-panel-${lang}.png`) });
      return shown;
    }, { chain: false });
  }

  await step('g. an administrator removes the jump client after a confirmation', async () => {
    await page.goto(`${BASE}/console`);
    const row = client().first();
    await row.waitFor();
    const name = (await row.locator('[data-testid=jump-name]').innerText()).trim();
    await row.locator('[data-testid=jump-remove]').click();
    await page.locator('#jump-empty:not([hidden])').waitFor();
    check(await client().count() === 0, 'the client left the list');
    check(asked.some((m) => m.includes(name)), `confirmation asked: ${asked.join(' | ')}`);
    await page.locator('[data-testid=jump-panel]').screenshot({ path: path.join(ARTIFACTS, 'jump-panel-removed-en.png') });
    return name;
  });
}

finish(run, { overallMs: OVERALL_TIMEOUT, cleanup: async () => { if (browser) await browser.close(); } });
