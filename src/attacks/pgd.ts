/**
 * PGD under the Linf norm (Madry et al.): delta0 = 0 or U(-eps, eps) (random start); each step
 * delta += step * sign(grad) (targeted: descend the loss to the target), project to the eps-ball and
 * the [-1, 1] box. With restarts, each example keeps the first restart that fools the model
 * (targeted: hits its target), else the last one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ascentGradient, attackContext, checkEps, predictLogits, projectLinf, type Attack, type AttackContext, type AttackSeed, type Victim } from './base.js';

export interface PGDOptions {
  name?: string;
  steps?: number;
  /** Absolute step size; default relStepSize * eps. */
  stepSize?: number;
  /** Step size relative to eps (default 2.5 / steps, as foolbox); ignored when stepSize is given. */
  relStepSize?: number;
  randomStart?: boolean;
  restarts?: number;
  targeted?: boolean;
  /**
   * The sign applied to each ascent gradient (default tf.sign). Conformance checks pass a
   * tie-aware sign here; nothing else should need it.
   */
  sign?: (g: tf.Tensor4D, delta: tf.Tensor4D) => tf.Tensor;
}

export class PGD implements Attack {
  readonly name: string;
  readonly method = 'pgd' as const;
  readonly targeted: boolean;
  readonly steps: number;
  readonly stepSize?: number;
  readonly relStepSize: number;
  readonly randomStart: boolean;
  readonly restarts: number;
  private readonly sign: (g: tf.Tensor4D, delta: tf.Tensor4D) => tf.Tensor;

  constructor(opts: PGDOptions = {}) {
    this.steps = opts.steps ?? 7;
    this.stepSize = opts.stepSize;
    this.relStepSize = opts.relStepSize ?? 2.5 / this.steps;
    this.randomStart = opts.randomStart ?? true;
    this.restarts = opts.restarts ?? 1;
    this.targeted = opts.targeted ?? false;
    this.name = opts.name ?? `pgd${this.steps}`;
    this.sign = opts.sign ?? ((g) => tf.sign(g));
  }

  settings(): Record<string, unknown> {
    return {
      steps: this.steps,
      stepSize: this.stepSize ?? `${this.relStepSize} * eps`,
      randomStart: this.randomStart,
      restarts: this.restarts,
      targeted: this.targeted,
    };
  }

  stepFor(eps: number): number {
    return this.stepSize ?? this.relStepSize * eps;
  }

  private once(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, ctx: AttackContext): tf.Tensor4D {
    const step = this.stepFor(eps);
    let delta: tf.Tensor4D = this.randomStart
      ? tf.tidy(() => projectLinf(x, tf.randomUniform(x.shape, -eps, eps, 'float32', ctx.nextSeed()), eps))
      : tf.zerosLike(x);
    for (let i = 0; i < this.steps; i++) {
      const next = tf.tidy(() => {
        const g = ascentGradient(v, tf.add(x, delta) as tf.Tensor4D, labels, this.targeted);
        return projectLinf(x, tf.add(delta, tf.mul(this.sign(g, delta), step)), eps);
      });
      delta.dispose();
      delta = next;
    }
    const adv = tf.add(x, delta) as tf.Tensor4D;
    delta.dispose();
    return adv;
  }

  perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): tf.Tensor4D {
    checkEps(eps);
    if (eps === 0) return tf.clone(x);
    const ctx = attackContext(seed);
    let best = this.once(v, x, labels, eps, ctx);
    for (let r = 1; r < this.restarts; r++) {
      const cand = this.once(v, x, labels, eps, ctx);
      const merged = tf.tidy(() => {
        const pred = tf.argMax(predictLogits(v, best), 1);
        const hit = tf.cast(labels, 'int32');
        // done = already fooled (untargeted) or already on target (targeted)
        const done = this.targeted ? tf.equal(pred, hit) : tf.notEqual(pred, hit);
        return tf.where(tf.reshape(done, [-1, 1, 1, 1]).tile([1, ...x.shape.slice(1)]), best, cand) as tf.Tensor4D;
      });
      best.dispose();
      cand.dispose();
      best = merged;
    }
    return best;
  }
}
