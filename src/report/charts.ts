/**
 * Report charts: vega-lite specs compiled to vega and rendered headlessly to SVG (no canvas),
 * plus SVG → PNG through sharp for the Markdown report. Data go in as inline values only, so
 * rendering never touches the network; vega escapes every label it writes into the SVG.
 */
import type * as vl from 'vega-lite';
import sharp from 'sharp';
import { cleanText } from '../format.js';

export interface Chart {
  /** Anchor / file-name stem, unique within a report. */
  id: string;
  title: string;
  svg: string;
}

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

const BASE_CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: '#ddd' },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#eee' },
  // labelLimit 0 = never truncate a legend label (the chart grows to fit instead)
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 0, titleLimit: 0, symbolLimit: 0 },
  title: { fontSize: 14, anchor: 'start', limit: 0, subtitleFontSize: 11, subtitleColor: '#57606a' },
  // tableau10 with green third: the series after the first two (orange, then red in tableau10) stay far apart
  range: { category: ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#9d755d', '#ff9da6', '#bab0ac'] },
};

/** Every string in a spec (titles, labels, data values, sort orders) through cleanText: the same text everywhere, valid XML. */
function cleanSpec(v: unknown): unknown {
  if (typeof v === 'string') return cleanText(v);
  if (Array.isArray(v)) return v.map(cleanSpec);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cleanSpec(x)]));
  return v;
}

/**
 * Compiles a vega-lite spec and renders it to a standalone SVG string. Every string in the spec is
 * sanitised first (cleanText) and vega escapes markup in what it writes, so any class or model name
 * gives a valid SVG (one sharp can rasterise).
 */
export async function renderVegaLite(spec: Record<string, unknown>): Promise<string> {
  // loaded on first use: vega-canvas has a top-level await, which a CommonJS caller (tsx, require of
  // cnnf) cannot load; importing cnnf must work there, and only rendering a chart needs vega
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile(cleanSpec({ config: BASE_CONFIG, ...spec }) as vl.TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * vega numbers its defs (gradients, clip paths) from zero in every render; when several SVGs are
 * inlined in one HTML page those ids would collide, so prefix them with a per-chart string.
 */
export function uniquifySvgIds(svg: string, prefix: string): string {
  const p = prefix.replace(/[^A-Za-z0-9_-]/g, '_');
  return svg
    .replace(/\bid="([^"]+)"/g, (_m, id: string) => `id="${p}-${id}"`)
    .replace(/url\(#([^)]+)\)/g, (_m, id: string) => `url(#${p}-${id})`)
    .replace(/\b((?:xlink:)?href)="#([^"]+)"/g, (_m, attr: string, id: string) => `${attr}="#${p}-${id}"`);
}

/** Rasterises an SVG string to PNG at 2x (144 dpi). */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg, 'utf8'), { density: 144 }).png({ compressionLevel: 9 }).toBuffer();
}

export interface SeriesPoint {
  series: string;
  mode: string;
  eps: number;
  value: number;
  /** 95% interval of `value` (drawn as a band / error bar when present). */
  lower?: number;
  upper?: number;
}

/** Legend below the plot, one entry per row: long labels widen the chart instead of being cut off. */
const LEGEND = { orient: 'bottom', direction: 'vertical', labelLimit: 0 };

/** Point shapes and stroke dashes, one per series in order (vega cycles them beyond eight series). */
const SHAPES = ['circle', 'triangle-up', 'square', 'diamond', 'triangle-down', 'cross', 'triangle-right', 'triangle-left'];
const DASHES = [[1, 0], [6, 3], [2, 2], [9, 3, 2, 3], [12, 4], [4, 2, 1, 2], [1, 4], [14, 3, 3, 3]];

/**
 * The y-axis range of a chart: the data and their interval bands plus a little padding, rounded out
 * to a tick step, within [0, 1], at least 4 points tall, so differences of a point or two are visible
 * instead of sitting in a flat 0-100% band. The axis format gains a decimal on a narrow range.
 */
export function zoomDomain(values: readonly number[]): { domain: [number, number]; format: string } {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { domain: [0, 1], format: '%' };
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  const pad = Math.max(0.01, (hi - lo) * 0.08);
  lo -= pad;
  hi += pad;
  const minSpan = 0.04;
  if (hi - lo < minSpan) {
    const mid = (lo + hi) / 2;
    lo = mid - minSpan / 2;
    hi = mid + minSpan / 2;
  }
  const span = hi - lo;
  const step = span <= 0.06 ? 0.01 : span <= 0.2 ? 0.02 : span <= 0.5 ? 0.05 : 0.1;
  lo = Math.max(0, Math.floor(lo / step + 1e-9) * step);
  hi = Math.min(1, Math.ceil(hi / step - 1e-9) * step);
  if (hi - lo < minSpan) {
    if (lo === 0) hi = minSpan;
    else lo = 1 - minSpan;
  }
  const round = (v: number): number => Number(v.toFixed(6));
  return { domain: [round(lo), round(hi)], format: hi - lo <= 0.06 ? '.1%' : '%' };
}

/**
 * Pairs of series whose points are exactly equal (same x values, same y values): drawn, one hides
 * the other, so the legend says so. Returns, per series, the earlier series it duplicates.
 */
export function identicalSeries<P extends { series: string; value: number }>(points: readonly P[], xOf: (p: P) => string | number, order: readonly string[]): Map<string, string> {
  const sig = new Map<string, string[]>();
  for (const p of points) {
    const key = `${String(xOf(p))}=${p.value}`;
    sig.set(p.series, [...(sig.get(p.series) ?? []), key]);
  }
  const seen = new Map<string, string>();
  const same = new Map<string, string>();
  for (const s of order) {
    const list = sig.get(s);
    if (!list) continue;
    const k = [...list].sort().join('|');
    const prev = seen.get(k);
    if (prev !== undefined) same.set(s, prev);
    else seen.set(k, s);
  }
  return same;
}

/** Renames the series that duplicate another: "cnnf (e2e): identical to cnnf (first)" (legend, tooltip and sort order alike). */
function markIdentical<P extends { series: string }>(points: P[], order: string[], same: Map<string, string>): { points: P[]; order: string[]; note: string[] } {
  if (same.size === 0) return { points, order, note: [] };
  const name = (s: string): string => (same.has(s) ? `${s}: identical to ${same.get(s)!}` : s);
  return {
    points: points.map((p) => ({ ...p, series: name(p.series) })),
    order: order.map(name),
    note: [...same].map(([s, t]) => `identical: ${t} and ${s} have the same value at every point (drawn on top of each other)`),
  };
}

/**
 * Accuracy (or success rate) against epsilon: one line per series (model × gradient mode), with its
 * 95% interval as a translucent band. Series differ in colour, stroke dash and (hollow) point shape,
 * so a series lying on top of another still shows, and series that coincide exactly are named so in
 * the legend and the subtitle. The y-axis is zoomed to the data and bands (zoomDomain).
 */
export function lineChartSpec(opts: {
  title: string;
  xTitle: string;
  yTitle: string;
  points: SeriesPoint[];
  seriesOrder: string[];
}): Record<string, unknown> {
  const bands = opts.points.some((p) => p.lower !== undefined && p.upper !== undefined);
  const same = identicalSeries(opts.points, (p: SeriesPoint) => p.eps, opts.seriesOrder);
  const { points, order, note } = markIdentical(opts.points, opts.seriesOrder, same);
  const zoom = zoomDomain(points.flatMap((p) => [p.value, p.lower ?? p.value, p.upper ?? p.value]));
  const yScale = { domain: zoom.domain, zero: false, nice: false };
  const legendTitle = 'model (gradient path)';
  // colour and shape share one explicit domain, so vega-lite draws one legend with both; the dash has no
  // legend of its own (a dashed triangle reads badly) and a sort instead of a domain keeps it out of that one
  const legend = { ...LEGEND, symbolStrokeWidth: 1.8 };
  const color = { field: 'series', type: 'nominal', title: legendTitle, scale: { domain: order }, legend };
  const shape = { field: 'series', type: 'nominal', title: legendTitle, scale: { domain: order, range: SHAPES }, legend };
  const strokeDash = { field: 'series', type: 'nominal', sort: order, scale: { range: DASHES }, legend: null };
  const x = { field: 'eps', type: 'quantitative', title: opts.xTitle, scale: { zero: true, nice: false } };
  const y = { field: 'value', type: 'quantitative', title: opts.yTitle, scale: yScale, axis: { format: zoom.format } };
  const tooltip = [
    { field: 'series', type: 'nominal', title: 'series' },
    { field: 'eps', type: 'quantitative', title: opts.xTitle },
    { field: 'value', type: 'quantitative', title: opts.yTitle, format: '.1%' },
    ...(bands ? [{ field: 'lower', type: 'quantitative', title: '95% lower', format: '.1%' }, { field: 'upper', type: 'quantitative', title: '95% upper', format: '.1%' }] : []),
  ];
  const layers: Array<Record<string, unknown>> = [];
  if (bands) {
    layers.push({
      mark: { type: 'errorband', opacity: 0.12, interpolate: 'linear' },
      encoding: {
        x,
        y: { field: 'lower', type: 'quantitative', title: opts.yTitle, scale: yScale, axis: { format: zoom.format } },
        y2: { field: 'upper' },
        // fill, not color: same series -> same colour (same domain and order), and the colour legend keeps line symbols
        // (sorted, not an explicit domain, so it stays out of the merged legend; same order -> same colours)
        fill: { field: 'series', type: 'nominal', sort: order, legend: null },
      },
    });
  }
  layers.push({ mark: { type: 'line', strokeWidth: 2 }, encoding: { x, y, color, strokeDash, tooltip } });
  // hollow markers on top, solid outlines: two series at the same point show both (circle and triangle)
  layers.push({ mark: { type: 'point', filled: false, size: 70, strokeWidth: 1.8, opacity: 1 }, encoding: { x, y, color, shape, tooltip } });
  const subtitle = [...(bands ? ['shaded: 95% confidence interval (Wilson)'] : []), ...note];
  return {
    title: subtitle.length > 0 ? { text: opts.title, subtitle } : opts.title,
    width: 520,
    height: 280,
    data: { values: points },
    layer: layers,
  };
}

export interface BarPoint {
  /** Group on the x-axis, e.g. "clean" or "ε = 0.2". */
  group: string;
  series: string;
  value: number;
  lower?: number;
  upper?: number;
}

/**
 * For attacks run at a single perturbation size, where a line would be one dot per series: one
 * group per condition (clean, the attack), one point per series with its 95% error bar, side by
 * side. Points, not bars: the y-axis is zoomed to the data (a bar's length would mislead).
 */
export function barChartSpec(opts: { title: string; yTitle: string; points: BarPoint[]; groupOrder: string[]; seriesOrder: string[] }): Record<string, unknown> {
  const n = Math.max(1, opts.groupOrder.length * opts.seriesOrder.length);
  const same = identicalSeries(opts.points, (p: BarPoint) => p.group, opts.seriesOrder);
  const { points, order, note } = markIdentical(opts.points, opts.seriesOrder, same);
  const zoom = zoomDomain(points.flatMap((p) => [p.value, p.lower ?? p.value, p.upper ?? p.value]));
  const yScale = { domain: zoom.domain, zero: false, nice: false };
  const x = { field: 'group', type: 'nominal', title: null, sort: opts.groupOrder, axis: { labelAngle: 0 }, scale: { paddingInner: 0.3 } };
  const xOffset = { field: 'series', type: 'nominal', sort: order, scale: { paddingOuter: 0.5 } };
  const errors = points.some((p) => p.lower !== undefined && p.upper !== undefined);
  const legendTitle = 'model (gradient path)';
  const subtitle = [...(errors ? ['error bars: 95% confidence interval (Wilson)'] : []), ...note];
  return {
    title: subtitle.length > 0 ? { text: opts.title, subtitle } : opts.title,
    width: Math.min(520, Math.max(260, n * 38)),
    height: 260,
    data: { values: points },
    encoding: { x, xOffset },
    layer: [
      ...(errors
        ? [{
            mark: { type: 'errorbar', ticks: { size: 6 }, thickness: 1.5 },
            encoding: {
              y: { field: 'lower', type: 'quantitative', title: opts.yTitle, scale: yScale, axis: { format: zoom.format } },
              y2: { field: 'upper' },
              color: { field: 'series', type: 'nominal', title: legendTitle, scale: { domain: order } },
            },
          }]
        : []),
      {
        mark: { type: 'point', filled: true, size: 80, opacity: 1 },
        encoding: {
          y: { field: 'value', type: 'quantitative', title: opts.yTitle, scale: yScale, axis: { format: zoom.format } },
          color: { field: 'series', type: 'nominal', title: legendTitle, scale: { domain: order }, legend: LEGEND },
          shape: { field: 'series', type: 'nominal', title: legendTitle, scale: { domain: order, range: SHAPES }, legend: LEGEND },
          tooltip: [
            { field: 'series', type: 'nominal' },
            { field: 'group', type: 'nominal' },
            { field: 'value', type: 'quantitative', format: '.1%' },
            ...(errors ? [{ field: 'lower', type: 'quantitative', title: '95% lower', format: '.1%' }, { field: 'upper', type: 'quantitative', title: '95% upper', format: '.1%' }] : []),
          ],
        },
      },
    ],
  };
}

/**
 * Confusion-matrix heatmap: cells coloured by the row-normalised fraction (so each true class reads
 * on the same scale), labelled with the raw count.
 */
export function confusionSpec(title: string, classNames: string[], matrix: number[][]): Record<string, unknown> {
  // cleaned before deduplication, so names that differ only in control characters stay distinct
  const labels = uniqueLabels(classNames.map(cleanText));
  const values: Array<{ truth: string; pred: string; count: number; frac: number }> = [];
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => values.push({ truth: labels[i]!, pred: labels[j]!, count, frac: total > 0 ? count / total : 0 }));
  });
  // small enough for three matrices side by side on a report page (the colour scale is explained in the text)
  const cell = labels.length <= 12 ? 22 : Math.max(6, Math.floor(264 / labels.length));
  return {
    title: { text: title, fontSize: 12 },
    width: cell * labels.length,
    height: cell * labels.length,
    data: { values },
    encoding: {
      x: { field: 'pred', type: 'ordinal', sort: labels, title: 'predicted class', axis: { labelAngle: -45, labelLimit: 110, labelFontSize: 10, titleFontSize: 11, titlePadding: -12 } },
      y: { field: 'truth', type: 'ordinal', sort: labels, title: 'true class', axis: { labelLimit: 110, labelFontSize: 10, titleFontSize: 11 } },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'frac', type: 'quantitative', title: 'row fraction', scale: { scheme: 'blues', domain: [0, 1] }, legend: null },
          tooltip: [
            { field: 'truth', type: 'ordinal', title: 'true' },
            { field: 'pred', type: 'ordinal', title: 'predicted' },
            { field: 'count', type: 'quantitative', title: 'count' },
          ],
        },
      },
      ...(cell >= 18
        ? [{
            mark: { type: 'text', fontSize: 9 },
            encoding: {
              text: { field: 'count', type: 'quantitative' },
              color: { condition: { test: 'datum.frac > 0.5', value: 'white' }, value: 'black' },
            },
          }]
        : []),
    ],
  };
}

/** Ordinal scales merge equal labels; make duplicates distinct ("x", "x (2)") so every row/column stays. */
function uniqueLabels(names: string[]): string[] {
  const count = new Map<string, number>();
  return names.map((n) => {
    const c = (count.get(n) ?? 0) + 1;
    count.set(n, c);
    return c === 1 ? n : `${n} (${c})`;
  });
}

/** Per-batch training loss (faint) and its moving average (bold). Long logs are thinned for drawing. */
export function lossChartSpec(title: string, steps: number[], loss: number[], avg: number[], window: number, maxPoints = 1500): Record<string, unknown> {
  const n = steps.length;
  const stride = Math.max(1, Math.ceil(n / maxPoints));
  const rawLabel = 'loss (per batch)';
  const avgLabel = `moving average (${window} batches)`;
  const values: Array<{ step: number; loss: number; series: string }> = [];
  for (let i = 0; i < n; i += stride) {
    values.push({ step: steps[i]!, loss: loss[i]!, series: rawLabel });
    values.push({ step: steps[i]!, loss: avg[i]!, series: avgLabel });
  }
  if ((n - 1) % stride !== 0) {
    values.push({ step: steps[n - 1]!, loss: loss[n - 1]!, series: rawLabel });
    values.push({ step: steps[n - 1]!, loss: avg[n - 1]!, series: avgLabel });
  }
  return {
    title,
    width: 520,
    height: 260,
    data: { values },
    mark: { type: 'line', point: n === 1 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss', scale: { zero: false } },
      color: { field: 'series', type: 'nominal', title: null, sort: [rawLabel, avgLabel], scale: { range: ['#9ecae1', '#08519c'] } },
      strokeWidth: { field: 'series', type: 'nominal', sort: [rawLabel, avgLabel], scale: { range: [1, 2.5] }, legend: null },
      opacity: { field: 'series', type: 'nominal', sort: [rawLabel, avgLabel], scale: { range: [0.7, 1] }, legend: null },
    },
  };
}
