// src/train owns training: the PyTorch-exact SGD (momentum, weight decay, grad-norm clip, poly schedule),
// trainModel (CNN / CNN-F loss, per-epoch eval, atomic checkpoints, bit-exact resume) and the cycles x res_param grid.
// train.ts runs the epochs; options.ts, state.ts (resume), loop.ts (one step), outputs.ts, accuracy.ts, trainlog.ts.
export * from './optimizer.js';
export * from './perturb.js';
export * from './options.js';
export * from './state.js';
export * from './accuracy.js';
export * from './trainlog.js';
export * from './train.js';
export * from './grid.js';
export * from './step.js';
export { GRADS, pooledGradients, runGradients, type BatchArrays, type GradOutcome, type GradTask } from './worker-tasks.js';
