// The command shell, the representative's side: the console in Chromium against the real
// relay, while the real client runs on an X server and the Rust test
// (services/relay/tests/shell.rs) plays the customer in the client's window.
//
// The two sides meet through files in LIFELINE_SYNC: this script writes `<name>.done` when a
// step of its own is finished, and waits for `<name>.done` written by the test.
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SESSION LIFELINE_SYNC
//   LIFELINE_ARTIFACTS
//
// Checked: the xterm.js terminal in the console (served from the box, under the console's
// strict Content-Security-Policy: no violation, colours and truecolour applied), typing a
// command and seeing its output, a resize of the page reaching `stty size`, closing, and the
// session report's shell events with the transcript link. Exits 0 only if every step passed.

import {
  check, consoleLogin, endAndOpenReport, env, finish, launch, pages, shot, step, syncFiles,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 240_000;

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const { done } = syncFiles();
const SESSION = env('LIFELINE_SESSION');

let page;
const pageErrors = [];

const text = async (sel) => (await page.locator(sel).innerText()).trim();
/** What the terminal shows (xterm.js's DOM rows). */
const screen = () => page.evaluate(() => {
  const rows = document.querySelector('[data-testid=shell-terminal] .xterm-rows');
  return rows ? [...rows.children].map((r) => r.textContent.replace(/\u00a0/g, ' ')).join('\n') : '';
});
async function waitScreen(re, what, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  for (;;) {
    const s = await screen();
    const m = s.match(re);
    if (m) return m;
    if (Date.now() > end) throw new Error(`the terminal never showed ${what}:\n${s}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const type = async (line) => {
  await page.locator('[data-testid=shell-terminal] .xterm').click();
  await page.keyboard.type(line, { delay: 5 });
  await page.keyboard.press('Enter');
};

async function run() {
  const browser = await launch();
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 }, locale: 'en-US',
  });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => { pageErrors.push(e.message); console.log(`      [page error] ${e.message}`); });
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to apply/i.test(m.text())) {
      const at = m.location();
      cspViolations.push(`${m.text()} (at ${at.url}:${at.lineNumber}:${at.columnNumber})`);
    }
  });

  await step('a. the rep logs in and opens the accepted session', async () => {
    await consoleLogin(page, REP_USER, REP_PASSWORD);
    await page.locator(`[data-testid=session-tab][data-session-id="${SESSION}"]`).click();
    await page.locator('[data-testid=shell]').waitFor({ state: 'visible' });
    return text('[data-testid=shell-hint]');
  });

  await step('b. "Request a command shell": the customer allows it', async () => {
    await page.click('[data-testid=request-shell]');
    await page.locator('[data-testid=perm-shell][data-state=requested]').waitFor();
    done('asked');
    await page.locator('[data-testid=perm-shell][data-state=granted]').waitFor({ timeout: 60_000 });
    return text('[data-testid=shell-hint]');
  });

  await step('c. the terminal opens: a prompt, a command and its output', async () => {
    await page.click('[data-testid=shell-open]');
    await page.locator('[data-testid=shell-terminal] .xterm').waitFor({ state: 'visible' });
    await page.locator('[data-testid=shell-hint]', { hasText: "customer's rights" }).waitFor();
    await type('echo web-$((6*7))');
    await waitScreen(/^web-42\s*$/m, 'web-42');
    await shot(page, 'shell-1-terminal.png');
    return text('[data-testid=shell-hint]');
  });

  await step('d. colours and truecolour apply under the strict CSP', async () => {
    await type("printf '\\033[31mRED\\033[0m \\033[38;2;1;2;3mTRUE\\033[0m\\n'");
    await waitScreen(/^RED TRUE\s*$/m, 'the coloured words');
    const colours = await page.evaluate(() => {
      const spans = [...document.querySelectorAll('[data-testid=shell-terminal] .xterm-rows span')];
      const red = spans.find((s) => s.textContent === 'RED');
      const tc = spans.find((s) => s.textContent === 'TRUE');
      const bg = getComputedStyle(document.querySelector('[data-testid=shell-terminal] .xterm-screen')).backgroundColor;
      return { red: red && getComputedStyle(red).color, tc: tc && getComputedStyle(tc).color, sheets: document.adoptedStyleSheets.length, bg };
    });
    check(colours.red && colours.red !== 'rgb(229, 231, 235)' && /^rgb\(\d{3}, \d+, \d+\)$/.test(colours.red), `red text is ${colours.red}`);
    check(colours.tc === 'rgb(1, 2, 3)', `truecolour text is ${colours.tc}`);
    check(colours.sheets >= 1, 'no constructed style sheet');
    check(cspViolations.length === 0, `CSP violations:\n${cspViolations.join('\n')}`);
    return JSON.stringify(colours);
  });

  await step('e. a smaller page: the terminal fits and `stty size` follows', async () => {
    await type('stty size');
    const [, r1, c1] = await waitScreen(/^(\d+) (\d+)\s*$/m, 'the first size');
    await page.setViewportSize({ width: 1000, height: 800 });
    const rows = async () => page.evaluate(() => document.querySelector('[data-testid=shell-terminal] .xterm-rows').children.length);
    const end = Date.now() + TIMEOUT;
    let r2;
    let c2;
    for (;;) {
      await type('clear; stty size');
      const m = await waitScreen(/^(\d+) (\d+)\s*$/m, 'the new size');
      [, r2, c2] = m;
      if (c2 !== c1) break;
      if (Date.now() > end) throw new Error(`the size stayed ${r1} ${c1}`);
      await new Promise((res) => setTimeout(res, 300));
    }
    const shownRows = await rows();
    check(Number(r2) === shownRows, `stty says ${r2} rows, the terminal shows ${shownRows}`);
    check(Number(c2) < Number(c1), `columns went from ${c1} to ${c2}`);
    await shot(page, 'shell-2-resized.png');
    return `${r1}x${c1} → ${r2}x${c2}`;
  });

  await step('f. "Close the shell": closed, said so', async () => {
    await page.click('[data-testid=shell-close]');
    await page.locator('[data-testid=shell-hint]', { hasText: 'closed' }).waitFor();
    await page.locator('[data-testid=shell-open]').waitFor({ state: 'visible' });
    done('closed');
    return text('[data-testid=shell-hint]');
  });

  await step('g. the rep ends the session; the report lists the shell with its transcript', async () => {
    page.on('dialog', (d) => d.accept());
    const events = await endAndOpenReport(page, SESSION);
    await events.locator('tr', { hasText: 'shell closed' }).first().waitFor();
    const all = await events.innerText();
    check(all.includes('shell opened'), `events:\n${all}`);
    const link = events.locator('[data-testid=shell-transcript]').first();
    const href = await link.getAttribute('href');
    const body = await page.evaluate(async (u) => (await fetch(u)).text(), href);
    // Typed key by key: each key is an input record; the output has the command's answer.
    check(body.includes('web-42') && / in  e\n/.test(body) && / in  \\r\n/.test(body), `transcript:\n${body.slice(0, 2000)}`);
    await shot(page, 'shell-3-report.png');
    await page.locator('[data-testid=transcript] [data-testid=transcript-close]').click();
    return `${await events.locator('tr').count()} events, transcript ${body.length} bytes`;
  });

  await step('no script errors or CSP violations on the page', async () => {
    check(pageErrors.length === 0, `uncaught errors:\n${pageErrors.join('\n')}`);
    check(cspViolations.length === 0, `CSP violations:\n${cspViolations.join('\n')}`);
  });
  await browser.close();
}

await finish(run, { overallMs: OVERALL_TIMEOUT });
