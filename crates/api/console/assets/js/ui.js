// The console's building blocks: cards, stat tiles, tables, badges, buttons, form fields,
// toasts and the confirmation dialog. Pages compose these; they hold no data of their own.

import { h, svg, append } from './dom.js';

/** A card with a title row (title, optional note and actions) and a body. */
export function card({ title, note, actions, className, body, testid }) {
  return h('section', { class: ['card', className].filter(Boolean).join(' '), 'data-testid': testid },
    title || actions
      ? h('header', { class: 'card-head' },
        h('div', { class: 'card-titles' },
          h('h2', { class: 'card-title' }, title),
          note ? h('span', { class: 'card-note' }, note) : null),
        actions ? h('div', { class: 'card-actions' }, actions) : null)
      : null,
    h('div', { class: 'card-body' }, body));
}

/** A big number with a label above and a line of context below. */
export function stat({ label, value, sub, testid, tone }) {
  // Long figures (billions of events) get a smaller size instead of being cut off.
  const length = typeof value === 'string' ? value.length : 0;
  const size = length > 12 ? ' smaller' : length > 8 ? ' small' : '';
  return h('div', { class: `stat${tone ? ` tone-${tone}` : ''}`, 'data-testid': testid },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: `stat-value${size}` }, value),
    h('div', { class: 'stat-sub' }, sub ?? '\u00a0'));
}

/**
 * A table. Each column is `{ label, cell: row => node or text, className, title }`; numeric
 * columns take `className: 'num'`, offsets and ids `'mono'`.
 */
export function table({ columns, rows, empty = 'Nothing to show yet.', rowProps, testid }) {
  const head = h('thead', {}, h('tr', {},
    columns.map((column) => h('th', { class: column.className, title: column.title }, column.label))));
  const body = h('tbody', {},
    rows.length === 0
      ? h('tr', { class: 'empty-row' }, h('td', { colspan: columns.length }, empty))
      : rows.map((row) => h('tr', rowProps ? rowProps(row) : {},
        columns.map((column) => h('td', { class: column.className }, column.cell(row))))));
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table', 'data-testid': testid }, head, body));
}

/** A short status label; `tone` is one of ok, info, warn, danger, muted. */
export function badge(text, tone = 'muted') {
  return h('span', { class: `badge ${tone}` }, text);
}

export function button(label, { kind = 'default', onclick, type = 'button', small, title, disabled } = {}) {
  const classes = ['btn', kind, small ? 'small' : null].filter(Boolean).join(' ');
  return h('button', { class: classes, type, onclick, title, disabled }, label);
}

/** Stroke paths of the icons buttons use, drawn on a 24x24 grid. */
const ICONS = {
  trash: ['M4 7h16', 'M10 11v6', 'M14 11v6', 'M6 7l1 13h10l1-13', 'M9 7V4h6v3'],
};

/** A button showing only an icon; `label` is its accessible name and tooltip. */
export function iconButton(icon, label, { kind, onclick } = {}) {
  return h('button', { class: `icon-button${kind ? ` ${kind}` : ''}`, type: 'button', title: label, 'aria-label': label, onclick },
    svg('svg', { viewBox: '0 0 24 24', 'aria-hidden': 'true' }, ICONS[icon].map((d) => svg('path', { d }))));
}

let fieldCount = 0;

/**
 * A labelled form control. `input` is the control itself (an input, select or textarea); the
 * label names it and the hint describes it, so its accessible name is the label alone.
 */
export function field(label, input, hint) {
  fieldCount += 1;
  const id = input.id || `field-${fieldCount}`;
  input.id = id;
  const hintElement = hint ? h('span', { class: 'field-hint', id: `${id}-hint` }, hint) : null;
  if (hintElement) input.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' },
    h('label', { class: 'field-label', for: id }, label),
    input,
    hintElement);
}

/** A progress bar for a share from 0 to 1. */
export function progress(fraction, tone) {
  const bar = h('span', {});
  bar.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h('div', { class: `progress${tone ? ` ${tone}` : ''}`, role: 'progressbar',
    'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(fraction * 100) }, bar);
}

/** A centred message for a section with nothing in it. */
export function emptyState(title, text, action) {
  return h('div', { class: 'empty' },
    h('div', { class: 'empty-title' }, title),
    text ? h('p', {}, text) : null,
    action ?? null);
}

/** A key/value list, for a record's details or a topic's configs. */
export function definitions(pairs) {
  return h('dl', { class: 'definitions' },
    pairs.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/** A message that stays a few seconds in the corner. */
export function toast(message, tone = 'ok') {
  const host = document.getElementById('toasts');
  const close = () => item.remove();
  const item = h('div', { class: `toast ${tone}`, role: tone === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text' }, message),
    h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', onclick: close }, '×'));
  host.append(item);
  setTimeout(close, tone === 'error' ? 9000 : 5000);
}

/**
 * A modal dialog with a form. `build(form)` fills the form; `submit(form)` runs on submit and
 * closes the dialog when it resolves (an error keeps it open and shows the message inside).
 */
export function formDialog({ title, submitLabel, danger, build, submit, testid, wide }) {
  const message = h('p', { class: 'dialog-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'dialog-form', method: 'dialog' });
  const submitButton = button(submitLabel, { kind: danger ? 'danger' : 'primary', type: 'submit' });
  const dialog = h('dialog', { class: `dialog${wide ? ' wide' : ''}`, 'data-testid': testid },
    h('header', { class: 'dialog-head' }, h('h2', {}, title)),
    form);
  build(form);
  append(form, [
    message,
    h('footer', { class: 'dialog-actions' },
      button('Cancel', { onclick: () => dialog.close() }),
      submitButton),
  ]);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submitButton.disabled = true;
    message.hidden = true;
    try {
      await submit(form);
      dialog.close();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      submitButton.disabled = false;
    }
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

/** Asks before something that cannot be undone; runs `action` on yes. */
export function confirmDialog({ title, text, confirmLabel, action, testid }) {
  return formDialog({
    title,
    submitLabel: confirmLabel,
    danger: true,
    testid,
    build: (form) => append(form, h('p', { class: 'dialog-text' }, text)),
    submit: action,
  });
}
