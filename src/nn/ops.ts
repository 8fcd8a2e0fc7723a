/**
 * Differentiable building blocks with hand-written gradients that run on every tfjs backend.
 * tfjs-wasm has no Conv2DBackpropFilter kernel (tensorflow/tfjs#8474) and is slow on
 * conv2dTranspose and transposed matMuls, so convolutions, transposed convolutions and the
 * tied-weight products are expressed through Conv2D, MatMul, Slice and Concat only.
 */
import * as tf from '@tensorflow/tfjs-core';
// the union package registers every op gradient on the shared tfjs-core engine
import '@tensorflow/tfjs';

/** [kh,kw,in,out] -> spatially flipped [kh,kw,out,in]: turns a transposed conv into a plain conv. */
export function flipFilter(w: tf.Tensor4D): tf.Tensor4D {
  return tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]);
}

/**
 * Gradient of a stride-1 'same' convolution with respect to its filter, without
 * Conv2DBackpropFilter: im2col on the channel-major input, then one plain matMul.
 * x [N,H,W,Ci], dy [N,H,W,Co] -> [kh,kw,Ci,Co].
 */
export function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, ci] = x.shape;
    const co = dy.shape[3];
    const ph = (kh - 1) / 2;
    const pw = (kw - 1) / 2;
    // channel-major: [Ci, N, H, W] so every patch slice is already laid out as rows of the im2col matrix
    const xc = tf.transpose(x, [3, 0, 1, 2]);
    const xp = tf.pad(xc, [[0, 0], [0, 0], [ph, ph], [pw, pw]]);
    const cols: tf.Tensor[] = [];
    for (let a = 0; a < kh; a++) {
      for (let b = 0; b < kw; b++) cols.push(tf.slice(xp, [0, 0, a, b], [ci, n, h, w]));
    }
    const patches = tf.reshape(tf.concat(cols, 0), [kh * kw * ci, n * h * w]);
    const g = tf.matMul(patches, tf.reshape(dy, [n * h * w, co]));
    return tf.reshape(g, [kh, kw, ci, co]);
  });
}

/** Stride-1 'same' (zero padding (k-1)/2) convolution, NHWC input, [kh,kw,in,out] filter. */
export const conv2dSame = tf.customGrad(((x: tf.Tensor4D, w: tf.Tensor4D, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.conv2d(x, w, 1, 'same'),
    gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
      const [sx, sw] = saved as [tf.Tensor4D, tf.Tensor4D];
      const dx = tf.conv2d(dy, flipFilter(sw), 1, 'same');
      const dw = convFilterGrad(sx, dy, sw.shape[0], sw.shape[1]);
      return [dx, dw];
    },
  };
}) as any) as (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D;

/**
 * Transposed stride-1 'same' convolution with the forward filter w [kh,kw,in,out]:
 * y [N,H,W,out] -> [N,H,W,in]. Gradients reach w through the flip (tied weights).
 */
export function convTransposeSame(y: tf.Tensor4D, w: tf.Tensor4D): tf.Tensor4D {
  return conv2dSame(y, flipFilter(w));
}

/** x [N,in] @ w [in,out] with gradients written as plain (untransposed-flag) matMuls. */
export const linear = tf.customGrad(((x: tf.Tensor2D, w: tf.Tensor2D, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
      return [tf.matMul(dy, tf.transpose(sw)), tf.matMul(tf.transpose(sx), dy)];
    },
  };
}) as any) as (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/**
 * Tied-weight feedback of a linear layer: y [N,out] @ w^T -> [N,in]. w is treated as a constant
 * (the reference copies the weights), so its gradient is zero; `wT` may pass a precomputed transpose.
 */
export const linearFeedback = tf.customGrad(((y: tf.Tensor2D, w: tf.Tensor2D, save: tf.GradSaveFunc) => {
  save([w]);
  return {
    value: tf.matMul(y, tf.transpose(w)),
    gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
      const [sw] = saved as [tf.Tensor2D];
      return [tf.matMul(dy, sw), tf.zerosLike(sw)];
    },
  };
}) as any) as (y: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/** 1 where x > 0, else 0, with zero gradient (tf.step). */
export function positive(x: tf.Tensor): tf.Tensor {
  return tf.step(x, 0);
}

/** Instance norm without mean subtraction: x / sqrt(mean_{H,W}(x^2) + 1e-8), per sample and channel (NHWC). */
export function insNorm(x: tf.Tensor4D): tf.Tensor4D {
  return tf.div(x, tf.sqrt(tf.add(tf.mean(tf.square(x), [1, 2], true), 1e-8)));
}
