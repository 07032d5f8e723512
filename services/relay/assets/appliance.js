// Appliance page: keeps the front panel's picture live and sends clicks on its keys.
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
