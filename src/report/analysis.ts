/** Reshaping results for presentation: attacks grouped by name with one series per model × gradient mode. */
import { attackLabel } from '../attacks/index.js';
import type { AttackMethod, AttackPoint, AttackResult, EvalResults, ModelResult } from '../eval/results.js';

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
 * A model's accuracy under an attack group at one epsilon, taking the strongest gradient mode it
 * was attacked with (the minimum over modes): the conservative number for "most robust" claims.
 */
export function conservativeAccuracy(group: AttackGroup, model: ModelResult, eps: number): number | undefined {
  let best: number | undefined;
  for (const s of group.series) {
    if (s.model !== model) continue;
    const p = pointAt(s.attack.points, eps);
    if (p && (best === undefined || p.accuracy < best)) best = p.accuracy;
  }
  return best;
}

/** Names of the models with the highest value (ties kept); empty when nobody has a value. */
export function leaders(values: Array<{ name: string; value: number | undefined }>): string[] {
  const present = values.filter((v): v is { name: string; value: number } => v.value !== undefined);
  if (present.length === 0) return [];
  const max = Math.max(...present.map((v) => v.value));
  return present.filter((v) => Math.abs(v.value - max) <= 1e-12).map((v) => v.name);
}

/** Human label of an attack method (from the attack registry). */
export const methodLabel = (method: AttackMethod): string => attackLabel(method);

/** Column header for the perturbation size: σ for Gaussian noise, ε (L∞) for gradient attacks. */
export const epsSymbol = (method: AttackMethod): string => (method === 'gaussian' ? 'σ' : 'ε');

export const pct = (v: number | undefined): string => (v === undefined ? '—' : `${(v * 100).toFixed(2)}%`);
export const fmtEps = (e: number): string => String(Number(e.toPrecision(12)));
