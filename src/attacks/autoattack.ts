/**
 * AutoAttack's ensemble (Croce & Hein 2020, "standard" version): APGD-CE, then APGD-T (targeted DLR
 * over the top-k wrong classes), then FAB-T (targeted FAB over the top-k wrong classes, fab.ts), then
 * Square, each run only on the examples every earlier stage left robust; an example counts as robust
 * only if it survives all of them. For a CNN-F, every white-box stage runs through both gradient paths
 * (first pass and end to end), so the per-example worst case over paths counts. Records which stage
 * broke each example. The stages (and their order) can be chosen with `stages`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { APGD } from './apgd.js';
import { FAB } from './fab.js';
import { predictLogits, checkEps, reportStep, withPhase, type Attack, type AttackKind, type GradientMode, type Norm, type Victim, attackContext, type AttackSeed } from './base.js';
import type { AttackDescriptor } from './registry.js';
import { SquareAttack } from './square.js';

export const AUTOATTACK_STAGES = ['apgd-ce', 'apgd-dlr', 'apgd-t', 'fab-t', 'square'] as const;
/** AutoAttack's standard version. */
export const AUTOATTACK_STANDARD: readonly AutoAttackStage[] = ['apgd-ce', 'apgd-t', 'fab-t', 'square'];
export type AutoAttackStage = (typeof AUTOATTACK_STAGES)[number];

export interface AutoAttackOptions {
  name?: string;
  norm?: Norm;
  stages?: AutoAttackStage[];
  /** Gradient paths of a CNN-F for the white-box stages (plain CNNs have one). */
  paths?: GradientMode[];
  iterations?: number;
  nTargetClasses?: number;
  queries?: number;
}

/** The outcome of one ensemble run on a batch. */
export interface StagedResult {
  adv: tf.Tensor4D;
  /** The run's stage labels ("apgd-ce:first", ..., "square"). */
  stages: string[];
  /** Per example: index of the stage that broke it, -1 if it stayed robust, -2 if misclassified clean. */
  brokenBy: Int32Array;
}

/** An attack that can say which of its stages broke each example. */
export interface StagedAttack extends Attack {
  stageLabels(cycles: number): string[];
  runStaged(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<StagedResult>;
}

export function isStaged(a: Attack): a is StagedAttack {
  return typeof (a as Partial<StagedAttack>).runStaged === 'function';
}


interface PlanStep { label: string; stage: AutoAttackStage; mode: GradientMode }

export class AutoAttack implements StagedAttack {
  readonly kind: AttackKind = 'ensemble';
  readonly method = 'autoattack';
  readonly targeted = false;
  readonly name: string;
  readonly norm: Norm;
  readonly stages: AutoAttackStage[];
  readonly paths: GradientMode[];
  readonly iterations: number;
  readonly nTargetClasses: number;
  readonly queries: number;

  constructor(opts: AutoAttackOptions = {}) {
    this.name = opts.name ?? 'autoattack';
    this.norm = opts.norm ?? 'linf';
    this.stages = opts.stages ?? [...AUTOATTACK_STANDARD];
    this.paths = opts.paths ?? ['first', 'e2e'];
    this.iterations = opts.iterations ?? 100;
    this.nTargetClasses = opts.nTargetClasses ?? 9;
    this.queries = opts.queries ?? 5000;
  }

  settings(): Record<string, unknown> {
    return {
      version: this.stages.join(',') === AUTOATTACK_STANDARD.join(',') ? 'standard' : 'custom',
      norm: this.norm,
      stages: this.stages,
      paths: this.paths,
      iterations: this.iterations,
      nTargetClasses: this.nTargetClasses,
      queries: this.queries,
    };
  }

  private attackFor(stage: AutoAttackStage): Attack {
    switch (stage) {
      case 'apgd-ce':
        return new APGD({ loss: 'ce', norm: this.norm, iterations: this.iterations });
      case 'apgd-dlr':
        return new APGD({ loss: 'dlr', norm: this.norm, iterations: this.iterations });
      case 'apgd-t':
        return new APGD({ loss: 'dlr-targeted', norm: this.norm, iterations: this.iterations, nTargetClasses: this.nTargetClasses });
      case 'fab-t':
        return new FAB({ norm: this.norm, iterations: this.iterations, nTargetClasses: this.nTargetClasses });
      case 'square':
        return new SquareAttack({ norm: this.norm, queries: this.queries });
    }
  }

  private plan(cycles: number): PlanStep[] {
    const paths = cycles === 0 ? (['first'] as GradientMode[]) : this.paths;
    return this.stages.flatMap((s): PlanStep[] => (s === 'square' ? [{ label: s, stage: s, mode: 'first' }] : paths.map((m) => ({ label: `${s}:${m}`, stage: s, mode: m }))));
  }

  stageLabels(cycles: number): string[] {
    return this.plan(cycles).map((p) => p.label);
  }

  async perturb(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<tf.Tensor4D> {
    const ctx = attackContext(seed);
    return (await this.runStaged(v, x, labels, eps, ctx)).adv;
  }

  async runStaged(v: Victim, x: tf.Tensor4D, labels: tf.Tensor1D, eps: number, seed?: AttackSeed): Promise<StagedResult> {
    const ctx = attackContext(seed);
    checkEps(eps, this.norm, x.size / x.shape[0]);
    const n = x.shape[0];
    const per = x.size / n;
    const plan = this.plan(v.cycles);
    const brokenBy = new Int32Array(n).fill(-1);
    const clean = tf.tidy(() => tf.argMax(predictLogits(v, x), 1));
    const [yv, pred, xv] = await Promise.all([labels.data(), clean.data(), x.data()]).finally(() => clean.dispose());
    const ys = Int32Array.from(yv);
    for (let i = 0; i < n; i++) if (pred[i] !== ys[i]) brokenBy[i] = -2;
    const out = Float32Array.from(xv);
    if (eps > 0) {
      for (const [si, step] of plan.entries()) {
        const idx: number[] = [];
        for (let i = 0; i < n; i++) if (brokenBy[i] === -1) idx.push(i);
        if (idx.length === 0) break;
        const victim: Victim = { ...v, mode: step.mode };
        const sub = tf.tensor4d(Float32Array.from(idx.flatMap((i) => Array.from(out.subarray(i * per, (i + 1) * per)))), [idx.length, ...x.shape.slice(1)] as [number, number, number, number]);
        const suby = tf.tensor1d(Int32Array.from(idx, (i) => ys[i]), 'int32');
        // every stage starts from the clean input of its examples (out still holds it for unbroken ones)
        try {
          reportStep(ctx, { phase: step.label, done: si, total: plan.length, unit: 'stages', active: idx.length });
          const adv = await this.attackFor(step.stage).perturb(victim, sub, suby, eps, withPhase(ctx, `${step.label} (stage ${si + 1}/${plan.length}, ${idx.length} robust)`));
          // the prediction on adv (the model's own, all cycles) and adv itself, read together
          const advPred = tf.tidy(() => tf.argMax(predictLogits(v, adv), 1));
          const [p, advData] = await Promise.all([advPred.data(), adv.data()]).finally(() => tf.dispose([advPred, adv]));
          idx.forEach((i, k) => {
            if (p[k] !== ys[i]) {
              brokenBy[i] = si;
              out.set(advData.subarray(k * per, (k + 1) * per), i * per);
            }
          });
        } finally {
          sub.dispose();
          suby.dispose();
        }
      }
    }
    return { adv: tf.tensor4d(out, x.shape), stages: plan.map((p) => p.label), brokenBy };
  }
}

function parseStages(raw: string, at: string): AutoAttackStage[] {
  const list = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new UsageError(`${at}.stages must list at least one of ${AUTOATTACK_STAGES.join(', ')}`);
  for (const s of list) {
    if (!(AUTOATTACK_STAGES as readonly string[]).includes(s)) throw new UsageError(`${at}.stages: unknown stage ${JSON.stringify(s)} (known: ${AUTOATTACK_STAGES.join(', ')})`);
  }
  if (new Set(list).size !== list.length) throw new UsageError(`${at}.stages repeats a stage`);
  return list as AutoAttackStage[];
}

export const autoAttack: AttackDescriptor = {
  method: 'autoattack',
  label: 'AutoAttack',
  summary: 'AutoAttack\'s standard ensemble (APGD-CE, APGD-T, FAB-T, Square over still-robust examples; both CNN-F gradient paths)',
  kind: 'ensemble',
  norms: ['linf', 'l2'],
  targetable: false,
  params: {
    stages: { type: 'string', default: AUTOATTACK_STANDARD.join(','), description: `comma-separated stages in order (${AUTOATTACK_STAGES.join(', ')})` },
    paths: { type: 'enum', values: ['both', 'first', 'e2e'], default: 'both', description: 'CNN-F gradient paths of the white-box stages' },
    iterations: { type: 'int', min: 1, max: 10_000, default: 100, description: 'APGD and FAB iterations per run' },
    nTargetClasses: { type: 'int', min: 1, max: 1000, default: 9, description: 'APGD-T and FAB-T target classes (the most likely wrong ones)' },
    queries: { type: 'int', min: 1, max: 1_000_000, default: 5000, description: 'Square queries per example' },
  },
  defaultName: () => 'autoattack',
  validate: (spec, at) => {
    parseStages(spec.params.stages as string, at);
  },
  build: (spec) =>
    new AutoAttack({
      name: spec.name,
      norm: (spec.norm ?? 'linf') as Norm,
      stages: parseStages(spec.params.stages as string, spec.name),
      paths: spec.params.paths === 'both' ? ['first', 'e2e'] : [spec.params.paths as GradientMode],
      iterations: spec.params.iterations as number,
      nTargetClasses: spec.params.nTargetClasses as number,
      queries: spec.params.queries as number,
    }),
};
