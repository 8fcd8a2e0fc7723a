/**
 * resReLU (AdaReLU with residual update). Forward without hidden: mask = x > 0. With hidden h from
 * an earlier feedback: x' = x + r (h - x), mask = x' h > 0. Feedback(y): hidden = y, out = y * mask.
 */
import * as tf from '@tensorflow/tfjs-core';
import { untaped } from '../backend/engine.js';
import { mulConst, positive } from './ops.js';
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
      // the mask has zero gradient: computed off the tape, so the tape keeps neither xr h nor x
      s.mask = untaped(() => this.mask(ctx, tf.mul(xr, h), h));
      return mulConst(xr, s.mask);
    }
    s.mask = untaped(() => this.mask(ctx, x));
    return mulConst(x, s.mask);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<ReluState>(this.name);
    if (!s.mask) throw new Error(`${this.name}: feedback before forward`);
    s.hidden = y;
    return mulConst(y, s.mask);
  }

  private mask(ctx: LayerContext, pre: tf.Tensor, hidden?: tf.Tensor): tf.Tensor {
    return ctx.mask ? ctx.mask(this.name, pre, hidden) : positive(pre);
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
