// Lifeline console: the administrators' "Deployment" page.
//
// Support buttons (POST/GET /api/v1/buttons, DELETE /api/v1/buttons/{id}) and deployment keys
// for jump clients (POST/GET /api/v1/jump/deploy-keys, DELETE /api/v1/jump/deploy-keys/{id}):
// a form to create one, what it gave once (the button's download links, the key and its
// installer links, per platform), and the list with each one's state and a "Revoke" button
// (after a confirmation). The button's queue chooser comes from GET /api/v1/buttons/targets:
// the general queue, a representative's, or a team's (with how many members it has).
//
// "Teams": every representative's teams (GET/PUT /api/v1/jump/users/{name}/teams), written
// as names separated by commas; members see their teams' queues and jump clients.
//
// Limits: lifetimes are asked in whole hours, days, weeks or years (one hour to five years,
// the relay checks again); a key's "valid until" is the end of the chosen day, local time.
// The page is shown only to administrators; the relay refuses every route to others anyway.
// Everything from the server reaches the page as text, never as HTML.

import { t } from '/static/texts.js';
import { byId, h, safeUrl } from '/static/dom.js';

const str = (v) => (v == null ? '' : String(v));

const HOUR_MIN = 60;
const FIVE_YEARS_MIN = 5 * 365 * 24 * 60;
const DAY_MS = 24 * 3600 * 1000;

const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const fmtDate = (ms) => (ms ? dateFmt.format(new Date(Number(ms))) : '—');
const fmtDateTime = (ms) => (ms ? dateTimeFmt.format(new Date(Number(ms))) : '—');

/** `yyyy-mm-dd` of a local date. */
function isoDay(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function platformName(id) {
  return t.deploy.platforms[id] || id;
}

async function copyText(button, text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h('textarea', { class: 'sr-only' });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  button.textContent = t.deploy.copied;
  setTimeout(() => { button.textContent = t.deploy.copy; }, 1600);
}

/** A list of `[platform, url]` pairs as links with a copy button each. */
function linkList(pairs, testid) {
  const ul = h('ul', { class: 'created-links', 'data-testid': testid });
  for (const pair of Array.isArray(pairs) ? pairs : []) {
    const [platform, url] = [str(pair[0]), str(pair[1])];
    const href = safeUrl(url);
    const copy = h('button', { type: 'button', class: 'btn btn-xs', text: t.deploy.copy });
    copy.addEventListener('click', () => copyText(copy, url));
    ul.append(h('li', { 'data-platform': platform },
      h('span', { class: 'created-platform', text: platformName(platform) }),
      href ? h('a', { class: 'created-url', href, download: '', rel: 'noopener', text: url }) : h('span', { text: url }),
      copy));
  }
  return ul;
}

function stateBadge(state, names) {
  return h('span', { class: `state-badge state-${str(state)}`, 'data-testid': 'state', 'data-state': str(state),
    text: names[state] || str(state) });
}

function groupLabel(g) {
  g = str(g);
  if (g === 'general') return t.jump.groupGeneral;
  if (g.startsWith('personal')) return `${t.jump.groupPersonal} (${g.slice('personal:'.length)})`;
  if (g.startsWith('team:')) return t.deploy.groupTeam(g.slice(5));
  return g;
}

export class DeploymentPage {
  constructor({ api, onError }) {
    this.api = api;
    this.onError = onError;
    this.loaded = false;
    this.initButtonForm();
    this.initKeyForm();
  }

  /** Loads the choices and both lists (each time the page is shown). */
  async show() {
    await Promise.all([this.loadTargets().then(() => this.loadTeamRows()), this.loadButtons(), this.loadKeys()]);
    this.loaded = true;
  }

  // ---- support buttons ---------------------------------------------------------------------

  initButtonForm() {
    const form = byId('button-form');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = byId('button-error');
      err.hidden = true;
      const amount = Number(byId('button-life').value);
      const unit = Number(byId('button-life-unit').value);
      const minutes = amount * unit;
      if (!Number.isInteger(amount) || amount < 1 || minutes < HOUR_MIN || minutes > FIVE_YEARS_MIN) {
        err.textContent = t.deploy.lifetimeInvalid;
        err.hidden = false;
        byId('button-life').focus();
        return;
      }
      const choice = str(byId('button-queue').value);
      const body = { label: byId('button-label').value.trim(), valid_minutes: minutes };
      if (choice.startsWith('team:')) Object.assign(body, { queue: 'team', team: choice.slice(5) });
      else body.queue = choice || 'general';
      const submit = form.querySelector('[type=submit]');
      submit.disabled = true;
      try {
        const r = await this.api('POST', '/api/v1/buttons', body);
        this.showButtonCreated(body.label, r);
        form.reset();
        byId('button-life-unit').value = '525600';
        await this.loadButtons();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
  }

  showButtonCreated(label, r) {
    const box = byId('button-created');
    box.replaceChildren(...[
      h('h3', { class: 'created-title', text: label ? t.deploy.buttonCreated(label) : t.deploy.buttonCreatedNoLabel }),
      r && r.note ? h('p', { class: 'created-note', 'data-testid': 'button-note', text: str(r.note) }) : null,
      h('p', { class: 'created-warn', text: t.deploy.onceOnly }),
      h('h4', { class: 'created-sub', text: t.deploy.downloads }),
      linkList(r && r.downloads, 'button-downloads')].filter(Boolean));
    box.hidden = false;
  }

  async loadTargets() {
    let targets = { reps: [], teams: [] };
    try {
      targets = await this.api('GET', '/api/v1/buttons/targets') || targets;
    } catch (e) {
      this.onError(e);
    }
    this.teams = Array.isArray(targets.teams) ? targets.teams : [];
    this.reps = Array.isArray(targets.reps) ? targets.reps : [];
    const queue = byId('button-queue');
    const keep = queue.value;
    const reps = h('optgroup', { label: t.deploy.reps });
    for (const r of this.reps) {
      reps.append(h('option', { value: `rep:${str(r.username)}`, text: t.deploy.rep(str(r.display_name), str(r.username)) }));
    }
    const teams = h('optgroup', { label: t.deploy.teams });
    for (const tm of this.teams) {
      teams.append(h('option', { value: `team:${str(tm.name)}`, text: t.deploy.team(str(tm.name), Number(tm.members) || 0) }));
    }
    queue.replaceChildren(...[h('option', { value: 'general', text: t.deploy.general }),
      teams.children.length ? teams : null, reps.children.length ? reps : null].filter(Boolean));
    if ([...queue.options].some((o) => o.value === keep)) queue.value = keep;

    const group = byId('dkey-group');
    const keepGroup = group.value;
    const teamGroups = h('optgroup', { label: t.deploy.groupTeams });
    for (const tm of this.teams) {
      teamGroups.append(h('option', { value: `team:${str(tm.name)}`, text: t.deploy.groupTeam(str(tm.name)) }));
    }
    group.replaceChildren(...[h('option', { value: 'general', text: t.deploy.groupGeneral }),
      h('option', { value: 'personal', text: t.deploy.groupPersonal }),
      teamGroups.children.length ? teamGroups : null].filter(Boolean));
    if ([...group.options].some((o) => o.value === keepGroup)) group.value = keepGroup;
  }

  async loadButtons() {
    let rows = [];
    try {
      rows = await this.api('GET', '/api/v1/buttons') || [];
    } catch (e) {
      this.onError(e);
    }
    const body = byId('button-rows');
    body.replaceChildren(...rows.map((b) => this.buttonRow(b)));
    byId('button-empty').hidden = rows.length > 0;
  }

  buttonRow(b) {
    const label = str(b.label) || t.deploy.unnamed;
    const queue = b.queue === 'team' ? t.queueTeam(str(b.team))
      : b.queue === 'personal' ? t.deploy.queueRep(str(b.rep)) : t.deploy.general;
    const actions = h('td', { class: 'deploy-row-actions' });
    if (b.state === 'active') {
      actions.append(h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'data-testid': 'button-revoke', text: t.deploy.revoke,
        onclick: () => this.revokeButton(str(b.id), label) }));
    }
    return h('tr', { 'data-testid': 'button-row', 'data-id': str(b.id), 'data-state': str(b.state) },
      h('td', { class: 'deploy-label', text: label }),
      h('td', { 'data-testid': 'button-row-queue', text: queue }),
      h('td', { text: fmtDateTime(b.expires_at) }),
      h('td', { class: 'num', text: t.deploy.sessions(Number(b.sessions) || 0, b.last_used ? fmtDate(b.last_used) : '') }),
      h('td', {}, stateBadge(b.state, t.deploy.states)),
      actions);
  }

  async revokeButton(id, label) {
    if (!window.confirm(t.deploy.revokeButton(label))) return;
    try {
      await this.api('DELETE', `/api/v1/buttons/${encodeURIComponent(id)}`);
    } catch (e) {
      this.onError(e);
    }
    await this.loadButtons();
  }

  // ---- deployment keys -----------------------------------------------------------------------

  initKeyForm() {
    const until = byId('dkey-until');
    const today = new Date();
    const last = new Date(today.getTime() + FIVE_YEARS_MIN * 60_000 - DAY_MS);
    until.min = isoDay(today);
    until.max = isoDay(last);
    until.value = isoDay(new Date(today.getTime() + 30 * DAY_MS));
    const form = byId('dkey-form');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = byId('dkey-error');
      err.hidden = true;
      const fail = (message, field) => {
        err.textContent = message;
        err.hidden = false;
        field.focus();
      };
      // The end of the chosen day, local time.
      const parts = str(until.value).split('-').map(Number);
      const end = parts.length === 3 ? new Date(parts[0], parts[1] - 1, parts[2], 23, 59, 0) : null;
      const minutes = end ? Math.floor((end.getTime() - Date.now()) / 60_000) : NaN;
      if (!Number.isFinite(minutes) || minutes < HOUR_MIN || minutes > FIVE_YEARS_MIN) {
        fail(t.deploy.untilInvalid, until);
        return;
      }
      const uses = Number(byId('dkey-uses').value);
      if (!Number.isInteger(uses) || uses < 1 || uses > 100000) {
        fail(t.deploy.usesInvalid, byId('dkey-uses'));
        return;
      }
      const mode = form.querySelector('input[name=dkey-mode]:checked');
      const body = {
        label: byId('dkey-label').value.trim(),
        group: str(byId('dkey-group').value) || 'general',
        mode: mode ? mode.value : 'active',
        valid_minutes: minutes,
        uses,
      };
      const submit = form.querySelector('[type=submit]');
      submit.disabled = true;
      try {
        const r = await this.api('POST', '/api/v1/jump/deploy-keys', body);
        this.showKeyCreated(r);
        byId('dkey-label').value = '';
        await this.loadKeys();
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
      } finally {
        submit.disabled = false;
      }
    });
  }

  showKeyCreated(r) {
    const box = byId('dkey-created');
    const key = str(r && r.key);
    const copy = h('button', { type: 'button', class: 'btn btn-xs', text: t.deploy.copy });
    copy.addEventListener('click', () => copyText(copy, key));
    box.replaceChildren(
      h('h3', { class: 'created-title', text: t.deploy.keyCreated }),
      h('p', { class: 'created-warn', text: t.deploy.onceOnly }),
      h('div', { class: 'created-key' }, h('span', { class: 'created-sub', text: t.deploy.key }),
        h('code', { 'data-testid': 'dkey-value', text: key }), copy),
      h('h4', { class: 'created-sub', text: t.deploy.installers }),
      linkList(r && r.installers, 'dkey-installers'));
    box.hidden = false;
  }

  async loadKeys() {
    let rows = [];
    try {
      rows = await this.api('GET', '/api/v1/jump/deploy-keys') || [];
    } catch (e) {
      this.onError(e);
    }
    byId('dkey-rows').replaceChildren(...rows.map((k) => this.keyRow(k)));
    byId('dkey-empty').hidden = rows.length > 0;
  }

  keyRow(k) {
    const label = str(k.label) || t.deploy.unnamed;
    const actions = h('td', { class: 'deploy-row-actions' });
    if (k.state === 'active') {
      actions.append(h('button', { type: 'button', class: 'btn btn-sm btn-danger', 'data-testid': 'dkey-revoke', text: t.deploy.revoke,
        onclick: () => this.revokeKey(str(k.id), label) }));
    }
    return h('tr', { 'data-testid': 'dkey-row', 'data-id': str(k.id), 'data-state': str(k.state) },
      h('td', { class: 'deploy-label', text: label }),
      h('td', { text: `${groupLabel(k.group)} · ${t.deploy.modes[k.mode] || str(k.mode)}` }),
      h('td', { text: fmtDate(k.valid_until) }),
      h('td', { class: 'num', 'data-testid': 'dkey-uses-left', text: String(Number(k.uses_left) || 0) }),
      h('td', {}, stateBadge(k.state, t.deploy.keyStates)),
      actions);
  }

  async revokeKey(id, label) {
    if (!window.confirm(t.deploy.revokeKey(label))) return;
    try {
      await this.api('DELETE', `/api/v1/jump/deploy-keys/${encodeURIComponent(id)}`);
    } catch (e) {
      this.onError(e);
    }
    await this.loadKeys();
  }

  // ---- teams -------------------------------------------------------------------------------

  /** One row per representative: their teams, editable, saved with PUT. */
  async loadTeamRows() {
    const rows = await Promise.all(this.reps.map(async (r) => {
      const user = str(r.username);
      try {
        const v = await this.api('GET', `/api/v1/jump/users/${encodeURIComponent(user)}/teams`);
        return this.teamRow(r, Array.isArray(v && v.teams) ? v.teams : []);
      } catch (e) {
        this.onError(e);
        return null;
      }
    }));
    byId('team-rows').replaceChildren(...rows.filter(Boolean));
    byId('team-empty').hidden = this.reps.length > 0;
  }

  teamRow(r, teams) {
    const user = str(r.username);
    const input = h('input', { class: 'team-input', 'data-testid': 'team-input', maxlength: '2500', autocomplete: 'off',
      placeholder: t.deploy.teamsPlaceholder, 'aria-label': t.deploy.teamsOf(str(r.display_name)) });
    input.value = teams.map(str).join(', ');
    const status = h('span', { class: 'team-status', 'data-testid': 'team-status', role: 'status' });
    const save = h('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'team-save', text: t.deploy.save,
      onclick: () => this.saveTeams(user, input, status, save) });
    input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') save.click(); });
    return h('tr', { 'data-testid': 'team-row', 'data-user': user },
      h('td', { class: 'deploy-label', text: t.deploy.rep(str(r.display_name), user) }),
      h('td', {}, input),
      h('td', { class: 'deploy-row-actions' }, save, status));
  }

  async saveTeams(user, input, status, save) {
    const teams = input.value.split(',').map((s) => s.trim()).filter(Boolean);
    save.disabled = true;
    status.textContent = '';
    status.classList.remove('is-error');
    try {
      const v = await this.api('PUT', `/api/v1/jump/users/${encodeURIComponent(user)}/teams`, { teams });
      input.value = (Array.isArray(v && v.teams) ? v.teams : teams).join(', ');
      status.textContent = t.deploy.teamsSaved;
      // The queue and group choosers list the teams: they may have changed.
      await this.loadTargets();
    } catch (e) {
      status.textContent = e.message || t.deploy.teamsInvalid;
      status.classList.add('is-error');
    } finally {
      save.disabled = false;
    }
  }
}
