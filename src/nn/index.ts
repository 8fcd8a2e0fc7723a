/** Feedback layers: each has forward and feedback side by side and keeps its latent state in a RunState.
 *  Also the differentiable ops they are built from (ops.ts; backend workarounds are in src/backend/). */
export * from './state.js';
export * from './ops.js';
export * from './read.js';
export { Conv2d } from './conv2d.js';
export { Linear } from './linear.js';
export { InsNorm } from './insnorm.js';
export { Bias } from './bias.js';
export { ResReLU } from './resrelu.js';
export { MaxPool2d } from './maxpool.js';
export { AvgPool2d } from './avgpool.js';
export { Dropout } from './dropout.js';
export { Flatten } from './flatten.js';
