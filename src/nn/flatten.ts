/** Flatten [N,H,W,C] -> [N,H*W*C]; feedback reshapes back to the saved shape. */
import * as tf from '@tensorflow/tfjs-core';
import type { FeedbackLayer, LayerContext } from './state.js';

export class Flatten implements FeedbackLayer {
  constructor(readonly name: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    ctx.state.slot<{ shape: number[] }>(this.name).shape = x.shape.slice(1);
    return tf.reshape(x, [x.shape[0], -1]);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    const shape = ctx.state.slot<{ shape: number[] }>(this.name).shape;
    if (!shape) throw new Error(`${this.name}: feedback before forward`);
    return tf.reshape(y, [y.shape[0], ...shape]);
  }

  reset(ctx: LayerContext): void {
    ctx.state.reset(this.name);
  }
}
