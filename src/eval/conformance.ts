/**
 * Conformance against golden tensors from the paper's reference implementation: builds the model a
 * fixture's __metadata__ describes, loads its param.* tensors through the PyTorch import path and
 * recomputes every other tensor (eval.*, grad.*, attack.*, train.*).
 */
import * as tf from '@tensorflow/tfjs-core';
import { apgdControl, apgdSingleRun, float64Ops, FGSM, lossAndLogitGrad64, PGD, type APGDLoss, type APGDNorm, type APGDSingleRunResult, type GradientMode, type Victim } from '../attacks/index.js';
import type { Readout } from '../models/cnnf.js';
import { UsageError } from '../errors.js';
import { activeBackend } from '../backend/index.js';
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
  /** False where the backend cannot read synchronously (webgpu): one run with the float32 decisions, no search. */
  searched?: boolean;
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
/** Backends whose tensors can be read synchronously, which the tie search needs (see searchTies). */
const SYNC_READ_BACKENDS = new Set(['cpu', 'wasm', 'tensorflow']);

/**
 * The tie rules of a search's first run, as tensor ops (no host read): a gradient sign is the sign,
 * with an exact 0 taken as +1 unless the whole example's gradient is 0; a resReLU mask is x' > 0.
 */
function deviceRules(): TieRules {
  return {
    sign: (g) => tf.tidy(() => {
      const axes = g.shape.map((_, i) => i).slice(1);
      const any = tf.cast(tf.greater(tf.max(tf.abs(g), axes, true), 0), g.dtype);
      return tf.where(tf.equal(g, 0), tf.mul(tf.onesLike(g), any), tf.sign(g));
    }),
    mask: (_layer, pre) => tf.tidy(() => tf.cast(tf.greater(pre, 0), 'float32')),
  };
}

export async function searchTies<T = tf.Tensor4D>(
  run: (rules: TieRules) => T | Promise<T>,
  matches: (out: T) => boolean | Promise<boolean>,
  maxRuns = 64,
  dispose: (out: T) => void = (out) => tf.dispose(out as unknown as tf.Tensor),
): Promise<TieSearchResult<T>> {
  if (!SYNC_READ_BACKENDS.has(activeBackend())) {
    // webgpu cannot read on the host mid-pass: one run with every decision taken by its float32 value
    // (what the first run of the search does), on the device; a row that needs a tie decided otherwise
    // fails there, and its note says why (the same row on cpu/wasm searches the ties)
    const adv = await run(deviceRules());
    return { adv, ties: { sign: 0, relu: 0 }, flipped: 0, runs: 1, matched: await matches(adv), searched: false };
  }
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
    // The tie rules decide element by element on the host while the model's graph (or PGD's step) is
    // being built, inside one forward or gradient pass that tfjs runs synchronously: they need a
    // synchronous read. So the tie-searched conformance rows run on backends that have one (cpu, wasm).
    const perExample = (t: tf.Tensor, pick: (v: number, max: number) => number): tf.Tensor => {
      // eslint-disable-next-line no-restricted-properties
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
        // eslint-disable-next-line no-restricted-properties
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
    const adv = await run(rules);
    if (last) dispose(last.adv);
    const ties = { sign: used.filter((c) => c.kind === 'sign').length, relu: used.filter((c) => c.kind === 'relu').length };
    last = { adv, ties, flipped: node.flipped, runs, matched: false };
    if (await matches(adv)) return { ...last, matched: true };
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
export async function runConformance(path: string, tolerance = CONFORMANCE_TOLERANCE): Promise<ConformanceReport> {
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
  const asRef = async (t: tf.Tensor, nhwc: boolean): Promise<{ data: Float32Array; shape: number[] }> => {
    const data = (await t.data()) as Float32Array;
    return nhwc && t.shape.length === 4 ? nhwcToNchw({ shape: t.shape, data }) : { data, shape: t.shape };
  };
  /** Relative error against the reference tensor `name` (Infinity on a size mismatch). */
  const errorOf = async (name: string, t: tf.Tensor, nhwc = true): Promise<number> => {
    const ref = need(name);
    const ours = await asRef(t, nhwc);
    return ours.data.length === ref.data.length ? relativeError(ours.data, ref.data).rel : Infinity;
  };
  const compare = async (name: string, t: tf.Tensor, nhwc = true): Promise<void> => {
    const ref = T.get(name);
    if (!ref) return;
    const { data, shape } = await asRef(t, nhwc);
    if (ref.shape.join(',') !== shape.join(',') && ref.data.length !== data.length) {
      rows.push({ name, shape: ref.shape, relError: Infinity, maxAbsError: Infinity, pass: false, note: `shape [${shape}] != reference [${ref.shape}]` });
    } else {
      const { rel, abs } = relativeError(data, ref.data);
      rows.push({ name, shape: ref.shape, relError: rel, maxAbsError: abs, pass: rel <= tolerance });
    }
    done.add(name);
  };
  /** compare, then frees the tensor(s). */
  const compareAndDispose = async (name: string, t: tf.Tensor, nhwc = true): Promise<void> => {
    try {
      await compare(name, t, nhwc);
    } finally {
      t.dispose();
    }
  };
  /** Notes the tie decisions a searched row needed, when any went against float32. */
  const noteTies = (name: string, found: { flipped: number; ties: { relu: number; sign: number }; runs: number }, scope = '') => {
    const row = rows.find((r) => r.name === name);
    if (found.flipped === 0 || !row) return;
    row.note = `float32 ties${scope}: ${found.ties.relu} ReLU mask(s), ${found.flipped} decided against float32; ${found.runs} run(s)`;
  };
  const imageData = (k: string): { data: Float32Array; shape: number[] } => {
    const t = need(k);
    if (t.shape.length !== 4) throw new UsageError(`${path}: ${k} must be NCHW, has shape [${t.shape}]`);
    return nchwToNhwc(t);
  };
  const image = (k: string): tf.Tensor4D => {
    const a = imageData(k);
    return tf.tensor4d(a.data, a.shape as [number, number, number, number]);
  };
  const owned: tf.Tensor[] = [];
  /** A tensor freed when the check ends. */
  const own = <U extends tf.Tensor>(t: U): U => {
    owned.push(t);
    return t;
  };
  try {
    const x = own(image('input.x'));
    const y = own(tf.tensor1d(Array.from(need('input.y').data), 'int32'));
    // the forward rows: computed in one tidy (the tensors to compare kept), read after it
    const forward: Array<[string, tf.Tensor]> = [];
    tf.tidy(() => {
      // a copy (it shares the data): a row's tensor can be the input itself (ind 0) or another row's
      const add = (name: string, t: tf.Tensor) => {
        if (T.has(name)) forward.push([name, tf.keep(tf.clone(t))]);
      };
      const res = model.run(x);
      add('eval.first.logits', res.first.logits);
      add('eval.first.orig_feature', res.first.orig!);
      for (const [k, v] of Object.entries(res.first.taps)) add(`eval.first.${k}`, v);
      res.cycles.forEach((c, i) => {
        const p = `eval.cycle${i + 1}`;
        add(`${p}.recon`, c.recon);
        add(`${p}.ff`, c.ff);
        add(`${p}.logits`, c.logits);
        for (const [k, v] of Object.entries(c.taps)) add(`${p}.${k}`, v);
      });
      add('eval.last.logits', readoutOf(res, 'last'));
      add('eval.average.logits', readoutOf(res, 'average'));
      if (T.has('input.x_noisy')) {
        const xn = image('input.x_noisy');
        add('eval.last.logits_noisy', model.logits(xn, 'last'));
      }
    });
    try {
      for (const [name, t] of forward) await compare(name, t);
    } finally {
      tf.dispose(forward.map(([, t]) => t));
    }
    const first: Victim<CNNF> = { model, mode: 'first', cycles: cfg.cycles, readout: 'last' };
    const e2e: Victim<CNNF> = { ...first, mode: 'e2e' };
    // gradients go through ReLU masks: a pre-activation within float32 rounding of 0 can be decided
    // either way (its value barely moves, but the gradient through it does), so these rows search ties too
    const gradRow = async (name: string, mode: 'first' | 'e2e') => {
      if (!T.has(name)) return;
      const found = await searchTies(
        ({ mask }) => {
          const m = model.withMaskRule(mask);
          return tf.tidy(() => tf.grad((xx: tf.Tensor) => crossEntropy(mode === 'first' ? m.run(xx, { cycles: 0 }).logits[0] : m.logits(xx, 'last'), y, 'sum'))(x) as tf.Tensor4D);
        },
        async (g) => (await errorOf(name, g)) <= tolerance,
      );
      await compareAndDispose(name, found.adv);
      noteTies(name, found);
    };
    await gradRow('grad.input.first', 'first');
    await gradRow('grad.input.e2e', 'e2e');
    const eps = metaNumber(meta, 'eps', path, 0.2);
    const step = metaNumber(meta, 'eps_iter', path, 0.071);
    const iters = metaNumber(meta, 'nb_iter', path, 7);
    const ctx = { nextSeed: () => 0 };
    await compareAndDispose('attack.fgsm.first', await new FGSM().perturb(first, x, y, eps, ctx));
    const pgdRow = async (name: string, v: Victim<CNNF>, labels: tf.Tensor1D, targeted: boolean) => {
      if (!T.has(name)) return;
      const refAll = imageData(name).data;
      const n = x.shape[0];
      const per = refAll.length / n;
      const ties = { sign: 0, relu: 0 };
      let flipped = 0;
      let runs = 0;
      // examples are independent (every layer is per sample), so each one's tie decisions are searched alone
      const advs: tf.Tensor4D[] = [];
      try {
        for (let i = 0; i < n; i++) {
          const xi = tf.slice(x, i, 1);
          const yi = tf.slice(labels, i, 1);
          try {
            const ref = nhwcToNchw({ shape: [1, ...x.shape.slice(1)], data: refAll.slice(i * per, (i + 1) * per) as Float32Array }).data;
            const found = await searchTies(
              ({ sign, mask }) => new PGD({ steps: iters, stepSize: step, randomStart: false, targeted, sign }).perturb({ ...v, model: v.model.withMaskRule(mask) }, xi, yi, eps, ctx),
              async (adv) => relativeError(nhwcToNchw({ shape: adv.shape, data: (await adv.data()) as Float32Array }).data, ref).rel <= tolerance,
            );
            ties.sign += found.ties.sign;
            ties.relu += found.ties.relu;
            flipped += found.flipped;
            runs += found.runs;
            advs.push(found.adv);
          } finally {
            tf.dispose([xi, yi]);
          }
        }
        await compareAndDispose(name, tf.concat(advs, 0));
      } finally {
        tf.dispose(advs);
      }
      if (ties.sign + ties.relu > 0) {
        rows[rows.length - 1].note = `float32 ties: ${ties.sign} gradient sign(s), ${ties.relu} ReLU mask(s), ${flipped} decided against float32; ${runs} run(s) for ${n} examples`;
      }
    };
    await pgdRow('attack.pgd.first', first, y, false);
    await pgdRow('attack.pgd.e2e', e2e, y, false);
    if (T.has('attack.pgd_targeted.first')) {
      await pgdRow('attack.pgd_targeted.first', first, own(tf.tensor1d(Array.from(need('attack.pgd_targeted.first.target').data), 'int32')), true);
      done.add('attack.pgd_targeted.first.target');
    }
    await apgdRows(T, meta, path, model, cfg.cycles, x, y, image, tolerance, rows, done);
    if (T.has('train.loss')) {
      const xn = own(image('input.x_noisy'));
      const weights = { cleanWeight: metaNumber(meta, 'clean_parameter', path, 0.1), reconWeight: metaNumber(meta, 'mse_parameter', path, 0.1) };
      // the loss and every parameter gradient, in the reference's names and layout
      const trainRun = async (mask?: MaskRule): Promise<Map<string, tf.Tensor>> => {
        const m = model.withMaskRule(mask);
        const { value, grads } = tf.variableGrads(() => pairLoss(m, x, xn, y, weights));
        const names: string[] = [];
        const gs: tf.Tensor[] = [];
        for (const [name, p] of model.params) {
          const g = grads[(p as tf.Variable).name];
          if (g) {
            names.push(name);
            gs.push(g);
          }
        }
        const byVar = new Map<string, Float32Array>();
        try {
          const data = await Promise.all(gs.map((g) => g.data()));
          names.forEach((name, k) => byVar.set(name, data[k] as Float32Array));
        } finally {
          tf.dispose(Object.values(grads));
        }
        const out = new Map<string, tf.Tensor>([['train.loss', tf.reshape(value, [1])]]);
        value.dispose();
        for (const [name, a] of toPyTorch(byVar, cfg)) out.set(`train.grad.${name}`, tf.tensor(a.data, a.shape));
        return out;
      };
      const found = await searchTies(
        ({ mask }) => trainRun(mask),
        async (out) => {
          for (const [name, t] of out) if (T.has(name) && !((await errorOf(name, t, false)) <= tolerance)) return false;
          return true;
        },
        64,
        (out) => tf.dispose([...out.values()]),
      );
      try {
        for (const [name, t] of found.adv) await compare(name, t, false);
      } finally {
        tf.dispose([...found.adv.values()]);
      }
      noteTies('train.loss', found, ' (one search for every train.* row)');
    }
  } finally {
    tf.dispose(owned);
    model.dispose();
  }
  for (const k of T.keys()) {
    if (k.startsWith('param.') || k.startsWith('input.') || done.has(k)) continue;
    rows.push({ name: k, shape: T.get(k)!.shape, relError: NaN, maxAbsError: NaN, pass: false, note: 'not recomputed: unknown tensor name' });
  }
  if (!SYNC_READ_BACKENDS.has(activeBackend())) {
    for (const r of rows) {
      if (r.pass || !/^(grad|attack|train)\./.test(r.name)) continue;
      r.note = `${r.note ? `${r.note}; ` : ''}${activeBackend()}: no float32 tie search (it reads on the host mid-pass); this backend's float32 decided a tie the other way (on cpu/wasm the search decides it)`;
    }
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
async function apgdRows(
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
): Promise<void> {
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
    try {
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
      const outs: APGDSingleRunResult[] = [];
      const free = (r: APGDSingleRunResult) => tf.dispose([r.xBest, r.xBestAdv, r.lossBest, r.robust]);
      try {
        for (let i = 0; i < n; i++) {
          const found = await searchTies<APGDSingleRunResult>(
            async ({ sign, mask }) => {
              const parts = [tf.slice(x, i, 1), tf.slice(y, i, 1), tf.slice(init, i, 1), ...(targets ? [tf.slice(targets, i, 1)] : [])];
              const [xi, yi, initI, ti] = parts as [tf.Tensor4D, tf.Tensor1D, tf.Tensor4D, tf.Tensor1D | undefined];
              try {
                return await apgdSingleRun({ ...victim, model: model.withMaskRule(mask) }, xi, yi, {
                  eps,
                  norm: c.norm,
                  loss: c.loss,
                  iterations,
                  rho,
                  init: initI,
                  targets: ti,
                  sign: (g) => sign(g, g),
                });
              } finally {
                tf.dispose(parts);
              }
            },
            async (r) => {
              const [xBest, xBestAdv, lossBest, robust] = await Promise.all([r.xBest, r.xBestAdv, r.lossBest, r.robust].map((t) => t.data()));
              const images = [xBest, xBestAdv].every((d, j) => relativeError(d as Float32Array, refs[j].slice(i * per, (i + 1) * per)).rel <= tolerance);
              const lossOk = Math.abs(lossBest[0] - refs[2][i]) <= tolerance * Math.max(lossScale, Number.MIN_VALUE);
              return images && lossOk && robust[0] === refs[3][i];
            },
            APGD_MAX_RUNS,
            free,
          );
          ties.sign += found.ties.sign;
          ties.relu += found.ties.relu;
          flipped += found.flipped;
          runs += found.runs;
          outs.push(found.adv);
        }
        const pick = (f: (r: APGDSingleRunResult) => tf.Tensor) => tf.concat(outs.map(f), 0);
        const values: tf.Tensor[] = [pick((r) => r.xBest), pick((r) => r.xBestAdv), pick((r) => r.lossBest), pick((r) => r.robust)];
        let data: Float32Array[];
        try {
          data = (await Promise.all(values.map((t) => t.data()))) as Float32Array[];
        } finally {
          tf.dispose(values);
        }
        APGD_OUTPUTS.forEach((o, j) => {
          const name = `${prefix}.${o}`;
          const ref = need(name);
          const ours = data[j];
          const d = ref.shape.length === 4 ? nhwcToNchw({ shape: values[j].shape, data: ours }).data : ours;
          const { rel, abs } = d.length === ref.data.length ? relativeError(d, ref.data) : { rel: Infinity, abs: Infinity };
          rows.push({ name, shape: ref.shape, relError: rel, maxAbsError: abs, pass: rel <= tolerance });
          done.add(name);
        });
      } finally {
        for (const r of outs) free(r);
      }
      if (ties.sign + ties.relu > 0) {
        rows[rows.length - 4].note = `float32 ties: ${ties.sign} gradient sign(s), ${ties.relu} ReLU mask(s), ${flipped} decided against float32; ${runs} run(s) for ${n} examples`;
      }
      done.add(targetKey);

      // the same algorithm (apgdControl) with the model evaluated in float64, AutoAttack's precision:
      // checks the algorithm without float32's rounding (DLR trajectories are ill-conditioned, see apgdFloat64)
      const [xv, yv, initV, tv] = await Promise.all([x.data(), y.data(), init.data(), targets?.data()]);
      const r64 = await apgdFloat64(model64 ??= await CNNF64.fromModel(model), {
        x: Float64Array.from(xv), n, labels: Array.from(yv), init: Float64Array.from(initV),
        targets: tv ? Array.from(tv) : undefined, loss: c.loss, norm: c.norm, eps, iterations, rho,
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
    } finally {
      init.dispose();
      targets?.dispose();
    }
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
export function apgdFloat64(model: CNNF64, a: APGDFloat64Input): Promise<{ xBest: Float64Array; xBestAdv: Float64Array; lossBest: Float64Array; robust: Uint8Array }> {
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
