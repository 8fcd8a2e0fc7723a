/**
 * What a training run writes into OUT after every epoch, atomically and in this order: the per-batch
 * log, the last (and best) checkpoint, the resumable state (authoritative for resume), the summary.
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { saveCheckpoint, type SaveOptions } from '../io/checkpoint.js';
import { INPUT_LIMITS, readInputFile } from '../io/files.js';
import type { CNNF } from '../models/cnnf.js';
import type { SGD } from './optimizer.js';
import { writeTrainState, type TrainState } from './state.js';
import { parseTrainingLog, trainLogCsv, type TrainLogRow } from './trainlog.js';

/** Files trainModel writes into OUT. */
export const OUTPUT_FILES = ['last.safetensors', 'best.safetensors', 'state.safetensors', 'state.json', 'train-log.csv', 'loss.png', 'summary.json'];

/**
 * Before a run: with force (a fresh run into a non-empty OUT), our earlier outputs go; with force or
 * resume, so do the temporary files of atomic writes a kill interrupted (io/atomic.ts: .NAME.tmp-PID-HEX).
 */
export function clearOutputs(out: string, ctl: { resume?: boolean; force?: boolean }): void {
  if (!ctl.resume && ctl.force) for (const f of OUTPUT_FILES) rmSync(join(out, f), { force: true });
  if (ctl.resume || ctl.force) {
    for (const f of readdirSync(out)) if (OUTPUT_FILES.some((o) => f.startsWith(`.${o}.tmp-`))) rmSync(join(out, f), { force: true });
  }
}

/** The log rows of the epochs a resumed run completed (later rows belong to an epoch it repeats; unreadable: none). */
export function resumedLogRows(out: string, completedEpochs: number): TrainLogRow[] {
  const logPath = join(out, 'train-log.csv');
  if (!existsSync(logPath)) return [];
  try {
    return parseTrainingLog(readInputFile(logPath, 'training log', { maxBytes: INPUT_LIMITS.csv }).toString('utf8'), logPath).rows.filter((r) => r.epoch <= completedEpochs);
  } catch {
    return [];
  }
}

export interface EpochOutputs {
  out: string;
  rows: readonly TrainLogRow[];
  model: CNNF;
  sgd: SGD;
  /** The state after this epoch. */
  state: TrainState;
  isBest: boolean;
  /** Checkpoint options; `bestTraining` is the training metadata of best.safetensors. */
  checkpoint: SaveOptions;
  bestTraining: Record<string, unknown>;
  /** summary.json's content (called after the state is written). */
  summary: () => Record<string, unknown>;
}

export async function writeEpochOutputs(o: EpochOutputs): Promise<void> {
  writeFileAtomic(join(o.out, 'train-log.csv'), trainLogCsv(o.rows));
  const arrays = await o.model.toArrays();
  await saveCheckpoint(join(o.out, 'last.safetensors'), o.model, o.checkpoint);
  if (o.isBest) await saveCheckpoint(join(o.out, 'best.safetensors'), o.model, { ...o.checkpoint, training: o.bestTraining });
  const optState = await o.sgd.getState();
  writeTrainState(o.out, o.state, arrays, optState.buffers);
  writeFileAtomic(join(o.out, 'summary.json'), `${JSON.stringify(o.summary(), null, 2)}\n`);
}
