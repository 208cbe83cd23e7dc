// Overview: the pipeline at a glance. Stat tiles, live throughput and unique-device charts,
// the error-code distribution and the newest generator jobs.
//
// Throughput is derived: events produced per second is the change of `device-events`' latest
// offsets between two polls, events counted per second the change of the tracker's count.
// The samples stay in memory while the console is open, so the charts keep their history
// when you come back to this page.

import { api } from '../api.js';
import { h, renderWhenChanged } from '../dom.js';
import { int, perSecond, plural, ago, compact } from '../format.js';
import { POLL_MS } from '../page.js';
import { href } from '../router.js';
import { BarChart, LineChart, legend } from '../chart.js';
import { badge, card, emptyState, progress, stat } from '../ui.js';
import { jobTone } from './generator.js';

/** The topic whose offsets measure ingest. */
const INPUT_TOPIC = 'device-events';
/** Samples kept: ten minutes at one every two seconds. */
const HISTORY_LIMIT = 300;
/** Error codes the generator sends; always drawn so the chart keeps its shape. */
const ERROR_CODES = Array.from({ length: 11 }, (_, code) => code);

/** `{ time, produced, counted, unique, producedRate, countedRate }`, oldest first. */
const history = [];

function record(sample) {
  const previous = history.at(-1);
  const seconds = previous ? (sample.time - previous.time) / 1000 : 0;
  // A rate over a long absence (the page was not shown) would be a misleading average.
  const fresh = previous && seconds > 0 && seconds < (POLL_MS * 4) / 1000;
  const rate = (now, before) => (fresh && now !== null && before !== null ? Math.max(0, (now - before) / seconds) : null);
  history.push({
    ...sample,
    producedRate: previous ? rate(sample.produced, previous.produced) : null,
    countedRate: previous ? rate(sample.counted, previous.counted) : null,
  });
  if (history.length > HISTORY_LIMIT) history.splice(0, history.length - HISTORY_LIMIT);
}

function latestOffsets(topics) {
  const topic = topics?.topics?.find((candidate) => candidate.name === INPUT_TOPIC);
  return topic ? topic.latest_offset_sum : null;
}

function signed(percentValue) {
  return `${percentValue >= 0 ? '+' : ''}${percentValue.toFixed(2)}%`;
}

function stats(unique, latest) {
  return [
    stat({
      label: 'Unique devices',
      value: int(unique.global_count),
      sub: `HyperLogLog ≈ ${int(unique.global_estimate)} (${signed(unique.estimate_error_percent)})`,
      testid: 'unique-devices',
      tone: 'accent',
    }),
    stat({
      label: 'Events produced',
      value: perSecond(latest?.producedRate ?? null),
      sub: `${perSecond(latest?.countedRate ?? null)} counted`,
      testid: 'events-per-second',
    }),
    stat({
      label: 'Events counted',
      value: int(unique.events_counted),
      sub: `${int(unique.events_rejected)} rejected`,
      testid: 'events-counted',
    }),
    stat({
      label: 'Consumer lag',
      value: int(unique.consumer_lag),
      sub: unique.checkpoint_age_ms === null ? 'no checkpoint yet' : `checkpoint ${ago(unique.checkpoint_age_ms)}`,
      testid: 'consumer-lag',
      tone: unique.consumer_lag > 0 ? 'warn' : null,
    }),
    stat({
      label: 'Tracker nodes',
      value: int(unique.nodes_seen.length),
      sub: `${unique.partitions_covered} of ${plural(unique.partitions_total, 'partition')}`,
      testid: 'tracker-nodes',
    }),
  ];
}

function errorCodeBars(codes) {
  const byCode = new Map(codes.error_codes.map((entry) => [entry.error_code, entry.distinct_ips]));
  const all = [...new Set([...ERROR_CODES, ...byCode.keys()])].sort((a, b) => a - b);
  return all.map((code) => ({ label: String(code), title: `Error code ${code}`, value: byCode.get(code) ?? 0 }));
}

/** The user topics holding the most records, with a bar each. */
function largestTopics(topicList) {
  const topics = topicList.topics
    .filter((topic) => !topic.internal)
    .sort((a, b) => b.records - a.records || a.name.localeCompare(b.name))
    .slice(0, 5);
  if (topics.length === 0) return emptyState('No topics yet', 'A generator job creates device-events.');
  const most = Math.max(1, ...topics.map((topic) => topic.records));
  return h('ul', { class: 'meter-list' }, topics.map((topic) => {
    const bar = h('span', {});
    bar.style.width = `${(topic.records / most) * 100}%`;
    return h('li', {},
      h('div', { class: 'meter-head' },
        h('a', { href: href('topics', topic.name) }, topic.name),
        h('span', { class: 'meter-value' }, int(topic.records))),
      h('div', { class: 'meter' }, bar));
  }));
}

function recentJobs(jobs) {
  if (jobs.length === 0) {
    return emptyState('No generator jobs yet', 'Start one to send device events through the pipeline.',
      h('a', { class: 'btn primary small', href: href('generator') }, 'Start a job'));
  }
  return h('ul', { class: 'job-list compact' }, jobs.slice(0, 3).map((job) => h('li', { class: 'job-line' },
    h('div', { class: 'job-line-head' },
      h('span', { class: 'job-id' }, `#${job.id}`),
      badge(job.state, jobTone(job.state)),
      h('span', { class: 'spacer' }),
      h('span', { class: 'job-line-figure' }, `${int(job.distinct_ips)} unique`)),
    progress(job.progress, jobTone(job.state)),
    h('div', { class: 'job-line-foot muted' },
      `${int(job.sent)} / ${int(job.params.num_messages)} events · ${int(job.params.num_devices)} devices`))));
}

export default {
  mount(context) {
    context.header({
      title: 'Overview',
      subtitle: 'Device events flowing through the broker, the unique-IP tracker and the login guard, live.',
    });
    const tiles = h('div', { class: 'stats' });
    const throughput = h('div', {});
    const uniques = h('div', {});
    const codes = h('div', {});
    const jobs = h('div', {});
    const topics = h('div', {});
    context.body.append(
      tiles,
      h('div', { class: 'grid two' },
        card({ title: 'Throughput', note: 'events per second', actions: legend(['Produced', 'Counted']), body: throughput }),
        card({ title: 'Unique devices', note: 'exact, across all partitions', body: uniques })),
      h('div', { class: 'grid three' },
        card({ title: 'Error codes', note: 'distinct devices per code', body: codes }),
        card({
          title: 'Topics',
          note: 'most records',
          actions: h('a', { class: 'link', href: href('topics') }, 'All →'),
          body: topics,
        }),
        card({
          title: 'Generator jobs',
          actions: h('a', { class: 'link', href: href('generator') }, 'All →'),
          body: jobs,
        })),
    );

    const throughputChart = new LineChart(throughput, {
      label: 'Throughput',
      series: ['Produced', 'Counted'],
      yFormat: compact,
      gapMs: POLL_MS * 4,
      height: 190,
      emptyText: 'Measuring… (two samples are needed)',
    });
    const uniqueChart = new LineChart(uniques, {
      label: 'Unique devices',
      series: ['Unique devices'],
      integer: true,
      gapMs: POLL_MS * 4,
      height: 190,
    });
    const codeChart = new BarChart(codes, { label: 'Error codes', height: 180 });
    context.onDispose(() => [throughputChart, uniqueChart, codeChart].forEach((chart) => chart.destroy()));

    context.every(POLL_MS, async () => {
      // Each source feeds its own part of the page: one that fails (the cluster unreachable
      // for the topic list, say) leaves the others live, and its message in the banner.
      const [unique, errorCodes, topicList, jobList] = await Promise.all([
        '/api/v1/unique-ips',
        '/api/v1/unique-ips/error-codes',
        '/api/v1/topics',
        '/api/v1/generator/jobs',
      ].map((path) => api(path).then((value) => ({ value }), (error) => ({ error }))));
      if (!context.alive) return;
      if (unique.value) {
        record({
          time: Date.now(),
          produced: topicList.value ? latestOffsets(topicList.value) : null,
          counted: unique.value.events_counted,
          unique: unique.value.global_count,
        });
        tiles.replaceChildren(...stats(unique.value, history.at(-1)));
        throughputChart.update([
          history.map((sample) => [sample.time, sample.producedRate]),
          history.map((sample) => [sample.time, sample.countedRate]),
        ]);
        uniqueChart.update([history.map((sample) => [sample.time, sample.unique])]);
      }
      if (errorCodes.value) codeChart.update(errorCodeBars(errorCodes.value));
      if (topicList.value) renderWhenChanged(topics, topicList.value, largestTopics);
      if (jobList.value) renderWhenChanged(jobs, jobList.value.jobs.slice(0, 3), recentJobs);
      const failed = [unique, errorCodes, topicList, jobList].find((result) => result.error);
      if (failed) throw failed.error;
    });
  },
};
