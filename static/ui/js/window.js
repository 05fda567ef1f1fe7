// The recovery window (`GET /api/tasks/{id}/window`) drawn as a timeline: what the held files
// cover from the earliest to the latest event, a source switchover the GTID state proves
// lossless as a point on it, and a break as a hole. Shared by the task page and, later, the
// recovery page; it only draws what the API says.
import { h } from './dom.js';
import { time } from './format.js';

const H = 64;
const PAD = { left: 8, right: 8, top: 14, bottom: 20 };
const BAR = { y: 22, h: 14 };

const ms = (iso) => (iso ? new Date(iso).getTime() : null);

/** One line per switchover and break, in stream order: [{kind, at, text, tone}]. */
export function windowMarks(win) {
  const marks = [];
  for (const s of win.switchovers || []) {
    marks.push({
      kind: 'switchover',
      at: s.after.time || s.before.time,
      tone: 'good',
      label: 'SWITCHOVER',
      text: `${s.from_source} → ${s.to_source}: continues at ${s.before.file}:${s.before.pos}${s.after.gtid ? ` (GTID ${s.after.gtid})` : ''}`
        + (s.repeats ? '; its first transactions repeat ones already held (a replay skips them)' : ''),
    });
  }
  for (const b of win.breaks || []) {
    marks.push({
      kind: 'break',
      at: b.after?.time || b.before?.time,
      tone: 'bad',
      label: b.reason,
      text: b.detail + (b.missing_gtids ? ` — missing: ${b.missing_gtids}` : ''),
    });
  }
  return marks.sort((a, b) => (ms(a.at) ?? 0) - (ms(b.at) ?? 0));
}

/** The timeline as SVG, `W` CSS pixels wide; null when nothing is held yet. */
export function windowChart(win, W) {
  const from = ms(win.earliest?.time);
  const to = ms(win.latest?.time);
  if (from === null || to === null) return null;
  const span = Math.max(1000, to - from);
  const x = (t) => PAD.left + ((t - from) / span) * (W - PAD.left - PAD.right);
  const label = `Recovery window from ${time(win.earliest.time)} to ${time(win.latest.time)}: `
    + `${(win.switchovers || []).length} source switchover(s), ${(win.breaks || []).length} break(s).`;

  const holes = (win.breaks || []).map((b) => {
    const a = ms(b.after?.time) ?? from;
    const z = ms(b.before?.time) ?? to;
    const x1 = x(a);
    const width = Math.max(4, x(z) - x1);
    return h('svg:rect', { x: x1 - (width === 4 ? 2 : 0), y: BAR.y - 4, width, height: BAR.h + 8, class: 'break' },
      h('svg:title', null, `${b.reason}: ${b.detail}`));
  });
  const points = (win.switchovers || []).map((s) => {
    const cx = x(ms(s.after.time) ?? ms(s.before.time) ?? from);
    return h('svg:g', { class: 'switchover' },
      h('svg:title', null, `Source switchover ${s.from_source} → ${s.to_source} (no transaction lost)`),
      h('svg:line', { x1: cx, x2: cx, y1: BAR.y - 8, y2: BAR.y + BAR.h + 4 }),
      h('svg:circle', { cx, cy: BAR.y + BAR.h / 2, r: 5 }),
      h('svg:text', { x: cx, y: BAR.y - 10, 'text-anchor': cx > W / 2 ? 'end' : 'start', class: 'axis' }, s.to_source));
  });
  return h('svg:svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart window-chart', role: 'img', 'aria-label': label },
    h('svg:title', null, label),
    h('svg:rect', { x: PAD.left, y: BAR.y, width: W - PAD.left - PAD.right, height: BAR.h, rx: 3, class: 'held' }),
    holes,
    points,
    h('svg:text', { x: PAD.left, y: H - 4, class: 'axis' }, time(win.earliest.time)),
    h('svg:text', { x: W - PAD.right, y: H - 4, 'text-anchor': 'end', class: 'axis' }, time(win.latest.time)),
  );
}
