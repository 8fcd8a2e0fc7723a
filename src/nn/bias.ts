/** Bias: forward x + b (per channel / per unit). Feedback is the identity, as in the reference. */
import type * as tf from '@tensorflow/tfjs-core';
import { addBias } from './ops.js';
import { param, type FeedbackLayer, type LayerContext } from './state.js';

export class Bias implements FeedbackLayer {
  constructor(readonly name: string, readonly bias: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    return addBias(x, param(ctx, this.bias));
  }

  feedback(_ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    return y;
  }

  reset(): void {}
}
