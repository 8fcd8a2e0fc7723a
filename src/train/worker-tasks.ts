/**
 * Training's worker task: the gradients of one micro-batch (microBatchGradients) computed in a pool
 * worker, and pooledGradients, a batch's gradients from its micro-batches spread over the pool. The
 * worker loads this module by URL (see parallel/tasks.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { IMAGE_PIXELS } from '../data/index.js';
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';
import { defineTask, handlerOf, type TaskHandlers } from '../parallel/tasks.js';
import { attackPerturb, type AttackDraw } from './perturb.js';
import { microBatchGradients, type LossWeights, type MicroBatchGradients } from './step.js';

/** One micro-batch of a training step (see step.ts). */
export interface GradTask extends LossWeights {
  /** NHWC [n, 28, 28, 1]. */
  images: Float32Array;
  /** The perturbed copy for the pair loss, or null (clean cross-entropy, or `attack` computes it). */
  perturbed: Float32Array | null;
  /** An adversarial perturbation to compute here, on the worker's copy of the model (fgsm, pgd). */
  attack?: AttackDraw | null;
  labels: Int32Array;
  /** The micro-batch's share of the batch (size / batch size). */
  scale: number;
}

export interface GradOutcome {
  value: number;
  hits: number;
  grads: Array<[string, Float32Array]>;
}

export const GRADS = defineTask<GradTask, GradOutcome>('grads', import.meta.url);

async function grads(model: CNNF, t: GradTask): Promise<GradOutcome> {
  const n = t.labels.length;
  const x = tf.tensor4d(t.images, [n, 28, 28, 1]);
  const y = tf.tensor1d(t.labels, 'int32');
  const xp = t.attack ? tf.tidy(() => attackPerturb(model, x, y, t.attack!)) : t.perturbed ? tf.tensor4d(t.perturbed, [n, 28, 28, 1]) : null;
  try {
    const r = microBatchGradients(model, x, xp, y, t.scale, t);
    const out: Array<[string, Float32Array]> = [];
    for (const [name, g] of r.grads) out.push([name, (await g.data()) as Float32Array]);
    const value = (await r.value.data())[0];
    const hits = (await r.hits.data())[0];
    tf.dispose([r.value, r.hits, ...r.grads.values()]);
    return { value, hits, grads: out };
  } finally {
    tf.dispose([x, y, ...(xp ? [xp] : [])]);
  }
}

export const taskHandlers: TaskHandlers = {
  [GRADS.name]: handlerOf(GRADS, (task, ctx) => grads(ctx.model, task)),
};

/** Computes one micro-batch's gradients on the pool's next idle worker (weights as last synced). */
export function runGradients(pool: WorkerPool, model: CNNF, task: GradTask): Promise<GradOutcome> {
  return pool.run(GRADS, model, task);
}

/** One training batch as arrays: NHWC images, the perturbed copy (or null) and labels. */
export interface BatchArrays {
  images: Float32Array;
  perturbed: Float32Array | null;
  labels: Int32Array;
  /** An attack each worker computes for its micro-batch (indices: the whole batch's, cut per micro-batch). */
  attack?: AttackDraw | null;
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
    const attack = batch.attack ? { ...batch.attack, indices: batch.attack.indices.slice(c, c + m) } : null;
    parts.push(runGradients(pool, model, {
      images: cut(batch.images), perturbed: batch.perturbed ? cut(batch.perturbed) : null, attack, labels: batch.labels.slice(c, c + m), scale: m / n, ...w,
    }));
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
