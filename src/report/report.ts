/**
 * `cnnf report`: turns a results file (and optional training logs) into DIR/index.html (one
 * self-contained page: inline CSS, inline SVG charts, base64 PNG images, no scripts, no external
 * requests) and DIR/report.md (same tables; its charts and image dumps are PNG files in DIR/assets/).
 */
import { existsSync, rmdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import sharp from 'sharp';
import type { EvalResults, ModelResult } from '../eval/results.js';
import { humanNumber } from '../format.js';
import { writeFilesAtomic } from '../io/atomic.js';
import { readInputFile } from '../io/files.js';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import {
  accInterval, cleanVerdict, epsSymbol, fmtEps, groupAttacks, groupVerdict, methodLabel, pct, pctCi, pointAt, successInterval, unionEps,
  worstVerdict, type AttackGroup,
} from './analysis.js';
import type { Verdict } from '../eval/compare.js';
import { ALPHA, INTERVAL_METHOD, PAIRED_TEST } from '../eval/stats.js';
import {
  barChartSpec, confusionSpec, lineChartSpec, lossChartSpec, renderVegaLite, svgToPng, uniquifySvgIds, type BarPoint, type SeriesPoint,
} from './charts.js';
import { headingId, renderHtml, renderMarkdown, type Block, type ChartAsset, type ImageAsset, type Inline, type Text } from './document.js';
import { slugify } from './escape.js';
import { validateResults } from './results-file.js';
import { defaultWindow, movingAverage, readTrainingLog, type TrainingLog } from './trainlog.js';

/** The one folder beside index.html and report.md that holds every other file of a report. */
export const ASSETS_DIR = 'assets';

export interface ReportOptions {
  outDir: string;
  /** Training logs: CSV paths, or logs already parsed with parseTrainingLog/readTrainingLog. */
  trainingLogs?: Array<string | TrainingLog>;
  title?: string;
  /** Where the results were read from: shown in provenance; image dumps are resolved relative to it. */
  resultsPath?: string;
}

export interface RenderedReport {
  title: string;
  html: string;
  markdown: string;
  /** PNG files referenced by report.md, keyed by their path relative to the output directory (`assets/NAME.png`). */
  pngs: Map<string, Buffer>;
}

export interface ReportOutput {
  /** Absolute paths. */
  indexHtml: string;
  reportMd: string;
  files: string[];
}

/** Images larger than this are not inlined (the HTML would become unwieldy). */
const MAX_DUMP_BYTES = 20 * 1024 * 1024;

class Builder {
  readonly blocks: Block[] = [];
  readonly pending: Array<{ spec: Record<string, unknown>; asset: ChartAsset }> = [];
  private readonly ids = new Set<string>();
  private chartCount = 0;

  h2(text: string): void {
    this.blocks.push({ kind: 'heading', level: 2, text, id: headingId(text, this.ids) });
  }
  h3(text: string): void {
    this.blocks.push({ kind: 'heading', level: 3, text, id: headingId(text, this.ids) });
  }
  p(text: Text): void {
    this.blocks.push({ kind: 'paragraph', text });
  }
  note(text: Text): void {
    this.blocks.push({ kind: 'note', text });
  }
  table(header: string[], rows: Text[][], numeric?: boolean[]): void {
    this.blocks.push({ kind: 'table', header, rows, numeric });
  }
  /** Queues a chart; it is rendered later (renderAll) and shows up in place. */
  chart(stem: string, title: string, spec: Record<string, unknown>): ChartAsset {
    const n = ++this.chartCount;
    const id = `chart-${n}-${slugify(stem, 'chart')}`;
    const asset: ChartAsset = { id, title, svg: '', pngFile: `${ASSETS_DIR}/${id}.png` };
    this.pending.push({ spec, asset });
    return asset;
  }
  charts(list: ChartAsset[], layout?: 'grid'): void {
    if (list.length > 0) this.blocks.push({ kind: 'charts', charts: list, ...(layout ? { layout } : {}) });
  }
}

/**
 * Builds the report in memory (renders every chart and its PNG) without writing anything. With
 * `outDir`, image dumps already inside its assets folder (`cnnf demo` writes them there) are
 * referenced where they are instead of being copied.
 */
export async function renderReport(results: EvalResults, opts: Omit<ReportOptions, 'outDir'> & { outDir?: string } = {}): Promise<RenderedReport> {
  validateResults(results, opts.resultsPath ?? 'results');
  const logs = (opts.trainingLogs ?? []).map((l) => (typeof l === 'string' ? readTrainingLog(l) : l));
  const title = opts.title?.trim() || `Robustness report: ${results.models.map((m) => m.name).join(' vs ')}`;
  const groups = groupAttacks(results);
  const b = new Builder();
  const pngs = new Map<string, Buffer>();

  summarySection(b, results, groups);
  checksSection(b, results);
  cleanSection(b, results);
  for (const g of groups) attackSection(b, g, results);
  successSection(b, groups, results.provenance.examples);
  worstCaseSection(b, results);
  confusionSection(b, results, groups);
  if (logs.length > 0) trainingSection(b, logs);
  await dumpsSection(b, results, opts.resultsPath, pngs, opts.outDir);
  provenanceSection(b, results, opts.resultsPath);

  for (const { spec, asset } of b.pending) {
    asset.svg = uniquifySvgIds(await renderVegaLite(spec), asset.id);
  }
  const rasters = await Promise.all(b.pending.map(({ asset }) => svgToPng(asset.svg)));
  b.pending.forEach(({ asset }, i) => pngs.set(asset.pngFile, rasters[i]!));

  return { title, html: renderHtml(title, b.blocks), markdown: renderMarkdown(title, b.blocks), pngs };
}

/**
 * Writes DIR/index.html, DIR/report.md and, in DIR/assets/, the PNGs report.md references: every
 * file of a folder is staged (written and fsynced) first and renamed into place only when all are
 * complete (see writeFilesAtomic); the assets go first and index.html last, so a full disk never
 * leaves a new report.md without its images.
 */
export async function writeReport(results: EvalResults, opts: ReportOptions): Promise<ReportOutput> {
  const outDir = resolve(opts.outDir);
  const rendered = await renderReport(results, { ...opts, outDir });
  const assets = [...rendered.pngs].map(([path, png]): [string, Buffer] => [path.slice(ASSETS_DIR.length + 1), png]);
  const existed = existsSync(outDir);
  let files: string[];
  try {
    files = assets.length > 0 ? writeFilesAtomic(join(outDir, ASSETS_DIR), assets) : [];
  } catch (e) {
    // writeFilesAtomic removes the assets folder it made; remove the report folder too if this call made it
    if (!existed) {
      try {
        rmdirSync(outDir); // only when empty
      } catch {
        /* best effort */
      }
    }
    throw e;
  }
  files.push(...writeFilesAtomic(outDir, [['report.md', rendered.markdown], ['index.html', rendered.html]]));
  return { indexHtml: join(outDir, 'index.html'), reportMd: join(outDir, 'report.md'), files };
}

// ---------------------------------------------------------------------------------------------

function summarySection(b: Builder, r: EvalResults, groups: AttackGroup[]): void {
  const p = r.provenance;
  b.h2('Summary');
  const intro: Inline[] = [`${r.models.length} model${r.models.length === 1 ? '' : 's'} (`];
  r.models.forEach((m, i) => {
    if (i > 0) intro.push(', ');
    intro.push({ strong: m.name }, `: ${m.arch}${m.cycles > 0 ? `, ${m.cycles} feedback cycle${m.cycles === 1 ? '' : 's'}` : ''}`);
  });
  intro.push(`) evaluated on ${p.dataset} (${p.testSubset}, ${p.examples} examples) with ${groups.length} attack${groups.length === 1 ? '' : 's'}.`);
  b.p(intro);

  const n = p.examples;
  const stats: Inline[] = [
    'Every accuracy is shown with its 95% confidence interval in brackets (', { strong: INTERVAL_METHOD.replace(/, 95%$/, '') },
    ` interval, in percent, over the ${n} test examples).`,
  ];
  if (r.models.length > 1) {
    stats.push(' Models are compared with the ', { strong: PAIRED_TEST }, ' on the per-example outcomes; a model is called most robust only when it is',
      ` significantly better than every other model (p < ${ALPHA}); otherwise the table says "no significant difference".`);
  }
  b.p(stats);

  const anyWorst = r.models.some((m) => m.worstCase.length > 0);
  if (anyWorst) {
    const eps = unionEps(r.models.map((m) => m.worstCase.map((w) => w.eps)));
    b.p('Most robust model at each ε (worst case over all attacks, per example):');
    b.blocks.push({
      kind: 'list',
      items: eps.map((e): Text => {
        const detail = r.models.map((m) => {
          const w = m.worstCase.find((x) => Math.abs(x.eps - e) <= 1e-9 * Math.max(1, e));
          return `${m.name} ${pctCi(w?.accuracy, accInterval(w, n))}`;
        }).join(', ');
        return [`ε = ${fmtEps(e)}: `, ...verdictInline(worstVerdict(r.models, e, n)), ` — ${detail}`];
      }),
    });
  }

  const rows: Text[][] = [];
  rows.push(['clean', '—', verdictInline(cleanVerdict(r.models, n)), ...r.models.map((m) => pctCi(m.clean.accuracy, accInterval(m.clean, n)))]);
  for (const g of groups) {
    for (const e of g.eps) {
      const cells = r.models.map((m) => {
        let weakest: { accuracy: number } | undefined;
        for (const s of g.series) {
          if (s.model !== m) continue;
          const pt = pointAt(s.attack.points, e);
          if (pt && (weakest === undefined || pt.accuracy < weakest.accuracy)) weakest = pt;
        }
        return pctCi(weakest?.accuracy, accInterval(weakest, n));
      });
      rows.push([g.name, `${epsSymbol(g.method)} = ${fmtEps(e)}`, verdictInline(groupVerdict(g, r.models, e, n)), ...cells]);
    }
  }
  b.p('Best model per attack and perturbation size: on clean images the highest clean accuracy (not robustness), under attack the most robust (accuracy [95% interval]; for models attacked through several gradient paths, the lower accuracy counts):');
  b.table(['Attack', 'ε / σ', 'Best (paired test)', ...r.models.map((m) => m.name)], rows, [false, false, false, ...r.models.map(() => true)]);
}

/** A verdict as inline text: the model name in bold with its p value, or "no significant difference (p = …)". */
function verdictInline(v: Verdict): Inline[] {
  if (v.mostRobust !== null) {
    const rest = v.text.slice(v.mostRobust.length);
    return [{ strong: v.mostRobust }, rest];
  }
  return [v.text];
}

function cleanSection(b: Builder, r: EvalResults): void {
  b.h2('Clean accuracy');
  b.table(
    ['Model', 'Training', 'Architecture', 'Feedback cycles', 'Readout', 'Examples', 'Clean accuracy [95% CI]'],
    r.models.map((m) => [
      { strong: m.name }, m.recipe ?? '—', m.arch, String(m.cycles), m.readout,
      String(m.clean.confusion.reduce((a, row) => a + row.reduce((x, y) => x + y, 0), 0)),
      pctCi(m.clean.accuracy, accInterval(m.clean, r.provenance.examples)),
    ]),
    [false, false, false, true, false, true, true],
  );
}

function attackSection(b: Builder, g: AttackGroup, r: EvalResults): void {
  const sym = epsSymbol(g.method);
  const n = r.provenance.examples;
  b.h2(`Accuracy under ${g.name}`);
  const modes = [...new Set(g.series.map((s) => s.mode).filter((m) => m !== 'none'))];
  b.p([
    `${methodLabel(g.method)}, ${g.targeted ? 'targeted' : 'untargeted'}`,
    modes.length > 0 ? `; gradient path: ${modes.join(', ')}` : '',
    modes.includes('e2e') ? ' (first = gradient of the first feedforward pass only, e2e = end-to-end through every feedback cycle)' : '',
    '. Settings are listed under Provenance.',
  ]);
  b.table(
    [`${sym}`, ...g.series.map((s) => s.label)],
    g.eps.map((e) => [fmtEps(e), ...g.series.map((s) => {
      const pt = pointAt(s.attack.points, e);
      return pctCi(pt?.accuracy, accInterval(pt, n));
    })]),
    [true, ...g.series.map(() => true)],
  );
  const seriesOrder = g.series.map((s) => s.label);
  const xTitle = g.method === 'gaussian' ? 'σ (noise std)' : 'ε (L∞)';
  const band = (c: { accuracy: number } | undefined): { lower?: number; upper?: number } => {
    const iv = accInterval(c, n);
    return iv ? { lower: iv.lower, upper: iv.upper } : {};
  };
  if (g.eps.length === 1 && !sameZero(g.eps[0]!)) {
    // one perturbation size: a line would be a single dot, so grouped bars (clean and attacked) with error bars
    const e = g.eps[0]!;
    const attacked = `${sym} = ${fmtEps(e)}`;
    const points: BarPoint[] = g.series.flatMap((s) => {
      const pt = pointAt(s.attack.points, e)!;
      return [
        { group: 'clean', series: s.label, value: s.model.clean.accuracy, ...band(s.model.clean) },
        { group: attacked, series: s.label, value: pt.accuracy, ...band(pt) },
      ];
    });
    const title = `Accuracy at ${attacked}: ${g.name}`;
    b.charts([b.chart(`accuracy-${g.name}`, title, barChartSpec({ title, yTitle: 'accuracy', points, groupOrder: ['clean', attacked], seriesOrder }))]);
    return;
  }
  // every line starts at the clean point (ε = 0 is no perturbation) unless the attack itself ran at 0
  const points: SeriesPoint[] = g.series.flatMap((s) => [
    ...(pointAt(s.attack.points, 0) ? [] : [{ series: s.label, mode: s.mode, eps: 0, value: s.model.clean.accuracy, ...band(s.model.clean) }]),
    ...s.attack.points.map((p) => ({ series: s.label, mode: s.mode, eps: p.eps, value: p.accuracy, ...band(p) })),
  ]);
  const title = `Accuracy vs ${sym}: ${g.name}`;
  b.charts([b.chart(`accuracy-${g.name}`, title, lineChartSpec({ title, xTitle, yTitle: 'accuracy', points, seriesOrder }))]);
}

const sameZero = (e: number): boolean => Math.abs(e) <= 1e-12;

function successSection(b: Builder, groups: AttackGroup[], n: number): void {
  const targeted = groups.filter((g) => g.series.some((s) => s.attack.targeted && s.attack.points.some((p) => typeof p.successRate === 'number')));
  if (targeted.length === 0) return;
  b.h2('Targeted attack success rate');
  b.p('Fraction of examples classified as the attack\'s target class (lower is more robust).');
  for (const g of targeted) {
    const series = g.series.filter((s) => s.attack.targeted);
    b.h3(`${g.name} success rate`);
    b.table(
      [epsSymbol(g.method), ...series.map((s) => s.label)],
      g.eps.map((e) => [fmtEps(e), ...series.map((s) => {
        const pt = pointAt(s.attack.points, e);
        return pctCi(pt?.successRate ?? undefined, successInterval(pt, n));
      })]),
      [true, ...series.map(() => true)],
    );
    const points: SeriesPoint[] = series.flatMap((s) =>
      s.attack.points.filter((p) => typeof p.successRate === 'number').map((p) => {
        const iv = successInterval(p, n);
        return { series: s.label, mode: s.mode, eps: p.eps, value: p.successRate!, ...(iv ? { lower: iv.lower, upper: iv.upper } : {}) };
      }),
    );
    const title = `Targeted success rate vs ${epsSymbol(g.method)}: ${g.name}`;
    b.charts([b.chart(`success-${g.name}`, title, lineChartSpec({
      title, xTitle: g.method === 'gaussian' ? 'σ (noise std)' : 'ε (L∞)', yTitle: 'success rate', points, seriesOrder: series.map((s) => s.label),
    }))]);
  }
}

function checksSection(b: Builder, r: EvalResults): void {
  b.h2('Trust checks');
  if (!r.checks) {
    b.note('These results were written without the trust checks (an older cnnf, or checks turned off).');
    return;
  }
  b.p('Every evaluation runs nine checks for results that cannot be trusted: zero gradients at the start point, a gradient-free or transfer attack beating the white-box attacks, a margin loss beating cross-entropy, accuracy rising with ε or iterations, first-pass and end-to-end gradients disagreeing, a non-deterministic model, an unbounded attack that fails, clean accuracy near chance, a checkpoint evaluated on another dataset than it was trained on (AutoAttack; Carlini et al. 2019; Tramèr et al. 2020).');
  if (r.checks.length === 0) {
    b.p([{ strong: 'No check raised a warning' }, ' for any model.']);
    return;
  }
  b.table(['Model', 'Check', 'Severity', 'Finding'], r.checks.map((c) => [c.model, `${c.number} ${c.id}`, c.severity, c.message]), [false, false, false, false]);
}

function worstCaseSection(b: Builder, r: EvalResults): void {
  b.h2('Worst-case accuracy');
  const eps = unionEps(r.models.map((m) => m.worstCase.map((w) => w.eps)));
  if (eps.length === 0) {
    b.note('The results contain no worst-case accuracies.');
    return;
  }
  b.p('Per example, correct only if it survives every attack run at that ε (all methods, modes and restarts).');
  const at = (m: ModelResult, e: number): ModelResult['worstCase'][number] | undefined => m.worstCase.find((w) => Math.abs(w.eps - e) <= 1e-9 * Math.max(1, e));
  const n = r.provenance.examples;
  b.table(['ε', ...r.models.map((m) => m.name)], eps.map((e) => [fmtEps(e), ...r.models.map((m) => pctCi(at(m, e)?.accuracy, accInterval(at(m, e), n)))]), [true, ...r.models.map(() => true)]);
  const band = (c: { accuracy: number }): { lower?: number; upper?: number } => {
    const iv = accInterval(c, n);
    return iv ? { lower: iv.lower, upper: iv.upper } : {};
  };
  // the worst case at ε = 0 is the clean accuracy: every line starts there
  const points: SeriesPoint[] = r.models.flatMap((m) => [
    ...(m.worstCase.some((w) => sameZero(w.eps)) ? [] : [{ series: m.name, mode: 'none', eps: 0, value: m.clean.accuracy, ...band(m.clean) }]),
    ...m.worstCase.map((w) => ({ series: m.name, mode: 'none', eps: w.eps, value: w.accuracy, ...band(w) })),
  ]);
  const title = 'Worst-case accuracy vs ε';
  b.charts([b.chart('worst-case', title, lineChartSpec({ title, xTitle: 'ε (L∞)', yTitle: 'accuracy', points, seriesOrder: r.models.map((m) => m.name) }))]);
}

function confusionSection(b: Builder, r: EvalResults, groups: AttackGroup[]): void {
  b.h2('Confusion matrices');
  b.p('Rows are true classes, columns predicted classes; cells show counts, shaded by the fraction of the row (white 0%, dark blue 100%).');
  for (const m of r.models) {
    b.h3(`Confusion matrices: ${m.name}`);
    const charts: ChartAsset[] = [b.chart(`confusion-${m.name}-clean`, `${m.name}: clean`, confusionSpec(`${m.name}: clean`, m.classNames, m.clean.confusion))];
    for (const g of groups) {
      for (const s of g.series.filter((x) => x.model === m)) {
        for (const p of s.attack.points) {
          if (!p.confusion) continue;
          const t = `${s.label}: ${g.name} ${epsSymbol(g.method)}=${fmtEps(p.eps)}`;
          charts.push(b.chart(`confusion-${m.name}-${g.name}-${s.mode}-${fmtEps(p.eps)}`, t, confusionSpec(t, m.classNames, p.confusion)));
        }
      }
    }
    b.charts(charts, 'grid');
  }
}

function trainingSection(b: Builder, logs: TrainingLog[]): void {
  b.h2('Training loss');
  const rows: Text[][] = [];
  const charts: ChartAsset[] = [];
  for (const log of logs) {
    const loss = log.rows.map((r) => r.loss);
    const window = defaultWindow(loss.length);
    const avg = movingAverage(loss, window);
    const accAvg = movingAverage(log.rows.map((r) => r.accuracy), window);
    const last = log.rows[log.rows.length - 1]!;
    rows.push([
      log.name, String(log.rows.length), String(new Set(log.rows.map((r) => r.epoch)).size), String(last.step),
      avg[avg.length - 1]!.toFixed(4), pct(accAvg[accAvg.length - 1]), humanNumber(last.lr),
    ]);
    const title = `Training loss: ${log.name}`;
    charts.push(b.chart(`loss-${log.name}`, title, lossChartSpec(title, log.rows.map((r) => r.step), loss, avg, window)));
  }
  b.table(['Log', 'Batches', 'Epochs', 'Last step', 'Final loss (moving avg)', 'Final batch accuracy (moving avg)', 'Final lr'], rows, [false, true, true, true, true, true, true]);
  b.charts(charts);
}

async function dumpsSection(b: Builder, r: EvalResults, resultsPath: string | undefined, pngs: Map<string, Buffer>, outDir: string | undefined): Promise<void> {
  const withDumps = r.models.filter((m) => (m.dumps ?? []).length > 0);
  if (withDumps.length === 0) return;
  b.h2('Image dumps');
  b.p('Each row: clean image | perturbed image | perturbation (amplified) | the CNN-F\'s reconstruction after each feedback cycle; below it the true and predicted class (red: misclassified). One set per attack point, one example per class where possible, preferring examples the attack flips.');
  const base = resultsPath ? dirname(resolve(resultsPath)) : process.cwd();
  const assetsDir = outDir ? join(resolve(outDir), ASSETS_DIR) : undefined;
  for (const m of withDumps) {
    const mi = r.models.indexOf(m);
    b.h3(`Image dumps: ${m.name}`);
    // one block per attack point (the dump's directory)
    const groups = new Map<string, Array<[number, string]>>();
    for (const [j, rel] of (m.dumps ?? []).entries()) {
      const dir = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      groups.set(dir, [...(groups.get(dir) ?? []), [j, rel]]);
    }
    for (const [dir, list] of groups) {
      if (groups.size > 1 && dir !== '') b.p([{ strong: dir.slice(dir.lastIndexOf('/') + 1) }]);
      const images: ImageAsset[] = [];
      for (const [j, rel] of list) {
        const path = resolve(base, rel);
        const img = await loadDump(path, rel);
        // a PNG dump already in DIR/assets/ (cnnf demo) is shown where it is; any other image is copied there
        const inPlace = assetsDir && img.png && img.asIs ? relative(dirname(assetsDir), path).split(sep).join('/') : undefined;
        const keep = inPlace !== undefined && inPlace.startsWith(`${ASSETS_DIR}/`) && /^[A-Za-z0-9._/-]+$/.test(inPlace) && !inPlace.split('/').includes('..');
        const file = keep ? inPlace : `${ASSETS_DIR}/dump-${mi + 1}-${slugify(m.name, 'model')}-${j + 1}.png`;
        images.push({ title: rel, png: img.png, pngFile: file, note: img.note });
        if (img.png && !keep) pngs.set(file, img.png);
      }
      b.blocks.push({ kind: 'images', images });
    }
  }
}

/** A dump as PNG bytes; `asIs`: the file itself is a PNG (not converted). */
async function loadDump(path: string, shown: string): Promise<{ png: Buffer | null; asIs?: boolean; note?: string }> {
  let bytes: Buffer;
  try {
    // a FIFO or device named in the results file is skipped, never read (it could block or never end)
    bytes = readInputFile(path, 'image dump', { maxBytes: MAX_DUMP_BYTES, missing: () => 'missing' });
  } catch (e) {
    const msg = e instanceof UsageError ? e.message : String(e);
    if (msg === 'missing') return { png: null, note: `Image dump missing: ${shown}` };
    if (/is a directory|is not a regular file/.test(msg)) return { png: null, note: `Image dump skipped (not a file): ${shown}` };
    if (/limit$/.test(msg)) return { png: null, note: `Image dump skipped (larger than ${MAX_DUMP_BYTES >> 20} MB): ${shown}` };
    return { png: null, note: `Image dump unreadable (${msg.split(': ').pop() ?? 'error'}): ${shown}` };
  }
  const PNG_MAGIC = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (bytes.subarray(0, 8).equals(PNG_MAGIC)) return { png: bytes, asIs: true };
  try {
    return { png: await sharp(bytes).png().toBuffer() };
  } catch {
    return { png: null, note: `Image dump skipped (not a readable image): ${shown}` };
  }
}

function provenanceSection(b: Builder, r: EvalResults, resultsPath: string | undefined): void {
  const p = r.provenance;
  b.h2('Provenance');
  b.table(['Field', 'Value'], [
    ['Results written by', `${r.tool.name} ${r.tool.version}`],
    ['Report written by', `cnnf ${VERSION}`],
    ['Created', r.createdAt],
    ...(resultsPath ? [['Results file', { code: resolve(resultsPath) }] as Text[]] : []),
    ['Command', { code: p.command }],
    ['Backend', p.backend],
    ['Seed', String(p.seed)],
    ['Dataset', p.dataset],
    ['Test subset', p.testSubset],
    ['Examples', String(p.examples)],
    ...(p.suite ? [['Suite', p.suite] as Text[]] : []),
    ['Node', p.node],
    ['Platform', p.platform],
    ['Duration', `${p.durationSeconds.toFixed(1)} s`],
  ]);
  b.h3('Checkpoints');
  b.table(['Model', 'Path', 'SHA-256', 'Architecture', 'Cycles', 'Readout'],
    r.models.map((m) => [{ strong: m.name }, { code: m.path }, { code: m.sha256 }, m.arch, String(m.cycles), m.readout]));
  b.h3('Attack settings');
  b.table(['Model', 'Attack', 'Method', 'Mode', 'Targeted', 'ε / σ', 'Settings'],
    r.models.flatMap((m) => m.attacks.map((a): Text[] => [
      m.name, a.name, methodLabel(a.method), a.mode ?? '—', a.targeted ? 'yes' : 'no',
      a.points.map((pt) => fmtEps(pt.eps)).join(', '),
      { code: JSON.stringify(a.settings) },
    ])));
}
