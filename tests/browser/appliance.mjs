// Browser test of the appliance administration page against a running relay whose
// supervisor, licence manager and (optionally) front panel are on its bus.
//
//   LIFELINE_URL=https://127.0.0.1:8443 LIFELINE_ADMIN_USER=appadmin LIFELINE_ADMIN_PASSWORD=... \
//   LIFELINE_ARTIFACTS=/tmp/a [LIFELINE_EXPECT_PANEL=1] \
//   [LIFELINE_GOOD_LICENCE=good.json LIFELINE_GOOD_SEATS=25 LIFELINE_GOOD_UNTIL=2097-12-31 \
//    LIFELINE_BAD_LICENCE=bad.json] node tests/browser/appliance.mjs
//
// Checks that the page shows the same data as GET /api/v1/appliance/status, in English,
// French and German, (with LIFELINE_EXPECT_PANEL=1) that the live panel picture changes
// when a key under it is clicked, and (with the licence files) that the "Licence" card
// installs a good licence file (success line, new seats, in English and French) and shows
// the refusal sentence for a bad one. Exits 0 only if every step passed.

import {
  BASE, check, env, finish, launch, pages, shot, step,
} from './harness.mjs';

const TIMEOUT = 10_000;
const OVERALL_TIMEOUT = 120_000;

const USER = env('LIFELINE_ADMIN_USER');
const PASSWORD = env('LIFELINE_ADMIN_PASSWORD');
const EXPECT_PANEL = env('LIFELINE_EXPECT_PANEL', '0') === '1';
const GOOD_LICENCE = env('LIFELINE_GOOD_LICENCE', '');
const GOOD_SEATS = env('LIFELINE_GOOD_SEATS', '');
const GOOD_UNTIL = env('LIFELINE_GOOD_UNTIL', '');
const BAD_LICENCE = env('LIFELINE_BAD_LICENCE', '');

const pageErrors = [];
let page;

async function field(name) {
  return (await page.locator(`[data-field="${name}"]`).innerText()).trim();
}

async function statusJson() {
  return page.evaluate(async () => {
    const r = await fetch('/api/v1/appliance/status', { credentials: 'same-origin' });
    return { status: r.status, body: await r.json() };
  });
}

async function panelBytes() {
  return page.evaluate(async () => {
    const r = await fetch('/appliance/panel.png?b=' + Date.now(), { credentials: 'same-origin' });
    const buf = new Uint8Array(await r.arrayBuffer());
    let s = '';
    for (const b of buf) s += String.fromCharCode(b);
    return { status: r.status, type: r.headers.get('content-type'), data: btoa(s) };
  });
}

async function run() {
  const browser = await launch();
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 }, locale: 'en-GB' });
    ctx.setDefaultTimeout(TIMEOUT);
    page = await ctx.newPage();
    pages.add(page);
    page.on('pageerror', (e) => pageErrors.push(e.message));

    await step('a. /appliance asks for the appliance login', async () => {
      await page.goto(`${BASE}/appliance`);
      check(page.url().includes('/appliance/login'), `landed on ${page.url()}`);
      check((await page.locator('h1').innerText()).includes('Appliance administration'), 'no login title');
      await shot(page, 'appliance-login.png');
      return 'appliance-login.png';
    });

    await step('b. log in as appliance administrator', async () => {
      await page.fill('#username', USER);
      await page.fill('#password', PASSWORD);
      await Promise.all([page.waitForURL(/\/appliance\?/), page.click('button[type=submit]')]);
      check((await page.locator('h1').innerText()) === 'Appliance status', 'no status title');
      await shot(page, 'appliance-en.png');
      return 'appliance-en.png';
    });

    await step('c. the page shows what GET /api/v1/appliance/status says', async () => {
      const { status, body } = await statusJson();
      check(status === 200, `the API answered ${status}`);
      const keys = Object.keys(body).sort().join(',');
      const want = 'api_version,build,company,connected,guid,hostname,license,load,product,services,time,timezone,uptime_seconds,version';
      check(keys === want, `JSON keys are ${keys}`);
      for (const k of ['hostname', 'company', 'product', 'version', 'build', 'api_version', 'guid', 'timezone']) {
        const shown = await field(k);
        check(shown === String(body[k]), `${k}: page shows ${JSON.stringify(shown)}, API says ${JSON.stringify(body[k])}`);
      }
      for (const k of ['model', 'edition', 'serial', 'rep_seats', 'rep_seats_in_use', 'jump_active_limit', 'jump_passive_limit']) {
        const shown = await field(`license.${k}`);
        check(shown === String(body.license[k]), `license.${k}: page ${JSON.stringify(shown)}, API ${JSON.stringify(body.license[k])}`);
      }
      const expires = await field('license.expires');
      check(expires === (body.license.expires ?? 'no end date'), `license.expires: page ${expires}, API ${body.license.expires}`);
      for (const k of ['rep_consoles', 'customer_clients', 'jump_clients']) {
        const shown = await field(`connected.${k}`);
        check(shown === String(body.connected[k]), `connected.${k}: page ${shown}, API ${body.connected[k]}`);
      }
      const up = await page.locator('[data-field="uptime_seconds"]').getAttribute('data-value');
      check(body.uptime_seconds !== null && Math.abs(Number(up) - body.uptime_seconds) <= 30,
        `uptime: page ${up}, API ${body.uptime_seconds}`);
      const rows = await page.locator('tr[data-service]').evaluateAll((trs) => trs.map((t) => [t.dataset.service, t.dataset.state]));
      const api = body.services.map((s) => [s.name, s.state]);
      check(JSON.stringify(rows) === JSON.stringify(api), `services: page ${JSON.stringify(rows)}, API ${JSON.stringify(api)}`);
      check(api.length > 0, 'no services listed');
      return `${api.length} services, ${body.license.rep_seats_in_use}/${body.license.rep_seats} seats, guid ${body.guid}`;
    });

    for (const [lang, title] of [['fr', 'État du site'], ['de', 'Gerätestatus']]) {
      await step(`d. the page in ${lang}`, async () => {
        await page.goto(`${BASE}/appliance?lang=${lang}`);
        check((await page.getAttribute('html', 'lang')) === lang, 'wrong <html lang>');
        check((await page.locator('h1').innerText()) === title, `title is not ${title}`);
        await shot(page, `appliance-${lang}.png`);
        return `appliance-${lang}.png`;
      });
    }

    if (EXPECT_PANEL) {
      await step('e. the live panel picture follows a click on a key', async () => {
        await page.goto(`${BASE}/appliance?lang=en`);
        await page.waitForFunction(() => {
          const i = document.getElementById('panel-picture');
          return i && i.complete && i.naturalWidth > 0 && i.dataset.updated;
        }, null, { timeout: TIMEOUT });
        const before = await panelBytes();
        check(before.status === 200 && before.type === 'image/png', `panel.png answered ${before.status} ${before.type}`);
        await page.click('button.key[data-key="enter"]');
        const t0 = Date.now();
        let after = before;
        while (Date.now() - t0 < TIMEOUT) {
          after = await panelBytes();
          if (after.data !== before.data) break;
          await page.waitForTimeout(100);
        }
        check(after.data !== before.data, 'the panel picture did not change after pressing Enter');
        await page.waitForTimeout(1200);
        await shot(page, 'appliance-panel.png');
        await page.click('button.key[data-key="exit"]');
        return `picture changed after ${Date.now() - t0} ms, appliance-panel.png`;
      });
    }

    if (GOOD_LICENCE) {
      await step('f. installing a good licence file shows the success line and the new seats', async () => {
        await page.goto(`${BASE}/appliance?lang=en`);
        check((await page.locator('[data-testid="licence-install"]').innerText()).includes('Install a licence file'),
          'no "Install a licence file" button');
        const before = await field('license.rep_seats');
        await page.setInputFiles('#licence-file', GOOD_LICENCE);
        const result = page.locator('[data-testid="licence-result"]');
        const want = `Licence installed: ${GOOD_SEATS} representatives until ${GOOD_UNTIL}.`;
        await result.filter({ hasText: want }).waitFor({ state: 'visible' });
        check(await page.locator('[data-testid="licence-error"]').isHidden(), 'an error is shown too');
        check((await field('license.rep_seats')) === GOOD_SEATS, `the card shows ${await field('license.rep_seats')} seats`);
        check((await field('license.expires')) === GOOD_UNTIL, `the card shows valid until ${await field('license.expires')}`);
        await shot(page, 'appliance-licence-installed.png');
        // The page rendered afresh by the relay says the same.
        await page.reload();
        check((await field('license.rep_seats')) === GOOD_SEATS, 'the reloaded page lost the new seats');
        const { body } = await statusJson();
        check(String(body.license.rep_seats) === GOOD_SEATS, `the API says ${body.license.rep_seats} seats`);
        return `${before} → ${GOOD_SEATS} seats, appliance-licence-installed.png`;
      });

      await step('g. the same in French', async () => {
        await page.goto(`${BASE}/appliance?lang=fr`);
        check((await page.locator('[data-testid="licence-install"]').innerText()).includes('Installer un fichier de licence'),
          'no French install button');
        await page.setInputFiles('#licence-file', GOOD_LICENCE);
        const want = `Licence installée : ${GOOD_SEATS} techniciens jusqu'au ${GOOD_UNTIL}.`;
        await page.locator('[data-testid="licence-result"]').filter({ hasText: want }).waitFor({ state: 'visible' });
        await shot(page, 'appliance-licence-fr.png');
        return 'appliance-licence-fr.png';
      });
    }

    if (BAD_LICENCE) {
      await step('h. a licence for another appliance is refused with the sentence', async () => {
        await page.goto(`${BASE}/appliance?lang=en`);
        const before = await field('license.rep_seats');
        await page.setInputFiles('#licence-file', BAD_LICENCE);
        const err = page.locator('[data-testid="licence-error"]');
        await err.filter({ hasText: 'This licence is for appliance' }).waitFor({ state: 'visible' });
        const text = (await err.innerText()).trim();
        check(text.includes('Upload the licence issued for serial'), `the sentence is ${JSON.stringify(text)}`);
        check(await page.locator('[data-testid="licence-result"]').isHidden(), 'a success line is shown too');
        check((await field('license.rep_seats')) === before, 'the seats changed');
        await shot(page, 'appliance-licence-refused.png');
        return `${text} (appliance-licence-refused.png)`;
      });
    }

    await step('i. no script errors', async () => {
      check(pageErrors.length === 0, `uncaught errors:\n${pageErrors.join('\n')}`);
    });
  } finally {
    await browser.close().catch(() => {});
  }
}

await finish(run, { overallMs: OVERALL_TIMEOUT });
