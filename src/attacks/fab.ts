/**
 * FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), as AutoAttack's code
 * performs it (fra31/auto-attack, autoattack/fab_base.py `FABAttack.attack_single_run` and `perturb`
 * with `targeted=True`, fab_pt.py `get_diff_logits_grads_batch_targeted`, fab_projections.py
 * `projection_linf` / `projection_l2`), Linf and L2:
 * - at the iterate x1, linearise the boundary between the true class y and the target t:
 *   f_t - f_y + g . (z - x1) = 0 with g = grad(f_t - f_y);
 * - project x1 (d1) and the clean point x0 (d2) onto that hyperplane, inside the box, with the
 *   minimal-norm projection (a sorted sweep over the coordinates' breakpoints and a binary search);
 * - step to ((x1 + eta d1) (1 - alpha) + (x0 + eta d2) alpha), clipped to the box, with
 *   alpha = min(max(||d1|| / (||d1|| + ||d2||), 0), alphaMax) (norms floored at 1e-8);
 * - an iterate the model misclassifies (any wrong class: AutoAttack's success test) is kept when it is
 *   closer to x0 than the best one so far, and then pulled back: x1 = x0 + beta (x1 - x0);
 * - after `iterations` steps, the closest adversarial point found counts only when it lies within eps
 *   (AutoAttack's `res > eps` test in `perturb`); otherwise the example keeps x;
 * - `perturb` runs target class after target class (the c-th most likely class at the clean point,
 *   c = 2..k+1) and, per target class, `restarts` runs (the first from x, later ones from a random
 *   point at radius eps / 2), each only over the examples still classified correctly.
 *
 * AutoAttack works in [0, 1]; cnnf's inputs are in [-1, 1]. FAB runs here internally in AutoAttack's
 * [0, 1] coordinates u = (x + 1) / 2 (gradients d/du = 2 d/dx, radii halved), so its box, its
 * projections and its arithmetic are AutoAttack's own; the iterates, the projections and the step are
 * float64 (plain loops over Float64Arrays), the model sees float32(2 u - 1), and its logit difference
 * is taken in float64 from the float32 logits. The adversarial point returned is exactly the float32
 * point the model classified as adversarial.
 *
 * As in apgd.ts, the gradient comes from the victim's gradient path (first pass or end to end) and
 * "misclassified" always from the model's real prediction (all cycles, its readout).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readAllAndDispose, readAndDispose } from '../nn/read.js';
import { UsageError } from '../errors.js';
import { attackContext, attackLogits, checkEps, INPUT_MAX, INPUT_MIN, predictLogits, reportStep, type Attack, type AttackKind, type AttackSeed, type Victim } from './base.js';
import type { AttackDescriptor } from './registry.js';

export type FABNorm = 'linf' | 'l2';

/** Largest iteration count accepted. */
export const FAB_MAX_ITERATIONS = 10_000;

/** Sorts `idx` (0..n-1) by key ascending, ties by index (torch.sort's order among ties is unspecified). */
function argsort(key: Float64Array, idx: Int32Array): void {
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  idx.sort((a, b) => key[a] - key[b] || a - b);
}

/** Scratch arrays for the projections of one dimension. */
export class FABScratch {
  readonly w: Float64Array;
  readonly a: Float64Array;
  readonly p: Float64Array;
  readonly s: Float64Array;
  readonly sb: Float64Array;
  readonly r: Float64Array;
  readonly rs: Float64Array;
  readonly idx: Int32Array;
  constructor(readonly dim: number) {
    this.w = new Float64Array(dim);
    this.a = new Float64Array(dim);
    this.p = new Float64Array(dim);
    this.s = new Float64Array(dim + 1);
    this.sb = new Float64Array(dim + 1);
    this.r = new Float64Array(dim);
    this.rs = new Float64Array(dim);
    this.idx = new Int32Array(dim);
  }
}

/**
 * AutoAttack's `projection_linf` for one point: the smallest Linf step d with t + d in [0, 1]^D that
 * reaches the hyperplane w . z = b (or, when the box does not allow it, the step that gets closest).
 * Writes d into `out`.
 */
export function projectionLinf(t: ArrayLike<number>, w0: ArrayLike<number>, b0in: number, out: Float64Array, sc = new FABScratch(t.length)): void {
  const dim = t.length;
  const { w, a, p, s, sb, idx } = sc;
  let wt = 0;
  for (let i = 0; i < dim; i++) wt += w0[i] * t[i];
  const sign = wt - b0in >= 0 ? 1 : -1;
  let b = b0in * sign;
  let wtS = 0;
  let b0 = 0;
  for (let i = 0; i < dim; i++) {
    const wi = w0[i] * sign;
    w[i] = wi;
    const ai = wi < 0 ? 1 : 0;
    a[i] = ai;
    out[i] = wi !== 0 ? ai - t[i] : 0;
    p[i] = ai - t[i] * (2 * ai - 1);
    wtS += wi * t[i];
    b0 += wi * out[i];
  }
  b -= wtS;
  argsort(p, idx);
  // descending order of p: position k holds coordinate idx[dim - 1 - k]
  let cs = 0;
  let csb = 0;
  for (let k = 0; k < dim; k++) {
    const j = idx[dim - 1 - k];
    cs += Math.abs(w[j]);
    csb += -w[j] * out[j];
    s[k] = cs;
    sb[k] = csb + b0;
  }
  const b2all = sb[dim - 1] - s[dim - 1] * p[idx[0]];
  const cL = b - b2all > 0;
  const c2 = b - b0 > 0 && !cL;
  const clampMin0 = (v: number) => (Number.isNaN(v) ? 0 : Math.max(v, 0));
  if (cL) {
    const lmbd = clampMin0((b - sb[dim - 1]) / -s[dim - 1]);
    for (let i = 0; i < dim; i++) out[i] = (2 * a[i] - 1) * lmbd;
  } else if (c2) {
    let lb = 0;
    let ub = dim - 1;
    const nitermax = Math.ceil(Math.log2(dim));
    for (let it = 0; it < nitermax; it++) {
      const c4 = Math.floor((lb + ub) / 2);
      const b2 = sb[c4] - s[c4] * p[idx[dim - 1 - c4]];
      if (b - b2 > 0) lb = c4;
      else ub = c4;
    }
    const lmbd = clampMin0((b - sb[lb]) / -s[lb]);
    for (let i = 0; i < dim; i++) out[i] = a[i] ? Math.min(lmbd, out[i]) : Math.max(-lmbd, out[i]);
  }
  for (let i = 0; i < dim; i++) if (w[i] === 0) out[i] = 0;
}

/** AutoAttack's `projection_l2` for one point (box [0, 1]); writes d into `out`. */
export function projectionL2(t: ArrayLike<number>, w0: ArrayLike<number>, bIn: number, out: Float64Array, sc = new FABScratch(t.length)): void {
  const dim = t.length;
  const { w, r, rs, s, idx } = sc;
  const ws = sc.sb; // w5 - cumsum of the sorted w^2
  let c = -bIn;
  for (let i = 0; i < dim; i++) c += w0[i] * t[i];
  const ind2 = c >= 0 ? 1 : -1;
  c *= ind2;
  for (let i = 0; i < dim; i++) {
    const wi = w0[i] * ind2;
    w[i] = wi;
    let ri = Math.max(t[i] / wi, (t[i] - 1) / wi);
    ri = Math.min(Math.max(ri, -1e12), 1e12);
    if (Math.abs(wi) < 1e-8) ri = 1e12;
    if (ri === -1e12) ri = 1e12;
    r[i] = ri;
  }
  argsort(r, idx);
  let w5 = 0;
  for (let k = 0; k < dim; k++) {
    const wj = w[idx[k]];
    rs[k] = r[idx[k]];
    w5 += wj * wj;
  }
  let cum = 0;
  for (let k = 0; k < dim; k++) {
    const wj = w[idx[k]];
    cum += wj * wj;
    ws[k] = w5 - cum;
  }
  // rs2 = rs shifted left (padded with 0), both with 1e12 replaced by 0
  const rsAt = (k: number) => (rs[k] === 1e12 ? 0 : rs[k]);
  const rs2At = (k: number) => (k + 1 < dim ? rsAt(k + 1) : 0);
  let dw = 0;
  for (let i = 0; i < dim; i++) {
    out[i] = Math.abs(w[i]) > 1e-8 ? -(r[i] * w[i]) : 0;
    dw += out[i] * w[i];
  }
  const s0 = -w5 * rsAt(0);
  s[0] = s0;
  let cs = 0;
  for (let k = 0; k < dim; k++) {
    cs += (-rs2At(k) + rsAt(k)) * ws[k];
    s[k + 1] = cs + s0;
  }
  const c4 = s[0] + c < 0;
  const c3 = dw + c > 0;
  if (c4) {
    const alpha = c / w5;
    for (let i = 0; i < dim; i++) out[i] = -alpha * w[i];
  } else if (!c3) {
    let lb = 0;
    let ub = dim - 1;
    const nitermax = Math.ceil(Math.log2(dim));
    for (let it = 0; it < nitermax; it++) {
      const m = Math.floor((lb + ub) / 2);
      if (s[m] + c > 0) lb = m;
      else ub = m;
    }
    let alpha = (s[lb] + c) / ws[lb] + rsAt(lb);
    if (ws[lb] === 0) alpha = 0;
    for (let i = 0; i < dim; i++) if (!(alpha > r[i])) out[i] = -alpha * w[i];
  }
  for (let i = 0; i < dim; i++) if (!(Math.abs(w[i]) > 1e-8)) out[i] = 0;
}

function normOf(norm: FABNorm, d: ArrayLike<number>, from: number, to: number): number {
  let acc = 0;
  if (norm === 'linf') {
    for (let i = from; i < to; i++) acc = Math.max(acc, Math.abs(d[i]));
    return acc;
  }
  for (let i = from; i < to; i++) acc += d[i] * d[i];
  return Math.sqrt(acc);
}

export interface FABSingleRunOptions {
  norm: FABNorm;
  iterations: number;
  alphaMax: number;
  eta: number;
  beta: number;
  /** Target class per example. */
  targets: ArrayLike<number>;
  /** Start point in [-1, 1] units (AutoAttack's random start for restarts > 0); default x. */
  init?: Float32Array;
  /** Called after each iteration (a sign of life; it changes nothing). */
  onIteration?: (done: number) => void;
}

export interface FABSingleRunResult {
  /** The closest adversarial point found per example ([-1, 1], float32), x where none was found. */
  adv: Float32Array;
  /** 1 where an adversarial point was found (AutoAttack's res2 < 1e10). */
  success: Uint8Array;
  /** Its distance to x in cnnf's [-1, 1] units (Infinity where none). */
  distance: Float64Array;
  /** 1 where the model classified x correctly (only those are attacked). */
  attacked: Uint8Array;
}

/** Logits of the model's prediction, per example. */
async function predictions(v: Victim, x: tf.Tensor4D): Promise<Int32Array> {
  return Int32Array.from(await readAndDispose(tf.tidy(() => tf.argMax(predictLogits(v, x), 1))));
}

/**
 * f_t - f_y (float64 from the float32 logits) and its gradient w.r.t. the input (float32), at x.
 */
async function diffLogitsGrad(v: Victim, x: tf.Tensor4D, y: ArrayLike<number>, t: ArrayLike<number>): Promise<{ df: Float64Array; grad: Float32Array }> {
  const n = x.shape[0];
  const df = new Float64Array(n);
  let logits: tf.Tensor | undefined;
  const grad = tf.tidy(() => {
    const f = (xx: tf.Tensor): tf.Scalar => {
      const z = attackLogits(v, xx);
      const k = z.shape[1];
      // the logits of this very pass, kept for the host (a copy: the tape frees what it saved)
      logits = tf.keep(tf.clone(z));
      const coef = new Float32Array(n * k);
      for (let i = 0; i < n; i++) {
        coef[i * k + t[i]] += 1;
        coef[i * k + y[i]] -= 1;
      }
      return tf.sum(tf.mul(z, tf.tensor2d(coef, [n, k])));
    };
    return tf.grad(f)(x);
  });
  const z = logits as unknown as tf.Tensor2D;
  const [zz, g] = await readAllAndDispose([z, grad]);
  const k = z.shape[1];
  for (let i = 0; i < n; i++) df[i] = zz[i * k + t[i]] - zz[i * k + y[i]];
  return { df, grad: g as Float32Array };
}

/**
 * One FAB-T run (AutoAttack's `attack_single_run` with `is_targeted=True`) over a batch of independent
 * examples: only examples the model classifies correctly at x are attacked.
 */
export async function fabSingleRun(v: Victim, x: tf.Tensor4D, y: ArrayLike<number>, opts: FABSingleRunOptions): Promise<FABSingleRunResult> {
  const n = x.shape[0];
  const dim = x.size / n;
  const shape = x.shape;
  const { norm, iterations, alphaMax, eta, beta } = opts;
  if (!Number.isInteger(iterations) || iterations < 0 || iterations > FAB_MAX_ITERATIONS) throw new UsageError(`FAB iterations must be an integer 0..${FAB_MAX_ITERATIONS}, got ${iterations}`);
  if (opts.targets.length !== n) throw new Error(`fabSingleRun: ${opts.targets.length} targets for ${n} examples`);
  const clean = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
  const [xs, pred] = await readAllAndDispose([x.clone(), clean]);
  const out = Float32Array.from(xs);
  const distance = new Float64Array(n).fill(Infinity);
  const success = new Uint8Array(n);
  const attacked = Uint8Array.from(pred, (p, i) => (p === y[i] ? 1 : 0));
  const rows: number[] = [];
  for (let i = 0; i < n; i++) if (attacked[i]) rows.push(i);
  const m = rows.length;
  if (m === 0 || iterations === 0) return { adv: out, success, distance, attacked };
  const ys = rows.map((i) => y[i]);
  const ts = rows.map((i) => opts.targets[i]);
  // AutoAttack's [0, 1] coordinates, float64
  const x0 = new Float64Array(m * dim);
  const x1 = new Float64Array(m * dim);
  rows.forEach((i, j) => {
    for (let q = 0; q < dim; q++) {
      x0[j * dim + q] = (xs[i * dim + q] + 1) / 2;
      const s = opts.init ? opts.init[i * dim + q] : xs[i * dim + q];
      x1[j * dim + q] = Math.min(Math.max((s + 1) / 2, 0), 1);
    }
  });
  const advU = new Float32Array(m * dim); // the float32 [-1, 1] point of the best adversarial iterate
  const res2 = new Float64Array(m).fill(1e10);
  const sc = new FABScratch(dim);
  const d1 = new Float64Array(dim);
  const d2 = new Float64Array(dim);
  const w = new Float64Array(dim);
  const xin = new Float32Array(m * dim);
  const subShape = [m, ...shape.slice(1)] as [number, number, number, number];
  const project = norm === 'linf' ? projectionLinf : projectionL2;

  for (let it = 0; it < iterations; it++) {
    for (let q = 0; q < m * dim; q++) xin[q] = 2 * x1[q] - 1;
    const xt = tf.tensor4d(xin, subShape);
    const { df, grad } = await diffLogitsGrad(v, xt, ys, ts).finally(() => xt.dispose());
    for (let j = 0; j < m; j++) {
      const off = j * dim;
      let wx = 0;
      for (let q = 0; q < dim; q++) {
        w[q] = 2 * grad[off + q];
        wx += w[q] * x1[off + q];
      }
      const b = -df[j] + wx;
      project(x1.subarray(off, off + dim), w, b, d1, sc);
      project(x0.subarray(off, off + dim), w, b, d2, sc);
      const a1 = Math.max(normOf(norm, d1, 0, dim), 1e-8);
      const a2 = Math.max(normOf(norm, d2, 0, dim), 1e-8);
      const alpha = Math.min(Math.max(a1 / (a1 + a2), 0), alphaMax);
      for (let q = 0; q < dim; q++) {
        const z = (x1[off + q] + eta * d1[q]) * (1 - alpha) + (x0[off + q] + d2[q] * eta) * alpha;
        x1[off + q] = Math.min(Math.max(z, 0), 1);
      }
    }
    for (let q = 0; q < m * dim; q++) xin[q] = 2 * x1[q] - 1;
    const xp = tf.tensor4d(xin, subShape);
    const p = await predictions(v, xp).finally(() => xp.dispose());
    for (let j = 0; j < m; j++) {
      if (p[j] === ys[j]) continue;
      const off = j * dim;
      let t = 0;
      if (norm === 'linf') for (let q = 0; q < dim; q++) t = Math.max(t, Math.abs(x1[off + q] - x0[off + q]));
      else {
        for (let q = 0; q < dim; q++) t += (x1[off + q] - x0[off + q]) ** 2;
        t = Math.sqrt(t);
      }
      if (t < res2[j]) {
        res2[j] = t;
        advU.set(xin.subarray(off, off + dim), off);
      }
      for (let q = 0; q < dim; q++) x1[off + q] = x0[off + q] + (x1[off + q] - x0[off + q]) * beta;
    }
    opts.onIteration?.(it + 1);
  }
  rows.forEach((i, j) => {
    if (!(res2[j] < 1e10)) return;
    success[i] = 1;
    out.set(advU.subarray(j * dim, (j + 1) * dim), i * dim);
    distance[i] = normOf(norm, Float64Array.from(out.subarray(i * dim, (i + 1) * dim), (o, q) => o - xs[i * dim + q]), 0, dim);
  });
  return { adv: out, success, distance, attacked };
}

export interface FABOptions {
  name?: string;
  norm?: FABNorm;
  iterations?: number;
  restarts?: number;
  /** Target classes: the 2nd .. (k+1)-th most likely at the clean point. */
  nTargetClasses?: number;
  alphaMax?: number;
  eta?: number;
  beta?: number;
}

/**
 * FAB-T with AutoAttack's `perturb` (targeted): target class after target class, restart after
 * restart, each over the examples still classified correctly; an example is broken when the closest
 * adversarial point of a run lies within eps, and keeps that point. `labels` are the true classes.
 */
export class FAB implements Attack {
  readonly kind: AttackKind = 'gradient';
  readonly method = 'fab' as const;
  /** Untargeted in the suite's sense: success means misclassification (FAB-T picks its own targets). */
  readonly targeted = false;
  readonly name: string;
  readonly norm: FABNorm;
  readonly iterations: number;
  readonly restarts: number;
  readonly nTargetClasses: number;
  readonly alphaMax: number;
  readonly eta: number;
  readonly beta: number;

  constructor(opts: FABOptions = {}) {
    this.norm = opts.norm ?? 'linf';
    this.iterations = opts.iterations ?? 100;
    this.restarts = opts.restarts ?? 1;
    this.nTargetClasses = opts.nTargetClasses ?? 9;
    this.alphaMax = opts.alphaMax ?? 0.1;
    this.eta = opts.eta ?? 1.05;
    this.beta = opts.beta ?? 0.9;
    if (this.norm !== 'linf' && this.norm !== 'l2') throw new UsageError(`FAB norm must be linf or l2, got ${JSON.stringify(this.norm)}`);
    if (!Number.isInteger(this.iterations) || this.iterations < 1 || this.iterations > FAB_MAX_ITERATIONS) throw new UsageError(`FAB iterations must be an integer 1..${FAB_MAX_ITERATIONS}, got ${this.iterations}`);
    if (!Number.isInteger(this.restarts) || this.restarts < 1 || this.restarts > 1000) throw new UsageError(`FAB restarts must be an integer 1..1000, got ${this.restarts}`);
    if (!Number.isInteger(this.nTargetClasses) || this.nTargetClasses < 1) throw new UsageError(`FAB-T target classes must be an integer >= 1, got ${this.nTargetClasses}`);
    if (!Number.isFinite(this.alphaMax) || this.alphaMax < 0 || this.alphaMax > 1) throw new UsageError(`FAB alphaMax must be in [0, 1], got ${this.alphaMax}`);
    if (!Number.isFinite(this.eta) || this.eta < 1 || this.eta > 10) throw new UsageError(`FAB eta must be in [1, 10], got ${this.eta}`);
    if (!Number.isFinite(this.beta) || this.beta <= 0 || this.beta > 1) throw new UsageError(`FAB beta must be in (0, 1], got ${this.beta}`);
    this.name = opts.name ?? `fab-t-${this.norm}`;
  }

  settings(): Record<string, unknown> {
    return {
      algorithm: 'FAB-T (AutoAttack fab_base.py, targeted)',
      norm: this.norm,
      iterations: this.iterations,
      restarts: this.restarts,
      nTargetClasses: this.nTargetClasses,
      alphaMax: this.alphaMax,
      eta: this.eta,
      beta: this.beta,
      randomStart: 'restarts after the first, at radius eps / 2',
    };
  }

  /** AutoAttack's random start of FAB: x + (eps / 2) t / ||t|| (Linf: t ~ U(-1, 1), max norm; L2: t ~ N(0, 1)), clipped to the box. */
  static async randomStart(norm: FABNorm, x: tf.Tensor4D, eps: number, seed: number): Promise<Float32Array> {
    const t = tf.tidy(() => {
      const r = norm === 'linf' ? tf.randomUniform(x.shape, -1, 1, 'float32', seed) : tf.randomNormal(x.shape, 0, 1, 'float32', seed);
      const m = norm === 'linf' ? tf.max(tf.abs(r), [1, 2, 3], true) : tf.sqrt(tf.sum(tf.square(r), [1, 2, 3], true));
      return tf.clipByValue(tf.add(x, tf.mul(tf.div(r, m), eps / 2)), INPUT_MIN, INPUT_MAX);
    });
    return (await readAndDispose(t)) as Float32Array;
  }

  /** FAB-T's targets: the `rank`-th most likely class (rank 2 = runner-up) of the model at x. */
  static async targetsAt(v: Victim, x: tf.Tensor4D, rank: number): Promise<Int32Array> {
    const idx = tf.tidy(() => {
      const logits = predictLogits(v, x);
      const k = logits.shape[1];
      if (rank < 1 || rank > k) throw new UsageError(`FAB-T target rank ${rank} is outside 1..${k}`);
      return tf.reshape(tf.slice(tf.topk(logits, rank).indices, [0, rank - 1], [-1, 1]), [-1]);
    });
    return Int32Array.from(await readAndDispose(idx));
  }

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / x.shape[0]);
    if (eps === 0) return tf.clone(x);
    const n = x.shape[0];
    const per = x.size / n;
    const k = tf.tidy(() => predictLogits(v, tf.slice(x, 0, 1)).shape[1]);
    if (this.nTargetClasses > k - 1) throw new UsageError(`FAB-T: ${this.nTargetClasses} target classes, but the model has only ${k - 1} classes besides the true one`);
    const clean = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
    const [yv, pred, xv] = await Promise.all([labels.data(), clean.data(), x.data()]).finally(() => clean.dispose());
    const ys = Int32Array.from(yv);
    const robust = Uint8Array.from(pred, (p, i) => (p === ys[i] ? 1 : 0));
    const adv = Float32Array.from(xv);
    for (let rank = 2; rank <= this.nTargetClasses + 1; rank++) {
      for (let r = 0; r < this.restarts; r++) {
        const todo: number[] = [];
        for (let i = 0; i < n; i++) if (robust[i]) todo.push(i);
        if (todo.length === 0) return tf.tensor4d(adv, x.shape);
        const xs = tf.tidy(() => tf.gather(x, tf.tensor1d(todo, 'int32')) as tf.Tensor4D);
        try {
          const targets = await FAB.targetsAt(v, xs, rank);
          const init = r > 0 ? await FAB.randomStart(this.norm, xs, eps, ctx.nextSeed()) : undefined;
          const phase = [`target ${rank - 1}/${this.nTargetClasses}`, this.restarts > 1 ? `restart ${r + 1}/${this.restarts}` : ''].filter((s) => s).join(' ');
          const onIteration = ctx.onStep ? (done: number): void => reportStep(ctx, { phase, done, total: this.iterations, unit: 'iterations', active: todo.length }) : undefined;
          const res = await fabSingleRun(v, xs, Int32Array.from(todo, (i) => ys[i]), { norm: this.norm, iterations: this.iterations, alphaMax: this.alphaMax, eta: this.eta, beta: this.beta, targets, init, onIteration });
          // AutoAttack's check of the run's output: misclassified and within eps
          const outT = tf.tensor4d(res.adv, xs.shape);
          const p = await predictions(v, outT).finally(() => outT.dispose());
          todo.forEach((i, j) => {
            if (p[j] === ys[i]) return;
            const dist = normOf(this.norm, Float64Array.from(res.adv.subarray(j * per, (j + 1) * per), (o, q) => o - xv[i * per + q]), 0, per);
            if (dist > eps) return;
            robust[i] = 0;
            adv.set(res.adv.subarray(j * per, (j + 1) * per), i * per);
          });
        } finally {
          xs.dispose();
        }
      }
    }
    return tf.tensor4d(adv, x.shape);
  }
}

export const fabAttack: AttackDescriptor = {
  method: 'fab',
  label: 'FAB-T',
  summary: 'AutoAttack\'s targeted FAB (Croce & Hein 2020): minimum-norm steps to the linearised boundary of each of the top-k wrong classes; broken when the closest adversarial point is within eps',
  kind: 'gradient',
  norms: ['linf', 'l2'],
  targetable: false,
  params: {
    iterations: { type: 'int', min: 1, max: FAB_MAX_ITERATIONS, default: 100, description: 'iterations per run' },
    restarts: { type: 'int', min: 1, max: 1000, default: 1, description: 'restarts, each on examples still robust' },
    nTargetClasses: { type: 'int', min: 1, max: 1000, default: 9, description: 'FAB-T target classes (the most likely wrong ones)' },
    alphaMax: { type: 'number', min: 0, max: 1, default: 0.1, description: 'largest weight of the step from the clean point' },
    eta: { type: 'number', min: 1, max: 10, default: 1.05, description: 'overshoot of the projection step' },
    beta: { type: 'number', positive: true, max: 1, default: 0.9, description: 'backward step towards the clean point after a success' },
  },
  defaultName: () => 'fab-t',
  build: (spec) => new FAB({
    name: spec.name, norm: (spec.norm ?? 'linf') as FABNorm, iterations: spec.params.iterations as number, restarts: spec.params.restarts as number,
    nTargetClasses: spec.params.nTargetClasses as number, alphaMax: spec.params.alphaMax as number, eta: spec.params.eta as number, beta: spec.params.beta as number,
  }),
};
