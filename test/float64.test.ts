import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { attackLogits, predictLogits, type GradientMode } from '../src/attacks/base.js';
import { fromPyTorch, inferPyTorchWidths, nchwToNhwc } from '../src/io/pytorch.js';
import { readSafetensors, type NamedTensor } from '../src/io/safetensors.js';
import { makeConfig } from '../src/models/arch.js';
import { CNNF, type Readout } from '../src/models/cnnf.js';
import { CNNF64, crossEntropyHead } from '../src/models/float64.js';
import { crossEntropy } from '../src/models/loss.js';
import { relativeError } from '../src/eval/conformance.js';
import { mulberry32 } from '../src/data/rng.js';
import { ROOT } from './helpers/cli.js';
import { tf, wasm } from './helpers/tf.js';

/**
 * A macrotask turn between long synchronous float64 computations: vitest's worker RPC times out when
 * the event loop stays blocked for a minute, which a loaded machine turns a few seconds of CPU into.
 */
const tick = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/** max |ours - ref| / max |ref| (conformance's measure), for arrays of the same length */
function relError(ours: ArrayLike<number>, ref: ArrayLike<number>): number {
  expect(ours.length).toBe(ref.length);
  return relativeError(ours, ref).rel;
}

/** A fixture's tensors and its ind-2, 2-cycle model (param.* weights) as CNNF64. */
function fixtureModel(name: string) {
  const path = join(ROOT, 'fixtures', name);
  const T = readSafetensors(path).tensors;
  const need = (k: string): NamedTensor => {
    const t = T.get(k);
    if (!t) throw new Error(`missing ${k}`);
    return t;
  };
  const widths = inferPyTorchWidths(T, 'fmnist', 'param.', path);
  const cfg = makeConfig({ arch: 'fmnist', fc: widths.fc, numClasses: widths.numClasses, ind: 2, cycles: 2, resParam: 0.1 });
  return { T, need, cfg, model: CNNF64.fromArrays(cfg, fromPyTorch(T, cfg, path, 'param.')) };
}

const nhwc = (t: NamedTensor): Float64Array => Float64Array.from(nchwToNhwc({ shape: t.shape, data: t.data }).data);

describe('CNNF64 against the reference fixture (paper code, float64)', () => {
  const { need, cfg, model } = fixtureModel('cnnf-ind2-c2.safetensors');
  const x = nhwc(need('input.x'));
  const y = Array.from(need('input.y').data);
  const n = y.length;
  const ce = crossEntropyHead(y, cfg.numClasses);

  it('matches eval.{first,last,average}.logits and grad.input.{e2e,first} to float32 storage rounding', () => {
    expect(cfg.fc).toEqual([64, 32]);
    const e2eLast = model.evaluate(x, n, 'e2e', 'last', ce);
    const e2eAvg = model.evaluate(x, n, 'e2e', 'average', ce);
    const first = model.evaluate(x, n, 'first', 'last', ce);
    const errs = {
      first: relError(first.lossLogits, need('eval.first.logits').data),
      last: relError(e2eLast.logits, need('eval.last.logits').data),
      lastViaFirst: relError(first.logits, need('eval.last.logits').data),
      average: relError(e2eAvg.logits, need('eval.average.logits').data),
      gradE2e: relError(e2eLast.grad, nhwc(need('grad.input.e2e'))),
      gradFirst: relError(first.grad, nhwc(need('grad.input.first'))),
      noisy: relError(model.predict(nhwc(need('input.x_noisy')), n, 'last').logits, need('eval.last.logits_noisy').data),
      cycle1: relError(e2eLast.passes[1], need('eval.cycle1.logits').data),
      cycle2: relError(e2eLast.passes[2], need('eval.cycle2.logits').data),
    };
    for (const [k, v] of Object.entries(errs)) expect(v, k).toBeLessThan(1e-6);
    expect(e2eLast.passes.length).toBe(3);
    expect(Array.from(e2eLast.passes[0])).toEqual(Array.from(first.lossLogits));
    // the readout and the loss logits are the same array values for e2e
    expect(Array.from(e2eLast.lossLogits)).toEqual(Array.from(e2eLast.logits));
    expect(Array.from(e2eAvg.lossLogits)).toEqual(Array.from(e2eAvg.logits));
    // the gradient is not trivially small: the fixture's e2e and first gradients differ
    expect(relError(e2eLast.grad, first.grad)).toBeGreaterThan(1e-2);
    console.log('fixture rel errors', errs);
  });

  it('is deterministic and float64: a central finite difference along a random direction matches the gradient to < 1e-6', async () => {
    const rand = mulberry32(7);
    // The fixture images have exactly uniform backgrounds, so max-pool windows hold tied values: there the
    // first pass is not differentiable (one-sided) and the e2e loss even jumps (the argmax decides where
    // feedback unpools to, hence the next resReLU masks). A little noise moves the point off those ties.
    const x0 = x.map((v) => 0.9 * v + 0.1 * (rand() * 2 - 1));
    const dir = Float64Array.from({ length: x.length }, () => rand() * 2 - 1);
    // a smooth scalar head: a fixed linear combination of the logits (no softmax, so the check is about the model)
    const c = Float64Array.from({ length: n * 10 }, () => rand() * 2 - 1);
    const head = () => c;
    const f = (xx: Float64Array, mode: GradientMode): number => {
      const z = model.evaluate(xx, n, mode, 'average', head).lossLogits;
      let s = 0;
      for (let i = 0; i < z.length; i++) s += c[i] * z[i];
      return s;
    };
    for (const mode of ['e2e', 'first'] as const) {
      await tick();
      const a = model.evaluate(x0, n, mode, 'average', head);
      const b = model.evaluate(x0, n, mode, 'average', head);
      await tick();
      expect(Buffer.from(a.grad.buffer).equals(Buffer.from(b.grad.buffer))).toBe(true);
      expect(Buffer.from(a.logits.buffer).equals(Buffer.from(b.logits.buffer))).toBe(true);
      // values carry more than float32 precision
      expect(Array.from(a.grad).filter((v) => v !== 0 && Math.fround(v) !== v).length).toBeGreaterThan(a.grad.length / 2);
      let gd = 0;
      for (let i = 0; i < dir.length; i++) gd += a.grad[i] * dir[i];
      const fd = (h: number): number => {
        const xp = x0.map((v, i) => v + h * dir[i]);
        const xm = x0.map((v, i) => v - h * dir[i]);
        return (f(xp, mode) - f(xm, mode)) / (2 * h);
      };
      // steps small enough not to cross a ReLU / pooling switch (at 1e-5 some e2e runs already do)
      const errs: number[] = [];
      for (const h of [1e-6, 1e-7]) {
        errs.push(Math.abs(fd(h) - gd) / Math.abs(gd));
        await tick();
      }
      console.log(`finite difference (${mode}): directional derivative ${gd}, rel error at h = 1e-6, 1e-7: ${errs.map((e) => e.toExponential(2)).join(', ')}`);
      expect(Math.abs(gd)).toBeGreaterThan(1e-2);
      for (const e of errs) expect(e).toBeLessThan(1e-6);
    }
  });
});

/** AutoAttack's per-example losses on float64 logits [k] (autopgd_base.py: CE, dlr_loss, dlr_loss_targeted). */
function attackLoss(loss: string, z: Float64Array, y: number, target: number): number {
  const sorted = Array.from(z).sort((a, b) => b - a);
  if (loss === 'ce') {
    const m = sorted[0];
    let s = 0;
    for (const v of z) s += Math.exp(v - m);
    return -(z[y] - m - Math.log(s));
  }
  if (loss === 'dlr') {
    const top = Math.max(...z);
    const other = z.indexOf(top) === y ? sorted[1] : sorted[0]; // the runner-up when y is the argmax
    return -(z[y] - other) / (sorted[0] - sorted[2] + 1e-12);
  }
  return -(z[y] - z[target]) / (sorted[0] - 0.5 * (sorted[2] + sorted[3]) + 1e-12);
}

// On wasm, cnnf's float32 grad.input.e2e of the ind-1 fixture needs one resReLU tie decided against float32
// (test/conformance.test.ts); in float64 the default mask rule gives the reference directly.
describe('CNNF64 against the float64 PyTorch-port fixtures (ind 1 and ind 0)', () => {
  for (const name of ['torchport-ind1-c1-r0.3', 'torchport-ind0-c3-r0']) {
    it(`${name}: every pass's logits, both readouts and both input gradients, without any tie search`, () => {
      const path = join(ROOT, 'fixtures', `${name}.safetensors`);
      const { tensors: T, metadata: meta } = readSafetensors(path);
      const need = (k: string): NamedTensor => {
        const t = T.get(k);
        if (!t) throw new Error(`missing ${k}`);
        return t;
      };
      const widths = inferPyTorchWidths(T, 'fmnist', 'param.', path);
      const cfg = makeConfig({ arch: 'fmnist', fc: widths.fc, numClasses: widths.numClasses, ind: Number(meta.ind), cycles: Number(meta.cycles), resParam: Number(meta.res_param) });
      const model = CNNF64.fromArrays(cfg, fromPyTorch(T, cfg, path, 'param.'));
      const x = nhwc(need('input.x'));
      const y = Array.from(need('input.y').data);
      const ce = crossEntropyHead(y, cfg.numClasses);
      const e2e = model.evaluate(x, y.length, 'e2e', 'last', ce);
      const first = model.evaluate(x, y.length, 'first', 'last', ce);
      const errs: Record<string, number> = {
        first: relError(first.lossLogits, need('eval.first.logits').data),
        last: relError(e2e.logits, need('eval.last.logits').data),
        average: relError(model.predict(x, y.length, 'average').logits, need('eval.average.logits').data),
        gradE2e: relError(e2e.grad, nhwc(need('grad.input.e2e'))),
        gradFirst: relError(first.grad, nhwc(need('grad.input.first'))),
      };
      for (let c = 1; c <= cfg.cycles; c++) errs[`cycle${c}`] = relError(e2e.passes[c], need(`eval.cycle${c}.logits`).data);
      expect(Object.keys(errs).length).toBe(5 + cfg.cycles);
      for (const [k, v] of Object.entries(errs)) expect(v, k).toBeLessThan(1e-6);
      console.log(`${name} rel errors`, errs);
    });
  }
});

describe('CNNF64 on the AutoAttack APGD fixture (float64 AutoAttack on the same model)', () => {
  const { need, model } = fixtureModel('autoattack-apgd-ind2-c2.safetensors');
  const y = Array.from(need('input.y').data);
  const n = y.length;

  it('recomputes loss_best at x_best and the robust flags at x_best_adv for every loss and norm', () => {
    let worst = 0;
    let checked = 0;
    for (const norm of ['Linf', 'L2']) {
      const target = Array.from(need(`input.apgd.${norm}.target`).data);
      for (const loss of ['ce', 'dlr', 'dlr-targeted']) {
        const p = `attack.apgd.${loss}.${norm}`;
        const best = model.predict(nhwc(need(`${p}.x_best`)), n, 'last').logits;
        const adv = model.predict(nhwc(need(`${p}.x_best_adv`)), n, 'last').logits;
        const ref = need(`${p}.loss_best`).data;
        const robust = need(`${p}.robust`).data;
        const scale = Math.max(...Array.from(ref, Math.abs));
        for (let i = 0; i < n; i++) {
          const z = best.subarray(i * 10, (i + 1) * 10);
          const err = Math.abs(attackLoss(loss, z, y[i], target[i]) - ref[i]) / scale;
          expect(err, `${p} example ${i}`).toBeLessThan(1e-5);
          worst = Math.max(worst, err);
          const za = Array.from(adv.subarray(i * 10, (i + 1) * 10));
          expect(za.indexOf(Math.max(...za)) === y[i] ? 1 : 0, `${p}.robust example ${i}`).toBe(robust[i]);
          checked++;
        }
      }
    }
    expect(checked).toBe(24);
    console.log(`APGD fixture: loss_best recomputed at x_best (float32-stored points), worst error ${worst.toExponential(2)} of max |loss_best|`);
  });
});

describe('CNNF64 against the tfjs model (wasm, float32)', () => {
  beforeAll(wasm);

  const N = 2;
  const inputs = (seed: number, per: number): Float32Array => {
    const rand = mulberry32(seed);
    return Float32Array.from({ length: N * per }, () => rand() * 2 - 1);
  };

  /** tfjs: logits (predict), loss logits and the summed-CE gradient as attacks take them. */
  const tfjsEval = (model: CNNF, x: Float32Array, labels: number[], mode: GradientMode, readout: Readout) =>
    tf.tidy(() => {
      const { height: h, width: w, inChannels: c } = model.spec;
      const xt = tf.tensor4d(x, [N, h, w, c]);
      const yt = tf.tensor1d(labels, 'int32');
      const v = { model, mode, cycles: model.config.cycles, readout };
      const g = tf.grad((xx: tf.Tensor) => crossEntropy(attackLogits(v, xx), yt, 'sum'))(xt);
      return { logits: predictLogits(v, xt).dataSync(), lossLogits: attackLogits(v, xt).dataSync(), grad: g.dataSync() };
    });

  const cases: Array<{ arch: string; ind: number; seed: number }> = [
    { arch: 'fmnist', ind: 0, seed: 11 },
    { arch: 'fmnist', ind: 1, seed: 12 },
    { arch: 'fmnist', ind: 2, seed: 13 },
    { arch: 'small', ind: 1, seed: 14 },
  ];
  for (const { arch, ind, seed } of cases) {
    it(`${arch} ind ${ind}: cycles 0/1/2, readout last/average, modes e2e/first agree within 1e-5`, async () => {
      const base = CNNF.init({ arch, fc: arch === 'fmnist' ? [64, 32] : [32], ind, cycles: 0, resParam: 0.2 }, seed);
      // non-zero biases, so the Bias layers are exercised
      for (const [name, p] of base.params) if (name.endsWith('bias.bias')) (p as tf.Variable).assign(tf.randomUniform(p.shape, -0.3, 0.3, 'float32', seed));
      const m64 = await CNNF64.fromModel(base);
      const per = base.spec.height * base.spec.width * base.spec.inChannels;
      const x = inputs(seed, per);
      const labels = [3, 7];
      const worst = { logits: 0, grad: 0 };
      try {
        for (const cycles of [0, 1, 2]) {
          const model = base.withConfig({ cycles });
          const f64 = m64.withConfig({ cycles });
          for (const readout of ['last', 'average'] as const) {
            for (const mode of ['e2e', 'first'] as const) {
              if (cycles === 0 && (readout === 'average' || mode === 'first')) continue;
              await tick();
              const ref = tfjsEval(model, x, labels, mode, readout);
              const ours = f64.evaluate(Float64Array.from(x), N, mode, readout, crossEntropyHead(labels, 10));
              const what = `cycles ${cycles} ${readout} ${mode}`;
              const el = Math.max(relError(ours.logits, ref.logits), relError(ours.lossLogits, ref.lossLogits));
              const eg = relError(ours.grad, ref.grad);
              expect(el, `${what} logits`).toBeLessThan(1e-5);
              expect(eg, `${what} grad`).toBeLessThan(1e-5);
              worst.logits = Math.max(worst.logits, el);
              worst.grad = Math.max(worst.grad, eg);
            }
          }
        }
      } finally {
        base.dispose();
      }
      console.log(`${arch} ind ${ind}: worst rel error vs tfjs: logits ${worst.logits.toExponential(2)}, grad ${worst.grad.toExponential(2)}`);
    });
  }

  it('fromModel copies the weights exactly and keeps the configuration', async () => {
    const model = CNNF.init({ arch: 'fmnist', fc: [16, 8], ind: 1, cycles: 3, resParam: 0.4 }, 5);
    try {
      const m64 = await CNNF64.fromModel(model);
      expect(m64.config).toEqual(model.config);
      expect(m64.inputSize).toBe(784);
      const w = model.params.get('conv2.conv.weight')!.dataSync();
      const other = CNNF64.fromArrays(model.config, new Map([...model.params].map(([k, t]) => [k, t.dataSync() as Float32Array])));
      const x = inputs(1, 784);
      const a = m64.predict(Float64Array.from(x), N).logits;
      const b = other.predict(Float64Array.from(x), N).logits;
      expect(Array.from(a)).toEqual(Array.from(b));
      expect(w.length).toBe(3 * 3 * 16 * 32);
      expect(() => m64.evaluate(new Float64Array(10), 1, 'e2e', 'last', (z) => z)).toThrow(/expected n \* 784/);
    } finally {
      model.dispose();
    }
  });
});
