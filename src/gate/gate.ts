/**
 * `cnnf gate`: threshold requirements on a results file, for CI. A requirement is
 * `[MODEL/]METRIC OP NUMBER`; without a model it must hold for every model. A metric that is not
 * in the results fails (fail closed) with status "missing" instead of being skipped.
 */
import type { EvalResults, ModelResult } from '../eval/results.js';
import { UsageError } from '../errors.js';
import { validateResults } from '../report/results-file.js';
import { countsOf, wilson } from '../eval/stats.js';

export type GateOp = '>=' | '>' | '<=' | '<' | '==';
export const GATE_OPS: readonly GateOp[] = ['>=', '>', '<=', '<', '=='];

export interface Requirement {
  /** The expression as written (trimmed). */
  text: string;
  /** Model the requirement is scoped to; null = every model (or the gate's default model). */
  model: string | null;
  /** Metric key as written without a bound suffix, e.g. "pgd7@0.2:first". */
  metric: string;
  op: GateOp;
  threshold: number;
  /**
   * `METRIC.lower` / `METRIC.upper`: compare the lower or upper end of the metric's 95% Wilson
   * interval instead of the point estimate. Absent for plain metrics.
   */
  bound?: 'lower' | 'upper';
}

export type CheckStatus = 'pass' | 'fail' | 'missing';

export interface GateCheck {
  requirement: string;
  model: string;
  metric: string;
  /** The key the value was found under (differs from `metric` after eps normalisation or a method alias). */
  resolvedMetric: string | null;
  op: GateOp;
  threshold: number;
  /** The value compared: the point estimate, or the interval end the requirement names. */
  actual: number | null;
  /** The metric's 95% Wilson interval over the results' examples (null if missing or not a count ratio). */
  interval: [number, number] | null;
  bound?: 'lower' | 'upper';
  status: CheckStatus;
  message: string;
}

export interface GateReport {
  passed: boolean;
  total: number;
  passedCount: number;
  failedCount: number;
  missingCount: number;
  checks: GateCheck[];
}

/** `==` compares with this absolute tolerance (results go through JSON and float formatting). */
export const EQ_TOLERANCE = 1e-9;

const NUMBER_RE = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const SUFFIXES = new Set(['first', 'e2e', 'success']);

/** Parses `[MODEL/]METRIC OP NUMBER`; throws a one-line UsageError (exit 2) when malformed. */
export function parseRequirement(expr: string): Requirement {
  const text = String(expr).trim();
  const bad = (why: string): never => {
    throw new UsageError(`malformed requirement ${JSON.stringify(text)}: ${why} (expected [MODEL/]METRIC OP NUMBER, OP one of ${GATE_OPS.join(' ')})`);
  };
  if (text === '') bad('empty');
  const m = /(>=|<=|==|!=|=>|=<|>|<|=)/.exec(text);
  if (!m) bad('no comparison operator');
  const opRaw = m![1]!;
  if (!(GATE_OPS as readonly string[]).includes(opRaw)) bad(`unsupported operator ${JSON.stringify(opRaw)}`);
  const op = opRaw as GateOp;
  const lhs = text.slice(0, m!.index).trim();
  const rhs = text.slice(m!.index + opRaw.length).trim();
  if (/[<>=!]/.test(rhs)) bad('more than one operator');
  if (!NUMBER_RE.test(rhs)) bad(rhs === '' ? 'missing threshold' : `threshold ${JSON.stringify(rhs)} is not a number`);
  const threshold = Number(rhs);
  if (!Number.isFinite(threshold)) bad(`threshold ${JSON.stringify(rhs)} is not finite`);
  if (lhs === '') bad('missing metric');

  const slash = lhs.lastIndexOf('/');
  const model = slash === -1 ? null : lhs.slice(0, slash).trim();
  let metric = lhs.slice(slash + 1).trim();
  const boundMatch = /\.(lower|upper)$/.exec(metric);
  const bound = boundMatch ? (boundMatch[1] as 'lower' | 'upper') : undefined;
  if (boundMatch) metric = metric.slice(0, boundMatch.index);
  if (/\.(lower|upper)\b/.test(metric)) bad(`metric ${JSON.stringify(metric)}: ".lower" / ".upper" must come last, once`);
  if (model !== null && model === '') bad('empty model name before "/"');
  if (metric === '') bad('missing metric after "/"');
  if (/\s/.test(metric)) bad(`metric ${JSON.stringify(metric)} contains spaces`);
  const at = metric.indexOf('@');
  if (at !== -1) {
    const [attack, rest] = [metric.slice(0, at), metric.slice(at + 1)];
    const [eps, ...suffixes] = rest.split(':');
    if (attack === '') bad(`metric ${JSON.stringify(metric)} has no attack name before "@"`);
    if (!NUMBER_RE.test(eps ?? '')) bad(`metric ${JSON.stringify(metric)}: ${JSON.stringify(eps ?? '')} is not an epsilon`);
    for (const s of suffixes) if (!SUFFIXES.has(s)) bad(`metric ${JSON.stringify(metric)}: unknown qualifier ${JSON.stringify(s)} (use first, e2e or success)`);
    if (new Set(suffixes).size !== suffixes.length || suffixes.filter((s) => s !== 'success').length > 1) bad(`metric ${JSON.stringify(metric)}: conflicting qualifiers`);
    if (suffixes.includes('success') && suffixes[suffixes.length - 1] !== 'success') bad(`metric ${JSON.stringify(metric)}: "success" must come last`);
  } else if (metric.includes(':')) {
    bad(`metric ${JSON.stringify(metric)} has a qualifier but no "@EPS"`);
  }
  return { text, model, metric, op, threshold, ...(bound ? { bound } : {}) };
}

interface MetricParts {
  attack: string;
  eps: number;
  mode: 'first' | 'e2e' | null;
  success: boolean;
}

function metricParts(metric: string): MetricParts | null {
  const at = metric.indexOf('@');
  if (at === -1) return null;
  const [eps, ...suffixes] = metric.slice(at + 1).split(':');
  const mode = suffixes.find((s) => s === 'first' || s === 'e2e') as 'first' | 'e2e' | undefined;
  return { attack: metric.slice(0, at), eps: Number(eps), mode: mode ?? null, success: suffixes.includes('success') };
}

const keyOf = (p: MetricParts): string => `${p.attack}@${p.eps}${p.mode ? `:${p.mode}` : ''}${p.success ? ':success' : ''}`;
const epsEq = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

type Lookup = { value: number; key: string } | { value: null; why: string };

/** Finds a metric for one model: the flat map first, then the structured fields, then a method alias. */
export function lookupMetric(model: ModelResult, metric: string): Lookup {
  // the measured value first (the flat map is only a summary of it; validateResults checks that they agree)
  if (metric === 'clean') return { value: model.clean.accuracy, key: 'clean' };
  if (Object.hasOwn(model.metrics, metric)) return { value: model.metrics[metric]!, key: metric };
  const parts = metricParts(metric);
  if (!parts) return { value: null, why: `missing metric ${metric}` };
  const canonical = keyOf(parts);
  if (Object.hasOwn(model.metrics, canonical)) return { value: model.metrics[canonical]!, key: canonical };
  if (parts.attack === 'worst' && !parts.mode && !parts.success && !model.attacks.some((a) => a.name === 'worst')) {
    const w = model.worstCase.find((x) => epsEq(x.eps, parts.eps));
    return w ? { value: w.accuracy, key: canonical } : { value: null, why: `missing metric ${metric}` };
  }
  const fromAttacks = (name: string): number | null => {
    for (const a of model.attacks) {
      if (a.name !== name || a.mode !== parts.mode) continue;
      const p = a.points.find((x) => epsEq(x.eps, parts.eps));
      const v = p ? (parts.success ? p.successRate : p.accuracy) : undefined;
      if (typeof v === 'number') return v;
    }
    return null;
  };
  if (model.attacks.some((a) => a.name === parts.attack)) {
    const v = fromAttacks(parts.attack);
    return v === null ? { value: null, why: `missing metric ${metric}` } : { value: v, key: canonical };
  }
  // "pgd@0.2:first" may name the attack method when exactly one attack of that method fits
  const candidates = [...new Set(model.attacks
    .filter((a) => a.method === parts.attack && a.mode === parts.mode && a.targeted === parts.success)
    .map((a) => a.name))];
  if (candidates.length > 1) return { value: null, why: `ambiguous metric ${metric}: ${parts.attack} matches attacks ${candidates.join(', ')}` };
  if (candidates.length === 1) {
    const aliased = keyOf({ ...parts, attack: candidates[0]! });
    if (Object.hasOwn(model.metrics, aliased)) return { value: model.metrics[aliased]!, key: aliased };
    const v = fromAttacks(candidates[0]!);
    if (v !== null) return { value: v, key: aliased };
  }
  return { value: null, why: `missing metric ${metric}` };
}

/** Accuracies and rates, which have a Wilson interval: clean and every ATTACK@EPS[:MODE][:success] key. */
const isRate = (key: string): boolean => key === 'clean' || key.includes('@');

const round6 = (v: number): number => Number(v.toPrecision(6));

export function compare(actual: number, op: GateOp, threshold: number): boolean {
  switch (op) {
    case '>=': return actual >= threshold;
    case '>': return actual > threshold;
    case '<=': return actual <= threshold;
    case '<': return actual < threshold;
    case '==': return Math.abs(actual - threshold) <= EQ_TOLERANCE;
  }
}

/**
 * Checks every requirement against every model in its scope: the requirement's own MODEL prefix,
 * else `opts.model`, else all models. One GateCheck per requirement × model.
 */
export function evaluateGate(results: EvalResults, requirements: ReadonlyArray<string | Requirement>, opts: { model?: string } = {}): GateReport {
  const reqs = requirements.map((r) => (typeof r === 'string' ? parseRequirement(r) : r));
  // ranges, finiteness and the metrics map's agreement with the points it summarises (one-line UsageError)
  validateResults(results, 'results');
  const names = results.models.map((m) => m.name);
  const checks: GateCheck[] = [];
  for (const req of reqs) {
    const scope = req.model ?? opts.model ?? null;
    const models = scope === null ? results.models : results.models.filter((m) => m.name === scope);
    const base = { requirement: req.text, metric: req.metric, op: req.op, threshold: req.threshold, ...(req.bound ? { bound: req.bound } : {}) };
    if (models.length === 0) {
      checks.push({
        ...base, model: scope ?? '', resolvedMetric: null, actual: null, interval: null, status: 'missing',
        message: `missing model ${scope ?? ''} (results have: ${names.join(', ') || 'none'})`,
      });
      continue;
    }
    for (const model of models) {
      const found = lookupMetric(model, req.metric);
      if (found.value === null) {
        checks.push({ ...base, model: model.name, resolvedMetric: null, actual: null, interval: null, status: 'missing', message: found.why });
        continue;
      }
      // intervals only for accuracies and rates (clean, ATTACK@EPS...): a count such as `warnings` has none
      const counts = isRate(found.key) ? countsOf(found.value, results.provenance.examples) : null;
      const iv = counts ? wilson(counts.correct, counts.n) : null;
      const interval: [number, number] | null = iv ? [iv.lower, iv.upper] : null;
      const shownBase = found.key === req.metric ? req.metric : `${req.metric} (${found.key})`;
      if (req.bound && !iv) {
        checks.push({
          ...base, model: model.name, resolvedMetric: found.key, actual: null, interval, status: 'missing',
          message: isRate(found.key)
            ? `no interval for ${shownBase}: ${found.value} is not a count out of ${results.provenance.examples} examples`
            : `no interval for ${shownBase}: it is a count, not an accuracy or rate`,
        });
        continue;
      }
      const actual = req.bound ? iv![req.bound] : found.value;
      const ok = compare(actual, req.op, req.threshold);
      const shown = req.bound ? `${shownBase}.${req.bound}` : shownBase;
      const ivText = iv ? ` [95% CI ${round6(iv.lower)}, ${round6(iv.upper)}]` : '';
      checks.push({
        ...base, model: model.name, resolvedMetric: found.key, actual, interval, status: ok ? 'pass' : 'fail',
        message: req.bound
          ? `${shown} = ${round6(actual)} (${req.metric} = ${found.value}${ivText}) ${ok ? 'satisfies' : 'violates'} ${req.op} ${req.threshold}`
          : `${shown} = ${found.value}${ivText} ${ok ? 'satisfies' : 'violates'} ${req.op} ${req.threshold}`,
      });
    }
  }
  const passedCount = checks.filter((c) => c.status === 'pass').length;
  const failedCount = checks.filter((c) => c.status === 'fail').length;
  const missingCount = checks.filter((c) => c.status === 'missing').length;
  return { passed: checks.length > 0 && passedCount === checks.length, total: checks.length, passedCount, failedCount, missingCount, checks };
}
