// Consumer groups: every group with its state and total lag (`#/groups`), and one group's
// members, their assignments and the lag of each partition it commits (`#/groups/<id>`).

import { api, segment } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { int, plural } from '../format.js';
import { POLL_MS } from '../page.js';
import { href } from '../router.js';
import { badge, card, stat, table } from '../ui.js';

function stateTone(state) {
  return { Stable: 'ok', PreparingRebalance: 'warn', CompletingRebalance: 'warn', Empty: 'muted', Dead: 'danger' }[state] ?? 'muted';
}

function lagCell(lag, max) {
  if (lag === null || lag === undefined) return h('span', { class: 'muted' }, '—');
  const bar = h('span', {});
  bar.style.width = `${max > 0 ? Math.max(2, (lag / max) * 100) : 0}%`;
  return h('span', { class: `lag${lag > 0 ? ' behind' : ''}` },
    h('span', { class: 'lag-bar' }, bar),
    h('span', { class: 'lag-value' }, int(lag)));
}

function assignments(member) {
  if (member.assignments.length === 0) return h('span', { class: 'muted' }, 'none');
  return h('div', { class: 'chips' }, member.assignments.map((assignment) => h('span', { class: 'chip' },
    h('span', { class: 'chip-key' }, assignment.topic), ` ${assignment.partitions.join(', ')}`)));
}

/** The topics a group's members are assigned, each with its partition count. */
function consumedTopics(group) {
  const partitions = new Map();
  for (const member of group.members) {
    for (const assignment of member.assignments) {
      partitions.set(assignment.topic, (partitions.get(assignment.topic) ?? 0) + assignment.partitions.length);
    }
  }
  if (partitions.size === 0) return h('span', { class: 'muted' }, '—');
  return h('div', { class: 'chips' }, [...partitions].sort(([a], [b]) => a.localeCompare(b)).map(([topic, count]) => h('a', { class: 'chip', href: href('topics', topic), title: `${plural(count, 'partition')} assigned` },
    topic, h('span', { class: 'chip-key' }, ` ×${count}`))));
}

function mountList(context) {
  context.header({ title: 'Consumer groups', subtitle: 'Groups known to the cluster: their state, members and how far behind they are.' });
  const list = h('div', {});
  context.body.append(card({ title: 'All groups', body: list }));
  context.every(POLL_MS, async () => {
    const { groups } = await api('/api/v1/groups');
    if (!context.alive) return;
    const rows = [...groups].sort((a, b) => a.group_id.localeCompare(b.group_id));
    const maxLag = Math.max(0, ...rows.map((group) => group.lag ?? 0));
    renderWhenChanged(list, rows, () => table({
      testid: 'groups-table',
      rows,
      empty: 'No consumer groups yet.',
      columns: [
        { label: 'Group', cell: (group) => h('a', { class: 'strong-link', href: href('groups', group.group_id) }, group.group_id) },
        { label: 'State', cell: (group) => badge(group.state, stateTone(group.state)) },
        { label: 'Consumes', cell: consumedTopics },
        { label: 'Protocol', cell: (group) => (group.protocol ? `${group.protocol_type} · ${group.protocol}` : group.protocol_type || '—') },
        { label: 'Members', className: 'num', cell: (group) => int(group.members.length) },
        { label: 'Lag', className: 'lag-col', cell: (group) => lagCell(group.lag, maxLag) },
      ],
    }));
  });
}

function mountGroup(context, id) {
  context.header({ title: id, crumbs: [['Consumer groups', href('groups')]] });
  const tiles = h('div', { class: 'stats' });
  const members = h('div', {});
  const offsets = h('div', {});
  context.body.append(
    tiles,
    card({ title: 'Members', body: members }),
    card({ title: 'Committed offsets', note: 'lag is the latest offset minus the committed one', body: offsets }));
  context.every(POLL_MS, async () => {
    const group = await api(`/api/v1/groups/${segment(id)}`);
    if (!context.alive) return;
    const partitions = group.offsets.length;
    tiles.replaceChildren(
      stat({ label: 'State', value: badge(group.state, stateTone(group.state)), sub: group.protocol ? `${group.protocol_type} · ${group.protocol}` : group.protocol_type || '\u00a0' }),
      stat({ label: 'Members', value: int(group.members.length), sub: plural(new Set(group.members.map((m) => m.client_host)).size, 'host') }),
      stat({ label: 'Total lag', value: int(group.lag), sub: `over ${plural(partitions, 'partition')}`, testid: 'group-lag', tone: group.lag > 0 ? 'warn' : null }),
      stat({ label: 'Topics', value: int(new Set(group.offsets.map((o) => o.topic)).size), sub: 'with committed offsets' }));
    renderWhenChanged(members, group.members, () => table({
      testid: 'members-table',
      rows: group.members,
      empty: 'No members: nobody consumes with this group right now.',
      columns: [
        { label: 'Member', className: 'mono', cell: (member) => member.member_id },
        { label: 'Client', cell: (member) => member.client_id },
        { label: 'Host', className: 'mono', cell: (member) => member.client_host },
        { label: 'Assigned partitions', cell: assignments },
      ],
    }));
    const rows = [...group.offsets].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
    const maxLag = Math.max(0, ...rows.map((row) => row.lag ?? 0));
    renderWhenChanged(offsets, rows, () => table({
      testid: 'offsets-table',
      rows,
      empty: 'This group has committed no offsets.',
      columns: [
        { label: 'Topic', cell: (row) => h('a', { href: href('topics', row.topic) }, row.topic) },
        { label: 'Partition', className: 'num mono', cell: (row) => String(row.partition) },
        { label: 'Committed', className: 'num mono', cell: (row) => int(row.committed_offset) },
        { label: 'Latest', className: 'num mono', cell: (row) => int(row.latest_offset) },
        { label: 'Lag', className: 'lag-col', cell: (row) => lagCell(row.lag, maxLag) },
      ],
    }));
  });
}

export default {
  mount(context, [id]) {
    if (id === undefined) mountList(context);
    else mountGroup(context, id);
  },
};
