// Building elements from data. Nothing here parses HTML: every value from the API becomes a
// text node or an attribute, so a topic name or a record value can never inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An HTML element: `h('td', { class: 'num' }, '42')`. */
export function h(tag, props, ...children) {
  return assemble(document.createElement(tag), props, children);
}

/** An SVG element, same arguments as `h`. */
export function svg(tag, props, ...children) {
  return assemble(document.createElementNS(SVG_NS, tag), props, children);
}

function assemble(element, props, children) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(element.style, value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      // Properties, not attributes: they are what a form control shows and submits.
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children, flattening arrays and skipping null, undefined and false. */
export function append(element, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/**
 * Re-renders `element` from `data` only when the data changed since the last call: polling
 * every two seconds must not rebuild (and flicker, or steal a click from) an unchanged table.
 */
export function renderWhenChanged(element, data, render) {
  const key = JSON.stringify(data);
  if (element.dataset.rendered === key) return;
  element.dataset.rendered = key;
  replace(element, render(data));
}
