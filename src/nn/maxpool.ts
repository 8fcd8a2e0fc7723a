/**
 * MaxPool2d 2x2 with max/min selection and unpooling. Forward without hidden: max pool, remember
 * the argmax (FIRST maximal position of each window, row-major, like PyTorch). Forward with hidden g:
 * [g>0] maxpool + [g<0] minpool, remembering both selections. Feedback(y): hidden = y; unpool to the
 * argmax positions, or y[g>0] to argmax plus y[g<0] to argmin once a hidden exists.
 * Windows are taken apart with reshape + slice and put back with concat, so every piece has a
 * gradient on every backend; exactly one position per window receives a value.
 */
import * as tf from '@tensorflow/tfjs-core';
import { positive } from './ops.js';
import type { FeedbackLayer, LayerContext } from './state.js';

interface PoolState {
  shape: [number, number, number, number];
  maxSel: tf.Tensor[];
  minSel?: tf.Tensor[];
  pos?: tf.Tensor;
  neg?: tf.Tensor;
  hidden?: tf.Tensor;
}

/** The four window positions (0,0),(0,1),(1,0),(1,1) of a 2x2 pool as [N,H/2,W/2,C] tensors. */
export function windowParts(x: tf.Tensor4D): tf.Tensor4D[] {
  const [n, h, w, c] = x.shape;
  const r = tf.reshape(x, [n * (h / 2), 2, w / 2, 2 * c]);
  const parts: tf.Tensor4D[] = [];
  for (let a = 0; a < 2; a++) {
    for (let b = 0; b < 2; b++) {
      parts.push(tf.reshape(tf.slice(r, [0, a, 0, b * c], [n * (h / 2), 1, w / 2, c]), [n, h / 2, w / 2, c]));
    }
  }
  return parts;
}

/** Inverse of windowParts: four [N,H/2,W/2,C] tensors back into [N,H,W,C]. */
export function joinParts(parts: tf.Tensor[], shape: [number, number, number, number]): tf.Tensor4D {
  const [n, h, w, c] = shape;
  const rows = [0, 1].map((a) =>
    tf.concat([0, 1].map((b) => tf.reshape(parts[a * 2 + b], [n * (h / 2), 1, w / 2, c])), 3),
  );
  return tf.reshape(tf.concat(rows, 1), shape);
}

/** One-hot selection masks of the first position holding the window's extreme value `m`. */
export function firstSelection(parts: tf.Tensor[], m: tf.Tensor): tf.Tensor[] {
  const sel: tf.Tensor[] = [];
  let free: tf.Tensor | null = null;
  for (let i = 0; i < 4; i++) {
    // |part - m| is 0 exactly where the part holds the extreme value
    const eq = tf.sub(1, positive(tf.abs(tf.sub(parts[i], m))));
    const s: tf.Tensor = free ? tf.mul(eq, free) : eq;
    sel.push(s);
    free = free ? tf.sub(free, s) : tf.sub(1, s);
  }
  return sel;
}

export class MaxPool2d implements FeedbackLayer {
  constructor(readonly name: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    const x4 = x as tf.Tensor4D;
    const [, h, w] = x4.shape;
    if (h % 2 !== 0 || w % 2 !== 0) throw new Error(`${this.name}: input ${h}x${w} is not divisible by 2`);
    const s = ctx.state.slot<PoolState>(this.name);
    const parts = windowParts(x4);
    const mx = tf.maximum(tf.maximum(parts[0], parts[1]), tf.maximum(parts[2], parts[3]));
    const maxSel = firstSelection(parts, mx);
    const pick = (sel: tf.Tensor[]) => tf.addN(sel.map((m, i) => tf.mul(m, parts[i])));
    s.shape = x4.shape;
    s.maxSel = maxSel;
    if (!s.hidden) return pick(maxSel);
    const mn = tf.minimum(tf.minimum(parts[0], parts[1]), tf.minimum(parts[2], parts[3]));
    s.minSel = firstSelection(parts, mn);
    s.pos = positive(s.hidden);
    s.neg = positive(tf.neg(s.hidden));
    return tf.add(tf.mul(s.pos, pick(maxSel)), tf.mul(s.neg, pick(s.minSel)));
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<PoolState>(this.name);
    if (!s.maxSel || !s.shape) throw new Error(`${this.name}: feedback before forward`);
    s.hidden = y;
    if (!s.pos || !s.neg || !s.minSel) return joinParts(s.maxSel.map((m) => tf.mul(m, y)), s.shape);
    const yp = tf.mul(y, s.pos);
    const yn = tf.mul(y, s.neg);
    const minSel = s.minSel;
    return joinParts(s.maxSel.map((m, i) => tf.add(tf.mul(m, yp), tf.mul(minSel[i], yn))), s.shape);
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
