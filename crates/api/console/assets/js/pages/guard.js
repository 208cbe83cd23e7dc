// Login guard: the users blocked after too many failed logins, and lifting a block. Details
// and unblocking need the admin token, or a signed-in user allowed to Alter the cluster. The
// token is typed here and kept in this tab's sessionStorage only (gone when the tab closes).
// Without either the page lists names from `/blocked`.
//
// A token is tried on an admin route before it is kept: a mistyped one is an error, never a
// green "token set". A kept token the server later refuses (it restarted with another
// `--admin-token`) is forgotten and polling stops until a new one is entered, so the page
// does not send a refused request every two seconds.

import { ApiError, api, segment, session } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { dateTime, int, when } from '../format.js';
import { POLL_MS } from '../page.js';
import { badge, button, card, confirmDialog, emptyState, field, stat, table, toast } from '../ui.js';

const TOKEN_KEY = 'freshet.adminToken';

function storedToken() {
  return window.sessionStorage.getItem(TOKEN_KEY) ?? '';
}

function refused(error) {
  return error instanceof ApiError && error.status === 401;
}

/**
 * The token form. `onAccepted` runs once a typed token passed the check and is kept;
 * `onForgotten` once the kept token is forgotten, or the user goes on without one after the
 * server refused it. Answers the form and `showRefused()`, which the page calls when the
 * server refuses the kept token (the page has stopped refreshing by then).
 */
function tokenForm({ onAccepted, onForgotten }) {
  const input = h('input', { class: 'input', type: 'password', name: 'token', autocomplete: 'off', placeholder: 'Paste the token' });
  const status = h('span', { class: 'token-status', 'data-testid': 'token-status' });
  const error = h('p', { class: 'form-error token-error', role: 'alert', hidden: true });
  const use = button('Use token', { kind: 'primary', type: 'submit' });
  // null; `checking` while a typed token is tried; `wrong` when the server refused it (a
  // token kept before stays in use); `stopped` when it refused the kept one.
  let state = null;
  const forget = button('Forget', {
    kind: 'ghost',
    onclick: () => {
      window.sessionStorage.removeItem(TOKEN_KEY);
      state = null;
      error.hidden = true;
      render();
      onForgotten();
    },
  });
  const render = () => {
    const kept = storedToken() !== '';
    if (state === 'checking') status.replaceChildren(badge('checking the token…', 'info'));
    else if (state === 'wrong' || state === 'stopped') status.replaceChildren(badge('token refused', 'danger'));
    else status.replaceChildren(kept ? badge('token set for this tab', 'ok') : badge('no token', 'muted'));
    forget.textContent = state === 'stopped' ? 'Go on without a token' : 'Forget';
    forget.hidden = !(kept || state === 'stopped') || state === 'checking';
    use.disabled = state === 'checking';
  };
  const showError = (next, message) => {
    state = next;
    error.textContent = message;
    error.hidden = false;
    render();
  };
  const form = h('form', { class: 'token-form', 'aria-label': 'Admin token' },
    field('Admin token', input, 'The --admin-token freshet runs with; kept in this tab only.'),
    h('div', { class: 'token-buttons' }, use, forget),
    status,
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === '' || state === 'checking') return;
    const before = state;
    state = 'checking';
    error.hidden = true;
    render();
    try {
      // Any admin route tells whether the server takes the token; this one only reads.
      await api('/api/v1/blocked', { token });
    } catch (failure) {
      const kept = storedToken() !== '' ? ' The token set before stays in use.' : '';
      // After a refused kept token the page stays stopped until a token passes.
      const next = before === 'stopped' ? 'stopped' : 'wrong';
      showError(next, refused(failure)
        ? `The server refused this token: it is not the --admin-token freshet runs with. It was not kept.${kept}`
        : `The token could not be checked: ${failure.message}`);
      input.select();
      return;
    }
    window.sessionStorage.setItem(TOKEN_KEY, token);
    input.value = '';
    state = null;
    error.hidden = true;
    render();
    onAccepted();
  });
  render();
  return {
    form,
    showRefused: () => showError('stopped',
      'The server refused the token this tab kept (freshet may have restarted with another --admin-token). It was forgotten, and the page stopped refreshing: enter the token again, or go on without one.'),
  };
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

/**
 * A block's end, in words. The API lists blocks that hold now; a timed one may have ended
 * since the last refresh, and one lifted from this tab is still listed until the guard's
 * follower has read the lift.
 */
function blockEnd(block, liftedAt, now) {
  if (liftedAt !== undefined && liftedAt >= block.since_ms) {
    return h('span', { class: 'block-end' }, badge('lifted', 'ok'), h('span', { class: 'muted' }, `by an admin at ${when(liftedAt)}`));
  }
  if (block.until_ms === null) {
    return h('span', { class: 'block-end' }, badge('permanent', 'danger'), h('span', { class: 'muted' }, 'until an admin lifts it'));
  }
  if (block.until_ms <= now) {
    return h('span', { class: 'block-end' }, badge('ended', 'muted'), h('span', { class: 'muted' }, `at ${when(block.until_ms)}`));
  }
  return h('span', { class: 'block-end', title: `ends ${dateTime(block.until_ms)}` },
    badge('timed', 'warn'), h('span', {}, `at ${when(block.until_ms)}`));
}

function unblock(user, lifted, refresh) {
  confirmDialog({
    title: `Unblock ${user}?`,
    text: `${user} can log in again at once, and their failed-login count starts over.`,
    confirmLabel: 'Unblock',
    testid: 'confirm-unblock',
    action: async () => {
      await api(`/api/v1/blocked/${segment(user)}`, { method: 'DELETE', token: storedToken() });
      lifted.set(user, Date.now());
      toast(`Unblocked ${user}`);
      refresh();
    },
  });
}

function detailedTable(blocks, lifted, now, refresh) {
  return table({
    testid: 'blocked-table',
    rows: blocks,
    empty: 'Nobody is blocked.',
    columns: [
      { label: 'User', className: 'strong', cell: (block) => block.user },
      { label: 'Blocked since', className: 'nowrap', cell: (block) => when(block.since_ms) },
      { label: 'Block ends', className: 'nowrap', cell: (block) => blockEnd(block, lifted.get(block.user), now) },
      { label: 'Failed logins', className: 'num', cell: (block) => int(block.failures) },
      { label: 'Last failure', className: 'nowrap', cell: (block) => when(block.last_failure_ms) },
      {
        label: '',
        className: 'actions',
        cell: (block) => (isLifted(block, lifted)
          ? null
          : button('Unblock', { small: true, onclick: () => unblock(block.user, lifted, refresh) })),
      },
    ],
  });
}

function isLifted(block, lifted) {
  const at = lifted.get(block.user);
  return at !== undefined && at >= block.since_ms;
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
    // Users lifted from this tab, with when: shown as lifted until the list drops them.
    const lifted = new Map();
    let poller = null;
    const restart = () => poller?.resume();
    const token = tokenForm({ onAccepted: restart, onForgotten: restart });
    context.body.append(
      tiles,
      card({ title: 'Administration', note: 'the admin token (or a signed-in user allowed to Alter the cluster) shows details and lets you lift blocks', body: token.form }),
      card({ title: 'Blocked users', body: list, testid: 'blocked' }));

    const showNames = async () => {
      const names = (await api('/blocked'))['users-blocked'];
      if (!context.alive) return;
      tiles.replaceChildren(
        stat({ label: 'Blocked users', value: int(names.length), sub: 'blocks holding now', testid: 'blocked-count', tone: names.length > 0 ? 'warn' : null }),
        stat({ label: 'Failed logins', value: '—', sub: 'needs the admin token' }),
        stat({ label: 'Permanent blocks', value: '—', sub: 'needs the admin token' }));
      renderWhenChanged(list, { names }, () => (names.length === 0
        ? emptyState('Nobody is blocked', 'Users appear here after too many failed logins.')
        : namesTable(names)));
    };

    const showDetails = async (kept) => {
      let blocked;
      try {
        ({ blocked } = await api('/api/v1/blocked', { token: kept }));
      } catch (error) {
        if (!kept || !refused(error)) throw error;
        // Every later request with this token would be refused too: stop until a new one.
        window.sessionStorage.removeItem(TOKEN_KEY);
        poller.stop();
        token.showRefused();
        throw new Error('The admin token was refused; the page stopped refreshing until a new token is entered.');
      }
      if (!context.alive) return;
      const now = Date.now();
      for (const [user, at] of lifted) {
        if (!blocked.some((block) => block.user === user && block.since_ms <= at)) lifted.delete(user);
      }
      const holding = blocked.filter((block) => !isLifted(block, lifted) && (block.until_ms === null || block.until_ms > now));
      const total = holding.reduce((sum, block) => sum + block.failures, 0);
      tiles.replaceChildren(
        stat({ label: 'Blocked users', value: int(holding.length), sub: 'blocks holding now', testid: 'blocked-count', tone: holding.length > 0 ? 'warn' : null }),
        stat({ label: 'Failed logins', value: int(total), sub: 'counted against blocked users' }),
        stat({ label: 'Permanent blocks', value: int(holding.filter((block) => block.until_ms === null).length), sub: 'until an admin lifts them' }));
      // The clock is part of the data: a timed block reads "ended" once its end has passed.
      const ended = blocked.filter((block) => block.until_ms !== null && block.until_ms <= now).map((block) => block.user);
      renderWhenChanged(list, { blocked, lifted: [...lifted], ended }, () => (blocked.length === 0
        ? emptyState('Nobody is blocked', 'Users appear here after too many failed logins.')
        : detailedTable(blocked, lifted, now, () => refresh())));
    };

    const load = async () => {
      const kept = storedToken();
      if (kept === '' && !(await signedInAdmin())) await showNames();
      else await showDetails(kept);
    };
    const refresh = () => (poller?.stopped ? null : context.attempt('poll', load));
    poller = context.every(POLL_MS, load);
  },
};
