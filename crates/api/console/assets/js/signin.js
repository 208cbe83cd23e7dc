// The sign-in screen, shown over the console when the server asks for credentials (it has
// users: `freshet users add`). It gets a token for this tab and hands back to the page; the
// password goes to the server once and is never stored.

import { signIn } from './api.js';
import { h } from './dom.js';
import { button, field } from './ui.js';

let shown = null;

/** Whether the sign-in screen is up. */
export function signInShown() {
  return shown !== null;
}

/**
 * Shows the sign-in screen (once, however many calls asked) and calls `onSignedIn` after a
 * successful sign-in. The console behind it is inert meanwhile.
 */
export function showSignIn({ sessionEnded = false, onSignedIn }) {
  if (shown) return;
  const username = h('input', { class: 'input', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { class: 'input', type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const message = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = button('Sign in', { kind: 'primary', type: 'submit' });
  const form = h('form', { class: 'signin-card card', 'aria-label': 'Sign in' },
    h('div', { class: 'signin-brand' }, brandMark(), h('span', {}, 'Freshet')),
    h('h1', { class: 'signin-title' }, 'Sign in'),
    h('p', { class: 'signin-text' }, sessionEnded
      ? 'Your session has ended. Sign in again to go on.'
      : 'This server has users. Sign in with the user name and password of a Kafka user.'),
    field('User name', username),
    field('Password', password),
    message,
    h('div', { class: 'signin-actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.hidden = true;
    try {
      await signIn(username.value.trim(), password.value);
      close();
      onSignedIn();
    } catch (error) {
      message.textContent = error.message.replace(/^sign in: /, '');
      message.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  shown = h('div', { class: 'signin', 'data-testid': 'sign-in' }, form);
  document.querySelector('.shell').inert = true;
  document.body.append(shown);
  username.focus();
}

function close() {
  shown?.remove();
  shown = null;
  document.querySelector('.shell').inert = false;
}

/** The sidebar's logo, drawn again here: the sidebar is behind the screen. */
function brandMark() {
  const mark = document.querySelector('.brand-mark');
  return mark ? mark.cloneNode(true) : null;
}
