/**
 * The loop of a cnnf worker thread: one tfjs backend instance of its own (wasm or cpu), the models
 * the main thread sends it, and batch tasks run with the same code as in-process evaluation.
 */
import { parentPort } from 'node:worker_threads';
import { useBackend } from '../backend/index.js';
import { UsageError } from '../errors.js';
import { evalBatch } from '../eval/batch.js';
import * as tf from '@tensorflow/tfjs-core';
import { CNNF } from '../models/cnnf.js';
import { microBatchGradients } from '../train/step.js';
import type { FromWorker, ToWorker } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('worker.ts runs only in a worker thread');
const models = new Map<number, CNNF>();
const send = (m: FromWorker): void => port.postMessage(m);

async function handle(m: ToWorker): Promise<void> {
  if (m.type === 'init') {
    await useBackend(m.backend, { quiet: true });
    send({ type: 'ready' });
  } else if (m.type === 'model') {
    models.get(m.id)?.dispose();
    models.set(m.id, CNNF.fromArrays(m.config, new Map(m.arrays)));
  } else if (m.type === 'weights') {
    const model = models.get(m.id);
    if (!model) throw new Error(`worker has no model ${m.id}`);
    for (const [name, data] of m.arrays) {
      const v = model.params.get(name) as tf.Variable;
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
  } else if (m.type === 'drop') {
    models.get(m.id)?.dispose();
    models.delete(m.id);
  } else if (m.type === 'grads') {
    const model = models.get(m.model);
    if (!model) throw new Error(`worker has no model ${m.model}`);
    const t = m.task;
    const n = t.labels.length;
    const x = tf.tensor4d(t.images, [n, 28, 28, 1]);
    const xp = t.perturbed ? tf.tensor4d(t.perturbed, [n, 28, 28, 1]) : null;
    const y = tf.tensor1d(t.labels, 'int32');
    try {
      const r = microBatchGradients(model, x, xp, y, t.scale, t);
      const grads: Array<[string, Float32Array]> = [];
      for (const [name, g] of r.grads) grads.push([name, (await g.data()) as Float32Array]);
      const value = (await r.value.data())[0];
      const hits = (await r.hits.data())[0];
      tf.dispose([r.value, r.hits, ...r.grads.values()]);
      send({ type: 'done', job: m.job, outcome: { value, hits, grads } });
    } finally {
      tf.dispose([x, y, ...(xp ? [xp] : [])]);
    }
  } else {
    const model = models.get(m.model);
    if (!model) throw new Error(`worker has no model ${m.model}`);
    const outcome = await evalBatch(model, m.task, (stage) => send({ type: 'progress', job: m.job, stage }));
    send({ type: 'done', job: m.job, outcome });
  }
}

// messages are handled one at a time, in order (a model arrives before the tasks that use it)
let chain = Promise.resolve();
port.on('message', (m: ToWorker) => {
  chain = chain.then(() => handle(m)).catch((e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    send({ type: 'error', job: 'job' in m ? m.job : undefined, message: err.message, usage: err instanceof UsageError, stack: err.stack });
  });
});
