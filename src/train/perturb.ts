/**
 * Training-time perturbations: the x~ of the CNN-F pair loss. `gaussian:SIGMA` draws noise from the
 * seeded RNG (clipped to [-1, 1]) for a whole batch; `fgsm:EPS` and `pgd:EPS,STEP,ITERS` attack the
 * current model through its first forward pass (mode 'first', as in the paper's adversarial
 * training) per micro-batch, in the thread that computes its gradients. The attacks' random starts
 * are drawn per example from (seed, epoch, example index) and their loss is a per-example sum, so an
 * example's perturbation does not depend on the micro-batch it is in, nor on the worker count.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FGSM, getAttack, hasAttack, parseParamFlag, PGD, randomStartDelta, type Victim } from '../attacks/index.js';
import { deriveSeed, fillGaussian, IMAGE_PIXELS, mulberry32, type Rng } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { CNNF } from '../models/cnnf.js';

export type Perturbation =
  | { kind: 'gaussian'; sigma: number }
  | { kind: 'fgsm'; eps: number }
  | { kind: 'pgd'; eps: number; step: number; iters: number };

/**
 * The forms of --perturb: each is a method of the attack registry (attacks/registry.ts) with positional
 * arguments; an argument that is a registry parameter (PGD's STEP = stepSize, ITERS = steps) is parsed
 * and bounded by the registry's spec, as `cnnf eval --attacks` flags are. The radius (EPS, SIGMA) is a
 * number >= 0. Only methods with a training implementation here (Perturber, attackPerturb) are forms.
 */
const FORMS: ReadonlyArray<{ kind: Perturbation['kind']; args: ReadonlyArray<{ name: string; field: string; param?: string }> }> = [
  { kind: 'gaussian', args: [{ name: 'SIGMA', field: 'sigma' }] },
  { kind: 'fgsm', args: [{ name: 'EPS', field: 'eps' }] },
  { kind: 'pgd', args: [{ name: 'EPS', field: 'eps' }, { name: 'STEP', field: 'step', param: 'stepSize' }, { name: 'ITERS', field: 'iters', param: 'steps' }] },
];

/** The --perturb forms the registry offers: `kind:ARGS`, with the registry's label and summary. */
export function perturbationForms(): Array<{ kind: Perturbation['kind']; syntax: string; label: string; summary: string }> {
  return FORMS.filter((f) => hasAttack(f.kind)).map((f) => {
    const d = getAttack(f.kind);
    return { kind: f.kind, syntax: `${f.kind}:${f.args.map((a) => a.name).join(',')}`, label: d.label, summary: d.summary };
  });
}

/** "gaussian:SIGMA | fgsm:EPS | pgd:EPS,STEP,ITERS" */
export function perturbationSyntax(): string {
  return perturbationForms().map((f) => f.syntax).join(' | ');
}

function radius(flag: string, raw: string, what: string): number {
  const s = raw.trim();
  const v = s === '' ? NaN : Number(s);
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`${flag}: ${what} must be a number >= 0, got ${JSON.stringify(raw)}`);
  return v;
}

/** Parses a --perturb form (one-line UsageError otherwise). */
export function parsePerturbation(raw: string, flag = '--perturb'): Perturbation {
  const s = String(raw).trim();
  const colon = s.indexOf(':');
  const kind = colon < 0 ? '' : s.slice(0, colon).toLowerCase();
  const args = s.slice(colon + 1).split(',');
  const form = FORMS.find((f) => f.kind === kind && hasAttack(f.kind));
  if (!form || args.length !== form.args.length) throw new UsageError(`${flag} must be ${perturbationSyntax()}, got ${JSON.stringify(raw)}`);
  const out: Record<string, unknown> = { kind: form.kind };
  form.args.forEach((a, i) => {
    const spec = a.param === undefined ? undefined : getAttack(form.kind).params[a.param];
    out[a.field] = spec ? parseParamFlag(spec, args[i]!, `${flag}: ${a.name} (${form.kind} ${a.param})`) : radius(flag, args[i]!, a.name);
  });
  return out as Perturbation;
}

export function formatPerturbation(p: Perturbation | null): string {
  if (!p) return 'none';
  if (p.kind === 'gaussian') return `gaussian:${p.sigma}`;
  if (p.kind === 'fgsm') return `fgsm:${p.eps}`;
  return `pgd:${p.eps},${p.step},${p.iters}`;
}

export type AttackPerturbation = Extract<Perturbation, { kind: 'fgsm' | 'pgd' }>;

export function isAttackPerturbation(p: Perturbation | null): p is AttackPerturbation {
  return p !== null && p.kind !== 'gaussian';
}

/** Where a micro-batch's attack draws its random starts from (structured-clone data, sent to workers). */
export interface AttackDraw {
  perturb: AttackPerturbation;
  seed: number;
  epoch: number;
  /** Training-set index of each example of the micro-batch. */
  indices: Int32Array;
}

/** PGD whose random start of each example comes from its own stream (seed, epoch, example index). */
class PerExamplePGD extends PGD {
  constructor(p: { kind: 'pgd'; eps: number; step: number; iters: number }, private readonly draw: AttackDraw) {
    super({ steps: p.iters, stepSize: p.step, randomStart: true });
  }

  protected override randomDelta(x: tf.Tensor4D, eps: number): tf.Tensor4D {
    return tf.tidy(() => {
      const { seed, epoch, indices } = this.draw;
      const parts = Array.from(indices, (idx, i) =>
        randomStartDelta(this.norm, tf.slice(x, i, 1), eps, deriveSeed(seed, `train-attack:${epoch}:${idx}`)));
      return parts.length === 1 ? parts[0] : (tf.concat(parts, 0) as tf.Tensor4D);
    });
  }
}

/** The attacked copy of a micro-batch (a new tensor): FGSM or PGD on the model's first pass. */
export async function attackPerturb(model: CNNF, x: tf.Tensor4D, labels: tf.Tensor1D, draw: AttackDraw): Promise<tf.Tensor4D> {
  if (draw.indices.length !== x.shape[0]) throw new Error(`attackPerturb: ${draw.indices.length} indices for ${x.shape[0]} images`);
  const victim: Victim = { model, mode: 'first', cycles: model.config.cycles, readout: 'last' };
  const p = draw.perturb;
  const noSeed = () => {
    throw new Error('training attacks draw their random starts per example');
  };
  if (p.kind === 'fgsm') return new FGSM().perturb(victim, x, labels, p.eps, { nextSeed: noSeed });
  return new PerExamplePGD(p, draw).perturb(victim, x, labels, p.eps, { nextSeed: noSeed });
}

/**
 * A per-epoch perturbation source, deterministic given (seed, epoch, batch), so resume replays it
 * exactly: the Gaussian noise of a batch, or the attack draw of a micro-batch.
 */
export class Perturber {
  private readonly noiseRng: Rng;

  constructor(readonly p: Perturbation, private readonly seed: number, private readonly epoch: number) {
    this.noiseRng = mulberry32(deriveSeed(seed, `train-noise:${epoch}`));
  }

  /** The Gaussian-perturbed batch (a new tensor; call inside tf.tidy, once per batch in order). */
  noisy(x: tf.Tensor4D): tf.Tensor4D {
    const p = this.p;
    if (p.kind !== 'gaussian') throw new Error('Perturber.noisy: not a gaussian perturbation');
    if (p.sigma === 0) return tf.clone(x);
    const noise = fillGaussian(new Float32Array(x.shape[0] * IMAGE_PIXELS), this.noiseRng, 0, p.sigma);
    return tf.clipByValue(tf.add(x, tf.tensor4d(noise, x.shape)), -1, 1) as tf.Tensor4D;
  }

  /** The draw of an attack perturbation for the examples `indices` (training-set indices). */
  draw(indices: Int32Array): AttackDraw {
    if (!isAttackPerturbation(this.p)) throw new Error('Perturber.draw: not an attack perturbation');
    return { perturb: this.p, seed: this.seed, epoch: this.epoch, indices };
  }
}
