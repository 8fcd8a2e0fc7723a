/** Dataset shapes shared by loaders, training and evaluation. */

export const IMAGE_HEIGHT = 28;
export const IMAGE_WIDTH = 28;
/** Pixels per image (single channel, 28x28). */
export const IMAGE_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH;

export type DatasetName = 'fashion-mnist' | 'mnist' | 'emnist-letters' | 'idx';
export const DATASET_NAMES: readonly DatasetName[] = ['fashion-mnist', 'mnist', 'emnist-letters', 'idx'];

/**
 * One split. `images` holds `count` single-channel images, row-major (H, W), pixel values
 * scaled x/255*2-1 into [-1, 1]. Treat loaded splits as read-only: full splits are cached and shared.
 */
export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  height: 28;
  width: 28;
}

export interface Dataset {
  name: string;
  classNames: string[];
  numClasses: number;
  train: Split;
  test: Split;
}

export const FASHION_MNIST_CLASS_NAMES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
export const MNIST_CLASS_NAMES: readonly string[] = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
export const EMNIST_LETTERS_CLASS_NAMES: readonly string[] = Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i));

/** Lookup table byte -> x/255*2-1 (as float32). */
export const PIXEL_LUT: Float32Array = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = (v / 255) * 2 - 1;
  return t;
})();

/** Writes bytes (0..255) scaled to [-1, 1] into `out` starting at `offset`; returns `out`. */
export function bytesToPixels(bytes: Uint8Array, out: Float32Array = new Float32Array(bytes.length), offset = 0): Float32Array {
  const lut = PIXEL_LUT; // local binding: module imports can compile to getters in hot loops
  const n = bytes.length;
  for (let i = 0; i < n; i++) out[offset + i] = lut[bytes[i]];
  return out;
}

/** Builds a split from raw bytes (count*784 values in 0..255) and labels. */
export function splitFromBytes(pixels: Uint8Array, labels: Int32Array): Split {
  const count = labels.length;
  if (pixels.length !== count * IMAGE_PIXELS) {
    throw new Error(`splitFromBytes: ${pixels.length} pixels for ${count} labels`);
  }
  return { images: bytesToPixels(pixels), labels, count, height: IMAGE_HEIGHT, width: IMAGE_WIDTH };
}
