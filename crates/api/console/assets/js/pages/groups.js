// Consumer groups: every group with its state and total lag (`#/groups`), and one group's
// members, their assignments and the lag of each partition it commits (`#/groups/<id>`).
// On a group's page its offsets of a topic can be reset (previewed first), its offsets of a
// topic deleted, and the group itself deleted. Kafka allows all three only while the group
// has no members, so the server's 409 is shown as what to do: stop the consumers.

import { ApiError, api, segment } from '../api.js';
import { append, h, renderWhenChanged, replace } from '../dom.js';
import { int, plural } from '../format.js';
import { POLL_MS } from '../page.js';
import { go, href } from '../router.js';
import { badge, button, card, confirmDialog, emptyState, field, formDialog, iconButton, stat, table, toast } from '../ui.js';

function stateTone(state) {
  return { Stable: 'ok', PreparingRebalance: 'warn', CompletingRebalance: 'warn', Empty: 'muted', Dead: 'danger' }[state] ?? 'muted';
}

function groupPath(id) {
  return `/api/v1/groups/${segment(id)}`;
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

/**
 * Whether a 409 is the refusal of a group with members (rather than, say, a shift meeting a
 * partition without a committed offset, which is a 409 too).
 */
function refusedForMembers(error) {
  return error instanceof ApiError && error.status === 409 && /\b(active|not empty|members?)\b/.test(error.message);
}

/** The 409 of a group with members, said as what to do about it. */
function membersNotice(group, error) {
  return h('div', { class: 'callout danger', role: 'alert', 'data-testid': 'reset-refused' },
    h('strong', { class: 'callout-title' }, 'Stop the consumers first'),
    h('p', {}, `Group ${group} has active members. Kafka moves or deletes a group's offsets only while it has none: running consumers would overwrite the new offsets at their next commit. Stop every consumer of the group, wait until its state is Empty, then try again.`),
    h('p', { class: 'callout-detail' }, `Server: ${error.message}`));
}

/** Each topic of a group: those it has committed offsets in, and those its members are assigned. */
function groupTopics(group) {
  const topics = new Map();
  const entry = (topic) => {
    if (!topics.has(topic)) topics.set(topic, { topic, partitions: 0, lag: 0, assigned: false });
    return topics.get(topic);
  };
  for (const offset of group.offsets) {
    const row = entry(offset.topic);
    row.partitions += 1;
    row.lag += offset.lag;
  }
  for (const member of group.members) {
    for (const assignment of member.assignments) entry(assignment.topic).assigned = true;
  }
  return [...topics.values()].sort((a, b) => a.topic.localeCompare(b.topic));
}

// ---------- Offset reset ----------

const TARGETS = [
  ['earliest', 'Earliest offset'],
  ['latest', 'Latest offset'],
  ['time', 'A date and time'],
  ['offset', 'An offset'],
  ['shift', 'A shift from the committed offset'],
];

/** Reads "0, 2 5" as `[0, 2, 5]`; blank is every partition (undefined). */
function partitionList(text) {
  const parts = text.split(/[\s,]+/).filter((part) => part !== '');
  if (parts.length === 0) return undefined;
  const numbers = parts.map((part) => {
    if (!/^\d+$/.test(part)) throw new Error(`Partitions: “${part}” is not a partition number`);
    return Number(part);
  });
  if (new Set(numbers).size !== numbers.length) throw new Error('Partitions: each partition once');
  return numbers;
}

/** A whole number, optionally negative, from an input; `name` is for the message. */
function integerInput(input, name, { negative = false } = {}) {
  const text = input.value.trim();
  const pattern = negative ? /^[-+]?\d+$/ : /^\d+$/;
  if (!pattern.test(text)) throw new Error(`${name} must be a whole number${negative ? ' (negative moves back)' : ''}`);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`${name} is too large`);
  return value;
}

/** The `to` of a reset from the form's target and its value. */
function resetTarget(kind, inputs) {
  if (kind === 'earliest' || kind === 'latest') return kind;
  if (kind === 'time') {
    // A datetime-local value has no zone: it is this browser's local time, sent as UTC.
    const at = new Date(inputs.time.value);
    if (inputs.time.value === '' || Number.isNaN(at.getTime())) throw new Error('Enter the date and time to reset to');
    if (at.getTime() < 0) throw new Error('The date and time must be after 1970-01-01');
    return at.toISOString();
  }
  if (kind === 'offset') return { offset: integerInput(inputs.offset, 'Offset') };
  const shift = integerInput(inputs.shift, 'Shift', { negative: true });
  if (shift === 0) throw new Error('A shift of 0 moves nothing; enter how many offsets to move');
  return { shift };
}

function signed(value) {
  if (value === 0) return h('span', { class: 'muted' }, 'no change');
  return h('span', { class: value > 0 ? 'change-up' : 'change-down' }, `${value > 0 ? '+' : '−'}${int(Math.abs(value))}`);
}

/** The table of a reset's answer: each partition's offset before and after. */
function resetTable(answer, testid) {
  return table({
    testid,
    rows: answer.partitions,
    empty: 'The topic has no partitions to reset.',
    columns: [
      { label: 'Partition', className: 'num mono', cell: (row) => String(row.partition) },
      { label: 'Committed now', className: 'num mono', cell: (row) => (row.previous_offset === null ? h('span', { class: 'muted', title: 'No committed offset' }, 'none') : int(row.previous_offset)) },
      { label: 'New offset', className: 'num mono strong', cell: (row) => int(row.new_offset) },
      { label: 'Change', className: 'num', cell: (row) => (row.previous_offset === null ? h('span', { class: 'muted' }, 'new') : signed(row.new_offset - row.previous_offset)) },
      { label: 'Lag after', className: 'num', title: 'Latest offset minus the new offset', cell: (row) => int(row.latest_offset - row.new_offset) },
      { label: 'Log', className: 'num mono nowrap', title: 'The partition’s earliest and latest offsets', cell: (row) => `${int(row.earliest_offset)}–${int(row.latest_offset)}` },
    ],
  });
}

function summary(answer) {
  const moved = answer.partitions.filter((row) => row.previous_offset !== row.new_offset).length;
  return `${int(moved)} of ${plural(answer.partitions.length, 'partition')} would move.`;
}

/**
 * The reset form in a dialog. Nothing is committed before a preview (`dry_run: true`) of the
 * same settings was shown; changing any setting takes the preview back.
 */
function resetDialog({ group, topic = '', members = 0, topics = [], onDone }) {
  const inputs = {
    topic: h('input', { class: 'input', name: 'topic', value: topic, required: true, autocomplete: 'off', list: 'reset-topics', spellcheck: 'false' }),
    partitions: h('input', { class: 'input', name: 'partitions', placeholder: 'all', autocomplete: 'off', inputmode: 'numeric' }),
    target: h('select', { class: 'input', name: 'target' }, TARGETS.map(([value, label]) => h('option', { value }, label))),
    time: h('input', { class: 'input', type: 'datetime-local', name: 'time', step: 1 }),
    offset: h('input', { class: 'input', name: 'offset', inputmode: 'numeric', autocomplete: 'off', placeholder: '0' }),
    shift: h('input', { class: 'input', name: 'shift', inputmode: 'numeric', autocomplete: 'off', placeholder: '-100' }),
  };
  const valueFields = {
    time: field('Date and time (local)', inputs.time, 'Each partition moves to its first record at or after this time (its latest offset when none is that recent).'),
    offset: field('Offset', inputs.offset, 'Clamped to each partition’s earliest and latest offsets.'),
    shift: field('Shift by', inputs.shift, 'Added to each committed offset; negative moves back (re-reads), positive skips ahead.'),
  };
  const datalist = h('datalist', { id: 'reset-topics' }, topics.map((name) => h('option', { value: name })));
  const result = h('div', { class: 'reset-result', 'aria-live': 'polite' });
  const previewButton = button('Preview', { onclick: () => preview() });
  let previewed = null;
  let submitButton = null;

  const request = () => {
    const name = inputs.topic.value.trim();
    if (name === '') throw new Error('Enter the topic whose offsets move');
    const body = { topic: name, to: resetTarget(inputs.target.value, inputs) };
    const partitions = partitionList(inputs.partitions.value);
    if (partitions) body.partitions = partitions;
    return body;
  };
  const showTarget = () => {
    for (const [kind, element] of Object.entries(valueFields)) element.hidden = inputs.target.value !== kind;
  };
  const setReady = (ready) => {
    if (submitButton) submitButton.disabled = !ready;
  };
  const fail = (error) => {
    replace(result, refusedForMembers(error)
      ? membersNotice(group, error)
      : h('p', { class: 'form-error', role: 'alert' }, error.message));
  };
  const preview = async () => {
    let body;
    try {
      body = request();
    } catch (error) {
      previewed = null;
      setReady(false);
      fail(error);
      return;
    }
    previewButton.disabled = true;
    replace(result, h('p', { class: 'muted' }, 'Computing the new offsets…'));
    try {
      const answer = await api(`${groupPath(group)}/reset-offsets`, { method: 'POST', body: { ...body, dry_run: true } });
      // Settings changed while the preview was computed: it shows something else.
      if (!sameAs(JSON.stringify(body))) {
        replace(result, h('p', { class: 'muted' }, 'The settings changed: preview again before resetting.'));
        return;
      }
      previewed = JSON.stringify(body);
      // "Latest" and a time are looked up again by the commit: records may arrive meanwhile.
      const moving = body.to === 'latest' || (typeof body.to === 'string' && body.to !== 'earliest');
      replace(result,
        h('p', { class: 'reset-summary' }, h('strong', {}, 'Preview: '), summary(answer), ' Nothing is committed until you confirm.',
          moving ? ' Records written meanwhile can move the new offsets further when you confirm.' : null),
        resetTable(answer, 'reset-preview'));
      setReady(true);
    } catch (error) {
      previewed = null;
      setReady(false);
      fail(error);
    } finally {
      previewButton.disabled = false;
    }
  };
  const sameAs = (settings) => {
    try {
      return JSON.stringify(request()) === settings;
    } catch {
      return false;
    }
  };
  // Any change after a preview takes it back: what is confirmed is what was shown.
  const changed = () => {
    showTarget();
    if (previewed === null || sameAs(previewed)) return;
    previewed = null;
    setReady(false);
    replace(result, h('p', { class: 'muted' }, 'The settings changed: preview again before resetting.'));
  };

  const dialog = formDialog({
    title: `Reset offsets of ${group}`,
    submitLabel: 'Reset offsets',
    testid: 'reset-offsets',
    wide: true,
    build: (form) => {
      append(form,
        members > 0
          ? h('p', { class: 'callout warn' }, `This group has ${plural(members, 'member')}. Offsets can be reset only while it has none: stop its consumers first.`)
          : null,
        h('div', { class: 'form-row' },
          field('Topic', inputs.topic),
          field('Partitions', inputs.partitions, 'Blank for all, or e.g. 0, 2')),
        datalist,
        h('div', { class: 'form-row' },
          field('Reset to', inputs.target),
          h('div', { class: 'reset-value' }, Object.values(valueFields))),
        h('div', { class: 'reset-preview-bar' }, previewButton,
          h('span', { class: 'field-hint' }, 'Shows each partition’s new offset; commits nothing.')),
        result);
      form.addEventListener('input', changed);
      form.addEventListener('change', changed);
      // Enter previews when there is nothing to confirm yet (the disabled Reset button would
      // otherwise make Enter do nothing at all).
      form.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && event.target instanceof HTMLInputElement && previewed === null) {
          event.preventDefault();
          preview();
        }
      });
    },
    submit: async () => {
      const body = request();
      if (JSON.stringify(body) !== previewed) throw new Error('Preview the reset first.');
      let answer;
      try {
        answer = await api(`${groupPath(group)}/reset-offsets`, { method: 'POST', body: { ...body, dry_run: false } });
      } catch (error) {
        if (!refusedForMembers(error)) throw error;
        // Members joined since the preview: say so where the preview was.
        previewed = null;
        fail(error);
        throw new Error('Nothing was reset.');
      }
      const moved = answer.partitions.filter((row) => row.previous_offset !== row.new_offset).length;
      toast(`Reset ${group} on ${answer.topic}: ${plural(moved, 'partition')} moved`);
      onDone();
    },
  });
  submitButton = dialog.querySelector('.dialog-actions button[type="submit"]');
  showTarget();
  setReady(false);
  // Opened for a topic, the next thing to choose is where to; opened from the header, the topic.
  if (inputs.topic.value === '') inputs.topic.focus();
  else inputs.target.focus();
  return dialog;
}

/** Opens the reset dialog, offering every topic of the cluster as the topic. */
async function openReset(group, topic, members, onDone) {
  let topics = [];
  try {
    topics = (await api('/api/v1/topics')).topics.filter((t) => !t.internal).map((t) => t.name).sort();
  } catch {
    // The list only helps typing; the dialog works without it.
  }
  resetDialog({ group, topic, members, topics, onDone });
}

// ---------- Deleting ----------

function deleteGroup(group) {
  confirmDialog({
    title: `Delete group ${group}?`,
    text: `The group and all its committed offsets are removed. Consumers that join ${group} later start where their auto.offset.reset setting says.`,
    confirmLabel: 'Delete group',
    testid: 'confirm-delete-group',
    action: async () => {
      try {
        await api(groupPath(group), { method: 'DELETE' });
      } catch (error) {
        if (!refusedForMembers(error)) throw error;
        throw new Error(`Stop the consumers first: ${group} has active members, and Kafka deletes only a group without members. (${error.message})`);
      }
      toast(`Deleted group ${group}`);
      go('groups');
    },
  });
}

function deleteOffsets(group, row, onDone) {
  confirmDialog({
    title: `Delete the offsets of ${group} in ${row.topic}?`,
    text: `The group forgets its committed offsets in ${plural(row.partitions, 'partition')} of ${row.topic}. A consumer of the group that reads ${row.topic} later starts where its auto.offset.reset setting says.`,
    confirmLabel: 'Delete offsets',
    testid: 'confirm-delete-offsets',
    action: async () => {
      try {
        await api(`${groupPath(group)}/offsets/${segment(row.topic)}`, { method: 'DELETE' });
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 409)) throw error;
        throw new Error(`Stop the consumers first: members of ${group} read ${row.topic}. (${error.message})`);
      }
      toast(`Deleted the offsets of ${group} in ${row.topic}`);
      onDone();
    },
  });
}

// ---------- Pages ----------

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
  // The latest description, for the actions (how many members, which topics).
  let latest = null;
  let refresh = () => {};
  const members = () => latest?.members.length ?? 0;
  context.header({
    title: id,
    crumbs: [['Consumer groups', href('groups')]],
    actions: [
      button('Reset offsets…', { onclick: () => openReset(id, '', members(), () => refresh()) }),
      button('Delete group', { kind: 'danger-outline', onclick: () => deleteGroup(id) }),
    ],
  });
  const tiles = h('div', { class: 'stats' });
  const memberList = h('div', {});
  const topicList = h('div', {});
  const offsets = h('div', {});
  context.body.append(
    tiles,
    card({ title: 'Members', body: memberList }),
    card({ title: 'Topics', note: 'reset or delete the group’s offsets of one topic', body: topicList, testid: 'group-topics' }),
    card({ title: 'Committed offsets', note: 'lag is the latest offset minus the committed one', body: offsets }));

  const load = async () => {
    let group;
    try {
      group = await api(groupPath(id));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      // Deleted (or its last offsets were): asking again every two seconds changes nothing.
      poller.stop();
      if (!context.alive) return;
      context.live.hidden = true;
      context.body.replaceChildren(card({
        body: emptyState(`No consumer group ${id}`, 'The cluster does not know this group: it was deleted, or it has no members and no committed offsets left.',
          h('a', { class: 'btn primary', href: href('groups') }, 'All consumer groups')),
      }));
      return;
    }
    if (!context.alive) return;
    latest = group;
    const partitions = group.offsets.length;
    tiles.replaceChildren(
      stat({ label: 'State', value: badge(group.state, stateTone(group.state)), sub: group.protocol ? `${group.protocol_type} · ${group.protocol}` : group.protocol_type || '\u00a0' }),
      stat({ label: 'Members', value: int(group.members.length), sub: plural(new Set(group.members.map((m) => m.client_host)).size, 'host') }),
      stat({ label: 'Total lag', value: int(group.lag), sub: `over ${plural(partitions, 'partition')}`, testid: 'group-lag', tone: group.lag > 0 ? 'warn' : null }),
      stat({ label: 'Topics', value: int(new Set(group.offsets.map((o) => o.topic)).size), sub: 'with committed offsets' }));
    renderWhenChanged(memberList, group.members, () => table({
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
    const topics = groupTopics(group);
    renderWhenChanged(topicList, { topics, members: group.members.length }, () => table({
      testid: 'topics-of-group',
      rows: topics,
      empty: 'No topics: the group has no committed offsets and no assignments.',
      rowProps: (row) => ({ 'data-topic': row.topic }),
      columns: [
        { label: 'Topic', cell: (row) => h('a', { class: 'strong-link', href: href('topics', row.topic) }, row.topic) },
        // On a phone the actions matter more than these two: they are left out there.
        { label: 'Committed partitions', className: 'num hide-narrow', cell: (row) => int(row.partitions) },
        { label: 'Lag', className: 'num', cell: (row) => (row.partitions > 0 ? int(row.lag) : '—') },
        { label: 'Read by members', className: 'hide-narrow', cell: (row) => (row.assigned ? badge('assigned', 'info') : h('span', { class: 'muted' }, 'no')) },
        {
          label: '',
          className: 'actions',
          cell: (row) => h('span', { class: 'row-actions' },
            button('Reset offsets', { small: true, title: `Reset the offsets of ${id} in ${row.topic}`, onclick: () => openReset(id, row.topic, members(), () => refresh()) }),
            row.partitions > 0
              ? iconButton('trash', `Delete the offsets of ${id} in ${row.topic}`, { kind: 'danger', onclick: () => deleteOffsets(id, row, () => refresh()) })
              : null),
        },
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
  };
  const poller = context.every(POLL_MS, load);
  refresh = () => (poller.stopped ? null : context.attempt('poll', load));
}

export default {
  mount(context, [id]) {
    if (id === undefined) mountList(context);
    else mountGroup(context, id);
  },
};
