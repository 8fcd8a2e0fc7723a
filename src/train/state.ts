/**
 * The resumable state of a training run: OUT/state.safetensors holds the weights, the momentum
 * buffers and (as metadata) the position, history and options; OUT/state.json is a readable copy.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { makeConfig, paramSpecs, type ModelConfig } from '../models/arch.js';
import { SCHEDULE_NAMES } from './optimizer.js';
import { validateTrainOptions, type TrainOptions } from './options.js';

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

export const STATE_FORMAT = 'cnnf-train-state/1';
/** How the run's random streams derive from the seed (recorded in the state; PGD starts were per batch, train-attack:E:B:K, before). */
export const RNG_SCHEME = 'derived per epoch: shuffle:E, train-noise:E, train-attack:E:I (example I), eval-noise';

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
   * The micro-batch size the run uses (--micro-batch, else the default of the version that started it;
   * the float sums depend on it). A resumed run keeps it, so that it ends bit-identical to an
   * uninterrupted one. Absent in states of earlier versions.
   */
  microBatchSize?: number;
  /**
   * States of the previous version: without --micro-batch each batch was split into this many parts
   * (its worker count). A resumed run keeps that split. Absent otherwise.
   */
  microBatchParts?: number;
  /**
   * Every `--resume --extend` that changed the planned epochs, in order: at `atStep` (after `atEpoch`
   * completed epochs) the plan went from `fromEpochs` to `toEpochs`, and from there the poly learning
   * rate follows a `toEpochs` plan (see RunControl.extend). Absent when the plan never changed.
   */
  extensions?: ScheduleExtension[];
}

export interface ScheduleExtension {
  atEpoch: number;
  atStep: number;
  fromEpochs: number;
  toEpochs: number;
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
  if (raw.microBatchSize !== undefined) int(raw.microBatchSize, 'microBatchSize', 1, 65_536);
  if (raw.extensions !== undefined) {
    if (!Array.isArray(raw.extensions) || raw.extensions.length > 10_000) fail('extensions', 'must be an array');
    (raw.extensions as unknown[]).forEach((x, i) => {
      if (!isObj(x)) return fail(`extensions[${i}]`, 'must be an object');
      const at = int(x.atEpoch, `extensions[${i}].atEpoch`, 1, done);
      if (x.atStep !== at * perEpoch) fail(`extensions[${i}].atStep`, `must be ${at * perEpoch}, got ${JSON.stringify(x.atStep)}`);
      int(x.fromEpochs, `extensions[${i}].fromEpochs`, 1, 1_000_000);
      int(x.toEpochs, `extensions[${i}].toEpochs`, 1, 1_000_000);
      return undefined;
    });
  }
  return raw as unknown as TrainState;
}

/** Writes OUT/state.safetensors (weights as param/NAME, momentum as momentum/NAME), then state.json. */
export function writeTrainState(
  out: string, state: TrainState, params: Map<string, { shape: number[]; data: Float32Array }>, momentum: Map<string, { shape: number[]; data: Float32Array }>,
): void {
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, a] of params) tensors.set(`param/${name}`, { shape: a.shape, data: a.data });
  for (const [name, a] of momentum) tensors.set(`momentum/${name}`, { shape: a.shape, data: a.data });
  writeSafetensors(join(out, 'state.safetensors'), tensors, stateMetadata(state));
  writeFileAtomic(join(out, 'state.json'), `${JSON.stringify({ ...state, authoritative: 'state.safetensors' }, null, 2)}\n`);
}
