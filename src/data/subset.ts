/** Deterministic subsets of a split: stratified first-N-per-class, and test-subset specs (stride:K, first:N). */
import { UsageError } from '../errors.js';
import { pixelsPerImage, type Split } from './types.js';

/** Copies the images at `indices` (in the given order) into a new split. */
export function takeIndices(split: Split, indices: ArrayLike<number>): Split {
  const n = indices.length;
  const P = pixelsPerImage(split);
  const images = new Float32Array(n * P);
  const labels = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= split.count) throw new Error(`takeIndices: index ${i} out of range 0..${split.count - 1}`);
    images.set(split.images.subarray(i * P, (i + 1) * P), k * P);
    labels[k] = split.labels[i];
  }
  return { images, labels, count: n, height: split.height, width: split.width, channels: split.channels };
}

/** Images per class of a split. */
export function classCounts(split: Pick<Split, 'labels' | 'count'>, numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < split.count; i++) {
    const y = split.labels[i];
    if (y < 0 || y >= numClasses) throw new Error(`classCounts: label ${y} at index ${i} out of range 0..${numClasses - 1}`);
    counts[y]++;
  }
  return counts;
}

/**
 * How many images of each class a stratified subset of size n takes: proportional to the class
 * counts, floors first, then the remainder goes to the largest fractional parts (ties: lowest class).
 * For balanced classes that is n/numClasses each, remainder to the lowest classes.
 */
export function stratifiedQuotas(counts: readonly number[], n: number): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  if (n > total) throw new Error(`stratifiedQuotas: ${n} > ${total}`);
  const quotas = counts.map((c) => Math.floor((n * c) / total));
  let left = n - quotas.reduce((a, b) => a + b, 0);
  // fractional part as an exact integer numerator: (n*c) mod total
  const order = counts
    .map((c, k) => ({ k, frac: (n * c) % total }))
    .filter(({ k }) => quotas[k] < counts[k])
    .sort((a, b) => b.frac - a.frac || a.k - b.k);
  for (const { k } of order) {
    if (left === 0) break;
    quotas[k]++;
    left--;
  }
  return quotas;
}

/**
 * Stratified subset of n images: per class the first images in split order, in proportion to the
 * class sizes; the result keeps split order. `what` names the split in error messages.
 */
export function stratifiedSubset(split: Split, n: number, numClasses: number, what = 'split'): Split {
  const indices = stratifiedIndices(split, n, numClasses, what);
  return indices === null ? split : takeIndices(split, indices);
}

/** The ascending indices stratifiedSubset takes (null: the whole split); needs only the labels. */
export function stratifiedIndices(split: Pick<Split, 'labels' | 'count'>, n: number, numClasses: number, what = 'split'): number[] | null {
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${what} size must be a positive integer, got ${n}`);
  if (n > split.count) throw new UsageError(`${what} size ${n} is larger than the ${what} split (${split.count} images)`);
  if (n === split.count) return null;
  const quotas = stratifiedQuotas(classCounts(split, numClasses), n);
  const taken = new Array<number>(numClasses).fill(0);
  const indices: number[] = [];
  for (let i = 0; i < split.count && indices.length < n; i++) {
    const y = split.labels[i];
    if (taken[y] < quotas[y]) {
      taken[y]++;
      indices.push(i);
    }
  }
  return indices;
}

export type TestSubset = { kind: 'stride'; k: number } | { kind: 'first'; n: number };

/** Parses "stride:K" (every K-th image: 0, K, 2K, ...) or "first:N". */
export function parseTestSubset(raw: string, flag = '--test-subset'): TestSubset {
  const m = /^\s*(stride|first)\s*:\s*(\d+)\s*$/.exec(String(raw));
  if (!m) throw new UsageError(`${flag} must be stride:K or first:N (positive integers), got ${JSON.stringify(raw)}`);
  const v = Number(m[2]);
  if (!Number.isSafeInteger(v) || v < 1) throw new UsageError(`${flag} needs a positive integer, got ${JSON.stringify(raw)}`);
  return m[1] === 'stride' ? { kind: 'stride', k: v } : { kind: 'first', n: v };
}

export function formatTestSubset(s: TestSubset): string {
  return s.kind === 'stride' ? `stride:${s.k}` : `first:${s.n}`;
}

/** Applies a test-subset spec in split order. */
export function applyTestSubset(split: Split, spec: TestSubset | string): Split {
  const s = typeof spec === 'string' ? parseTestSubset(spec) : spec;
  const indices: number[] = [];
  if (s.kind === 'stride') {
    if (!Number.isInteger(s.k) || s.k < 1) throw new UsageError(`test subset stride must be a positive integer, got ${s.k}`);
    for (let i = 0; i < split.count; i += s.k) indices.push(i);
  } else {
    if (!Number.isInteger(s.n) || s.n < 1) throw new UsageError(`test subset first:N needs a positive integer, got ${s.n}`);
    if (s.n > split.count) throw new UsageError(`test subset first:${s.n} is larger than the test split (${split.count} images)`);
    for (let i = 0; i < s.n; i++) indices.push(i);
  }
  return takeIndices(split, indices);
}
