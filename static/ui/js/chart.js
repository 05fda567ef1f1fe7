// A small SVG line chart of replication lag over time, from the samples the page polled.
import { h } from './dom.js';
import { seconds } from './format.js';

const H = 150;
const PAD = { left: 48, right: 8, top: 10, bottom: 22 };

/**
 * `samples`: [{t: ms since epoch, lag: seconds or null}], oldest first. `W` is the width in CSS
 * pixels: drawn at its real size, text stays legible from a phone to a wide screen.
 */
export function lagChart(samples, windowMs, W) {
  const now = samples.length ? samples[samples.length - 1].t : Date.now();
  const from = now - windowMs;
  const known = samples.filter((s) => s.lag !== null && s.t >= from);
  const max = Math.max(1, ...known.map((s) => s.lag));
  const yMax = niceCeil(max);
  const x = (t) => PAD.left + ((t - from) / windowMs) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v / yMax) * (H - PAD.top - PAD.bottom);

  // A null lag (not connected) breaks the line instead of drawing it as zero.
  const segments = [];
  let current = [];
  for (const s of samples.filter((p) => p.t >= from)) {
    if (s.lag === null) {
      if (current.length) segments.push(current);
      current = [];
    } else {
      current.push(`${x(s.t).toFixed(1)},${y(s.lag).toFixed(1)}`);
    }
  }
  if (current.length) segments.push(current);

  const last = known.length ? known[known.length - 1].lag : null;
  const label = known.length
    ? `Replication lag over the last ${Math.round(windowMs / 60000)} minutes: now ${seconds(last)}, highest ${seconds(Math.max(...known.map((s) => s.lag)))}.`
    : 'Replication lag: no sample yet (the task is not streaming).';

  const grid = [0, yMax / 2, yMax].map((v) => [
    h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }),
    h('svg:text', { x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, seconds(v)),
  ]);
  return h('svg:svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img', 'aria-label': label },
    h('svg:title', null, label),
    grid,
    h('svg:text', { x: PAD.left, y: H - 4, class: 'axis' }, `${Math.round(windowMs / 60000)} min ago`),
    h('svg:text', { x: W - PAD.right, y: H - 4, 'text-anchor': 'end', class: 'axis' }, 'now'),
    segments.map((pts) => (pts.length === 1
      ? h('svg:circle', { cx: pts[0].split(',')[0], cy: pts[0].split(',')[1], r: 2.5, class: 'line-dot' })
      : h('svg:polyline', { points: pts.join(' '), class: 'line' }))),
  );
}

function niceCeil(v) {
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * exp) return m * exp;
  return 10 * exp;
}
