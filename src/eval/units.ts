/**
 * What a finished work unit leaves behind, as JSON: a batch's outcome (predictions, targets, stage
 * indices, the few perturbed images a dump needs, its compute time) or a model's probe checks.
 * Shard files and `--state` directories hold these; reading them back checks every array against
 * the plan (sizes, class ranges, finite pixels in the box), since they come from files.
 */
import { UsageError } from '../errors.js';
import { buildAttack } from './suite.js';
import { chooseTargets, isStaged } from '../attacks/index.js';
import { deriveSeed, mulberry32 } from '../data/index.js';
import type { BatchOutcome } from './batch.js';
import { checkProbeRecord, type EvalCheck } from './checks.js';
import { jobsFor, type EvalPlan, type PlanUnit } from './plan.js';

export type UnitRecord =
  | { id: number; kind: 'clean' | 'attack'; outcome: BatchOutcome }
  | { id: number; kind: 'probe'; checks: EvalCheck[] };

const arr = (a: ArrayLike<number> | null): number[] | null => (a === null ? null : Array.from(a));

/** A record as plain JSON. */
export function recordToJson(r: UnitRecord): Record<string, unknown> {
  if (r.kind === 'probe') return { id: r.id, kind: r.kind, checks: r.checks };
  const o = r.outcome;
  return {
    id: r.id,
    kind: r.kind,
    outcome: {
      clean: arr(o.clean),
      cleanFirst: arr(o.cleanFirst),
      preds: o.preds.map((p) => p.map((x) => arr(x))),
      targets: o.targets.map((t) => arr(t)),
      advs: o.advs.map((p) => p.map((x) => arr(x))),
      stages: o.stages.map((p) => p.map((x) => arr(x))),
      ms: o.ms,
    },
  };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The number of examples in a batch of the plan. */
export function batchLength(plan: EvalPlan, batch: number): number {
  return Math.min(plan.batchSize, plan.examples - batch * plan.batchSize);
}

/**
 * Reads a record for `unit` back from JSON (dump images have the plan's shape). Anything that does
 * not fit the plan is a one-line UsageError naming `source`.
 */
export function recordFromJson(v: unknown, unit: PlanUnit, plan: EvalPlan, source: string): UnitRecord {
  const pixels = plan.shape[0] * plan.shape[1] * plan.shape[2];
  const fail = (what: string): never => {
    throw new UsageError(`${source}: unit ${unit.id} ${what}`);
  };
  if (!isObj(v) || v.id !== unit.id || v.kind !== unit.kind) return fail(`must be a ${unit.kind} unit with id ${unit.id}`);
  if (unit.kind === 'probe') {
    if (!Array.isArray(v.checks) || v.checks.length > 64) return fail('checks must be a list');
    const pm = plan.models[unit.model];
    const seen = new Set<string>();
    const checks = (v.checks as unknown[]).map((c, i) => {
      // only cnnf's own probe checks (1, 6, 7), with evidence of the right shape, and the message
      // cnnf writes for that evidence: a forged or edited message is refused, never shown as cnnf's
      const why = checkProbeRecord(c, { model: pm.name, cycles: pm.cycles, probeExamples: plan.probeSize, numClasses: plan.numClasses });
      if (typeof why === 'string') return fail(`check ${i + 1} ${why}`);
      const key = `${why.number}|${String(why.evidence.mode ?? '')}`;
      if (seen.has(key)) fail(`check ${i + 1} repeats check ${why.number}`);
      seen.add(key);
      return why;
    });
    return { id: unit.id, kind: 'probe', checks };
  }
  const o = v.outcome;
  if (!isObj(o)) return fail('has no outcome');
  const n = batchLength(plan, unit.batch);
  const k = plan.numClasses;
  const ints = (a: unknown, len: number, lo: number, hi: number, what: string): Int32Array => {
    if (!Array.isArray(a) || a.length !== len) return fail(`${what} must list ${len} values`);
    for (const x of a as unknown[]) if (typeof x !== 'number' || !Number.isInteger(x) || x < lo || x > hi) fail(`${what} must hold integers in ${lo}..${hi}`);
    return Int32Array.from(a as number[]);
  };
  const list = (a: unknown, len: number, what: string): unknown[] => (Array.isArray(a) && a.length === len ? a : fail(`${what} must list ${len} entries`));
  const start = unit.batch * plan.batchSize;
  const labels = Int32Array.from(plan.labels.slice(start, start + n));
  if (unit.kind === 'clean') {
    const clean = ints(o.clean, n, 0, k - 1, 'clean');
    const cleanFirst = ints(o.cleanFirst, n, 0, k - 1, 'cleanFirst');
    // one pass (a plain CNN or a foreign model): the first-pass prediction is the prediction
    if (plan.models[unit.model].cycles === 0 && clean.some((c, i) => c !== cleanFirst[i])) fail('cleanFirst must equal clean for a model without feedback cycles (the file was edited?)');
    return {
      id: unit.id,
      kind: 'clean',
      outcome: { clean, cleanFirst, preds: [], targets: [], advs: [], stages: [], ms: list(o.ms, 0, 'ms') as number[] },
    };
  }
  const job = jobsFor(plan.suite, plan.models[unit.model].cycles)[unit.job!];
  const ne = job.spec.eps.length;
  const attack = buildAttack(job.spec);
  const nStages = isStaged(attack) ? attack.stageLabels(plan.models[unit.model].cycles).length : 0;
  const preds = list(o.preds, 1, 'preds').map((p) => list(p, ne, 'preds[0]').map((x, e) => ints(x, n, 0, k - 1, `preds[0][${e}]`)));
  const t = list(o.targets, 1, 'targets')[0];
  const targets = t === null ? null : ints(t, n, 0, k - 1, 'targets[0]');
  if ((targets !== null) !== job.spec.targeted) fail(`targets[0] must be ${job.spec.targeted ? 'a list' : 'null'}`);
  if (targets !== null) {
    // the targets follow from the plan (labels, seed, policy): recomputed here, they must agree
    const want = chooseTargets(labels, k, job.spec.target!, mulberry32(deriveSeed(plan.seed, `targets|${job.spec.name}|${start}`)));
    if (want.some((t, i) => t !== targets[i])) fail('targets[0] are not the targets this plan chooses (the file was edited?)');
  }
  const stages = list(o.stages, 1, 'stages').map((p) => list(p, ne, 'stages[0]').map((x, e) => {
    if (x === null) return null;
    if (nStages === 0) return fail(`stages[0][${e}] must be null (not a staged attack)`);
    const st = ints(x, n, -2, nStages - 1, `stages[0][${e}]`);
    // AutoAttack: -1 (robust) leaves the clean input, which the model classifies correctly; a stage
    // that broke an example (>= 0) or a clean misclassification (-2) leaves it misclassified
    const p = preds[0][e]!;
    for (let i = 0; i < n; i++) {
      if ((st[i] === -1) !== (p[i] === labels[i])) fail(`stages[0][${e}] disagree with preds[0][${e}] at example ${start + i} (the file was edited?)`);
    }
    return st;
  }));
  const advs = list(o.advs, 1, 'advs').map((p) => list(p, ne, 'advs[0]').map((x, e) => {
    if (x === null) return null;
    if (!Array.isArray(x) || x.length === 0 || x.length > n * pixels || x.length % pixels !== 0) return fail(`advs[0][${e}] must hold whole images`);
    for (const px of x as unknown[]) if (typeof px !== 'number' || !(px >= -1 && px <= 1)) fail(`advs[0][${e}] must hold pixels in [-1, 1]`);
    return Float32Array.from(x as number[]);
  }));
  const ms = list(o.ms, 1, 'ms') as unknown[];
  if (typeof ms[0] !== 'number' || !(ms[0] >= 0 && ms[0] < 1e12)) fail('ms must be a time in milliseconds');
  return { id: unit.id, kind: 'attack', outcome: { clean: new Int32Array(0), cleanFirst: new Int32Array(0), preds, targets: [targets], advs, stages, ms: [ms[0] as number] } };
}
