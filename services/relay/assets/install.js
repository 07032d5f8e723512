// Lifeline console: "Install on this computer" in a session.
//
// The representative offers the customer a jump client (to come back later without anyone
// at the computer; it joins the representative's personal jump group) or a support button
// (a desktop entry that queues a request straight to this representative). The customer
// agrees or not in their client; POST /api/v1/sessions/{id}/install answers with the outcome
// once the customer's computer has (the relay records the offer and the outcome as session
// events). Shown only while the session is active and the `install` tool is allowed.

import { t } from '/static/texts.js';
import { byId } from '/static/dom.js';


export class InstallArea {
  /** @param {{api: Function, onError: Function}} opts */
  constructor(opts) {
    this.api = opts.api;
    this.onError = opts.onError;
    this.session = null;
    this.enabled = false;
    /** session id → { busy: what|null, hint: string } */
    this.bySession = new Map();
    this.el = {
      root: byId('install'),
      jump: byId('install-jump'),
      button: byId('install-button'),
      hint: byId('install-hint'),
    };
    this.el.jump.addEventListener('click', () => this.offer('jump_client'));
    this.el.button.addEventListener('click', () => this.offer('support_button'));
    this.api('GET', '/api/v1/tools')
      .then((p) => { this.enabled = !!(p && p.install); this.show(this.session); })
      .catch(() => {});
  }

  stateOf(id) {
    if (!this.bySession.has(id)) this.bySession.set(id, { busy: null, hint: '' });
    return this.bySession.get(id);
  }

  /** Shows the area for a console session (or none); reads `online` and `state`. */
  show(s) {
    this.session = s;
    const e = this.el;
    const active = !!(s && s.state === 'active' && this.enabled);
    e.root.hidden = !active;
    if (!active) return;
    const st = this.stateOf(s.id);
    e.jump.disabled = !s.online || !!st.busy;
    e.button.disabled = !s.online || !!st.busy;
    e.hint.textContent = st.busy ? t.install.waiting : st.hint || t.install.hint;
  }

  async offer(what) {
    const s = this.session;
    if (!s) return;
    const st = this.stateOf(s.id);
    if (st.busy) return;
    st.busy = what;
    this.show(s);
    try {
      const r = await this.api('POST', `/api/v1/sessions/${encodeURIComponent(s.id)}/install`, { what });
      st.hint = t.install.outcome[r.outcome](what, r.message || '');
    } catch (err) {
      st.hint = '';
      this.onError(err);
    } finally {
      st.busy = null;
      if (this.session && this.session.id === s.id) this.show(this.session);
    }
  }
}
