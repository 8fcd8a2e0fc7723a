/**
 * One training step: a batch's perturbed copy, its gradient as the sum of its micro-batches'
 * (in this thread, or in the pool's workers, added in micro-batch order either way), the SGD update.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';
import type { SGD } from './optimizer.js';
import { attackPerturb, isAttackPerturbation, type Perturber } from './perturb.js';
import { batchGradients, type LossWeights } from './step.js';
import { pooledGradients } from './worker-tasks.js';

export interface StepBatch {
  /** NHWC [n, 28, 28, 1] images and their labels. */
  images: Float32Array;
  labels: Int32Array;
  /** Training-set index of each example (attacks draw their random starts from it). */
  indices: Int32Array;
}

export interface StepSettings {
  /** Images per micro-batch (the batch's gradient is the sum of theirs). */
  microBatch: number;
  weights: LossWeights;
  lr: number;
  /** Names the batch size in the out-of-memory message. */
  batchSize: number;
  backend: string;
}

/** Runs one step (the model's weights are updated, and synced to the pool's workers); returns the loss and first-pass hits. */
export async function trainStep(
  model: CNNF, sgd: SGD, pool: WorkerPool | null, perturber: Perturber | null, batch: StepBatch, s: StepSettings,
): Promise<{ loss: number; hits: number }> {
  const n = batch.labels.length;
  const mb = s.microBatch;
  const attack = perturber && isAttackPerturbation(perturber.p) ? perturber : null;
  let lossT: tf.Tensor;
  try {
    if (pool) {
      // Gaussian noise is drawn here (one stream per epoch, in batch order); attacks run in the workers
      // with the micro-batch gradients, which are added up in micro-batch order, so the update equals
      // the in-process one with the same --micro-batch
      const xPert = perturber && !attack ? await dataOf(tf.tidy(() => perturber.noisy(tf.tensor4d(batch.images, [n, 28, 28, 1])))) : null;
      const g = await pooledGradients(pool, model, { images: batch.images, perturbed: xPert, labels: batch.labels, attack: attack?.draw(batch.indices) ?? null }, mb, s.weights);
      lossT = tf.tidy(() => {
        sgd.step(g.grads, s.lr).gradNorm.dispose();
        return tf.stack([g.value, g.hits]);
      });
      tf.dispose([g.value, g.hits, ...g.grads.values()]);
      await pool.syncWeights(model);
    } else {
      const xT = tf.tensor4d(batch.images, [n, 28, 28, 1]);
      const yT = tf.tensor1d(batch.labels, 'int32');
      const xPert = perturber && !attack ? tf.tidy(() => perturber.noisy(xT)) : null;
      try {
        // an attack reads tensors (await), so the micro-batches run outside tf.tidy; batchGradients frees each perturbed copy
        const g = attack
          ? await batchGradients(model, xT, yT, mb, s.weights, (c, m, xc, yc) => attackPerturb(model, xc, yc, attack.draw(batch.indices.slice(c, c + m))), true)
          : await batchGradients(model, xT, yT, mb, s.weights, (c, m) => (!xPert ? null : m === n ? tf.clone(xPert) : tf.slice(xPert, c, m)), true);
        lossT = tf.tidy(() => {
          sgd.step(g.grads, s.lr).gradNorm.dispose();
          return tf.stack([g.value, g.hits]);
        });
        tf.dispose([g.value, g.hits, ...g.grads.values()]);
      } finally {
        tf.dispose([xT, yT, ...(xPert ? [xPert] : [])]);
      }
    }
  } catch (e) {
    const msg = (e as Error).message ?? '';
    if (/out of bounds|out of memory|Cannot allocate|Array buffer allocation/i.test(msg)) {
      throw new UsageError(`out of ${s.backend} memory at batch size ${s.batchSize}, micro-batch ${s.microBatch}: lower --micro-batch (gradient accumulation, same update) or --batch-size`, 1);
    }
    throw e;
  }
  const [loss, hits] = await lossT.data();
  lossT.dispose();
  return { loss, hits };
}

async function dataOf(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}
