/**
 * Attack suites (`attacks/*.json`): which attacks `cnnf eval` runs, at which epsilons, through which
 * gradient paths. Every attack's own fields come from its descriptor in the attack registry (types,
 * defaults, bounds), the same schema the CLI flags use. A problem is a one-line UsageError naming the
 * file and the field.
 */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import {
  attackMethods, getAttack, hasAttack, maxEps, NORMS, resolveParams,
  type Attack, type AttackSpec, type Norm, type TargetPolicy,
} from '../attacks/index.js';
import type { AttackMode } from './results.js';

export type { AttackSpec } from '../attacks/index.js';
export const ATTACK_MODES: readonly AttackMode[] = ['first', 'e2e'];

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

/** Fields every attack entry may have; the rest come from the attack's descriptor. */
const COMMON_KEYS = ['name', 'method', 'eps', 'modes', 'norm', 'targeted', 'target'];
const SUITE_KEYS = new Set(['name', 'description', 'attacks', 'confusionAt', 'testSubset', 'batchSize', '$schema']);
const MAX_ATTACKS = 256;
const MAX_EPS = 64;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates one attack entry (from a suite file or built from flags). `at` names it in errors
 * ("suite.json: attacks[2]"). Pixels bound the L2 radius (default 28 x 28).
 */
export function parseAttackSpec(av: unknown, at: string, pixels = 784): AttackSpec {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${at}${field ? `.${field}` : ''} ${what}`);
  };
  if (!isObj(av)) return fail('', 'must be an object');
  const method = av.method;
  if (typeof method !== 'string' || !hasAttack(method)) fail('method', `must be one of ${attackMethods().join(', ')}, got ${JSON.stringify(method)}`);
  const d = getAttack(method as string);
  const own = Object.keys(d.params);
  for (const k of Object.keys(av)) {
    if (!COMMON_KEYS.includes(k) && !own.includes(k)) {
      const elsewhere = attackMethods().filter((m) => Object.keys(getAttack(m).params).includes(k));
      fail(k, elsewhere.length
        ? `applies to ${elsewhere.join(', ')}, not ${d.method}`
        : `is not a field of ${d.method} (expected ${[...COMMON_KEYS, ...own].join(', ')})`);
    }
  }
  // norm
  let norm: Norm | null = null;
  if (d.norms.length > 0) {
    norm = d.norms[0];
    if (av.norm !== undefined) {
      if (typeof av.norm !== 'string' || !(NORMS as readonly string[]).includes(av.norm)) fail('norm', `must be one of ${NORMS.join(', ')}, got ${JSON.stringify(av.norm)}`);
      if (!d.norms.includes(av.norm as Norm)) fail('norm', `${JSON.stringify(av.norm)} is not supported by ${d.method} (supported: ${d.norms.join(', ')})`);
      norm = av.norm as Norm;
    }
  } else if (av.norm !== undefined) fail('norm', `does not apply to ${d.method}`);
  // eps
  if (!Array.isArray(av.eps) || av.eps.length === 0) fail('eps', av.eps === undefined ? 'is missing' : 'must be a non-empty array of numbers');
  const epsList = av.eps as unknown[];
  if (epsList.length > MAX_EPS) fail('eps', `has ${epsList.length} values (at most ${MAX_EPS})`);
  const max = maxEps(norm, pixels);
  const eps = epsList.map((e, j) => {
    if (typeof e !== 'number' || !Number.isFinite(e)) return fail(`eps[${j}]`, `must be a finite number, got ${JSON.stringify(e) ?? String(e)}`);
    if (e < 0) fail(`eps[${j}]`, `must be >= 0, got ${e}`);
    if (e > max) fail(`eps[${j}]`, `${e} is beyond the [-1, 1] input box (at most ${max} for ${norm ?? 'a noise sigma'})`);
    return e;
  });
  if (new Set(eps).size !== eps.length) fail('eps', 'must not repeat a value');
  // modes
  let modes: AttackMode[] = [...ATTACK_MODES];
  const whiteBox = d.kind === 'gradient' || d.kind === 'ensemble';
  if (av.modes !== undefined) {
    if (!whiteBox) fail('modes', `does not apply to ${d.method} (it uses no gradients of the attacked model)`);
    if (!Array.isArray(av.modes) || av.modes.length === 0) fail('modes', 'must be a non-empty array of "first" / "e2e"');
    modes = (av.modes as unknown[]).map((v, j) =>
      typeof v === 'string' && (ATTACK_MODES as readonly string[]).includes(v) ? (v as AttackMode) : fail(`modes[${j}]`, `must be "first" or "e2e", got ${JSON.stringify(v)}`));
    if (new Set(modes).size !== modes.length) fail('modes', 'must not repeat a mode');
  }
  // targeting
  let targeted = false;
  if (av.targeted !== undefined) {
    if (typeof av.targeted !== 'boolean') fail('targeted', `must be true or false, got ${JSON.stringify(av.targeted)}`);
    targeted = av.targeted as boolean;
  }
  if (targeted && !d.targetable) fail('targeted', `does not apply to ${d.method}`);
  let target: TargetPolicy = 'next';
  if (av.target !== undefined) {
    if (!targeted) fail('target', 'needs "targeted": true');
    if (av.target === 'next' || av.target === 'random') target = av.target;
    else if (typeof av.target === 'number' && Number.isInteger(av.target) && av.target >= 0 && av.target < 100_000) target = av.target;
    else fail('target', `must be "next", "random" or a class index, got ${JSON.stringify(av.target)}`);
  }
  const params = resolveParams(d, av, at);
  const name = av.name === undefined ? d.defaultName(params, targeted) + (norm === 'l2' ? '-l2' : '') : av.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) fail('name', `must be 1-64 letters, digits, "_", "." or "-", got ${JSON.stringify(name)}`);
  const spec: AttackSpec = { name: name as string, method: d.method, eps, modes: whiteBox ? modes : [], norm, targeted, target, params };
  d.validate?.(spec, at);
  return spec;
}

/** Validates a parsed suite object. `source` names the file in error messages. */
export function parseSuite(data: unknown, source: string): Suite {
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
    const spec = parseAttackSpec(av, `${source}: attacks[${i}]`);
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

/** Reads and validates a suite file. */
export function loadSuite(path: string): Suite {
  return parseSuite(readJsonFile(path, 'suite file'), path);
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
