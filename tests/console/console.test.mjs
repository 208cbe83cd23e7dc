// Browser tests of the web console: a real `freshet up` (its own data directory, ports
// picked by the system) and real headless Chromium driven by playwright-core. Each step
// uses the console the way a person would (clicks, forms, dialogs) and checks what it shows
// against the API. Screenshots of every page go to $CONSOLE_ARTIFACTS
// (default target/console-screenshots at the repository root).
//
// Every step also checks that the page logged no error, that no request failed, and that
// no request went anywhere but the freshet under test on 127.0.0.1.
//
//   FRESHET_BIN=target/release/freshet npm test --prefix tests/console

import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import {
  ADMIN_TOKEN, ARTIFACTS, DESKTOP, FRESHET_BIN, PHONE, STEP_MS,
  apiCall, assertClean, baseUrl, context, eventually, launchBrowser, number, open, page,
  removeScratch, resetProblems, screenshot, startFreshet, stopFreshet, waitForNumber,
} from './lib.mjs';

// The server, the browser and the helpers live in ./lib.mjs, shared with the other files.

/** The generator job the tests start: long enough for the throughput chart to draw. */
const JOB = { devices: 1500, events: 20000, rate: 2500, seed: 42 };

describe('web console', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    await startFreshet();
    assert.match(baseUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    await launchBrowser();
  });

  // A failed step leaves its own problems behind, not the next step's.
  beforeEach(resetProblems);

  after(async () => {
    await context?.close();
    await stopFreshet();
    await removeScratch();
  });

  it('serves the console with its navigation, and every page loads cleanly', async () => {
    await page.goto(`${baseUrl}/`);
    await page.locator('.page-head h1', { hasText: 'Overview' }).waitFor();
    await page.locator('#connection[data-state="ok"]').waitFor();
    const pages = [
      ['Topics', 'Topics'],
      ['Consumer groups', 'Consumer groups'],
      ['Generator', 'Generator'],
      ['Tracker', 'Tracker'],
      ['Login guard', 'Login guard'],
      ['Overview', 'Overview'],
    ];
    for (const [link, title] of pages) {
      await page.locator('#nav a', { hasText: link }).click();
      await page.locator('.page-head h1', { hasText: title }).waitFor();
      await page.locator(`#nav a[aria-current="page"]`, { hasText: link }).waitFor();
    }
    for (const link of ['API docs', 'Metrics']) {
      const href = await page.locator('#nav a', { hasText: link }).getAttribute('href');
      assert.ok(href.startsWith('/'), `${link} links to this server: ${href}`);
    }
    // Two polling rounds on the overview (each reads the counts), then the page must still
    // be error-free.
    for (let round = 0; round < 2; round++) {
      await page.waitForResponse((response) => new URL(response.url()).pathname === '/api/v1/unique-ips');
    }
    assertClean();
  });

  it('creates a topic, produces a record and browses it', async () => {
    await open('#/topics', 'Topics');
    await page.getByRole('button', { name: 'New topic' }).click();
    const dialog = page.getByTestId('create-topic');
    await dialog.getByLabel('Name', { exact: true }).fill('console-orders');
    await dialog.getByLabel('Partitions', { exact: true }).fill('2');
    await dialog.getByLabel('Configuration', { exact: true }).fill('retention.ms=3600000');
    await dialog.getByRole('button', { name: 'Create topic' }).click();
    await page.waitForURL(/#\/topics\/console-orders$/);
    await page.locator('.page-head h1', { hasText: 'console-orders' }).waitFor();
    await page.locator('[data-testid="partitions-table"] tbody tr').nth(1).waitFor();
    assert.equal(await page.locator('[data-testid="partitions-table"] tbody tr').count(), 2);
    const described = await apiCall('/api/v1/topics/console-orders');
    assert.equal(described.status, 200);
    assert.equal(described.json.partitions.length, 2);
    assert.equal(String(described.json.configs['retention.ms']), '3600000');

    await page.getByRole('button', { name: 'Produce record' }).click();
    const produce = page.getByTestId('produce');
    await produce.getByLabel('Key', { exact: true }).fill('order-1');
    await produce.getByLabel('Value', { exact: true }).fill('{"item": "kettle", "qty": 2}');
    await produce.getByLabel('Headers', { exact: true }).fill('source=playwright');
    await produce.getByRole('button', { name: 'Produce' }).click();
    const toast = page.locator('.toast', { hasText: 'Produced to partition' });
    await toast.waitFor();
    const [, partition, offset] = (await toast.textContent()).match(/partition (\d+) at offset (\d+)/);
    assert.equal(offset, '0', 'the first record of a new topic');

    const row = page.locator('[data-testid="records-table"] tbody tr', { hasText: 'order-1' });
    await row.waitFor();
    assert.match(await row.textContent(), /kettle/);
    assert.match(await row.textContent(), /source=playwright/);
    assert.equal((await row.locator('td').first().textContent()).trim(), '0');
    const read = await apiCall(`/api/v1/topics/console-orders/partitions/${partition}/records?offset=0&limit=10`);
    assert.equal(read.json.records.length, 1);
    assert.equal(read.json.records[0].key, 'order-1');
    assert.deepEqual(JSON.parse(read.json.records[0].value), { item: 'kettle', qty: 2 });
    await screenshot('topic');

    await open('#/topics', 'Topics');
    const listed = page.locator('[data-testid="topics-table"] tbody tr', { hasText: 'console-orders' });
    await listed.waitFor();
    await screenshot('topics');
    assertClean();
  });

  it('deletes a topic after confirmation', async () => {
    const created = await apiCall('/api/v1/topics', { method: 'POST', body: { name: 'console-scratch', partitions: 1, configs: {} } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    await open('#/topics', 'Topics');
    const row = page.locator('[data-testid="topics-table"] tbody tr', { hasText: 'console-scratch' });
    await row.getByRole('button', { name: 'Delete' }).click();
    const dialog = page.getByTestId('confirm-delete-topic');
    await dialog.getByRole('button', { name: 'Delete topic' }).click();
    await page.locator('.toast', { hasText: 'Deleted topic console-scratch' }).waitFor();
    await row.waitFor({ state: 'detached' });
    await eventually(() => apiCall('/api/v1/topics'), ({ json }) => !json.topics.some((t) => t.name === 'console-scratch'),
      { what: 'console-scratch gone from the topic list' });
    assertClean();
  });

  it('starts a generator job and sees the unique-device count rise to its distinct count', async () => {
    await open('#/generator', 'Generator');
    const form = page.getByRole('form', { name: 'New generator job' });
    await form.getByLabel('Devices', { exact: true }).fill(String(JOB.devices));
    await form.getByLabel('Events', { exact: true }).fill(String(JOB.events));
    await form.getByLabel('Pacing', { exact: true }).selectOption('rate');
    await form.getByLabel('Pace', { exact: true }).fill(String(JOB.rate));
    await form.getByLabel('Seed', { exact: true }).fill(String(JOB.seed));
    await form.getByRole('button', { name: 'Start job' }).click();
    await page.locator('.toast', { hasText: 'Started job #1' }).waitFor();
    await page.locator('[data-testid="job-1"]').waitFor();

    // Watch the overview while the job runs: the charts fill in as it sends.
    await open('#/', 'Overview');
    await page.locator('.job-line').first().waitFor();
    await eventually(() => apiCall('/api/v1/generator/jobs/1'), ({ json }) => json.progress >= 0.5,
      { what: 'job 1 half done' });
    await page.waitForTimeout(1000);
    await screenshot('overview-running');
    const job = await eventually(() => apiCall('/api/v1/generator/jobs/1'), ({ json }) => json.state !== 'running',
      { what: 'job 1 finished' });
    assert.equal(job.json.state, 'completed', JSON.stringify(job.json));
    assert.equal(job.json.summary.sent, JOB.events);
    const distinct = job.json.summary.distinct_ips;
    assert.ok(distinct > 1000 && distinct <= JOB.devices, `distinct ${distinct}`);

    await waitForNumber('[data-testid="unique-devices"] .stat-value', distinct);
    const unique = await apiCall('/api/v1/unique-ips');
    assert.equal(unique.json.global_count, distinct);
    assert.ok(await page.locator('.chart .series.s0 .line').count() >= 2, 'the live charts drew lines');
    // Let the throughput chart show the run ending, then capture the overview.
    await page.waitForTimeout(4500);
    await screenshot('overview');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot('overview-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(500);
    await screenshot('overview-phone');
    await page.locator('.nav-toggle').click();
    await page.locator('#nav a', { hasText: 'Topics' }).waitFor({ state: 'visible' });
    await screenshot('overview-phone-menu');
    await page.locator('#nav a', { hasText: 'Generator' }).click();
    await page.locator('.page-head h1', { hasText: 'Generator' }).waitFor();
    await page.setViewportSize(DESKTOP);

    const finished = page.locator('[data-testid="job-1"][data-state="completed"]');
    await finished.waitFor();
    assert.equal(number(await finished.getByTestId('job-distinct').locator('.figure-value').textContent()), distinct);
    assert.equal(number(await finished.getByTestId('job-sent').locator('.figure-value').textContent()), JOB.events);
    await screenshot('generator');
    assertClean();
  });

  it('shows the tracker node and its partitions', async () => {
    const unique = (await apiCall('/api/v1/unique-ips')).json;
    await open('#/tracker', 'Tracker');
    const rows = page.locator('[data-testid="tracker-partitions"] tbody tr');
    await rows.nth(2).waitFor();
    assert.equal(await rows.count(), unique.partitions_total);
    await page.locator('[data-testid="tracker-nodes"] li', { hasText: unique.node_id }).waitFor();
    await waitForNumber('[data-testid="global-count"] .stat-value', unique.global_count);
    const partitions = (await apiCall('/api/v1/tracker/partitions')).json.partitions;
    for (const partition of partitions) {
      const cells = rows.nth(partitions.indexOf(partition)).locator('td');
      assert.equal((await cells.nth(0).textContent()).trim(), String(partition.partition));
      assert.equal(number(await cells.nth(2).textContent()), partition.distinct_ips);
    }
    // The job's events fall in the current minute: its bar is drawn.
    await page.locator('.chart .bar:not([height="0"])').first().waitFor();
    await screenshot('tracker');
    assertClean();
  });

  it('lists the tracker’s consumer group with its lag', async () => {
    const { group } = (await apiCall('/api/v1/unique-ips')).json;
    await open('#/groups', 'Consumer groups');
    const row = page.locator('[data-testid="groups-table"] tbody tr', { hasText: group });
    await row.waitFor();
    const lagText = await row.locator('.lag-value').textContent();
    assert.match(lagText.trim(), /^\d[\d,.\s]*$/, `a lag figure: ${lagText}`);
    await screenshot('groups');

    await row.getByRole('link', { name: group }).click();
    await page.locator('.page-head h1', { hasText: group }).waitFor();
    const offsets = page.locator('[data-testid="offsets-table"] tbody tr', { hasText: 'device-events' });
    await offsets.first().waitFor();
    const described = (await apiCall(`/api/v1/groups/${encodeURIComponent(group)}`)).json;
    assert.ok(described.offsets.some((o) => o.topic === 'device-events'), JSON.stringify(described));
    await page.locator('[data-testid="group-lag"] .stat-value').waitFor();
    await page.locator('[data-testid="members-table"] tbody tr').first().waitFor();
    await screenshot('group');
    assertClean();
  });

  it('lists a user blocked after five failed logins and unblocks it with the admin token', async () => {
    const user = 'mallory';
    const password = 'correct1horse';
    const registered = await apiCall('/api/v1/register', { method: 'POST', body: { user, pass: password } });
    assert.equal(registered.status, 201, JSON.stringify(registered.json));
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const login = await apiCall('/login', { method: 'POST', body: { user, pass: 'wrong1guess' } });
      assert.ok([401, 423].includes(login.status), JSON.stringify(login));
    }

    await open('#/guard', 'Login guard');
    // Without the token: the public list of names.
    await page.locator('[data-testid="blocked-table"] tbody tr', { hasText: user }).waitFor({ timeout: STEP_MS });
    await page.getByRole('form', { name: 'Admin token' }).getByLabel('Admin token', { exact: true }).fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Use token' }).click();
    const row = page.locator('[data-testid="blocked-table"] tbody tr', { hasText: user });
    const unblock = row.getByRole('button', { name: 'Unblock' });
    await unblock.waitFor();
    assert.ok(number(await row.locator('td').nth(3).textContent()) >= 5, 'the failures are counted');
    await screenshot('guard');

    await unblock.click();
    await page.getByTestId('confirm-unblock').getByRole('button', { name: 'Unblock' }).click();
    await page.locator('.toast', { hasText: `Unblocked ${user}` }).waitFor();
    await row.waitFor({ state: 'detached' });
    const blocked = await apiCall('/api/v1/blocked', { token: ADMIN_TOKEN });
    assert.ok(!blocked.json.blocked.some((block) => block.user === user), JSON.stringify(blocked.json));
    const login = await eventually(() => apiCall('/login', { method: 'POST', body: { user, pass: password } }),
      ({ status }) => status === 200, { what: `${user} can log in again`, timeout: 30_000 });
    assert.deepEqual(login.json, { success: true });
    assertClean();
  });
});

// A server with a user: the console asks for a sign-in before it shows any data, keeps the
// token for the tab, and signs out. (`freshet users add` before `freshet up` starts.)
describe('web console with sign-in', { timeout: 10 * 60_000 }, () => {
  const USER = 'alice';
  const PASSWORD = 'console-alice-secret';

  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    await startFreshet({
      logName: 'freshet-sign-in.log',
      prepare: (dataDir) => promisify(execFile)(FRESHET_BIN, ['users', 'add', USER, '--data-dir', dataDir], {
        env: { ...process.env, FRESHET_USER_PASSWORD: PASSWORD },
      }),
    });
    await launchBrowser();
  });

  beforeEach(resetProblems);

  after(async () => {
    await context?.close();
    await stopFreshet();
    await removeScratch();
  });

  it('asks for credentials without the console, and Basic works', async () => {
    const refused = await apiCall('/api/v1/topics');
    assert.equal(refused.status, 401, JSON.stringify(refused.json));
    assert.match(refused.json.error, /^sign in: /);
    assert.match(refused.headers.get('www-authenticate'), /^Basic realm="freshet"/);
    const basic = Buffer.from(`${USER}:${PASSWORD}`).toString('base64');
    const response = await fetch(`${baseUrl}/api/v1/auth/whoami`, { headers: { authorization: `Basic ${basic}` } });
    assert.equal(response.status, 200);
    assert.equal((await response.json()).principal, `User:${USER}`);
    assert.equal((await apiCall('/healthz')).status, 200, 'probes need no sign-in');
  });

  it('shows the sign-in form, refuses a wrong password, signs in and shows the topics', async () => {
    await page.goto(`${baseUrl}/#/topics`);
    const form = page.getByRole('form', { name: 'Sign in' });
    await form.waitFor();
    assert.equal(await page.locator('#session').isHidden(), true, 'nobody is signed in yet');
    await screenshot('sign-in');

    await form.getByLabel('User name', { exact: true }).fill(USER);
    await form.getByLabel('Password', { exact: true }).fill('not-the-password');
    await form.getByRole('button', { name: 'Sign in' }).click();
    await form.locator('.form-error', { hasText: 'wrong user name or password' }).waitFor();

    await form.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await form.getByRole('button', { name: 'Sign in' }).click();
    await form.waitFor({ state: 'detached' });
    await page.locator('.page-head h1', { hasText: 'Topics' }).waitFor();
    await page.getByTestId('topics-table').getByRole('link', { name: 'device-events', exact: true }).waitFor({ timeout: STEP_MS });
    await page.locator('#session .session-user', { hasText: USER }).waitFor();
    const token = await page.evaluate(() => JSON.parse(window.sessionStorage.getItem('freshet.session')).token);
    assert.equal((await apiCall('/api/v1/topics', { token })).status, 200, 'the console holds a working token');
    await screenshot('signed-in-topics');

    // From here on, every request the console sends must succeed.
    resetProblems();
    await page.waitForResponse((response) => new URL(response.url()).pathname === '/api/v1/topics');
    assertClean();
  });

  it('stays signed in across a reload and signs out', async () => {
    await page.reload();
    await page.locator('.page-head h1', { hasText: 'Topics' }).waitFor();
    await page.getByTestId('topics-table').getByRole('link', { name: 'device-events', exact: true }).waitFor();
    assert.equal(await page.getByRole('form', { name: 'Sign in' }).count(), 0);
    // Without an authorizer a signed-in user may use the guard's admin routes: the details
    // show without the admin token.
    await open('#/guard', 'Login guard');
    await page.locator('.stat', { hasText: 'Failed logins' }).locator('.stat-value', { hasText: /^\d+$/ }).waitFor();
    assertClean();

    await page.locator('#session').getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('form', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => window.sessionStorage.getItem('freshet.session')), null);
  });
});
