// The console's entry point: mounts the page the location names, keeps the navigation and
// the connection indicator in step, and disposes of a page (stopping its polling) when
// another is shown.

import { CONNECTION_EVENT } from './api.js';
import { h } from './dom.js';
import { PageContext } from './page.js';
import { onRouteChange } from './router.js';
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

setUpNavigationToggle();
setUpConnectionIndicator();
onRouteChange(show);
