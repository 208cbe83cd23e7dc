// Topics: the list (`#/topics`) with creation and deletion, and one topic (`#/topics/<name>`):
// its records (pages/records.js), partitions and configuration (pages/topic-configs.js), a
// form to produce a record, and its administration: add partitions, purge, delete. Topics a
// Freshet service keeps (`managed`) are marked and offer neither purge nor delete.

import { api, segment } from '../api.js';
import { h, append, renderWhenChanged } from '../dom.js';
import { int, bytes, plural } from '../format.js';
import { POLL_MS } from '../page.js';
import { go, href } from '../router.js';
import {
  badge, button, card, confirmDialog, field, formDialog, iconButton, stat, table, toast,
} from '../ui.js';
import { RecordBrowser } from './records.js';
import { ConfigEditor } from './topic-configs.js';

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
            topic.internal ? [' ', badge('internal')] : null,
            topic.managed ? [' ', h('span', { title: `Managed by ${topic.managed_by}` }, badge('managed', 'info'))] : null],
        },
        { label: 'Partitions', className: 'num', cell: (topic) => int(topic.partitions) },
        { label: 'Records', className: 'num', cell: (topic) => int(topic.records) },
        { label: 'Latest offsets', className: 'num mono', title: 'Sum of the partitions’ latest offsets', cell: (topic) => int(topic.latest_offset_sum) },
        {
          label: '',
          className: 'actions',
          cell: (topic) => (topic.internal || topic.managed ? null
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

/**
 * The dialog producing one record. The key and value go as the text typed, byte for byte
 * (a JSON string is sent as its text): JSON is neither re-encoded nor reordered unless the
 * user asks with "Format JSON", and "Validate JSON" only refuses text that is not JSON.
 */
function produceDialog(name, partitions, onProduced) {
  formDialog({
    title: `Produce to ${name}`,
    submitLabel: 'Produce',
    testid: 'produce',
    wide: true,
    build: (form) => {
      const value = h('textarea', { class: 'input mono', name: 'value', rows: 7, spellcheck: 'false', placeholder: '{"hello": "world"}' });
      const jsonError = h('p', { class: 'form-error', role: 'alert', hidden: true });
      const tombstone = h('input', { type: 'checkbox', name: 'tombstone' });
      tombstone.addEventListener('change', () => {
        value.disabled = tombstone.checked;
      });
      const format = () => {
        try {
          value.value = JSON.stringify(JSON.parse(value.value), null, 2);
          jsonError.hidden = true;
        } catch (error) {
          jsonError.textContent = `Not JSON, left as it is: ${error.message}`;
          jsonError.hidden = false;
        }
      };
      append(form,
        field('Key', h('input', { class: 'input mono', name: 'key', autocomplete: 'off', spellcheck: 'false', placeholder: 'optional' })),
        field('Value', value, 'Sent exactly as typed.'),
        h('div', { class: 'produce-options' },
          h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'validate' }), 'Validate JSON'),
          button('Format JSON', { small: true, onclick: format }),
          h('label', { class: 'check' }, tombstone, 'No value (tombstone)')),
        jsonError,
        field('Partition', h('select', { class: 'input', name: 'partition' },
          h('option', { value: '' }, 'By key (partitioner)'),
          partitions.map((n) => h('option', { value: n }, String(n))))),
        field('Headers', h('textarea', { class: 'input mono', name: 'headers', rows: 2, spellcheck: 'false', placeholder: 'source=console' }),
          'Optional, one key=value per line.'));
    },
    submit: async (form) => {
      const { key, value, validate, tombstone, headers, partition } = form.elements;
      if (validate.checked && !tombstone.checked) {
        try {
          JSON.parse(value.value);
        } catch (error) {
          throw new Error(`The value is not valid JSON: ${error.message}`);
        }
      }
      const record = {
        key: key.value === '' ? null : key.value,
        value: tombstone.checked ? null : value.value,
        headers: keyValueLines(headers.value, 'Headers'),
      };
      if (partition.value !== '') record.partition = Number(partition.value);
      const answer = await api(`${topicPath(name)}/records`, { method: 'POST', body: { records: [record] } });
      const [written] = answer.offsets;
      toast(`Produced to partition ${written.partition} at offset ${written.offset}`);
      await onProduced(written);
    },
  });
}

function addPartitionsDialog(name, current, onDone) {
  formDialog({
    title: `Add partitions to ${name}`,
    submitLabel: 'Add partitions',
    testid: 'add-partitions',
    build: (form) => append(form,
      h('p', { class: 'dialog-text' },
        `${name} has ${plural(current, 'partition')}. Partitions can be added, never removed. Records with a key may then go to another partition than before, so the order of one key's records holds only among those written after the change.`),
      field('Partitions', h('input', { class: 'input', name: 'count', type: 'number', min: current + 1, max: 1000, step: 1, value: String(current + 1), required: true }),
        `The new total: more than ${current}, at most 1000.`)),
    submit: async (form) => {
      const count = Number(form.elements.count.value);
      if (!Number.isInteger(count) || count <= current) throw new Error(`The new total must be a whole number above ${current}`);
      const topic = await api(`${topicPath(name)}/partitions`, { method: 'POST', body: { count } });
      toast(`${name} now has ${plural(topic.partitions.length, 'partition')}`);
      onDone();
    },
  });
}

function purgeTopic(name, topic, onDone) {
  confirmDialog({
    title: `Purge topic ${name}?`,
    text: `Every record of ${name} (${plural(topic.records, 'record')} in ${plural(topic.partitions.length, 'partition')}) is deleted for good. The topic and its configuration stay, and offsets are not reused: new records go on from the latest offsets.`,
    confirmLabel: 'Purge records',
    testid: 'confirm-purge-topic',
    action: async () => {
      await api(`${topicPath(name)}/purge`, { method: 'POST', body: {} });
      toast(`Purged ${name}`);
      onDone();
    },
  });
}

function partitionsTable(topic, browser) {
  return table({
    testid: 'partitions-table',
    rows: topic.partitions,
    columns: [
      {
        label: 'Partition',
        className: 'num mono',
        cell: (p) => h('button', { class: 'link-button', type: 'button', title: 'Show only this partition’s records', onclick: () => browser.showPartition(p.partition) }, String(p.partition)),
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

/**
 * The page header: produce and the administration actions. A managed topic says who keeps
 * it and offers neither purge nor delete (its service depends on it; the API refuses them).
 */
function topicHeader(context, name, topic, { browser, refresh, current }) {
  const managed = topic?.managed === true;
  const owner = topic?.managed_by ?? 'a Freshet service';
  const actions = [];
  if (topic && topic.accepts_records !== false) {
    actions.push(button('Produce record', {
      kind: 'primary',
      onclick: () => produceDialog(name, current().partitions.map((p) => p.partition), async (written) => {
        refresh();
        await browser.showProduced(written);
      }),
    }));
  }
  if (topic) {
    actions.push(button('Add partitions', { onclick: () => addPartitionsDialog(name, current().partitions.length, refresh) }));
  }
  if (topic && !managed) {
    actions.push(button('Purge', {
      kind: 'danger-outline',
      onclick: () => purgeTopic(name, current(), () => {
        refresh();
        browser.load();
      }),
    }));
    actions.push(button('Delete topic', { kind: 'danger-outline', onclick: () => deleteTopic(name, current().records) }));
  }
  context.header({
    title: name,
    crumbs: [['Topics', href('topics')]],
    subtitle: managed
      ? h('span', { class: 'managed-note', 'data-testid': 'managed' }, badge(`managed by ${owner}`, 'info'), ' ',
        `${owner[0].toUpperCase()}${owner.slice(1)} keeps this topic, so the console does not purge or delete it.`)
      : null,
    actions,
  });
}

function mountTopic(context, name) {
  const browser = new RecordBrowser(context, name);
  let latest = null;
  const configs = new ConfigEditor(name, () => refresh());
  topicHeader(context, name, null, { browser });
  const tiles = h('div', { class: 'stats' });
  const partitions = h('div', {});
  context.body.append(
    tiles,
    browser.element,
    card({ title: 'Partitions', note: 'pick one to show only its records', body: partitions }),
    configs.element);

  // The topic opens at its newest records, whichever partitions hold them.
  browser.load();
  const load = async () => {
    const topic = await api(topicPath(name));
    if (!context.alive) return;
    // The header's actions depend on whether the topic is managed; dialogs read the latest
    // description when they open.
    const first = latest === null;
    const wasManaged = latest?.managed;
    latest = topic;
    if (first || wasManaged !== topic.managed) topicHeader(context, name, topic, { browser, refresh, current: () => latest });
    tiles.replaceChildren(
      stat({ label: 'Partitions', value: int(topic.partitions.length), sub: topic.internal ? 'internal topic' : 'user topic' }),
      stat({ label: 'Records', value: int(topic.records), sub: 'kept in the log' }),
      stat({ label: 'Size on disk', value: bytes(topic.size_bytes), sub: topic.size_bytes === null ? 'not reported by this cluster' : 'all partitions' }),
      stat({ label: 'Latest offsets', value: int(topic.partitions.reduce((sum, p) => sum + p.latest_offset, 0)), sub: 'summed over partitions' }));
    renderWhenChanged(partitions, topic.partitions, () => partitionsTable(topic, browser));
    configs.show(topic.configs ?? {});
    browser.setPartitions(topic.partitions.map((p) => p.partition));
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
