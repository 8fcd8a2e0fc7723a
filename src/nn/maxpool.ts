/**
 * MaxPool2d 2x2 with max/min selection and unpooling. Forward without hidden: max pool, remember
 * the argmax (FIRST maximal position of each window, row-major, like PyTorch). Forward with hidden g:
 * [g>0] maxpool + [g<0] minpool, remembering both selections. Feedback(y): hidden = y; unpool to the
 * argmax positions, or y[g>0] to argmax plus y[g<0] to argmin once a hidden exists.
 *
 * Both directions are one linear map given a full-resolution one-hot selection mask M (one 1 per
 * window: the argmax, or where g>0 the argmax and where g<0 the argmin). Pooling is gather(x) =
 * 4 avgPool(x M) (exact: one non-zero per window) and unpooling is scatter(y) = upsample(y) M; each is
 * the other's gradient. M has zero gradient (as the reference's indices), so it is computed off the
 * tape with native pooling kernels; exactly one position per window receives a value. A pass with no
 * gradient tape (predictions, Square's queries) needs no mask for its values: it takes them from the
 * native max pool (and min pool, where g < 0), keeps its input, and feedback makes the mask from that
 * input only when it runs (the same mask, the same values; a last forward pass never needs one).
 */
import * as tf from '@tensorflow/tfjs-core';
import { lazyGradOp, tapeRecording, untaped } from '../backend/engine.js';
import { positive } from './ops.js';
import type { FeedbackLayer, LayerContext } from './state.js';

interface PoolState {
  shape: [number, number, number, number];
  /** One-hot selection [N,H,W,C] of the position each window reads from / writes to (made lazily after a value-only forward). */
  mask?: tf.Tensor4D;
  /** The input of a value-only forward pass (no tape), from which feedback makes the mask. */
  input?: tf.Tensor4D;
  hidden?: tf.Tensor;
}

/** The selection mask of a forward pass at x: the first max of each window, or with hidden g the first max where g > 0 and the first min where g < 0. */
function selectionMask(x4: tf.Tensor4D, hidden: tf.Tensor4D | undefined): tf.Tensor4D {
  return untaped(() => {
    const maxSel = firstMaxMask(x4);
    if (!hidden) return maxSel;
    const minSel = firstMaxMask(tf.neg(x4));
    return tf.add(tf.mul(upsample2(positive(hidden) as tf.Tensor4D), maxSel), tf.mul(upsample2(positive(tf.neg(hidden)) as tf.Tensor4D), minSel));
  }) as tf.Tensor4D;
}

/** Nearest-neighbour 2x upsampling [N,h,w,C] -> [N,2h,2w,C]. */
export function upsample2(t: tf.Tensor4D): tf.Tensor4D {
  return tf.image.resizeNearestNeighbor(t, [t.shape[1] * 2, t.shape[2] * 2]);
}

/** [1,H,W,1] priority of each position inside its 2x2 window: 4 3 / 2 1 (row-major first wins). */
function windowPriority(h: number, w: number): tf.Tensor4D {
  const p = new Float32Array(h * w);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) p[i * w + j] = 4 - 2 * (i % 2) - (j % 2);
  return tf.tensor4d(p, [1, h, w, 1]);
}

/**
 * One-hot mask of the FIRST position (row-major) holding each window's maximum of v. Equality is
 * tested as 1 - step(max - v) (exact: max - v > 0 whenever they differ), which is far cheaper on wasm
 * than Equal/LogicalAnd; the first maximal position is the one with the highest window priority.
 */
export function firstMaxMask(v: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const notMax = tf.step(tf.sub(upsample2(tf.maxPool(v, 2, 2, 'valid')), v));
    const score = tf.mul(tf.sub(1, notMax), windowPriority(v.shape[1], v.shape[2])) as tf.Tensor4D;
    // every window holds its maximum, so its best score is >= 1 and non-maximal positions (0) never match
    return tf.sub(1, tf.step(tf.sub(upsample2(tf.maxPool(score, 2, 2, 'valid')), score))) as tf.Tensor4D;
  });
}

/** gather: each window's selected value, [N,H,W,C] -> [N,H/2,W/2,C]. Gradient: scatter. */
export function poolSelect(x: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor4D {
  return lazyGradOp(
    [x],
    (save) => {
      save([mask]);
      return tf.mul(tf.avgPool(tf.mul(x, mask) as tf.Tensor4D, 2, 2, 'valid'), 4);
    },
    (dy, [m]) => [() => unpoolSelect(dy as tf.Tensor4D, m as tf.Tensor4D)],
  ) as tf.Tensor4D;
}

/** scatter: y to each window's selected position, zeros elsewhere, [N,h,w,C] -> [N,2h,2w,C]. Gradient: gather. */
export function unpoolSelect(y: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor4D {
  return lazyGradOp(
    [y],
    (save) => {
      save([mask]);
      return tf.mul(upsample2(y), mask);
    },
    (dy, [m]) => [() => poolSelect(dy as tf.Tensor4D, m as tf.Tensor4D)],
  ) as tf.Tensor4D;
}

export class MaxPool2d implements FeedbackLayer {
  constructor(readonly name: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    const x4 = x as tf.Tensor4D;
    const [, h, w] = x4.shape;
    if (h % 2 !== 0 || w % 2 !== 0) throw new Error(`${this.name}: input ${h}x${w} is not divisible by 2`);
    const s = ctx.state.slot<PoolState>(this.name);
    const hidden = s.hidden as tf.Tensor4D | undefined;
    s.shape = x4.shape;
    if (!tapeRecording()) {
      // no gradient will flow through this pass: the selected values straight from the native pooling
      // kernels (the same values: each window's max, or where g < 0 its min, or 0 where g = 0), and the
      // selection mask only if a feedback pass asks for it
      s.input = x4;
      s.mask = undefined;
      if (!hidden) return tf.maxPool(x4, 2, 2, 'valid');
      return tf.tidy(() => tf.add(tf.mul(positive(hidden), tf.maxPool(x4, 2, 2, 'valid')), tf.mul(positive(tf.neg(hidden)), tf.neg(tf.maxPool(tf.neg(x4), 2, 2, 'valid')))));
    }
    s.input = undefined;
    s.mask = selectionMask(x4, hidden);
    return poolSelect(x4, s.mask);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<PoolState>(this.name);
    if (!s.shape || (!s.mask && !s.input)) throw new Error(`${this.name}: feedback before forward`);
    // a value-only forward pass leaves its input: the mask is made now, from the hidden state it saw
    s.mask ??= selectionMask(s.input as tf.Tensor4D, s.hidden as tf.Tensor4D | undefined);
    s.hidden = y;
    return unpoolSelect(y as tf.Tensor4D, s.mask);
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
