/**
 * Seeded mutation fuzzing of five file formats cnnf reads: a checkpoint (safetensors + metadata),
 * a results file, an attack suite, an IDX set (raw and gzipped images and labels) and a shard file
 * (merged: its results must validate, counts match their bitsets, robust examples are clean-correct). Each mutant
 * (bit flips, byte rewrites, truncations, splices, and format-aware header rewrites) is parsed with
 * a time and memory budget, and must either be refused with a one-line UsageError or pass with
 * every value in range. 0 crashes (any other exception), 0 hangs, 0 out-of-range acceptances.
 *
 * `npm test` runs 500 mutants per format (2,500 in all, well under a minute); CNNF_FUZZ=N runs N per
 * format, CNNF_FUZZ_SEED=S changes the seed. The numbers of the last run are printed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';
import { sampleResults } from './helpers/results-sample.js';
import { UsageError } from '../src/errors.js';
import { mulberry32 } from '../src/data/rng.js';
import { checkpointMetadata, parseCheckpoint } from '../src/io/checkpoint.js';
import { encodeSafetensors } from '../src/io/safetensors.js';
import { parseJsonText } from '../src/io/json.js';
import { validateResults } from '../src/report/results-file.js';
import { evaluateGate } from '../src/gate/gate.js';
import { parseSuite } from '../src/eval/suite.js';
import { getAttack } from '../src/attacks/index.js';
import { decodeMaybeGzip, encodeIdxImages, encodeIdxLabels, IDX_IMAGES_MAGIC, parseIdxImages, parseIdxLabels } from '../src/data/idx.js';
import { makeConfig, paramSpecs } from '../src/models/arch.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll } from 'vitest';
import { mergeShards, planToJson, planUnits, runIdOf, parsePlan, PLAN_FORMAT, SHARD_FORMAT, suiteToJson, type EvalPlan } from '../src/eval/index.js';
import { probeCheckMessage } from '../src/eval/checks.js';
import { chooseTargets } from '../src/attacks/index.js';
import { deriveSeed } from '../src/data/rng.js';
import { decodeOutcomes } from '../src/eval/stats.js';
import { VERSION } from '../src/version.js';

const PER_FORMAT = Number(process.env.CNNF_FUZZ ?? 500);
const SEED = Number(process.env.CNNF_FUZZ_SEED ?? 20261127);
/**
 * A parse using more CPU time than this is counted as a hang. CPU time of this process, not wall time:
 * on a loaded machine a parse can wait for a core far longer than it computes.
 */
const TIME_BUDGET_MS = 2000;
/** Growth of (heap + array buffers) a single parse may cause. */
const MEMORY_BUDGET = 256 * 1024 * 1024;

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);

// ---------------------------------------------------------------------------------- mutators

const INTERESTING_BYTES = [0x00, 0xff, 0x7f, 0x80, 0x01, 0x30, 0x39, 0x2d, 0x22, 0x7b, 0x7d, 0x2c, 0x65, 0x5c, 0x5b, 0x5d];

function bitFlips(rng: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0) return out;
  for (let k = 1 + int(rng, 8); k > 0; k--) {
    const i = int(rng, out.length);
    out[i] = out[i]! ^ (1 << int(rng, 8));
  }
  return out;
}

function byteRewrites(rng: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0) return out;
  for (let k = 1 + int(rng, 4); k > 0; k--) out[int(rng, out.length)] = pick(rng, INTERESTING_BYTES);
  return out;
}

function truncation(rng: Rng, b: Buffer): Buffer {
  // biased to the header region, where truncation is most interesting
  const at = rng() < 0.5 ? int(rng, Math.min(b.length, 256)) : int(rng, b.length);
  return Buffer.from(b.subarray(0, at));
}

function splice(rng: Rng, b: Buffer): Buffer {
  if (b.length === 0) return Buffer.from(b);
  const len = 1 + int(rng, Math.min(512, b.length));
  const from = int(rng, b.length - len + 1);
  const to = int(rng, b.length);
  const chunk = b.subarray(from, from + len);
  // insert a copy (duplicating a region) or overwrite in place
  return rng() < 0.5 ? Buffer.concat([b.subarray(0, to), chunk, b.subarray(to)]) : (() => {
    const out = Buffer.from(b);
    chunk.copy(out, to);
    return out;
  })();
}

const INTERESTING_NUMBERS = ['0', '-0', '1', '-1', '2', '0.5', '7', '1e9', '-1e9', '1e308', '-1e308', '1e309', '1e-320', '9007199254740993', '4294967296', '3.4e38', '5', '-3', '0.99', '1.0000001'];

/** Replaces a random number literal of a JSON text (or inserts a duplicate key, or drops a field). */
function jsonRewrite(rng: Rng, text: string): string {
  const r = rng();
  if (r < 0.7) {
    const nums = [...text.matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)];
    if (nums.length === 0) return text;
    const m = pick(rng, nums);
    return text.slice(0, m.index) + pick(rng, INTERESTING_NUMBERS) + text.slice(m.index! + m[0].length);
  }
  const keys = [...text.matchAll(/"([A-Za-z_@.:0-9-]+)"\s*:\s*/g)];
  if (keys.length === 0) return text;
  const k = pick(rng, keys);
  if (r < 0.85) {
    // a duplicate of this key with another value, right before it (JSON.parse keeps the last)
    return `${text.slice(0, k.index)}"${k[1]}": ${pick(rng, INTERESTING_NUMBERS)}, ${text.slice(k.index)}`;
  }
  // a string value where a number or object was
  return `${text.slice(0, k.index! + k[0].length)}"x" ${text.slice(k.index! + k[0].length).replace(/^[^,}\]]*/, '')}`;
}

// ---------------------------------------------------------------------------------- targets

interface Target {
  name: string;
  seeds: Buffer[];
  /** Format-aware header rewrite. */
  rewrite(rng: Rng, b: Buffer): Buffer;
  /** Parses; returns the problems of an accepted value (empty = in range). Throws UsageError to refuse. */
  parse(b: Buffer): string[];
}

function checkpointTarget(rng: Rng): Target {
  const config = makeConfig({ arch: 'small', fc: [16], numClasses: 10, ind: 1, cycles: 1, resParam: 0.1 });
  const tensors = new Map(paramSpecs(config).map((p) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    return [p.name, { shape: p.shape, data: Float32Array.from({ length: n }, () => (rng() - 0.5) * 0.2) }];
  }));
  const meta = checkpointMetadata(config, { classNames: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'] });
  const f32 = Buffer.concat(encodeSafetensors(tensors, meta));
  const f16 = Buffer.concat(encodeSafetensors(new Map([...tensors].map(([k, t]) => [k, { ...t, dtype: 'F16' as const }])), meta));
  return {
    name: 'checkpoint',
    seeds: [f32, f16],
    rewrite(r, b) {
      if (b.length < 8) return bitFlips(r, Buffer.concat([b, Buffer.alloc(8 - b.length)])); // after a truncation
      const n = Number(b.readBigUInt64LE(0));
      if (r() < 0.2) {
        const out = Buffer.from(b);
        out.writeBigUInt64LE(pick(r, [0n, 1n, 7n, BigInt(n - 1), BigInt(n + 1), 1n << 63n, (1n << 64n) - 1n, BigInt(int(r, 2 ** 31))]), 0);
        return out;
      }
      if (n < 2 || 8 + n > b.length) return bitFlips(r, b);
      const head = b.subarray(8, 8 + n).toString('utf8');
      let text = jsonRewrite(r, head);
      if (r() < 0.3) {
        // metadata values are JSON inside strings: rewrite one of them
        const keys = ['num_classes', 'fc', 'ind', 'cycles', 'res_param', 'class_names', 'arch', 'readout', 'format'];
        const key = pick(r, keys);
        const value = pick(r, ['"1"', '"1e9"', '"-1"', '"[1e9]"', '"[16,16]"', '"[]"', '"null"', '"\\"x\\""', '"2"', '"101"', '"NaN"', '"[\\"a\\"]"', '"0.5"', '"1e309"']);
        text = text.replace(new RegExp(`"${key}":"(?:[^"\\\\]|\\\\.)*"`), `"${key}":${value}`);
      }
      const json = Buffer.from(text);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([len, json, b.subarray(8 + n)]);
    },
    parse(b) {
      const ck = parseCheckpoint(b, 'fuzz.safetensors');
      const problems: string[] = [];
      const cfg = makeConfig(ck.info.config);
      if (JSON.stringify(cfg) !== JSON.stringify(ck.info.config)) problems.push('config not canonical');
      if (ck.info.classNames.length !== cfg.numClasses) problems.push('class names vs classes');
      for (const p of paramSpecs(cfg)) {
        const a = ck.arrays.get(p.name);
        if (!a || a.length !== p.shape.reduce((x, y) => x * y, 1)) problems.push(`tensor ${p.name} size`);
        else if (!a.every(Number.isFinite)) problems.push(`tensor ${p.name} not finite`);
      }
      if (ck.arrays.size !== paramSpecs(cfg).length) problems.push('extra tensors');
      return problems;
    },
  };
}

function resultsTarget(): Target {
  const text = JSON.stringify(sampleResults(), null, 1);
  return {
    name: 'results',
    seeds: [Buffer.from(text), Buffer.from(JSON.stringify(sampleResults()))],
    rewrite: (r, b) => Buffer.from(jsonRewrite(r, b.toString('utf8'))),
    parse(b) {
      const res = validateResults(parseJsonText(b.toString('utf8'), 'fuzz.json'), 'fuzz.json');
      const problems: string[] = [];
      const unit = (v: unknown, what: string) => {
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) problems.push(`${what} = ${String(v)}`);
      };
      for (const m of res.models) {
        unit(m.clean.accuracy, `${m.name} clean`);
        for (const [k, v] of Object.entries(m.metrics)) unit(v, `${m.name} metrics ${k}`);
        if (m.metrics.clean !== undefined && m.metrics.clean !== m.clean.accuracy) problems.push(`${m.name} metrics.clean disagrees`);
        for (const a of m.attacks) for (const p of a.points) unit(p.accuracy, `${m.name} ${a.name}@${p.eps}`);
        for (const w of m.worstCase) if (w.accuracy > m.clean.accuracy + 1e-9) problems.push(`${m.name} worst above clean`);
      }
      // the gate must run on anything validation accepts, and only report values in range
      const rep = evaluateGate(res, ['clean >= 0.5', 'pgd7@0.2:first >= 0', 'worst@0.2 >= 0']);
      for (const c of rep.checks) if (c.actual !== null) unit(c.actual, `gate ${c.model} ${c.metric}`);
      return problems;
    },
  };
}

function suiteTarget(): Target {
  const seeds = ['quick.json', 'paper-fmnist.json', 'main.json', 'autoattack.json'].map((f) => readFileSync(join(ROOT, 'attacks', f)));
  return {
    name: 'suite',
    seeds,
    rewrite: (r, b) => Buffer.from(jsonRewrite(r, b.toString('utf8'))),
    parse(b) {
      const s = parseSuite(parseJsonText(b.toString('utf8'), 'fuzz-suite.json'), 'fuzz-suite.json');
      const problems: string[] = [];
      const names = new Set<string>();
      for (const a of s.attacks) {
        if (names.has(a.name)) problems.push(`duplicate attack ${a.name}`);
        names.add(a.name);
        for (const e of a.eps) if (!Number.isFinite(e) || e < 0) problems.push(`${a.name} eps ${e}`);
        // every parameter within its registry bounds (issue 10 item 4: steps 1e9 / restarts 1e9 must not pass)
        const d = getAttack(a.method);
        for (const [k, v] of Object.entries(a.params)) {
          const ps = d.params[k];
          if (!ps) problems.push(`${a.name}.${k} is not a parameter of ${a.method}`);
          else if (typeof v === 'number') {
            if (!Number.isFinite(v)) problems.push(`${a.name}.${k} = ${v}`);
            if (ps.type === 'int' && !Number.isInteger(v)) problems.push(`${a.name}.${k} = ${v} not an integer`);
            if (ps.min !== undefined && v < ps.min) problems.push(`${a.name}.${k} = ${v} < ${ps.min}`);
            if (ps.max !== undefined && v > ps.max) problems.push(`${a.name}.${k} = ${v} > ${ps.max}`);
            if (ps.positive && !(v > 0)) problems.push(`${a.name}.${k} = ${v} not positive`);
          }
        }
      }
      return problems;
    },
  };
}

function idxTarget(rng: Rng): Target {
  const count = 12;
  const images = Buffer.from(encodeIdxImages(Uint8Array.from({ length: count * 784 }, () => int(rng, 256)), count));
  const labels = Buffer.from(encodeIdxLabels(Array.from({ length: count }, () => int(rng, 10))));
  const rewriteHeader = (r: Rng, raw: Buffer): Buffer => {
    const out = Buffer.from(raw);
    const words = Math.min(4, Math.floor(out.length / 4));
    if (words === 0) return out;
    const w = int(r, words);
    out.writeUInt32BE(pick(r, [0, 1, 27, 28, 29, count - 1, count + 1, 2049, 2051, 0x7fffffff, 0x80000000, 0xffffffff, int(r, 2 ** 32)]), w * 4);
    return out;
  };
  return {
    name: 'idx',
    seeds: [images, labels, gzipSync(images), gzipSync(labels)],
    rewrite(r, b) {
      // gzipped seeds: rewrite the decompressed header and recompress (a header that lies about the payload)
      if (b[0] === 0x1f && b[1] === 0x8b) {
        try {
          return gzipSync(rewriteHeader(r, Buffer.from(decodeMaybeGzip(b, 'seed'))));
        } catch {
          return bitFlips(r, b);
        }
      }
      return rewriteHeader(r, b);
    },
    parse(b) {
      const raw = decodeMaybeGzip(b, 'fuzz-idx');
      const magic = raw.length >= 4 ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(0, false) : 0;
      const problems: string[] = [];
      if (magic === IDX_IMAGES_MAGIC) {
        const im = parseIdxImages(raw, 'fuzz-idx');
        if (im.pixels.length !== im.count * 784 || im.rows !== 28 || im.cols !== 28) problems.push('image size');
      } else {
        const l = parseIdxLabels(raw, 'fuzz-idx');
        if (l.length !== raw.length - 8) problems.push('label count');
      }
      return problems;
    },
  };
}

/**
 * A shard file (one shard of 1) built without a model: a plan of 8 examples in batches of 4, FGSM
 * (untargeted), a targeted PGD and the probe checks, with self-consistent predictions. Accepted
 * mutants must merge to results that validate, with accuracies in range, counts equal to their
 * bitsets' popcounts and untargeted robust examples a subset of the clean-correct ones.
 */
function shardTarget(rng: Rng): Target {
  const dir = mkdtempSync(join(tmpdir(), 'cnnf-fuzz-shard-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const labels = Array.from({ length: 8 }, () => int(rng, 10));
  const hex = (n: number): string => Array.from({ length: n }, () => int(rng, 16).toString(16)).join('');
  const names = 'abcdefghij'.split('');
  const suite = parseSuite({ name: 'fuzz', attacks: [
    { name: 'fgsm', method: 'fgsm', eps: [0.1, 0.2] },
    { name: 'pgd-t', method: 'pgd', eps: [0.1], steps: 1, targeted: true, target: 'random' },
  ] }, 'fuzz');
  const plan: EvalPlan = parsePlan({
    format: PLAN_FORMAT, tool: { name: 'cnnf', version: VERSION }, backend: 'wasm', seed: 9, batchSize: 4, dataset: 'fashion-mnist', testSubset: 'first:8',
    examples: 8, numClasses: 10, classNames: names, shape: [28, 28, 1], dataSha256: hex(64), labels, suite: suiteToJson(suite), checks: true, probeSize: 4, dumpCount: 0,
    models: [{ name: 'm', path: 'm.safetensors', sha256: hex(64), arch: 'fmnist/cnn', cycles: 0, readout: 'last', classNames: names }],
  }, 'fuzz');
  const evidence = { mode: 'first', zeroGradientExamples: 1, probeExamples: 4 };
  const units = planUnits(plan).map((u) => {
    const ys = labels.slice(u.batch * 4, u.batch * 4 + 4);
    const pred = () => ys.map((y) => (rng() < 0.6 ? y : int(rng, 10)));
    if (u.kind === 'probe') return { id: u.id, kind: 'probe', checks: [{ id: 'zero-gradient', number: 1, severity: 'warning', model: 'm', message: probeCheckMessage(1, evidence), evidence }] };
    if (u.kind === 'clean') {
      const c = pred();
      return { id: u.id, kind: 'clean', outcome: { clean: c, cleanFirst: c, preds: [], targets: [], advs: [], stages: [], ms: [] } };
    }
    const spec = plan.suite.attacks[u.job!]!;
    const targets = spec.targeted ? Array.from(chooseTargets(Int32Array.from(ys), 10, spec.target, mulberry32(deriveSeed(plan.seed, `targets|${spec.name}|${u.batch * 4}`)))) : null;
    return { id: u.id, kind: 'attack', outcome: { clean: [], cleanFirst: [], preds: [spec.eps.map(pred)], targets: [targets], advs: [spec.eps.map(() => null)], stages: [spec.eps.map(() => null)], ms: [3] } };
  });
  const shard = { format: SHARD_FORMAT, runId: runIdOf(plan), shard: { index: 1, count: 1, source: 'fuzz' }, plan: planToJson(plan), units, provenance: { command: 'fuzz', createdAt: '2026-01-01T00:00:00Z', durationSeconds: 1, node: 'v20', platform: 'linux' } };
  let k = 0;
  return {
    name: 'shard',
    seeds: [Buffer.from(JSON.stringify(shard)), Buffer.from(JSON.stringify(shard, null, 1))],
    rewrite: (r, b) => Buffer.from(jsonRewrite(r, b.toString('utf8'))),
    parse(b) {
      const path = join(dir, `m${k++ % 4}.json`);
      writeFileSync(path, b);
      const res = validateResults(mergeShards([path], 'fuzz').results, 'fuzz merged');
      const problems: string[] = [];
      const m = res.models[0]!;
      const bits = (c: { outcomes?: string; correct?: number; n?: number; accuracy: number }, what: string): Uint8Array | null => {
        if (!(c.accuracy >= 0 && c.accuracy <= 1)) problems.push(`${what} accuracy ${c.accuracy}`);
        const o = c.outcomes ? decodeOutcomes(c.outcomes, 8) : null;
        if (!o) return null;
        const ones = o.reduce((t, x) => t + x, 0);
        if (c.correct !== undefined && c.correct !== ones) problems.push(`${what} correct ${c.correct} but ${ones} bits set`);
        return o;
      };
      const clean = bits(m.clean, 'clean');
      for (const a of m.attacks) {
        for (const p of a.points) {
          const o = bits(p, `${a.name}@${p.eps}`);
          if (!a.targeted && clean && o) o.forEach((x, i) => { if (x > clean[i]!) problems.push(`${a.name}@${p.eps}: example ${i} robust but wrong on the clean pass`); });
        }
      }
      for (const w of m.worstCase) if (w.accuracy > m.clean.accuracy + 1e-9) problems.push('worst above clean');
      for (const c of res.checks ?? []) if (c.number === 1 && c.message !== probeCheckMessage(1, c.evidence)) problems.push('a check message that is not cnnf\'s');
      return problems;
    },
  };
}

// ---------------------------------------------------------------------------------- runner

interface Tally { cases: number; refused: number; accepted: number; crashes: string[]; hangs: string[]; outOfRange: string[]; overMemory: string[]; maxMs: number; ms: number; byMutator: Record<string, number> }

function fuzz(target: Target, rng: Rng, n: number): Tally {
  const mutators: Array<[string, (r: Rng, b: Buffer) => Buffer]> = [
    ['bitflip', bitFlips], ['bytes', byteRewrites], ['truncate', truncation], ['splice', splice], ['header', (r, b) => target.rewrite(r, b)],
  ];
  const t: Tally = { cases: 0, refused: 0, accepted: 0, crashes: [], hangs: [], outOfRange: [], overMemory: [], maxMs: 0, ms: 0, byMutator: {} };
  for (let i = 0; i < n; i++) {
    const seed = pick(rng, target.seeds);
    const [mname, mutate] = pick(rng, mutators);
    let input = mutate(rng, seed);
    if (rng() < 0.15) input = pick(rng, mutators)[1](rng, input); // sometimes two mutations
    t.byMutator[mname] = (t.byMutator[mname] ?? 0) + 1;
    const mem0 = process.memoryUsage();
    const cpu0 = process.cpuUsage();
    const tag = `${target.name} #${i} (${mname}, ${input.length} bytes)`;
    try {
      const problems = target.parse(input);
      t.accepted++;
      if (problems.length > 0) t.outOfRange.push(`${tag}: ${problems.slice(0, 3).join('; ')}`);
    } catch (e) {
      if (e instanceof UsageError && !e.message.includes('\n') && e.exitCode === 2) t.refused++;
      else t.crashes.push(`${tag}: ${e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]}` : String(e)}`);
    }
    const cpu = process.cpuUsage(cpu0);
    const ms = (cpu.user + cpu.system) / 1000;
    const mem1 = process.memoryUsage();
    const grown = mem1.heapUsed + mem1.arrayBuffers - (mem0.heapUsed + mem0.arrayBuffers);
    if (grown > MEMORY_BUDGET) t.overMemory.push(`${tag}: +${(grown / 2 ** 20).toFixed(0)} MiB`);
    if (ms > TIME_BUDGET_MS) t.hangs.push(`${tag}: ${ms.toFixed(0)} ms`);
    t.maxMs = Math.max(t.maxMs, ms);
    t.ms += ms;
    t.cases++;
  }
  return t;
}

describe(`fuzzing the readers: ${PER_FORMAT} seeded mutants per format (seed ${SEED})`, () => {
  const rng = mulberry32(SEED);
  const targets = [checkpointTarget(rng), resultsTarget(), suiteTarget(), idxTarget(rng), shardTarget(rng)];
  const tallies: Array<[string, Tally]> = [];
  for (const target of targets) {
    it(`${target.name}: 0 crashes, 0 hangs, 0 over-budget, 0 accepted out-of-range values`, () => {
      // the unmutated seeds are accepted, in range (the fuzzer's oracle is not vacuous)
      for (const s of target.seeds) expect(target.parse(s)).toEqual([]);
      const t = fuzz(target, rng, PER_FORMAT);
      tallies.push([target.name, t]);
      console.log(`[fuzz] ${target.name}: ${t.cases} mutants, ${t.refused} refused, ${t.accepted} accepted, ${t.crashes.length} crashes, ` +
        `${t.hangs.length} hangs, ${t.overMemory.length} over memory, ${t.outOfRange.length} out of range; ` +
        `${(t.ms / 1000).toFixed(1)} s of CPU, slowest ${t.maxMs.toFixed(0)} ms; mutators ${JSON.stringify(t.byMutator)}`);
      expect(t.crashes.slice(0, 5)).toEqual([]);
      expect(t.hangs.slice(0, 5)).toEqual([]);
      expect(t.overMemory.slice(0, 5)).toEqual([]);
      expect(t.outOfRange.slice(0, 5)).toEqual([]);
      // most mutants must be refused: a fuzzer whose mutants all parse tests nothing
      expect(t.refused).toBeGreaterThan(t.cases * 0.3);
    });
  }
  it('at least 2,000 mutants in all', () => {
    expect(tallies.reduce((a, [, t]) => a + t.cases, 0)).toBeGreaterThanOrEqual(Math.min(2500, 5 * PER_FORMAT));
  });
});
