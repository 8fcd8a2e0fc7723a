/** Training-log CSVs (`epoch,batch,step,loss,accuracy,lr`, one row per batch) for the report's loss curves. */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { INPUT_LIMITS, readInputFile } from '../io/files.js';

export const TRAINLOG_COLUMNS = ['epoch', 'batch', 'step', 'loss', 'accuracy', 'lr'] as const;

export interface TrainLogRow {
  epoch: number;
  batch: number;
  step: number;
  loss: number;
  accuracy: number;
  lr: number;
}

export interface TrainingLog {
  /** Label shown in the report (the file name). */
  name: string;
  path: string;
  rows: TrainLogRow[];
}

/**
 * Parses a training log. The header must contain every column of TRAINLOG_COLUMNS (any order,
 * extra columns ignored); every data row must have finite numbers in them.
 */
export function parseTrainingLog(text: string, source: string): TrainingLog {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = (lines[0] ?? '').split(',').map((h) => h.trim().toLowerCase());
  const index = TRAINLOG_COLUMNS.map((col) => header.indexOf(col));
  const missing = TRAINLOG_COLUMNS.filter((_, i) => index[i] === -1);
  if (missing.length > 0) {
    throw new UsageError(`${source}: not a training log (header must be ${TRAINLOG_COLUMNS.join(',')}; missing ${missing.join(', ')})`);
  }
  const rows: TrainLogRow[] = [];
  for (let li = 1; li < lines.length; li++) {
    const line = lines[li]!;
    if (line.trim() === '') continue;
    const cells = line.split(',');
    const values = index.map((ci) => {
      const s = (cells[ci] ?? '').trim();
      return s === '' ? NaN : Number(s);
    });
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad !== -1) {
      throw new UsageError(`${source}:${li + 1}: ${TRAINLOG_COLUMNS[bad]} must be a number, got ${JSON.stringify((cells[index[bad]!] ?? '').trim())}`);
    }
    const [epoch, batch, step, loss, accuracy, lr] = values as [number, number, number, number, number, number];
    rows.push({ epoch, batch, step, loss, accuracy, lr });
  }
  if (rows.length === 0) throw new UsageError(`${source}: training log has no data rows`);
  return { name: basename(source), path: source, rows };
}

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
