/**
 * trainModel: trains a CNN (0 cycles) or a CNN-F with the paper's loss and optimiser, evaluates after
 * every epoch, and writes atomically: last/best checkpoints, a resumable state, the per-batch log and
 * a summary (the loss curve: the onOutputs hook, drawn by the report layer). Resuming from the state
 * reproduces an uninterrupted run bit for bit. This file holds the run (preflight, epochs); one step is
 * loop.ts, the state state.ts, the files outputs.ts, the options options.ts, test accuracy accuracy.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { activeBackend } from '../backend/index.js';
import { deriveSeed, IMAGE_PIXELS, loadDataset, mulberry32, permutation, type Dataset } from '../data/index.js';
import { UsageError } from '../errors.js';
import { checkOutputDir } from '../io/files.js';
import { paramSpecs, type ModelConfig } from '../models/arch.js';
import { CNNF } from '../models/cnnf.js';
import { WorkerPool } from '../parallel/pool.js';
import { EVAL_BATCH } from '../eval/worker-tasks.js';
import { ACCURACY_BATCH, evaluateAccuracy, evaluateAccuracyParallel, noisyCopy } from './accuracy.js';
import { trainStep } from './loop.js';
import { learningRate, SGD, type Schedule } from './optimizer.js';
import { DEFAULT_MICRO_BATCH, effectivePerturbation, resolveModelConfig, TRAIN_DEFAULTS, validateTrainOptions, type TrainOptions } from './options.js';
import { clearOutputs, resumedLogRows, writeEpochOutputs } from './outputs.js';
import { formatPerturbation, Perturber, type Perturbation } from './perturb.js';
import { readTrainState, RNG_SCHEME, STATE_FORMAT, type EpochMetrics, type ScheduleExtension, type TrainState } from './state.js';
import type { TrainLogRow } from './trainlog.js';
import { GRADS } from './worker-tasks.js';



export interface RunControl {
  /** Output directory. */
  out: string;
  /** Continue from OUT/state.safetensors. */
  resume?: boolean;
  /** Allow a non-empty OUT (our previous outputs in it are removed first). */
  force?: boolean;
  /** Stop (cleanly, state saved) after this many epochs in this invocation. */
  stopAfterEpochs?: number;
  /**
   * With resume: allow `epochs` to differ from the saved run's. The learning rate of the remaining
   * steps is then that of a run planned for the new number of epochs (poly: base*(1 - step/newTotal)^power,
   * from the current step; the completed epochs keep the rates they had), so the result differs from
   * a straight run of the new length. Recorded in the state and summary (`extensions`). Without it a
   * changed `epochs` is refused: a resumed run is identical to an uninterrupted one.
   */
  extend?: boolean;
  /** Command line recorded in summary.json and the checkpoints. */
  command?: string;
  /**
   * Worker threads computing micro-batch gradients in parallel (wasm/cpu; default 1). Without
   * --micro-batch, a batch is split into one micro-batch per worker (on resume: as the saved run was).
   * The update is bit-identical to the in-process one with the same micro-batch size.
   */
  workers?: number;
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
    if (st.options.epochs !== opts.epochs && !ctl.extend) {
      throw new UsageError(
        `cannot resume: --epochs ${opts.epochs} differs from the saved run's ${st.options.epochs} (its learning-rate schedule is planned over ${st.options.epochs}); ` +
          `add --extend to re-plan the schedule over ${opts.epochs} epochs from here (not the same as a straight ${opts.epochs}-epoch run), or leave --epochs out`,
      );
    }
    for (const k of RESUME_KEYS) {
      if (JSON.stringify(st.options[k] ?? null) !== JSON.stringify(opts[k] ?? null)) {
        throw new UsageError(`cannot resume: ${k} differs from the saved run (${JSON.stringify(st.options[k] ?? null)} vs ${JSON.stringify(opts[k] ?? null)})`);
      }
    }
    if (st.completedEpochs >= opts.epochs) {
      throw new UsageError(`cannot resume: ${out} already completed ${st.completedEpochs} of ${opts.epochs} epochs (add --extend --epochs N to train longer)`);
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
  clearOutputs(out, ctl);
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
    rows = resumedLogRows(out, st.completedEpochs);
  }

  // micro-batch size: --micro-batch, else the saved run's, else the default (never the worker count);
  // a state of the previous version split each batch into one part per worker: kept, with a notice
  const workers = ctl.workers ?? 1;
  const legacyParts = opts.microBatch === undefined && resumed?.state.microBatchSize === undefined ? resumed?.state.microBatchParts ?? null : null;
  const microBatchSize = legacyParts !== null ? null : opts.microBatch ?? resumed?.state.microBatchSize ?? DEFAULT_MICRO_BATCH;
  if (legacyParts !== null) {
    hooks.onNotice?.(`the saved run split each batch into ${legacyParts} micro-batch(es) (its --workers, as earlier cnnf versions did); this run keeps that split so that it ends as the uninterrupted run would`);
  }
  const microBatchOf = (n: number): number => Math.min(n, microBatchSize ?? Math.ceil(n / legacyParts!));

  const extensions: ScheduleExtension[] = [...(resumed?.state.extensions ?? [])];
  if (resumed && resumed.state.options.epochs !== opts.epochs) {
    const st = resumed.state;
    extensions.push({ atEpoch: st.completedEpochs, atStep: st.step, fromEpochs: st.options.epochs, toEpochs: opts.epochs });
    const lastLr = st.history[st.history.length - 1]?.lr;
    hooks.onNotice?.(
      `--extend: ${st.options.epochs} -> ${opts.epochs} epochs after epoch ${st.completedEpochs}; the learning rate from here is that of a ${opts.epochs}-epoch plan ` +
        `(${opts.schedule} ${learningRate(schedule, st.step).toPrecision(3)} at the next step, after ${lastLr === undefined ? '?' : lastLr.toPrecision(3)}), so the run differs from a straight ${opts.epochs}-epoch one`,
    );
  }

  if (resumed && perturb?.kind === 'pgd' && resumed.state.rng.scheme !== RNG_SCHEME) {
    hooks.onNotice?.('the saved run drew PGD random starts per batch (an earlier cnnf); this one draws them per example, so it will not end exactly where the saved run would have');
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
      microBatch: microBatchSize,
      ...(legacyParts !== null ? { microBatchParts: legacyParts } : {}),
      config,
      perturb: formatPerturbation(perturb),
      perturbDefaulted: defaulted,
      evalSigma,
      dataset: { name: ds.name, numClasses: ds.numClasses, trainCount: ds.train.count, testCount: ds.test.count },
      backend,
      epochsCompleted: history.length,
      epochsPlanned: opts.epochs,
      ...(extensions.length ? { extensions } : {}),
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

  const lossW = { cleanWeight: opts.cleanWeight, reconWeight: opts.reconWeight };
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
        // micro-batches: chunks whose gradients add up to the batch's
        const { loss, hits } = await trainStep(model, sgd, pool, perturber, { images: x, labels: y, indices: order.subarray(start, start + n) }, {
          microBatch: microBatchOf(n), weights: lossW, lr, batchSize: bs, backend,
        });
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
          ? evaluateAccuracyParallel(pool, model, images, ds.test.labels, ACCURACY_BATCH, report)
          : evaluateAccuracy(model, images, ds.test.labels, ACCURACY_BATCH, report);
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
      const state: TrainState = {
        format: STATE_FORMAT, options: opts, config, completedEpochs: epoch, step, history, best,
        wallSeconds: priorWall + (performance.now() - t0) / 1000,
        dataset: { name: ds.name, numClasses: ds.numClasses, classNames: ds.classNames, trainCount: ds.train.count, testCount: ds.test.count },
        rng: { scheme: RNG_SCHEME, seed: opts.seed, nextEpoch: epoch + 1 },
        ...(microBatchSize !== null ? { microBatchSize } : { microBatchParts: legacyParts! }),
        ...(extensions.length ? { extensions } : {}),
      };
      await writeEpochOutputs({
        out, rows, model, sgd, state, isBest, summary: summaryOf,
        checkpoint: { dataset: ds.name, classNames: ds.classNames, training: trainingMeta(), source: 'cnnf train', readout: 'last' },
        bestTraining: { ...trainingMeta(), best: true },
      });
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
