/** The per-epoch test accuracies of a training run (clean and Gaussian-noisy), in this thread or over a worker pool. */
import * as tf from '@tensorflow/tfjs-core';
import { deriveSeed, fillGaussian, IMAGE_PIXELS, mulberry32 } from '../data/index.js';
import type { BatchOutcome } from '../eval/batch.js';
import { readAndDispose } from '../nn/read.js';
import { runEvalBatch } from '../eval/worker-tasks.js';
import type { CNNF } from '../models/cnnf.js';
import type { WorkerPool } from '../parallel/pool.js';

/**
 * Test images per inference batch. A CNN-F run keeps every cycle's layer state until the batch ends
 * (~5 MB per image for fmnist with 2 cycles), and a wasm heap never shrinks: 500 images grew a worker's
 * heap to 2.6 GB, 50 to 0.3 GB, at ~13% more time per image (2026-11-27, AMD EPYC, wasm).
 */
export const ACCURACY_BATCH = 50;

/** Accuracy of the first pass and of the last cycle on a split (optionally Gaussian-noised with a fixed stream). */
export async function evaluateAccuracy(
  model: CNNF, images: Float32Array, labels: Int32Array, batchSize = ACCURACY_BATCH, onProgress?: (done: number, total: number) => void,
): Promise<{ first: number; last: number }> {
  const n = labels.length;
  let first = 0;
  let last = 0;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const counts = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(s * IMAGE_PIXELS, (s + m) * IMAGE_PIXELS), [m, 28, 28, 1]);
      const y = tf.tensor1d(labels.subarray(s, s + m), 'int32');
      const res = model.run(x);
      const hit = (lg: tf.Tensor2D) => tf.sum(tf.cast(tf.equal(tf.argMax(lg, 1), y), 'int32'));
      return tf.stack([hit(res.logits[0]), hit(res.logits[res.logits.length - 1])]);
    });
    const c = await readAndDispose(counts);
    first += c[0];
    last += c[1];
    onProgress?.(s + m, n);
  }
  return { first: n ? first / n : 0, last: n ? last / n : 0 };
}

/** evaluateAccuracy with the batches spread over worker threads (the same numbers). */
export async function evaluateAccuracyParallel(
  pool: WorkerPool, model: CNNF, images: Float32Array, labels: Int32Array, batchSize = ACCURACY_BATCH, onProgress?: (done: number, total: number) => void,
): Promise<{ first: number; last: number }> {
  const n = labels.length;
  const parts: Array<Promise<BatchOutcome>> = [];
  let done = 0;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    parts.push(runEvalBatch(pool, model, {
      start: s, images: images.slice(s * IMAGE_PIXELS, (s + m) * IMAGE_PIXELS), labels: labels.slice(s, s + m),
      cycles: model.config.cycles, readout: 'last', numClasses: model.config.numClasses, seed: 0, jobs: [], keep: [],
    }).then((o) => {
      done += m;
      onProgress?.(done, n);
      return o;
    }));
  }
  let first = 0;
  let last = 0;
  for (const [b, o] of (await Promise.all(parts)).entries()) {
    for (let i = 0; i < o.clean.length; i++) {
      const yv = labels[b * batchSize + i];
      if (o.cleanFirst[i] === yv) first++;
      if (o.clean[i] === yv) last++;
    }
  }
  return { first: n ? first / n : 0, last: n ? last / n : 0 };
}

/** Test images plus N(0, sigma^2) noise from a fixed stream of the seed, clipped to [-1, 1]. */
export function noisyCopy(images: Float32Array, sigma: number, seed: number): Float32Array {
  const noise = fillGaussian(new Float32Array(images.length), mulberry32(deriveSeed(seed, 'eval-noise')), 0, sigma);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.min(1, Math.max(-1, images[i] + noise[i]));
  return noise;
}
