/**
 * Differentiable building blocks of the feedback layers, with hand-written gradients: the layer math
 * only. Backend workarounds (gradient formulations for kernels tfjs-wasm lacks, buffer-sharing kernels)
 * live in src/backend/kernels.ts, the gradient-tape plumbing in src/backend/engine.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { lazyGradOp } from '../backend/engine.js';
import { convFilterGrad, flipFilter, matMulBT } from '../backend/kernels.js';

/** Stride-1 'same' (zero padding (k-1)/2) convolution, NHWC input, [kh,kw,in,out] filter. */
export function conv2dSame(x: tf.Tensor4D, w: tf.Tensor4D): tf.Tensor4D {
  return lazyGradOp(
    [x, w],
    (save) => {
      save([x, w]);
      return tf.conv2d(x, w, 1, 'same');
    },
    (dy, saved) => {
      const [sx, sw] = saved as [tf.Tensor4D, tf.Tensor4D];
      const d = dy as tf.Tensor4D;
      return [() => tf.conv2d(d, flipFilter(sw), 1, 'same'), () => convFilterGrad(sx, d, sw.shape[0], sw.shape[1])];
    },
  ) as tf.Tensor4D;
}

/**
 * Transposed stride-1 'same' convolution with the forward filter w [kh,kw,in,out]:
 * y [N,H,W,out] -> [N,H,W,in]. Gradients reach w through the flip (tied weights).
 */
export function convTransposeSame(y: tf.Tensor4D, w: tf.Tensor4D): tf.Tensor4D {
  return conv2dSame(y, flipFilter(w));
}

/** x [N,in] @ w [in,out] with gradients written as plain (untransposed-flag) matMuls. */
export function linear(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return lazyGradOp(
    [x, w],
    (save) => {
      save([x, w]);
      return tf.matMul(x, w);
    },
    (dy, [sx, sw]) => [() => matMulBT(dy as tf.Tensor2D, sw as tf.Tensor2D), () => tf.matMul(tf.transpose(sx as tf.Tensor2D), dy as tf.Tensor2D)],
  ) as tf.Tensor2D;
}

/**
 * Tied-weight feedback of a linear layer: y [N,out] @ w^T -> [N,in]. w is treated as a constant
 * (the reference copies the weights), so its gradient is zero.
 */
export function linearFeedback(y: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return lazyGradOp(
    [y, w],
    (save) => {
      save([w]);
      return matMulBT(y, w);
    },
    (dy, [sw]) => [() => tf.matMul(dy as tf.Tensor2D, sw as tf.Tensor2D), () => tf.zerosLike(sw)],
  ) as tf.Tensor2D;
}

/** 1 where x > 0, else 0, with zero gradient (tf.step). */
export function positive(x: tf.Tensor): tf.Tensor {
  return tf.step(x, 0);
}

/**
 * Instance norm without mean subtraction: y = x / s, s = sqrt(mean_{H,W}(x^2) + 1e-8), per sample and
 * channel (NHWC). Hand-written gradient dx = dy / s - x mean_{H,W}(dy x) / s^3, so the tape keeps only x
 * and the small s instead of every intermediate of the composite.
 */
export function insNorm(x: tf.Tensor4D): tf.Tensor4D {
  return lazyGradOp(
    [x],
    (save) => {
      const sd = tf.sqrt(tf.add(tf.mean(tf.square(x), [1, 2], true), 1e-8));
      save([x, sd]);
      return tf.div(x, sd);
    },
    (dy, [sx, sd]) => [() => insNormGrad(dy, sx, sd)],
  ) as tf.Tensor4D;
}

/** dx of insNorm: dy / s - x mean_{H,W}(dy x) / s^3. */
function insNormGrad(dy: tf.Tensor, x: tf.Tensor, sd: tf.Tensor): tf.Tensor {
  const m = tf.div(tf.mean(tf.mul(dy, x), [1, 2], true), tf.mul(sd, tf.square(sd)));
  return tf.sub(tf.div(dy, sd), tf.mul(x, m));
}

/**
 * x + b with b broadcast over x's leading axes (a bias). The same values and gradients as tf.add
 * (dx = dy, db = sum of dy over the broadcast axes), but the tape keeps nothing: tf.add saves both
 * inputs (for their shapes), which kept every pre-bias activation alive until the backward pass.
 */
export function addBias(x: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const xShape = x.shape;
  const bShape = b.shape;
  const axes = tf.backend_util.getReductionAxes(bShape, tf.backend_util.assertAndGetBroadcastShape(xShape, bShape));
  return lazyGradOp(
    [x, b],
    () => tf.add(x, b),
    (dy) => [() => tf.reshape(dy, xShape), () => tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, bShape)],
  );
}

/**
 * x * m where m is a constant (a 0/1 mask computed off the tape): the same values and x-gradient as
 * tf.mul (dx = dy m), but the tape keeps only m, not x, and never computes a gradient for m.
 */
export function mulConst(x: tf.Tensor, m: tf.Tensor): tf.Tensor {
  return lazyGradOp(
    [x],
    (save) => {
      save([m]);
      return tf.mul(x, m);
    },
    (dy, [sm]) => [() => tf.mul(dy, sm)],
  );
}
