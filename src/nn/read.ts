/**
 * Reading tensors back to the host without blocking. tfjs-backend-webgpu in Node.js has no synchronous
 * read (dataSync/arraySync/bufferSync throw), so everything in src/ reads with `await t.data()`; on wasm
 * and cpu the promise resolves at once, with the same values. eslint forbids the synchronous reads in src/.
 */
import * as tf from '@tensorflow/tfjs-core';

/** The values of `t`, then `t` disposed (also when the read fails). */
export async function readAndDispose<D extends tf.DataType = tf.NumericDataType>(t: tf.Tensor): Promise<tf.DataTypeMap[D]> {
  try {
    return await t.data<D>();
  } finally {
    t.dispose();
  }
}

/** The values of several tensors, read together (one round trip each, all in flight at once), then disposed. */
export async function readAllAndDispose(ts: readonly tf.Tensor[]): Promise<Array<tf.DataTypeMap[tf.NumericDataType]>> {
  try {
    return await Promise.all(ts.map((t) => t.data()));
  } finally {
    tf.dispose(ts as tf.Tensor[]);
  }
}
