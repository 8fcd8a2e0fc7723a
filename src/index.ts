/**
 * cnnf as a library: feedback layers, CNN / CNN-F models, datasets, attacks, training, evaluation,
 * reports and CI gates, worker-thread parallelism. Call `useBackend()` once before computing.
 *
 * The two references keep in the published index.d.ts (preserve), so that a user's tsc type-checks
 * cnnf's declarations without skipLibCheck whatever its `types` list: cnnf's name Node's types
 * (Buffer, fs), and tfjs-core's use the global `Long` of @types/long without referencing it.
 */
/// <reference types="node" preserve="true" />
/// <reference types="long" preserve="true" />
// tf: the tfjs-core namespace cnnf computes with (the same engine instance, so tensors made with it work with cnnf's models)
export { tf, useBackend, activeBackend, BACKEND_CHOICES, type BackendChoice, type BackendInfo } from './backend/index.js';
export { lazyGradOp, untaped, convFilterGrad, flipFilter, matMulBT, type GradThunks, type Save } from './backend/index.js';
export * from './nn/index.js';
export * from './models/index.js';
export * from './io/index.js';
export * from './data/index.js';
export * from './attacks/index.js';
export * from './train/index.js';
export * from './eval/index.js';
export * from './report/index.js';
export * from './gate/index.js';
export { WorkerPool, resolveWorkers, PARALLEL_BACKENDS } from './parallel/pool.js';
export { defineTask, type TaskKind, type TaskContext, type TaskHandler, type TaskHandlers } from './parallel/tasks.js';
export { EVAL_BATCH, EVAL_PROBE, runEvalBatch, runEvalProbe } from './eval/worker-tasks.js';
export { UsageError } from './errors.js';
export { VERSION } from './version.js';
export { humanNumber } from './format.js';
