/**
 * resReLU (AdaReLU with residual update). Forward without hidden: mask = x > 0. With hidden h from
 * an earlier feedback: x' = x + r (h - x), mask = x' h > 0. Feedback(y): hidden = y, out = y * mask.
 */
import * as tf from '@tensorflow/tfjs-core';
import { positive } from './ops.js';
import type { FeedbackLayer, LayerContext } from './state.js';

interface ReluState {
  mask: tf.Tensor;
  hidden: tf.Tensor;
}

export class ResReLU implements FeedbackLayer {
  constructor(readonly name: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<ReluState>(this.name);
    if (s.hidden) {
      const h = s.hidden;
      const xr = ctx.resParam === 0 ? x : tf.add(x, tf.mul(tf.sub(h, x), ctx.resParam));
      s.mask = this.mask(ctx, tf.mul(xr, h), h);
      return tf.mul(xr, s.mask);
    }
    s.mask = this.mask(ctx, x);
    return tf.mul(x, s.mask);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<ReluState>(this.name);
    if (!s.mask) throw new Error(`${this.name}: feedback before forward`);
    s.hidden = y;
    return tf.mul(y, s.mask);
  }

  private mask(ctx: LayerContext, pre: tf.Tensor, hidden?: tf.Tensor): tf.Tensor {
    return ctx.mask ? ctx.mask(this.name, pre, hidden) : positive(pre);
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
