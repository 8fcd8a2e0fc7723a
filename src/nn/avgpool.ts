/** AvgPool2d k x k: forward average pool; feedback nearest-neighbour upsampling by k. */
import * as tf from '@tensorflow/tfjs-core';
import type { FeedbackLayer } from './state.js';

export class AvgPool2d implements FeedbackLayer {
  constructor(readonly name: string, readonly size = 2) {}

  forward(_ctx: unknown, x: tf.Tensor): tf.Tensor {
    return tf.avgPool(x as tf.Tensor4D, this.size, this.size, 'valid');
  }

  feedback(_ctx: unknown, y: tf.Tensor): tf.Tensor {
    const [n, h, w, c] = (y as tf.Tensor4D).shape;
    const k = this.size;
    // nearest upsampling as a broadcast: [N,H,1,W,1,C] * ones -> [N,H*k,W*k,C]
    const y6 = tf.reshape(y, [n * h, 1, w, 1, c]);
    const up = tf.mul(y6, tf.ones([1, k, 1, k, 1]));
    return tf.reshape(up, [n, h * k, w * k, c]);
  }

  reset(): void {}
}
