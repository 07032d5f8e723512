// Browser test of the Lifeline portal and representative console against a running relay.
//
//   LIFELINE_URL=https://127.0.0.1:8443 LIFELINE_REP_USER=rep LIFELINE_REP_PASSWORD=... \
//   LIFELINE_ARTIFACTS=/tmp/lifeline-artifacts node tests/browser/console.mjs
//
// CHROMIUM (default /usr/bin/chromium) picks the browser. Node 20 has no global WebSocket,
// so the simulated customer agent uses the `ws` package. Exits 0 only if every step passed.

import https from 'node:https';
import http from 'node:http';
import WebSocket from 'ws';
import {
  BASE, check, env, finish, launch, pages, shot, step,
} from './harness.mjs';

const TIMEOUT = 10_000;          // every single wait
const OVERALL_TIMEOUT = 180_000; // the whole run
const CUSTOMER = 'Élodie Müller';
const COMPUTER = 'pc-lab-12';
const REP_TEXT = 'Bonjour, je vais vous aider';
const CUSTOMER_TEXT = 'Merci ! Grüße';

// ---------------------------------------------------------------------------------------------
// Inputs

const REP_USER = env('LIFELINE_REP_USER');
const REP_PASSWORD = env('LIFELINE_REP_PASSWORD');
const WS_BASE = BASE.replace(/^https:/, 'wss:').replace(/^http:/, 'ws:');

// ---------------------------------------------------------------------------------------------
// HTTP and the simulated agent

/** JSON request with the self-signed certificate accepted. */
function requestJson(method, url, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, {
      method,
      rejectUnauthorized: false,
      timeout: TIMEOUT,
      headers: {
        Accept: 'application/json',
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
    req.on('timeout', () => req.destroy(new Error(`${method} ${url} timed out after ${TIMEOUT} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

/** A customer agent on /ws/agent that records every message it receives. */
class Agent {
  constructor(url) {
    this.url = url;
    this.messages = [];   // {msg, used}
    this.waiters = [];
    this.closed = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { rejectUnauthorized: false, handshakeTimeout: TIMEOUT });
      this.ws = ws;
      ws.on('open', () => resolve());
      ws.on('error', (e) => { if (!this.opened) reject(e); });
      ws.on('unexpected-response', (_req, res) => reject(new Error(`/ws/agent upgrade answered HTTP ${res.statusCode}`)));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return; // screen frames etc.: not part of this test
        let msg;
        try { msg = JSON.parse(data.toString('utf8')); } catch { return; }
        if (msg && msg.type === 'ping') { this.send({ type: 'pong', nonce: msg.nonce }); return; }
        this.messages.push({ msg, used: false });
        this.wake();
      });
      ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        this.wake();
      });
      ws.once('open', () => { this.opened = true; });
    });
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  /** Waits for the first not yet consumed message that matches. */
  expect(what, pred, timeout = TIMEOUT) {
    return new Promise((resolve, reject) => {
      const tryNow = () => {
        const hit = this.messages.find((m) => !m.used && pred(m.msg));
        if (hit) { hit.used = true; done(); resolve(hit.msg); return true; }
        const bad = this.messages.find((m) => !m.used && (m.msg.type === 'refused' || m.msg.type === 'error'));
        if (bad) { bad.used = true; done(); reject(new Error(`agent expected ${what} but got ${JSON.stringify(bad.msg)}`)); return true; }
        if (this.closed) {
          done();
          reject(new Error(`agent socket closed (code ${this.closed.code} ${this.closed.reason}) while waiting for ${what}; received: ${this.seen()}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`agent did not receive ${what} within ${timeout} ms; received: ${this.seen()}`));
      }, timeout);
      const waiter = () => { tryNow(); };
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
      };
      this.waiters.push(waiter);
      tryNow();
    });
  }

  seen() {
    return this.messages.length ? this.messages.map((m) => JSON.stringify(m.msg)).join(', ') : '(nothing)';
  }

  close() {
    try { this.ws && this.ws.close(); } catch { /* closed */ }
  }
}

// ---------------------------------------------------------------------------------------------
// The run

let browser;
let agent;
const pageErrors = [];

async function newContext(options = {}) {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, ...options });
  ctx.setDefaultTimeout(TIMEOUT);
  ctx.setDefaultNavigationTimeout(TIMEOUT);
  return ctx;
}

async function newPage(ctx, label) {
  const page = await ctx.newPage();
  pages.add(page);
  page.on('close', () => pages.delete(page));
  page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
  return page;
}

async function run() {
  browser = await launch();

  // a. The portal in three languages, then a wrong key.
  for (const [locale, lang] of [['en-US', 'en'], ['fr-FR', 'fr'], ['de-DE', 'de']]) {
    await step(`a. portal in ${locale}`, async () => {
      const ctx = await newContext({ locale });
      try {
        const page = await newPage(ctx, `portal ${locale}`);
        const res = await page.goto(`${BASE}/`);
        check(res && res.ok(), `GET / answered HTTP ${res && res.status()}`);
        await shot(page, `portal-${lang}.png`);
        const htmlLang = await page.getAttribute('html', 'lang');
        check(htmlLang === lang, `<html lang> is ${JSON.stringify(htmlLang)}, expected "${lang}"`);
        const keyInputs = await page.locator('input[name=key]').count();
        check(keyInputs > 0, 'no input named "key" on the portal');
        return `lang=${htmlLang}, key input present, portal-${lang}.png`;
      } finally {
        await ctx.close();
      }
    }, { chain: false });
  }

  await step('a. portal rejects a wrong key', async () => {
    const ctx = await newContext({ locale: 'en-US' });
    try {
      const page = await newPage(ctx, 'portal wrong key');
      await page.goto(`${BASE}/`);
      const input = page.locator('input[name=key]').first();
      await input.fill('0000000');
      const form = page.locator('form:has(input[name=key])').first();
      const submit = form.locator('button[type=submit], input[type=submit], button:not([type])').first();
      if (await submit.count()) await submit.click();
      else await input.press('Enter');
      const err = page.locator('[data-testid=portal-error]');
      await err.first().waitFor({ state: 'visible' });
      const text = (await err.first().innerText()).trim();
      check(text.length > 0, 'the portal error element is empty');
      await shot(page, 'portal-error.png');
      return `"${text.slice(0, 80)}", portal-error.png`;
    } finally {
      await ctx.close();
    }
  }, { chain: false });

  // b.–g. The representative's console with a simulated customer.
  const ctx = await newContext({ locale: 'en-US' });
  const page = await newPage(ctx, 'console');
  page.on('dialog', (d) => d.accept());
  let key;
  let sessionId;

  await step('b. rep logs in and lands on /console', async () => {
    await page.goto(`${BASE}/login`);
    await page.fill('input[name=username]', REP_USER);
    await page.fill('input[name=password]', REP_PASSWORD);
    const form = page.locator('form:has(input[name=password])').first();
    const submit = form.locator('button[type=submit], input[type=submit], button:not([type])').first();
    const landed = page.waitForURL((u) => new URL(u).pathname === '/console');
    landed.catch(() => {}); // observed below; avoids an unhandled rejection if the click throws
    if (await submit.count()) await submit.click();
    else await page.press('input[name=password]', 'Enter');
    await landed.catch(async () => {
      const body = (await page.locator('body').innerText().catch(() => '')).replace(/\s+/g, ' ').slice(0, 200);
      throw new Error(`login did not lead to /console within ${TIMEOUT} ms; the page is ${page.url()} showing: ${JSON.stringify(body)}`);
    });
    await page.locator('[data-testid=generate-key]').waitFor({ state: 'visible' });
    await page.locator('[data-testid=ws-status][data-state=open]').waitFor({ state: 'attached' });
    const name = (await page.locator('[data-testid=me-name]').innerText()).trim();
    check(name.length > 0, 'the header shows no representative name');
    const csrf = await page.locator('form[action="/logout"] input[name=csrf]').inputValue();
    check(csrf.length > 0, 'the logout form has no CSRF token');
    // The test relay has no licence manager: it runs on the evaluation licence and says so.
    const evaluation = page.locator('[data-testid=evaluation]');
    await evaluation.waitFor({ state: 'visible' });
    const evalText = (await evaluation.innerText()).trim();
    check(/evaluation licence/i.test(evalText), `the evaluation banner says ${JSON.stringify(evalText)}`);
    await shot(page, 'console-login.png');
    return `signed in as "${name}", live updates connected, evaluation banner "${evalText}", console-login.png`;
  });

  await step('c. generate a session key for the general queue', async () => {
    await page.check('input[name=queue][value=general]');
    await page.click('[data-testid=generate-key]');
    const value = page.locator('[data-testid=key-value]');
    await value.waitFor({ state: 'visible' });
    const shown = (await value.innerText()).trim();
    key = shown.replace(/\s+/g, '');
    check(/^\d{7}$/.test(key), `key shown as ${JSON.stringify(shown)} is not 7 digits`);
    check(/^\d{3} \d{4}$/.test(shown), `key is shown as ${JSON.stringify(shown)}, expected "123 4567"`);
    const link = (await page.locator('[data-testid=key-link]').innerText()).trim();
    check(/^https?:\/\//.test(link), `invitation link ${JSON.stringify(link)} is not a URL`);
    const email = (await page.locator('[data-testid=key-email]').innerText()).trim();
    check(email.length > 0, 'the e-mail text is empty');
    await shot(page, 'console-key.png');
    return `key ${shown}, link ${link}`;
  });

  await step('d. customer joins the general queue (simulated agent)', async () => {
    // Marks the page so step e can tell the queue updated without a reload.
    await page.evaluate(() => { window.__lifelineNoReload = true; });
    const r = await requestJson('POST', `${BASE}/api/v1/portal/tickets`, { key, name: CUSTOMER });
    check(r.status >= 200 && r.status < 300, `POST /api/v1/portal/tickets answered HTTP ${r.status}: ${r.text.slice(0, 300)}`);
    const t = r.json && r.json.ticket;
    check(t && typeof t === 'object', `ticket response has no "ticket" object: ${r.text.slice(0, 300)}`);
    for (const f of ['site_url', 'cert_sha256', 'ticket']) check(t[f] != null, `ticket has no "${f}": ${r.text.slice(0, 300)}`);
    agent = new Agent(`${WS_BASE}/ws/agent`);
    await agent.open();
    agent.send({
      type: 'hello',
      version: { major: 1, minor: 0 },
      auth: { kind: 'ticket', ticket: t.ticket },
      info: { customer_name: CUSTOMER, computer: COMPUTER, platform: 'Linux x86_64', language: 'fr' },
    });
    const welcome = await agent.expect('welcome', (m) => m.type === 'welcome');
    agent.send({ type: 'accept_terms' });
    await agent.expect('queue position 1', (m) => m.type === 'queue' && m.position === 1);
    return `welcome for session ${welcome.session_id}, queue position 1`;
  });

  await step('e. entry appears live in the general queue and the rep accepts it', async () => {
    const entry = page.locator('[data-testid=queue-general] [data-testid=queue-entry]', { hasText: CUSTOMER });
    await entry.first().waitFor({ state: 'visible' });
    const text = await entry.first().innerText();
    check(text.includes(COMPUTER), `queue entry does not show the computer: ${JSON.stringify(text)}`);
    check(await page.evaluate(() => window.__lifelineNoReload === true), 'the console page was reloaded');
    sessionId = await entry.first().getAttribute('data-session-id');
    check(sessionId, 'queue entry has no data-session-id');
    await shot(page, 'console-queue.png');
    await entry.first().locator('[data-testid=accept]').click();
    const joined = await agent.expect('rep_joined', (m) => m.type === 'rep_joined');
    check(typeof joined.name === 'string' && joined.name.length > 0, `rep_joined without a name: ${JSON.stringify(joined)}`);
    await page.locator('[data-testid=chat-log]').waitFor({ state: 'visible' });
    return `session ${sessionId}, agent saw rep "${joined.name}"`;
  });

  await step('f. chat both ways', async () => {
    const input = page.locator('[data-testid=chat-input]');
    await input.fill(REP_TEXT);
    await input.press('Enter');
    await agent.expect(`chat "${REP_TEXT}" from the rep`, (m) => m.type === 'chat' && m.from === 'rep' && m.text === REP_TEXT);
    check((await input.inputValue()) === '', 'the chat input was not cleared after sending');
    agent.send({ type: 'chat', text: CUSTOMER_TEXT });
    const log = page.locator('[data-testid=chat-log]');
    await log.locator('.msg-customer', { hasText: CUSTOMER_TEXT }).first().waitFor({ state: 'visible' })
      .catch(async () => {
        throw new Error(`the customer's message did not appear in the chat log; it shows: ${JSON.stringify((await log.innerText()).slice(0, 400))}`);
      });
    const logText = await log.innerText();
    check(logText.includes(REP_TEXT), 'the rep\'s own message is not in the chat log');
    await shot(page, 'console-chat.png');
    await page.setViewportSize({ width: 1024, height: 768 });
    await shot(page, 'console-chat-1024.png');
    await page.setViewportSize({ width: 1280, height: 800 });
    return 'rep → customer and customer → rep, console-chat.png';
  });

  await step('g. rep ends the session; it shows in recent sessions', async () => {
    await page.click('[data-testid=end-session]');
    const ended = await agent.expect('ended', (m) => m.type === 'ended');
    const recent = page.locator(`[data-testid=recent-sessions] [data-session-id="${sessionId}"]`);
    await recent.first().waitFor({ state: 'visible' });
    await page.locator('[data-testid=chat-input]').waitFor({ state: 'visible' });
    check(await page.locator('[data-testid=chat-input]').isDisabled(), 'the chat input is still enabled after the end');
    await shot(page, 'console-ended.png');
    return `agent saw ended by ${ended.by}${ended.reason ? ` (${ended.reason})` : ''}`;
  });

  await step('g. the recent session shows its stored transcript', async () => {
    await page.locator(`[data-testid=recent-sessions] [data-session-id="${sessionId}"] button`).first().click();
    const dialog = page.locator('[data-testid=transcript]');
    await dialog.waitFor({ state: 'visible' });
    const log = dialog.locator('[data-testid=transcript-log]');
    await log.locator('.msg', { hasText: CUSTOMER_TEXT }).first().waitFor({ state: 'visible' });
    check((await log.innerText()).includes(REP_TEXT), 'the stored transcript lacks the rep\'s message');
    await shot(page, 'console-transcript.png');
    await dialog.locator('[data-testid=transcript-close]').click();
    return 'transcript with both messages, console-transcript.png';
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
