// The one way the UI talks to /api: JSON in and out, errors as ApiError ({error, code, fields}).
//
// Authentication: the page itself is open. When the API answers 401, the user is asked for the
// token (bearer) or API key (the header the server names in WWW-Authenticate); it is kept in
// sessionStorage (this tab only) and the request is retried. A later 401 (token rotated, wrong
// token) brings the prompt back. Concurrent requests share one prompt.

const TOKEN_KEY = 'binlog-server.token';
const SCHEME_KEY = 'binlog-server.auth-scheme';

/** An error answer of the API, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || null;
    this.fields = (body && Array.isArray(body.fields)) ? body.fields : [];
    this.items = (body && Array.isArray(body.items)) ? body.items : [];
    this.retryAfter = null;
  }
}

let pendingAuth = null;
let authDeclined = false;
const authListeners = new Set();

/** Called with `true` when a credential is stored, `false` when it is forgotten or declined. */
export function onAuthChange(fn) { authListeners.add(fn); }
function notifyAuth(signedIn) { for (const fn of authListeners) fn(signedIn); }

export function hasToken() { return !!sessionStorage.getItem(TOKEN_KEY); }

/** Forgets the stored credential; the next API call asks again. */
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  notifyAuth(false);
}

/** After the user dismissed the prompt, API calls fail fast until this is called. */
export function allowPrompt() { authDeclined = false; }

function credentialHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return {};
  let scheme = { kind: 'bearer' };
  try { scheme = JSON.parse(sessionStorage.getItem(SCHEME_KEY)) || scheme; } catch { /* default */ }
  return scheme.kind === 'api_key' ? { [scheme.header]: token } : { Authorization: `Bearer ${token}` };
}

/** `Bearer realm=...` or `ApiKey realm=..., header="X-API-Key"`. */
function parseChallenge(value) {
  if (value && /^\s*apikey\b/i.test(value)) {
    const m = /header="([^"]+)"/i.exec(value);
    return { kind: 'api_key', header: m ? m[1] : 'X-API-Key' };
  }
  return { kind: 'bearer' };
}

function askForToken(scheme, message) {
  if (authDeclined) return Promise.reject(new ApiError(401, { error: 'Sign-in needed: the API requires a credential.', code: 'UNAUTHORIZED' }));
  if (pendingAuth) return pendingAuth;
  const dialog = document.getElementById('auth-dialog');
  const form = document.getElementById('auth-form');
  const input = document.getElementById('auth-token');
  const label = document.getElementById('auth-label');
  const error = document.getElementById('auth-error');
  label.textContent = scheme.kind === 'api_key' ? `API key (sent as ${scheme.header})` : 'API token';
  error.textContent = message || '';
  error.hidden = !message;
  input.value = '';
  input.setAttribute('aria-invalid', message ? 'true' : 'false');
  const returnFocus = document.activeElement;
  pendingAuth = new Promise((resolve, reject) => {
    const done = () => {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('cancel', onCancel);
      pendingAuth = null;
      if (returnFocus && returnFocus.isConnected && typeof returnFocus.focus === 'function') returnFocus.focus();
    };
    const onSubmit = (ev) => {
      const token = input.value.trim();
      if (!token) { ev.preventDefault(); input.focus(); return; }
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(SCHEME_KEY, JSON.stringify(scheme));
      done();
      notifyAuth(true);
      resolve();
    };
    const onCancel = () => {
      authDeclined = true;
      done();
      notifyAuth(false);
      reject(new ApiError(401, { error: 'Sign-in needed: the API requires a credential.', code: 'UNAUTHORIZED' }));
    };
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('cancel', onCancel);
  });
  dialog.showModal();
  input.focus();
  return pendingAuth;
}

/** A request body sent as it is, with its own content type (a YAML batch). */
export class RawBody {
  constructor(text, contentType) { this.text = text; this.contentType = contentType; }
}

/** Calls the API; resolves with the JSON body (null when empty), rejects with ApiError. */
export async function request(method, path, body) {
  for (;;) {
    // X-Requested-With: what the server asks of a request that changes state without a JSON
    // body (a page on another site cannot send it without a preflight the server never grants).
    const headers = { Accept: 'application/json', 'X-Requested-With': 'binlog-server-ui', ...credentialHeaders() };
    const init = { method, headers, cache: 'no-store' };
    if (body instanceof RawBody) {
      headers['Content-Type'] = body.contentType;
      init.body = body.text;
    } else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { error: `cannot reach the server (${e.message})`, code: 'NETWORK' });
    }
    if (resp.status === 401) {
      const rejected = hasToken();
      if (rejected) forgetToken();
      await askForToken(parseChallenge(resp.headers.get('WWW-Authenticate')),
        rejected ? 'The server did not accept this credential. Try again.' : '');
      continue;
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { error: text }; }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data);
      const retry = Number(resp.headers.get('Retry-After'));
      if (resp.status === 429 && retry > 0) err.retryAfter = retry;
      throw err;
    }
    return data;
  }
}

export const get = (path) => request('GET', path);
export const post = (path, body) => request('POST', path, body ?? {});
export const put = (path, body) => request('PUT', path, body);
export const del = (path) => request('DELETE', path);

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the input order. */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
