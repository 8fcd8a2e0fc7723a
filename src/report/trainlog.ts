/**
 * Training-log CSVs for the report's loss curves (parsing lives with the writer, train/trainlog.ts),
 * and the loss-curve PNG `cnnf train` writes after every epoch.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { INPUT_LIMITS, readInputFile } from '../io/files.js';
import { parseTrainingLog, type TrainingLog, type TrainLogRow } from '../train/trainlog.js';
import { lossChartSpec, renderVegaLite, svgToPng } from './charts.js';

export { parseTrainingLog, TRAINLOG_COLUMNS, type TrainingLog, type TrainLogRow } from '../train/trainlog.js';

export function readTrainingLog(path: string): TrainingLog {
  const text = readInputFile(path, 'training log', { maxBytes: INPUT_LIMITS.csv }).toString('utf8');
  return parseTrainingLog(text, path);
}

/** Trailing moving average with the given window (the first points average what is available). */
export function movingAverage(values: readonly number[], window: number): number[] {
  const w = Math.max(1, Math.floor(window));
  const out: number[] = new Array(values.length);
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i]!;
    if (i >= w) sum -= values[i - w]!;
    out[i] = sum / Math.min(i + 1, w);
  }
  return out;
}

/** Window used for the loss curve's moving average: ~5% of the batches, between 1 and 100. */
export function defaultWindow(n: number): number {
  return Math.max(1, Math.min(100, Math.round(n / 20)));
}

/**
 * Draws a training run's loss curve (per batch, with its moving average) into OUT/loss.png; nothing
 * without rows. Passed as the `onOutputs` hook of trainModel by `cnnf train` and `cnnf grid`.
 */
export async function writeLossPng(o: { out: string; rows: readonly TrainLogRow[]; title: string }): Promise<void> {
  if (o.rows.length === 0) return;
  const loss = o.rows.map((r) => r.loss);
  const w = defaultWindow(loss.length);
  const svg = await renderVegaLite(lossChartSpec(o.title, o.rows.map((r) => r.step), loss, movingAverage(loss, w), w));
  writeFileAtomic(join(o.out, 'loss.png'), await svgToPng(svg));
}
