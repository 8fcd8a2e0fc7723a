/**
 * Training-time perturbations: the x~ of the CNN-F pair loss. `gaussian:SIGMA` draws noise from the
 * seeded RNG (clipped to [-1, 1]); `fgsm:EPS` and `pgd:EPS,STEP,ITERS` attack the current model
 * through its first forward pass (mode 'first', as in the paper's adversarial training).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FGSM, PGD, type Victim } from '../attacks/index.js';
import { deriveSeed, fillGaussian, IMAGE_PIXELS, mulberry32, type Rng } from '../data/index.js';
import { UsageError } from '../errors.js';
import type { CNNF } from '../models/cnnf.js';

export type Perturbation =
  | { kind: 'gaussian'; sigma: number }
  | { kind: 'fgsm'; eps: number }
  | { kind: 'pgd'; eps: number; step: number; iters: number };

const SYNTAX = 'gaussian:SIGMA, fgsm:EPS or pgd:EPS,STEP,ITERS';

function num(flag: string, raw: string, what: string, integer = false): number {
  const s = raw.trim();
  const v = s === '' ? NaN : Number(s);
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`${flag}: ${what} must be a number >= 0, got ${JSON.stringify(raw)}`);
  if (integer && (!Number.isInteger(v) || v < 1)) throw new UsageError(`${flag}: ${what} must be an integer >= 1, got ${JSON.stringify(raw)}`);
  return v;
}

/** Parses `gaussian:SIGMA | fgsm:EPS | pgd:EPS,STEP,ITERS` (one-line UsageError otherwise). */
export function parsePerturbation(raw: string, flag = '--perturb'): Perturbation {
  const s = String(raw).trim();
  const colon = s.indexOf(':');
  if (colon < 0) throw new UsageError(`${flag} must be ${SYNTAX}, got ${JSON.stringify(raw)}`);
  const kind = s.slice(0, colon).toLowerCase();
  const args = s.slice(colon + 1).split(',');
  if (kind === 'gaussian' && args.length === 1) return { kind, sigma: num(flag, args[0], 'SIGMA') };
  if (kind === 'fgsm' && args.length === 1) return { kind, eps: num(flag, args[0], 'EPS') };
  if (kind === 'pgd' && args.length === 3) {
    return { kind, eps: num(flag, args[0], 'EPS'), step: num(flag, args[1], 'STEP'), iters: num(flag, args[2], 'ITERS', true) };
  }
  throw new UsageError(`${flag} must be ${SYNTAX}, got ${JSON.stringify(raw)}`);
}

export function formatPerturbation(p: Perturbation | null): string {
  if (!p) return 'none';
  if (p.kind === 'gaussian') return `gaussian:${p.sigma}`;
  if (p.kind === 'fgsm') return `fgsm:${p.eps}`;
  return `pgd:${p.eps},${p.step},${p.iters}`;
}

/** A per-epoch perturbation source: deterministic given (seed, epoch, batch), so resume replays it exactly. */
export class Perturber {
  private readonly noiseRng: Rng;

  constructor(readonly p: Perturbation, private readonly seed: number, private readonly epoch: number) {
    this.noiseRng = mulberry32(deriveSeed(seed, `train-noise:${epoch}`));
  }

  /** The perturbed batch (a new tensor; call inside tf.tidy). */
  perturb(model: CNNF, x: tf.Tensor4D, labels: tf.Tensor1D, batch: number): tf.Tensor4D {
    const p = this.p;
    if (p.kind === 'gaussian') {
      if (p.sigma === 0) return tf.clone(x);
      const noise = fillGaussian(new Float32Array(x.shape[0] * IMAGE_PIXELS), this.noiseRng, 0, p.sigma);
      return tf.clipByValue(tf.add(x, tf.tensor4d(noise, x.shape)), -1, 1) as tf.Tensor4D;
    }
    const victim: Victim = { model, mode: 'first', cycles: model.config.cycles, readout: 'last' };
    let k = 0;
    const nextSeed = () => deriveSeed(this.seed, `train-attack:${this.epoch}:${batch}:${k++}`);
    if (p.kind === 'fgsm') return new FGSM().perturb(victim, x, labels, p.eps, { nextSeed });
    return new PGD({ steps: p.iters, stepSize: p.step, randomStart: true }).perturb(victim, x, labels, p.eps, { nextSeed });
  }
}
