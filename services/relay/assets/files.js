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
// Whole folders (and several selected entries):
// * Download: the folder is walked with listings (one per folder), bounded before any byte
//   moves (at most MAX_FOLDER_ENTRIES entries, and the admin's largest size for the whole),
//   then each file is fetched and SHA-256-verified exactly like a single download (so each
//   is also recorded by the relay as its own `file_transferred` event). The verified files
//   become one ZIP (stored, no compression: UTF-8 names, the folders — empty ones too — as
//   entries) that the browser saves as `NAME.zip`. Links, devices and other special entries
//   are skipped, never followed, and listed in the transfer's row.
// * Upload: "Send a folder…" (an input with `webkitdirectory`) or a folder dropped on the
//   area: the folders are made first (MakeDir, empty ones too when the browser gives them:
//   a drop does, the folder input does not), then every file goes the resumable, verified
//   way. An existing file asks "Replace / Skip / Replace all / Skip all" once for the batch
//   (a single file keeps the plain confirmation). The same bounds apply; a browser hands no
//   links from a folder (they arrive as the files they point to, or not at all).
// * One row for the whole folder: files done / total, bytes, speed, time left.
//
// Limits: whole files are held in the browser's memory while they are hashed, and a
// downloaded folder's files until its ZIP is saved (no ZIP64: under 4 GB in all).

import { t } from '/static/texts.js';
import { byId, h } from '/static/dom.js';

const RETRIES = 5;
const RETRY_PAUSE_MS = 1500;
const OFFERS_EVERY_MS = 3000;
/** Most entries (files and folders) in one folder transfer. */
export const MAX_FOLDER_ENTRIES = 10_000;
/** A stored ZIP without ZIP64 holds less than this. */
const ZIP_MAX = 0xffff_fff0;

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

/** The row of a whole folder: files done of total, bytes, speed, time left. */
class FolderRow extends TransferRow {
  constructor(list, direction, name, files, size) {
    super(list, direction, name, size);
    this.files = files;
    this.filesDone = 0;
    this.el.setAttribute('data-testid', 'folder-transfer');
    this.el.dataset.files = String(files);
    this.render();
  }

  fileDone() {
    this.filesDone += 1;
    this.el.dataset.filesDone = String(this.filesDone);
    this.render();
  }

  render() {
    if (this.files == null) return;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    const rate = t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
    this.bar.max = Math.max(1, this.size);
    this.bar.value = this.done;
    this.text.textContent = t.filesFolderProgress(this.filesDone, this.files, fmtBytes(this.done),
      fmtBytes(this.size), `${fmtBytes(rate)}/s`, fmtLeft(rate > 0 ? (this.size - this.done) / rate : Infinity));
  }
}

// CRC-32 (IEEE) for the ZIP entries.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A stored (uncompressed) ZIP of `entries` ({name, data: Uint8Array} or {name: 'dir/'}). */
export function zipStored(entries) {
  const enc = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | Math.floor(now.getSeconds() / 2);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  for (const e of entries) {
    const name = enc.encode(e.name);
    const data = e.data || new Uint8Array(0);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(6, 0x0800, true); // UTF-8 names
    local.setUint16(8, 0, true); // stored
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true);
    parts.push(local.buffer, name, data);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, 0x031e, true); // made by Unix, 3.0
    cd.setUint16(6, 20, true);
    cd.setUint16(8, 0x0800, true);
    cd.setUint16(10, 0, true);
    cd.setUint16(12, time, true);
    cd.setUint16(14, date, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, data.length, true);
    cd.setUint32(24, data.length, true);
    cd.setUint16(28, name.length, true);
    cd.setUint32(38, (e.name.endsWith('/') ? 0o40755 : 0o100644) * 65536 + (e.name.endsWith('/') ? 0x10 : 0), true);
    cd.setUint32(42, offset, true);
    central.push(cd.buffer, name);
    offset += 30 + name.length + data.length;
  }
  const cdSize = central.reduce((n, b) => n + b.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, entries.length, true);
  end.setUint16(10, entries.length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end.buffer], { type: 'application/zip' });
}

/** Asks what to do with an existing file during a folder upload. */
function askConflict(name) {
  return new Promise((resolve) => {
    const choice = (value, text, testid, primary) => h('button', {
      type: 'button', class: primary ? 'btn btn-primary' : 'btn', text, 'data-testid': testid,
      onclick: () => { dlg.close(); dlg.remove(); resolve(value); },
    });
    const dlg = h('dialog', { class: 'files-conflict', 'data-testid': 'files-conflict' },
      h('p', { text: t.filesReplace(name) }),
      h('div', { class: 'files-conflict-actions' },
        choice('skip', t.filesSkip, 'conflict-skip'),
        choice('skip-all', t.filesSkipAll, 'conflict-skip-all'),
        choice('replace', t.filesReplaceOne, 'conflict-replace'),
        choice('replace-all', t.filesReplaceAll, 'conflict-replace-all', true)));
    dlg.addEventListener('cancel', () => { dlg.remove(); resolve('skip'); });
    document.body.append(dlg);
    dlg.showModal();
  });
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
    this.root = '';
    this.maxSize = 0;
    this.selected = new Set();
    setInterval(() => this.pollOffers(), OFFERS_EVERY_MS);
    const e = this.el;
    this.addFolderControls();
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

  /** "Send a folder…" and "Download selected" beside "Send files…". */
  addFolderControls() {
    const e = this.el;
    e.folderInput = h('input', { type: 'file', webkitdirectory: true, multiple: true, hidden: true, 'data-testid': 'files-folder-input' });
    e.folderPick = h('button', { type: 'button', class: 'btn btn-sm', text: t.filesUploadFolder, 'data-testid': 'files-pick-folder',
      onclick: () => e.folderInput.click() });
    e.getSel = h('button', { type: 'button', class: 'btn btn-sm', text: t.filesDownloadSelected, 'data-testid': 'files-download-selected',
      disabled: true, onclick: () => this.downloadSelected() });
    e.pick.after(e.folderPick, e.folderInput, e.getSel);
    e.folderInput.addEventListener('change', () => {
      const list = [...e.folderInput.files].map((f) => ({ file: f, rel: f.webkitRelativePath || f.name }));
      e.folderInput.value = '';
      this.uploadAll(list);
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
      this.root = typeof r.root === 'string' ? r.root : '';
      this.maxSize = Number(r.max_size) || 0;
      this.selected.clear();
      e.getSel.disabled = true;
      // The shared folder's name is the root: nothing above it exists for the representative.
      e.crumbs.textContent = `${this.root}/${this.path}`;
      e.crumbs.title = t.filesRootTitle(this.root);
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
      : kind === 'dir'
        ? h('button', { type: 'button', class: 'btn btn-sm', text: t.filesDownloadZip, 'data-testid': 'folder-download',
          onclick: () => this.downloadEntries([{ path: full, name, kind, size: 0 }], name) })
        : null;
    const pick = kind === 'other' ? null : h('input', {
      type: 'checkbox', class: 'files-select', 'data-testid': 'file-select', 'aria-label': t.filesSelect(name),
      onchange: (ev) => {
        const key = JSON.stringify({ path: full, name, kind, size: Number(en.size) || 0 });
        if (ev.target.checked) this.selected.add(key);
        else this.selected.delete(key);
        this.el.getSel.disabled = this.selected.size === 0;
      },
    });
    return h('tr', { 'data-testid': 'file-row', dataset: { name, kind } },
      h('td', null, pick, ' ', nameCell),
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
    try {
      const { blob, size, sha } = await this.fetchVerified(url, (got, total) => row.progress(got, total), () => row.note(t.filesResuming));
      const saveUrl = URL.createObjectURL(blob);
      const a = h('a', { href: saveUrl, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(saveUrl), 60_000);
      row.finish(true, t.filesVerified(fmtBytes(size)), sha);
    } catch (err) {
      row.finish(false, err.message || String(err));
      this.onError(err);
    }
  }

  /** Fetches a file (resuming a broken stream) and checks it against its SHA-256. */
  async fetchVerified(url, onProgress, onResume) {
    const parts = [];
    let got = 0;
    let size = null;
    let sha = null;
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
          onProgress(got, size);
        }
        if (got >= size) break;
        throw new Error('short');
      } catch (err) {
        if (err.final || attempt >= RETRIES) throw err;
        onResume();
        await sleep(RETRY_PAUSE_MS);
      }
    }
    const blob = new Blob(parts, { type: 'application/octet-stream' });
    const digest = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
    if (digest !== sha) throw new Error(t.filesHashMismatch);
    return { blob, size, sha: digest };
  }

  /** The checked entries, as one ZIP. */
  downloadSelected() {
    const items = [...this.selected].map((x) => JSON.parse(x));
    if (!items.length) return null;
    const base = this.path ? this.path.split('/').pop() : (this.root || 'files');
    return this.downloadEntries(items, items.length === 1 ? items[0].name : base);
  }

  /**
   * Walks folders with listings: every file, every folder (relative to the download) and
   * every skipped entry; refuses past the bounds before any byte moves.
   */
  async walk(items) {
    const files = [];
    const dirs = [];
    const skipped = [];
    let total = 0;
    const bound = () => {
      if (files.length + dirs.length + skipped.length > MAX_FOLDER_ENTRIES) {
        throw Object.assign(new Error(t.filesTooMany(MAX_FOLDER_ENTRIES)), { final: true });
      }
    };
    const todo = [];
    for (const it of items) {
      if (it.kind === 'dir') todo.push([it.path, it.name]);
      else if (it.kind === 'file') {
        files.push({ path: it.path, rel: it.name, size: Number(it.size) || 0 });
        total += Number(it.size) || 0;
      }
    }
    while (todo.length) {
      const [path, rel] = todo.shift();
      dirs.push(rel);
      bound();
      const r = await this.api('GET', `${this.base('')}?path=${encodeURIComponent(path)}`);
      if (r.truncated) throw Object.assign(new Error(t.filesTooMany(MAX_FOLDER_ENTRIES)), { final: true });
      for (const en of Array.isArray(r.entries) ? r.entries : []) {
        const name = String(en.name);
        if (en.kind === 'dir') todo.push([join(path, name), `${rel}/${name}`]);
        else if (en.kind === 'file') {
          files.push({ path: join(path, name), rel: `${rel}/${name}`, size: Number(en.size) || 0 });
          total += Number(en.size) || 0;
        } else skipped.push(`${rel}/${name}`);
        bound();
      }
    }
    return { files, dirs, skipped, total };
  }

  /** Downloads entries (folders with their structure) as one verified ZIP. */
  async downloadEntries(items, name) {
    const zipName = `${name}.zip`;
    const row = new FolderRow(this.el.transfers, 'download', zipName, 0, 0);
    row.note(t.filesScanning);
    try {
      const { files, dirs, skipped, total } = await this.walk(items);
      const sizes = files.reduce((n, f) => n + f.size, 0);
      if (this.maxSize > 0 && sizes > this.maxSize) throw new Error(t.filesFolderTooBig(fmtBytes(sizes), fmtBytes(this.maxSize)));
      if (sizes >= ZIP_MAX) throw new Error(t.filesFolderTooBig(fmtBytes(sizes), fmtBytes(ZIP_MAX)));
      row.files = files.length;
      row.el.dataset.files = String(files.length);
      row.progress(0, Math.max(total, sizes));
      const entries = dirs.map((d) => ({ name: `${d}/` }));
      let before = 0;
      for (const f of files) {
        const url = `${this.base('/content')}?path=${encodeURIComponent(f.path)}`;
        const { blob, size } = await this.fetchVerified(url, (got) => row.progress(before + got), () => row.note(t.filesResuming));
        before += size;
        entries.push({ name: f.rel, data: new Uint8Array(await blob.arrayBuffer()) });
        row.fileDone();
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const zip = zipStored(entries);
      const saveUrl = URL.createObjectURL(zip);
      const a = h('a', { href: saveUrl, download: zipName, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(saveUrl), 60_000);
      row.el.dataset.skipped = skipped.join('\n');
      row.finish(true, [t.filesFolderVerified(files.length, fmtBytes(before)),
        skipped.length ? t.filesSkippedLinks(skipped.join(', ')) : ''].filter(Boolean).join(' · '));
    } catch (err) {
      row.finish(false, err.message || String(err));
      this.onError(err);
    }
  }

  /**
   * Uploads files (with their paths relative to the current folder; `{dir}` items are
   * folders, empty ones included). More than one file, or any folder, is a folder transfer:
   * bounded, one row for the whole, one question for every existing file.
   */
  async uploadAll(items) {
    const dirs = new Set();
    for (const it of items) {
      const segs = it.dir != null ? it.dir.split('/') : it.rel.split('/').slice(0, -1);
      for (let i = 1; i <= segs.length; i += 1) dirs.add(segs.slice(0, i).join('/'));
    }
    const files = items.filter((it) => it.file);
    const folder = files.length > 1 || dirs.size > 0;
    if (!folder) {
      for (const item of files) await this.upload(item.file, join(this.path, item.rel));
      this.open(this.path);
      return;
    }
    const tops = [...new Set(files.map((f) => f.rel.split('/')[0]).concat([...dirs].map((d) => d.split('/')[0])))];
    const total = files.reduce((n, f) => n + f.file.size, 0);
    const row = new FolderRow(this.el.transfers, 'upload', tops.slice(0, 3).join(', ') + (tops.length > 3 ? ', …' : ''), files.length, total);
    try {
      if (files.length + dirs.size > MAX_FOLDER_ENTRIES) throw new Error(t.filesTooMany(MAX_FOLDER_ENTRIES));
      if (this.maxSize > 0 && total > this.maxSize) throw new Error(t.filesFolderTooBig(fmtBytes(total), fmtBytes(this.maxSize)));
      for (const d of [...dirs].sort((a, b) => a.split('/').length - b.split('/').length)) {
        await this.api('POST', this.base('/folders'), { path: join(this.path, d) });
      }
      const batch = { policy: null };
      let before = 0;
      let sent = 0;
      const failed = [];
      const skippedFiles = [];
      for (const item of files) {
        const sink = {
          progress: (done) => row.progress(before + done, total),
          note: (text) => row.note(text),
        };
        const r = await this.upload(item.file, join(this.path, item.rel), { sink, batch });
        before += item.file.size;
        row.progress(before, total);
        if (r === 'done') {
          row.fileDone();
          sent += item.file.size;
        } else if (r === 'kept') skippedFiles.push(item.rel);
        else failed.push(item.rel);
      }
      const ok = failed.length === 0;
      const said = [row.filesDone ? t.filesFolderVerified(row.filesDone, fmtBytes(sent)) : '',
        skippedFiles.length ? t.filesFolderKept(skippedFiles.length) : '',
        failed.length ? t.filesFolderFailed(failed.join(', ')) : ''].filter(Boolean);
      row.finish(ok, said.length ? said.join(' · ') : t.filesFolderVerified(0, fmtBytes(0)));
    } catch (err) {
      row.finish(false, err.message || String(err));
      this.onError(err);
    }
    this.open(this.path);
  }

  /**
   * Uploads one file. Alone it has a row of its own and asks with a confirmation; in a
   * folder transfer (`sink`, `batch`) it reports to the folder's row and asks the batch's
   * question. Returns 'done', 'kept' or 'failed'.
   */
  async upload(file, path, { sink = null, batch = null } = {}) {
    const name = path.split('/').pop();
    const row = sink ? null : new TransferRow(this.el.transfers, 'upload', name, file.size);
    const view = sink || row;
    try {
      view.note(t.filesHashing);
      const sha256 = hex(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
      let overwrite = false;
      let offset;
      try {
        offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256 })).offset;
      } catch (err) {
        if (err.code !== 'exists') throw err;
        let replace;
        if (batch) {
          let choice = batch.policy;
          if (!choice) {
            choice = await askConflict(path);
            if (choice === 'replace-all') batch.policy = 'replace';
            if (choice === 'skip-all') batch.policy = 'skip';
          }
          replace = choice === 'replace' || choice === 'replace-all';
        } else {
          replace = window.confirm(t.filesReplace(name));
        }
        if (!replace) {
          if (row) row.finish(false, t.filesKept);
          return 'kept';
        }
        overwrite = true;
        offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256, overwrite })).offset;
      }
      for (let attempt = 0; ; attempt += 1) {
        const r = await this.put(file, path, sha256, Number(offset) || 0, overwrite, view);
        if (r.status === 200) {
          if (row) row.finish(true, t.filesVerified(fmtBytes(file.size)), sha256);
          return 'done';
        }
        const body = r.body || {};
        if (attempt >= RETRIES || (r.status && ![0, 400, 409, 502, 503].includes(r.status))) {
          throw new Error(body.message || t.requestFailed(r.status));
        }
        view.note(t.filesResuming);
        await sleep(RETRY_PAUSE_MS);
        if (typeof body.offset === 'number') offset = body.offset;
        else offset = (await this.api('POST', this.base('/uploads'), { path, size: file.size, sha256, overwrite })).offset;
      }
    } catch (err) {
      if (row) row.finish(false, err.message || String(err));
      this.onError(err);
      return 'failed';
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
        out.push({ dir: prefix + entry.name });
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
