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
  const xp = t.attack ? await attackPerturb(model, x, y, t.attack) : t.perturbed ? tf.tensor4d(t.perturbed, [n, 28, 28, 1]) : null;
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
 * and added here in micro-batch order, as the in-process loop adds them, so the sums are bit-identical
 * (a float32 sum computed in float64 and rounded once is the float32 sum). Each outcome is added as soon
 * as every earlier one has been, then dropped: the main thread holds one running sum, not every
 * micro-batch's gradients at once, and no tensors until the end.
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
  // awaited in order below: a later part failing first must not be an unhandled rejection meanwhile
  for (const p of parts) p.catch(() => undefined);
  // value and hits as float32 sums, like the tf.add chain of the in-process loop
  const f32 = Math.fround;
  let value = 0;
  let hits = 0;
  let sums: Map<string, Float32Array> | null = null;
  for (const [k, p] of parts.entries()) {
    const o = await p;
    parts[k] = DONE;
    value = k === 0 ? f32(o.value) : f32(value + o.value);
    hits = k === 0 ? f32(o.hits) : f32(hits + o.hits);
    if (!sums) {
      sums = new Map(o.grads);
      continue;
    }
    for (const [name, g] of o.grads) {
      const acc = sums.get(name);
      if (!acc) {
        sums.set(name, g);
        continue;
      }
      for (let i = 0; i < acc.length; i++) acc[i] += g[i];
    }
  }
  const grads = new Map<string, tf.Tensor>();
  for (const [name, g] of sums!) grads.set(name, tf.tensor(g, model.params.get(name)!.shape, 'float32'));
  return { value: tf.scalar(value), hits: tf.scalar(hits), grads };
}

/** Replaces a consumed outcome's promise so that its arrays can be collected. */
const DONE: Promise<GradOutcome> = Promise.resolve({ value: 0, hits: 0, grads: [] });
