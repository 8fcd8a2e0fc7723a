/**
 * SPSA (Uesato et al., ICML 2018), a gradient-free Linf attack, as cleverhans implements it
 * (cleverhans/torch/attacks/spsa.py, tf2/attacks/spsa.py), untargeted:
 *
 * - delta starts uniform in [-eps, eps] (cleverhans; `init: 'zero'` starts at 0 as advertorch does),
 *   projected to the eps ball and the [-1, 1] box;
 * - each step estimates the gradient of the loss at x + delta from `samples` random +/-1 directions v,
 *   each evaluated at x + delta +/- `delta`*v: g = mean over v of (L(+) - L(-)) / (2 delta) * v
 *   (advertorch's estimator; cleverhans' differs by a constant factor, which Adam ignores);
 * - Adam (beta1 0.9, beta2 0.999, epsilon 1e-8, bias-corrected) with learning rate `lr` MINIMISES the
 *   margin loss, logit of the true class minus the best other logit (cleverhans' `_margin_logit_loss`
 *   with the untargeted sign); `loss: 'ce'` minimises minus the cross-entropy instead (advertorch's
 *   LinfSPSAAttack as the CNN-F paper's code calls it);
 * - after each step delta is projected to the eps ball and the box, the loss is evaluated at the new
 *   point, and an example stops once its margin is < 0 (cleverhans' early_stop_loss_threshold = 0).
 *
 * cleverhans attacks one example at a time; here all examples of a batch step together, each with its
 * own directions and Adam state, which is the same computation. The perturbed copies are evaluated in
 * chunks of at most `maxBatch` images, and the directions are drawn in a fixed order (example by example,
 * sample by sample) from mulberry32 seeded with `ctx.nextSeed()`, so the result does not depend on the
 * chunk size. Examples misclassified before the attack are returned unchanged.
 *
 * Defaults follow the CNN-F reference code (yjhuangcd/CNNF eval.py `attack_spsa`, Fashion-MNIST):
 * 7 steps (nb_iter), delta 0.01, 128 samples, lr 0.01 (advertorch's default). Note that Adam moves each
 * pixel by about lr per step, so 7 steps move delta by at most ~0.07 from its start.
 * Queries per example and step: 2 * samples + 1.
 */
import * as tf from '@tensorflow/tfjs-core';
import { readAndDispose } from '../nn/read.js';
import { mulberry32, type Rng } from '../data/rng.js';
import { UsageError } from '../errors.js';
import { checkEps, INPUT_MAX, INPUT_MIN, predictLogits, reportStep, type Attack, type Victim, attackContext, type AttackSeed } from './base.js';
import { verifyPerturbation } from './square.js';
import type { AttackDescriptor } from './registry.js';

export interface SPSAOptions {
  name?: string;
  /** Optimisation steps (default 7, as the CNN-F reference evaluation). */
  steps?: number;
  /** Adam learning rate (default 0.01). */
  lr?: number;
  /** Finite-difference step (default 0.01). */
  delta?: number;
  /** Random +/-1 directions per step, each evaluated at +delta and -delta (default 128). */
  samples?: number;
  /** At most this many images per forward pass (default 256). */
  maxBatch?: number;
  /** Starting point: uniform in the eps ball (cleverhans, default) or zero (advertorch). */
  init?: 'uniform' | 'zero';
  /** Loss minimised: the logit margin (cleverhans, default) or minus the cross-entropy (advertorch as CNN-F uses it). */
  loss?: 'margin' | 'ce';
  /** Stop each example once its margin is < 0 (default true). */
  earlyStop?: boolean;
}

export interface SPSAResult {
  adv: tf.Tensor4D;
  /** Forward passes spent per example (2 * samples + 1 per step it took part in). */
  queries: Int32Array;
  /** Steps each example took. */
  steps: Int32Array;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;
const MAX_STEPS = 1_000_000;
const MAX_SAMPLES = 1_000_000;
const MAX_BATCH = 4096;

/** Per-example loss (to minimise) from the logits of `count` images with labels `ys`. */
export function spsaLoss(logits: ArrayLike<number>, count: number, ys: ArrayLike<number>, kind: 'margin' | 'ce'): { loss: Float64Array; margin: Float64Array } {
  const k = logits.length / count;
  const loss = new Float64Array(count);
  const margin = new Float64Array(count);
  for (let e = 0; e < count; e++) {
    const y = ys[e];
    let other = -Infinity;
    let max = -Infinity;
    for (let j = 0; j < k; j++) {
      const l = logits[e * k + j];
      if (l > max) max = l;
      if (j !== y && l > other) other = l;
    }
    margin[e] = logits[e * k + y] - other;
    if (kind === 'margin') loss[e] = margin[e];
    else {
      let se = 0;
      for (let j = 0; j < k; j++) se += Math.exp(logits[e * k + j] - max);
      loss[e] = logits[e * k + y] - max - Math.log(se); // -CE = log softmax of the true class
    }
  }
  return { loss, margin };
}

export class SPSA implements Attack {
  readonly name: string;
  readonly method = 'spsa';
  readonly kind = 'score';
  readonly norm = 'linf';
  readonly targeted = false;
  readonly steps: number;
  readonly lr: number;
  readonly delta: number;
  readonly samples: number;
  readonly maxBatch: number;
  readonly init: 'uniform' | 'zero';
  readonly loss: 'margin' | 'ce';
  readonly earlyStop: boolean;

  constructor(opts: SPSAOptions = {}) {
    this.steps = opts.steps ?? 7;
    this.lr = opts.lr ?? 0.01;
    this.delta = opts.delta ?? 0.01;
    this.samples = opts.samples ?? 128;
    this.maxBatch = opts.maxBatch ?? 256;
    this.init = opts.init ?? 'uniform';
    this.loss = opts.loss ?? 'margin';
    this.earlyStop = opts.earlyStop ?? true;
    const int = (v: number, lo: number, hi: number, what: string): void => {
      if (!Number.isInteger(v) || v < lo || v > hi) throw new UsageError(`spsa: ${what} must be an integer in ${lo}..${hi}, got ${v}`);
    };
    int(this.steps, 1, MAX_STEPS, 'steps');
    int(this.samples, 1, MAX_SAMPLES, 'samples');
    int(this.maxBatch, 2, MAX_BATCH, 'maxBatch');
    if (!Number.isFinite(this.lr) || this.lr <= 0) throw new UsageError(`spsa: lr must be > 0, got ${this.lr}`);
    if (!Number.isFinite(this.delta) || this.delta <= 0) throw new UsageError(`spsa: delta must be > 0, got ${this.delta}`);
    if (this.init !== 'uniform' && this.init !== 'zero') throw new UsageError(`spsa: init must be uniform or zero, got ${String(this.init)}`);
    if (this.loss !== 'margin' && this.loss !== 'ce') throw new UsageError(`spsa: loss must be margin or ce, got ${String(this.loss)}`);
    this.name = opts.name ?? 'spsa';
  }

  settings(): Record<string, unknown> {
    return {
      steps: this.steps, lr: this.lr, delta: this.delta, samples: this.samples, init: this.init, loss: this.loss,
      earlyStop: this.earlyStop, optimizer: 'adam', reference: 'cleverhans spsa.py',
    };
  }

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    return (await this.run(v, x, labels, eps, ctx)).adv;
  }

  async run(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<SPSAResult> {
    const ctx = attackContext(seed);
    checkEps(eps);
    if (x.rank !== 4) throw new UsageError(`spsa: expected NHWC images, got shape [${x.shape.join(', ')}]`);
    const [n, h, w, c] = x.shape;
    if (labels.size !== n) throw new UsageError(`spsa: ${n} images but ${labels.size} labels`);
    const shape: [number, number, number] = [h, w, c];
    const d = h * w * c;
    const [yv, xv] = await Promise.all([labels.data(), x.data()]);
    const ys = Int32Array.from(yv);
    const xs = xv as Float32Array;
    const queries = new Int32Array(n);
    const stepsTaken = new Int32Array(n);
    const out = Float32Array.from(xs);
    if (eps > 0) {
      const rng = mulberry32(ctx.nextSeed());
      const clean = await this.evaluate(v, xs, n, shape, ys);
      const active: number[] = [];
      for (let i = 0; i < n; i++) if (clean.margin[i] > 0 || (clean.margin[i] === 0 && (await argmaxIsLabel(v, xs, i, shape, ys[i])))) active.push(i);
      const pert = new Float64Array(n * d);
      for (const e of active) {
        for (let i = e * d; i < (e + 1) * d; i++) pert[i] = this.init === 'uniform' ? (rng() * 2 - 1) * eps : 0;
        project(pert, xs, e * d, d, eps);
      }
      const m = new Float64Array(n * d);
      const u = new Float64Array(n * d);
      const grad = new Float64Array(n * d);
      let act = active;
      for (let t = 1; t <= this.steps && act.length > 0; t++) {
        await spsaGradient(v, xs, ys, pert, grad, act, shape, rng, this);
        const bc1 = 1 - BETA1 ** t;
        const bc2 = 1 - BETA2 ** t;
        for (const e of act) {
          for (let i = e * d; i < (e + 1) * d; i++) {
            const g = grad[i];
            m[i] = BETA1 * m[i] + (1 - BETA1) * g;
            u[i] = BETA2 * u[i] + (1 - BETA2) * g * g;
            pert[i] -= (this.lr * (m[i] / bc1)) / (Math.sqrt(u[i] / bc2) + ADAM_EPS);
          }
          project(pert, xs, e * d, d, eps);
          queries[e] += 2 * this.samples + 1;
          stepsTaken[e] += 1;
        }
        const cur = new Float32Array(act.length * d);
        act.forEach((e, k) => {
          for (let i = 0; i < d; i++) cur[k * d + i] = xs[e * d + i] + pert[e * d + i];
        });
        const { margin } = await this.evaluate(v, cur, act.length, shape, Int32Array.from(act, (e) => ys[e]));
        act = this.earlyStop ? act.filter((_, k) => !(margin[k] < 0)) : act;
        reportStep(ctx, { phase: '', done: t, total: this.steps, unit: 'steps', active: act.length });
      }
      for (const e of active) for (let i = e * d; i < (e + 1) * d; i++) out[i] = clampBox(xs[i] + pert[i]);
    }
    verifyPerturbation(xs, out, n, eps, 'linf', this.name);
    return { adv: tf.tensor4d(out, [n, h, w, c]), queries, steps: stepsTaken };
  }

  private async evaluate(v: Victim, xs: Float32Array, count: number, shape: [number, number, number], ys: ArrayLike<number>): Promise<{ loss: Float64Array; margin: Float64Array }> {
    const d = shape[0] * shape[1] * shape[2];
    const lossAll = new Float64Array(count);
    const marginAll = new Float64Array(count);
    for (let start = 0; start < count; start += this.maxBatch) {
      const b = Math.min(this.maxBatch, count - start);
      const logits = await readAndDispose<'float32'>(tf.tidy(() => predictLogits(v, tf.tensor4d(xs.subarray(start * d, (start + b) * d), [b, ...shape]))));
      const r = spsaLoss(logits, b, Array.prototype.slice.call(ys, start, start + b) as number[], this.loss);
      lossAll.set(r.loss, start);
      marginAll.set(r.margin, start);
    }
    return { loss: lossAll, margin: marginAll };
  }
}

export interface SPSAGradientOptions {
  delta: number;
  samples: number;
  maxBatch: number;
  loss: 'margin' | 'ce';
}

/**
 * SPSA gradient estimate of the loss at x + pert for each example index in `act` (NHWC, D = H*W*C values
 * each), written to grad (zeroed first): mean over `samples` random +/-1 directions v of
 * (L(x + pert + delta v) - L(x + pert - delta v)) / (2 delta) * v. Directions are drawn example by example,
 * sample by sample, 32 signs per draw of `rng`, so the estimate does not depend on `maxBatch`.
 */
export async function spsaGradient(v: Victim, xs: Float32Array, ys: Int32Array, pert: Float64Array, grad: Float64Array, act: number[],
  shape: [number, number, number], rng: Rng, o: SPSAGradientOptions): Promise<void> {
  const d = shape[0] * shape[1] * shape[2];
  const pairsPerChunk = Math.max(1, Math.floor(o.maxBatch / 2));
  const total = act.length * o.samples;
  const buf = new Float32Array(2 * Math.min(pairsPerChunk, total) * d);
  const dirs = new Int8Array(Math.min(pairsPerChunk, total) * d);
  const owner = new Int32Array(Math.min(pairsPerChunk, total));
  for (const e of act) grad.fill(0, e * d, (e + 1) * d);
  let bits = 0;
  let left = 0;
  const sign = (): number => {
    if (left === 0) {
      bits = Math.floor(rng() * 4294967296) >>> 0;
      left = 32;
    }
    const s = bits & 1;
    bits >>>= 1;
    left--;
    return s ? 1 : -1;
  };
  for (let start = 0; start < total; start += pairsPerChunk) {
    const b = Math.min(pairsPerChunk, total - start);
    const labs = new Int32Array(2 * b);
    for (let k = 0; k < b; k++) {
      const e = act[Math.floor((start + k) / o.samples)];
      owner[k] = e;
      labs[k] = ys[e];
      labs[b + k] = ys[e];
      for (let i = 0; i < d; i++) {
        const s = sign();
        dirs[k * d + i] = s;
        const base = xs[e * d + i] + pert[e * d + i];
        buf[k * d + i] = base + o.delta * s;
        buf[(b + k) * d + i] = base - o.delta * s;
      }
    }
    const logits = await readAndDispose<'float32'>(tf.tidy(() => predictLogits(v, tf.tensor4d(buf.subarray(0, 2 * b * d), [2 * b, ...shape]))));
    const { loss } = spsaLoss(logits, 2 * b, labs, o.loss);
    for (let k = 0; k < b; k++) {
      const e = owner[k];
      const f = (loss[k] - loss[b + k]) / (2 * o.delta * o.samples);
      for (let i = 0; i < d; i++) grad[e * d + i] += f * dirs[k * d + i];
    }
  }
}

const clampBox = (val: number): number => (val < INPUT_MIN ? INPUT_MIN : val > INPUT_MAX ? INPUT_MAX : val);

/** Projects pert[off .. off+len) to the eps ball and so that x + pert stays in the box (in place). */
function project(pert: Float64Array, xs: Float32Array, off: number, len: number, eps: number): void {
  for (let i = off; i < off + len; i++) {
    const p = Math.min(Math.max(pert[i], -eps), eps);
    pert[i] = clampBox(xs[i] + p) - xs[i];
  }
}

/** Ties (margin exactly 0): decide with argmax as the model's prediction would. */
async function argmaxIsLabel(v: Victim, xs: Float32Array, i: number, shape: [number, number, number], y: number): Promise<boolean> {
  const d = shape[0] * shape[1] * shape[2];
  const pred = (await readAndDispose(tf.tidy(() => tf.argMax(predictLogits(v, tf.tensor4d(xs.subarray(i * d, (i + 1) * d), [1, ...shape])), 1))))[0];
  return pred === y;
}

export const spsaAttack: AttackDescriptor = {
  method: 'spsa',
  label: 'SPSA',
  summary: 'SPSA (Uesato et al. 2018, as cleverhans): Adam on finite-difference gradient estimates, no gradients of the model',
  kind: 'score',
  norms: ['linf'],
  targetable: false,
  params: {
    steps: { type: 'int', min: 1, max: 10_000, default: 7, description: 'optimisation steps' },
    lr: { type: 'number', positive: true, max: 100, default: 0.01, description: 'Adam learning rate' },
    delta: { type: 'number', positive: true, max: 2, default: 0.01, description: 'finite-difference step' },
    samples: { type: 'int', min: 1, max: 100_000, default: 128, description: 'random +/-1 directions per step' },
    init: { type: 'enum', values: ['uniform', 'zero'], default: 'uniform', description: 'start point: uniform in the eps-ball or the clean input' },
    loss: { type: 'enum', values: ['margin', 'ce'], default: 'margin', description: 'loss: logit margin (cleverhans) or cross-entropy' },
  },
  defaultName: () => 'spsa',
  build: (spec) => new SPSA({
    name: spec.name, steps: spec.params.steps as number, lr: spec.params.lr as number, delta: spec.params.delta as number,
    samples: spec.params.samples as number, init: spec.params.init as 'uniform' | 'zero', loss: spec.params.loss as 'margin' | 'ce',
  }),
};
