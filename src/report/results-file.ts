/**
 * Reading and validating a results file (`cnnf eval` output) for `cnnf report` and `cnnf gate`.
 * Every problem becomes a one-line UsageError naming the file and the offending field.
 */
import { UsageError } from '../errors.js';
import { attackMethods, hasAttack } from '../attacks/index.js';
import { readJsonFile } from '../io/json.js';
import { metricKey, RESULTS_FORMAT, type EvalResults } from '../eval/results.js';
import { decodeOutcomes, MAX_OUTCOMES } from '../eval/stats.js';
import { INPUT_LIMITS } from '../io/files.js';
import { BATCH_SIZE_SOURCES } from '../eval/memory.js';

type Json = unknown;

class Checker {
  constructor(private readonly source: string) {}

  fail(path: string, what: string): never {
    throw new UsageError(`${this.source}: ${path} ${what}`);
  }

  obj(v: Json, path: string): Record<string, Json> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, v === undefined ? 'is missing' : 'must be an object');
    return v as Record<string, Json>;
  }

  arr(v: Json, path: string, { nonEmpty = false } = {}): Json[] {
    if (!Array.isArray(v)) this.fail(path, v === undefined ? 'is missing' : 'must be an array');
    if (nonEmpty && v.length === 0) this.fail(path, 'must not be empty');
    return v;
  }

  str(v: Json, path: string): string {
    if (typeof v !== 'string') this.fail(path, v === undefined ? 'is missing' : 'must be a string');
    return v;
  }

  num(v: Json, path: string, range?: [number, number]): number {
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(path, v === undefined ? 'is missing' : 'must be a finite number');
    if (range && (v < range[0] || v > range[1])) this.fail(path, `must be between ${range[0]} and ${range[1]}, got ${v}`);
    return v;
  }

  bool(v: Json, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, v === undefined ? 'is missing' : 'must be true or false');
    return v;
  }

  /** A [lower, upper] interval inside [0, 1] that contains `value`. */
  interval(v: Json, path: string, value: number): void {
    const iv = this.arr(v, path);
    if (iv.length !== 2) this.fail(path, 'must be [lower, upper]');
    const lo = this.num(iv[0], `${path}[0]`, UNIT);
    const hi = this.num(iv[1], `${path}[1]`, UNIT);
    if (!(lo <= value + 1e-9 && value <= hi + 1e-9)) this.fail(path, `[${lo}, ${hi}] does not contain ${value}`);
  }

  /** The optional counts, interval and outcome bitset next to an accuracy (eval/results.ts Counted). */
  counted(o: Record<string, Json>, path: string, examples: number): void {
    const acc = o.accuracy as number;
    const has = (k: string): boolean => o[k] !== undefined && o[k] !== null;
    if (has('n') || has('correct')) {
      const n = this.num(o.n, `${path}.n`, [1, Number.MAX_SAFE_INTEGER]);
      const k = this.num(o.correct, `${path}.correct`, [0, n]);
      if (!Number.isInteger(n) || !Number.isInteger(k)) this.fail(`${path}.correct`, 'and n must be integers');
      if (n !== examples) this.fail(`${path}.n`, `must equal provenance.examples (${examples}), got ${n}`);
      if (Math.abs(k / n - acc) > 1e-9) this.fail(`${path}.accuracy`, `must equal correct / n = ${k}/${n}, got ${acc}`);
    }
    if (has('ci')) this.interval(o.ci, `${path}.ci`, acc);
    if (has('outcomes')) {
      const bits = decodeOutcomes(this.str(o.outcomes, `${path}.outcomes`), examples);
      if (!bits) this.fail(`${path}.outcomes`, `must be a base64 bitset of ${examples} outcomes (at most ${MAX_OUTCOMES})`);
      let ones = 0;
      for (const b of bits) ones += b;
      if (Math.abs(ones / examples - acc) > 1e-9) this.fail(`${path}.outcomes`, `has ${ones} correct of ${examples}, which disagrees with accuracy ${acc}`);
    }
  }

  /** Square matrix of non-negative integer counts, `n` x `n`; returns its trace and total. */
  confusion(v: Json, path: string, n: number): { trace: number; total: number } {
    const rows = this.arr(v, path);
    if (rows.length !== n) this.fail(path, `must have ${n} rows (one per class), got ${rows.length}`);
    let trace = 0;
    let total = 0;
    rows.forEach((row, i) => {
      const cells = this.arr(row, `${path}[${i}]`);
      if (cells.length !== n) this.fail(`${path}[${i}]`, `must have ${n} columns, got ${cells.length}`);
      cells.forEach((c, j) => {
        const x = this.num(c, `${path}[${i}][${j}]`, [0, Number.MAX_SAFE_INTEGER]);
        if (!Number.isInteger(x)) this.fail(`${path}[${i}][${j}]`, `must be a whole count, got ${x}`);
        total += x;
        if (i === j) trace += x;
      });
    });
    return { trace, total };
  }

  /** An accuracy must be what its confusion matrix says (trace / total), over `examples` examples. */
  agrees(accuracy: number, m: { trace: number; total: number }, examples: number, path: string): void {
    if (examples > 0 && m.total !== examples) this.fail(`${path}.confusion`, `counts ${m.total} examples, provenance.examples says ${examples}`);
    if (m.total > 0 && Math.abs(accuracy - m.trace / m.total) > TOLERANCE) {
      this.fail(`${path}.accuracy`, `is ${accuracy} but its confusion matrix gives ${m.trace}/${m.total} = ${m.trace / m.total}`);
    }
  }
}

const UNIT: [number, number] = [0, 1];
/** Values that must agree (metrics map vs. the points, accuracy vs. confusion) may differ by this much. */
const TOLERANCE = 1e-9;

/** Checks that `data` is a results object this version understands; returns it typed. */
export function validateResults(data: unknown, source = 'results'): EvalResults {
  const c = new Checker(source);
  const root = c.obj(data, 'results');
  if (root.format !== RESULTS_FORMAT) {
    throw new UsageError(
      root.format === undefined
        ? `${source}: not a cnnf results file (no "format" field; expected "${RESULTS_FORMAT}")`
        : `${source}: unsupported format ${JSON.stringify(root.format)}; expected "${RESULTS_FORMAT}"`,
    );
  }
  const tool = c.obj(root.tool, 'tool');
  c.str(tool.name, 'tool.name');
  c.str(tool.version, 'tool.version');
  c.str(root.createdAt, 'createdAt');

  const p = c.obj(root.provenance, 'provenance');
  for (const k of ['command', 'backend', 'dataset', 'testSubset', 'node', 'platform'] as const) c.str(p[k], `provenance.${k}`);
  c.num(p.seed, 'provenance.seed');
  const examples = c.num(p.examples, 'provenance.examples', [0, Number.MAX_SAFE_INTEGER]);
  if (!Number.isInteger(examples)) c.fail('provenance.examples', `must be a whole number, got ${examples}`);
  c.num(p.durationSeconds, 'provenance.durationSeconds', [0, Number.MAX_VALUE]);
  if (p.attackSeconds !== undefined) {
    c.arr(p.attackSeconds, 'provenance.attackSeconds').forEach((tv, ti) => {
      const t = c.obj(tv, `provenance.attackSeconds[${ti}]`);
      c.str(t.model, `provenance.attackSeconds[${ti}].model`);
      c.str(t.attack, `provenance.attackSeconds[${ti}].attack`);
      c.num(t.seconds, `provenance.attackSeconds[${ti}].seconds`, [0, Number.MAX_VALUE]);
    });
  }
  if (p.suite !== undefined && p.suite !== null) c.str(p.suite, 'provenance.suite');
  if (p.batchSize !== undefined) {
    const b = c.num(p.batchSize, 'provenance.batchSize', [1, 100_000]);
    if (!Number.isInteger(b)) c.fail('provenance.batchSize', `must be a whole number, got ${b}`);
  }
  if (p.batchSizeFrom !== undefined && !BATCH_SIZE_SOURCES.some((x) => x === p.batchSizeFrom)) {
    c.fail('provenance.batchSizeFrom', `must be ${BATCH_SIZE_SOURCES.join(', ')}, got ${JSON.stringify(String(p.batchSizeFrom).slice(0, 40))}`);
  }
  if (p.memoryBudget !== undefined) c.num(p.memoryBudget, 'provenance.memoryBudget', [1, Number.MAX_SAFE_INTEGER]);
  if (p.shards !== undefined) {
    const sh = c.num(p.shards, 'provenance.shards', [1, 100_000]);
    if (!Number.isInteger(sh)) c.fail('provenance.shards', `must be a whole number, got ${sh}`);
  }

  const models = c.arr(root.models, 'models', { nonEmpty: true });
  const seen = new Set<string>();
  models.forEach((mv, mi) => {
    const at = `models[${mi}]`;
    const m = c.obj(mv, at);
    const name = c.str(m.name, `${at}.name`);
    if (name.trim() === '') c.fail(`${at}.name`, 'must not be empty');
    if (seen.has(name)) c.fail(`${at}.name`, `duplicates another model's name ${JSON.stringify(name)}`);
    seen.add(name);
    c.str(m.path, `${at}.path`);
    c.str(m.sha256, `${at}.sha256`);
    c.str(m.arch, `${at}.arch`);
    c.num(m.cycles, `${at}.cycles`, [0, Number.MAX_SAFE_INTEGER]);
    if (m.readout !== 'last' && m.readout !== 'average') c.fail(`${at}.readout`, 'must be "last" or "average"');
    const classNames = c.arr(m.classNames, `${at}.classNames`, { nonEmpty: true });
    classNames.forEach((n, i) => c.str(n, `${at}.classNames[${i}]`));
    const k = classNames.length;
    const clean = c.obj(m.clean, `${at}.clean`);
    const cleanAcc = c.num(clean.accuracy, `${at}.clean.accuracy`, UNIT);
    c.counted(clean, `${at}.clean`, examples);
    c.agrees(cleanAcc, c.confusion(clean.confusion, `${at}.clean.confusion`, k), examples, `${at}.clean`);
    // what every entry of the flat metrics map must equal: recomputed from the structured results
    const expected = new Map<string, number[]>();
    const expect = (key: string, v: number): void => {
      expected.set(key, [...(expected.get(key) ?? []), v]);
    };
    expect('clean', cleanAcc);
    const pointsAt = new Map<number, number[]>();

    c.arr(m.attacks, `${at}.attacks`).forEach((av, ai) => {
      const aat = `${at}.attacks[${ai}]`;
      const a = c.obj(av, aat);
      c.str(a.name, `${aat}.name`);
      if (typeof a.method !== 'string' || !hasAttack(a.method)) c.fail(`${aat}.method`, `must be one of ${attackMethods().join(', ')}`);
      if (a.mode !== null && a.mode !== 'first' && a.mode !== 'e2e') c.fail(`${aat}.mode`, 'must be "first", "e2e" or null');
      const targeted = c.bool(a.targeted, `${aat}.targeted`);
      const settings = c.obj(a.settings, `${aat}.settings`);
      const mode = a.mode as 'first' | 'e2e' | null;
      c.arr(a.points, `${aat}.points`).forEach((pv, pi) => {
        const pat = `${aat}.points[${pi}]`;
        const pt = c.obj(pv, pat);
        const eps = c.num(pt.eps, `${pat}.eps`, [0, Number.MAX_VALUE]);
        const acc = c.num(pt.accuracy, `${pat}.accuracy`, UNIT);
        if (pt.successRate !== undefined && pt.successRate !== null) {
          if (!targeted) c.fail(`${pat}.successRate`, 'is only meaningful for a targeted attack');
          expect(metricKey(a.name as string, eps, mode, 'success'), c.num(pt.successRate, `${pat}.successRate`, UNIT));
        }
        c.counted(pt, pat, examples);
        if (pt.successCi !== undefined && pt.successCi !== null) c.interval(pt.successCi, `${pat}.successCi`, pt.successRate as number);
        if (pt.confusion !== undefined && pt.confusion !== null) c.agrees(acc, c.confusion(pt.confusion, `${pat}.confusion`, k), examples, pat);
        expect(metricKey(a.name as string, eps, mode), acc);
        // as evaluate: every attack with a norm ball (settings.norm) counts for the worst case, noise does not
        if (typeof settings.norm === 'string') pointsAt.set(eps, [...(pointsAt.get(eps) ?? []), acc]);
        if (pt.stages !== undefined) {
          let prev = 1;
          c.arr(pt.stages, `${pat}.stages`).forEach((sv, si) => {
            const st = c.obj(sv, `${pat}.stages[${si}]`);
            c.str(st.stage, `${pat}.stages[${si}].stage`);
            const acc = c.num(st.accuracy, `${pat}.stages[${si}].accuracy`, UNIT);
            if (acc > prev + 1e-12) c.fail(`${pat}.stages[${si}].accuracy`, 'rises after an earlier stage (stages are cumulative)');
            prev = acc;
          });
        }
      });
    });

    c.arr(m.worstCase, `${at}.worstCase`).forEach((wv, wi) => {
      const w = c.obj(wv, `${at}.worstCase[${wi}]`);
      const eps = c.num(w.eps, `${at}.worstCase[${wi}].eps`, [0, Number.MAX_VALUE]);
      const acc = c.num(w.accuracy, `${at}.worstCase[${wi}].accuracy`, UNIT);
      c.counted(w, `${at}.worstCase[${wi}]`, examples);
      // per-example worst case over the clean pass and every gradient attack at eps: never above any of them
      const bound = Math.min(cleanAcc, ...(pointsAt.get(eps) ?? []));
      if (acc > bound + TOLERANCE) c.fail(`${at}.worstCase[${wi}].accuracy`, `is ${acc}, above the ${bound} of an attack (or clean) it is the worst case of`);
      expect(`worst@${eps}`, acc);
    });

    // the flat map a gate reads must be exactly what the structured results say: no extra keys, no other values
    const metrics = c.obj(m.metrics, `${at}.metrics`);
    for (const [key, v] of Object.entries(metrics)) {
      const path = `${at}.metrics[${JSON.stringify(key)}]`;
      if (key === 'warnings') {
        // the number of warning-level trust checks of this model (see checks below)
        const w = c.num(v, `${at}.metrics.warnings`, [0, 1e6]);
        if (!Number.isInteger(w)) c.fail(`${at}.metrics.warnings`, `must be a whole number, got ${w}`);
        if (Array.isArray(root.checks)) {
          const count = root.checks.filter((ch) => (ch as Record<string, Json>)?.model === name && (ch as Record<string, Json>)?.severity === 'warning').length;
          if (w !== count) c.fail(`${at}.metrics.warnings`, `is ${w} but checks lists ${count} warning(s) for ${name}`);
        }
        continue;
      }
      const value = c.num(v, path, UNIT);
      const want = expected.get(key) ?? c.fail(path, 'does not correspond to any result in the file (metrics are derived from clean, attacks and worstCase)');
      if (!want.some((x) => Math.abs(x - value) <= TOLERANCE)) c.fail(path, `is ${value} but the results it summarises say ${want[0]}`);
    }

    if (m.recipe !== undefined && m.recipe !== null) c.str(m.recipe, `${at}.recipe`);
    if (m.dumps !== undefined && m.dumps !== null) {
      c.arr(m.dumps, `${at}.dumps`).forEach((d, di) => c.str(d, `${at}.dumps[${di}]`));
    }
  });
  if (root.checks !== undefined) {
    const names = new Set(models.map((mv) => (mv as Record<string, Json>).name));
    c.arr(root.checks, 'checks').forEach((cv, ci) => {
      const at = `checks[${ci}]`;
      const ch = c.obj(cv, at);
      c.str(ch.id, `${at}.id`);
      c.num(ch.number, `${at}.number`, [1, 1000]);
      if (ch.severity !== 'warning' && ch.severity !== 'info') c.fail(`${at}.severity`, 'must be "warning" or "info"');
      if (!names.has(c.str(ch.model, `${at}.model`))) c.fail(`${at}.model`, `names no model of this file: ${JSON.stringify(ch.model)}`);
      c.str(ch.message, `${at}.message`);
      c.obj(ch.evidence, `${at}.evidence`);
    });
  }
  return data as EvalResults;
}

/** Reads, parses and validates a results file; any problem is a one-line UsageError (exit 2). */
export function readResultsFile(path: string): EvalResults {
  return validateResults(readJsonFile(path, 'results file', INPUT_LIMITS.results), path);
}
