/**
 * runGrid: one CNN-F per (res_param, cycles) pair, each trained by trainModel into OUT/r<R>_c<C>,
 * collected into grid.json and grid.csv (clean and Gaussian-noisy test accuracy of the last epoch).
 */
import { join } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';
import { loadDataset, type Dataset } from '../data/index.js';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { checkOutputDir } from '../io/files.js';
import { validateTrainOptions, type TrainOptions } from './options.js';
import { trainModel, type RunControl, type TrainHooks } from './train.js';

export interface GridCell {
  resParam: number;
  cycles: number;
  dir: string;
  epochs: number;
  testAccuracy: number;
  testAccuracyFirst: number;
  noisyAccuracy: number;
  noisyAccuracyFirst: number;
  bestAccuracy: number | null;
  wallSeconds: number;
}

export interface GridResult {
  format: 'cnnf-grid/1';
  cycles: number[];
  resParams: number[];
  evalSigma: number;
  options: TrainOptions;
  cells: GridCell[];
  wallSeconds: number;
}

export interface GridHooks extends TrainHooks {
  /** Before each cell is trained. */
  onCell?(cell: { resParam: number; cycles: number; index: number; total: number; dir: string }): void;
  onCellDone?(cell: GridCell): void;
}

export function cellDirName(resParam: number, cycles: number): string {
  return `r${resParam}_c${cycles}`;
}

function uniq(name: string, values: number[]): void {
  if (new Set(values).size !== values.length) throw new UsageError(`${name} lists a value twice: ${values.join(',')}`);
}

/** Validates a grid before anything runs (no backend needed); returns the resolved OUT. */
export function checkGrid(base: TrainOptions, grid: { cycles: number[]; resParams: number[] }, ctl: { out: string; force?: boolean }): string {
  uniq('--cycles', grid.cycles);
  uniq('--res-param', grid.resParams);
  for (const c of grid.cycles) {
    if (!Number.isInteger(c) || c < 1) throw new UsageError(`--cycles values must be integers >= 1 (a CNN-F needs a cycle), got ${c}`);
  }
  for (const r of grid.resParams) validateTrainOptions({ ...base, model: 'cnnf', cycles: grid.cycles[0], resParam: r });
  validateTrainOptions({ ...base, model: 'cnnf', cycles: Math.max(...grid.cycles) });
  const out = checkOutputDir(ctl.out, '--out');
  if (existsSync(out) && readdirSync(out).length > 0 && !ctl.force) {
    throw new UsageError(`--out ${out} exists and is not empty (add --force to overwrite)`);
  }
  return out;
}

/** Trains the grid (base options with model cnnf; cycles and resParam are overridden per cell). */
export async function runGrid(
  base: TrainOptions,
  grid: { cycles: number[]; resParams: number[] },
  ctl: Omit<RunControl, 'resume' | 'stopAfterEpochs'>,
  hooks: GridHooks = {},
): Promise<GridResult> {
  const out = checkGrid(base, grid, ctl);
  const ds: Dataset = hooks.dataset ?? loadDataset(base.dataset);
  const t0 = performance.now();
  const cells: GridCell[] = [];
  const total = grid.cycles.length * grid.resParams.length;
  const opts0 = { ...base, model: 'cnnf' as const };
  let evalSigma = 0.3;
  for (const r of grid.resParams) {
    for (const c of grid.cycles) {
      const dir = join(out, cellDirName(r, c));
      hooks.onCell?.({ resParam: r, cycles: c, index: cells.length, total, dir });
      const res = await trainModel({ ...opts0, cycles: c, resParam: r }, { ...ctl, out: dir, resume: false }, { ...hooks, dataset: ds });
      res.model.dispose();
      evalSigma = res.summary.evalSigma as number;
      const last = res.history[res.history.length - 1]!;
      const cell: GridCell = {
        resParam: r, cycles: c, dir: cellDirName(r, c), epochs: res.history.length,
        testAccuracy: last.testAccuracy, testAccuracyFirst: last.testAccuracyFirst,
        noisyAccuracy: last.noisyAccuracy, noisyAccuracyFirst: last.noisyAccuracyFirst,
        bestAccuracy: res.best?.accuracy ?? null, wallSeconds: res.wallSeconds,
      };
      cells.push(cell);
      hooks.onCellDone?.(cell);
      writeGridFiles(out, { format: 'cnnf-grid/1', cycles: grid.cycles, resParams: grid.resParams, evalSigma, options: opts0, cells, wallSeconds: (performance.now() - t0) / 1000 });
    }
  }
  const result: GridResult = { format: 'cnnf-grid/1', cycles: grid.cycles, resParams: grid.resParams, evalSigma, options: opts0, cells, wallSeconds: (performance.now() - t0) / 1000 };
  writeGridFiles(out, result);
  return result;
}

/**
 * One warning per grid cell whose final clean test accuracy is no better than chance (1 / numClasses)
 * beyond sampling noise (two standard errors of chance over the `examples` test images): such a model
 * learned nothing, and its row of the grid compares nothing.
 */
export function gridChanceWarnings(g: GridResult, numClasses: number, examples: number): string[] {
  const chance = 1 / numClasses;
  const noise = 2 * Math.sqrt((chance * (1 - chance)) / Math.max(1, examples));
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  return g.cells
    .filter((c) => c.testAccuracy <= chance + noise)
    .map((c) => `grid cell res_param ${c.resParam}, cycles ${c.cycles} ends at ${pct(c.testAccuracy)} clean test accuracy, ` +
      `${c.testAccuracy < chance ? 'below' : 'no better than'} chance (${pct(chance)} for ${numClasses} classes, ${examples} test images): ` +
      'the model did not learn; train longer (--epochs), on more images (--train-size) or with another --lr');
}

export const GRID_CSV_COLUMNS = ['res_param', 'cycles', 'test_accuracy', 'test_accuracy_first', 'noisy_accuracy', 'noisy_accuracy_first', 'best_accuracy', 'epochs', 'wall_seconds', 'dir'];

export function gridCsv(g: GridResult): string {
  const lines = [GRID_CSV_COLUMNS.join(',')];
  for (const c of g.cells) {
    lines.push([c.resParam, c.cycles, c.testAccuracy, c.testAccuracyFirst, c.noisyAccuracy, c.noisyAccuracyFirst, c.bestAccuracy ?? '', c.epochs, c.wallSeconds.toFixed(1), c.dir].join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** grid.json + grid.csv (rewritten atomically after every cell, so a partial grid is readable). */
export function writeGridFiles(out: string, g: GridResult): void {
  writeFileAtomic(join(out, 'grid.json'), `${JSON.stringify(g, null, 2)}\n`);
  writeFileAtomic(join(out, 'grid.csv'), gridCsv(g));
}
