// The records of one topic: every partition at once, newest first when the topic opens
// (`GET /api/v1/topics/{name}/records`), with search by key, value and header, a start at
// the earliest record, the latest or a moment, "load more" through the answer's cursor, a
// live tail (`.../records/stream`) and downloads of the same query (`.../records/export`).
//
// Each record says which partition and offset it is. Keys stay on one line (an address or
// an id is read whole, never broken in two); long values show their top-level JSON fields
// and open to the whole pretty-printed value. On a phone every record is a card.

import { api, segment, session } from '../api.js';
import { h, replace } from '../dom.js';
import {
  ZONE_EVENT, bytes, inputTime, int, parseInputTime, percent, plural, preciseTime, setTimeZone, timeZone,
} from '../format.js';
import { badge, button, field, toast } from '../ui.js';

/** Records one page asks for. */
const PAGE_SIZES = [20, 50, 100, 200];
const DEFAULT_PAGE_SIZE = 50;
/** Most records the view keeps while the live tail adds to it: the oldest go first. */
const MAX_SHOWN = 1000;
/** A value longer than this (or on several lines) is summarised rather than shown whole. */
const SHORT_VALUE = 80;
/** How much of one JSON field's value its summary shows. */
const FIELD_PREVIEW = 48;
/** The key column is as wide as the longest key shown, within these many characters. */
const KEY_CHARS = { min: 6, max: 32 };
/** How the API names a bound that stopped a scan, for the notice. */
const BOUNDS = {
  bytes: 'its size bound (64 MiB read per page)',
  time: 'its time bound (5 s per page)',
};

/** A record's identity across the partitions of one topic. */
function recordId(record) {
  return `${record.partition}:${record.offset}`;
}

/** JSON text that is an object or an array, parsed; otherwise null. */
function structured(text) {
  if (!/^\s*[[{]/.test(text)) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function muted(text) {
  return h('span', { class: 'muted' }, text);
}

function encodingTag(encoding) {
  return encoding === 'base64' ? [badge('base64'), ' '] : null;
}

/**
 * A key on one line, cut with an ellipsis when it is longer than its column (the whole key
 * in the tooltip); a click shows it whole.
 */
function keyView(record) {
  if (record.key === null || record.key === undefined) return muted('null');
  const text = record.key;
  const key = h('button', {
    class: 'rec-key-text',
    type: 'button',
    title: text,
    'aria-expanded': 'false',
    onclick: () => {
      const open = key.classList.toggle('expanded');
      key.setAttribute('aria-expanded', String(open));
    },
  }, encodingTag(record.key_encoding), text);
  return key;
}

/** A JSON value as one short token of a field summary: `10.0.0.7`, `{3 fields}`, `[12]`. */
function fieldPreview(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `[${value.length}]`;
  if (typeof value === 'object') return `{${plural(Object.keys(value).length, 'field')}}`;
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > FIELD_PREVIEW ? `${text.slice(0, FIELD_PREVIEW)}…` : text;
}

/** The top-level fields of a JSON value on one wrapping line: `ip=10.0.0.7 ts=… code=0`. */
function fieldsLine(parsed) {
  const entries = Array.isArray(parsed)
    ? parsed.slice(0, 20).map((item, index) => [String(index), item])
    : Object.entries(parsed);
  const fields = entries.map(([name, value]) => h('span', { class: 'jf', title: `${name}: ${JSON.stringify(value)}` },
    h('span', { class: 'jf-key' }, name), '=', h('span', { class: 'jf-value' }, fieldPreview(value))));
  if (Array.isArray(parsed) && parsed.length > 20) fields.push(h('span', { class: 'jf muted' }, `… ${int(parsed.length)} items`));
  return fields.length > 0 ? fields : [h('span', { class: 'jf muted' }, Array.isArray(parsed) ? '[]' : '{}')];
}

/**
 * A value: short text as it is; a longer JSON object or array as its top-level fields, open
 * for the whole value pretty-printed; longer other text as its first lines, open for all.
 */
function valueView(record) {
  const text = record.value;
  if (text === null || text === undefined) return muted('null (tombstone)');
  const binary = record.value_encoding === 'base64';
  if (text.length <= SHORT_VALUE && !text.includes('\n')) {
    return h('span', { class: 'rec-value-text' }, encodingTag(record.value_encoding), text);
  }
  const parsed = binary ? null : structured(text);
  if (parsed !== null) {
    return h('details', { class: 'payload json' },
      h('summary', { title: 'Show the whole value' }, h('span', { class: 'fields' }, fieldsLine(parsed))),
      h('pre', {}, JSON.stringify(parsed, null, 2)));
  }
  return h('details', { class: 'payload text' },
    h('summary', { title: 'Show the whole value' }, h('span', { class: 'clamp' }, encodingTag(record.value_encoding), text)));
}

function headersView(headers) {
  if (!headers || headers.length === 0) return muted('—');
  return h('div', { class: 'chips' }, headers.map((header) => {
    const value = header.value === null ? 'null' : String(header.value);
    return h('span', { class: 'chip', title: `${header.key}=${value}` },
      h('span', { class: 'chip-key' }, header.key), '=', value);
  }));
}

function timeView(record) {
  if (record.timestamp === null || record.timestamp === undefined || record.timestamp < 0) return muted('no timestamp');
  const other = timeZone() === 'utc' ? 'local' : 'utc';
  return h('time', {
    datetime: record.timestamp_rfc3339 ?? new Date(record.timestamp).toISOString(),
    title: `${preciseTime(record.timestamp, other)} · ${record.timestamp} ms since the epoch`,
  }, timeParts(preciseTime(record.timestamp)));
}

/** The date and the time of day apart, so a narrow column breaks between them only. */
function timeParts(text) {
  const split = text.indexOf(' ');
  if (split < 0) return text;
  return [h('span', { class: 'rec-date' }, text.slice(0, split)), ' ', h('span', { class: 'rec-clock' }, text.slice(split + 1))];
}

/** One record as a table row; on a phone the same row is drawn as a card. */
function recordRow(record, { fresh = false, highlight = false } = {}) {
  const classes = ['record', fresh ? 'fresh' : null, highlight ? 'highlight' : null].filter(Boolean).join(' ');
  return h('tr', { class: classes, 'data-testid': 'record', dataset: { partition: record.partition, offset: record.offset } },
    h('td', { class: 'num mono rec-offset', 'data-label': 'Offset' }, String(record.offset)),
    h('td', { class: 'num mono rec-partition', 'data-label': 'Partition' }, String(record.partition)),
    h('td', { class: 'rec-time', 'data-label': 'Time' }, timeView(record)),
    h('td', { class: 'mono rec-key', 'data-label': 'Key' }, keyView(record)),
    h('td', { class: 'mono rec-value', 'data-label': 'Value' }, valueView(record)),
    h('td', { class: 'rec-headers', 'data-label': 'Headers' }, headersView(record.headers)));
}

/**
 * Reads a server-sent event stream. Without a session the browser's EventSource does it;
 * with one, EventSource cannot send the token, so the same stream is read with fetch.
 * Returns the function that closes it.
 */
function openStream(url, { onOpen, onRecord, onEnd, onFail }) {
  const token = session()?.token;
  if (!token) {
    const source = new EventSource(url);
    source.addEventListener('open', onOpen);
    source.addEventListener('message', (event) => onRecord(JSON.parse(event.data)));
    source.addEventListener('end', (event) => {
      // The server ends the stream; EventSource would reconnect on its own.
      source.close();
      onEnd(JSON.parse(event.data));
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) onFail('the server refused the stream');
    });
    return () => source.close();
  }
  const controller = new AbortController();
  readStream(url, token, controller.signal, { onOpen, onRecord, onEnd })
    .catch((error) => {
      if (!controller.signal.aborted) onFail(error.message);
    });
  return () => controller.abort();
}

async function readStream(url, token, signal, { onOpen, onRecord, onEnd }) {
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${token}`, 'x-freshet-console': '1' },
    cache: 'no-store',
    signal,
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    throw new Error(answer?.error ?? `${response.status} ${response.statusText}`);
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.data !== null) {
        if (event.type === 'end') {
          onEnd(JSON.parse(event.data));
          return;
        }
        onRecord(JSON.parse(event.data));
      }
      end = buffer.indexOf('\n\n');
    }
  }
}

/** One event block of a text/event-stream: its type and its data (null for a comment). */
function parseEvent(block) {
  let type = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (name === 'event') type = value;
    else if (name === 'data') data.push(value);
  }
  return { type, data: data.length > 0 ? data.join('\n') : null };
}

/**
 * Downloads an export. Without a session the link itself does it; with one the browser
 * would go without the token, so the file is fetched with it and handed over as a blob.
 */
async function downloadWithSession(event, link) {
  const token = session()?.token;
  if (!token) return;
  event.preventDefault();
  try {
    const response = await fetch(link.href, { headers: { authorization: `Bearer ${token}`, 'x-freshet-console': '1' }, cache: 'no-store' });
    if (!response.ok) {
      const answer = await response.json().catch(() => null);
      throw new Error(answer?.error ?? `${response.status} ${response.statusText}`);
    }
    const url = URL.createObjectURL(await response.blob());
    const save = h('a', { href: url, download: link.getAttribute('download') });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    toast(`Export failed: ${error.message}`, 'error');
  }
}

export class RecordBrowser {
  constructor(context, name) {
    this.context = context;
    this.name = name;
    this.base = `/api/v1/topics/${segment(name)}/records`;
    this.query = { from: 'latest', key: '', value: '', header: '', partition: '', limit: DEFAULT_PAGE_SIZE };
    this.partitions = [];
    this.records = [];
    this.seen = new Set();
    this.cursor = null;
    this.order = 'newest_first';
    this.coverage = new Map();
    this.skipped = new Map();
    this.stoppedBy = null;
    this.bytesRead = 0;
    this.highlight = null;
    this.ticket = 0;
    this.closeTail = null;
    this.tailed = 0;
    this.shownZone = timeZone();
    this.build();
    const onZone = () => this.zoneChanged();
    window.addEventListener(ZONE_EVENT, onZone);
    context.onDispose(() => {
      window.removeEventListener(ZONE_EVENT, onZone);
      this.stopTail();
    });
  }

  build() {
    this.startSelect = h('select', { class: 'input', name: 'from' },
      h('option', { value: 'latest' }, 'Newest first'),
      h('option', { value: 'earliest' }, 'Oldest first'),
      h('option', { value: 'time' }, 'From a time'));
    this.timeInput = h('input', { class: 'input time-input', type: 'datetime-local', name: 'time', step: '0.001' });
    // Typing a time means starting there.
    this.timeInput.addEventListener('input', () => {
      if (this.timeInput.value !== '') this.startSelect.value = 'time';
    });
    this.partitionSelect = h('select', { class: 'input', name: 'partition' }, h('option', { value: '' }, 'All'));
    this.limitSelect = h('select', { class: 'input', name: 'limit' },
      PAGE_SIZES.map((size) => h('option', { value: size, selected: size === DEFAULT_PAGE_SIZE }, String(size))));
    this.keyInput = h('input', { class: 'input mono', type: 'search', name: 'key', autocomplete: 'off', placeholder: 'part of the key' });
    this.valueInput = h('input', { class: 'input mono', type: 'search', name: 'value', autocomplete: 'off', placeholder: 'part of the value' });
    this.headerInput = h('input', { class: 'input mono', type: 'search', name: 'header', autocomplete: 'off', placeholder: 'name:value' });
    this.formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
    this.zoneHint = h('span', {});
    const form = h('form', { class: 'record-query', 'aria-label': 'Search records' },
      h('div', { class: 'query-row' },
        field('Start', this.startSelect),
        field('From time', this.timeInput, this.zoneHint),
        field('Partition', this.partitionSelect),
        field('Per page', this.limitSelect)),
      h('div', { class: 'query-row' },
        field('Key contains', this.keyInput),
        field('Value contains', this.valueInput),
        field('Header', this.headerInput, 'name:value, value optional'),
        h('div', { class: 'query-buttons' },
          button('Search', { kind: 'primary', type: 'submit' }),
          button('Clear', { onclick: () => this.clear() }))),
      this.formError);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.search();
    });

    this.tailButton = h('button', { class: 'btn small tail-toggle', type: 'button', 'aria-pressed': 'false', onclick: () => this.toggleTail() },
      h('span', { class: 'tail-dot', 'aria-hidden': 'true' }), 'Live tail');
    this.tailState = h('span', { class: 'tail-state muted', role: 'status' });
    this.zoneButtons = ['utc', 'local'].map((zone) => h('button', {
      type: 'button',
      'aria-pressed': 'false',
      dataset: { zone },
      onclick: () => setTimeZone(zone),
    }, zone === 'utc' ? 'UTC' : 'Local'));
    this.jsonlLink = h('a', { class: 'btn small', download: `${this.name}-records.jsonl`, onclick: (event) => downloadWithSession(event, this.jsonlLink) }, 'Export JSON Lines');
    this.csvLink = h('a', { class: 'btn small', download: `${this.name}-records.csv`, onclick: (event) => downloadWithSession(event, this.csvLink) }, 'Export CSV');
    const viewBar = h('div', { class: 'record-viewbar' },
      h('div', { class: 'viewbar-group' }, this.tailButton, this.tailState),
      h('div', { class: 'viewbar-group' },
        h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time zone' }, this.zoneButtons),
        this.jsonlLink, this.csvLink));

    this.status = h('p', { class: 'record-status muted', role: 'status', 'data-testid': 'record-status' });
    this.notices = h('div', { class: 'record-notices' });
    this.tbody = h('tbody', {});
    const table = h('table', { class: 'table records-table', 'data-testid': 'records-table' },
      h('thead', {}, h('tr', {},
        h('th', { class: 'num' }, 'Offset'),
        h('th', { class: 'num' }, 'Partition'),
        h('th', {}, 'Timestamp'),
        h('th', {}, 'Key'),
        h('th', {}, 'Value'),
        h('th', {}, 'Headers'))),
      this.tbody);
    this.table = table;
    this.moreButton = button('Load more', { onclick: () => this.more() });
    this.moreButton.hidden = true;
    this.end = h('span', { class: 'muted' });
    this.footer = h('div', { class: 'pager' }, this.moreButton, this.end);
    this.element = h('section', { class: 'card records-card', 'data-testid': 'records' },
      h('header', { class: 'card-head' },
        h('div', { class: 'card-titles' }, h('h2', { class: 'card-title' }, 'Records'),
          h('span', { class: 'card-note' }, 'all partitions, merged by timestamp'))),
      h('div', { class: 'card-body' },
        form, viewBar, this.status, this.notices,
        h('div', { class: 'table-wrap records-wrap' }, table),
        this.footer));
    this.showZone();
    this.updateExports();
  }

  /** Keeps the partition choices in step with the topic. */
  setPartitions(numbers) {
    if (JSON.stringify(numbers) === JSON.stringify(this.partitions)) return;
    this.partitions = numbers;
    const chosen = this.partitionSelect.value;
    replace(this.partitionSelect, h('option', { value: '' }, 'All'),
      numbers.map((n) => h('option', { value: n, selected: String(n) === chosen }, String(n))));
  }

  /** The query the form describes; throws with a message for the form when it cannot be. */
  readForm() {
    let from = this.startSelect.value;
    if (from === 'time') {
      const at = parseInputTime(this.timeInput.value);
      if (Number.isNaN(at)) throw new Error('Pick the time to start from, or start at the newest or oldest record.');
      from = new Date(at).toISOString();
    }
    const header = this.headerInput.value.trim();
    if (header !== '' && !header.includes(':')) throw new Error('A header filter is name:value (the value may be empty), e.g. source:api');
    return {
      from,
      key: this.keyInput.value,
      value: this.valueInput.value,
      header,
      partition: this.partitionSelect.value,
      limit: Number(this.limitSelect.value),
    };
  }

  /** The query string of the applied query, for a page, the stream or an export. */
  params({ from = true, limit = false, cursor = null } = {}) {
    const params = new URLSearchParams();
    const { query } = this;
    if (from && query.from !== 'latest') params.set('from', query.from);
    for (const name of ['key', 'value', 'header']) {
      if (query[name] !== '') params.set(name, query[name]);
    }
    if (query.partition !== '') params.set('partition', query.partition);
    if (limit) params.set('limit', String(query.limit));
    if (cursor) params.set('cursor', cursor);
    return params;
  }

  /** Runs the form's query from its first page. */
  async search() {
    let query;
    try {
      query = this.readForm();
    } catch (error) {
      this.formError.textContent = error.message;
      this.formError.hidden = false;
      return;
    }
    this.formError.hidden = true;
    this.query = query;
    this.updateExports();
    if (this.closeTail) {
      // The stream was opened with the old filters: open it again with the new ones (which
      // reads the newest page), or stop it when the search starts elsewhere.
      this.stopTail(query.from === 'latest' ? '' : 'Live tail off: it follows the newest records only.');
      if (query.from === 'latest') return this.startTail();
    }
    await this.load();
  }

  /** Shows only one partition's records (from the partitions table). */
  showPartition(partition) {
    this.partitionSelect.value = String(partition);
    this.element.scrollIntoView({ block: 'start' });
    return this.search();
  }

  clear() {
    this.startSelect.value = 'latest';
    this.timeInput.value = '';
    this.keyInput.value = '';
    this.valueInput.value = '';
    this.headerInput.value = '';
    this.partitionSelect.value = '';
    return this.search();
  }

  /** The first page of the applied query, replacing what is shown. */
  async load() {
    const ticket = ++this.ticket;
    this.moreButton.disabled = true;
    await this.context.attempt('records', async () => {
      const page = await api(`${this.base}?${this.params({ limit: true })}`);
      if (ticket !== this.ticket || !this.context.alive) return;
      // Records the live tail brought while the page was read stay on top.
      const tailed = this.closeTail ? this.records.filter((record) => record.tailed) : [];
      this.records = [];
      this.seen.clear();
      this.coverage.clear();
      this.skipped.clear();
      this.bytesRead = 0;
      this.order = page.order;
      this.addPage(page);
      const missing = tailed.filter((record) => !this.seen.has(recordId(record)));
      for (const record of missing) this.seen.add(recordId(record));
      this.records.unshift(...missing);
      this.renderRows();
    });
    if (ticket === this.ticket) this.renderFooter();
  }

  /** The next page through the cursor, added below. */
  async more() {
    if (!this.cursor) return;
    const ticket = ++this.ticket;
    this.moreButton.disabled = true;
    await this.context.attempt('records', async () => {
      const page = await api(`${this.base}?${this.params({ limit: true, cursor: this.cursor })}`);
      if (ticket !== this.ticket || !this.context.alive) return;
      const added = this.addPage(page);
      this.tbody.querySelector('.empty-row')?.remove();
      this.tbody.append(...added.map((record) => recordRow(record)));
      if (this.records.length === 0) this.renderRows();
    });
    if (ticket === this.ticket) this.renderFooter();
  }

  /** Takes in one page: its records not shown yet, its cursor and how far it read. */
  addPage(page) {
    const added = page.records.filter((record) => !this.seen.has(recordId(record)));
    for (const record of added) this.seen.add(recordId(record));
    this.records.push(...added);
    this.cursor = page.cursor;
    this.stoppedBy = page.stopped_by;
    this.bytesRead += page.bytes_read;
    this.lastCount = page.records.length;
    for (const scan of page.partitions) {
      const known = this.coverage.get(scan.partition);
      this.coverage.set(scan.partition, known
        ? { ...scan, scanned_from: Math.min(known.scanned_from, scan.scanned_from), scanned_to: Math.max(known.scanned_to, scan.scanned_to) }
        : scan);
      for (const batch of scan.skipped) this.skipped.set(`${scan.partition}:${batch.from_offset}`, { partition: scan.partition, ...batch });
    }
    return added;
  }

  /** Draws every shown record afresh (a new query, or another time zone). */
  renderRows() {
    const rows = this.records.map((record) => recordRow(record, { highlight: recordId(record) === this.highlight }));
    replace(this.tbody, rows.length > 0 ? rows : h('tr', { class: 'empty-row' }, h('td', { colspan: 6 }, this.emptyText())));
    this.renderStatus();
  }

  emptyText() {
    const filtered = ['key', 'value', 'header', 'partition'].some((name) => this.query[name] !== '');
    if (this.stoppedBy && BOUNDS[this.stoppedBy]) return 'No matching record in the part read so far: load more to search on.';
    if (filtered) return 'No record matches the search.';
    if (this.query.from !== 'latest' && this.query.from !== 'earliest') return 'No records from that time on.';
    return 'This topic holds no records.';
  }

  /**
   * Sizes the key column to the longest key shown (within KEY_CHARS): IPv4 keys leave room
   * for the value, ids and IPv6 addresses get what they need to read whole. Set through the
   * CSSOM (a custom property), as the page's content policy wants.
   */
  fitKeyColumn() {
    const longest = this.records.reduce((most, record) => Math.max(most,
      (record.key?.length ?? 4) + (record.key_encoding === 'base64' ? 8 : 0)), 0);
    const chars = Math.min(KEY_CHARS.max, Math.max(KEY_CHARS.min, longest));
    this.table.style.setProperty('--key-chars', String(chars));
  }

  renderStatus() {
    this.fitKeyColumn();
    const shown = this.records.length;
    const order = this.order === 'newest_first' ? 'newest first' : 'oldest first';
    const scans = [...this.coverage.values()];
    const partitions = this.query.partition === '' ? `across ${plural(scans.length, 'partition')}` : `in partition ${this.query.partition}`;
    this.status.textContent = `${plural(shown, 'record')} shown, ${order}, ${partitions}; ${bytes(this.bytesRead)} read.`;
    const notices = [];
    if (BOUNDS[this.stoppedBy]) notices.push(this.boundNotice(scans));
    if (this.skipped.size > 0) {
      notices.push(h('div', { class: 'notice danger', 'data-testid': 'skipped-batches' },
        h('strong', {}, 'Unreadable batches were stepped over: '),
        h('ul', {}, [...this.skipped.values()].map((batch) => h('li', { 'data-testid': 'skipped-batch' },
          `partition ${batch.partition}, offsets ${batch.from_offset === batch.to_offset ? batch.from_offset : `${batch.from_offset}–${batch.to_offset}`}: ${batch.reason}`)))));
    }
    replace(this.notices, notices);
  }

  /** Why the scan stopped short, and how much of each partition it covered. */
  boundNotice(scans) {
    const total = scans.reduce((sum, scan) => sum + Math.max(0, scan.latest_offset - scan.earliest_offset), 0);
    const covered = scans.reduce((sum, scan) => sum + Math.max(0, scan.scanned_to - scan.scanned_from), 0);
    return h('div', { class: 'notice warn', 'data-testid': 'scan-bound' },
      h('p', {}, `The search stopped at ${BOUNDS[this.stoppedBy]} after covering ${int(covered)} of ${int(total)} offsets`
        + ` (${percent(total === 0 ? 1 : covered / total)}). Records ${this.order === 'newest_first' ? 'further back' : 'further on'} were not searched yet: “Load more” goes on from there.`),
      h('details', {},
        h('summary', {}, 'Progress by partition'),
        h('ul', { class: 'scan-list' }, scans.map((scan) => h('li', {},
          `Partition ${scan.partition}: offsets ${int(scan.scanned_from)}–${int(scan.scanned_to)} of ${int(scan.earliest_offset)}–${int(scan.latest_offset)}`
          + (scan.reached_end ? ' (all read)' : ''))))));
  }

  renderFooter() {
    const more = this.cursor !== null && this.cursor !== undefined;
    this.moreButton.hidden = !more;
    this.moreButton.disabled = false;
    if (!more) {
      this.end.textContent = this.records.length > 0 ? 'That is every record back to the oldest.' : '';
    } else if (this.order === 'oldest_first' && this.stoppedBy === 'end') {
      this.end.textContent = this.lastCount === 0 ? 'Nothing newer yet.' : 'Up to the newest record; load more for records written since.';
    } else {
      this.end.textContent = '';
    }
    this.renderStatus();
  }

  /** Export links follow the applied query (not its cursor): the whole result, downloaded. */
  updateExports() {
    for (const [link, format] of [[this.jsonlLink, 'jsonl'], [this.csvLink, 'csv']]) {
      const params = this.params();
      params.set('format', format);
      link.href = `${this.base}/export?${params}`;
    }
  }

  /** After a produce: the newest records with the filters kept, the new one marked. */
  async showProduced({ partition, offset }) {
    this.highlight = `${partition}:${offset}`;
    // The live tail brings it (marked when it comes); otherwise the newest page is read.
    if (this.closeTail) {
      this.tbody.querySelector(`tr.record[data-partition="${partition}"][data-offset="${offset}"]`)?.classList.add('highlight');
      return undefined;
    }
    if (this.startSelect.value !== 'latest') this.startSelect.value = 'latest';
    return this.search();
  }

  showZone() {
    const zone = timeZone();
    for (const zoneButton of this.zoneButtons) {
      const active = zoneButton.dataset.zone === zone;
      zoneButton.classList.toggle('active', active);
      zoneButton.setAttribute('aria-pressed', String(active));
    }
    this.zoneHint.textContent = zone === 'utc' ? 'in UTC' : `in local time (UTC${preciseTime(Date.now(), 'local').slice(-6)})`;
  }

  /** Another zone: timestamps are redrawn, and a typed time keeps meaning the same moment. */
  zoneChanged() {
    const previous = this.shownZone;
    if (this.timeInput.value !== '') {
      const at = parseInputTime(this.timeInput.value, previous);
      if (!Number.isNaN(at)) this.timeInput.value = inputTime(at);
    }
    this.shownZone = timeZone();
    this.showZone();
    for (const cell of this.tbody.querySelectorAll('tr.record')) {
      const record = this.records.find((r) => r.partition === Number(cell.dataset.partition) && r.offset === Number(cell.dataset.offset));
      if (record) replace(cell.querySelector('.rec-time'), timeView(record));
    }
  }

  toggleTail() {
    if (this.closeTail) this.stopTail('Live tail off.');
    else this.startTail();
  }

  /**
   * Starts the live tail: newest first (new records belong on top), the stream opened with
   * the same filters, and once it is open the newest page read again so nothing written in
   * between is missed (records already shown are not repeated).
   */
  async startTail() {
    if (this.startSelect.value !== 'latest' || this.query.from !== 'latest') {
      this.startSelect.value = 'latest';
      this.query = { ...this.query, from: 'latest' };
      this.updateExports();
    }
    this.tailButton.setAttribute('aria-pressed', 'true');
    this.tailButton.classList.add('active');
    this.tailState.textContent = 'Connecting…';
    this.tailed = 0;
    let opened = false;
    this.closeTail = openStream(`${this.base}/stream?${this.params({ from: false })}`, {
      onOpen: () => {
        if (opened) return;
        opened = true;
        this.tailState.textContent = 'Waiting for new records…';
        this.load();
      },
      onRecord: (record) => this.addTailed(record),
      onEnd: (end) => this.stopTail(end.reason === 'max_duration'
        ? 'Live tail ended after an hour; turn it on again to go on.'
        : `Live tail stopped: ${end.error ?? end.reason}`),
      onFail: (message) => this.stopTail(`Live tail stopped: ${message}.`),
    });
  }

  stopTail(message = '') {
    if (this.closeTail) {
      this.closeTail();
      this.closeTail = null;
    }
    if (!this.context.alive) return;
    this.tailButton.setAttribute('aria-pressed', 'false');
    this.tailButton.classList.remove('active');
    this.tailState.textContent = message;
  }

  /** A record from the live tail goes on top, marked new; the view keeps at most MAX_SHOWN. */
  addTailed(record) {
    const id = recordId(record);
    if (this.seen.has(id)) return;
    this.seen.add(id);
    const tailed = { ...record, tailed: true };
    this.records.unshift(tailed);
    this.tbody.querySelector('.empty-row')?.remove();
    this.tbody.prepend(recordRow(tailed, { fresh: true, highlight: id === this.highlight }));
    while (this.records.length > MAX_SHOWN) {
      const dropped = this.records.pop();
      this.seen.delete(recordId(dropped));
      this.tbody.lastElementChild?.remove();
    }
    this.tailed += 1;
    this.tailState.textContent = `${plural(this.tailed, 'new record')} since the tail started.`;
    this.renderStatus();
  }
}
