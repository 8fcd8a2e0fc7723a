/**
 * Report charts: vega-lite specs compiled to vega and rendered headlessly to SVG (no canvas),
 * plus SVG → PNG through sharp for the Markdown report. Data go in as inline values only, so
 * rendering never touches the network; vega escapes every label it writes into the SVG.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
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
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
  title: { fontSize: 14, anchor: 'start', limit: 600 },
};

/** Compiles a vega-lite spec and renders it to a standalone SVG string. */
export async function renderVegaLite(spec: Record<string, unknown>): Promise<string> {
  const compiled = vl.compile({ config: BASE_CONFIG, ...spec } as vl.TopLevelSpec).spec;
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
}

/** Accuracy (or success rate) against epsilon: one line per series (model × gradient mode). */
export function lineChartSpec(opts: {
  title: string;
  xTitle: string;
  yTitle: string;
  points: SeriesPoint[];
  seriesOrder: string[];
}): Record<string, unknown> {
  const modes = new Set(opts.points.map((p) => p.mode));
  const encoding: Record<string, unknown> = {
    x: { field: 'eps', type: 'quantitative', title: opts.xTitle, scale: { zero: true, nice: false } },
    y: { field: 'value', type: 'quantitative', title: opts.yTitle, scale: { domain: [0, 1] }, axis: { format: '%' } },
    color: { field: 'series', type: 'nominal', title: 'model (gradient)', sort: opts.seriesOrder },
    tooltip: [
      { field: 'series', type: 'nominal', title: 'series' },
      { field: 'eps', type: 'quantitative', title: opts.xTitle },
      { field: 'value', type: 'quantitative', title: opts.yTitle, format: '.2%' },
    ],
  };
  // dashes tell the gradient paths apart; the colour legend already names them, so no second legend
  if (modes.size > 1) encoding.strokeDash = { field: 'mode', type: 'nominal', title: 'gradient', sort: ['first', 'e2e', 'none'], legend: null };
  return {
    title: opts.title,
    width: 420,
    height: 260,
    data: { values: opts.points },
    mark: { type: 'line', point: { size: 45 }, strokeWidth: 2 },
    encoding,
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
