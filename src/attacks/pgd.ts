/**
 * PGD (Madry et al.) under the Linf or L2 norm with a choice of loss (CE, DLR, CW margin; targeted
 * or not): delta0 = 0 or a uniform point of the eps-ball (random start); each step moves delta by
 * `step` along the steepest-ascent direction of the loss (sign for Linf, unit L2 for L2), then
 * projects to the eps-ball and the [-1, 1] box. With restarts, each example keeps the first restart
 * that fools the model (targeted: hits its target), else the last one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictLogits, reportStep, type AttackContext, type Norm, type Victim } from './base.js';
import { UsageError } from '../errors.js';
import { BASE_LOSSES, GradientAttack, type BaseLoss, type GradientAttackOptions } from './gradient.js';
import type { AttackDescriptor } from './registry.js';

export interface PGDOptions extends GradientAttackOptions {
  steps?: number;
  /** Absolute step size; default relStepSize * eps. */
  stepSize?: number;
  /** Step size relative to eps (default 2.5 / steps, as foolbox); ignored when stepSize is given. */
  relStepSize?: number;
  randomStart?: boolean;
  restarts?: number;
  /**
   * The Linf step direction (default tf.sign). Conformance checks pass a tie-aware sign here;
   * nothing else should need it.
   */
  sign?: (g: tf.Tensor4D, delta: tf.Tensor4D) => tf.Tensor;
}

export class PGD extends GradientAttack {
  readonly method: string = 'pgd';
  readonly steps: number;
  readonly stepSize?: number;
  readonly relStepSize: number;
  readonly randomStart: boolean;
  readonly restarts: number;
  private readonly sign?: (g: tf.Tensor4D, delta: tf.Tensor4D) => tf.Tensor;

  constructor(opts: PGDOptions = {}) {
    super(opts, `pgd${opts.steps ?? 7}`);
    this.steps = opts.steps ?? 7;
    this.stepSize = opts.stepSize;
    this.relStepSize = opts.relStepSize ?? 2.5 / this.steps;
    this.randomStart = opts.randomStart ?? true;
    this.restarts = opts.restarts ?? 1;
    this.sign = opts.sign;
  }

  override settings(): Record<string, unknown> {
    return {
      loss: this.lossName,
      norm: this.norm,
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

  protected override direction(g: tf.Tensor4D, delta: tf.Tensor4D): tf.Tensor {
    return this.sign && this.norm === 'linf' ? this.sign(g, delta) : super.direction(g, delta);
  }

  private once(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, ctx: AttackContext): tf.Tensor4D {
    const step = this.stepFor(eps);
    let delta: tf.Tensor4D = this.randomStart ? this.randomDelta(x, eps, ctx) : tf.zerosLike(x);
    for (let i = 0; i < this.steps; i++) {
      const next = tf.tidy(() => {
        const g = this.gradient(v, tf.add(x, delta) as tf.Tensor4D, labels, ctx);
        return this.project(x, tf.add(delta, tf.mul(this.direction(g, delta), step)), eps);
      });
      delta.dispose();
      delta = next;
      reportStep(ctx, { phase: '', done: i + 1, total: this.steps, unit: 'steps' });
    }
    const adv = tf.add(x, delta) as tf.Tensor4D;
    delta.dispose();
    return adv;
  }

  protected override async run(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, ctx: AttackContext): Promise<tf.Tensor4D> {
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

export const pgdAttack: AttackDescriptor = {
  method: 'pgd',
  label: 'PGD',
  summary: 'projected gradient descent (Madry et al.): fixed steps along the loss gradient, projected to the eps-ball',
  kind: 'gradient',
  norms: ['linf', 'l2'],
  targetable: true,
  params: {
  loss: { type: 'enum', values: BASE_LOSSES, default: 'ce', description: 'loss to maximise: ce (cross-entropy), dlr (difference of logits ratio, scale-invariant) or cw (margin)' },
    steps: { type: 'int', min: 1, max: 10_000, default: 7, description: 'gradient steps' },
    stepSize: { type: 'number', positive: true, max: 100, description: 'absolute step size (default 2.5 * eps / steps)' },
    relStepSize: { type: 'number', positive: true, max: 100, description: 'step size relative to eps (default 2.5 / steps)' },
    randomStart: { type: 'boolean', default: true, description: 'start from a uniform point of the eps-ball' },
    restarts: { type: 'int', min: 1, max: 1000, default: 1, description: 'restarts; each example keeps the first that fools the model' },
  },
  defaultName: (p) => `pgd${String(p.steps)}${p.loss !== 'ce' ? `-${String(p.loss)}` : ''}`,
  validate: (spec, at) => {
    if (spec.params.stepSize !== undefined && spec.params.relStepSize !== undefined) throw new UsageError(`${at}.stepSize and relStepSize are exclusive`);
  },
  build: (spec) =>
    new PGD({
      name: spec.name,
      targeted: spec.targeted,
      loss: spec.params.loss as BaseLoss,
      norm: (spec.norm ?? 'linf') as Norm,
      steps: spec.params.steps as number,
      stepSize: spec.params.stepSize as number | undefined,
      relStepSize: spec.params.relStepSize as number | undefined,
      randomStart: spec.params.randomStart as boolean,
      restarts: spec.params.restarts as number,
    }),
};
