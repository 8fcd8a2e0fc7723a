/**
 * The training log CSV (`epoch,batch,step,loss,accuracy,lr`, one row per batch) that trainModel writes
 * and reads back on resume; the report layer draws loss curves from it (report/trainlog.ts).
 */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';

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

/** The CSV text of a training log (header and one line per row). */
export function trainLogCsv(rows: readonly TrainLogRow[]): string {
  const lines = [TRAINLOG_COLUMNS.join(',')];
  for (const r of rows) lines.push(`${r.epoch},${r.batch},${r.step},${r.loss},${r.accuracy},${r.lr}`);
  return `${lines.join('\n')}\n`;
}
