// Lifeline console: the system-information area of a session.
//
// The representative asks the customer for `system_info` (the customer answers in their
// client), then asks for the report (POST /api/v1/sessions/{id}/system-info; the relay
// records the request and the answer as session events). The report shows in tabs:
// overview (OS, kernel, host, uptime, CPU, memory), disks, network, users, processes
// (sortable by any column), services and packages, with a filter for the long lists, and is
// exported as a JSON file. Every value comes from the customer's computer: it is only ever
// put in the page as text (never as HTML). "End" on a process asks the customer's consent
// for that one process (POST /api/v1/sessions/{id}/processes/{pid}/end); the answer shows
// on its row.
//
// Limits: the report is a snapshot (Refresh asks again); tables show at most ROW_LIMIT rows
// (the filter narrows them; the export has everything).

import { t } from '/static/texts.js';
import { byId, h } from '/static/dom.js';

const ROW_LIMIT = 2000;
const TABS = ['overview', 'disks', 'network', 'users', 'processes', 'services', 'packages'];

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v) => (v == null ? '' : String(v));

/** Bytes in the console's language ("1.5 GiB"). */
export function fmtBytes(n) {
  n = num(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  const f = new Intl.NumberFormat(undefined, { maximumFractionDigits: i === 0 ? 0 : 1 });
  return `${f.format(n)} ${units[i]}`;
}

function fmtUptime(s) {
  s = Math.floor(num(s));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return t.sysinfo.uptimeValue(d, hh, mm);
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });
const fmtDate = (ms) => (num(ms) > 0 ? dateFmt.format(new Date(num(ms))) : '—');
const fmtCpu = (ms) => {
  const s = Math.floor(num(ms) / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};

export class SystemInfoArea {
  /**
   * @param {{api: Function, onGrant: Function, onError: Function}} opts
   */
  constructor(opts) {
    this.api = opts.api;
    this.onGrant = opts.onGrant;
    this.onError = opts.onError;
    this.session = null;
    this.asking = false;
    this.loading = false;
    this.enabled = true;
    /** session id → { report, tab, sort: {key, dir}, filter, ends: Map<pid, state> } */
    this.reports = new Map();
    this.el = {
      root: byId('sysinfo'),
      perm: byId('perm-sysinfo'),
      req: byId('req-sysinfo'),
      get: byId('sysinfo-get'),
      export: byId('sysinfo-export'),
      hint: byId('sysinfo-hint'),
      panel: byId('sysinfo-panel'),
      tabs: byId('sysinfo-tabs'),
      filter: byId('sysinfo-filter'),
      body: byId('sysinfo-body'),
    };
    const e = this.el;
    e.req.addEventListener('click', () => this.ask());
    e.get.addEventListener('click', () => this.load());
    e.export.addEventListener('click', () => this.exportJson());
    e.filter.addEventListener('input', () => {
      const r = this.current();
      if (r) { r.filter = e.filter.value; this.renderBody(); }
    });
    e.tabs.replaceChildren(...TABS.map((name) => h('button', {
      type: 'button', role: 'tab', class: 'sysinfo-tab', 'data-tab': name,
      'data-testid': `sysinfo-tab-${name}`, text: t.sysinfo.tabs[name],
      onclick: () => { const r = this.current(); if (r) { r.tab = name; r.filter = ''; this.render(); } },
    })));
    this.api('GET', '/api/v1/tools')
      .then((p) => { this.enabled = !!(p && p.system_info); this.show(this.session); })
      .catch(() => {});
  }

  current() {
    return this.session ? this.reports.get(this.session.id) || null : null;
  }

  /** Shows the area for a console session (or none); reads `grants`, `online`, `state`. */
  show(s) {
    this.session = s;
    const e = this.el;
    const active = !!(s && s.state === 'active' && this.enabled);
    e.root.hidden = !active;
    if (!active) return;
    const st = s.grants.system_info || 'none';
    e.perm.dataset.state = st;
    e.perm.textContent = t[`state_${st}`] || st;
    const canAsk = st === 'none' || st === 'denied' || st === 'revoked';
    e.req.hidden = !canAsk;
    e.req.textContent = st === 'none' ? t.sysinfo.request : t.askAgain;
    e.req.disabled = !s.online || this.asking;
    const granted = st === 'granted';
    const r = this.current();
    e.get.hidden = !granted;
    e.get.disabled = !s.online || this.loading;
    e.get.textContent = this.loading ? t.sysinfo.loading : r ? t.sysinfo.refresh : t.sysinfo.get;
    e.export.hidden = !r;
    e.hint.textContent = this.loading ? t.sysinfo.loadingHint
      : st === 'requested' ? t.sysinfo.hintWait
        : !granted ? t.sysinfo.hintAsk
          : r ? t.sysinfo.collected(fmtDate(r.report.collected_at), num(r.report.took_ms)) : t.sysinfo.hintGet;
    e.panel.hidden = !r;
    if (r) this.render();
  }

  async ask() {
    const s = this.session;
    if (!s || this.asking) return;
    this.asking = true;
    this.show(s);
    try {
      const r = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/permissions`, { permission: 'system_info' });
      if (r && r.state) this.onGrant(s.id, 'system_info', String(r.state));
    } catch (err) {
      this.onError(err);
    } finally {
      this.asking = false;
      if (this.session === s) this.show(s);
    }
  }

  async load() {
    const s = this.session;
    if (!s || this.loading) return;
    this.loading = true;
    this.show(s);
    try {
      const report = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/system-info`);
      if (report && typeof report === 'object') {
        const prev = this.reports.get(s.id);
        this.reports.set(s.id, {
          report,
          tab: prev ? prev.tab : 'overview',
          sort: prev ? prev.sort : { key: 'memory_bytes', dir: -1 },
          filter: '',
          ends: new Map(),
        });
      }
    } catch (err) {
      this.onError(err);
    } finally {
      this.loading = false;
      if (this.session === s) this.show(s);
    }
  }

  exportJson() {
    const r = this.current();
    if (!r) return;
    const host = str(r.report.os && r.report.os.host_name).replace(/[^A-Za-z0-9._-]/g, '_') || 'computer';
    const d = new Date(num(r.report.collected_at) || Date.now());
    const stamp = d.toISOString().slice(0, 19).replace(/[:T]/g, '-');
    const blob = new Blob([JSON.stringify(r.report, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: `system-${host}-${stamp}.json` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  render() {
    const r = this.current();
    if (!r) return;
    for (const b of this.el.tabs.children) {
      const on = b.dataset.tab === r.tab;
      b.classList.toggle('is-selected', on);
      b.setAttribute('aria-selected', on ? 'true' : 'false');
    }
    const long = ['processes', 'services', 'packages'].includes(r.tab);
    this.el.filter.hidden = !long;
    if (this.el.filter.value !== r.filter) this.el.filter.value = r.filter;
    this.renderBody();
  }

  renderBody() {
    const r = this.current();
    if (!r) return;
    const rep = r.report;
    const T = t.sysinfo;
    const notes = [];
    for (const p of Array.isArray(rep.problems) ? rep.problems : []) {
      if (r.tab === 'overview' || p.source === r.tab || (r.tab === 'network' && p.source === 'network')) {
        notes.push(h('p', { class: 'sysinfo-problem', 'data-testid': 'sysinfo-problem', text: T.problem(str(p.source), str(p.message)) }));
      }
    }
    if (Array.isArray(rep.truncated) && rep.truncated.includes(r.tab)) {
      notes.push(h('p', { class: 'sysinfo-problem', text: T.truncated }));
    }
    let content;
    switch (r.tab) {
      case 'overview': content = this.overview(rep); break;
      case 'disks': content = this.table(r, 'disks', rep.disks, [
        ['mount_point', T.col.mount], ['device', T.col.device], ['fs_type', T.col.fs],
        ['total_bytes', T.col.size, fmtBytes], ['available_bytes', T.col.free, fmtBytes],
        ['used', T.col.used, (v, row) => (num(row.total_bytes) > 0 ? `${Math.round(100 - (100 * num(row.available_bytes)) / num(row.total_bytes))} %` : '—')],
        ['read_only', T.col.ro, (v) => (v ? T.yes : '')],
      ]); break;
      case 'network': content = this.table(r, 'network', rep.interfaces, [
        ['name', T.col.iface], ['up', T.col.state, (v) => (v ? T.up : T.down)],
        ['mac', T.col.mac, (v) => str(v)], ['addresses', T.col.addresses, (v) => (Array.isArray(v) ? v.join('\n') : '')],
      ]); break;
      case 'users': content = this.table(r, 'users', rep.users, [
        ['name', T.col.user], ['terminal', T.col.terminal], ['host', T.col.host], ['since', T.col.since, fmtDate],
      ]); break;
      case 'processes': content = this.table(r, 'processes', rep.processes, [
        ['pid', T.col.pid], ['name', T.col.name], ['user', T.col.user], ['state', T.col.state],
        ['cpu_ms', T.col.cpu, fmtCpu], ['memory_bytes', T.col.memory, fmtBytes],
        ['started_at', T.col.started, fmtDate], ['command', T.col.command],
      ], (row) => this.endCell(r, row)); break;
      case 'services': content = this.table(r, 'services', rep.services, [
        ['name', T.col.service], ['active', T.col.active], ['sub', T.col.sub], ['description', T.col.description],
      ]); break;
      default: content = this.table(r, 'packages', rep.packages, [
        ['name', T.col.package], ['version', T.col.version],
      ]);
    }
    this.el.body.replaceChildren(...notes, content);
  }

  overview(rep) {
    const T = t.sysinfo;
    const os = rep.os || {};
    const cpu = rep.cpu || {};
    const mem = rep.memory || {};
    const load = Array.isArray(cpu.load) ? cpu.load.map((v) => num(v).toFixed(2)).join(' · ') : '';
    const rows = [
      ['os', T.fact.os, str(os.name)],
      ['kernel', T.fact.kernel, `${str(os.kernel)} (${str(os.arch)})`],
      ['host', T.fact.host, str(os.host_name)],
      ['uptime', T.fact.uptime, fmtUptime(os.uptime_s)],
      ['cpu', T.fact.cpu, T.cpuValue(str(cpu.model), num(cpu.cores))],
      ['load', T.fact.load, load],
      ['memory', T.fact.memory, T.memValue(fmtBytes(mem.total_bytes), fmtBytes(mem.available_bytes))],
      ['swap', T.fact.swap, T.memValue(fmtBytes(mem.swap_total_bytes), fmtBytes(mem.swap_free_bytes))],
      ['counts', T.fact.counts, T.counts(
        (rep.processes || []).length, (rep.services || []).length, (rep.packages || []).length)],
    ];
    return h('dl', { class: 'facts sysinfo-facts', 'data-testid': 'sysinfo-overview' },
      ...rows.flatMap(([key, label, value]) => [
        h('dt', { text: label }),
        h('dd', { 'data-testid': `sysinfo-${key}`, text: value }),
      ]));
  }

  /** The last cell of a process row: "End", or what became of the request. */
  endCell(r, row) {
    const T = t.sysinfo;
    const pid = num(row.pid);
    const st = r.ends.get(pid);
    if (st) return h('span', { class: `sysinfo-end sysinfo-end-${st.outcome}`, 'data-testid': 'sysinfo-end-state', title: st.message || '', text: T.endStates[st.outcome] || st.outcome });
    return h('button', {
      type: 'button', class: 'btn btn-sm', 'data-testid': 'sysinfo-end', 'data-pid': String(pid),
      text: T.end, title: T.endTitle,
      onclick: () => this.endProcess(r, pid, str(row.name)),
    });
  }

  async endProcess(r, pid, name) {
    const s = this.session;
    if (!s || !window.confirm(t.sysinfo.confirmEnd(name, pid))) return;
    r.ends.set(pid, { outcome: 'asking', message: '' });
    this.renderBody();
    try {
      const a = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/processes/${pid}/end`, { name });
      r.ends.set(pid, { outcome: str(a && a.outcome) || 'failed', message: str(a && a.message) });
    } catch (err) {
      r.ends.delete(pid);
      this.onError(err);
    } finally {
      if (this.current() === r) this.renderBody();
    }
  }

  /** A table of `rows`, sortable by clicking a column head, narrowed by the filter. */
  table(r, name, rows, cols, action = null) {
    rows = Array.isArray(rows) ? rows : [];
    const f = r.filter.trim().toLowerCase();
    let list = f
      ? rows.filter((row) => cols.some(([k]) => str(row[k]).toLowerCase().includes(f)))
      : rows.slice();
    const sortable = name === 'processes' || name === 'services' || name === 'packages' || name === 'disks';
    if (sortable && r.sort && cols.some(([k]) => k === r.sort.key)) {
      const { key, dir } = r.sort;
      list.sort((a, b) => {
        const x = a[key]; const y = b[key];
        const c = (typeof x === 'number' && typeof y === 'number') ? x - y : str(x).localeCompare(str(y));
        return c * dir;
      });
    }
    const total = list.length;
    list = list.slice(0, ROW_LIMIT);
    const head = h('tr', null, ...cols.map(([k, label]) => {
      const on = sortable && r.sort && r.sort.key === k;
      const th = h('th', {
        scope: 'col', 'data-key': k, 'data-testid': `sysinfo-col-${k}`,
        'aria-sort': on ? (r.sort.dir > 0 ? 'ascending' : 'descending') : null,
      });
      if (sortable) {
        th.append(h('button', {
          type: 'button', class: 'sort', text: `${label}${on ? (r.sort.dir > 0 ? ' ▲' : ' ▼') : ''}`,
          onclick: () => {
            r.sort = { key: k, dir: on ? -r.sort.dir : (typeof (rows[0] || {})[k] === 'number' ? -1 : 1) };
            this.renderBody();
          },
        }));
      } else {
        th.textContent = label;
      }
      return th;
    }), action ? h('th', { scope: 'col' }) : null);
    const body = list.map((row) => {
      const tr = h('tr', null, ...cols.map(([k, , fmt]) => h('td', {
        class: k === 'command' || k === 'description' ? 'wide' : null,
        text: fmt ? fmt(row[k], row) : str(row[k]),
      })), action ? h('td', null, action(row)) : null);
      if (name === 'processes') tr.dataset.pid = String(num(row.pid));
      return tr;
    });
    const wrap = h('div', { class: 'sysinfo-table-wrap' },
      h('table', { class: 'sysinfo-table', 'data-testid': `sysinfo-table-${name}` },
        h('thead', null, head), h('tbody', null, ...body)));
    const count = h('p', { class: 'sysinfo-count', 'data-testid': 'sysinfo-count', text: t.sysinfo.rows(total, rows.length, list.length) });
    return h('div', null, count, wrap);
  }
}
