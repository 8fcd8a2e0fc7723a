/**
 * The attack registry: one descriptor per attack (method name, label, kind, parameter schema with
 * defaults and bounds, how to build it). The suite parser, the CLI's flags and --help, the results
 * validator, report labels and `cnnf train --perturb` all derive from it. Adding an attack = one
 * file exporting a descriptor + one line in ATTACKS below.
 */
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { Attack, AttackKind, Norm, TargetPolicy } from './base.js';
import { apgdAttack } from './apgd.js';
import { autoAttack } from './autoattack.js';
import { fabAttack } from './fab.js';
import { fgsmAttack } from './fgsm.js';
import { gaussianAttack } from './gaussian.js';
import { pgdAttack } from './pgd.js';
import { spsaAttack } from './spsa.js';
import { squareAttack } from './square.js';
import { transferAttack } from './transfer.js';

export type ParamValue = number | boolean | string | Record<string, unknown>;

export interface AttackParamSpec {
  /** 'object': a JSON object the descriptor's validate() checks; 'attack': a method name or an attack entry object (transfer's inner attack). */
  type: 'int' | 'number' | 'boolean' | 'enum' | 'string' | 'object' | 'attack';
  description: string;
  default?: ParamValue;
  /** Inclusive bounds for numbers. */
  min?: number;
  max?: number;
  /** Numbers: strictly greater than zero. */
  positive?: boolean;
  /** Enums: the allowed values. */
  values?: readonly string[];
  /**
   * Strings: the value names a file. A relative path resolves against the folder of the suite file
   * that gives it (the working directory for flags and suites built in code); the spec holds it absolute.
   */
  path?: boolean;
}

/** Everything an attack needs to be built: the common fields and its own parameters. */
export interface AttackSpec {
  /** Name used in metric keys ("pgd7", "apgd-ce", ...); unique within a suite. */
  name: string;
  method: string;
  /** Radii in [-1, 1] input units (noise: the sigma). */
  eps: number[];
  /** Gradient paths to attack through (white-box attacks; default ["first", "e2e"]; plain CNNs run "first"). */
  modes: Array<'first' | 'e2e'>;
  /** Norm of the eps-ball (null for noise). */
  norm: Norm | null;
  targeted: boolean;
  /** Targeted attacks: a class index, "next" ((y+1) mod K) or "random" (a seeded class != y). */
  target: TargetPolicy;
  /** The attack's own parameters, validated against its descriptor, defaults filled in. */
  params: Record<string, ParamValue>;
}

export interface AttackDescriptor {
  method: string;
  /** Human label for tables and reports ("PGD", "APGD", "Square"). */
  label: string;
  /** One line for --help. */
  summary: string;
  kind: AttackKind;
  /** Norms it supports (empty for noise). */
  norms: readonly Norm[];
  /** Whether it takes `targeted` / `target`. */
  targetable: boolean;
  params: Record<string, AttackParamSpec>;
  /** Name when a suite gives none ("pgd7", "apgd-dlr"). */
  defaultName(params: Record<string, ParamValue>, targeted: boolean): string;
  build(spec: AttackSpec): Attack;
  /** Optional cross-field validation; throw UsageError(`${at} ...`). */
  validate?(spec: AttackSpec, at: string): void;
  /**
   * Optional check against the evaluation's data before any work starts (a transfer surrogate's
   * class count and input shape); throw a UsageError.
   */
  prepare?(spec: AttackSpec, data: { numClasses: number; shape: number[] }): void;
}

/** The registry: one line per attack. */
const ATTACKS: AttackDescriptor[] = [
  gaussianAttack,
  fgsmAttack,
  pgdAttack,
  apgdAttack,
  fabAttack,
  squareAttack,
  spsaAttack,
  transferAttack,
  autoAttack,
];

const registry = new Map<string, AttackDescriptor>(ATTACKS.map((d) => [d.method, d]));

export function attackMethods(): string[] {
  return [...registry.keys()];
}

export function hasAttack(method: string): boolean {
  return registry.has(method);
}

export function getAttack(method: string): AttackDescriptor {
  const d = registry.get(method);
  if (!d) throw new UsageError(`unknown attack ${JSON.stringify(method)} (known: ${attackMethods().join(', ')})`);
  return d;
}

export function allAttacks(): AttackDescriptor[] {
  return [...registry.values()];
}

/** Label for a method, also for results written by other versions (falls back to the method name). */
export function attackLabel(method: string): string {
  return registry.get(method)?.label ?? method;
}

/** Validates one parameter value (already typed: JSON value, or parsed from a flag). */
export function checkParam(p: AttackParamSpec, value: unknown, field: string): ParamValue {
  const fail = (what: string): never => {
    throw new UsageError(`${field} ${what}`);
  };
  switch (p.type) {
    case 'boolean':
      return typeof value === 'boolean' ? value : fail(`must be true or false, got ${JSON.stringify(value)}`);
    case 'enum':
      if (typeof value !== 'string' || !p.values!.includes(value)) fail(`must be one of ${p.values!.join(', ')}, got ${JSON.stringify(value)}`);
      return value as string;
    case 'attack':
    case 'object':
      if (p.type === 'attack' && typeof value === 'string' && value.trim() !== '') return value;
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(`must be an object, got ${JSON.stringify(value)}`);
      return value as Record<string, unknown>;
    case 'string':
      if (typeof value !== 'string' || value.trim() === '') fail(`must be a non-empty string, got ${JSON.stringify(value)}`);
      if ((value as string).length > 4096) fail('is longer than 4096 characters');
      return value as string;
    case 'int':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) fail(`must be a finite number, got ${JSON.stringify(value) ?? String(value)}`);
      const v = value as number;
      if (p.type === 'int' && !Number.isInteger(v)) fail(`must be an integer, got ${v}`);
      if (p.positive && v <= 0) fail(`must be > 0, got ${v}`);
      if (p.min !== undefined && v < p.min) fail(`must be >= ${p.min}, got ${v}`);
      if (p.max !== undefined && v > p.max) fail(`must be <= ${p.max}, got ${v}`);
      return v;
    }
  }
}

/** Parses a flag's string into the parameter's type (then checkParam bounds it). */
export function parseParamFlag(p: AttackParamSpec, raw: string, flag: string): ParamValue {
  const s = String(raw).trim();
  switch (p.type) {
    case 'boolean':
      if (s === 'true') return true;
      if (s === 'false') return false;
      throw new UsageError(`${flag} must be true or false, got ${JSON.stringify(raw)}`);
    case 'enum':
    case 'string':
    case 'attack':
      return checkParam(p, s, flag);
    case 'object': {
      let v: unknown;
      try {
        v = JSON.parse(s);
      } catch {
        throw new UsageError(`${flag} must be a JSON object, got ${JSON.stringify(raw)}`);
      }
      return checkParam(p, v, flag);
    }
    default: {
      const v = s === '' ? NaN : Number(s);
      if (!Number.isFinite(v)) throw new UsageError(`${flag} must be a number, got ${JSON.stringify(raw)}`);
      return checkParam(p, v, flag);
    }
  }
}

/** Fills defaults and checks every given parameter; `at` prefixes error messages. */
export function resolveParams(d: AttackDescriptor, given: Record<string, unknown>, at: string, baseDir?: string): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (const [k, p] of Object.entries(d.params)) {
    if (given[k] !== undefined) out[k] = checkParam(p, given[k], `${at}.${k}`);
    else if (p.default !== undefined) out[k] = p.default;
    if (p.path && typeof out[k] === 'string') out[k] = baseDir === undefined ? resolve(out[k]) : resolve(baseDir, out[k]);
  }
  return out;
}

/** camelCase parameter key -> kebab-case flag ("relStepSize" -> "--rel-step-size"). */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** Every parameter key across the registry, with the methods that take it (for one CLI flag each). */
export function paramIndex(): Map<string, { spec: AttackParamSpec; methods: string[] }> {
  const idx = new Map<string, { spec: AttackParamSpec; methods: string[] }>();
  for (const d of registry.values()) {
    for (const [k, p] of Object.entries(d.params)) {
      const e = idx.get(k);
      if (!e) idx.set(k, { spec: p, methods: [d.method] });
      else {
        e.methods.push(d.method);
        // one flag for every attack that takes the key: enum choices are the union (each attack checks its own)
        if (e.spec.type === 'enum' && p.type === 'enum') e.spec = { ...e.spec, values: [...new Set([...e.spec.values!, ...p.values!])] };
      }
    }
  }
  return idx;
}
