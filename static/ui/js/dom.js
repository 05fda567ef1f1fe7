// Tiny DOM helpers: build elements without innerHTML, so API text is never parsed as markup.

/**
 * h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, null)
 * Attributes: `class`, `for`, `data-*`, `aria-*` and other names become attributes; `on*`
 * functions become listeners; `true`/`false` toggle boolean attributes; null/undefined are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = tag.includes(':')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.split(':')[1])
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'value' && 'value' in el && !tag.includes(':')) {
      el.value = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (strings, numbers, nodes, nested arrays); skips null/undefined/false. */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/**
 * Replaces the children of `el` only when `key` (a string describing the content) changed since
 * the last call: a poll that brings nothing new leaves the DOM, focus and selection alone.
 */
export function replaceIfChanged(el, key, build) {
  if (el.dataset.renderKey === key) return false;
  el.dataset.renderKey = key;
  replace(el, build());
  return true;
}

/** A state badge: the text is the state, the colour only repeats it. */
export function stateBadge(state) {
  const cls = String(state || 'UNKNOWN').toLowerCase().replace(/_/g, '-');
  return h('span', { class: `badge state-${cls}` }, state || 'UNKNOWN');
}

/** A task's state badge, and a "stuck" one beside it when the API says the task is stuck. */
export function taskStateBadges(t) {
  return [stateBadge(t.state), t.stuck ? [' ', h('span', { class: 'badge bad stuck', title: 'Retrying for longer than retry.alert_after_sec' }, 'STUCK')] : null];
}

/**
 * A task's last error for a table cell: the code and, once it repeats, how many attempts failed;
 * the message and since when in the tooltip. An em dash without an error.
 */
export function lastErrorCell(err) {
  if (!err) return '—';
  const tries = err.attempts > 1 ? ` ×${err.attempts}` : '';
  const since = new Date(err.since);
  const when = Number.isNaN(since.getTime()) ? err.since : since.toLocaleString();
  return h('span', { class: 'error-text', title: `${err.message}\nFailing since ${when}` }, `${err.code}${tries}`);
}

/** A `<dl>` from [term, description] pairs; a null description shows as an em dash. */
export function dl(pairs, cls = 'facts') {
  return h('dl', { class: cls }, pairs.map(([term, desc]) => [
    h('dt', null, term),
    h('dd', null, desc === null || desc === undefined || desc === '' ? '—' : desc),
  ]));
}

/** A table whose head is `columns` and whose rows are arrays of cells; wrapped for scrolling. */
export function table(caption, columns, rows, opts = {}) {
  return h('div', { class: 'table-wrap', tabindex: opts.scrollable === false ? null : '0', role: 'region', 'aria-label': caption },
    h('table', { class: opts.class || null },
      h('caption', { class: opts.showCaption ? null : 'visually-hidden' }, caption),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.cls || null }, c.label ?? c)))),
      h('tbody', null, rows.map((cells) => h('tr', null, cells.map((cell, i) =>
        i === 0 && opts.rowHeader ? h('th', { scope: 'row' }, cell) : h('td', { class: columns[i]?.cls || null }, cell))))),
    ));
}
