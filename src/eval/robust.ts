/**
 * robustAccuracy: what a Foolbox user writes as `_, advs, success = attack(fmodel, images, labels, epsilons=eps)`
 * followed by `1 - success.mean(axis=-1)`. One attack, a list of epsilons, per-example success and the
 * robust accuracy per epsilon, in batches (memory stays bounded), every random draw from the seed.
 */
import * as tf from '@tensorflow/tfjs-core';
import { predictLogits, type Attack, type Victim } from '../attacks/index.js';
import { deriveSeed } from '../data/index.js';
import { UsageError } from '../errors.js';
import { CNNF } from '../models/cnnf.js';

export interface RobustAccuracyOptions {
  /** Seed of the attack's random draws (default 0); batch b at epsilon e uses deriveSeed(seed, `${e}|${start}`). */
  seed?: number;
  /** Examples per batch (default 100). */
  batchSize?: number;
  /** Target classes, one per example: required by targeted attacks (success = the target is hit). */
  targets?: ArrayLike<number>;
}

export interface RobustAccuracyResult {
  epsilons: number[];
  /** Accuracy on the clean inputs. */
  cleanAccuracy: number;
  /** clean[i] = 1 when example i is classified correctly without attack. */
  clean: Uint8Array;
  /**
   * success[e][i] = 1 when the attack succeeds on example i at epsilons[e]: the prediction differs from
   * the label (untargeted; also when the clean input is already misclassified, as in Foolbox) or equals
   * the target (targeted).
   */
  success: Uint8Array[];
  /** robustAccuracy[e]: fraction of examples still classified correctly at epsilons[e]. */
  robustAccuracy: number[];
}

/** A CNN-F as a victim with its own cycles, first-pass gradients and the last readout. */
export function victimOf(model: CNNF | Victim): Victim {
  return model instanceof CNNF ? { model, mode: 'first', cycles: model.config.cycles, readout: 'last' } : model;
}

/**
 * Attacks `x` (NHWC [n, 28, 28, 1], pixels in [-1, 1]) with labels `y` at every epsilon; returns
 * per-example success and the robust accuracy per epsilon. `model` is a CNNF (first-pass gradients,
 * its own cycles, readout last) or a Victim (choose mode / cycles / readout).
 */
export async function robustAccuracy(
  model: CNNF | Victim, x: tf.Tensor4D, y: tf.Tensor1D | ArrayLike<number>, attack: Attack, epsilons: number[], opts: RobustAccuracyOptions = {},
): Promise<RobustAccuracyResult> {
  const victim = victimOf(model);
  const n = x.shape[0];
  const labels = y instanceof tf.Tensor ? Int32Array.from(await y.data()) : Int32Array.from(y);
  if (labels.length !== n) throw new UsageError(`robustAccuracy: ${n} inputs but ${labels.length} labels`);
  if (epsilons.length === 0) throw new UsageError('robustAccuracy needs at least one epsilon');
  const batchSize = opts.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`batch size must be a positive integer, got ${batchSize}`);
  const seed = opts.seed ?? 0;
  let targets: Int32Array | null = null;
  if (attack.targeted) {
    if (!opts.targets) throw new UsageError(`${attack.name} is targeted: pass opts.targets (one class per example)`);
    targets = Int32Array.from(opts.targets);
    if (targets.length !== n) throw new UsageError(`robustAccuracy: ${n} inputs but ${targets.length} targets`);
  }
  const clean = new Uint8Array(n);
  const success = epsilons.map(() => new Uint8Array(n));
  const robust = epsilons.map(() => 0);
  for (let start = 0; start < n; start += batchSize) {
    const m = Math.min(batchSize, n - start);
    const xb = tf.slice(x, [start, 0, 0, 0], [m, -1, -1, -1]);
    const yb = labels.subarray(start, start + m);
    const attackLabels = tf.tensor1d(targets ? targets.subarray(start, start + m) : yb, 'int32');
    try {
      const pc = tf.tidy(() => tf.argMax(predictLogits(victim, xb), 1));
      const cleanPred = (await pc.data()) as Int32Array;
      pc.dispose();
      for (let i = 0; i < m; i++) clean[start + i] = cleanPred[i] === yb[i] ? 1 : 0;
      for (const [e, eps] of epsilons.entries()) {
        const adv = await attack.perturb(victim, xb, attackLabels, eps, deriveSeed(seed, `${eps}|${start}`));
        const pred = tf.tidy(() => tf.argMax(predictLogits(victim, adv), 1));
        adv.dispose();
        const p = (await pred.data()) as Int32Array;
        pred.dispose();
        for (let i = 0; i < m; i++) {
          const ok = p[i] === yb[i];
          if (ok) robust[e]++;
          success[e][start + i] = (targets ? p[i] === targets[start + i] : !ok) ? 1 : 0;
        }
      }
    } finally {
      xb.dispose();
      attackLabels.dispose();
    }
  }
  let cleanCount = 0;
  for (const c of clean) cleanCount += c;
  return {
    epsilons: [...epsilons],
    cleanAccuracy: n ? cleanCount / n : 0,
    clean,
    success,
    robustAccuracy: robust.map((r) => (n ? r / n : 0)),
  };
}
