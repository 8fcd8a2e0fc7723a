/**
 * Robustness evaluation: clean accuracy and confusion, every attack x epsilon x gradient path of a
 * suite, targeted success rates, per-example worst case, flat gate metrics and provenance, for one
 * or more checkpoints on one test split. Every random draw is derived from the seed, the attack, the
 * epsilon, the mode and the index of the batch's first example, so results do not depend on the
 * order batches run in (nor on which models are evaluated together).
 */
import { makeDirs } from '../io/files.js';
import * as tf from '@tensorflow/tfjs-core';
import { basename, extname, join, relative } from 'node:path';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { activeBackend } from '../backend/index.js';
import { IMAGE_PIXELS, type Split } from '../data/index.js';
import { trainingRecipe, type LoadedCheckpoint } from '../io/checkpoint.js';
import type { Readout } from '../models/cnnf.js';
import { writeDump, type DumpExample } from '../io/images.js';
import { metricKey, RESULTS_FORMAT, type AttackMode, type AttackResult, type EvalResults, type ModelResult } from './results.js';
import { attackSettings, buildAttack, type Suite } from './suite.js';
import { evalBatch, type BatchOutcome, type BatchTask, type Job } from './batch.js';
import { ALPHA, ciPair, INTERVAL_METHOD, measure, PAIRED_TEST } from './stats.js';
import { WorkerPool } from '../parallel/pool.js';
import { runEvalBatch } from './worker-tasks.js';
import { getAttack, isStaged } from '../attacks/index.js';
import { probeChecks, resultChecks, type EvalCheck } from './checks.js';

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
}

export interface EvaluateOptions {
  seed: number;
  batchSize?: number;
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
  /** Run the trust checks (default true); probe checks use the first `probeSize` examples (default 64). */
  checks?: boolean;
  probeSize?: number;
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

const zeros = (k: number): number[][] => Array.from({ length: k }, () => new Array<number>(k).fill(0));

/** Effective cycles of a checkpoint under an optional override. */
export function effectiveCycles(ck: LoadedCheckpoint, override?: number): number {
  return ck.info.config.cycles === 0 ? 0 : (override ?? ck.info.config.cycles);
}

/** Display name of a checkpoint: its file name without extension. */
export function defaultModelName(path: string): string {
  const b = basename(path);
  return b.slice(0, b.length - extname(b).length) || b;
}

/** The jobs a suite runs on a model: gradient attacks once per mode, "first" only for plain CNNs. */
export function jobsFor(suite: Suite, cycles: number): Job[] {
  const jobs: Job[] = [];
  for (const spec of suite.attacks) {
    if (spec.modes.length === 0) jobs.push({ spec, mode: null });
    else {
      const modes: AttackMode[] = cycles === 0 ? ['first'] : spec.modes;
      for (const mode of modes) jobs.push({ spec, mode });
    }
  }
  return jobs;
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

/** Runs the suite on every model; returns a results object `validateResults` accepts. */
export async function evaluate(models: LoadedCheckpoint[], data: EvalData, suite: Suite, opts: EvaluateOptions): Promise<EvalResults> {
  const t0 = performance.now();
  if (models.length === 0) throw new UsageError('evaluate needs at least one model');
  const batchSize = opts.batchSize ?? suite.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UsageError(`batch size must be a positive integer, got ${batchSize}`);
  if (opts.cycles !== undefined && (!Number.isInteger(opts.cycles) || opts.cycles < 0)) throw new UsageError(`--cycles must be an integer >= 0, got ${opts.cycles}`);
  const split = data.split;
  if (split.count === 0) throw new UsageError('the test split is empty');
  const k = data.numClasses;
  const names = models.map((m, i) => opts.names?.[i] ?? defaultModelName(m.path));
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) throw new UsageError(`two models are named ${JSON.stringify(n)}; give them distinct names with --name PATH=LABEL`);
  });
  for (const [i, m] of models.entries()) {
    if (m.info.config.numClasses !== k) {
      throw new UsageError(`${m.path}: the model has ${m.info.config.numClasses} classes but ${data.name} has ${k}`);
    }
    for (const spec of suite.attacks) {
      if (spec.targeted && typeof spec.target === 'number' && spec.target >= k) {
        throw new UsageError(`attack ${spec.name}: target class ${spec.target} is out of range 0..${k - 1} for ${names[i]}`);
      }
    }
  }
  for (const spec of suite.attacks) getAttack(spec.method).prepare?.(spec, { numClasses: k, shape: [28, 28, 1] });
  const wcEps = worstCaseEps(suite);
  const nb = Math.ceil(split.count / batchSize);
  const unitsPer = models.map((m) => 1 + jobsFor(suite, effectiveCycles(m, opts.cycles)).reduce((s, j) => s + j.spec.eps.length, 0));
  const total = unitsPer.reduce((a, b) => a + b, 0) * nb;
  let done = 0;
  const dumpCount = opts.dumpDir ? Math.min(opts.dumpCount ?? 4, split.count) : 0;
  const dumpCands = dumpCount > 0 ? dumpCandidates(split.labels, split.count, k, dumpCount) : [];
  if (opts.flatDump && (models.length !== 1 || suite.attacks.length !== 1)) throw new Error('flatDump needs one model and one attack');

  const workers = Math.min(opts.workers ?? 1, nb);
  const ownPool = !opts.pool && workers > 1 ? await WorkerPool.start(workers, activeBackend()) : null;
  const pool = opts.pool ?? ownPool;
  const results: ModelResult[] = [];
  const allChecks: EvalCheck[] = [];
  // compute time per model x attack x mode, summed over batches (in whichever thread ran them)
  const jobMs = new Map<string, number>();
  try {
    for (const [mi, ck] of models.entries()) {
      const name = names[mi];
      opts.onProgress?.({ model: name, stage: 'start', done, total });
      const cycles = effectiveCycles(ck, opts.cycles);
      const readout: Readout = opts.readout ?? ck.info.readout;
      const classNames = ck.info.classNames.length === k ? ck.info.classNames : data.classNames;
      const jobs = jobsFor(suite, cycles);
      const clean: PointAcc = { correct: 0, hits: 0, ok: new Uint8Array(split.count), confusion: zeros(k) };
      const acc: PointAcc[][] = jobs.map((j) =>
        j.spec.eps.map((e) => ({ correct: 0, hits: 0, ok: new Uint8Array(split.count), confusion: e === suite.confusionAt ? zeros(k) : undefined })));
      const robust = new Map<number, Uint8Array>(wcEps.map((e) => [e, new Uint8Array(split.count).fill(1)]));
      const dumps: string[] = [];
      /** Attacked dump candidates per attack point ("ATTACK[-MODE]-epsE"), in example order. */
      const dumpAdv = new Map<string, { eps: number; items: Array<{ index: number; adv: Float32Array; pred: number; target?: number }> }>();

      // units of work: each batch's clean pass, and each batch x job (attack and mode, all its epsilons);
      // every random draw depends on the attack point and the batch start only, so units are independent
      interface Unit { task: BatchTask; job: number | null }
      const units: Unit[] = [];
      for (let b = 0; b < nb; b++) {
        const start = b * batchSize;
        const n = Math.min(batchSize, split.count - start);
        const base = {
          start,
          images: split.images.slice(start * IMAGE_PIXELS, (start + n) * IMAGE_PIXELS),
          labels: Int32Array.from(split.labels.subarray(start, start + n)),
          cycles,
          readout,
          numClasses: k,
          seed: opts.seed,
        };
        units.push({ task: { ...base, jobs: [], keep: [], clean: true }, job: null });
        for (const [ji, j] of jobs.entries()) {
          // perturbed images of a leading run of the batch that covers its dump candidates, at every epsilon
          const inBatch = dumpCands.filter((i) => i >= start && i < start + n);
          const keep = j.spec.eps.map(() => (inBatch.length > 0 ? inBatch[inBatch.length - 1]! - start + 1 : 0));
          units.push({ task: { ...base, jobs: [j], keep: [keep], clean: false }, job: ji });
        }
      }
      const onPoint = (stage: string): void => {
        done++;
        opts.onProgress?.({ model: name, stage, done, total });
      };
      const absorb = async ({ task, job: ji }: Unit, o: BatchOutcome): Promise<void> => {
        const { start, labels: yArr } = task;
        const n = yArr.length;
        const record = (pred: Int32Array, p: PointAcc, targets?: Int32Array | null, wc?: Uint8Array): void => {
          for (let i = 0; i < n; i++) {
            const ok = pred[i] === yArr[i];
            if (ok) {
              p.correct++;
              p.ok[start + i] = 1;
            } else if (wc) wc[start + i] = 0;
            if (targets && pred[i] === targets[i]) p.hits++;
            if (p.confusion) p.confusion[yArr[i]][pred[i]]++;
          }
        };
        if (ji !== null) {
          const key = `${name}|${jobs[ji].spec.name}|${jobs[ji].mode ?? ''}`;
          jobMs.set(key, (jobMs.get(key) ?? 0) + (o.ms[0] ?? 0));
        }
        if (ji === null) {
          record(o.clean, clean);
          for (const wc of robust.values()) for (let i = 0; i < n; i++) if (o.clean[i] !== yArr[i]) wc[start + i] = 0;
          return;
        }
        const job = jobs[ji];
        const spec = job.spec;
        for (const [ei, eps] of spec.eps.entries()) {
          const pa = o.preds[0][ei];
          record(pa, acc[ji][ei], o.targets[0], spec.norm === null ? undefined : robust.get(eps));
          const broken = o.stages[0]?.[ei];
          if (broken) {
            const p = acc[ji][ei];
            const attack = buildAttack(spec);
            if (isStaged(attack)) {
              p.stageLabels ??= attack.stageLabels(cycles);
              p.brokenAt ??= new Array<number>(p.stageLabels.length).fill(0);
              for (let i = 0; i < n; i++) if (broken[i] >= 0) p.brokenAt[broken[i]]++;
            }
          }
          const adv = o.advs[0][ei];
          if (adv) {
            const key = `${spec.name}${job.mode ? `-${job.mode}` : ''}-eps${eps}`;
            const entry = dumpAdv.get(key) ?? { eps, items: [] };
            const m = adv.length / IMAGE_PIXELS;
            for (const i of dumpCands) {
              if (i < start || i >= start + m) continue;
              const r = i - start;
              entry.items.push({ index: i, adv: adv.slice(r * IMAGE_PIXELS, (r + 1) * IMAGE_PIXELS), pred: pa[r]!, target: o.targets[0]?.[r] });
            }
            dumpAdv.set(key, entry);
          }
        }
      };
      if (pool) {
        // every unit goes to the pool at once (it hands them out as workers become idle); results are absorbed in order
        const outcomes = await Promise.all(units.map((u) => runEvalBatch(pool, ck.model, u.task, onPoint)));
        await pool.dropModel(ck.model);
        for (const [i, o] of outcomes.entries()) await absorb(units[i], o);
      } else {
        for (const u of units) await absorb(u, await evalBatch(ck.model, u.task, onPoint));
      }

      if (opts.dumpDir) {
        const severalEps = suite.attacks.some((a) => a.eps.length > 1);
        for (const [key, { eps, items }] of dumpAdv) {
          const chosen = new Set(pickDumpExamples(items.map((it) => ({
            index: it.index, label: split.labels[it.index]!, flipped: clean.ok[it.index] === 1 && it.pred !== split.labels[it.index],
          })), dumpCount));
          const sel = items.filter((it) => chosen.has(it.index));
          const m = sel.length;
          const cleanPx = new Float32Array(m * IMAGE_PIXELS);
          const advPx = new Float32Array(m * IMAGE_PIXELS);
          sel.forEach((it, r) => {
            cleanPx.set(split.images.subarray(it.index * IMAGE_PIXELS, (it.index + 1) * IMAGE_PIXELS), r * IMAGE_PIXELS);
            advPx.set(it.adv, r * IMAGE_PIXELS);
          });
          const xs = tf.tensor4d(cleanPx, [m, 28, 28, 1]);
          const as = tf.tensor4d(advPx, [m, 28, 28, 1]);
          let examples: DumpExample[];
          try {
            const targets = sel.some((it) => it.target !== undefined) ? sel.map((it) => it.target ?? -1) : undefined;
            examples = await dumpRows(ck, cycles, xs, as, sel.map((it) => split.labels[it.index]!), sel.map((it) => it.pred), targets, 0, m, classNames);
          } finally {
            xs.dispose();
            as.dispose();
          }
          examples.forEach((ex, r) => { ex.index = sel[r]!.index; });
          const dir = opts.flatDump ? (severalEps ? join(opts.dumpDir, `eps${eps}`) : opts.dumpDir) : join(opts.dumpDir, safe(name), safe(key));
          makeDirs(dir);
          const files = await writeDump(dir, examples, { model: name, attack: key, eps, selection: 'one example per class where possible, preferring examples the attack flips' });
          for (const f of files) dumps.push(relative(opts.dumpBase ?? process.cwd(), f).split('\\').join('/'));
        }
      }

      const count = split.count;
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
          const p = acc[ji][ei];
          return {
            eps,
            ...measure(p.ok),
            ...(job.spec.targeted ? { successRate: p.hits / count, successCi: ciPair(p.hits, count) } : {}),
            ...(p.confusion ? { confusion: p.confusion } : {}),
            ...(p.stageLabels ? { stages: stageAccuracies(p, clean.correct) } : {}),
          };
        }),
      }));
      const worstCase = wcEps.map((eps) => ({ eps, ...measure(robust.get(eps)!) }));
      const modelChecks: EvalCheck[] = [];
      if (opts.checks !== false) {
        const kinds = Object.fromEntries(jobs.map((j) => [j.spec.name, getAttack(j.spec.method).kind]));
        modelChecks.push(...resultChecks({ model: name, clean: clean.correct / count, numClasses: k, examples: count, attacks, kinds }));
        const pn = Math.min(opts.probeSize ?? 64, count);
        modelChecks.push(...(await probeChecks({
          model: ck.model, name, cycles, readout, numClasses: k, seed: opts.seed, shape: [28, 28, 1],
          images: split.images.subarray(0, pn * IMAGE_PIXELS), labels: split.labels.subarray(0, pn),
        })));
        modelChecks.sort((a, b) => a.number - b.number);
      }
      allChecks.push(...modelChecks);
      const metrics: Record<string, number> = { clean: clean.correct / count };
      for (const a of attacks) {
        for (const p of a.points) {
          metrics[metricKey(a.name, p.eps, a.mode)] = p.accuracy;
          if (p.successRate !== undefined) metrics[metricKey(a.name, p.eps, a.mode, 'success')] = p.successRate;
        }
      }
      for (const w of worstCase) metrics[`worst@${w.eps}`] = w.accuracy;
      if (opts.checks !== false) metrics.warnings = modelChecks.filter((c) => c.severity === 'warning').length;
      const cfg = ck.info.config;
      const recipe = trainingRecipe(ck);
      results.push({
        name,
        path: ck.path,
        sha256: ck.sha256,
        arch: cfg.cycles > 0 ? `${cfg.arch}/cnnf-ind${cfg.ind}` : `${cfg.arch}/cnn`,
        cycles,
        readout,
        classNames: [...classNames],
        clean: { ...measure(clean.ok), confusion: clean.confusion! },
        attacks,
        worstCase,
        metrics,
        ...(recipe !== undefined ? { recipe } : {}),
        ...(opts.dumpDir ? { dumps } : {}),
      });
    }

  } finally {
    await ownPool?.close();
  }

  return {
    format: RESULTS_FORMAT,
    tool: { name: 'cnnf', version: VERSION },
    createdAt: new Date().toISOString(),
    provenance: {
      command: opts.command ?? 'evaluate() (library)',
      backend: activeBackend(),
      seed: opts.seed,
      dataset: data.name,
      testSubset: data.testSubset,
      examples: split.count,
      suite: suite.name,
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      durationSeconds: Math.round((performance.now() - t0) / 10) / 100,
      attackSeconds: [...jobMs].map(([key, ms]) => {
        const [model, attack, mode] = key.split('|');
        return { model, attack, mode: mode === '' ? null : mode, seconds: Math.round(ms / 10) / 100 };
      }),
    },
    models: results,
    ...(opts.checks !== false ? { checks: allChecks } : {}),
    statistics: { interval: INTERVAL_METHOD, pairedTest: PAIRED_TEST, alpha: ALPHA },
  };
}

/**
 * Image rows for the first `m` examples of a batch: clean, perturbed, and the model's
 * reconstructions of the perturbed input after each feedback cycle, decoded to input space.
 */
export async function dumpRows(
  ck: LoadedCheckpoint, cycles: number, x: tf.Tensor4D, xAdv: tf.Tensor4D, labels: ArrayLike<number>, preds: ArrayLike<number>,
  targets: ArrayLike<number> | undefined, start: number, m: number, classNames: string[],
): Promise<DumpExample[]> {
  const parts = tf.tidy(() => {
    const xs = tf.slice(x, [0, 0, 0, 0], [m, 28, 28, 1]);
    const as = tf.slice(xAdv, [0, 0, 0, 0], [m, 28, 28, 1]);
    const recons = cycles > 0 ? ck.model.run(as, { cycles, decodeToInput: true }).cycles.map((c) => tf.reshape(c.image!, [m, 28, 28, 1])) : [];
    return [xs, as, ...recons];
  });
  const arrays = await Promise.all(parts.map((t) => t.data() as Promise<Float32Array>));
  parts.forEach((t) => t.dispose());
  const px = IMAGE_PIXELS;
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
    });
  }
  return out;
}
