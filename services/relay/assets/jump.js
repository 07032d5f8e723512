// Lifeline console: the "Jump clients" panel.
//
// Lists the jump clients this representative may see (GET /api/v1/jump/clients?search=, the
// relay applies the groups: general, personal, team), grouped by group, with name, comment,
// OS, logged-in user, last seen and online state. The list is fetched again every
// POLL_MS (online state stays live without a socket of its own) and while typing a search.
// Name and comment are edited in place (PATCH /api/v1/jump/clients/{id}) where the relay
// says `editable`. "Jump" (POST /api/v1/jump/clients/{id}/jump) opens a session that is
// already the representative's; the console opens it like an accepted one. A passive client
// (no connection between check-ins) can be jumped to as well: the relay wakes it first.
// "Wake" (POST /api/v1/jump/clients/{id}/wake) only brings an offline passive client online,
// to see that it answers and to refresh what the list says of it; it stays connected for
// a couple of minutes without an order. One that cannot be reached says so in a toast.
// Administrators remove a client ("Remove", DELETE /api/v1/jump/clients/{id}, after a
// confirmation): a connected one uninstalls itself, a passive one is woken to do so.
//
// Everything from the server is put in the page as text, never as HTML.

import { t } from '/static/texts.js';
import { byId, h } from '/static/dom.js';

const POLL_MS = 5000;
const SEARCH_DELAY_MS = 250;

const str = (v) => (v == null ? '' : String(v));

function groupLabel(g) {
  g = str(g);
  if (g === 'general') return t.jump.groupGeneral;
  if (g.startsWith('personal')) return t.jump.groupPersonal;
  if (g.startsWith('team:')) return t.jump.groupTeam(g.slice(5));
  return g;
}

export class JumpPanel {
  /** `onJump(sessionId)` opens the session the jump created. */
  constructor({ api, onJump, onError, isAdmin }) {
    this.api = api;
    this.isAdmin = isAdmin || (() => false);
    this.onJump = onJump;
    this.onError = onError;
    this.clients = [];
    this.editing = null;
    this.jumping = new Set();
    this.waking = new Set();
    this.search = byId('jump-search');
    this.list = byId('jump-list');
    this.empty = byId('jump-empty');
    let timer = null;
    this.search.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.load(), SEARCH_DELAY_MS);
    });
    this.load();
    setInterval(() => { if (!this.editing && !document.hidden) this.load(); }, POLL_MS);
  }

  async load() {
    const q = encodeURIComponent(this.search.value.trim());
    try {
      const list = await this.api('GET', `/api/v1/jump/clients?search=${q}`);
      this.clients = Array.isArray(list) ? list : [];
      // A row being edited keeps what the rep typed; the list is drawn again after it.
      if (!this.editing) this.render();
    } catch (e) {
      if (e.status === 403) { byId('jump-card').hidden = true; return; }
      this.onError(e);
    }
  }

  render() {
    const count = byId('jump-count');
    count.textContent = String(this.clients.filter((c) => c.online).length);
    count.title = t.jump.onlineCount;
    this.list.replaceChildren();
    this.empty.hidden = this.clients.length > 0;
    this.empty.textContent = this.search.value.trim() ? t.jump.noMatch : t.jump.none;
    let group = null;
    for (const c of this.clients) {
      if (c.group !== group) {
        group = c.group;
        this.list.append(h('li', { class: 'jump-group', role: 'presentation', text: groupLabel(group) }));
      }
      this.list.append(this.row(c));
    }
  }

  row(c) {
    const id = str(c.id);
    const li = h('li', { class: 'jump-client', 'data-testid': 'jump-client', 'data-id': id, 'data-online': c.online ? 'true' : 'false' });
    // A passive client holds no connection: the box wakes it when someone jumps.
    const passive = c.mode === 'passive';
    const state = h('span', { class: `jump-state ${c.online ? 'is-online' : ''}`, 'data-testid': 'jump-state',
      text: c.online ? t.jump.online : passive ? t.jump.passive : t.jump.offline });
    const facts = [str(c.platform), c.logged_in_user ? t.jump.user(str(c.logged_in_user)) : t.jump.noUser,
      c.online ? t.jump.onlineNow : t.jump.lastSeen(c.last_seen ? new Date(c.last_seen).toLocaleString() : t.jump.never)]
      .filter(Boolean).join(' · ');
    if (this.editing === id) {
      const name = h('input', { class: 'jump-input', 'data-testid': 'jump-name-input', maxlength: '120', 'aria-label': t.jump.name });
      name.value = str(c.name);
      const comment = h('input', { class: 'jump-input', 'data-testid': 'jump-comment-input', maxlength: '500', 'aria-label': t.jump.comment, placeholder: t.jump.comment });
      comment.value = str(c.comment);
      const save = h('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'jump-save', text: t.jump.save,
        onclick: () => this.save(id, name.value, comment.value) });
      const cancel = h('button', { type: 'button', class: 'btn btn-sm', text: t.jump.cancel,
        onclick: () => { this.editing = null; this.render(); } });
      li.append(h('div', { class: 'jump-edit' }, name, comment, h('div', { class: 'jump-actions' }, cancel, save)));
      setTimeout(() => name.focus(), 0);
      return li;
    }
    const main = h('div', { class: 'jump-main' },
      h('div', { class: 'jump-title' }, h('span', { class: 'jump-name', 'data-testid': 'jump-name', text: str(c.name) }), state),
      c.comment ? h('div', { class: 'jump-comment', 'data-testid': 'jump-comment', text: str(c.comment) }) : null,
      h('div', { class: 'jump-facts', text: facts }));
    const actions = h('div', { class: 'jump-actions' });
    if (c.editable) {
      actions.append(h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'jump-edit', text: t.jump.edit,
        onclick: () => { this.editing = id; this.render(); } }));
    }
    const go = h('button', { type: 'button', class: 'btn btn-sm btn-primary', 'data-testid': 'jump-go',
      text: this.jumping.has(id) ? t.jump.jumping : t.jump.jump,
      title: c.online ? t.jump.jumpHint : passive ? t.jump.wakeHint : t.jump.offlineHint,
      onclick: () => this.jump(id) });
    go.disabled = !(c.online || passive) || this.jumping.has(id);
    if (passive && !c.online) {
      const waking = this.waking.has(id);
      const wake = h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'jump-wake',
        text: waking ? t.jump.waking : t.jump.wake, title: t.jump.wakeOnlyHint, onclick: () => this.wake(id, str(c.name)) });
      wake.disabled = waking;
      actions.append(wake);
    }
    if (this.isAdmin()) {
      actions.append(h('button', { type: 'button', class: 'btn btn-sm btn-ghost', 'data-testid': 'jump-remove', text: t.jump.remove,
        onclick: () => this.remove(id, str(c.name)) }));
    }
    actions.append(go);
    li.append(main, actions);
    return li;
  }

  async save(id, name, comment) {
    try {
      await this.api('PATCH', `/api/v1/jump/clients/${encodeURIComponent(id)}`, { name, comment });
      this.editing = null;
      await this.load();
    } catch (e) {
      this.onError(e);
    }
  }

  /** Removes a client (administrators); a connected one uninstalls itself. */
  async remove(id, name) {
    if (!window.confirm(t.jump.removeConfirm(name))) return;
    try {
      await this.api('DELETE', `/api/v1/jump/clients/${encodeURIComponent(id)}`);
      await this.load();
    } catch (e) {
      this.onError(e);
    }
  }

  /** Wakes a passive client without opening a session. */
  async wake(id, name) {
    if (this.waking.has(id)) return;
    this.waking.add(id);
    this.render();
    try {
      await this.api('POST', `/api/v1/jump/clients/${encodeURIComponent(id)}/wake`);
    } catch (e) {
      this.onError(e.status === 503 ? new Error(t.jump.wakeFailed(name)) : e);
    } finally {
      this.waking.delete(id);
      await this.load();
    }
  }

  async jump(id) {
    if (this.jumping.has(id)) return;
    this.jumping.add(id);
    this.render();
    try {
      const r = await this.api('POST', `/api/v1/jump/clients/${encodeURIComponent(id)}/jump`);
      if (r && r.session_id) await this.onJump(String(r.session_id), !!r.unattended);
    } catch (e) {
      this.onError(e);
    } finally {
      this.jumping.delete(id);
      this.render();
    }
  }
}
