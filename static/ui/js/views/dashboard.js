// Dashboard: tasks by state, worst lag, total throughput, and the tasks that need attention first.
import { get, mapLimit } from '../api.js';
import { h, lastErrorCell, replaceIfChanged, table, taskStateBadges } from '../dom.js';
import { rate, seconds } from '../format.js';

export const STATES = ['RUNNING', 'STARTING', 'RETRY_BACKOFF', 'LEASE_DEGRADED', 'STOPPING', 'FAILED', 'STOPPED'];
/** Most urgent first: stuck (retrying for too long, the API says), failing, then retrying, then
 * anything with an error, then the rest. */
const URGENCY = { FAILED: 0, RETRY_BACKOFF: 1, LEASE_DEGRADED: 1, STARTING: 3, STOPPING: 3, RUNNING: 4, STOPPED: 5 };
const MAX_TASKS = 1000;

// Byte counters seen at the previous poll, per task: throughput is their difference over time.
// Kept across navigation so coming back to the dashboard shows a rate at once.
const lastCounters = new Map();

export function mount(el, _params, ctx) {
  ctx.setTitle('Dashboard');
  const byState = h('ul', { class: 'state-cards', 'aria-label': 'Tasks by state' });
  const summary = h('div', { class: 'summary-cards' });
  const urgent = h('div');
  const note = h('p', { class: 'muted' });
  // Cluster mode only: the nodes and how many task leases each holds.
  const nodes = h('section', { 'aria-labelledby': 'dash-nodes', hidden: true });
  el.append(
    h('h1', null, 'Dashboard'),
    h('section', { 'aria-labelledby': 'dash-states' }, h('h2', { id: 'dash-states' }, 'Tasks by state'), byState),
    h('section', { 'aria-labelledby': 'dash-health' }, h('h2', { id: 'dash-health', class: 'visually-hidden' }, 'Replication'), summary),
    nodes,
    h('section', { 'aria-labelledby': 'dash-urgent' }, h('h2', { id: 'dash-urgent' }, 'Tasks, most urgent first'), urgent, note),
  );

  async function refresh(isCurrent) {
    const page = await get(`/api/tasks?limit=${MAX_TASKS}`);
    const tasks = page.items;
    const overview = await get('/api/cluster/overview').catch(() => null);
    const workers = overview?.mode === 'cluster' ? (await get('/api/workers').catch(() => null))?.workers : null;
    nodes.hidden = !workers;
    if (workers) {
      replaceIfChanged(nodes, JSON.stringify([workers.map((w) => [w.node_id, w.alive, w.leases]), overview.tasks_unplaced]), () => [
        h('h2', { id: 'dash-nodes' }, 'Cluster nodes'),
        table('Cluster nodes', ['Node', 'Alive', { label: 'Leases', cls: 'num' }, 'Version'], workers.map((w) => [
          w.node_id + (w.node_id === overview.node_id ? ' (this node)' : ''),
          w.alive ? 'yes' : 'no',
          String(w.leases),
          w.version,
        ]), { class: 'data' }),
        h('p', { class: 'muted' }, overview.tasks_unplaced
          ? `${overview.tasks_unplaced} task(s) want to run but no node holds them yet.`
          : 'Every task that should run has a node.'),
      ]);
    }
    const active = tasks.filter((t) => t.active);
    const repl = await mapLimit(active, 6, (t) => get(`/api/tasks/${t.id}/replication`).catch(() => null));
    if (!isCurrent()) return;
    const now = Date.now();
    const live = new Map();
    active.forEach((t, i) => { if (repl[i]) live.set(t.id, repl[i]); });

    // Throughput per task from the byte counters; a restarted task (counter went down) or a
    // first sight has no rate yet.
    const rates = new Map();
    for (const [id, r] of live) {
      const prev = lastCounters.get(id);
      if (prev && r.bytes_written >= prev.bytes && now > prev.t) {
        rates.set(id, ((r.bytes_written - prev.bytes) * 1000) / (now - prev.t));
      }
      lastCounters.set(id, { bytes: r.bytes_written, t: now });
    }
    for (const id of lastCounters.keys()) if (!live.has(id)) lastCounters.delete(id);

    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const t of tasks) counts[t.state] = (counts[t.state] || 0) + 1;
    replaceIfChanged(byState, JSON.stringify(counts), () => STATES.map((s) => h('li', null,
      h('a', { href: `#/tasks?state=${s}`, class: `state-card ${counts[s] ? `state-${s.toLowerCase().replace(/_/g, '-')}` : 'none'}` },
        h('span', { class: 'count' }, String(counts[s])), ' ', h('span', { class: 'label' }, s.replace('_', ' ').toLowerCase())))));

    let worst = null;
    for (const t of active) {
      const lag = live.get(t.id)?.lag_seconds;
      if (lag !== null && lag !== undefined && (!worst || lag > worst.lag)) worst = { task: t, lag };
    }
    const total = [...rates.values()].reduce((a, b) => a + b, 0);
    const failing = (counts.FAILED || 0) + (counts.RETRY_BACKOFF || 0) + (counts.LEASE_DEGRADED || 0);
    const stuck = tasks.filter((t) => t.stuck).length;
    replaceIfChanged(summary, JSON.stringify([worst && [worst.task.id, worst.lag.toFixed(1)], Math.round(total / 1024), rates.size, failing, stuck, active.length]), () => [
      card('Worst lag', worst ? seconds(worst.lag) : '—',
        worst ? h('a', { href: `#/tasks/${worst.task.id}` }, worst.task.name) : (active.length ? 'no lag measured yet' : 'no task streaming')),
      card('Total throughput', rates.size || !active.length ? rate(total) : 'measuring…', `${active.length} active task${active.length === 1 ? '' : 's'}`),
      card('Failing or retrying', String(failing),
        stuck ? h('a', { href: '#/tasks?state=RETRY_BACKOFF' }, `${stuck} stuck retrying`)
          : (failing ? h('a', { href: '#/tasks?state=FAILED' }, 'show failed') : 'all healthy'),
        failing ? 'bad' : 'good'),
    ]);

    const rows = [...tasks].sort((a, b) => rank(a) - rank(b)
      || (live.get(b.id)?.lag_seconds ?? -1) - (live.get(a.id)?.lag_seconds ?? -1)
      || a.name.localeCompare(b.name));
    const shown = rows.slice(0, 50);
    const key = JSON.stringify(shown.map((t) => [t.id, t.name, t.state, t.stuck, t.last_error, live.get(t.id)?.lag_seconds?.toFixed(1), rates.has(t.id) && Math.round(rates.get(t.id) / 1024)]));
    replaceIfChanged(urgent, key, () => (shown.length === 0
      ? h('p', { class: 'empty' }, 'No tasks yet. ', h('a', { href: '#/tasks/new' }, 'Create the first one.'))
      : table('Tasks, most urgent first', [
        'Task', 'State', { label: 'Lag', cls: 'num' }, { label: 'Throughput', cls: 'num' }, 'Last error',
      ], shown.map((t) => [
        h('a', { href: `#/tasks/${t.id}` }, t.name),
        taskStateBadges(t),
        t.active ? seconds(live.get(t.id)?.lag_seconds) : '—',
        rates.has(t.id) ? rate(rates.get(t.id)) : '—',
        lastErrorCell(t.last_error),
      ]), { class: 'data' })));
    note.textContent = [
      rows.length > shown.length ? `Showing the 50 most urgent of ${rows.length} tasks; the task list has them all.` : '',
      page.total > tasks.length ? `Counts cover the first ${tasks.length} of ${page.total} tasks.` : '',
    ].filter(Boolean).join(' ');
  }

  return { refresh };
}

function rank(t) {
  if (t.stuck) return -1;
  const r = URGENCY[t.state] ?? 5;
  return t.last_error && r > 2 ? 2 : r;
}

function card(title, value, sub, tone) {
  return h('div', { class: `summary-card${tone ? ` tone-${tone}` : ''}` },
    h('h3', null, title), h('p', { class: 'value' }, value), h('p', { class: 'sub' }, sub));
}
