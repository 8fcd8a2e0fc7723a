/** Mini-batch iteration over a split, in order or shuffled by a seeded Rng. */
import { permutation, type Rng } from './rng.js';
import { pixelsPerImage, type Split } from './types.js';

export interface Batch {
  /** batch*h*w*c values, same layout and scaling as Split.images. */
  x: Float32Array;
  y: Int32Array;
  /** Indices into the split of the images in this batch. */
  indices: Int32Array;
}

export interface BatchOptions {
  /** Visit the split in a random order drawn from `rng` (required when shuffling). */
  shuffle?: boolean;
  rng?: Rng;
  /** Skip the final short batch. */
  dropLast?: boolean;
}

/** Yields batches covering the split once (an epoch). The x/y arrays are fresh copies per batch. */
export function* batches(split: Split, batchSize: number, opts: BatchOptions = {}): Generator<Batch, void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batches: batchSize must be a positive integer, got ${batchSize}`);
  let order: Int32Array;
  if (opts.shuffle) {
    if (!opts.rng) throw new Error('batches: shuffle needs an rng (every random choice must flow from a seed)');
    order = permutation(split.count, opts.rng);
  } else {
    order = new Int32Array(split.count);
    for (let i = 0; i < split.count; i++) order[i] = i;
  }
  const P = pixelsPerImage(split);
  for (let start = 0; start < split.count; start += batchSize) {
    const end = Math.min(start + batchSize, split.count);
    if (opts.dropLast && end - start < batchSize) return;
    const indices = order.slice(start, end);
    const x = new Float32Array(indices.length * P);
    const y = new Int32Array(indices.length);
    for (let k = 0; k < indices.length; k++) {
      const i = indices[k];
      x.set(split.images.subarray(i * P, (i + 1) * P), k * P);
      y[k] = split.labels[i];
    }
    yield { x, y, indices };
  }
}

/** Number of batches `batches(split, batchSize, { dropLast })` yields. */
export function batchCount(split: Split, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(split.count / batchSize) : Math.ceil(split.count / batchSize);
}
