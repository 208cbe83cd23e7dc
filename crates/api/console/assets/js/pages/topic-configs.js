// A topic's configuration: every effective config with Kafka's documentation of it, each
// editable (`PATCH /api/v1/topics/{name}/configs` with `set`) and resettable to the
// cluster's default (the same route with `delete`, which removes the topic's override).

import { api, segment } from '../api.js';
import { h, append, renderWhenChanged } from '../dom.js';
import { topicConfig } from '../kafka-configs.js';
import { badge, card, confirmDialog, emptyState, field, formDialog, toast } from '../ui.js';

function configsPath(name) {
  return `/api/v1/topics/${segment(name)}/configs`;
}

/** Kafka's documentation of a config: two lines, opened for the rest. */
function docView(key) {
  const known = topicConfig(key);
  if (!known) return h('span', { class: 'config-doc muted' }, 'No description: not one of Kafka’s topic configs this console knows.');
  return h('details', { class: 'config-doc' }, h('summary', { title: 'Show all of Kafka’s description' }, known.doc));
}

/** The control for a config's new value: a select when Kafka takes only a few values. */
function valueControl(key, current) {
  const known = topicConfig(key);
  if (known?.choices && known.choices.includes(current)) {
    return h('select', { class: 'input mono', name: 'value' },
      known.choices.map((choice) => h('option', { value: choice, selected: choice === current }, choice)));
  }
  return h('input', { class: 'input mono', name: 'value', value: current, autocomplete: 'off', spellcheck: 'false' });
}

export class ConfigEditor {
  /** `onChanged()` runs after a change, so the page reads the topic again. */
  constructor(name, onChanged) {
    this.name = name;
    this.onChanged = onChanged;
    this.configs = null;
    this.filter = h('input', { class: 'input search', type: 'search', placeholder: 'Filter configs', 'aria-label': 'Filter configs' });
    this.filter.addEventListener('input', () => this.render());
    this.body = h('div', {});
    this.element = card({
      title: 'Configuration',
      note: 'effective values, with Kafka’s documentation',
      actions: [this.filter],
      body: this.body,
      className: 'config-card',
      testid: 'configs',
    });
  }

  /** Shows the topic's effective configs (from its description or a change's answer). */
  show(configs) {
    this.configs = configs;
    this.render();
  }

  render() {
    if (!this.configs) return;
    const needle = this.filter.value.trim().toLowerCase();
    const entries = Object.entries(this.configs)
      .filter(([key]) => key.toLowerCase().includes(needle))
      .sort(([a], [b]) => a.localeCompare(b));
    renderWhenChanged(this.body, { entries, needle }, () => {
      if (Object.keys(this.configs).length === 0) return emptyState('No configuration', 'The cluster reported no configs for this topic.');
      if (entries.length === 0) return h('p', { class: 'muted' }, `No config matches “${needle}”.`);
      return h('div', { class: 'table-wrap' }, h('table', { class: 'table config-table', 'data-testid': 'configs-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Config'), h('th', {}, 'Value'), h('th', { class: 'actions' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
        h('tbody', {}, entries.map(([key, value]) => this.row(key, value)))));
    });
  }

  row(key, value) {
    const known = topicConfig(key);
    const isDefault = known !== null && known.default === String(value);
    return h('tr', { 'data-config': key },
      h('td', { class: 'config-name' }, h('div', { class: 'mono config-key' }, key), docView(key)),
      h('td', { class: 'config-value' },
        h('span', { class: 'mono', title: String(value) }, value === '' ? h('span', { class: 'muted' }, '(empty)') : String(value)),
        isDefault ? [' ', badge('Kafka default')] : null),
      h('td', { class: 'actions' },
        h('div', { class: 'row-actions' },
          h('button', { class: 'btn small', type: 'button', 'aria-label': `Edit ${key}`, onclick: () => this.edit(key, String(value)) }, 'Edit'),
          h('button', { class: 'btn small ghost', type: 'button', 'aria-label': `Reset ${key}`, onclick: () => this.reset(key) }, 'Reset'))));
  }

  edit(key, current) {
    const known = topicConfig(key);
    formDialog({
      title: `Edit ${key}`,
      submitLabel: 'Save',
      testid: 'edit-config',
      wide: true,
      build: (form) => append(form,
        known ? h('p', { class: 'dialog-text config-doc-full' }, known.doc) : null,
        field('Value', valueControl(key, current),
          known ? `Kafka’s default: ${known.default === '' ? '(empty)' : known.default}. Now: ${current === '' ? '(empty)' : current}.`
            : `Now: ${current === '' ? '(empty)' : current}.`)),
      submit: async (form) => {
        const value = form.elements.value.value.trim();
        const answer = await api(configsPath(this.name), { method: 'PATCH', body: { set: { [key]: value } } });
        this.show(answer.configs);
        toast(`Set ${key} = ${value}`);
        this.onChanged();
      },
    });
  }

  reset(key) {
    const known = topicConfig(key);
    confirmDialog({
      title: `Reset ${key}?`,
      text: `The topic’s own value is removed, so ${key} goes back to the cluster’s default`
        + `${known ? ` (Kafka’s default is ${known.default === '' ? 'empty' : known.default})` : ''}.`,
      confirmLabel: 'Reset',
      testid: 'confirm-reset-config',
      action: async () => {
        const answer = await api(configsPath(this.name), { method: 'PATCH', body: { delete: [key] } });
        this.show(answer.configs);
        toast(`Reset ${key} to ${answer.configs[key] ?? 'the default'}`);
        this.onChanged();
      },
    });
  }
}
