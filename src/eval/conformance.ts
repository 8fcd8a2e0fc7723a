/**
 * Conformance against golden tensors from the paper's reference implementation: builds the model a
 * fixture's __metadata__ describes, loads its param.* tensors through the PyTorch import path and
 * recomputes every other tensor (eval.*, grad.*, attack.*, train.*).
 */
import * as tf from '@tensorflow/tfjs-core';
import { apgdControl, apgdSingleRun, float64Ops, FGSM, lossAndLogitGrad64, PGD, type APGDLoss, type APGDNorm, type APGDSingleRunResult, type GradientMode, type Victim } from '../attacks/index.js';
import type { Readout } from '../models/cnnf.js';
import { UsageError } from '../errors.js';
import { fromPyTorch, inferPyTorchWidths, nchwToNhwc, nhwcToNchw, toPyTorch } from '../io/pytorch.js';
import { readSafetensors, type NamedTensor } from '../io/safetensors.js';
import { getArch, makeConfig } from '../models/arch.js';
import { CNNF, readoutOf } from '../models/cnnf.js';
import { CNNF64 } from '../models/float64.js';
import type { MaskRule } from '../nn/state.js';
import { crossEntropy, pairLoss } from '../models/loss.js';

export const CONFORMANCE_TOLERANCE = 1e-5;

export interface ConformanceRow {
  name: string;
  shape: number[];
  /** max |ours - reference| / max |reference| */
  relError: number;
  maxAbsError: number;
  pass: boolean;
  note?: string;
}

export interface ConformanceReport {
  fixture: string;
  config: Record<string, string>;
  rows: ConformanceRow[];
  pass: boolean;
  tolerance: number;
}

function metaNumber(meta: Record<string, string>, key: string, file: string, fallback?: number): number {
  const raw = meta[key];
  if (raw === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UsageError(`${file}: __metadata__ has no ${key}`);
  }
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new UsageError(`${file}: __metadata__.${key} is not a number: ${JSON.stringify(raw)}`);
  return v;
}

/**
 * Relative size below which a float32 gradient component's sign is not trustworthy. Our input
 * gradients agree with the float64 reference to ~1.6e-6 of their max at the clean input (wasm and cpu),
 * but along a PGD trajectory single components as large as ~3e-5 of the max were seen to take the
 * opposite sign on the cpu backend; 1e-4 leaves a margin. PGD's trajectory can fork on such components.
 */
export const SIGN_TIE_TOLERANCE = 1e-4;

/**
 * Relative size below which a resReLU pre-activation's sign is not trustworthy: forward activations
 * agree with the reference to ~1e-7 of their max, and on cpu a conv pre-activation of -1.5e-7 (wasm,
 * and the float64 reference) came out as +4e-8, about 3e-8 of the layer's max. 1e-6 leaves a margin
 * while keeping ties rare (a few per PGD trajectory). A flipped mask forks a PGD trajectory like a sign
 * tie, and changes the gradients through that ReLU (while its output stays ~0).
 */
export const RELU_TIE_TOLERANCE = 1e-6;

type SignFn = (g: tf.Tensor4D, delta: tf.Tensor4D) => tf.Tensor;

/** The tie-aware decisions one run makes: gradient signs (PGD) and resReLU masks (the model). */
export interface TieRules {
  sign: SignFn;
  mask: MaskRule;
}

export interface TieSearchResult<T = tf.Tensor4D> {
  /** The output of the returned run (the matching one, else the last). */
  adv: T;
  /** Ties met in the returned run: gradient signs and resReLU masks. */
  ties: { sign: number; relu: number };
  /** Ties decided against their float32 value in the returned run. */
  flipped: number;
  runs: number;
  matched: boolean;
}

interface Choice {
  kind: 'sign' | 'relu';
  value: number;
  /** How implausible it is to decide this tie the other way: |v| / (tolerance max|v|), in [0, 1). */
  cost: number;
  flip: number;
}

/**
 * Reproduces a float64 reference output (an attack, a gradient) in float32. A float32 tie is a value whose sign
 * rounding can decide: a gradient component with |g| < SIGN_TIE_TOLERANCE max|g|, or a resReLU
 * pre-activation with |v| < RELU_TIE_TOLERANCE max|v| (max per example; not where a hidden value is
 * exactly 0, which makes x' h exactly 0 in any precision). The attack first runs with
 * every tie decided by its float32 value; if the output does not match, the tie decisions are searched
 * best first: a candidate flips some ties of an earlier run, and costs the sum of their relative sizes,
 * so flipping values nearest to zero is tried first. Every non-tie value always decides by its sign.
 * At most `maxRuns` runs.
 */
export function searchTies<T = tf.Tensor4D>(
  run: (rules: TieRules) => T,
  matches: (out: T) => boolean,
  maxRuns = 64,
  dispose: (out: T) => void = (out) => tf.dispose(out as unknown as tf.Tensor),
): TieSearchResult<T> {
  const queue: Array<{ prefix: number[]; cost: number; flipped: number }> = [{ prefix: [], cost: 0, flipped: 0 }];
  let runs = 0;
  let last: TieSearchResult<T> | null = null;
  while (queue.length > 0 && runs < maxRuns) {
    let best = 0;
    for (let i = 1; i < queue.length; i++) if (queue[i].cost < queue[best].cost) best = i;
    const node = queue.splice(best, 1)[0];
    const used: Choice[] = [];
    const decide = (kind: Choice['kind'], v: number, max: number, own: number, other: number): number => {
      const k = used.length;
      const value = k < node.prefix.length ? node.prefix[k] : own;
      const tolerance = kind === 'sign' ? SIGN_TIE_TOLERANCE : RELU_TIE_TOLERANCE;
      used.push({ kind, value, cost: Math.abs(v) / (tolerance * max), flip: value === own ? other : own });
      return value;
    };
    const perExample = (t: tf.Tensor, pick: (v: number, max: number) => number): tf.Tensor => {
      const d = t.dataSync();
      const per = d.length / t.shape[0];
      const out = new Float32Array(d.length);
      for (let e = 0; e < t.shape[0]; e++) {
        let mx = 0;
        for (let i = e * per; i < (e + 1) * per; i++) mx = Math.max(mx, Math.abs(d[i]));
        for (let i = e * per; i < (e + 1) * per; i++) out[i] = pick(d[i], mx);
      }
      return tf.tensor(out, t.shape);
    };
    const rules: TieRules = {
      sign: (g) => perExample(g, (v, mx) => {
        const own = Math.sign(v) || 1;
        return Math.abs(v) < SIGN_TIE_TOLERANCE * mx ? decide('sign', v, mx, own, -own) : Math.sign(v);
      }),
      mask: (_layer, pre, hidden) => {
        // x' h is exactly 0 where the hidden h is exactly 0 (unpooled positions): structural, as in
        // float64, so not a tie; x' itself can round to exactly 0, which is one
        const h = hidden?.dataSync();
        let i = 0;
        return perExample(pre, (v, mx) => {
          const own = v > 0 ? 1 : 0;
          const structural = h !== undefined && h[i++] === 0;
          return !structural && Math.abs(v) < RELU_TIE_TOLERANCE * mx ? decide('relu', v, mx, own, 1 - own) : own;
        });
      },
    };
    runs++;
    const adv = run(rules);
    if (last) dispose(last.adv);
    const ties = { sign: used.filter((c) => c.kind === 'sign').length, relu: used.filter((c) => c.kind === 'relu').length };
    last = { adv, ties, flipped: node.flipped, runs, matched: false };
    if (matches(adv)) return { ...last, matched: true };
    for (let j = node.prefix.length; j < used.length; j++) {
      queue.push({ prefix: [...used.slice(0, j).map((c) => c.value), used[j].flip], cost: node.cost + used[j].cost, flipped: node.flipped + 1 });
    }
  }
  return { ...last!, runs };
}

export function relativeError(ours: ArrayLike<number>, ref: ArrayLike<number>): { rel: number; abs: number } {
  let md = 0;
  let mx = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ref[i] - ours[i]);
    md = Number.isNaN(d) ? Infinity : Math.max(md, d);
    mx = Math.max(mx, Math.abs(ref[i]));
  }
  return { rel: mx === 0 ? md : md / mx, abs: md };
}

/** Runs the conformance check of one fixture file on the active backend. */
export function runConformance(path: string, tolerance = CONFORMANCE_TOLERANCE): ConformanceReport {
  const file = readSafetensors(path);
  const meta = file.metadata;
  const T = file.tensors;
  const need = (k: string): NamedTensor => {
    const t = T.get(k);
    if (!t) throw new UsageError(`${path}: missing tensor ${k}`);
    return t;
  };
  const arch = getArch(meta.arch ?? 'fmnist').name;
  const widths = inferPyTorchWidths(T, arch, 'param.', path);
  const fcMeta = [meta.fc1, meta.fc2].filter((v) => v !== undefined).map(Number);
  const cfg = makeConfig({
    arch,
    fc: fcMeta.length === widths.fc.length ? fcMeta : widths.fc,
    numClasses: widths.numClasses,
    ind: metaNumber(meta, 'ind', path),
    cycles: metaNumber(meta, 'cycles', path),
    resParam: metaNumber(meta, 'res_param', path),
  });
  const model = CNNF.fromArrays(cfg, fromPyTorch(T, cfg, path, 'param.'));
  const rows: ConformanceRow[] = [];
  const done = new Set<string>();
  /** Our tensor in the reference layout (NCHW for 4-d activations unless nhwc is false). */
  const asRef = (t: tf.Tensor, nhwc: boolean): { data: Float32Array; shape: number[] } => {
    const data = t.dataSync() as Float32Array;
    return nhwc && t.shape.length === 4 ? nhwcToNchw({ shape: t.shape, data }) : { data, shape: t.shape };
  };
  /** Relative error against the reference tensor `name` (Infinity on a size mismatch). */
  const errorOf = (name: string, t: tf.Tensor, nhwc = true): number => {
    const ref = need(name);
    const ours = asRef(t, nhwc);
    return ours.data.length === ref.data.length ? relativeError(ours.data, ref.data).rel : Infinity;
  };
  const compare = (name: string, t: tf.Tensor, nhwc = true) => {
    const ref = T.get(name);
    if (!ref) return;
    const { data, shape } = asRef(t, nhwc);
    if (ref.shape.join(',') !== shape.join(',') && ref.data.length !== data.length) {
      rows.push({ name, shape: ref.shape, relError: Infinity, maxAbsError: Infinity, pass: false, note: `shape [${shape}] != reference [${ref.shape}]` });
    } else {
      const { rel, abs } = relativeError(data, ref.data);
      rows.push({ name, shape: ref.shape, relError: rel, maxAbsError: abs, pass: rel <= tolerance });
    }
    done.add(name);
  };
  /** Notes the tie decisions a searched row needed, when any went against float32. */
  const noteTies = (name: string, found: { flipped: number; ties: { relu: number; sign: number }; runs: number }, scope = '') => {
    const row = rows.find((r) => r.name === name);
    if (found.flipped === 0 || !row) return;
    row.note = `float32 ties${scope}: ${found.ties.relu} ReLU mask(s), ${found.flipped} decided against float32; ${found.runs} run(s)`;
  };
  const image = (k: string): tf.Tensor4D => {
    const t = need(k);
    if (t.shape.length !== 4) throw new UsageError(`${path}: ${k} must be NCHW, has shape [${t.shape}]`);
    const a = nchwToNhwc(t);
    return tf.tensor4d(a.data, a.shape as [number, number, number, number]);
  };
  try {
    tf.tidy(() => {
      const x = image('input.x');
      const y = tf.tensor1d(Array.from(need('input.y').data), 'int32');
      const res = model.run(x);
      compare('eval.first.logits', res.first.logits);
      compare('eval.first.orig_feature', res.first.orig!);
      for (const [k, v] of Object.entries(res.first.taps)) compare(`eval.first.${k}`, v);
      res.cycles.forEach((c, i) => {
        const p = `eval.cycle${i + 1}`;
        compare(`${p}.recon`, c.recon);
        compare(`${p}.ff`, c.ff);
        compare(`${p}.logits`, c.logits);
        for (const [k, v] of Object.entries(c.taps)) compare(`${p}.${k}`, v);
      });
      compare('eval.last.logits', readoutOf(res, 'last'));
      compare('eval.average.logits', readoutOf(res, 'average'));
      if (T.has('input.x_noisy')) {
        const xn = image('input.x_noisy');
        compare('eval.last.logits_noisy', model.logits(xn, 'last'));
      }
      const first: Victim<CNNF> = { model, mode: 'first', cycles: cfg.cycles, readout: 'last' };
      const e2e: Victim<CNNF> = { ...first, mode: 'e2e' };
      // gradients go through ReLU masks: a pre-activation within float32 rounding of 0 can be decided
      // either way (its value barely moves, but the gradient through it does), so these rows search ties too
      const gradRow = (name: string, mode: 'first' | 'e2e') => {
        if (!T.has(name)) return;
        const found = searchTies(
          ({ mask }) => {
            const m = model.withMaskRule(mask);
            return tf.grad((xx: tf.Tensor) => crossEntropy(mode === 'first' ? m.run(xx, { cycles: 0 }).logits[0] : m.logits(xx, 'last'), y, 'sum'))(x) as tf.Tensor4D;
          },
          (g) => errorOf(name, g) <= tolerance,
        );
        compare(name, found.adv);
        noteTies(name, found);
      };
      gradRow('grad.input.first', 'first');
      gradRow('grad.input.e2e', 'e2e');
      const eps = metaNumber(meta, 'eps', path, 0.2);
      const step = metaNumber(meta, 'eps_iter', path, 0.071);
      const iters = metaNumber(meta, 'nb_iter', path, 7);
      const ctx = { nextSeed: () => 0 };
      compare('attack.fgsm.first', new FGSM().perturb(first, x, y, eps, ctx));
      const pgdRow = (name: string, v: Victim<CNNF>, labels: tf.Tensor1D, targeted: boolean) => {
        if (!T.has(name)) return;
        const refAll = image(name);
        const n = x.shape[0];
        const per = refAll.size / n;
        const ties = { sign: 0, relu: 0 };
        let flipped = 0;
        let runs = 0;
        // examples are independent (every layer is per sample), so each one's tie decisions are searched alone
        const advs = Array.from({ length: n }, (_, i) => {
          const xi = tf.slice(x, i, 1);
          const ref = nhwcToNchw({ shape: [1, ...x.shape.slice(1)], data: refAll.dataSync().slice(i * per, (i + 1) * per) as Float32Array }).data;
          const found = searchTies(
            ({ sign, mask }) => new PGD({ steps: iters, stepSize: step, randomStart: false, targeted, sign }).perturb({ ...v, model: v.model.withMaskRule(mask) }, xi, tf.slice(labels, i, 1), eps, ctx),
            (adv) => relativeError(nhwcToNchw({ shape: adv.shape, data: adv.dataSync() as Float32Array }).data, ref).rel <= tolerance,
          );
          ties.sign += found.ties.sign;
          ties.relu += found.ties.relu;
          flipped += found.flipped;
          runs += found.runs;
          return found.adv;
        });
        compare(name, tf.concat(advs, 0));
        if (ties.sign + ties.relu > 0) {
          rows[rows.length - 1].note = `float32 ties: ${ties.sign} gradient sign(s), ${ties.relu} ReLU mask(s), ${flipped} decided against float32; ${runs} run(s) for ${n} examples`;
        }
      };
      pgdRow('attack.pgd.first', first, y, false);
      pgdRow('attack.pgd.e2e', e2e, y, false);
      if (T.has('attack.pgd_targeted.first')) {
        pgdRow('attack.pgd_targeted.first', first, tf.tensor1d(Array.from(need('attack.pgd_targeted.first.target').data), 'int32'), true);
        done.add('attack.pgd_targeted.first.target');
      }
      apgdRows(T, meta, path, model, cfg.cycles, x, y, image, tolerance, rows, done);
      if (T.has('train.loss')) {
        const xn = image('input.x_noisy');
        const weights = { cleanWeight: metaNumber(meta, 'clean_parameter', path, 0.1), reconWeight: metaNumber(meta, 'mse_parameter', path, 0.1) };
        // the loss and every parameter gradient, in the reference's names and layout
        const trainRun = (mask?: MaskRule): Map<string, tf.Tensor> => {
          const m = model.withMaskRule(mask);
          const { value, grads } = tf.variableGrads(() => pairLoss(m, x, xn, y, weights));
          const byVar = new Map<string, Float32Array>();
          for (const [name, p] of model.params) {
            const g = grads[(p as tf.Variable).name];
            if (g) byVar.set(name, g.dataSync() as Float32Array);
          }
          tf.dispose(Object.values(grads));
          const out = new Map<string, tf.Tensor>([['train.loss', tf.reshape(value, [1])]]);
          for (const [name, a] of toPyTorch(byVar, cfg)) out.set(`train.grad.${name}`, tf.tensor(a.data, a.shape));
          return out;
        };
        const found = searchTies(
          ({ mask }) => trainRun(mask),
          (out) => [...out].every(([name, t]) => !T.has(name) || errorOf(name, t, false) <= tolerance),
          64,
          (out) => tf.dispose([...out.values()]),
        );
        for (const [name, t] of found.adv) compare(name, t, false);
        noteTies('train.loss', found, ' (one search for every train.* row)');
      }
    });
  } finally {
    model.dispose();
  }
  for (const k of T.keys()) {
    if (k.startsWith('param.') || k.startsWith('input.') || done.has(k)) continue;
    rows.push({ name: k, shape: T.get(k)!.shape, relError: NaN, maxAbsError: NaN, pass: false, note: 'not recomputed: unknown tensor name' });
  }
  return { fixture: path, config: meta, rows, pass: rows.length > 0 && rows.every((r) => r.pass), tolerance };
}

const APGD_CASES: Array<{ loss: APGDLoss; norm: APGDNorm; key: 'Linf' | 'L2' }> = [];
for (const loss of ['ce', 'dlr', 'dlr-targeted'] as const) for (const key of ['Linf', 'L2'] as const) APGD_CASES.push({ loss, norm: key === 'Linf' ? 'linf' : 'l2', key });
const APGD_OUTPUTS = ['x_best', 'x_best_adv', 'loss_best', 'robust'] as const;
/** Tie-search runs per APGD example (a 20-iteration end-to-end run takes ~1.5 s on wasm). */
const APGD_MAX_RUNS = 4;

/**
 * AutoAttack APGD fixture rows (`attack.apgd.{loss}.{Linf,L2}.{x_best,x_best_adv,loss_best,robust}`):
 * one `apgdSingleRun` per example from the fixture's start point, with the Linf step signs and the
 * resReLU masks searched for float32 ties as for PGD (examples are independent, so each is searched alone).
 */
function apgdRows(
  T: Map<string, NamedTensor>,
  meta: Record<string, string>,
  path: string,
  model: CNNF,
  cycles: number,
  x: tf.Tensor4D,
  y: tf.Tensor1D,
  image: (k: string) => tf.Tensor4D,
  tolerance: number,
  rows: ConformanceRow[],
  done: Set<string>,
): void {
  const cases = APGD_CASES.filter((c) => T.has(`attack.apgd.${c.loss}.${c.key}.x_best`));
  if (cases.length === 0) return;
  const mode = meta.apgd_gradients ?? 'e2e';
  if (mode !== 'e2e' && mode !== 'first') throw new UsageError(`${path}: __metadata__.apgd_gradients must be e2e or first, got ${JSON.stringify(mode)}`);
  const readout = meta.apgd_readout ?? 'last';
  if (readout !== 'last' && readout !== 'average') throw new UsageError(`${path}: __metadata__.apgd_readout must be last or average, got ${JSON.stringify(readout)}`);
  const victim: Victim = { model, mode: mode as GradientMode, cycles, readout: readout as Readout };
  const iterations = metaNumber(meta, 'apgd_iters', path);
  const rho = metaNumber(meta, 'apgd_rho', path, 0.75);
  const n = x.shape[0];
  const need = (k: string): NamedTensor => {
    const t = T.get(k);
    if (!t) throw new UsageError(`${path}: missing tensor ${k}`);
    return t;
  };
  let model64: CNNF64 | undefined;
  for (const c of cases) {
    const eps = metaNumber(meta, `apgd_eps_${c.key.toLowerCase()}`, path);
    const initKey = `input.apgd.${c.key}.init`;
    const init = image(initKey);
    const targeted = c.loss.endsWith('-targeted');
    const targetKey = `input.apgd.${c.key}.target`;
    const targets = targeted ? tf.tensor1d(Array.from(need(targetKey).data), 'int32') : undefined;
    const prefix = `attack.apgd.${c.loss}.${c.key}`;
    const refs = APGD_OUTPUTS.map((o) => {
      const t = need(`${prefix}.${o}`);
      return o.startsWith('x_') ? nchwToNhwc(t).data : t.data;
    });
    const lossScale = Math.max(...Array.from(refs[2], Math.abs));
    const per = x.size / n;
    const ties = { sign: 0, relu: 0 };
    let flipped = 0;
    let runs = 0;
    const outs = Array.from({ length: n }, (_, i) => {
      const found = searchTies<APGDSingleRunResult>(
        ({ sign, mask }) =>
          apgdSingleRun({ ...victim, model: model.withMaskRule(mask) }, tf.slice(x, i, 1), tf.slice(y, i, 1), {
            eps,
            norm: c.norm,
            loss: c.loss,
            iterations,
            rho,
            init: tf.slice(init, i, 1),
            targets: targets ? tf.slice(targets, i, 1) : undefined,
            sign: (g) => sign(g, g),
          }),
        (r) => {
          const images = [r.xBest, r.xBestAdv].every((t, j) => relativeError(t.dataSync() as Float32Array, refs[j].slice(i * per, (i + 1) * per)).rel <= tolerance);
          const lossOk = Math.abs(r.lossBest.dataSync()[0] - refs[2][i]) <= tolerance * Math.max(lossScale, Number.MIN_VALUE);
          return images && lossOk && r.robust.dataSync()[0] === refs[3][i];
        },
        APGD_MAX_RUNS,
        (r) => tf.dispose([r.xBest, r.xBestAdv, r.lossBest, r.robust]),
      );
      ties.sign += found.ties.sign;
      ties.relu += found.ties.relu;
      flipped += found.flipped;
      runs += found.runs;
      return found.adv;
    });
    const pick = (f: (r: APGDSingleRunResult) => tf.Tensor) => tf.concat(outs.map(f), 0);
    const values: tf.Tensor[] = [pick((r) => r.xBest), pick((r) => r.xBestAdv), pick((r) => r.lossBest), pick((r) => r.robust)];
    APGD_OUTPUTS.forEach((o, j) => {
      const name = `${prefix}.${o}`;
      const ref = need(name);
      const ours = values[j].dataSync() as Float32Array;
      const data = ref.shape.length === 4 ? nhwcToNchw({ shape: values[j].shape, data: ours }).data : ours;
      const { rel, abs } = data.length === ref.data.length ? relativeError(data, ref.data) : { rel: Infinity, abs: Infinity };
      rows.push({ name, shape: ref.shape, relError: rel, maxAbsError: abs, pass: rel <= tolerance });
      done.add(name);
    });
    if (ties.sign + ties.relu > 0) {
      rows[rows.length - 4].note = `float32 ties: ${ties.sign} gradient sign(s), ${ties.relu} ReLU mask(s), ${flipped} decided against float32; ${runs} run(s) for ${n} examples`;
    }
    for (const r of outs) tf.dispose([r.xBest, r.xBestAdv, r.lossBest, r.robust]);
    tf.dispose(values);
    done.add(targetKey);

    // the same algorithm (apgdControl) with the model evaluated in float64, AutoAttack's precision:
    // checks the algorithm without float32's rounding (DLR trajectories are ill-conditioned, see apgdFloat64)
    const r64 = apgdFloat64(model64 ??= CNNF64.fromModel(model), {
      x: Float64Array.from(x.dataSync()), n, labels: Array.from(y.dataSync()), init: Float64Array.from(init.dataSync()),
      targets: targets ? Array.from(targets.dataSync()) : undefined, loss: c.loss, norm: c.norm, eps, iterations, rho,
      mode: mode as GradientMode, readout: readout as Readout,
    });
    const outs64 = [r64.xBest, r64.xBestAdv, r64.lossBest, Float64Array.from(r64.robust)];
    APGD_OUTPUTS.forEach((o, j) => {
      const name = `${prefix}.${o}`;
      const ref = need(name);
      const ours = Float32Array.from(outs64[j]);
      const data = ref.shape.length === 4 ? nhwcToNchw({ shape: init.shape, data: ours }).data : ours;
      const { rel, abs } = relativeError(data, ref.data);
      rows.push({ name: `${FLOAT64_PREFIX}${name}`, shape: ref.shape, relError: rel, maxAbsError: abs, pass: rel <= tolerance });
    });
    rows[rows.length - 4].note = 'APGD algorithm on the model evaluated in float64 (src/models/float64.ts)';
    init.dispose();
    targets?.dispose();
  }
}

/** Row-name prefix of the rows recomputed with the model in float64 (APGD fixtures). */
export const FLOAT64_PREFIX = 'float64:';

export interface APGDFloat64Input {
  /** NHWC images, float64. */
  x: Float64Array;
  n: number;
  labels: number[];
  /** Start point, NHWC. */
  init: Float64Array;
  targets?: number[];
  loss: APGDLoss;
  norm: APGDNorm;
  eps: number;
  iterations: number;
  rho: number;
  mode: GradientMode;
  readout: Readout;
}

/**
 * One APGD run (AutoAttack's attack_single_run from a given start point) with every model evaluation in
 * float64 (CNNF64): the same `apgdControl` as the attacks, on `float64Ops`. This checks the algorithm
 * at the reference's precision: float32 gradients (rel. error ~1e-6) move DLR trajectories, whose
 * denominator z_pi1 - z_pi3 gets small along the attack, by far more than 1e-5.
 */
export function apgdFloat64(model: CNNF64, a: APGDFloat64Input): { xBest: Float64Array; xBestAdv: Float64Array; lossBest: Float64Array; robust: Uint8Array } {
  const { n } = a;
  const per = a.x.length / n;
  const evaluate = (p: Float64Array) => {
    const lossData = new Float64Array(n);
    let k = 0;
    const ev = model.evaluate(p, n, a.mode, a.readout, (z) => {
      k = z.length / n;
      const dz = new Float64Array(z.length);
      for (let i = 0; i < n; i++) {
        const r = lossAndLogitGrad64(a.loss, z.subarray(i * k, (i + 1) * k), a.labels[i], a.targets ? a.targets[i] : -1);
        lossData[i] = r.loss;
        dz.set(r.grad, i * k);
      }
      return dz;
    });
    const correct = new Uint8Array(n);
    const logits = ev.logits;
    for (let i = 0; i < n; i++) {
      let m = 0;
      for (let j = 1; j < ev.numClasses; j++) if (logits[i * ev.numClasses + j] > logits[i * ev.numClasses + m]) m = j;
      correct[i] = m === a.labels[i] ? 1 : 0;
    }
    return { loss: lossData, grad: ev.grad, correct };
  };
  const start = a.init.map((v) => Math.min(Math.max(v, -1), 1));
  return apgdControl(float64Ops({ n, per }, a.x, a.eps, a.norm, evaluate), n, start, a.eps, a.iterations, a.rho);
}
