// Generator: start a job with the parameters of `/start` (devices, events, pacing, seed,
// IPv6 share, topic) and the batches' compression, and watch every job's progress and the
// server's estimate of the time it has left; a running job can be cancelled.

import { api, segment } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { int, percent, duration, when } from '../format.js';
import { POLL_MS } from '../page.js';
import { badge, button, card, emptyState, field, progress, toast } from '../ui.js';

/** The badge colour of a job state. */
export function jobTone(state) {
  return { running: 'info', completed: 'ok', failed: 'danger', cancelled: 'warn' }[state] ?? 'muted';
}

/** The codecs the API takes for `compression`; `none` is Kafka's producer default. */
const COMPRESSIONS = [
  ['none', 'None'],
  ['gzip', 'gzip'],
  ['snappy', 'Snappy'],
  ['lz4', 'LZ4'],
  ['zstd', 'Zstandard (zstd)'],
];

/**
 * Events per second as a whole number: the rate moves every poll, and decimals of it would
 * only flicker.
 */
function rate(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return `${int(Math.round(value))}/s`;
}

/**
 * The time a job has left, from the server's `eta_secs`, in round words ("about 2 min"): it
 * is an estimate from the rate so far, so seconds would claim a precision it does not have.
 */
export function eta(seconds) {
  if (seconds === null || seconds === undefined) return 'estimating…';
  if (seconds < 5) return 'a few seconds';
  if (seconds < 60) return `about ${Math.max(5, Math.round(seconds / 5) * 5)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `about ${hours} h${minutes % 60 >= 1 ? ` ${minutes % 60} min` : ''}`;
  const days = Math.floor(hours / 24);
  return `about ${int(days)} d${hours % 24 >= 1 ? ` ${hours % 24} h` : ''}`;
}

/** Reads a whole number from an input; blank is "not given". */
function wholeNumber(input, name) {
  const text = input.value.trim();
  if (text === '') return undefined;
  if (!/^\d+$/.test(text)) throw new Error(`${name} must be a whole number`);
  return Number(text);
}

function jobForm(onStarted) {
  const inputs = {
    num_devices: h('input', { class: 'input', name: 'num_devices', inputmode: 'numeric', value: '100', required: true }),
    num_messages: h('input', { class: 'input', name: 'num_messages', inputmode: 'numeric', value: '1000', required: true }),
    pacing: h('select', { class: 'input', name: 'pacing' },
      h('option', { value: 'pause' }, 'Pause, ms'),
      h('option', { value: 'rate' }, 'Rate, events/s')),
    pace: h('input', { class: 'input', name: 'pace', inputmode: 'decimal', value: '100' }),
    seed: h('input', { class: 'input', name: 'seed', inputmode: 'numeric', placeholder: 'random' }),
    ipv6_percent: h('input', { class: 'input', name: 'ipv6_percent', inputmode: 'numeric', value: '0' }),
    topic: h('input', { class: 'input', name: 'topic', value: 'device-events', required: true }),
    compression: h('select', { class: 'input', name: 'compression' },
      COMPRESSIONS.map(([value, label]) => h('option', { value, selected: value === 'none' }, label))),
  };
  inputs.pacing.addEventListener('change', () => {
    inputs.pace.value = inputs.pacing.value === 'rate' ? '1000' : '100';
  });
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = button('Start job', { kind: 'primary', type: 'submit' });

  const form = h('form', { class: 'form generator-form', 'aria-label': 'New generator job' },
    h('div', { class: 'form-grid wide' },
      field('Devices', inputs.num_devices, 'Distinct simulated IPs'),
      field('Events', inputs.num_messages, 'Each from a random device'),
      field('Pacing', inputs.pacing),
      field('Pace', inputs.pace, 'Pause 0: as fast as acknowledged'),
      field('Seed', inputs.seed, 'Same seed, same events'),
      field('IPv6 share (%)', inputs.ipv6_percent),
      field('Topic', inputs.topic, 'Created if missing (3 partitions)'),
      field('Compression', inputs.compression, 'Codec of the record batches'),
      h('div', { class: 'form-grid-actions' }, submit)),
    error);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const body = {
        num_devices: wholeNumber(inputs.num_devices, 'Devices'),
        num_messages: wholeNumber(inputs.num_messages, 'Events'),
        seed: wholeNumber(inputs.seed, 'Seed'),
        ipv6_percent: wholeNumber(inputs.ipv6_percent, 'IPv6 share'),
        topic: inputs.topic.value.trim(),
        compression: inputs.compression.value,
      };
      if (inputs.pacing.value === 'rate') {
        const rate = Number(inputs.pace.value);
        if (!(rate > 0)) throw new Error('Events per second must be above 0');
        body.rate = rate;
      } else {
        body.pause_ms = wholeNumber(inputs.pace, 'Pause');
      }
      const job = await api('/api/v1/generator/jobs', { method: 'POST', body });
      toast(`Started job #${job.id}: ${int(job.params.num_messages)} events from ${int(job.params.num_devices)} devices${job.params.compression && job.params.compression !== 'none' ? `, ${job.params.compression}` : ''}`);
      onStarted();
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function figure(label, value, testid) {
  return h('div', { class: 'figure', 'data-testid': testid }, h('span', { class: 'figure-label' }, label), h('span', { class: 'figure-value' }, value));
}

function jobRow(job, refresh) {
  const eventsPerSecond = job.summary?.events_per_sec ?? (job.elapsed_ms > 0 ? (job.sent * 1000) / job.elapsed_ms : null);
  const cancel = async () => {
    try {
      await api(`/api/v1/generator/jobs/${segment(job.id)}/cancel`, { method: 'POST' });
      toast(`Cancelling job #${job.id}`);
      refresh();
    } catch (failure) {
      toast(failure.message, 'error');
    }
  };
  return h('li', { class: 'job', 'data-testid': `job-${job.id}`, 'data-state': job.state },
    h('div', { class: 'job-head' },
      h('span', { class: 'job-id' }, `#${job.id}`),
      badge(job.state, jobTone(job.state)),
      h('span', { class: 'muted' },
        `${int(job.params.num_devices)} devices · ${int(job.params.num_messages)} events → `,
        h('span', { class: 'mono' }, job.params.topic),
        job.params.compression && job.params.compression !== 'none' ? ` · ${job.params.compression}` : null),
      h('span', { class: 'spacer' }),
      job.state === 'running' ? button('Cancel', { small: true, onclick: cancel }) : null),
    h('div', { class: 'job-progress' },
      progress(job.progress, jobTone(job.state)),
      h('span', { class: 'job-percent' }, percent(job.progress))),
    h('div', { class: 'figures' },
      figure('Sent', int(job.sent), 'job-sent'),
      figure('Unique devices', int(job.distinct_ips), 'job-distinct'),
      figure('Failed', int(job.failed)),
      figure('Rate', rate(eventsPerSecond), 'job-rate'),
      figure('Elapsed', duration(job.elapsed_ms)),
      job.state === 'running' ? figure('Time left', eta(job.eta_secs), 'job-eta') : null,
      figure('Seed', h('span', { class: 'mono' }, String(job.params.seed))),
      figure('Started', when(job.started_at))),
    job.error ? h('p', { class: 'form-error' }, job.error) : null);
}

export default {
  mount(context) {
    context.header({
      title: 'Generator',
      subtitle: 'Send simulated device events to Kafka: the same parameters as GET /start, run as background jobs.',
    });
    const jobs = h('div', {});
    let refresh = () => {};
    context.body.append(
      card({ title: 'New job', note: 'the parameters of GET /start', body: jobForm(() => refresh()) }),
      card({ title: 'Jobs', note: 'newest first; kept in memory, so a restart of Freshet forgets them', body: jobs, testid: 'jobs' }));

    const load = async () => {
      const list = await api('/api/v1/generator/jobs');
      if (!context.alive) return;
      renderWhenChanged(jobs, list.jobs, (all) => (all.length === 0
        ? emptyState('No jobs yet', 'Fill in the form to send your first events.')
        : h('ul', { class: 'job-list' }, all.map((job) => jobRow(job, () => refresh())))));
    };
    refresh = () => context.attempt('refresh', load);
    context.every(POLL_MS, load);
  },
};
