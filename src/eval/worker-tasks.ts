/**
 * Evaluation's worker tasks: one evaluation batch (evalBatch) and a model's probe checks
 * (probeChecks), run in a pool worker. The worker loads this module by URL (see parallel/tasks.ts);
 * `runEvalBatch` and `runEvalProbe` are the main thread's typed calls.
 */
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';
import { defineTask, handlerOf, type TaskHandlers } from '../parallel/tasks.js';
import { evalBatch, type BatchOutcome, type BatchTask } from './batch.js';
import { probeChecks, type EvalCheck, type ProbeTask } from './checks.js';

/** One evaluation batch; progress is the stage name evalBatch reports ("clean", "ATTACK[:MODE]") or a step inside an attack. */
export const EVAL_BATCH = defineTask<BatchTask, BatchOutcome, BatchProgress>('evalBatch', import.meta.url);

/** A finished attack point (its stage name), or where a running attack is ({ step }). */
export type BatchProgress = string | { step: string };

/** A model's probe checks (1, 6, 7): in a worker, so that their tensors grow a worker's heap, not the main thread's. */
export const EVAL_PROBE = defineTask<ProbeTask, EvalCheck[], never>('evalProbe', import.meta.url);

export const taskHandlers: TaskHandlers = {
  [EVAL_BATCH.name]: handlerOf(EVAL_BATCH, (task, ctx) => evalBatch(ctx.model, task, (stage) => ctx.progress(stage), (step) => ctx.progress({ step }))),
  [EVAL_PROBE.name]: handlerOf(EVAL_PROBE, (task, ctx) => probeChecks({ ...task, model: ctx.model })),
};

/** Runs one evaluation batch on the pool's next idle worker (the same outcome as evalBatch here). */
export function runEvalBatch(pool: WorkerPool, model: CNNF, task: BatchTask, onPoint?: (stage: string) => void, onStep?: (detail: string) => void): Promise<BatchOutcome> {
  return pool.run(EVAL_BATCH, model, task, (p) => {
    if (typeof p === 'string') onPoint?.(p);
    else onStep?.(p.step);
  });
}

/** Runs a model's probe checks on the pool's next idle worker (the same checks as probeChecks here). */
export function runEvalProbe(pool: WorkerPool, model: CNNF, task: ProbeTask): Promise<EvalCheck[]> {
  return pool.run(EVAL_PROBE, model, task);
}
