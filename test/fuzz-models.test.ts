/**
 * Seeded structure-aware fuzzing of TF.js model.json files (issue 22), beside test/fuzz.test.ts's
 * byte-level fuzzing of the other formats: each mutant of a functional LayersModel, a Sequential one
 * and a GraphModel rewires, drops, duplicates or retypes parts of the JSON tree (a layer name swapped
 * for another makes unresolvable inputs and cycles; a number swapped for 0, -1, 1e9 or 1e400 makes
 * absurd shapes and sizes) and is read and built as `cnnf eval` does. Each must be refused with a
 * one-line UsageError or load as a model whose logits on a batch of 3 are finite and [3, classes].
 * 0 crashes (any other exception), 0 over the time budget, 0 accepted out-of-range models.
 *
 * `npm test` runs 100 mutants per seed model (300 in all); CNNF_FUZZ_MODELS=N runs N per seed,
 * CNNF_FUZZ_SEED=S changes the seed.
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm } from './helpers/tf.js';
import { UsageError } from '../src/errors.js';
import { mulberry32 } from '../src/data/rng.js';
import { buildTfjsModel, readTfjsModelFile, saveTfjsLayersModel } from '../src/io/tfjs.js';
import { MAX_INPUT_VALUES } from '../src/models/foreign.js';

const PER_SEED = Number(process.env.CNNF_FUZZ_MODELS ?? 100);
const SEED = Number(process.env.CNNF_FUZZ_SEED ?? 20261127);
/** A read + build taking longer than this is counted as over budget (a valid build takes milliseconds). */
const TIME_BUDGET_MS = 5000;

type Rng = () => number;
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

/** Every [container, key] of a JSON tree (arrays by index), depth first. */
function slots(root: Json): Array<[Json[] | { [k: string]: Json }, string | number]> {
  const out: Array<[Json[] | { [k: string]: Json }, string | number]> = [];
  const walk = (v: Json): void => {
    if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); walk(x); });
    else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) { out.push([v, k]); walk(v[k]); }
  };
  walk(root);
  return out;
}

const NUMBERS = [0, -1, 1, 2, 3, 7, 1e9, -1e9, 0.5, 1e6, 6000, 40000, 2 ** 31, 4096];

/** One structural mutation of a model.json tree; some are finished as text (1e400, truncation). */
function mutate(rng: Rng, doc: Json): string {
  const all = slots(doc);
  const strings = all.filter(([c, k]) => typeof (c as Record<string | number, Json>)[k] === 'string');
  const names = [...new Set(strings.map(([c, k]) => (c as Record<string | number, Json>)[k] as string))];
  const get = (c: Json[] | { [k: string]: Json }, k: string | number): Json => (c as Record<string | number, Json>)[k];
  const set = (c: Json[] | { [k: string]: Json }, k: string | number, v: Json): void => { (c as Record<string | number, Json>)[k] = v; };
  const kind = int(rng, 7);
  for (let n = 1 + int(rng, 3); n > 0 && all.length > 0; n--) {
    const [c, k] = pick(rng, all);
    const v = get(c, k);
    if (kind === 0 && strings.length > 0) {
      // a name where another was: rewires inbound nodes, inputs, outputs (cycles, missing layers)
      const [sc, sk] = pick(rng, strings);
      set(sc, sk, pick(rng, names));
    } else if (kind === 1) {
      const nums = all.filter(([cc, kk]) => typeof get(cc, kk) === 'number');
      if (nums.length > 0) {
        const [nc, nk] = pick(rng, nums);
        set(nc, nk, pick(rng, NUMBERS));
      }
    } else if (kind === 2 && Array.isArray(c)) {
      c.splice(k as number, 1); // drop an element
    } else if (kind === 3 && Array.isArray(c)) {
      c.splice(k as number, 0, structuredClone(v)); // duplicate an element
    } else if (kind === 4) {
      set(c, k, pick(rng, [null, 'x', [], {}, true, -1] as Json[]));
    } else if (kind === 5 && !Array.isArray(c)) {
      delete (c as Record<string, Json>)[k as string];
    }
  }
  let text = JSON.stringify(doc);
  if (kind === 6) {
    // a number beyond float64 (JSON.parse: Infinity), or a truncation
    const nums = [...text.matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)];
    if (nums.length > 0 && rng() < 0.7) {
      const m = pick(rng, nums);
      text = text.slice(0, m.index) + pick(rng, ['1e400', '-1e400', '1e-400', '3.4e38']) + text.slice(m.index! + m[0].length);
    } else text = text.slice(0, int(rng, text.length));
  }
  return text;
}

interface Seed { name: string; dir: string; json: string }

async function layersSeed(root: string, name: string, net: tfl.LayersModel): Promise<Seed> {
  const dir = join(root, name);
  await saveTfjsLayersModel(net, dir);
  net.dispose();
  return { name, dir, json: readFileSync(join(dir, 'model.json'), 'utf8') };
}

function graphSeed(root: string): Seed {
  const dir = join(root, 'graph');
  mkdirSync(dir);
  const dim = (...v: number[]) => ({ dim: v.map((x) => ({ size: String(x) })) });
  const json = JSON.stringify({
    format: 'graph-model',
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: dim(-1, 8, 8, 1) } } },
        { name: 'shape', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: dim(2) } } } },
        { name: 'W', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: dim(64, 4) } } } },
        { name: 'id', op: 'Identity', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } },
        { name: 'flat', op: 'Reshape', input: ['id', 'shape'], attr: { T: { type: 'DT_FLOAT' }, Tshape: { type: 'DT_INT32' } } },
        { name: 'logits', op: 'MatMul', input: ['flat', 'W'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } },
      ],
      library: {},
      versions: {},
    },
    weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'shape', shape: [2], dtype: 'int32' }, { name: 'W', shape: [64, 4], dtype: 'float32' }] }],
  });
  const rng = mulberry32(3);
  writeFileSync(join(dir, 'model.json'), json);
  writeFileSync(join(dir, 'w.bin'), Buffer.concat([Buffer.from(new Int32Array([-1, 64]).buffer), Buffer.from(Float32Array.from({ length: 256 }, () => rng() - 0.5).buffer)]));
  return { name: 'graph', dir, json };
}

/** Reads and builds `dir` as `cnnf eval` does; returns the problems of an accepted model. */
async function load(dir: string): Promise<string[]> {
  const m = await buildTfjsModel(readTfjsModelFile(dir));
  const problems: string[] = [];
  try {
    const { inputShape, numClasses } = m.model;
    if (!(numClasses >= 2)) problems.push(`numClasses ${numClasses}`);
    const values = inputShape.reduce((a, b) => a * b, 1);
    if (!inputShape.every((d) => Number.isInteger(d) && d > 0) || values > MAX_INPUT_VALUES) problems.push(`input shape ${inputShape.join('x')}`);
    else {
      const x = tf.randomUniform([3, ...inputShape], -1, 1, 'float32', 5) as tf.Tensor4D;
      const y = m.model.logits(x);
      if (y.shape.join(',') !== `3,${numClasses}`) problems.push(`logits shape ${y.shape.join('x')}`);
      else if (!Array.from(y.dataSync()).every(Number.isFinite)) problems.push('non-finite logits');
      tf.dispose([x, y]);
    }
  } catch (e) {
    // a UsageError from logits() on a batch (refused, one line) is fine; anything else is a crash
    if (!(e instanceof UsageError)) throw e;
  } finally {
    m.model.dispose();
  }
  return problems;
}

let seeds: Seed[] = [];

beforeAll(async () => {
  await wasm();
  const root = mkdtempSync(join(tmpdir(), 'cnnf-fuzz-models-'));
  const input = tfl.input({ shape: [8, 8, 1], name: 'img' });
  const c = tfl.layers.conv2d({ filters: 2, kernelSize: 3, name: 'conv', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }).apply(input) as tfl.SymbolicTensor;
  const f = tfl.layers.flatten({ name: 'flat' }).apply(c) as tfl.SymbolicTensor;
  const d1 = tfl.layers.dense({ units: 6, name: 'd1', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }).apply(f) as tfl.SymbolicTensor;
  const add = tfl.layers.add({ name: 'add' }).apply([d1, tfl.layers.dense({ units: 6, name: 'd2', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }) }).apply(f) as tfl.SymbolicTensor]) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, name: 'out', kernelInitializer: tfl.initializers.glorotUniform({ seed: 4 }) }).apply(add) as tfl.SymbolicTensor;
  const seq = tfl.sequential({ layers: [
    tfl.layers.flatten({ inputShape: [8, 8, 1] }),
    tfl.layers.dense({ units: 5, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }) }),
    tfl.layers.dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 6 }) }),
  ] });
  seeds = [await layersSeed(root, 'functional', tfl.model({ inputs: input, outputs: out })), await layersSeed(root, 'sequential', seq), graphSeed(root)];
});

describe(`fuzzing model.json: ${PER_SEED} seeded structural mutants per seed model (seed ${SEED})`, () => {
  it('0 crashes, 0 over the time budget, 0 accepted out-of-range models; the seeds load', async () => {
    const rng = mulberry32(SEED);
    const tally = { cases: 0, refused: 0, accepted: 0, crashes: [] as string[], slow: [] as string[], outOfRange: [] as string[], maxMs: 0 };
    for (const s of seeds) {
      expect(await load(s.dir), s.name).toEqual([]);
      for (let i = 0; i < PER_SEED; i++) {
        const text = mutate(rng, JSON.parse(s.json) as Json);
        writeFileSync(join(s.dir, 'model.json'), text);
        const tag = `${s.name} #${i}`;
        const t0 = performance.now();
        try {
          const problems = await load(s.dir);
          tally.accepted++;
          if (problems.length > 0) tally.outOfRange.push(`${tag}: ${problems.join('; ')}`);
        } catch (e) {
          if (e instanceof UsageError && !e.message.includes('\n') && e.exitCode === 2) tally.refused++;
          else tally.crashes.push(`${tag}: ${e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e)}`);
        }
        const ms = performance.now() - t0;
        tally.maxMs = Math.max(tally.maxMs, ms);
        if (ms > TIME_BUDGET_MS) tally.slow.push(`${tag}: ${ms.toFixed(0)} ms`);
        tally.cases++;
      }
      writeFileSync(join(s.dir, 'model.json'), s.json);
    }
    console.log(`[fuzz] model.json: ${tally.cases} mutants, ${tally.refused} refused, ${tally.accepted} accepted, ${tally.crashes.length} crashes, ` +
      `${tally.slow.length} over budget, ${tally.outOfRange.length} out of range; slowest ${tally.maxMs.toFixed(0)} ms`);
    expect(tally.crashes.slice(0, 5)).toEqual([]);
    expect(tally.slow.slice(0, 5)).toEqual([]);
    expect(tally.outOfRange.slice(0, 5)).toEqual([]);
    // the mutants are not all harmless: a good share must be refused
    expect(tally.refused).toBeGreaterThan(tally.cases * 0.2);
    expect(tally.cases).toBe(3 * PER_SEED);
  }, 300_000);
});
