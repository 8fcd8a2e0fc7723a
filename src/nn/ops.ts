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
 * Conv2DBackpropFilter: dW[a,b,i,o] = sum_{n,h,w} x[n,h,w,i] dy[n,h-a+ph,w-b+pw,o] (zero outside).
 * The shifted copies of dy come from one depthwise conv with a one-hot filter (exact: one product
 * with 1, the rest with 0), laid out [NHW, Co*kh*kw]; then one plain matMul x^T [Ci,NHW] @ that.
 * This replaces the im2col slices (JS loops that copy the whole input on wasm) and the concat.
 * x [N,H,W,Ci], dy [N,H,W,Co] -> [kh,kw,Ci,Co].
 */
export function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, ci] = x.shape;
    const co = dy.shape[3];
    const k = kh * kw;
    const shifted = tf.depthwiseConv2d(dy, shiftFilter(kh, kw, co), 1, 'same');
    const xt = tf.transpose(tf.reshape(x, [n * h * w, ci]));
    const g = tf.matMul(xt, tf.reshape(shifted, [n * h * w, co * k]));
    return tf.transpose(tf.reshape(g, [ci, co, kh, kw]), [2, 3, 0, 1]);
  });
}

/** One-hot depthwise filter [kh,kw,C,kh*kw]: output q = a*kw+b of channel c is input c at offset (ph-a, pw-b). */
function shiftFilter(kh: number, kw: number, c: number): tf.Tensor4D {
  const k = kh * kw;
  const f = new Float32Array(k * c * k);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const q = (kh - 1 - i) * kw + (kw - 1 - j);
      for (let ch = 0; ch < c; ch++) f[((i * kw + j) * c + ch) * k + q] = 1;
    }
  }
  return tf.tensor4d(f, [kh, kw, c, k]);
}

/**
 * wasm's Identity and same-dtype Cast kernels copy the whole buffer, and the engine clones (Identity)
 * every tensor it saves for backprop, so under a gradient tape every saved activation was copied once
 * more (double the memory: a batch-64 training step overflowed the 4 GB wasm heap). Tensor data is
 * immutable in tfjs, so these kernels can share the input's buffer by reference count, as the cpu
 * backend's Identity does. Installed on first use of the ops below, after the wasm backend registered.
 */
type KernelArgs = { inputs: { x: tf.TensorInfo }; attrs?: { dtype?: tf.DataType }; backend: { incRef(id: tf.DataId): void } };
function shareBuffer({ inputs: { x }, backend }: KernelArgs): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}
let wasmPatched = false;
function patchWasmCopies(): void {
  if (wasmPatched) return;
  const identity = tf.getKernel('Identity', 'wasm');
  const cast = tf.getKernel('Cast', 'wasm');
  if (!identity || !cast) return; // wasm not loaded yet (or another backend): nothing to do
  wasmPatched = true;
  const copyCast = cast.kernelFunc;
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ kernelName: 'Identity', backendName: 'wasm', kernelFunc: shareBuffer as unknown as tf.KernelFunc });
  tf.unregisterKernel('Cast', 'wasm');
  tf.registerKernel({
    kernelName: 'Cast',
    backendName: 'wasm',
    kernelFunc: ((args: KernelArgs) => (args.attrs?.dtype === args.inputs.x.dtype ? shareBuffer(args) : copyCast(args as any))) as unknown as tf.KernelFunc,
  });
}

export type Save = (tensors: tf.Tensor[]) => void;
export type GradThunks = (dy: tf.Tensor, saved: tf.Tensor[]) => Array<() => tf.Tensor>;
interface EngineInternals {
  runKernelFunc(p: { forwardFunc: (backend: unknown, save: Save) => tf.Tensor; backwardsFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => Record<string, () => tf.Tensor>; inputs: Record<string, tf.Tensor> }): tf.Tensor;
}

/**
 * Like tf.customGrad, but each input's gradient is a thunk that the engine only calls when that input
 * is on the differentiated path (tf.customGrad computes every input's gradient eagerly). So an input
 * gradient (attacks) never computes filter or weight gradients, and a weight gradient (training) never
 * computes the gradient of the data entering the first layer.
 */
export function lazyGradOp(inputs: tf.Tensor[], forward: (save: Save) => tf.Tensor, grads: GradThunks): tf.Tensor {
  patchWasmCopies();
  const named: Record<string, tf.Tensor> = {};
  inputs.forEach((t, i) => (named[i] = t));
  return (tf.engine() as unknown as EngineInternals).runKernelFunc({
    forwardFunc: (_backend, save) => forward(save),
    backwardsFunc: (dy, saved) => Object.fromEntries(grads(dy, saved).map((g, i) => [String(i), g])),
    inputs: named,
  });
}

/**
 * Runs f without recording to the gradient tape (its result is a constant for backprop) and frees its
 * intermediates right away. For values whose gradient is zero anyway, such as selection masks.
 */
export function untaped(f: () => tf.Tensor): tf.Tensor {
  return lazyGradOp([], () => f(), () => []);
}

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

/**
 * a [M,K] @ b^T where b is [N,K], computed as (b @ a^T)^T: wasm's matMul with transposeB and its
 * transpose of a large matrix are both slow, so only the small operand and the result are transposed.
 */
export function matMulBT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.transpose(tf.matMul(b, tf.transpose(a))) as tf.Tensor2D;
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
