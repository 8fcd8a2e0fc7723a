/**
 * "Which model is more robust?" on one test set, answered with a paired test: every model is scored
 * on the same examples, so the exact McNemar test on the per-example outcomes is the right test (it
 * only looks at the examples the two models disagree on). A model is called the most robust only
 * when it is significantly better than every other model (an intersection-union test, so no
 * multiplicity correction is needed); otherwise the verdict says there is no significant difference.
 */
import type { AttackPoint, Counted, EvalResults, ModelResult } from './results.js';
import { ALPHA, countsOf, decodeOutcomes, formatP, pairedTest, wilson, type Interval } from './stats.js';

export interface Scored {
  name: string;
  /** undefined: the model has no value here (not attacked at this point). */
  accuracy: number | undefined;
  /** Per-example correctness over the same examples as the other entries; null/undefined if unknown. */
  outcomes?: Uint8Array | null;
}

export interface PairTest {
  /** The best model (a) against `other`. */
  other: string;
  /** Examples only the best model gets right. */
  b: number;
  /** Examples only `other` gets right. */
  c: number;
  p: number;
}

export interface Verdict {
  /** The model significantly more accurate than every other one; null when there is none (or no test was possible). */
  mostRobust: string | null;
  /** Models with the highest accuracy (ties kept). */
  best: string[];
  /** The best model against each other model with a value. */
  tests: PairTest[];
  /** False when some model lacks per-example outcomes, so no paired test could be made. */
  tested: boolean;
  /** One line for tables and summaries: "cnnf (p < 0.001)", "no significant difference (p = 0.62)". */
  text: string;
}

/** Compares models scored on the same examples (see the module comment). */
export function compareModels(entries: Scored[], alpha = ALPHA): Verdict {
  const present = entries.filter((e): e is Scored & { accuracy: number } => e.accuracy !== undefined);
  if (present.length === 0) return { mostRobust: null, best: [], tests: [], tested: false, text: '—' };
  const max = Math.max(...present.map((e) => e.accuracy));
  const best = present.filter((e) => Math.abs(e.accuracy - max) <= 1e-12);
  if (present.length === 1) return { mostRobust: present[0]!.name, best: [present[0]!.name], tests: [], tested: true, text: `${present[0]!.name} (only model)` };
  const top = best[0]!;
  const tests: PairTest[] = [];
  let tested = true;
  for (const other of present) {
    if (other === top) continue;
    if (!top.outcomes || !other.outcomes || top.outcomes.length !== other.outcomes.length) {
      tested = false;
      continue;
    }
    tests.push({ other: other.name, ...pairedTest(top.outcomes, other.outcomes) });
  }
  const names = best.map((e) => e.name);
  if (!tested) {
    return { mostRobust: null, best: names, tests, tested, text: `${names.join(', ')} highest; not tested (no per-example outcomes in the results)` };
  }
  const notSig = tests.filter((t) => t.p >= alpha);
  if (notSig.length === 0) {
    const weakest = Math.max(...tests.map((t) => t.p));
    return { mostRobust: top.name, best: names, tests, tested, text: `${top.name} (${formatP(weakest)})` };
  }
  const text = present.length === 2
    ? `no significant difference (${formatP(notSig[0]!.p)})`
    : `no significant difference between ${top.name} and ${notSig.map((t) => `${t.other} (${formatP(t.p)})`).join(', ')}`;
  return { mostRobust: null, best: names, tests, tested, text };
}

/** The per-example outcomes stored with an accuracy, if present and well-formed for n examples. */
export function outcomesOf(c: Counted | undefined, n: number): Uint8Array | null {
  return c?.outcomes ? decodeOutcomes(c.outcomes, n) : null;
}

/**
 * The 95% Wilson interval of an accuracy over n examples: from the stored counts when present,
 * else from accuracy x n (exact for files that predate stored counts); null if neither works.
 */
export function intervalOf(c: (Counted & { accuracy: number }) | undefined, n: number): Interval | null {
  if (!c) return null;
  if (c.ci) return { lower: c.ci[0], upper: c.ci[1] };
  const counts = c.correct !== undefined && c.n !== undefined ? { correct: c.correct, n: c.n } : countsOf(c.accuracy, n);
  return counts && counts.n >= 1 ? wilson(counts.correct, counts.n) : null;
}

const epsEq = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

/**
 * A model's entry for a comparison under attack `name` at `eps`: when it was attacked through
 * several gradient paths, the path with the lowest accuracy (the conservative number) counts.
 */
export function conservativeScore(model: ModelResult, name: string, eps: number, n: number): Scored {
  let best: AttackPoint | undefined;
  for (const a of model.attacks) {
    if (a.name !== name) continue;
    const p = a.points.find((x) => epsEq(x.eps, eps));
    if (p && (best === undefined || p.accuracy < best.accuracy)) best = p;
  }
  return { name: model.name, accuracy: best?.accuracy, outcomes: outcomesOf(best, n) };
}

export interface ComparisonRow {
  /** "clean", "worst@0.2", "pgd7@0.2". */
  metric: string;
  verdict: Verdict;
}

/** Paired verdicts for clean accuracy, every worst-case epsilon and every attack point the models share. */
export function compareResults(results: EvalResults, alpha = ALPHA): ComparisonRow[] {
  const n = results.provenance.examples;
  const models = results.models;
  const rows: ComparisonRow[] = [];
  rows.push({ metric: 'clean', verdict: compareModels(models.map((m) => ({ name: m.name, accuracy: m.clean.accuracy, outcomes: outcomesOf(m.clean, n) })), alpha) });
  const wcEps = [...new Set(models.flatMap((m) => m.worstCase.map((w) => w.eps)))].sort((a, b) => a - b);
  for (const e of wcEps) {
    rows.push({
      metric: `worst@${e}`,
      verdict: compareModels(models.map((m) => {
        const w = m.worstCase.find((x) => epsEq(x.eps, e));
        return { name: m.name, accuracy: w?.accuracy, outcomes: outcomesOf(w, n) };
      }), alpha),
    });
  }
  const names = [...new Set(models.flatMap((m) => m.attacks.map((a) => a.name)))];
  for (const name of names) {
    const eps = [...new Set(models.flatMap((m) => m.attacks.filter((a) => a.name === name).flatMap((a) => a.points.map((p) => p.eps))))].sort((a, b) => a - b);
    for (const e of eps) rows.push({ metric: `${name}@${e}`, verdict: compareModels(models.map((m) => conservativeScore(m, name, e, n)), alpha) });
  }
  return rows;
}
