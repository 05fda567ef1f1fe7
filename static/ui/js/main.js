// Entry point: the hash router (#/, #/tasks, #/tasks/new, #/tasks/import, #/tasks/{id},
// #/tasks/{id}/edit) and
// the poll loop that refreshes the current view without reloading the page.
import { ApiError, allowPrompt, forgetToken, hasToken, onAuthChange } from './api.js';
import { h, replace } from './dom.js';
import * as dashboard from './views/dashboard.js';
import * as detail from './views/detail.js';
import * as form from './views/form.js';
import * as importView from './views/import.js';
import * as tasks from './views/tasks.js';

/** How often the visible view asks the API for fresh data. */
const POLL_MS = 2000;

const main = document.getElementById('main');
const status = document.getElementById('refresh-status');
const banner = document.getElementById('banner');
const signOut = document.getElementById('sign-out');

let view = null;      // {refresh?, unmount?} of the mounted view
let routeKey = null; // location.hash of the mounted view
let timer = null;
let generation = 0;   // bumps on every navigation: a late answer for an old view is dropped
let flashText = '';

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  const params = Object.fromEntries(new URLSearchParams(query));
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return { name: 'dashboard', module: dashboard, params };
  if (parts[0] === 'tasks') {
    if (parts.length === 1) return { name: 'tasks', module: tasks, params };
    if (parts[1] === 'new' && parts.length === 2) return { name: 'new', module: form, params: { ...params, mode: 'create' } };
    if (parts[1] === 'import' && parts.length === 2) return { name: 'import', module: importView, params };
    if (/^\d+$/.test(parts[1])) {
      if (parts.length === 2) return { name: 'tasks', module: detail, params: { ...params, id: parts[1] } };
      if (parts[2] === 'edit' && parts.length === 3) return { name: 'tasks', module: form, params: { ...params, mode: 'edit', id: parts[1] } };
    }
  }
  return { name: 'none', module: null, params };
}

const ctx = {
  /** Goes to another view (`#/tasks/3`). */
  navigate(hash) { location.hash = hash; },
  /** Rewrites the address (filters, page) without a new history entry or a re-mount. */
  replaceQuery(hash) { history.replaceState(null, '', hash); },
  /** A one-line message shown on the next view (e.g. "Task deleted"). */
  flash(text) { flashText = text; },
  setTitle(text) { document.title = text ? `${text} · binlog-server` : 'binlog-server'; },
  /** Runs the view's refresh now (after an action) instead of at the next tick. */
  refreshNow() { schedule(0); },
};

function mount() {
  const route = parseRoute();
  const key = location.hash;
  if (key === routeKey) return;
  routeKey = key;
  generation += 1;
  if (view && view.unmount) view.unmount();
  view = null;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === route.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  replace(main);
  if (flashText) {
    main.append(h('p', { class: 'flash', role: 'status' }, flashText));
    flashText = '';
  }
  if (!route.module) {
    ctx.setTitle('Not found');
    main.append(h('h1', null, 'Page not found'), h('p', null, h('a', { href: '#/' }, 'Back to the dashboard')));
  } else {
    const container = h('div', { class: 'view' });
    main.append(container);
    view = route.module.mount(container, route.params, ctx);
  }
  // A view that does not poll (the form) shows no stale "Updated" time.
  if (!view || !view.refresh) { status.textContent = ''; status.classList.remove('error'); }
  // Moves focus to the new view's heading so keyboard and screen-reader users start there.
  const heading = main.querySelector('h1');
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
  window.scrollTo(0, 0);
  schedule(0);
}

function schedule(delay) {
  clearTimeout(timer);
  timer = setTimeout(tick, delay);
}

async function tick() {
  const mine = generation;
  if (!view || !view.refresh) return;
  if (document.hidden) { schedule(POLL_MS); return; }
  let next = POLL_MS;
  try {
    await view.refresh(() => mine === generation);
    if (mine !== generation) return;
    status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove('error');
    hideBanner();
  } catch (e) {
    if (mine !== generation) return;
    const msg = e instanceof ApiError ? e.message : String(e);
    status.textContent = 'Update failed';
    status.classList.add('error');
    if (e instanceof ApiError && e.status === 401) {
      showBanner(msg, 'Sign in', () => { allowPrompt(); hideBanner(); schedule(0); });
    } else {
      showBanner(`Cannot refresh: ${msg}. Retrying.`);
    }
    if (e instanceof ApiError && e.retryAfter) next = e.retryAfter * 1000;
    else next = POLL_MS * 2;
    if (!(e instanceof ApiError)) console.error(e);
  }
  if (mine === generation) schedule(next);
}

function showBanner(text, actionLabel, action) {
  replace(banner, h('span', null, text),
    actionLabel ? h('button', { type: 'button', class: 'link-button', onclick: action }, actionLabel) : null);
  banner.hidden = false;
}
function hideBanner() { banner.hidden = true; replace(banner); }

onAuthChange((signedIn) => { signOut.hidden = !signedIn; });
signOut.hidden = !hasToken();
signOut.addEventListener('click', () => { forgetToken(); routeKey = null; mount(); });
document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(0); });
window.addEventListener('hashchange', mount);
mount();
