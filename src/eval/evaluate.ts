/**
 * Robustness evaluation: clean accuracy and confusion, every attack x epsilon x gradient path of a
 * suite, targeted success rates, per-example worst case, flat gate metrics and provenance, for one
 * or more checkpoints on one test split. Every random draw is derived from the seed, the attack, the
 * epsilon, the mode and the index of the batch's first example, so results do not depend on the
 * order batches run in (nor on which models are evaluated together).
 *
 * Four steps, so that one plan drives every way of running it:
 *   plan        makePlan(): the run's identity and its work units (plan.ts)
 *   run         runUnits(): units in this thread or a worker pool; optionally only one shard's,
 *               skipping those a --state directory already holds, recording each as it finishes
 *   accumulate  accumulate(): unit records -> per-model counts, per-example outcomes, dump images
 *   assemble    assemble(): counts -> the results object (tables, metrics, checks, provenance)
 * evaluate() does all four; evaluateShard() stops after `run` (shard files, merged by `cnnf merge`).
 */
import { makeDirs } from '../io/files.js';
import * as tf from '@tensorflow/tfjs-core';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { uniqueSlugs } from '../format.js';
import { VERSION } from '../version.js';
import { activeBackend } from '../backend/index.js';
import { formatShape, pixelsPerImage, splitShape, type ImageShape, type Split } from '../data/index.js';
import { trainingRecipe, type LoadedCheckpoint } from '../io/checkpoint.js';
import type { Readout } from '../models/cnnf.js';
import { getArch } from '../models/arch.js';
import { isForeign } from '../models/foreign.js';
import type { LoadedForeign } from '../io/tfjs.js';
import { writeDump, type DumpExample } from '../io/images.js';
import { metricKey, RESULTS_FORMAT, type AttackResult, type EvalResults, type ModelResult } from './results.js';
import { attackSettings, buildAttack, type Suite } from './suite.js';
import { evalBatch, type BatchOutcome, type BatchTask } from './batch.js';
import { ALPHA, ciPair, INTERVAL_METHOD, measure, PAIRED_TEST } from './stats.js';
import { WorkerPool } from '../parallel/pool.js';
import { EVAL_BATCH, EVAL_PROBE, runEvalBatch, runEvalProbe } from './worker-tasks.js';
import { getAttack, isStaged } from '../attacks/index.js';
import { probeChecks, resultChecks, type EvalCheck, type ProbeTask } from './checks.js';
import {
  planBatchCount, currentTool, dataHash, jobsFor, PLAN_FORMAT, planToJson, planUnits, runIdOf, unitsOfShard,
  type EvalPlan, type PlanUnit, type ShardSpec,
} from './plan.js';
import { recordToJson, type UnitRecord } from './units.js';
import { openState, recordedBatchSize, type StateStore } from './state.js';
import { chooseBatchSize, DEFAULT_MEMORY_BUDGET, type BatchChoice, type BatchSizeSource, type MemoryModel } from './memory.js';

export interface EvalData {
  /** Dataset name for provenance ("fashion-mnist"). */
  name: string;
  classNames: string[];
  numClasses: number;
  /** The (possibly subset) test split to evaluate on. */
  split: Split;
  /** How the split was chosen, for provenance ("stride:50", "full"). */
  testSubset: string;
}

export interface EvalProgress {
  model: string;
  /** "start" (once per model, before its first unit), "clean" or "<attack>[:<mode>]". */
  stage: string;
  /** Work units done / total over the whole evaluation (one unit = one batch at one attack point). */
  done: number;
  total: number;
  /** Where a long unit is, from inside its attack ("pgd:e2e eps 0.1, 3/7 steps"); stage is then "step". */
  detail?: string;
}

export interface EvaluateOptions {
  seed: number;
  /**
   * Examples per batch. Default: the size a resumed state directory records, else the largest (at
   * most the suite's batchSize, else 100) that fits `memoryBudget` with the run's workers
   * (src/eval/memory.ts).
   */
  batchSize?: number;
  /** Bytes the whole process may use (default 1 GB), for the default batch size. */
  memoryBudget?: number;
  /** Where the batch size came from, for provenance (set by the CLI, which chooses it itself). */
  batchSizeFrom?: BatchSizeSource;
  /** Feedback cycles for models trained with feedback (plain CNNs, trained with 0 cycles, always run 0). */
  cycles?: number;
  /** Readout for every model (default: each checkpoint's own). */
  readout?: Readout;
  /** Display names, one per model (default: file name without extension). */
  names?: string[];
  onProgress?: (p: EvalProgress) => void;
  /**
   * Write PNG dumps of `dumpCount` examples per model x attack x mode x epsilon (see pickDumpExamples:
   * one per class where possible, preferring examples the attack flips).
   */
  dumpDir?: string;
  dumpCount?: number;
  /** Dump paths in the results are relative to this directory (default: the current directory). */
  dumpBase?: string;
  /** One model and one attack: dump into dumpDir itself (one epsilon) or dumpDir/epsE/ (several), instead of DIR/MODEL/ATTACK-MODE-epsE/. */
  flatDump?: boolean;
  /** Command line recorded in provenance. */
  command?: string;
  /**
   * Worker threads that run batches in parallel (default 1: everything in this thread). Needs the
   * wasm or cpu backend; results are identical for any number of workers.
   */
  workers?: number;
  /** A running pool to use instead of starting `workers` (the caller closes it). */
  pool?: WorkerPool;
  /**
   * Evaluate checkpoints whose metadata records another dataset than `data.name` (refused otherwise);
   * the results then carry a dataset-mismatch warning (check 9) for each.
   */
  allowDatasetMismatch?: boolean;
  /** Run the trust checks (default true); probe checks use the first `probeSize` examples (default 64). */
  checks?: boolean;
  probeSize?: number;
  /**
   * Resumable runs: every finished unit is recorded here (atomically); a run with the same plan
   * skips the units the directory already holds. A directory of another run is refused.
   */
  stateDir?: string;
  /** Called once when a state directory already holds `done` of the `total` units to run. */
  onResume?: (done: number, total: number) => void;
}

interface PointAcc {
  correct: number;
  hits: number;
  /** Per-example correctness (1 = correct), for intervals and paired tests. */
  ok: Uint8Array;
  confusion?: number[][];
  /** Staged attacks: stage labels and, per stage, how many examples it broke. */
  stageLabels?: string[];
  brokenAt?: number[];
}

/** Perturbed dump candidates of one attack point ("ATTACK[-MODE]-epsE"), in example order. */
type DumpItems = Map<string, { eps: number; items: Array<{ index: number; adv: Float32Array; pred: number; target?: number }> }>;

/** Everything the units of one model add up to. */
export interface ModelAcc {
  clean: PointAcc;
  /** acc[job][eps]. */
  acc: PointAcc[][];
  /** Per worst-case epsilon, per example: still correct under every gradient attack (and clean). */
  robust: Map<number, Uint8Array>;
  dumpAdv: DumpItems;
  /** Compute milliseconds per "attack|mode" (mode '' for noise). */
  jobMs: Map<string, number>;
  probe: EvalCheck[];
  /** Clean predictions, per example. */
  cleanPred: Int32Array;
}

/**
 * An untargeted attack's predictions as counted: an example the clean pass misclassifies and the
 * attacked one classifies correctly counts with its clean prediction (an attack that happens to move
 * a misclassified example back to its label does not make it robust; AutoAttack does not attack it). So robust examples are always a subset of the clean-
 * correct ones, whatever a shard or state file says. The clean unit of a batch precedes its attack units.
 */
function keepMisclassified(pred: Int32Array, cleanPred: Int32Array, start: number, labels: ArrayLike<number>): Int32Array {
  let out: Int32Array | null = null;
  for (let i = 0; i < pred.length; i++) {
    const c = cleanPred[start + i]!;
    if (c !== labels[start + i] && pred[i] === labels[start + i]) {
      out ??= Int32Array.from(pred);
      out[i] = c;
    }
  }
  return out ?? pred;
}

const zeros = (k: number): number[][] => Array.from({ length: k }, () => new Array<number>(k).fill(0));

/** A model evaluate() takes: a cnnf checkpoint, or a foreign classifier (src/io/tfjs.ts). */
export type EvalModel = LoadedCheckpoint | LoadedForeign;

/** The foreign model, or null for a cnnf checkpoint. */
export const foreignOf = (m: EvalModel): LoadedForeign | null => (isForeign(m.model) ? (m as LoadedForeign) : null);

/** Input shape [h, w, c] a model takes. */
export function modelInputShape(m: EvalModel): ImageShape {
  const f = foreignOf(m);
  if (f) return [...f.model.inputShape];
  const a = getArch((m as LoadedCheckpoint).info.config.arch);
  return [a.height, a.width, a.inChannels];
}

/** Effective cycles of a checkpoint under an optional override (foreign models: 0). */
export function effectiveCycles(ck: EvalModel, override?: number): number {
  if (foreignOf(ck)) return 0;
  const c = (ck as LoadedCheckpoint).info.config.cycles;
  return c === 0 ? 0 : (override ?? c);
}

/** Attack kinds that need the victim's input gradients (refused for models tfjs cannot differentiate). */
const NEEDS_GRADIENTS = new Set(['gradient', 'ensemble']);

/** File names (without extension) that say nothing about the model: such a model is named by its folder. */
export const GENERIC_MODEL_STEMS: readonly string[] = ['best', 'last', 'final', 'latest', 'model', 'checkpoint', 'ckpt', 'weights', 'state'];

/**
 * Display name of a model: its file name without extension, or, when that is generic (`best`,
 * `last`, `model`, ... see GENERIC_MODEL_STEMS; a TF.js DIR/model.json), the folder's name:
 * `runs/cnn/best.safetensors` is `cnn`.
 */
export function defaultModelName(path: string): string {
  const b = basename(path);
  const stem = b.slice(0, b.length - extname(b).length) || b;
  const dir = basename(dirname(resolve(path)));
  if (dir && GENERIC_MODEL_STEMS.includes(stem.toLowerCase())) return dir;
  return stem;
}

/**
 * Default names of several models (defaultModelName), made distinct where two generic names share a
 * folder: `runs/cnn/best` and `runs/cnn/last` are `cnn-best` and `cnn-last`.
 */
export function defaultModelNames(paths: string[]): string[] {
  const names = paths.map((p) => defaultModelName(p));
  return names.map((n, i) => {
    const b = basename(paths[i]);
    const stem = b.slice(0, b.length - extname(b).length) || b;
    const clash = names.some((m, j) => j !== i && m === n);
    return clash && n !== stem ? `${n}-${stem}` : n;
  });
}

/** The dataset a cnnf checkpoint's metadata records, when it names one (TF.js models record none); printable, at most 80 characters. */
export function recordedDataset(m: EvalModel): string | undefined {
  if (foreignOf(m)) return undefined;
  const d = (m as LoadedCheckpoint).info.dataset;
  // eslint-disable-next-line no-control-regex
  return d && d !== 'unknown' ? d.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, 80) : undefined;
}

/**
 * Datasets whose name says what the images are. `idx` and `folder` hold whatever their files hold
 * (Fashion-MNIST as PNGs is `folder`), so a checkpoint is never refused for them, nor when it records one.
 */
const NAMED_DATASETS: readonly string[] = ['fashion-mnist', 'mnist', 'emnist-letters', 'cifar10'];

/** The named dataset a checkpoint records, where it is another named dataset than `dataset` (else undefined). */
export function datasetMismatch(m: EvalModel, dataset: string): string | undefined {
  const d = recordedDataset(m);
  return d !== undefined && d !== dataset && NAMED_DATASETS.includes(d) && NAMED_DATASETS.includes(dataset) ? d : undefined;
}

/**
 * A checkpoint trained on another dataset than the one it is evaluated on gives numbers that measure
 * nothing (fashion-mnist weights score ~10% on mnist): refused with one line unless `allow`; when
 * allowed, the results' checks say so (check 9).
 */
export function checkModelDatasets(models: EvalModel[], dataset: string, allow = false): void {
  if (allow) return;
  for (const m of models) {
    const d = datasetMismatch(m, dataset);
    if (d !== undefined) {
      throw new UsageError(`${m.path} was trained on ${d} (its metadata), not ${dataset}: its accuracy there measures nothing; pass --allow-dataset-mismatch to evaluate it anyway`);
    }
  }
}

/** Epsilons of the per-example worst case: every epsilon a gradient attack runs at. */
export function worstCaseEps(suite: Suite): number[] {
  const s = new Set<number>();
  for (const a of suite.attacks) if (a.norm !== null) for (const e of a.eps) s.add(e);
  return [...s].sort((a, b) => a - b);
}

/** Dump candidates per class: the first few examples of each class in the split. */
const DUMP_CANDIDATES_PER_CLASS = 3;

/** Indices (ascending) of the dump candidates: the first DUMP_CANDIDATES_PER_CLASS examples of every class, and at least the first `count` examples. */
export function dumpCandidates(labels: ArrayLike<number>, count: number, numClasses: number, dumpCount: number): number[] {
  const seen = new Array<number>(numClasses).fill(0);
  const out: number[] = [];
  let full = 0;
  for (let i = 0; i < count && (full < numClasses || i < dumpCount); i++) {
    const c = labels[i]!;
    if (i < dumpCount || (c >= 0 && c < numClasses && seen[c]! < DUMP_CANDIDATES_PER_CLASS)) out.push(i);
    if (c >= 0 && c < numClasses && ++seen[c]! === DUMP_CANDIDATES_PER_CLASS) full++;
  }
  return out;
}

/**
 * Which examples an attack point's dump shows: one per class where possible, taking an example the
 * attack flips (clean correct, attacked wrong) when the class has one; classes with a flipped
 * example come first. If dumpCount exceeds the classes, further candidates fill up. Ascending indices.
 */
export function pickDumpExamples(cands: ReadonlyArray<{ index: number; label: number; flipped: boolean }>, dumpCount: number): number[] {
  const byClass = new Map<number, Array<{ index: number; flipped: boolean }>>();
  for (const c of cands) byClass.set(c.label, [...(byClass.get(c.label) ?? []), c]);
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const firstOf = (cl: number): { index: number; flipped: boolean } => byClass.get(cl)!.find((x) => x.flipped) ?? byClass.get(cl)![0]!;
  const order = [...classes.filter((cl) => firstOf(cl).flipped), ...classes.filter((cl) => !firstOf(cl).flipped)];
  const picked = new Set(order.slice(0, dumpCount).map((cl) => firstOf(cl).index));
  for (const c of cands) {
    if (picked.size >= dumpCount) break;
    picked.add(c.index);
  }
  return [...picked].sort((a, b) => a - b);
}

const safe = (s: string): string => s.replace(/[^A-Za-z0-9_.-]+/g, '_');

/** The memory chooser's view of a model (src/eval/memory.ts). */
export function memoryModel(m: EvalModel, cycles?: number): MemoryModel {
  const [h, w, c] = modelInputShape(m);
  const f = foreignOf(m);
  return f
    ? { cycles: 0, pixels: h * w * c, foreign: true }
    : { arch: (m as LoadedCheckpoint).info.config.arch, cycles: effectiveCycles(m, cycles), pixels: h * w * c, foreign: false };
}

/**
 * The batch size of a run (see chooseBatchSize): `opts.batchSize`, else what `opts.stateDir`
 * records, else the largest that fits the memory budget (never dependent on the worker count), and
 * how many of `workers` the budget then holds.
 */
export function chooseRunBatch(models: EvalModel[], suite: Suite, examples: number, opts: {
  batchSize?: number; memoryBudget?: number; cycles?: number; workers?: number; workersAuto?: boolean; stateDir?: string;
}): BatchChoice {
  const recorded = opts.batchSize === undefined && opts.stateDir !== undefined ? recordedBatchSize(opts.stateDir) : undefined;
  const anyPooled = models.some((m) => !foreignOf(m));
  return chooseBatchSize(models.map((m) => memoryModel(m, opts.cycles)), suite, {
    examples,
    workers: anyPooled ? opts.workers ?? 1 : 1,
    workersAuto: opts.workersAuto,
    budget: opts.memoryBudget,
    batchSize: opts.batchSize,
    recorded,
  });
}

/** `opts` with the batch size settled (chooseRunBatch) and where it came from (a given size without a source: `flag`). */
function settleBatch(models: EvalModel[], data: EvalData, suite: Suite, opts: EvaluateOptions): EvaluateOptions {
  if (opts.batchSize !== undefined) return { ...opts, batchSizeFrom: opts.batchSizeFrom ?? 'flag' };
  if (models.length === 0) return opts;
  const c = chooseRunBatch(models, suite, Math.max(1, data.split.count), {
    memoryBudget: opts.memoryBudget, cycles: opts.cycles, workers: opts.pool?.size ?? opts.workers ?? 1, workersAuto: false, stateDir: opts.stateDir,
  });
  return { ...opts, batchSize: c.batchSize, batchSizeFrom: opts.batchSizeFrom ?? c.from, memoryBudget: opts.memoryBudget ?? DEFAULT_MEMORY_BUDGET };
}

/** Step 1: checks the inputs and makes the plan (names, cycles, readouts, batches, units). */
export function makePlan(models: EvalModel[], data: EvalData, suite: Suite, opts: EvaluateOptions): EvalPlan {
  if (models.length === 0) throw new UsageError('evaluate needs at least one model');
  const batchSize = settleBatch(models, data, suite, opts).batchSize!;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`batch size must be a positive integer, got ${batchSize}`);
  if (opts.cycles !== undefined && (!Number.isInteger(opts.cycles) || opts.cycles < 0)) throw new UsageError(`--cycles must be an integer >= 0, got ${opts.cycles}`);
  const split = data.split;
  if (split.count === 0) throw new UsageError('the test split is empty');
  const k = data.numClasses;
  const defaults = defaultModelNames(models.map((m) => m.path));
  const names = models.map((m, i) => opts.names?.[i] ?? defaults[i]);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) throw new UsageError(`two models are named ${JSON.stringify(n)}; give them distinct names with --name PATH=LABEL`);
  });
  const shape = splitShape(split);
  for (const [i, m] of models.entries()) {
    const want = modelInputShape(m);
    if (formatShape(want) !== formatShape(shape)) {
      throw new UsageError(`${m.path} takes ${formatShape(want)} images (HxWxC), the ${data.name} test images are ${formatShape(shape)}`);
    }
    const f = foreignOf(m);
    const mk = f ? f.model.numClasses : (m as LoadedCheckpoint).info.config.numClasses;
    if (mk !== k) {
      throw new UsageError(`${m.path}: the model has ${mk} classes but ${data.name} has ${k}`);
    }
    if (f && !f.model.differentiable) {
      const bad = suite.attacks.filter((a) => NEEDS_GRADIENTS.has(getAttack(a.method).kind)).map((a) => a.name);
      if (bad.length > 0) {
        throw new UsageError(`${m.path}: tfjs cannot differentiate this ${f.source}, so gradient attacks (${bad.join(', ')}) cannot run on it; use the gradient-free square, spsa or transfer (and gaussian)`);
      }
    }
    for (const spec of suite.attacks) {
      if (spec.targeted && typeof spec.target === 'number' && spec.target >= k) {
        throw new UsageError(`attack ${spec.name}: target class ${spec.target} is out of range 0..${k - 1} for ${names[i]}`);
      }
    }
  }
  // after the shape and class checks (a 28x28 model on 32x32 images: that is the first thing to say)
  checkModelDatasets(models, data.name, opts.allowDatasetMismatch);
  for (const spec of suite.attacks) getAttack(spec.method).prepare?.(spec, { numClasses: k, shape });
  if (opts.flatDump && (models.length !== 1 || suite.attacks.length !== 1)) throw new Error('flatDump needs one model and one attack');
  return {
    format: PLAN_FORMAT,
    tool: currentTool(),
    backend: activeBackend(),
    seed: opts.seed,
    batchSize,
    dataset: data.name,
    testSubset: data.testSubset,
    examples: split.count,
    numClasses: k,
    classNames: [...data.classNames],
    shape,
    dataSha256: dataHash(split.images.subarray(0, split.count * pixelsPerImage(split)), split.labels.subarray(0, split.count)),
    labels: Array.from(split.labels.subarray(0, split.count)),
    suite,
    checks: opts.checks !== false,
    probeSize: Math.min(opts.probeSize ?? 64, split.count),
    dumpCount: opts.dumpDir ? Math.min(opts.dumpCount ?? 4, split.count) : 0,
    models: models.map((m, i) => {
      const f = foreignOf(m);
      if (f) {
        return {
          name: names[i],
          path: f.path,
          sha256: f.sha256,
          arch: f.source,
          cycles: 0,
          readout: 'last' as const,
          classNames: [...(f.classNames?.length === k ? f.classNames : data.classNames)],
        };
      }
      const ck = m as LoadedCheckpoint;
      const cfg = ck.info.config;
      const recipe = trainingRecipe(ck);
      const trainedOn = datasetMismatch(ck, data.name);
      return {
        name: names[i],
        path: ck.path,
        sha256: ck.sha256,
        arch: cfg.cycles > 0 ? `${cfg.arch}/cnnf-ind${cfg.ind}` : `${cfg.arch}/cnn`,
        cycles: effectiveCycles(ck, opts.cycles),
        readout: opts.readout ?? ck.info.readout,
        classNames: [...(ck.info.classNames.length === k ? ck.info.classNames : data.classNames)],
        ...(recipe !== undefined ? { recipe } : {}),
        // only where it differs from the data (allowDatasetMismatch): plans of ordinary runs are unchanged
        ...(trainedOn !== undefined ? { trainedOn } : {}),
      };
    }),
  };
}

/** Values per image of the plan's data. */
export const planPixels = (plan: EvalPlan): number => plan.shape[0] * plan.shape[1] * plan.shape[2];

/** Indices of the plan's dump candidates (none without dumps). */
function planDumpCandidates(plan: EvalPlan): number[] {
  return plan.dumpCount > 0 ? dumpCandidates(plan.labels, plan.examples, plan.numClasses, plan.dumpCount) : [];
}

/** The batch task of a clean or attack unit. */
export function unitTask(plan: EvalPlan, unit: PlanUnit, split: Split, dumpCands: number[]): BatchTask {
  const start = unit.batch * plan.batchSize;
  const n = Math.min(plan.batchSize, plan.examples - start);
  const pm = plan.models[unit.model];
  const P = planPixels(plan);
  const base = {
    name: pm.name,
    start,
    shape: plan.shape,
    images: split.images.slice(start * P, (start + n) * P),
    labels: Int32Array.from(split.labels.subarray(start, start + n)),
    cycles: pm.cycles,
    readout: pm.readout,
    numClasses: plan.numClasses,
    seed: plan.seed,
  };
  if (unit.kind === 'clean') return { ...base, jobs: [], keep: [], clean: true };
  const job = jobsFor(plan.suite, pm.cycles)[unit.job!];
  // perturbed images of a leading run of the batch that covers its dump candidates, at every epsilon
  const inBatch = dumpCands.filter((i) => i >= start && i < start + n);
  const keep = job.spec.eps.map(() => (inBatch.length > 0 ? inBatch[inBatch.length - 1]! - start + 1 : 0));
  return { ...base, jobs: [job], keep: [keep], clean: false };
}

export interface RunContext {
  models: EvalModel[];
  split: Split;
  pool?: WorkerPool | null;
  /** Records already finished (a resumed run): not run again. */
  have?: Map<number, UnitRecord>;
  /** Called with each record as soon as its unit finishes (before the next one is absorbed). */
  onRecord?: (r: UnitRecord) => void;
  onProgress?: (p: EvalProgress) => void;
}

/** The probe-check task of model `mi`: the first plan.probeSize examples (copies, for a worker). */
export function probeTask(plan: EvalPlan, mi: number, split: Split): ProbeTask {
  const pm = plan.models[mi];
  const pn = plan.probeSize;
  return {
    name: pm.name, cycles: pm.cycles, readout: pm.readout, numClasses: plan.numClasses, seed: plan.seed, shape: plan.shape,
    images: split.images.slice(0, pn * planPixels(plan)), labels: Int32Array.from(split.labels.subarray(0, pn)),
  };
}

/**
 * Step 2: runs `units` (all of the plan's, or one shard's) and returns every record (those in
 * `ctx.have` included), by unit id. A cnnf model's units (batches and probe) go to the pool when
 * there is one; a foreign model's run in this thread.
 */
export async function runUnits(plan: EvalPlan, units: PlanUnit[], ctx: RunContext): Promise<Map<number, UnitRecord>> {
  const out = new Map<number, UnitRecord>(ctx.have ?? []);
  const points = (u: PlanUnit): number => (u.kind === 'clean' ? 1 : u.kind === 'probe' ? 0 : jobsFor(plan.suite, plan.models[u.model].cycles)[u.job!].spec.eps.length);
  const total = units.reduce((t, u) => t + points(u), 0);
  let done = units.reduce((t, u) => t + (out.has(u.id) ? points(u) : 0), 0);
  const dumpCands = planDumpCandidates(plan);
  for (const [mi, ck] of ctx.models.entries()) {
    const mine = units.filter((u) => u.model === mi && !out.has(u.id));
    if (mine.length === 0) continue;
    const name = plan.models[mi].name;
    ctx.onProgress?.({ model: name, stage: 'start', done, total });
    const onPoint = (stage: string): void => {
      done++;
      ctx.onProgress?.({ model: name, stage, done, total });
    };
    const onStep = (detail: string): void => ctx.onProgress?.({ model: name, stage: 'step', done, total, detail });
    const finish = (u: PlanUnit, outcome: BatchOutcome): void => {
      const r: UnitRecord = { id: u.id, kind: u.kind as 'clean' | 'attack', outcome };
      ctx.onRecord?.(r);
      out.set(u.id, r);
    };
    const finishProbe = (u: PlanUnit, checks: EvalCheck[]): void => {
      const r: UnitRecord = { id: u.id, kind: 'probe', checks };
      ctx.onRecord?.(r);
      out.set(u.id, r);
    };
    const batches = mine.filter((u) => u.kind !== 'probe');
    const probes = mine.filter((u) => u.kind === 'probe');
    // foreign models run in this thread (the pool ships cnnf weights); results are the same either way
    const foreign = foreignOf(ck);
    const pool = foreign ? null : ctx.pool;
    if (pool) {
      // every unit goes to the pool at once (it hands them out as workers become idle); the probe first
      // (a long unit), and in a worker so that its tensors never grow this thread's wasm heap
      const model = (ck as LoadedCheckpoint).model;
      try {
        await Promise.all([
          ...probes.map(async (u) => finishProbe(u, await runEvalProbe(pool, model, probeTask(plan, mi, ctx.split)))),
          ...batches.map(async (u) => finish(u, await runEvalBatch(pool, model, unitTask(plan, u, ctx.split, dumpCands), onPoint, onStep))),
        ]);
      } finally {
        await pool.dropModel(model);
      }
    } else {
      for (const u of batches) finish(u, await evalBatch(ck.model, unitTask(plan, u, ctx.split, dumpCands), onPoint, onStep));
      for (const u of probes) finishProbe(u, await probeChecks({ ...probeTask(plan, mi, ctx.split), model: ck.model }));
    }
  }
  return out;
}

/** Step 3: adds up every unit's record (all of the plan's units must be there), model by model. */
export function accumulate(plan: EvalPlan, records: Map<number, UnitRecord>): ModelAcc[] {
  const units = planUnits(plan);
  const missing = units.filter((u) => !records.has(u.id));
  if (missing.length > 0) throw new UsageError(`${missing.length} of ${units.length} work units have no result (first: unit ${missing[0].id})`);
  const count = plan.examples;
  const k = plan.numClasses;
  const wcEps = worstCaseEps(plan.suite);
  const dumpCands = planDumpCandidates(plan);
  const P = planPixels(plan);
  const accs: ModelAcc[] = plan.models.map((pm) => {
    const jobs = jobsFor(plan.suite, pm.cycles);
    return {
      clean: { correct: 0, hits: 0, ok: new Uint8Array(count), confusion: zeros(k) },
      acc: jobs.map((j) => j.spec.eps.map((e) => ({ correct: 0, hits: 0, ok: new Uint8Array(count), confusion: e === plan.suite.confusionAt ? zeros(k) : undefined }))),
      robust: new Map(wcEps.map((e) => [e, new Uint8Array(count).fill(1)])),
      dumpAdv: new Map(),
      jobMs: new Map(),
      probe: [],
      cleanPred: new Int32Array(count),
    };
  });
  for (const u of units) {
    const rec = records.get(u.id)!;
    const a = accs[u.model];
    if (rec.kind === 'probe') {
      a.probe.push(...rec.checks);
      continue;
    }
    const o = rec.outcome;
    const cycles = plan.models[u.model].cycles;
    const start = u.batch * plan.batchSize;
    const n = Math.min(plan.batchSize, count - start);
    const yArr = plan.labels;
    const record = (pred: Int32Array, p: PointAcc, targets?: Int32Array | null, wc?: Uint8Array): void => {
      for (let i = 0; i < n; i++) {
        const y = yArr[start + i];
        const ok = pred[i] === y;
        if (ok) {
          p.correct++;
          p.ok[start + i] = 1;
        } else if (wc) wc[start + i] = 0;
        if (targets && pred[i] === targets[i]) p.hits++;
        if (p.confusion) p.confusion[y][pred[i]]++;
      }
    };
    if (u.kind === 'clean') {
      a.cleanPred.set(o.clean.subarray(0, n), start);
      record(o.clean, a.clean);
      for (const wc of a.robust.values()) for (let i = 0; i < n; i++) if (o.clean[i] !== yArr[start + i]) wc[start + i] = 0;
      continue;
    }
    const ji = u.job!;
    const job = jobsFor(plan.suite, cycles)[ji];
    const spec = job.spec;
    const key = `${spec.name}|${job.mode ?? ''}`;
    a.jobMs.set(key, (a.jobMs.get(key) ?? 0) + (o.ms[0] ?? 0));
    for (const [ei, eps] of spec.eps.entries()) {
      const pa = spec.norm !== null && !spec.targeted ? keepMisclassified(o.preds[0][ei], a.cleanPred, start, yArr) : o.preds[0][ei];
      const p = a.acc[ji][ei];
      record(pa, p, o.targets[0], spec.norm === null ? undefined : a.robust.get(eps));
      const broken = o.stages[0]?.[ei];
      if (broken) {
        const attack = buildAttack(spec);
        if (isStaged(attack)) {
          p.stageLabels ??= attack.stageLabels(cycles);
          p.brokenAt ??= new Array<number>(p.stageLabels.length).fill(0);
          for (let i = 0; i < n; i++) if (broken[i] >= 0) p.brokenAt[broken[i]]++;
        }
      }
      const adv = o.advs[0][ei];
      if (adv) {
        const dkey = `${spec.name}${job.mode ? `-${job.mode}` : ''}-eps${eps}`;
        const entry = a.dumpAdv.get(dkey) ?? { eps, items: [] };
        const m = adv.length / P;
        for (const i of dumpCands) {
          if (i < start || i >= start + m) continue;
          const r = i - start;
          entry.items.push({ index: i, adv: adv.slice(r * P, (r + 1) * P), pred: pa[r]!, target: o.targets[0]?.[r] });
        }
        a.dumpAdv.set(dkey, entry);
      }
    }
  }
  return accs;
}

/** Writes the PNG dumps of one model (needs the model and the images); returns their paths. */
async function writeModelDumps(plan: EvalPlan, mi: number, a: ModelAcc, ck: EvalModel, split: Split, opts: EvaluateOptions): Promise<string[]> {
  const dumps: string[] = [];
  const pm = plan.models[mi];
  const severalEps = plan.suite.attacks.some((s) => s.eps.length > 1);
  for (const [key, { eps, items }] of a.dumpAdv) {
    const chosen = new Set(pickDumpExamples(items.map((it) => ({
      index: it.index, label: plan.labels[it.index]!, flipped: a.clean.ok[it.index] === 1 && it.pred !== plan.labels[it.index],
    })), plan.dumpCount));
    const sel = items.filter((it) => chosen.has(it.index));
    const m = sel.length;
    const P = planPixels(plan);
    const cleanPx = new Float32Array(m * P);
    const advPx = new Float32Array(m * P);
    sel.forEach((it, r) => {
      cleanPx.set(split.images.subarray(it.index * P, (it.index + 1) * P), r * P);
      advPx.set(it.adv, r * P);
    });
    const xs = tf.tensor4d(cleanPx, [m, ...plan.shape]);
    const as = tf.tensor4d(advPx, [m, ...plan.shape]);
    let examples: DumpExample[];
    try {
      const targets = sel.some((it) => it.target !== undefined) ? sel.map((it) => it.target ?? -1) : undefined;
      examples = await dumpRows(ck, pm.cycles, xs, as, sel.map((it) => plan.labels[it.index]!), sel.map((it) => it.pred), targets, 0, m, pm.classNames);
    } finally {
      xs.dispose();
      as.dispose();
    }
    examples.forEach((ex, r) => { ex.index = sel[r]!.index; });
    // DIR/cnn-adv/pgd7-e2e-eps0.2/: the model name as a lowercase slug (unique among the models), then the attack point
    const modelDir = uniqueSlugs(plan.models.map((x) => x.name), 'model')[mi]!;
    const dir = opts.flatDump ? (severalEps ? join(opts.dumpDir!, `eps${eps}`) : opts.dumpDir!) : join(opts.dumpDir!, modelDir, safe(key));
    makeDirs(dir);
    const files = await writeDump(dir, examples, { model: pm.name, attack: key, eps, selection: 'one example per class where possible, preferring examples the attack flips' });
    for (const f of files) dumps.push(relative(opts.dumpBase ?? process.cwd(), f).split('\\').join('/'));
  }
  return dumps;
}

export interface AssembleExtras {
  command: string;
  durationSeconds: number;
  /** Dump paths per model (evaluate() with a dump directory). */
  dumps?: string[][];
  /** Shards the results were merged from. */
  shards?: number;
  /** Where the batch size came from (provenance). */
  batchSizeFrom?: BatchSizeSource;
  /** The memory budget the batch size was chosen for (bytes), where one was. */
  memoryBudget?: number;
}

/** Step 4: the results object (validateResults accepts it) from the accumulated counts. */
export function assemble(plan: EvalPlan, accs: ModelAcc[], extras: AssembleExtras): EvalResults {
  const count = plan.examples;
  const k = plan.numClasses;
  const wcEps = worstCaseEps(plan.suite);
  const results: ModelResult[] = [];
  const allChecks: EvalCheck[] = [];
  const attackSeconds: Array<{ model: string; attack: string; mode: string | null; seconds: number }> = [];
  for (const [mi, pm] of plan.models.entries()) {
    const a = accs[mi];
    const { cycles, readout, name } = pm;
    const jobs = jobsFor(plan.suite, cycles);
    // staged attacks: cumulative robust accuracy after each stage, from the clean-correct count down
    const stageAccuracies = (p: PointAcc, start: number): Array<{ stage: string; accuracy: number }> => {
      let left = start;
      return p.stageLabels!.map((stage, si) => {
        left -= p.brokenAt![si];
        return { stage, accuracy: left / count };
      });
    };
    const attacks: AttackResult[] = jobs.map((job, ji) => ({
      name: job.spec.name,
      method: job.spec.method,
      mode: job.mode,
      targeted: job.spec.targeted,
      settings: { ...attackSettings(job.spec), cycles, readout },
      points: job.spec.eps.map((eps, ei) => {
        const p = a.acc[ji][ei];
        return {
          eps,
          ...measure(p.ok),
          ...(job.spec.targeted ? { successRate: p.hits / count, successCi: ciPair(p.hits, count) } : {}),
          ...(p.confusion ? { confusion: p.confusion } : {}),
          ...(p.stageLabels ? { stages: stageAccuracies(p, a.clean.correct) } : {}),
        };
      }),
    }));
    const worstCase = wcEps.map((eps) => ({ eps, ...measure(a.robust.get(eps)!) }));
    const modelChecks: EvalCheck[] = [];
    if (plan.checks) {
      const kinds = Object.fromEntries(jobs.map((j) => [j.spec.name, getAttack(j.spec.method).kind]));
      modelChecks.push(...resultChecks({
        model: name, clean: a.clean.correct / count, numClasses: k, examples: count, attacks, kinds,
        ...(pm.trainedOn !== undefined ? { trainedOn: pm.trainedOn, dataset: plan.dataset } : {}),
      }));
      modelChecks.push(...a.probe);
      modelChecks.sort((x, y) => x.number - y.number);
    }
    allChecks.push(...modelChecks);
    const metrics: Record<string, number> = { clean: a.clean.correct / count };
    for (const at of attacks) {
      for (const p of at.points) {
        metrics[metricKey(at.name, p.eps, at.mode)] = p.accuracy;
        if (p.successRate !== undefined) metrics[metricKey(at.name, p.eps, at.mode, 'success')] = p.successRate;
      }
    }
    for (const w of worstCase) metrics[`worst@${w.eps}`] = w.accuracy;
    if (plan.checks) metrics.warnings = modelChecks.filter((c) => c.severity === 'warning').length;
    for (const [key, ms] of a.jobMs) {
      const [attack, mode] = key.split('|');
      attackSeconds.push({ model: name, attack, mode: mode === '' ? null : mode, seconds: Math.round(ms / 10) / 100 });
    }
    results.push({
      name,
      path: pm.path,
      sha256: pm.sha256,
      arch: pm.arch,
      cycles,
      readout,
      classNames: [...pm.classNames],
      clean: { ...measure(a.clean.ok), confusion: a.clean.confusion! },
      attacks,
      worstCase,
      metrics,
      ...(pm.recipe !== undefined ? { recipe: pm.recipe } : {}),
      ...(extras.dumps ? { dumps: extras.dumps[mi] } : {}),
    });
  }
  return {
    format: RESULTS_FORMAT,
    tool: { name: 'cnnf', version: VERSION },
    createdAt: new Date().toISOString(),
    provenance: {
      command: extras.command,
      backend: plan.backend,
      seed: plan.seed,
      dataset: plan.dataset,
      testSubset: plan.testSubset,
      examples: count,
      suite: plan.suite.name,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      durationSeconds: Math.round(extras.durationSeconds * 100) / 100,
      attackSeconds,
      batchSize: plan.batchSize,
      ...(extras.batchSizeFrom !== undefined ? { batchSizeFrom: extras.batchSizeFrom } : {}),
      ...(extras.memoryBudget !== undefined ? { memoryBudget: extras.memoryBudget } : {}),
      ...(extras.shards !== undefined ? { shards: extras.shards } : {}),
    },
    models: results,
    ...(plan.checks ? { checks: allChecks } : {}),
    statistics: { interval: INTERVAL_METHOD, pairedTest: PAIRED_TEST, alpha: ALPHA },
  };
}

/** Runs the plan's `units` with the options' pool or workers, recording to a state directory if one is given. */
async function runWithState(plan: EvalPlan, units: PlanUnit[], models: EvalModel[], split: Split, opts: EvaluateOptions, shard?: ShardSpec): Promise<Map<number, UnitRecord>> {
  let store: StateStore | undefined;
  let have: Map<number, UnitRecord> | undefined;
  if (opts.stateDir !== undefined) {
    store = openState(opts.stateDir, plan, shard);
    have = store.load(units);
    const counted = units.filter((u) => u.kind !== 'probe');
    const done = counted.filter((u) => have!.has(u.id)).length;
    if (have.size > 0) opts.onResume?.(done, counted.length);
  }
  // foreign models never use the pool (see runUnits): no workers for a run of foreign models only
  const workers = models.every((m) => foreignOf(m)) ? 1 : Math.min(opts.workers ?? 1, planBatchCount(plan));
  const ownPool = !opts.pool && workers > 1 ? await WorkerPool.start(workers, activeBackend(), { tasks: [EVAL_BATCH, EVAL_PROBE] }) : null;
  try {
    return await runUnits(plan, units, {
      models, split, pool: opts.pool ?? ownPool, have, onProgress: opts.onProgress,
      onRecord: store ? (r) => store.put(r) : undefined,
    });
  } finally {
    await ownPool?.close();
  }
}

/** Runs the suite on every model; returns a results object `validateResults` accepts. */
export async function evaluate(models: EvalModel[], data: EvalData, suite: Suite, options: EvaluateOptions): Promise<EvalResults> {
  const t0 = performance.now();
  const opts = settleBatch(models, data, suite, options);
  const plan = makePlan(models, data, suite, opts);
  const records = await runWithState(plan, planUnits(plan), models, data.split, opts);
  const accs = accumulate(plan, records);
  const dumps = opts.dumpDir ? [] as string[][] : undefined;
  if (dumps) for (const [mi, a] of accs.entries()) dumps.push(await writeModelDumps(plan, mi, a, models[mi], data.split, opts));
  return assemble(plan, accs, {
    command: opts.command ?? 'evaluate() (library)',
    durationSeconds: (performance.now() - t0) / 1000,
    dumps,
    batchSizeFrom: opts.batchSizeFrom,
    ...(opts.memoryBudget !== undefined ? { memoryBudget: opts.memoryBudget } : {}),
  });
}

export const SHARD_FORMAT = 'cnnf-shard/1';

/** One shard's work: the plan, which shard, and the records of exactly that shard's units. */
export interface ShardFile {
  format: typeof SHARD_FORMAT;
  runId: string;
  shard: ShardSpec;
  plan: Record<string, unknown>;
  units: Array<Record<string, unknown>>;
  provenance: {
    command: string; createdAt: string; durationSeconds: number; node: string; platform: string;
    batchSizeFrom?: BatchSizeSource; memoryBudget?: number;
  };
}

/**
 * Runs one shard of the plan (`--shard K/N`): only the units shardOf() gives to shard K. The
 * returned object is what `cnnf merge` reads; merging all N gives the results evaluate() gives.
 */
export async function evaluateShard(models: EvalModel[], data: EvalData, suite: Suite, options: EvaluateOptions, shard: ShardSpec): Promise<ShardFile> {
  const t0 = performance.now();
  const opts = settleBatch(models, data, suite, options);
  if (!Number.isInteger(shard.count) || shard.count < 1 || !Number.isInteger(shard.index) || shard.index < 1 || shard.index > shard.count) {
    throw new UsageError(`shard must be K/N with 1 <= K <= N, got ${shard.index}/${shard.count}`);
  }
  if (opts.dumpDir) throw new UsageError('--dump is not available with --shard (dumps need every batch and the models in one place; run the dump without --shard)');
  const plan = makePlan(models, data, suite, opts);
  const units = unitsOfShard(planUnits(plan), shard);
  const records = await runWithState(plan, units, models, data.split, opts, shard);
  return {
    format: SHARD_FORMAT,
    runId: runIdOf(plan),
    shard,
    plan: planToJson(plan),
    units: units.map((u) => recordToJson(records.get(u.id)!)),
    provenance: {
      command: opts.command ?? 'evaluateShard() (library)',
      createdAt: new Date().toISOString(),
      durationSeconds: Math.round((performance.now() - t0) / 10) / 100,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      ...(opts.batchSizeFrom !== undefined ? { batchSizeFrom: opts.batchSizeFrom } : {}),
      ...(opts.memoryBudget !== undefined ? { memoryBudget: opts.memoryBudget } : {}),
    },
  };
}

/**
 * Image rows for the first `m` examples of a batch: clean, perturbed, and the model's
 * reconstructions of the perturbed input after each feedback cycle, decoded to input space (none
 * for a plain CNN or a foreign model). The images' shape is that of `x`.
 */
export async function dumpRows(
  ck: EvalModel, cycles: number, x: tf.Tensor4D, xAdv: tf.Tensor4D, labels: ArrayLike<number>, preds: ArrayLike<number>,
  targets: ArrayLike<number> | undefined, start: number, m: number, classNames: string[],
): Promise<DumpExample[]> {
  const [, h, w, c] = x.shape;
  const shape: [number, number, number] = [h, w, c];
  const parts = tf.tidy(() => {
    const xs = tf.slice(x, [0, 0, 0, 0], [m, h, w, c]);
    const as = tf.slice(xAdv, [0, 0, 0, 0], [m, h, w, c]);
    const model = ck.model;
    const recons = cycles > 0 && !isForeign(model) ? model.run(as, { cycles, decodeToInput: true }).cycles.map((cy) => tf.reshape(cy.image!, [m, h, w, c])) : [];
    return [xs, as, ...recons];
  });
  const arrays = await Promise.all(parts.map((t) => t.data() as Promise<Float32Array>));
  parts.forEach((t) => t.dispose());
  const px = h * w * c;
  const out: DumpExample[] = [];
  for (let i = 0; i < m; i++) {
    out.push({
      index: start + i,
      clean: arrays[0].slice(i * px, (i + 1) * px),
      perturbed: arrays[1].slice(i * px, (i + 1) * px),
      recons: arrays.slice(2).map((a) => a.slice(i * px, (i + 1) * px)),
      label: labels[i],
      pred: preds[i],
      target: targets?.[i],
      classNames,
      shape,
    });
  }
  return out;
}
