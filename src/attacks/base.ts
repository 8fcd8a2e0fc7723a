/**
 * What every attack shares: the victim (a model, which gradient path, how it predicts), the loss
 * gradient, the [-1, 1] input box, the Linf projection and the targeting policy.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { readoutOf, type CNNF, type Readout } from '../models/cnnf.js';
import { isForeign, type ForeignClassifier } from '../models/foreign.js';
import { deriveSeed, mulberry32 } from '../data/rng.js';
import { readAndDispose } from '../nn/read.js';

export type GradientMode = 'first' | 'e2e';

export interface Victim<M extends CNNF | ForeignClassifier = CNNF | ForeignClassifier> {
  /** A CNN-F (cnnf's own), or a foreign classifier (models/foreign.ts: mode, cycles and readout do not apply). */
  model: M;
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
  if (isForeign(v.model)) return v.model.logits(x as tf.Tensor4D);
  if (v.mode === 'first' || v.cycles === 0) return v.model.run(x, { cycles: 0 }).logits[0];
  return readoutOf(v.model.run(x, { cycles: v.cycles }), v.readout);
}

/** Logits used for prediction (cycles + readout). */
export function predictLogits(v: Victim, x: tf.Tensor): tf.Tensor2D {
  if (isForeign(v.model)) return v.model.logits(x as tf.Tensor4D);
  return readoutOf(v.model.run(x, { cycles: v.cycles }), v.readout);
}

/** Per example 1 where the model's prediction (cycles + readout) differs from `labels`. */
export async function misclassified(v: Victim, x: tf.Tensor4D, labels: ArrayLike<number>): Promise<Uint8Array> {
  const pred = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
  const p = await readAndDispose(pred);
  return Uint8Array.from(p, (c, i) => (c !== labels[i] ? 1 : 0));
}

export function clipToBox(x: tf.Tensor): tf.Tensor4D {
  return tf.clipByValue(x, INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
}

export type Norm = 'linf' | 'l2';
export const NORMS: readonly Norm[] = ['linf', 'l2'];

/** Per-example L2 norm of a [N, ...] tensor, shaped [N, 1, 1, 1] for broadcasting. */
export function l2Norms(t: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(t), [1, 2, 3], true)) as tf.Tensor4D);
}

/** Projects delta to the L2 ball of radius eps (then x + delta to the box); returns the new delta. */
export function projectL2(x: tf.Tensor4D, delta: tf.Tensor, eps: number): tf.Tensor4D {
  return tf.tidy(() => {
    const factor = tf.minimum(1, tf.div(eps, tf.maximum(l2Norms(delta), 1e-12)));
    return tf.sub(clipToBox(tf.add(x, tf.mul(delta, factor))), x) as tf.Tensor4D;
  });
}

/** Projection for a norm: returns the delta of the projected point. */
export function project(norm: Norm, x: tf.Tensor4D, delta: tf.Tensor, eps: number): tf.Tensor4D {
  return norm === 'linf' ? projectLinf(x, delta, eps) : projectL2(x, delta, eps);
}

/**
 * A random start inside the eps-ball: uniform in the Linf cube, or uniform in the L2 ball (a
 * Gaussian direction scaled by eps * u^(1/D)); then clipped to the box. Returns the delta.
 */
export function randomStartDelta(norm: Norm, x: tf.Tensor4D, eps: number, seed: number): tf.Tensor4D {
  return tf.tidy(() => {
    if (norm === 'linf') return projectLinf(x, tf.randomUniform(x.shape, -eps, eps, 'float32', seed), eps);
    const n = x.shape[0];
    const d = x.size / n;
    const dir = tf.randomNormal(x.shape, 0, 1, 'float32', seed);
    const u = tf.randomUniform([n, 1, 1, 1], 0, 1, 'float32', seed + 1);
    const radius = tf.mul(tf.pow(u, 1 / d), eps);
    return projectL2(x, tf.mul(tf.div(dir, tf.maximum(l2Norms(dir), 1e-12)), radius), eps);
  });
}

/** The steepest-ascent direction of a gradient under a norm: sign(g) for Linf, g / ||g||_2 for L2. */
export function steepestDirection(norm: Norm, g: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => (norm === 'linf' ? tf.sign(g) : tf.div(g, tf.maximum(l2Norms(g), 1e-12))) as tf.Tensor4D);
}

/**
 * Checks an attack's output: finite, inside the [-1, 1] box and (for norm-bounded attacks) inside
 * the eps-ball around x (float32 slack). Anything else is a bug in the attack: it throws a plain
 * Error (not a UsageError), so it fails loudly.
 */
export async function verifyAdversarial(name: string, x: tf.Tensor4D, adv: tf.Tensor4D, eps: number, norm: Norm | null): Promise<void> {
  if (adv.shape.join(',') !== x.shape.join(',')) throw new Error(`attack ${name} returned shape [${adv.shape}] for input [${x.shape}]`);
  const vals = tf.tidy(() => {
    const d = tf.sub(adv, x);
    const dist = norm === 'l2' ? tf.max(l2Norms(d)) : tf.max(tf.abs(d));
    return tf.stack([tf.cast(tf.all(tf.isFinite(adv)), 'float32'), tf.min(adv), tf.max(adv), dist]);
  });
  const [ok, mn, mx, dd] = await readAndDispose(vals);
  if (!ok) throw new Error(`attack ${name} produced non-finite pixels (bug)`);
  if (mn < INPUT_MIN - 1e-6 || mx > INPUT_MAX + 1e-6) throw new Error(`attack ${name} left the [-1, 1] box: [${mn}, ${mx}] (bug)`);
  if (norm !== null && dd > eps * (1 + 1e-5) + 1e-6) throw new Error(`attack ${name} left the ${norm} ball: distance ${dd} > eps ${eps} (bug)`);
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
  /** The true labels, for targeted attacks whose loss needs them (targeted DLR); `labels` are then the targets. */
  trueLabels?: tf.Tensor1D;
  /**
   * A sign of life from inside a long attack (each iteration, query or restart): called often, so a
   * receiver throttles it. Never changes what the attack computes.
   */
  onStep?: (s: AttackStep) => void;
}

/** Where a running attack is: "APGD-T target 3/9", 40 of 100 iterations, 12 examples still robust. */
export interface AttackStep {
  phase: string;
  done: number;
  total: number;
  unit: 'iterations' | 'queries' | 'steps' | 'stages';
  /** Examples still being attacked (not yet broken), where the attack knows. */
  active?: number;
}

/** Calls ctx.onStep when there is one (attacks call this in their loops). */
export function reportStep(ctx: AttackContext | undefined, s: AttackStep): void {
  ctx?.onStep?.(s);
}

/** "APGD-T target 3/9: 40/100 iterations, 12 robust" (what progress shows of a step). */
export function describeStep(s: AttackStep): string {
  const where = s.phase ? `${s.phase}: ` : '';
  return `${where}${s.done}/${s.total} ${s.unit}${s.active !== undefined ? `, ${s.active} attacked` : ''}`;
}

/** A context whose steps carry `prefix` before their phase (an ensemble's stage); the same seed stream. */
export function withPhase(ctx: AttackContext, prefix: string): AttackContext {
  const on = ctx.onStep;
  if (!on) return ctx;
  return { ...ctx, onStep: (s) => on({ ...s, phase: s.phase ? `${prefix} ${s.phase}` : prefix }) };
}

/** What an attack needs from its inputs: gradients (white-box), only scores, or nothing (noise). */
export type AttackKind = 'noise' | 'gradient' | 'score' | 'transfer' | 'ensemble';

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
  /** Registry method name ("pgd", "apgd", ...). */
  readonly method: string;
  readonly targeted: boolean;
  /** Norm of the eps-ball the output is verified against (null: noise, not norm-bounded). */
  readonly norm: Norm | null;
  /** Settings as run, for provenance. */
  settings(): Record<string, unknown>;
  /** `seed`: a seed number or a context (default seed 0); attacks without random draws ignore it. */
  perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D>;
}

/** Largest useful radius: the whole [-1, 1] box (Linf 2; L2 2 * sqrt(pixels)). */
export function maxEps(norm: Norm | null, pixels: number): number {
  if (norm === 'l2') return 2 * Math.sqrt(pixels);
  return norm === 'linf' ? INPUT_MAX - INPUT_MIN : 10;
}

/** `pixels`: values per image (h*w*c); every attack passes x.size / n. */
export function checkEps(eps: number, norm: Norm | null = 'linf', pixels = 784): void {
  if (!Number.isFinite(eps) || eps < 0) throw new UsageError(`epsilon must be a number >= 0, got ${eps}`);
  const max = maxEps(norm, pixels);
  if (eps > max) {
    throw new UsageError(`epsilon ${eps} is beyond the [-1, 1] input box (at most ${max} for ${norm === null ? 'a noise sigma' : norm === 'l2' ? `L2 on ${pixels} pixels` : 'Linf'})`);
  }
}
