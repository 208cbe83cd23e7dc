// Hand-drawn SVG charts: a time-series line chart (one or more series, with axes, grid and a
// hover read-out) and a bar chart. Both size themselves to their container and redraw when
// it is resized; colours come from the stylesheet, so they follow the light or dark theme.

import { h, svg, replace } from './dom.js';
import { compact, clock, hourMinute } from './format.js';

const MARGIN = { top: 14, right: 16, bottom: 28 };
const SECOND = 1000;
/** Steps a time axis may use, smallest first. */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
  .map((seconds) => seconds * SECOND);
/** Roughly how wide one character of an axis label is, in pixels. */
const CHAR_WIDTH = 6.6;

/** A step of 1, 2 or 5 times a power of ten that cuts `span` into about `count` parts. */
function niceStep(span, count) {
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const normalised = raw / magnitude;
  const nice = normalised <= 1 ? 1 : normalised <= 2 ? 2 : normalised <= 5 ? 5 : 10;
  return nice * magnitude;
}

/** Value-axis ticks from 0 to a round number at or above `max`. */
export function valueTicks(max, count, integer) {
  const top = max > 0 ? max : 1;
  let step = niceStep(top, count);
  if (integer) step = Math.max(1, step);
  const ticks = [];
  for (let i = 0; i * step < top + step * 0.999; i += 1) {
    ticks.push(Math.round(i * step * 1e9) / 1e9);
  }
  if (ticks.length < 2) ticks.push(step);
  return ticks;
}

/** Time-axis ticks on round local times (every 10 s, 1 min, 5 min...) between min and max. */
export function timeTicks(min, max, maxCount) {
  const span = Math.max(max - min, SECOND);
  const step = TIME_STEPS.find((candidate) => span / candidate <= maxCount) ?? TIME_STEPS.at(-1);
  const zone = new Date(min).getTimezoneOffset() * 60 * SECOND;
  const ticks = [];
  for (let t = Math.ceil((min - zone) / step) * step + zone; t <= max; t += step) ticks.push(t);
  return { ticks, format: step < 60 * SECOND ? clock : hourMinute };
}

/** A legend row for a chart's series, coloured like its lines. */
export function legend(names) {
  return h('div', { class: 'legend' },
    names.map((name, i) => h('span', { class: 'legend-item' }, h('i', { class: `swatch s${i}` }), name)));
}

/** What both charts share: the SVG, the tooltip, resizing. */
class Chart {
  constructor(host, options) {
    this.host = host;
    this.options = { height: 220, yFormat: compact, integer: false, emptyText: 'Waiting for data…', ...options };
    host.classList.add('chart');
    this.svg = svg('svg', { role: 'img', 'aria-label': options.label ?? 'chart' });
    this.tip = h('div', { class: 'chart-tip', hidden: true });
    host.append(this.svg, this.tip);
    this.observer = new ResizeObserver(() => this.render());
    this.observer.observe(host);
  }

  destroy() {
    this.observer.disconnect();
  }

  /** Sizes the SVG to the container; false when the container is not laid out. */
  frame() {
    this.width = this.host.clientWidth;
    this.height = this.options.height;
    if (!this.width) return false;
    this.svg.setAttribute('viewBox', `0 0 ${this.width} ${this.height}`);
    this.svg.setAttribute('width', this.width);
    this.svg.setAttribute('height', this.height);
    this.tip.hidden = true;
    return true;
  }

  empty() {
    replace(this.svg, svg('text', {
      class: 'chart-empty', x: this.width / 2, y: this.height / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle',
    }, this.options.emptyText));
  }

  /** The value axis for values up to `max`: its ticks, scale and the plot area it leaves. */
  valueAxis(max) {
    const { height, yFormat, integer } = this.options;
    const ticks = valueTicks(max, Math.max(2, Math.floor(height / 56)), integer);
    const labelWidth = Math.max(...ticks.map((tick) => yFormat(tick).length)) * CHAR_WIDTH + 12;
    const plot = {
      x0: Math.max(30, Math.ceil(labelWidth)),
      x1: this.width - MARGIN.right,
      y0: MARGIN.top,
      y1: height - MARGIN.bottom,
    };
    const top = ticks.at(-1);
    const y = (value) => plot.y1 - (value / top) * (plot.y1 - plot.y0);
    const grid = svg('g', { class: 'grid' }, ticks.map((tick) => [
      svg('line', { x1: plot.x0, x2: plot.x1, y1: y(tick), y2: y(tick) }),
      svg('text', { class: 'axis-label', x: plot.x0 - 8, y: y(tick), 'text-anchor': 'end', 'dominant-baseline': 'middle' },
        yFormat(tick)),
    ]));
    return { plot, y, grid };
  }

  showTip(x, lines) {
    replace(this.tip, lines.map(([label, value, swatch]) => h('div', { class: 'tip-row' },
      swatch === undefined ? null : h('i', { class: `swatch s${swatch}` }),
      h('span', { class: 'tip-label' }, label),
      value === undefined ? null : h('strong', {}, value))));
    this.tip.hidden = false;
    const tipWidth = this.tip.offsetWidth;
    const left = x + 14 + tipWidth > this.width ? x - 14 - tipWidth : x + 14;
    this.tip.style.left = `${Math.max(0, left)}px`;
    this.tip.style.top = `${MARGIN.top}px`;
  }

  hideTip() {
    this.tip.hidden = true;
  }
}

/**
 * Lines over time. `update(data)` takes one array per series of `[timeMs, value]` points
 * (`value` null for "unknown"); a line breaks at unknown values and at gaps longer than
 * `gapMs`. The time axis spans at least `minSpanMs`.
 */
export class LineChart extends Chart {
  constructor(host, options) {
    super(host, { series: ['value'], gapMs: Infinity, minSpanMs: 30 * SECOND, area: true, ...options });
    this.data = this.options.series.map(() => []);
    this.svg.addEventListener('mousemove', (event) => this.hover(event.offsetX));
    this.svg.addEventListener('mouseleave', () => this.unhover());
  }

  update(data) {
    this.data = data;
    this.render();
  }

  render() {
    if (!this.frame()) return;
    const known = this.data.flat().filter(([, value]) => value !== null && value !== undefined);
    if (known.length === 0) {
      this.empty();
      return;
    }
    const times = this.data.flat().map(([time]) => time);
    const xMax = Math.max(...times);
    const xMin = Math.min(Math.min(...times), xMax - this.options.minSpanMs);
    const { plot, y, grid } = this.valueAxis(Math.max(...known.map(([, value]) => value)));
    const x = (time) => plot.x0 + ((time - xMin) / (xMax - xMin)) * (plot.x1 - plot.x0);
    this.scale = { x, y, plot };

    const { ticks, format } = timeTicks(xMin, xMax, Math.max(2, Math.floor((plot.x1 - plot.x0) / 96)));
    const timeAxis = svg('g', { class: 'time-axis' },
      svg('line', { class: 'baseline', x1: plot.x0, x2: plot.x1, y1: plot.y1, y2: plot.y1 }),
      ticks.map((tick) => svg('text', {
        class: 'axis-label', x: x(tick), y: this.height - 8, 'text-anchor': 'middle',
      }, format(tick))));
    const lines = this.data.map((points, i) => this.drawSeries(points, i, x, y, plot));
    this.hoverLayer = svg('g', { class: 'hover' });
    replace(this.svg, grid, timeAxis, lines, this.hoverLayer);
  }

  /** The runs of consecutive known points, split at unknown values and long gaps. */
  segments(points) {
    const runs = [];
    let run = [];
    let previous = null;
    for (const [time, value] of points) {
      const unknown = value === null || value === undefined;
      if (unknown || (previous !== null && time - previous > this.options.gapMs)) {
        if (run.length > 0) runs.push(run);
        run = [];
      }
      if (!unknown) run.push([time, value]);
      previous = time;
    }
    if (run.length > 0) runs.push(run);
    return runs;
  }

  drawSeries(points, index, x, y, plot) {
    const runs = this.segments(points);
    const path = (run) => run.map(([time, value], i) => `${i === 0 ? 'M' : 'L'}${x(time).toFixed(1)},${y(value).toFixed(1)}`).join('');
    const group = svg('g', { class: `series s${index}` });
    for (const run of runs) {
      if (this.options.area && index === 0 && run.length > 1) {
        const first = x(run[0][0]).toFixed(1);
        const last = x(run.at(-1)[0]).toFixed(1);
        group.append(svg('path', { class: 'area', d: `${path(run)}L${last},${plot.y1}L${first},${plot.y1}Z` }));
      }
      group.append(svg('path', { class: 'line', d: path(run) }));
    }
    const newest = runs.at(-1)?.at(-1);
    if (newest) group.append(svg('circle', { class: 'point', cx: x(newest[0]), cy: y(newest[1]), r: 3.5 }));
    return group;
  }

  /** Shows the values of the sample nearest the pointer. */
  hover(pointerX) {
    if (!this.scale || !this.hoverLayer) return;
    const { x, y, plot } = this.scale;
    const times = [...new Set(this.data.flat().map(([time]) => time))];
    if (times.length === 0) return;
    const nearest = times.reduce((best, time) => (Math.abs(x(time) - pointerX) < Math.abs(x(best) - pointerX) ? time : best));
    const at = x(nearest);
    const marks = [svg('line', { class: 'guide', x1: at, x2: at, y1: plot.y0, y2: plot.y1 })];
    const rows = [[clock(nearest)]];
    this.data.forEach((points, i) => {
      const point = points.find(([time]) => time === nearest);
      const value = point ? point[1] : null;
      if (value !== null && value !== undefined) marks.push(svg('circle', { class: `point s${i}`, cx: at, cy: y(value), r: 4 }));
      rows.push([this.options.series[i], value === null || value === undefined ? '—' : this.options.yFormat(value), i]);
    });
    replace(this.hoverLayer, marks);
    this.showTip(at, rows);
  }

  unhover() {
    if (this.hoverLayer) replace(this.hoverLayer);
    this.hideTip();
  }
}

/**
 * Bars with a label each. `update(bars)` takes `[{ label, value, title }]` (`title` names
 * the bar in the read-out when the label is abbreviated). With `valueLabels`, each bar's
 * value is printed over it when there is room.
 */
export class BarChart extends Chart {
  constructor(host, options) {
    super(host, { integer: true, valueLabels: true, ...options });
    this.bars = [];
  }

  update(bars) {
    this.bars = bars;
    this.render();
  }

  render() {
    if (!this.frame()) return;
    if (this.bars.length === 0) {
      this.empty();
      return;
    }
    const { yFormat } = this.options;
    const { plot, y, grid } = this.valueAxis(Math.max(...this.bars.map((bar) => bar.value)));
    const band = (plot.x1 - plot.x0) / this.bars.length;
    const barWidth = Math.max(1, Math.min(band * 0.7, 48));
    const widestLabel = Math.max(...this.bars.map((bar) => String(bar.label).length)) * CHAR_WIDTH + 10;
    const labelEvery = Math.max(1, Math.ceil(widestLabel / band));
    const widestValue = Math.max(...this.bars.map((bar) => yFormat(bar.value).length)) * CHAR_WIDTH;
    const roomForValues = this.options.valueLabels && widestValue + 8 < band;
    const last = this.bars.length - 1;

    const bars = this.bars.map((bar, i) => {
      const centre = plot.x0 + band * i + band / 2;
      const top = y(bar.value);
      const rect = svg('rect', {
        class: 'bar', x: centre - barWidth / 2, y: top, width: barWidth, height: Math.max(0, plot.y1 - top), rx: Math.min(3, barWidth / 3),
      });
      const hit = svg('rect', { class: 'bar-hit', x: centre - band / 2, y: plot.y0, width: band, height: plot.y1 - plot.y0 });
      hit.addEventListener('mouseenter', () => {
        rect.classList.add('active');
        this.showTip(centre, [[bar.title ?? bar.label, yFormat(bar.value)]]);
      });
      hit.addEventListener('mouseleave', () => {
        rect.classList.remove('active');
        this.hideTip();
      });
      return svg('g', {},
        rect,
        roomForValues && bar.value > 0
          ? svg('text', { class: 'bar-value', x: centre, y: top - 5, 'text-anchor': 'middle' }, yFormat(bar.value))
          : null,
        // Label from the newest bar backwards, so the most recent one is always labelled.
        (last - i) % labelEvery === 0
          ? svg('text', { class: 'axis-label', x: centre, y: this.height - 8, 'text-anchor': 'middle' }, bar.label)
          : null,
        hit);
    });
    const baseline = svg('line', { class: 'baseline', x1: plot.x0, x2: plot.x1, y1: plot.y1, y2: plot.y1 });
    replace(this.svg, grid, baseline, bars);
  }
}
