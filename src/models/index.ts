/** Models: the CNN-F network (the plain CNN is CNN-F with 0 cycles), its architectures and losses.
 *  Owns forward/feedback orchestration, inference with cycles, readouts and the CNN-F training loss;
 *  float64.ts is a float64 reference evaluator of the same model (conformance of attack algorithms). */
export * from './arch.js';
export * from './cnnf.js';
export * from './loss.js';
export * from './foreign.js';
export * from './float64.js';
export * from './onnx.js';
