/**
 * One attack entry of a suite (or of the command line), validated against the attack registry:
 * the common fields (name, method, eps, modes, norm, targeted, target) and the attack's own
 * parameters. Every problem is a one-line UsageError naming the entry and the field.
 */
import { UsageError } from '../errors.js';
import { maxEps, NORMS, type GradientMode, type Norm, type TargetPolicy } from './base.js';
import { attackMethods, getAttack, hasAttack, resolveParams, type AttackSpec } from './registry.js';

export const ATTACK_MODES: readonly GradientMode[] = ['first', 'e2e'];

/** Fields every attack entry may have; the rest come from the attack's descriptor. */
const COMMON_KEYS = ['name', 'method', 'eps', 'modes', 'norm', 'targeted', 'target'];
const MAX_EPS = 64;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates one attack entry (from a suite file or built from flags). `at` names it in errors
 * ("suite.json: attacks[2]"). `pixels` (values per image, h*w*c) bounds the L2 radius: default 28 x 28,
 * the Fashion-MNIST size; pass the data's size when it is known (every attack also checks its eps
 * against the actual images when it runs). `baseDir` is where relative file parameters (a transfer
 * surrogate) resolve: a suite file's folder; the working directory by default.
 */
export function parseAttackSpec(av: unknown, at: string, pixels = 784, baseDir?: string): AttackSpec {
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
  let modes: GradientMode[] = [...ATTACK_MODES];
  // gradient attacks run once per path; an ensemble covers the paths itself (its `paths` parameter)
  const whiteBox = d.kind === 'gradient';
  if (av.modes !== undefined) {
    if (!whiteBox) fail('modes', `does not apply to ${d.method} (it uses no gradients of the attacked model)`);
    if (!Array.isArray(av.modes) || av.modes.length === 0) fail('modes', 'must be a non-empty array of "first" / "e2e"');
    modes = (av.modes as unknown[]).map((v, j) =>
      typeof v === 'string' && (ATTACK_MODES as readonly string[]).includes(v) ? (v as GradientMode) : fail(`modes[${j}]`, `must be "first" or "e2e", got ${JSON.stringify(v)}`));
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
  const params = resolveParams(d, av, at, baseDir);
  const name = av.name === undefined ? d.defaultName(params, targeted) + (norm === 'l2' ? '-l2' : '') : av.name;
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) fail('name', `must be 1-64 letters, digits, "_", "." or "-", got ${JSON.stringify(name)}`);
  const spec: AttackSpec = { name: name as string, method: d.method, eps, modes: whiteBox ? modes : [], norm, targeted, target, params };
  d.validate?.(spec, at);
  return spec;
}

