/**
 * The plan of an evaluation: which models, data, suite, seed and batch size, and the work units
 * they make (per model: each batch's clean pass, each batch x job, one probe-check unit). The plan
 * is plain JSON, and everything a unit computes depends only on the plan and the unit, so the same
 * plan drives an in-process run, worker threads, shards on other machines (`--shard K/N`, merged by
 * `cnnf merge`) and resumed runs (`--state DIR`): the results are the same whichever runs a unit.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import type { Readout } from '../models/cnnf.js';
import type { Job } from './batch.js';
import type { AttackMode } from './results.js';
import { parseSuite, type Suite } from './suite.js';

export const PLAN_FORMAT = 'cnnf-eval-plan/1';

export interface PlanModel {
  name: string;
  /** Where this machine read it (not part of the run's identity: shards may live in other paths). */
  path: string;
  sha256: string;
  arch: string;
  cycles: number;
  readout: Readout;
  classNames: string[];
  recipe?: string;
  /** The dataset the checkpoint records, where it is not the plan's (evaluated with allowDatasetMismatch). */
  trainedOn?: string;
}

export interface EvalPlan {
  format: typeof PLAN_FORMAT;
  tool: { name: 'cnnf'; version: string };
  backend: string;
  seed: number;
  batchSize: number;
  dataset: string;
  testSubset: string;
  examples: number;
  numClasses: number;
  classNames: string[];
  /** Input shape [h, w, c] of every image (NHWC). */
  shape: [number, number, number];
  /** sha256 of the split's pixels (float32, little-endian) and labels (int32). */
  dataSha256: string;
  /** The split's labels (the merge step needs them; it has no images). */
  labels: number[];
  suite: Suite;
  /** Trust checks (src/eval/checks.ts) and the examples their probes use. */
  checks: boolean;
  probeSize: number;
  /** Dump examples per attack point (0: none). */
  dumpCount: number;
  models: PlanModel[];
}

export type UnitKind = 'clean' | 'attack' | 'probe';

export interface PlanUnit {
  /** Position in the plan (0-based). */
  id: number;
  model: number;
  kind: UnitKind;
  /** Batch index (0 for probe units). */
  batch: number;
  /** Index into jobsFor(suite, model cycles) for attack units, else null. */
  job: number | null;
  /** Row of the unit (clean, each job, probe: per model), for the shard assignment. */
  row: number;
}

/** The jobs a suite runs on a model: gradient attacks once per mode, "first" only for plain CNNs. */
export function jobsFor(suite: Suite, cycles: number): Job[] {
  const jobs: Job[] = [];
  for (const spec of suite.attacks) {
    if (spec.modes.length === 0) jobs.push({ spec, mode: null });
    else {
      const modes: AttackMode[] = cycles === 0 ? ['first'] : spec.modes;
      for (const mode of modes) jobs.push({ spec, mode });
    }
  }
  return jobs;
}

export const planBatchCount = (plan: EvalPlan): number => Math.ceil(plan.examples / plan.batchSize);

/**
 * Every unit of the plan, in order: per model, per batch its clean pass then one unit per job; then
 * the model's probe-check unit (when checks run).
 */
export function planUnits(plan: EvalPlan): PlanUnit[] {
  const nb = planBatchCount(plan);
  const units: PlanUnit[] = [];
  let row = 0;
  for (const [m, pm] of plan.models.entries()) {
    const nj = jobsFor(plan.suite, pm.cycles).length;
    for (let b = 0; b < nb; b++) {
      units.push({ id: units.length, model: m, kind: 'clean', batch: b, job: null, row });
      for (let j = 0; j < nj; j++) units.push({ id: units.length, model: m, kind: 'attack', batch: b, job: j, row: row + 1 + j });
    }
    row += 1 + nj;
    if (plan.checks) units.push({ id: units.length, model: m, kind: 'probe', batch: 0, job: null, row: row++ });
  }
  return units;
}

export interface ShardSpec {
  /** 1-based. */
  index: number;
  count: number;
  /** Where the index came from ("--shard 2/3", "SLURM_ARRAY_TASK_ID", ...). */
  source: string;
}

/**
 * Which shard (1..count) runs a unit: the batches of every row (a model's clean pass, each of its
 * jobs, its probe) are dealt round-robin, each row starting one shard further on, so every shard
 * gets about 1/count of every attack's batches (attacks differ a lot in cost).
 */
export function shardOf(unit: PlanUnit, count: number): number {
  return ((unit.batch + unit.row) % count) + 1;
}

export function unitsOfShard(units: PlanUnit[], shard: ShardSpec | undefined): PlanUnit[] {
  return shard ? units.filter((u) => shardOf(u, shard.count) === shard.index) : units;
}

/** The suite as its JSON input form (parseSuite reads it back to the same object). */
export function suiteToJson(s: Suite): Record<string, unknown> {
  return {
    name: s.name,
    description: s.description,
    ...(s.confusionAt !== undefined ? { confusionAt: s.confusionAt } : {}),
    ...(s.testSubset !== undefined ? { testSubset: s.testSubset } : {}),
    ...(s.batchSize !== undefined ? { batchSize: s.batchSize } : {}),
    attacks: s.attacks.map((a) => ({
      name: a.name,
      method: a.method,
      eps: a.eps,
      ...(a.modes.length ? { modes: a.modes } : {}),
      ...(a.norm ? { norm: a.norm } : {}),
      ...(a.targeted ? { targeted: true, target: a.target } : {}),
      ...a.params,
    })),
  };
}

/** The plan as JSON (the suite in its input form). */
export function planToJson(plan: EvalPlan): Record<string, unknown> {
  return { ...plan, suite: suiteToJson(plan.suite) };
}

/**
 * Identity of a run: a hash of everything that decides its results (not where the files are: models
 * and transfer surrogates count by their sha256).
 */
export function runIdOf(plan: EvalPlan): string {
  const j = planToJson(plan);
  j.models = plan.models.map(({ path: _path, ...rest }) => rest);
  const suite = j.suite as { attacks: Array<Record<string, unknown>> };
  suite.attacks = suite.attacks.map(({ surrogate, ...rest }) => (rest.surrogateSha256 !== undefined ? rest : { surrogate, ...rest }));
  return createHash('sha256').update(JSON.stringify(j)).digest('hex');
}

export function dataHash(images: Float32Array, labels: ArrayLike<number>): string {
  const h = createHash('sha256');
  h.update(new Uint8Array(images.buffer, images.byteOffset, images.byteLength));
  const l = Int32Array.from(labels);
  h.update(new Uint8Array(l.buffer));
  return h.digest('hex');
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAX_EXAMPLES = 10_000_000;
const MAX_MODELS = 64;
/** Values per image a plan may claim (4096x4096x4). */
const MAX_IMAGE_VALUES = 4096 * 4096 * 4;

/** Reads a plan back from JSON, checking every field (plans come from files: shards and state dirs). */
export function parsePlan(v: unknown, source: string): EvalPlan {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${source}: plan.${field} ${what}`);
  };
  if (!isObj(v)) return fail('', 'must be an object');
  if (v.format !== PLAN_FORMAT) fail('format', `must be ${JSON.stringify(PLAN_FORMAT)}, got ${JSON.stringify(v.format)}`);
  const str = (k: string, o: Record<string, unknown> = v, at = k): string => (typeof o[k] === 'string' ? (o[k] as string) : fail(at, 'must be a string'));
  const int = (k: string, lo: number, hi: number, o: Record<string, unknown> = v, at = k): number => {
    const x = o[k];
    return typeof x === 'number' && Number.isInteger(x) && x >= lo && x <= hi ? x : fail(at, `must be an integer in ${lo}..${hi}`);
  };
  const strs = (k: string, max: number, o: Record<string, unknown> = v, at = k): string[] => {
    const a = o[k];
    if (!Array.isArray(a) || a.length > max || a.some((s) => typeof s !== 'string')) fail(at, `must be a list of at most ${max} strings`);
    return a as string[];
  };
  if (!isObj(v.tool) || v.tool.name !== 'cnnf' || typeof v.tool.version !== 'string') fail('tool', 'must be {name: "cnnf", version}');
  const examples = int('examples', 1, MAX_EXAMPLES);
  const numClasses = int('numClasses', 2, 100_000);
  const labels = v.labels;
  if (!Array.isArray(labels) || labels.length !== examples) fail('labels', `must list ${examples} labels`);
  for (const y of labels as unknown[]) if (typeof y !== 'number' || !Number.isInteger(y) || y < 0 || y >= numClasses) fail('labels', `must be class indices in 0..${numClasses - 1}`);
  if (typeof v.checks !== 'boolean') fail('checks', 'must be true or false');
  if (!Array.isArray(v.models) || v.models.length < 1 || v.models.length > MAX_MODELS) fail('models', `must list 1..${MAX_MODELS} models`);
  const models = (v.models as unknown[]).map((mv, i): PlanModel => {
    if (!isObj(mv)) return fail(`models[${i}]`, 'must be an object');
    const readout = mv.readout;
    if (readout !== 'last' && readout !== 'average') fail(`models[${i}].readout`, 'must be "last" or "average"');
    const sha = str('sha256', mv, `models[${i}].sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha)) fail(`models[${i}].sha256`, 'must be 64 hex digits');
    return {
      name: str('name', mv, `models[${i}].name`),
      path: str('path', mv, `models[${i}].path`),
      sha256: sha,
      arch: str('arch', mv, `models[${i}].arch`),
      cycles: int('cycles', 0, 100, mv, `models[${i}].cycles`),
      readout: readout as Readout,
      classNames: strs('classNames', 100_000, mv, `models[${i}].classNames`),
      ...(mv.recipe !== undefined ? { recipe: str('recipe', mv, `models[${i}].recipe`) } : {}),
      ...(mv.trainedOn !== undefined ? { trainedOn: str('trainedOn', mv, `models[${i}].trainedOn`) } : {}),
    };
  });
  const sh = v.shape;
  if (!Array.isArray(sh) || sh.length !== 3 || sh.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > 65_536) ||
    (sh as number[]).reduce((a, b) => a * b, 1) > MAX_IMAGE_VALUES) fail('shape', `must be [h, w, c]: positive integers, at most ${MAX_IMAGE_VALUES} values`);
  const dataSha = str('dataSha256');
  if (!/^[0-9a-f]{64}$/.test(dataSha)) fail('dataSha256', 'must be 64 hex digits');
  // nothing is read from disk because a plan from a file names it: a plan cnnf wrote names every
  // transfer surrogate by its sha256 (filled in when the run was planned), so validating the suite
  // never opens or hashes a surrogate path written in an unverified file
  const unpinned = unpinnedSurrogate(v.suite);
  if (unpinned !== null) fail(`suite.${unpinned}`, 'names a surrogate without its surrogateSha256 (cnnf always records it; the file was edited or not written by cnnf)');
  return checkPlanSize({
    format: PLAN_FORMAT,
    tool: { name: 'cnnf', version: (v.tool as Record<string, string>).version },
    backend: str('backend'),
    seed: int('seed', 0, 2 ** 32 - 1),
    batchSize: int('batchSize', 1, 100_000),
    dataset: str('dataset'),
    testSubset: str('testSubset'),
    examples,
    numClasses,
    classNames: strs('classNames', 100_000),
    shape: [...(sh as number[])] as [number, number, number],
    dataSha256: dataSha,
    labels: labels as number[],
    suite: parseSuite(v.suite, `${source}: plan.suite`),
    checks: v.checks as boolean,
    probeSize: int('probeSize', 0, MAX_EXAMPLES),
    dumpCount: int('dumpCount', 0, 100_000),
    models,
  }, source);
}

/** The path (attacks[i]...) of the first object in a suite's JSON with a surrogate but no surrogateSha256, or null. */
function unpinnedSurrogate(v: unknown, at = '', depth = 0): string | null {
  if (depth > 16 || typeof v !== 'object' || v === null) return null;
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) {
      const r = unpinnedSurrogate(x, `${at}[${i}]`, depth + 1);
      if (r !== null) return r;
    }
    return null;
  }
  const o = v as Record<string, unknown>;
  if ('surrogate' in o && typeof o.surrogateSha256 !== 'string') return at === '' ? 'surrogate' : `${at}.surrogate`;
  for (const [k, x] of Object.entries(o)) {
    const r = unpinnedSurrogate(x, at === '' ? k : `${at}.${k}`, depth + 1);
    if (r !== null) return r;
  }
  return null;
}

/** Work units a plan may have (a 10,000-image split in batches of 1 with 64 models x 3 jobs is 2.6M). */
export const MAX_PLAN_UNITS = 4_000_000;
/** Bytes of per-example outcomes (one byte per example and attack point, per model) a merge or resume may hold. */
export const MAX_PLAN_OUTCOME_BYTES = 256 * 1024 * 1024;

/**
 * The sizes a plan declares, checked against each other and against bounds before anything is built
 * from them (its units, per-example arrays): arithmetic only, so a forged plan of 10M examples in
 * batches of 1 for 64 models is refused in microseconds, not after gigabytes of unit objects.
 */
export function checkPlanSize(plan: EvalPlan, source: string): EvalPlan {
  const fail = (what: string): never => {
    throw new UsageError(`${source}: plan ${what}`);
  };
  if (plan.probeSize > plan.examples) fail(`probeSize ${plan.probeSize} is more than its ${plan.examples} examples`);
  if (plan.dumpCount > plan.examples) fail(`dumpCount ${plan.dumpCount} is more than its ${plan.examples} examples`);
  if (plan.classNames.length > plan.numClasses) fail(`names ${plan.classNames.length} classes but has ${plan.numClasses}`);
  for (const [i, m] of plan.models.entries()) if (m.classNames.length > plan.numClasses) fail(`models[${i}] names ${m.classNames.length} classes but the plan has ${plan.numClasses}`);
  const batches = planBatchCount(plan);
  const wc = new Set<number>();
  for (const a of plan.suite.attacks) if (a.norm !== null) for (const e of a.eps) wc.add(e);
  let units = 0;
  let points = 0;
  for (const m of plan.models) {
    const jobs = jobsFor(plan.suite, m.cycles);
    units += batches * (1 + jobs.length) + (plan.checks ? 1 : 0);
    // clean, each job's epsilons, the worst cases, and 4 bytes of clean predictions
    points += 1 + jobs.reduce((t, j) => t + j.spec.eps.length, 0) + wc.size + 4;
  }
  if (units > MAX_PLAN_UNITS) fail(`has ${units} work units (${plan.models.length} models, ${batches} batches of ${plan.batchSize}), more than the ${MAX_PLAN_UNITS} cnnf handles`);
  const bytes = points * plan.examples;
  if (bytes > MAX_PLAN_OUTCOME_BYTES) fail(`needs ${bytes} bytes of per-example outcomes (${plan.examples} examples x ${points} points), more than the ${MAX_PLAN_OUTCOME_BYTES}-byte limit`);
  return plan;
}

/** Work units of a plan, counted without building them. */
export function planUnitCount(plan: EvalPlan): number {
  const batches = planBatchCount(plan);
  return plan.models.reduce((t, m) => t + batches * (1 + jobsFor(plan.suite, m.cycles).length) + (plan.checks ? 1 : 0), 0);
}

export const currentTool = (): { name: 'cnnf'; version: string } => ({ name: 'cnnf', version: VERSION });
