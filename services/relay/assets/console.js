// Lifeline representative console.
//
// Plain ES2020 module, no dependencies, no build step. The page acts through the REST API
// (/api/v1/...) with the session cookie and the CSRF token from /api/v1/me; live changes
// (queues, chat, presence, ends) arrive on the /ws/console WebSocket, which is reconnected
// with backoff when it drops.
//
// Texts are in English, French and German (texts.js, chosen from the browser's languages).
//
// Everything that comes from the server (customer names, chat, event details) is untrusted:
// it only ever reaches the DOM through textContent, text nodes or attribute setters.
//
// Sessions of a team queue show in "Team queues" (the relay sends only those of the user's
// teams, or all of them to administrators). Administrators also get the "Deployment" page
// (deploy.js, `#deployment`): support buttons and deployment keys.
//
// The "Screen" area of a session (permission requests, the live viewer) is viewer.js; this
// file keeps each session's permission states (from the session detail and the socket's
// `permission` events) and tells the screen area which session is shown.

import { ScreenArea } from '/static/viewer.js';
import { FilePanel, fmtBytes } from '/static/files.js';
import { SystemInfoArea } from '/static/sysinfo.js';
import { ShellArea, shellEventDetail, transcriptLink } from '/static/shell.js';
import { InstallArea } from '/static/install.js';
import { t, localise } from '/static/texts.js';
import { JumpPanel } from '/static/jump.js';
import { DeploymentPage } from '/static/deploy.js';
import { byId, h, safeUrl } from '/static/dom.js';

const MAX_CHAT_CHARS = 4000;
const WS_BACKOFF_MIN_MS = 1000;
const WS_BACKOFF_MAX_MS = 30000;
const RECENT_LIMIT = 50;

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

const str = (v, fallback = '') => (v == null ? fallback : String(v));

// ---------------------------------------------------------------------------------------------
// Time formatting

const pad2 = (n) => String(n).padStart(2, '0');

/** ms since epoch, an ISO string or null → Date or null. */
function toDate(v) {
  if (v == null || v === '') return null;
  const d = typeof v === 'number' ? new Date(v) : new Date(Date.parse(String(v)));
  return Number.isNaN(d.getTime()) ? null : d;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const shortDateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});

function fmtTime(v) { const d = toDate(v); return d ? timeFmt.format(d) : ''; }
function fmtFull(v) { const d = toDate(v); return d ? fullFmt.format(d) : ''; }
function fmtDateTime(v) { const d = toDate(v); return d ? dateTimeFmt.format(d) : '—'; }

function fmtWhen(v) {
  const d = toDate(v);
  if (!d) return '';
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return t.today(timeFmt.format(d));
  return shortDateTimeFmt.format(d);
}

/** 125 000 ms → "2 min 05 s"; 3 h → "3 h 00 min". */
function fmtDuration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (hours > 0) return `${hours} h ${pad2(min)} min`;
  if (min > 0) return `${min} min ${pad2(sec)} s`;
  return `${sec} s`;
}

// ---------------------------------------------------------------------------------------------
// State

const state = {
  me: null,                 // {username, display_name, role, csrf_token}
  entries: new Map(),       // session_id → QueueEntry
  sessions: new Map(),      // session_id → Session (tabs)
  order: [],                // tab order of session ids
  current: null,            // selected tab
  recent: [],
  key: null,                // last generated key response
  ws: null,
  wsAttempt: 0,
  wsTimer: null,
  wsState: 'connecting',
  unloading: false,
  fetching: new Map(),      // session_id → Promise of a detail fetch
  accepting: new Set(),
  ending: new Set(),
  newEntryIds: new Set(),   // entries to highlight briefly
  gotSnapshot: false,
  screen: null,             // ScreenArea of the session pane
  files: null,              // FilePanel of the session pane
};

/**
 * A session open as a tab.
 * @typedef {{id: string, detail: object, messages: Msg[], online: boolean, state: string,
 *   endedBy: string|null, reason: string|null, unread: number, draft: string}} Session
 * @typedef {{id?: any, sender: string, name: string, body: string, at: number,
 *   local?: boolean, pending?: boolean, awaitEcho?: boolean, failed?: boolean}} Msg
 */

// ---------------------------------------------------------------------------------------------
// REST API

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function goLogin() {
  if (state.unloading) return;
  state.unloading = true;
  location.assign('/login');
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD') {
    headers['Content-Type'] = 'application/json';
    if (state.me) headers['X-CSRF-Token'] = state.me.csrf_token;
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError('network', t.networkError, 0);
  }
  let data = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (res.status === 401) {
    goLogin();
    throw new ApiError('unauthorized', t.loginExpired, 401);
  }
  if (!res.ok) {
    const message = data && typeof data.message === 'string' && data.message
      ? data.message
      : t.requestFailed(res.status);
    throw new ApiError(data && data.error ? String(data.error) : `http_${res.status}`, message, res.status);
  }
  return data;
}

const sessionPath = (id, suffix = '') => `/api/v1/sessions/${encodeURIComponent(id)}${suffix}`;

// ---------------------------------------------------------------------------------------------
// Toasts

function toast(message, kind = 'error') {
  const box = byId('toasts');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-testid': 'toast' },
    h('span', { class: 'toast-text', text: message }),
    h('button', { type: 'button', class: 'toast-close', 'aria-label': t.dismiss, text: '×', onclick: () => el.remove() }));
  box.append(el);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 3000);
}

function reportError(err) {
  if (err && err.status === 401) return;
  toast(err && err.message ? err.message : String(err));
}

// ---------------------------------------------------------------------------------------------
// Clipboard

async function copyText(text, button) {
  let ok = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      ok = true;
    }
  } catch { ok = false; }
  if (!ok) {
    const ta = h('textarea', { class: 'sr-only', 'aria-hidden': 'true', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  if (button) {
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? t.copied : t.copyFailed;
    button.classList.toggle('is-copied', ok);
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(() => {
      button.textContent = label;
      button.classList.remove('is-copied');
    }, 1600);
  }
}

// ---------------------------------------------------------------------------------------------
// Header / me

async function loadMe() {
  const me = await api('GET', '/api/v1/me');
  state.me = {
    username: str(me.username),
    display_name: str(me.display_name) || str(me.username),
    role: str(me.role),
    csrf_token: str(me.csrf_token),
    teams: Array.isArray(me.teams) ? me.teams.map(String) : [],
  };
  // A session key can go to one of the user's teams.
  const teamSelect = byId('key-team');
  teamSelect.replaceChildren(...state.me.teams.map((n) => h('option', { value: n, text: n })));
  byId('key-team-choice').hidden = state.me.teams.length === 0;
  byId('logout-csrf').value = state.me.csrf_token;
  const evaluation = byId('evaluation');
  evaluation.hidden = !me.evaluation;
  evaluation.replaceChildren();
  if (me.evaluation) {
    evaluation.append(h('strong', {}, t.evaluationBanner), ' ',
      h('span', { class: 'evaluation-why' }, str(me.evaluation)));
  }
  byId('me-name').textContent = state.me.display_name;
  byId('me-avatar').textContent = initials(state.me.display_name);
  byId('me').title = state.me.role
    ? `${state.me.username} · ${state.me.role}`
    : state.me.username;
}

function initials(name) {
  const parts = str(name).trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? [parts[0], parts[parts.length - 1]] : parts;
  return letters.map((p) => Array.from(p)[0] || '').join('').toUpperCase() || '?';
}

// ---------------------------------------------------------------------------------------------
// Session keys

function formatKey(key) {
  const k = str(key).replace(/\s+/g, '');
  return k.length === 7 ? `${k.slice(0, 3)} ${k.slice(3)}` : k;
}

function initKeyForm() {
  const form = byId('key-form');
  const err = byId('key-error');
  const button = form.querySelector('[data-testid=generate-key]');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const chosen = form.elements.queue.value;
    const queue = chosen === 'general' || chosen === 'team' ? chosen : 'personal';
    const team = queue === 'team' ? str(byId('key-team').value) : null;
    const ttlInput = byId('ttl');
    const ttl = Number(ttlInput.value);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 1440) {
      err.textContent = t.ttlInvalid;
      err.hidden = false;
      ttlInput.focus();
      return;
    }
    button.disabled = true;
    button.textContent = t.generating;
    try {
      const body = { queue, ttl_minutes: ttl };
      if (team) body.team = team;
      const r = await api('POST', '/api/v1/session-keys', body);
      state.key = { ...r, queue, team };
      renderKey();
    } catch (e) {
      if (e.status !== 401) {
        err.textContent = e.message;
        err.hidden = false;
      }
    } finally {
      button.disabled = false;
      button.textContent = t.generateKey;
    }
  });

  form.addEventListener('change', () => {
    byId('key-team-row').hidden = form.elements.queue.value !== 'team';
  });

  byId('key-result').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-copy]');
    if (!b || !state.key) return;
    const k = state.key;
    const what = b.dataset.copy;
    const text = what === 'key' ? str(k.key)
      : what === 'link' ? str(k.url)
        : what === 'subject' ? str(k.email_subject)
          : str(k.email_body);
    copyText(text, b);
  });
}

function renderKey() {
  const k = state.key;
  const box = byId('key-result');
  if (!k) { box.hidden = true; return; }
  box.hidden = false;
  byId('key-value').textContent = formatKey(k.key);
  byId('key-value').setAttribute('aria-label', t.sessionKeyLabel(str(k.key).split('').join(' ')));
  const link = byId('key-link');
  const url = safeUrl(k.url);
  link.textContent = str(k.url);
  if (url) link.href = url; else link.removeAttribute('href');
  byId('key-email-subject').textContent = str(k.email_subject);
  byId('key-email-body').textContent = str(k.email_body);
  const mailto = `mailto:?subject=${encodeURIComponent(str(k.email_subject))}&body=${encodeURIComponent(str(k.email_body))}`;
  byId('key-mailto').href = mailto;
  tickKey();
  box.classList.remove('flash');
  void box.offsetWidth; // restart the animation
  box.classList.add('flash');
}

function tickKey() {
  const k = state.key;
  if (!k) return;
  const exp = toDate(k.expires_at);
  const el = byId('key-expiry');
  const queue = k.queue === 'general' ? t.generalQueue : k.queue === 'team' ? t.queueTeam(str(k.team)) : t.myQueue;
  if (!exp) { el.textContent = queue; return; }
  const left = exp.getTime() - Date.now();
  if (left <= 0) {
    el.textContent = t.keyExpired(queue, fmtTime(exp));
    el.classList.add('expired');
  } else {
    el.textContent = t.keyValid(queue, fmtTime(exp), fmtDuration(left));
    el.classList.remove('expired');
  }
}

// ---------------------------------------------------------------------------------------------
// Queues

const isMine = (e) => !!(e && e.state === 'active' && state.me && e.accepted_by === state.me.display_name);

function normEntry(e) {
  if (!e || e.session_id == null) return null;
  return {
    session_id: String(e.session_id),
    queue: e.queue === 'personal' || e.queue === 'team' ? e.queue : 'general',
    owner: e.owner == null ? null : String(e.owner),
    team: e.team == null ? null : String(e.team),
    customer_name: str(e.customer_name),
    computer: str(e.computer),
    platform: str(e.platform),
    state: str(e.state),
    waiting_since: Number(e.waiting_since) || null,
    accepted_by: e.accepted_by == null ? null : String(e.accepted_by),
  };
}

const entryEls = new Map(); // session_id → <li>

function entryElement(e) {
  let li = entryEls.get(e.session_id);
  if (!li) {
    const accept = h('button', { type: 'button', class: 'btn btn-primary btn-sm', 'data-testid': 'accept', text: t.accept });
    li = h('li', { class: 'entry', 'data-testid': 'queue-entry', tabindex: '-1' },
      h('div', { class: 'entry-main' },
        h('div', { class: 'entry-name' }),
        h('div', { class: 'entry-meta' })),
      h('div', { class: 'entry-side' },
        h('span', { class: 'entry-wait', title: t.timeWaiting }),
        accept));
    li.dataset.sessionId = e.session_id;
    accept.addEventListener('click', (ev) => { ev.stopPropagation(); acceptSession(li.dataset.sessionId); });
    li.addEventListener('dblclick', (ev) => {
      if (ev.target.closest('button')) return;
      acceptSession(li.dataset.sessionId);
    });
    entryEls.set(e.session_id, li);
  }
  li.querySelector('.entry-name').textContent = e.customer_name || t.unnamedCustomer;
  const meta = [e.computer, e.platform].filter(Boolean).join(' · ');
  const metaEl = li.querySelector('.entry-meta');
  metaEl.textContent = meta || t.unknownComputer;
  if (e.queue === 'personal' && e.owner && state.me && e.owner !== state.me.display_name) {
    metaEl.append(h('span', { class: 'entry-owner', text: t.forOwner(e.owner) }));
  }
  if (e.queue === 'team' && e.team) {
    metaEl.append(h('span', { class: 'entry-owner entry-team', 'data-testid': 'entry-team', text: t.forTeam(e.team) }));
  }
  li.dataset.waitingSince = e.waiting_since == null ? '' : String(e.waiting_since);
  li.title = t.dblClickAccept(e.customer_name || t.customer);
  const btn = li.querySelector('[data-testid=accept]');
  const busy = state.accepting.has(e.session_id);
  btn.disabled = busy;
  btn.textContent = busy ? t.accepting : t.accept;
  btn.setAttribute('aria-label', t.acceptName(e.customer_name || t.customer));
  if (state.newEntryIds.has(e.session_id)) {
    state.newEntryIds.delete(e.session_id);
    li.classList.add('is-new');
    setTimeout(() => li.classList.remove('is-new'), 2500);
  }
  return li;
}

function renderQueues() {
  const waiting = [...state.entries.values()]
    .filter((e) => e.state === 'waiting')
    .sort((a, b) => (a.waiting_since || 0) - (b.waiting_since || 0));
  const teamEntries = waiting.some((e) => e.queue === 'team');
  byId('team-card').hidden = !teamEntries && !(state.me && state.me.teams && state.me.teams.length);
  for (const q of ['personal', 'general', 'team']) {
    const ul = byId(`queue-${q}`);
    const items = waiting.filter((e) => e.queue === q).map(entryElement);
    const same = items.length === ul.children.length && items.every((li, i) => ul.children[i] === li);
    if (!same) ul.replaceChildren(...items);
    byId(`count-${q}`).textContent = String(items.length);
    byId(`count-${q}`).classList.toggle('has-items', items.length > 0);
    byId(`empty-${q}`).hidden = items.length > 0;
  }
  // Forget elements of entries that are gone.
  for (const id of [...entryEls.keys()]) {
    const e = state.entries.get(id);
    if (!e || e.state !== 'waiting') entryEls.delete(id);
  }
  tickQueues();
  document.title = t.docTitle(waiting.length);
}

function tickQueues() {
  const now = Date.now();
  for (const li of document.querySelectorAll('.entry[data-waiting-since]')) {
    const since = Number(li.dataset.waitingSince);
    const el = li.querySelector('.entry-wait');
    el.textContent = since ? fmtDuration(now - since) : '';
    li.classList.toggle('is-long', since > 0 && now - since > 5 * 60 * 1000);
  }
}

function setEntries(list) {
  const before = new Set(state.entries.keys());
  state.entries = new Map();
  for (const raw of Array.isArray(list) ? list : []) {
    const e = normEntry(raw);
    if (e) state.entries.set(e.session_id, e);
  }
  for (const id of state.entries.keys()) if (before.size && !before.has(id)) state.newEntryIds.add(id);
  renderQueues();
  for (const e of state.entries.values()) {
    if (isMine(e)) ensureSession(e.session_id);
  }
}

async function acceptSession(id) {
  if (!id || state.accepting.has(id)) return;
  if (state.sessions.has(id) && state.sessions.get(id).state === 'active') { selectTab(id); return; }
  state.accepting.add(id);
  renderQueues();
  try {
    const detail = await api('POST', sessionPath(id, '/accept'));
    const e = state.entries.get(id);
    if (e) {
      e.state = 'active';
      e.accepted_by = state.me ? state.me.display_name : e.accepted_by;
    }
    openSession(detail, { focus: true });
  } catch (e) {
    reportError(e);
  } finally {
    state.accepting.delete(id);
    renderQueues();
  }
}

// ---------------------------------------------------------------------------------------------
// Sessions (tabs)

function msgFromDetail(m) {
  return {
    id: m.id,
    sender: str(m.sender, 'system'),
    name: str(m.sender_name),
    body: str(m.body),
    at: Number(m.at) || 0,
  };
}

const msgKey = (m) => `${m.sender}\u0000${m.at}\u0000${m.body}`;

/** Adds messages to a session, skipping ones it already has and matching echoes of our own. */
function mergeMessages(sess, incoming) {
  let added = 0;
  for (const m of incoming) {
    if (m.id != null && sess.messages.some((x) => x.id != null && String(x.id) === String(m.id))) continue;
    const same = sess.messages.find((x) => !x.local && msgKey(x) === msgKey(m));
    if (same) { if (same.id == null && m.id != null) same.id = m.id; continue; }
    if (m.sender === 'rep') {
      // Our own message coming back (over the socket or in a fetched transcript).
      const mine = sess.messages.find((x) => x.local && !x.failed && (x.pending || x.awaitEcho) && x.body === m.body
        && (m.id == null || x.id == null || String(x.id) === String(m.id)));
      if (mine) {
        mine.pending = false;
        mine.awaitEcho = false;
        mine.local = false;
        if (m.at) mine.at = m.at;
        if (mine.id == null && m.id != null) mine.id = m.id;
        if (m.name) mine.name = m.name;
        continue;
      }
      const known = m.id != null && sess.messages.find((x) => x.local && x.id != null && String(x.id) === String(m.id));
      if (known) continue;
    }
    sess.messages.push(m);
    added += 1;
  }
  sess.messages.sort((a, b) => (a.at || 0) - (b.at || 0));
  return added;
}

function openSession(detail, { focus = false } = {}) {
  if (!detail || detail.id == null) return null;
  const id = String(detail.id);
  let sess = state.sessions.get(id);
  if (!sess) {
    sess = {
      id, detail, messages: [], online: !!detail.online, state: str(detail.state),
      endedBy: null, reason: null, unread: 0, draft: '', grants: {},
    };
    state.sessions.set(id, sess);
    state.order.push(id);
  }
  sess.detail = { ...sess.detail, ...detail };
  sess.online = !!detail.online;
  if (sess.state !== 'ended') sess.state = str(detail.state);
  if (detail.state === 'ended') {
    sess.state = 'ended';
    sess.online = false;
    sess.endedBy = detail.ended_by == null ? sess.endedBy : String(detail.ended_by);
    sess.reason = detail.end_reason == null ? sess.reason : String(detail.end_reason);
  }
  if (Array.isArray(detail.messages)) mergeMessages(sess, detail.messages.map(msgFromDetail));
  if (Array.isArray(detail.permissions)) {
    for (const p of detail.permissions) {
      if (p && typeof p.permission === 'string' && typeof p.state === 'string') sess.grants[p.permission] = p.state;
    }
  }
  if (focus || !state.current) state.current = id;
  renderTabs();
  renderSession({ scrollToEnd: focus });
  if (focus && sess.state !== 'ended') byId('chat-input').focus();
  return sess;
}

/** Opens (or refreshes) a session tab from GET /api/v1/sessions/{id}. */
function ensureSession(id, { refresh = false } = {}) {
  if (state.sessions.has(id) && !refresh) return Promise.resolve(state.sessions.get(id));
  if (state.fetching.has(id)) return state.fetching.get(id);
  const p = api('GET', sessionPath(id))
    .then((detail) => {
      // Do not reopen a tab the rep closed for a session that is over.
      if (!state.sessions.has(id) && detail && detail.state === 'ended') return null;
      return openSession(detail);
    })
    .catch((e) => { if (e.status !== 404) reportError(e); return null; })
    .finally(() => state.fetching.delete(id));
  state.fetching.set(id, p);
  return p;
}

function selectTab(id) {
  if (!state.sessions.has(id)) return;
  state.current = id;
  state.sessions.get(id).unread = 0;
  renderTabs();
  renderSession({ scrollToEnd: true });
  const sess = state.sessions.get(id);
  if (sess.state !== 'ended') byId('chat-input').focus();
}

function closeTab(id) {
  const sess = state.sessions.get(id);
  if (!sess || sess.state !== 'ended') return;
  state.sessions.delete(id);
  const i = state.order.indexOf(id);
  state.order.splice(i, 1);
  if (state.current === id) state.current = state.order[Math.min(i, state.order.length - 1)] || null;
  renderTabs();
  renderSession({ scrollToEnd: true });
}

function renderTabs() {
  const bar = byId('tabs');
  bar.hidden = state.order.length === 0;
  bar.replaceChildren(...state.order.map((id) => {
    const s = state.sessions.get(id);
    const selected = id === state.current;
    const name = str(s.detail.customer_name) || t.customer;
    const dotClass = s.state === 'ended' ? 'ended' : s.online ? 'online' : 'offline';
    const tab = h('button', {
      type: 'button', role: 'tab', class: `tab${selected ? ' is-selected' : ''}${s.state === 'ended' ? ' is-ended' : ''}`,
      'aria-selected': selected ? 'true' : 'false', 'data-testid': 'session-tab', tabindex: selected ? '0' : '-1',
      onclick: () => selectTab(id),
    },
    h('span', { class: `dot ${dotClass}`, 'aria-hidden': 'true' }),
    h('span', { class: 'tab-name', text: name }),
    s.unread > 0 && !selected ? h('span', { class: 'badge', text: String(s.unread), 'aria-label': t.unread(s.unread) }) : null);
    tab.dataset.sessionId = id;
    return tab;
  }));
}

function renderSession({ scrollToEnd = false } = {}) {
  const sess = state.current ? state.sessions.get(state.current) : null;
  byId('no-session').hidden = !!sess;
  const pane = byId('session');
  pane.hidden = !sess;
  if (state.screen) state.screen.show(sess || null);
  if (state.files) state.files.show(sess || null);
  if (state.sysinfo) state.sysinfo.show(sess || null);
  if (state.shell) state.shell.show(sess || null);
  if (state.install) state.install.show(sess || null);
  if (!sess) return;
  if (pane.dataset.sessionId !== sess.id) {
    // Keep each tab's unsent draft.
    const prev = state.sessions.get(pane.dataset.sessionId || '');
    if (prev) prev.draft = byId('chat-input').value;
    byId('chat-input').value = sess.draft || '';
    pane.dataset.sessionId = sess.id;
    scrollToEnd = true;
  }
  const d = sess.detail;
  byId('s-name').textContent = str(d.customer_name) || t.customer;
  const meta = [d.computer, d.platform, d.language ? t.metaLanguage(str(d.language)) : null, d.remote_addr ? t.metaFrom(str(d.remote_addr)) : null]
    .filter(Boolean).map(String);
  const accepted = toDate(d.accepted_at);
  if (accepted) meta.push(t.metaAccepted(fmtTime(accepted)));
  byId('s-meta').textContent = meta.join(' · ');
  byId('s-meta').title = meta.join(' · ');

  const ended = sess.state === 'ended';
  const presence = byId('s-presence');
  presence.dataset.online = ended ? 'ended' : sess.online ? 'true' : 'false';
  presence.textContent = ended ? t.presenceEnded : sess.online ? t.customerOnline : t.customerOffline;

  const endBtn = byId('s-end');
  endBtn.hidden = ended;
  endBtn.disabled = state.ending.has(sess.id) || sess.state !== 'active';
  endBtn.textContent = state.ending.has(sess.id) ? t.ending : t.endSession;
  byId('s-close').hidden = !ended;

  const banner = byId('s-banner');
  if (ended) {
    const who = sess.endedBy === 'customer' ? t.byCustomer
      : sess.endedBy === 'rep' ? t.byYou
        : sess.endedBy === 'system' ? t.byAppliance : null;
    const when = toDate(d.ended_at);
    let text = t.endedBanner(when ? fmtTime(when) : null, who);
    // Skip reasons that only repeat who ended it.
    if (sess.reason && !/^ended by\b/i.test(sess.reason.trim())) text += ` ${sess.reason}`;
    banner.textContent = text;
    banner.className = 'banner banner-ended';
    banner.hidden = false;
  } else if (sess.state !== 'active') {
    banner.textContent = t.waitingActive;
    banner.className = 'banner';
    banner.hidden = false;
  } else if (!sess.online) {
    banner.textContent = t.offlineBanner;
    banner.className = 'banner banner-warn';
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }

  const input = byId('chat-input');
  const send = byId('composer').querySelector('[data-testid=chat-send]');
  input.disabled = ended;
  send.disabled = ended;
  input.placeholder = ended ? t.endedPlaceholder : t.composePlaceholder;

  renderChat(byId('chat-log'), sess.messages, { scrollToEnd });
}

function chatItem(m) {
  const sender = ['rep', 'customer', 'system'].includes(m.sender) ? m.sender : 'system';
  const at = toDate(m.at);
  const li = h('li', { class: `msg msg-${sender}${m.pending ? ' is-pending' : ''}${m.failed ? ' is-failed' : ''}`, 'data-sender': sender });
  if (sender === 'system') {
    li.append(h('span', { class: 'msg-body', text: m.body }),
      at ? h('time', { class: 'msg-time', datetime: at.toISOString(), title: fmtFull(at), text: fmtTime(at) }) : null);
    return li;
  }
  const name = m.name || (sender === 'rep' ? t.you : t.customer);
  li.append(
    h('div', { class: 'msg-head' },
      h('span', { class: 'msg-name', text: name }),
      at ? h('time', { class: 'msg-time', datetime: at.toISOString(), title: fmtFull(at), text: fmtTime(at) }) : null,
      m.pending ? h('span', { class: 'msg-state', text: t.sending }) : null,
      m.failed ? h('span', { class: 'msg-state msg-failed', text: t.notDelivered }) : null),
    h('div', { class: 'msg-body', text: m.body }));
  return li;
}

function renderChat(ol, messages, { scrollToEnd = false } = {}) {
  const nearEnd = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 60;
  const prevTop = ol.scrollTop;
  const items = [];
  let lastDay = null;
  for (const m of messages) {
    const d = toDate(m.at);
    const day = d ? d.toDateString() : null;
    if (day && day !== lastDay && lastDay !== null) {
      items.push(h('li', { class: 'day', text: new Intl.DateTimeFormat(undefined, { dateStyle: 'full' }).format(d) }));
    }
    if (day) lastDay = day;
    items.push(chatItem(m));
  }
  if (!messages.length) items.push(h('li', { class: 'chat-empty', text: t.noMessagesYet }));
  ol.replaceChildren(...items);
  ol.scrollTop = scrollToEnd || nearEnd ? ol.scrollHeight : prevTop;
}

async function sendChat(ev) {
  ev.preventDefault();
  const sess = state.current ? state.sessions.get(state.current) : null;
  const input = byId('chat-input');
  const text = input.value;
  if (!sess || sess.state === 'ended') return;
  if (!text.trim()) return;
  if (Array.from(text).length > MAX_CHAT_CHARS) {
    toast(t.tooLong(MAX_CHAT_CHARS));
    return;
  }
  input.value = '';
  sess.draft = '';
  const local = {
    id: null, sender: 'rep', name: state.me ? state.me.display_name : '', body: text, at: Date.now(),
    local: true, pending: true,
  };
  sess.messages.push(local);
  if (sess.id === state.current) renderChat(byId('chat-log'), sess.messages, { scrollToEnd: true });
  try {
    const r = await api('POST', sessionPath(sess.id, '/messages'), { text });
    if (r && r.id != null && local.id == null) local.id = r.id;
    if (r && r.at != null && Number(r.at)) local.at = Number(r.at);
    if (local.pending) { local.pending = false; if (local.local) local.awaitEcho = true; }
  } catch (e) {
    local.pending = false;
    local.failed = true;
    if (!input.value) { input.value = text; sess.draft = text; }
    reportError(e);
  }
  sess.messages.sort((a, b) => (a.at || 0) - (b.at || 0));
  if (sess.id === state.current) renderChat(byId('chat-log'), sess.messages, { scrollToEnd: true });
}

async function endSession() {
  const sess = state.current ? state.sessions.get(state.current) : null;
  if (!sess || sess.state === 'ended' || state.ending.has(sess.id)) return;
  const name = str(sess.detail.customer_name) || t.thisCustomer;
  if (!window.confirm(t.confirmEnd(name))) return;
  state.ending.add(sess.id);
  renderSession();
  try {
    const detail = await api('POST', sessionPath(sess.id, '/end'));
    state.ending.delete(sess.id);
    if (detail && detail.id != null) openSession(detail);
    markEnded(sess.id, (detail && detail.ended_by) || 'rep', detail && detail.end_reason);
    refreshRecentSoon();
  } catch (e) {
    reportError(e);
  } finally {
    state.ending.delete(sess.id);
    renderSession();
  }
}

/** A permission of a session changed (from the console socket or the viewer). */
function setGrant(id, permission, st) {
  const sess = state.sessions.get(id);
  if (!sess || !permission || !st) return;
  if (sess.grants[permission] === st) return;
  // A request's own reply ("requested") can arrive after the customer's answer; the relay
  // never asks again for a standing grant, so it is stale then.
  if (st === 'requested' && sess.grants[permission] === 'granted') return;
  sess.grants[permission] = st;
  if (id === state.current && state.screen) state.screen.show(sess);
  if (id === state.current && state.files) state.files.show(sess);
  if (id === state.current && state.sysinfo) state.sysinfo.show(sess);
  if (id === state.current && state.shell) state.shell.show(sess);
  if (id === state.current && state.install) state.install.show(sess);
}

function markEnded(id, by, reason) {
  const e = state.entries.get(id);
  if (e) { state.entries.delete(id); renderQueues(); }
  const sess = state.sessions.get(id);
  if (!sess) return;
  sess.state = 'ended';
  sess.online = false;
  if (by != null) sess.endedBy = String(by);
  if (reason != null && reason !== '') sess.reason = String(reason);
  if (!sess.detail.ended_at) sess.detail.ended_at = Date.now();
  renderTabs();
  if (id === state.current) renderSession();
}

/** An event's detail as a person reads it (file transfers are stored as JSON). */
function eventDetail(ev) {
  if (ev.detail == null) return '';
  const shell = shellEventDetail(ev);
  if (shell != null) return shell;
  if (ev.kind === 'file_transferred') {
    try {
      const f = JSON.parse(ev.detail);
      return t.fileEvent(str(f.direction), str(f.path), fmtBytes(f.size), str(f.sha256));
    } catch { /* shown as stored */ }
  }
  if (ev.kind === 'file_share') {
    try {
      const f = JSON.parse(ev.detail);
      return t.fileShare(str(f.scope), str(f.folder));
    } catch { /* shown as stored */ }
  }
  if (ev.kind === 'file_offered') {
    try {
      const f = JSON.parse(ev.detail);
      return t.fileOffered(str(f.name), fmtBytes(f.size), str(f.sha256));
    } catch { /* shown as stored */ }
  }
  return typeof ev.detail === 'string' ? ev.detail : JSON.stringify(ev.detail);
}

// ---------------------------------------------------------------------------------------------
// Recent sessions

let recentTimer = null;
function refreshRecentSoon() {
  clearTimeout(recentTimer);
  recentTimer = setTimeout(loadRecent, 400);
}

async function loadRecent() {
  const btn = byId('recent-refresh');
  btn.classList.add('is-spinning');
  try {
    const r = await api('GET', `/api/v1/sessions?limit=${RECENT_LIMIT}`);
    state.recent = r && Array.isArray(r.sessions) ? r.sessions : [];
    renderRecent();
  } catch (e) {
    reportError(e);
  } finally {
    btn.classList.remove('is-spinning');
  }
}

const stateLabel = t.states;

function renderRecent() {
  const ul = byId('recent-sessions');
  ul.replaceChildren(...state.recent.filter((s) => s && s.id != null).map((s) => {
    const id = String(s.id);
    const st = str(s.state);
    const start = s.accepted_at || s.queued_at || s.created_at;
    const meta = [s.computer, fmtWhen(start)].filter(Boolean).map(String);
    const startD = toDate(s.accepted_at || s.created_at);
    const endD = toDate(s.ended_at);
    if (startD && endD) meta.push(fmtDuration(endD - startD));
    const li = h('li', { 'data-testid': 'recent-session' },
      h('button', { type: 'button', class: 'recent-item', onclick: () => showRecent(id) },
        h('span', { class: 'recent-top' },
          h('span', { class: 'recent-name', text: str(s.customer_name) || t.unnamedCustomer }),
          h('span', { class: `state state-${stateLabel[st] ? st : 'other'}`, text: stateLabel[st] || st || '—' })),
        h('span', { class: 'recent-meta', text: meta.join(' · ') })));
    li.dataset.sessionId = id;
    return li;
  }));
  byId('empty-recent').hidden = ul.children.length > 0;
}

async function showRecent(id) {
  const open = state.sessions.get(id);
  if (open && open.state !== 'ended') { selectTab(id); return; }
  let d;
  try {
    d = await api('GET', sessionPath(id));
  } catch (e) {
    reportError(e);
    return;
  }
  if (!d) return;
  const dlg = byId('transcript');
  byId('t-name').textContent = str(d.customer_name) || t.unnamedCustomer;
  byId('t-meta').textContent = [d.computer, d.platform, d.language ? t.metaLanguage(str(d.language)) : null]
    .filter(Boolean).map(String).join(' · ');
  const partyName = (p) => (Object.prototype.hasOwnProperty.call(t.parties, p) ? t.parties[p] : str(p));
  const started = toDate(d.accepted_at);
  const endedAt = toDate(d.ended_at);
  const facts = [
    [t.factState, stateLabel[d.state] || str(d.state)],
    [t.factQueue, d.queue === 'personal' ? t.queuePersonal : d.queue === 'general' ? t.queueGeneral
      : d.queue === 'team' ? t.queueTeam(str(d.team)) : str(d.queue)],
    [t.factAddress, str(d.remote_addr) || '—'],
    [t.factCreated, fmtDateTime(d.created_at)],
    [t.factAccepted, d.accepted_at ? (d.accepted_by ? t.acceptedBy(fmtDateTime(d.accepted_at), str(d.accepted_by)) : fmtDateTime(d.accepted_at)) : '—'],
    [t.factEnded, d.ended_at
      ? `${d.ended_by ? t.endedBy(fmtDateTime(d.ended_at), partyName(d.ended_by)) : fmtDateTime(d.ended_at)}${d.end_reason ? ` (${d.end_reason})` : ''}`
      : '—'],
    [t.factDuration, started && endedAt ? fmtDuration(endedAt - started) : '—'],
  ];
  byId('t-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
  const msgs = Array.isArray(d.messages) ? d.messages.map(msgFromDetail).sort((a, b) => a.at - b.at) : [];
  renderChat(byId('t-log'), msgs, { scrollToEnd: false });
  byId('t-log').hidden = msgs.length === 0;
  byId('t-log-empty').hidden = msgs.length > 0;
  const events = Array.isArray(d.events) ? [...d.events].sort((a, b) => (Number(a.at) || 0) - (Number(b.at) || 0)) : [];
  byId('t-events').replaceChildren(...events.map((ev) => h('tr', null,
    h('td', { class: 'nowrap', text: fmtDateTime(ev.at) }),
    h('td', { class: 'nowrap', text: Object.prototype.hasOwnProperty.call(t.eventKinds, ev.kind) ? t.eventKinds[ev.kind] : str(ev.kind).replace(/_/g, ' ') }),
    h('td', null, eventDetail(ev), transcriptLink(str(d.id), ev)))));
  byId('t-events').closest('table').hidden = events.length === 0;
  byId('t-events-empty').hidden = events.length > 0;
  if (!dlg.open) dlg.showModal();
  byId('t-log').scrollTop = 0;
}

// ---------------------------------------------------------------------------------------------
// Live updates (WebSocket)

function setWsStatus(s) {
  state.wsState = s;
  const el = byId('ws-status');
  el.dataset.state = s;
  el.textContent = s === 'open' ? t.live : s === 'connecting' ? t.connecting : t.reconnecting;
  el.title = s === 'open' ? t.liveTitle : t.interruptedTitle;
}

function connectWs() {
  clearTimeout(state.wsTimer);
  state.wsTimer = null;
  if (state.unloading) return;
  setWsStatus(state.wsAttempt === 0 ? 'connecting' : 'reconnecting');
  const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws/console`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.addEventListener('open', () => {
    if (state.ws === ws) setWsStatus('open');
  });
  ws.addEventListener('message', (ev) => {
    if (state.ws !== ws || typeof ev.data !== 'string') return;
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    try {
      handleWs(m);
    } catch (e) {
      console.error('console: bad live message', e);
    }
  });
  ws.addEventListener('close', () => {
    if (state.ws !== ws) return;
    state.ws = null;
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (state.unloading) return;
  const attempt = state.wsAttempt;
  state.wsAttempt += 1;
  setWsStatus('reconnecting');
  const base = Math.min(WS_BACKOFF_MAX_MS, WS_BACKOFF_MIN_MS * 2 ** attempt);
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  clearTimeout(state.wsTimer);
  state.wsTimer = setTimeout(async () => {
    if (attempt >= 1) {
      // A socket that keeps failing may mean the login expired: api() redirects on 401.
      try { await api('GET', '/api/v1/me'); } catch { /* offline or redirected */ }
    }
    connectWs();
  }, delay);
}

function handleWs(m) {
  if (!m || typeof m !== 'object') return;
  switch (m.type) {
    case 'hello':
      state.wsAttempt = 0;
      if (state.me && m.display_name) state.me.display_name = String(m.display_name);
      break;
    case 'snapshot': {
      state.wsAttempt = 0;
      state.gotSnapshot = true;
      setEntries(m.entries);
      // Anything missed while disconnected: refresh open sessions that are not over.
      for (const [id, sess] of state.sessions) {
        if (sess.state !== 'ended') ensureSession(id, { refresh: true });
      }
      break;
    }
    case 'upsert': {
      const e = normEntry(m.entry);
      if (!e) break;
      if (!state.entries.has(e.session_id)) state.newEntryIds.add(e.session_id);
      state.entries.set(e.session_id, e);
      renderQueues();
      if (isMine(e)) ensureSession(e.session_id);
      else if (e.state === 'ended') markEnded(e.session_id, null, null);
      break;
    }
    case 'remove': {
      const id = str(m.session_id);
      state.entries.delete(id);
      state.newEntryIds.delete(id);
      renderQueues();
      break;
    }
    case 'chat': {
      const id = str(m.session_id);
      const sess = state.sessions.get(id);
      if (!sess) {
        if (isMine(state.entries.get(id))) ensureSession(id);
        break;
      }
      const msg = { sender: str(m.from, 'system'), name: str(m.name), body: str(m.text), at: Number(m.at) || Date.now() };
      const added = mergeMessages(sess, [msg]);
      if (added && msg.sender !== 'rep' && (id !== state.current || document.hidden)) sess.unread += added;
      renderTabs();
      if (id === state.current) renderChat(byId('chat-log'), sess.messages, {});
      break;
    }
    case 'presence': {
      const sess = state.sessions.get(str(m.session_id));
      if (!sess || sess.state === 'ended') break;
      sess.online = !!m.online;
      renderTabs();
      if (sess.id === state.current) renderSession();
      break;
    }
    case 'ended': {
      const id = str(m.session_id);
      markEnded(id, m.by, m.reason);
      if (state.sessions.has(id)) refreshRecentSoon();
      break;
    }
    case 'permission':
      setGrant(str(m.session_id), str(m.permission), str(m.state));
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Start

function initSessionPane() {
  byId('composer').addEventListener('submit', sendChat);
  byId('s-end').addEventListener('click', endSession);
  byId('s-close').addEventListener('click', () => { if (state.current) closeTab(state.current); });
  byId('chat-input').addEventListener('input', (ev) => {
    const sess = state.current ? state.sessions.get(state.current) : null;
    if (sess) sess.draft = ev.target.value;
  });
  byId('tabs').addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    const i = state.order.indexOf(state.current);
    if (i < 0) return;
    const j = (i + (ev.key === 'ArrowRight' ? 1 : state.order.length - 1)) % state.order.length;
    selectTab(state.order[j]);
    const tab = byId('tabs').querySelector('.tab.is-selected');
    if (tab) tab.focus();
  });
  byId('recent-refresh').addEventListener('click', loadRecent);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.current) {
      const sess = state.sessions.get(state.current);
      if (sess && sess.unread) { sess.unread = 0; renderTabs(); }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Pages: the sessions, and the administrators' "Deployment" page (`#deployment`)

function initViews() {
  if (!state.me || state.me.role !== 'admin') return;
  byId('views').hidden = false;
  const show = () => {
    const deploy = location.hash === '#deployment';
    byId('deploy').hidden = !deploy;
    document.querySelector('main.layout').hidden = deploy;
    byId('view-deployment').classList.toggle('is-current', deploy);
    byId('view-console').classList.toggle('is-current', !deploy);
    if (deploy) byId('view-deployment').setAttribute('aria-current', 'page');
    else byId('view-deployment').removeAttribute('aria-current');
    if (!deploy) byId('view-console').setAttribute('aria-current', 'page');
    else byId('view-console').removeAttribute('aria-current');
    if (deploy) {
      if (!state.deploy) state.deploy = new DeploymentPage({ api, onError: reportError });
      state.deploy.show();
    }
  };
  byId('view-console').addEventListener('click', (ev) => {
    ev.preventDefault();
    history.pushState(null, '', location.pathname + location.search);
    show();
  });
  window.addEventListener('hashchange', show);
  window.addEventListener('popstate', show);
  show();
}

async function start() {
  localise();
  initKeyForm();
  initSessionPane();
  state.screen = new ScreenArea({ api, onGrant: setGrant, onError: reportError });
  state.files = new FilePanel({ api, csrf: () => (state.me ? state.me.csrf_token : ''), onGrant: setGrant, onError: reportError });
  state.sysinfo = new SystemInfoArea({ api, onGrant: setGrant, onError: reportError });
  state.shell = new ShellArea({ api, onGrant: setGrant, onError: reportError });
  state.install = new InstallArea({ api, onError: reportError });
  setInterval(() => { tickQueues(); tickKey(); }, 1000);
  window.addEventListener('pagehide', () => {
    state.unloading = true;
    clearTimeout(state.wsTimer);
    if (state.ws) state.ws.close(1000);
  });
  window.addEventListener('online', () => {
    if (!state.ws && !state.unloading) { state.wsAttempt = 0; connectWs(); }
  });

  try {
    await loadMe();
  } catch (e) {
    reportError(e);
    if (e.status !== 401) setTimeout(() => location.reload(), 5000);
    return;
  }
  document.body.classList.add('is-ready');
  connectWs();
  // A jump opens a session that is already this representative's, like an accepted one.
  state.jump = new JumpPanel({
    api,
    isAdmin: () => !!(state.me && state.me.role === 'admin'),
    onError: reportError,
    onJump: async (id) => {
      await ensureSession(id, { refresh: true });
      selectTab(id);
      // The client joins a moment later; its presence may have gone out before the tab
      // existed, so look again until it is there (or the session ended).
      const until = Date.now() + 90_000;
      const look = () => {
        const sess = state.sessions.get(id);
        if (!sess || sess.online || sess.state === 'ended' || Date.now() > until) return;
        ensureSession(id, { refresh: true }).finally(() => setTimeout(look, 1000));
      };
      setTimeout(look, 1000);
    },
  });
  initViews();
  // The socket's snapshot replaces this; the REST call fills the queues if the socket is slow.
  api('GET', '/api/v1/queues')
    .then((r) => { if (!state.gotSnapshot && r && Array.isArray(r.entries)) setEntries(r.entries); })
    .catch(reportError);
  loadRecent();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
