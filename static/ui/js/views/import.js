// Import: many task definitions at once through POST /api/tasks/batch. Paste a JSON or YAML
// list (or {"tasks": [...]}) or pick a .json/.yaml file; the server checks every item first and
// creates all or none, so its per-item problems ({index, field, message}) are listed here by item.
// JSON is parsed here (item names in the problem list); anything else goes to the server as
// YAML, which parses it and names the line of a syntax error.
import { ApiError, RawBody, post } from '../api.js';
import { h, replace } from '../dom.js';

const EXAMPLE = JSON.stringify([{
  name: 'orders primary', cluster_key: 'orders-1',
  source: { host: 'db1.internal', port: 3306, user: 'repl', password: '…', flavor: 'mariadb' },
  start: { mode: 'LATEST' },
}], null, 2);

/** The list of definitions in `text` (JSON), `{ yaml }` for text to send as YAML, or a message
 * saying why there is nothing to send. */
export function parseDefinitions(text) {
  if (!text.trim()) return { error: 'Paste or pick a list of task definitions first.' };
  let data;
  try { data = JSON.parse(text); } catch { return { yaml: text }; }
  const tasks = Array.isArray(data) ? data : data && Array.isArray(data.tasks) ? data.tasks : null;
  if (!tasks) return { error: 'Expected a list of task definitions, or {"tasks": [...]}.' };
  return { tasks };
}

export function mount(el, _params, ctx) {
  ctx.setTitle('Import tasks');
  const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });
  const text = h('textarea', { id: 'import-text', rows: '16', spellcheck: 'false', placeholder: EXAMPLE, 'aria-describedby': 'import-help' });
  const file = h('input', { id: 'import-file', type: 'file', accept: '.json,.yaml,.yml,application/json,application/yaml' });
  const start = h('input', { id: 'import-start', type: 'checkbox' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create tasks');
  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    if (f) text.value = await f.text();
  });

  async function onSubmit(ev) {
    ev.preventDefault();
    const parsed = parseDefinitions(text.value);
    if (parsed.error) { show([h('p', null, parsed.error)]); return; }
    submit.disabled = true;
    try {
      const res = parsed.yaml !== undefined
        ? await post(`/api/tasks/batch?start=${start.checked}`, new RawBody(parsed.yaml, 'application/yaml'))
        : await post('/api/tasks/batch', { tasks: parsed.tasks, start: start.checked });
      const failed = res.start_errors.length ? ` ${res.start_errors.length} could not be started.` : '';
      ctx.flash(`${res.items.length} task${res.items.length === 1 ? '' : 's'} created.${failed}`);
      ctx.navigate('#/tasks');
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const byIndex = new Map();
      for (const it of e.items) {
        if (!byIndex.has(it.index)) byIndex.set(it.index, []);
        byIndex.get(it.index).push(it);
      }
      show([
        h('h2', null, e.items.length ? 'Nothing was created' : 'The server refused the list'),
        h('p', null, e.message),
        byIndex.size ? h('ul', { class: 'import-problems' }, [...byIndex].map(([i, list]) => h('li', null,
          h('strong', null, `Item ${i + 1}${nameOf(parsed.tasks && parsed.tasks[i])}: `),
          list.map((p) => `${p.field}: ${p.message}`).join('; ')))) : null,
      ]);
    } finally {
      submit.disabled = false;
    }
  }

  function show(children) {
    replace(summary, children);
    summary.hidden = false;
    summary.focus();
  }

  el.append(
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tasks' }, 'Tasks')),
    h('h1', null, 'Import tasks'),
    summary,
    h('form', { class: 'task-form', novalidate: true, onsubmit: onSubmit },
      h('fieldset', null, h('legend', null, 'Task definitions'),
        h('p', { id: 'import-help', class: 'muted' }, 'Up to 100 definitions, each as the New task form (or POST /api/tasks) takes it, as a JSON or YAML list. All are checked before any is created.'),
        h('label', { for: 'import-file' }, 'From a file'), file,
        h('label', { for: 'import-text' }, 'Or paste them'), text,
        h('label', { for: 'import-start', class: 'checkbox' }, start, ' Start them once created')),
      h('div', { class: 'form-actions' }, submit, h('a', { href: '#/tasks', class: 'button' }, 'Cancel'))),
  );
  return {};
}

function nameOf(task) {
  return task && typeof task.name === 'string' && task.name ? ` (${task.name})` : '';
}
