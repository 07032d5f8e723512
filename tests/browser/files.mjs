// File transfer end to end, the representative's side: the console's "Files" area in
// Chromium against the real relay, while the real client runs on an X server and the Rust
// test (services/relay/tests/files.rs) plays the customer and checks the customer's disk.
//
//   LIFELINE_URL LIFELINE_REP_USER LIFELINE_REP_PASSWORD LIFELINE_SESSION LIFELINE_SYNC
//   LIFELINE_ARTIFACTS LIFELINE_MEDIUM_SHA (SHA-256 of the customer's medium.bin)
//   LIFELINE_OFFER_NAME LIFELINE_OFFER_SHA (the file the customer sends from the window)
//   LIFELINE_ALBUM (JSON {path: SHA-256} of every file of the customer's folder `Album`,
//   which also holds an empty folder `Album/empty` and a link `Album/link` to skip)
//
// Writes into LIFELINE_SYNC: `dropped.sha` and `replaced.sha` (what the customer's disk must
// hold), `trip.json` ({path: SHA-256} of the folder sent with "Send a folder…", as the
// customer's disk must hold it after "Replace all"). Exits 0 only if every step passed.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  ARTIFACTS, BASE, check, consoleLogin, env, finish, launch, pages, shot, step, syncFiles,
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
const ALBUM = JSON.parse(env('LIFELINE_ALBUM'));

/** The entries of a stored ZIP: {name: Buffer} (directories end with `/`). */
function unzipStored(buf) {
  const out = {};
  let at = 0;
  while (buf.readUInt32LE(at) === 0x04034b50) {
    const method = buf.readUInt16LE(at + 8);
    const crc = buf.readUInt32LE(at + 14);
    const size = buf.readUInt32LE(at + 18);
    const nameLen = buf.readUInt16LE(at + 26);
    const extra = buf.readUInt16LE(at + 28);
    const name = buf.subarray(at + 30, at + 30 + nameLen).toString('utf8');
    const data = buf.subarray(at + 30 + nameLen + extra, at + 30 + nameLen + extra + size);
    check(method === 0, `${name}: stored`);
    check(crc === zlibCrc(data), `${name}: CRC-32`);
    out[name] = data;
    at += 30 + nameLen + extra + size;
  }
  check(buf.readUInt32LE(at) === 0x02014b50, 'central directory follows');
  return out;
}

function zlibCrc(data) {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** Writes the folder `Trip` to send (its files' SHA-256 by path); `round` varies one file. */
function writeTrip(round) {
  const root = path.join(ARTIFACTS, `trip-${round}`, 'Trip');
  const files = {
    'Trip/a.txt': Buffer.from('Reiseplan — étape 1\n'.repeat(50)),
    'Trip/sub/b.bin': crypto.createHash('sha512').update(`b${round}`).digest().toString('hex').repeat(4000),
    'Trip/sub/deep/c.txt': Buffer.from('c\n'),
  };
  const shas = {};
  for (const [rel, data] of Object.entries(files)) {
    const full = path.join(root, ...rel.split('/').slice(1));
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, data);
    shas[rel] = sha(Buffer.from(data));
  }
  return { root, shas };
}

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
    await page.locator('[data-testid=file-row][data-name=Documents] button.link').click();
    await page.locator('[data-testid=file-row][data-name="notes.txt"]').waitFor();
    const shown = (await page.locator('[data-testid=files-path]').innerText()).trim();
    check(shown.endsWith('/Documents') && !shown.startsWith('/'), `path shown under the shared folder's name: ${shown}`);
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

  await step('g2. a whole folder downloads as one ZIP: structure, every file verified, the link skipped', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 120_000 }),
      page.locator('[data-testid=file-row][data-name=Album] [data-testid=folder-download]').click(),
    ]);
    check(download.suggestedFilename() === 'Album.zip', download.suggestedFilename());
    const saved = path.join(ARTIFACTS, 'Album.zip');
    await download.saveAs(saved);
    const entries = unzipStored(fs.readFileSync(saved));
    for (const [name, digest] of Object.entries(ALBUM)) {
      check(entries[name] && sha(entries[name]) === digest, `${name} in the ZIP with its SHA-256`);
    }
    check('Album/empty/' in entries, `the empty folder is there: ${Object.keys(entries)}`);
    check(!Object.keys(entries).some((n) => n.includes('link')), 'the link was not followed');
    const row = page.locator('[data-testid=folder-transfer][data-direction=download][data-name="Album.zip"]');
    await row.and(page.locator('[data-state=done]')).waitFor();
    check((await row.getAttribute('data-skipped')) === 'Album/link', 'the skipped link is listed');
    check(/link/.test(await row.innerText()), 'and shown');
    await shot(page, 'files-5-folder-download.png');
    return `${Object.keys(entries).length} ZIP entries`;
  });

  const sendFolder = async (p, dir) => {
    await p.locator('[data-testid=files-folder-input]').setInputFiles(dir);
  };

  await step('g3. "Send a folder…": the tree is made on the customer\'s side, every file verified', async () => {
    const { root, shas } = writeTrip(1);
    await sendFolder(page, root);
    const row = page.locator('[data-testid=folder-transfer][data-direction=upload][data-name=Trip]').first();
    await row.and(page.locator('[data-state=done]')).waitFor({ timeout: 120_000 });
    check(await row.getAttribute('data-files-done') === '3', 'three files');
    check(/3 of 3 files|verified/.test(await row.innerText()), await row.innerText());
    await page.locator('[data-testid=file-row][data-name=Trip]').waitFor();
    await shot(page, 'files-6-folder-upload.png');
    return JSON.stringify(shas).length;
  });

  await step('g4. sent again: one question, "Replace all", the new content lands', async () => {
    const { root, shas } = writeTrip(2);
    await sendFolder(page, root);
    const dialog = page.locator('[data-testid=files-conflict]');
    await dialog.waitFor({ state: 'visible', timeout: 60_000 });
    await shot(page, 'files-7-replace-all-en.png');
    await dialog.locator('[data-testid=conflict-replace-all]').click();
    const rows = page.locator('[data-testid=folder-transfer][data-direction=upload][data-name=Trip][data-state=done]');
    await rows.nth(1).waitFor({ timeout: 120_000 });
    check(await page.locator('[data-testid=files-conflict]').count() === 0, 'asked only once');
    check(await rows.first().getAttribute('data-files-done') === '3', 'all three replaced');
    fs.writeFileSync(path.join(SYNC, 'trip.json'), JSON.stringify(shas));
  });

  await step('g5. the folder question and progress in French and German', async () => {
    const seen = [];
    for (const [lang, skipAll] of [['fr', 'Tout ignorer'], ['de', 'Alle überspringen']]) {
      const other = await ctx.newPage();
      pages.add(other);
      try {
        await other.goto(`${BASE}/console?lang=${lang}`);
        await other.locator('body.is-ready').waitFor({ state: 'attached' });
        await other.locator(`[data-testid=session-tab][data-session-id="${SESSION}"]`).click();
        await other.locator('[data-testid=file-row][data-name=Trip]').waitFor({ timeout: 60_000 });
        await sendFolder(other, writeTrip(2).root);
        const dialog = other.locator('[data-testid=files-conflict]');
        await dialog.waitFor({ state: 'visible', timeout: 60_000 });
        const button = (await dialog.locator('[data-testid=conflict-skip-all]').innerText()).trim();
        check(button === skipAll, `${lang}: "${button}"`);
        await shot(other, `files-8-replace-all-${lang}.png`);
        await dialog.locator('[data-testid=conflict-skip-all]').click();
        await other.locator('[data-testid=folder-transfer][data-name=Trip][data-state=done]').first().waitFor({ timeout: 60_000 });
        await shot(other, `files-9-folder-${lang}.png`);
        seen.push(button);
      } finally {
        await other.close();
      }
    }
    return seen.join(' · ');
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
    // 4 single files, the 3 files of the album, the trip twice (3 + 3 replaced).
    check(texts.length === 13, `file events: ${texts.length} ${JSON.stringify(texts)}`);
    for (const [name, digest] of Object.entries(ALBUM)) {
      check(texts.some((x) => x.includes(`received from the customer: ${name}`) && x.includes(digest)), `${name} listed`);
    }
    check(texts.filter((x) => x.includes('sent to the customer: Trip/sub/deep/c.txt')).length === 2, 'folder uploads listed');
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
