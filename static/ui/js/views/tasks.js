// Task list: filters (state, host, search) and pagination, all reflected in the address so a
// filtered view can be bookmarked or shared.
import { get } from '../api.js';
import { h, lastErrorCell, replaceIfChanged, table, taskStateBadges } from '../dom.js';
import { timeEl } from '../format.js';
import { STATES } from './dashboard.js';

const PAGE_SIZE = 20;

export function mount(el, params, ctx) {
  ctx.setTitle('Tasks');
  const filters = {
    state: STATES.includes(params.state) ? params.state : '',
    host: params.host || '',
    q: params.q || '',
    page: Math.max(1, Number.parseInt(params.page, 10) || 1),
  };

  const stateSel = h('select', { id: 'filter-state', name: 'state' },
    h('option', { value: '' }, 'Any state'),
    STATES.map((s) => h('option', { value: s }, s)));
  stateSel.value = filters.state;
  const hostIn = h('input', { id: 'filter-host', name: 'host', type: 'text', value: filters.host, autocomplete: 'off', spellcheck: 'false', placeholder: 'exact host name' });
  const qIn = h('input', { id: 'filter-q', name: 'q', type: 'search', value: filters.q, autocomplete: 'off', placeholder: 'name or cluster key' });
  const results = h('div', { id: 'task-results' });
  const count = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', onclick: () => go(filters.page - 1) }, '‹ Previous');
  const next = h('button', { type: 'button', onclick: () => go(filters.page + 1) }, 'Next ›');
  const pageInfo = h('span', { class: 'page-info' });

  let debounce = null;
  const changed = (immediate) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      filters.state = stateSel.value;
      filters.host = hostIn.value.trim();
      filters.q = qIn.value.trim();
      filters.page = 1;
      sync();
    }, immediate ? 0 : 300);
  };
  stateSel.addEventListener('change', () => changed(true));
  hostIn.addEventListener('input', () => changed(false));
  qIn.addEventListener('input', () => changed(false));

  el.append(
    h('div', { class: 'title-row' }, h('h1', null, 'Tasks'), h('a', { href: '#/tasks/new', class: 'button primary' }, 'New task')),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tasks', onsubmit: (e) => { e.preventDefault(); changed(true); } },
      h('div', { class: 'field' }, h('label', { for: 'filter-state' }, 'State'), stateSel),
      h('div', { class: 'field' }, h('label', { for: 'filter-host' }, 'Source host'), hostIn),
      h('div', { class: 'field grow' }, h('label', { for: 'filter-q' }, 'Search'), qIn),
      h('div', { class: 'field actions' }, h('button', { type: 'button', onclick: () => {
        stateSel.value = ''; hostIn.value = ''; qIn.value = ''; changed(true);
      } }, 'Clear filters'))),
    count,
    results,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageInfo, next),
  );

  function go(page) {
    filters.page = Math.max(1, page);
    sync();
  }

  function sync() {
    const q = new URLSearchParams();
    for (const k of ['state', 'host', 'q']) if (filters[k]) q.set(k, filters[k]);
    if (filters.page > 1) q.set('page', String(filters.page));
    const s = q.toString();
    ctx.replaceQuery(`#/tasks${s ? `?${s}` : ''}`);
    ctx.refreshNow();
  }

  async function refresh(isCurrent) {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String((filters.page - 1) * PAGE_SIZE) });
    for (const k of ['state', 'host', 'q']) if (filters[k]) q.set(k, filters[k]);
    const page = await get(`/api/tasks?${q}`);
    if (!isCurrent()) return;
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    if (filters.page > pages) { go(pages); return; }
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.items.length;
    const filtered = filters.state || filters.host || filters.q;
    const text = page.total
      ? `${first}–${last} of ${page.total} task${page.total === 1 ? '' : 's'}${filtered ? ' matching the filters' : ''}`
      : (filtered ? 'No task matches the filters.' : 'No tasks yet.');
    if (count.textContent !== text) count.textContent = text;
    pageInfo.textContent = `Page ${filters.page} of ${pages}`;
    prev.disabled = filters.page <= 1;
    next.disabled = filters.page >= pages;
    const key = JSON.stringify(page.items.map((t) => [t.id, t.name, t.cluster_key, t.source.host, t.source.port, t.state, t.stuck, t.last_error?.code, t.last_error?.attempts, t.updated_at]));
    replaceIfChanged(results, key, () => (page.items.length === 0
      ? h('p', { class: 'empty' }, filtered ? 'Nothing here: change or clear the filters.' : h('a', { href: '#/tasks/new' }, 'Create the first task.'))
      : table('Tasks', [
        { label: 'ID', cls: 'num' }, 'Name', 'Cluster key', 'Source', 'State', 'Last error', 'Updated',
      ], page.items.map((t) => [
        String(t.id),
        h('a', { href: `#/tasks/${t.id}` }, t.name),
        h('code', null, t.cluster_key),
        `${t.source.host}:${t.source.port}`,
        taskStateBadges(t),
        lastErrorCell(t.last_error),
        timeEl(t.updated_at),
      ]), { class: 'data' })));
  }

  return { refresh, unmount() { clearTimeout(debounce); } };
}
