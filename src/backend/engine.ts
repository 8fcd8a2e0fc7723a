/**
 * Gradient-tape plumbing on tfjs engine internals: ops whose input gradients are computed lazily,
 * and untaped computations. src/nn/ writes its hand-written gradients with these.
 */
import * as tf from '@tensorflow/tfjs-core';
import { patchWasmCopies } from './kernels.js';

export type Save = (tensors: tf.Tensor[]) => void;
export type GradThunks = (dy: tf.Tensor, saved: tf.Tensor[]) => Array<() => tf.Tensor>;
interface EngineInternals {
  runKernelFunc(p: { forwardFunc: (backend: unknown, save: Save) => tf.Tensor; backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>; inputs: Record<string, tf.Tensor> }): tf.Tensor;
}

/**
 * Like tf.customGrad, but each input's gradient is a thunk that the engine only calls when that input
 * is on the differentiated path (tf.customGrad computes every input's gradient eagerly). So an input
 * gradient (attacks) never computes filter or weight gradients, and a weight gradient (training) never
 * computes the gradient of the data entering the first layer.
 */
export function lazyGradOp(inputs: tf.Tensor[], forward: (save: Save) => tf.Tensor, grads: GradThunks): tf.Tensor {
  patchWasmCopies();
  const named: Record<string, tf.Tensor> = {};
  inputs.forEach((t, i) => (named[i] = t));
  return (tf.engine() as unknown as EngineInternals).runKernelFunc({
    forwardFunc: (_backend, save) => forward(save),
    backwardsFunc: (dy, saved) => Object.fromEntries(grads(dy, saved).map((g, i) => [String(i), g])),
    inputs: named,
  });
}

/**
 * Runs f without recording to the gradient tape (its result is a constant for backprop) and frees its
 * intermediates right away. For values whose gradient is zero anyway, such as selection masks.
 */
export function untaped(f: () => tf.Tensor): tf.Tensor {
  return lazyGradOp([], () => f(), () => []);
}
