/**
 * Statistics for accuracies measured on a finite test set: Wilson score intervals for a binomial
 * proportion, the exact (binomial) McNemar test for two models scored on the same examples, and a
 * compact base64 bitset for the per-example outcomes the paired test needs.
 *
 * Why hand-written: both formulas are a few lines; the npm packages that have them (jStat,
 * @stdlib) are large, and the values are checked in test/stats.test.ts against scipy
 * (`binomtest(k, n).proportion_ci(method="wilson")`, `binomtest(min(b, c), b + c, 0.5).pvalue`).
 */

/** Two-sided 95% normal quantile, Φ⁻¹(0.975). */
export const Z95 = 1.959963984540054;

/** What every interval cnnf prints or stores is: shown next to the numbers and stored in results files. */
export const INTERVAL_METHOD = 'Wilson score, 95%';
export const PAIRED_TEST = 'exact McNemar (two-sided binomial test on the discordant pairs)';
/** Significance level for "most robust" claims. */
export const ALPHA = 0.05;
/** Per-example outcomes are stored for at most this many examples (12.5 kB of bits per attack point). */
export const MAX_OUTCOMES = 100_000;

export interface Interval {
  lower: number;
  upper: number;
}

function checkCounts(k: number, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  if (!Number.isInteger(k) || k < 0 || k > n) throw new RangeError(`k must be an integer in 0..${n}, got ${k}`);
}

/**
 * Wilson score interval for k successes in n trials: the proportions π with
 * |k/n - π| <= z·sqrt(π(1-π)/n). Unlike the normal ("Wald") interval it stays inside [0, 1] and
 * is not degenerate at 0/n or n/n.
 */
export function wilson(k: number, n: number, z = Z95): Interval {
  checkCounts(k, n);
  const p = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  // exact at the ends (the formula gives 0 and 1 up to rounding)
  return { lower: k === 0 ? 0 : Math.max(0, centre - half), upper: k === n ? 1 : Math.min(1, centre + half) };
}

/**
 * Exact two-sided McNemar test: given b pairs where only model A is right and c where only B is,
 * under H0 (equal accuracy) b ~ Binomial(b + c, 1/2). p = min(1, 2·P(X <= min(b, c))).
 * b + c = 0 (the models agree on every example) gives p = 1.
 */
export function mcnemarExact(b: number, c: number): number {
  if (!Number.isInteger(b) || !Number.isInteger(c) || b < 0 || c < 0) throw new RangeError(`b and c must be non-negative integers, got ${b}, ${c}`);
  const n = b + c;
  if (n === 0) return 1;
  const m = Math.min(b, c);
  // sum the pmf in log space: log C(n, k) + n·log(1/2), C(n, k+1) = C(n, k)·(n-k)/(k+1)
  let logTerm = -n * Math.LN2;
  let sum = 0;
  for (let k = 0; k <= m; k++) {
    sum += Math.exp(logTerm);
    logTerm += Math.log((n - k) / (k + 1));
  }
  return Math.min(1, 2 * sum);
}

/** "p = 0.62", "p = 0.012", "p < 0.001". */
export function formatP(p: number): string {
  if (p < 0.001) return 'p < 0.001';
  if (p >= 0.995) return 'p = 1';
  return `p = ${Number(p.toPrecision(2))}`;
}

/** "[81.2%, 89.7%]" (one decimal: the interval's own precision). */
export function formatInterval(iv: Interval): string {
  return `[${(iv.lower * 100).toFixed(1)}%, ${(iv.upper * 100).toFixed(1)}%]`;
}

/** Per-example outcomes (1 = correct) as a base64 bitset: example i is bit (i & 7) of byte i >> 3. */
export function encodeOutcomes(ok: ArrayLike<number | boolean>): string {
  if (ok.length > MAX_OUTCOMES) throw new RangeError(`at most ${MAX_OUTCOMES} outcomes can be stored, got ${ok.length}`);
  const bytes = new Uint8Array(Math.ceil(ok.length / 8));
  for (let i = 0; i < ok.length; i++) if (ok[i]) bytes[i >> 3]! |= 1 << (i & 7);
  return Buffer.from(bytes).toString('base64');
}

/** Inverse of encodeOutcomes; null when the string is not a bitset of exactly n outcomes. */
export function decodeOutcomes(b64: string, n: number): Uint8Array | null {
  if (!Number.isInteger(n) || n < 0 || n > MAX_OUTCOMES) return null;
  const bytesNeeded = Math.ceil(n / 8);
  if (b64.length !== 4 * Math.ceil(bytesNeeded / 3) || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return null;
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== bytesNeeded) return null;
  // padding bits past n must be zero (a bitset for another n would otherwise pass)
  if (n % 8 !== 0 && bytes[bytesNeeded - 1]! >> (n % 8) !== 0) return null;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (bytes[i >> 3]! >> (i & 7)) & 1;
  return out;
}

export function countOnes(bits: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < bits.length; i++) s += bits[i] ? 1 : 0;
  return s;
}

export interface PairedComparison {
  /** Examples only A gets right. */
  b: number;
  /** Examples only B gets right. */
  c: number;
  p: number;
}

/** McNemar on two outcome vectors over the same examples. */
export function pairedTest(a: ArrayLike<number>, bOut: ArrayLike<number>): PairedComparison {
  if (a.length !== bOut.length) throw new RangeError(`paired outcomes must cover the same examples (${a.length} vs ${bOut.length})`);
  let b = 0;
  let c = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && !bOut[i]) b++;
    else if (!a[i] && bOut[i]) c++;
  }
  return { b, c, p: mcnemarExact(b, c) };
}

/**
 * Counts behind an accuracy measured on n examples. Accuracies are written as correct / n, so the
 * count is recovered exactly from results files that predate stored counts; null if it is not.
 */
export function countsOf(accuracy: number, n: number): { correct: number; n: number } | null {
  if (!Number.isInteger(n) || n < 1 || !Number.isFinite(accuracy)) return null;
  const correct = Math.round(accuracy * n);
  if (correct < 0 || correct > n || Math.abs(correct / n - accuracy) > 1e-9) return null;
  return { correct, n };
}

/** Rounds interval ends for storage (1e-6 is far below any test set's resolution). */
const r6 = (v: number): number => Math.round(v * 1e6) / 1e6;

/** A 95% Wilson interval as the `[lower, upper]` pair results files store. */
export function ciPair(k: number, n: number): [number, number] {
  const iv = wilson(k, n);
  return [r6(iv.lower), r6(iv.upper)];
}

/** Accuracy, counts, interval and outcome bitset of a per-example correctness vector (1 = correct). */
export function measure(ok: ArrayLike<number>): { accuracy: number; correct: number; n: number; ci: [number, number]; outcomes?: string } {
  const n = ok.length;
  const correct = countOnes(ok);
  return { accuracy: correct / n, correct, n, ci: ciPair(correct, n), ...(n <= MAX_OUTCOMES ? { outcomes: encodeOutcomes(ok) } : {}) };
}
