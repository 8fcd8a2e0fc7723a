/**
 * APGD and APGD-T (Croce & Hein 2020), as AutoAttack's code performs them (fra31/auto-attack,
 * autoattack/autopgd_base.py: `APGDAttack.attack_single_run`, `APGDAttack.perturb`,
 * `APGDAttack_targeted.perturb`), Linf and L2:
 * - step size 2 eps per example; momentum 0.75 (the first step has none);
 * - checkpoints after n_iter_2 = max(floor(0.22 N), 1) iterations, then after k iterations where k
 *   shrinks by size_decr = max(floor(0.03 N), 1) down to n_iter_min = max(floor(0.06 N), 1) (the
 *   paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06));
 * - at a checkpoint an example halves its step size when its loss went up in at most rho k of the
 *   last k steps (the per-iteration losses kept in float32, as AutoAttack's `loss_steps`; at the
 *   first checkpoint the oldest comparison reads AutoAttack's not-yet-written last row, 0), or when
 *   its step was not halved at the previous checkpoint and its best loss has not improved since;
 *   a halving example restarts from its best point and that point's gradient;
 * - x_best is the highest-loss point (strictly higher replaces), x_best_adv the last iterate that
 *   was misclassified (the start point when none was), robust whether no iterate was misclassified;
 * - `perturb` attacks only examples still classified correctly, restart after restart (APGD-T:
 *   target class after target class, the c-th most likely class at the clean point, c = 2..k+1),
 *   and keeps the first adversarial point found per example.
 *
 * AutoAttack works in [0, 1]; cnnf's inputs are in [-1, 1]. The algorithm is invariant under the
 * affine map (signs, normalised gradients and projections commute with it; eps scales), so it runs
 * here directly in [-1, 1] with radii in [-1, 1] units (twice AutoAttack's numbers).
 *
 * Loss and "fooled": AutoAttack reads the prediction from the same model output as the loss. With
 * end-to-end gradients (or a plain CNN) that is the case here too. With `mode: 'first'` the loss
 * (and its gradient) comes from the first forward pass, but "fooled" and every robustness flag use the
 * model's real prediction (all cycles, its readout): robustness is about what the model outputs, and a
 * point that only fools the first pass is not an adversarial example. That costs one extra forward
 * pass per iteration in that mode.
 */
import type { AttackDescriptor } from './registry.js';
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { attackLogits, checkEps, INPUT_MAX, INPUT_MIN, predictLogits, reportStep, type Attack, type AttackContext, type Victim, attackContext, type AttackSeed } from './base.js';
import { isTargetedLoss, lossAndLogitGrad64 } from './losses.js';
import { readAndDispose } from '../nn/read.js';
import { syncReadable } from '../backend/index.js';

export type APGDNorm = 'linf' | 'l2';
export type APGDLoss = 'ce' | 'dlr' | 'ce-targeted' | 'dlr-targeted';
export const APGD_LOSSES: readonly APGDLoss[] = ['ce', 'dlr', 'ce-targeted', 'dlr-targeted'];

/** Largest iteration count accepted (bounds the per-iteration loss history). */
export const APGD_MAX_ITERATIONS = 10_000;

/** AutoAttack's checkpoint parameters for `iterations` steps: first interval, minimum and decrement. */
export function apgdScheduleParams(iterations: number): { first: number; min: number; decrement: number } {
  return {
    first: Math.max(Math.trunc(0.22 * iterations), 1),
    min: Math.max(Math.trunc(0.06 * iterations), 1),
    decrement: Math.max(Math.trunc(0.03 * iterations), 1),
  };
}

/** The 0-based iterations after which APGD checks its step size (AutoAttack's counter3 == k). */
export function apgdCheckpoints(iterations: number): number[] {
  const { first, min, decrement } = apgdScheduleParams(iterations);
  const out: number[] = [];
  let k = first;
  let counter = 0;
  for (let i = 0; i < iterations; i++) {
    if (++counter === k) {
      out.push(i);
      k = Math.max(k - decrement, min);
      counter = 0;
    }
  }
  return out;
}

export interface APGDSingleRunOptions {
  /** Radius in cnnf's [-1, 1] units. */
  eps: number;
  norm: APGDNorm;
  loss: APGDLoss;
  iterations: number;
  rho: number;
  /** Start point, already inside the eps ball and the box (it is clipped to the box, as AutoAttack does). */
  init: tf.Tensor4D;
  /** Target classes of the targeted losses. */
  targets?: tf.Tensor1D;
  /** Called after each iteration (a sign of life; it changes nothing). */
  onIteration?: (done: number) => void;
  /** Sign of a Linf step (default tf.sign); conformance checks pass a tie-aware one. */
  sign?: (g: tf.Tensor4D) => tf.Tensor;
}

export interface APGDSingleRunResult {
  /** The highest-loss point per example. */
  xBest: tf.Tensor4D;
  /** The last misclassified iterate per example (the start point where none was). */
  xBestAdv: tf.Tensor4D;
  /** The best per-example loss. */
  lossBest: tf.Tensor1D;
  /** 1 where no iterate (nor the start point) was misclassified, else 0. */
  robust: tf.Tensor1D;
}

interface Evaluation {
  /** Per-example loss in float64 (lossValue64 of the float32 logits). */
  loss: Float64Array;
  grad: tf.Tensor4D;
  /** Per example: the model's prediction equals the label. */
  correct: Uint8Array;
}

/**
 * Logits, loss and input gradient at x. The loss head (loss and its gradient w.r.t. the logits) is
 * computed in float64 from the float32 logits (lossAndLogitGrad64) and back-propagated through the
 * model in float32: AutoAttack's float64 reference tells apart losses (and follows gradients) that
 * float32 rounds away, e.g. DLR's d / (d + 1e-12) when the true class ranks third. The attack's
 * bookkeeping (best loss, improvement, oscillation) uses the float64 losses.
 */
async function evaluateAt(v: Victim, x: tf.Tensor4D, labels: ArrayLike<number>, loss: APGDLoss, tg: ArrayLike<number> | undefined): Promise<Evaluation> {
  const n = x.shape[0];
  const lossData = new Float64Array(n);
  const correct = new Uint8Array(n);
  const same = v.mode === 'e2e' || v.cycles === 0;
  const hostLoss = (zz: Float32Array, k: number): Float32Array => {
    const dz = new Float32Array(n * k);
    for (let i = 0; i < n; i++) {
      const row = zz.subarray(i * k, (i + 1) * k);
      const r = lossAndLogitGrad64(loss, row, labels[i], tg ? tg[i] : -1);
      lossData[i] = r.loss;
      dz.set(r.grad, i * k);
      if (same) correct[i] = argMaxOf(row) === labels[i] ? 1 : 0;
    }
    return dz;
  };
  if (!syncReadable()) {
    // webgpu: the logits are read asynchronously after a forward pass, the float64 head computes the loss
    // and its logit gradient on the host, and the input gradient is the vector-Jacobian product of that
    // (constant) logit gradient: the same values, for one more forward pass per iteration
    const z = tf.tidy(() => attackLogits(v, x));
    const k = z.shape[1]!;
    const dzT = tf.tensor2d(hostLoss((await readAndDispose(z)) as Float32Array, k), [n, k]);
    const grad = tf.tidy(() => tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(attackLogits(v, xx), dzT)))(x) as tf.Tensor4D);
    dzT.dispose();
    if (!same) {
      const p = await readAndDispose(tf.tidy(() => tf.argMax(predictLogits(v, x), 1)));
      for (let i = 0; i < n; i++) correct[i] = p[i] === labels[i] ? 1 : 0;
    }
    return { loss: lossData, grad, correct };
  }
  const head = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const z = args[0] as tf.Tensor;
    // The float64 loss head needs the logits on the host between the forward and the backward pass of
    // one tf.grad, which tfjs runs as one synchronous call; reading them asynchronously would take a
    // second forward pass (or a split of tfjs's gradient tape in src/backend). So this read stays
    // synchronous where the backend has one; webgpu takes the second forward pass above.
    // eslint-disable-next-line no-restricted-properties
    const zz = z.dataSync();
    const k = z.shape[1]!;
    const dz = hostLoss(zz as Float32Array, k);
    return {
      value: tf.tensor1d(Float32Array.from(lossData)),
      gradFunc: (dy: tf.Tensor) => tf.mul(tf.tensor2d(dz, [n, k]), tf.expandDims(dy, 1)),
    };
  });
  const grad = tf.grad((xx: tf.Tensor) => tf.sum(head(attackLogits(v, xx))))(x) as tf.Tensor4D;
  if (!same) {
    const p = await readAndDispose(tf.tidy(() => tf.argMax(predictLogits(v, x), 1)));
    for (let i = 0; i < n; i++) correct[i] = p[i] === labels[i] ? 1 : 0;
  }
  return { loss: lossData, grad, correct };
}

/** Index of the first largest value (tf.argMax's choice). */
function argMaxOf(row: ArrayLike<number>): number {
  let m = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[m]) m = i;
  return m;
}

/** Per-example mask [n, 1, 1, 1] (bool) from 0/1 flags. */
function exampleMask(flags: ArrayLike<number>): tf.Tensor4D {
  return tf.tensor4d(Array.from(flags, (f) => (f ? 1 : 0)), [flags.length, 1, 1, 1], 'bool');
}

function replaceWhere(flags: ArrayLike<number>, base: tf.Tensor4D, by: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.where(tf.broadcastTo(exampleMask(flags), base.shape), by, base) as tf.Tensor4D);
}

/**
 * AutoAttack's additive constant in `normalize` (v / (||v||_2 + 1e-12)), which it applies in [0, 1]
 * pixel units. Here points and displacements are in [-1, 1] units (twice as long) and input gradients
 * half as large, so the same computation adds 2e-12 to the norm of a displacement and 0.5e-12 to the
 * norm of a gradient. It matters where gradients are ~1e-12 (DLR when the true class ranks third, a
 * saturated softmax): AutoAttack's step is then shorter than its step size.
 */
export const APGD_NORMALIZE_EPS = { displacement: 2e-12, gradient: 0.5e-12 } as const;

/** AutoAttack's `normalize` for L2, per example: v / (||v||_2 + c), c from APGD_NORMALIZE_EPS. */
function normalizeL2(v: tf.Tensor, c: number): tf.Tensor {
  return tf.div(v, tf.add(l2Norm(v), c));
}

/** Per-example L2 norm, shaped [n, 1, 1, 1]. */
function l2Norm(v: tf.Tensor): tf.Tensor {
  return tf.sqrt(tf.sum(tf.square(v), [1, 2, 3], true));
}

/** AutoAttack's L2 projection: x + normalize(p - x) * min(eps, ||p - x||), clipped to the box. */
function projectL2(x: tf.Tensor4D, p: tf.Tensor, eps: number): tf.Tensor4D {
  return tf.tidy(() => {
    const d = tf.sub(p, x);
    return tf.clipByValue(tf.add(x, tf.mul(normalizeL2(d, APGD_NORMALIZE_EPS.displacement), tf.minimum(l2Norm(d), eps))), INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
  });
}

/** AutoAttack's Linf projection: min/max against x -+ eps, then the box. */
function projectLinfBall(x: tf.Tensor4D, p: tf.Tensor, eps: number): tf.Tensor4D {
  return tf.tidy(() => tf.clipByValue(tf.minimum(tf.maximum(p, tf.sub(x, eps)), tf.add(x, eps)), INPUT_MIN, INPUT_MAX) as tf.Tensor4D);
}

function validateSingleRun(x: tf.Tensor4D, y: tf.Tensor1D, opts: APGDSingleRunOptions): void {
  checkEps(opts.eps);
  if (!Number.isInteger(opts.iterations) || opts.iterations < 1 || opts.iterations > APGD_MAX_ITERATIONS) {
    throw new UsageError(`APGD iterations must be an integer 1..${APGD_MAX_ITERATIONS}, got ${opts.iterations}`);
  }
  if (!Number.isFinite(opts.rho) || opts.rho < 0 || opts.rho > 1) throw new UsageError(`APGD rho must be in [0, 1], got ${opts.rho}`);
  if (opts.norm !== 'linf' && opts.norm !== 'l2') throw new UsageError(`APGD norm must be linf or l2, got ${JSON.stringify(opts.norm)}`);
  if (!APGD_LOSSES.includes(opts.loss)) throw new UsageError(`APGD loss must be one of ${APGD_LOSSES.join(', ')}, got ${JSON.stringify(opts.loss)}`);
  if (opts.init.shape.join(',') !== x.shape.join(',')) throw new Error(`apgdSingleRun: init shape [${opts.init.shape}] != x shape [${x.shape}]`);
  if (y.shape[0] !== x.shape[0]) throw new Error(`apgdSingleRun: ${y.shape[0]} labels for ${x.shape[0]} examples`);
  if (isTargetedLoss(opts.loss) && (!opts.targets || opts.targets.shape[0] !== x.shape[0])) {
    throw new Error(`apgdSingleRun: loss ${opts.loss} needs one target per example`);
  }
}

/**
 * The vector operations one APGD run needs, on some representation T of a batch of points (tfjs
 * float32 tensors for attacks; Float64Array for the float64 conformance run). The algorithm itself
 * (step sizes, checkpoints, best points, restarts) is `apgdControl`, shared by every representation.
 */
export interface APGDEvaluation<T> {
  loss: Float64Array;
  grad: T;
  correct: Uint8Array;
}

export interface APGDVectorOps<T> {
  /** Loss (float64) per example, its input gradient, and whether the model still classifies each example correctly. */
  evaluate(p: T): APGDEvaluation<T> | Promise<APGDEvaluation<T>>;
  /** AutoAttack's update: x1 = P(xAdv + step dir(grad)); P(xAdv + a (x1 - xAdv) + (1 - a)(xAdv - xAdvOld)). */
  step(xAdv: T, xAdvOld: T, grad: T, stepSize: Float64Array, a: number): T;
  /** Per example, `by` where flags[e] is nonzero, else `base` (new value; the inputs stay valid). */
  select(flags: ArrayLike<number>, base: T, by: T): T;
  clone(p: T): T;
  dispose(ps: T[]): void;
}

export interface APGDControlResult<T> {
  xBest: T;
  xBestAdv: T;
  lossBest: Float64Array;
  robust: Uint8Array;
}

/**
 * AutoAttack's `attack_single_run` over `n` independent examples from `start` (already in the box and
 * the ball), on any vector representation. The caller owns the returned points.
 */
export async function apgdControl<T>(ops: APGDVectorOps<T>, n: number, start: T, eps: number, iterations: number, rho: number, onIteration?: (done: number) => void): Promise<APGDControlResult<T>> {
  const { first, min, decrement } = apgdScheduleParams(iterations);
  let xAdv = ops.clone(start);
  let xBest = ops.clone(xAdv);
  let xBestAdv = ops.clone(xAdv);
  const at0 = await ops.evaluate(xAdv);
  let grad = at0.grad;
  let gradBest = ops.clone(grad);
  const acc = Uint8Array.from(at0.correct);
  const lossBest = Float64Array.from(at0.loss);
  // AutoAttack's loss_steps: float32 rows, all zero until written (its row -1 is read before it is)
  const lossSteps = Array.from({ length: iterations }, () => new Float32Array(n));
  // AutoAttack's step_size tensor: 2 eps, halved per example at checkpoints
  const stepSize = new Float64Array(n).fill(2 * eps);
  let xAdvOld = ops.clone(xAdv);
  let counter3 = 0;
  let k = first;
  let lossBestLastCheck = Float64Array.from(lossBest);
  let reducedLastCheck = new Float32Array(n).fill(1);

  try {
    for (let i = 0; i < iterations; i++) {
      const a = i > 0 ? 0.75 : 1.0;
      const next = ops.step(xAdv, xAdvOld, grad, stepSize, a);
      ops.dispose([xAdvOld, grad]);
      xAdvOld = xAdv;
      xAdv = next;

      const ev = await ops.evaluate(xAdv);
      grad = ev.grad;
      const fooled = new Uint8Array(n);
      for (let e = 0; e < n; e++) {
        fooled[e] = ev.correct[e] ? 0 : 1;
        if (fooled[e]) acc[e] = 0;
      }
      const nextBestAdv = ops.select(fooled, xBestAdv, xAdv);
      ops.dispose([xBestAdv]);
      xBestAdv = nextBestAdv;

      lossSteps[i].set(ev.loss); // rounds to float32, as AutoAttack's loss_steps
      const improved = new Uint8Array(n);
      for (let e = 0; e < n; e++) {
        if (ev.loss[e] > lossBest[e]) {
          improved[e] = 1;
          lossBest[e] = ev.loss[e];
        }
      }
      const nextBest = ops.select(improved, xBest, xAdv);
      const nextGradBest = ops.select(improved, gradBest, grad);
      ops.dispose([xBest, gradBest]);
      xBest = nextBest;
      gradBest = nextGradBest;

      if (++counter3 === k) {
        const reduce = new Float32Array(n);
        for (let e = 0; e < n; e++) {
          let ups = 0;
          for (let c = 0; c < k; c++) {
            const later = lossSteps[i - c];
            const earlier = lossSteps[(i - c - 1 + iterations) % iterations];
            if (later[e] > earlier[e]) ups++;
          }
          const oscillation = ups <= k * rho ? 1 : 0;
          const noImprovement = (1 - reducedLastCheck[e]) * (lossBestLastCheck[e] >= lossBest[e] ? 1 : 0);
          reduce[e] = Math.max(oscillation, noImprovement);
        }
        reducedLastCheck = reduce;
        lossBestLastCheck = Float64Array.from(lossBest);
        if (reduce.some((r) => r > 0)) {
          for (let e = 0; e < n; e++) if (reduce[e] > 0) stepSize[e] /= 2;
          const restarted = ops.select(reduce, xAdv, xBest);
          const restartedGrad = ops.select(reduce, grad, gradBest);
          ops.dispose([xAdv, grad]);
          xAdv = restarted;
          grad = restartedGrad;
        }
        k = Math.max(k - decrement, min);
        counter3 = 0;
      }
      onIteration?.(i + 1);
    }
  } finally {
    ops.dispose([xAdv, xAdvOld, grad, gradBest]);
  }
  return { xBest, xBestAdv, lossBest, robust: acc };
}

/** APGD's vector operations on tfjs float32 tensors, for the model `v`. */
function tfOps(v: Victim, x: tf.Tensor4D, labels: ArrayLike<number>, opts: APGDSingleRunOptions, targets: ArrayLike<number> | undefined): APGDVectorOps<tf.Tensor4D> {
  const n = x.shape[0];
  const { eps, norm } = opts;
  const sign = opts.sign ?? ((g: tf.Tensor4D) => tf.sign(g));
  return {
    evaluate: (p) => evaluateAt(v, p, labels, opts.loss, targets),
    step: (xAdv, xAdvOld, grad, stepSize, a) => tf.tidy(() => {
      const grad2 = tf.sub(xAdv, xAdvOld);
      const step = tf.tensor4d(Float32Array.from(stepSize), [n, 1, 1, 1]);
      if (norm === 'linf') {
        const x1 = projectLinfBall(x, tf.add(xAdv, tf.mul(step, sign(grad))), eps);
        return projectLinfBall(x, tf.add(tf.add(xAdv, tf.mul(tf.sub(x1, xAdv), a)), tf.mul(grad2, 1 - a)), eps);
      }
      const x1 = projectL2(x, tf.add(xAdv, tf.mul(step, normalizeL2(grad, APGD_NORMALIZE_EPS.gradient))), eps);
      return projectL2(x, tf.add(tf.add(xAdv, tf.mul(tf.sub(x1, xAdv), a)), tf.mul(grad2, 1 - a)), eps);
    }),
    select: replaceWhere,
    clone: (p) => tf.clone(p),
    dispose: (ps) => tf.dispose(ps),
  };
}

/**
 * One APGD run from a given start point (AutoAttack's `attack_single_run` with `x_init`), over a
 * batch whose examples are independent. The caller owns the returned tensors.
 */
export async function apgdSingleRun(v: Victim, x: tf.Tensor4D, y: tf.Tensor1D, opts: APGDSingleRunOptions): Promise<APGDSingleRunResult> {
  validateSingleRun(x, y, opts);
  const t = isTargetedLoss(opts.loss) ? opts.targets : undefined;
  // labels and targets are read once per run (not per iteration)
  const [labels, targets] = await Promise.all([y.data(), t?.data()]);
  const start = tf.clipByValue(opts.init, INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
  try {
    const r = await apgdControl(tfOps(v, x, labels, opts, targets), x.shape[0], start, opts.eps, opts.iterations, opts.rho, opts.onIteration);
    return { xBest: r.xBest, xBestAdv: r.xBestAdv, lossBest: tf.tensor1d(Float32Array.from(r.lossBest)), robust: tf.tensor1d(Array.from(r.robust)) };
  } finally {
    start.dispose();
  }
}

/** A batch of points in float64: `n` examples of `per` values each (any layout, the same for every point). */
export interface Float64Batch {
  n: number;
  per: number;
}

/**
 * APGD's vector operations in float64 on Float64Array points (AutoAttack's float64 arithmetic, in
 * [-1, 1] units), given a float64 evaluation of loss, gradient and correctness. For conformance: it
 * runs the same `apgdControl` as the attacks, on a float64 model (src/models/float64.ts).
 */
export function float64Ops(
  shape: Float64Batch,
  x: Float64Array,
  eps: number,
  norm: APGDNorm,
  evaluate: (p: Float64Array) => { loss: Float64Array; grad: Float64Array; correct: Uint8Array },
): APGDVectorOps<Float64Array> {
  const { n, per } = shape;
  if (x.length !== n * per) throw new Error(`float64Ops: ${x.length} values for ${n} x ${per}`);
  const clip = (v: number) => Math.min(Math.max(v, INPUT_MIN), INPUT_MAX);
  const l2 = (v: Float64Array, e: number) => {
    let s = 0;
    for (let j = e * per; j < (e + 1) * per; j++) s += v[j] * v[j];
    return Math.sqrt(s);
  };
  /** AutoAttack's L2 projection of p around x, in place, then the box. */
  const projectL2In = (p: Float64Array) => {
    const d = new Float64Array(p.length);
    for (let j = 0; j < p.length; j++) d[j] = p[j] - x[j];
    for (let e = 0; e < n; e++) {
      const norm2 = l2(d, e);
      const length = Math.min(eps, norm2);
      // AutoAttack's order: x + normalize(d) * min(eps, ||d||)
      for (let j = e * per; j < (e + 1) * per; j++) p[j] = clip(x[j] + (d[j] / (norm2 + APGD_NORMALIZE_EPS.displacement)) * length);
    }
  };
  const projectLinfIn = (p: Float64Array) => {
    for (let j = 0; j < p.length; j++) p[j] = clip(Math.min(Math.max(p[j], x[j] - eps), x[j] + eps));
  };
  return {
    evaluate,
    step: (xAdv, xAdvOld, grad, stepSize, a) => {
      const x1 = new Float64Array(xAdv.length);
      if (norm === 'linf') {
        for (let j = 0; j < x1.length; j++) x1[j] = xAdv[j] + stepSize[Math.floor(j / per)] * Math.sign(grad[j]);
        projectLinfIn(x1);
      } else {
        for (let e = 0; e < n; e++) {
          const g = l2(grad, e) + APGD_NORMALIZE_EPS.gradient;
          for (let j = e * per; j < (e + 1) * per; j++) x1[j] = xAdv[j] + stepSize[e] * (grad[j] / g);
        }
        projectL2In(x1);
      }
      const out = new Float64Array(xAdv.length);
      for (let j = 0; j < out.length; j++) out[j] = xAdv[j] + (x1[j] - xAdv[j]) * a + (xAdv[j] - xAdvOld[j]) * (1 - a);
      if (norm === 'linf') projectLinfIn(out);
      else projectL2In(out);
      return out;
    },
    select: (flags, base, by) => {
      const out = Float64Array.from(base);
      for (let e = 0; e < n; e++) if (flags[e]) out.set(by.subarray(e * per, (e + 1) * per), e * per);
      return out;
    },
    clone: (p) => Float64Array.from(p),
    dispose: () => {},
  };
}

export interface APGDOptions {
  name?: string;
  loss?: APGDLoss;
  norm?: APGDNorm;
  iterations?: number;
  restarts?: number;
  rho?: number;
  /** APGD-T: how many target classes (the 2nd .. (k+1)-th most likely at the clean point). */
  nTargetClasses?: number;
  /** Random start (AutoAttack always starts at random); without it every run starts at x. */
  randomStart?: boolean;
}

/**
 * APGD (ce, dlr) and APGD-T (ce-targeted, dlr-targeted) with AutoAttack's `perturb`: runs go only
 * over examples still classified correctly, and each example keeps the first adversarial point found.
 * `labels` are the true classes for every loss (APGD-T picks its own targets).
 */
export class APGD implements Attack {
  readonly name: string;
  readonly method = 'apgd' as const;
  /** Untargeted in the suite's sense: success means misclassification, whatever the loss. */
  readonly targeted = false;
  readonly loss: APGDLoss;
  readonly norm: APGDNorm;
  readonly iterations: number;
  readonly restarts: number;
  readonly rho: number;
  readonly nTargetClasses: number;
  readonly randomStart: boolean;

  constructor(opts: APGDOptions = {}) {
    this.loss = opts.loss ?? 'ce';
    this.norm = opts.norm ?? 'linf';
    this.iterations = opts.iterations ?? 100;
    this.restarts = opts.restarts ?? 1;
    this.rho = opts.rho ?? 0.75;
    this.nTargetClasses = opts.nTargetClasses ?? 9;
    this.randomStart = opts.randomStart ?? true;
    if (!APGD_LOSSES.includes(this.loss)) throw new UsageError(`APGD loss must be one of ${APGD_LOSSES.join(', ')}, got ${JSON.stringify(this.loss)}`);
    if (this.norm !== 'linf' && this.norm !== 'l2') throw new UsageError(`APGD norm must be linf or l2, got ${JSON.stringify(this.norm)}`);
    if (!Number.isInteger(this.iterations) || this.iterations < 1 || this.iterations > APGD_MAX_ITERATIONS) {
      throw new UsageError(`APGD iterations must be an integer 1..${APGD_MAX_ITERATIONS}, got ${this.iterations}`);
    }
    if (!Number.isInteger(this.restarts) || this.restarts < 1 || this.restarts > 1000) throw new UsageError(`APGD restarts must be an integer 1..1000, got ${this.restarts}`);
    if (!Number.isFinite(this.rho) || this.rho < 0 || this.rho > 1) throw new UsageError(`APGD rho must be in [0, 1], got ${this.rho}`);
    if (!Number.isInteger(this.nTargetClasses) || this.nTargetClasses < 1) throw new UsageError(`APGD-T target classes must be an integer >= 1, got ${this.nTargetClasses}`);
    const kind = isTargetedLoss(this.loss) ? 'apgd-t' : 'apgd';
    this.name = opts.name ?? `${kind}-${this.loss.replace('-targeted', '')}-${this.norm}`;
  }

  get targetedLoss(): boolean {
    return isTargetedLoss(this.loss);
  }

  settings(): Record<string, unknown> {
    return {
      algorithm: 'APGD (AutoAttack autopgd_base.py)',
      loss: this.loss,
      norm: this.norm,
      iterations: this.iterations,
      restarts: this.restarts,
      rho: this.rho,
      ...(this.targetedLoss ? { nTargetClasses: this.nTargetClasses } : {}),
      randomStart: this.randomStart,
      initialStep: '2 * eps',
      momentum: 0.75,
      checkpoints: apgdCheckpoints(this.iterations).map((i) => i + 1),
    };
  }

  /** AutoAttack's random start: x + eps * t / ||t|| (Linf: t ~ U(-1, 1); L2: t ~ N(0, 1)), clipped to the box. */
  startPoint(x: tf.Tensor4D, eps: number, ctx: AttackContext): tf.Tensor4D {
    if (!this.randomStart) return tf.clone(x);
    const seed = ctx.nextSeed();
    return tf.tidy(() => {
      if (this.norm === 'linf') {
        const t = tf.randomUniform(x.shape, -1, 1, 'float32', seed);
        const m = tf.max(tf.abs(t), [1, 2, 3], true);
        // t is unit-free (not a point or a gradient): AutoAttack's 1e-12 as it is
        return tf.clipByValue(tf.add(x, tf.mul(tf.div(t, tf.add(m, 1e-12)), eps)), INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
      }
      const t = tf.randomNormal(x.shape, 0, 1, 'float32', seed);
      return tf.clipByValue(tf.add(x, tf.mul(normalizeL2(t, 1e-12), eps)), INPUT_MIN, INPUT_MAX) as tf.Tensor4D;
    });
  }

  /** APGD-T's targets: the `rank`-th most likely class (rank 2 = runner-up) of the model at x. */
  static targetsAt(v: Victim, x: tf.Tensor4D, rank: number): tf.Tensor1D {
    return tf.tidy(() => {
      const logits = predictLogits(v, x);
      const k = logits.shape[1];
      if (rank < 1 || rank > k) throw new UsageError(`APGD-T target rank ${rank} is outside 1..${k}`);
      const { indices } = tf.topk(logits, rank);
      return tf.reshape(tf.slice(indices, [0, rank - 1], [-1, 1]), [-1]) as tf.Tensor1D;
    });
  }

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / x.shape[0]);
    if (eps === 0) return tf.clone(x);
    const n = x.shape[0];
    const per = x.size / n;
    const clean = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
    const [ys, pred, xv] = await Promise.all([labels.data(), clean.data(), x.data()]).finally(() => clean.dispose());
    const robust = Uint8Array.from(pred, (p, i) => (p === ys[i] ? 1 : 0));
    const adv = Float32Array.from(xv);
    const ranks = this.targetedLoss ? Array.from({ length: this.nTargetClasses }, (_, i) => i + 2) : [0];
    if (this.targetedLoss) {
      const k = tf.tidy(() => predictLogits(v, tf.slice(x, 0, 1)).shape[1]);
      if (this.nTargetClasses > k - 1) throw new UsageError(`APGD-T: ${this.nTargetClasses} target classes, but the model has only ${k - 1} classes besides the true one`);
    }
    for (const rank of ranks) {
      for (let r = 0; r < this.restarts; r++) {
        const todo: number[] = [];
        for (let i = 0; i < n; i++) if (robust[i]) todo.push(i);
        if (todo.length === 0) return tf.tensor4d(adv, x.shape);
        const idx = tf.tensor1d(todo, 'int32');
        const xs = tf.gather(x, idx) as tf.Tensor4D;
        const ysub = tf.gather(labels, idx) as tf.Tensor1D;
        idx.dispose();
        let res: APGDSingleRunResult | undefined;
        let targets: tf.Tensor1D | undefined;
        let init: tf.Tensor4D | undefined;
        try {
          targets = this.targetedLoss ? APGD.targetsAt(v, xs, rank) : undefined;
          init = this.startPoint(xs, eps, ctx);
          const phase = [this.targetedLoss ? `target ${rank - 1}/${ranks.length}` : '', this.restarts > 1 ? `restart ${r + 1}/${this.restarts}` : ''].filter((s) => s).join(' ');
          const onIteration = ctx.onStep ? (done: number): void => reportStep(ctx, { phase, done, total: this.iterations, unit: 'iterations', active: todo.length }) : undefined;
          res = await apgdSingleRun(v, xs, ysub, { eps, norm: this.norm, loss: this.loss, iterations: this.iterations, rho: this.rho, init, targets, onIteration });
          const [still, found] = await Promise.all([res.robust.data(), res.xBestAdv.data()]);
          todo.forEach((i, j) => {
            if (still[j]) return;
            robust[i] = 0;
            adv.set(found.subarray(j * per, (j + 1) * per), i * per);
          });
        } finally {
          tf.dispose([xs, ysub]);
          if (targets) targets.dispose();
          if (init) init.dispose();
          if (res) tf.dispose([res.xBest, res.xBestAdv, res.lossBest, res.robust]);
        }
      }
    }
    return tf.tensor4d(adv, x.shape);
  }
}

export const apgdAttack: AttackDescriptor = {
  method: 'apgd',
  label: 'APGD',
  summary: 'AutoAttack\'s APGD (Croce & Hein 2020): step-size-free PGD with momentum; loss ce, dlr, or targeted (APGD-T over the top-k wrong classes)',
  kind: 'gradient',
  norms: ['linf', 'l2'],
  targetable: false,
  params: {
    loss: { type: 'enum', values: APGD_LOSSES, default: 'ce', description: 'APGD loss: ce, dlr; ce-targeted / dlr-targeted make it APGD-T' },
    iterations: { type: 'int', min: 1, max: 10_000, default: 100, description: 'iterations per run' },
    restarts: { type: 'int', min: 1, max: 1000, default: 1, description: 'restarts, each on examples still robust' },
    rho: { type: 'number', min: 0, max: 1, default: 0.75, description: 'APGD oscillation threshold' },
    nTargetClasses: { type: 'int', min: 1, max: 1000, default: 9, description: 'APGD-T: target classes (the most likely wrong ones)' },
    randomStart: { type: 'boolean', default: true, description: 'start from a random point of the eps-ball' },
  },
  defaultName: (p) => {
    const loss = String(p.loss);
    if (loss === 'dlr-targeted') return 'apgd-t';
    if (loss === 'ce-targeted') return 'apgd-t-ce';
    return `apgd-${loss}`;
  },
  build: (spec) => new APGD({
    name: spec.name, loss: spec.params.loss as APGDLoss, norm: (spec.norm ?? 'linf') as APGDNorm, iterations: spec.params.iterations as number,
    restarts: spec.params.restarts as number, rho: spec.params.rho as number, nTargetClasses: spec.params.nTargetClasses as number,
    randomStart: spec.params.randomStart as boolean,
  }),
};
