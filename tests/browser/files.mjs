// File transfer end to end, the representative's side: the console's "Files" area in
// Chromium against the real relay, while the real client runs on an X server and the Rust
// test (services/relay/tests/files.rs) plays the customer and checks the customer's disk.
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SESSION LIFELINE_SYNC
//   LIFELINE_ARTIFACTS LIFELINE_MEDIUM_SHA (SHA-256 of the customer's medium.bin)
//   LIFELINE_OFFER_NAME LIFELINE_OFFER_SHA (the file the customer sends from the window)
//
// Writes into LIFELINE_SYNC: `dropped.sha` and `replaced.sha` (what the customer's disk must
// hold). Exits 0 only if every step passed.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  ARTIFACTS, check, consoleLogin, env, finish, launch, pages, shot, step, syncFiles,
} from './harness.mjs';

const TIMEOUT = 30_000;
const OVERALL_TIMEOUT = 300_000;

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const SYNC = syncFiles().dir;
const SESSION = env('LIFELINE_SESSION');
const MEDIUM_SHA = env('LIFELINE_MEDIUM_SHA');
const OFFER_NAME = env('LIFELINE_OFFER_NAME');
const OFFER_SHA = env('LIFELINE_OFFER_SHA');

let page;
/** How the next confirm() is answered. */
let confirmAnswer = true;
const confirms = [];

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/** Drops a generated file named `name` of `size` bytes onto the file area; its SHA-256. */
const dropFile = (name, size, seed) => page.evaluate(async ({ name, size, seed }) => {
  const bytes = new Uint8Array(size);
  let s = seed;
  for (let i = 0; i < size; i += 1) { s = (s * 1103515245 + 12345) >>> 0; bytes[i] = s >>> 24; }
  const file = new File([bytes], name, { type: 'application/octet-stream' });
  const dt = new DataTransfer();
  dt.items.add(file);
  const zone = document.querySelector('[data-testid=files-drop]');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}, { name, size, seed });

const transfer = (direction, name) =>
  page.locator(`[data-testid=transfer][data-direction=${direction}][data-name="${name}"]`).first();

async function run() {
  const browser = await launch();
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1400, height: 1000 }, locale: 'en-US', acceptDownloads: true });
  ctx.setDefaultTimeout(TIMEOUT);
  page = await ctx.newPage();
  pages.add(page);
  page.on('pageerror', (e) => console.log(`      [page error] ${e.message}`));
  page.on('dialog', async (d) => {
    confirms.push(d.message());
    if (confirmAnswer) await d.accept(); else await d.dismiss();
  });

  await step('a. the rep logs in and opens the accepted session: a Files area', async () => {
    await consoleLogin(page, REP_USER, REP_PASSWORD);
    await page.locator(`[data-testid=session-tab][data-session-id="${SESSION}"]`).click();
    await page.locator('[data-testid=files]').waitFor({ state: 'visible' });
  });

  await step('b. "Request file transfer": the customer allows, the shared folder is listed', async () => {
    await page.click('[data-testid=request-files]');
    await page.locator('[data-testid=perm-files][data-state=granted]').waitFor({ timeout: 60_000 });
    await page.locator('[data-testid=file-row][data-name=Documents]').waitFor();
    await page.locator('[data-testid=file-row][data-name="medium.bin"]').waitFor();
    await shot(page, 'files-1-listing.png');
  });

  await step('c. folders open and close', async () => {
    await page.locator('[data-testid=file-row][data-name=Documents] button').click();
    await page.locator('[data-testid=file-row][data-name="notes.txt"]').waitFor();
    check((await page.locator('[data-testid=files-path]').innerText()).trim() === '/Documents', 'path shown');
    await page.click('[data-testid=files-up]');
    await page.locator('[data-testid=file-row][data-name="medium.bin"]').waitFor();
  });

  await step('d. a download shows its progress, is verified and saved', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 120_000 }),
      page.locator('[data-testid=file-row][data-name="medium.bin"] [data-testid=file-download]').click(),
    ]);
    const saved = path.join(ARTIFACTS, 'medium.bin');
    await download.saveAs(saved);
    const got = sha(fs.readFileSync(saved));
    fs.rmSync(saved);
    check(got === MEDIUM_SHA, `saved file SHA-256 ${got}, expected ${MEDIUM_SHA}`);
    const row = transfer('download', 'medium.bin');
    await page.locator('[data-testid=transfer][data-direction=download][data-state=done]').waitFor();
    check(await row.getAttribute('data-sha256') === MEDIUM_SHA, 'the row shows the verified hash');
    const text = await row.innerText();
    check(/verified/.test(text), `row text: ${text}`);
    return download.suggestedFilename();
  });

  await step('e. a file dropped on the area is sent, with progress, and verified', async () => {
    const digest = await dropFile('dropped.bin', 3_000_000, 7);
    await page.locator('[data-testid=transfer][data-direction=upload][data-name="dropped.bin"][data-state=done]')
      .waitFor({ timeout: 120_000 });
    check(await transfer('upload', 'dropped.bin').getAttribute('data-sha256') === digest, 'upload hash');
    fs.writeFileSync(path.join(SYNC, 'dropped.sha'), digest);
    await page.locator('[data-testid=file-row][data-name="dropped.bin"]').waitFor();
    await shot(page, 'files-2-transfers.png');
  });

  await step('f. an existing file is replaced only after confirmation', async () => {
    confirmAnswer = false;
    await dropFile('dropped.bin', 1000, 9);
    await page.locator('[data-testid=transfer][data-direction=upload][data-name="dropped.bin"][data-state=failed]')
      .waitFor({ timeout: 60_000 });
    check(confirms.length === 1 && confirms[0].includes('dropped.bin'), `confirm asked: ${JSON.stringify(confirms)}`);
    confirmAnswer = true;
    const digest = await dropFile('dropped.bin', 1000, 11);
    await page.locator(`[data-testid=transfer][data-direction=upload][data-sha256="${digest}"][data-state=done]`)
      .waitFor({ timeout: 60_000 });
    check(confirms.length === 2, 'asked again');
    fs.writeFileSync(path.join(SYNC, 'replaced.sha'), digest);
  });

  await step('g. a file the customer sends from the client window shows up and downloads', async () => {
    const offer = page.locator(`[data-testid=file-offer][data-name="${OFFER_NAME}"]`);
    await offer.waitFor({ timeout: 90_000 });
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 60_000 }),
      offer.locator('[data-testid=offer-download]').click(),
    ]);
    const saved = path.join(ARTIFACTS, 'offered.bin');
    await download.saveAs(saved);
    const got = sha(fs.readFileSync(saved));
    fs.rmSync(saved);
    check(got === OFFER_SHA, `saved file SHA-256 ${got}, expected ${OFFER_SHA}`);
    await page.locator(`[data-testid=transfer][data-direction=download][data-name="${OFFER_NAME}"][data-state=done]`).waitFor();
    await shot(page, 'files-3-offer.png');
  });

  await step('h. the session report lists every transfer', async () => {
    await page.click('[data-testid=end-session]');
    await page.locator('[data-testid=chat-input]').waitFor({ state: 'visible' });
    const item = page.locator(`[data-testid=recent-sessions] [data-session-id="${SESSION}"] button`).first();
    await item.waitFor({ timeout: 30_000 });
    const dialog = page.locator('[data-testid=transcript]');
    for (let i = 0; i < 50 && !(await dialog.isVisible()); i += 1) {
      await item.click();
      await page.waitForTimeout(200);
    }
    await dialog.waitFor({ state: 'visible' });
    const rows = dialog.locator('[data-testid=transcript-events] tr', { hasText: 'file transferred' });
    await rows.nth(3).waitFor();
    const texts = await rows.allInnerTexts();
    check(texts.length === 4, `file events: ${JSON.stringify(texts)}`);
    check(texts.some((x) => x.includes(`received from the customer: ${OFFER_NAME}`) && x.includes(OFFER_SHA)), 'sent file listed');
    const offered = await dialog.locator('[data-testid=transcript-events] tr', { hasText: 'file sent by the customer' }).allInnerTexts();
    check(offered.length === 1 && offered[0].includes(OFFER_NAME), `offer events: ${JSON.stringify(offered)}`);
    check(texts.some((x) => x.includes('received from the customer: medium.bin') && x.includes(MEDIUM_SHA)), 'download listed');
    check(texts.filter((x) => x.includes('sent to the customer: dropped.bin')).length === 2, 'uploads listed');
    await shot(page, 'files-4-report.png');
    return `${texts.length} transfers`;
  });
  await browser.close();
}

await finish(run, { overallMs: OVERALL_TIMEOUT });
