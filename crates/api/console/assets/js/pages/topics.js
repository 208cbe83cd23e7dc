// Topics: the list (`#/topics`) with creation and deletion, and one topic (`#/topics/<name>`)
// with its partitions, configuration, a record browser and a form to produce a record.

import { api, segment } from '../api.js';
import { h, append, renderWhenChanged, replace } from '../dom.js';
import { int, bytes, dateTime, plural } from '../format.js';
import { POLL_MS } from '../page.js';
import { go, href } from '../router.js';
import {
  badge, button, card, confirmDialog, definitions, field, formDialog, iconButton, stat, table, toast,
} from '../ui.js';

/** Records one page of the browser shows. */
const PAGE_SIZES = [20, 50, 100];

/** `key=value` lines (blank lines and `#` comments skipped) as an object. */
function keyValueLines(text, what) {
  const result = {};
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const split = line.indexOf('=');
    if (split <= 0) throw new Error(`${what} line ${index + 1} is not key=value: ${line}`);
    result[line.slice(0, split).trim()] = line.slice(split + 1).trim();
  }
  return result;
}

function topicPath(name) {
  return `/api/v1/topics/${segment(name)}`;
}

function deleteTopic(name, records) {
  confirmDialog({
    title: `Delete topic ${name}?`,
    text: `Its partitions and ${plural(records ?? 0, 'record')} are removed for good. Producers and consumers using it will fail or recreate it.`,
    confirmLabel: 'Delete topic',
    testid: 'confirm-delete-topic',
    action: async () => {
      await api(topicPath(name), { method: 'DELETE' });
      toast(`Deleted topic ${name}`);
      go('topics');
    },
  });
}

function createTopic() {
  formDialog({
    title: 'New topic',
    submitLabel: 'Create topic',
    testid: 'create-topic',
    build: (form) => append(form,
      field('Name', h('input', { class: 'input', name: 'name', required: true, autocomplete: 'off', placeholder: 'orders', pattern: '[A-Za-z0-9._\\-]+', title: 'Letters, digits, dots, underscores and dashes' })),
      field('Partitions', h('input', { class: 'input', name: 'partitions', inputmode: 'numeric', value: '3', required: true })),
      field('Configuration', h('textarea', { class: 'input', name: 'configs', rows: 3, placeholder: 'retention.ms=86400000\ncleanup.policy=delete' }),
        'Optional, one key=value per line.')),
    submit: async (form) => {
      const name = form.elements.name.value.trim();
      const partitions = Number(form.elements.partitions.value);
      if (!Number.isInteger(partitions) || partitions < 1) throw new Error('Partitions must be a whole number of at least 1');
      const configs = keyValueLines(form.elements.configs.value, 'Configuration');
      await api('/api/v1/topics', { method: 'POST', body: { name, partitions, configs } });
      toast(`Created topic ${name} with ${plural(partitions, 'partition')}`);
      go('topics', name);
    },
  });
}

function mountList(context) {
  context.header({
    title: 'Topics',
    subtitle: 'Every topic of the cluster, read over the Kafka protocol.',
    actions: [button('New topic', { kind: 'primary', onclick: createTopic })],
  });
  const filter = h('input', { class: 'input search', type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter topics' });
  const showInternal = h('input', { type: 'checkbox', name: 'internal' });
  const list = h('div', {});
  let latest = null;

  const render = () => {
    if (!latest) return;
    const needle = filter.value.trim().toLowerCase();
    const rows = latest.topics
      .filter((topic) => showInternal.checked || !topic.internal)
      .filter((topic) => topic.name.toLowerCase().includes(needle))
      .sort((a, b) => a.name.localeCompare(b.name));
    renderWhenChanged(list, { rows, needle }, () => table({
      testid: 'topics-table',
      rows,
      empty: needle ? `No topic matches “${needle}”.` : 'No topics yet. Create one, or start a generator job.',
      columns: [
        {
          label: 'Name',
          cell: (topic) => [h('a', { class: 'strong-link', href: href('topics', topic.name) }, topic.name),
            topic.internal ? [' ', badge('internal')] : null],
        },
        { label: 'Partitions', className: 'num', cell: (topic) => int(topic.partitions) },
        { label: 'Records', className: 'num', cell: (topic) => int(topic.records) },
        { label: 'Latest offsets', className: 'num mono', title: 'Sum of the partitions’ latest offsets', cell: (topic) => int(topic.latest_offset_sum) },
        {
          label: '',
          className: 'actions',
          cell: (topic) => (topic.internal ? null
            : iconButton('trash', `Delete ${topic.name}`, { kind: 'danger', onclick: () => deleteTopic(topic.name, topic.records) })),
        },
      ],
    }));
  };
  filter.addEventListener('input', render);
  showInternal.addEventListener('change', render);

  context.body.append(card({
    title: 'All topics',
    actions: [filter, h('label', { class: 'check' }, showInternal, 'Show internal')],
    body: list,
  }));
  context.every(POLL_MS, async () => {
    const topics = await api('/api/v1/topics');
    if (!context.alive) return;
    latest = topics;
    render();
  });
}

/** JSON text worth pretty-printing (an object or an array), parsed; otherwise null. */
function structured(text) {
  if (!/^\s*[[{]/.test(text)) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * A key or a value as the API shows it: UTF-8 text (JSON objects pretty-printed when
 * expanded), base64 for other bytes (marked), or null.
 */
function payload(text, encoding) {
  if (text === null || text === undefined) return h('span', { class: 'muted' }, 'null');
  const tag = encoding === 'base64' ? [badge('base64'), ' '] : null;
  const parsed = encoding === 'base64' ? null : structured(text);
  const oneLine = parsed === null ? text : JSON.stringify(parsed);
  if (parsed === null && text.length <= 80 && !text.includes('\n')) return h('span', { class: 'payload' }, tag, text);
  return h('details', { class: 'payload' },
    h('summary', {}, tag, oneLine.length > 80 ? `${oneLine.slice(0, 80)}…` : oneLine),
    h('pre', {}, parsed === null ? text : JSON.stringify(parsed, null, 2)));
}

function headersCell(headers) {
  if (!headers || headers.length === 0) return h('span', { class: 'muted' }, '—');
  return h('div', { class: 'chips' }, headers.map((header) => h('span', { class: 'chip' },
    h('span', { class: 'chip-key' }, header.key), '=', header.value === null ? 'null' : String(header.value))));
}

function timestampCell(timestamp) {
  if (timestamp === null || timestamp === undefined || timestamp < 0) return h('span', { class: 'muted' }, '—');
  return dateTime(timestamp);
}

/** The record browser: a partition, a starting offset, pages of records. */
class RecordBrowser {
  constructor(context, name) {
    this.context = context;
    this.name = name;
    this.partitions = [];
    this.partition = 0;
    this.offset = null;
    this.highlight = null;
    this.page = null;
    this.partitionSelect = h('select', { class: 'input' });
    this.offsetInput = h('input', { class: 'input offset-input', inputmode: 'numeric', placeholder: 'newest' });
    this.limitSelect = h('select', { class: 'input' },
      PAGE_SIZES.map((size) => h('option', { value: size }, `${size} per page`)));
    this.follow = h('input', { type: 'checkbox', name: 'follow' });
    this.partitionSelect.addEventListener('change', () => this.show(Number(this.partitionSelect.value), null));
    this.limitSelect.addEventListener('change', () => this.load());
    this.results = h('div', { class: 'records' });
    this.pager = h('div', { class: 'pager' });
    const controls = h('form', { class: 'toolbar', 'aria-label': 'Browse records' },
      field('Partition', this.partitionSelect),
      field('From offset', this.offsetInput),
      field('Page', this.limitSelect),
      button('Load', { kind: 'primary', type: 'submit' }),
      h('label', { class: 'check' }, this.follow, 'Follow newest'));
    controls.addEventListener('submit', (event) => {
      event.preventDefault();
      const text = this.offsetInput.value.trim();
      this.show(this.partition, text === '' ? null : Number(text));
    });
    this.element = card({ title: 'Records', body: [controls, this.results, this.pager], testid: 'records' });
  }

  get limit() {
    return Number(this.limitSelect.value);
  }

  /** Keeps the partition choices in step with the topic. */
  setPartitions(partitions) {
    const numbers = partitions.map((partition) => partition.partition);
    if (JSON.stringify(numbers) !== JSON.stringify(this.partitions)) {
      this.partitions = numbers;
      replace(this.partitionSelect, numbers.map((n) => h('option', { value: n, selected: n === this.partition }, String(n))));
    }
  }

  /** Shows `partition` from `offset` (null: the newest page), marking `highlight`. */
  show(partition, offset, highlight = null) {
    this.partition = partition;
    this.partitionSelect.value = String(partition);
    this.offset = offset;
    this.highlight = highlight;
    this.offsetInput.value = offset === null ? '' : String(offset);
    return this.load();
  }

  async load() {
    await this.context.attempt('records', async () => {
      let offset = this.offset;
      if (offset === null) {
        const topic = await api(topicPath(this.name));
        const partition = topic.partitions.find((p) => p.partition === this.partition);
        offset = partition ? Math.max(partition.earliest_offset, partition.latest_offset - this.limit) : 0;
      }
      const page = await api(`${topicPath(this.name)}/partitions/${segment(this.partition)}/records?offset=${offset}&limit=${this.limit}`);
      if (!this.context.alive) return;
      this.page = { ...page, offset };
      this.render();
    });
  }

  render() {
    const { page } = this;
    const rows = pageRows(page);
    renderWhenChanged(this.results, { page, highlight: this.highlight }, () => table({
      testid: 'records-table',
      rows,
      empty: page.latest_offset === page.earliest_offset
        ? `Partition ${page.partition} is empty.`
        : `No records from offset ${int(page.offset)}.`,
      rowProps: (row) => {
        if (row.skipped) return { class: 'skipped', 'data-testid': 'skipped-batch' };
        return row.offset === this.highlight ? { class: 'highlight' } : {};
      },
      columns: [
        { label: 'Offset', className: 'num mono', cell: (row) => offsetsCell(row) },
        { label: 'Timestamp', className: 'nowrap', cell: (row) => (row.skipped ? badge('skipped', 'danger') : timestampCell(row.timestamp)) },
        { label: 'Key', className: 'mono key', cell: (row) => (row.skipped ? '' : payload(row.key, row.key_encoding)) },
        { label: 'Value', className: 'mono value', cell: (row) => (row.skipped ? skippedCell(row.skipped) : payload(row.value, row.value_encoding)) },
        { label: 'Headers', cell: (row) => (row.skipped ? '' : headersCell(row.headers)) },
      ],
    }));
    const first = page.offset;
    replace(this.pager,
      h('span', { class: 'muted' }, rows.length === 0
        ? `Offsets ${int(page.earliest_offset)} to ${int(page.latest_offset)} exist`
        : `Offsets ${int(rows[0].offset)}–${int(lastOffset(rows.at(-1)))} of ${int(page.earliest_offset)}–${int(Math.max(page.earliest_offset, page.latest_offset - 1))}`),
      h('span', { class: 'spacer' }),
      button('Oldest', { small: true, disabled: first <= page.earliest_offset, onclick: () => this.show(this.partition, page.earliest_offset) }),
      button('Older', { small: true, disabled: first <= page.earliest_offset, onclick: () => this.show(this.partition, Math.max(page.earliest_offset, first - this.limit)) }),
      button('Newer', { small: true, disabled: page.next_offset >= page.latest_offset, onclick: () => this.show(this.partition, page.next_offset) }),
      button('Newest', { small: true, disabled: page.next_offset >= page.latest_offset, onclick: () => this.show(this.partition, null) }));
  }

  /** Called on every poll: follows the newest records when asked to. */
  tick() {
    if (this.follow.checked) {
      this.offset = null;
      this.offsetInput.value = '';
      this.load();
    }
  }
}

/**
 * The rows of a page in offset order: its records, and its skipped batches (ranges of offsets
 * the server could not read and stepped over), each as `{ offset, skipped }`.
 */
function pageRows(page) {
  const skipped = (page.skipped ?? []).map((batch) => ({ offset: batch.from_offset, skipped: batch }));
  return [...page.records, ...skipped].sort((a, b) => a.offset - b.offset);
}

function lastOffset(row) {
  return row.skipped ? row.skipped.to_offset : row.offset;
}

function offsetsCell(row) {
  if (!row.skipped) return String(row.offset);
  const { from_offset: from, to_offset: to } = row.skipped;
  return from === to ? String(from) : `${from}–${to}`;
}

function skippedCell(batch) {
  const count = batch.to_offset - batch.from_offset + 1;
  return h('span', { class: 'skip-reason', title: batch.reason },
    `${plural(count, 'offset')} skipped: this batch cannot be read (${batch.reason}).`);
}

/** The dialog producing one record; on success the browser shows it. */
function produceDialog(name, partitions, browser, onProduced) {
  formDialog({
    title: `Produce to ${name}`,
    submitLabel: 'Produce',
    testid: 'produce',
    wide: true,
    build: (form) => append(form,
      field('Key', h('input', { class: 'input mono', name: 'key', autocomplete: 'off', placeholder: 'optional' })),
      field('Value', h('textarea', { class: 'input mono', name: 'value', rows: 6, placeholder: '{"hello": "world"}' })),
      h('div', { class: 'form-row' },
        field('Send value as', h('select', { class: 'input', name: 'as' },
          h('option', { value: 'auto' }, 'JSON if it parses'),
          h('option', { value: 'text' }, 'Text'))),
        field('Partition', h('select', { class: 'input', name: 'partition' },
          h('option', { value: '' }, 'By key (partitioner)'),
          partitions.map((n) => h('option', { value: n }, String(n)))))),
      field('Headers', h('textarea', { class: 'input mono', name: 'headers', rows: 2, placeholder: 'source=console' }),
        'Optional, one key=value per line.')),
    submit: async (form) => {
      const { key, value, as, headers, partition } = form.elements;
      const record = {
        key: key.value === '' ? null : key.value,
        value: parseValue(value.value, as.value),
        headers: keyValueLines(headers.value, 'Headers'),
      };
      if (partition.value !== '') record.partition = Number(partition.value);
      const answer = await api(`${topicPath(name)}/records`, { method: 'POST', body: { records: [record] } });
      const [written] = answer.offsets;
      toast(`Produced to partition ${written.partition} at offset ${written.offset}`);
      onProduced();
      await browser.show(written.partition, null, written.offset);
    },
  });
}

function parseValue(text, as) {
  if (as === 'text') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function partitionsTable(topic, browser) {
  return table({
    testid: 'partitions-table',
    rows: topic.partitions,
    columns: [
      {
        label: 'Partition',
        className: 'num mono',
        cell: (p) => h('button', { class: 'link-button', type: 'button', title: 'Browse this partition', onclick: () => browser.show(p.partition, null) }, String(p.partition)),
      },
      { label: 'Leader', className: 'num', cell: (p) => (p.leader < 0 ? badge('none', 'danger') : String(p.leader)) },
      {
        label: 'In sync',
        className: 'num',
        title: 'Replicas in sync with the leader, of all replicas',
        cell: (p) => (p.replicas ? `${p.in_sync_replicas.length} of ${p.replicas.length}` : '—'),
      },
      { label: 'Earliest offset', className: 'num mono', cell: (p) => int(p.earliest_offset) },
      { label: 'Latest offset', className: 'num mono', cell: (p) => int(p.latest_offset) },
      { label: 'Records', className: 'num', cell: (p) => int(p.records) },
      { label: 'Size', className: 'num', cell: (p) => bytes(p.size_bytes) },
    ],
  });
}

function mountTopic(context, name) {
  const browser = new RecordBrowser(context, name);
  let records = 0;
  let partitionNumbers = [];
  context.header({
    title: name,
    crumbs: [['Topics', href('topics')]],
    actions: [
      button('Produce record', { kind: 'primary', onclick: () => produceDialog(name, partitionNumbers, browser, () => refresh()) }),
      button('Delete topic', { kind: 'danger-outline', onclick: () => deleteTopic(name, records) }),
    ],
  });
  const tiles = h('div', { class: 'stats' });
  const partitions = h('div', {});
  const configs = h('div', {});
  context.body.append(
    tiles,
    h('div', { class: 'grid sidebar-right' },
      card({ title: 'Partitions', note: 'select one to browse it', body: partitions }),
      card({ title: 'Configuration', note: 'effective values', body: configs, className: 'configs' })),
    browser.element);

  let first = true;
  const load = async () => {
    const topic = await api(topicPath(name));
    if (!context.alive) return;
    records = topic.records;
    partitionNumbers = topic.partitions.map((p) => p.partition);
    tiles.replaceChildren(
      stat({ label: 'Partitions', value: int(topic.partitions.length), sub: topic.internal ? 'internal topic' : 'user topic' }),
      stat({ label: 'Records', value: int(topic.records), sub: 'kept in the log' }),
      stat({ label: 'Size on disk', value: bytes(topic.size_bytes), sub: topic.size_bytes === null ? 'not reported by this cluster' : 'all partitions' }),
      stat({ label: 'Latest offsets', value: int(topic.partitions.reduce((sum, p) => sum + p.latest_offset, 0)), sub: 'summed over partitions' }));
    renderWhenChanged(partitions, topic.partitions, () => partitionsTable(topic, browser));
    const entries = Object.entries(topic.configs ?? {}).sort(([a], [b]) => a.localeCompare(b));
    renderWhenChanged(configs, entries, () => (entries.length === 0
      ? h('p', { class: 'muted' }, 'The cluster reported no configuration.')
      : definitions(entries.map(([key, value]) => [h('span', { class: 'mono' }, key), h('span', { class: 'mono' }, String(value))]))));
    browser.setPartitions(topic.partitions);
    if (first) {
      first = false;
      await browser.show(topic.partitions[0]?.partition ?? 0, null);
    } else {
      browser.tick();
    }
  };
  const refresh = () => context.attempt('poll', load);
  context.every(POLL_MS, load);
}

export default {
  mount(context, [name]) {
    if (name === undefined) mountList(context);
    else mountTopic(context, name);
  },
};
