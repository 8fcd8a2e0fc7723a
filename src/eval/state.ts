/**
 * `--state DIR`: a resumable evaluation's finished units on disk. DIR/state.json names the run
 * (its plan and run id, and the shard); DIR/units/ID.json holds each finished unit, written
 * atomically (a temp file renamed into place), so a crash or `kill -9` leaves only whole records.
 * The same command run again loads them and runs the rest; the results are those of an
 * uninterrupted run. A directory holding another run's state is refused, never mixed.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { INPUT_LIMITS, makeDirs, readInputFile } from '../io/files.js';
import { parseJsonText } from '../io/json.js';
import { planToJson, runIdOf, type EvalPlan, type PlanUnit, type ShardSpec } from './plan.js';
import { recordFromJson, recordToJson, type UnitRecord } from './units.js';

export const EVAL_STATE_FORMAT = 'cnnf-eval-state/1';

export interface StateStore {
  dir: string;
  /** The records the directory holds for `units` (checked against the plan). */
  load(units: PlanUnit[]): Map<number, UnitRecord>;
  /** Records a finished unit (atomically). */
  put(r: UnitRecord): void;
}

const shardText = (s: ShardSpec | undefined | null): string => (s ? `shard ${s.index}/${s.count}` : 'no shard');

/** Opens (or starts) the state directory of `plan`; refuses one that belongs to another run. */
export function openState(dir: string, plan: EvalPlan, shard?: ShardSpec): StateStore {
  if (dir.trim() === '') throw new UsageError('--state must not be empty');
  const runId = runIdOf(plan);
  const head = join(dir, 'state.json');
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new UsageError(`--state ${dir} is not a directory`);
    if (existsSync(head)) {
      const raw = parseJsonText(readInputFile(head, 'state file', { maxBytes: INPUT_LIMITS.json }).toString('utf8'), head) as Record<string, unknown>;
      if (raw?.format !== EVAL_STATE_FORMAT) throw new UsageError(`${head}: not a cnnf evaluation state (format ${JSON.stringify(raw?.format)})`);
      if (raw.runId !== runId) {
        throw new UsageError(`--state ${dir} holds another run (different models, suite, seed, data, batch size, backend or cnnf version); use a new directory or delete it`);
      }
      const s = raw.shard as ShardSpec | null;
      if ((s?.index ?? 0) !== (shard?.index ?? 0) || (s?.count ?? 0) !== (shard?.count ?? 0)) {
        throw new UsageError(`--state ${dir} holds ${shardText(s)} of this run, not ${shardText(shard)}`);
      }
    } else if (readdirSync(dir).length > 0) {
      throw new UsageError(`--state ${dir} is a non-empty directory without a cnnf state (state.json); give a new or empty directory`);
    }
  }
  if (!existsSync(head)) {
    makeDirs(join(dir, 'units'));
    writeFileAtomic(head, `${JSON.stringify({ format: EVAL_STATE_FORMAT, runId, shard: shard ?? null, plan: planToJson(plan) })}\n`);
  }
  const unitsDir = join(dir, 'units');
  makeDirs(unitsDir);
  return {
    dir,
    load(units) {
      const byId = new Map(units.map((u) => [u.id, u]));
      const out = new Map<number, UnitRecord>();
      for (const f of readdirSync(unitsDir)) {
        const m = /^(\d{1,9})\.json$/.exec(f);
        if (!m) continue; // temp files of an interrupted write
        const u = byId.get(Number(m[1]));
        if (!u) throw new UsageError(`${join(unitsDir, f)}: not a unit of this run (delete it)`);
        const path = join(unitsDir, f);
        const v = parseJsonText(readInputFile(path, 'state unit', { maxBytes: INPUT_LIMITS.results }).toString('utf8'), path);
        out.set(u.id, recordFromJson(v, u, plan, path));
      }
      return out;
    },
    put(r) {
      writeFileAtomic(join(unitsDir, `${r.id}.json`), JSON.stringify(recordToJson(r)));
    },
  };
}

/**
 * The batch size a state directory's run recorded (so a resumed run, whatever its workers or memory
 * budget now, continues with the size it started with); undefined where DIR holds no readable state
 * (openState then says what is wrong with it).
 */
export function recordedBatchSize(dir: string): number | undefined {
  const head = join(dir, 'state.json');
  if (dir.trim() === '' || !existsSync(head)) return undefined;
  try {
    const raw = parseJsonText(readInputFile(head, 'state file', { maxBytes: INPUT_LIMITS.json }).toString('utf8'), head) as { format?: unknown; plan?: { batchSize?: unknown } };
    const b = raw?.format === EVAL_STATE_FORMAT ? raw.plan?.batchSize : undefined;
    return typeof b === 'number' && Number.isInteger(b) && b >= 1 && b <= 100_000 ? b : undefined;
  } catch {
    return undefined;
  }
}
