/**
 * APGD / APGD-T (src/attacks/apgd.ts) against AutoAttack's code (fra31/auto-attack,
 * autoattack/autopgd_base.py): the golden fixture (AutoAttack's own float64 run from a given start
 * point) through `cnnf conformance` on wasm and cpu, the checkpoint schedule, the float64 loss head,
 * the eps ball and the box, AutoAttack's `perturb` bookkeeping (restarts and target classes only on
 * still-robust examples, first adversarial point kept, targets = 2nd, 3rd, ... most likely class at
 * the clean point), and a behavioural check on a trained model.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { APGD, APGD_NORMALIZE_EPS, apgdCheckpoints, apgdSingleRun, float64Ops, attackLoss, lossAndLogitGrad64, PGD, predictLogits, type Victim } from '../src/attacks/index.js';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import type { CNNF } from '../src/models/cnnf.js';
import { FLOAT64_PREFIX } from '../src/eval/conformance.js';
import { cnnf, referenceModel, ROOT } from './helpers/cli.js';

const FIXTURE = join(ROOT, 'fixtures', 'autoattack-apgd-ind2-c2.safetensors');
/** Lets vitest's worker RPC breathe between long synchronous attack runs. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Row { name: string; relError: number; pass: boolean; note?: string }
interface Report { pass: boolean; backend: string; reports: Array<{ pass: boolean; rows: Row[] }> }

async function conformance(backend: string): Promise<{ code: number; rows: Row[] }> {
  const r = await cnnf(['conformance', FIXTURE, '--json', '--backend', backend], { timeoutMs: 1_800_000 });
  const report = JSON.parse(r.stdout) as Report;
  expect(report.backend).toBe(backend);
  return { code: r.code, rows: report.reports[0].rows };
}

const CASES = ['ce', 'dlr', 'dlr-targeted'].flatMap((l) => ['Linf', 'L2'].map((n) => `attack.apgd.${l}.${n}`));
const OUTPUTS = ['x_best', 'x_best_adv', 'loss_best', 'robust'];
/**
 * Rows float32 does not reproduce (yet), measured on wasm (2026-12-04, the regenerated fixture of
 * 2026-12-03: 17 of 24 float32 rows match, every `robust` row among them). The float64 rows run the same
 * algorithm on the model evaluated in float64 (CNNF64) and reproduce all 24: float32 gradients (rel.
 * error ~1e-6) move these DLR trajectories (DLR Linf loss_best misses by 1.13e-5, just over 1e-5).
 */
const KNOWN_GAPS = new Set([
  'attack.apgd.dlr.Linf.loss_best',
  'attack.apgd.dlr.L2.x_best', 'attack.apgd.dlr.L2.x_best_adv',
  'attack.apgd.dlr-targeted.Linf.loss_best',
  'attack.apgd.dlr-targeted.L2.x_best', 'attack.apgd.dlr-targeted.L2.x_best_adv', 'attack.apgd.dlr-targeted.L2.loss_best',
]);
/**
 * On cpu (measured 2026-11-27, with the earlier fixture; not re-measured with the regenerated one) one CE
 * L2 example also leaves the float64 trajectory (x_best 2.1e-3) and 4 tie-search runs do not bring it
 * back; on wasm it matches to 3e-7.
 */
const CPU_GAPS = ['attack.apgd.ce.L2.x_best', 'attack.apgd.ce.L2.x_best_adv', 'attack.apgd.ce.L2.loss_best'];

describe('conformance with AutoAttack APGD golden tensors (fixture autoattack-apgd-ind2-c2)', () => {
  for (const backend of ['wasm', 'cpu']) {
    // wasm: ~3 min of CPU (165 s measured 2026-12-04; half of it the float64 rows). cpu: ~12 min of CPU for the 2-cycle model's
    // 20-iteration runs (tfjs's cpu backend is plain JS), so it runs with CNNF_FULL_EVAL=1; generous
    // timeout for loaded machines
    it.runIf(backend === 'wasm' || process.env.CNNF_FULL_EVAL === '1')(`recomputes every APGD row the float32 trajectory can follow within 1e-5 relative on ${backend}, and the float64 rows`, { timeout: 1_800_000 }, async () => {
      const { code, rows } = await conformance(backend);
      const names = CASES.flatMap((c) => OUTPUTS.map((o) => `${c}.${o}`));
      expect(rows.map((r) => r.name).sort()).toEqual([...names, ...names.map((n) => `${FLOAT64_PREFIX}${n}`)].sort());
      const gaps = new Set([...KNOWN_GAPS, ...(backend === 'cpu' ? CPU_GAPS : [])]);
      for (const row of rows) {
        if (gaps.has(row.name)) continue;
        expect(row.relError, row.name).toBeLessThanOrEqual(1e-5);
      }
      // the known gaps are real: when one closes, move it out of its list
      for (const name of gaps) expect(rows.find((r) => r.name === name)!.pass, name).toBe(false);
      // every float64 row matches, to float32 storage rounding (the fixture stores float32)
      const float64Rows = rows.filter((r) => r.name.startsWith(FLOAT64_PREFIX));
      expect(float64Rows).toHaveLength(24);
      for (const row of float64Rows) {
        expect(gaps.has(row.name), row.name).toBe(false);
        expect(row.relError, row.name).toBeLessThanOrEqual(1e-7);
      }
      expect(code).toBe(1);
    });
  }
});

describe('APGD unit behaviour', () => {
  it("normalizes L2 steps as AutoAttack does in [0, 1] units, also where the gradient is ~1e-12 (float64 ops)", () => {
    // AutoAttack's L2 update in [0, 1] units, x01 = (x + 1) / 2, gradient g01 = 2 g, radius and step halved
    const normalize = (v: number[]) => {
      const norm = Math.sqrt(v.reduce((a, b) => a + b * b, 0));
      return v.map((q) => q / (norm + 1e-12));
    };
    const l2 = (v: number[]) => Math.sqrt(v.reduce((a, b) => a + b * b, 0));
    const autoAttackStep = (x: number[], xAdv: number[], g: number[], step: number, eps: number): number[] => {
      const x01 = x.map((q) => (q + 1) / 2);
      const a01 = xAdv.map((q) => (q + 1) / 2);
      const n = normalize(g.map((q) => 2 * q));
      const project = (p: number[]) => {
        const d = p.map((q, j) => q - x01[j]);
        const nd = normalize(d);
        const len = Math.min(eps / 2, l2(d));
        return x01.map((q, j) => Math.min(Math.max(q + nd[j] * len, 0), 1));
      };
      // first iteration: a = 1, so x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a) = x_adv_1, projected again
      const x1 = project(a01.map((q, j) => q + (step / 2) * n[j]));
      return project(x1).map((q) => 2 * q - 1);
    };
    const x = [0.1, -0.2, 0.3, 0];
    for (const scale of [1, 1e-12, 3e-13]) {
      const g = [3, -4, 0, 12].map((q) => q * scale / 13);
      const ops = float64Ops({ n: 1, per: 4 }, Float64Array.from(x), 0.5, 'l2', () => { throw new Error('unused'); });
      // first iteration (a = 1): the momentum term vanishes
      const ours = ops.step(Float64Array.from(x), Float64Array.from(x), Float64Array.from(g), Float64Array.of(0.3), 1);
      const ref = autoAttackStep(x, x, g, 0.3, 0.5);
      ours.forEach((v, j) => expect(v, `scale ${scale} pixel ${j}`).toBeCloseTo(ref[j], 14));
      // with ||g|| = 1e-12 in [-1, 1] units the step is 2/3 of its size (1e-12 of [0, 1] units is 0.5e-12 here)
      if (scale === 1e-12) expect(l2(Array.from(ours, (v, j) => v - x[j]))).toBeCloseTo(0.3 * (1 / 1.5), 10);
    }
    expect(APGD_NORMALIZE_EPS).toEqual({ displacement: 2e-12, gradient: 0.5e-12 });
  });

  it("checks its step size where AutoAttack's schedule p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) says (100 iterations)", () => {
    // the paper's formula, in hundredths to stay exact: checkpoint w_j = ceil(p_j N) for p_j < 1
    const expected: number[] = [];
    let prev = 0;
    let p = 22;
    while (p < 100) {
      expected.push(p);
      const next = p + Math.max(p - prev - 3, 6);
      prev = p;
      p = next;
    }
    expect(expected).toEqual([22, 41, 57, 70, 80, 87, 93, 99]);
    expect(apgdCheckpoints(100).map((i) => i + 1)).toEqual(expected);
    // AutoAttack's integer version for 20 iterations (int(0.22 N) = 4, then k - 1 down to 1)
    expect(apgdCheckpoints(20).map((i) => i + 1)).toEqual([4, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  });

  it('computes the loss head in float64 in agreement with the float32 losses of losses.ts (values and logit gradients)', () => {
    const z = tf.tensor2d([[0.3, -1.2, 2.5, 0.1, 1.9], [4, 1, -2, 3.5, 0.2], [-0.5, 0.7, 0.6, -0.1, 2.2]]);
    const y = tf.tensor1d([2, 4, 1], 'int32');
    const t = tf.tensor1d([4, 0, 2], 'int32');
    for (const name of ['ce', 'dlr', 'cw', 'ce-targeted', 'dlr-targeted', 'cw-targeted'] as const) {
      const [value, grad] = tf.tidy(() => {
        const g = tf.grad((zz: tf.Tensor) => tf.sum(attackLoss(name, zz as tf.Tensor2D, y, t)))(z);
        return [attackLoss(name, z, y, t).arraySync(), g.arraySync() as number[][]];
      });
      const rows = z.arraySync();
      rows.forEach((row, i) => {
        const r = lossAndLogitGrad64(name, row, y.arraySync()[i], t.arraySync()[i]);
        expect(r.loss, `${name} loss ${i}`).toBeCloseTo(value[i], 5);
        Array.from(r.grad).forEach((g, j) => expect(g, `${name} grad ${i},${j}`).toBeCloseTo(grad[i][j], 5));
      });
    }
  });
});

describe('APGD on the adversarially trained reference CNN', () => {
  let ck: LoadedCheckpoint;
  let x: tf.Tensor4D;
  let y: tf.Tensor1D;
  let n: number;
  const victim = (model?: CNNF): Victim => ({ model: model ?? ck.model, mode: 'first', cycles: 0, readout: 'last' });
  const seeds = (start: number) => {
    let s = start;
    return { nextSeed: () => s++ };
  };
  const correct = (v: Victim, a: tf.Tensor4D): Uint8Array => {
    const p = tf.tidy(() => tf.argMax(predictLogits(v, a), 1)).dataSync();
    const l = y.dataSync();
    return Uint8Array.from(p, (c, i) => (c === l[i] ? 1 : 0));
  };
  const count = (a: Uint8Array) => a.reduce((s, c) => s + c, 0);
  /** The model, counting the batch size of every forward pass. */
  const spy = (sizes: number[]): CNNF =>
    new Proxy(ck.model, {
      get(target, prop, recv) {
        if (prop === 'run') return (xx: tf.Tensor, o?: object) => (sizes.push(xx.shape[0]), target.run(xx, o));
        return Reflect.get(target, prop, recv) as unknown;
      },
    });

  beforeAll(async () => {
    await useBackend('wasm', { quiet: true });
    ck = await loadCheckpoint(referenceModel('cnn-adv'));
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:200' });
    n = ds.test.labels.length;
    x = tf.tensor4d(ds.test.images.subarray(0, n * IMAGE_PIXELS), [n, 28, 28, 1]);
    y = tf.tensor1d(ds.test.labels.subarray(0, n), 'int32');
  });

  afterAll(() => {
    x?.dispose();
    y?.dispose();
  });

  it('stays inside the eps ball (Linf and L2) and the [-1, 1] box, and frees its tensors', async () => {
    const xs = tf.slice(x, 0, 8);
    const ys = tf.slice(y, 0, 8);
    const before = tf.memory().numTensors;
    for (const [norm, eps] of [['linf', 0.2], ['l2', 2]] as const) {
      const init = new APGD({ norm }).startPoint(xs, eps, seeds(7));
      const r = await apgdSingleRun(victim(), xs, ys, { eps, norm, loss: 'ce', iterations: 6, rho: 0.75, init });
      for (const out of [init, r.xBest, r.xBestAdv]) {
        const d = tf.tidy(() => tf.sub(out, xs));
        const v = out.dataSync();
        expect(Math.min(...v)).toBeGreaterThanOrEqual(-1);
        expect(Math.max(...v)).toBeLessThanOrEqual(1);
        const norms = tf.tidy(() => (norm === 'linf' ? tf.max(tf.abs(d), [1, 2, 3]) : tf.sqrt(tf.sum(tf.square(d), [1, 2, 3]))));
        const per = norms.dataSync();
        norms.dispose();
        expect(Math.max(...per), `${norm}`).toBeLessThanOrEqual(eps * (1 + 1e-5));
        // the attack does use the radius (a step of 2 eps, then projected)
        expect(Math.max(...per), `${norm}`).toBeGreaterThan(eps * 0.5);
        d.dispose();
      }
      tf.dispose([init, r.xBest, r.xBestAdv, r.lossBest, r.robust]);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([xs, ys]);
  });

  it("runs restarts only on still-robust examples and keeps each example's first adversarial point (AutoAttack's perturb)", async () => {
    const xs = tf.slice(x, 0, 24);
    const ys = tf.slice(y, 0, 24);
    const yv = ys;
    const v = victim();
    const cleanOk = (() => {
      const p = tf.tidy(() => tf.argMax(predictLogits(v, xs), 1)).dataSync();
      const l = yv.dataSync();
      return Uint8Array.from(p, (c, i) => (c === l[i] ? 1 : 0));
    })();
    const one = await new APGD({ iterations: 5, restarts: 1 }).perturb(v, xs, ys, 0.15, seeds(100));
    await tick();
    const sizes: number[] = [];
    const three = await new APGD({ iterations: 5, restarts: 3 }).perturb(victim(spy(sizes)), xs, ys, 0.15, seeds(100));
    const okAfterOne = (() => {
      const p = tf.tidy(() => tf.argMax(predictLogits(v, one), 1)).dataSync();
      const l = yv.dataSync();
      return Uint8Array.from(p, (c, i) => (c === l[i] ? 1 : 0));
    })();
    // forward passes: the clean check (24), then 6 per restart (start + 5 iterations) over the robust examples
    const runs = [sizes.slice(1, 7), sizes.slice(7, 13), sizes.slice(13, 19)];
    expect(sizes[0]).toBe(24);
    expect(runs[0]).toEqual(Array(6).fill(count(cleanOk)));
    expect(runs[1]).toEqual(Array(6).fill(count(okAfterOne)));
    expect(count(okAfterOne)).toBeLessThan(count(cleanOk));
    expect(runs[2].every((s) => s <= runs[1][0])).toBe(true);
    // first restart identical (same seeds), so examples it fooled keep exactly that point;
    // examples misclassified at the clean point are returned unchanged
    const a1 = one.dataSync();
    const a3 = three.dataSync();
    const xv = xs.dataSync();
    const per = IMAGE_PIXELS;
    for (let i = 0; i < 24; i++) {
      const seg = (a: ArrayLike<number>) => Array.from(a).slice(i * per, (i + 1) * per);
      if (!cleanOk[i]) expect(seg(a3), `example ${i}`).toEqual(seg(xv));
      else if (!okAfterOne[i]) expect(seg(a3), `example ${i}`).toEqual(seg(a1));
    }
    tf.dispose([xs, ys, one, three]);
  });

  it('APGD-T attacks the 2nd, 3rd, ... most likely classes at the clean point, one run per target class', async () => {
    const xs = tf.slice(x, 0, 12);
    const ys = tf.slice(y, 0, 12);
    const v = victim();
    const logits = tf.tidy(() => predictLogits(v, xs)).arraySync();
    for (const rank of [2, 3, 5]) {
      const t = APGD.targetsAt(v, xs, rank).arraySync();
      logits.forEach((row, i) => {
        const order = row.map((_, j) => j).sort((a, b) => row[b] - row[a]);
        expect(t[i], `example ${i} rank ${rank}`).toBe(order[rank - 1]);
      });
    }
    // one target class: perturb == one single run at the runner-up class from the same start point
    const eps = 0.15;
    const atk = new APGD({ loss: 'dlr-targeted', iterations: 5, nTargetClasses: 1 });
    const out = await atk.perturb(v, xs, ys, eps, seeds(5));
    await tick();
    const ok = correct(v, xs);
    const idx = tf.tensor1d(Array.from(ok.keys()).filter((i) => ok[i]), 'int32');
    const xr = tf.gather(xs, idx) as tf.Tensor4D;
    const yr = tf.gather(ys, idx) as tf.Tensor1D;
    const init = atk.startPoint(xr, eps, seeds(5));
    const r = await apgdSingleRun(v, xr, yr, { eps, norm: 'linf', loss: 'dlr-targeted', iterations: 5, rho: 0.75, init, targets: APGD.targetsAt(v, xr, 2) });
    const robust = r.robust.dataSync();
    const adv = r.xBestAdv.dataSync();
    const o = out.dataSync();
    const rows = idx.dataSync();
    let fooled = 0;
    rows.forEach((i, j) => {
      const want = robust[j] ? Array.from(xs.dataSync().slice(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS)) : Array.from(adv.slice(j * IMAGE_PIXELS, (j + 1) * IMAGE_PIXELS));
      if (!robust[j]) fooled++;
      expect(Array.from(o.slice(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS)), `example ${i}`).toEqual(want);
    });
    expect(fooled).toBeGreaterThan(0);
    // more target classes run more attacks over the still-robust examples: never fewer fooled
    await tick();
    const out3 = await new APGD({ loss: 'dlr-targeted', iterations: 5, nTargetClasses: 3 }).perturb(v, xs, ys, eps, seeds(5));
    expect(count(correct(v, out3))).toBeLessThanOrEqual(count(correct(v, out)));
    await expect(new APGD({ loss: 'dlr-targeted', nTargetClasses: 10 }).perturb(v, xs, ys, eps, seeds(1))).rejects.toThrow(/target classes/);
    tf.dispose([xs, ys, out, out3, idx, xr, yr, init, r.xBest, r.xBestAdv, r.lossBest, r.robust]);
  });

  it('APGD-CE (20 iterations) is at least as strong as PGD-7 at eps 0.2 Linf on 50 test images', async () => {
    // measured on wasm: clean 44/50, PGD-7 (step 2.5 eps / 7, random start) 36, APGD-CE 20 iterations 35
    const v = victim();
    expect(count(correct(v, x))).toBe(44);
    const pgd = await new PGD({ steps: 7 }).perturb(v, x, y, 0.2, seeds(1));
    await tick();
    const apgd = await new APGD({ iterations: 20 }).perturb(v, x, y, 0.2, seeds(1));
    const accPgd = count(correct(v, pgd));
    const accApgd = count(correct(v, apgd));
    expect(accPgd).toBeGreaterThanOrEqual(35); // 36 measured, 1 image of margin for the random start
    expect(accPgd).toBeLessThanOrEqual(37);
    expect(accApgd).toBeLessThanOrEqual(accPgd);
    expect(accApgd).toBeGreaterThanOrEqual(33); // 35 measured; a far stronger result would be suspicious
    tf.dispose([pgd, apgd]);
  });
});
