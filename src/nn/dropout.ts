/**
 * Dropout(p): in training the forward draws m = (u >= p) / (1 - p) and multiplies; feedback
 * multiplies by the same m. Identity in evaluation.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { FeedbackLayer, LayerContext } from './state.js';

export class Dropout implements FeedbackLayer {
  constructor(readonly name: string, readonly p = 0.5) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    if (!ctx.training || this.p === 0) return x;
    const s = ctx.state.slot<{ mask: tf.Tensor }>(this.name);
    if (!s.mask) {
      if (!ctx.uniform) throw new Error(`${this.name}: training dropout needs a seeded uniform sampler`);
      s.mask = tf.div(tf.step(tf.sub(ctx.uniform(x.shape), this.p)), 1 - this.p);
    }
    return tf.mul(x, s.mask);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const s = ctx.state.slot<{ mask: tf.Tensor }>(this.name);
    return s.mask ? tf.mul(y, s.mask) : y;
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
