// Browser tests of a topic's page: its records across every partition (search, seek by time,
// load more, live tail, exports, timestamps, how keys and values read, cards on a phone),
// producing a record byte for byte, and the topic's administration (configs, partitions,
// purge, managed topics). Test data goes in through the REST API; what the console shows is
// checked against the API. Screenshots go to the artifacts (see ./lib.mjs).
//
//   FRESHET_BIN=target/debug/freshet node --test --test-concurrency=1 tests/console/topics.test.mjs

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import {
  DESKTOP, FRESHET_BIN, PHONE, apiCall, assertClean, baseUrl, eventually, open, page, problems, resetProblems, screenshot, useFreshet,
} from './lib.mjs';

const TOPIC = 'shop-orders';
const NOISE = 25;
/** The one record of partition 2: the newest, found by its key, value or header. */
const NEEDLE = {
  key: 'needle-7f3a9c',
  value: JSON.stringify({
    ip: '203.0.113.254',
    ts: '2024-09-18T14:14:10.124Z',
    error_code: 0,
    note: 'needle-value: a value long enough to be summarised by its top-level fields',
    tags: ['a', 'b'],
  }),
  headers: { trace: 'needle-trace-1', source: 'test' },
  partition: 2,
};

const rows = () => page.locator('[data-testid="records-table"] tbody tr.record');
const queryForm = () => page.getByRole('form', { name: 'Search records' });

/** The keys of the records shown, top to bottom. */
function shownKeys() {
  return page.$$eval('[data-testid="records-table"] tbody tr.record .rec-key', (cells) => cells.map((cell) => cell.textContent.trim()));
}

async function produce(topic, records, token) {
  const answer = await apiCall(`/api/v1/topics/${topic}/records`, { method: 'POST', body: { records }, token });
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  return answer.json.offsets;
}

async function search(fields) {
  const form = queryForm();
  for (const [label, value] of Object.entries(fields)) {
    const control = form.getByLabel(label, { exact: true });
    if (await control.evaluate((element) => element.tagName === 'SELECT')) await control.selectOption(value);
    else await control.fill(value);
  }
  await form.getByRole('button', { name: 'Search', exact: true }).click();
}

/** Records the API finds with a query string, newest first, all pages. */
async function apiRecords(query) {
  const answer = await apiCall(`/api/v1/topics/${TOPIC}/records?limit=500&${query}`);
  assert.equal(answer.status, 200, JSON.stringify(answer.json));
  return answer.json.records;
}

/** A live tail's stream is ended by the page (toggle, leaving): its aborted request is no problem. */
function forgetClosedStreams() {
  for (let i = problems.length - 1; i >= 0; i -= 1) {
    if (/\/records\/stream\b.*ERR_ABORTED/.test(problems[i])) problems.splice(i, 1);
  }
}

/** The fields of RFC 4180 CSV text (quoted fields may hold commas, quotes and line breaks). */
function parseCsv(text) {
  const records = [];
  let record = [];
  let fieldText = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        fieldText += '"';
        i += 1;
      } else if (c === '"') {
        quoted = false;
      } else {
        fieldText += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      record.push(fieldText);
      fieldText = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(fieldText);
      records.push(record);
      record = [];
      fieldText = '';
      i += 1;
    } else {
      fieldText += c;
    }
  }
  if (fieldText !== '' || record.length > 0) records.push([...record, fieldText]);
  return records;
}

/** A screenshot without the toasts earlier steps left in the corner. */
async function shot(name) {
  await page.evaluate(() => document.querySelectorAll('#toasts .toast').forEach((toast) => toast.remove()));
  await screenshot(name);
}

async function noHorizontalScroll() {
  const sizes = await page.evaluate(() => ({
    scrollWidth: document.scrollingElement.scrollWidth,
    clientWidth: document.scrollingElement.clientWidth,
  }));
  assert.ok(sizes.scrollWidth <= sizes.clientWidth, `the page scrolls sideways: ${JSON.stringify(sizes)}`);
}

describe('topic page', { timeout: 15 * 60_000 }, () => {
  useFreshet({ logName: 'freshet-topics.log' });
  /** Unix ms between the noise and the newer records: the time the seek test starts at. */
  let boundary;

  before(async () => {
    const created = await apiCall('/api/v1/topics', { method: 'POST', body: { name: TOPIC, partitions: 3, configs: {} } });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    // Partition 0 stays empty, partition 1 holds the older records, partition 2 only the needle.
    await produce(TOPIC, Array.from({ length: NOISE }, (_, i) => ({
      key: `order-${i}`,
      value: { order: i, item: 'kettle' },
      headers: { source: 'noise' },
      partition: 1,
    })));
    await new Promise((resolve) => setTimeout(resolve, 50));
    boundary = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await produce(TOPIC, [{ key: '2001:db8:85a3::8a2e:370:7334', value: 'late plain text', partition: 1 }]);
    // A later millisecond than every other record: the newest, whatever the tie rules.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await produce(TOPIC, [NEEDLE]);
  });

  it('opens at the newest records of every partition, each with its partition and offset', async () => {
    await open(`#/topics/${TOPIC}`, TOPIC);
    const needle = rows().filter({ hasText: NEEDLE.key });
    await needle.waitFor();
    assert.equal(await needle.getAttribute('data-partition'), '2');
    assert.equal((await needle.locator('.rec-partition').textContent()).trim(), '2');
    assert.equal((await needle.locator('.rec-offset').textContent()).trim(), '0');
    // Newest first: the needle, written last, is on top.
    assert.equal((await shownKeys())[0], NEEDLE.key);
    assert.equal(await rows().count(), NOISE + 2);
    assert.equal(await page.getByText(/is empty/).count(), 0);
    await page.locator('[data-testid="record-status"]', { hasText: 'newest first' }).waitFor();
    await shot('topic-records');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('topic-records-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    assertClean();
  });

  it('shows timestamps to the millisecond with their zone, in UTC or local time as chosen', async () => {
    const time = rows().filter({ hasText: NEEDLE.key }).locator('.rec-time time');
    const utc = (await time.textContent()).trim();
    assert.match(utc, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC$/);
    const datetime = await time.getAttribute('datetime');
    assert.equal(Date.parse(utc.replace(' ', 'T').replace(' UTC', 'Z')), Date.parse(datetime));

    await page.getByRole('group', { name: 'Time zone' }).getByRole('button', { name: 'Local' }).click();
    await eventually(async () => (await time.textContent()).trim(), (text) => text !== utc, { what: 'local time shown' });
    const local = (await time.textContent()).trim();
    assert.match(local, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} [+-]\d{2}:\d{2}$/);
    assert.equal(Date.parse(local.replace(' ', 'T').replace(' ', '')), Date.parse(datetime), 'the same moment');

    // The choice outlives the page.
    await page.reload();
    await rows().first().waitFor();
    assert.match((await rows().filter({ hasText: NEEDLE.key }).locator('.rec-time').textContent()).trim(), /\.\d{3} [+-]\d{2}:\d{2}$/);
    const zones = page.getByRole('group', { name: 'Time zone' });
    assert.equal(await zones.getByRole('button', { name: 'Local' }).getAttribute('aria-pressed'), 'true');
    await zones.getByRole('button', { name: 'UTC' }).click();
    await page.locator('[data-testid="records-table"] .rec-time', { hasText: / UTC$/ }).first().waitFor();
    assertClean();
  });

  it('keeps keys whole and shows the fields of a long JSON value without a click', async () => {
    const ipRow = rows().filter({ hasText: '2001:db8:85a3::8a2e:370:7334' });
    const key = ipRow.locator('.rec-key-text');
    const style = await key.evaluate((element) => ({
      whiteSpace: getComputedStyle(element).whiteSpace,
      lines: Math.round(element.getBoundingClientRect().height / parseFloat(getComputedStyle(element).lineHeight)),
    }));
    assert.equal(style.whiteSpace, 'nowrap');
    assert.equal(style.lines, 1, 'an IPv6 key on one line');

    const needle = rows().filter({ hasText: NEEDLE.key });
    const fields = needle.locator('.rec-value .jf');
    assert.ok(await fields.filter({ hasText: 'ip=203.0.113.254' }).isVisible(), 'the ip field is shown');
    assert.ok(await fields.filter({ hasText: 'ts=2024-09-18T14:14:10.124Z' }).isVisible(), 'the ts field is shown');
    const pretty = needle.locator('.rec-value pre');
    assert.equal(await pretty.isVisible(), false);
    await needle.locator('.rec-value summary').click();
    await pretty.waitFor();
    assert.deepEqual(JSON.parse(await pretty.textContent()), JSON.parse(NEEDLE.value));
    assertClean();
  });

  it('finds a record by key, value or header and hides the others', async () => {
    await search({ 'Key contains': 'needle-7f3a' });
    await eventually(shownKeys, (keys) => keys.length === 1 && keys[0] === NEEDLE.key, { what: 'only the needle by key' });
    await shot('topic-search');

    await search({ 'Key contains': '', 'Value contains': 'needle-value' });
    await eventually(shownKeys, (keys) => keys.length === 1 && keys[0] === NEEDLE.key, { what: 'only the needle by value' });

    await search({ 'Value contains': '', Header: 'trace:needle-trace' });
    await eventually(shownKeys, (keys) => keys.length === 1 && keys[0] === NEEDLE.key, { what: 'only the needle by header' });

    await search({ Header: 'trace:no-such-trace' });
    await page.locator('[data-testid="records-table"] .empty-row', { hasText: 'No record matches' }).waitFor();

    await search({ Header: '' });
    await eventually(shownKeys, (keys) => keys.length === NOISE + 2, { what: 'every record again' });
    assertClean();
  });

  it('seeks to a time, starts at the oldest record and loads more through the cursor', async () => {
    // The zone is UTC (the previous step chose it): the input is read as UTC.
    await search({ 'From time': new Date(boundary).toISOString().slice(0, 23) });
    await eventually(shownKeys, (keys) => keys.length === 2, { what: 'the two records after the boundary' });
    assert.deepEqual(await shownKeys(), ['2001:db8:85a3::8a2e:370:7334', NEEDLE.key], 'oldest first from that time');
    assert.equal(await queryForm().getByLabel('Start', { exact: true }).inputValue(), 'time');

    await search({ Start: 'earliest', 'From time': '', 'Per page': '20' });
    await eventually(shownKeys, (keys) => keys.length === 20 && keys[0] === 'order-0', { what: 'the first page, oldest first' });
    await page.getByRole('button', { name: 'Load more' }).click();
    const keys = await eventually(shownKeys, (shown) => shown.length === NOISE + 2, { what: 'the rest after load more' });
    assert.equal(new Set(keys).size, keys.length, 'no record twice');
    assert.equal(keys.at(-1), NEEDLE.key);

    await search({ Start: 'latest', 'Per page': '50' });
    await eventually(shownKeys, (shown) => shown[0] === NEEDLE.key && shown.length === NOISE + 2, { what: 'newest first again' });
    assertClean();
  });

  it('tails new records live, on top, until turned off', async () => {
    const tail = page.getByRole('button', { name: 'Live tail' });
    await tail.click();
    assert.equal(await tail.getAttribute('aria-pressed'), 'true');
    await page.locator('.tail-state', { hasText: 'Waiting for new records' }).waitFor();
    const [written] = await produce(TOPIC, [{ key: 'tailed-1', value: 'live!', partition: 0 }]);
    const fresh = rows().filter({ hasText: 'tailed-1' });
    await fresh.waitFor();
    assert.equal((await shownKeys())[0], 'tailed-1', 'the new record is on top');
    assert.equal(await fresh.getAttribute('data-offset'), String(written.offset));
    await page.locator('.tail-state', { hasText: '1 new record' }).waitFor();

    const closed = () => page.waitForEvent('requestfailed', { predicate: (request) => request.url().includes('/records/stream'), timeout: 10_000 });
    let ended = closed();
    await tail.click();
    await ended;
    assert.equal(await tail.getAttribute('aria-pressed'), 'false');
    await produce(TOPIC, [{ key: 'after-tail', value: 'not shown', partition: 0 }]);
    await page.waitForTimeout(1500);
    assert.equal(await rows().filter({ hasText: 'after-tail' }).count(), 0, 'nothing arrives once the tail is off');

    // Leaving the page ends the stream too.
    await tail.click();
    await page.locator('.tail-state', { hasText: 'Waiting for new records' }).waitFor();
    ended = closed();
    await open('#/topics', 'Topics');
    await ended;
    await open(`#/topics/${TOPIC}`, TOPIC);
    await rows().first().waitFor();
    forgetClosedStreams();
    assertClean();
  });

  it('exports the current query as JSON Lines and CSV', async () => {
    await search({ 'Key contains': 'order-1' });
    await eventually(shownKeys, (keys) => keys.length > 0 && keys.every((key) => key.includes('order-1')), { what: 'the key search' });
    const expected = await apiRecords('key=order-1');
    assert.ok(expected.length >= 11, `order-1 and order-10..19: ${expected.length}`);

    const jsonlHref = await page.getByRole('link', { name: 'Export JSON Lines' }).getAttribute('href');
    assert.match(jsonlHref, /\/records\/export\?.*key=order-1.*format=jsonl/);
    const jsonl = await apiCall(jsonlHref);
    assert.equal(jsonl.status, 200);
    assert.match(jsonl.headers.get('content-type'), /ndjson/);
    const lines = jsonl.text.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines.length, expected.length);
    assert.ok(lines.every((record) => record.key.includes('order-1') && Number.isInteger(record.partition) && Number.isInteger(record.offset)));

    const csvHref = await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href');
    const csv = await apiCall(csvHref);
    assert.equal(csv.status, 200);
    const table = parseCsv(csv.text);
    assert.deepEqual(table[0], ['partition', 'offset', 'timestamp', 'timestamp_rfc3339', 'key', 'key_encoding', 'value', 'value_encoding', 'headers']);
    assert.equal(table.length - 1, expected.length);
    for (const row of table.slice(1)) {
      assert.match(row[4], /order-1/);
      assert.deepEqual(JSON.parse(row[8]), [{ key: 'source', value: 'noise', encoding: 'utf8' }]);
    }
    await search({ 'Key contains': '' });
    await eventually(shownKeys, (keys) => keys[0] !== undefined && !keys.every((key) => key.includes('order-1')), { what: 'the search cleared' });
    assertClean();
  });

  it('produces the typed bytes unchanged, validating or formatting JSON only when asked', async () => {
    const typed = '{"z": 1,   "a": [3, 1],\n  "m": "x"}';
    await page.getByRole('button', { name: 'Produce record' }).click();
    const dialog = page.getByTestId('produce');
    await dialog.getByLabel('Key', { exact: true }).fill('raw-1');
    await dialog.getByLabel('Value', { exact: true }).fill('{"not json');
    await dialog.getByLabel('Validate JSON').check();
    await dialog.getByRole('button', { name: 'Produce' }).click();
    await dialog.locator('.dialog-error', { hasText: 'not valid JSON' }).waitFor();
    await dialog.getByRole('button', { name: 'Format JSON' }).click();
    await dialog.locator('.form-error', { hasText: 'Not JSON' }).waitFor();
    assert.equal(await dialog.getByLabel('Value', { exact: true }).inputValue(), '{"not json', 'left as it is');

    await dialog.getByLabel('Value', { exact: true }).fill(typed);
    await dialog.getByLabel('Headers', { exact: true }).fill('source=console');
    await dialog.getByRole('button', { name: 'Produce' }).click();
    await page.locator('.toast', { hasText: 'Produced to partition' }).waitFor();
    const produced = rows().filter({ hasText: 'raw-1' });
    await produced.waitFor();
    assert.match(await produced.getAttribute('class'), /highlight/);
    const [record] = await apiRecords('key=raw-1');
    assert.equal(record.value, typed, 'the value as typed, key order and spacing kept');
    assert.deepEqual(record.headers, [{ key: 'source', value: 'console', encoding: 'utf8' }]);

    // Format JSON rewrites the text in the box, and that is what is sent.
    await page.getByRole('button', { name: 'Produce record' }).click();
    await dialog.getByLabel('Key', { exact: true }).fill('raw-2');
    await dialog.getByLabel('Value', { exact: true }).fill(typed);
    await dialog.getByRole('button', { name: 'Format JSON' }).click();
    const formatted = JSON.stringify(JSON.parse(typed), null, 2);
    assert.equal(await dialog.getByLabel('Value', { exact: true }).inputValue(), formatted);
    await dialog.getByRole('button', { name: 'Produce' }).click();
    await rows().filter({ hasText: 'raw-2' }).waitFor();
    assert.equal((await apiRecords('key=raw-2'))[0].value, formatted);
    assertClean();
  });

  it('edits a config with Kafka’s documentation beside it, and resets it', async () => {
    const configs = page.getByTestId('configs');
    const row = configs.locator('tr[data-config="retention.ms"]');
    await row.waitFor();
    await row.locator('.config-doc', { hasText: 'maximum time we will retain a log' }).waitFor();
    await configs.getByLabel('Filter configs').fill('retention');
    await row.scrollIntoViewIfNeeded();
    await shot('topic-configs');

    await row.getByRole('button', { name: 'Edit retention.ms' }).click();
    const dialog = page.getByTestId('edit-config');
    await dialog.getByText('Kafka’s default: 604800000').waitFor();
    await dialog.getByLabel('Value', { exact: true }).fill('3600000');
    await shot('topic-config-edit');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await page.locator('.toast', { hasText: 'Set retention.ms = 3600000' }).waitFor();
    await row.locator('.config-value', { hasText: '3600000' }).waitFor();
    assert.equal((await apiCall(`/api/v1/topics/${TOPIC}`)).json.configs['retention.ms'], '3600000', 'stored');

    // A config with a few values is edited with a select.
    const policy = configs.getByLabel('Filter configs');
    await policy.fill('cleanup');
    await configs.getByRole('button', { name: 'Edit cleanup.policy' }).click();
    await dialog.getByLabel('Value', { exact: true }).selectOption('compact,delete');
    await dialog.getByRole('button', { name: 'Save' }).click();
    await page.locator('.toast', { hasText: 'Set cleanup.policy = compact,delete' }).waitFor();
    assert.equal((await apiCall(`/api/v1/topics/${TOPIC}`)).json.configs['cleanup.policy'], 'compact,delete');

    await configs.getByRole('button', { name: 'Reset cleanup.policy' }).click();
    await page.getByTestId('confirm-reset-config').getByRole('button', { name: 'Reset' }).click();
    await page.locator('.toast', { hasText: 'Reset cleanup.policy' }).waitFor();
    assert.equal((await apiCall(`/api/v1/topics/${TOPIC}`)).json.configs['cleanup.policy'], 'delete', 'back to the default');
    await policy.fill('');
    assertClean();
  });

  it('shows records as cards on a phone, with nothing wider than the screen', async () => {
    await page.setViewportSize(PHONE);
    await open(`#/topics/${TOPIC}`, TOPIC);
    await rows().filter({ hasText: NEEDLE.key }).waitFor();
    await noHorizontalScroll();
    const card = await rows().first().evaluate((row) => ({
      display: getComputedStyle(row).display,
      right: row.getBoundingClientRect().right,
      head: getComputedStyle(row.closest('table').querySelector('thead')).display,
    }));
    assert.equal(card.display, 'grid', 'each record is a card');
    assert.equal(card.head, 'none', 'no table header');
    assert.ok(card.right <= PHONE.width, `the card fits: ${card.right}`);
    await rows().first().scrollIntoViewIfNeeded();
    await shot('topic-records-phone');

    await search({ 'Key contains': 'needle' });
    await eventually(shownKeys, (keys) => keys.length === 1, { what: 'the search on a phone' });
    await noHorizontalScroll();
    await queryForm().scrollIntoViewIfNeeded();
    await shot('topic-search-phone');

    await page.getByTestId('configs').getByRole('button', { name: 'Edit retention.ms' }).click();
    await noHorizontalScroll();
    await shot('topic-config-edit-phone');
    await page.getByTestId('edit-config').getByRole('button', { name: 'Cancel' }).click();
    await page.setViewportSize(DESKTOP);
    await search({ 'Key contains': '' });
    await eventually(shownKeys, (keys) => keys.length > 1, { what: 'the search cleared' });
    assertClean();
  });

  it('says when a bound stopped the search, and how far it got', async () => {
    // A bound needs 64 MiB or 5 s of reading; the page's answer is altered to show one.
    const route = `**/api/v1/topics/${TOPIC}/records?*`;
    await page.route(route, async (request) => {
      const response = await request.fetch();
      const answer = await response.json();
      answer.stopped_by = 'time';
      answer.cursor = answer.cursor ?? 'fake-cursor';
      for (const scan of answer.partitions) scan.scanned_from = scan.scanned_to - Math.floor((scan.scanned_to - scan.scanned_from) / 2);
      await request.fulfill({ response, json: answer });
    });
    await search({ 'Key contains': 'order-' });
    const notice = page.getByTestId('scan-bound');
    await notice.filter({ hasText: 'time bound (5 s per page)' }).waitFor();
    assert.match(await notice.textContent(), /after covering [\d,]+ of [\d,]+ offsets \(\d+(\.\d)?%\)/);
    await notice.getByText('Progress by partition').click();
    await notice.getByText(/Partition 1: offsets/).waitFor();
    assert.ok(await page.getByRole('button', { name: 'Load more' }).isVisible());
    await page.unroute(route);
    await search({ 'Key contains': '' });
    await eventually(shownKeys, (keys) => keys.includes(NEEDLE.key), { what: 'the search cleared' });
    await notice.waitFor({ state: 'detached' });
    assertClean();
  });

  it('adds partitions', async () => {
    await open(`#/topics/${TOPIC}`, TOPIC);
    await page.getByRole('button', { name: 'Add partitions' }).click();
    const dialog = page.getByTestId('add-partitions');
    await dialog.getByLabel('Partitions', { exact: true }).fill('5');
    await dialog.getByRole('button', { name: 'Add partitions' }).click();
    await page.locator('.toast', { hasText: `${TOPIC} now has 5 partitions` }).waitFor();
    assert.equal((await apiCall(`/api/v1/topics/${TOPIC}`)).json.partitions.length, 5);
    await page.locator('[data-testid="partitions-table"] tbody tr').nth(4).waitFor();
    await queryForm().getByLabel('Partition', { exact: true }).locator('option[value="4"]').waitFor({ state: 'attached' });
    assertClean();
  });

  it('purges the topic after a confirmation naming it', async () => {
    await page.getByRole('button', { name: 'Purge' }).click();
    const dialog = page.getByTestId('confirm-purge-topic');
    await dialog.getByRole('heading', { name: `Purge topic ${TOPIC}?` }).waitFor();
    await dialog.getByRole('button', { name: 'Purge records' }).click();
    await page.locator('.toast', { hasText: `Purged ${TOPIC}` }).waitFor();
    await eventually(() => apiCall(`/api/v1/topics/${TOPIC}`), ({ json }) => json.records === 0, { what: 'the topic empty' });
    await page.locator('[data-testid="records-table"] .empty-row', { hasText: 'This topic holds no records' }).waitFor();
    assertClean();
  });

  it('marks a managed topic and offers no delete or purge for it', async () => {
    await eventually(() => apiCall('/api/v1/topics'), ({ json }) => json.topics.some((t) => t.name === 'login-attempts' && t.managed),
      { what: 'the guard’s login-attempts topic' });
    await open('#/topics/login-attempts', 'login-attempts');
    await page.getByTestId('managed').filter({ hasText: 'managed by the login guard' }).waitFor();
    await page.getByRole('button', { name: 'Add partitions' }).waitFor();
    for (const name of ['Delete topic', 'Purge', 'Produce record']) {
      assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button`);
    }
    await open('#/topics', 'Topics');
    const listed = page.locator('[data-testid="topics-table"] tbody tr', { hasText: 'login-attempts' }).first();
    await listed.locator('.badge', { hasText: 'managed' }).waitFor();
    assert.equal(await listed.getByRole('button', { name: /^Delete/ }).count(), 0);
    assertClean();
  });
});

// With a user, every request needs the session's token, which neither EventSource nor a
// plain download link can send: the live tail and the exports must still work.
describe('topic page with sign-in', { timeout: 10 * 60_000 }, () => {
  const USER = 'carol';
  const PASSWORD = 'topics-carol-secret';
  let token;

  useFreshet({
    logName: 'freshet-topics-sign-in.log',
    prepare: (dataDir) => promisify(execFile)(FRESHET_BIN, ['users', 'add', USER, '--data-dir', dataDir], {
      env: { ...process.env, FRESHET_USER_PASSWORD: PASSWORD },
    }),
  });

  before(async () => {
    const grant = await apiCall('/api/v1/auth/token', { method: 'POST', body: { username: USER, password: PASSWORD } });
    assert.equal(grant.status, 200, JSON.stringify(grant.json));
    token = grant.json.token;
    const created = await apiCall('/api/v1/topics', { method: 'POST', body: { name: TOPIC, partitions: 2, configs: {} }, token });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    await produce(TOPIC, [{ key: 'signed-1', value: 'first', partition: 1 }], token);
  });

  it('tails and exports records with the session’s token', async () => {
    await page.goto(`${baseUrl}/#/topics/${TOPIC}`);
    const form = page.getByRole('form', { name: 'Sign in' });
    await form.getByLabel('User name', { exact: true }).fill(USER);
    await form.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await form.getByRole('button', { name: 'Sign in' }).click();
    await rows().filter({ hasText: 'signed-1' }).waitFor();
    // Before the sign-in the page's first requests were refused (401): that is how it asks.
    resetProblems();

    await page.getByRole('button', { name: 'Live tail' }).click();
    await page.locator('.tail-state', { hasText: 'Waiting for new records' }).waitFor();
    await produce(TOPIC, [{ key: 'signed-tailed', value: 'live', partition: 0 }], token);
    await rows().filter({ hasText: 'signed-tailed' }).waitFor();
    assert.equal((await shownKeys())[0], 'signed-tailed');
    await page.getByRole('button', { name: 'Live tail' }).click();

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Export JSON Lines' }).click(),
    ]);
    assert.equal(download.suggestedFilename(), `${TOPIC}-records.jsonl`);
    const lines = (await readFile(await download.path(), 'utf8')).trim().split('\n').map((line) => JSON.parse(line));
    assert.deepEqual(lines.map((record) => record.key).sort(), ['signed-1', 'signed-tailed']);
    forgetClosedStreams();
    assertClean();
  });
});
