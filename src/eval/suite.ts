/**
 * Attack suites (`attacks/*.json`): which attacks `cnnf eval` runs, at which epsilons, through which
 * gradient paths. Every attack's own fields come from its descriptor in the attack registry (types,
 * defaults, bounds), the same schema the CLI flags use. A problem is a one-line UsageError naming the
 * file and the field.
 */
import { basename, dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import { attackMethods, getAttack, parseAttackSpec, type Attack, type AttackSpec } from '../attacks/index.js';

export { ATTACK_MODES, parseAttackSpec, type AttackSpec } from '../attacks/index.js';

/** The registry's methods (for messages and flag choices). */
export const ATTACK_METHODS = (): string[] => attackMethods();

export interface Suite {
  name: string;
  description: string;
  attacks: AttackSpec[];
  /** Epsilon at which per-attack confusion matrices are recorded (when the attack runs there). */
  confusionAt?: number;
  /** Default test subset ("stride:K" or "first:N") when the command line gives none. */
  testSubset?: string;
  /** Default batch size. */
  batchSize?: number;
}

const SUITE_KEYS = new Set(['name', 'description', 'attacks', 'confusionAt', 'testSubset', 'batchSize', '$schema']);
const MAX_ATTACKS = 256;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validates a parsed suite object. `source` names the file in error messages. */
export function parseSuite(data: unknown, source: string, baseDir?: string): Suite {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${source}: ${field} ${what}`);
  };
  if (!isObj(data)) fail('suite', 'must be a JSON object');
  const root = data as Record<string, unknown>;
  for (const k of Object.keys(root)) if (!SUITE_KEYS.has(k)) fail(k, `is not a suite field (expected ${[...SUITE_KEYS].filter((s) => s !== '$schema').join(', ')})`);
  const name = root.name === undefined ? basename(source).replace(/\.json$/i, '') : root.name;
  if (typeof name !== 'string' || name.trim() === '' || name.length > 200) fail('name', 'must be a non-empty string (at most 200 characters)');
  if (root.description !== undefined && typeof root.description !== 'string') fail('description', 'must be a string');
  const num = (v: unknown, field: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(field, v === undefined ? 'is missing' : `must be a number, got ${JSON.stringify(v)}`);
    if (opts.integer && !Number.isInteger(v)) fail(field, `must be an integer, got ${v}`);
    if (opts.min !== undefined && v < opts.min) fail(field, `must be >= ${opts.min}, got ${v}`);
    if (opts.max !== undefined && v > opts.max) fail(field, `must be <= ${opts.max}, got ${v}`);
    return v;
  };
  if (!Array.isArray(root.attacks)) fail('attacks', root.attacks === undefined ? 'is missing' : 'must be an array');
  const list = root.attacks as unknown[];
  if (list.length === 0) fail('attacks', 'must not be empty');
  if (list.length > MAX_ATTACKS) fail('attacks', `has ${list.length} entries (at most ${MAX_ATTACKS})`);
  const seen = new Set<string>();
  const attacks = list.map((av, i): AttackSpec => {
    const spec = parseAttackSpec(av, `${source}: attacks[${i}]`, undefined, baseDir);
    if (seen.has(spec.name)) fail(`attacks[${i}].name`, `duplicates another attack's name ${JSON.stringify(spec.name)}`);
    seen.add(spec.name);
    return spec;
  });
  const suite: Suite = { name: (name as string).trim(), description: (root.description as string | undefined) ?? '', attacks };
  if (root.confusionAt !== undefined) suite.confusionAt = num(root.confusionAt, 'confusionAt', { min: 0 });
  if (root.testSubset !== undefined) {
    if (typeof root.testSubset !== 'string' || !/^\s*(stride|first)\s*:\s*[1-9]\d{0,8}\s*$/.test(root.testSubset)) {
      fail('testSubset', `must be "stride:K" or "first:N", got ${JSON.stringify(root.testSubset)}`);
    }
    suite.testSubset = (root.testSubset as string).replace(/\s+/g, '');
  }
  if (root.batchSize !== undefined) suite.batchSize = num(root.batchSize, 'batchSize', { min: 1, max: 10_000, integer: true });
  return suite;
}

/**
 * Reads and validates a suite file. Relative file parameters (a transfer `surrogate`) are relative to
 * the suite file's folder, so a suite can name checkpoints that ship next to it (attacks/ -> ../models/).
 */
export function loadSuite(path: string): Suite {
  return parseSuite(readJsonFile(path, 'suite file'), path, dirname(path));
}

/** Builds the attack object a spec describes. */
export function buildAttack(spec: AttackSpec): Attack {
  return getAttack(spec.method).build(spec);
}

/** Settings recorded in the results for an attack spec. */
export function attackSettings(spec: AttackSpec): Record<string, unknown> {
  const s: Record<string, unknown> = { ...buildAttack(spec).settings() };
  if (spec.norm) s.norm = spec.norm;
  s.clip = [-1, 1];
  if (getAttack(spec.method).kind === 'noise') s.epsIs = 'sigma';
  if (spec.targeted) s.target = spec.target;
  return s;
}
