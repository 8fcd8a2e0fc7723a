/** Conv2d (3x3, stride 1, pad 1, no bias); feedback is the transposed conv with the SAME weights. */
import type * as tf from '@tensorflow/tfjs-core';
import { conv2dSame, convTransposeSame } from './ops.js';
import { param, type FeedbackLayer, type LayerContext } from './state.js';

export class Conv2d implements FeedbackLayer {
  constructor(readonly name: string, readonly weight: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    return conv2dSame(x as tf.Tensor4D, param(ctx, this.weight) as tf.Tensor4D);
  }

  /** Gradients from this use and the forward use of the weight add up (tied weights). */
  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    return convTransposeSame(y as tf.Tensor4D, param(ctx, this.weight) as tf.Tensor4D);
  }

  reset(): void {}
}
