import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm, arr, maxAbsDiff } from './helpers/tf.js';
import {
  AvgPool2d, Bias, Conv2d, Dropout, Flatten, InsNorm, Linear, MaxPool2d, ResReLU, RunState,
  type LayerContext,
} from '../src/nn/index.js';
import { convFilterGrad } from '../src/backend/index.js';
import { CONV_FORM_MIN_CHANNELS, convFilterGradConv, convFilterGradIm2col } from '../src/backend/kernels.js';

function ctx(params: Record<string, tf.Tensor> = {}, resParam = 0.1, training = false): LayerContext {
  return { state: new RunState(), params: new Map(Object.entries(params)), resParam, training };
}

beforeAll(wasm);

describe('Conv2d', () => {
  it('feedback is the transposed convolution with the same weights', () => {
    const w = tf.randomNormal([3, 3, 2, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = tf.randomNormal([2, 5, 5, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
    const c = ctx({ w });
    const ours = new Conv2d('c', 'w').feedback(c, y);
    const ref = tf.conv2dTranspose(y, w, [2, 5, 5, 2], 1, 'same');
    expect(ours.shape).toEqual([2, 5, 5, 2]);
    expect(maxAbsDiff(arr(ours), arr(ref))).toBeLessThan(1e-4);
  });

  it('forward matches a direct 3x3 correlation with zero padding', () => {
    const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 3, 1]);
    const w = tf.tensor4d([0, 0, 0, 0, 1, 2, 0, 0, 0], [3, 3, 1, 1]); // out = x + 2 * right neighbour
    const out = new Conv2d('c', 'w').forward(ctx({ w }), x);
    expect(arr(out)).toEqual([5, 8, 3, 14, 17, 6, 23, 26, 9]);
  });

  it('filter gradient (a Conv2D, no Conv2DBackpropFilter) matches the cpu backend kernel and the im2col form, odd and even kernels', async () => {
    for (const [kh, kw, seed] of [[3, 3, 3], [5, 5, 5], [2, 2, 7], [1, 3, 9], [4, 3, 11]]) {
      const x = tf.randomNormal([3, 6, 7, 4], 0, 1, 'float32', seed) as tf.Tensor4D;
      const dy = tf.randomNormal([3, 6, 7, 5], 0, 1, 'float32', seed + 1) as tf.Tensor4D;
      const g = convFilterGradConv(x, dy, kh, kw);
      expect(g.shape, `${kh}x${kw}`).toEqual([kh, kw, 4, 5]);
      const ours = arr(g);
      const xs = x.dataSync().slice();
      const dys = dy.dataSync().slice();
      await tf.setBackend('cpu');
      const xc = tf.tensor4d(xs, [3, 6, 7, 4]);
      const dyc = tf.tensor4d(dys, [3, 6, 7, 5]);
      const ref = arr(tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xc, w as tf.Tensor4D, 1, 'same'), dyc)))(tf.zeros([kh, kw, 4, 5])));
      await tf.setBackend('wasm');
      expect(Math.max(...ref.map(Math.abs)), 'a real gradient').toBeGreaterThan(1);
      expect(maxAbsDiff(ours, ref), `${kh}x${kw} vs cpu Conv2DBackpropFilter`).toBeLessThan(1e-4);
      // the im2col form (odd kernels: its depthwise shifts assume centred padding), which convFilterGrad
      // uses below CONV_FORM_MIN_CHANNELS input channels
      if (kh % 2 === 1 && kw % 2 === 1) {
        expect(maxAbsDiff(ours, arr(convFilterGradIm2col(x, dy, kh, kw))), `${kh}x${kw} vs im2col`).toBeLessThan(1e-4);
        expect(maxAbsDiff(arr(convFilterGrad(x, dy, kh, kw)), arr(convFilterGradIm2col(x, dy, kh, kw))), `${kh}x${kw} dispatch`).toBe(0);
      }
    }
    // with CONV_FORM_MIN_CHANNELS input channels, wasm dispatches to the Conv2D form
    const x8 = tf.randomNormal([2, 5, 5, CONV_FORM_MIN_CHANNELS], 0, 1, 'float32', 21) as tf.Tensor4D;
    const dy8 = tf.randomNormal([2, 5, 5, 3], 0, 1, 'float32', 22) as tf.Tensor4D;
    expect(maxAbsDiff(arr(convFilterGrad(x8, dy8, 3, 3)), arr(convFilterGradConv(x8, dy8, 3, 3)))).toBe(0);
  });

  it('gradients of both uses (forward and feedback) reach W on wasm', () => {
    const w = tf.variable(tf.randomNormal([3, 3, 1, 2], 0, 1, 'float32', 5));
    const x = tf.randomNormal([1, 4, 4, 1], 0, 1, 'float32', 6);
    const layer = new Conv2d('c', 'w');
    const f = () => tf.sum(tf.square(layer.feedback(ctx({ w }), layer.forward(ctx({ w }), x)))) as tf.Scalar;
    const { grads } = tf.variableGrads(f);
    const g = arr(grads[w.name]);
    // finite differences on one coordinate
    const h = 1e-2;
    const base = w.dataSync().slice();
    const at = (delta: number) => {
      const b = base.slice();
      b[7] += delta;
      w.assign(tf.tensor(b, w.shape));
      return f().dataSync()[0];
    };
    const fd = (at(h) - at(-h)) / (2 * h);
    w.assign(tf.tensor(base, w.shape));
    expect(Math.abs(fd - g[7]) / Math.max(1, Math.abs(fd))).toBeLessThan(2e-2);
    expect(Math.abs(g[7])).toBeGreaterThan(0);
  });
});

describe('Linear', () => {
  it('forward is x W and feedback is y W^T with no gradient to W', () => {
    const w = tf.variable(tf.tensor2d([[1, 2, 3], [4, 5, 6]])); // [in=2, out=3]
    const l = new Linear('fc', 'w');
    expect(arr(l.forward(ctx({ w }), tf.tensor2d([[1, 1]])))).toEqual([5, 7, 9]);
    expect(arr(l.feedback(ctx({ w }), tf.tensor2d([[1, 0, 1]])))).toEqual([4, 10]);
    const { grads } = tf.variableGrads(() => tf.sum(l.feedback(ctx({ w }), tf.tensor2d([[1, 2, 3]]))) as tf.Scalar, [w]);
    expect(arr(grads[w.name])).toEqual([0, 0, 0, 0, 0, 0]);
    const y = tf.tensor2d([[1, 2, 3]]);
    const gy = tf.grad((yy: tf.Tensor) => tf.sum(l.feedback(ctx({ w }), yy)))(y);
    expect(arr(gy)).toEqual([5, 7, 9]);
  });
});

describe('InsNorm and Bias', () => {
  it('InsNorm divides by the root mean square over H,W per sample and channel, also in feedback', () => {
    const x = tf.tensor4d([3, -1, 4, 1, 2, 0, 2, 0], [1, 2, 2, 2]); // channel 0: 3,4,2,2 ; channel 1: -1,1,0,0
    const rms0 = Math.sqrt((9 + 16 + 4 + 4) / 4 + 1e-8);
    const rms1 = Math.sqrt((1 + 1) / 4 + 1e-8);
    const expected = [3 / rms0, -1 / rms1, 4 / rms0, 1 / rms1, 2 / rms0, 0, 2 / rms0, 0];
    const n = new InsNorm('ins');
    expect(maxAbsDiff(arr(n.forward(ctx(), x)), expected)).toBeLessThan(1e-6);
    expect(maxAbsDiff(arr(n.feedback(ctx(), x)), expected)).toBeLessThan(1e-6);
  });

  it('Bias adds forward and is the identity in feedback', () => {
    const b = new Bias('b', 'b');
    const c = ctx({ b: tf.tensor1d([1, -1]) });
    expect(arr(b.forward(c, tf.tensor2d([[1, 1]])))).toEqual([2, 0]);
    expect(arr(b.feedback(c, tf.tensor2d([[1, 1]])))).toEqual([1, 1]);
  });
});

describe('ResReLU', () => {
  it('plain ReLU without hidden; feedback masks with the forward mask and stores hidden', () => {
    const r = new ResReLU('r');
    const c = ctx({}, 0.5);
    expect(arr(r.forward(c, tf.tensor1d([-1, 2, 0, 3]))).map((v) => v + 0)).toEqual([0, 2, 0, 3]);
    expect(arr(r.feedback(c, tf.tensor1d([5, 5, 5, -5]))).map((v) => v + 0)).toEqual([0, 5, 0, -5]);
    // with hidden h = [5,5,5,-5], r = 0.5: x' = x + 0.5 (h - x); mask = x' h > 0
    // x' = [2, 3.5, -7.5, -1]; x'h = [10, 17.5, -37.5, 5]
    expect(arr(r.forward(c, tf.tensor1d([-1, 2, -20, 3]))).map((v) => v + 0)).toEqual([2, 3.5, 0, -1]);
    r.reset(c);
    expect(arr(r.forward(c, tf.tensor1d([-1, 2]))).map((v) => v + 0)).toEqual([0, 2]);
  });
});

describe('MaxPool2d', () => {
  // one 4x4 single-channel image = four 2x2 windows
  const img = tf.tensor4d([
    1, 3, 0, 0,
    3, 2, 0, 0,
    -1, -4, 5, 5,
    -4, 2, 5, -6,
  ], [1, 4, 4, 1]);

  it('max pools and unpools to the FIRST maximal position of each window (ties like PyTorch)', () => {
    const p = new MaxPool2d('p');
    const c = ctx();
    expect(arr(p.forward(c, img))).toEqual([3, 0, 2, 5]);
    const up = arr(p.feedback(c, tf.tensor4d([10, 20, 30, 40], [1, 2, 2, 1]))).map((v) => v + 0);
    expect(up).toEqual([
      0, 10, 20, 0,
      0, 0, 0, 0,
      0, 0, 40, 0,
      0, 30, 0, 0,
    ]);
  });

  it('with a hidden from feedback selects max where g > 0 and min where g < 0, and unpools to each', () => {
    const p = new MaxPool2d('p');
    const c = ctx();
    p.forward(c, img);
    p.feedback(c, tf.tensor4d([1, -1, -1, 0], [1, 2, 2, 1]));
    // windows: [1,3,3,2] max 3 | [0,0,0,0] min 0 | [-1,-4,-4,2] min -4 (first) | g = 0 -> 0
    expect(arr(p.forward(c, img)).map((v) => v + 0)).toEqual([3, 0, -4, 0]);
    const up = arr(p.feedback(c, tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]))).map((v) => v + 0);
    expect(up).toEqual([
      0, 1, 2, 0,
      0, 0, 0, 0,
      0, 3, 0, 0,
      0, 0, 0, 0,
    ]);
  });

  it('a pass with no gradient tape (native pooling, mask made only when feedback needs it) gives the taped pass\'s values and feedback, ties and g = 0 included', () => {
    // values on a coarse grid: many tied windows; a hidden with positive, negative and zero entries
    const x = tf.tidy(() => tf.round(tf.mul(tf.randomNormal([3, 8, 8, 4], 0, 1, 'float32', 11), 2)));
    const g = tf.tidy(() => tf.round(tf.randomNormal([3, 4, 4, 4], 0, 1, 'float32', 12)));
    const y = tf.randomNormal([3, 4, 4, 4], 0, 1, 'float32', 13);
    const run = (taped: boolean) => {
      const p = new MaxPool2d('p');
      const c = ctx();
      const out: number[][] = [];
      const body = (xx: tf.Tensor) => {
        out.push(arr(p.forward(c, xx)));
        out.push(arr(p.feedback(c, g)));
        const second = p.forward(c, xx);
        out.push(arr(second));
        out.push(arr(p.feedback(c, y)));
        return tf.sum(second);
      };
      if (taped) tf.grad(body)(x);
      else body(x);
      return out.map((a) => a.map((v) => v + 0));
    };
    const [plain, taped] = [run(false), run(true)];
    expect(plain).toEqual(taped);
    expect(plain[2].filter((v) => v === 0).length).toBeGreaterThan(0); // some g = 0 windows
  });

  it('passes the gradient only to the selected position', () => {
    const p = new MaxPool2d('p');
    const g = tf.grad((x: tf.Tensor) => tf.sum(p.forward(ctx(), x)))(img);
    expect(arr(g).map((v) => v + 0)).toEqual([0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]);
  });
});

describe('AvgPool2d, Dropout, Flatten', () => {
  it('AvgPool2d averages forward and upsamples nearest-neighbour in feedback', () => {
    const a = new AvgPool2d('a', 2);
    const x = tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]);
    expect(arr(a.forward(ctx(), x))).toEqual([2.5]);
    expect(arr(a.feedback(ctx(), tf.tensor4d([7], [1, 1, 1, 1])))).toEqual([7, 7, 7, 7]);
    expect(arr(a.feedback(ctx(), tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1])))).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
  });

  it('Dropout uses the same mask in feedback and is the identity in evaluation', () => {
    const d = new Dropout('d', 0.5);
    const u = tf.tensor1d([0.1, 0.9, 0.6, 0.2]);
    const c: LayerContext = { ...ctx({}, 0, true), uniform: () => u };
    expect(arr(d.forward(c, tf.tensor1d([1, 1, 1, 1])))).toEqual([0, 2, 2, 0]);
    expect(arr(d.feedback(c, tf.tensor1d([3, 3, 3, 3])))).toEqual([0, 6, 6, 0]);
    expect(arr(d.forward(ctx(), tf.tensor1d([1, 1])))).toEqual([1, 1]);
  });

  it('Flatten feedback restores the saved shape', () => {
    const f = new Flatten('f');
    const c = ctx();
    const x = tf.randomNormal([2, 3, 3, 4]);
    const flat = f.forward(c, x);
    expect(flat.shape).toEqual([2, 36]);
    const back = f.feedback(c, flat);
    expect(back.shape).toEqual([2, 3, 3, 4]);
    expect(arr(back)).toEqual(arr(x));
  });
});
