// Task detail: state and last error, checkpoint, lag over time, the recovery window (source
// switchovers as points, breaks as holes), the clients reading the task through the relay, files,
// event timeline, and the start / stop / delete actions (each confirmed first).
import { ApiError, del, get, post } from '../api.js';
import { lagChart } from '../chart.js';
import { confirmAction } from '../dialogs.js';
import { dl, h, replace, replaceIfChanged, stateBadge, table } from '../dom.js';
import { bytes, number, seconds, timeEl } from '../format.js';
import { windowChart, windowMarks } from '../window.js';

const CAN_START = new Set(['STOPPED', 'FAILED']);
const CAN_DELETE = new Set(['STOPPED', 'FAILED']);
const CHART_WINDOW_MS = 5 * 60 * 1000;
const EVENTS_SHOWN = 50;
const FILES_SHOWN = 100;
// The window changes when files do; between such changes it is read again at this pace.
const WINDOW_EVERY_MS = 15_000;

// Lag samples per task id, kept while the page is open (the API has no lag history).
const lagSamples = new Map();

export function mount(el, params, ctx) {
  const id = params.id;
  ctx.setTitle(`Task ${id}`);
  let task = null;

  const title = h('h1', null, `Task ${id}`);
  const badge = h('span', { class: 'title-badge', 'aria-live': 'polite' });
  const startBtn = h('button', { type: 'button', class: 'primary', disabled: true, onclick: start }, 'Start');
  const stopBtn = h('button', { type: 'button', disabled: true, onclick: stop }, 'Stop');
  const editLink = h('a', { href: `#/tasks/${id}/edit`, class: 'button' }, 'Edit');
  const deleteBtn = h('button', { type: 'button', class: 'danger', disabled: true, onclick: remove }, 'Delete');
  const actionError = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const lastError = h('div');
  const stall = h('div');
  const status = h('div');
  const checkpoint = h('div');
  const chart = h('div', { class: 'chart-box' });
  const chartNote = h('p', { class: 'muted' });
  const recovery = h('div', { class: 'window-box' });
  let windowKey = null;
  let windowAt = 0;
  let win = null;
  const files = h('div');
  const relayClients = h('div');
  const events = h('div');
  const definition = h('div');

  el.append(
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tasks' }, 'Tasks'), ` / Task ${id}`),
    h('div', { class: 'title-row' }, h('div', { class: 'title-with-badge' }, title, badge),
      h('div', { class: 'actions', role: 'group', 'aria-label': 'Task actions' }, startBtn, stopBtn, editLink, deleteBtn)),
    actionError,
    lastError,
    stall,
    h('div', { class: 'detail-grid' },
      section('Status', 'd-status', status),
      section('Checkpoint', 'd-checkpoint', checkpoint),
      section('Definition', 'd-def', definition)),
    section('Lag over time', 'd-lag', chart, chartNote),
    section('Recovery window', 'd-window', recovery),
    section('Relay clients', 'd-relay', relayClients),
    section('Files', 'd-files', files),
    section('Events', 'd-events', events),
  );

  async function refresh(isCurrent) {
    let t;
    try {
      t = await get(`/api/tasks/${id}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) { if (isCurrent()) gone(); return; }
      throw e;
    }
    const [repl, cp, fl, ev, rc] = await Promise.all([
      get(`/api/tasks/${id}/replication`).catch(() => null),
      get(`/api/tasks/${id}/checkpoint`).catch(() => null),
      get(`/api/tasks/${id}/files`),
      get(`/api/tasks/${id}/events?limit=${EVENTS_SHOWN}`),
      get(`/api/tasks/${id}/replicas`).catch(() => null),
    ]);
    const fileKey = JSON.stringify(fl.items.map((f) => [f.source_identity, f.name, f.state]));
    if (fileKey !== windowKey || Date.now() - windowAt > WINDOW_EVERY_MS) {
      win = await get(`/api/tasks/${id}/window`).catch(() => null);
      windowKey = fileKey;
      windowAt = Date.now();
    }
    if (!isCurrent()) return;
    task = t;
    render(t, repl, cp, fl.items, ev.items, rc ? rc.items : null);
  }

  function renderWindow() {
    if (!win) return h('p', { class: 'muted' }, 'The recovery window is not available right now.');
    if (!win.earliest) return h('p', { class: 'muted' }, 'No file held yet: nothing to replay.');
    const marks = windowMarks(win);
    const switchovers = (win.switchovers || []).length;
    return [
      h('p', null,
        win.continuous
          ? h('span', { class: 'badge good' }, 'CONTINUOUS')
          : h('span', { class: 'badge bad' }, `${win.breaks.length} BREAK${win.breaks.length === 1 ? '' : 'S'}`),
        ' from ', timeEl(win.earliest.time), ' to ', timeEl(win.latest.time),
        switchovers ? `, through ${switchovers} source switchover${switchovers === 1 ? '' : 's'}` : '', '.'),
      windowChart(win, Math.max(240, Math.floor(recovery.clientWidth) || 600)),
      h('p', null, h('a', { href: `#/tasks/${id}/recovery` }, 'Plan a replay')),
      marks.length
        ? h('ol', { class: 'timeline window-marks', 'aria-label': 'Switchovers and breaks, in stream order' }, marks.map((m) => h('li', { class: m.kind },
          timeEl(m.at), ' ', h('span', { class: `badge event ${m.tone}` }, m.label), ' ', h('span', { class: 'message' }, m.text))))
        : null,
    ];
  }

  function render(t, repl, cp, fileItems, eventItems, clientItems) {
    ctx.setTitle(t.name);
    if (title.textContent !== t.name) title.textContent = t.name;
    replaceIfChanged(badge, t.state, () => stateBadge(t.state));
    startBtn.disabled = !CAN_START.has(t.state);
    // The API says which states have actors; one that is already stopping cannot be stopped again.
    stopBtn.disabled = !t.active || t.state === 'STOPPING';
    deleteBtn.disabled = !CAN_DELETE.has(t.state);

    const err = t.last_error || repl?.last_error;
    replaceIfChanged(lastError, JSON.stringify([err || null, t.stuck]), () => (err
      ? h('div', { class: `callout ${t.state === 'FAILED' || t.stuck ? 'bad' : 'warn'}` },
        h('h2', null, t.stuck ? 'Last error (stuck: retrying for too long)' : 'Last error'),
        h('p', null, h('code', null, err.code), ' ', err.message),
        h('p', { class: 'error-since' }, 'Failing since ', timeEl(err.since), `, ${err.attempts} failed attempt${err.attempts === 1 ? '' : 's'}.`),
        t.state === 'RETRY_BACKOFF' && repl?.retry_in_ms != null ? h('p', null, `Next attempt in ${seconds(repl.retry_in_ms / 1000)}.`) : null)
      : null));

    const r = repl || {};
    // A batch that has not returned for writer.stall_after_sec (10 s by default), or a start for
    // writer.start_stall_after_sec (60 s): the disk (or the metadata store) hangs.
    const stalledSince = t.active ? r.writer_stalled_since : null;
    const stalledStart = r.writer_stalled_in === 'START';
    replaceIfChanged(stall, JSON.stringify([stalledSince || null, stalledStart]), () => (stalledSince
      ? h('div', { class: 'callout bad', role: 'alert' },
        h('h2', null, stalledStart ? 'Writer stalled while starting' : 'Writer stalled'),
        stalledStart
          ? h('p', null, 'The writer\'s start (crash recovery and reconciling the local files with the durable checkpoint) has not returned since ',
            timeEl(stalledSince), ': the disk or the metadata store is hanging or very slow. The task streams nothing until it returns.')
          : h('p', null, 'The writer\'s write-out and fsync (or the checkpoint\'s store) has not returned since ',
            timeEl(stalledSince), ': the disk or the metadata store is hanging. Nothing becomes durable until it returns; ',
            'a semi-sync source\'s commits and the relay\'s clients wait for it.'))
      : null));
    const ss = r.semi_sync;
    replaceIfChanged(status, JSON.stringify([t.state, t.desired_state, r.lag_seconds?.toFixed(1), r.caught_up, stalledSince || null, r.connected_since, r.streaming_from, r.events_written, r.bytes_written, r.reconnects, r.crc_errors, r.tls, r.source_version, r.last_event_time, ss]), () => dl([
      ['State', stateBadge(t.state)],
      ['Asked for', t.desired_state],
      ['Source', `${t.source.host}:${t.source.port} (${t.source.flavor}${r.source_version ? ` ${r.source_version}` : ''})`],
      ['Connected since', t.active && r.connected_since ? timeEl(r.connected_since) : null],
      ['TLS', t.active && r.connected_since ? (r.tls ? 'yes' : 'no') : null],
      ['Streaming from', r.streaming_from],
      ['Lag', t.active ? lagText(r, stalledSince) : null],
      ['Last event', r.last_event_time ? timeEl(r.last_event_time) : null],
      ['Written', r.events_written != null ? `${number(r.events_written)} events, ${bytes(r.bytes_written)}` : null],
      ['Reconnects', r.reconnects != null ? number(r.reconnects) : null],
      ['CRC errors', r.crc_errors != null ? number(r.crc_errors) : null],
      ['Semi-sync', ss && ss.requested ? semiSync(ss) : null],
    ]));

    replaceIfChanged(checkpoint, JSON.stringify(cp), () => (cp && cp.file
      ? dl([
        ['File', h('code', null, cp.file)],
        ['Position', number(cp.pos)],
        ['GTID set', cp.gtid_set ? h('code', { class: 'wrap' }, cp.gtid_set) : null],
        ['Source identity', cp.source_identity ? h('code', { class: 'wrap' }, cp.source_identity) : null],
        ['Durable since', timeEl(cp.updated_at)],
      ])
      : h('p', { class: 'muted' }, 'No checkpoint yet: nothing has been written durably.')));

    // One lag sample per poll while the task is active; null (a gap) otherwise.
    const samples = lagSamples.get(id) || [];
    const now = Date.now();
    samples.push({ t: now, lag: t.active && r.lag_seconds != null ? r.lag_seconds : null });
    while (samples.length && samples[0].t < now - CHART_WINDOW_MS) samples.shift();
    lagSamples.set(id, samples);
    // The window grows with the page's age, up to five minutes: a fresh page shows a line.
    const windowMs = Math.min(CHART_WINDOW_MS, Math.max(60_000, now - samples[0].t));
    replace(chart, lagChart(samples, windowMs, Math.max(240, Math.floor(chart.clientWidth) || 600)));
    chartNote.textContent = 'Sampled every poll while this page is open.';

    const width = Math.floor(recovery.clientWidth / 40);
    replaceIfChanged(recovery, JSON.stringify([win, width]), renderWindow);

    replaceIfChanged(definition, JSON.stringify([t.cluster_key, t.source, t.start, t.storage]), () => dl([
      ['Cluster key', h('code', null, t.cluster_key)],
      ['User', t.source.user],
      ['Replica server_id', `${t.source.effective_server_id}${t.source.server_id == null ? ' (default)' : ''}`],
      ['TLS mode', t.source.tls_mode],
      ['Start', t.start.mode === 'FILE_POS' ? `FILE_POS ${t.start.file}:${t.start.pos}` : (t.start.mode === 'GTID' ? `GTID ${t.start.gtid_set || '(empty)'}` : t.start.mode)],
      ['Retention', `${t.storage.local_retention_days ?? t.storage.retention_days} days local, ${t.storage.bucket_retention_days} days in the bucket`],
      ['Created', timeEl(t.created_at)],
    ]));

    // Newest first: the open file is what an operator looks for.
    const newest = [...fileItems].reverse();
    const upload = newest.some((f) => f.upload && f.upload.state);
    // After a source switchover the names can repeat: each file's source tells them apart.
    const sources = new Set(newest.map((f) => f.source_identity)).size > 1;
    const shownFiles = newest.slice(0, FILES_SHOWN);
    replaceIfChanged(files, JSON.stringify(shownFiles), () => (shownFiles.length === 0
      ? h('p', { class: 'muted' }, 'No local file yet.')
      : [table(`Files of ${t.name}, newest first`, [
        'Name', sources ? 'Source' : null, 'State', { label: 'Size', cls: 'num' }, { label: 'Start', cls: 'num' },
        { label: 'End', cls: 'num' }, upload ? 'Upload' : null, 'SHA-256', 'Sealed',
      ].filter(Boolean), shownFiles.map((f) => [
        h('code', null, f.name),
        sources ? h('code', null, f.source_identity) : null,
        h('span', { class: `badge file-${String(f.state).toLowerCase()}` }, f.state),
        h('span', { title: `${number(f.size)} bytes` }, bytes(f.size)),
        number(f.start_pos),
        f.end_pos != null ? number(f.end_pos) : '—',
        upload ? uploadBadge(f) : null,
        f.sha256 ? h('code', { title: f.sha256 }, `${f.sha256.slice(0, 12)}…`) : '—',
        f.sealed_at ? timeEl(f.sealed_at) : '—',
      ].filter((c) => c !== null)), { class: 'data' }),
      newest.length > FILES_SHOWN ? h('p', { class: 'muted' }, `${newest.length - FILES_SHOWN} older files not shown (GET /api/tasks/${id}/files has them all).`) : null]));

    // Bytes sent and positions move with every event: the table is rebuilt only when they do.
    replaceIfChanged(relayClients, JSON.stringify(clientItems), () => (clientItems === null
      ? h('p', { class: 'muted' }, 'The relay clients are not available right now.')
      : (clientItems.length === 0
        ? h('p', { class: 'muted' }, 'No client reads this task through the relay (docs/guide/relay.md).')
        : table(`Clients reading ${t.name} through the relay`, [
          { label: 'Server id', cls: 'num' }, 'Address', 'User', 'Mode', 'Position', { label: 'Sent', cls: 'num' }, 'Connected since',
        ], clientItems.map((c) => [
          c.server_id != null ? String(c.server_id) : '—',
          h('code', null, c.address),
          c.user,
          c.mode,
          c.file ? h('code', null, `${c.file}:${c.pos}`) : '—',
          h('span', { title: `${number(c.bytes_sent)} bytes` }, bytes(c.bytes_sent)),
          timeEl(c.connected_since),
        ]), { class: 'data' }))));

    replaceIfChanged(events, JSON.stringify(eventItems.map((e) => e.id)), () => (eventItems.length === 0
      ? h('p', { class: 'muted' }, 'No event yet.')
      : h('ol', { class: 'timeline', 'aria-label': `Events of ${t.name}, newest first` }, eventItems.map((e) => h('li', null,
        timeEl(e.created_at), ' ', h('span', { class: `badge event ${eventTone(e.event_type)}` }, e.event_type), ' ',
        h('span', { class: 'message' }, e.message))))));
  }

  function gone() {
    replace(el, h('h1', null, `Task ${id}`), h('p', null, 'This task does not exist (any more). ', h('a', { href: '#/tasks' }, 'Back to the task list')));
  }

  async function act(what, fn) {
    actionError.hidden = true;
    try {
      await fn();
    } catch (e) {
      actionError.textContent = `${what} failed: ${e.message}`;
      actionError.hidden = false;
    }
    ctx.refreshNow();
  }

  async function start() {
    const ok = await confirmAction({
      title: `Start ${task.name}?`,
      body: h('p', null, `It connects to ${task.source.host}:${task.source.port} and streams from its checkpoint (or its start position the first time).`),
      okLabel: 'Start task',
    });
    if (ok) await act('Start', () => post(`/api/tasks/${id}/start`));
  }

  async function stop() {
    const ok = await confirmAction({
      title: `Stop ${task.name}?`,
      body: h('p', null, 'Streaming stops once what was received is written, fsynced and checkpointed. Starting it again resumes from there.'),
      okLabel: 'Stop task',
    });
    if (ok) await act('Stop', () => post(`/api/tasks/${id}/stop`));
  }

  async function remove() {
    const form = await confirmAction({
      title: `Delete ${task.name}?`,
      body: [
        h('p', null, 'The task and its metadata are deleted. This cannot be undone.'),
        h('p', { class: 'check' }, h('input', { type: 'checkbox', id: 'purge-files', name: 'purge' }),
          h('label', { for: 'purge-files' }, 'Also delete its local binlog files now (otherwise they are moved to {data_dir}/.deleted/)')),
      ],
      okLabel: 'Delete task',
      danger: true,
    });
    if (!form) return;
    const purge = form.querySelector('#purge-files').checked;
    try {
      await del(`/api/tasks/${id}?purge_files=${purge}`);
      lagSamples.delete(id);
      ctx.flash(`Deleted task “${task.name}”.`);
      ctx.navigate('#/tasks');
    } catch (e) {
      actionError.textContent = `Delete failed: ${e.message}`;
      actionError.hidden = false;
    }
  }

  return { refresh };
}

function section(title, id, ...content) {
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), content);
}

// What /replication says of semi-sync: acknowledging, or asked for and why not.
/**
 * The lag line. Lag is about what arrived: during a writer stall everything may have arrived
 * (the heartbeats say caught up) and nothing of it is durable yet, so it says that instead.
 */
function lagText(r, stalledSince) {
  if (!r.caught_up) return seconds(r.lag_seconds);
  return `${seconds(r.lag_seconds)} ${stalledSince ? '(everything received, not yet durable: the writer is stalled)' : '(caught up)'}`;
}

function semiSync(ss) {
  if (ss.active) return `active, ${number(ss.acks_sent)} acks${ss.last_ack_pos ? `, last at ${ss.last_ack_pos}` : ''}`;
  return `asked for, not active${ss.unavailable_reason ? `: ${ss.unavailable_reason}` : ''}`;
}

function eventTone(type) {
  if (/ERROR|FAILED|STALLED/.test(type)) return 'bad';
  if (/RETRY|BACKOFF/.test(type)) return 'warn';
  if (/RUNNING|STARTED|CREATED/.test(type)) return 'good';
  return '';
}

// LOCAL_ONLY | UPLOADING | UPLOADED | UPLOAD_FAILED, with the reason or the object key as a tooltip.
function uploadBadge(f) {
  const u = f.upload || {};
  if (!u.state) return '—';
  const cls = { LOCAL_ONLY: 'pending', UPLOADING: 'uploading', UPLOADED: 'uploaded', UPLOAD_FAILED: 'failed' }[u.state] || 'pending';
  const title = u.state === 'UPLOAD_FAILED'
    ? `${u.last_error || 'failed'} (attempt ${u.attempts})`
    : (u.object_key || '') + (u.local_deleted_at ? ' (local copy removed by retention)' : '');
  return h('span', { class: `badge upload-${cls}`, title }, u.state === 'UPLOADED' && u.verified ? 'UPLOADED ✓' : u.state);
}
