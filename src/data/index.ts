// src/data owns the datasets: loading Fashion-MNIST / MNIST / EMNIST letters / IDX files / CIFAR-10 batches / image
// folders into [-1,1] float NHWC splits of any shape [h, w, c],
// stratified and strided subsets, mini-batching, and the project's shared seeded RNG (rng.ts).
export * from './types.js';
export * from './rng.js';
export * from './idx.js';
export * from './subset.js';
export * from './batches.js';
export { loadDataset, loadDatasetAsync, imageAt, transposeImagesInPlace, type LoadDatasetOptions } from './load.js';
export * from './cifar10.js';
export * from './folder.js';
export { fashionMnistEmptyRecords, parseFashionClassJson, FASHION_TRAIN_PER_CLASS, FASHION_TEST_PER_CLASS } from './fashion.js';
