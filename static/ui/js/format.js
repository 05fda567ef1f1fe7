// Formatting of sizes, durations and times for people; the raw value goes in a `title`.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`;
}

export function rate(bytesPerSecond) {
  if (bytesPerSecond === null || bytesPerSecond === undefined) return '—';
  return `${bytes(Math.round(bytesPerSecond))}/s`;
}

/** Seconds as "0.4 s", "12 s", "3 min 5 s", "2 h 4 min". */
export function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(Number(s))) return '—';
  const v = Number(s);
  if (v < 10) return `${v.toFixed(1)} s`;
  if (v < 60) return `${Math.round(v)} s`;
  if (v < 3600) return `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`;
  if (v < 86400) return `${Math.floor(v / 3600)} h ${Math.round((v % 3600) / 60)} min`;
  return `${Math.floor(v / 86400)} d ${Math.round((v % 86400) / 3600)} h`;
}

/** An ISO timestamp as local date and time. */
export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** A `<time>` element with the local time as text and the ISO value as `datetime`. */
export function timeEl(iso) {
  const el = document.createElement('time');
  if (!iso) { el.textContent = '—'; return el; }
  el.dateTime = iso;
  el.textContent = time(iso);
  el.title = iso;
  return el;
}

/** "12 s ago" from an ISO timestamp (relative to now). */
export function ago(iso) {
  if (!iso) return '—';
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  return Number.isNaN(s) ? iso : `${seconds(Math.max(0, s))} ago`;
}

export function number(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString();
}
