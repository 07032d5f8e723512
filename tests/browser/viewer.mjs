// Browser test of the console's screen viewer against a running relay, with a scripted
// customer agent that speaks the protocol (JSON control messages and binary frames).
//
//   LIFELINE_URL=https://127.0.0.1:8443 LIFELINE_REP_USER=rep LIFELINE_REP_PASSWORD=... \
//   LIFELINE_TEST_PNG=checker.png LIFELINE_TEST_JPEG=gradient.jpg \
//   LIFELINE_TEST_DEFLATED=deflated.bin \
//   LIFELINE_ARTIFACTS=/tmp/lifeline-artifacts node tests/browser/viewer.mjs
//
// The PNG is 64x48 of 8-pixel red/near-white squares, the JPEG 96x64 of the gradient
// r = 40 + x, g = 80 + y, b = 160; deflated.bin is a deflated screen stream of Palette
// rectangles made with the agent's compressor (its messages are listed at deflated_stream in
// services/relay/tests/browser.rs, which makes all three). Exits 0 only if every step
// passed.

import fs from 'node:fs';
import https from 'node:https';
import WebSocket from 'ws';
import {
  BASE, check, env, finish, launch, pages, shot, step,
} from './harness.mjs';

const TIMEOUT = 10_000;
/** The viewer asks for a key frame at most this often (REFRESH_MIN_GAP_MS in viewer.js). */
const REFRESH_GAP_MS = 600;
const OVERALL_TIMEOUT = 240_000;
const CUSTOMER = 'Jérôme Écran';

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const PNG = fs.readFileSync(env('LIFELINE_TEST_PNG'));
const JPEG = fs.readFileSync(env('LIFELINE_TEST_JPEG'));
/** The deflated stream's binary frames, in order. */
const DEFLATED = (() => {
  const b = fs.readFileSync(env('LIFELINE_TEST_DEFLATED'));
  const out = [];
  for (let at = 0; at < b.length;) {
    const n = b.readUInt32BE(at);
    out.push(b.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
})();
const WS_BASE = BASE.replace(/^https:/, 'wss:');

const pageErrors = [];

// ---------------------------------------------------------------------------------------------
// HTTP, wire format and the scripted agent

function requestJson(method, url, body, token) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = https.request(new URL(url), {
      method,
      rejectUnauthorized: false,
      timeout: TIMEOUT,
      headers: {
        Accept: 'application/json',
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}),
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch { json = null; }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** A binary frame: 12-byte header, then the payload. */
function frame(channel, flags, seq, payload) {
  const h = Buffer.alloc(12);
  h[0] = 0x4c;
  h[1] = channel;
  h[2] = flags;
  h.writeUInt32BE(seq, 4);
  h.writeUInt32BE(payload.length, 8);
  return Buffer.concat([h, payload]);
}

const ENC = { solid: 0, jpeg: 1, png: 2, copy: 3 };

/** A screen update message (see agents/proto/src/screen.rs). */
function update({ width, height, frameNo, key = false, end = true, rects }) {
  const head = Buffer.alloc(12);
  head[0] = 1;
  head[1] = (end ? 1 : 0) | (key ? 2 : 0);
  head.writeUInt16BE(width, 2);
  head.writeUInt16BE(height, 4);
  head.writeUInt32BE(frameNo, 6);
  head.writeUInt16BE(rects.length, 10);
  const parts = [head];
  for (const r of rects) {
    const rh = Buffer.alloc(13);
    rh.writeUInt16BE(r.x, 0);
    rh.writeUInt16BE(r.y, 2);
    rh.writeUInt16BE(r.w, 4);
    rh.writeUInt16BE(r.h, 6);
    rh[8] = ENC[r.enc];
    rh.writeUInt32BE(r.data.length, 9);
    parts.push(rh, r.data);
  }
  return frame(1, key ? 1 : 0, frameNo, Buffer.concat(parts));
}

const solid = (x, y, w, h, rgb) => ({ x, y, w, h, enc: 'solid', data: Buffer.from(rgb) });
const copy = (x, y, w, h, sx, sy) => {
  const d = Buffer.alloc(4);
  d.writeUInt16BE(sx, 0);
  d.writeUInt16BE(sy, 2);
  return { x, y, w, h, enc: 'copy', data: d };
};

function cursorShape(w, h, hx, hy) {
  const p = Buffer.alloc(9 + w * h * 4);
  p[0] = 1;
  p.writeUInt16BE(w, 1);
  p.writeUInt16BE(h, 3);
  p.writeUInt16BE(hx, 5);
  p.writeUInt16BE(hy, 7);
  // A black arrow-ish triangle with a white edge.
  for (let y = 0; y < h; y += 1) {
    for (let x = 0; x < w; x += 1) {
      const i = 9 + (y * w + x) * 4;
      if (x <= y / 1.4) {
        const edge = x === 0 || x >= Math.floor(y / 1.4) - 1 || y === h - 1;
        p[i] = p[i + 1] = p[i + 2] = edge ? 255 : 0;
        p[i + 3] = 255;
      }
    }
  }
  return frame(2, 0, 1, p);
}

function cursorPosition(x, y) {
  const p = Buffer.alloc(5);
  p[0] = 2;
  p.writeInt16BE(x, 1);
  p.writeInt16BE(y, 3);
  return frame(2, 0, 2, p);
}

class Agent {
  constructor(url) {
    this.url = url;
    this.messages = [];
    this.waiters = [];
    this.closed = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { rejectUnauthorized: false, handshakeTimeout: TIMEOUT });
      this.ws = ws;
      ws.on('open', () => resolve());
      ws.on('error', (e) => reject(e));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        let msg;
        try { msg = JSON.parse(data.toString('utf8')); } catch { return; }
        if (msg && msg.type === 'ping') { this.send({ type: 'pong', nonce: msg.nonce }); return; }
        this.messages.push({ msg, used: false });
        for (const w of [...this.waiters]) w();
      });
      ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        for (const w of [...this.waiters]) w();
      });
    });
  }

  send(obj) { this.ws.send(JSON.stringify(obj)); }

  sendBinary(buf) { this.ws.send(buf, { binary: true }); }

  /** Waits for the first unconsumed message that matches. */
  expect(what, pred, timeout = TIMEOUT) {
    return new Promise((resolve, reject) => {
      const tryNow = () => {
        const hit = this.messages.find((m) => !m.used && pred(m.msg));
        if (hit) { hit.used = true; done(); resolve(hit.msg); return; }
        if (this.closed) { done(); reject(new Error(`agent closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`agent did not receive ${what} within ${timeout} ms; received: ${this.seen()}`)); }, timeout);
      const done = () => { clearTimeout(timer); this.waiters = this.waiters.filter((w) => w !== tryNow); };
      this.waiters.push(tryNow);
      tryNow();
    });
  }

  /** Marks every message so far as seen. */
  skipAll() { for (const m of this.messages) m.used = true; }

  seen() {
    const recent = this.messages.filter((m) => !m.used).slice(-12);
    return recent.length ? recent.map((m) => JSON.stringify(m.msg)).join(', ') : '(nothing new)';
  }

  close() { try { this.ws && this.ws.close(); } catch { /* closed */ } }
}

// ---------------------------------------------------------------------------------------------
// Pictures and pixels

const W = 320;
const H = 200;
const BG = [30, 120, 200];
const PNG_AT = { x: 20, y: 20, w: 64, h: 48 };
const JPEG_AT = { x: 120, y: 40, w: 96, h: 64 };
const COPY_TO = { x: 220, y: 130 };

// The Palette rectangles of the deflated stream: colour i and the index of pixel (x, y).
const paletteColour = (i) => [(i * 37) % 256, (i * 91 + 50) % 256, (i * 151 + 100) % 256];
const paletteIndex = (x, y, count) => (x * 7 + y * 3 + ((x * y) % 5)) % count;
const PALETTES = [
  { x: 10, y: 130, w: 37, h: 21, count: 2 },
  { x: 60, y: 130, w: 13, h: 9, count: 3 },
  { x: 90, y: 130, w: 23, h: 17, count: 16 },
  { x: 130, y: 130, w: 40, h: 30, count: 200 },
  { x: 200, y: 130, w: 37, h: 21, count: 2 },
  { x: 250, y: 160, w: 13, h: 9, count: 3 },
];

/** Checks every pixel of the Palette rectangles; returns how many were checked. */
async function checkPalettes(page) {
  const got = await page.evaluate((rects) => {
    const g = document.querySelector('[data-testid=screen-canvas]').getContext('2d');
    return rects.map((r) => Array.from(g.getImageData(r.x, r.y, r.w, r.h).data));
  }, PALETTES);
  let n = 0;
  PALETTES.forEach((r, k) => {
    for (let y = 0; y < r.h; y += 1) {
      for (let x = 0; x < r.w; x += 1) {
        const want = paletteColour(paletteIndex(x, y, r.count));
        const at = (y * r.w + x) * 4;
        const px = got[k].slice(at, at + 3);
        check(px.join() === want.join(), `${r.count}-colour palette pixel ${x},${y} at ${r.x},${r.y} is ${px}, expected ${want}`);
        n += 1;
      }
    }
  });
  return n;
}

const checkerAt = (x, y) => ((Math.floor(x / 8) + Math.floor(y / 8)) % 2 === 0 ? [220, 40, 40] : [250, 250, 250]);
const gradientAt = (x, y) => [40 + x, 80 + y, 160];

/** Reads pixels of the viewer's canvas: [[x, y], ...] → [[r, g, b], ...]. */
function pixels(page, points) {
  return page.evaluate((pts) => {
    const c = document.querySelector('[data-testid=screen-canvas]');
    const g = c.getContext('2d');
    return pts.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
  }, points);
}

async function waitPixel(page, x, y, rgb, tolerance = 0, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    [last] = await pixels(page, [[x, y]]);
    if (last.every((v, i) => Math.abs(v - rgb[i]) <= tolerance)) return;
    await page.waitForTimeout(50);
  }
  throw new Error(`pixel ${x},${y} is ${JSON.stringify(last)}, expected ${JSON.stringify(rgb)}`);
}

// ---------------------------------------------------------------------------------------------
// The run

let browser;
let agent;

async function newContext(locale) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, locale });
  ctx.setDefaultTimeout(TIMEOUT);
  ctx.setDefaultNavigationTimeout(TIMEOUT);
  return ctx;
}

async function newPage(ctx, label) {
  const page = await ctx.newPage();
  pages.add(page);
  page.on('close', () => pages.delete(page));
  page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`      [${label} console] ${m.text()}`); });
  return page;
}

async function login(page) {
  await page.goto(`${BASE}/login`);
  await page.fill('input[name=username]', REP_USER);
  await page.fill('input[name=password]', REP_PASSWORD);
  await Promise.all([
    page.waitForURL((u) => new URL(u).pathname === '/console'),
    page.locator('form:has(input[name=password]) button[type=submit], form:has(input[name=password]) button:not([type])').first().click(),
  ]);
  await page.locator('[data-testid=ws-status][data-state=open]').waitFor({ state: 'attached' });
}

/**
 * Presses and releases a key that produces `ch`, as a keyboard whose layout has it does
 * (e.g. é on the Digit2 key of a French keyboard): real key events through the browser's
 * input pipeline (Playwright's own keyboard only knows the US layout).
 */
async function pressChar(page, ch, code) {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', key: ch, code, text: ch, unmodifiedText: ch });
    await cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', key: ch, code });
  } finally {
    await cdp.detach();
  }
}

/** Where to click in the page for surface point (x, y) of the canvas. */
async function canvasPoint(page, x, y) {
  const box = await page.locator('[data-testid=screen-canvas]').boundingBox();
  const size = await page.evaluate(() => {
    const c = document.querySelector('[data-testid=screen-canvas]');
    return [c.width, c.height];
  });
  const sx = box.width / size[0];
  const sy = box.height / size[1];
  return { x: (x + 0.5) * sx, y: (y + 0.5) * sy, scale: sx };
}

let frameNo = 0;
/** The key frame of the test picture: Solid background, PNG and JPEG rectangles. */
function keyFrame(bg = BG) {
  frameNo += 1;
  return update({
    width: W, height: H, frameNo, key: true,
    rects: [
      solid(0, 0, W, H, bg),
      { ...PNG_AT, enc: 'png', data: PNG },
      { ...JPEG_AT, enc: 'jpeg', data: JPEG },
    ],
  });
}

async function run() {
  browser = await launch();
  const ctx = await newContext('en-US');
  const page = await newPage(ctx, 'console');
  let sessionId;

  await step('a. rep logs in; a customer joins and is accepted', async () => {
    await login(page);
    const tok = await requestJson('POST', `${BASE}/api/v1/auth/token`, { username: REP_USER, password: REP_PASSWORD });
    check(tok.status === 200, `token: HTTP ${tok.status}`);
    const key = await requestJson('POST', `${BASE}/api/v1/session-keys`, { queue: 'general' }, tok.json.access_token);
    check(key.status === 200, `session key: HTTP ${key.status} ${key.text}`);
    const t = await requestJson('POST', `${BASE}/api/v1/portal/tickets`, { key: key.json.key, name: CUSTOMER });
    check(t.status === 200, `ticket: HTTP ${t.status}`);
    agent = new Agent(`${WS_BASE}/ws/agent`);
    await agent.open();
    agent.send({
      type: 'hello', version: { major: 1, minor: 0 },
      auth: { kind: 'ticket', ticket: t.json.ticket.ticket },
      info: { customer_name: CUSTOMER, computer: 'pc-écran', platform: 'Linux x86_64', language: 'fr' },
    });
    const welcome = await agent.expect('welcome', (m) => m.type === 'welcome');
    sessionId = welcome.session_id;
    agent.send({ type: 'accept_terms' });
    const entry = page.locator('[data-testid=queue-general] [data-testid=queue-entry]', { hasText: CUSTOMER });
    await entry.first().locator('[data-testid=accept]').click();
    await agent.expect('rep_joined', (m) => m.type === 'rep_joined');
    await page.locator('[data-testid=screen]').waitFor({ state: 'visible' });
    const state = await page.locator('[data-testid=perm-view]').getAttribute('data-state');
    check(state === 'none', `view shows ${state} before any request`);
    check(await page.locator('[data-testid=request-control]').isHidden(), 'control can be asked before view');
    await shot(page, 'viewer-0-start.png');
    return `session ${sessionId}`;
  });

  await step('b. "Request view" asks the customer; the console shows it waits', async () => {
    await page.click('[data-testid=request-view]');
    const req = await agent.expect('permission_request view', (m) => m.type === 'permission_request');
    check(req.permission === 'view' && req.rep === 'Rémi Rep', `request: ${JSON.stringify(req)}`);
    await page.locator('[data-testid=perm-view][data-state=requested]').waitFor();
    const text = (await page.locator('[data-testid=perm-view]').innerText()).trim();
    check(/waiting/i.test(text), `chip says ${JSON.stringify(text)}`);
    await shot(page, 'viewer-1-requested.png');
    return `"${text}"`;
  });

  await step('c. the customer allows; the stream starts; a key frame draws Solid, PNG and JPEG', async () => {
    agent.send({ type: 'permission', permission: 'view', granted: true });
    await page.locator('[data-testid=perm-view][data-state=granted]').waitFor();
    const st = await agent.expect('stream active', (m) => m.type === 'stream' && m.active === true);
    agent.send({
      type: 'monitors', monitors: [
        { id: 1, x: 0, y: 0, width: 1920, height: 1080, primary: true, name: 'HDMI-1' },
        { id: 2, x: 1920, y: 0, width: 1280, height: 1024, primary: false, name: 'DP-1' },
      ],
    });
    agent.sendBinary(keyFrame());
    agent.sendBinary(cursorShape(12, 18, 0, 0));
    agent.sendBinary(cursorPosition(150, 150));
    const ack = await agent.expect('frame_ack 1', (m) => m.type === 'frame_ack');
    check(ack.frame === 1, `ack ${JSON.stringify(ack)}`);
    const size = await page.evaluate(() => { const c = document.querySelector('[data-testid=screen-canvas]'); return [c.width, c.height]; });
    check(size[0] === W && size[1] === H, `canvas is ${size}`);
    const pts = [[3, 3], [W - 2, H - 2], [160, 180]];
    for (const [i, px] of (await pixels(page, pts)).entries()) {
      check(px.join() === BG.join(), `solid pixel ${pts[i]} is ${px}, expected ${BG}`);
    }
    // PNG: every square's centre, exactly.
    const pngPts = [];
    for (let y = 4; y < PNG_AT.h; y += 8) for (let x = 4; x < PNG_AT.w; x += 8) pngPts.push([x, y]);
    const pngPx = await pixels(page, pngPts.map(([x, y]) => [PNG_AT.x + x, PNG_AT.y + y]));
    pngPts.forEach(([x, y], i) => {
      check(pngPx[i].join() === checkerAt(x, y).join(), `PNG pixel ${x},${y} is ${pngPx[i]}, expected ${checkerAt(x, y)}`);
    });
    // JPEG: within a small error.
    const jpgPts = [];
    for (let y = 5; y < JPEG_AT.h; y += 13) for (let x = 5; x < JPEG_AT.w; x += 17) jpgPts.push([x, y]);
    const jpgPx = await pixels(page, jpgPts.map(([x, y]) => [JPEG_AT.x + x, JPEG_AT.y + y]));
    let worst = 0;
    jpgPts.forEach(([x, y], i) => {
      const want = gradientAt(x, y);
      for (let c = 0; c < 3; c += 1) worst = Math.max(worst, Math.abs(jpgPx[i][c] - want[c]));
    });
    check(worst <= 12, `JPEG pixels differ by up to ${worst}`);
    await page.locator('[data-testid=screen-message]').waitFor({ state: 'hidden' });
    await page.locator('[data-testid=screen-stats]').filter({ hasText: /fps .* kbit\/s/ }).waitFor();
    await shot(page, 'viewer-2-picture.png');
    return `settings ${JSON.stringify(st.settings)}, ${pngPts.length} PNG pixels exact, JPEG max error ${worst}`;
  });

  await step('d. a Copy rectangle copies from the picture as it was before the message', async () => {
    frameNo += 1;
    agent.sendBinary(update({
      width: W, height: H, frameNo,
      rects: [
        // Overwrite the source first: the copy must still take the old pixels.
        solid(PNG_AT.x, PNG_AT.y, 8, 8, [0, 0, 0]),
        copy(COPY_TO.x, COPY_TO.y, PNG_AT.w, PNG_AT.h, PNG_AT.x, PNG_AT.y),
      ],
    }));
    const ack = await agent.expect(`frame_ack ${frameNo}`, (m) => m.type === 'frame_ack' && m.frame === frameNo);
    const px = await pixels(page, [[COPY_TO.x + 4, COPY_TO.y + 4], [COPY_TO.x + 12, COPY_TO.y + 4], [PNG_AT.x + 4, PNG_AT.y + 4]]);
    check(px[0].join() === checkerAt(4, 4).join(), `copied pixel is ${px[0]}`);
    check(px[1].join() === checkerAt(12, 4).join(), `copied pixel is ${px[1]}`);
    check(px[2].join() === '0,0,0', `the solid over the source is ${px[2]}`);
    return `frame ${ack.frame} acknowledged`;
  });

  await step('e. "Request control"; a click and a typed é reach the agent', async () => {
    await page.click('[data-testid=request-control]');
    const req = await agent.expect('permission_request control', (m) => m.type === 'permission_request' && m.permission === 'control');
    check(req.rep === 'Rémi Rep', `request ${JSON.stringify(req)}`);
    agent.send({ type: 'permission', permission: 'control', granted: true });
    await page.locator('[data-testid=perm-control][data-state=granted]').waitFor();
    agent.skipAll();
    const at = await canvasPoint(page, 50, 60);
    await page.locator('[data-testid=screen-canvas]').click({ position: { x: at.x, y: at.y } });
    const down = await agent.expect('pointer down', (m) => m.type === 'input' && m.event.kind === 'pointer' && m.event.buttons === 1);
    check(down.event.x === 50 && down.event.y === 60, `pointer down at ${down.event.x},${down.event.y}, expected 50,60 (scale ${at.scale.toFixed(3)})`);
    const up = await agent.expect('pointer up', (m) => m.type === 'input' && m.event.kind === 'pointer' && m.event.buttons === 0);
    check(up.event.x === 50 && up.event.y === 60, `pointer up at ${up.event.x},${up.event.y}`);
    await pressChar(page, 'é', 'Digit2');
    const kd = await agent.expect('é down', (m) => m.type === 'input' && m.event.kind === 'key' && m.event.down === true);
    const ku = await agent.expect('é up', (m) => m.type === 'input' && m.event.kind === 'key' && m.event.down === false);
    check(kd.event.keysym === 0xe9 && ku.event.keysym === 0xe9, `keysyms ${kd.event.keysym} / ${ku.event.keysym}, expected 0xe9`);
    check(kd.event.code === 'Digit2', `code ${kd.event.code}`);
    await page.keyboard.press('Enter');
    const enter = await agent.expect('Enter', (m) => m.type === 'input' && m.event.kind === 'key' && m.event.down === true);
    check(enter.event.keysym === 0xff0d, `Enter is ${enter.event.keysym}`);
    await pressChar(page, '€', 'KeyE');
    const euro = await agent.expect('€', (m) => m.type === 'input' && m.event.kind === 'key' && m.event.down === true);
    check(euro.event.keysym === 0x010020ac, `€ is ${euro.event.keysym.toString(16)}`);
    await page.mouse.wheel(0, 200);
    const wheel = await agent.expect('wheel', (m) => m.type === 'input' && m.event.kind === 'wheel');
    check(wheel.event.dy === 2, `wheel ${JSON.stringify(wheel.event)}`);
    const hint = (await page.locator('[data-testid=screen-hint]').innerText()).trim();
    await shot(page, 'viewer-3-control.png');
    await page.click('[data-testid=ctrl-alt-del]');
    const cad = await agent.expect('ctrl-alt-del', (m) => m.type === 'input' && m.event.kind === 'combo');
    check(cad.event.combo === 'ctrl_alt_del', `combo ${JSON.stringify(cad.event)}`);
    return `pointer 50,60 buttons 1→0, keysyms é=0xe9, Enter, € 0x10020ac, wheel, Ctrl-Alt-Del; hint "${hint}"`;
  });

  await step('f. quality and monitor choices arrive as Stream settings', async () => {
    agent.skipAll();
    await page.selectOption('[data-testid=quality-picker]', 'low');
    const q = await agent.expect('stream quality low', (m) => m.type === 'stream' && m.settings.quality === 'low');
    check(q.active === true && q.settings.monitor == null, `settings ${JSON.stringify(q)}`);
    const options = await page.locator('[data-testid=monitor-picker] option').allInnerTexts();
    check(options.length === 3 && /HDMI-1/.test(options[1]) && /DP-1/.test(options[2]), `monitor options ${JSON.stringify(options)}`);
    await page.selectOption('[data-testid=monitor-picker]', '2');
    const m = await agent.expect('stream monitor 2', (x) => x.type === 'stream' && x.settings.monitor === 2);
    check(m.settings.quality === 'low', `settings ${JSON.stringify(m.settings)}`);
    await page.selectOption('[data-testid=quality-picker]', 'best');
    await agent.expect('stream quality best', (x) => x.type === 'stream' && x.settings.quality === 'best' && x.settings.monitor === 2);
    await page.selectOption('[data-testid=monitor-picker]', '');
    await agent.expect('stream all monitors', (x) => x.type === 'stream' && x.settings.monitor == null);
    return `options ${options.join(' | ')}`;
  });

  await step('g. corrupt frames do not break the viewer: a Refresh comes, later frames draw', async () => {
    agent.skipAll();
    // A valid frame header around a payload that is no screen message at all.
    agent.sendBinary(frame(1, 0, 99, Buffer.from([0x99, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c])));
    await agent.expect('refresh after garbage', (m) => m.type === 'refresh');
    agent.sendBinary(keyFrame([200, 60, 30]));
    await waitPixel(page, 3, 3, [200, 60, 30]);
    // An update whose PNG does not decode.
    agent.skipAll();
    frameNo += 1;
    agent.sendBinary(update({
      width: W, height: H, frameNo, key: true,
      rects: [{ x: 0, y: 0, w: 16, h: 16, enc: 'png', data: Buffer.from('this is not a PNG picture') }],
    }));
    await agent.expect('refresh after a bad PNG', (m) => m.type === 'refresh');
    await agent.expect(`the bad frame acknowledged (${frameNo})`, (m) => m.type === 'frame_ack' && m.frame === frameNo);
    // A frame too large for any viewer: the relay refuses it before the browser sees it,
    // so the viewer's own bound is checked here directly.
    const tooBig = await page.evaluate(async () => {
      const m = await import('/static/viewer.js');
      try { m.decodeFrame(new ArrayBuffer(12 + m.MAX_FRAME_PAYLOAD + 1)); return 'accepted'; } catch (e) { return e.message; }
    });
    check(/exceeds/.test(tooBig), `an oversized frame gave: ${tooBig}`);
    agent.sendBinary(keyFrame([40, 170, 90]));
    await waitPixel(page, 3, 3, [40, 170, 90]);
    await waitPixel(page, PNG_AT.x + 4, PNG_AT.y + 4, checkerAt(4, 4));
    check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
    await shot(page, 'viewer-4-recovered.png');
    return 'refresh after garbage and after a bad PNG, next key frames drawn';
  });

  await step('g2. a deflated stream of Palette rectangles over several messages draws exactly', async () => {
    agent.skipAll();
    for (const m of DEFLATED.slice(0, 3)) agent.sendBinary(m);
    await agent.expect('frame_ack 1001', (m) => m.type === 'frame_ack' && m.frame === 1001);
    await waitPixel(page, 3, 3, [30, 120, 200]);
    const n = await checkPalettes(page);
    await shot(page, 'viewer-4a-deflated.png');
    return `${n} Palette pixels exact (1, 2, 4 and 8 bits per index)`;
  });

  await step('g3. a viewer that reloads mid-stream waits for the next key frame', async () => {
    agent.skipAll();
    await page.reload();
    if (new URL(page.url()).pathname !== '/console') await login(page);
    await page.locator('[data-testid=ws-status][data-state=open]').waitFor({ state: 'attached' });
    await page.locator(`[data-testid=session-tab][data-session-id="${sessionId}"]`).click();
    await page.locator('[data-testid=perm-view][data-state=granted]').waitFor();
    // The relay asks for a key frame for the viewer that joins the running stream (or
    // restarts the stream when the old viewer left first).
    await agent.expect('refresh or a restarted stream', (m) => m.type === 'refresh' || (m.type === 'stream' && m.active === true));
    // The stream goes on where it was (a message the new viewer cannot inflate), then the
    // key frame asked for starts a new one.
    agent.sendBinary(DEFLATED[3]);
    agent.sendBinary(DEFLATED[4]);
    await agent.expect('frame_ack 1003', (m) => m.type === 'frame_ack' && m.frame === 1003);
    await waitPixel(page, 3, 3, [10, 20, 30]);
    await waitPixel(page, 205, 15, [10, 20, 30]);
    const n = await checkPalettes(page);
    return `key frame after the reload drawn, ${n} Palette pixels exact`;
  });

  await step('g4. garbage and a bomb inside deflated messages lead to a Refresh; the viewer goes on', async () => {
    // The viewer asks for a key frame at most every REFRESH_GAP_MS; g3's viewer has just asked.
    await page.waitForTimeout(REFRESH_GAP_MS);
    agent.skipAll();
    // A valid header around bytes that are no deflate data (a block of the reserved type),
    // ending like a sync flush.
    agent.sendBinary(frame(1, 2, 1005, Buffer.from([0x07, 0x00, 0x00, 0xff, 0xff])));
    await agent.expect('refresh after bad deflate data', (m) => m.type === 'refresh');
    // The stream is dead: a deflated message before the next key frame is ignored.
    agent.sendBinary(DEFLATED[5]);
    agent.sendBinary(DEFLATED[6]);
    await agent.expect('frame_ack 1005', (m) => m.type === 'frame_ack' && m.frame === 1005);
    await waitPixel(page, 3, 3, [60, 60, 60]);
    await waitPixel(page, 205, 15, [60, 60, 60]);
    // A chunk that inflates far past the bound.
    await page.waitForTimeout(REFRESH_GAP_MS);
    agent.skipAll();
    agent.sendBinary(DEFLATED[7]);
    await agent.expect('refresh after an oversized message', (m) => m.type === 'refresh');
    agent.sendBinary(DEFLATED[8]);
    await agent.expect('frame_ack 1007', (m) => m.type === 'frame_ack' && m.frame === 1007);
    await waitPixel(page, 3, 3, [90, 30, 120]);
    const n = await checkPalettes(page);
    check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
    return `Refresh after garbage and after a bomb, key frames drawn, ${n} Palette pixels exact`;
  });

  await step('h. the round trip to the customer shows; expand, 1:1, view only', async () => {
    const stats = page.locator('[data-testid=screen-stats]').filter({ hasText: /\d+ ms$/ });
    await stats.waitFor();
    const statsText = (await stats.innerText()).trim();
    await page.setViewportSize({ width: 1024, height: 768 });
    await page.waitForTimeout(100);
    await shot(page, 'viewer-5-1024.png');
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.click('[data-testid=expand]');
    await page.locator('.side').waitFor({ state: 'hidden' });
    await page.waitForTimeout(100);
    await shot(page, 'viewer-6-expanded.png');
    await page.check('[data-testid=scale-1to1]');
    const box = await page.locator('[data-testid=screen-canvas]').boundingBox();
    check(Math.round(box.width) === W, `1:1 canvas is ${box.width} px wide`);
    await shot(page, 'viewer-6-expanded-actual-size.png');
    await page.check('[data-testid=scale-fit]');
    await page.check('[data-testid=view-only]');
    check(await page.locator('[data-testid=ctrl-alt-del]').isDisabled(), 'Ctrl-Alt-Del stays enabled in view-only');
    agent.skipAll();
    const at = await canvasPoint(page, 10, 10);
    await page.locator('[data-testid=screen-canvas]').click({ position: { x: at.x, y: at.y } });
    await page.uncheck('[data-testid=view-only]');
    const at2 = await canvasPoint(page, 300, 190);
    await page.locator('[data-testid=screen-canvas]').click({ position: { x: at2.x, y: at2.y } });
    const first = await agent.expect('the next pointer event', (m) => m.type === 'input' && m.event.kind === 'pointer' && m.event.buttons === 1);
    check(first.event.x === 300 && first.event.y === 190, `view-only leaked a click: ${JSON.stringify(first.event)}`);
    await page.click('[data-testid=expand]');
    await page.locator('.side').waitFor({ state: 'visible' });
    return `"${statsText}"; canvas ${Math.round(box.width)} px wide at 1:1; nothing sent in view-only`;
  });

  const LOCALES = [
    ['fr-FR', 'fr', 'Autorisé', 'Redemander', 'Client en ligne'],
    ['de-DE', 'de', 'Erlaubt', 'Erneut fragen', 'Kunde online'],
  ];
  for (const [locale, lang, granted, askAgain, online] of LOCALES) {
    await step(`i. the screen area in ${locale}`, async () => {
      const c = await newContext(locale);
      try {
        const p = await newPage(c, `console ${locale}`);
        agent.skipAll();
        await login(p);
        await p.locator(`[data-testid=session-tab][data-session-id="${sessionId}"]`).click();
        await p.locator('[data-testid=perm-view][data-state=granted]').waitFor();
        const chip = (await p.locator('[data-testid=perm-view]').innerText()).trim();
        check(chip === granted, `view chip says ${JSON.stringify(chip)}, expected ${granted}`);
        const lang2 = await p.locator('[data-testid=screen]').getAttribute('lang');
        check(lang2 === lang, `screen area lang ${lang2}`);
        const presence = (await p.locator('[data-testid=presence]').innerText()).trim();
        check(presence === online, `the console says ${JSON.stringify(presence)}, expected ${online}`);
        const htmlLang = await p.getAttribute('html', 'lang');
        check(htmlLang === lang, `<html lang> is ${htmlLang}`);
        await agent.expect('refresh for the new viewer', (m) => m.type === 'refresh');
        agent.sendBinary(keyFrame());
        await waitPixel(p, 3, 3, BG);
        await p.locator('[data-testid=screen-stats]').filter({ hasText: /fps/ }).waitFor();
        await shot(p, `viewer-7-${lang}.png`);
        // The customer takes control back: shown as revoked, with a button to ask again.
        if (lang === 'de') {
          agent.send({ type: 'permission', permission: 'control', granted: false });
          await p.locator('[data-testid=perm-control][data-state=revoked]').waitFor();
          const again = (await p.locator('[data-testid=request-control]').innerText()).trim();
          check(again === askAgain, `ask-again button says ${JSON.stringify(again)}`);
          await shot(p, 'viewer-8-de-revoked.png');
        }
        return `chip "${chip}", viewer-7-${lang}.png`;
      } finally {
        await c.close();
      }
    });
  }

  await step('j. the customer revokes view: the picture goes, "Ask again" shows', async () => {
    agent.send({ type: 'permission', permission: 'view', granted: false });
    await agent.expect('stream inactive', (m) => m.type === 'stream' && m.active === false);
    await page.locator('[data-testid=perm-view][data-state=revoked]').waitFor();
    await page.locator('[data-testid=viewer]').waitFor({ state: 'hidden' });
    const again = (await page.locator('[data-testid=request-view]').innerText()).trim();
    check(again === 'Ask again', `button says ${JSON.stringify(again)}`);
    await shot(page, 'viewer-9-revoked.png');
    const d = await requestJson('POST', `${BASE}/api/v1/auth/token`, { username: REP_USER, password: REP_PASSWORD });
    const s = await requestJson('GET', `${BASE}/api/v1/sessions/${sessionId}`, undefined, d.json.access_token);
    const st = s.json.stream;
    check(st.screen_frames >= 6 && st.delivered_frames >= 6, `counters ${JSON.stringify(st)}`);
    return `counters ${JSON.stringify(st)}`;
  });

  await step('k. the viewer\'s decoders refuse random and mutated bytes with their own error only', async () => {
    const r = await page.evaluate(async () => {
      const m = await import('/static/viewer.js');
      let x = 0x9e3779b9; // xorshift32, fixed seed: the same bytes every run
      const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
      const bytes = (n) => Uint8Array.from({ length: n }, () => rnd() & 0xff);
      // A valid update: 2 rectangles (solid, copy) on a 64x48 surface.
      const valid = Uint8Array.from([1, 3, 0, 64, 0, 48, 0, 0, 0, 7, 0, 2,
        0, 0, 0, 0, 0, 8, 0, 8, 0, 0, 0, 0, 3, 1, 2, 3,
        0, 8, 0, 0, 0, 8, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 0]);
      const ok = m.decodeUpdate(valid);
      if (ok.rects.length !== 2 || ok.frame !== 7 || !ok.key || !ok.end) return { bad: `valid update decoded as ${JSON.stringify(ok)}` };
      let refused = 0;
      let accepted = 0;
      const tryAll = (buf) => {
        for (const f of [() => m.decodeFrame(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)),
          () => m.decodeUpdate(buf), () => m.decodeCursor(buf)]) {
          try { f(); accepted += 1; } catch (e) {
            if (!(e instanceof m.ScreenError)) throw new Error(`${e && e.name}: ${e && e.message} on [${Array.from(buf.slice(0, 24))}]`);
            refused += 1;
          }
        }
      };
      try {
        for (let i = 0; i < 20000; i += 1) tryAll(bytes(rnd() % 160));
        for (let i = 0; i < 20000; i += 1) {
          const b = valid.slice();
          for (let k = 1 + (rnd() % 3); k > 0; k -= 1) b[rnd() % b.length] = rnd() & 0xff;
          tryAll(rnd() % 4 === 0 ? b.subarray(0, rnd() % b.length) : b);
        }
      } catch (e) {
        return { bad: e.message };
      }
      return { refused, accepted };
    });
    check(!r.bad, r.bad);
    return `${r.refused} refused, ${r.accepted} accepted, no other exception`;
  });

  await step('no script errors on the pages', async () => {
    check(pageErrors.length === 0, `uncaught errors:\n${pageErrors.join('\n')}`);
  }, { chain: false });
}

await finish(run, {
  overallMs: OVERALL_TIMEOUT,
  cleanup: async () => {
    if (agent) agent.close();
    if (browser) await browser.close();
  },
});
