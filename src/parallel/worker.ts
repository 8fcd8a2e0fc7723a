/**
 * The loop of a cnnf worker thread: one tfjs backend instance of its own (wasm or cpu), the models
 * the main thread sends it, and named tasks whose handlers come from the task modules the main thread
 * asks it to load (see tasks.ts). It imports no upper layer itself.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from '../backend/index.js';
import { UsageError } from '../errors.js';
import { CNNF } from '../models/cnnf.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { TaskHandler } from './tasks.js';

const port = parentPort;
if (!port) throw new Error('worker.ts runs only in a worker thread');
const models = new Map<number, CNNF>();
const handlers = new Map<string, TaskHandler>();
const send = (m: FromWorker): void => port.postMessage(m);

function modelOf(id: number): CNNF {
  const model = models.get(id);
  if (!model) throw new Error(`worker has no model ${id}`);
  return model;
}

async function handle(m: ToWorker): Promise<void> {
  if (m.type === 'init') {
    await useBackend(m.backend, { quiet: true });
    send({ type: 'ready' });
  } else if (m.type === 'load') {
    const mod = (await import(m.module)) as { taskHandlers?: Record<string, TaskHandler> };
    if (!mod.taskHandlers) throw new Error(`${m.module} exports no taskHandlers`);
    for (const [name, h] of Object.entries(mod.taskHandlers)) handlers.set(name, h);
  } else if (m.type === 'model') {
    models.get(m.id)?.dispose();
    models.set(m.id, CNNF.fromArrays(m.config, new Map(m.arrays)));
  } else if (m.type === 'weights') {
    const model = modelOf(m.id);
    for (const [name, data] of m.arrays) {
      const v = model.params.get(name) as tf.Variable;
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
  } else if (m.type === 'drop') {
    models.get(m.id)?.dispose();
    models.delete(m.id);
  } else {
    const h = handlers.get(m.name);
    if (!h) throw new Error(`worker has no handler for task ${JSON.stringify(m.name)}`);
    const job = m.job;
    const outcome: unknown = await h(m.task, { model: modelOf(m.model), progress: (progress) => send({ type: 'progress', job, progress }) });
    send({ type: 'done', job, outcome });
  }
}

// messages are handled one at a time, in order (a model or task module arrives before the tasks that use it)
let chain = Promise.resolve();
port.on('message', (m: ToWorker) => {
  chain = chain.then(() => handle(m)).catch((e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    const usage = err instanceof UsageError;
    send({ type: 'error', job: 'job' in m ? m.job : undefined, message: err.message, usage, exitCode: usage ? err.exitCode : undefined, stack: err.stack });
  });
});
