// Hash routing: `#/topics/device-events` is page `topics` with params `['device-events']`.
// Hash URLs need no server route per page and survive a reload.

/** The page and its params named by the current location. */
export function currentRoute() {
  const parts = window.location.hash
    .replace(/^#\/?/, '')
    .split('/')
    .filter((part) => part !== '')
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
  return { page: parts[0] ?? 'overview', params: parts.slice(1) };
}

/** The link to a page: `href('topics', name)` is `#/topics/<name escaped>`. */
export function href(...segments) {
  return `#/${segments.map((part) => encodeURIComponent(String(part))).join('/')}`;
}

/** Goes to a page (the `hashchange` listener mounts it). */
export function go(...segments) {
  window.location.hash = href(...segments);
}

/** Calls `show` now and on every change of page. */
export function onRouteChange(show) {
  window.addEventListener('hashchange', () => show(currentRoute()));
  show(currentRoute());
}
