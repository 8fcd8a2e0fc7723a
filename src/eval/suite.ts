/**
 * Attack suites (`attacks/*.json`): which attacks `cnnf eval` runs, at which epsilons, through which
 * gradient paths. Parsing validates every field; a problem is a one-line UsageError naming the file
 * and the field.
 */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import { FGSM, GaussianNoise, PGD, type Attack, type TargetPolicy } from '../attacks/index.js';
import type { AttackMethod, AttackMode } from './results.js';

export const ATTACK_METHODS: readonly AttackMethod[] = ['gaussian', 'fgsm', 'pgd'];
export const ATTACK_MODES: readonly AttackMode[] = ['first', 'e2e'];

export interface AttackSpec {
  /** Name used in metric keys ("pgd7", "fgsm", "gaussian"); unique within a suite. */
  name: string;
  method: AttackMethod;
  /** Linf radii in input units ([-1, 1] pixels); for gaussian the noise sigma. */
  eps: number[];
  /** Gradient paths (gradient attacks only; default ["first", "e2e"]). Plain CNNs run "first" only. */
  modes: AttackMode[];
  targeted: boolean;
  /** Targeted attacks: a class index, "next" ((y+1) mod K) or "random" (a seeded class != y). */
  target: TargetPolicy;
  /** PGD only. */
  steps?: number;
  stepSize?: number;
  relStepSize?: number;
  randomStart?: boolean;
  restarts?: number;
}

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

const ATTACK_KEYS = new Set(['name', 'method', 'eps', 'modes', 'targeted', 'target', 'steps', 'stepSize', 'relStepSize', 'randomStart', 'restarts']);
const SUITE_KEYS = new Set(['name', 'description', 'attacks', 'confusionAt', 'testSubset', 'batchSize', '$schema']);

/** Validates a parsed suite object. `source` names the file in error messages. */
export function parseSuite(data: unknown, source: string): Suite {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${source}: ${field} ${what}`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(data)) fail('suite', 'must be a JSON object');
  const root = data as Record<string, unknown>;
  for (const k of Object.keys(root)) if (!SUITE_KEYS.has(k)) fail(k, `is not a suite field (expected ${[...SUITE_KEYS].filter((s) => s !== '$schema').join(', ')})`);
  const name = root.name === undefined ? basename(source).replace(/\.json$/i, '') : root.name;
  if (typeof name !== 'string' || name.trim() === '') fail('name', 'must be a non-empty string');
  if (root.description !== undefined && typeof root.description !== 'string') fail('description', 'must be a string');
  const num = (v: unknown, field: string, opts: { min?: number; integer?: boolean; gtZero?: boolean } = {}): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return fail(field, v === undefined ? 'is missing' : `must be a number, got ${JSON.stringify(v)}`);
    if (opts.integer && !Number.isInteger(v)) fail(field, `must be an integer, got ${v}`);
    if (opts.min !== undefined && v < opts.min) fail(field, `must be >= ${opts.min}, got ${v}`);
    if (opts.gtZero && v <= 0) fail(field, `must be > 0, got ${v}`);
    return v;
  };
  const bool = (v: unknown, field: string): boolean => (typeof v === 'boolean' ? v : fail(field, `must be true or false, got ${JSON.stringify(v)}`));
  if (!Array.isArray(root.attacks)) fail('attacks', root.attacks === undefined ? 'is missing' : 'must be an array');
  const list = root.attacks as unknown[];
  if (list.length === 0) fail('attacks', 'must not be empty');
  const seen = new Set<string>();
  const attacks = list.map((av, i): AttackSpec => {
    const at = `attacks[${i}]`;
    if (!isObj(av)) return fail(at, 'must be an object');
    for (const k of Object.keys(av)) if (!ATTACK_KEYS.has(k)) fail(`${at}.${k}`, `is not an attack field (expected ${[...ATTACK_KEYS].join(', ')})`);
    const method = av.method;
    if (typeof method !== 'string' || !(ATTACK_METHODS as readonly string[]).includes(method)) {
      fail(`${at}.method`, `must be one of ${ATTACK_METHODS.join(', ')}, got ${JSON.stringify(method)}`);
    }
    const m = method as AttackMethod;
    const aname = av.name === undefined ? (m === 'pgd' ? `pgd${typeof av.steps === 'number' ? av.steps : 7}` : m) : av.name;
    if (typeof aname !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(aname)) fail(`${at}.name`, `must be a name of letters, digits, "_", "." or "-", got ${JSON.stringify(aname)}`);
    if (seen.has(aname as string)) fail(`${at}.name`, `duplicates another attack's name ${JSON.stringify(aname)}`);
    seen.add(aname as string);
    if (!Array.isArray(av.eps) || av.eps.length === 0) fail(`${at}.eps`, av.eps === undefined ? 'is missing' : 'must be a non-empty array of numbers');
    const eps = (av.eps as unknown[]).map((e, j) => num(e, `${at}.eps[${j}]`, { min: 0 }));
    if (new Set(eps).size !== eps.length) fail(`${at}.eps`, 'must not repeat a value');
    let modes: AttackMode[] = ['first', 'e2e'];
    if (av.modes !== undefined) {
      if (m === 'gaussian') fail(`${at}.modes`, 'does not apply to gaussian noise (it uses no gradients)');
      if (!Array.isArray(av.modes) || av.modes.length === 0) fail(`${at}.modes`, 'must be a non-empty array of "first" / "e2e"');
      modes = (av.modes as unknown[]).map((v, j) =>
        typeof v === 'string' && (ATTACK_MODES as readonly string[]).includes(v) ? (v as AttackMode) : fail(`${at}.modes[${j}]`, `must be "first" or "e2e", got ${JSON.stringify(v)}`));
      if (new Set(modes).size !== modes.length) fail(`${at}.modes`, 'must not repeat a mode');
    }
    const targeted = av.targeted === undefined ? false : bool(av.targeted, `${at}.targeted`);
    if (targeted && m === 'gaussian') fail(`${at}.targeted`, 'does not apply to gaussian noise');
    let target: TargetPolicy = 'next';
    if (av.target !== undefined) {
      if (av.target === 'next' || av.target === 'random') target = av.target;
      else if (typeof av.target === 'number' && Number.isInteger(av.target) && av.target >= 0) target = av.target;
      else fail(`${at}.target`, `must be "next", "random" or a class index, got ${JSON.stringify(av.target)}`);
    }
    const spec: AttackSpec = { name: aname as string, method: m, eps, modes: m === 'gaussian' ? [] : modes, targeted, target };
    const pgdOnly = ['steps', 'stepSize', 'relStepSize', 'randomStart', 'restarts'] as const;
    if (m !== 'pgd') {
      for (const k of pgdOnly) if (av[k] !== undefined) fail(`${at}.${k}`, `applies to pgd only, not ${m}`);
    } else {
      if (av.steps !== undefined) spec.steps = num(av.steps, `${at}.steps`, { min: 1, integer: true });
      if (av.stepSize !== undefined) spec.stepSize = num(av.stepSize, `${at}.stepSize`, { gtZero: true });
      if (av.relStepSize !== undefined) spec.relStepSize = num(av.relStepSize, `${at}.relStepSize`, { gtZero: true });
      if (spec.stepSize !== undefined && spec.relStepSize !== undefined) fail(`${at}.stepSize`, 'and relStepSize are exclusive');
      if (av.randomStart !== undefined) spec.randomStart = bool(av.randomStart, `${at}.randomStart`);
      if (av.restarts !== undefined) spec.restarts = num(av.restarts, `${at}.restarts`, { min: 1, integer: true });
    }
    return spec;
  });
  const suite: Suite = { name: (name as string).trim(), description: (root.description as string | undefined) ?? '', attacks };
  if (root.confusionAt !== undefined) suite.confusionAt = num(root.confusionAt, 'confusionAt', { min: 0 });
  if (root.testSubset !== undefined) {
    if (typeof root.testSubset !== 'string' || !/^\s*(stride|first)\s*:\s*[1-9]\d*\s*$/.test(root.testSubset)) {
      fail('testSubset', `must be "stride:K" or "first:N", got ${JSON.stringify(root.testSubset)}`);
    }
    suite.testSubset = (root.testSubset as string).replace(/\s+/g, '');
  }
  if (root.batchSize !== undefined) suite.batchSize = num(root.batchSize, 'batchSize', { min: 1, integer: true });
  return suite;
}

/** Reads and validates a suite file. */
export function loadSuite(path: string): Suite {
  return parseSuite(readJsonFile(path, 'suite file'), path);
}

/** Builds the attack object a spec describes. */
export function buildAttack(spec: AttackSpec): Attack {
  switch (spec.method) {
    case 'gaussian':
      return new GaussianNoise({ name: spec.name });
    case 'fgsm':
      return new FGSM({ name: spec.name, targeted: spec.targeted });
    case 'pgd':
      return new PGD({
        name: spec.name,
        steps: spec.steps,
        stepSize: spec.stepSize,
        relStepSize: spec.relStepSize,
        randomStart: spec.randomStart,
        restarts: spec.restarts,
        targeted: spec.targeted,
      });
  }
}

/** Settings recorded in the results for an attack spec. */
export function attackSettings(spec: AttackSpec): Record<string, unknown> {
  const s: Record<string, unknown> = { ...buildAttack(spec).settings() };
  if (spec.method !== 'gaussian') s.norm = 'linf';
  s.clip = [-1, 1];
  if (spec.method === 'gaussian') s.epsIs = 'sigma';
  if (spec.targeted) s.target = spec.target;
  return s;
}
