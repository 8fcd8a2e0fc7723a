/** Losses: cross-entropy, and the CNN-F training loss on a (clean, perturbed) pair. */
import * as tf from '@tensorflow/tfjs-core';
import type { CNNF } from './cnnf.js';

/** Cross-entropy of logits [N,K] against integer labels [N]; mean (training) or sum (attacks). */
export function crossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, reduction: 'mean' | 'sum' = 'mean'): tf.Scalar {
  const k = logits.shape[1];
  const picked = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(tf.cast(labels, 'int32'), k)), 1);
  const s = tf.neg(tf.sum(picked));
  return (reduction === 'sum' ? s : tf.div(s, logits.shape[0])) as tf.Scalar;
}

export function mse(a: tf.Tensor, b: tf.Tensor): tf.Scalar {
  return tf.mean(tf.squaredDifference(a, b));
}

export interface PairLossOptions {
  /** Weight p_c of the clean cross-entropy terms (paper: 0.1). */
  cleanWeight: number;
  /** Weight p_m of the reconstruction terms (paper: 0.1). */
  reconWeight: number;
  cycles?: number;
  uniform?: (shape: number[]) => tf.Tensor;
}

/**
 * CNN-F training loss on [x; x~] (see docs: every cycle adds p_m/(T*C) times the MSE of the perturbed
 * half's reconstructions (level ind and every tapped block) against the clean half's first-pass
 * activations, plus the cross-entropy of both halves' logits weighted 1/(2(C+1)); clean targets are
 * not detached). With 0 cycles it is (p_c CE(clean) + CE(perturbed)) / 2.
 */
export function pairLoss(model: CNNF, x: tf.Tensor, xPert: tf.Tensor, labels: tf.Tensor1D, opts: PairLossOptions): tf.Scalar {
  const C = opts.cycles ?? model.config.cycles;
  const r = model.config.resParam;
  const n = x.shape[0];
  const ctx = model.context(true, opts.uniform);
  const both = tf.concat([x, xPert], 0);
  const first = model.forward(ctx, both, true);
  const clean = (t: tf.Tensor) => tf.slice(t, 0, n);
  const pert = (t: tf.Tensor) => tf.slice(t, n, n);
  const ce = (lg: tf.Tensor2D) =>
    tf.div(tf.add(tf.mul(crossEntropy(clean(lg) as tf.Tensor2D, labels), opts.cleanWeight), crossEntropy(pert(lg) as tf.Tensor2D, labels)), 2 * (C + 1));
  let loss: tf.Tensor = ce(first.logits);
  let ff = first.orig!;
  let logits = first.logits;
  for (let c = 0; c < C; c++) {
    const fb = model.feedback(ctx, logits);
    const terms: tf.Scalar[] = [mse(pert(fb.recon), clean(first.orig!))];
    for (const [name, act] of Object.entries(first.taps)) {
      const rec = fb.taps[`${name}_recon`];
      if (rec) terms.push(mse(pert(rec), clean(act)));
    }
    loss = tf.add(loss, tf.mul(tf.addN(terms), opts.reconWeight / (terms.length * C)));
    ff = tf.add(ff, tf.mul(tf.sub(fb.recon, ff), r));
    logits = model.forward(ctx, ff, false).logits;
    loss = tf.add(loss, ce(logits));
  }
  return loss as tf.Scalar;
}

/** Plain cross-entropy on clean images through the first pass (standard CNN training). */
export function cleanLoss(model: CNNF, x: tf.Tensor, labels: tf.Tensor1D): tf.Scalar {
  const ctx = model.context(true);
  return crossEntropy(model.forward(ctx, x, true).logits, labels);
}
