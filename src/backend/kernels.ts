/**
 * Backend-specific kernel work. tfjs-wasm has no Conv2DBackpropFilter kernel (tensorflow/tfjs#8474)
 * and is slow on conv2dTranspose, transposed matMuls and large transposes, so the gradients of
 * convolutions and of the tied-weight products are formulated here with Conv2D, DepthwiseConv2D and
 * plain MatMul only (exact on every backend); and wasm's buffer-copying Identity and Cast kernels are
 * replaced by reference-counted sharing. src/nn/ builds its layers from these.
 *
 * On webgpu (and cpu, tensorflow) every one of these is stock tfjs ops: convFilterGrad takes the im2col
 * form, patchWasmCopies changes nothing; measured against wasm on llvmpipe (README "Backends"), the
 * CNN-F's weight gradients agree within 5.3e-6 and input gradients within 1.4e-6 (no pooling near-tie).
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
 * Conv2DBackpropFilter: dW[a,b,i,o] = sum_{n,h,w} x[n,h+a-pt,w+b-pl,i] dy[n,h,w,o] (zero outside;
 * pt, pl the 'same' padding before). x [N,H,W,Ci], dy [N,H,W,Co] -> [kh,kw,Ci,Co].
 *
 * On wasm, with at least CONV_FORM_MIN_CHANNELS input channels, that sum runs as a convolution on
 * wasm's fast Conv2D (convFilterGradConv): 2-8x faster than the im2col product (measured 2026-11-27,
 * AMD EPYC: 24 -> 11 ms for x and dy [16,28,28,32]) and without its [N*H*W, Co*kh*kw] copy of dy.
 * Its float32 sums run in another order: on the reference fixture the conv weight gradients stay within
 * 5e-6 of float64 for 16+ input channels, but the first conv (1 input channel) reached 1.2e-5, over the
 * 1e-5 conformance bound, so few-channel convs and the other backends keep the im2col form.
 */
export function convFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  const conv = x.shape[3] >= CONV_FORM_MIN_CHANNELS && tf.getBackend() === 'wasm';
  return conv ? convFilterGradConv(x, dy, kh, kw) : convFilterGradIm2col(x, dy, kh, kw);
}

/** Input channels from which wasm computes filter gradients as a Conv2D (see convFilterGrad). */
export const CONV_FORM_MIN_CHANNELS = 8;

/**
 * convFilterGrad as one Conv2D: the input x^T [Ci,H,W,N] (batch Ci, channels N), the filter dy^T
 * [H,W,N,Co], the 'same' padding made explicit, so the output is [Ci,kh,kw,Co].
 */
export function convFilterGradConv(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  return tf.tidy(() => {
    const pt = Math.floor((kh - 1) / 2);
    const pl = Math.floor((kw - 1) / 2);
    const input = tf.transpose(x, [3, 1, 2, 0]);
    const filter = tf.transpose(dy, [1, 2, 0, 3]);
    const g = tf.conv2d(input, filter, 1, [[0, 0], [pt, kh - 1 - pt], [pl, kw - 1 - pl], [0, 0]]);
    return tf.transpose(g, [1, 2, 0, 3]);
  });
}

/**
 * convFilterGrad as im2col: the shifted copies of dy come from one depthwise conv with a one-hot filter
 * (exact: one product with 1, the rest with 0), laid out [NHW, Co*kh*kw]; then one plain matMul
 * x^T [Ci,NHW] @ that. Odd kernel sizes only (the depthwise shifts assume centred padding).
 */
export function convFilterGradIm2col(x: tf.Tensor4D, dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
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
 * a [M,K] @ b^T where b is [N,K], computed as (b @ a^T)^T: wasm's matMul with transposeB and its
 * transpose of a large matrix are both slow, so only the small operand and the result are transposed.
 */
export function matMulBT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return tf.transpose(tf.matMul(b, tf.transpose(a))) as tf.Tensor2D;
}

/**
 * wasm's Identity and same-dtype Cast kernels copy the whole buffer, and the engine clones (Identity)
 * every tensor it saves for backprop, so under a gradient tape every saved activation was copied once
 * more (double the memory: a batch-64 training step overflowed the 4 GB wasm heap). Tensor data is
 * immutable in tfjs, so these kernels can share the input's buffer by reference count, as the cpu
 * backend's Identity does. Installed on first use of the gradient ops (after the wasm backend registered).
 */
type KernelArgs = { inputs: { x: tf.TensorInfo }; attrs?: { dtype?: tf.DataType }; backend: { incRef(id: tf.DataId): void } };
function shareBuffer({ inputs: { x }, backend }: KernelArgs): tf.TensorInfo {
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}
let wasmPatched = false;
export function patchWasmCopies(): void {
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
