/** InsNorm: x / sqrt(mean_{H,W} x^2 + 1e-8). Not invertible: feedback applies it as-is. */
import type * as tf from '@tensorflow/tfjs-core';
import { insNorm } from './ops.js';
import type { FeedbackLayer } from './state.js';

export class InsNorm implements FeedbackLayer {
  constructor(readonly name: string) {}

  forward(_ctx: unknown, x: tf.Tensor): tf.Tensor {
    return insNorm(x as tf.Tensor4D);
  }

  feedback(_ctx: unknown, y: tf.Tensor): tf.Tensor {
    return insNorm(y as tf.Tensor4D);
  }

  reset(): void {}
}
