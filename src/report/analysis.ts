/** Reshaping results for presentation: attacks grouped by name with one series per model × gradient mode. */
import { attackLabel } from '../attacks/index.js';
import type { AttackMethod, AttackPoint, AttackResult, Counted, EvalResults, ModelResult } from '../eval/results.js';
import { compareModels, intervalOf, outcomesOf, type Verdict } from '../eval/compare.js';
import { countsOf, wilson, type Interval } from '../eval/stats.js';
import { percent, percentRange } from '../format.js';

export type SeriesMode = 'first' | 'e2e' | 'none';

export interface Series {
  model: ModelResult;
  attack: AttackResult;
  mode: SeriesMode;
  /** "cnnf (e2e)", or just the model name for attacks without a gradient mode. */
  label: string;
}

export interface AttackGroup {
  name: string;
  method: AttackMethod;
  targeted: boolean;
  series: Series[];
  /** Sorted union of the epsilons of all series. */
  eps: number[];
}

const MODE_ORDER: Record<SeriesMode, number> = { first: 0, e2e: 1, none: 2 };

export const sameEps = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

export function pointAt(points: readonly AttackPoint[], eps: number): AttackPoint | undefined {
  return points.find((p) => sameEps(p.eps, eps));
}

export function unionEps(lists: Iterable<readonly number[]>): number[] {
  const out: number[] = [];
  for (const l of lists) for (const e of l) if (!out.some((o) => sameEps(o, e))) out.push(e);
  return out.sort((a, b) => a - b);
}

/** Groups every model's attacks by attack name, in first-seen order. */
export function groupAttacks(results: EvalResults): AttackGroup[] {
  const groups = new Map<string, AttackGroup>();
  for (const model of results.models) {
    for (const attack of model.attacks) {
      let g = groups.get(attack.name);
      if (!g) {
        g = { name: attack.name, method: attack.method, targeted: attack.targeted, series: [], eps: [] };
        groups.set(attack.name, g);
      }
      g.targeted ||= attack.targeted;
      const mode: SeriesMode = attack.mode ?? 'none';
      const base = mode === 'none' ? model.name : `${model.name} (${mode})`;
      const dup = g.series.filter((s) => s.model === model && s.mode === mode).length;
      g.series.push({ model, attack, mode, label: dup === 0 ? base : `${base} #${dup + 1}` });
    }
  }
  const modelIndex = new Map(results.models.map((m, i) => [m, i]));
  for (const g of groups.values()) {
    g.series.sort((a, b) => modelIndex.get(a.model)! - modelIndex.get(b.model)! || MODE_ORDER[a.mode] - MODE_ORDER[b.mode]);
    g.eps = unionEps(g.series.map((s) => s.attack.points.map((p) => p.eps)));
  }
  return [...groups.values()];
}

/**
 * "Most robust" at one attack point: each model's conservative point (its weakest gradient path) is
 * compared with an exact McNemar test on the per-example outcomes (eval/compare.ts); a model is
 * named only when it is significantly better than every other one.
 */
export function groupVerdict(group: AttackGroup, models: ModelResult[], eps: number, n: number): Verdict {
  return compareModels(models.map((model) => {
    let weakest: AttackPoint | undefined;
    for (const s of group.series) {
      if (s.model !== model) continue;
      const p = pointAt(s.attack.points, eps);
      if (p && (weakest === undefined || p.accuracy < weakest.accuracy)) weakest = p;
    }
    return { name: model.name, accuracy: weakest?.accuracy, outcomes: outcomesOf(weakest, n) };
  }));
}

/** Clean-accuracy verdict (paired test on the clean outcomes). */
export function cleanVerdict(models: ModelResult[], n: number): Verdict {
  return compareModels(models.map((m) => ({ name: m.name, accuracy: m.clean.accuracy, outcomes: outcomesOf(m.clean, n) })));
}

/** Human label of an attack method (from the attack registry). */
export const methodLabel = (method: AttackMethod): string => attackLabel(method);
/** Worst-case verdict at one epsilon. */
export function worstVerdict(models: ModelResult[], eps: number, n: number): Verdict {
  return compareModels(models.map((m) => {
    const w = m.worstCase.find((x) => sameEps(x.eps, eps));
    return { name: m.name, accuracy: w?.accuracy, outcomes: outcomesOf(w, n) };
  }));
}

/** 95% Wilson interval of an accuracy (stored, or from accuracy x n). */
export const accInterval = (c: (Counted & { accuracy: number }) | undefined, n: number): Interval | null => intervalOf(c, n);

/** 95% Wilson interval of a targeted success rate. */
export function successInterval(p: AttackPoint | undefined, n: number): Interval | null {
  if (!p || typeof p.successRate !== 'number') return null;
  if (p.successCi) return { lower: p.successCi[0], upper: p.successCi[1] };
  const c = countsOf(p.successRate, n);
  return c ? wilson(c.correct, c.n) : null;
}

/** "42.1% [39.1–45.2]": an accuracy with its 95% interval (percent, one decimal: the CLI's format). */
export const pctCi = (v: number | undefined, iv: Interval | null): string =>
  v === undefined ? '—' : iv ? `${pct(v)} [${percentRange(iv.lower, iv.upper, '–')}]` : pct(v);


/** Column header for the perturbation size: σ for Gaussian noise, ε (L∞) for gradient attacks. */
export const epsSymbol = (method: AttackMethod): string => (method === 'gaussian' ? 'σ' : 'ε');

export const pct = (v: number | undefined): string => (v === undefined ? '—' : percent(v));
export const fmtEps = (e: number): string => String(Number(e.toPrecision(12)));
