// Login guard: the users blocked after too many failed logins, and lifting a block. Details
// and unblocking need the admin token, or a signed-in user allowed to Alter the cluster. The
// token is typed here and kept in this tab's sessionStorage only (gone when the tab closes).
// Without either the page lists names from `/blocked`.

import { ApiError, api, segment, session } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { int, when } from '../format.js';
import { POLL_MS } from '../page.js';
import { badge, button, card, confirmDialog, emptyState, field, stat, table, toast } from '../ui.js';

const TOKEN_KEY = 'freshet.adminToken';

function storedToken() {
  return window.sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function tokenForm(onChange) {
  const input = h('input', { class: 'input', type: 'password', name: 'token', autocomplete: 'off', placeholder: 'Paste the token' });
  const status = h('span', { class: 'muted token-status' });
  const forget = button('Forget', {
    kind: 'ghost',
    onclick: () => {
      window.sessionStorage.removeItem(TOKEN_KEY);
      onChange();
      render();
    },
  });
  const form = h('form', { class: 'token-form', 'aria-label': 'Admin token' },
    field('Admin token', input, 'The --admin-token freshet runs with; kept in this tab only.'),
    h('div', { class: 'token-buttons' }, button('Use token', { kind: 'primary', type: 'submit' }), forget),
    status);
  const render = () => {
    const saved = storedToken() !== '';
    status.replaceChildren(saved ? badge('token set for this tab', 'ok') : badge('no token', 'muted'));
    forget.hidden = !saved;
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === '') return;
    window.sessionStorage.setItem(TOKEN_KEY, token);
    input.value = '';
    render();
    onChange();
  });
  render();
  return form;
}

/**
 * Whether this tab's signed-in user may see the details without the admin token (no
 * authorizer, or Alter on the cluster). Asked once per session: a refusal is not retried
 * every poll.
 */
let adminCheck = { token: null, allowed: false };

async function signedInAdmin() {
  const current = session();
  if (current === null) return false;
  if (adminCheck.token !== current.token) {
    let allowed = true;
    try {
      await api('/api/v1/blocked');
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 403) throw error;
      allowed = false;
    }
    adminCheck = { token: current.token, allowed };
  }
  return adminCheck.allowed;
}

function unblock(user, refresh) {
  confirmDialog({
    title: `Unblock ${user}?`,
    text: `${user} can log in again at once, and their failed-login count starts over.`,
    confirmLabel: 'Unblock',
    testid: 'confirm-unblock',
    action: async () => {
      await api(`/api/v1/blocked/${segment(user)}`, { method: 'DELETE', token: storedToken() });
      toast(`Unblocked ${user}`);
      refresh();
    },
  });
}

function detailedTable(blocks, refresh) {
  return table({
    testid: 'blocked-table',
    rows: blocks,
    empty: 'Nobody is blocked.',
    columns: [
      { label: 'User', className: 'strong', cell: (block) => block.user },
      { label: 'Blocked since', className: 'nowrap', cell: (block) => when(block.since_ms) },
      { label: 'Until', className: 'nowrap', cell: (block) => (block.until_ms === null ? badge('lifted by an admin', 'warn') : when(block.until_ms)) },
      { label: 'Failed logins', className: 'num', cell: (block) => int(block.failures) },
      { label: 'Last failure', className: 'nowrap', cell: (block) => when(block.last_failure_ms) },
      { label: '', className: 'actions', cell: (block) => button('Unblock', { small: true, onclick: () => unblock(block.user, refresh) }) },
    ],
  });
}

function namesTable(names) {
  return table({
    testid: 'blocked-table',
    rows: names,
    empty: 'Nobody is blocked.',
    columns: [
      { label: 'User', className: 'strong', cell: (name) => name },
      { label: 'Details', cell: () => h('span', { class: 'muted' }, 'enter the admin token to see them and to unblock') },
    ],
  });
}

export default {
  mount(context) {
    context.header({
      title: 'Login guard',
      subtitle: 'Users blocked after repeated failed logins (counted per event-time window from login-attempts).',
    });
    const tiles = h('div', { class: 'stats' });
    const list = h('div', {});
    let refresh = () => {};
    context.body.append(
      tiles,
      card({ title: 'Administration', note: 'the admin token (or a signed-in user allowed to Alter the cluster) shows details and lets you lift blocks', body: tokenForm(() => refresh()) }),
      card({ title: 'Blocked users', body: list, testid: 'blocked' }));

    const load = async () => {
      const token = storedToken();
      if (token === '' && !(await signedInAdmin())) {
        const names = (await api('/blocked'))['users-blocked'];
        if (!context.alive) return;
        tiles.replaceChildren(
          stat({ label: 'Blocked users', value: int(names.length), sub: 'blocks holding now', testid: 'blocked-count', tone: names.length > 0 ? 'warn' : null }),
          stat({ label: 'Failed logins', value: '—', sub: 'needs the admin token' }),
          stat({ label: 'Permanent blocks', value: '—', sub: 'needs the admin token' }));
        renderWhenChanged(list, { names }, () => (names.length === 0
          ? emptyState('Nobody is blocked', 'Users appear here after too many failed logins.')
          : namesTable(names)));
        return;
      }
      const { blocked } = await api('/api/v1/blocked', { token });
      if (!context.alive) return;
      const total = blocked.reduce((sum, block) => sum + block.failures, 0);
      tiles.replaceChildren(
        stat({ label: 'Blocked users', value: int(blocked.length), sub: 'blocks holding now', testid: 'blocked-count', tone: blocked.length > 0 ? 'warn' : null }),
        stat({ label: 'Failed logins', value: int(total), sub: 'counted against blocked users' }),
        stat({ label: 'Permanent blocks', value: int(blocked.filter((block) => block.until_ms === null).length), sub: 'lifted only by an admin' }));
      renderWhenChanged(list, { blocked }, () => (blocked.length === 0
        ? emptyState('Nobody is blocked', 'Users appear here after too many failed logins.')
        : detailedTable(blocked, () => refresh())));
    };
    refresh = () => context.attempt('poll', load);
    context.every(POLL_MS, load);
  },
};
