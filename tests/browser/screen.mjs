// Screen sharing end to end, the representative's side: the console in Chromium against the
// real relay, while the real client runs on an X server and the Rust test
// (services/relay/tests/screen.rs) plays the customer in the client's window.
//
// The two sides meet through files in LIFELINE_SYNC: this script writes `<name>.done` when a
// step of its own is finished, and waits for `<name>.done` written by the test.
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SESSION LIFELINE_SYNC
//   LIFELINE_TARGET=x,y (a desktop point inside the recording X client) LIFELINE_ARTIFACTS
//
// Exits 0 only if every step passed.

import fs from 'node:fs';
import path from 'node:path';
import {
  check, consoleLogin, env, finish, launch, pages, shot, step, syncFiles,
} from './harness.mjs';

const TIMEOUT = 20_000;
const OVERALL_TIMEOUT = 300_000;

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const { dir: SYNC, done, waitDone } = syncFiles();
const SESSION = env('LIFELINE_SESSION');
const [TARGET_X, TARGET_Y] = env('LIFELINE_TARGET').split(',').map(Number);

let page;


/** The viewer's statistics: frames drawn so far (the viewer counts them for its overlay). */
const canvasSize = () => page.evaluate(() => {
  const c = document.querySelector('[data-testid=screen-canvas]');
  return [c.width, c.height];
});

/** Waits until the canvas has not changed for `quiet` ms; returns its pixels as a PNG. */
async function settledCanvas(quiet = 1500, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last = null;
  let since = Date.now();
  for (;;) {
    const sum = await page.evaluate(() => {
      const c = document.querySelector('[data-testid=screen-canvas]');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let h = 0;
      for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) >>> 0;
      return `${c.width}x${c.height}:${h}`;
    });
    if (sum !== last) {
      last = sum;
      since = Date.now();
    } else if (Date.now() - since >= quiet) {
      break;
    }
    if (Date.now() > end) throw new Error('the picture never settled');
    await page.waitForTimeout(100);
  }
  const url = await page.evaluate(() => document.querySelector('[data-testid=screen-canvas]').toDataURL('image/png'));
  return Buffer.from(url.split(',')[1], 'base64');
}

/** Presses a key that produces `ch` (real key events; Playwright's keyboard is US only). */
async function pressChar(ch, code) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: ch, code, text: ch, unmodifiedText: ch });
    await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: ch, code });
  } finally {
    await cdp.detach();
  }
}

/** Page coordinates of surface point (x, y) on the fitted canvas. */
async function pagePoint(x, y) {
  const box = await page.locator('[data-testid=screen-canvas]').boundingBox();
  const [w, h] = await canvasSize();
  return { x: box.x + (x + 0.5) * (box.width / w), y: box.y + (y + 0.5) * (box.height / h) };
}

async function run() {
  const browser = await launch();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 900 }, locale: 'en-US' });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => console.log(`      [page error] ${e.message}`));

  await step('a. the rep logs in and opens the accepted session', async () => {
    await consoleLogin(page, REP_USER, REP_PASSWORD);
    await page.locator(`[data-testid=session-tab][data-session-id="${SESSION}"]`).click();
    await page.locator('[data-testid=screen]').waitFor({ state: 'visible' });
  });

  await step('b. "Request view": the customer denies, the console says so', async () => {
    await page.click('[data-testid=request-view]');
    await page.locator('[data-testid=perm-view][data-state=requested]').waitFor();
    await page.locator('[data-testid=perm-view][data-state=denied]').waitFor({ timeout: 60_000 });
    await shot(page, 'screen-1-denied.png');
    return (await page.locator('[data-testid=perm-view]').innerText()).trim();
  });

  await step('c. asked again, the customer allows: the customer\'s screen appears', async () => {
    await page.click('[data-testid=request-view]');
    await page.locator('[data-testid=perm-view][data-state=granted]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=screen-canvas]').waitFor({ state: 'visible' });
    const end = Date.now() + TIMEOUT;
    let size;
    while (Date.now() < end) {
      size = await canvasSize();
      if (size[0] === 1920 && size[1] === 1080) break;
      await page.waitForTimeout(100);
    }
    check(size[0] === 1920 && size[1] === 1080, `canvas is ${size}`);
    const png = await settledCanvas();
    fs.writeFileSync(path.join(SYNC, 'canvas.png'), png);
    await shot(page, 'screen-2-picture.png');
    done('canvas');
    return `canvas ${size.join('x')}`;
  });

  await step('d. "Request control", allowed: a click and typed text reach the X client', async () => {
    await waitDone('compared');
    await page.click('[data-testid=request-control]');
    await page.locator('[data-testid=perm-control][data-state=granted]').waitFor({ timeout: 60_000 });
    await waitDone('focus');
    const at = await pagePoint(TARGET_X, TARGET_Y);
    await page.mouse.click(at.x, at.y);
    // Type into the X client: accents through real key events of a French-ish keyboard.
    for (const [ch, code] of [['G', 'KeyG'], ['r', 'KeyR'], ['ü', 'BracketLeft'], ['ß', 'Minus'], ['e', 'KeyE'],
      [',', 'Comma'], [' ', 'Space'], ['é', 'Digit2'], ['l', 'KeyL'], ['è', 'Digit7'], ['v', 'KeyV'], ['e', 'KeyE']]) {
      await pressChar(ch, code);
    }
    await shot(page, 'screen-3-control.png');
    done('input');
    return `clicked surface ${TARGET_X},${TARGET_Y}`;
  });

  await step('d2. "Share clipboard", allowed: text goes both ways', async () => {
    await page.click('[data-testid=request-clipboard]');
    await page.locator('[data-testid=perm-clipboard][data-state=granted]').waitFor({ timeout: 60_000 });
    await page.click('[data-testid=clipboard-toggle]');
    await page.locator('[data-testid=clipboard-panel]').waitFor({ state: 'visible' });
    await page.fill('[data-testid=clipboard-out]', 'Grüße vom Support: ключ 42');
    await page.click('[data-testid=clipboard-send]');
    done('clip-sent');
    await waitDone('clip-copied');
    await page.locator('[data-testid=clipboard-in]').filter({ hasText: 'élève a copié ceci' }).waitFor();
    await shot(page, 'screen-3b-clipboard.png');
    return (await page.locator('[data-testid=clipboard-in]').innerText()).trim();
  });

  await step('e. a monitor added on the customer\'s side appears in the picker', async () => {
    await waitDone('monitor');
    const picker = page.locator('[data-testid=monitor-picker] option');
    const end = Date.now() + TIMEOUT;
    let options = [];
    while (Date.now() < end) {
      options = await picker.allInnerTexts();
      if (options.length >= 3) break;
      await page.waitForTimeout(100);
    }
    check(options.length >= 3, `monitor options ${JSON.stringify(options)}`);
    await shot(page, 'screen-4-monitors.png');
    return JSON.stringify(options);
  });

  await step('f. the customer takes control back, then stops the screen: the picture goes', async () => {
    await page.locator('[data-testid=perm-control][data-state=revoked]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=perm-view][data-state=revoked]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=viewer]').waitFor({ state: 'hidden' });
    await shot(page, 'screen-5-revoked.png');
    done('revoked');
  });
}

await finish(run, { overallMs: OVERALL_TIMEOUT });
