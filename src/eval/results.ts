/**
 * The results file written by `cnnf eval --json` and read by `cnnf report` and `cnnf gate`.
 * Everything needed to reproduce a run is in `provenance`; every number a gate can check is
 * also in each model's flat `metrics` map.
 */
import type { BatchSizeSource } from './memory.js';

export const RESULTS_FORMAT = 'cnnf-results/1';

/**
 * The counts behind an accuracy, its 95% Wilson score interval and the per-example outcomes a
 * paired test needs. Optional: files written before they existed lack them (intervals are then
 * recomputed from accuracy x provenance.examples, and paired tests are not possible).
 */
export interface Counted {
  /** Examples counted as correct. */
  correct?: number;
  /** Examples evaluated. */
  n?: number;
  /** 95% Wilson score interval [lower, upper] of the accuracy. */
  ci?: [number, number];
  /** Per-example correctness as a base64 bitset (example i = bit i & 7 of byte i >> 3); see eval/stats.ts. */
  outcomes?: string;
}

/** A method of the attack registry ("gaussian", "fgsm", "pgd", "apgd", ...). */
export type AttackMethod = string;
export type AttackMode = 'first' | 'e2e';

export interface AttackPoint extends Counted {
  eps: number;
  /** Fraction of examples still classified correctly (robust accuracy). */
  accuracy: number;
  /** Targeted attacks only: fraction of examples classified as their target. */
  successRate?: number;
  /** Targeted attacks only: 95% Wilson score interval of the success rate. */
  successCi?: [number, number];
  /** Rows = true class, columns = predicted class (counts). */
  confusion?: number[][];
  /**
   * Staged attacks (AutoAttack): robust accuracy after each stage, cumulative (an example counts
   * only if it survived every stage so far), in the order run.
   */
  stages?: Array<{ stage: string; accuracy: number }>;
}

export interface AttackResult {
  /** Name used in metric keys, e.g. "pgd7", "fgsm", "gaussian". */
  name: string;
  method: AttackMethod;
  /** Gradient path for gradient attacks; null for Gaussian noise. */
  mode: AttackMode | null;
  targeted: boolean;
  /** Attack settings as run (steps, step size, random start, restarts, target policy, ...). */
  settings: Record<string, unknown>;
  points: AttackPoint[];
}

export interface ModelResult {
  /** Display name (checkpoint file name without extension unless given). */
  name: string;
  path: string;
  sha256: string;
  arch: string;
  cycles: number;
  readout: 'last' | 'average';
  classNames: string[];
  clean: { accuracy: number; confusion: number[][] } & Counted;
  attacks: AttackResult[];
  /** Per-example worst case across all attacks at the given epsilon: accuracy if every attack is tried. */
  worstCase: Array<{ eps: number; accuracy: number } & Counted>;
  /**
   * Flat map for gates: "clean", "<attack>@<eps>:<mode>" (mode "first"/"e2e" for gradient attacks),
   * "<attack>@<eps>" for gaussian, "<attack>@<eps>:<mode>:success" for targeted success rates,
   * "worst@<eps>".
   */
  metrics: Record<string, number>;
  /** How the model was trained, one line (io/checkpoint.ts trainingRecipe: metadata or model card), when known. */
  recipe?: string;
  /** Optional image dumps (paths relative to the results file). */
  dumps?: string[];
}

export interface EvalResults {
  format: typeof RESULTS_FORMAT;
  tool: { name: 'cnnf'; version: string };
  createdAt: string;
  provenance: {
    command: string;
    backend: string;
    seed: number;
    dataset: string;
    testSubset: string;
    examples: number;
    suite?: string;
    node: string;
    platform: string;
    durationSeconds: number;
    /** Compute time per model x attack x mode, summed over batches (timing only; absent in older files). */
    attackSeconds?: Array<{ model: string; attack: string; mode: string | null; seconds: number }>;
    /** Examples per batch (absent in older files), where it came from and the memory budget it was chosen for (bytes). */
    batchSize?: number;
    batchSizeFrom?: BatchSizeSource;
    memoryBudget?: number;
    /** Results merged from this many shards (`cnnf merge`); durationSeconds is then their sum. */
    shards?: number;
  };
  models: ModelResult[];
  /**
   * Trust checks (masked gradients, broken attacks, ...), see src/eval/checks.ts; each model's
   * `metrics.warnings` counts its warnings. Absent in files written before checks existed.
   */
  checks?: Array<{ id: string; number: number; severity: 'warning' | 'info'; model: string; message: string; evidence: Record<string, unknown> }>;
  /** How the intervals and paired comparisons were computed (absent in older files). */
  statistics?: { interval: string; pairedTest: string; alpha: number };
}

/** Metric key helpers, shared by eval (writer) and gate (reader). */
export function metricKey(attack: string, eps: number, mode: AttackMode | null, suffix?: string): string {
  return `${attack}@${eps}${mode ? `:${mode}` : ''}${suffix ? `:${suffix}` : ''}`;
}
