/** Gaussian noise: x + N(0, sigma^2), clipped to [-1, 1]. `eps` is sigma. */
import * as tf from '@tensorflow/tfjs-core';
import { checkEps, clipToBox, type Attack, type AttackContext, type Victim } from './base.js';

export class GaussianNoise implements Attack {
  readonly name: string;
  readonly method = 'gaussian' as const;
  readonly targeted = false;
  readonly norm = null;

  constructor(opts: { name?: string } = {}) {
    this.name = opts.name ?? 'gaussian';
  }

  settings(): Record<string, unknown> {
    return { distribution: 'normal', clip: [-1, 1] };
  }

  perturb(_v: Victim, x: tf.Tensor4D, _labels: tf.Tensor1D, sigma: number, ctx: AttackContext): tf.Tensor4D {
    checkEps(sigma, null);
    if (sigma === 0) return tf.clone(x);
    return tf.tidy(() => clipToBox(tf.add(x, tf.randomNormal(x.shape, 0, sigma, 'float32', ctx.nextSeed()))));
  }
}
