// Lifeline console: the "Screen" area of a session — permission requests and the live
// screen viewer.
//
// The viewer opens /ws/view/{session} once the customer allowed `view`. Binary messages are
// the agent's frames (12-byte header + payload, see agents/proto/src/frame.rs and
// screen.rs); they are checked as strictly as the Rust decoders do and drawn on a back
// buffer in order (Solid: fillRect; Palette: putImageData; Jpeg/Png: createImageBitmap;
// Copy: from a snapshot of the surface taken before the message), shown at the end of each
// frame, then acknowledged. A corrupt message is logged, a key frame is asked for, and
// drawing goes on with the next key frame. The remote cursor is a small canvas over the
// picture.
//
// Screen messages with FLAG_DEFLATE are chunks of one raw deflate stream per viewer
// (agents/proto/src/deflate.rs): each is fed to the viewer's inflater, a
// DecompressionStream('deflate-raw') that lives from one FLAG_SUPERSEDES message to the next,
// and must inflate to exactly one update message of at most MAX_INFLATED bytes (the chunk is
// written in slices and the output counted as it comes, so a chunk that inflates far beyond
// the limit is stopped early). A chunk that does not inflate, inflates too large or follows a
// gap in the sequence numbers kills the stream: deflated messages are dropped (with a
// rate-limited Refresh) until the next superseding one. Limits: the browser's inflater may
// buffer one slice's worth of output (at most ~1000x the slice) before the bound applies.
//
// Input (only while the customer allowed `control` and "View only" is off): pointer and
// wheel in surface coordinates, keys as X keysyms (characters by code point, named keys and
// modifiers by table; AltGr and the fake Control that comes with it on some systems are
// never sent; dead keys are skipped, the composed character follows).
//
// Everything from the network reaches the DOM only through textContent and attributes.
// Texts (English, French, German) are in texts.js.

import { t as texts, lang as pageLang } from '/static/texts.js';
import { byId } from '/static/dom.js';

export const MAGIC = 0x4c;
export const HEADER_LEN = 12;
export const MAX_FRAME_PAYLOAD = 1024 * 1024;
const MAX_SURFACE = 16384;
const MAX_RECTS = 4096;
const MAX_CURSOR = 256;
const CH_SCREEN = 1;
const CH_CURSOR = 2;
const END_OF_FRAME = 0x01;
const KEY_FRAME = 0x02;
const FLAG_SUPERSEDES = 0x01;
const FLAG_DEFLATE = 0x02;
const ENC = ['solid', 'jpeg', 'png', 'copy', 'palette'];
/** Most bytes one deflated chunk may inflate to (one update message). */
export const MAX_INFLATED = MAX_FRAME_PAYLOAD;
/** Input fed to the inflater at a time, so a bomb is caught after a bounded amount. */
const INFLATE_SLICE = 16 * 1024;
const PING_EVERY_MS = 1000;
/** Longest clipboard text, in UTF-8 bytes (as the protocol). */
const MAX_CLIPBOARD_BYTES = 32 * 1024;
const REFRESH_MIN_GAP_MS = 500;
const VIEW_BACKOFF_MS = [1000, 2000, 5000, 10000];

// ---------------------------------------------------------------------------------------------
// Decoding (mirrors agents/proto/src/frame.rs and screen.rs; never trusts a length)

export class ScreenError extends Error {}

/** Header and payload of one binary message. */
export function decodeFrame(buf) {
  if (!(buf instanceof ArrayBuffer)) throw new ScreenError('not binary');
  if (buf.byteLength < HEADER_LEN) throw new ScreenError(`frame of ${buf.byteLength} bytes is shorter than its header`);
  if (buf.byteLength > HEADER_LEN + MAX_FRAME_PAYLOAD) throw new ScreenError(`frame of ${buf.byteLength} bytes exceeds the limit`);
  const dv = new DataView(buf);
  if (dv.getUint8(0) !== MAGIC) throw new ScreenError('bad magic byte');
  const channel = dv.getUint8(1);
  const flags = dv.getUint8(2);
  // The deflate flag belongs to the screen channel only.
  const allowed = channel === CH_SCREEN ? FLAG_SUPERSEDES | FLAG_DEFLATE : FLAG_SUPERSEDES;
  if ((flags & ~allowed) !== 0 || dv.getUint8(3) !== 0) throw new ScreenError('reserved bits set');
  const seq = dv.getUint32(4);
  const len = dv.getUint32(8);
  if (len !== buf.byteLength - HEADER_LEN) throw new ScreenError(`header announces ${len} bytes, ${buf.byteLength - HEADER_LEN} follow`);
  return { channel, flags, seq, payload: new Uint8Array(buf, HEADER_LEN, len) };
}

/** One screen update message. */
export function decodeUpdate(p) {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (p.length < 12) throw new ScreenError('update ends early');
  if (p[0] !== 1) throw new ScreenError(`unknown screen message kind ${p[0]}`);
  const flags = p[1];
  if (flags & ~(END_OF_FRAME | KEY_FRAME)) throw new ScreenError('reserved update flags');
  const width = dv.getUint16(2);
  const height = dv.getUint16(4);
  if (!width || !height || width > MAX_SURFACE || height > MAX_SURFACE) throw new ScreenError(`bad surface ${width}x${height}`);
  const frame = dv.getUint32(6);
  const count = dv.getUint16(10);
  if (count > MAX_RECTS) throw new ScreenError(`${count} rectangles`);
  let at = 12;
  const rects = [];
  for (let i = 0; i < count; i += 1) {
    if (at + 13 > p.length) throw new ScreenError('rectangle header ends early');
    const x = dv.getUint16(at);
    const y = dv.getUint16(at + 2);
    const w = dv.getUint16(at + 4);
    const h = dv.getUint16(at + 6);
    if (!w || !h || x + w > width || y + h > height) throw new ScreenError(`rectangle ${x},${y} ${w}x${h} outside the surface`);
    const enc = p[at + 8];
    if (enc >= ENC.length) throw new ScreenError(`unknown encoding ${enc}`);
    const dlen = dv.getUint32(at + 9);
    at += 13;
    if (dlen > p.length - at) throw new ScreenError('rectangle data ends early');
    const data = p.subarray(at, at + dlen);
    at += dlen;
    const r = { x, y, w, h, enc: ENC[enc], data };
    if (r.enc === 'solid' && dlen !== 3) throw new ScreenError('solid rectangle without 3 bytes');
    if (r.enc === 'copy') {
      if (dlen !== 4) throw new ScreenError('copy rectangle without 4 bytes');
      r.sx = (data[0] << 8) | data[1];
      r.sy = (data[2] << 8) | data[3];
      if (r.sx + w > width || r.sy + h > height) throw new ScreenError('copy source outside the surface');
    }
    if ((r.enc === 'jpeg' || r.enc === 'png') && dlen < 8) throw new ScreenError('image data too short');
    if (r.enc === 'palette') {
      if (dlen < 1) throw new ScreenError('palette rectangle without data');
      r.count = data[0] + 1;
      r.bits = paletteBits(r.count);
      r.rowBytes = Math.ceil((w * r.bits) / 8);
      if (dlen !== 1 + 3 * r.count + r.rowBytes * h) throw new ScreenError('palette data do not match the rectangle');
    }
    rects.push(r);
  }
  if (at !== p.length) throw new ScreenError(`${p.length - at} bytes follow the last rectangle`);
  return { flags, width, height, frame, rects, end: !!(flags & END_OF_FRAME), key: !!(flags & KEY_FRAME) };
}

/** Bits per index of a palette of `count` colours (1, 2, 4 or 8). */
export function paletteBits(count) {
  return count <= 2 ? 1 : count <= 4 ? 2 : count <= 16 ? 4 : 8;
}

/** The RGBA pixels of a decoded Palette rectangle; refuses an index past the palette. */
export function paletteImage(r) {
  const { w, h, count, bits, rowBytes, data } = r;
  const rgba = new Uint8ClampedArray(w * h * 4);
  const base = 1 + 3 * count;
  const mask = (1 << bits) - 1;
  let o = 0;
  for (let y = 0; y < h; y += 1) {
    const row = base + y * rowBytes;
    for (let x = 0; x < w; x += 1) {
      const bit = x * bits;
      const i = (data[row + (bit >> 3)] >> (8 - bits - (bit & 7))) & mask;
      if (i >= count) throw new ScreenError(`palette index ${i} of ${count} colours`);
      const c = 1 + 3 * i;
      rgba[o] = data[c];
      rgba[o + 1] = data[c + 1];
      rgba[o + 2] = data[c + 2];
      rgba[o + 3] = 255;
      o += 4;
    }
  }
  return rgba;
}

/**
 * Length of the update message whose first `len` bytes are in `b`, as far as its headers
 * tell: -1 while a header is still missing.
 */
function updateLength(b, len) {
  if (len < 12) return -1;
  const count = (b[10] << 8) | b[11];
  let at = 12;
  for (let i = 0; i < count; i += 1) {
    if (at + 13 > len) return -1;
    at += 13 + (((b[at + 9] << 24) >>> 0) + (b[at + 10] << 16) + (b[at + 11] << 8) + b[at + 12]);
    if (at > MAX_INFLATED) return at;
  }
  return at;
}

/** Resolves on the next turn of the event loop (not clamped like nested timers). */
function nextTask() {
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
    ch.port2.postMessage(0);
  });
}

const STALLED = Symbol('stalled');

/**
 * One viewer's end of the screen channel's deflate stream: a DecompressionStream('deflate-raw')
 * fed chunk by chunk. `message(chunk)` gives the update message a chunk inflates to, or
 * throws a ScreenError; after an error the inflater is spent (make a new one).
 */
export class Inflater {
  constructor() {
    const ds = new DecompressionStream('deflate-raw');
    this.writer = ds.writable.getWriter();
    this.reader = ds.readable.getReader();
    this.writer.closed.catch(() => {});
    this.reader.closed.catch(() => {});
    this.reading = null; // the one outstanding read
  }

  read() {
    if (!this.reading) {
      this.reading = this.reader.read();
      this.reading.catch(() => {});
    }
    return this.reading;
  }

  async message(chunk) {
    const n = chunk.length;
    // Every chunk ends with the sync flush's empty stored block.
    if (n < 4 || chunk[n - 4] !== 0 || chunk[n - 3] !== 0 || chunk[n - 2] !== 0xff || chunk[n - 1] !== 0xff) {
      throw new ScreenError('a deflated message does not end with a sync flush');
    }
    let out = new Uint8Array(Math.min(MAX_INFLATED, Math.max(4096, n * 4)));
    let len = 0;
    try {
      for (let off = 0; off < n; off += INFLATE_SLICE) {
        const wrote = this.writer.write(chunk.slice(off, Math.min(n, off + INFLATE_SLICE)));
        wrote.catch(() => {});
        // All output of a slice is queued once its write is done; a turn later, a read that
        // still waits means there is no more.
        const settled = wrote.then(nextTask).then(() => STALLED);
        settled.catch(() => {});
        for (;;) {
          const r = await Promise.race([this.read(), settled]);
          if (r === STALLED) break;
          this.reading = null;
          if (r.done) throw new ScreenError('the deflate stream ended');
          const v = r.value;
          if (len + v.length > MAX_INFLATED) throw new ScreenError(`a deflated message inflates to more than ${MAX_INFLATED} bytes`);
          if (len + v.length > out.length) {
            const bigger = new Uint8Array(Math.min(MAX_INFLATED, Math.max(out.length * 2, len + v.length)));
            bigger.set(out.subarray(0, len));
            out = bigger;
          }
          out.set(v, len);
          len += v.length;
        }
      }
    } catch (e) {
      if (e instanceof ScreenError) throw e;
      throw new ScreenError(`a deflated message does not inflate (${e && e.message ? e.message : e})`);
    }
    const need = updateLength(out, len);
    if (need !== len) throw new ScreenError(`a deflated message inflates to ${len} bytes, not one update message`);
    return out.subarray(0, len);
  }

  close() {
    this.writer.abort().catch(() => {});
    this.reader.cancel().catch(() => {});
  }
}

/** One cursor message. */
export function decodeCursor(p) {
  if (!p.length) throw new ScreenError('empty cursor message');
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  switch (p[0]) {
    case 1: {
      if (p.length < 9) throw new ScreenError('cursor shape ends early');
      const width = dv.getUint16(1);
      const height = dv.getUint16(3);
      if (!width || !height || width > MAX_CURSOR || height > MAX_CURSOR) throw new ScreenError('bad cursor size');
      if (p.length - 9 !== width * height * 4) throw new ScreenError('cursor pixels do not match its size');
      return {
        kind: 'shape', width, height,
        hotX: Math.min(dv.getUint16(5), width - 1), hotY: Math.min(dv.getUint16(7), height - 1),
        rgba: p.subarray(9),
      };
    }
    case 2:
      if (p.length !== 5) throw new ScreenError('bad cursor position');
      return { kind: 'position', x: dv.getInt16(1), y: dv.getInt16(3) };
    case 3:
      if (p.length !== 1) throw new ScreenError('bad hidden cursor');
      return { kind: 'hidden' };
    default:
      throw new ScreenError(`unknown cursor message ${p[0]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Keys → X keysyms

const NAMED_KEYS = {
  Enter: 0xff0d, Backspace: 0xff08, Tab: 0xff09, Escape: 0xff1b,
  ArrowLeft: 0xff51, ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54,
  Home: 0xff50, End: 0xff57, PageUp: 0xff55, PageDown: 0xff56,
  Insert: 0xff63, Delete: 0xffff, ContextMenu: 0xff67, Pause: 0xff13, PrintScreen: 0xff61,
  Shift: 0xffe1, Control: 0xffe3, Alt: 0xffe9, Meta: 0xffeb, OS: 0xffeb, Super: 0xffeb,
};
for (let i = 1; i <= 12; i += 1) NAMED_KEYS[`F${i}`] = 0xffbe + i - 1;

/** The keysym for `KeyboardEvent.key`, or null for keys that are not sent. */
export function keysymOf(key) {
  if (typeof key !== 'string' || !key) return null;
  if (Object.prototype.hasOwnProperty.call(NAMED_KEYS, key)) return NAMED_KEYS[key];
  const cps = Array.from(key);
  if (cps.length !== 1) return null; // "Dead", "AltGraph", "CapsLock", "Unidentified", …
  const cp = cps[0].codePointAt(0);
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return null;
  if (cp <= 0xff) return cp; // Latin-1 keysyms equal the code point
  return 0x01000000 + cp;
}

// ---------------------------------------------------------------------------------------------
// The viewer


export class ScreenArea {
  /**
   * @param {{api: Function, onGrant: Function, onError: Function}} opts
   *   api(method, path, body) like the console's; onGrant(sessionId, permission, state) when
   *   the viewer learns of a change; onError(e) reports an error to the person.
   */
  constructor(opts) {
    this.api = opts.api;
    this.onGrant = opts.onGrant;
    this.onError = opts.onError;
    this.lang = pageLang;
    this.t = texts;
    this.el = {
      root: byId('screen'), reqView: byId('req-view'), reqControl: byId('req-control'),
      permView: byId('perm-view'), permControl: byId('perm-control'), hint: byId('screen-hint'),
      viewer: byId('viewer'), monitor: byId('v-monitor'), quality: byId('v-quality'),
      viewOnly: byId('v-viewonly'), cad: byId('v-cad'), expand: byId('v-expand'),
      stage: byId('v-stage'), wrap: byId('v-wrap'), canvas: byId('v-canvas'), cursor: byId('v-cursor'),
      msg: byId('v-msg'), stats: byId('v-stats'), stageHint: byId('v-hint'),
      permClip: byId('perm-clipboard'), reqClip: byId('req-clipboard'), clipBtn: byId('v-clip'),
      clipNew: byId('v-clip-new'), clipPanel: byId('v-clip-panel'), clipIn: byId('v-clip-in'),
      clipCopy: byId('v-clip-copy'), clipForm: byId('v-clip-form'), clipOut: byId('v-clip-out'),
    };
    this.session = null;     // {id, grants, online, active}
    this.ws = null;
    this.wsFor = null;       // session id the socket belongs to
    this.attempt = 0;
    this.retryTimer = null;
    this.asking = new Set();
    this.scale = 'fit';
    this.expanded = false;
    this.monitors = [];
    this.settings = { monitor: null, quality: 'auto' };
    this.back = document.createElement('canvas');
    this.scratch = document.createElement('canvas');
    this.ctx = this.el.canvas.getContext('2d', { alpha: false });
    this.backCtx = this.back.getContext('2d', { alpha: false });
    this.cursorCtx = this.el.cursor.getContext('2d');
    this.resetPicture();
    this.localise();
    this.bind();
    setInterval(() => this.tick(), PING_EVERY_MS);
  }

  // ---- texts and static bindings ----------------------------------------------------------

  /** What localise() in texts.js cannot set from attributes alone. */
  localise() {
    this.el.root.setAttribute('lang', this.lang);
    this.el.stats.title = this.t.statsTitle;
    this.el.canvas.setAttribute('aria-label', this.t.customerScreen);
    this.el.clipIn.dataset.empty = this.t.clipNothing;
  }

  bind() {
    const e = this.el;
    e.reqView.addEventListener('click', () => this.ask('view'));
    e.reqControl.addEventListener('click', () => this.ask('control'));
    e.reqClip.addEventListener('click', () => this.ask('clipboard'));
    e.clipBtn.addEventListener('click', () => this.toggleClipboard());
    e.clipCopy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(e.clipIn.textContent || '');
        this.flashHint(this.t.copied, true);
      } catch {
        this.flashHint(this.t.copyFailed);
      }
    });
    e.clipForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = e.clipOut.value;
      if (!text || new TextEncoder().encode(text).length > MAX_CLIPBOARD_BYTES) {
        this.flashHint(this.t.clipTooLong);
        return;
      }
      this.send({ type: 'clipboard', text });
      this.flashHint(this.t.clipSent, true);
    });
    e.monitor.addEventListener('change', () => {
      this.settings.monitor = e.monitor.value === '' ? null : Number(e.monitor.value);
      this.sendSettings();
    });
    e.quality.addEventListener('change', () => {
      this.settings.quality = e.quality.value;
      this.sendSettings();
    });
    for (const r of this.el.viewer.querySelectorAll('input[name=v-scale]')) {
      r.addEventListener('change', () => { if (r.checked) { this.scale = r.value; this.layout(); } });
    }
    e.viewOnly.addEventListener('change', () => {
      if (e.viewOnly.checked) this.releaseAll();
      this.renderTools();
    });
    e.cad.addEventListener('click', () => {
      this.input({ kind: 'combo', combo: 'ctrl_alt_del' });
      e.canvas.focus();
    });
    e.expand.addEventListener('click', () => {
      this.expanded = !this.expanded;
      document.body.classList.toggle('screen-expanded', this.expanded);
      this.renderTools();
      requestAnimationFrame(() => this.layout());
    });
    new ResizeObserver(() => this.layout()).observe(e.stage);

    const c = e.canvas;
    c.addEventListener('pointerdown', (ev) => {
      // The point first: focusing may change what is shown around the picture.
      this.pointer(ev);
      c.focus({ preventScroll: true });
      ev.preventDefault();
    });
    c.addEventListener('pointerup', (ev) => { this.pointer(ev); ev.preventDefault(); });
    c.addEventListener('pointermove', (ev) => this.pointer(ev));
    c.addEventListener('wheel', (ev) => this.wheel(ev), { passive: false });
    c.addEventListener('contextmenu', (ev) => ev.preventDefault());
    c.addEventListener('keydown', (ev) => this.key(ev, true));
    c.addEventListener('keyup', (ev) => this.key(ev, false));
    c.addEventListener('focus', () => this.renderHint());
    c.addEventListener('blur', () => { this.releaseAll(); this.renderHint(); });
  }

  // ---- session and permissions ------------------------------------------------------------

  /**
   * Shows the screen area of a session (or none). The object is the console's session; its
   * `grants` and `online` are read each time.
   * @param {{id: string, grants: Object<string,string>, online: boolean, state: string}|null} s
   */
  show(s) {
    if (this.session && s && this.session.id !== s.id) this.disconnect();
    this.session = s;
    const e = this.el;
    const active = !!(s && s.state === 'active');
    e.root.hidden = !active;
    if (!active) {
      document.querySelector('.session')?.classList.remove('has-screen');
      document.body.classList.remove('screen-viewing');
      this.disconnect();
      if (this.expanded) e.expand.click();
      return;
    }
    const view = s.grants.view || 'none';
    const control = s.grants.control || 'none';
    this.renderPerm(e.permView, view);
    this.renderPerm(e.permControl, control);
    const canAsk = (st) => st === 'none' || st === 'denied' || st === 'revoked';
    e.reqView.hidden = !canAsk(view);
    e.reqView.textContent = view === 'none' ? this.t.requestView : this.t.askAgain;
    e.reqView.disabled = !s.online || this.asking.has('view');
    // Control needs view: nothing to ask before that.
    e.reqControl.hidden = !canAsk(control) || view !== 'granted';
    e.reqControl.textContent = control === 'none' ? this.t.requestControl : this.t.askAgain;
    e.reqControl.disabled = !s.online || this.asking.has('control');
    byId('perm-control-box').hidden = view !== 'granted' && control === 'none';
    const clip = s.grants.clipboard || 'none';
    this.renderPerm(e.permClip, clip);
    e.reqClip.hidden = !canAsk(clip) || view !== 'granted';
    e.reqClip.textContent = clip === 'none' ? this.t.requestClipboard : this.t.askAgain;
    e.reqClip.disabled = !s.online || this.asking.has('clipboard');
    byId('perm-clipboard-box').hidden = view !== 'granted' && clip === 'none';
    e.clipBtn.hidden = clip !== 'granted';
    if (clip !== 'granted') this.toggleClipboard(false);
    const granted = view === 'granted';
    e.viewer.hidden = !granted;
    e.root.classList.toggle('is-viewing', granted);
    document.querySelector('.session')?.classList.toggle('has-screen', granted);
    document.body.classList.toggle('screen-viewing', granted);
    if (granted) this.connect(); else this.disconnect();
    this.renderTools();
    this.renderHint();
    this.renderMessage();
  }

  renderPerm(el, st) {
    el.dataset.state = st;
    el.textContent = this.t[`state_${st}`] || st;
    el.title = this.t[`state_${st}_title`] || '';
  }

  async ask(permission) {
    const s = this.session;
    if (!s || this.asking.has(permission)) return;
    this.asking.add(permission);
    this.show(s);
    try {
      const r = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/permissions`, { permission });
      if (r && r.state) this.onGrant(s.id, permission, String(r.state));
    } catch (e) {
      this.onError(e);
    } finally {
      this.asking.delete(permission);
      if (this.session === s) this.show(s);
    }
  }

  get controlling() {
    const s = this.session;
    return !!(s && s.grants.control === 'granted' && s.grants.view === 'granted' && !this.el.viewOnly.checked
      && this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  renderTools() {
    const e = this.el;
    const control = !!(this.session && this.session.grants.control === 'granted');
    e.viewOnly.disabled = !control;
    e.cad.disabled = !this.controlling;
    e.cad.title = this.t.cadTitle;
    const expandText = this.expanded ? this.t.shrink : this.t.expand;
    e.expand.lastElementChild.textContent = expandText;
    e.expand.title = expandText;
    e.expand.classList.toggle('is-on', this.expanded);
    e.expand.setAttribute('aria-pressed', this.expanded ? 'true' : 'false');
    e.canvas.classList.toggle('is-controlling', this.controlling);
  }

  renderHint() {
    const s = this.session;
    const e = this.el;
    if (!s) return;
    const view = s.grants.view || 'none';
    let text = '';
    if (view === 'requested') text = this.t.hintWaitView;
    else if (view !== 'granted') text = this.t.hintView;
    else if (s.grants.control !== 'granted') text = this.t.hintControl;
    else if (e.viewOnly.checked) text = this.t.hintViewOnly;
    else if (document.activeElement === e.canvas) text = this.t.hintTyping;
    else text = this.t.hintClick;
    const typing = document.activeElement === e.canvas && this.controlling ? 'true' : 'false';
    for (const el of [e.hint, e.stageHint]) {
      el.textContent = text;
      el.dataset.typing = typing;
      el.dataset.flash = 'false';
    }
  }

  renderMessage() {
    const s = this.session;
    let text = '';
    if (s && s.grants.view === 'granted') {
      if (!s.online) text = this.t.screenOffline;
      else if (!this.ws || this.ws.readyState !== WebSocket.OPEN) text = this.t.screenConnecting;
      else if (!this.hasPicture) text = this.t.waitingPicture;
    }
    this.el.msg.textContent = text;
    this.el.msg.hidden = !text;
  }

  // ---- the viewer socket ------------------------------------------------------------------

  connect() {
    const s = this.session;
    if (!s) return;
    if (this.ws && this.wsFor === s.id) return;
    this.disconnect();
    this.wsFor = s.id;
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws/view/${encodeURIComponent(s.id)}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.resetPicture();
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.sendPing();
      this.renderTools();
      this.renderMessage();
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === 'string') {
        let m;
        try { m = JSON.parse(ev.data); } catch { return; }
        try { this.control(m); } catch (e) { console.error('viewer: bad message', e); }
      } else {
        this.binary(ev.data);
      }
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.renderTools();
      this.renderMessage();
      this.retry();
    });
  }

  retry() {
    clearTimeout(this.retryTimer);
    const s = this.session;
    if (!s || s.state !== 'active' || s.grants.view !== 'granted') return;
    const delay = VIEW_BACKOFF_MS[Math.min(this.attempt, VIEW_BACKOFF_MS.length - 1)];
    this.attempt += 1;
    const id = s.id;
    this.wsFor = null;
    this.retryTimer = setTimeout(() => {
      if (this.session && this.session.id === id && this.session.grants.view === 'granted') this.connect();
    }, delay);
  }

  disconnect() {
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    this.wsFor = null;
    if (ws) {
      this.releaseAll(ws);
      try { ws.close(1000); } catch { /* closed */ }
    }
    this.resetPicture();
  }

  send(obj, ws = this.ws) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  sendSettings() {
    this.send({ type: 'stream', settings: { monitor: this.settings.monitor, quality: this.settings.quality } });
  }

  control(m) {
    const s = this.session;
    switch (m.type) {
      case 'hello':
        if (Array.isArray(m.grants)) for (const g of m.grants) this.grant(g.permission, g.state);
        this.setMonitors(m.monitors);
        this.setSettings(m.settings);
        if (s) s.online = !!m.agent_online;
        this.renderMessage();
        break;
      case 'permission':
        this.grant(m.permission, m.state);
        break;
      case 'monitors':
        this.setMonitors(m.monitors);
        break;
      case 'stream':
        this.setSettings(m.settings);
        break;
      case 'presence':
        if (s) s.online = !!m.online;
        this.renderMessage();
        break;
      case 'pong':
        this.pong(m);
        break;
      case 'clipboard':
        if (typeof m.text === 'string') {
          this.el.clipIn.textContent = m.text;
          this.el.clipNew.hidden = !this.el.clipPanel.hidden;
        }
        break;
      case 'error':
        if (m.code === 'not_permitted') this.flashHint(this.t.notPermitted);
        else console.warn('viewer:', m.code, m.message);
        break;
      case 'ended':
        this.disconnect();
        break;
      default:
        break;
    }
  }

  /** Shows or hides the clipboard panel (`open` undefined: toggles). */
  toggleClipboard(open) {
    const e = this.el;
    const show = open === undefined ? e.clipPanel.hidden : open;
    e.clipPanel.hidden = !show;
    e.clipBtn.setAttribute('aria-expanded', show ? 'true' : 'false');
    e.clipBtn.classList.toggle('is-on', show);
    if (show) e.clipNew.hidden = true;
    requestAnimationFrame(() => this.layout());
  }

  grant(permission, state) {
    const s = this.session;
    if (!s || typeof permission !== 'string' || typeof state !== 'string') return;
    if (s.grants[permission] === state) return;
    this.onGrant(s.id, permission, state);
  }

  setMonitors(list) {
    this.monitors = Array.isArray(list) ? list.filter((m) => m && Number.isFinite(Number(m.id))) : [];
    const sel = this.el.monitor;
    const opts = [new Option(this.t.allMonitors, '')];
    for (const m of this.monitors) {
      const name = String(m.name || '').slice(0, 40) || `#${Number(m.id)}`;
      const o = new Option(`${name} · ${Number(m.width)}×${Number(m.height)}`, String(Number(m.id)));
      if (m.primary) o.title = this.t.primary;
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    sel.value = this.settings.monitor == null ? '' : String(this.settings.monitor);
    sel.disabled = this.monitors.length < 2 && this.settings.monitor == null;
  }

  setSettings(st) {
    if (!st || typeof st !== 'object') return;
    this.settings.monitor = st.monitor == null ? null : Number(st.monitor);
    this.settings.quality = ['auto', 'low', 'best'].includes(st.quality) ? st.quality : 'auto';
    this.el.quality.value = this.settings.quality;
    // A monitor the list does not (yet) hold shows as "All monitors".
    this.el.monitor.value = this.settings.monitor == null ? '' : String(this.settings.monitor);
    if (this.el.monitor.selectedIndex < 0) this.el.monitor.value = '';
  }

  /** Shows `text` for a moment: a refusal (red) unless `ok`. */
  flashHint(text, ok = false) {
    for (const h of [this.el.hint, this.el.stageHint]) {
      h.textContent = text;
      h.dataset.flash = ok ? 'ok' : 'true';
    }
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => this.renderHint(), 2500);
  }

  // ---- round trip and statistics ----------------------------------------------------------

  sendPing() {
    this.pingNonce = (this.pingNonce || 0) + 1;
    this.pingSent = { nonce: this.pingNonce, at: performance.now() };
    this.send({ type: 'ping', nonce: this.pingNonce });
  }

  pong(m) {
    if (!this.pingSent || Number(m.nonce) !== this.pingSent.nonce) return;
    const own = performance.now() - this.pingSent.at;
    const agent = Number.isFinite(Number(m.agent_rtt_ms)) && m.agent_rtt_ms !== null ? Number(m.agent_rtt_ms) : null;
    this.rtt = agent == null ? null : Math.round(own + agent);
    this.pingSent = null;
  }

  tick() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      this.el.stats.hidden = true;
      return;
    }
    this.sendPing();
    const now = performance.now();
    const secs = Math.max(0.25, (now - this.statsSince) / 1000);
    const fps = this.statFrames / secs;
    const kbit = (this.statBytes * 8) / 1000 / secs;
    this.statFrames = 0;
    this.statBytes = 0;
    this.statsSince = now;
    const rtt = this.rtt == null ? '—' : `${this.rtt} ms`;
    this.el.stats.textContent = `${fps < 10 ? fps.toFixed(1) : Math.round(fps)} fps · ${kbit < 100 ? kbit.toFixed(1) : Math.round(kbit)} kbit/s · ${this.t.rtt} ${rtt}`;
    this.el.stats.hidden = false;
  }

  // ---- pictures -----------------------------------------------------------------------------

  resetPicture() {
    this.chain = Promise.resolve();
    this.epoch = (this.epoch || 0) + 1;
    this.dropStream();
    this.lastSeq = null;
    this.awaitKey = true;
    this.hasPicture = false;
    this.lastRefresh = 0;
    this.statFrames = 0;
    this.statBytes = 0;
    this.statsSince = performance.now();
    this.rtt = null;
    this.cursor = { shape: null, x: 0, y: 0, hidden: true };
    this.el.cursor.hidden = true;
    this.el.stats.hidden = true;
    if (this.el.canvas.width !== 1) {
      this.el.canvas.width = 1;
      this.el.canvas.height = 1;
    }
    this.layout();
    this.renderMessage();
  }

  refresh() {
    const now = performance.now();
    if (now - this.lastRefresh < REFRESH_MIN_GAP_MS) return;
    this.lastRefresh = now;
    this.send({ type: 'refresh' });
  }

  corrupt(e) {
    console.warn('viewer: dropped a corrupt screen message:', e && e.message ? e.message : e);
    this.awaitKey = true;
    this.refresh();
  }

  /** Forgets the deflate stream: deflated messages wait for the next superseding one. */
  dropStream() {
    if (this.inflater) this.inflater.close();
    this.inflater = null;
  }

  /**
   * The update message a screen message carries (inflated when it is deflated), or null
   * when it cannot be had until the next superseding message. Called in message order.
   */
  async screenPayload(f) {
    const follows = this.lastSeq !== null && ((this.lastSeq + 1) >>> 0) === f.seq;
    this.lastSeq = f.seq;
    if (f.flags & FLAG_SUPERSEDES) {
      this.dropStream();
      this.inflater = new Inflater();
    } else if (!follows && this.inflater) {
      // Messages were lost: the stream cannot go on.
      this.dropStream();
      if (f.flags & FLAG_DEFLATE) throw new ScreenError(`screen message ${f.seq} follows a gap`);
    }
    if (!(f.flags & FLAG_DEFLATE)) return f.payload;
    if (!this.inflater) {
      this.awaitKey = true;
      this.refresh();
      return null;
    }
    try {
      return await this.inflater.message(f.payload);
    } catch (e) {
      this.dropStream();
      throw e;
    }
  }

  binary(buf) {
    this.statBytes += buf.byteLength || 0;
    let f;
    try {
      f = decodeFrame(buf);
    } catch (e) {
      this.corrupt(e);
      return;
    }
    if (f.channel === CH_SCREEN) {
      const epoch = this.epoch;
      this.chain = this.chain
        .then(async () => {
          if (epoch !== this.epoch) return;
          const payload = await this.screenPayload(f);
          if (payload && epoch === this.epoch) await this.update(payload);
        })
        .catch((e) => { if (epoch === this.epoch) this.corrupt(e); });
    } else if (f.channel === CH_CURSOR) {
      try { this.cursorMessage(decodeCursor(f.payload)); } catch (e) { console.warn('viewer: bad cursor message:', e.message); }
    }
  }

  async update(payload) {
    const u = decodeUpdate(payload);
    const ack = () => { if (u.end) this.send({ type: 'ack', frame: u.frame }); };
    if (this.awaitKey && !u.key) { ack(); return; }
    if (u.width !== this.back.width || u.height !== this.back.height) {
      if (!u.key) { ack(); throw new ScreenError(`a ${u.width}x${u.height} update for a ${this.back.width}x${this.back.height} surface`); }
      this.back.width = u.width;
      this.back.height = u.height;
    }
    // Palette pixels first: a bad index refuses the whole message before anything is drawn.
    const palettes = u.rects.map((r) => {
      if (r.enc !== 'palette') return null;
      try {
        return new ImageData(paletteImage(r), r.w, r.h);
      } catch (e) {
        ack();
        throw e;
      }
    });
    let bitmaps;
    try {
      bitmaps = await Promise.all(u.rects.map((r) => (r.enc === 'jpeg' || r.enc === 'png'
        ? createImageBitmap(new Blob([r.data], { type: r.enc === 'jpeg' ? 'image/jpeg' : 'image/png' }))
        : null)));
    } catch (e) {
      ack();
      throw new ScreenError(`an image did not decode (${e && e.message ? e.message : e})`);
    }
    const epoch = this.epoch;
    try {
      if (epoch !== this.epoch) return;
      u.rects.forEach((r, i) => {
        const b = bitmaps[i];
        if (b && (b.width !== r.w || b.height !== r.h)) throw new ScreenError(`a ${b.width}x${b.height} image for a ${r.w}x${r.h} rectangle`);
      });
      const g = this.backCtx;
      let snap = null;
      if (u.rects.some((r) => r.enc === 'copy')) {
        this.scratch.width = u.width;
        this.scratch.height = u.height;
        this.scratch.getContext('2d').drawImage(this.back, 0, 0);
        snap = this.scratch;
      }
      u.rects.forEach((r, i) => {
        if (r.enc === 'solid') {
          g.fillStyle = `rgb(${r.data[0]},${r.data[1]},${r.data[2]})`;
          g.fillRect(r.x, r.y, r.w, r.h);
        } else if (r.enc === 'copy') {
          g.drawImage(snap, r.sx, r.sy, r.w, r.h, r.x, r.y, r.w, r.h);
        } else if (r.enc === 'palette') {
          g.putImageData(palettes[i], r.x, r.y);
        } else {
          g.drawImage(bitmaps[i], r.x, r.y);
        }
      });
      if (u.key) {
        this.awaitKey = false;
        this.lastRefresh = 0; // the next corrupt message may ask again at once
      }
      if (u.end) this.present();
    } finally {
      for (const b of bitmaps) if (b) b.close();
      ack();
    }
  }

  present() {
    const c = this.el.canvas;
    if (c.width !== this.back.width || c.height !== this.back.height) {
      c.width = this.back.width;
      c.height = this.back.height;
      this.layout();
    }
    this.ctx.drawImage(this.back, 0, 0);
    this.statFrames += 1;
    if (!this.hasPicture) {
      this.hasPicture = true;
      this.renderMessage();
    }
  }

  cursorMessage(m) {
    const cur = this.cursor;
    if (m.kind === 'shape') {
      const c = this.el.cursor;
      c.width = m.width;
      c.height = m.height;
      this.cursorCtx.putImageData(new ImageData(new Uint8ClampedArray(m.rgba), m.width, m.height), 0, 0);
      cur.shape = { width: m.width, height: m.height, hotX: m.hotX, hotY: m.hotY };
      cur.hidden = false;
    } else if (m.kind === 'position') {
      cur.x = m.x;
      cur.y = m.y;
    } else {
      cur.hidden = true;
    }
    this.placeCursor();
  }

  // ---- layout ---------------------------------------------------------------------------

  layout() {
    const e = this.el;
    const w = e.canvas.width;
    const h = e.canvas.height;
    let s;
    if (this.scale === 'fit') {
      const cw = e.stage.clientWidth;
      const ch = e.stage.clientHeight;
      s = cw > 0 && ch > 0 ? Math.min(cw / w, ch / h) : 1;
    } else {
      s = 1 / (window.devicePixelRatio || 1);
    }
    this.px = s;
    e.wrap.style.width = `${Math.max(1, Math.floor(w * s))}px`;
    e.wrap.style.height = `${Math.max(1, Math.floor(h * s))}px`;
    e.stage.dataset.scale = this.scale;
    this.placeCursor();
  }

  placeCursor() {
    const cur = this.cursor;
    const el = this.el.cursor;
    if (!cur || !cur.shape || cur.hidden || !this.hasPicture) {
      el.hidden = true;
      return;
    }
    const s = this.px || 1;
    el.style.width = `${cur.shape.width * s}px`;
    el.style.height = `${cur.shape.height * s}px`;
    el.style.transform = `translate(${(cur.x - cur.shape.hotX) * s}px, ${(cur.y - cur.shape.hotY) * s}px)`;
    el.hidden = false;
  }

  // ---- input ----------------------------------------------------------------------------

  input(event) {
    if (!this.controlling) return false;
    this.send({ type: 'input', event });
    return true;
  }

  /** Surface coordinates of a pointer event. */
  surfacePoint(ev) {
    const r = this.el.canvas.getBoundingClientRect();
    const w = this.el.canvas.width;
    const h = this.el.canvas.height;
    const x = Math.floor(((ev.clientX - r.left) / Math.max(1, r.width)) * w);
    const y = Math.floor(((ev.clientY - r.top) / Math.max(1, r.height)) * h);
    return { x: Math.min(w - 1, Math.max(0, x)), y: Math.min(h - 1, Math.max(0, y)) };
  }

  pointer(ev) {
    if (!this.controlling || !this.hasPicture) return;
    const { x, y } = this.surfacePoint(ev);
    // Browser bits: 1 left, 2 right, 4 middle, 8 back, 16 forward; ours: 1 left, 2 middle, 4 right.
    const b = ev.buttons;
    const buttons = (b & 1) | ((b & 4) ? 2 : 0) | ((b & 2) ? 4 : 0) | (b & 8) | (b & 16);
    const move = { kind: 'pointer', x, y, buttons };
    if (ev.type === 'pointermove' && buttons === this.lastButtons) {
      // At most one move per animation frame.
      this.pendingMove = move;
      if (!this.moveQueued) {
        this.moveQueued = true;
        requestAnimationFrame(() => {
          this.moveQueued = false;
          if (this.pendingMove) { this.input(this.pendingMove); this.pendingMove = null; }
        });
      }
      return;
    }
    this.pendingMove = null;
    this.lastButtons = buttons;
    this.input(move);
  }

  wheel(ev) {
    if (!this.controlling || !this.hasPicture) return;
    ev.preventDefault();
    const unit = ev.deltaMode === 1 ? 3 : ev.deltaMode === 2 ? 1 : 100;
    this.wheelX = (this.wheelX || 0) + ev.deltaX / unit;
    this.wheelY = (this.wheelY || 0) + ev.deltaY / unit;
    const dx = Math.trunc(this.wheelX);
    const dy = Math.trunc(this.wheelY);
    if (!dx && !dy) return;
    this.wheelX -= dx;
    this.wheelY -= dy;
    this.input({ kind: 'wheel', dx: Math.max(-127, Math.min(127, dx)), dy: Math.max(-127, Math.min(127, dy)) });
  }

  key(ev, down) {
    if (!this.controlling) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (ev.isComposing) return;
    this.held = this.held || new Map(); // code → keysym sent on key down
    const id = ev.code || `key:${ev.key}`;
    if (ev.key === 'AltGraph') {
      // Some systems announce AltGr as Control then AltGraph at once: drop that Control.
      if (this.pendingCtrl) {
        clearTimeout(this.pendingCtrl.timer);
        this.suppressed = this.pendingCtrl.id;
        this.pendingCtrl = null;
      }
      return;
    }
    if (ev.key === 'Control' && down && !ev.repeat) {
      // Held back a moment: an AltGraph right behind it makes it the fake one.
      this.flushCtrl();
      const pending = { id, timer: setTimeout(() => this.flushCtrl(), 40) };
      this.pendingCtrl = pending;
      return;
    }
    if (ev.key === 'Control' && !down) {
      if (this.suppressed === id) { this.suppressed = null; return; }
      if (this.pendingCtrl && this.pendingCtrl.id === id) this.flushCtrl();
    } else {
      this.flushCtrl();
    }
    if (down) {
      const keysym = keysymOf(ev.key);
      if (keysym == null) return; // Dead keys and the like: the composed character follows
      this.held.set(id, keysym);
      this.input({ kind: 'key', keysym, down: true, code: String(ev.code || '').slice(0, 32) });
    } else {
      const keysym = this.held.has(id) ? this.held.get(id) : keysymOf(ev.key);
      this.held.delete(id);
      if (keysym == null) return;
      this.input({ kind: 'key', keysym, down: false, code: String(ev.code || '').slice(0, 32) });
    }
  }

  flushCtrl() {
    const p = this.pendingCtrl;
    if (!p) return;
    clearTimeout(p.timer);
    this.pendingCtrl = null;
    this.held = this.held || new Map();
    this.held.set(p.id, NAMED_KEYS.Control);
    this.input({ kind: 'key', keysym: NAMED_KEYS.Control, down: true, code: p.id.startsWith('key:') ? '' : p.id });
  }

  releaseAll(ws = this.ws) {
    if (this.pendingCtrl) { clearTimeout(this.pendingCtrl.timer); this.pendingCtrl = null; }
    const had = (this.held && this.held.size) || this.lastButtons;
    this.held = new Map();
    this.lastButtons = 0;
    this.suppressed = null;
    const s = this.session;
    if (had && s && s.grants.control === 'granted') this.send({ type: 'input', event: { kind: 'release_all' } }, ws);
  }
}
