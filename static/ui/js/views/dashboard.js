// Dashboard: tasks by state, worst lag, total throughput, stalled writers, upload backlog, the
// oldest recovery point, and the tasks that need attention first. One request per refresh: GET /api/summary,
// which decides what is urgent (the UI keeps no copy of that rule).
import { get } from '../api.js';
import { h, lastErrorCell, replaceIfChanged, table, taskStateBadges } from '../dom.js';
import { number, rate, seconds, timeEl } from '../format.js';

export const STATES = ['RUNNING', 'STARTING', 'RETRY_BACKOFF', 'LEASE_DEGRADED', 'STOPPING', 'FAILED', 'STOPPED'];

export function mount(el, _params, ctx) {
  ctx.setTitle('Dashboard');
  const byState = h('ul', { class: 'state-cards', 'aria-label': 'Tasks by state' });
  const summary = h('div', { class: 'summary-cards' });
  const urgent = h('div');
  const note = h('p', { class: 'muted' });
  el.append(
    h('h1', null, 'Dashboard'),
    h('section', { 'aria-labelledby': 'dash-states' }, h('h2', { id: 'dash-states' }, 'Tasks by state'), byState),
    h('section', { 'aria-labelledby': 'dash-health' }, h('h2', { id: 'dash-health', class: 'visually-hidden' }, 'Replication'), summary),
    h('section', { 'aria-labelledby': 'dash-urgent' }, h('h2', { id: 'dash-urgent' }, 'Tasks, most urgent first'), urgent, note),
  );

  async function refresh(isCurrent) {
    const s = await get('/api/summary');
    if (!isCurrent()) return;
    const counts = s.tasks.by_state;
    replaceIfChanged(byState, JSON.stringify(counts), () => STATES.map((st) => h('li', null,
      h('a', { href: `#/tasks?state=${st}`, class: `state-card ${counts[st] ? `state-${st.toLowerCase().replace(/_/g, '-')}` : 'none'}` },
        h('span', { class: 'count' }, String(counts[st] || 0)), ' ', h('span', { class: 'label' }, st.replace('_', ' ').toLowerCase())))));

    const { active, failing, stuck, writers_stalled: stalled } = s.tasks;
    const worst = s.worst_lag;
    const bps = s.throughput.bytes_per_second;
    const up = s.upload;
    const key = JSON.stringify([worst && [worst.task_id, worst.lag_seconds.toFixed(1)], bps === null ? null : Math.round(bps / 1024),
      failing, stuck, stalled, firstStalled(s.urgent)?.task.id, active, up, s.oldest_recovery_point, s.nodes]);
    replaceIfChanged(summary, key, () => [
      card('Worst lag', worst ? seconds(worst.lag_seconds) : '—',
        worst ? h('a', { href: `#/tasks/${worst.task_id}` }, worst.name) : (active ? 'no lag measured yet' : 'no task streaming')),
      card('Total throughput', bps !== null || !active ? rate(bps ?? 0) : 'measuring…', `${active} active task${active === 1 ? '' : 's'}`),
      card('Failing or retrying', String(failing),
        stuck ? h('a', { href: '#/tasks?state=RETRY_BACKOFF' }, `${stuck} stuck retrying`)
          : (failing ? h('a', { href: '#/tasks?state=FAILED' }, 'show failed') : 'all healthy'),
        failing ? 'bad' : 'good'),
      // A hanging disk leaves state and lag looking healthy (heartbeats still arrive).
      card('Writers stalled', String(stalled),
        stalled ? stalledLink(firstStalled(s.urgent), stalled)
          : (active ? 'every writer returning' : 'no task streaming'),
        stalled ? 'bad' : undefined),
      card('Upload backlog', up.enabled ? number(up.backlog_files) : 'off',
        up.enabled ? (up.failed_files ? `${number(up.failed_files)} failed upload${up.failed_files === 1 ? '' : 's'}` : 'no failed upload') : 'upload.enabled is false',
        up.failed_files ? 'bad' : undefined),
      card('Oldest recovery point', s.oldest_recovery_point ? timeEl(s.oldest_recovery_point) : '—', 'the earliest event any task holds'),
      card('Nodes', s.nodes.mode === 'cluster' ? `${s.nodes.alive} of ${s.nodes.total}` : '1',
        s.nodes.mode === 'cluster' ? 'alive (cluster mode)' : 'standalone',
        s.nodes.mode === 'cluster' && s.nodes.alive < s.nodes.total ? 'bad' : undefined),
    ]);

    const shown = s.urgent;
    const rowsKey = JSON.stringify(shown.map((u) => [u.task.id, u.task.name, u.task.state, u.task.stuck, u.writer_stalled,
      u.task.last_error, u.lag_seconds?.toFixed(1), u.bytes_per_second === null ? null : Math.round(u.bytes_per_second / 1024)]));
    replaceIfChanged(urgent, rowsKey, () => (shown.length === 0
      ? h('p', { class: 'empty' }, 'No tasks yet. ', h('a', { href: '#/tasks/new' }, 'Create the first one.'))
      : table('Tasks, most urgent first', [
        'Task', 'State', { label: 'Lag', cls: 'num' }, { label: 'Throughput', cls: 'num' }, 'Last error',
      ], shown.map(({ task: t, lag_seconds: lag, bytes_per_second: tbps, writer_stalled: ws }) => [
        h('a', { href: `#/tasks/${t.id}` }, t.name),
        [taskStateBadges(t), ws ? [' ', h('span', { class: 'badge bad writer-stalled',
          title: 'The writer\'s write-out and fsync (or the checkpoint\'s store) has not returned for writer.stall_after_sec (10 s by default) or longer, or its start (crash recovery of the local files) for writer.start_stall_after_sec (60 s)' }, 'WRITER STALLED')] : null],
        t.active ? seconds(lag) : '—',
        tbps !== null ? rate(tbps) : '—',
        lastErrorCell(t.last_error),
      ]), { class: 'data' })));
    note.textContent = s.tasks.total > shown.length
      ? `Showing the ${shown.length} most urgent of ${s.tasks.total} tasks; the task list has them all.` : '';
  }

  return { refresh };
}

/** The first task of the urgent list whose writer is stalled (they are listed first). */
function firstStalled(urgent) {
  return urgent.find((u) => u.writer_stalled);
}

function stalledLink(u, count) {
  if (!u) return `${count} task${count === 1 ? '' : 's'}`;
  const more = count > 1 ? ` and ${count - 1} more` : '';
  // A stalled start (crash recovery before streaming) or a stalled batch: whichever runs.
  const starting = (u.writer_start_seconds || 0) > (u.writer_busy_seconds || 0);
  return [h('a', { href: `#/tasks/${u.task.id}` }, u.task.name),
    starting ? ` starting for ${seconds(u.writer_start_seconds)}${more}` : ` for ${seconds(u.writer_busy_seconds)}${more}`];
}

function card(title, value, sub, tone) {
  return h('div', { class: `summary-card${tone ? ` tone-${tone}` : ''}` },
    h('h3', null, title), h('p', { class: 'value' }, value), h('p', { class: 'sub' }, sub));
}
