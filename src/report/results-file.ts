/**
 * Reading and validating a results file (`cnnf eval` output) for `cnnf report` and `cnnf gate`.
 * Every problem becomes a one-line UsageError naming the file and the offending field.
 */
import { UsageError } from '../errors.js';
import { attackMethods, hasAttack } from '../attacks/index.js';
import { readJsonFile } from '../io/json.js';
import { RESULTS_FORMAT, type EvalResults } from '../eval/results.js';
import { decodeOutcomes, MAX_OUTCOMES } from '../eval/stats.js';

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

  /** Square matrix of non-negative counts, `n` x `n`. */
  confusion(v: Json, path: string, n: number): void {
    const rows = this.arr(v, path);
    if (rows.length !== n) this.fail(path, `must have ${n} rows (one per class), got ${rows.length}`);
    rows.forEach((row, i) => {
      const cells = this.arr(row, `${path}[${i}]`);
      if (cells.length !== n) this.fail(`${path}[${i}]`, `must have ${n} columns, got ${cells.length}`);
      cells.forEach((c, j) => this.num(c, `${path}[${i}][${j}]`, [0, Number.MAX_SAFE_INTEGER]));
    });
  }
}

const UNIT: [number, number] = [0, 1];

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
    c.num(clean.accuracy, `${at}.clean.accuracy`, UNIT);
    c.counted(clean, `${at}.clean`, examples);
    c.confusion(clean.confusion, `${at}.clean.confusion`, k);

    c.arr(m.attacks, `${at}.attacks`).forEach((av, ai) => {
      const aat = `${at}.attacks[${ai}]`;
      const a = c.obj(av, aat);
      c.str(a.name, `${aat}.name`);
      if (typeof a.method !== 'string' || !hasAttack(a.method)) c.fail(`${aat}.method`, `must be one of ${attackMethods().join(', ')}`);
      if (a.mode !== null && a.mode !== 'first' && a.mode !== 'e2e') c.fail(`${aat}.mode`, 'must be "first", "e2e" or null');
      c.bool(a.targeted, `${aat}.targeted`);
      c.obj(a.settings, `${aat}.settings`);
      c.arr(a.points, `${aat}.points`).forEach((pv, pi) => {
        const pat = `${aat}.points[${pi}]`;
        const pt = c.obj(pv, pat);
        c.num(pt.eps, `${pat}.eps`, [0, Number.MAX_VALUE]);
        c.num(pt.accuracy, `${pat}.accuracy`, UNIT);
        c.counted(pt, pat, examples);
        if (pt.successRate !== undefined && pt.successRate !== null) c.num(pt.successRate, `${pat}.successRate`, UNIT);
        if (pt.successCi !== undefined && pt.successCi !== null) c.interval(pt.successCi, `${pat}.successCi`, pt.successRate as number);
        if (pt.confusion !== undefined && pt.confusion !== null) c.confusion(pt.confusion, `${pat}.confusion`, k);
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
      c.num(w.eps, `${at}.worstCase[${wi}].eps`, [0, Number.MAX_VALUE]);
      c.num(w.accuracy, `${at}.worstCase[${wi}].accuracy`, UNIT);
      c.counted(w, `${at}.worstCase[${wi}]`, examples);
    });

    const metrics = c.obj(m.metrics, `${at}.metrics`);
    for (const [key, v] of Object.entries(metrics)) {
      if (key === 'warnings') c.num(v, `${at}.metrics.warnings`, [0, 1e6]);
      else c.num(v, `${at}.metrics[${JSON.stringify(key)}]`);
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
  return validateResults(readJsonFile(path, 'results file'), path);
}
