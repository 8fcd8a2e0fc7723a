/**
 * FAB-T (src/attacks/fab.ts) against AutoAttack's code (fra31/auto-attack, autoattack/fab_base.py,
 * fab_projections.py): the golden fixture (AutoAttack's own float64 attack_single_run, targeted, first
 * restart, on the ind-2 fixture model, made by fixtures/make_fab_fixture.py), the projections'
 * defining properties, AutoAttack's `perturb` rules (targets = 2nd, 3rd, ... most likely class, only
 * still-robust examples, within eps), the autoattack ensemble's FAB-T stage, a behavioural check on a
 * trained model, and bad parameters.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { AutoAttack, FAB, fabSingleRun, predictLogits, projectionL2, projectionLinf, type Victim } from '../src/attacks/index.js';
import { parseSuite, relativeError } from '../src/index.js';
import { IMAGE_PIXELS, loadDataset } from '../src/data/index.js';
import { UsageError } from '../src/errors.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { fromPyTorch, inferPyTorchWidths, nchwToNhwc } from '../src/io/pytorch.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { makeConfig } from '../src/models/arch.js';
import { CNNF } from '../src/models/cnnf.js';
import { cnnf, oneLineError, referenceModel, ROOT } from './helpers/cli.js';

const FIXTURE = join(ROOT, 'fixtures', 'autoattack-fab-ind2-c2.safetensors');
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Per-example rows float32 does not reproduce, measured on wasm (2026-11-27): Linf example 3 (our
 * distance 0.99 against the fixture's 0.63) and L2 example 1 (relative distance error 0.28). AutoAttack's
 * own code run by PyTorch in float32 (`make_fab_fixture.py --float32`) leaves the float64 trajectory on
 * exactly these two examples (Linf example 3: 0.99, the same point as ours; L2 example 1: 8.86 instead
 * of 10.50) and matches the other six within 1e-6: float32 rounding, not the algorithm. Our other six
 * examples match within 4e-6.
 */
const KNOWN_GAPS = new Set<string>(['attack.fab.Linf.adv[3]', 'attack.fab.Linf.distance[3]', 'attack.fab.L2.adv[1]', 'attack.fab.L2.distance[1]']);

describe('conformance with AutoAttack FAB-T golden tensors (fixture autoattack-fab-ind2-c2)', () => {
  it('reproduces AutoAttack\'s float64 attack_single_run (100 iterations, Linf and L2) within 1e-5 relative per example, except the known gaps', { timeout: 900_000 }, async () => {
    await useBackend('wasm', { quiet: true });
    const file = readSafetensors(FIXTURE);
    const T = file.tensors;
    const meta = file.metadata;
    const need = (k: string) => {
      const t = T.get(k);
      if (!t) throw new Error(`fixture lacks ${k}`);
      return t;
    };
    const widths = inferPyTorchWidths(T, 'fmnist', 'param.', FIXTURE);
    const cfg = makeConfig({ arch: 'fmnist', fc: [Number(meta.fc1), Number(meta.fc2)], numClasses: widths.numClasses, ind: Number(meta.ind), cycles: Number(meta.cycles), resParam: Number(meta.res_param) });
    const model = CNNF.fromArrays(cfg, fromPyTorch(T, cfg, FIXTURE, 'param.'));
    const v: Victim = { model, mode: 'e2e', cycles: cfg.cycles, readout: 'last' };
    const xa = nchwToNhwc(need('input.x'));
    const x = tf.tensor4d(xa.data, xa.shape as [number, number, number, number]);
    const n = x.shape[0];
    const per = x.size / n;
    const y = Int32Array.from(need('input.fab.y').data);
    const rows = new Map<string, number>();
    const iterations = Number(meta.fab_iters);
    expect(iterations).toBe(100);
    for (const [key, norm, rank] of [['Linf', 'linf', 2], ['L2', 'l2', 3]] as const) {
      const targets = Int32Array.from(need(`input.fab.${key}.target`).data);
      // AutoAttack's target rule: the rank-th most likely class at x
      expect(Array.from(await FAB.targetsAt(v, x, rank))).toEqual(Array.from(targets));
      const t0 = Date.now();
      // one example at a time (examples are independent), so vitest's worker RPC gets a turn in between
      const r = { adv: new Float32Array(n * per), distance: new Float64Array(n), success: new Uint8Array(n), attacked: new Uint8Array(n) };
      for (let i = 0; i < n; i++) {
        const xi = tf.slice(x, i, 1);
        const ri = await fabSingleRun(v, xi, y.subarray(i, i + 1), { norm, iterations, alphaMax: Number(meta.fab_alpha_max), eta: Number(meta.fab_eta), beta: Number(meta.fab_beta), targets: targets.subarray(i, i + 1) });
        xi.dispose();
        r.adv.set(ri.adv, i * per);
        r.distance[i] = ri.distance[0];
        r.success[i] = ri.success[0];
        r.attacked[i] = ri.attacked[0];
        await tick();
      }
      console.log(`FAB-T ${key}: ${n} examples, ${iterations} iterations, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const refAdv = nchwToNhwc(need(`attack.fab.${key}.adv`)).data;
      const refDist = need(`attack.fab.${key}.distance`).data;
      const refOk = need(`attack.fab.${key}.success`).data;
      for (let i = 0; i < n; i++) {
        rows.set(`attack.fab.${key}.adv[${i}]`, relativeError(r.adv.subarray(i * per, (i + 1) * per), refAdv.subarray(i * per, (i + 1) * per)).rel);
        rows.set(`attack.fab.${key}.distance[${i}]`, Math.abs(r.distance[i] - refDist[i]) / refDist[i]);
        expect(r.success[i], `${key} success ${i}`).toBe(refOk[i]);
        expect(r.attacked[i]).toBe(1);
      }
    }
    console.log([...rows].map(([k, e]) => `${k} ${e.toExponential(2)}`).join('\n'));
    for (const [name, err] of rows) {
      if (KNOWN_GAPS.has(name)) expect(err, `${name} is a known gap: it now matches, move it out of KNOWN_GAPS`).toBeGreaterThan(1e-5);
      else expect(err, name).toBeLessThanOrEqual(1e-5);
    }
    for (const name of KNOWN_GAPS) expect(rows.has(name), name).toBe(true);
    x.dispose();
    model.dispose();
  });
});

describe('FAB projections (fab_projections.py)', () => {
  const rand = (() => {
    let s = 12345;
    return () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  })();
  const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((acc, v, i) => acc + v * b[i], 0);

  it('reach the hyperplane inside the [0, 1] box; without active box constraints the step is the closed-form minimal one', () => {
    for (let trial = 0; trial < 200; trial++) {
      const dim = 2 + Math.floor(rand() * 40);
      const t = Float64Array.from({ length: dim }, () => 0.3 + 0.4 * rand()); // inside the box, away from its faces
      const w = Float64Array.from({ length: dim }, () => rand() * 2 - 1);
      // a hyperplane close to t, so the box does not bind
      const gap = (rand() * 2 - 1) * 0.02;
      const b = dot(w, t) + gap;
      for (const norm of ['linf', 'l2'] as const) {
        const d = new Float64Array(dim);
        (norm === 'linf' ? projectionLinf : projectionL2)(t, w, b, d);
        const z = t.map((ti, i) => ti + d[i]);
        expect(Math.abs(dot(w, z) - b), `${norm} trial ${trial}`).toBeLessThan(1e-12);
        for (const zi of z) expect(zi).toBeGreaterThanOrEqual(0);
        for (const zi of z) expect(zi).toBeLessThanOrEqual(1);
        const l1 = w.reduce((a, v) => a + Math.abs(v), 0);
        const l2 = Math.sqrt(dot(w, w));
        const size = norm === 'linf' ? Math.max(...Array.from(d, Math.abs)) : Math.sqrt(dot(d, d));
        expect(size, `${norm} trial ${trial}`).toBeCloseTo(Math.abs(gap) / (norm === 'linf' ? l1 : l2), 12);
      }
    }
  });

  it('with the box binding: still on the hyperplane, in the box, and no larger than the unconstrained step allows', () => {
    for (let trial = 0; trial < 200; trial++) {
      const dim = 5 + Math.floor(rand() * 60);
      const t = Float64Array.from({ length: dim }, () => (rand() < 0.4 ? 0 : rand() < 0.2 ? 1 : rand()));
      const w = Float64Array.from({ length: dim }, () => (rand() < 0.1 ? 0 : rand() * 2 - 1));
      const zStar = Float64Array.from({ length: dim }, () => rand()); // a feasible point in the box
      const b = dot(w, zStar);
      for (const norm of ['linf', 'l2'] as const) {
        const d = new Float64Array(dim);
        (norm === 'linf' ? projectionLinf : projectionL2)(t, w, b, d);
        const z = t.map((ti, i) => ti + d[i]);
        expect(Math.abs(dot(w, z) - b), `${norm} trial ${trial}`).toBeLessThan(1e-9);
        for (const zi of z) expect(zi).toBeGreaterThanOrEqual(-1e-12);
        for (const zi of z) expect(zi).toBeLessThanOrEqual(1 + 1e-12);
        d.forEach((di, i) => (w[i] === 0 ? expect(di).toBe(0) : undefined));
        // minimal: no other feasible point we know is closer
        const other = zStar.map((zi, i) => zi - t[i]);
        const size = (a: ArrayLike<number>) => (norm === 'linf' ? Math.max(...Array.from(a, Math.abs)) : Math.sqrt(dot(a, a)));
        expect(size(d), `${norm} trial ${trial}`).toBeLessThanOrEqual(size(other) + 1e-9);
      }
    }
  });
});

describe('FAB-T on the adversarially trained reference CNN', () => {
  let ck: LoadedCheckpoint;
  let x: tf.Tensor4D;
  let y: tf.Tensor1D;
  const victim = (): Victim => ({ model: ck.model, mode: 'first', cycles: 0, readout: 'last' });
  const correct = (v: Victim, a: tf.Tensor4D, labels: tf.Tensor1D): Uint8Array => {
    const t = tf.tidy(() => tf.argMax(predictLogits(v, a), 1));
    const p = t.dataSync();
    t.dispose();
    const l = labels.dataSync();
    return Uint8Array.from(p, (c, i) => (c === l[i] ? 1 : 0));
  };
  const count = (a: Uint8Array) => a.reduce((s, c) => s + c, 0);

  beforeAll(async () => {
    await useBackend('wasm', { quiet: true });
    ck = await loadCheckpoint(referenceModel('cnn-adv'));
    const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'stride:500' });
    const n = ds.test.labels.length;
    x = tf.tensor4d(ds.test.images.subarray(0, n * IMAGE_PIXELS), [n, 28, 28, 1]);
    y = tf.tensor1d(ds.test.labels.subarray(0, n), 'int32');
  });

  afterAll(() => {
    x?.dispose();
    y?.dispose();
  });

  it('eps 0.2 Linf on 10 test images (runner-up target): robust accuracy <= clean, inside the ball and the box, small perturbations (minimum norm)', async () => {
    const v = victim();
    const eps = 0.2;
    expect(x.shape[0]).toBe(20);
    // the last 10 of the 20 images (measured on wasm: all 10 correct, 4 broken, median distance 0.136;
    // the first 10 have 1 broken): FAB-T's 100 iterations are most of this file's time after the fixture
    const [x10, y10] = [tf.slice(x, 10, 10), tf.slice(y, 10, 10)];
    const clean = correct(v, x10, y10);
    const t0 = Date.now();
    // one target class (the runner-up) keeps the test short
    // in chunks of 5 images (the examples are independent and the first restart has no random draw), so
    // vitest's worker RPC gets a turn in between
    const parts: tf.Tensor4D[] = [];
    for (let i = 10; i < 20; i += 5) {
      const [xs, ys] = [tf.slice(x, i, 5), tf.slice(y, i, 5)];
      parts.push(await new FAB({ iterations: 100, nTargetClasses: 1 }).perturb(v, xs, ys, eps, 1));
      tf.dispose([xs, ys]);
      await tick();
    }
    const adv = tf.concat(parts);
    tf.dispose(parts);
    const seconds = (Date.now() - t0) / 1000;
    const after = correct(v, adv, y10);
    const xv = x10.dataSync();
    const av = adv.dataSync();
    const dists: number[] = [];
    for (let i = 0; i < 10; i++) {
      let m = 0;
      for (let q = i * IMAGE_PIXELS; q < (i + 1) * IMAGE_PIXELS; q++) {
        expect(av[q]).toBeGreaterThanOrEqual(-1);
        expect(av[q]).toBeLessThanOrEqual(1);
        m = Math.max(m, Math.abs(av[q] - xv[q]));
      }
      expect(m).toBeLessThanOrEqual(eps * (1 + 1e-6));
      if (clean[i] && !after[i]) dists.push(m);
      else expect(m, `unbroken example ${i} is returned unchanged`).toBe(0);
      if (!clean[i]) expect(after[i]).toBe(0);
    }
    dists.sort((a, b) => a - b);
    const median = dists[Math.floor(dists.length / 2)];
    console.log(`FAB-T eps 0.2 Linf, 10 images: clean ${count(clean)}, robust ${count(after)}, broken ${dists.length}, median Linf distance of broken ${median?.toFixed(4)}, ${seconds.toFixed(1)} s`);
    expect(count(after)).toBeLessThan(count(clean));
    expect(dists.length).toBeGreaterThan(0);
    // a minimum-norm attack: broken examples are broken well inside the ball (APGD ends at ~eps in Linf)
    expect(median).toBeLessThan(0.9 * eps);
    tf.dispose([adv, x10, y10]);
  });

  it("AutoAttack's perturb: target classes in order, each run only over still-robust examples; a run's point counts only within eps", async () => {
    const v = victim();
    const before = tf.memory().numTensors;
    const xs = tf.slice(x, 0, 10);
    const ys = tf.slice(y, 0, 10);
    const ok = correct(v, xs, ys);
    // one target class == one single run at the runner-up, filtered by the eps test
    const eps = 0.1;
    const out = await new FAB({ iterations: 20, nTargetClasses: 1 }).perturb(v, xs, ys, eps, 3);
    await tick();
    const rowsIdx = Array.from(ok.keys()).filter((i) => ok[i]);
    const xr = tf.tidy(() => tf.gather(xs, tf.tensor1d(rowsIdx, 'int32')) as tf.Tensor4D);
    const yr = Int32Array.from(rowsIdx, (i) => ys.dataSync()[i]);
    const run = await fabSingleRun(v, xr, yr, { norm: 'linf', iterations: 20, alphaMax: 0.1, eta: 1.05, beta: 0.9, targets: await FAB.targetsAt(v, xr, 2) });
    const o = out.dataSync();
    const xsv = xs.dataSync();
    let within = 0;
    let beyond = 0;
    rowsIdx.forEach((i, j) => {
      const mine = Array.from(o.slice(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS));
      if (run.success[j] && run.distance[j] <= eps) {
        within++;
        expect(mine, `example ${i}`).toEqual(Array.from(run.adv.slice(j * IMAGE_PIXELS, (j + 1) * IMAGE_PIXELS)));
      } else {
        if (run.success[j]) beyond++;
        expect(mine, `example ${i}`).toEqual(Array.from(xsv.slice(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS)));
      }
    });
    console.log(`FAB-T 1 target, eps 0.1: ${within} broken within eps, ${beyond} found adversarial beyond eps (kept clean)`);
    expect(within).toBeGreaterThan(0);
    expect(beyond).toBeGreaterThan(0);
    await expect(new FAB({ nTargetClasses: 10 }).perturb(v, xs, ys, eps, 1)).rejects.toThrow(/target classes/);
    tf.dispose([xs, ys, out, xr]);
    expect(tf.memory().numTensors, 'FAB frees its tensors').toBe(before);
  });

  it('restarts after the first start from a seeded random point at radius eps / 2 (AutoAttack), only over still-robust examples', async () => {
    const v = victim();
    const xs = tf.slice(x, 0, 8);
    const ys = tf.slice(y, 0, 8);
    const eps = 0.15;
    const start = await FAB.randomStart('linf', xs, eps, 7);
    const xv = xs.dataSync();
    let far = 0;
    start.forEach((s, q) => {
      const d = Math.abs(s - xv[q]);
      expect(d).toBeLessThanOrEqual(eps / 2 + 1e-6);
      far = Math.max(far, d);
      expect(s).toBeGreaterThanOrEqual(-1);
      expect(s).toBeLessThanOrEqual(1);
    });
    expect(far).toBeGreaterThan(eps / 2 - 1e-6); // on the sphere of radius eps / 2 (Linf)
    const l2 = await FAB.randomStart('l2', xs, 1, 7);
    for (let i = 0; i < 8; i++) {
      let ss = 0;
      for (let q = i * IMAGE_PIXELS; q < (i + 1) * IMAGE_PIXELS; q++) ss += (l2[q] - xv[q]) ** 2;
      expect(Math.sqrt(ss)).toBeLessThanOrEqual(0.5 + 1e-5); // radius eps / 2 before clipping to the box
    }
    const a = await new FAB({ iterations: 5, nTargetClasses: 1, restarts: 3 }).perturb(v, xs, ys, eps, 5);
    await tick();
    const b = await new FAB({ iterations: 5, nTargetClasses: 1, restarts: 3 }).perturb(v, xs, ys, eps, 5);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync())); // seeded
    const one = await new FAB({ iterations: 5, nTargetClasses: 1, restarts: 1 }).perturb(v, xs, ys, eps, 5);
    const ok3 = correct(v, a, ys);
    const ok1 = correct(v, one, ys);
    for (let i = 0; i < 8; i++) if (!ok1[i]) expect(ok3[i], `example ${i}: broken by the first restart, stays broken`).toBe(0);
    expect(count(ok3)).toBeLessThanOrEqual(count(ok1));
    tf.dispose([xs, ys, a, b, one]);
  });

  it('is a stage of the autoattack ensemble in AutoAttack\'s order (APGD-CE, APGD-T, FAB-T, Square), and runs alone', async () => {
    expect(new AutoAttack().stageLabels(0)).toEqual(['apgd-ce:first', 'apgd-t:first', 'fab-t:first', 'square']);
    expect(new AutoAttack().stageLabels(1)).toEqual(['apgd-ce:first', 'apgd-ce:e2e', 'apgd-t:first', 'apgd-t:e2e', 'fab-t:first', 'fab-t:e2e', 'square']);
    expect(new AutoAttack().settings().version).toBe('standard');
    const [spec] = parseSuite({ name: 't', attacks: [{ method: 'autoattack', eps: [0.2], stages: 'fab-t', iterations: 10, nTargetClasses: 2 }] }, 's.json').attacks;
    const v = victim();
    const xs = tf.slice(x, 0, 8);
    const ys = tf.slice(y, 0, 8);
    const aa = new AutoAttack({ stages: ['fab-t'], iterations: 10, nTargetClasses: 2 });
    expect(aa.settings().version).toBe('custom');
    expect(spec.params.stages).toBe('fab-t');
    const r = await aa.runStaged(v, xs, ys, 0.2, 1);
    await tick();
    const direct = await new FAB({ iterations: 10, nTargetClasses: 2 }).perturb(v, xs, ys, 0.2, 1);
    const broken = Array.from(r.brokenBy).filter((b) => b === 0).length;
    expect(broken).toBeGreaterThan(0);
    expect(Array.from(r.adv.dataSync())).toEqual(Array.from(direct.dataSync()));
    tf.dispose([xs, ys, r.adv, direct]);
  });
});

describe('FAB-T parameters', () => {
  const bad = (entry: Record<string, unknown>, re: RegExp): void => {
    let err: unknown;
    try {
      parseSuite({ name: 't', attacks: [{ method: 'fab', eps: [0.2], ...entry }] }, 's.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).not.toContain('\n');
  };

  it('defaults are AutoAttack\'s; bad values are one-line UsageErrors naming the field', () => {
    const [spec] = parseSuite({ name: 't', attacks: [{ method: 'fab', eps: [0.2] }] }, 's.json').attacks;
    expect(spec.name).toBe('fab-t');
    expect(spec.params).toEqual({ iterations: 100, restarts: 1, nTargetClasses: 9, alphaMax: 0.1, eta: 1.05, beta: 0.9 });
    bad({ alphaMax: 1.5 }, /attacks\[0\]\.alphaMax must be <= 1, got 1.5/);
    bad({ eta: 0.5 }, /attacks\[0\]\.eta must be >= 1, got 0.5/);
    bad({ beta: 0 }, /attacks\[0\]\.beta must be > 0, got 0/);
    bad({ beta: 'x' }, /attacks\[0\]\.beta must be a finite number/);
    bad({ iterations: 0 }, /attacks\[0\]\.iterations must be >= 1/);
    bad({ nTargetClasses: 2.5 }, /attacks\[0\]\.nTargetClasses must be an integer/);
    bad({ norm: 'l1' }, /attacks\[0\]\.norm must be one of linf, l2/);
    bad({ targeted: true }, /targeted does not apply to fab/);
  });

  it('cnnf attack --method fab with a bad --eta or --alpha-max: exit 2 with one line', async () => {
    const r = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'fab', '--eps', '0.2', '--eta', '0.5', '--test-subset', 'stride:1000']);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/--eta must be >= 1, got 0.5/);
    const a = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'fab', '--eps', '0.2', '--alpha-max', 'lots', '--test-subset', 'stride:1000']);
    expect(a.code).toBe(2);
    expect(oneLineError(a)).toMatch(/--alpha-max must be a number/);
  });
});
