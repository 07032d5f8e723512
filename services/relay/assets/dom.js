// The console's DOM helpers, shared by its modules.

/** The element with this id. */
export const byId = (id) => document.getElementById(id);

/**
 * Builds an element: `attrs` keys are attributes, except `class`, `text` (its text),
 * `dataset` (an object of data- values) and `on<event>` (a listener); `null`, `undefined` and
 * `false` values are left out, `true` makes an empty attribute. Children (arrays are
 * flattened) are nodes or text; `null`, `undefined` and `false` ones are skipped.
 */
export function h(tag, attrs, ...children) {
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

/** The address `u` as a link target if it is http(s), else `null`. */
export function safeUrl(u) {
  try {
    const url = new URL(String(u), location.href);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}
