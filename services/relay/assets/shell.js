// Lifeline console: the command-shell area of a session.
//
// The representative asks the customer for `shell` (or `elevated_shell`, "Run as
// administrator"); the customer answers in their client. Once allowed, "Open" starts a
// terminal: xterm.js (vendored from npm, served from the box) joined to a pseudo-terminal on
// the customer's computer through `/ws/shell/{session}` (see lifeline_proto::shell). What the
// terminal shows arrives as raw bytes and is written to xterm.js as bytes; the console
// acknowledges what xterm.js has processed, which paces the customer's side. Keys go back as
// UTF-8 bytes; the terminal's size follows the area (fit add-on) and is sent on every change.
// The relay records everything typed and shown; the session report links the transcript.
//
// Content-Security-Policy: the console allows only its own style sheets (`style-src 'self'`,
// no inline styles). xterm.js writes its theme, cell sizes and scrollbar colours into
// `<style>` elements it creates, and truecolour cells through `style` attributes; both are
// inline styles the browser refuses. The terminal is given a document wrapper
// (`documentOverride`, and the page's document while `open` builds the viewport) whose
// `<style>` elements are inert placeholders whose text goes into a
// constructed style sheet (`document.adoptedStyleSheets`); and a span's `style` attribute is
// set through the CSSOM (`style.cssText`): both are script-driven CSSOM, which the policy
// does not govern, so it stays strict with neither 'unsafe-inline' nor a nonce.
//
// Limits: one shell per session at a time; a terminal stays open while the representative
// looks at another session's tab, and ends with the session.

import { Terminal } from '/static/xterm.mjs';
import { FitAddon } from '/static/addon-fit.mjs';
import { t } from '/static/texts.js';
import { byId } from '/static/dom.js';

/** Largest input message (lifeline_proto::shell::MAX_INPUT). */
const MAX_INPUT = 16 * 1024;
/** Acknowledge after this many bytes, or ACK_DELAY_MS after the last write. */
const ACK_EVERY = 32 * 1024;
const ACK_DELAY_MS = 20;

function sheetElement() {
  const el = document.createElement('xterm-style');
  el.hidden = true;
  const sheet = new CSSStyleSheet();
  let text = '';
  let adopted = false;
  Object.defineProperty(el, 'textContent', {
    get: () => text,
    set: (v) => {
      text = String(v ?? '');
      sheet.replaceSync(text);
      if (!adopted) {
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
        adopted = true;
      }
    },
  });
  el.remove = () => {
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sheet);
    adopted = false;
    Element.prototype.remove.call(el);
  };
  return el;
}

// xterm.js makes its cells' spans with the page's own document, so the `style` attribute
// of spans goes through the CSSOM page-wide: the same declarations, set the way the policy
// allows (the attribute then reflects them as usual).
{
  const setAttribute = Element.prototype.setAttribute;
  HTMLSpanElement.prototype.setAttribute = function setAttributeViaCssom(name, value) {
    if (String(name).toLowerCase() === 'style') this.style.cssText = String(value);
    else setAttribute.call(this, name, value);
  };
}

/** The document xterm.js works with: `<style>` and `style=` become CSSOM (see above). */
const cspDocument = new Proxy(document, {
  get(target, prop) {
    if (prop === 'createElement') {
      return (tag, opts) => (String(tag).toLowerCase() === 'style' ? sheetElement() : target.createElement(tag, opts));
    }
    const v = Reflect.get(target, prop, target);
    return typeof v === 'function' ? v.bind(target) : v;
  },
});

/** Runs `fn` (xterm.js's `open`, which builds its viewport with the page's own document)
 * while the page's `document.createElement('style')` gives the same placeholders. */
function withSheetStyles(fn) {
  const own = Object.prototype.hasOwnProperty.call(document, 'createElement');
  const orig = document.createElement;
  document.createElement = function createElement(tag, opts) {
    return String(tag).toLowerCase() === 'style' ? sheetElement() : orig.call(document, tag, opts);
  };
  try {
    fn();
  } finally {
    if (own) document.createElement = orig;
    else delete document.createElement;
  }
}

const encoder = new TextEncoder();

export class ShellArea {
  /**
   * @param {{api: Function, onGrant: Function, onError: Function}} opts
   */
  constructor(opts) {
    this.api = opts.api;
    this.onGrant = opts.onGrant;
    this.onError = opts.onError;
    this.session = null;
    this.policy = { shell: true, elevated_shell: true };
    /** session id → { term, fit, host, ws, state, message, received, acked, timer } */
    this.shells = new Map();
    this.el = {
      root: byId('shell'),
      permUser: byId('perm-shell'),
      permAdmin: byId('perm-shell-admin'),
      nameUser: byId('perm-shell-name'),
      nameAdmin: byId('perm-shell-admin-name'),
      reqUser: byId('req-shell'),
      reqAdmin: byId('req-shell-admin'),
      openUser: byId('shell-open'),
      openAdmin: byId('shell-open-admin'),
      close: byId('shell-close'),
      hint: byId('shell-hint'),
      term: byId('shell-term'),
    };
    const e = this.el;
    e.nameUser.textContent = t.shell.permUser;
    e.nameAdmin.textContent = t.shell.permAdmin;
    e.openUser.textContent = t.shell.open;
    e.openAdmin.textContent = t.shell.openAdmin;
    e.close.textContent = t.shell.close;
    e.reqUser.addEventListener('click', () => this.ask('shell'));
    e.reqAdmin.addEventListener('click', () => this.ask('elevated_shell'));
    e.openUser.addEventListener('click', () => this.open(false));
    e.openAdmin.addEventListener('click', () => this.open(true));
    e.close.addEventListener('click', () => this.close());
    new ResizeObserver(() => this.fit()).observe(e.term);
    this.api('GET', '/api/v1/tools')
      .then((p) => {
        this.policy = { shell: !!(p && p.shell), elevated_shell: !!(p && p.elevated_shell) };
        this.show(this.session);
      })
      .catch(() => {});
  }

  current() {
    return this.session ? this.shells.get(this.session.id) || null : null;
  }

  /** Shows the area for a console session (or none); reads `grants`, `online`, `state`. */
  show(s) {
    this.session = s;
    const e = this.el;
    const enabled = this.policy.shell || this.policy.elevated_shell;
    const active = !!(s && s.state === 'active' && enabled);
    e.root.hidden = !active;
    for (const [id, sh] of this.shells) sh.host.hidden = !s || id !== s.id;
    if (s && s.state === 'ended') this.end(s.id);
    if (!active) return;
    const sh = this.current();
    const running = !!(sh && (sh.state === 'opening' || sh.state === 'open'));
    const row = (perm, name, req, open, permission, reqText) => {
      const allowed = this.policy[permission];
      for (const n of [perm, name, req, open]) n.hidden = !allowed;
      if (!allowed) return;
      const st = s.grants[permission] || 'none';
      perm.dataset.state = st;
      perm.textContent = t[`state_${st}`] || st;
      req.hidden = !(st === 'none' || st === 'denied' || st === 'revoked');
      req.textContent = st === 'none' ? reqText : t.askAgain;
      req.disabled = !s.online;
      open.hidden = st !== 'granted' || running;
      open.disabled = !s.online;
    };
    row(e.permUser, e.nameUser, e.reqUser, e.openUser, 'shell', t.shell.request);
    row(e.permAdmin, e.nameAdmin, e.reqAdmin, e.openAdmin, 'elevated_shell', t.shell.requestAdmin);
    e.close.hidden = !running;
    e.term.hidden = !sh;
    const g = s.grants;
    e.hint.textContent = sh && sh.message ? sh.message
      : g.shell === 'granted' || g.elevated_shell === 'granted' ? t.shell.hintOpen
        : g.shell === 'requested' || g.elevated_shell === 'requested' ? t.shell.hintWait
          : t.shell.hintAsk;
    if (sh) requestAnimationFrame(() => this.fit());
  }

  async ask(permission) {
    const s = this.session;
    if (!s) return;
    try {
      const r = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/permissions`, { permission });
      if (r && r.state) this.onGrant(s.id, permission, String(r.state));
    } catch (err) {
      this.onError(err);
    }
  }

  fit() {
    const sh = this.current();
    if (!sh || this.el.term.hidden || sh.host.hidden) return;
    try { sh.fit.fit(); } catch { /* not laid out yet */ }
  }

  /** Opens a terminal for the session shown. */
  open(elevated) {
    const s = this.session;
    if (!s) return;
    const old = this.shells.get(s.id);
    if (old && (old.state === 'opening' || old.state === 'open')) return;
    if (old) { old.term.dispose(); old.host.remove(); }
    const host = document.createElement('div');
    host.className = 'shell-host';
    host.dataset.testid = 'shell-terminal';
    this.el.term.hidden = false;
    this.el.term.append(host);
    const term = new Terminal({
      documentOverride: cspDocument,
      convertEol: false,
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#111827', foreground: '#e5e7eb' },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    withSheetStyles(() => term.open(host));
    try { fit.fit(); } catch { /* not laid out yet */ }
    const sh = { term, fit, host, ws: null, state: 'opening', message: t.shell.opening, received: 0, acked: 0, timer: null, elevated };
    this.shells.set(s.id, sh);
    const q = new URLSearchParams({ elevated: String(!!elevated), rows: String(term.rows), cols: String(term.cols) });
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/shell/${encodeURIComponent(s.id)}?${q}`);
    ws.binaryType = 'arraybuffer';
    sh.ws = ws;
    const sid = s.id;
    const send = (bytes) => {
      if (ws.readyState !== WebSocket.OPEN || sh.state !== 'open') return;
      for (let i = 0; i < bytes.length; i += MAX_INPUT) ws.send(bytes.subarray(i, i + MAX_INPUT));
    };
    term.onData((d) => send(encoder.encode(d)));
    term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    term.onResize(({ rows, cols }) => {
      if (ws.readyState === WebSocket.OPEN && sh.state === 'open') ws.send(JSON.stringify({ type: 'resize', rows, cols }));
    });
    const ack = () => {
      sh.timer = null;
      if (ws.readyState === WebSocket.OPEN && sh.received > sh.acked) {
        sh.acked = sh.received;
        ws.send(JSON.stringify({ type: 'ack', offset: sh.received }));
      }
    };
    ws.onmessage = (ev) => {
      if (ev.data instanceof ArrayBuffer) {
        const bytes = new Uint8Array(ev.data);
        term.write(bytes, () => {
          sh.received += bytes.length;
          if (sh.received - sh.acked >= ACK_EVERY) ack();
          else if (!sh.timer) sh.timer = setTimeout(ack, ACK_DELAY_MS);
        });
        return;
      }
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'opened') {
        sh.state = 'open';
        const program = String(m.program || '');
        sh.message = m.elevated ? t.shell.openedAdmin(program) : t.shell.openedUser(program);
        // The size may have changed while the customer's side was starting.
        ws.send(JSON.stringify({ type: 'resize', rows: term.rows, cols: term.cols }));
        term.focus();
      } else if (m.type === 'refused') {
        sh.state = 'refused';
        sh.message = String(m.message || '');
      } else if (m.type === 'closed') {
        sh.state = 'closed';
        const by = t.shell.by[String(m.by)] || String(m.by);
        sh.message = t.shell.closed(by);
      }
      if (this.session && this.session.id === sid) this.show(this.session);
    };
    ws.onclose = () => {
      if (sh.state === 'opening' || sh.state === 'open') {
        sh.state = 'closed';
        sh.message = t.shell.lost;
      }
      term.options.disableStdin = true;
      if (this.session && this.session.id === sid) this.show(this.session);
    };
    this.show(s);
  }

  /** Closes the shell of the session shown. */
  close() {
    const sh = this.current();
    if (!sh || !sh.ws) return;
    if (sh.ws.readyState === WebSocket.OPEN) sh.ws.send(JSON.stringify({ type: 'close' }));
  }

  /** Forgets a session's terminal (the session ended). */
  end(id) {
    const sh = this.shells.get(id);
    if (!sh) return;
    if (sh.ws && sh.ws.readyState <= WebSocket.OPEN) sh.ws.close();
  }
}

/** The transcript link of a `shell_closed` event of session `sessionId`, or null. */
export function transcriptLink(sessionId, ev) {
  if (!ev || ev.kind !== 'shell_closed') return null;
  let f;
  try { f = JSON.parse(ev.detail); } catch { return null; }
  const n = Number(f && f.shell);
  if (!Number.isInteger(n) || n <= 0) return null;
  const a = document.createElement('a');
  a.href = `/api/v1/sessions/${encodeURIComponent(sessionId)}/shells/${n}/transcript`;
  a.textContent = t.shell.transcript;
  a.className = 'shell-transcript';
  a.dataset.testid = 'shell-transcript';
  a.setAttribute('download', '');
  return a;
}

/** A shell event's detail as a person reads it, or null for other events. */
export function shellEventDetail(ev) {
  if (!ev || !['shell_opened', 'shell_closed', 'shell_refused'].includes(ev.kind)) return null;
  let f;
  try { f = JSON.parse(ev.detail); } catch { return null; }
  if (!f || typeof f !== 'object') return null;
  if (ev.kind === 'shell_refused') return t.shellRefusedEvent(f);
  if (ev.kind === 'shell_closed') {
    f = { ...f, by: t.shell.by[String(f.by)] || String(f.by) };
  }
  return t.shellEvent(f);
}
