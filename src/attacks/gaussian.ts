/** Gaussian noise: x + N(0, sigma^2), clipped to [-1, 1]. `eps` is sigma. */
import * as tf from '@tensorflow/tfjs-core';
import { attackContext, checkEps, clipToBox, type Attack, type AttackSeed, type Victim } from './base.js';
import type { AttackDescriptor } from './registry.js';

export class GaussianNoise implements Attack {
  readonly name: string;
  readonly method = 'gaussian';
  readonly kind = 'noise';
  readonly targeted = false;
  readonly norm = null;

  constructor(opts: { name?: string } = {}) {
    this.name = opts.name ?? 'gaussian';
  }

  settings(): Record<string, unknown> {
    return { distribution: 'normal', clip: [-1, 1] };
  }

  async perturb(_v: Victim, x: tf.Tensor4D, _labels: tf.Tensor1D, sigma: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    checkEps(sigma, null);
    if (sigma === 0) return tf.clone(x);
    return tf.tidy(() => clipToBox(tf.add(x, tf.randomNormal(x.shape, 0, sigma, 'float32', attackContext(seed).nextSeed()))));
  }
}

export const gaussianAttack: AttackDescriptor = {
  method: 'gaussian',
  label: 'Gaussian noise',
  summary: 'x + N(0, sigma^2) noise, clipped to the box (eps is sigma; no gradients)',
  kind: 'noise',
  norms: [],
  targetable: false,
  params: {},
  defaultName: () => 'gaussian',
  build: (spec) => new GaussianNoise({ name: spec.name }),
};
