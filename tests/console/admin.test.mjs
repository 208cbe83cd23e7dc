// Browser tests of the console's administration: resetting, deleting and previewing a
// consumer group's offsets, the login guard's admin token, the top bar's height, and the
// generator's compression and time left. Against a real `freshet up` started with an admin
// token (./lib.mjs), driven the way a person would use the console.
//
// Some steps make the server refuse on purpose (a 409 for a group with members, a 401 for a
// wrong token): those refusals are taken out of the step's problems by `allow`, so anything
// else that fails still fails the step.
//
//   FRESHET_BIN=$PWD/target/debug/freshet node --test --test-concurrency=1 tests/console/admin.test.mjs

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ADMIN_TOKEN, DESKTOP, PHONE, apiCall, assertClean, eventually, number, open, page, problems,
  screenshot, useFreshet,
} from './lib.mjs';

/** The group the reset steps position (created by its first commit, as Kafka allows). */
const GROUP = 'console-reporting';
const TOPIC = 'device-events';

/**
 * Takes out of the step's problems the refusals it expects: each response with `status` whose
 * URL matches `url`, and the console's "Failed to load resource" note of that status.
 */
function allow(status, url) {
  for (let index = problems.length - 1; index >= 0; index -= 1) {
    const problem = problems[index];
    const response = problem.startsWith(`HTTP ${status} for `) && url.test(problem);
    const note = problem.startsWith('console error: Failed to load resource') && problem.includes(`status of ${status} `);
    if (response || note) problems.splice(index, 1);
  }
}

/** A group's committed offsets of a topic, by partition. */
async function committed(group, topic) {
  const { status, json } = await apiCall(`/api/v1/groups/${encodeURIComponent(group)}`);
  assert.equal(status, 200, JSON.stringify(json));
  return Object.fromEntries(json.offsets.filter((o) => o.topic === topic).map((o) => [o.partition, o.committed_offset]));
}

/** Moves a group's offsets through the API (the test's own setup, not the console). */
async function resetByApi(group, body) {
  const answer = await apiCall(`/api/v1/groups/${encodeURIComponent(group)}/reset-offsets`, { method: 'POST', body });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  return answer.json;
}

/**
 * Takes away the toasts of earlier steps, which would cover part of a screenshot. Not by
 * their buttons: behind an open modal dialog they cannot be clicked.
 */
async function dismissToasts() {
  await page.evaluate(() => document.querySelectorAll('#toasts .toast').forEach((toast) => toast.remove()));
}

/** A screenshot at the desktop size, then one at the phone size with `focus` in view. */
async function screenshots(name, focus) {
  await dismissToasts();
  await screenshot(name);
  await page.setViewportSize(PHONE);
  await focus.scrollIntoViewIfNeeded();
  await screenshot(`${name}-phone`);
  await page.setViewportSize(DESKTOP);
}

/** The height and top of the bar (the sidebar) now. */
function barBox() {
  return page.evaluate(() => {
    const box = document.querySelector('.sidebar').getBoundingClientRect();
    return { height: Math.round(box.height), top: Math.round(box.top) };
  });
}

/** Watches the responses to the paths given, for counting: `{ list, stop() }`. */
function recordResponses(...paths) {
  const list = [];
  const listener = (response) => {
    const url = new URL(response.url());
    if (paths.includes(url.pathname)) list.push({ path: url.pathname, status: response.status() });
  };
  page.on('response', listener);
  return { list, stop: () => page.off('response', listener) };
}

/** The reset dialog's rows, read: `[{ partition, now, next }]`. */
async function previewRows(dialog) {
  const rows = dialog.getByTestId('reset-preview').locator('tbody tr');
  const read = [];
  for (let index = 0; index < await rows.count(); index += 1) {
    const cells = rows.nth(index).locator('td');
    read.push({
      partition: number(await cells.nth(0).textContent()),
      now: (await cells.nth(1).textContent()).trim(),
      next: number(await cells.nth(2).textContent()),
    });
  }
  return read;
}

describe('web console administration', { timeout: 15 * 60_000 }, () => {
  useFreshet({ logName: 'freshet-admin.log' });

  it('keeps the top bar at its natural height on short and long pages, menu included', async () => {
    // Records make a topic's page long (its record browser), taller than either window.
    const job = await apiCall('/api/v1/generator/jobs', { method: 'POST', body: { num_devices: 50, num_messages: 600, pause_ms: 0, seed: 3 } });
    assert.equal(job.status, 201, JSON.stringify(job.json));
    await eventually(() => apiCall(`/api/v1/generator/jobs/${job.json.id}`), ({ json }) => json.state !== 'running', { what: 'the first job ended' });
    for (const size of [DESKTOP, PHONE]) {
      await page.setViewportSize(size);
      await open('#/no-such-page', 'Not found');
      const short = await barBox();
      await open(`#/topics/${TOPIC}`, TOPIC);
      await page.waitForFunction(() => document.documentElement.scrollHeight > window.innerHeight + 600, null, { timeout: 30_000, polling: 250 });
      const long = await barBox();
      assert.equal(long.height, short.height, `the bar is as tall on a long page as on a short one at ${size.width}px`);
      await page.evaluate(() => window.scrollTo(0, 600));
      const scrolled = await barBox();
      assert.equal(scrolled.top, 0, `the bar stays at the top when the page scrolls at ${size.width}px`);
      assert.equal(scrolled.height, short.height);
      if (size === DESKTOP) {
        assert.equal(short.height, size.height, 'the sidebar is the window’s height');
      } else {
        // The natural height: the logo row and its padding, nothing stretched.
        const natural = await page.evaluate(() => {
          const bar = document.querySelector('.sidebar');
          const style = getComputedStyle(bar);
          return Math.round(document.querySelector('.sidebar-top').getBoundingClientRect().height
            + parseFloat(style.paddingTop) + parseFloat(style.paddingBottom) + parseFloat(style.borderBottomWidth));
        });
        assert.equal(short.height, natural, 'the top bar is its content’s height');
        assert.ok(short.height < 80, `a slim top bar: ${short.height}px`);

        // The menu opens under the bar on a short page, and the bar is its natural height again
        // once it closes.
        await open('#/no-such-page', 'Not found');
        await page.locator('.nav-toggle').click();
        await page.locator('#nav a', { hasText: 'Login guard' }).waitFor({ state: 'visible' });
        const menu = await barBox();
        assert.ok(menu.height > short.height && menu.height <= size.height, `the open menu fits: ${menu.height}px`);
        await page.keyboard.press('Escape');
        await page.locator('#nav a', { hasText: 'Login guard' }).waitFor({ state: 'hidden' });
        assert.equal((await barBox()).height, short.height, 'closed again, the bar is its natural height');
        assert.equal(await page.locator('.nav-toggle').getAttribute('aria-expanded'), 'false');
      }
    }
    await page.setViewportSize(DESKTOP);
    assertClean();
  });

  it('starts a gzip job and shows its time left, counts and rate while it runs', async () => {
    await open('#/generator', 'Generator');
    const form = page.getByRole('form', { name: 'New generator job' });
    assert.equal(await form.getByLabel('Compression', { exact: true }).inputValue(), 'none', 'no compression unless chosen');
    await form.getByLabel('Devices', { exact: true }).fill('500');
    await form.getByLabel('Events', { exact: true }).fill('36000');
    await form.getByLabel('Pacing', { exact: true }).selectOption('rate');
    await form.getByLabel('Pace', { exact: true }).fill('3000');
    await form.getByLabel('Compression', { exact: true }).selectOption('gzip');
    await form.getByRole('button', { name: 'Start job' }).click();
    const toast = page.locator('.toast', { hasText: 'Started job #' });
    await toast.waitFor();
    const id = Number((await toast.textContent()).match(/job #(\d+)/)[1]);
    const job = (await apiCall(`/api/v1/generator/jobs/${id}`)).json;
    assert.equal(job.params.compression, 'gzip', JSON.stringify(job.params));

    const running = page.locator(`[data-testid="job-${id}"][data-state="running"]`);
    const eta = running.getByTestId('job-eta').locator('.figure-value');
    // Once the server knows the rate it sends `eta_secs`; the page words it.
    await page.waitForFunction((selector) => /^(about \d+ (s|min)|a few seconds)$/.test(document.querySelector(selector)?.textContent ?? ''),
      `[data-testid="job-${id}"][data-state="running"] [data-testid="job-eta"] .figure-value`, { timeout: 30_000, polling: 200 });
    assert.match(await eta.textContent(), /^(about \d+ (s|min)|a few seconds)$/);
    await page.waitForFunction((selector) => Number((document.querySelector(selector)?.textContent ?? '').replace(/\D/g, '')) >= 1000,
      `[data-testid="job-${id}"] [data-testid="job-sent"] .figure-value`, { timeout: 30_000, polling: 200 });
    assert.match(await running.getByTestId('job-sent').locator('.figure-value').textContent(), /^\d{1,3}(,\d{3})+$/, 'counts have thousands separators');
    assert.match(await running.getByTestId('job-rate').locator('.figure-value').textContent(), /^\d{1,3}(,\d{3})*\/s$/, 'a whole-number rate');
    assert.match(await running.locator('.job-head').textContent(), /36,000 events/);
    assert.match(await running.locator('.job-head').textContent(), /gzip/);
    await screenshots('admin-generator', running.getByTestId('job-eta'));

    const ended = await eventually(() => apiCall(`/api/v1/generator/jobs/${id}`), ({ json }) => json.state !== 'running', { what: `job ${id} ended` });
    assert.equal(ended.json.state, 'completed', JSON.stringify(ended.json));
    const finished = page.locator(`[data-testid="job-${id}"][data-state="completed"]`);
    await finished.waitFor();
    assert.equal(await finished.getByTestId('job-eta').count(), 0, 'no time left once it ended');
    assert.equal(number(await finished.getByTestId('job-sent').locator('.figure-value').textContent()), 36000);
    assertClean();
  });

  it('previews an offset reset, then commits it', async () => {
    // A group of no consumer, positioned at the start of every partition.
    await resetByApi(GROUP, { topic: TOPIC, to: 'earliest' });
    const before = await committed(GROUP, TOPIC);
    assert.deepEqual(Object.values(before), [0, 0, 0], JSON.stringify(before));

    await open(`#/groups/${GROUP}`, GROUP);
    const row = page.locator(`[data-testid="topics-of-group"] tbody tr[data-topic="${TOPIC}"]`);
    await row.getByRole('button', { name: 'Reset offsets' }).click();
    const dialog = page.getByTestId('reset-offsets');
    assert.equal(await dialog.getByLabel('Topic', { exact: true }).inputValue(), TOPIC);
    const confirm = dialog.getByRole('button', { name: 'Reset offsets' });
    assert.equal(await confirm.isDisabled(), true, 'nothing can be committed before a preview');

    // To a date and time long past: every partition's earliest offset (0), no change.
    await dialog.getByLabel('Reset to', { exact: true }).selectOption('time');
    await dialog.getByLabel('Date and time (local)', { exact: true }).fill('2001-02-03T04:05:06');
    await dialog.getByRole('button', { name: 'Preview' }).click();
    await dialog.getByTestId('reset-preview').waitFor();
    assert.deepEqual((await previewRows(dialog)).map((r) => r.next), [0, 0, 0]);

    // To the latest offsets: the preview shows each partition's end, and commits nothing.
    await dialog.getByLabel('Reset to', { exact: true }).selectOption('latest');
    await dialog.locator('.reset-result', { hasText: 'preview again' }).waitFor();
    assert.equal(await confirm.isDisabled(), true, 'a changed setting takes the preview back');
    await dialog.getByRole('button', { name: 'Preview' }).click();
    await dialog.getByTestId('reset-preview').waitFor();
    const preview = await previewRows(dialog);
    assert.deepEqual(preview.map((r) => r.partition), [0, 1, 2]);
    assert.deepEqual(preview.map((r) => r.now), ['0', '0', '0']);
    // Nothing writes to the topic meanwhile: the latest offsets are the topic's ends.
    const latest = Object.fromEntries((await apiCall(`/api/v1/topics/${TOPIC}`)).json.partitions.map((p) => [p.partition, p.latest_offset]));
    assert.deepEqual(Object.fromEntries(preview.map((r) => [r.partition, r.next])), latest);
    assert.ok(preview.every((r) => r.next > 0), 'every partition moves forward');
    assert.deepEqual(await committed(GROUP, TOPIC), before, 'a preview commits nothing');
    await screenshots('admin-groups-reset-preview', dialog.getByTestId('reset-preview'));

    await confirm.click();
    await page.locator('.toast', { hasText: `Reset ${GROUP} on ${TOPIC}: 3 partitions moved` }).waitFor();
    await dialog.waitFor({ state: 'detached' });
    const after = await committed(GROUP, TOPIC);
    assert.deepEqual(after, Object.fromEntries(preview.map((r) => [r.partition, r.next])), 'the committed offsets are the previewed ones');
    // The page shows them on its next refresh.
    const offsets = page.locator('[data-testid="offsets-table"] tbody tr');
    await page.waitForFunction(([want]) => {
      const cells = [...document.querySelectorAll('[data-testid="offsets-table"] tbody tr td:nth-child(3)')];
      return cells.length === 3 && cells.every((cell, index) => Number(cell.textContent.replace(/\D/g, '')) === want[index]);
    }, [preview.map((r) => r.next)], { timeout: 15_000, polling: 250 });
    assert.equal(await offsets.count(), 3);

    // A shift back on one partition: only that partition moves.
    await row.getByRole('button', { name: 'Reset offsets' }).click();
    await dialog.getByLabel('Partitions', { exact: true }).fill('1');
    await dialog.getByLabel('Reset to', { exact: true }).selectOption('shift');
    await dialog.getByLabel('Shift by', { exact: true }).fill('-10');
    await dialog.getByLabel('Shift by', { exact: true }).press('Enter');
    await dialog.getByTestId('reset-preview').waitFor();
    const shifted = await previewRows(dialog);
    assert.deepEqual(shifted.map((r) => [r.partition, r.next]), [[1, after[1] - 10]]);
    await confirm.click();
    await page.locator('.toast', { hasText: `Reset ${GROUP} on ${TOPIC}: 1 partition moved` }).waitFor();
    assert.deepEqual(await committed(GROUP, TOPIC), { ...after, 1: after[1] - 10 });
    assertClean();
  });

  it('tells to stop the consumers when the group has members (the tracker’s group)', async () => {
    const group = (await apiCall('/api/v1/unique-ips')).json.group;
    assert.equal(group, 'freshet-tracker');
    const tracker = (await apiCall(`/api/v1/groups/${group}`)).json;
    assert.ok(tracker.members.length > 0, JSON.stringify(tracker));
    const before = await committed(group, TOPIC);

    await open(`#/groups/${group}`, group);
    await page.locator('[data-testid="members-table"] tbody tr').first().waitFor();
    await page.getByRole('button', { name: 'Reset offsets…' }).click();
    const dialog = page.getByTestId('reset-offsets');
    await dialog.locator('.callout.warn', { hasText: 'stop its consumers first' }).waitFor();
    await dialog.getByLabel('Topic', { exact: true }).fill(TOPIC);
    await dialog.getByRole('button', { name: 'Preview' }).click();
    const refused = dialog.getByTestId('reset-refused');
    await refused.waitFor();
    assert.match(await refused.textContent(), /Stop the consumers first/);
    assert.match(await refused.textContent(), /active members/);
    assert.equal(await dialog.getByTestId('reset-preview').count(), 0, 'no preview table');
    assert.equal(await dialog.getByRole('button', { name: 'Reset offsets' }).isDisabled(), true);
    await dismissToasts();
    await screenshot('admin-groups-reset-refused');
    await dialog.getByRole('button', { name: 'Cancel' }).click();

    // Deleting the group is refused the same way, and said the same way.
    await page.getByRole('button', { name: 'Delete group' }).click();
    const confirm = page.getByTestId('confirm-delete-group');
    await confirm.getByRole('button', { name: 'Delete group' }).click();
    await confirm.locator('.dialog-error', { hasText: 'Stop the consumers first' }).waitFor();
    await confirm.getByRole('button', { name: 'Cancel' }).click();

    assert.deepEqual(Object.keys(await committed(group, TOPIC)), Object.keys(before), 'the group still has its offsets');
    assert.equal((await apiCall(`/api/v1/groups/${group}`)).status, 200, 'and still exists');
    allow(409, /\/api\/v1\/groups\/freshet-tracker(\/reset-offsets)?$/);
    assertClean();
  });

  it('deletes a group’s offsets of one topic, then the group', async () => {
    const group = 'console-scratch-group';
    const extra = 'console-admin-extra';
    const created = await apiCall('/api/v1/topics', { method: 'POST', body: { name: extra, partitions: 2, configs: {} } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    await resetByApi(group, { topic: TOPIC, to: 'latest' });
    await resetByApi(group, { topic: extra, to: 'earliest' });

    await open(`#/groups/${group}`, group);
    const extraRow = page.locator(`[data-testid="topics-of-group"] tbody tr[data-topic="${extra}"]`);
    await extraRow.getByRole('button', { name: `Delete the offsets of ${group} in ${extra}` }).click();
    const confirm = page.getByTestId('confirm-delete-offsets');
    await confirm.getByRole('button', { name: 'Delete offsets' }).click();
    await page.locator('.toast', { hasText: `Deleted the offsets of ${group} in ${extra}` }).waitFor();
    await extraRow.waitFor({ state: 'detached' });
    const left = (await apiCall(`/api/v1/groups/${group}`)).json;
    assert.deepEqual([...new Set(left.offsets.map((o) => o.topic))], [TOPIC], JSON.stringify(left.offsets));

    await page.getByRole('button', { name: 'Delete group' }).click();
    await page.getByTestId('confirm-delete-group').getByRole('button', { name: 'Delete group' }).click();
    await page.locator('.toast', { hasText: `Deleted group ${group}` }).waitFor();
    await page.waitForURL(/#\/groups$/);
    await page.locator('[data-testid="groups-table"] tbody tr', { hasText: GROUP }).waitFor();
    assert.equal(await page.locator('[data-testid="groups-table"] tbody tr', { hasText: group }).count(), 0);
    assert.equal((await apiCall(`/api/v1/groups/${group}`)).status, 404);
    // A refresh of the group's page may have been under way as it was deleted.
    allow(404, new RegExp(`/api/v1/groups/${group}$`));
    assertClean();
  });

  it('checks the admin token before keeping it, and stops polling on a refused one', async () => {
    await open('#/guard', 'Login guard');
    const form = page.getByRole('form', { name: 'Admin token' });
    const status = page.getByTestId('token-status');
    await status.getByText('no token').waitFor();

    // A wrong token: an error, no green badge, nothing kept, and the page goes on with the
    // public list without sending the token again.
    let seen = recordResponses('/api/v1/blocked', '/blocked');
    await form.getByRole('textbox', { name: 'Admin token' }).fill('not-the-admin-token');
    await form.getByRole('button', { name: 'Use token' }).click();
    await form.locator('.token-error', { hasText: 'The server refused this token' }).waitFor();
    await status.getByText('token refused').waitFor();
    assert.equal(await status.getByText('token set').count(), 0);
    assert.equal(await page.evaluate(() => window.sessionStorage.getItem('freshet.adminToken')), null, 'a refused token is not kept');
    await screenshots('admin-guard-token-error', form);
    await page.waitForTimeout(5000);
    seen.stop();
    assert.deepEqual(seen.list.filter((r) => r.path === '/api/v1/blocked'), [{ path: '/api/v1/blocked', status: 401 }], 'one check, no polling with it');
    assert.ok(seen.list.filter((r) => r.path === '/blocked').length >= 2, 'the public list is still refreshed');
    allow(401, /\/api\/v1\/blocked$/);
    assertClean();

    // A kept token the server no longer takes: one 401, then the page stops refreshing.
    await page.evaluate(() => window.sessionStorage.setItem('freshet.adminToken', 'a-stale-token'));
    seen = recordResponses('/api/v1/blocked', '/blocked');
    await page.reload();
    await page.locator('.page-head h1', { hasText: 'Login guard' }).waitFor();
    await form.locator('.token-error', { hasText: 'refused the token this tab kept' }).waitFor();
    await page.locator('.live', { hasText: 'Paused' }).waitFor();
    await page.waitForTimeout(5000);
    seen.stop();
    assert.deepEqual(seen.list, [{ path: '/api/v1/blocked', status: 401 }], 'one refused request, then none');
    assert.equal(await page.evaluate(() => window.sessionStorage.getItem('freshet.adminToken')), null, 'the refused token is forgotten');
    allow(401, /\/api\/v1\/blocked$/);
    assertClean();

    // The right token: checked, kept, and the page refreshes again with the details.
    seen = recordResponses('/api/v1/blocked');
    await form.getByRole('textbox', { name: 'Admin token' }).fill(ADMIN_TOKEN);
    await form.getByRole('button', { name: 'Use token' }).click();
    await status.getByText('token set for this tab').waitFor();
    assert.equal(await form.locator('.token-error').isHidden(), true);
    await page.locator('.stat', { hasText: 'Failed logins' }).locator('.stat-value', { hasText: /^\d+$/ }).waitFor();
    await eventually(async () => seen.list.length, (count) => count >= 3, { what: 'polling again', timeout: 15_000 });
    seen.stop();
    assert.ok(seen.list.every((r) => r.status === 200), JSON.stringify(seen.list));
    assert.equal(await page.locator('.live', { hasText: 'Paused' }).count(), 0);
    assertClean();
  });

  it('words every block state: permanent, timed, ended and lifted', async () => {
    // A real permanent block (freshet up blocks until an admin lifts it by default).
    const user = 'console-mallory';
    const registered = await apiCall('/api/v1/register', { method: 'POST', body: { user, pass: 'correct1horse' } });
    assert.equal(registered.status, 201, JSON.stringify(registered.json));
    for (let attempt = 0; attempt < 5; attempt += 1) {
      await apiCall('/login', { method: 'POST', body: { user, pass: 'wrong1guess' } });
    }
    await eventually(() => apiCall('/api/v1/blocked', { token: ADMIN_TOKEN }), ({ json }) => json.blocked.some((b) => b.user === user),
      { what: `${user} blocked`, timeout: 60_000 });

    await open('#/guard', 'Login guard');
    const row = page.locator('[data-testid="blocked-table"] tbody tr', { hasText: user });
    await row.getByRole('button', { name: 'Unblock' }).waitFor();
    const ends = row.locator('td').nth(2);
    assert.match(await ends.textContent(), /^permanent\s*until an admin lifts it$/);
    assert.doesNotMatch(await page.getByTestId('blocked').textContent(), /lifted/, 'a holding block is not called lifted');
    await row.getByRole('button', { name: 'Unblock' }).click();
    await page.getByTestId('confirm-unblock').getByRole('button', { name: 'Unblock' }).click();
    await page.locator('.toast', { hasText: `Unblocked ${user}` }).waitFor();
    // Until the guard's follower has read the lift the row may stay: then it says lifted.
    await page.waitForFunction((name) => {
      const found = [...document.querySelectorAll('[data-testid="blocked-table"] tbody tr')].find((tr) => tr.textContent.includes(name));
      return !found || /lifted/.test(found.textContent);
    }, user, { timeout: 15_000, polling: 100 });
    await row.waitFor({ state: 'detached' });

    // Timed blocks depend on --block-for-secs: the states are shown from a stubbed answer.
    const now = Date.now();
    const block = (name, until) => ({ user: name, since: '', since_ms: now - 60_000, until: null, until_ms: until, failures: 5, last_failure_ms: now - 60_000 });
    await page.route('**/api/v1/blocked', (route) => route.fulfill({
      status: 200,
      contentType: 'application/json',
      body: JSON.stringify({ blocked: [block('ann-timed', now + 3_600_000), block('bob-ended', now - 1000), block('cy-permanent', null)] }),
    }));
    try {
      await page.reload();
      await page.locator('.page-head h1', { hasText: 'Login guard' }).waitFor();
      const cell = (name) => page.locator('[data-testid="blocked-table"] tbody tr', { hasText: name }).locator('td').nth(2);
      await cell('ann-timed').waitFor();
      // The date comes first when the end is on another day (an hour from 23:00 is).
      assert.match(await cell('ann-timed').textContent(), /^timed\s*at (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d/);
      assert.match(await cell('bob-ended').textContent(), /^ended\s*at /);
      assert.match(await cell('cy-permanent').textContent(), /^permanent\s*until an admin lifts it$/);
      assert.equal(number(await page.getByTestId('blocked-count').locator('.stat-value').textContent()), 2, 'the ended block does not count');
    } finally {
      await page.unroute('**/api/v1/blocked');
    }
    assertClean();
  });
});
