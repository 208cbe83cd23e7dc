// The console's entry point: mounts the page the location names, keeps the navigation, the
// connection indicator and the signed-in user in step, and disposes of a page (stopping its
// polling) when another is shown or the server asks for a sign-in.

import { CONNECTION_EVENT, SESSION_EVENT, SIGN_IN_EVENT, endSession, session } from './api.js';
import { h } from './dom.js';
import { when } from './format.js';
import { PageContext } from './page.js';
import { currentRoute, onRouteChange } from './router.js';
import { showSignIn, signInShown } from './signin.js';
import { emptyState } from './ui.js';
import overview from './pages/overview.js';
import topics from './pages/topics.js';
import groups from './pages/groups.js';
import generator from './pages/generator.js';
import tracker from './pages/tracker.js';
import guard from './pages/guard.js';

/** Each page: `mount(context, params)` builds it into `context`. */
const PAGES = { overview, topics, groups, generator, tracker, guard };

const notFound = {
  mount(context) {
    context.header({ title: 'Not found' });
    context.body.append(emptyState('There is no such page', 'Pick a page in the navigation.',
      h('a', { class: 'btn primary', href: '#/' }, 'Go to the overview')));
  },
};

let current = null;

function show({ page, params }) {
  // Behind the sign-in screen nothing is shown; it shows the page named then.
  if (signInShown()) return;
  current?.dispose();
  // A dialog belongs to the page that opened it.
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  current = new PageContext(document.getElementById('page'));
  markActive(page);
  closeNavigation();
  (PAGES[page] ?? notFound).mount(current, params);
  window.scrollTo(0, 0);
}

function markActive(page) {
  for (const link of document.querySelectorAll('#nav a[data-page]')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

/** On a phone the navigation is a menu under the top bar, opened by the menu button. */
function setUpNavigationToggle() {
  const toggle = document.querySelector('.nav-toggle');
  toggle.addEventListener('click', () => {
    const open = document.body.classList.toggle('nav-open');
    toggle.setAttribute('aria-expanded', String(open));
  });
  // Escape closes an open menu, as it would any other pop-up, and gives the button focus back.
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || !document.body.classList.contains('nav-open')) return;
    closeNavigation();
    toggle.focus();
  });
}

function closeNavigation() {
  document.body.classList.remove('nav-open');
  document.querySelector('.nav-toggle')?.setAttribute('aria-expanded', 'false');
}

/** The sidebar's indicator says whether the last request reached the server. */
function setUpConnectionIndicator() {
  const indicator = document.getElementById('connection');
  const text = indicator.querySelector('.connection-text');
  indicator.querySelector('.connection-host').textContent = window.location.host;
  window.addEventListener(CONNECTION_EVENT, ({ detail }) => {
    indicator.dataset.state = detail.ok ? 'ok' : 'down';
    text.textContent = detail.ok ? 'Connected' : 'Server unreachable';
  });
}

/**
 * The server wants credentials: the page stops (its calls would all be refused) and the
 * sign-in screen takes over until a sign-in succeeds, then the page is shown afresh.
 */
function requireSignIn({ sessionEnded = false } = {}) {
  if (signInShown()) return;
  current?.dispose();
  current = null;
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  showSignIn({ sessionEnded, onSignedIn: () => show(currentRoute()) });
}

/** The sidebar names the signed-in user and offers to sign out. */
function setUpSession() {
  const panel = document.getElementById('session');
  const user = panel.querySelector('.session-user');
  const render = () => {
    const signedIn = session();
    panel.hidden = signedIn === null;
    user.textContent = signedIn ? signedIn.principal.replace(/^User:/, '') : '';
    panel.title = signedIn ? `${signedIn.principal}, until ${when(Date.parse(signedIn.expires_at))}` : '';
  };
  panel.querySelector('.sign-out').addEventListener('click', () => {
    // The token is not revoked (the server keeps no sessions); this tab forgets it.
    endSession();
    requireSignIn();
  });
  window.addEventListener(SESSION_EVENT, render);
  window.addEventListener(SIGN_IN_EVENT, ({ detail }) => requireSignIn(detail));
  render();
}

setUpNavigationToggle();
setUpConnectionIndicator();
setUpSession();
onRouteChange(show);
