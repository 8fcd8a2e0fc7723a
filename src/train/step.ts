/**
 * The gradient of one micro-batch of a training step, shared by the in-process loop and worker
 * threads: the loss (pair loss with a perturbed copy, else clean cross-entropy) scaled by the
 * micro-batch's share of the batch, its gradient for every parameter, and the first-pass hits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { IMAGE_PIXELS } from '../data/index.js';
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';
import type { GradOutcome } from '../parallel/protocol.js';
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

/** One training batch as arrays: NHWC images, the perturbed copy (or null) and labels. */
export interface BatchArrays {
  images: Float32Array;
  perturbed: Float32Array | null;
  labels: Int32Array;
}

/**
 * The batch's gradients with its micro-batches (of `microBatch` images) computed in the pool's workers
 * and added here in micro-batch order, as the in-process loop adds them, so the sums are bit-identical.
 */
export async function pooledGradients(pool: WorkerPool, model: CNNF, batch: BatchArrays, microBatch: number, w: LossWeights): Promise<MicroBatchGradients> {
  const n = batch.labels.length;
  const px = IMAGE_PIXELS;
  const parts: Array<Promise<GradOutcome>> = [];
  for (let c = 0; c < n; c += microBatch) {
    const m = Math.min(microBatch, n - c);
    const cut = (a: Float32Array) => a.slice(c * px, (c + m) * px);
    parts.push(pool.gradients(model, { images: cut(batch.images), perturbed: batch.perturbed ? cut(batch.perturbed) : null, labels: batch.labels.slice(c, c + m), scale: m / n, ...w }));
  }
  const outs = await Promise.all(parts);
  const sum = tf.tidy(() => {
    let value: tf.Tensor | null = null;
    let hits: tf.Tensor | null = null;
    const grads = new Map<string, tf.Tensor>();
    for (const o of outs) {
      value = value ? tf.add(value, o.value) : tf.scalar(o.value);
      hits = hits ? tf.add(hits, o.hits) : tf.scalar(o.hits);
      for (const [name, g] of o.grads) {
        const gt = tf.tensor(g, model.params.get(name)!.shape, 'float32');
        const old = grads.get(name);
        grads.set(name, old ? tf.add(old, gt) : gt);
      }
    }
    // tf.tidy keeps the tensors of the returned object (a Map is not a tensor container: entries are)
    return { value: value!, hits: hits!, grads: [...grads.entries()] };
  });
  return { value: sum.value as tf.Scalar, hits: sum.hits as tf.Scalar, grads: new Map(sum.grads) };
}
