// Session tools end to end, the representative's side: the console in Chromium against the
// real relay, while the real client runs on an X server and the Rust test
// (services/relay/tests/tools.rs) plays the customer in the client's window.
//
// The two sides meet through files in LIFELINE_SYNC: this script writes `<name>.done` when a
// step of its own is finished, and waits for `<name>.done` written by the test.
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SESSION LIFELINE_SYNC
//   LIFELINE_HOST (this machine's host name) LIFELINE_KERNEL (its kernel release)
//   LIFELINE_AGENT_FILE LIFELINE_AGENT_PID (the downloaded client's file name and process)
//   LIFELINE_VICTIM (the name of the process to end)
//   LIFELINE_ARTIFACTS
//
// Exits 0 only if every step passed.

import fs from 'node:fs';
import path from 'node:path';
import {
  ARTIFACTS, BASE, check, consoleLogin, endAndOpenReport, env, finish, launch, pages, shot, step, syncFiles,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 300_000;

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const { done, waitDone } = syncFiles();
const SESSION = env('LIFELINE_SESSION');
const HOST = env('LIFELINE_HOST');
const KERNEL = env('LIFELINE_KERNEL');
const AGENT_FILE = env('LIFELINE_AGENT_FILE');
const AGENT_PID = env('LIFELINE_AGENT_PID');
const VICTIM = env('LIFELINE_VICTIM');

let page;
const pageErrors = [];

const text = async (sel) => (await page.locator(sel).innerText()).trim();
const tab = (name) => page.click(`[data-testid=sysinfo-tab-${name}]`);

/** The cells of one column of a system-information table. */
const column = (table, key) => page.evaluate(([t, k]) => {
  const tbl = document.querySelector(`[data-testid=sysinfo-table-${t}]`);
  const i = [...tbl.querySelectorAll('thead th')].findIndex((th) => th.dataset.key === k);
  return [...tbl.querySelectorAll('tbody tr')].map((tr) => tr.children[i].textContent);
}, [table, key]);

async function run() {
  const browser = await launch();
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 }, locale: 'en-US', acceptDownloads: true,
  });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`      [page error] ${e.message}`); });

  await step('a. the rep logs in and opens the accepted session', async () => {
    await consoleLogin(page, REP_USER, REP_PASSWORD);
    await page.locator(`[data-testid=session-tab][data-session-id="${SESSION}"]`).click();
    await page.locator('[data-testid=sysinfo]').waitFor({ state: 'visible' });
    return text('[data-testid=sysinfo-hint]');
  });

  await step('b. "Request system information": the customer denies, no report', async () => {
    await page.click('[data-testid=request-sysinfo]');
    await page.locator('[data-testid=perm-sysinfo][data-state=requested]').waitFor();
    await page.locator('[data-testid=perm-sysinfo][data-state=denied]').waitFor({ timeout: 60_000 });
    check(await page.locator('[data-testid=sysinfo-get]').isHidden(), 'a report can be asked for without the grant');
    check(await page.locator('[data-testid=sysinfo-panel]').isHidden(), 'a report shows without the grant');
    await shot(page, 'tools-1-denied.png');
    return text('[data-testid=perm-sysinfo]');
  });

  await step('c. asked again, allowed: the report shows this machine', async () => {
    await page.click('[data-testid=request-sysinfo]');
    await page.locator('[data-testid=perm-sysinfo][data-state=granted]').waitFor({ timeout: 60_000 });
    await page.click('[data-testid=sysinfo-get]');
    await page.locator('[data-testid=sysinfo-panel]').waitFor({ state: 'visible', timeout: 60_000 });
    const host = await text('[data-testid=sysinfo-host]');
    check(host === HOST, `host name shown: "${host}", expected "${HOST}"`);
    const kernel = await text('[data-testid=sysinfo-kernel]');
    check(kernel.includes(KERNEL), `kernel shown: "${kernel}"`);
    const mem = await text('[data-testid=sysinfo-memory]');
    check(/\d/.test(mem) && /iB/.test(mem), `memory shown: "${mem}"`);
    await shot(page, 'tools-2-overview.png');
    done('report');
    return `${host} · ${kernel} · ${mem}`;
  });

  await step('d. processes: listed, filtered, sorted by any column', async () => {
    await tab('processes');
    const table = page.locator('[data-testid=sysinfo-table-processes]');
    await table.waitFor();
    const all = await table.locator('tbody tr').count();
    check(all > 3, `only ${all} processes`);
    await page.fill('[data-testid=sysinfo-filter]', AGENT_FILE);
    const names = await column('processes', 'command');
    check(names.length >= 1 && names.every((n) => n.includes(AGENT_FILE)), `filtered: ${names.slice(0, 5)}`);
    const agentPids = await column('processes', 'pid');
    check(agentPids.includes(AGENT_PID), `the client's process ${AGENT_PID} is not among ${agentPids}`);
    await page.fill('[data-testid=sysinfo-filter]', '');
    await page.click('[data-testid=sysinfo-col-pid] button');
    let pids = (await column('processes', 'pid')).map(Number);
    const sorted = (a, dir) => a.every((v, i) => i === 0 || (dir > 0 ? a[i - 1] <= v : a[i - 1] >= v));
    const firstDir = sorted(pids, -1) ? -1 : 1;
    check(sorted(pids, firstDir), `PIDs not sorted: ${pids.slice(0, 10)}`);
    await page.click('[data-testid=sysinfo-col-pid] button');
    pids = (await column('processes', 'pid')).map(Number);
    check(sorted(pids, -firstDir), `PIDs not sorted the other way: ${pids.slice(0, 10)}`);
    await page.click('[data-testid=sysinfo-col-name] button');
    const procNames = await column('processes', 'name');
    check(procNames.length === all, 'sorting lost rows');
    await shot(page, 'tools-3-processes.png');
    return `${all} processes`;
  });

  await step('e. disks, network, users, services and packages tabs', async () => {
    await tab('disks');
    const mounts = await column('disks', 'mount_point');
    check(mounts.includes('/'), `mounts: ${mounts}`);
    await tab('network');
    const addrs = (await column('network', 'addresses')).join('\n');
    check(addrs.includes('127.0.0.1/8'), `addresses: ${addrs}`);
    await tab('users');
    await page.locator('[data-testid=sysinfo-table-users]').waitFor();
    await tab('services');
    await page.locator('[data-testid=sysinfo-table-services]').waitFor();
    await tab('packages');
    await page.fill('[data-testid=sysinfo-filter]', 'bash');
    const pkgs = await column('packages', 'name');
    check(pkgs.some((p) => p.startsWith('bash:')), `packages: ${pkgs.slice(0, 5)}`);
    await page.fill('[data-testid=sysinfo-filter]', '');
    await shot(page, 'tools-4-packages.png');
    return `${mounts.length} mounts, ${(await page.locator('[data-testid=sysinfo-count]').innerText()).trim()}`;
  });

  await step('e2. ending a process: refused by the customer, then allowed', async () => {
    await waitDone('api');
    page.on('dialog', (d) => d.accept());
    const endIn = async (expect) => {
      await tab('processes');
      await page.fill('[data-testid=sysinfo-filter]', VICTIM);
      const row = page.locator('[data-testid=sysinfo-table-processes] tbody tr').first();
      console.log(`      [e2] ${await row.innerText()}`);
      await row.locator('[data-testid=sysinfo-end]').click();
      console.log(`      [e2] clicked End: ${await row.innerText()}`);
      await row.locator('[data-testid=sysinfo-end-state]', { hasText: expect }).waitFor({ timeout: 90_000 });
      return row.locator('[data-testid=sysinfo-end-state]').getAttribute('title');
    };
    const refused = await endIn('Refused');
    await page.click('[data-testid=sysinfo-get]');
    await page.locator('[data-testid=sysinfo-get]', { hasText: 'Refresh' }).waitFor({ timeout: 60_000 });
    const ended = await endIn('Ended');
    await shot(page, 'tools-3b-ended.png');
    await page.fill('[data-testid=sysinfo-filter]', '');
    return `${refused} / ${ended}`;
  });

  await step('e3. offering a support button: the customer declines, nothing is installed', async () => {
    const area = page.locator('[data-testid=install]');
    await area.waitFor({ state: 'visible' });
    // The customer (the Rust side of this test) answers as soon as the question shows.
    await page.click('[data-testid=install-button]');
    await page.locator('[data-testid=install-hint]', { hasText: 'declined' }).waitFor({ timeout: 90_000 });
    await area.scrollIntoViewIfNeeded();
    await shot(page, 'tools-3c-install-declined.png');
    return text('[data-testid=install-hint]');
  });

  await step('f. the JSON export parses and holds the report', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.click('[data-testid=sysinfo-export]'),
    ]);
    const file = path.join(ARTIFACTS, 'system-report.json');
    await download.saveAs(file);
    const report = JSON.parse(fs.readFileSync(file, 'utf8'));
    check(report.os && report.os.host_name === HOST, `exported host: ${report.os && report.os.host_name}`);
    check(Array.isArray(report.processes) && report.processes.length > 3, 'exported processes');
    check(Array.isArray(report.packages) && report.packages.length > 0, 'exported packages');
    return `${download.suggestedFilename()} (${fs.statSync(file).size} bytes)`;
  });

  await step('g. the texts exist in French and German', async () => {
    const other = await ctx.newPage();
    try {
      const seen = [];
      for (const [lang, title, install] of [['fr', 'Informations système', 'Installer sur cet ordinateur'], ['de', 'Systeminformationen', 'Auf diesem Computer installieren']]) {
        await other.goto(`${BASE}/console?lang=${lang}`);
        await other.locator('body.is-ready').waitFor({ state: 'attached' });
        const got = (await other.locator('#sysinfo-title').textContent()).trim();
        check(got === title, `${lang}: "${got}"`);
        const offer = (await other.locator('#install-title').textContent()).trim();
        check(offer === install, `${lang}: "${offer}"`);
        seen.push(got, offer);
      }
      return seen.join(' · ');
    } finally {
      await other.close();
    }
  });

  await step('h. the rep ends the session; the report lists the requests', async () => {
    await waitDone('api');
    const events = await endAndOpenReport(page, SESSION);
    await events.locator('tr', { hasText: 'system information received' }).first().waitFor();
    const all = await events.innerText();
    check(all.includes('system information requested'), `events:\n${all}`);
    check(/permission denied\s+system_info/.test(all), `events:\n${all}`);
    check(all.includes('ending a process refused') && all.includes('process ended'), `events:\n${all}`);
    check(all.includes('install offered') && all.includes('install declined'), `events:\n${all}`);
    await shot(page, 'tools-5-report.png');
    await page.locator('[data-testid=transcript] [data-testid=transcript-close]').click();
    return `${(await events.locator('tr').count())} events`;
  });

  await step('no script errors on the page', async () => {
    check(pageErrors.length === 0, `uncaught errors:\n${pageErrors.join('\n')}`);
  });
  await browser.close();
}

await finish(run, { overallMs: OVERALL_TIMEOUT });
