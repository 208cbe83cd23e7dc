// The life of one shown page: its header, its polling loops and the banner telling why data
// could not be loaded. Leaving the page disposes of it, which stops its polling: only the
// page on screen sends requests.

import { h, replace } from './dom.js';
import { clock } from './format.js';

/** How often live pages refresh. */
export const POLL_MS = 2000;

export class PageContext {
  constructor(root) {
    this.root = root;
    this.alive = true;
    this.cleanups = [];
    this.problems = new Map();
    this.banner = h('div', { class: 'banner error', role: 'alert', hidden: true });
    this.live = h('span', { class: 'live', hidden: true, title: 'This page refreshes every few seconds' });
    this.head = h('header', { class: 'page-head' });
    this.body = h('div', { class: 'page-body' });
    replace(root, this.head, this.banner, this.body);
  }

  /**
   * The page's title row. `crumbs` are `[label, href]` pairs shown above the title;
   * `actions` are buttons on the right.
   */
  header({ title, subtitle, crumbs = [], actions = [] }) {
    document.title = `${title} · Freshet`;
    replace(this.head,
      h('div', { class: 'page-titles' },
        crumbs.length > 0
          ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
            crumbs.map(([label, link]) => [h('a', { href: link }, label), h('span', { class: 'crumb-sep' }, '/')]))
          : null,
        h('h1', {}, title),
        subtitle ? h('p', { class: 'page-subtitle' }, subtitle) : null),
      h('div', { class: 'page-actions' }, this.live, actions));
  }

  /**
   * Runs `task` now and then `ms` after each run ends, until the page is left. Runs are
   * skipped while the browser tab is hidden. A failed run shows its message in the banner;
   * the next successful one clears it.
   *
   * Answers a handle: `stop()` ends the polling (a page whose requests can only be refused
   * until the user acts, such as a wrong admin token, must not repeat them every few
   * seconds) and `resume()` starts it again with a run at once.
   */
  every(ms, task) {
    let timer = null;
    // Each start of the loop has its own number: a run still awaiting when the loop is
    // stopped and resumed does not schedule a second loop beside the new one.
    let loop = 0;
    let stopped = false;
    const run = async (mine) => {
      if (!this.alive || mine !== loop) return;
      if (!document.hidden) {
        const ok = await this.attempt('poll', task);
        if (mine !== loop) return;
        this.showFreshness(ok);
      }
      if (this.alive && mine === loop && !stopped) timer = setTimeout(() => run(mine), ms);
    };
    const poller = {
      stop: () => {
        stopped = true;
        loop += 1;
        clearTimeout(timer);
        this.showPaused();
      },
      resume: () => {
        stopped = false;
        loop += 1;
        clearTimeout(timer);
        run(loop);
      },
      get stopped() {
        return stopped;
      },
    };
    this.onDispose(() => {
      loop += 1;
      clearTimeout(timer);
    });
    run(loop);
    return poller;
  }

  /**
   * Runs `task`, reporting a failure in the banner under `key` (cleared on success).
   * Resolves to whether it succeeded.
   */
  async attempt(key, task) {
    let ok = true;
    try {
      await task();
      this.problems.delete(key);
    } catch (error) {
      ok = false;
      if (!this.alive) return ok;
      this.problems.set(key, error.message);
    }
    this.showProblems();
    return ok;
  }

  /** The header's "live" mark: when the data shown was last refreshed. */
  showFreshness(ok) {
    if (!this.alive) return;
    this.live.hidden = false;
    if (ok) {
      this.refreshedAt = Date.now();
      this.live.textContent = `Live · ${clock(this.refreshedAt)}`;
    } else {
      this.live.textContent = this.refreshedAt ? `Last refreshed ${clock(this.refreshedAt)}` : 'Not loaded';
    }
    this.live.classList.toggle('stale', !ok);
  }

  /** The header's mark while polling is stopped: the data shown is not being refreshed. */
  showPaused() {
    if (!this.alive) return;
    this.live.hidden = false;
    this.live.textContent = this.refreshedAt ? `Paused · last refreshed ${clock(this.refreshedAt)}` : 'Paused';
    this.live.classList.add('stale');
  }

  showProblems() {
    const messages = [...new Set(this.problems.values())];
    this.banner.hidden = messages.length === 0;
    replace(this.banner, messages.map((message) => h('div', {}, message)));
  }

  onDispose(cleanup) {
    this.cleanups.push(cleanup);
  }

  dispose() {
    this.alive = false;
    for (const cleanup of this.cleanups) cleanup();
  }
}
