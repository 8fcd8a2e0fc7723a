/**
 * The project's only source of randomness. Every random choice (init, shuffling, noise, attack
 * restarts) must come from an `Rng` built with `mulberry32(seed)` so runs are reproducible.
 * Never use Math.random() elsewhere.
 */

/** A uniform generator on [0, 1). */
export type Rng = () => number;

/** Mulberry32: small, fast 32-bit PRNG. Any finite number is accepted as a seed (taken modulo 2^32). */
export function mulberry32(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new Error(`mulberry32: seed must be a finite number, got ${seed}`);
  let a = Math.trunc(seed) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Derives an independent seed for a named sub-stream, e.g. `mulberry32(deriveSeed(seed, 'shuffle'))`,
 * so that adding a random consumer does not shift the numbers every other consumer sees.
 */
export function deriveSeed(seed: number, stream: string | number): number {
  let h = 0x811c9dc5 ^ (Math.trunc(seed) >>> 0);
  const s = String(stream);
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // murmur3 finalizer for avalanche
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Uniform integer in [0, n). */
export function randInt(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

/** Uniform float in [lo, hi). */
export function uniform(rng: Rng, lo = 0, hi = 1): number {
  return lo + (hi - lo) * rng();
}

/** One normal sample N(mean, std^2) by Box-Muller (uses two uniforms, discards the sine half). */
export function gaussian(rng: Rng, mean = 0, std = 1): number {
  const u1 = 1 - rng(); // (0, 1], so log is finite
  const u2 = rng();
  return mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Fills `out` with N(mean, std^2) samples using both Box-Muller outputs; returns `out`. */
export function fillGaussian<A extends Float32Array | Float64Array>(out: A, rng: Rng, mean = 0, std = 1): A {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = 1 - rng();
    const u2 = rng();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Anything indexable and writable: plain arrays and typed arrays. */
export interface MutableArrayLike {
  length: number;
  [index: number]: any;
}

/** In-place Fisher-Yates shuffle; returns the same array. */
export function shuffle<A extends MutableArrayLike>(arr: A, rng: Rng): A {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = arr[i];
    arr[i] = arr[j];
    arr[j] = tmp;
  }
  return arr;
}

/** A random permutation of 0..n-1. */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return shuffle(p, rng);
}
