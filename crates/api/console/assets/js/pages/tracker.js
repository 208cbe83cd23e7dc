// Tracker: this node and the others of its group, each input partition's distinct devices
// and checkpoint, and distinct devices per event-time minute (or hour).

import { api } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { int, ago, shortId, hourMinute, dateTime } from '../format.js';
import { POLL_MS } from '../page.js';
import { BarChart } from '../chart.js';
import { badge, card, stat, table } from '../ui.js';

/** How many windows the chart spans, and how wide one is. */
const WINDOWS = {
  minute: { count: 30, ms: 60_000 },
  hour: { count: 24, ms: 3_600_000 },
};

/**
 * The chart's bars: the `count` windows up to the newest one (or the current one, when the
 * newest is older), windows without events drawn as 0 so the time axis is even.
 */
function windowBars(windows, { count, ms }) {
  const byStart = new Map(windows.map((window) => [window.start_ms, window.distinct_ips]));
  const newest = Math.max(Math.floor(Date.now() / ms) * ms, ...byStart.keys());
  return Array.from({ length: count }, (_, i) => {
    const start = newest - (count - 1 - i) * ms;
    return { label: hourMinute(start), title: dateTime(start), value: byStart.get(start) ?? 0 };
  });
}

function nodeList(unique) {
  return h('ul', { class: 'node-list', 'data-testid': 'tracker-nodes' }, unique.nodes_seen.map((node) => h('li', {},
    h('span', { class: `dot ${node === unique.node_id ? 'ok' : 'info'}` }),
    h('span', { class: 'mono' }, node),
    node === unique.node_id ? badge('this node', 'info') : null)));
}

function partitionTable(partitions, unique) {
  return table({
    testid: 'tracker-partitions',
    rows: partitions,
    empty: 'No input partitions yet: the tracker starts counting when device-events exists.',
    columns: [
      { label: 'Partition', className: 'num mono', cell: (p) => String(p.partition) },
      { label: 'Owner', cell: (p) => (p.owned ? badge('this node', 'info') : badge('other node')) },
      { label: 'Distinct devices', className: 'num', cell: (p) => int(p.distinct_ips) },
      { label: 'Events', className: 'num', cell: (p) => int(p.events) },
      { label: 'Rejected', className: 'num', cell: (p) => int(p.rejected) },
      { label: 'Checkpoint offset', className: 'num mono', cell: (p) => int(p.checkpoint_offset) },
      { label: 'Checkpoint by', className: 'mono', cell: (p) => (p.checkpoint_node === null ? '—' : h('span', { title: p.checkpoint_node }, p.checkpoint_node === unique.node_id ? 'this node' : shortId(p.checkpoint_node))) },
      { label: 'Resumed from', className: 'num mono', cell: (p) => int(p.resumed_from) },
    ],
  });
}

export default {
  mount(context) {
    context.header({
      title: 'Tracker',
      subtitle: 'Exact distinct device IPs, per partition and across every node of the group.',
    });
    let granularity = 'minute';
    const tiles = h('div', { class: 'stats' });
    const nodes = h('div', {});
    const partitions = h('div', {});
    const windows = h('div', {});
    const toggle = h('div', { class: 'segmented', role: 'group', 'aria-label': 'Window width' },
      ['minute', 'hour'].map((width) => h('button', {
        type: 'button',
        class: width === granularity ? 'active' : null,
        'aria-pressed': String(width === granularity),
        onclick: (event) => {
          granularity = width;
          for (const other of toggle.children) {
            other.classList.toggle('active', other === event.currentTarget);
            other.setAttribute('aria-pressed', String(other === event.currentTarget));
          }
          context.attempt('poll', load);
        },
      }, `Per ${width}`)));
    const windowCard = card({ title: 'Distinct devices per window', note: 'by the events’ own timestamps, UTC windows', actions: toggle, body: windows });
    context.body.append(
      tiles,
      h('div', { class: 'grid sidebar-right' },
        windowCard,
        card({ title: 'Nodes', note: 'heartbeats seen recently', body: nodes })),
      card({ title: 'Input partitions', body: partitions }));
    const chart = new BarChart(windows, { label: 'Distinct devices per window', height: 220, valueLabels: false });
    context.onDispose(() => chart.destroy());

    const load = async () => {
      const [unique, partitionList, windowList] = await Promise.all([
        api('/api/v1/unique-ips'),
        api('/api/v1/tracker/partitions'),
        api(`/api/v1/unique-ips/windows?granularity=${granularity}&limit=${WINDOWS[granularity].count}`),
      ]);
      if (!context.alive) return;
      tiles.replaceChildren(
        stat({ label: 'This node', value: h('span', { class: 'mono', title: unique.node_id }, shortId(unique.node_id)), sub: `group ${unique.group}`, testid: 'node-id' }),
        stat({ label: 'Distinct on this node', value: int(unique.node_count), sub: `${unique.partitions_owned.length} partitions owned` }),
        stat({ label: 'Distinct globally', value: int(unique.global_count), sub: `HyperLogLog: ${int(unique.global_estimate)}`, tone: 'accent', testid: 'global-count' }),
        stat({ label: 'Checkpoint', value: unique.checkpoint_age_ms === null ? 'none' : ago(unique.checkpoint_age_ms), sub: `consumer lag ${int(unique.consumer_lag)}` }));
      renderWhenChanged(nodes, unique.nodes_seen, () => nodeList(unique));
      renderWhenChanged(partitions, partitionList.partitions, (rows) => partitionTable(rows, unique));
      const bars = windowBars(windowList.windows, WINDOWS[granularity]);
      chart.update(bars);
    };
    context.every(POLL_MS, load);
  },
};
