/** Linear without bias (x W); feedback y W^T with W treated as a constant (no gradient to W). */
import type * as tf from '@tensorflow/tfjs-core';
import { linear, linearFeedback } from './ops.js';
import { param, type FeedbackLayer, type LayerContext } from './state.js';

export class Linear implements FeedbackLayer {
  /** weight is stored [in, out]. */
  constructor(readonly name: string, readonly weight: string) {}

  forward(ctx: LayerContext, x: tf.Tensor): tf.Tensor {
    return linear(x as tf.Tensor2D, param(ctx, this.weight) as tf.Tensor2D);
  }

  feedback(ctx: LayerContext, y: tf.Tensor): tf.Tensor {
    return linearFeedback(y as tf.Tensor2D, param(ctx, this.weight) as tf.Tensor2D);
  }

  reset(): void {}
}
