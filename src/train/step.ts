/**
 * The gradient of one micro-batch of a training step, shared by the in-process loop and worker
 * threads: the loss (pair loss with a perturbed copy, else clean cross-entropy) scaled by the
 * micro-batch's share of the batch, its gradient for every parameter, and the first-pass hits.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CNNF } from '../models/cnnf.js';
import { cleanLoss, pairLoss } from '../models/loss.js';

export interface LossWeights {
  cleanWeight: number;
  reconWeight: number;
}

export interface MicroBatchGradients {
  /** Loss times `scale`. */
  value: tf.Scalar;
  /** Correct first-pass predictions on the clean images. */
  hits: tf.Scalar;
  /** Gradient of value for every parameter, by parameter name. */
  grads: Map<string, tf.Tensor>;
}

/**
 * Gradients of `scale` times the loss of (x, xPert, y). Every loss term is a per-sample mean, so a
 * batch's gradient is the sum over its micro-batches with scale = size / batch size.
 */
export function microBatchGradients(model: CNNF, x: tf.Tensor4D, xPert: tf.Tensor4D | null, y: tf.Tensor1D, scale: number, w: LossWeights): MicroBatchGradients {
  const names = [...model.params.keys()];
  const vars = names.map((k) => model.params.get(k) as tf.Variable);
  const sink: { logits?: tf.Tensor } = {};
  const spy = spyFirstLogits(model, x.shape[0], sink);
  const { value, grads } = tf.variableGrads(() => {
    const l = xPert ? pairLoss(spy, x, xPert, y, w) : cleanLoss(spy, x, y);
    return scale === 1 ? l : tf.mul(l, scale);
  }, vars);
  const hits = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(sink.logits!, 1), y), 'float32')) as tf.Scalar);
  sink.logits!.dispose();
  return { value, hits, grads: new Map(names.map((k, i) => [k, grads[vars[i].name]])) };
}

/** A view of `model` whose first forward pass keeps (tf.keep) the clean half's logits in `sink`. */
function spyFirstLogits(model: CNNF, n: number, sink: { logits?: tf.Tensor }): CNNF {
  const spy = Object.create(model) as CNNF;
  spy.forward = (ctx, x, first) => {
    const r = model.forward(ctx, x, first);
    if (first && !sink.logits) sink.logits = tf.keep(r.logits.shape[0] === n ? tf.clone(r.logits) : tf.slice(r.logits, 0, n));
    return r;
  };
  return spy;
}

/**
 * A batch's gradients in this thread: the sum of its micro-batches' (`mb` images each, scale = size /
 * batch size), added in micro-batch order (pooledGradients adds the workers' parts in the same order,
 * so both give the same bits). `perturbed(start, size, xc, yc)` returns the micro-batch's perturbed
 * copy (null: clean loss); with `ownsPerturbed` it is disposed once used. Each part's gradients are
 * freed as soon as they are added.
 */
export async function batchGradients(
  model: CNNF, x: tf.Tensor4D, y: tf.Tensor1D, mb: number, w: LossWeights,
  perturbed: (start: number, size: number, xc: tf.Tensor4D, yc: tf.Tensor1D) => tf.Tensor4D | null | Promise<tf.Tensor4D | null>, ownsPerturbed = false,
): Promise<MicroBatchGradients> {
  const n = y.shape[0];
  let value: tf.Tensor | null = null;
  let hits: tf.Tensor | null = null;
  const acc = new Map<string, tf.Tensor>();
  try {
    for (let c = 0; c < n; c += mb) {
      const m = Math.min(mb, n - c);
      const whole = m === n;
      const xc = whole ? x : tf.slice(x, c, m);
      const yc = whole ? y : tf.slice(y, c, m);
      let xpc: tf.Tensor4D | null = null;
      try {
        // the perturbation may read tensors (an attack), so it runs outside tf.tidy
        xpc = await perturbed(c, m, xc, yc);
        const px = xpc;
        const prev: { value: tf.Tensor | null; hits: tf.Tensor | null; grads: Map<string, tf.Tensor> } = { value, hits, grads: new Map(acc) };
        const next: { value: tf.Tensor; hits: tf.Tensor; grads: Array<[string, tf.Tensor]> } = tf.tidy(() => {
          const r = microBatchGradients(model, xc, px, yc, m / n, w);
          const grads: Array<[string, tf.Tensor]> = [];
          for (const [name, g] of r.grads) {
            const old = prev.grads.get(name);
            grads.push([name, old ? tf.add(old, g) : g]);
          }
          return { value: prev.value ? tf.add(prev.value, r.value) : r.value, hits: prev.hits ? tf.add(prev.hits, r.hits) : r.hits, grads };
        });
        tf.dispose([...(prev.value ? [prev.value] : []), ...(prev.hits ? [prev.hits] : []), ...prev.grads.values()]);
        value = next.value;
        hits = next.hits;
        acc.clear();
        for (const [name, g] of next.grads) acc.set(name, g);
      } finally {
        if (ownsPerturbed) xpc?.dispose();
        if (!whole) tf.dispose([xc, yc]);
      }
    }
  } catch (e) {
    tf.dispose([...(value ? [value] : []), ...(hits ? [hits] : []), ...acc.values()]);
    throw e;
  }
  return { value: value as tf.Scalar, hits: hits as tf.Scalar, grads: acc };
}
