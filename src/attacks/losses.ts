/**
 * Per-example attack losses, all oriented so that the attacker MAXIMISES them (AutoAttack's
 * convention): cross-entropy, DLR (Croce & Hein 2020), targeted CE, targeted DLR and the CW margin.
 * Each takes logits [N, K] and labels [N] (targets [N] for the targeted ones) and returns [N].
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';

export const LOSS_NAMES = ['ce', 'dlr', 'cw', 'ce-targeted', 'dlr-targeted', 'cw-targeted'] as const;
export type LossName = (typeof LOSS_NAMES)[number];

export function isTargetedLoss(loss: LossName): boolean {
  return loss.endsWith('-targeted');
}

export function parseLoss(s: string): LossName {
  if ((LOSS_NAMES as readonly string[]).includes(s)) return s as LossName;
  throw new UsageError(`loss must be one of ${LOSS_NAMES.join(', ')}, got ${JSON.stringify(s)}`);
}

/** Cross-entropy per example: -log softmax(z)_y. */
export function ceLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    return tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(tf.cast(labels, 'int32'), k)), 1)) as tf.Tensor1D;
  });
}

const BIG = 1e30;

/**
 * The `count` largest logits per row, largest first, each [N]. Built from argMax + one-hot products
 * (tfjs has no gradient for TopK): the values are the logits themselves, bit for bit, and the
 * gradient flows to the selected entries as it does through PyTorch's sort.
 */
function topValues(logits: tf.Tensor2D, count: number): tf.Tensor1D[] {
  const k = logits.shape[1];
  if (k < count) throw new UsageError(`this loss needs at least ${count} classes, the model has ${k}`);
  const out: tf.Tensor1D[] = [];
  let masked: tf.Tensor2D = logits;
  for (let j = 0; j < count; j++) {
    const oh = tf.oneHot(tf.argMax(masked, 1), k);
    out.push(tf.sum(tf.mul(logits, oh), 1) as tf.Tensor1D);
    masked = tf.sub(masked, tf.mul(oh, BIG)) as tf.Tensor2D;
  }
  return out;
}

/** z_y and the largest logit other than y. */
function trueAndOther(logits: tf.Tensor2D, labels: tf.Tensor1D): [tf.Tensor1D, tf.Tensor1D] {
  const k = logits.shape[1];
  const onehot = tf.oneHot(tf.cast(labels, 'int32'), k);
  const zy = tf.sum(tf.mul(logits, onehot), 1) as tf.Tensor1D;
  // AutoAttack: the second largest when the largest is y, else the largest
  const oh = tf.oneHot(tf.argMax(tf.sub(logits, tf.mul(onehot, BIG)), 1), k);
  const other = tf.sum(tf.mul(logits, oh), 1) as tf.Tensor1D;
  return [zy, other];
}

/** DLR: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12). Scale-invariant in the logits. */
export function dlrLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const [top, , third] = topValues(logits, 3);
    const [zy, other] = trueAndOther(logits, labels);
    const denom = tf.add(tf.sub(top, third), 1e-12);
    return tf.neg(tf.div(tf.sub(zy, other), denom)) as tf.Tensor1D;
  });
}

/** Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12). */
export function dlrTargetedLoss(logits: tf.Tensor2D, labels: tf.Tensor1D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const k = logits.shape[1];
    const [top, , third, fourth] = topValues(logits, 4);
    const zy = tf.sum(tf.mul(logits, tf.oneHot(tf.cast(labels, 'int32'), k)), 1);
    const zt = tf.sum(tf.mul(logits, tf.oneHot(tf.cast(targets, 'int32'), k)), 1);
    const denom = tf.add(tf.sub(top, tf.mul(tf.add(third, fourth), 0.5)), 1e-12);
    return tf.neg(tf.div(tf.sub(zy, zt), denom)) as tf.Tensor1D;
  });
}

/** CW margin (untargeted): max_{i != y} z_i - z_y. */
export function cwLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const [zy, other] = trueAndOther(logits, labels);
    return tf.sub(other, zy) as tf.Tensor1D;
  });
}

/**
/** CW margin (targeted): z_t - max_{i != t} z_i. */
export function cwTargetedLoss(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const [zt, other] = trueAndOther(logits, targets);
    return tf.sub(zt, other) as tf.Tensor1D;
  });
}

/**
 * The per-example loss `name` (maximised by the attacker). Targeted losses need `targets`; for them
 * `labels` are still the true classes (DLR's numerator uses both).
 */
export function attackLoss(name: LossName, logits: tf.Tensor2D, labels: tf.Tensor1D, targets?: tf.Tensor1D): tf.Tensor1D {
  switch (name) {
    case 'ce':
      return ceLoss(logits, labels);
    case 'dlr':
      return dlrLoss(logits, labels);
    case 'cw':
      return cwLoss(logits, labels);
    case 'ce-targeted':
      if (!targets) throw new Error('ce-targeted needs targets');
      return tf.tidy(() => tf.neg(ceLoss(logits, targets)) as tf.Tensor1D);
    case 'dlr-targeted':
      if (!targets) throw new Error('dlr-targeted needs targets');
      return dlrTargetedLoss(logits, labels, targets);
    case 'cw-targeted':
      if (!targets) throw new Error('cw-targeted needs targets');
      return cwTargetedLoss(logits, targets);
  }
}

/**
 * One example's loss `name` and its gradient with respect to the logits, both in float64, by the
 * formulas above and the steps PyTorch's autograd takes through AutoAttack's code (sort picks the
 * ranked logits; DLR's quotient rule as -1/D for the numerator and -(-N)/(D D) for the denominator).
 * AutoAttack's float64 reference depends on this precision: with DLR, when the true class ranks
 * third the loss is d / (d + 1e-12) and its gradient ~1e-12 of its usual size, which float32 autodiff
 * turns into rounding noise. `z` is one row of logits; `target` is used by the targeted losses.
 */
export function lossAndLogitGrad64(name: LossName, z: ArrayLike<number>, y: number, target = -1): { loss: number; grad: Float64Array } {
  const k = z.length;
  const grad = new Float64Array(k);
  const order = Array.from({ length: k }, (_, i) => i).sort((a, b) => z[b] - z[a] || a - b);
  const otherThan = (c: number): number => {
    let o = -1;
    for (let i = 0; i < k; i++) if (i !== c && (o < 0 || z[i] > z[o])) o = i;
    return o;
  };
  if (name === 'ce' || name === 'ce-targeted') {
    const c = name === 'ce' ? y : target;
    let s = 0;
    for (let i = 0; i < k; i++) s += Math.exp(z[i] - z[order[0]]);
    const lse = z[order[0]] + Math.log(s);
    const sign = name === 'ce' ? 1 : -1;
    for (let i = 0; i < k; i++) grad[i] = sign * (Math.exp(z[i] - lse) - (i === c ? 1 : 0));
    return { loss: sign * (lse - z[c]), grad };
  }
  if (name === 'cw') {
    const o = otherThan(y);
    grad[o] += 1;
    grad[y] -= 1;
    return { loss: z[o] - z[y], grad };
  }
  if (k < (name === 'dlr' ? 3 : 4)) throw new UsageError(`loss ${name} needs at least ${name === 'dlr' ? 3 : 4} classes, the model has ${k}`);
  const o = name === 'dlr' ? otherThan(y) : target;
  const negNum = -(z[y] - z[o]);
  const den = name === 'dlr' ? z[order[0]] - z[order[2]] + 1e-12 : z[order[0]] - 0.5 * (z[order[2]] + z[order[3]]) + 1e-12;
  const gNum = -(1 / den);
  const gDen = -negNum / (den * den);
  grad[y] += gNum;
  grad[o] -= gNum;
  grad[order[0]] += gDen;
  if (name === 'dlr') grad[order[2]] -= gDen;
  else {
    grad[order[2]] -= 0.5 * gDen;
    grad[order[3]] -= 0.5 * gDen;
  }
  return { loss: negNum / den, grad };
}
