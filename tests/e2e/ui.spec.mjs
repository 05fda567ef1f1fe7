// End-to-end test of the operator UI in a real browser: playwright-core driving the system's
// chromium (no browser download). Started by tests/it/ui_e2e.rs, which owns the MariaDB and the
// binlog-server processes and passes their addresses in the environment:
//
//   UI_BASE_URL      http://127.0.0.1:PORT of binlog-server
//   UI_OUT_DIR       where screenshots go
//   UI_SCENARIO      lifecycle (default) | auth | switchover | stuck | import | relay | semisync | stall
//                    | startstall
//   UI_SOURCE_HOST, UI_SOURCE_PORT, UI_SOURCE_USER, UI_SOURCE_PASSWORD, UI_START_FILE  (lifecycle)
//   UI_TOKEN         the bearer token (auth)
//   UI_TASK_ID       a task that followed a GTID switchover (switchover), a task read through
//                    the relay (relay), a task whose writer's batches hang for seconds (stall),
//                    a task whose writer's start hangs for seconds (startstall)
//   UI_RELAY_USER, UI_RELAY_FILE  the relay client's user and the file it started from (relay)
//   UI_STUCK_TASK, UI_FAILED_TASK  names of a stuck and a FAILED task the test set up (stuck)
//   CHROMIUM         the browser binary (default /usr/bin/chromium)
//
// Every wait is a poll with a deadline. Prints `ok - ...` per check, `screenshot PATH` per
// screenshot, and `ui e2e: ok (N checks)` at the end; exits non-zero on the first failure.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('UI_BASE_URL').replace(/\/$/, '');
const OUT = env('UI_OUT_DIR');
const SCENARIO = env('UI_SCENARIO', 'lifecycle');
const TIMEOUT = 30_000;

let checks = 0;
function check(cond, what) {
  assert.ok(cond, what);
  checks += 1;
  console.log(`ok - ${what}`);
}

/** Calls `fn` until it returns a truthy value or `timeout` passes (then throws naming `what`). */
async function eventually(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last = null;
  for (let interval = 50; ; interval = Math.min(interval * 2, 500)) {
    try {
      const v = await fn();
      if (v) return v;
      last = null;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((resolve) => { setTimeout(resolve, interval); }); // the polling interval
  }
}

async function shot(page, name) {
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

const openPages = [];

/** Watches a page for script errors and CSP violations (a blocked asset is a bug). */
function watch(page, problems) {
  openPages.push(page);
  page.on('pageerror', (e) => { problems.push(`page error: ${e.message}`); console.log(`page error: ${e.stack || e.message}`); });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // An API answer of 401/404/409 is logged by the browser as a failed resource; the UI handles it.
    if (/Failed to load resource: the server responded with a status of (400|401|404|409)/.test(text)) return;
    problems.push(`console error: ${text}`);
    console.log(`console error: ${text}`);
  });
}

/** A form control by its accessible name (the label without the decorative "*"). */
const field = (page, name) => page.getByRole('textbox', { name, exact: true }).or(page.getByRole('combobox', { name, exact: true }));
const heading = (page) => page.getByRole('heading', { level: 1 });
const updated = (page) => eventually('the status line to say "Updated"', async () => /Updated/.test(await page.locator('#refresh-status').textContent()));
const badgeText = (page) => page.locator('.title-badge .badge').textContent();

async function lifecycle(browser) {
  const source = {
    host: env('UI_SOURCE_HOST'), port: env('UI_SOURCE_PORT'), user: env('UI_SOURCE_USER'),
    password: env('UI_SOURCE_PASSWORD'), file: env('UI_START_FILE'),
  };
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);

  await page.goto(`${BASE}/`);
  check(new URL(page.url()).pathname === '/ui/', `/ redirects to /ui/ (${page.url()})`);
  await eventually('the dashboard heading', async () => (await heading(page).textContent()) === 'Dashboard');
  await updated(page);
  await eventually('the empty state', () => page.getByText('No tasks yet.').isVisible());
  check(true, 'the dashboard loads and polls');
  await shot(page, '01-dashboard-empty');

  // The form shows the API's own validation messages next to the fields.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'New task' }).click();
  await eventually('the form', async () => (await heading(page).textContent()) === 'New task');
  await page.getByRole('button', { name: 'Create task' }).click();
  const nameError = page.locator('#f-name-error');
  await eventually('an error next to Name', () => nameError.isVisible());
  check(/^Name .+/.test(await nameError.textContent()), `Name shows the API's message: "${await nameError.textContent()}"`);
  check(await field(page, 'Name').getAttribute('aria-invalid') === 'true', 'Name is marked aria-invalid');
  check(await page.locator('#f-source-host-error').isVisible(), 'Host shows an error too');
  check(await page.getByRole('alert').filter({ hasText: 'Please correct the following' }).isVisible(), 'an error summary is shown');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'f-name', 'focus moves to the first invalid field');
  await field(page, 'Name').fill('ui-e2e');
  await field(page, 'Cluster key').fill('ui-e2e');
  await field(page, 'Host').fill(source.host);
  await field(page, 'Port').fill('70000');
  await field(page, 'User').fill(source.user);
  await page.getByLabel('Password', { exact: true }).fill(source.password);
  await field(page, 'Flavor').selectOption('mariadb');
  await field(page, 'Start from').selectOption('FILE_POS');
  await field(page, 'Binlog file').fill(source.file);
  await field(page, 'Position').fill('4');
  await page.getByRole('button', { name: 'Create task' }).click();
  const portError = page.locator('#f-source-port-error');
  await eventually('an error next to Port', () => portError.isVisible());
  check(/70000/.test(await portError.textContent()), `Port shows the API's range message: "${await portError.textContent()}"`);
  check(!(await nameError.isVisible()), 'the fixed Name error is gone');
  await shot(page, '02-form-errors');
  await field(page, 'Port').fill(source.port);
  await page.getByRole('button', { name: 'Create task' }).click();
  await eventually('the new task page', async () => /#\/tasks\/\d+$/.test(page.url()) && (await heading(page).textContent()) === 'ui-e2e');
  const taskUrl = page.url();
  check(await page.getByRole('status').filter({ hasText: 'Created task' }).isVisible(), 'a confirmation is shown after create');
  await eventually('the STOPPED badge', async () => (await badgeText(page)) === 'STOPPED');

  // Escape cancels a confirmation: nothing happens.
  await page.getByRole('button', { name: 'Start', exact: true }).click();
  const confirm = page.getByRole('dialog');
  await eventually('the confirmation dialog', () => confirm.isVisible());
  check(await page.evaluate(() => document.activeElement.id) === 'confirm-cancel', 'the confirmation focuses Cancel');
  await page.keyboard.press('Escape');
  await eventually('the dialog to close', async () => !(await confirm.isVisible()));
  check((await badgeText(page)) === 'STOPPED', 'Escape started nothing');

  await page.getByRole('button', { name: 'Start', exact: true }).click();
  await eventually('the confirmation dialog', () => confirm.isVisible());
  await shot(page, '03-start-confirm');
  await confirm.getByRole('button', { name: 'Start task' }).click();
  await eventually('the RUNNING badge', async () => (await badgeText(page)) === 'RUNNING');
  check(true, 'the task becomes RUNNING');
  const fileRows = page.getByRole('region', { name: /^Files of/ }).locator('tbody tr');
  await eventually('files to appear', async () => (await fileRows.count()) >= 2);
  check(true, `files appear (${await fileRows.count()} rows)`);
  const firstRow = await fileRows.last().textContent();
  check(firstRow.includes(source.file) && firstRow.includes('SEALED'), `the first file is listed as SEALED: ${firstRow}`);
  await eventually('the checkpoint', () => page.getByRole('region', { name: 'Checkpoint' }).getByText('Position').isVisible());
  await eventually('events', async () => (await page.locator('.timeline li').count()) >= 2);
  await eventually('a lag line in the chart', async () => (await page.locator('svg.chart polyline').count()) >= 1);
  check(true, 'checkpoint, events and the lag chart are shown');
  await shot(page, '04-detail-running');

  // Task list with filters; the filters live in the address.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tasks' }).click();
  await eventually('the task row', () => page.getByRole('link', { name: 'ui-e2e' }).isVisible());
  await page.getByLabel('State').selectOption('STOPPED');
  await eventually('the empty filtered list', () => page.getByText('No task matches the filters.').isVisible());
  check(page.url().includes('state=STOPPED'), 'the state filter is in the address');
  await page.getByLabel('State').selectOption('RUNNING');
  await eventually('the running task', () => page.getByRole('link', { name: 'ui-e2e' }).isVisible());
  await page.getByLabel('Search').fill('no-such-task');
  await eventually('the search to filter', () => page.getByText('No task matches the filters.').isVisible());
  await page.getByLabel('Search').fill('e2e');
  await eventually('the search to match', () => page.getByRole('link', { name: 'ui-e2e' }).isVisible());
  await page.getByLabel('Source host').fill(source.host);
  await eventually('the host filter to match', async () => page.url().includes(`host=${source.host}`) && page.getByRole('link', { name: 'ui-e2e' }).isVisible());
  check(true, 'state, search and host filters narrow the list');
  check(await page.getByText('Page 1 of 1').isVisible(), 'the pager shows the page');
  await shot(page, '05-task-list');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dashboard' }).click();
  const runningCard = page.getByRole('link', { name: /running/i }).first();
  await eventually('the RUNNING count', async () => /^1\s/.test((await runningCard.textContent()).trim()));
  const throughputCard = page.locator('.summary-card').filter({ has: page.getByRole('heading', { name: 'Total throughput' }) });
  await eventually('a throughput figure', async () => /\/s$/.test(await throughputCard.locator('.value').textContent()));
  check(await page.getByRole('region', { name: 'Tasks, most urgent first' }).getByRole('link', { name: 'ui-e2e' }).isVisible(), 'the dashboard lists the task');
  // However many tasks there are, a refresh of the dashboard is one request: GET /api/summary.
  const apiCalls = [];
  const onRequest = (r) => { const u = new URL(r.url()); if (u.pathname.startsWith('/api/')) apiCalls.push(u.pathname); };
  page.on('request', onRequest);
  await eventually('two dashboard refreshes', () => apiCalls.filter((p) => p === '/api/summary').length >= 2);
  page.off('request', onRequest);
  check(apiCalls.every((p) => p === '/api/summary'), `each dashboard refresh is one /api/summary request: ${JSON.stringify(apiCalls)}`);
  const nodesCard = page.locator('.summary-card').filter({ has: page.getByRole('heading', { name: 'Nodes' }) });
  check(/^1 of 1|^1$/.test((await nodesCard.locator('.value').textContent()).trim()), 'the nodes card shows this node');
  await shot(page, '06-dashboard');

  // A phone-sized screen: nothing wider than the viewport but the scrollable tables.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const small = await phone.newPage();
  watch(small, problems);
  for (const [hash, name] of [['#/', '07-phone-dashboard'], [new URL(taskUrl).hash, '08-phone-detail'], ['#/tasks/new', '09-phone-form']]) {
    await small.goto(`${BASE}/ui/${hash}`);
    if (name !== '09-phone-form') await updated(small); // the form does not poll
    await eventually(`${name} to render`, async () => (await heading(small).count()) === 1);
    if (name === '08-phone-detail') await eventually('the phone detail data', async () => (await badgeText(small)) === 'RUNNING');
    const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name}: the page fits the phone width (overflow ${overflow}px)`);
    await shot(small, name);
  }
  await phone.close();

  // Stop, edit, delete.
  await page.goto(taskUrl);
  await eventually('the RUNNING badge', async () => (await badgeText(page)) === 'RUNNING');
  await page.getByRole('button', { name: 'Stop', exact: true }).click();
  await confirm.getByRole('button', { name: 'Stop task' }).click();
  await eventually('the STOPPED badge', async () => (await badgeText(page)) === 'STOPPED');
  check(true, 'the task stops');

  await page.getByRole('link', { name: 'Edit', exact: true }).click();
  await eventually('the edit form filled in', async () => (await field(page, 'Name').inputValue()) === 'ui-e2e');
  check(await field(page, 'Start from').inputValue() === 'FILE_POS', 'the edit form shows the stored start mode');
  await field(page, 'Name').fill('ui-e2e renamed');
  await shot(page, '10-edit-form');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await eventually('the renamed task page', async () => (await heading(page).textContent()) === 'ui-e2e renamed');
  check(true, 'edit saves (the stored password is kept)');

  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await eventually('the delete confirmation', () => confirm.getByRole('button', { name: 'Delete task' }).isVisible());
  await confirm.getByLabel(/Also delete its local binlog files/).check();
  await shot(page, '11-delete-confirm');
  await confirm.getByRole('button', { name: 'Delete task' }).click();
  await eventually('the task list after delete', async () => page.url().endsWith('#/tasks') && page.getByText('No tasks yet.').isVisible());
  check(await page.getByRole('status').filter({ hasText: 'Deleted task' }).isVisible(), 'a confirmation is shown after delete');
  const left = await page.evaluate(async () => (await (await fetch('/api/tasks')).json()).total);
  check(left === 0, 'the API has no task left');
  await shot(page, '12-task-list-after-delete');

  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

async function auth(browser) {
  const token = env('UI_TOKEN');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  const dialog = page.getByRole('dialog', { name: 'Sign in' });
  const input = dialog.getByLabel('API token');

  await page.goto(`${BASE}/`);
  await eventually('the sign-in prompt', () => dialog.isVisible());
  check(true, 'the page loads without a credential and asks for the token');
  check(await page.evaluate(() => document.activeElement.id) === 'auth-token', 'the token field has the focus');
  await shot(page, 'a1-auth-prompt');

  await input.fill('not-the-token');
  await input.press('Enter');
  await eventually('the rejection message', async () => (await dialog.isVisible()) && /did not accept/.test(await dialog.textContent()));
  check(true, 'a wrong token brings the prompt back with a message');
  await shot(page, 'a2-auth-rejected');

  await input.fill(token);
  await input.press('Enter');
  await eventually('the prompt to close', async () => !(await dialog.isVisible()));
  await updated(page);
  check(await page.evaluate(() => sessionStorage.getItem('binlog-server.token')) === token, 'the token is kept in sessionStorage');
  check(await page.getByRole('button', { name: 'Forget token' }).isVisible(), 'a "Forget token" button is offered');
  await shot(page, 'a3-auth-dashboard');

  await page.reload();
  await updated(page);
  check(!(await dialog.isVisible()), 'a reload does not ask again');

  // A token that stops working (rotated on the server) brings the prompt back at the next poll.
  await page.evaluate(() => sessionStorage.setItem('binlog-server.token', 'rotated-away'));
  await eventually('the prompt after a 401', () => dialog.isVisible());
  check(true, 'a 401 brings the prompt back');
  await input.fill(token);
  await input.press('Enter');
  await eventually('the prompt to close', async () => !(await dialog.isVisible()));

  // Dismissing the prompt stops asking until the user chooses to sign in.
  await page.getByRole('button', { name: 'Forget token' }).click();
  await eventually('the prompt after forgetting', () => dialog.isVisible());
  await page.keyboard.press('Escape');
  const banner = page.locator('#banner');
  await eventually('the sign-in banner', async () => (await banner.isVisible()) && /Sign-in needed/.test(await banner.textContent()));
  check(!(await dialog.isVisible()), 'Escape dismisses the prompt and a banner offers to sign in');
  await banner.getByRole('button', { name: 'Sign in' }).click();
  await eventually('the prompt again', () => dialog.isVisible());
  await input.fill(token);
  await input.press('Enter');
  await updated(page);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tasks' }).click();
  await eventually('the task list', () => page.getByText('No tasks yet.').isVisible());
  check(!(await dialog.isVisible()), 'signed in again, the task list loads');

  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

// A task that followed its source's failover: the task page's recovery window shows the
// switchover as a point of one continuous timeline, not as a hole.
async function switchover(browser) {
  const id = env('UI_TASK_ID');
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  await page.goto(`${BASE}/ui/#/tasks/${id}`);
  const section = page.locator('section[aria-labelledby="d-window"]');
  await eventually('the recovery window to say CONTINUOUS', async () => (await section.locator('.badge.good', { hasText: 'CONTINUOUS' }).count()) === 1);
  check(await section.getByRole('heading', { name: 'Recovery window' }).isVisible(), 'the task page has a recovery window');
  check(await section.locator('svg.window-chart g.switchover').count() === 1, 'the switchover is one point on the timeline');
  check(await section.locator('svg.window-chart .break').count() === 0, 'the timeline has no hole');
  const mark = await section.locator('.window-marks li.switchover').textContent();
  check(/mariadb-1-0 → mariadb-2-0/.test(mark), `the switchover is listed with both sources: "${mark.trim()}"`);
  check(/through 1 source switchover/.test(await section.textContent()), 'the summary counts it');
  await section.scrollIntoViewIfNeeded();
  await shot(page, 'w1-detail-switchover');

  // The recovery page: the same window, and a replay planned by time.
  await section.getByRole('link', { name: 'Plan a replay' }).click();
  await eventually('the recovery page', async () => /^Recovery of /.test(await heading(page).textContent()));
  await eventually('the window on the recovery page', () => page.locator('svg.window-chart').isVisible());
  const start = page.getByRole('textbox', { name: 'Start at (UTC)' });
  await eventually('the start filled with the earliest point', async () => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(await start.inputValue()));
  await page.getByRole('button', { name: 'Plan the replay' }).click();
  await eventually('a message next to the stop field', async () => (await page.locator('#r-stop_datetime-error').isVisible())
    && /stop/i.test(await page.locator('#r-stop_datetime-error').textContent()));
  check(true, 'without a stop, the message of the API is shown next to the stop field');
  const latest = await page.locator('.window-box p time').nth(1).getAttribute('datetime');
  const stop = new Date(latest).toISOString().slice(0, 19).replace('T', ' ');
  await page.getByRole('textbox', { name: 'Stop before (UTC)' }).fill(stop);
  await page.getByRole('button', { name: 'Plan the replay' }).click();
  await eventually('the plan or a refusal', async () => (await page.locator('pre.command').isVisible()) || page.locator('.error-summary').isVisible());
  check(await page.locator('pre.command').isVisible(), `a plan by time, up to ${stop}${await page.locator('.error-summary').isVisible() ? `, not: ${await page.locator('.error-summary').textContent()}` : ''}`);
  check(/mariadb-binlog/.test(await page.locator('pre.command').textContent()), 'the plan shows the command to copy');
  await shot(page, 'w2-recovery-plan');
  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

async function relayClients(browser) {
  const id = env('UI_TASK_ID');
  const user = env('UI_RELAY_USER');
  const file = env('UI_RELAY_FILE');
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  await page.goto(`${BASE}/ui/#/tasks/${id}`);
  const section = page.locator('section[aria-labelledby="d-relay"]');
  await eventually('a row in the relay clients table', async () => (await section.locator('table tbody tr').count()) === 1);
  check(await section.getByRole('heading', { name: 'Relay clients' }).isVisible(), 'the task page has a relay clients section');
  const cells = await section.locator('table tbody tr td').allTextContents();
  check(cells.includes(user), `the relay client is listed with its user: ${JSON.stringify(cells)}`);
  check(cells.some((c) => /^127\.0\.0\.1:\d+$/.test(c)), 'and its address');
  check(cells.includes('position'), 'and its mode (a dump by file and position)');
  check(cells.some((c) => c.startsWith(`${file.replace(/\d+$/, '')}`) && /:\d+$/.test(c)), 'and where it is (file:position)');
  await section.scrollIntoViewIfNeeded();
  await shot(page, 'r1-detail-relay-clients');
  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

async function stuck(browser) {
  const stuckName = env('UI_STUCK_TASK');
  const failedName = env('UI_FAILED_TASK');
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);

  await page.goto(`${BASE}/ui/`);
  await eventually('the dashboard heading', async () => (await heading(page).textContent()) === 'Dashboard');
  await updated(page);
  const rows = page.getByRole('region', { name: 'Tasks, most urgent first' }).locator('tbody tr');
  await eventually('three tasks on the dashboard', async () => (await rows.count()) === 3);
  const first = rows.first();
  await eventually('the stuck task first', async () => (await first.textContent()).includes(stuckName));
  check(/STUCK/.test(await first.textContent()), 'the stuck task is first, marked STUCK (before the FAILED one)');
  check((await rows.nth(1).textContent()).includes(failedName), 'the FAILED task comes next');
  const error = first.locator('.error-text');
  const errorText = await error.textContent();
  check(/^SOURCE_UNREACHABLE ×\d+$/.test(errorText), `its last error shows the code and the failed attempts: "${errorText}"`);
  check(/Failing since /.test(await error.getAttribute('title')), 'the tooltip says since when it has been failing');
  check(await page.getByText(/^1 stuck retrying$/).isVisible(), 'the summary card counts the stuck task');
  await shot(page, 's1-dashboard-stuck');

  await first.getByRole('link', { name: stuckName }).click();
  await eventually('the stuck task page', async () => (await heading(page).textContent()) === stuckName);
  await eventually('the stuck callout', () => page.getByRole('heading', { name: /stuck: retrying for too long/ }).isVisible());
  const since = await page.locator('.error-since').textContent();
  check(/^Failing since .+, \d+ failed attempts?\.$/.test(since), `the task page says since when and how often: "${since}"`);
  await shot(page, 's2-detail-stuck');

  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tasks' }).click();
  await eventually('the task list', () => page.getByRole('link', { name: stuckName }).isVisible());
  const listed = page.getByRole('row').filter({ hasText: stuckName });
  check(/STUCK/.test(await listed.textContent()) && /SOURCE_UNREACHABLE ×\d+/.test(await listed.textContent()), 'the task list marks it too');

  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

/** The dashboard once its "Writers stalled" card counts one: the card's text and tone, and the
 * urgent row of `taskName` with its WRITER STALLED badges, read together in one look (the page
 * refreshes every 2 s and the stall ends in the end). */
async function stalledOnDashboard(page, taskName) {
  const card = page.locator('.summary-card').filter({ has: page.getByRole('heading', { name: 'Writers stalled' }) });
  const row = page.getByRole('row').filter({ hasText: taskName });
  return eventually('the stalled-writers card to count one', async () => {
    if ((await card.locator('.value').textContent()) !== '1') return null;
    return { card: await card.textContent(), tone: await card.getAttribute('class'), row: await row.textContent(),
      badge: await row.locator('.badge.writer-stalled').count() };
  });
}

/** A writer whose batch has not returned (a hung disk): counted on the dashboard and marked in its
 * urgent list, a red callout on the task's page while it lasts, gone once the batch returns. */
async function stall(browser) {
  const id = env('UI_TASK_ID');
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);

  // The dashboard: the task's state (RUNNING) and lag look healthy; the stall is what says not.
  await page.goto(`${BASE}/ui/#/`);
  const seen = await stalledOnDashboard(page, 'hung-disk');
  check(/hung-disk for .+ s/.test(seen.card) && seen.tone.includes('tone-bad'),
    `the dashboard counts the stalled writer and names its task: "${seen.card}"`);
  check(/RUNNING/.test(seen.row) && seen.badge === 1, `the urgent list marks the task: "${seen.row}"`);
  await shot(page, 'w0-dashboard-writer-stalled');

  await page.goto(`${BASE}/ui/#/tasks/${id}`);
  const title = page.getByRole('heading', { name: 'Writer stalled' });
  await eventually('the stalled-writer callout', () => title.isVisible());
  const text = await page.locator('.callout.bad').filter({ has: title }).textContent();
  check(/has not returned since .+: the disk or the metadata store is hanging/.test(text), `the task page shows the stalled writer: "${text}"`);
  const lag = await page.locator('dt', { hasText: /^Lag$/ }).locator('xpath=following-sibling::dd[1]').textContent();
  check(!/\(caught up\)/.test(lag), `the lag line does not call a stalled task caught up: "${lag}"`);
  await shot(page, 'w1-detail-writer-stalled');
  // The fault delays every batch with bytes; once the backlog is written the writer idles.
  await eventually('the callout to go', async () => !(await title.isVisible()), 90_000);
  check(!(await title.isVisible()), 'and stops showing it once the batch returned');
  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

/** A writer whose start has not returned (a disk that hangs while the task recovers its local
 * files): the task stays STARTING, the dashboard counts it as a stalled writer "starting for ...",
 * its page says the start stalled, and both stop once it returns. */
async function startStall(browser) {
  const id = env('UI_TASK_ID');
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);

  await page.goto(`${BASE}/ui/#/`);
  const seen = await stalledOnDashboard(page, 'hung-start');
  check(/hung-start starting for .+ s/.test(seen.card) && seen.tone.includes('tone-bad'),
    `the dashboard names the task whose start stalled: "${seen.card}"`);
  check(/STARTING/.test(seen.row) && seen.badge === 1, `the urgent list marks the starting task: "${seen.row}"`);
  await shot(page, 'ws0-dashboard-start-stalled');

  await page.goto(`${BASE}/ui/#/tasks/${id}`);
  const title = page.getByRole('heading', { name: 'Writer stalled while starting', exact: true });
  await eventually('the stalled-start callout', () => title.isVisible());
  const text = await page.locator('.callout.bad').filter({ has: title }).textContent();
  check(/start \(crash recovery .+\) has not returned since .+ The task streams nothing until it returns/.test(text),
    `the task page says the start stalled: "${text}"`);
  await shot(page, 'ws1-detail-start-stalled');
  await eventually('the callout to go', async () => !(await title.isVisible()), 90_000);
  check(!(await title.isVisible()), 'and stops showing it once the start returned');
  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

/** Import: task definitions pasted as YAML; one bad item refuses the list, then all are created. */
async function importYaml(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  const yaml = (port) => [
    '# kept in a file, pasted as it is',
    '- name: yaml one',
    '  cluster_key: yaml-1',
    '  source: {host: 127.0.0.1, port: 3306, user: repl, password: "p: w", flavor: mariadb}',
    '  start: {mode: LATEST}',
    '- name: yaml two',
    '  cluster_key: yaml-2',
    '  source:',
    '    host: 127.0.0.1',
    `    port: ${port}`,
    '    user: repl',
    '    password: pw',
    '    flavor: mariadb',
    '  start: {mode: LATEST}',
  ].join('\n');

  await page.goto(`${BASE}/ui/#/tasks/import`);
  await eventually('the import page', async () => (await heading(page).textContent()) === 'Import tasks');
  await page.locator('#import-text').fill(yaml(70000));
  await page.getByRole('button', { name: 'Create tasks' }).click();
  const summary = page.getByRole('alert').filter({ hasText: 'Nothing was created' });
  await eventually('the refusal', () => summary.isVisible());
  const said = await summary.textContent();
  check(/Item 2/.test(said) && /source\.port/.test(said) && !/Item 1/.test(said), `the bad YAML item is named by number and field: "${said}"`);
  await shot(page, 'i1-import-yaml-refused');

  await page.locator('#import-text').fill(yaml(3307));
  await page.getByRole('button', { name: 'Create tasks' }).click();
  await eventually('the task list', () => page.getByText('2 tasks created.').isVisible());
  await eventually('both tasks listed', async () => (await page.getByText('yaml one').count()) > 0 && (await page.getByText('yaml two').count()) > 0);
  check(true, 'a YAML list creates every task');
  await shot(page, 'i2-import-yaml-created');

  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

/** The task as the API stores it (the spec checks what the form saved, not what it shows). */
async function apiTask(id) {
  const res = await fetch(`${BASE}/api/tasks/${id}`);
  assert.equal(res.status, 200, `GET /api/tasks/${id}`);
  return res.json();
}

async function semiSync(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  const box = () => page.getByRole('checkbox', { name: 'Semi-synchronous (RPO 0)' });

  await page.goto(`${BASE}/ui/#/tasks/new`);
  await eventually('the form', async () => (await heading(page).textContent()) === 'New task');
  check(!(await box().isChecked()), 'the semi-sync checkbox starts unticked');
  await field(page, 'Name').fill('semi-sync form');
  await field(page, 'Cluster key').fill('semi-sync-form');
  await field(page, 'Host').fill('127.0.0.1');
  await field(page, 'Port').fill('3999');
  await field(page, 'User').fill('repl');
  await page.getByLabel('Password', { exact: true }).fill('pw');
  await field(page, 'Flavor').selectOption('mariadb');
  await field(page, 'Start from').selectOption('LATEST');
  await box().check();
  await shot(page, 'ss1-form-semi-sync-ticked');
  await page.getByRole('button', { name: 'Create task' }).click();
  await eventually('the new task page', async () => /#\/tasks\/\d+$/.test(page.url()) && (await heading(page).textContent()) === 'semi-sync form');
  const id = page.url().match(/#\/tasks\/(\d+)$/)[1];
  const created = await apiTask(id);
  check(created.source.semi_sync === true, `ticked and saved: the API shows source.semi_sync ${created.source.semi_sync}`);

  await page.getByRole('link', { name: 'Edit', exact: true }).click();
  await eventually('the edit form filled in', async () => (await field(page, 'Name').inputValue()) === 'semi-sync form');
  check(await box().isChecked(), 'the edit form shows the stored semi_sync ticked');
  await box().uncheck();
  await shot(page, 'ss2-form-semi-sync-unticked');
  await page.getByRole('button', { name: 'Save changes' }).click();
  await eventually('the saved task page', async () => /#\/tasks\/\d+$/.test(page.url()) && (await heading(page).textContent()) === 'semi-sync form');
  const saved = await eventually('the API to show the change', async () => {
    const t = await apiTask(id);
    return t.source.semi_sync === false ? t : null;
  });
  check(saved.source.semi_sync === false, 'unticked and saved: the API shows source.semi_sync false');

  check(problems.length === 0, `no script error or blocked asset: ${JSON.stringify(problems)}`);
  await context.close();
}

await mkdir(OUT, { recursive: true });
const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  // Root (CI containers) cannot use chromium's sandbox.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  if (SCENARIO === 'lifecycle') await lifecycle(browser);
  else if (SCENARIO === 'auth') await auth(browser);
  else if (SCENARIO === 'switchover') await switchover(browser);
  else if (SCENARIO === 'stuck') await stuck(browser);
  else if (SCENARIO === 'import') await importYaml(browser);
  else if (SCENARIO === 'relay') await relayClients(browser);
  else if (SCENARIO === 'semisync') await semiSync(browser);
  else if (SCENARIO === 'stall') await stall(browser);
  else if (SCENARIO === 'startstall') await startStall(browser);
  else throw new Error(`unknown UI_SCENARIO ${SCENARIO}`);
} catch (e) {
  // What the browser showed when it failed, for the report.
  for (const [i, page] of openPages.entries()) {
    if (page.isClosed()) continue;
    console.log(`failed on ${page.url()}`);
    await shot(page, `failure-${i}`).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
console.log(`ui e2e: ok (${checks} checks)`);
