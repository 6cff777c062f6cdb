// Small DOM helpers shared by the panels.
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) if (child != null && child !== false) node.append(child);
  return node;
}

export function toast(text, ms = 3500) {
  const el = h('div', { class: 'toast', role: 'status' }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), ms);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// At most one call per `ms`, the last one always made: keeps the page responsive under a flood of
// stream events (a thousand devices going offline at once) and never leaves it stale.
export function throttle(fn, ms) {
  let last = 0, timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (timer) return;
    if (wait <= 0) { last = Date.now(); fn(); return; }
    timer = setTimeout(() => { timer = null; last = Date.now(); fn(); }, wait);
  };
}

export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

// Redraw `parent` with `children` in place: an old child whose markup is the same as its new one is kept (not
// replaced), so a redraw with nothing new changes no node, and a button the operator is pressing, a field being typed
// in or holding the focus survives it; only what changed is swapped. Returns whether anything changed.
export function patch(parent, ...children) {
  const fresh = children.flat().filter((c) => c != null && c !== false && c !== '')
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
  const old = [...parent.childNodes];
  const byMarkup = new Map();
  for (const node of old) {
    const key = markup(node);
    if (!byMarkup.has(key)) byMarkup.set(key, []);
    byMarkup.get(key).push(node);
  }
  const wanted = fresh.map((node) => byMarkup.get(markup(node))?.shift() || node);
  const kept = new Set(wanted);
  let changed = old.length !== wanted.length;
  for (const node of old) if (!kept.has(node)) { node.remove(); changed = true; }
  let cursor = parent.firstChild;
  for (const node of wanted) { // never moves a kept node that is already in its place (moving one loses a press)
    if (node === cursor) { cursor = cursor.nextSibling; continue; }
    parent.insertBefore(node, cursor);
    changed = true;
  }
  return changed;
}

function markup(node) {
  return node.nodeType === Node.ELEMENT_NODE ? node.outerHTML : `#${node.nodeType}:${node.textContent}`;
}

// A pointer pressed inside `element` (mouse, pen or touch) until it is released, and the click that follows has
// been dispatched: a redraw waits for `settled()` so that it never swaps the node between the press and the click
// (which would lose the click). `onHold(true|false)` says when a redraw is waiting.
export function pointerHold(element) {
  let held = null;
  let release = () => {};
  element.addEventListener('pointerdown', () => {
    if (held) return;
    held = new Promise((resolve) => { release = resolve; });
    const done = (event) => {
      if (event.type === 'blur' && event.target !== window) return; // an element's blur (the press moves the focus)
      for (const type of ['pointerup', 'pointercancel', 'blur']) window.removeEventListener(type, done, true);
      setTimeout(() => { held = null; release(); }, 0); // after the click the release dispatches
    };
    for (const type of ['pointerup', 'pointercancel', 'blur']) window.addEventListener(type, done, true); // blur: the window's
  }, true);
  return {
    get held() { return Boolean(held); },
    async settled() {
      while (held) {
        element.dataset.drawHeld = 'true';
        await held;
      }
      delete element.dataset.drawHeld;
    },
  };
}
