/**
 * trainModel: trains a CNN (0 cycles) or a CNN-F with the paper's loss and optimiser, evaluates after
 * every epoch, and writes atomically: last/best checkpoints, a resumable state, the per-batch log,
 * the loss curve and a summary. Resuming from the state reproduces an uninterrupted run bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { activeBackend } from '../backend/index.js';
import {
  deriveSeed,
  fillGaussian,
  IMAGE_PIXELS,
  loadDataset,
  mulberry32,
  permutation,
  type Dataset,
  type LoadDatasetOptions,
} from '../data/index.js';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { checkOutputDir, INPUT_LIMITS, readInputFile } from '../io/files.js';
import { saveCheckpoint } from '../io/checkpoint.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { getArch, makeConfig, paramSpecs, type ArchName, type ModelConfig } from '../models/arch.js';
import { CNNF } from '../models/cnnf.js';
import { microBatchGradients } from './step.js';
import { GRADS, pooledGradients } from './worker-tasks.js';
import { WorkerPool } from '../parallel/pool.js';
import type { BatchOutcome } from '../eval/batch.js';
import { EVAL_BATCH, runEvalBatch } from '../eval/worker-tasks.js';
import { parseTrainingLog, trainLogCsv, type TrainLogRow } from './trainlog.js';
import { learningRate, SCHEDULE_NAMES, SGD, type Schedule, type ScheduleName } from './optimizer.js';
import { attackPerturb, formatPerturbation, isAttackPerturbation, Perturber, type Perturbation } from './perturb.js';

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
  /** Compute each batch's gradient in chunks of this many images and add them up (memory; default: whole batch). */
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

export interface RunControl {
  /** Output directory. */
  out: string;
  /** Continue from OUT/state.safetensors. */
  resume?: boolean;
  /** Allow a non-empty OUT (our previous outputs in it are removed first). */
  force?: boolean;
  /** Stop (cleanly, state saved) after this many epochs in this invocation. */
  stopAfterEpochs?: number;
  /** Command line recorded in summary.json and the checkpoints. */
  command?: string;
  /**
   * Worker threads computing micro-batch gradients in parallel (wasm/cpu; default 1). Without
   * --micro-batch, a batch is split into one micro-batch per worker (on resume: as the saved run was).
   * The update is bit-identical to the in-process one with the same micro-batch size.
   */
  workers?: number;
}

export interface EpochMetrics {
  epoch: number;
  step: number;
  trainLoss: number;
  /** First-pass accuracy on the clean half of the training batches, during the epoch. */
  trainAccuracy: number;
  /** Clean test accuracy, readout "last" (= first pass for a CNN). */
  testAccuracy: number;
  /** Clean test accuracy of the first forward pass. */
  testAccuracyFirst: number;
  /** Gaussian-noisy (evalSigma) test accuracy, readout "last" / first pass. */
  noisyAccuracy: number;
  noisyAccuracyFirst: number;
  lr: number;
  trainSeconds: number;
  evalSeconds: number;
  imagesPerSec: number;
  best: boolean;
}

export interface BatchInfo {
  epoch: number;
  batch: number;
  batches: number;
  step: number;
  loss: number;
  accuracy: number;
  /** Running accuracy over the epoch so far. */
  runningAccuracy: number;
  lr: number;
  imagesPerSec: number;
}

export interface StartInfo {
  config: ModelConfig;
  perturb: Perturbation | null;
  perturbDefaulted: boolean;
  startEpoch: number;
  epochs: number;
  batchesPerEpoch: number;
  trainCount: number;
  testCount: number;
  dataset: string;
  backend: string;
}

export interface TrainHooks {
  /** A pre-loaded dataset (otherwise opts.dataset is loaded). */
  dataset?: Dataset;
  onStart?(info: StartInfo): void;
  onBatch?(b: BatchInfo): void;
  onEpoch?(m: EpochMetrics): void;
  /** Progress of an epoch's test evaluation (clean, then Gaussian-noisy test images), in images. */
  onEvalProgress?(e: { epoch: number; split: 'test' | 'noisy test'; done: number; total: number }): void;
  /** Notices (defaulted settings, ...). */
  onNotice?(msg: string): void;
  /**
   * Called (and awaited) after each epoch's outputs are written, with the log so far: `cnnf train`
   * draws OUT/loss.png here (report/trainlog.ts writeLossPng).
   */
  onOutputs?(o: { epoch: number; out: string; rows: readonly TrainLogRow[]; title: string }): void | Promise<void>;
}

export interface TrainResult {
  out: string;
  config: ModelConfig;
  history: EpochMetrics[];
  completedEpochs: number;
  finished: boolean;
  best: { epoch: number; accuracy: number } | null;
  wallSeconds: number;
  summary: Record<string, unknown>;
  /** The trained model (the caller disposes it). */
  model: CNNF;
}

export const STATE_FORMAT = 'cnnf-train-state/1';
/** Files trainModel writes into OUT. */
export const OUTPUT_FILES = ['last.safetensors', 'best.safetensors', 'state.safetensors', 'state.json', 'train-log.csv', 'loss.png', 'summary.json'];

export interface TrainState {
  format: string;
  options: TrainOptions;
  config: ModelConfig;
  completedEpochs: number;
  step: number;
  history: EpochMetrics[];
  best: { epoch: number; accuracy: number } | null;
  wallSeconds: number;
  dataset: { name: string; numClasses: number; classNames: string[]; trainCount: number; testCount: number };
  /** Every random stream is derived from (seed, epoch[, batch]), so the position is the next epoch. */
  rng: { scheme: string; seed: number; nextEpoch: number };
  /**
   * Without --micro-batch, each batch is split into this many micro-batches (the run's worker count;
   * the float sums depend on the split). A resumed run keeps it whatever its own --workers, so that it
   * ends bit-identical to an uninterrupted one. Absent in states of earlier versions.
   */
  microBatchParts?: number;
}

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

/** Accuracy of the first pass and of the last cycle on a split (optionally Gaussian-noised with a fixed stream). */
export function evaluateAccuracy(
  model: CNNF, images: Float32Array, labels: Int32Array, batchSize = 500, onProgress?: (done: number, total: number) => void,
): { first: number; last: number } {
  const n = labels.length;
  let first = 0;
  let last = 0;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const counts = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(s * IMAGE_PIXELS, (s + m) * IMAGE_PIXELS), [m, 28, 28, 1]);
      const y = tf.tensor1d(labels.subarray(s, s + m), 'int32');
      const res = model.run(x);
      const hit = (lg: tf.Tensor2D) => tf.sum(tf.cast(tf.equal(tf.argMax(lg, 1), y), 'int32'));
      return tf.stack([hit(res.logits[0]), hit(res.logits[res.logits.length - 1])]);
    });
    const c = counts.dataSync();
    counts.dispose();
    first += c[0];
    last += c[1];
    onProgress?.(s + m, n);
  }
  return { first: n ? first / n : 0, last: n ? last / n : 0 };
}

/** evaluateAccuracy with the batches spread over worker threads (the same numbers). */
export async function evaluateAccuracyParallel(
  pool: WorkerPool, model: CNNF, images: Float32Array, labels: Int32Array, batchSize = 500, onProgress?: (done: number, total: number) => void,
): Promise<{ first: number; last: number }> {
  const n = labels.length;
  const parts: Array<Promise<BatchOutcome>> = [];
  let done = 0;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    parts.push(runEvalBatch(pool, model, {
      start: s, images: images.slice(s * IMAGE_PIXELS, (s + m) * IMAGE_PIXELS), labels: labels.slice(s, s + m),
      cycles: model.config.cycles, readout: 'last', numClasses: model.config.numClasses, seed: 0, jobs: [], keep: [],
    }).then((o) => {
      done += m;
      onProgress?.(done, n);
      return o;
    }));
  }
  let first = 0;
  let last = 0;
  for (const [b, o] of (await Promise.all(parts)).entries()) {
    for (let i = 0; i < o.clean.length; i++) {
      const yv = labels[b * batchSize + i];
      if (o.cleanFirst[i] === yv) first++;
      if (o.clean[i] === yv) last++;
    }
  }
  return { first: n ? first / n : 0, last: n ? last / n : 0 };
}

/** Test images plus N(0, sigma^2) noise from a fixed stream of the seed, clipped to [-1, 1]. */
export function noisyCopy(images: Float32Array, sigma: number, seed: number): Float32Array {
  const noise = fillGaussian(new Float32Array(images.length), mulberry32(deriveSeed(seed, 'eval-noise')), 0, sigma);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.min(1, Math.max(-1, images[i] + noise[i]));
  return noise;
}

function stateMetadata(state: TrainState): Record<string, string> {
  return { format: STATE_FORMAT, state: JSON.stringify(state) };
}

/** Reads OUT/state.safetensors (authoritative; state.json is a readable copy). */
export function readTrainState(dir: string): { state: TrainState; weights: Map<string, Float32Array>; momentum: Map<string, Float32Array> } {
  const path = join(dir, 'state.safetensors');
  if (!existsSync(path)) throw new UsageError(`cannot resume: ${dir} has no state.safetensors (no completed epoch)`);
  const file = readSafetensors(path);
  if (file.metadata.format !== STATE_FORMAT || !file.metadata.state) throw new UsageError(`${path}: not a cnnf training state`);
  let raw: unknown;
  try {
    raw = JSON.parse(file.metadata.state);
  } catch {
    throw new UsageError(`${path}: training state metadata is not valid JSON`);
  }
  const state = validateTrainState(raw, path);
  const specs = new Map(paramSpecs(state.config).map((p) => [p.name, p.shape.reduce((a, b) => a * b, 1)]));
  const weights = new Map<string, Float32Array>();
  const momentum = new Map<string, Float32Array>();
  for (const [k, t] of file.tensors) {
    if (t.dtype !== 'F32') throw new UsageError(`${path}: tensor ${k} is ${t.dtype}, expected F32`);
    const name = k.startsWith('param/') ? k.slice(6) : k.startsWith('momentum/') ? k.slice(9) : null;
    if (name === null) throw new UsageError(`${path}: unexpected tensor ${k} in a training state`);
    const size = specs.get(name);
    if (size === undefined) throw new UsageError(`${path}: tensor ${k} is not a parameter of the saved model`);
    if (t.data.length !== size) throw new UsageError(`${path}: tensor ${k} has ${t.data.length} values, the saved model's ${name} has ${size}`);
    for (const v of t.data) if (!Number.isFinite(v)) throw new UsageError(`${path}: tensor ${k} contains NaN or infinity`);
    (k.startsWith('param/') ? weights : momentum).set(name, t.data);
  }
  return { state, weights, momentum };
}

/**
 * Validates every field of a saved training state (a tampered state must not train "epoch -4/4"):
 * options as the command line would, the model configuration, the position (completed epochs, step,
 * rng) and its consistency with the history, best epoch and dataset. One-line UsageError naming `path`.
 */
export function validateTrainState(raw: unknown, path: string): TrainState {
  const fail = (field: string, what: string): never => {
    throw new UsageError(`${path}: training state ${field} ${what}`);
  };
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const int = (v: unknown, field: string, lo: number, hi: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) fail(field, `must be an integer in ${lo}..${hi}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const real = (v: unknown, field: string, lo: number, hi: number): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) fail(field, `must be a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    return v as number;
  };
  if (!isObj(raw)) return fail('', 'is not a JSON object');
  if (raw.format !== STATE_FORMAT) fail('format', `must be ${JSON.stringify(STATE_FORMAT)}, got ${JSON.stringify(raw.format)}`);
  const o = raw.options;
  if (!isObj(o)) return fail('options', 'must be an object');
  if (!isObj(o.dataset)) fail('options.dataset', 'must be an object');
  for (const [k, t] of [['epochs', 'number'], ['batchSize', 'number'], ['lr', 'number'], ['momentum', 'number'], ['weightDecay', 'number'],
    ['power', 'number'], ['cleanWeight', 'number'], ['reconWeight', 'number'], ['seed', 'number'], ['schedule', 'string'], ['arch', 'string'], ['model', 'string']] as const) {
    if (typeof o[k] !== t) fail(`options.${k}`, `must be a ${t}, got ${JSON.stringify(o[k])}`);
  }
  const opts = o as unknown as TrainOptions;
  int(opts.epochs, 'options.epochs', 1, 1_000_000);
  int(opts.batchSize, 'options.batchSize', 1, 65_536);
  int(opts.seed, 'options.seed', 0, 2 ** 32 - 1);
  if (opts.microBatch !== undefined) int(opts.microBatch, 'options.microBatch', 1, 65_536);
  if (opts.clip !== null && typeof opts.clip !== 'number') fail('options.clip', 'must be a number or null');
  if (!(SCHEDULE_NAMES as readonly string[]).includes(opts.schedule)) fail('options.schedule', `must be one of ${SCHEDULE_NAMES.join(', ')}`);
  if (opts.fc !== undefined && (!Array.isArray(opts.fc) || opts.fc.length > 16)) fail('options.fc', 'must be a short array of widths');
  const p = opts.perturb as unknown;
  if (p !== null) {
    if (!isObj(p)) return fail('options.perturb', 'must be null or an object');
    if (p.kind === 'gaussian') real(p.sigma, 'options.perturb.sigma', 0, 1e6);
    else if (p.kind === 'fgsm') real(p.eps, 'options.perturb.eps', 0, 1e6);
    else if (p.kind === 'pgd') {
      real(p.eps, 'options.perturb.eps', 0, 1e6);
      real(p.step, 'options.perturb.step', 0, 1e6);
      int(p.iters, 'options.perturb.iters', 1, 10_000);
    } else fail('options.perturb.kind', `must be gaussian, fgsm or pgd, got ${JSON.stringify(p.kind)}`);
  }
  try {
    validateTrainOptions(opts);
  } catch (e) {
    if (e instanceof UsageError) fail('options', `are invalid: ${e.message}`);
    throw e;
  }
  const c = raw.config;
  if (!isObj(c)) return fail('config', 'must be an object');
  let config: ModelConfig;
  try {
    config = makeConfig(c as unknown as ModelConfig);
  } catch (e) {
    if (e instanceof UsageError) return fail('config', `is invalid: ${e.message}`);
    throw e;
  }
  if (JSON.stringify(config) !== JSON.stringify(c)) fail('config', `is not a canonical model configuration: ${JSON.stringify(c).slice(0, 120)}`);
  const d = raw.dataset;
  if (!isObj(d)) return fail('dataset', 'must be an object');
  if (typeof d.name !== 'string') fail('dataset.name', 'must be a string');
  const numClasses = int(d.numClasses, 'dataset.numClasses', 2, 256);
  if (numClasses !== config.numClasses) fail('dataset.numClasses', `is ${numClasses} but the model has ${config.numClasses} classes`);
  if (!Array.isArray(d.classNames) || d.classNames.length !== numClasses || !d.classNames.every((n) => typeof n === 'string')) {
    fail('dataset.classNames', `must be ${numClasses} strings`);
  }
  const trainCount = int(d.trainCount, 'dataset.trainCount', 1, 100_000_000);
  int(d.testCount, 'dataset.testCount', 0, 100_000_000);
  const done = int(raw.completedEpochs, 'completedEpochs', 1, opts.epochs);
  const perEpoch = Math.ceil(trainCount / opts.batchSize);
  if (raw.step !== done * perEpoch) {
    fail('step', `must be ${done * perEpoch} (${done} epoch(s) x ${perEpoch} batches of ${opts.batchSize} from ${trainCount} images), got ${JSON.stringify(raw.step)}`);
  }
  real(raw.wallSeconds, 'wallSeconds', 0, 1e12);
  const history = raw.history;
  if (!Array.isArray(history) || history.length !== done) fail('history', `must list ${done} epoch(s)`);
  (history as unknown[]).forEach((h, i) => {
    const at = `history[${i}]`;
    if (!isObj(h)) return fail(at, 'must be an object');
    if (h.epoch !== i + 1) fail(`${at}.epoch`, `must be ${i + 1}, got ${JSON.stringify(h.epoch)}`);
    if (h.step !== (i + 1) * perEpoch) fail(`${at}.step`, `must be ${(i + 1) * perEpoch}, got ${JSON.stringify(h.step)}`);
    for (const k of ['trainAccuracy', 'testAccuracy', 'testAccuracyFirst', 'noisyAccuracy', 'noisyAccuracyFirst'] as const) real(h[k], `${at}.${k}`, 0, 1);
    for (const k of ['trainLoss', 'lr'] as const) real(h[k], `${at}.${k}`, 0, Number.MAX_VALUE);
    // timings are informational (JSON turns an infinite rate into null)
    for (const k of ['trainSeconds', 'evalSeconds', 'imagesPerSec'] as const) if (h[k] !== null) real(h[k], `${at}.${k}`, 0, Number.MAX_VALUE);
    if (typeof h.best !== 'boolean') fail(`${at}.best`, 'must be true or false');
    return undefined;
  });
  const best = raw.best;
  if (best !== null) {
    if (!isObj(best)) return fail('best', 'must be null or an object');
    const e = int(best.epoch, 'best.epoch', 1, done);
    const a = real(best.accuracy, 'best.accuracy', 0, 1);
    if ((history as EpochMetrics[])[e - 1]!.testAccuracy !== a) fail('best.accuracy', `is ${a} but epoch ${e} tested ${(history as EpochMetrics[])[e - 1]!.testAccuracy}`);
  }
  const rng = raw.rng;
  if (!isObj(rng)) return fail('rng', 'must be an object');
  if (typeof rng.scheme !== 'string') fail('rng.scheme', 'must be a string');
  if (rng.seed !== opts.seed) fail('rng.seed', `must equal options.seed ${opts.seed}, got ${JSON.stringify(rng.seed)}`);
  if (rng.nextEpoch !== done + 1) fail('rng.nextEpoch', `must be ${done + 1}, got ${JSON.stringify(rng.nextEpoch)}`);
  if (raw.microBatchParts !== undefined) int(raw.microBatchParts, 'microBatchParts', 1, 256);
  return raw as unknown as TrainState;
}

/** Options that must match between a run and its resumption (everything but epochs and evalSigma). */
const RESUME_KEYS: (keyof TrainOptions)[] = [
  'model', 'arch', 'batchSize', 'microBatch', 'lr', 'momentum', 'weightDecay', 'schedule', 'power', 'clip', 'cleanWeight', 'reconWeight', 'seed', 'perturb',
];

/** OUT must be empty or absent (unless force), and exist when resuming. */
export function checkOut(out: string, ctl: Pick<RunControl, 'resume' | 'force'>): void {
  // exists as a directory (or can be created) and files can be created in it: checked before any work
  if (!ctl.resume || existsSync(out)) checkOutputDir(out, '--out');
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new UsageError(`--out ${out} exists and is not a directory`);
    if (ctl.resume) return;
    if (readdirSync(out).length > 0 && !ctl.force) {
      throw new UsageError(`--out ${out} exists and is not empty (add --force to overwrite, or --resume ${out} to continue)`);
    }
  } else if (ctl.resume) {
    throw new UsageError(`cannot resume: ${out} does not exist`);
  }
}

export interface Preflight {
  out: string;
  ds: Dataset;
  config: ModelConfig;
  resumed: ReturnType<typeof readTrainState> | null;
}

/**
 * Every check trainModel makes before computing (options, OUT, resume compatibility, class count);
 * needs no backend, so the CLI runs it before initialising one. Writes nothing.
 */
export function preflightTraining(opts: TrainOptions, ctl: RunControl, dataset?: Dataset): Preflight {
  validateTrainOptions(opts);
  const out = resolve(ctl.out);
  checkOut(out, ctl);
  let resumed: ReturnType<typeof readTrainState> | null = null;
  if (ctl.resume) {
    resumed = readTrainState(out);
    const st = resumed.state;
    for (const k of RESUME_KEYS) {
      if (JSON.stringify(st.options[k] ?? null) !== JSON.stringify(opts[k] ?? null)) {
        throw new UsageError(`cannot resume: ${k} differs from the saved run (${JSON.stringify(st.options[k] ?? null)} vs ${JSON.stringify(opts[k] ?? null)})`);
      }
    }
    if (st.completedEpochs >= opts.epochs) {
      throw new UsageError(`cannot resume: ${out} already completed ${st.completedEpochs} of ${opts.epochs} epochs (raise --epochs to train longer)`);
    }
  }
  const ds = dataset ?? loadDataset(opts.dataset);
  const config = resolveModelConfig(opts, ds.numClasses);
  if (resumed) {
    const saved = resumed.state.config;
    if (saved.numClasses !== ds.numClasses) {
      throw new UsageError(`cannot resume: ${out} was trained on ${saved.numClasses} classes (${resumed.state.dataset.name}), dataset ${ds.name} has ${ds.numClasses}`);
    }
    if (JSON.stringify(saved) !== JSON.stringify(config)) {
      throw new UsageError(`cannot resume: model configuration differs from the saved run (${JSON.stringify(saved)} vs ${JSON.stringify(config)})`);
    }
    for (const p of paramSpecs(config)) {
      if (!resumed.weights.has(p.name)) throw new UsageError(`${out}/state.safetensors: missing weights ${p.name}`);
    }
  }
  return { out, ds, config, resumed };
}

/** Trains a model; see the file comment. Throws UsageError on bad options, before writing anything. */
export async function trainModel(opts: TrainOptions, ctl: RunControl, hooks: TrainHooks = {}): Promise<TrainResult> {
  const { out, ds, config, resumed } = preflightTraining(opts, ctl, hooks.dataset);
  if (!ctl.resume && ctl.force) for (const f of OUTPUT_FILES) rmSync(join(out, f), { force: true });
  // temporary files of an atomic write a kill interrupted (io/atomic.ts names them .NAME.tmp-PID-HEX)
  if (ctl.resume || ctl.force) {
    for (const f of readdirSync(out)) if (OUTPUT_FILES.some((o) => f.startsWith(`.${o}.tmp-`))) rmSync(join(out, f), { force: true });
  }
  const { perturb, defaulted } = effectivePerturbation(opts);
  const evalSigma = opts.evalSigma ?? (perturb?.kind === 'gaussian' && perturb.sigma > 0 ? perturb.sigma : TRAIN_DEFAULTS.evalSigma);
  if (defaulted) hooks.onNotice?.(`no --perturb given for cnnf: training pairs use gaussian:${TRAIN_DEFAULTS.cnnfPerturb.kind === 'gaussian' ? TRAIN_DEFAULTS.cnnfPerturb.sigma : ''} (the seed report's setting)`);

  const bs = opts.batchSize;
  const batchesPerEpoch = Math.ceil(ds.train.count / bs);
  const schedule: Schedule = { name: opts.schedule, base: opts.lr, power: opts.power, total: opts.epochs * batchesPerEpoch };

  let model: CNNF;
  if (resumed) {
    model = CNNF.fromArrays(config, resumed.weights);
  } else {
    model = CNNF.init(config, deriveSeed(opts.seed, 'init'));
  }
  const params = new Map<string, tf.Variable>();
  for (const p of paramSpecs(config)) params.set(p.name, model.params.get(p.name) as tf.Variable);
  const sgd = new SGD(params, { momentum: opts.momentum, weightDecay: opts.weightDecay, clipNorm: opts.clip ?? undefined });

  let rows: TrainLogRow[] = [];
  let history: EpochMetrics[] = [];
  let best: { epoch: number; accuracy: number } | null = null;
  let startEpoch = 1;
  let step = 0;
  let priorWall = 0;
  if (resumed) {
    const st = resumed.state;
    const buffers = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of paramSpecs(config)) {
      const b = resumed.momentum.get(p.name);
      if (b) buffers.set(p.name, { shape: p.shape, data: b });
    }
    sgd.setState({ step: st.step, buffers });
    history = st.history;
    best = st.best;
    startEpoch = st.completedEpochs + 1;
    step = st.step;
    priorWall = st.wallSeconds;
    const logPath = join(out, 'train-log.csv');
    if (existsSync(logPath)) {
      try {
        rows = parseTrainingLog(readInputFile(logPath, 'training log', { maxBytes: INPUT_LIMITS.csv }).toString('utf8'), logPath).rows.filter((r) => r.epoch <= st.completedEpochs);
      } catch {
        rows = [];
      }
    }
  }

  // the micro-batch split of a batch without --micro-batch: one part per worker, kept on resume
  const workers = ctl.workers ?? 1;
  const parts = resumed?.state.microBatchParts ?? workers;
  if (opts.microBatch === undefined && parts !== workers) {
    hooks.onNotice?.(`the saved run split each batch into ${parts} micro-batch(es) (its --workers); this run keeps that split so that it ends as the uninterrupted run would`);
  }

  const backend = activeBackend();
  hooks.onStart?.({
    config, perturb, perturbDefaulted: defaulted, startEpoch, epochs: opts.epochs, batchesPerEpoch,
    trainCount: ds.train.count, testCount: ds.test.count, dataset: ds.name, backend,
  });

  const noisyTest = noisyCopy(ds.test.images, evalSigma, opts.seed);
  const t0 = performance.now();
  const lastEpoch = ctl.stopAfterEpochs !== undefined ? Math.min(opts.epochs, startEpoch - 1 + ctl.stopAfterEpochs) : opts.epochs;
  const trainingMeta = () => ({
    model: opts.model, epochs: history.length, step, perturb: formatPerturbation(perturb), perturbDefaulted: defaulted,
    lr: opts.lr, batchSize: bs, trainImages: ds.train.count, seed: opts.seed, command: ctl.command ?? null, lastEpoch: history[history.length - 1] ?? null,
  });
  const summaryOf = (): Record<string, unknown> => {
    const wall = priorWall + (performance.now() - t0) / 1000;
    const trainSec = history.reduce((a, m) => a + m.trainSeconds, 0);
    const images = history.length * ds.train.count;
    return {
      format: 'cnnf-train-summary/1',
      command: ctl.command ?? null,
      options: opts,
      workers,
      microBatchParts: opts.microBatch === undefined ? parts : null,
      config,
      perturb: formatPerturbation(perturb),
      perturbDefaulted: defaulted,
      evalSigma,
      dataset: { name: ds.name, numClasses: ds.numClasses, trainCount: ds.train.count, testCount: ds.test.count },
      backend,
      epochsCompleted: history.length,
      epochsPlanned: opts.epochs,
      finished: history.length >= opts.epochs,
      steps: step,
      best,
      final: history[history.length - 1] ?? null,
      epochs: history,
      wallSeconds: wall,
      trainSeconds: trainSec,
      imagesPerSec: trainSec > 0 ? images / trainSec : null,
    };
  };

  let pool: WorkerPool | null = null;
  try {
    if (workers > 1) pool = await WorkerPool.start(ctl.workers!, backend, { tasks: [GRADS, EVAL_BATCH] });
    for (let epoch = startEpoch; epoch <= lastEpoch; epoch++) {
      const order = permutation(ds.train.count, mulberry32(deriveSeed(opts.seed, `shuffle:${epoch}`)));
      const perturber = perturb ? new Perturber(perturb, opts.seed, epoch) : null;
      const te = performance.now();
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let lr = 0;
      for (let b = 0; b < batchesPerEpoch; b++) {
        const start = b * bs;
        const n = Math.min(bs, ds.train.count - start);
        const x = new Float32Array(n * IMAGE_PIXELS);
        const y = new Int32Array(n);
        for (let k = 0; k < n; k++) {
          const i = order[start + k];
          x.set(ds.train.images.subarray(i * IMAGE_PIXELS, (i + 1) * IMAGE_PIXELS), k * IMAGE_PIXELS);
          y[k] = ds.train.labels[i];
        }
        lr = learningRate(schedule, step);
        // micro-batches: chunks whose gradients add up to the batch's (one per worker by default)
        const mb = Math.min(n, opts.microBatch ?? Math.ceil(n / parts));
        const lossW = { cleanWeight: opts.cleanWeight, reconWeight: opts.reconWeight };
        let lossT: tf.Tensor;
        try {
          const indices = order.subarray(start, start + n);
          const attack = perturber && isAttackPerturbation(perturber.p) ? perturber : null;
          if (pool) {
            // Gaussian noise is drawn here (one stream per epoch, in batch order); attacks run in the workers
            // with the micro-batch gradients, which are added up in micro-batch order, so the update equals
            // the in-process one with the same --micro-batch
            const xPert = perturber && !attack ? await dataOf(tf.tidy(() => perturber.noisy(tf.tensor4d(x, [n, 28, 28, 1])))) : null;
            const g = await pooledGradients(pool, model, { images: x, perturbed: xPert, labels: y, attack: attack?.draw(indices) ?? null }, mb, lossW);
            lossT = tf.tidy(() => {
              sgd.step(g.grads, lr).gradNorm.dispose();
              return tf.stack([g.value, g.hits]);
            });
            tf.dispose([g.value, g.hits, ...g.grads.values()]);
            await pool.syncWeights(model);
          } else {
            lossT = tf.tidy(() => {
              const xT = tf.tensor4d(x, [n, 28, 28, 1]);
              const yT = tf.tensor1d(y, 'int32');
              const xPert = perturber && !attack ? perturber.noisy(xT) : null;
              let lossSumT: tf.Tensor | null = null;
              let hitsT: tf.Tensor | null = null;
              const acc = new Map<string, tf.Tensor>();
              for (let c = 0; c < n; c += mb) {
                const m = Math.min(mb, n - c);
                const whole = m === n;
                const xc = whole ? xT : tf.slice(xT, c, m);
                const yc = whole ? yT : tf.slice(yT, c, m);
                const xpc = attack
                  ? attackPerturb(model, xc, yc, attack.draw(indices.slice(c, c + m)))
                  : !xPert ? null : whole ? xPert : tf.slice(xPert, c, m);
                const r = microBatchGradients(model, xc, xpc, yc, m / n, lossW);
                if (attack) xpc!.dispose();
                lossSumT = lossSumT ? tf.add(lossSumT, r.value) : r.value;
                hitsT = hitsT ? tf.add(hitsT, r.hits) : r.hits;
                for (const [name, g] of r.grads) {
                  const old = acc.get(name);
                  acc.set(name, old ? tf.add(old, g) : g);
                  if (old) {
                    old.dispose();
                    g.dispose();
                  }
                }
              }
              sgd.step(acc, lr).gradNorm.dispose();
              return tf.stack([lossSumT!, hitsT!]);
            });
          }
        } catch (e) {
          const msg = (e as Error).message ?? '';
          if (/out of bounds|out of memory|Cannot allocate|Array buffer allocation/i.test(msg)) {
            throw new UsageError(`out of ${backend} memory at batch size ${bs}${opts.microBatch ? ` (micro-batch ${opts.microBatch})` : ''}: lower --micro-batch (gradient accumulation, same update) or --batch-size`, 1);
          }
          throw e;
        }
        const [loss, hits] = await lossT.data();
        lossT.dispose();
        // wasm data() resolves without a macrotask turn: yield so timers, signals and IPC keep running
        await new Promise<void>((r) => setImmediate(r));
        step++;
        if (!Number.isFinite(loss)) {
          throw new UsageError(`training diverged: loss is ${loss} at epoch ${epoch}, batch ${b + 1} (try a lower --lr)`, 1);
        }
        lossSum += loss * n;
        correct += hits;
        seen += n;
        const row: TrainLogRow = { epoch, batch: b + 1, step, loss, accuracy: hits / n, lr };
        rows.push(row);
        hooks.onBatch?.({
          ...row, batches: batchesPerEpoch, runningAccuracy: correct / seen,
          imagesPerSec: seen / Math.max(1e-9, (performance.now() - te) / 1000),
        });
      }
      const trainSeconds = (performance.now() - te) / 1000;
      const ee = performance.now();
      const accuracy = (images: Float32Array, split: 'test' | 'noisy test') => {
        const report = (done: number, total: number) => hooks.onEvalProgress?.({ epoch, split, done, total });
        report(0, ds.test.count);
        return pool
          ? evaluateAccuracyParallel(pool, model, images, ds.test.labels, 500, report)
          : Promise.resolve(evaluateAccuracy(model, images, ds.test.labels, 500, report));
      };
      const clean = await accuracy(ds.test.images, 'test');
      const noisy = await accuracy(noisyTest, 'noisy test');
      const isBest = best === null || clean.last > best.accuracy;
      if (isBest) best = { epoch, accuracy: clean.last };
      const m: EpochMetrics = {
        epoch, step, trainLoss: lossSum / seen, trainAccuracy: correct / seen,
        testAccuracy: clean.last, testAccuracyFirst: clean.first, noisyAccuracy: noisy.last, noisyAccuracyFirst: noisy.first,
        lr, trainSeconds, evalSeconds: (performance.now() - ee) / 1000, imagesPerSec: seen / trainSeconds, best: isBest,
      };
      history.push(m);

      // outputs: log first, checkpoints, then the state (authoritative for resume), then the summary
      writeFileAtomic(join(out, 'train-log.csv'), trainLogCsv(rows));
      const ckptOpts = { dataset: ds.name, classNames: ds.classNames, training: trainingMeta(), source: 'cnnf train', readout: 'last' as const };
      const arrays = await model.toArrays();
      await saveCheckpoint(join(out, 'last.safetensors'), model, ckptOpts);
      if (isBest) await saveCheckpoint(join(out, 'best.safetensors'), model, { ...ckptOpts, training: { ...trainingMeta(), best: true } });
      const optState = await sgd.getState();
      const state: TrainState = {
        format: STATE_FORMAT, options: opts, config, completedEpochs: epoch, step, history, best,
        wallSeconds: priorWall + (performance.now() - t0) / 1000,
        dataset: { name: ds.name, numClasses: ds.numClasses, classNames: ds.classNames, trainCount: ds.train.count, testCount: ds.test.count },
        rng: { scheme: 'derived per epoch: shuffle:E, train-noise:E, train-attack:E:I (example I), eval-noise', seed: opts.seed, nextEpoch: epoch + 1 },
        microBatchParts: parts,
      };
      const tensors = new Map<string, TensorToWrite>();
      for (const [name, a] of arrays) tensors.set(`param/${name}`, { shape: a.shape, data: a.data });
      for (const [name, a] of optState.buffers) tensors.set(`momentum/${name}`, { shape: a.shape, data: a.data });
      writeSafetensors(join(out, 'state.safetensors'), tensors, stateMetadata(state));
      writeFileAtomic(join(out, 'state.json'), `${JSON.stringify({ ...state, authoritative: 'state.safetensors' }, null, 2)}\n`);
      writeFileAtomic(join(out, 'summary.json'), `${JSON.stringify(summaryOf(), null, 2)}\n`);
      await hooks.onOutputs?.({ epoch, out, rows, title: `${opts.model} ${config.arch} training loss` });
      hooks.onEpoch?.(m);
    }
  } catch (e) {
    sgd.dispose();
    model.dispose();
    throw e;
  } finally {
    await pool?.close();
  }
  sgd.dispose();
  const summary = summaryOf();
  return {
    out, config, history, completedEpochs: history.length, finished: history.length >= opts.epochs, best,
    wallSeconds: summary.wallSeconds as number, summary, model,
  };
}

async function dataOf(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}
