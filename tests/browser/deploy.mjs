// The administrators' "Deployment" page and team queues, in Chromium against the real relay;
// the Rust side is services/relay/tests/browser.rs (`deployment_page_and_team_queue_in_chromium`),
// which made team `ops` (LIFELINE_TEAM_REP is a member, LIFELINE_OTHER_REP is not) and left a
// customer (LIFELINE_CUSTOMER) waiting in its queue through a team support button, and another
// (LIFELINE_GENERAL_CUSTOMER) in the general queue through a general one.
//
//   LIFELINE_URL LIFELINE_ARTIFACTS LIFELINE_ADMIN_USER LIFELINE_ADMIN_PASSWORD
//   LIFELINE_TEAM_REP LIFELINE_OTHER_REP LIFELINE_REP_PASSWORD LIFELINE_CUSTOMER
//   LIFELINE_GENERAL_CUSTOMER
//
// Exits 0 only if every step passed.

import path from 'node:path';
import {
  ARTIFACTS, BASE, check, consoleLogin, env, finish, launch, pages, shot, step,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 240_000;

const ADMIN = env('LIFELINE_ADMIN_USER');
const ADMIN_PASSWORD = env('LIFELINE_ADMIN_PASSWORD');
const TEAM_REP = env('LIFELINE_TEAM_REP');
const OTHER_REP = env('LIFELINE_OTHER_REP');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const CUSTOMER = env('LIFELINE_CUSTOMER');
const GENERAL_CUSTOMER = env('LIFELINE_GENERAL_CUSTOMER');

let browser;
let page;
const confirms = [];

async function logout() {
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === '/login'),
    page.click('[data-testid=logout]'),
  ]);
}

async function run() {
  browser = await launch();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 }, locale: 'en-GB' });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => console.log(`      [page error] ${e.message}`));
  // Revoking asks for confirmation: accept, and remember what was asked.
  page.on('dialog', (d) => { confirms.push(d.message()); d.accept(); });
  const buttonRow = () => page.locator('[data-testid=button-row]', { hasText: 'Ops desk' });
  const keyRow = () => page.locator('[data-testid=dkey-row]', { hasText: 'Branch laptops' });

  await step('0. the console has the same texts in en, fr and de', async () => {
    // texts.js picks its language from `?lang=`; loaded here once per language.
    const file = new URL('../../services/relay/assets/texts.js', import.meta.url);
    const keys = (o, p = '') => Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' ? keys(v, `${p}${k}.`) : [`${p}${k}`]));
    const tables = {};
    const ownNavigator = typeof globalThis.navigator === 'undefined';
    if (ownNavigator) globalThis.navigator = { languages: [] };
    for (const lang of ['en', 'fr', 'de']) {
      globalThis.location = { search: `?lang=${lang}` };
      tables[lang] = new Set(keys((await import(`${file.href}?${lang}`)).t));
    }
    for (const lang of ['fr', 'de']) {
      const missing = [...tables.en].filter((k) => !tables[lang].has(k));
      const extra = [...tables[lang]].filter((k) => !tables.en.has(k));
      check(missing.length === 0 && extra.length === 0, `${lang}: missing ${missing.join(', ')}; extra ${extra.join(', ')}`);
    }
    delete globalThis.location;
    if (ownNavigator) delete globalThis.navigator;
    return `${tables.en.size} texts in each language`;
  });

  await step('a. an administrator opens the Deployment page from the console', async () => {
    await consoleLogin(page, ADMIN, ADMIN_PASSWORD);
    await page.locator('[data-testid=views]').waitFor({ state: 'visible' });
    await page.click('[data-testid=view-deployment]');
    await page.locator('[data-testid=deploy-page]').waitFor({ state: 'visible' });
    check(await page.locator('main.layout').isHidden(), 'the sessions page is hidden');
    // The queue chooser offers the general queue, the team (with its member) and the reps.
    await page.locator('[data-testid=button-queue] option[value="team:ops"]').waitFor({ state: 'attached' });
    const options = await page.locator('[data-testid=button-queue] option').allTextContents();
    check(options.includes('General queue'), `options: ${options}`);
    check(options.some((o) => o.startsWith('Team ops (1 member)')), `options: ${options}`);
    check(options.some((o) => o.includes(`(${TEAM_REP})`)), `options: ${options}`);
    // The request the Rust side made from its team button is listed.
    await page.locator('[data-testid=button-row]', { hasText: 'Scripted' }).waitFor();
    return `${options.length} queue choices`;
  });

  await step('b. a too long or too short lifetime is refused in the page', async () => {
    await page.fill('[data-testid=button-label]', 'Ops desk');
    await page.selectOption('[data-testid=button-queue]', 'team:ops');
    await page.fill('[data-testid=button-lifetime]', '6');
    await page.selectOption('[data-testid=button-lifetime-unit]', '525600');
    await page.click('[data-testid=button-create]');
    const err = page.locator('[data-testid=button-error]');
    await err.waitFor({ state: 'visible' });
    check((await err.innerText()).includes('five years'), await err.innerText());
  });

  await step('c. a team support button is created: download links per platform, listed', async () => {
    await page.fill('[data-testid=button-lifetime]', '2');
    await page.selectOption('[data-testid=button-lifetime-unit]', '1440');
    await page.click('[data-testid=button-create]');
    const created = page.locator('[data-testid=button-created]');
    await created.waitFor({ state: 'visible' });
    const links = created.locator('[data-testid=button-downloads] a');
    const n = await links.count();
    check(n >= 2, `${n} download links`);
    const href = await created.locator('[data-platform=linux-x86_64] a').getAttribute('href');
    check(href.startsWith(`${BASE}/button/sb_`) && href.endsWith('/linux-x86_64'), `link: ${href}`);
    await buttonRow().waitFor();
    const queue = (await buttonRow().locator('[data-testid=button-row-queue]').innerText()).trim();
    check(queue === 'Team ops', `queue shown: ${queue}`);
    check(await buttonRow().getAttribute('data-state') === 'active', 'active');
    return `${n} platforms`;
  });

  await step('d. a deployment key is created for the team: key and installers, uses left', async () => {
    await page.fill('[data-testid=dkey-label]', 'Branch laptops');
    await page.selectOption('[data-testid=dkey-group]', 'team:ops');
    await page.check('[data-testid=dkey-mode-passive]');
    const until = new Date(Date.now() + 90 * 24 * 3600 * 1000);
    const p = (x) => String(x).padStart(2, '0');
    await page.fill('[data-testid=dkey-until]', `${until.getFullYear()}-${p(until.getMonth() + 1)}-${p(until.getDate())}`);
    await page.fill('[data-testid=dkey-uses]', '25');
    await page.click('[data-testid=dkey-create]');
    const created = page.locator('[data-testid=dkey-created]');
    await created.waitFor({ state: 'visible' });
    const key = (await created.locator('[data-testid=dkey-value]').innerText()).trim();
    check(key.startsWith('dk_'), `key: ${key}`);
    const installer = await created.locator('[data-platform=linux-x86_64] a').getAttribute('href');
    check(installer === `${BASE}/jump/installer/${key}/linux-x86_64`, `installer: ${installer}`);
    await keyRow().waitFor();
    const left = (await keyRow().locator('[data-testid=dkey-uses-left]').innerText()).trim();
    check(left === '25', `uses left: ${left}`);
    check((await keyRow().innerText()).includes('Team ops'), await keyRow().innerText());
    await shot(page, 'deploy-1-created-en.png');
  });

  await step('e. revoking asks first, then the list says so', async () => {
    await buttonRow().locator('[data-testid=button-revoke]').click();
    await page.locator('[data-testid=button-row][data-state=revoked]', { hasText: 'Ops desk' }).waitFor();
    check(confirms.some((m) => m.includes('Ops desk')), `asked: ${confirms}`);
    await keyRow().locator('[data-testid=dkey-revoke]').click();
    await page.locator('[data-testid=dkey-row][data-state=revoked]', { hasText: 'Branch laptops' }).waitFor();
    check(await buttonRow().locator('[data-testid=button-revoke]').count() === 0, 'no revoke for a revoked button');
    await shot(page, 'deploy-2-revoked-en.png');
  });

  await step('e2. teams are set in the page: saved, offered in the choosers, a bad name refused', async () => {
    const row = page.locator(`[data-testid=team-row][data-user="${ADMIN}"]`);
    await row.waitFor();
    const memberRow = page.locator(`[data-testid=team-row][data-user="${TEAM_REP}"]`);
    check(await memberRow.locator('[data-testid=team-input]').inputValue() === 'ops', 'the member\'s team is shown');
    await row.locator('[data-testid=team-input]').fill(' network,ops ,, ');
    await row.locator('[data-testid=team-save]').click();
    await row.locator('[data-testid=team-status]', { hasText: 'Saved' }).waitFor();
    const saved = await row.locator('[data-testid=team-input]').inputValue();
    check(saved === 'network, ops', `saved as: ${saved}`);
    await page.locator('[data-testid=button-queue] option[value="team:network"]').waitFor({ state: 'attached' });
    const options = await page.locator('[data-testid=button-queue] option').allTextContents();
    check(options.some((o) => o.startsWith('Team ops (2 members)')), `options: ${options}`);
    await page.locator('[data-testid=dkey-group] option[value="team:network"]').waitFor({ state: 'attached' });
    // A name the box refuses: the message is shown and nothing changes.
    await row.locator('[data-testid=team-input]').fill('network, not a team!');
    await row.locator('[data-testid=team-input]').press('Enter');
    const status = row.locator('[data-testid=team-status].is-error');
    await status.waitFor();
    check((await status.innerText()).includes('48'), await status.innerText());
    await page.reload();
    await page.locator('[data-testid=deploy-page]').waitFor({ state: 'visible' });
    await row.waitFor();
    const kept = await row.locator('[data-testid=team-input]').inputValue();
    check(kept === 'network, ops', `after the refusal: ${kept}`);
    await page.locator('[data-testid=teams-card]').screenshot({ path: path.join(ARTIFACTS, 'teams-en.png') });
    return kept;
  });

  for (const [lang, title, create] of [['en', 'Deployment', 'Create button'], ['fr', 'Déploiement', 'Créer le bouton'], ['de', 'Bereitstellung', 'Knopf erstellen']]) {
    await step(`f. the page in ${lang}`, async () => {
      await page.goto(`${BASE}/console?lang=${lang}#deployment`);
      await page.locator('[data-testid=deploy-page]').waitFor({ state: 'visible' });
      await page.locator('[data-testid=button-row]', { hasText: 'Ops desk' }).waitFor();
      await page.locator('[data-testid=dkey-row]', { hasText: 'Branch laptops' }).waitFor();
      const shown = (await page.locator('#deploy-title').textContent()).trim();
      check(shown === title, `title: ${shown}`);
      const button = (await page.locator('[data-testid=button-create]').innerText()).trim();
      check(button === create, `button: ${button}`);
      const tab = (await page.locator('[data-testid=view-deployment]').textContent()).trim();
      check(tab === title, `tab: ${tab}`);
      await shot(page, `deploy-page-${lang}.png`);
      return shown;
    }, { chain: false });
  }

  await step('g. a member of the team sees the request in their team queue', async () => {
    await page.goto(`${BASE}/console`);
    await logout();
    await consoleLogin(page, TEAM_REP, REP_PASSWORD);
    check(await page.locator('[data-testid=views]').isHidden(), 'no Deployment page for representatives');
    const entry = page.locator('[data-testid=queue-team] [data-testid=queue-entry]', { hasText: CUSTOMER });
    await entry.waitFor();
    const team = (await entry.locator('[data-testid=entry-team]').innerText()).trim();
    check(team.includes('ops'), `team shown: ${team}`);
    await page.locator('[data-testid=team-card]').screenshot({ path: path.join(ARTIFACTS, 'team-queue-en.png') });
  });

  await step('h. a representative outside the team does not see it', async () => {
    await logout();
    await consoleLogin(page, OTHER_REP, REP_PASSWORD);
    // The general queue's request shows, so the queues are drawn: the team's request is not.
    await page.locator('[data-testid=queue-general] [data-testid=queue-entry]', { hasText: GENERAL_CUSTOMER }).waitFor();
    check(await page.locator('[data-testid=queue-entry]', { hasText: CUSTOMER }).count() === 0, 'the request is not shown');
    check(await page.locator('[data-testid=team-card]').isHidden(), 'no team queues for someone in no team');
    await shot(page, 'team-queue-outsider-en.png');
  });

  for (const [lang, title] of [['fr', 'Files des équipes'], ['de', 'Team-Warteschlangen']]) {
    await step(`i. the team queue in ${lang}`, async () => {
      await page.goto(`${BASE}/console`);
      await logout();
      await consoleLogin(page, TEAM_REP, REP_PASSWORD);
      await page.goto(`${BASE}/console?lang=${lang}`);
      const entry = page.locator('[data-testid=queue-team] [data-testid=queue-entry]', { hasText: CUSTOMER });
      await entry.waitFor();
      const shown = (await page.locator('#q-team-title [data-i18n=teamQueues]').textContent()).trim();
      check(shown === title, `title: ${shown}`);
      await page.locator('[data-testid=team-card]').screenshot({ path: path.join(ARTIFACTS, `team-queue-${lang}.png`) });
      return shown;
    }, { chain: false });
  }
}

finish(run, { overallMs: OVERALL_TIMEOUT, cleanup: async () => { if (browser) await browser.close(); } });
