/**
 * The gradient-attack base, in the spirit of Foolbox 3's BaseGradientDescent: a loss (CE, DLR, CW
 * margin, or their targeted forms), a norm (Linf or L2: steepest direction, projection, random
 * start) and a step rule are hooks; subclasses write only their iteration. FGSM is PGD's one-step
 * case; APGD replaces the step rule with its adaptive schedule.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { attackLogits, checkEps, project, randomStartDelta, steepestDirection, type Attack, type AttackContext, type AttackKind, type Norm, type Victim, attackContext, type AttackSeed } from './base.js';
import { attackLoss, type LossName } from './losses.js';

/** Untargeted loss families a gradient attack can maximise; `targeted` turns them into their targeted form. */
export type BaseLoss = 'ce' | 'dlr' | 'cw';
export const BASE_LOSSES: readonly BaseLoss[] = ['ce', 'dlr', 'cw'];

export interface GradientAttackOptions {
  name?: string;
  loss?: BaseLoss;
  norm?: Norm;
  targeted?: boolean;
}

/** The per-example loss a (base loss, targeted) pair maximises. */
export function lossFor(loss: BaseLoss, targeted: boolean): LossName {
  if (!targeted) return loss;
  if (loss === 'cw') return 'cw-targeted';
  return `${loss}-targeted`;
}

/**
 * Gradient of the summed per-example loss w.r.t. the input, oriented for ascent. `labels` are the
 * true labels (untargeted) or the targets (targeted); targeted DLR also needs the true labels.
 */
export function lossGradient(v: Victim, x: tf.Tensor4D, loss: LossName, labels: tf.Tensor1D, trueLabels?: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const f = (xx: tf.Tensor): tf.Scalar => {
      const z = attackLogits(v, xx);
      if (loss === 'dlr-targeted') {
        if (!trueLabels) throw new Error('the targeted DLR loss needs the true labels (AttackContext.trueLabels)');
        return tf.sum(attackLoss(loss, z, trueLabels, labels));
      }
      if (loss === 'ce-targeted' || loss === 'cw-targeted') return tf.sum(attackLoss(loss, z, labels, labels));
      return tf.sum(attackLoss(loss, z, labels));
    };
    return tf.grad(f)(x) as tf.Tensor4D;
  });
}

export abstract class GradientAttack implements Attack {
  readonly kind: AttackKind = 'gradient';
  abstract readonly method: string;
  readonly name: string;
  readonly loss: BaseLoss;
  readonly norm: Norm;
  readonly targeted: boolean;

  constructor(opts: GradientAttackOptions, defaultName: string) {
    this.name = opts.name ?? defaultName;
    this.loss = opts.loss ?? 'ce';
    this.norm = opts.norm ?? 'linf';
    this.targeted = opts.targeted ?? false;
    if (!['ce', 'dlr', 'cw'].includes(this.loss)) throw new UsageError(`loss must be ce, dlr or cw, got ${JSON.stringify(this.loss)}`);
    if (this.norm !== 'linf' && this.norm !== 'l2') throw new UsageError(`norm must be linf or l2, got ${JSON.stringify(this.norm)}`);
  }

  /** The loss actually maximised ("ce", "dlr-targeted", ...). */
  get lossName(): LossName {
    return lossFor(this.loss, this.targeted);
  }

  abstract settings(): Record<string, unknown>;

  /** Hook: ascent gradient of the loss at x. */
  protected gradient(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, ctx: AttackContext): tf.Tensor4D {
    return lossGradient(v, x, this.lossName, labels, ctx.trueLabels);
  }

  /** Hook: the normalised step direction (sign for Linf, unit L2 for L2). */
  protected direction(g: tf.Tensor4D, _delta: tf.Tensor4D): tf.Tensor {
    return steepestDirection(this.norm, g);
  }

  /** Hook: projection of a delta back to the eps-ball and the box. */
  protected project(x: tf.Tensor4D, delta: tf.Tensor, eps: number): tf.Tensor4D {
    return project(this.norm, x, delta, eps);
  }

  /** Hook: a random start delta. */
  protected randomDelta(x: tf.Tensor4D, eps: number, ctx: AttackContext): tf.Tensor4D {
    return randomStartDelta(this.norm, x, eps, ctx.nextSeed());
  }

  /** The attack proper, for eps > 0; returns x + delta. */
  protected abstract run(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, ctx: AttackContext): Promise<tf.Tensor4D>;

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / x.shape[0]);
    if (eps === 0) return tf.clone(x);
    return this.run(v, x, labels, eps, ctx);
  }
}
