/** The options of a training run (everything that determines it), their defaults and validation. */
import { type LoadDatasetOptions } from '../data/index.js';
import { UsageError } from '../errors.js';
import { getArch, makeConfig, type ArchName, type ModelConfig } from '../models/arch.js';
import { type ScheduleName } from './optimizer.js';
import { type Perturbation } from './perturb.js';

export type ModelKind = 'cnn' | 'cnnf';
export const MODEL_KINDS: readonly ModelKind[] = ['cnn', 'cnnf'];

/** Everything that determines a run (stored in the resume state). */
export interface TrainOptions {
  model: ModelKind;
  arch: ArchName;
  /** Hidden fc widths (default: the arch's). */
  fc?: number[];
  /** Feedback level (cnn: 0, cnnf: 2, or 1 for arch small). */
  ind?: number;
  /** Feedback cycles (cnn: 0, cnnf: 1). */
  cycles?: number;
  /** Residual parameter (0.1). */
  resParam?: number;
  epochs: number;
  batchSize: number;
  /**
   * Compute each batch's gradient in chunks of this many images and add them up (default
   * DEFAULT_MICRO_BATCH, whatever the worker count).
   */
  microBatch?: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleName;
  /** Poly exponent. */
  power: number;
  /** Gradient-norm clip (clip_grad_norm_ max norm); null = none. */
  clip: number | null;
  cleanWeight: number;
  reconWeight: number;
  seed: number;
  /** x~ of the pair loss; null: cnn trains on clean images only, cnnf falls back to gaussian:0.3. */
  perturb: Perturbation | null;
  /** Sigma of the noisy test accuracy (default: the gaussian perturbation's sigma, else 0.3). */
  evalSigma?: number;
  dataset: LoadDatasetOptions;
}

/**
 * Images per micro-batch when --micro-batch is not given. Fixed, so that the float sums of a step (and
 * so the trained weights) do not depend on the worker count; small, because a micro-batch's backward
 * pass through CNN-F's cycles keeps ~20 MB of activations per image in the wasm heap (which never
 * shrinks). 8 was also the fastest size per image on one wasm thread (fmnist CNN-F, 2026-11-27, AMD
 * EPYC: 3.7 s per 64 images in micro-batches of 8 or 16, 5.1 s as one batch of 64).
 */
export const DEFAULT_MICRO_BATCH = 8;

export const TRAIN_DEFAULTS = {
  epochs: 10,
  batchSize: 128,
  lr: 0.05,
  momentum: 0.9,
  weightDecay: 5e-4,
  schedule: 'poly' as ScheduleName,
  power: 0.9,
  clip: 0.5,
  cleanWeight: 0.1,
  reconWeight: 0.1,
  seed: 0,
  resParam: 0.1,
  cnnfPerturb: { kind: 'gaussian', sigma: 0.3 } as Perturbation,
  evalSigma: 0.3,
};

/** The model configuration a run trains (defaults per model kind). */
export function resolveModelConfig(opts: TrainOptions, numClasses: number): ModelConfig {
  const spec = getArch(opts.arch);
  const cnn = opts.model === 'cnn';
  return makeConfig({
    arch: opts.arch,
    fc: opts.fc,
    numClasses,
    ind: opts.ind ?? (cnn ? 0 : Math.min(2, spec.maxInd)),
    cycles: opts.cycles ?? (cnn ? 0 : 1),
    resParam: opts.resParam ?? TRAIN_DEFAULTS.resParam,
  });
}

/** The perturbation actually used (cnnf without one: gaussian:0.3, as the seed report). */
export function effectivePerturbation(opts: TrainOptions): { perturb: Perturbation | null; defaulted: boolean } {
  if (opts.perturb) return { perturb: opts.perturb, defaulted: false };
  if (opts.model === 'cnnf') return { perturb: TRAIN_DEFAULTS.cnnfPerturb, defaulted: true };
  return { perturb: null, defaulted: false };
}

export function validateTrainOptions(o: TrainOptions): void {
  const pos = (name: string, v: number, integer = false) => {
    if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new UsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
    }
  };
  const nonneg = (name: string, v: number) => {
    if (!Number.isFinite(v) || v < 0) throw new UsageError(`${name} must be a number >= 0, got ${v}`);
  };
  if (!MODEL_KINDS.includes(o.model)) throw new UsageError(`--model must be one of ${MODEL_KINDS.join(', ')}, got ${JSON.stringify(o.model)}`);
  getArch(o.arch);
  pos('--epochs', o.epochs, true);
  pos('--batch-size', o.batchSize, true);
  if (o.microBatch !== undefined) pos('--micro-batch', o.microBatch, true);
  pos('--lr', o.lr);
  nonneg('--momentum', o.momentum);
  if (o.momentum >= 1) throw new UsageError(`--momentum must be < 1, got ${o.momentum}`);
  nonneg('--weight-decay', o.weightDecay);
  nonneg('--power', o.power);
  if (o.clip !== null) pos('--clip', o.clip);
  nonneg('--clean-weight', o.cleanWeight);
  nonneg('--recon-weight', o.reconWeight);
  if (o.evalSigma !== undefined) nonneg('--eval-sigma', o.evalSigma);
  if (o.model === 'cnn' && o.cycles !== undefined && o.cycles !== 0) {
    throw new UsageError(`--model cnn has 0 cycles (got --cycles ${o.cycles}); use --model cnnf for feedback`);
  }
  if (o.model === 'cnnf' && o.cycles === 0) throw new UsageError('--model cnnf needs --cycles >= 1 (a CNN-F with 0 cycles is --model cnn)');
  // validates fc widths, ind, cycles, res_param for the arch
  resolveModelConfig(o, 10);
}
