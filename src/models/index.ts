/** Models: the CNN-F network (the plain CNN is CNN-F with 0 cycles), its architectures and losses.
 *  Owns forward/feedback orchestration, inference with cycles, readouts and the CNN-F training loss. */
export * from './arch.js';
export * from './cnnf.js';
export * from './loss.js';
export * from './foreign.js';
export * from './float64.js';
