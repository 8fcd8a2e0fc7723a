/**
 * Square (AutoAttack's square.py) and SPSA (cleverhans' spsa.py): no golden fixture can exist for
 * random attacks, so the pieces are compared against the reference formulas (p_selection and the L2
 * `eta` pattern, the latter as values printed by a numpy port of AutoAttack's eta_rectangles / eta),
 * AutoAttack's invariants (stripes, L2 norm of every L2 candidate = eps), the SPSA gradient estimate
 * against the true gradient, determinism from the seed, ball / box invariants, query accounting, and the
 * effect on the reference CNNs (measured numbers, asserted with a margin).
 * CNNF_FULL_EVAL=1 adds the 100-image runs on reference-cnn-adv (several minutes).
 */
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { PGD, predictLogits, SPSA, SquareAttack, type AttackContext, type Victim } from '../src/attacks/index.js';
import { eta, etaRectangles, l2Blocks, l2Candidate, linfStripes, pSelection, roundHalfEven, squareSide } from '../src/attacks/square.js';
import { spsaGradient } from '../src/attacks/spsa.js';
import { IMAGE_PIXELS, loadDataset, mulberry32 } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { referenceModel } from './helpers/cli.js';

const FULL = process.env.CNNF_FULL_EVAL === '1';

/** AutoAttack's p_selection, transcribed from the Python source (int() truncates toward zero). */
function referencePSelection(it: number, nQueries: number, pInit: number): number {
  it = Math.trunc((it / nQueries) * 10000);
  const table: Array<[number, number, number]> = [
    [10, 50, 2], [50, 200, 4], [200, 500, 8], [500, 1000, 16], [1000, 2000, 32], [2000, 4000, 64], [4000, 6000, 128], [6000, 8000, 256],
  ];
  for (const [lo, hi, div] of table) if (lo < it && it <= hi) return pInit / div;
  return it > 8000 ? pInit / 512 : pInit;
}

const seeds = (start: number): AttackContext => {
  let s = start;
  return { nextSeed: () => s++ };
};

function images(n: number, stride: number): { x: tf.Tensor4D; y: tf.Tensor1D } {
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: `stride:${stride}` });
  return {
    x: tf.tensor4d(ds.test.images.subarray(0, n * IMAGE_PIXELS), [n, 28, 28, 1]),
    y: tf.tensor1d(ds.test.labels.subarray(0, n), 'int32'),
  };
}

function accuracy(v: Victim, x: tf.Tensor4D, y: tf.Tensor1D): number {
  return tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(predictLogits(v, x), 1), y), 'float32')).dataSync()[0]);
}

function predictions(v: Victim, x: tf.Tensor4D): Int32Array {
  return tf.tidy(() => tf.argMax(predictLogits(v, x), 1).dataSync() as Int32Array);
}

/** Largest |adv - x| and largest per-example L2 norm of adv - x; also checks the box. */
function distances(x: tf.Tensor, adv: tf.Tensor): { linf: number; l2: number[] } {
  const a = adv.dataSync();
  const b = x.dataSync();
  const n = x.shape[0];
  const d = a.length / n;
  let linf = 0;
  const l2: number[] = [];
  for (let e = 0; e < n; e++) {
    let s = 0;
    for (let i = e * d; i < (e + 1) * d; i++) {
      expect(Number.isFinite(a[i])).toBe(true);
      expect(a[i]).toBeGreaterThanOrEqual(-1);
      expect(a[i]).toBeLessThanOrEqual(1);
      linf = Math.max(linf, Math.abs(a[i] - b[i]));
      s += (a[i] - b[i]) ** 2;
    }
    l2.push(Math.sqrt(s));
  }
  return { linf, l2 };
}

describe('Square: AutoAttack formulas', () => {
  it('p_selection follows the reference schedule, rescaled to the query budget', () => {
    for (const nq of [1, 7, 100, 300, 1000, 5000, 10000, 12345]) {
      for (const pInit of [0.8, 0.05]) {
        for (let it = 0; it < nq; it += Math.max(1, Math.floor(nq / 997))) expect(pSelection(it, nq, pInit)).toBe(referencePSelection(it, nq, pInit));
      }
    }
    // hand values: 5000 queries -> iteration 5 maps to 10 (still p_init), 6 to 12 (p_init / 2), 26 to 52 (p_init / 4)
    expect([0, 5, 6, 25, 26, 4999].map((it) => pSelection(it, 5000, 0.8))).toEqual([0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 512]);
    expect([1, 2, 100, 101, 999].map((it) => pSelection(it, 1000, 0.8))).toEqual([0.8, 0.4, 0.8 / 16, 0.8 / 32, 0.8 / 512]);
    expect(pSelection(11, 100, 0.8, false)).toBe(0.4); // without rescaling the iteration is used as is
  });

  it('square side: round half to even as Python, at least 1 (Linf) or 3 and odd (L2), at most min(h, w)', () => {
    expect([0.5, 1.5, 2.5, 3.5, 2.4999, 2.5001].map(roundHalfEven)).toEqual([0, 2, 2, 4, 2, 3]);
    const ps = [0.8, 0.4, 0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125, 0.0015625];
    expect(ps.map((p) => squareSide(p, 28, 28, 1, 'linf'))).toEqual([25, 18, 13, 9, 6, 4, 3, 2, 2, 1]);
    expect(ps.map((p) => squareSide(p, 28, 28, 1, 'l2'))).toEqual([25, 19, 13, 9, 7, 5, 3, 3, 3, 3]);
    expect(squareSide(0.8, 32, 32, 3, 'linf')).toBe(29); // sqrt(0.8 * 3072 / 3) = 28.6
    expect(squareSide(1, 28, 20, 1, 'linf')).toBe(20);
  });

  it('eta and eta_rectangles equal the values of a numpy port of AutoAttack', () => {
    // printed by a line-by-line numpy transcription of square.py eta_rectangles / eta (no transposition; script not kept)
    const eta3 = [0.13608276348795434, 0.6804138174397716, 0.13608276348795434, -0.12909944487358055, -0.12909944487358055, -0.12909944487358055,
      -0.12909944487358055, -0.6454972243679028, -0.12909944487358055];
    const eta5 = [0.04916216460859937, 0.15977703497794796, 0.15977703497794796, 0.15977703497794796, 0.04916216460859937, 0.04916216460859937,
      0.15977703497794796, 0.6022365164553424, 0.15977703497794796, 0.04916216460859937, -0.0455901517673034, -0.14816799324373606,
      -0.14816799324373606, -0.14816799324373606, -0.0455901517673034, -0.0455901517673034, -0.14816799324373606, -0.5584793591494667,
      -0.14816799324373606, -0.0455901517673034, -0.0455901517673034, -0.14816799324373606, -0.14816799324373606, -0.14816799324373606,
      -0.0455901517673034];
    const rect25 = [0.0695257999450998, 0.22595884982157438, 0.22595884982157438, 0.22595884982157438, 0.0695257999450998, 0.0695257999450998,
      0.22595884982157438, 0.8516910493274727, 0.22595884982157438, 0.0695257999450998];
    const close = (a: ArrayLike<number>, b: number[]): void => {
      expect(a.length).toBe(b.length);
      for (let i = 0; i < b.length; i++) expect(a[i]).toBeCloseTo(b[i], 12);
    };
    close(etaRectangles(2, 5), rect25);
    // eta draws one uniform for the transposition: > 0.5 transposes
    close(eta(3, () => 0.25), eta3);
    close(eta(5, () => 0.25), eta5);
    const t = eta(5, () => 0.75);
    for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) expect(t[j * 5 + i]).toBeCloseTo(eta5[i * 5 + j], 12);
  });

  it('Linf start: vertical stripes of +/-1 per example, channel and column', () => {
    const [n, h, w, c] = [3, 6, 8, 2];
    const st = linfStripes(n, h, w, c, mulberry32(5));
    expect(st.length).toBe(n * h * w * c);
    const at = (e: number, i: number, j: number, ch: number): number => st[((e * h + i) * w + j) * c + ch];
    let plus = 0;
    for (let e = 0; e < n; e++) {
      for (let j = 0; j < w; j++) {
        for (let ch = 0; ch < c; ch++) {
          expect(Math.abs(at(e, 0, j, ch))).toBe(1);
          if (at(e, 0, j, ch) > 0) plus++;
          for (let i = 1; i < h; i++) expect(at(e, i, j, ch)).toBe(at(e, 0, j, ch));
        }
      }
    }
    expect(plus).toBeGreaterThan(10); // 48 signs: both occur
    expect(plus).toBeLessThan(38);
  });

  it('L2: the start and every candidate have L2 norm eps before clipping (AutoAttack keeps ||delta||_2 = eps)', () => {
    const [h, w, c] = [28, 28, 1];
    const d = h * w * c;
    const rng = mulberry32(11);
    const blocks = l2Blocks(2, h, w, c, rng);
    // 5 x 5 blocks of 5 x 5 starting at row/column 1: nothing outside rows/columns 1..25
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) if (i === 0 || j === 0 || i > 25 || j > 25) expect(blocks[i * w + j]).toBe(0);
    const eps = 1.5;
    const x0 = new Float64Array(d).map(() => rng() * 2 - 1);
    let norm = 0;
    for (let i = 0; i < d; i++) norm += blocks[i] ** 2;
    let best = Float64Array.from(x0, (v, i) => v + (blocks[i] * eps) / Math.sqrt(norm));
    for (let it = 0; it < 50; it++) {
      const s = squareSide(pSelection(it, 50, 0.8), h, w, c, 'l2');
      const win: [number, number, number, number] = [0, 0, 0, 0].map(() => Math.floor(rng() * (h - s))) as [number, number, number, number];
      const delta = l2Candidate(x0, best, [h, w, c], s, win, eta(s, rng), [rng() < 0.5 ? -1 : 1], eps);
      let n2 = 0;
      for (const v of delta) n2 += v * v;
      expect(Math.sqrt(n2)).toBeCloseTo(eps, 9);
      // window 2 outside window 1 is emptied
      const [vh, vw, vh2, vw2] = win;
      for (let i = vh2; i < vh2 + s; i++) {
        for (let j = vw2; j < vw2 + s; j++) if (!(i >= vh && i < vh + s && j >= vw && j < vw + s)) expect(delta[i * w + j]).toBe(0);
      }
      best = Float64Array.from(x0, (v, i) => v + delta[i]);
    }
  });

  it('any H, W, C: a random linear classifier on 32x32x3 and 12x20x2 images is fooled inside the ball (Square Linf/L2, SPSA)', async () => {
    await useBackend('wasm', { quiet: true });
    for (const [h, w, c] of [[32, 32, 3], [12, 20, 2]]) {
      const d = h * w * c;
      const rng = mulberry32(h * w);
      const wts = tf.tensor2d(Float32Array.from({ length: d * 10 }, () => (rng() * 2 - 1) / Math.sqrt(d)), [d, 10]);
      // stands in for a CNNF: predictLogits only calls run(x, { cycles }).logits
      const model = { run: (x: tf.Tensor) => ({ logits: [tf.matMul(tf.reshape(x, [-1, d]), wts)] }) } as unknown as LoadedCheckpoint['model'];
      const v: Victim = { model, mode: 'first', cycles: 0, readout: 'last' };
      const n = 6;
      const x = tf.tensor4d(Float32Array.from({ length: n * d }, () => rng() * 1.6 - 0.8), [n, h, w, c]);
      const y = tf.tensor1d(predictions(v, x), 'int32'); // all correct by construction
      const runs: Array<[string, number, () => Promise<{ adv: tf.Tensor4D; queries: Int32Array }>]> = [
        ['linf', 0.02, () => new SquareAttack({ queries: 200 }).run(v, x, y, 0.02, seeds(1))],
        ['spsa', 0.02, () => new SPSA({ steps: 10, samples: 32, lr: 0.004 }).run(v, x, y, 0.02, seeds(1))],
      ];
      if (Math.min(h, w) >= 10) runs.push(['l2', 0.6, () => new SquareAttack({ queries: 200, norm: 'l2' }).run(v, x, y, 0.6, seeds(1))]);
      for (const [kind, eps, go] of runs) {
        const r = await go();
        const dist = distances(x, r.adv);
        if (kind === 'l2') for (const l of dist.l2) expect(l).toBeLessThanOrEqual(eps * (1 + 1e-5));
        else expect(dist.linf).toBeLessThanOrEqual(eps + 1e-6);
        const acc = accuracy(v, r.adv, y);
        expect(acc, `${kind} ${h}x${w}x${c}`).toBeLessThanOrEqual(0.5);
        if (kind !== 'spsa') {
          // the search, not the random start, does the work: with the initial query only far fewer are fooled
          const init = await new SquareAttack({ queries: 1, norm: kind as 'linf' | 'l2' }).run(v, x, y, eps, seeds(1));
          expect(accuracy(v, init.adv, y), `${kind} ${h}x${w}x${c} start`).toBeGreaterThanOrEqual(acc + 0.49);
          init.adv.dispose();
        }
        r.adv.dispose();
      }
      for (const t of [wts, x, y]) t.dispose();
    }
  });

  it('bad options are usage errors', () => {
    for (const q of [0, -5, 1.5, Number.NaN]) expect(() => new SquareAttack({ queries: q })).toThrow(UsageError);
    expect(() => new SquareAttack({ restarts: 0 })).toThrow(UsageError);
    expect(() => new SquareAttack({ pInit: 0 })).toThrow(UsageError);
    expect(() => new SquareAttack({ norm: 'l1' as 'l2' })).toThrow(UsageError);
    for (const o of [{ steps: 0 }, { samples: 0 }, { maxBatch: 1 }, { lr: -1 }, { delta: 0 }]) expect(() => new SPSA(o)).toThrow(UsageError);
  });
});

describe('Square and SPSA on the reference CNNs', () => {
  let std: LoadedCheckpoint;
  let adv: LoadedCheckpoint;
  const victim = (m: LoadedCheckpoint): Victim => ({ model: m.model, mode: 'first', cycles: m.model.config.cycles, readout: 'last' });
  let small: { x: tf.Tensor4D; y: tf.Tensor1D };

  beforeAll(async () => {
    await useBackend('wasm', { quiet: true });
    std = await loadCheckpoint(referenceModel('cnn-standard'));
    adv = await loadCheckpoint(referenceModel('cnn-adv'));
    small = images(8, 1250);
  });
  // the attacks are synchronous: let vitest's worker RPC breathe between tests
  beforeEach(() => new Promise<void>((resolve) => setTimeout(resolve, 10)));
  afterAll(() => {
    small?.x.dispose();
    small?.y.dispose();
  });

  it('Square Linf at eps 0.2, 200 queries, 20 images of cnn-standard: accuracy falls far below clean; query accounting', async () => {
    const before = tf.memory().numTensors;
    const { x, y } = images(20, 500);
    const v = victim(std);
    const r = await new SquareAttack({ queries: 200 }).run(v, x, y, 0.2, seeds(1));
    const clean = accuracy(v, x, y);
    const acc = accuracy(v, r.adv, y);
    // measured (wasm, seed 1): clean 0.85, Square 0.20 (13 of the 17 correct fooled, 42 queries on average)
    expect(clean).toBeCloseTo(0.85, 5);
    expect(acc).toBeLessThanOrEqual(0.3);
    const dist = distances(x, r.adv);
    expect(dist.linf).toBeLessThanOrEqual(0.2 + 1e-6);
    expect(dist.linf).toBeGreaterThan(0.19);
    const pred = predictions(v, r.adv);
    const xs = x.dataSync();
    const as = r.adv.dataSync();
    const labels = y.dataSync();
    let fooledQueries = 0;
    let fooledCount = 0;
    for (let i = 0; i < 20; i++) {
      expect(r.queries[i]).toBeLessThanOrEqual(200);
      if (!r.cleanCorrect[i]) expect(r.queries[i]).toBe(0); // not attacked
      else if (r.fooled[i]) {
        expect(pred[i]).not.toBe(labels[i]);
        fooledQueries += r.queries[i];
        fooledCount++;
      } else {
        expect(r.queries[i]).toBe(200); // never stopped early: the whole budget, initial query included
        for (let k = i * IMAGE_PIXELS; k < (i + 1) * IMAGE_PIXELS; k++) expect(as[k]).toBe(xs[k]); // returned unchanged, as AutoAttack
      }
    }
    expect(fooledCount).toBeGreaterThanOrEqual(11);
    expect(fooledQueries / fooledCount).toBeLessThan(100); // fooled examples stop early
    r.adv.dispose();
    x.dispose();
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('Square is reproducible from the seed (Linf and L2), and the L2 output stays in the L2 ball', async () => {
    const v = victim(std);
    for (const [norm, eps] of [['linf', 0.25], ['l2', 5]] as const) {
      const a = new SquareAttack({ queries: 25, norm });
      const r1 = await a.run(v, small.x, small.y, eps, seeds(3));
      const r2 = await a.run(v, small.x, small.y, eps, seeds(3));
      const r3 = await a.run(v, small.x, small.y, eps, seeds(4));
      expect(Array.from(r1.adv.dataSync())).toEqual(Array.from(r2.adv.dataSync()));
      expect(Array.from(r1.queries)).toEqual(Array.from(r2.queries));
      expect(r1.fooled.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
      expect(Array.from(r3.queries)).not.toEqual(Array.from(r1.queries)); // another seed, other squares
      const dist = distances(small.x, r1.adv);
      if (norm === 'l2') {
        for (const l of dist.l2) expect(l).toBeLessThanOrEqual(eps * (1 + 1e-5));
        expect(Math.max(...dist.l2)).toBeGreaterThan(0.5); // some examples fooled: a real L2 perturbation
      } else expect(dist.linf).toBeLessThanOrEqual(eps + 1e-6);
      for (const r of [r1, r2, r3]) r.adv.dispose();
    }
  });

  it('Square with restarts attacks only what is still robust, eps 0 is the identity', async () => {
    const v = victim(std);
    const one = await new SquareAttack({ queries: 20 }).run(v, small.x, small.y, 0.1, seeds(9));
    const two = await new SquareAttack({ queries: 20, restarts: 2 }).run(v, small.x, small.y, 0.1, seeds(9));
    for (let i = 0; i < 8; i++) {
      expect(two.queries[i]).toBeLessThanOrEqual(40);
      if (one.fooled[i]) expect(two.queries[i]).toBe(one.queries[i]); // same first restart, no second one
      if (one.cleanCorrect[i] && !one.fooled[i]) expect(two.queries[i]).toBeGreaterThan(20);
      if (one.fooled[i]) expect(two.fooled[i]).toBe(1);
    }
    const zero = await new SquareAttack({ queries: 20 }).perturb(v, small.x, small.y, 0, seeds(1));
    expect(Array.from(zero.dataSync())).toEqual(Array.from(small.x.dataSync()));
    for (const t of [one.adv, two.adv, zero]) t.dispose();
  });

  it('SPSA gradient estimate points along the true gradient of the margin (cosine ~ sqrt(S / (S + D)))', async () => {
    const v = victim(std);
    const n = 1;
    const xs = small.x.dataSync().slice(0, n * IMAGE_PIXELS) as Float32Array;
    const ys = Int32Array.from(small.y.dataSync().slice(0, n));
    const grad = new Float64Array(n * IMAGE_PIXELS);
    await spsaGradient(v, xs, ys, new Float64Array(n * IMAGE_PIXELS), grad, [0], [28, 28, 1], mulberry32(2), { delta: 0.01, samples: 256, maxBatch: 256, loss: 'margin' });
    const truth = tf.tidy(() => {
      const yy = tf.oneHot(tf.tensor1d(ys, 'int32'), 10);
      const margin = (x: tf.Tensor): tf.Scalar => {
        const l = predictLogits(v, x);
        const own = tf.sum(tf.mul(l, yy), 1);
        const other = tf.max(tf.sub(l, tf.mul(yy, 1e9)), 1);
        return tf.sum(tf.sub(own, other));
      };
      return tf.grad(margin)(tf.tensor4d(xs, [n, 28, 28, 1])).dataSync();
    });
    for (let e = 0; e < n; e++) {
      let dot = 0;
      let a2 = 0;
      let b2 = 0;
      for (let i = e * IMAGE_PIXELS; i < (e + 1) * IMAGE_PIXELS; i++) {
        dot += grad[i] * truth[i];
        a2 += grad[i] ** 2;
        b2 += truth[i] ** 2;
      }
      // a random direction would give |cos| ~ 1/sqrt(784) = 0.036; a linear loss gives sqrt(256/1040) = 0.5
      expect(dot / Math.sqrt(a2 * b2)).toBeGreaterThan(0.3);
    }
  });

  it('SPSA: reproducible, independent of the chunk size, in the ball and box, queries = steps x (2 samples + 1), early stop', async () => {
    const v = victim(std);
    const eps = 0.15;
    const x = small.x.slice(0, 4);
    const y = small.y.slice(0, 4);
    const mk = (maxBatch: number): SPSA => new SPSA({ steps: 2, samples: 8, lr: 0.05, maxBatch });
    const r1 = await mk(6).run(v, x, y, eps, seeds(5));
    const r2 = await mk(64).run(v, x, y, eps, seeds(5));
    const r3 = await mk(64).run(v, x, y, eps, seeds(6));
    expect(Array.from(r1.adv.dataSync())).toEqual(Array.from(r2.adv.dataSync()));
    expect(Array.from(r3.adv.dataSync())).not.toEqual(Array.from(r1.adv.dataSync()));
    const dist = distances(x, r1.adv);
    expect(dist.linf).toBeLessThanOrEqual(eps + 1e-6);
    expect(dist.linf).toBeGreaterThan(0.1);
    const clean = predictions(v, x);
    const pred = predictions(v, r1.adv);
    const labels = y.dataSync();
    for (let i = 0; i < 4; i++) {
      expect(r1.queries[i]).toBe(r1.steps[i] * 17);
      if (clean[i] !== labels[i]) expect(r1.steps[i]).toBe(0); // misclassified already: not attacked
      else if (r1.steps[i] < 2) expect(pred[i]).not.toBe(labels[i]); // stopped early because fooled
    }
    for (const t of [r1.adv, r2.adv, r3.adv, x, y]) t.dispose();
  });

  it('SPSA beats its own random start on cnn-standard at eps 0.1 (8 images, 3 steps, 16 samples, lr 0.03)', async () => {
    const v = victim(std);
    const eps = 0.1;
    const r = await new SPSA({ steps: 3, samples: 16, lr: 0.03, earlyStop: false }).run(v, small.x, small.y, eps, seeds(1));
    // the same random start (same seed, same first draws) without the optimisation: 1 step of lr ~ 0
    const start = await new SPSA({ steps: 1, samples: 1, lr: 1e-12, earlyStop: false }).run(v, small.x, small.y, eps, seeds(1));
    const margin = (a: tf.Tensor4D): number => tf.tidy(() => {
      const l = predictLogits(v, a);
      const yy = tf.oneHot(small.y, 10);
      return tf.mean(tf.sub(tf.sum(tf.mul(l, yy), 1), tf.max(tf.sub(l, tf.mul(yy, 1e9)), 1))).dataSync()[0];
    });
    const m0 = margin(small.x);
    const mStart = margin(start.adv);
    const mSpsa = margin(r.adv);
    // measured (wasm): mean margin clean 5.29, random start 5.18, after 3 SPSA steps 3.69 (accuracy 0.75 before and after)
    expect(mStart).toBeGreaterThan(m0 - 0.5);
    expect(mSpsa).toBeLessThan(mStart - 0.75);
    expect(accuracy(v, r.adv, small.y)).toBeLessThanOrEqual(accuracy(v, small.x, small.y));
    r.adv.dispose();
    start.adv.dispose();
  });

  it('Square Linf at eps 0.2, 100 queries on 16 images of cnn-adv: below clean, above PGD-7 (measured)', async () => {
    const { x, y } = images(16, 625);
    const v = victim(adv);
    const r = await new SquareAttack({ queries: 100 }).run(v, x, y, 0.2, seeds(1));
    const pgd = await new PGD({ steps: 7, stepSize: 0.071 }).perturb(v, x, y, 0.2, seeds(1));
    const clean = accuracy(v, x, y);
    const acc = accuracy(v, r.adv, y);
    const accPgd = accuracy(v, pgd, y);
    // measured (wasm, seed 1): clean 0.75, Square-100 0.625, PGD-7 0.4375: with 100 queries Square is
    // weaker than PGD-7 on the adversarially trained CNN (with 1000 queries on 100 images it is stronger, see the full run)
    expect(clean).toBeCloseTo(0.75, 5);
    expect(acc).toBeGreaterThanOrEqual(0.5);
    expect(acc).toBeLessThanOrEqual(0.6875);
    expect(accPgd).toBeLessThanOrEqual(0.5);
    for (const t of [r.adv, pgd, x]) t.dispose();
    y.dispose();
  });

  it.runIf(FULL)('full: 100 images of cnn-adv, Square 1000 queries, SPSA defaults, PGD-7 (CNNF_FULL_EVAL=1, ~10 min CPU)', async () => {
    const { x, y } = images(100, 100);
    const v = victim(adv);
    const clean = accuracy(v, x, y);
    const pgd = await new PGD({ steps: 7, stepSize: 0.071 }).perturb(v, x, y, 0.2, seeds(1));
    const sq = await new SquareAttack({ queries: 1000 }).run(v, x, y, 0.2, seeds(2));
    const sp = await new SPSA().run(v, x, y, 0.2, seeds(3));
    const r = { clean, pgd7: accuracy(v, pgd, y), square1000: accuracy(v, sq.adv, y), spsa: accuracy(v, sp.adv, y) };
    console.log('cnn-adv 100 images', r);
    // measured with the same images and seeds (wasm): clean 0.87, PGD-7 0.76, Square-1000 0.73, SPSA 0.86
    expect(r.clean).toBeCloseTo(0.87, 5);
    expect(Math.abs(r.pgd7 - 0.76)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(r.square1000 - 0.73)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(r.spsa - 0.86)).toBeLessThanOrEqual(0.03);
    expect(r.square1000).toBeLessThanOrEqual(r.pgd7); // 1000 queries of Square beat PGD-7 on the adversarially trained CNN
    expect(r.spsa).toBeLessThanOrEqual(r.clean);
    for (const t of [pgd, sq.adv, sp.adv, x]) t.dispose();
    y.dispose();
  });
});
