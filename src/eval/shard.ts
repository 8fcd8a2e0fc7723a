/**
 * Sharded evaluation on engines users already run (a CI matrix, Kubernetes Indexed Jobs, Slurm job
 * arrays): `--shard K/N` (or `auto`, read from the engine's environment) runs a deterministic 1/N
 * of the plan's units (plan.ts shardOf); `cnnf merge` checks that the shard files make up exactly
 * one run and assembles the results an unsharded run gives (timings aside).
 */
import { BATCH_SIZE_SOURCES, type BatchSizeSource } from './memory.js';
import { UsageError } from '../errors.js';
import { statSync } from 'node:fs';
import { checkInputFile, INPUT_LIMITS, readInputFile } from '../io/files.js';
import { parseJsonText } from '../io/json.js';
import type { EvalResults } from './results.js';
import { parsePlan, planUnitCount, planUnits, runIdOf, shardOf, type EvalPlan, type ShardSpec } from './plan.js';
import { recordFromJson, type UnitRecord } from './units.js';
import { accumulate, assemble, SHARD_FORMAT } from './evaluate.js';

const MAX_SHARDS = 100_000;
/** Bytes of shard files one merge reads in all. */
const MAX_MERGE_BYTES = 1024 * 1024 * 1024;

function parseKN(raw: string, what: string): { index: number; count: number } {
  const m = /^\s*(\d{1,6})\s*\/\s*(\d{1,6})\s*$/.exec(raw);
  if (!m) throw new UsageError(`${what} must be K/N (shard K of N, 1 <= K <= N), got ${JSON.stringify(raw)}`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS || index < 1 || index > count) throw new UsageError(`${what} must be K/N with 1 <= K <= N <= ${MAX_SHARDS}, got ${raw.trim()}`);
  return { index, count };
}

function envInt(env: Record<string, string | undefined>, name: string, lo: number): number {
  const raw = env[name]!;
  if (!/^\s*\d{1,9}\s*$/.test(raw) || Number(raw) < lo) throw new UsageError(`--shard auto: ${name}=${JSON.stringify(raw)} is not an integer >= ${lo}`);
  return Number(raw);
}

/**
 * `--shard K/N` or `--shard auto`. auto reads, first found wins:
 *   CNNF_SHARD=K/N                                   (set it from a CI matrix)
 *   JOB_COMPLETION_INDEX (0-based) + the count from `count` (--shard-count) or CNNF_SHARD_COUNT
 *                                                    (Kubernetes Indexed Job: the count is spec.completions)
 *   SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN (Slurm job array, --array=MIN-MAX)
 */
export function resolveShard(raw: string, env: Record<string, string | undefined> = process.env, count?: string): ShardSpec {
  if (raw.trim() !== 'auto') return { ...parseKN(raw, '--shard'), source: `--shard ${raw.trim()}` };
  if (env.CNNF_SHARD !== undefined && env.CNNF_SHARD !== '') return { ...parseKN(env.CNNF_SHARD, 'CNNF_SHARD'), source: 'CNNF_SHARD' };
  if (env.JOB_COMPLETION_INDEX !== undefined && env.JOB_COMPLETION_INDEX !== '') {
    const n = count ?? env.CNNF_SHARD_COUNT;
    if (n === undefined || n === '') throw new UsageError('--shard auto: JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but not the shard count; give --shard-count N (the Job\'s completions) or CNNF_SHARD_COUNT');
    const idx = envInt(env, 'JOB_COMPLETION_INDEX', 0);
    const spec = parseKN(`${idx + 1}/${n}`, '--shard auto (JOB_COMPLETION_INDEX + 1 / shard count)');
    return { ...spec, source: 'JOB_COMPLETION_INDEX (Kubernetes Indexed Job)' };
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined && env.SLURM_ARRAY_TASK_ID !== '') {
    if (env.SLURM_ARRAY_TASK_COUNT === undefined || env.SLURM_ARRAY_TASK_COUNT === '') throw new UsageError('--shard auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT');
    const id = envInt(env, 'SLURM_ARRAY_TASK_ID', 0);
    const min = env.SLURM_ARRAY_TASK_MIN !== undefined && env.SLURM_ARRAY_TASK_MIN !== '' ? envInt(env, 'SLURM_ARRAY_TASK_MIN', 0) : 0;
    const n = envInt(env, 'SLURM_ARRAY_TASK_COUNT', 1);
    if (count !== undefined && Number(count) !== n) throw new UsageError(`--shard-count ${count} disagrees with SLURM_ARRAY_TASK_COUNT=${n}`);
    const spec = parseKN(`${id - min + 1}/${n}`, '--shard auto (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN + 1 / SLURM_ARRAY_TASK_COUNT; the array must be contiguous)');
    return { ...spec, source: 'SLURM_ARRAY_TASK_ID (Slurm job array)' };
  }
  throw new UsageError('--shard auto: none of CNNF_SHARD, JOB_COMPLETION_INDEX (Kubernetes), SLURM_ARRAY_TASK_ID (Slurm) is set; give --shard K/N');
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

interface ReadShard {
  path: string;
  runId: string;
  shard: ShardSpec;
  plan: EvalPlan;
  units: unknown[];
  durationSeconds: number;
  batchSizeFrom?: BatchSizeSource;
  memoryBudget?: number;
}

function readShard(path: string): ReadShard {
  const v = parseJsonText(readInputFile(path, 'shard file', { maxBytes: INPUT_LIMITS.results }).toString('utf8'), path);
  if (!isObj(v)) throw new UsageError(`${path}: not a cnnf shard file (not a JSON object)`);
  if (v.format !== SHARD_FORMAT) throw new UsageError(`${path}: not a cnnf shard file (format ${JSON.stringify(v.format)}, expected ${SHARD_FORMAT})`);
  const s = v.shard;
  if (!isObj(s) || typeof s.index !== 'number' || typeof s.count !== 'number') throw new UsageError(`${path}: shard must be {index, count}`);
  const { index, count } = parseKN(`${s.index}/${s.count}`, `${path}: shard`);
  const plan = parsePlan(v.plan, path);
  const runId = runIdOf(plan);
  if (v.runId !== runId) throw new UsageError(`${path}: runId does not match its plan (the file was edited or is damaged)`);
  if (!Array.isArray(v.units)) throw new UsageError(`${path}: units must be a list`);
  const prov = isObj(v.provenance) ? v.provenance : {};
  const d = typeof prov.durationSeconds === 'number' && prov.durationSeconds >= 0 ? prov.durationSeconds : 0;
  const from = BATCH_SIZE_SOURCES.find((x) => x === prov.batchSizeFrom);
  const budget = typeof prov.memoryBudget === 'number' && Number.isSafeInteger(prov.memoryBudget) && prov.memoryBudget > 0 ? prov.memoryBudget : undefined;
  return {
    path, runId, shard: { index, count, source: typeof s.source === 'string' ? s.source : '' }, plan, units: v.units, durationSeconds: d,
    ...(from !== undefined ? { batchSizeFrom: from } : {}), ...(budget !== undefined ? { memoryBudget: budget } : {}),
  };
}

export interface MergeOutcome {
  results: EvalResults;
  shards: number;
  units: number;
}

/**
 * Reads shard files and assembles the run's results. Refused, with one line: files of different runs
 * (models by hash, suite, seed, data, batch size, backend, cnnf version), different shard counts,
 * a shard given twice or missing, a unit missing, extra or malformed.
 */
export function mergeShards(paths: string[], command = 'cnnf merge'): MergeOutcome {
  if (paths.length === 0) throw new UsageError('give the shard files to merge');
  if (paths.length > MAX_SHARDS) throw new UsageError(`${paths.length} shard files: at most ${MAX_SHARDS} are merged`);
  // the files' sizes together, before any is read (each is also bounded on its own)
  let bytes = 0;
  for (const p of paths) {
    checkInputFile(p, 'shard file', { maxBytes: INPUT_LIMITS.results });
    bytes += statSync(p).size;
    if (bytes > MAX_MERGE_BYTES) throw new UsageError(`${p}: the shard files up to this one are ${bytes} bytes, more than the ${MAX_MERGE_BYTES} bytes cnnf merge reads`);
  }
  const shards = paths.map(readShard);
  const first = shards[0];
  const count = first.shard.count;
  const seen = new Map<number, string>();
  for (const s of shards) {
    if (s.runId !== first.runId && s.plan.batchSize !== first.plan.batchSize && runIdOf({ ...s.plan, batchSize: first.plan.batchSize }) === first.runId) {
      throw new UsageError(`${s.path} ran batches of ${s.plan.batchSize}, ${first.path} batches of ${first.plan.batchSize}: shards of one run need the same batch size (give each the same --batch-size or --memory-budget)`);
    }
    if (s.runId !== first.runId) {
      throw new UsageError(`${s.path} belongs to another run than ${first.path} (different models, suite, seed, data, batch size, backend or cnnf version)`);
    }
    if (s.shard.count !== count) throw new UsageError(`${s.path} is shard ${s.shard.index}/${s.shard.count} but ${first.path} is of ${count} shards`);
    const dup = seen.get(s.shard.index);
    if (dup !== undefined) throw new UsageError(`shard ${s.shard.index}/${count} is given twice: ${dup} and ${s.path}`);
    seen.set(s.shard.index, s.path);
  }
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((k) => !seen.has(k));
  if (missing.length > 0) {
    throw new UsageError(`shard${missing.length > 1 ? 's' : ''} ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''} of ${count} missing (got ${shards.length} file${shards.length > 1 ? 's' : ''})`);
  }
  const plan = first.plan;
  // the declared sizes agree before anything is built from them (parsePlan bounded the plan itself)
  const total = planUnitCount(plan);
  const held = shards.reduce((t, s) => t + s.units.length, 0);
  if (held !== total) throw new UsageError(`${shards.map((x) => x.path).join(', ')}: their plan must hold ${total} units, holds ${held} in all (an interrupted or edited shard?)`);
  const units = planUnits(plan);
  const records = new Map<number, UnitRecord>();
  for (const s of shards) {
    const expected = units.filter((u) => shardOf(u, count) === s.shard.index);
    if (s.units.length !== expected.length) {
      throw new UsageError(`${s.path}: shard ${s.shard.index}/${count} must hold ${expected.length} units, holds ${s.units.length} (an interrupted or edited shard?)`);
    }
    expected.forEach((u, i) => records.set(u.id, recordFromJson(s.units[i], u, plan, s.path)));
  }
  const accs = accumulate(plan, records);
  const results = assemble(plan, accs, {
    command,
    durationSeconds: shards.reduce((t, s) => t + s.durationSeconds, 0),
    shards: count,
    // where every shard says the same
    ...(shards.every((s) => s.batchSizeFrom === first.batchSizeFrom) && first.batchSizeFrom !== undefined ? { batchSizeFrom: first.batchSizeFrom } : {}),
    ...(shards.every((s) => s.memoryBudget === first.memoryBudget) && first.memoryBudget !== undefined ? { memoryBudget: first.memoryBudget } : {}),
  });
  return { results, shards: count, units: units.length };
}
