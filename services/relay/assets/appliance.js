// Appliance page: keeps the front panel's picture live and sends clicks on its keys, and
// installs a licence file chosen in the "Licence" card (PUT /api/v1/appliance/licence).
'use strict';
(function () {
  const img = document.getElementById('panel-picture');
  const err = document.getElementById('panel-error');
  if (!img) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const unreachable = err.dataset.unreachable || 'The front panel is not reachable.';
  img.addEventListener('load', () => {
    img.dataset.updated = String(Date.now());
    err.hidden = true;
  });
  img.addEventListener('error', () => {
    err.textContent = unreachable;
    err.hidden = false;
  });
  function refresh() {
    img.src = '/appliance/panel.png?t=' + Date.now();
  }
  async function press(key) {
    try {
      const r = await fetch('/api/v1/appliance/panel/keys', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify({ key }),
      });
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        err.textContent = body.message || unreachable;
        err.hidden = false;
      }
    } catch (e) {
      err.textContent = unreachable;
      err.hidden = false;
    }
    setTimeout(refresh, 150);
  }
  for (const b of document.querySelectorAll('button.key')) {
    b.addEventListener('click', () => press(b.dataset.key));
  }
  setInterval(refresh, 1000);
})();

(function () {
  const box = document.getElementById('licence-install');
  const input = document.getElementById('licence-file');
  if (!box || !input) return;
  const label = box.querySelector('label');
  const result = document.getElementById('licence-result');
  const error = document.getElementById('licence-error');
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const MAX_BYTES = 64 * 1024;
  function show(el, text) {
    for (const p of [result, error]) p.hidden = true;
    el.textContent = text;
    el.hidden = false;
  }
  function setField(name, value) {
    const el = document.querySelector(`[data-field="${name}"]`);
    if (el) el.textContent = String(value);
  }
  async function install(file) {
    if (file.size > MAX_BYTES) {
      show(error, box.dataset.tooBig);
      return;
    }
    show(result, box.dataset.checking);
    label.classList.add('busy');
    try {
      const text = await file.text();
      const r = await fetch('/api/v1/appliance/licence', {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify({ licence: text }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        show(error, body.message || box.dataset.sendFailed);
        return;
      }
      for (const k of ['model', 'edition', 'serial', 'rep_seats', 'rep_seats_in_use', 'jump_active_limit', 'jump_passive_limit']) {
        setField(`license.${k}`, body[k]);
      }
      setField('license.expires', body.expires ?? box.dataset.never);
      // A licence accepted by the licence manager is a real one: no more evaluation note.
      const evaluation = document.querySelector('[data-testid="evaluation"]');
      if (evaluation) evaluation.hidden = true;
      const sentence = body.expires
        ? box.dataset.installed.replace('{seats}', body.rep_seats).replace('{until}', body.expires)
        : box.dataset.installedNoEnd.replace('{seats}', body.rep_seats);
      show(result, sentence);
    } catch (e) {
      show(error, box.dataset.sendFailed);
    } finally {
      label.classList.remove('busy');
      // Choosing the same file again must fire `change` again.
      input.value = '';
    }
  }
  input.addEventListener('change', () => {
    if (input.files && input.files[0]) install(input.files[0]);
  });
})();
