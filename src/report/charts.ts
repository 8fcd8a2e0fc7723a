/**
 * Report charts: vega-lite specs compiled to vega and rendered headlessly to SVG (no canvas),
 * plus SVG → PNG through sharp for the Markdown report. Data go in as inline values only, so
 * rendering never touches the network; vega escapes every label it writes into the SVG.
 */
import type * as vl from 'vega-lite';
import sharp from 'sharp';

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
};

/** Compiles a vega-lite spec and renders it to a standalone SVG string. */
export async function renderVegaLite(spec: Record<string, unknown>): Promise<string> {
  // loaded on first use: vega-canvas has a top-level await, which a CommonJS caller (tsx, require of
  // cnnf) cannot load; importing cnnf must work there, and only rendering a chart needs vega
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile({ config: BASE_CONFIG, ...spec } as vl.TopLevelSpec).spec;
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

/**
 * Accuracy (or success rate) against epsilon: one line per series (model × gradient mode), with its
 * 95% interval as a translucent band. Gradient paths differ in dash and point shape as well as in
 * colour, so a series lying on top of another still shows.
 */
export function lineChartSpec(opts: {
  title: string;
  xTitle: string;
  yTitle: string;
  points: SeriesPoint[];
  seriesOrder: string[];
}): Record<string, unknown> {
  const modes = new Set(opts.points.map((p) => p.mode));
  const bands = opts.points.some((p) => p.lower !== undefined && p.upper !== undefined);
  const color = { field: 'series', type: 'nominal', title: 'model (gradient path)', sort: opts.seriesOrder, legend: LEGEND };
  const x = { field: 'eps', type: 'quantitative', title: opts.xTitle, scale: { zero: true, nice: false } };
  const y = { field: 'value', type: 'quantitative', title: opts.yTitle, scale: { domain: [0, 1] }, axis: { format: '%' } };
  const tooltip = [
    { field: 'series', type: 'nominal', title: 'series' },
    { field: 'eps', type: 'quantitative', title: opts.xTitle },
    { field: 'value', type: 'quantitative', title: opts.yTitle, format: '.2%' },
    ...(bands ? [{ field: 'lower', type: 'quantitative', title: '95% lower', format: '.1%' }, { field: 'upper', type: 'quantitative', title: '95% upper', format: '.1%' }] : []),
  ];
  const line: Record<string, unknown> = { x, y, color, tooltip };
  // dashes and point shapes tell the gradient paths apart; the colour legend already names them
  if (modes.size > 1) {
    line.strokeDash = { field: 'mode', type: 'nominal', title: 'gradient', sort: ['first', 'e2e', 'none'], scale: { range: [[1, 0], [6, 3], [2, 2]] }, legend: null };
    line.shape = { field: 'mode', type: 'nominal', sort: ['first', 'e2e', 'none'], scale: { range: ['circle', 'triangle-up', 'square'] }, legend: null };
  }
  const layers: Array<Record<string, unknown>> = [];
  if (bands) {
    layers.push({
      mark: { type: 'errorband', opacity: 0.14, interpolate: 'linear' },
      encoding: {
        x,
        y: { field: 'lower', type: 'quantitative', title: opts.yTitle, scale: { domain: [0, 1] }, axis: { format: '%' } },
        y2: { field: 'upper' },
        // fill, not color: same series -> same colour (same domain and order), and the colour legend keeps line symbols
        fill: { field: 'series', type: 'nominal', sort: opts.seriesOrder, legend: null },
      },
    });
  }
  layers.push({ mark: { type: 'line', point: { size: 45, filled: true }, strokeWidth: 2, opacity: 0.9 }, encoding: line });
  return {
    title: bands ? { text: opts.title, subtitle: 'shaded: 95% confidence interval (Wilson)' } : opts.title,
    width: 420,
    height: 260,
    data: { values: opts.points },
    layer: layers,
  };
}

export interface BarPoint {
  /** Bar group, e.g. "clean" or "ε = 0.2". */
  group: string;
  series: string;
  value: number;
  lower?: number;
  upper?: number;
}

/**
 * Grouped bars with 95% error bars: for attacks run at a single perturbation size, where a line
 * chart would be one dot per series. One group per condition (clean, the attack), one bar per series.
 */
export function barChartSpec(opts: { title: string; yTitle: string; points: BarPoint[]; groupOrder: string[]; seriesOrder: string[] }): Record<string, unknown> {
  const bars = Math.max(1, opts.groupOrder.length * opts.seriesOrder.length);
  const x = { field: 'group', type: 'nominal', title: null, sort: opts.groupOrder, axis: { labelAngle: 0 } };
  const xOffset = { field: 'series', type: 'nominal', sort: opts.seriesOrder };
  const errors = opts.points.some((p) => p.lower !== undefined && p.upper !== undefined);
  return {
    title: errors ? { text: opts.title, subtitle: 'error bars: 95% confidence interval (Wilson)' } : opts.title,
    width: Math.min(520, Math.max(260, bars * 38)),
    height: 260,
    data: { values: opts.points },
    encoding: { x, xOffset },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          y: { field: 'value', type: 'quantitative', title: opts.yTitle, scale: { domain: [0, 1] }, axis: { format: '%' } },
          color: { field: 'series', type: 'nominal', title: 'model (gradient path)', sort: opts.seriesOrder, legend: LEGEND },
          tooltip: [
            { field: 'series', type: 'nominal' },
            { field: 'group', type: 'nominal' },
            { field: 'value', type: 'quantitative', format: '.2%' },
            ...(errors ? [{ field: 'lower', type: 'quantitative', title: '95% lower', format: '.1%' }, { field: 'upper', type: 'quantitative', title: '95% upper', format: '.1%' }] : []),
          ],
        },
      },
      ...(errors
        ? [{
            mark: { type: 'errorbar', ticks: { size: 6 }, color: '#222' },
            encoding: { y: { field: 'lower', type: 'quantitative', title: opts.yTitle }, y2: { field: 'upper' } },
          }]
        : []),
    ],
  };
}

/**
 * Confusion-matrix heatmap: cells coloured by the row-normalised fraction (so each true class reads
 * on the same scale), labelled with the raw count.
 */
export function confusionSpec(title: string, classNames: string[], matrix: number[][]): Record<string, unknown> {
  const labels = uniqueLabels(classNames);
  const values: Array<{ truth: string; pred: string; count: number; frac: number }> = [];
  matrix.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    row.forEach((count, j) => values.push({ truth: labels[i]!, pred: labels[j]!, count, frac: total > 0 ? count / total : 0 }));
  });
  const cell = labels.length <= 12 ? 30 : Math.max(8, Math.floor(360 / labels.length));
  return {
    title,
    width: cell * labels.length,
    height: cell * labels.length,
    data: { values },
    encoding: {
      x: { field: 'pred', type: 'ordinal', sort: labels, title: 'predicted class', axis: { labelAngle: -45, labelLimit: 110 } },
      y: { field: 'truth', type: 'ordinal', sort: labels, title: 'true class', axis: { labelLimit: 110 } },
    },
    layer: [
      {
        mark: { type: 'rect' },
        encoding: {
          color: { field: 'frac', type: 'quantitative', title: 'row fraction', scale: { scheme: 'blues', domain: [0, 1] }, legend: { format: '%' } },
          tooltip: [
            { field: 'truth', type: 'ordinal', title: 'true' },
            { field: 'pred', type: 'ordinal', title: 'predicted' },
            { field: 'count', type: 'quantitative', title: 'count' },
          ],
        },
      },
      ...(cell >= 20
        ? [{
            mark: { type: 'text', fontSize: cell >= 28 ? 10 : 8 },
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
