/**
 * What every attack shares: the victim (a model, which gradient path, how it predicts), the loss
 * gradient, the [-1, 1] input box, the Linf projection and the targeting policy.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { readoutOf, type CNNF, type Readout } from '../models/cnnf.js';
import { crossEntropy } from '../models/loss.js';
import { deriveSeed, mulberry32 } from '../data/rng.js';

export type GradientMode = 'first' | 'e2e';

export interface Victim {
  model: CNNF;
  /** "first": gradients through the first forward pass only; "e2e": through every feedback cycle. */
  mode: GradientMode;
  /** Cycles used for prediction (and for e2e gradients). */
  cycles: number;
  readout: Readout;
}

export const INPUT_MIN = -1;
export const INPUT_MAX = 1;

/** Logits the attack differentiates. */
export function attackLogits(v: Victim, x: tf.Tensor): tf.Tensor2D {
  if (v.mode === 'first' || v.cycles === 0) return v.model.run(x, { cycles: 0 }).logits[0];
  return readoutOf(v.model.run(x, { cycles: v.cycles }), v.readout);
}

/** Logits used for prediction (cycles + readout). */
export function predictLogits(v: Victim, x: tf.Tensor): tf.Tensor2D {
  return readoutOf(v.model.run(x, { cycles: v.cycles }), v.readout);
}

/**
 * Gradient of the summed cross-entropy w.r.t. the input, oriented so that ADDING it increases the
 * attacker's objective: + grad CE(y) untargeted, - grad CE(target) targeted.
 */
export function ascentGradient(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, targeted: boolean): tf.Tensor4D {
  return tf.tidy(() => {
    const g = tf.grad((xx: tf.Tensor) => crossEntropy(attackLogits(v, xx), labels, 'sum'))(x) as tf.Tensor4D;
    return targeted ? tf.neg(g) : g;
  });
}

export function clipToBox(x: tf.Tensor): tf.Tensor4D {
  return tf.clipByValue(x, INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
}

/** Projects x + delta back into the Linf ball of radius eps around x and the input box; returns the new delta. */
export function projectLinf(x: tf.Tensor4D, delta: tf.Tensor, eps: number): tf.Tensor4D {
  return tf.tidy(() => tf.sub(clipToBox(tf.add(x, tf.clipByValue(delta, -eps, eps))), x) as tf.Tensor4D);
}

export type TargetPolicy = number | 'next' | 'random';

/** Target labels for a targeted attack: a fixed class, (y+1) mod K, or a random class != y. */
export function chooseTargets(labels: Int32Array, numClasses: number, policy: TargetPolicy, rand: () => number): Int32Array {
  const out = new Int32Array(labels.length);
  for (let i = 0; i < labels.length; i++) {
    if (policy === 'next') out[i] = (labels[i] + 1) % numClasses;
    else if (policy === 'random') out[i] = (labels[i] + 1 + Math.floor(rand() * (numClasses - 1))) % numClasses;
    else {
      if (!Number.isInteger(policy) || policy < 0 || policy >= numClasses) {
        throw new UsageError(`--target must be next, random or a class 0..${numClasses - 1}, got ${policy}`);
      }
      out[i] = policy;
    }
  }
  return out;
}

export interface AttackContext {
  /** Seeded integer source for tfjs random ops (every call gives a new seed). */
  nextSeed: () => number;
}

/** What `perturb` takes for its random draws: a plain seed number (as Foolbox users expect) or a context. */
export type AttackSeed = AttackContext | number;

/**
 * The context behind an AttackSeed: a number n gives the integer stream of mulberry32(deriveSeed(n, 'attack')),
 * so equal seeds give equal perturbations; a context is used as it is.
 */
export function attackContext(seed: AttackSeed = 0): AttackContext {
  if (typeof seed !== 'number') return seed;
  if (!Number.isFinite(seed)) throw new UsageError(`attack seed must be a finite number, got ${seed}`);
  const rng = mulberry32(deriveSeed(seed, 'attack'));
  return { nextSeed: () => Math.floor(rng() * 2 ** 31) };
}

/** One shared interface: perturb a batch at one epsilon. `labels` are the targets for targeted attacks. */
export interface Attack {
  readonly name: string;
  readonly method: 'gaussian' | 'fgsm' | 'pgd';
  readonly targeted: boolean;
  /** Settings as run, for provenance. */
  settings(): Record<string, unknown>;
  /** `seed`: a seed number or a context (default seed 0); attacks without random draws ignore it. */
  perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): tf.Tensor4D;
}

export function checkEps(eps: number): void {
  if (!Number.isFinite(eps) || eps < 0) throw new UsageError(`epsilon must be a number >= 0, got ${eps}`);
}
