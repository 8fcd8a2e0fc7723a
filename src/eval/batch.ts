/**
 * One batch of an evaluation (a cnnf model or a foreign classifier): clean predictions, then every attack point of every job. Runs the
 * same way in-process and in a worker thread (it takes and returns plain arrays), and every random
 * draw depends only on the seed, the attack point and the batch's first example index, so results
 * are the same whichever thread runs the batch, and in whichever order.
 */
import * as tf from '@tensorflow/tfjs-core';
import { chooseTargets, describeStep, isStaged, predictLogits, verifyAdversarial, type AttackContext, type Victim } from '../attacks/index.js';
import { deriveSeed, mulberry32 } from '../data/index.js';
import { readoutOf, type CNNF, type Readout } from '../models/cnnf.js';
import { isForeign, type ForeignClassifier } from '../models/foreign.js';
import type { AttackMode } from './results.js';
import { buildAttack, type AttackSpec } from './suite.js';
import { UsageError } from '../errors.js';

/** A row of work: an attack at one mode (null for noise) over its epsilons. */
export interface Job {
  spec: AttackSpec;
  mode: AttackMode | null;
}

export interface BatchTask {
  /** The model's name, for messages (a foreign model's source otherwise). */
  name?: string;
  /** Index of the batch's first example in the test split (seeds derive from it). */
  start: number;
  /** Image shape [h, w, c] (default [28, 28, 1]). */
  shape?: [number, number, number];
  /** NHWC [n, h, w, c] pixels in [-1, 1]. */
  images: Float32Array;
  labels: Int32Array;
  cycles: number;
  readout: Readout;
  numClasses: number;
  seed: number;
  jobs: Job[];
  /** keep[j][e]: how many leading examples' perturbed images to return for job j at its e-th epsilon. */
  keep: number[][];
  /** Also predict the clean batch (default true). */
  clean?: boolean;
}

export interface BatchOutcome {
  /** Predictions on the clean batch (cycles + readout); empty when the task says clean: false. */
  clean: Int32Array;
  /** First-pass predictions on the clean batch (the same run's logits before any feedback). */
  cleanFirst: Int32Array;
  /** preds[j][e]: predictions on the perturbed batch of job j at its e-th epsilon. */
  preds: Int32Array[][];
  /** Target classes of targeted jobs (null for untargeted ones). */
  targets: Array<Int32Array | null>;
  /** Perturbed images asked for by `keep` (null elsewhere). */
  advs: Array<Array<Float32Array | null>>;
  /**
   * Staged attacks (AutoAttack): stages[j][e] = per example the index of the stage that broke it,
   * -1 robust, -2 misclassified clean (null for other attacks).
   */
  stages: Array<Array<Int32Array | null>>;
  /** Milliseconds each job took on this batch (all its epsilons; a timing, not a result). */
  ms: number[];
}

/** 1 when every logit is finite (a scalar bool tensor). */
const allFinite = (...ls: tf.Tensor[]): tf.Tensor => tf.all(tf.stack(ls.map((l) => tf.all(tf.isFinite(l)))));

/**
 * Refuses a batch whose logits are NaN or infinite (argmax of NaN logits is class 0: such a model
 * would be counted accurate on every class-0 example), naming the model and where.
 */
async function checkFinite(flag: tf.Tensor, model: CNNF | ForeignClassifier, task: BatchTask, where: string): Promise<void> {
  const ok = (await flag.data())[0] === 1;
  flag.dispose();
  if (ok) return;
  const who = isForeign(model) ? model.source : task.name ?? 'the model';
  const n = task.labels.length;
  throw new UsageError(`${who}: the model computes non-finite logits (NaN or Inf) on test examples ${task.start}..${task.start + n - 1} (${where}); no numbers are reported for it`);
}

function seedSource(seed: number, stream: string): () => number {
  const rng = mulberry32(deriveSeed(seed, stream));
  return () => Math.floor(rng() * 2 ** 31);
}

/** Least milliseconds between two step reports of one batch (what progress shows from inside an attack). */
export const STEP_REPORT_MS = 2000;

/**
 * Runs a batch; `onPoint` is called after the clean pass ("clean") and after each attack point
 * ("ATTACK[:MODE]"); `onStep`, at most every STEP_REPORT_MS, with where a long attack is
 * ("ATTACK[:MODE] eps E, APGD-T target 3/9: 40/100 iterations, 12 attacked").
 */
export async function evalBatch(model: CNNF | ForeignClassifier, task: BatchTask, onPoint?: (stage: string) => void, onStep?: (detail: string) => void): Promise<BatchOutcome> {
  const n = task.labels.length;
  const { start, cycles, readout } = task;
  const victims: Record<AttackMode, Victim> = {
    first: { model, mode: 'first', cycles, readout },
    e2e: { model, mode: 'e2e', cycles, readout },
  };
  const shape = task.shape ?? [28, 28, 1];
  const x = tf.tensor4d(task.images, [n, ...shape]);
  const P = shape[0] * shape[1] * shape[2];
  const y = tf.tensor1d(task.labels, 'int32');
  const out: BatchOutcome = { clean: new Int32Array(0), cleanFirst: new Int32Array(0), preds: [], targets: [], advs: [], stages: [], ms: [] };
  try {
    if (task.clean !== false) {
      const [cleanPred, firstPred, finite] = tf.tidy(() => {
        if (isForeign(model)) {
          // a foreign model has one pass: its prediction is also the "first pass" one
          const l = predictLogits(victims.first, x);
          const p = tf.argMax(l, 1);
          return [p, tf.clone(p), allFinite(l)];
        }
        const res = model.run(x, { cycles });
        const l = readoutOf(res, readout);
        return [tf.argMax(l, 1), tf.argMax(res.logits[0], 1), allFinite(l, res.logits[0])];
      });
      try {
        await checkFinite(finite, model, task, 'clean');
      } catch (e) {
        tf.dispose([cleanPred, firstPred]);
        throw e;
      }
      out.clean = (await cleanPred.data()) as Int32Array;
      out.cleanFirst = (await firstPred.data()) as Int32Array;
      tf.dispose([cleanPred, firstPred]);
      onPoint?.('clean');
    }
    for (const [ji, job] of task.jobs.entries()) {
      const spec = job.spec;
      const attack = buildAttack(spec);
      const victim = victims[job.mode ?? 'first'];
      const targets = spec.targeted
        ? chooseTargets(task.labels, task.numClasses, spec.target, mulberry32(deriveSeed(task.seed, `targets|${spec.name}|${start}`)))
        : null;
      out.targets.push(targets);
      out.preds.push([]);
      out.advs.push([]);
      out.stages.push([]);
      const labels = targets ? tf.tensor1d(targets, 'int32') : y;
      const jobStart = performance.now();
      try {
        for (const [ei, eps] of spec.eps.entries()) {
          const nextSeed = seedSource(task.seed, `${spec.name}|${job.mode ?? 'noise'}|${eps}|${start}`);
          let brokenBy: Int32Array | null = null;
          const label = `${spec.name}${job.mode ? `:${job.mode}` : ''} eps ${String(Number(eps.toPrecision(6)))}`;
          let lastStep = performance.now();
          const ctx: AttackContext = {
            nextSeed,
            trueLabels: y,
            onStep: onStep && ((s) => {
              const t = performance.now();
              if (t - lastStep < STEP_REPORT_MS) return;
              lastStep = t;
              onStep(`${label}, ${describeStep(s)}`);
            }),
          };
          // the attack reads tensors (await), so it runs outside tf.tidy and owns what it allocates
          let xAdv: tf.Tensor4D;
          if (isStaged(attack)) {
            const r = await attack.runStaged(victim, x, labels, eps, ctx);
            xAdv = r.adv;
            brokenBy = r.brokenBy;
          } else xAdv = await attack.perturb(victim, x, labels, eps, ctx);
          let pred: tf.Tensor;
          let finite: tf.Tensor;
          try {
            await verifyAdversarial(spec.name, x, xAdv, eps, attack.norm);
            [pred, finite] = tf.tidy(() => {
              const l = predictLogits(victim, xAdv);
              return [tf.argMax(l, 1), allFinite(l)];
            });
          } catch (e) {
            xAdv.dispose();
            throw e;
          }
          try {
            await checkFinite(finite, model, task, `${spec.name}${job.mode ? `:${job.mode}` : ''} at eps ${eps}`);
          } catch (e) {
            tf.dispose([xAdv, pred]);
            throw e;
          }
          out.stages[ji].push(brokenBy);
          out.preds[ji].push((await pred.data()) as Int32Array);
          const keep = Math.min(n, task.keep[ji]?.[ei] ?? 0);
          out.advs[ji].push(keep > 0 ? ((await xAdv.data()) as Float32Array).slice(0, keep * P) : null);
          pred.dispose();
          xAdv.dispose();
          onPoint?.(`${spec.name}${job.mode ? `:${job.mode}` : ''}`);
          // a macrotask turn per attack point: signals, progress output and IPC are not starved
          await new Promise<void>((r) => setImmediate(r));
        }
      } finally {
        if (labels !== y) labels.dispose();
        out.ms.push(performance.now() - jobStart);
      }
    }
  } finally {
    x.dispose();
    y.dispose();
  }
  return out;
}
