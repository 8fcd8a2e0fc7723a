/**
 * Batch size from a memory budget (`--memory-budget`, default 1 GB for the whole process).
 *
 * An evaluation's memory is a fixed part per thread that computes (Node.js, tfjs, the wasm heap's
 * start, the model's weights) plus a working set per image of the batch it runs: the activations a
 * gradient keeps for its backward pass, or a forward pass's. The wasm heap of a thread never shrinks,
 * so a thread keeps what its largest batch needed. The costs below were measured on the paper's
 * Fashion-MNIST network with scripts/measure-batch-memory.mts (peak RSS of evaluate() in one thread at
 * several batch sizes, wasm backend; README "Memory"); other architectures scale with their
 * activations per image, foreign (TF.js, ONNX) models with their input size (an estimate: cnnf
 * cannot see inside their graphs before running them).
 *
 * The chosen size depends only on the budget, the models and the suite (never on this machine's cores
 * or the worker count, since the batches fix the random draws: README "Backends"): it is sized so that
 * SIZED_FOR_WORKERS batches run at once within the budget, and the budget then decides how many
 * workers an auto worker count starts. The size is part of the plan (src/eval/plan.ts), so resumed
 * runs and shards agree on it; a resumed run takes the size its state directory records.
 */
import { UsageError } from '../errors.js';
import { getArch, type ArchSpec } from '../models/arch.js';
import type { Suite } from './suite.js';

export const MB = 1024 * 1024;
/** Default budget for the whole process. */
export const DEFAULT_MEMORY_BUDGET = 1024 * MB;
/** Largest batch the chooser picks (the default before budgets). */
export const MAX_AUTO_BATCH = 100;
/** Batches the chooser fits into the budget at once: the two cores most users run cnnf on both busy. */
export const SIZED_FOR_WORKERS = 2;

/**
 * Measured costs (MB) on the `fmnist` architecture, wasm, 2026-12-04, 2-core AMD EPYC, by
 * scripts/measure-batch-memory.mts (slopes of peak RSS between batches of 30 and 90; README "Memory"),
 * rounded up where a row and the model disagree.
 */
export const MEASURED = {
  /** A process that evaluates in its own thread: Node.js, tfjs, wasm, data, the model (`cnnf eval`, 2026-12-03). */
  processBase: 330,
  /** Each worker thread's own tfjs, wasm heap and model copy (2 workers vs 1 thread: 154-208 MB each). */
  workerBase: 180,
  /** Per image, forward only (noise and score attacks), plain CNN (1.97); per feedback cycle on top (3.63 at 1, 5.61 at 2). */
  forward: 2.0,
  forwardPerCycle: 1.8,
  /** Per image, input gradient through the first forward pass (plain CNN 1.40, CNN-F 1 cycle `first` 3.76). */
  gradient: 2.0,
  /** Per image and feedback cycle, end-to-end gradients (CNN-F `e2e`: 3.76 at 1 cycle, 6.48 at 2). */
  gradientPerCycle: 2.3,
} as const;

/** Activation values per image of an architecture's forward pass (conv outputs, pools, fc). */
export function activationsPerImage(a: ArchSpec): number {
  let h = a.height;
  let w = a.width;
  let n = 0;
  for (const c of a.convs) {
    n += h * w * c.channels;
    if (c.pool) {
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
      n += h * w * c.channels;
    }
  }
  return n + a.fc.reduce((t, x) => t + x, 0);
}

const FMNIST_ACTIVATIONS = activationsPerImage(getArch('fmnist'));

/** What the chooser needs to know of a model. */
export interface MemoryModel {
  /** Architecture name of a cnnf checkpoint; undefined for a foreign model. */
  arch?: string;
  /** Feedback cycles it runs (0: plain CNN). */
  cycles: number;
  /** Values per input image (h * w * c). */
  pixels: number;
  /** Foreign models run in the main thread only (no worker copies). */
  foreign: boolean;
}

type Need = 'forward' | 'first' | 'e2e';

/** The heaviest thing a suite asks of a model: end-to-end gradients, first-pass gradients, or forward passes only. */
export function suiteNeed(suite: Suite, cycles: number): Need {
  let need: Need = 'forward';
  for (const a of suite.attacks) {
    // transfer: the surrogate's white-box attack runs in the same thread; its cost is taken as that of
    // end-to-end gradients (the heaviest a cnnf surrogate can ask)
    if (a.method === 'transfer') return 'e2e';
    if (a.modes.length === 0) continue;
    if (cycles > 0 && a.modes.includes('e2e')) return 'e2e';
    need = 'first';
  }
  return need;
}

/** Estimated working set (MB) per image of a model under a suite. */
export function perImageMB(m: MemoryModel, suite: Suite): number {
  const scale = m.arch !== undefined ? activationsPerImage(getArch(m.arch)) / FMNIST_ACTIVATIONS : m.pixels / 784;
  const need = suiteNeed(suite, m.cycles);
  const c = need === 'e2e' && m.cycles === 0 ? 2 : m.cycles;
  const cost = need === 'forward'
    ? MEASURED.forward + MEASURED.forwardPerCycle * c
    : need === 'first'
      ? MEASURED.gradient + MEASURED.forwardPerCycle * c
      : MEASURED.gradient + MEASURED.gradientPerCycle * c;
  return cost * scale;
}

/** Where a run's batch size came from (provenance.batchSizeFrom). */
export const BATCH_SIZE_SOURCES = ['flag', 'state', 'budget', 'suite'] as const;
export type BatchSizeSource = typeof BATCH_SIZE_SOURCES[number];

export interface BatchChoice {
  batchSize: number;
  /** Where it came from. */
  from: BatchSizeSource;
  /** Estimated peak (bytes) of the run with this size and `workers`. */
  estimatedPeak: number;
  /** Worker threads the budget holds at this size (never more than asked, at least 1). */
  workers: number;
  /** A sentence for stderr where the budget changed something, or cannot be met. */
  note?: string;
}

/** Estimated peak (bytes) of `workers` threads each running batches of `b` (1: the process itself). */
export function estimatedPeak(models: MemoryModel[], suite: Suite, b: number, workers: number): number {
  const per = Math.max(...models.map((m) => perImageMB(m, suite)));
  const pooled = workers > 1 && models.some((m) => !m.foreign);
  const mb = pooled ? MEASURED.processBase + workers * (MEASURED.workerBase + b * per) : MEASURED.processBase + b * per;
  return Math.round(mb * MB);
}

const fmtGB = (bytes: number): string => `${(bytes / 1024 / MB).toFixed(2)} GB`;

/**
 * The batch size of a run: `--batch-size` if given, else the one a resumed state directory records,
 * else the largest size (at most the suite's batchSize, else 100, and the examples) whose estimated
 * peak with SIZED_FOR_WORKERS threads (one for foreign models, which run in the main thread) fits
 * `budget`. Then the budget lowers the number of workers where their batches would not fit, when
 * `workersAuto` (an explicit --workers is kept, with a note).
 */
export function chooseBatchSize(models: MemoryModel[], suite: Suite, o: {
  examples: number; workers: number; workersAuto?: boolean; budget?: number; batchSize?: number; recorded?: number;
}): BatchChoice {
  const budget = o.budget ?? DEFAULT_MEMORY_BUDGET;
  if (!Number.isFinite(budget) || budget <= 0) throw new UsageError(`the memory budget must be a positive size, got ${budget}`);
  const workers = Math.max(1, o.workers);
  const fitWorkers = (b: number, from: BatchChoice['from']): BatchChoice => {
    let w = workers;
    if (o.workersAuto !== false) while (w > 1 && estimatedPeak(models, suite, b, w) > budget) w--;
    const peak = estimatedPeak(models, suite, b, w);
    const notes: string[] = [];
    if (w < workers) notes.push(`${w} of ${workers} workers (batches of ${b} need about ${fmtGB(estimatedPeak(models, suite, b, workers))} with ${workers}; memory budget ${fmtGB(budget)}, --memory-budget to change)`);
    else if (peak > budget) notes.push(`batches of ${b} with ${w} worker${w > 1 ? 's' : ''} need about ${fmtGB(peak)}, more than the memory budget of ${fmtGB(budget)}`);
    return { batchSize: b, from, estimatedPeak: peak, workers: w, ...(notes.length ? { note: notes[0] } : {}) };
  };
  if (o.batchSize !== undefined) return fitWorkers(o.batchSize, 'flag');
  if (o.recorded !== undefined) return fitWorkers(o.recorded, 'state');
  const cap = Math.max(1, Math.min(suite.batchSize ?? MAX_AUTO_BATCH, o.examples));
  const sizedFor = models.every((m) => m.foreign) ? 1 : SIZED_FOR_WORKERS;
  const fits = (b: number): boolean => estimatedPeak(models, suite, b, sizedFor) <= budget;
  let b = cap;
  if (!fits(b)) {
    let lo = 1;
    let hi = b;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (fits(mid)) lo = mid;
      else hi = mid - 1;
    }
    b = lo;
  }
  const c = fitWorkers(b, b === cap && suite.batchSize !== undefined ? 'suite' : 'budget');
  if (b < cap && c.note === undefined) {
    c.note = `batches of ${b} (not ${cap}) to stay within the memory budget of ${fmtGB(budget)} (estimated peak ${fmtGB(c.estimatedPeak)} with ${c.workers} worker${c.workers > 1 ? 's' : ''}; --memory-budget or --batch-size to change)`;
  }
  return c;
}

/** Parses a size: 1024, 512M, 1.5G, 800MB, 2GiB (binary units; a bare number is MB). */
export function parseMemorySize(raw: string, flag = '--memory-budget'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(raw);
  if (!m) throw new UsageError(`${flag} must be a size such as 1G, 800M or 1536 (MB), got ${JSON.stringify(raw.slice(0, 40))}`);
  const unit = m[2].toLowerCase();
  const mult = unit === 'k' ? 1024 : unit === 'g' ? 1024 * MB : unit === 't' ? 1024 * 1024 * MB : MB;
  const v = Number(m[1]) * mult;
  if (!(v >= 64 * MB) || v > 1024 * 1024 * MB) throw new UsageError(`${flag} must be between 64M and 1T, got ${raw.trim()}`);
  return Math.round(v);
}
