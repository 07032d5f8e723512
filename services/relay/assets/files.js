// Lifeline console: the "Files" area of a session (issue 7).
//
// The representative asks the customer for "file transfer"; once allowed, the panel lists
// the folder the customer shares (the relay asks the customer's client, see
// services/relay/src/files.rs), opens folders, downloads files and uploads files and
// folders (file picker or drag and drop onto the panel), each with progress, speed and time
// left.
//
// * Download: streamed with fetch; when the stream breaks it is resumed with
//   `Range: bytes=N-` (a few times, with a pause); the bytes are checked against the
//   SHA-256 the customer's client announced (X-Lifeline-Sha256) before the browser saves
//   them.
// * Upload: the file's SHA-256 is computed in the browser first; `uploads` tells how much
//   the customer's computer already holds (a resumed upload sends only the rest); an
//   existing file is replaced only after the representative confirms; the bytes go with
//   XMLHttpRequest (for upload progress) and a broken upload is resumed from the offset the
//   relay reports.
//
// Everything from the server (names, messages) reaches the DOM as text only.
//
// Files the customer sends from the client window are polled every few seconds while the
// area shows a session with file transfer allowed, and listed with a Download button.
//
// Limits: whole files are held in the browser's memory while they are hashed; folders are
// downloaded file by file.

import { t } from '/static/texts.js';

const RETRIES = 5;
const RETRY_PAUSE_MS = 1500;
const OFFERS_EVERY_MS = 3000;

const byId = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Bytes as "12.3 MB". */
export function fmtBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(n) || 0;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Seconds as "1 min 05 s". */
function fmtLeft(s) {
  if (!Number.isFinite(s)) return '…';
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m} min ${String(s % 60).padStart(2, '0')} s` : `${s} s`;
}

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

const join = (dir, name) => (dir ? `${dir}/${name}` : name);

/** One transfer's row: progress, speed, time left, result. */
class TransferRow {
  constructor(list, direction, name, size) {
    this.size = size;
    this.done = 0;
    this.start = performance.now();
    this.samples = [[this.start, 0]];
    this.bar = h('progress', { max: 1, value: 0 });
    this.text = h('span', { class: 'xfer-text', 'data-testid': 'transfer-text' });
    this.el = h('li', { class: 'xfer', 'data-testid': 'transfer', dataset: { state: 'running', direction, name } },
      h('span', { class: 'xfer-dir', text: direction === 'upload' ? '↑' : '↓', 'aria-hidden': 'true' }),
      h('span', { class: 'xfer-name', text: name }),
      this.bar, this.text);
    list.prepend(this.el);
    this.render();
  }

  progress(done, size = this.size) {
    this.size = size;
    this.done = done;
    const now = performance.now();
    this.samples.push([now, done]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 3000) this.samples.shift();
    this.render();
  }

  render() {
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    const rate = t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
    this.bar.max = Math.max(1, this.size);
    this.bar.value = this.done;
    this.text.textContent = t.filesProgress(fmtBytes(this.done), fmtBytes(this.size),
      `${fmtBytes(rate)}/s`, fmtLeft(rate > 0 ? (this.size - this.done) / rate : Infinity));
  }

  note(text) {
    this.text.textContent = text;
  }

  finish(ok, text, sha256) {
    this.el.dataset.state = ok ? 'done' : 'failed';
    if (sha256) this.el.dataset.sha256 = sha256;
    this.bar.value = ok ? this.bar.max : this.bar.value;
    this.text.textContent = text;
  }
}

export class FilePanel {
  /**
   * @param {{api: Function, csrf: () => string, onGrant: Function, onError: Function}} deps
   */
  constructor({ api, csrf, onGrant, onError }) {
    this.api = api;
    this.csrf = csrf;
    this.onGrant = onGrant;
    this.onError = onError;
    this.session = null;
    this.path = '';
    this.listedFor = null;
    this.asking = false;
    this.el = {
      root: byId('files'),
      perm: byId('perm-files'),
      req: byId('req-files'),
      body: byId('files-body'),
      crumbs: byId('files-path'),
      up: byId('files-up'),
      refresh: byId('files-refresh'),
      rows: byId('files-rows'),
      empty: byId('files-empty'),
      pick: byId('files-pick'),
      input: byId('files-input'),
      drop: byId('files-drop'),
      transfers: byId('files-transfers'),
      offersBox: byId('files-offers-box'),
      offers: byId('files-offers'),
    };
    this.offerIds = '';
    setInterval(() => this.pollOffers(), OFFERS_EVERY_MS);
    const e = this.el;
    e.req.addEventListener('click', () => this.ask());
    e.up.addEventListener('click', () => this.open(this.path.split('/').slice(0, -1).join('/')));
    e.refresh.addEventListener('click', () => this.open(this.path));
    e.pick.addEventListener('click', () => e.input.click());
    e.input.addEventListener('change', () => {
      const list = [...e.input.files].map((f) => ({ file: f, rel: f.name }));
      e.input.value = '';
      this.uploadAll(list);
    });
    for (const ev of ['dragenter', 'dragover']) {
      e.drop.addEventListener(ev, (x) => {
        if (!this.granted) return;
        x.preventDefault();
        e.drop.classList.add('is-over');
      });
    }
    e.drop.addEventListener('dragleave', () => e.drop.classList.remove('is-over'));
    e.drop.addEventListener('drop', async (x) => {
      x.preventDefault();
      e.drop.classList.remove('is-over');
      if (!this.granted) return;
      this.uploadAll(await droppedFiles(x.dataTransfer));
    });
  }

  get granted() {
    return !!(this.session && this.session.grants.file_transfer === 'granted');
  }

  /** Shows the area for a session (or none); reads `grants`, `online` and `state`. */
  show(s) {
    if (this.session && s && this.session.id !== s.id) {
      this.path = '';
      this.listedFor = null;
      this.offerIds = '';
      this.el.offersBox.hidden = true;
      this.el.offers.replaceChildren();
    }
    this.session = s;
    const e = this.el;
    const active = !!(s && s.state === 'active');
    e.root.hidden = !active;
    if (!active) return;
    const st = s.grants.file_transfer || 'none';
    e.perm.dataset.state = st;
    e.perm.textContent = t[`state_${st}`] || st;
    const canAsk = st === 'none' || st === 'denied' || st === 'revoked';
    e.req.hidden = !canAsk;
    e.req.textContent = st === 'none' ? t.filesRequest : t.askAgain;
    e.req.disabled = !s.online || this.asking;
    e.body.hidden = st !== 'granted';
    if (st === 'granted' && this.listedFor !== s.id) {
      this.listedFor = s.id;
      this.open(this.path);
    }
    if (st !== 'granted') this.listedFor = null;
  }

  /** Lists the files the customer sent (when file transfer stands). */
  async pollOffers() {
    if (!this.granted || document.hidden) return;
    const s = this.session;
    let list;
    try {
      const r = await this.api('GET', this.base('/offers'));
      list = r && Array.isArray(r.offers) ? r.offers : [];
    } catch {
      return;
    }
    if (this.session !== s) return;
    const ids = list.map((o) => o.id).join(',');
    if (ids === this.offerIds) return;
    this.offerIds = ids;
    this.el.offersBox.hidden = list.length === 0;
    this.el.offers.replaceChildren(...list.map((o) => {
      const name = String(o.name);
      const url = this.base(`/offers/${encodeURIComponent(String(o.id))}`);
      return h('li', { 'data-testid': 'file-offer', dataset: { name } },
        h('span', { class: 'xfer-name', text: name }),
        h('span', { text: ` ${fmtBytes(o.size)} ` }),
        h('button', { type: 'button', class: 'btn btn-sm', text: t.filesDownload, 'data-testid': 'offer-download',
          onclick: () => this.fetchFile(url, name) }));
    }));
  }

  base(suffix) {
    return `/api/v1/sessions/${encodeURIComponent(this.session.id)}/files${suffix}`;
  }

  async ask() {
    const s = this.session;
    if (!s || this.asking) return;
    this.asking = true;
    this.show(s);
    try {
      const r = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/permissions`, { permission: 'file_transfer' });
      if (r && r.state) this.onGrant(s.id, 'file_transfer', String(r.state));
    } catch (err) {
      this.onError(err);
    } finally {
      this.asking = false;
      if (this.session === s) this.show(s);
    }
  }

  /** Lists a folder of the shared folder. */
  async open(path) {
    if (!this.granted) return;
    const e = this.el;
    try {
      const r = await this.api('GET', `${this.base('')}?path=${encodeURIComponent(path)}`);
      this.path = typeof r.path === 'string' ? r.path : path;
      const entries = Array.isArray(r.entries) ? r.entries : [];
      e.crumbs.textContent = `/${this.path}`;
      e.up.disabled = this.path === '';
      e.rows.replaceChildren(...entries.map((en) => this.row(en)));
      e.empty.hidden = entries.length > 0;
      e.empty.textContent = r.truncated ? t.filesTruncated : t.filesEmpty;
      if (r.truncated) e.empty.hidden = false;
    } catch (err) {
      this.onError(err);
    }
  }

  row(en) {
    const name = String(en.name);
    const kind = String(en.kind);
    const full = join(this.path, name);
    const nameCell = kind === 'dir'
      ? h('button', { type: 'button', class: 'link', text: `${name}/`, onclick: () => this.open(full) })
      : h('span', { text: name, title: kind === 'other' ? t.filesOther : null });
    const action = kind === 'file'
      ? h('button', { type: 'button', class: 'btn btn-sm', text: t.filesDownload, 'data-testid': 'file-download',
        onclick: () => this.download(full, name) })
      : null;
    return h('tr', { 'data-testid': 'file-row', dataset: { name, kind } },
      h('td', null, nameCell),
      h('td', { class: 'num', text: kind === 'file' ? fmtBytes(en.size) : '' }),
      h('td', { class: 'nowrap', text: en.modified ? new Date(Number(en.modified)).toLocaleString() : '' }),
      h('td', null, action));
  }

  /** Downloads one file, resuming a broken stream, and saves it once its hash matched. */
  download(path, name) {
    return this.fetchFile(`${this.base('/content')}?path=${encodeURIComponent(path)}`, name);
  }

  async fetchFile(url, name) {
    const row = new TransferRow(this.el.transfers, 'download', name, 0);
    const parts = [];
    let got = 0;
    let size = null;
    let sha = null;
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          const res = await fetch(url, {
            credentials: 'same-origin', cache: 'no-store',
            headers: got > 0 ? { Range: `bytes=${got}-` } : {},
          });
          if (!res.ok) {
            const body = await res.json().catch(() => null);
            const err = new Error(body && body.message ? body.message : t.requestFailed(res.status));
            err.final = res.status !== 503;
            throw err;
          }
          const announced = res.headers.get('X-Lifeline-Sha256');
          if (sha && announced !== sha) throw Object.assign(new Error(t.filesChanged), { final: true });
          sha = announced;
          size = got + Number(res.headers.get('Content-Length') || 0);
          const reader = res.body.getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            parts.push(value);
            got += value.length;
            row.progress(got, size);
          }
          if (got >= size) break;
          throw new Error('short');
        } catch (err) {
          if (err.final || attempt >= RETRIES) throw err;
          row.note(t.filesResuming);
          await sleep(RETRY_PAUSE_MS);
        }
      }
      const blob = new Blob(parts, { type: 'application/octet-stream' });
      const digest = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
      if (digest !== sha) throw new Error(t.filesHashMismatch);
      const saveUrl = URL.createObjectURL(blob);
      const a = h('a', { href: saveUrl, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(saveUrl), 60_000);
      row.finish(true, t.filesVerified(fmtBytes(size)), digest);
    } catch (err) {
      row.finish(false, err.message || String(err));
      this.onError(err);
    }
  }

  /** Uploads files (with their paths relative to the current folder). */
  async uploadAll(items) {
    const dirs = new Set();
    for (const { rel } of items) {
      const segs = rel.split('/').slice(0, -1);
      for (let i = 1; i <= segs.length; i += 1) dirs.add(segs.slice(0, i).join('/'));
    }
    try {
      for (const d of [...dirs].sort((a, b) => a.length - b.length)) {
        await this.api('POST', this.base('/folders'), { path: join(this.path, d) });
      }
    } catch (err) {
      this.onError(err);
      return;
    }
    for (const item of items) await this.upload(item.file, join(this.path, item.rel));
    this.open(this.path);
  }

  async upload(file, path) {
    const name = path.split('/').pop();
    const row = new TransferRow(this.el.transfers, 'upload', name, file.size);
    try {
      row.note(t.filesHashing);
      const sha256 = hex(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
      let overwrite = false;
      let offset;
      try {
        offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256 })).offset;
      } catch (err) {
        if (err.code !== 'exists') throw err;
        if (!window.confirm(t.filesReplace(name))) {
          row.finish(false, t.filesKept);
          return;
        }
        overwrite = true;
        offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256, overwrite })).offset;
      }
      for (let attempt = 0; ; attempt += 1) {
        const r = await this.put(file, path, sha256, Number(offset) || 0, overwrite, row);
        if (r.status === 200) {
          row.finish(true, t.filesVerified(fmtBytes(file.size)), sha256);
          return;
        }
        const body = r.body || {};
        if (attempt >= RETRIES || (r.status && ![0, 400, 409, 502, 503].includes(r.status))) {
          throw new Error(body.message || t.requestFailed(r.status));
        }
        row.note(t.filesResuming);
        await sleep(RETRY_PAUSE_MS);
        if (typeof body.offset === 'number') offset = body.offset;
        else offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256, overwrite })).offset;
      }
    } catch (err) {
      row.finish(false, err.message || String(err));
      this.onError(err);
    }
  }

  put(file, path, sha256, offset, overwrite, row) {
    return new Promise((resolve) => {
      const q = new URLSearchParams({ path, size: String(file.size), sha256, offset: String(offset), overwrite: String(overwrite) });
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', `${this.base('/content')}?${q}`);
      xhr.setRequestHeader('X-CSRF-Token', this.csrf());
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.onprogress = (ev) => row.progress(offset + ev.loaded, file.size);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { body = null; }
        resolve({ status: xhr.status, body });
      };
      xhr.onerror = () => resolve({ status: 0, body: null });
      xhr.send(file.slice(offset));
    });
  }
}

/** The files of a drop, folders walked, with paths relative to the drop. */
async function droppedFiles(dt) {
  const out = [];
  const entries = [...(dt.items || [])].map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (entries.some((e) => e)) {
    const walk = async (entry, prefix) => {
      if (!entry) return;
      if (entry.isFile) {
        const file = await new Promise((res, rej) => entry.file(res, rej));
        out.push({ file, rel: prefix + entry.name });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
          if (!batch.length) break;
          for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
        }
      }
    };
    for (const e of entries) await walk(e, '');
    return out;
  }
  return [...(dt.files || [])].map((f) => ({ file: f, rel: f.name }));
}
