// Recovery page of one task: the recovery window as a timeline (files held locally or in the
// bucket, switchovers, breaks) and a form that asks GET /api/tasks/{id}/replay for a plan by
// time or GTID, then shows the files and the command to copy. The server validates: its
// messages (`fields[]`) are shown next to the fields they name.
import { ApiError, get } from '../api.js';
import { h, replace, table } from '../dom.js';
import { timeEl } from '../format.js';
import { windowChart, windowMarks } from '../window.js';

// [query parameter, label, help]; `stop` is one of the last two.
const FIELDS = [
  ['start_datetime', 'Start at (UTC)', 'YYYY-MM-DD HH:MM:SS or RFC 3339; by default the second after the earliest event held.'],
  ['stop_datetime', 'Stop before (UTC)', 'The first event at or after this time is not replayed.'],
  ['stop_gtid', 'Or stop before GTID', 'MariaDB domain-server-seq or MySQL uuid:n: that transaction is not replayed.'],
];

/** `2026-12-03T10:00:00Z` -> `2026-12-03 10:00:00` (what the API takes, in UTC). */
const plain = (iso) => (iso ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, '').replace(/\+00:00$/, '') : '');

export function mount(el, params, ctx) {
  const id = params.id;
  ctx.setTitle(`Recovery of task ${id}`);
  const heading = h('h1', null, `Recovery of task ${id}`);
  const box = h('div', { class: 'window-box' });
  const inputs = new Map();
  const errors = new Map();
  const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });
  const result = h('section', { 'aria-labelledby': 'r-plan', hidden: true });
  const form = h('form', { class: 'task-form', novalidate: true, onsubmit: onSubmit },
    h('fieldset', null, h('legend', null, 'Replay'),
      h('div', { class: 'grid' }, FIELDS.map(([name, label, help]) => {
        const input = h('input', { id: `r-${name}`, name, type: 'text', spellcheck: 'false', 'aria-describedby': `r-${name}-help r-${name}-error` });
        const error = h('p', { id: `r-${name}-error`, class: 'field-error', hidden: true });
        inputs.set(name, input);
        errors.set(name, error);
        return h('div', { class: 'field' }, h('label', { for: input.id }, label), input,
          h('p', { id: `r-${name}-help`, class: 'help' }, help), error);
      }))),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Plan the replay')));
  el.append(
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', h('a', { href: `#/tasks/${id}` }, `Task ${id}`)),
    heading,
    h('section', { 'aria-labelledby': 'r-window' }, h('h2', { id: 'r-window' }, 'Recovery window'), box),
    summary, form, result,
  );

  let loaded = false;
  async function refresh(isCurrent) {
    if (loaded) return;
    const [task, win] = await Promise.all([get(`/api/tasks/${id}`), get(`/api/tasks/${id}/window`)]);
    if (!isCurrent()) return;
    loaded = true;
    heading.textContent = `Recovery of ${task.name}`;
    ctx.setTitle(`Recovery of ${task.name}`);
    if (!win.earliest) { replace(box, h('p', { class: 'muted' }, 'No file held yet: nothing to replay.')); return; }
    const marks = windowMarks(win);
    replace(box,
      h('p', null, win.continuous ? h('span', { class: 'badge good' }, 'CONTINUOUS')
        : h('span', { class: 'badge bad' }, `${win.breaks.length} BREAK${win.breaks.length === 1 ? '' : 'S'}`),
      ' from ', timeEl(win.earliest.time), ' to ', timeEl(win.latest.time), '.'),
      windowChart(win, Math.max(240, Math.floor(box.clientWidth) || 600)),
      marks.length ? h('ol', { class: 'timeline window-marks', 'aria-label': 'Switchovers and breaks, in stream order' },
        marks.map((m) => h('li', { class: m.kind }, timeEl(m.at), ' ', h('span', { class: `badge event ${m.tone}` }, m.label), ' ', h('span', { class: 'message' }, m.text)))) : null);
    // A replay by time starts after the earliest event held (the API refuses that very second).
    const first = win.earliest.time && new Date(new Date(win.earliest.time).getTime() + 1000).toISOString();
    if (!inputs.get('start_datetime').value) inputs.get('start_datetime').value = plain(first);
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    for (const e of errors.values()) { e.hidden = true; e.textContent = ''; }
    for (const i of inputs.values()) i.removeAttribute('aria-invalid');
    summary.hidden = true;
    const q = new URLSearchParams();
    for (const [name, input] of inputs) if (input.value.trim()) q.set(name, input.value.trim());
    try {
      const plan = await get(`/api/tasks/${id}/replay?${q}`);
      replace(result,
        h('h2', { id: 'r-plan' }, 'Plan'),
        table('Files to replay', ['File', 'Source', 'Where'], plan.files.map((f) => [f.name, f.source_identity, f.location?.kind || '—']), { class: 'data' }),
        h('p', null, 'Run this where the files are (or use binlog-server replay --fetch DIR):'),
        h('pre', { class: 'command' }, h('code', null, plan.command)));
      result.hidden = false;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const unplaced = [];
      for (const f of e.fields) {
        const name = f.field === 'stop' ? 'stop_datetime' : f.field === 'start' ? 'start_datetime' : f.field;
        const error = errors.get(name);
        if (error) {
          error.textContent = f.message; error.hidden = false;
          inputs.get(name).setAttribute('aria-invalid', 'true');
        } else unplaced.push(`${f.field}: ${f.message}`);
      }
      replace(summary, h('h2', null, 'No plan'), h('p', null, e.message), unplaced.length ? h('ul', null, unplaced.map((u) => h('li', null, u))) : null);
      summary.hidden = false;
      result.hidden = true;
    }
  }

  return { refresh };
}
