/**
 * Square attack (Andriushchenko et al., ECCV 2020), a score-based black-box attack, as AutoAttack
 * implements it (fra31/auto-attack, autoattack/square.py, `attack_single_run`), untargeted, margin loss:
 *
 * - Linf: start from vertical stripes x + eps * s (one random sign per example, channel and column);
 *   each iteration draws one square of side s(p) at one random position and one random sign per
 *   channel (the same square and signs for every example still being attacked, as AutoAttack does),
 *   sets the window to x_best +/- 2 eps, projects to the eps ball and the box.
 * - L2: start from a grid of 5x5 blocks filled with the `eta` pattern (nested rectangles weighted
 *   1/(k+1)^2, upper half positive, lower half negative, randomly transposed) times a random sign per
 *   example and channel, rescaled to L2 norm eps; each iteration moves the mass of a second window into
 *   a new window (old window content + a fresh `eta` pattern), keeping the L2 norm at eps before clipping.
 * - The side of the square follows AutoAttack's `p_selection` schedule from `pInit` (defined for 10000
 *   queries and rescaled to `queries`).
 * - Acceptance: a candidate replaces x_best when its margin (logit of the true class minus the best other
 *   logit) decreases or is <= 0; an example stops once its margin is <= 0 (fooled).
 *
 * Queries go to the model's real prediction (`predictLogits`: cycles + readout); the gradient mode of
 * the victim is irrelevant. Only examples classified correctly are attacked; each restart attacks only
 * the examples still classified correctly. Examples that are never fooled are returned unchanged (x),
 * as AutoAttack does.
 *
 * Query accounting: `queries` is the budget per example and restart INCLUDING the initial query, so an
 * example gets at most `queries` forward passes per restart (AutoAttack spends n_queries iterations after
 * the initial query, i.e. n_queries + 1; the schedule is the same, the last iteration is dropped). The
 * clean check before the attack and the check of each restart's result are bookkeeping passes on the
 * whole batch and are not counted, as in AutoAttack.
 *
 * Differences from AutoAttack, for any H, W, C: the random position is drawn in [0, H - s) as AutoAttack
 * does (so with s < H the last row/column offset is never drawn); L2 initial blocks that would extend
 * past the image (AutoAttack would fail on them) are cut at the border; L2 needs H, W >= 10.
 * Randomness comes from mulberry32 seeded with `ctx.nextSeed()` (one stream per `perturb`).
 */
import * as tf from '@tensorflow/tfjs-core';
import { readAndDispose } from '../nn/read.js';
import { mulberry32, type Rng } from '../data/rng.js';
import { UsageError } from '../errors.js';
import { misclassified, checkEps, INPUT_MAX, INPUT_MIN, predictLogits, reportStep, type Attack, type Victim, attackContext, type AttackSeed } from './base.js';
import type { AttackDescriptor } from './registry.js';

export type SquareNorm = 'linf' | 'l2';

export interface SquareOptions {
  name?: string;
  norm?: SquareNorm;
  /** Query budget per example and restart, including the initial query (default 5000). */
  queries?: number;
  /** Initial fraction of pixels in the square (default 0.8). */
  pInit?: number;
  /** Restarts, each only on examples still classified correctly (default 1). */
  restarts?: number;
}

export interface SquareResult {
  adv: tf.Tensor4D;
  /** Attack queries (forward passes) spent per example, summed over restarts. */
  queries: Int32Array;
  /** 1 where the example was classified correctly before the attack. */
  cleanCorrect: Uint8Array;
  /** 1 where the returned example is misclassified by the attack's own check. */
  fooled: Uint8Array;
}

const MAX_QUERIES = 10_000_000;
const MAX_RESTARTS = 1000;

/** AutoAttack's `p_selection`: the fraction of pixels a square covers at iteration `it`. */
export function pSelection(it: number, nQueries: number, pInit: number, rescale = true): number {
  if (rescale) it = Math.trunc((it / nQueries) * 10000);
  if (10 < it && it <= 50) return pInit / 2;
  if (50 < it && it <= 200) return pInit / 4;
  if (200 < it && it <= 500) return pInit / 8;
  if (500 < it && it <= 1000) return pInit / 16;
  if (1000 < it && it <= 2000) return pInit / 32;
  if (2000 < it && it <= 4000) return pInit / 64;
  if (4000 < it && it <= 6000) return pInit / 128;
  if (6000 < it && it <= 8000) return pInit / 256;
  if (8000 < it) return pInit / 512;
  return pInit;
}

/** Python 3's round(): halves go to the even neighbour. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Side of the square at fraction p: AutoAttack's `max(int(round(sqrt(p * n_features / c))), min)`, odd for L2, capped at min(h, w). */
export function squareSide(p: number, h: number, w: number, c: number, norm: SquareNorm): number {
  const nFeatures = h * w * c;
  let s = Math.max(roundHalfEven(Math.sqrt((p * nFeatures) / c)), norm === 'linf' ? 1 : 3);
  if (norm === 'l2' && s % 2 === 0) s += 1;
  return Math.min(s, Math.min(h, w));
}

/** torch.sign(2 * rand - 1): a random sign (0 with probability 2^-32, as in AutoAttack). */
function randomSign(rng: Rng): number {
  return Math.sign(2 * rng() - 1);
}

/** AutoAttack's `random_int(0, n)`: floor of a uniform draw in [0, n) (0 when n = 0). */
function randomInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

/** AutoAttack's `eta_rectangles(x, y)` (L2): nested rectangles weighted 1/(k+1)^2, unit L2 norm; row-major [x, y]. */
export function etaRectangles(x: number, y: number): Float64Array {
  const d = new Float64Array(x * y);
  const xc = Math.floor(x / 2) + 1;
  const yc = Math.floor(y / 2) + 1;
  let c0 = xc - 1;
  let c1 = yc - 1;
  for (let k = 0; k < Math.max(xc, yc); k++) {
    const w = 1 / ((k + 1) * (k + 1));
    for (let i = Math.max(c0, 0); i < Math.min(c0 + 2 * k + 1, x); i++) {
      for (let j = Math.max(c1, 0); j < Math.min(c1 + 2 * k + 1, y); j++) d[i * y + j] += w;
    }
    c0 -= 1;
    c1 -= 1;
  }
  let n = 0;
  for (const v of d) n += v * v;
  n = Math.sqrt(n);
  for (let i = 0; i < d.length; i++) d[i] /= n;
  return d;
}

/** AutoAttack's `eta(s)` (L2): upper half rectangles, lower half negated, unit L2 norm, transposed when a draw > 0.5. */
export function eta(s: number, rng: Rng): Float64Array {
  const top = Math.floor(s / 2);
  const a = etaRectangles(top, s);
  const b = etaRectangles(s - top, s);
  const d = new Float64Array(s * s);
  d.set(a, 0);
  for (let i = 0; i < b.length; i++) d[top * s + i] = -b[i];
  let n = 0;
  for (const v of d) n += v * v;
  n = Math.sqrt(n);
  for (let i = 0; i < d.length; i++) d[i] /= n;
  if (rng() > 0.5) {
    const t = new Float64Array(s * s);
    for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) t[j * s + i] = d[i * s + j];
    return t;
  }
  return d;
}

/** Linf start: eps times a random sign per example, channel and column (vertical stripes); NHWC, before clipping. */
export function linfStripes(n: number, h: number, w: number, c: number, rng: Rng): Float32Array {
  const signs = new Float32Array(n * c * w); // AutoAttack draws a [n, c, 1, w] tensor, in that order
  for (let i = 0; i < signs.length; i++) signs[i] = randomSign(rng);
  const out = new Float32Array(n * h * w * c);
  for (let e = 0; e < n; e++) {
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        for (let ch = 0; ch < c; ch++) out[((e * h + i) * w + j) * c + ch] = signs[(e * c + ch) * w + j];
      }
    }
  }
  return out;
}

/** L2 start: the grid of `eta` blocks times a random sign per example and channel; NHWC, not normalised. */
export function l2Blocks(n: number, h: number, w: number, c: number, rng: Rng): Float64Array {
  const out = new Float64Array(n * h * w * c);
  const s = Math.floor(h / 5);
  const sp = Math.floor((h - s * 5) / 2);
  let vh = sp;
  for (let a = 0; a < Math.floor(h / s); a++) {
    let vw = sp;
    for (let b = 0; b < Math.floor(w / s); b++) {
      const e = eta(s, rng);
      const signs = new Float64Array(n * c);
      for (let k = 0; k < signs.length; k++) signs[k] = randomSign(rng);
      for (let ex = 0; ex < n; ex++) {
        for (let i = 0; i < s && vh + i < h; i++) {
          for (let j = 0; j < s && vw + j < w; j++) {
            for (let ch = 0; ch < c; ch++) out[((ex * h + vh + i) * w + vw + j) * c + ch] += e[i * s + j] * signs[ex * c + ch];
          }
        }
      }
      vw += s;
    }
    vh += s;
  }
  return out;
}

const clampBox = (v: number): number => (v < INPUT_MIN ? INPUT_MIN : v > INPUT_MAX ? INPUT_MAX : v);

/** Margin (true logit minus the best other logit) of each image; `xs` holds `count` NHWC images. */
async function margins(v: Victim, xs: Float32Array, count: number, shape: [number, number, number], ys: Int32Array): Promise<Float64Array> {
  const logits = await readAndDispose(tf.tidy(() => predictLogits(v, tf.tensor4d(xs.subarray(0, count * shape[0] * shape[1] * shape[2]), [count, ...shape]))));
  const k = logits.length / count;
  const out = new Float64Array(count);
  for (let e = 0; e < count; e++) {
    const y = ys[e];
    let other = -Infinity;
    for (let j = 0; j < k; j++) if (j !== y && logits[e * k + j] > other) other = logits[e * k + j];
    out[e] = logits[e * k + y] - other;
  }
  return out;
}

/** Throws (a bug, not a usage error) unless adv is finite, in the box and in the eps ball around x (float32 rounding tolerated). */
export function verifyPerturbation(x: ArrayLike<number>, adv: ArrayLike<number>, n: number, eps: number, norm: SquareNorm, who: string): void {
  const d = adv.length / n;
  for (let e = 0; e < n; e++) {
    let l2 = 0;
    for (let i = e * d; i < (e + 1) * d; i++) {
      const a = adv[i];
      if (!Number.isFinite(a)) throw new Error(`${who}: non-finite output at ${i}`);
      if (a < INPUT_MIN || a > INPUT_MAX) throw new Error(`${who}: output ${a} outside [-1, 1] at ${i}`);
      const diff = a - x[i];
      if (norm === 'linf' && Math.abs(diff) > eps + 1e-6) throw new Error(`${who}: |delta| = ${Math.abs(diff)} > eps ${eps} at ${i}`);
      l2 += diff * diff;
    }
    if (norm === 'l2' && Math.sqrt(l2) > eps * (1 + 1e-5) + 2e-7 * Math.sqrt(d)) throw new Error(`${who}: ||delta||_2 = ${Math.sqrt(l2)} > eps ${eps} (example ${e})`);
  }
}

export class SquareAttack implements Attack {
  readonly name: string;
  readonly method = 'square';
  readonly kind = 'score';
  readonly targeted = false;
  readonly norm: SquareNorm;
  readonly queries: number;
  readonly pInit: number;
  readonly restarts: number;

  constructor(opts: SquareOptions = {}) {
    this.norm = opts.norm ?? 'linf';
    this.queries = opts.queries ?? 5000;
    this.pInit = opts.pInit ?? 0.8;
    this.restarts = opts.restarts ?? 1;
    if (this.norm !== 'linf' && this.norm !== 'l2') throw new UsageError(`square: norm must be linf or l2, got ${String(this.norm)}`);
    if (!Number.isInteger(this.queries) || this.queries <= 0 || this.queries > MAX_QUERIES) {
      throw new UsageError(`square: queries must be an integer in 1..${MAX_QUERIES}, got ${this.queries}`);
    }
    if (!Number.isFinite(this.pInit) || this.pInit <= 0 || this.pInit > 1) throw new UsageError(`square: pInit must be in (0, 1], got ${this.pInit}`);
    if (!Number.isInteger(this.restarts) || this.restarts < 1 || this.restarts > MAX_RESTARTS) {
      throw new UsageError(`square: restarts must be an integer in 1..${MAX_RESTARTS}, got ${this.restarts}`);
    }
    this.name = opts.name ?? `square-${this.norm}`;
  }

  settings(): Record<string, unknown> {
    return { norm: this.norm, queries: this.queries, pInit: this.pInit, restarts: this.restarts, loss: 'margin', reference: 'AutoAttack square.py' };
  }

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    return (await this.run(v, x, labels, eps, ctx)).adv;
  }

  /** The attack with its bookkeeping (queries per example, who was fooled). */
  async run(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<SquareResult> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / Math.max(1, x.shape[0]));
    if (x.rank !== 4) throw new UsageError(`square: expected NHWC images, got shape [${x.shape.join(', ')}]`);
    const [n, h, w, c] = x.shape;
    if (labels.size !== n) throw new UsageError(`square: ${n} images but ${labels.size} labels`);
    if (this.norm === 'l2' && Math.min(h, w) < 10) throw new UsageError(`square: the L2 attack needs images of at least 10x10, got ${h}x${w}`);
    const clean = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
    const [yv, xv, pred] = await Promise.all([labels.data(), x.data(), clean.data()]).finally(() => clean.dispose());
    const ys = Int32Array.from(yv);
    const xs = xv as Float32Array;
    const d = h * w * c;
    const queries = new Int32Array(n);
    const cleanCorrect = Uint8Array.from(pred, (p, i) => (p !== ys[i] ? 0 : 1));
    const out = Float32Array.from(xs);
    const fooled = new Uint8Array(n);
    if (eps > 0) {
      const rng = mulberry32(ctx.nextSeed());
      for (let r = 0; r < this.restarts; r++) {
        const idx: number[] = [];
        for (let i = 0; i < n; i++) if (cleanCorrect[i] && !fooled[i]) idx.push(i);
        if (idx.length === 0) break;
        const sx = new Float32Array(idx.length * d);
        const sy = new Int32Array(idx.length);
        idx.forEach((i, k) => {
          sx.set(xs.subarray(i * d, (i + 1) * d), k * d);
          sy[k] = ys[i];
        });
        const phase = this.restarts > 1 ? `restart ${r + 1}/${this.restarts}` : '';
        const onQuery = ctx.onStep ? (done: number, active: number): void => reportStep(ctx, { phase, done, total: this.queries, unit: 'queries', active }) : undefined;
        const single = await this.singleRun(v, sx, sy, [h, w, c], eps, rng, onQuery);
        const advT = tf.tensor4d(single.xBest, [idx.length, h, w, c]);
        const hit = await misclassified(v, advT, sy).finally(() => advT.dispose());
        idx.forEach((i, k) => {
          queries[i] += single.queries[k];
          if (hit[k]) {
            fooled[i] = 1;
            out.set(single.xBest.subarray(k * d, (k + 1) * d), i * d);
          }
        });
      }
    }
    verifyPerturbation(xs, out, n, eps, this.norm, this.name);
    for (const q of queries) if (q > this.queries * this.restarts) throw new Error(`${this.name}: ${q} queries > budget`);
    return { adv: tf.tensor4d(out, [n, h, w, c]), queries, cleanCorrect, fooled };
  }

  /** AutoAttack's `attack_single_run` on the examples in `xs` (all classified correctly). */
  private async singleRun(v: Victim, xs: Float32Array, ys: Int32Array, shape: [number, number, number], eps: number, rng: Rng, onQuery?: (done: number, active: number) => void): Promise<{ xBest: Float32Array; queries: Int32Array }> {
    const [h, w, c] = shape;
    const d = h * w * c;
    const m = ys.length;
    const xBest = new Float32Array(m * d);
    if (this.norm === 'linf') {
      const st = linfStripes(m, h, w, c, rng);
      for (let i = 0; i < xBest.length; i++) xBest[i] = clampBox(xs[i] + eps * st[i]);
    } else {
      const delta = l2Blocks(m, h, w, c, rng);
      for (let e = 0; e < m; e++) {
        const f = eps / (l2Norm(delta, e * d, d) + 1e-12);
        for (let i = e * d; i < (e + 1) * d; i++) xBest[i] = clampBox(xs[i] + delta[i] * f);
      }
    }
    const marginMin = await margins(v, xBest, m, shape, ys);
    const queries = new Int32Array(m).fill(1);
    if (marginMin.every((g) => g < 0)) return { xBest, queries };

    const xNew = new Float32Array(m * d);
    const yAct = new Int32Array(m);
    const act: number[] = [];
    // budget includes the initial query: iterations 0 .. queries - 2
    for (let it = 0; it < this.queries - 1; it++) {
      act.length = 0;
      for (let e = 0; e < m; e++) if (marginMin[e] > 0) act.push(e);
      if (act.length === 0) break;
      const p = pSelection(it, this.queries, this.pInit);
      const s = squareSide(p, h, w, c, this.norm);
      if (this.norm === 'linf') this.linfCandidates(xs, xBest, xNew, act, shape, s, eps, rng);
      else this.l2Candidates(xs, xBest, xNew, act, shape, s, eps, rng);
      act.forEach((e, k) => (yAct[k] = ys[e]));
      const mg = await margins(v, xNew, act.length, shape, yAct);
      onQuery?.(it + 2, act.length);
      act.forEach((e, k) => {
        queries[e] += 1;
        // margin loss: loss == margin, so "loss improved or misclassified" is one test
        if (mg[k] < marginMin[e] || mg[k] <= 0) {
          marginMin[e] = mg[k];
          xBest.set(xNew.subarray(k * d, (k + 1) * d), e * d);
        }
      });
    }
    return { xBest, queries };
  }

  /** Linf candidates for the active examples, written to xNew[k] (k-th active). */
  private linfCandidates(xs: Float32Array, xBest: Float32Array, xNew: Float32Array, act: number[], shape: [number, number, number], s: number, eps: number, rng: Rng): void {
    const [h, w, c] = shape;
    const d = h * w * c;
    const vh = randomInt(rng, h - s);
    const vw = randomInt(rng, w - s);
    const signs = new Float64Array(c);
    for (let ch = 0; ch < c; ch++) signs[ch] = randomSign(rng);
    act.forEach((e, k) => {
      const dst = k * d;
      const src = e * d;
      xNew.set(xBest.subarray(src, src + d), dst);
      for (let i = vh; i < vh + s; i++) {
        for (let j = vw; j < vw + s; j++) {
          for (let ch = 0; ch < c; ch++) {
            const o = (i * w + j) * c + ch;
            const x0 = xs[src + o];
            let val = xBest[src + o] + 2 * eps * signs[ch];
            val = Math.min(Math.max(val, x0 - eps), x0 + eps);
            xNew[dst + o] = clampBox(val);
          }
        }
      }
    });
  }

  /** L2 candidates for the active examples (AutoAttack's window-swap update), written to xNew[k]. */
  private l2Candidates(xs: Float32Array, xBest: Float32Array, xNew: Float32Array, act: number[], shape: [number, number, number], s: number, eps: number, rng: Rng): void {
    const [h, w, c] = shape;
    const d = h * w * c;
    const vh = randomInt(rng, h - s);
    const vw = randomInt(rng, w - s);
    const vh2 = randomInt(rng, h - s);
    const vw2 = randomInt(rng, w - s);
    const e2 = eta(s, rng);
    const signs = new Float64Array(act.length * c);
    for (let i = 0; i < signs.length; i++) signs[i] = randomSign(rng);
    act.forEach((e, k) => {
      const src = e * d;
      const delta = l2Candidate(xs.subarray(src, src + d), xBest.subarray(src, src + d), shape, s, [vh, vw, vh2, vw2], e2, signs.subarray(k * c, (k + 1) * c), eps);
      const dst = k * d;
      for (let i = 0; i < d; i++) xNew[dst + i] = clampBox(xs[src + i] + delta[i]);
    });
  }
}

/**
 * AutoAttack's L2 update for one example (NHWC image x0, current best x0 + delta): moves the content of
 * window 2 into window 1, where it adds the `eta` pattern times a sign per channel to the old window-1
 * content, and rescales so that the whole perturbation has L2 norm eps. Returns the new perturbation,
 * before clipping to the box. `win` = [vh, vw, vh2, vw2], `e` = eta(s) (s*s), `signs` one per channel.
 */
export function l2Candidate(x0: ArrayLike<number>, best: ArrayLike<number>, shape: [number, number, number], s: number,
  win: [number, number, number, number], e: Float64Array, signs: ArrayLike<number>, eps: number): Float64Array {
  const [h, w, c] = shape;
  const [vh, vw, vh2, vw2] = win;
  const d = h * w * c;
  const delta = new Float64Array(d);
  for (let i = 0; i < d; i++) delta[i] = best[i] - x0[i];
  const in1 = (i: number, j: number): boolean => i >= vh && i < vh + s && j >= vw && j < vw + s;
  const in2 = (i: number, j: number): boolean => i >= vh2 && i < vh2 + s && j >= vw2 && j < vw2 + s;
  const normImage = l2Norm(delta, 0, d);
  // per channel: norm of window 1, norm of the union of both windows
  const nw1 = new Float64Array(c);
  const nws = new Float64Array(c);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const a = in1(i, j);
      if (!a && !in2(i, j)) continue;
      for (let ch = 0; ch < c; ch++) {
        const q = delta[(i * w + j) * c + ch] ** 2;
        nws[ch] += q;
        if (a) nw1[ch] += q;
      }
    }
  }
  for (let ch = 0; ch < c; ch++) {
    nw1[ch] = Math.sqrt(nw1[ch]);
    nws[ch] = Math.sqrt(nws[ch]);
  }
  const nd = new Float64Array(s * s * c);
  const ndScale = new Float64Array(c);
  for (let i = 0; i < s; i++) {
    for (let j = 0; j < s; j++) {
      for (let ch = 0; ch < c; ch++) {
        const val = e[i * s + j] * signs[ch] + delta[((vh + i) * w + vw + j) * c + ch] / (1e-12 + nw1[ch]);
        nd[(i * s + j) * c + ch] = val;
        ndScale[ch] += val * val;
      }
    }
  }
  const room = Math.max(eps * eps - normImage * normImage, 0) / c;
  for (let ch = 0; ch < c; ch++) ndScale[ch] = Math.sqrt(room + nws[ch] * nws[ch]) / (1e-12 + Math.sqrt(ndScale[ch]));
  for (let i = vh2; i < vh2 + s; i++) for (let j = vw2; j < vw2 + s; j++) for (let ch = 0; ch < c; ch++) delta[(i * w + j) * c + ch] = 0;
  for (let i = 0; i < s; i++) {
    for (let j = 0; j < s; j++) {
      for (let ch = 0; ch < c; ch++) delta[((vh + i) * w + vw + j) * c + ch] = nd[(i * s + j) * c + ch] * ndScale[ch];
    }
  }
  const f = eps / (l2Norm(delta, 0, d) + 1e-12);
  for (let i = 0; i < d; i++) delta[i] *= f;
  return delta;
}

function l2Norm(a: ArrayLike<number>, off: number, len: number): number {
  let s = 0;
  for (let i = off; i < off + len; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

export const squareAttack: AttackDescriptor = {
  method: 'square',
  label: 'Square',
  summary: 'Square attack (Andriushchenko et al. 2020, AutoAttack\'s square.py): score-based random search, no gradients',
  kind: 'score',
  norms: ['linf', 'l2'],
  targetable: false,
  params: {
    queries: { type: 'int', min: 1, max: MAX_QUERIES, default: 5000, description: 'queries per example and restart' },
    pInit: { type: 'number', positive: true, max: 1, default: 0.8, description: 'initial fraction of pixels a square covers' },
    restarts: { type: 'int', min: 1, max: MAX_RESTARTS, default: 1, description: 'restarts, each on examples still robust' },
  },
  defaultName: (p) => `square${p.queries !== 5000 ? String(p.queries) : ''}`,
  build: (spec) => new SquareAttack({
    name: spec.name, norm: (spec.norm ?? 'linf') as SquareNorm, queries: spec.params.queries as number, pInit: spec.params.pInit as number, restarts: spec.params.restarts as number,
  }),
};
