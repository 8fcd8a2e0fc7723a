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
  releaseEarlyInBackprop();
  // no gradient tape recording (inference, or inside another kernel): the forward alone, same values
  const state = (tf.engine() as unknown as { state: { gradientDepth: number; kernelDepth: number } }).state;
  if (state.gradientDepth === 0 || state.kernelDepth > 0) return tf.tidy(() => forward(() => undefined));
  const named: Record<string, tf.Tensor> = {};
  inputs.forEach((t, i) => (named[i] = t));
  return (tf.engine() as unknown as EngineInternals).runKernelFunc({
    forwardFunc: (_backend, save) => forward(save),
    backwardsFunc: (dy, saved) => Object.fromEntries(grads(dy, saved).map((g, i) => [String(i), g])),
    inputs: named,
  });
}

/** Whether ops run now are recorded for a gradient (inside tf.grad & co., outside a kernel). */
export function tapeRecording(): boolean {
  const state = (tf.engine() as unknown as { state: { gradientDepth: number; kernelDepth: number } }).state;
  return state.gradientDepth > 0 && state.kernelDepth === 0;
}

/**
 * Runs f without recording to the gradient tape (its result is a constant for backprop) and frees its
 * intermediates right away. For values whose gradient is zero anyway, such as selection masks.
 */
export function untaped(f: () => tf.Tensor): tf.Tensor {
  return lazyGradOp([], () => f(), () => []);
}

interface TapeNode {
  saved?: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
}
interface TapeEngine {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  addTapeNode(...args: unknown[]): void;
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): unknown;
}
/** Per engine.gradients call: the node whose gradient ran last and what it may free. */
interface BackpropFrame {
  dy: tf.Tensor | undefined;
  done: { dys: tf.Tensor[]; saved: tf.Tensor[]; results: Set<tf.Tensor> } | null;
}
const frames: BackpropFrame[] = [];
let enginePatched: object | null = null;

function release(frame: BackpropFrame): void {
  const d = frame.done;
  if (!d) return;
  frame.done = null;
  for (const t of d.dys) if (t !== frame.dy && !d.results.has(t)) t.dispose();
  for (const t of d.saved) if (!d.results.has(t)) t.dispose();
}

/**
 * tfjs's backward pass keeps every output gradient (dy) and every tensor saved for backprop until the
 * whole backward pass ends, so its peak memory is the forward tape plus a gradient for every tape
 * output. Each tape node's dys and saved tensors are only read by that node's gradient, and the engine
 * walks the tape once, node after node, so they are freed as soon as the next node's gradient starts
 * (except those returned as an input gradient, and the caller's dy). Values are unchanged. Only at
 * gradient depth 0 (not under an outer tape, where saved tensors are still needed).
 */
export function releaseEarlyInBackprop(): void {
  const engine = tf.engine() as unknown as TapeEngine;
  if (enginePatched === engine) return;
  enginePatched = engine;
  const addTapeNode = engine.addTapeNode;
  engine.addTapeNode = function (this: TapeEngine, ...args: unknown[]): void {
    addTapeNode.apply(this, args);
    const tape = this.state.activeTape;
    const node = tape?.[tape.length - 1];
    const grad = node?.gradient;
    if (!node || !grad) return;
    node.gradient = (dys) => {
      const frame = frames[frames.length - 1];
      const thunks = grad(dys);
      if (!frame || this.state.gradientDepth !== 0) return thunks;
      release(frame);
      const results = new Set<tf.Tensor>();
      frame.done = { dys: dys.filter((t): t is tf.Tensor => t !== null), saved: node.saved ?? [], results };
      const wrapped: Record<string, () => tf.Tensor> = {};
      for (const [k, f] of Object.entries(thunks)) {
        wrapped[k] = () => {
          const r = f();
          results.add(r);
          return r;
        };
      }
      return wrapped;
    };
  };
  const gradients = engine.gradients;
  engine.gradients = function (this: TapeEngine, f, xs, dy, allowNoGradients) {
    const frame: BackpropFrame = { dy, done: null };
    frames.push(frame);
    try {
      return gradients.call(this, f, xs, dy, allowNoGradients);
    } finally {
      frames.pop();
      frame.done = null;
    }
  };
}
