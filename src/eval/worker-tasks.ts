/**
 * Evaluation's worker task: one evaluation batch (evalBatch) run in a pool worker. The worker loads
 * this module by URL (see parallel/tasks.ts); `runEvalBatch` is the main thread's typed call.
 */
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';
import { defineTask, handlerOf, type TaskHandlers } from '../parallel/tasks.js';
import { evalBatch, type BatchOutcome, type BatchTask } from './batch.js';

/** One evaluation batch; progress is the stage name evalBatch reports ("clean", "ATTACK[:MODE]"). */
export const EVAL_BATCH = defineTask<BatchTask, BatchOutcome, string>('evalBatch', import.meta.url);

export const taskHandlers: TaskHandlers = {
  [EVAL_BATCH.name]: handlerOf(EVAL_BATCH, (task, ctx) => evalBatch(ctx.model, task, (stage) => ctx.progress(stage))),
};

/** Runs one evaluation batch on the pool's next idle worker (the same outcome as evalBatch here). */
export function runEvalBatch(pool: WorkerPool, model: CNNF, task: BatchTask, onPoint?: (stage: string) => void): Promise<BatchOutcome> {
  return pool.run(EVAL_BATCH, model, task, onPoint);
}
