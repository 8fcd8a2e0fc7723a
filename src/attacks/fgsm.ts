/** FGSM: x + eps * sign(grad CE_sum), clipped to [-1, 1] (targeted: minus the gradient to the target). */
import * as tf from '@tensorflow/tfjs-core';
import { ascentGradient, checkEps, clipToBox, type Attack, type Victim } from './base.js';

export class FGSM implements Attack {
  readonly name: string;
  readonly method = 'fgsm' as const;
  readonly targeted: boolean;

  constructor(opts: { name?: string; targeted?: boolean } = {}) {
    this.name = opts.name ?? 'fgsm';
    this.targeted = opts.targeted ?? false;
  }

  settings(): Record<string, unknown> {
    return { targeted: this.targeted };
  }

  perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number): tf.Tensor4D {
    checkEps(eps);
    if (eps === 0) return tf.clone(x);
    return tf.tidy(() => clipToBox(tf.add(x, tf.mul(tf.sign(ascentGradient(v, x, labels, this.targeted)), eps))));
  }
}
