/**
 * Transfer attack: adversarial examples crafted with any white-box attack on a surrogate checkpoint
 * (through its own gradients), then evaluated on the attacked model. It needs no gradient of the
 * attacked model, so it sees through masked gradients (Carlini et al. 2019 §5.4; Tramer et al. 2020).
 * The surrogate is loaded once per thread and cached by its resolved path.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { buildCheckpoint, readCheckpointFile, type CheckpointFile, type LoadedCheckpoint } from '../io/checkpoint.js';
import { INPUT_LIMITS, readInputFile } from '../io/files.js';
import { getArch } from '../models/arch.js';
import { checkEps, type Attack, type AttackKind, type GradientMode, type Norm, type Victim, attackContext, type AttackSeed } from './base.js';
import { getAttack, type AttackDescriptor, type AttackSpec } from './registry.js';
import { parseAttackSpec } from './spec.js';

const files = new Map<string, CheckpointFile>();
const surrogates = new Map<string, Promise<LoadedCheckpoint>>();
const loaded = new Map<string, LoadedCheckpoint>();

/** The surrogate's checkpoint file at `path`, read and validated once per thread (no model built). */
export function surrogateFile(path: string): CheckpointFile {
  const key = resolve(path);
  let f = files.get(key);
  if (!f) {
    f = readCheckpointFile(key);
    files.set(key, f);
  }
  return f;
}

/** The surrogate checkpoint at `path` (loaded once per thread, as loadCheckpoint: built and probed). */
export async function surrogateCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const key = resolve(path);
  let p = surrogates.get(key);
  if (!p) {
    p = buildCheckpoint(surrogateFile(key)).then(
      (ck) => {
        loaded.set(key, ck);
        files.delete(key);
        return ck;
      },
      (e: unknown) => {
        surrogates.delete(key);
        throw e;
      },
    );
    surrogates.set(key, p);
  }
  return p;
}

/** sha256 of the surrogate file (a checked regular file of bounded size, else a one-line UsageError). */
function sha256File(path: string): string {
  return createHash('sha256').update(readInputFile(path, 'transfer surrogate', { maxBytes: INPUT_LIMITS.safetensors })).digest('hex');
}

/** Frees every cached surrogate. */
export function clearSurrogates(): void {
  for (const ck of loaded.values()) ck.model.dispose();
  loaded.clear();
  surrogates.clear();
  files.clear();
}

export class Transfer implements Attack {
  readonly kind: AttackKind = 'transfer';
  readonly method = 'transfer';
  readonly targeted: boolean;
  readonly norm: Norm;

  constructor(readonly name: string, readonly surrogatePath: string, readonly inner: Attack, readonly surrogateMode: GradientMode, readonly surrogateSha256?: string) {
    this.targeted = inner.targeted;
    this.norm = inner.norm ?? 'linf';
  }

  settings(): Record<string, unknown> {
    return {
      surrogate: this.surrogatePath,
      ...(this.surrogateSha256 ? { surrogateSha256: this.surrogateSha256 } : {}),
      surrogateMode: this.surrogateMode,
      via: { method: this.inner.method, ...this.inner.settings() },
    };
  }

  async perturb(_v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / x.shape[0]);
    const ck = await surrogateCheckpoint(this.surrogatePath);
    const cycles = ck.model.config.cycles;
    const victim: Victim = { model: ck.model, mode: cycles === 0 ? 'first' : this.surrogateMode, cycles, readout: ck.info.readout };
    return this.inner.perturb(victim, x, labels, eps, ctx);
  }
}

/** The inner attack entry of a transfer spec, validated as a suite entry of its own. */
function innerSpec(spec: AttackSpec, at: string): AttackSpec {
  const via = spec.params.via;
  const raw = typeof via === 'string' ? { method: via } : { ...(via as Record<string, unknown>) };
  for (const k of ['eps', 'modes', 'name', 'targeted', 'target']) {
    if (k in raw) throw new UsageError(`${at}.via.${k} is set by the transfer entry itself, not by via`);
  }
  const inner = parseAttackSpec({ ...raw, eps: spec.eps, ...(spec.norm ? { norm: spec.norm } : {}), ...(spec.targeted ? { targeted: true, target: spec.target } : {}) }, `${at}.via`);
  const kind = getAttack(inner.method).kind;
  if (kind !== 'gradient') throw new UsageError(`${at}.via must be a white-box attack (kind gradient), ${inner.method} is ${kind}`);
  return inner;
}

export const transferAttack: AttackDescriptor = {
  method: 'transfer',
  label: 'Transfer',
  summary: 'examples crafted by a white-box attack on a surrogate checkpoint (--surrogate), evaluated on the model',
  kind: 'transfer',
  norms: ['linf', 'l2'],
  targetable: true,
  params: {
    surrogate: { type: 'string', path: true, description: 'checkpoint the examples are crafted on' },
    via: { type: 'attack', default: 'pgd', description: 'white-box attack run on the surrogate: a method name, or in a suite an object {"method": "pgd", "steps": 40, ...}' },
    surrogateMode: { type: 'enum', values: ['first', 'e2e'], default: 'e2e', description: 'gradient path through a CNN-F surrogate' },
    surrogateSha256: { type: 'string', description: "the surrogate file's sha256 (filled in from the file; when given, the file must match)" },
  },
  defaultName: (p) => `transfer-${typeof p.via === 'string' ? p.via : String((p.via as Record<string, unknown>).method ?? 'pgd')}`,
  validate: (spec, at) => {
    if (typeof spec.params.surrogate !== 'string') throw new UsageError(`${at}.surrogate is missing (the checkpoint to craft examples on)`);
    const pinned = spec.params.surrogateSha256;
    if (pinned !== undefined && (typeof pinned !== 'string' || !/^[0-9a-f]{64}$/.test(pinned))) {
      throw new UsageError(`${at}.surrogateSha256 must be 64 lowercase hex digits, got ${JSON.stringify(pinned)}`);
    }
    // the run id names the surrogate by its content, not its path (shards of one run merge across
    // machines); a plan read back without the file (cnnf merge) keeps the recorded hash
    if (pinned === undefined && existsSync(spec.params.surrogate)) spec.params.surrogateSha256 = sha256File(spec.params.surrogate);
    innerSpec(spec, at);
  },
  prepare: (spec, data) => {
    // the checks need only the file (a model is built, and probed, when the attack first runs)
    const ck = surrogateFile(spec.params.surrogate as string);
    const cfg = ck.info.config;
    const pinned = spec.params.surrogateSha256;
    if (typeof pinned === 'string' && pinned !== ck.sha256) {
      throw new UsageError(`transfer ${spec.name}: the surrogate ${spec.params.surrogate as string} has sha256 ${ck.sha256}, the suite (or the run being resumed) says ${pinned}`);
    }
    if (cfg.numClasses !== data.numClasses) {
      throw new UsageError(`transfer ${spec.name}: the surrogate ${spec.params.surrogate as string} has ${cfg.numClasses} classes, the data ${data.numClasses}`);
    }
    const a = getArch(cfg.arch);
    const shape = [a.height, a.width, a.inChannels];
    if (shape.join('x') !== data.shape.join('x')) {
      throw new UsageError(`transfer ${spec.name}: the surrogate takes ${shape.join('x')} inputs, the data has ${data.shape.join('x')}`);
    }
  },
  build: (spec) => new Transfer(
    spec.name, spec.params.surrogate as string, getAttack(innerSpec(spec, spec.name).method).build(innerSpec(spec, spec.name)),
    spec.params.surrogateMode as GradientMode, spec.params.surrogateSha256 as string | undefined,
  ),
};
