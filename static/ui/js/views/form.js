// Create and edit form. The server validates: every problem it reports (`fields[]`) is shown
// next to its field, with a summary on top; the only local check is that a number is a number
// (the API cannot tie a JSON type error to a field).
import { ApiError, get, post, put } from '../api.js';
import { h, replace } from '../dom.js';

// [API field path, label, kind, extra]: the order is the order on screen.
const SECTIONS = [
  ['Task', [
    ['name', 'Name', 'text', { required: true, help: 'Shown in lists; any text.' }],
    ['cluster_key', 'Cluster key', 'text', { required: true, help: 'Unique; letters, digits, ".", "_" and "-" (up to 128).', spellcheck: 'false' }],
  ]],
  ['Source', [
    ['source.host', 'Host', 'text', { required: true, spellcheck: 'false', autocomplete: 'off' }],
    ['source.port', 'Port', 'int', { required: true, placeholder: '3306' }],
    ['source.user', 'User', 'text', { required: true, spellcheck: 'false', autocomplete: 'off' }],
    ['source.password', 'Password', 'password', { autocomplete: 'new-password' }],
    ['source.flavor', 'Flavor', 'select', { required: true, options: [['mariadb', 'MariaDB'], ['mysql', 'MySQL']] }],
    ['source.server_id', 'Replica server_id', 'int', { help: 'Empty: the server picks a unique one (server_id_base + task id).' }],
    ['source.tls_mode', 'TLS', 'select', { options: [['preferred', 'preferred'], ['disabled', 'disabled'], ['required', 'required'], ['verify_ca', 'verify_ca'], ['verify_identity', 'verify_identity']] }],
    ['source.tls_ca_file', 'CA file (PEM)', 'text', { help: 'A file name in the server\'s replication.tls_ca_dir; required for verify_ca.', spellcheck: 'false' }],
    ['source.server_public_key', 'Pinned RSA public key (PEM)', 'textarea', { help: 'MySQL without TLS only: the password is encrypted under this key, never under one the server sends. SHOW STATUS LIKE \'Caching_sha2_password_rsa_public_key\' on the source shows it.', spellcheck: 'false', placeholder: '-----BEGIN PUBLIC KEY-----' }],
    ['source.semi_sync', 'Semi-synchronous (RPO 0)', 'checkbox', { help: 'The source\'s commits wait until binlog-server has fsynced them. Needs rpl_semi_sync_master_enabled (rpl_semi_sync_source_enabled) on the source; without it the task streams asynchronously and says so.' }],
  ]],
  ['Start position', [
    ['start.mode', 'Start from', 'select', { required: true, options: [['LATEST', 'LATEST'], ['FILE_POS', 'FILE_POS'], ['GTID', 'GTID'], ['ARCHIVE_ONLY', 'ARCHIVE_ONLY']], help: 'LATEST: where the source is now. FILE_POS: a file and position. GTID: after a GTID set. ARCHIVE_ONLY: never connects; holds imported files only (binlog-server import).' }],
    ['start.file', 'Binlog file', 'text', { only: 'FILE_POS', spellcheck: 'false', placeholder: 'mysql-bin.000001' }],
    ['start.pos', 'Position', 'int', { only: 'FILE_POS', placeholder: '4' }],
    ['start.gtid_set', 'GTID set', 'text', { only: 'GTID', spellcheck: 'false', help: 'MariaDB domain-server-seq,… or MySQL uuid:1-5,…; may be empty.' }],
  ]],
  ['Retention', [
    ['storage.retention_days', 'Local retention (days)', 'int', { placeholder: '7' }],
    ['storage.bucket_retention_days', 'Bucket retention (days)', 'int', { placeholder: '30', help: 'Used when upload is on; at least the local retention.' }],
  ]],
];

const idOf = (path) => `f-${path.replace(/\./g, '-')}`;

export function mount(el, params, ctx) {
  const editing = params.mode === 'edit';
  const taskId = params.id;
  ctx.setTitle(editing ? `Edit task ${taskId}` : 'New task');
  const inputs = new Map();   // path -> input element
  const errors = new Map();   // path -> error element
  const labels = new Map();   // path -> label text
  const rows = new Map();     // path -> field wrapper (for start-mode dependent fields)
  const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });
  const notice = h('p', { class: 'notice', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, editing ? 'Save changes' : 'Create task');
  const heading = h('h1', null, editing ? `Edit task ${taskId}` : 'New task');

  const form = h('form', { class: 'task-form', novalidate: true, 'aria-labelledby': 'form-heading', onsubmit: onSubmit },
    SECTIONS.map(([legend, fields]) => h('fieldset', null, h('legend', null, legend),
      h('div', { class: 'grid' }, fields.map(([path, label, kind, extra]) => field(path, label, kind, extra))))),
    h('div', { class: 'form-actions' }, submit,
      h('a', { href: editing ? `#/tasks/${taskId}` : '#/tasks', class: 'button' }, 'Cancel')));
  heading.id = 'form-heading';
  el.append(h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tasks' }, 'Tasks'),
    editing ? [' / ', h('a', { href: `#/tasks/${taskId}` }, `Task ${taskId}`)] : null), heading, notice, summary, form);

  const modeSel = inputs.get('start.mode');
  const showModeFields = () => {
    for (const row of rows.values()) {
      const only = row.dataset.only;
      if (only) row.hidden = modeSel.value !== only;
    }
  };
  modeSel.addEventListener('change', showModeFields);
  showModeFields();

  if (editing) {
    form.inert = true;
    get(`/api/tasks/${taskId}`).then((task) => {
      fill(task);
      heading.textContent = `Edit ${task.name}`;
      ctx.setTitle(`Edit ${task.name}`);
      if (!['STOPPED', 'FAILED'].includes(task.state)) {
        notice.textContent = `This task is ${task.state}: the server accepts changes only while it is stopped. Stop it first from its page.`;
        notice.hidden = false;
      }
      form.inert = false;
      showModeFields();
    }).catch((e) => showSummary([e.message], []));
  }

  function field(path, label, kind, extra = {}) {
    const id = idOf(path);
    labels.set(path, label);
    const help = extra.help ? h('p', { class: 'help', id: `${id}-help` }, extra.help) : null;
    const err = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
    const described = [help && help.id, err.id].filter(Boolean).join(' ');
    let input;
    if (kind === 'select') {
      input = h('select', { id, name: path, 'aria-describedby': described, required: !!extra.required },
        extra.options.map(([value, text]) => h('option', { value }, text)));
    } else if (kind === 'checkbox') {
      input = h('input', { id, name: path, type: 'checkbox', 'aria-describedby': described });
    } else if (kind === 'textarea') {
      input = h('textarea', {
        id, name: path, 'aria-describedby': described, rows: 4,
        autocomplete: 'off', spellcheck: extra.spellcheck || null, placeholder: extra.placeholder || null,
      });
    } else {
      input = h('input', {
        id, name: path, 'aria-describedby': described, required: !!extra.required,
        type: kind === 'password' ? 'password' : 'text',
        inputmode: kind === 'int' ? 'numeric' : null,
        autocomplete: extra.autocomplete || 'off', spellcheck: extra.spellcheck || null, placeholder: extra.placeholder || null,
      });
    }
    inputs.set(path, input);
    errors.set(path, err);
    const pwHelp = editing && path === 'source.password'
      ? h('p', { class: 'help', id: `${id}-help` }, 'Leave empty to keep the stored password (not possible when host, port, user, TLS or the pinned key change).') : null;
    if (pwHelp) input.setAttribute('aria-describedby', `${pwHelp.id} ${err.id}`);
    const row = h('div', { class: `field${kind === 'select' || kind === 'int' ? '' : ' wide'}`, 'data-only': extra.only || null },
      h('label', { for: id }, label, extra.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
      input, help, pwHelp, err);
    rows.set(path, row);
    return row;
  }

  function fill(task) {
    const value = (path) => path.split('.').reduce((o, k) => (o == null ? o : o[k]), task);
    for (const [path, input] of inputs) {
      if (path === 'source.password') continue;
      const v = value(path);
      if (input.type === 'checkbox') input.checked = v === true;
      else input.value = v === null || v === undefined ? '' : String(v);
    }
  }

  function body(localErrors) {
    const val = (path) => inputs.get(path).value.trim();
    const int = (path) => {
      const v = val(path);
      if (v === '') return undefined;
      if (!/^-?\d+$/.test(v)) { localErrors.push({ field: path, message: 'must be a whole number' }); return undefined; }
      return Number(v);
    };
    const opt = (v) => (v === '' ? undefined : v);
    const mode = val('start.mode');
    const start = { mode };
    if (mode === 'FILE_POS') { start.file = opt(val('start.file')); start.pos = int('start.pos'); }
    if (mode === 'GTID') start.gtid_set = val('start.gtid_set');
    const storage = { retention_days: int('storage.retention_days'), bucket_retention_days: int('storage.bucket_retention_days') };
    return {
      name: val('name'),
      cluster_key: val('cluster_key'),
      source: {
        host: opt(val('source.host')),
        port: int('source.port'),
        user: opt(val('source.user')),
        // Empty: on create the task has no password; on edit the stored one is kept (the server
        // asks for it again when host, port, user, TLS or the pinned key change).
        password: opt(inputs.get('source.password').value),
        flavor: opt(val('source.flavor')),
        server_id: int('source.server_id'),
        tls_mode: opt(val('source.tls_mode')),
        tls_ca_file: opt(val('source.tls_ca_file')),
        server_public_key: opt(val('source.server_public_key')),
        semi_sync: inputs.get('source.semi_sync').checked,
      },
      start,
      storage: Object.values(storage).some((v) => v !== undefined) ? storage : undefined,
    };
  }

  function clearErrors() {
    for (const [path, err] of errors) {
      err.hidden = true;
      err.textContent = '';
      inputs.get(path).removeAttribute('aria-invalid');
    }
    summary.hidden = true;
    replace(summary);
  }

  /** Messages without a field go to the summary; field messages go next to their field too. */
  function showSummary(general, fields) {
    const items = [...general.map((m) => h('li', null, m))];
    let firstInvalid = null;
    for (const { field: path, message } of fields) {
      const err = errors.get(path);
      if (err) {
        err.textContent = err.textContent ? `${err.textContent}; ${message}` : `${labels.get(path)} ${message}`;
        err.hidden = false;
        const input = inputs.get(path);
        input.setAttribute('aria-invalid', 'true');
        rows.get(path).hidden = false;
        firstInvalid = firstInvalid || input;
        items.push(h('li', null, h('a', { href: `#${idOf(path)}`, onclick: (e) => { e.preventDefault(); input.focus(); } }, labels.get(path)), ` ${message}`));
      } else {
        items.push(h('li', null, `${path}: ${message}`));
      }
    }
    replace(summary, h('h2', null, fields.length || general.length > 1 ? 'Please correct the following' : 'The server refused this'), h('ul', null, items));
    summary.hidden = false;
    (firstInvalid || summary).focus();
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    clearErrors();
    const localErrors = [];
    const payload = body(localErrors);
    if (localErrors.length) { showSummary([], localErrors); return; }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      const task = editing ? await put(`/api/tasks/${taskId}`, payload) : await post('/api/tasks', payload);
      ctx.flash(editing ? `Saved task “${task.name}”.` : `Created task “${task.name}”. Start it when you are ready.`);
      ctx.navigate(`#/tasks/${task.id}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const fields = [...e.fields];
      if (e.code === 'TASK_ALREADY_EXISTS' && !fields.length) fields.push({ field: 'cluster_key', message: 'is already used by another task' });
      showSummary(fields.length ? [] : [e.message], fields);
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  }

  return {};
}
