/**
 * Data parallelism over worker threads. tfjs-wasm runs single-threaded in Node, so cnnf uses more
 * cores by running units of work in worker threads, each with its own backend instance and its own
 * copy of the model weights. The pool is generic: it holds models (weights copied once per worker,
 * updated after an optimiser step, dropped) and runs named tasks whose handlers the upper layers
 * define (tasks.ts): evaluation batches (src/eval/worker-tasks.ts), training micro-batch gradients
 * (src/train/worker-tasks.ts). It imports neither.
 */
import { availableParallelism, totalmem } from 'node:os';
import { Worker } from 'node:worker_threads';
import { bundleUrl } from '../assets.js';
import { UsageError } from '../errors.js';
import type { CNNF } from '../models/cnnf.js';
import type { FromWorker, ToWorker } from './protocol.js';
import type { TaskKind } from './tasks.js';

/**
 * The worker thread's entry: compiled, the worker module itself (dist/parallel/worker.js); run from
 * the TypeScript sources (tests, `CNNF_FROM_SOURCE=1`), worker-entry.mjs, which registers tsx first
 * (task modules are then .ts URLs, loaded through tsx too); in the portable bundle, the bundle file
 * itself (cnnf.mjs starts the worker loop in a worker thread and exports every task handler).
 */
const ENTRY = bundleUrl() ?? (import.meta.url.endsWith('.ts')
  ? new URL('./worker-entry.mjs', import.meta.url)
  : new URL('./worker.js', import.meta.url));

/**
 * Backends whose kernels run on one thread, so that worker threads add cores. Not webgpu: its kernels
 * run on the device (one process, one device; a worker per thread would only queue on it).
 */
export const PARALLEL_BACKENDS = ['wasm', 'cpu'];

/** Most workers "auto" starts: each holds a wasm heap (up to ~2.5 GB for full-width training batches). */
export const AUTO_MAX_WORKERS = 8;

/**
 * Parses a --workers value: a positive integer or "auto" (one per core on wasm and cpu, at most
 * AUTO_MAX_WORKERS and one per 2 GB of memory; 1 on the native backends, which are multi-threaded already, and on webgpu).
 */
export function resolveWorkers(raw: string | number | undefined, backend: string, note?: (message: string) => void): number {
  const s = String(raw ?? 'auto').trim();
  if (s === 'auto') {
    if (!PARALLEL_BACKENDS.includes(backend)) return 1;
    return Math.max(1, Math.min(availableParallelism(), AUTO_MAX_WORKERS, Math.floor(totalmem() / 2 ** 31)));
  }
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new UsageError(`--workers must be "auto" or an integer 1..256, got ${JSON.stringify(raw)}`);
  if (n > 1 && !PARALLEL_BACKENDS.includes(backend)) throw new UsageError(`--workers ${n} needs the wasm or cpu backend (${backend === 'webgpu' ? 'webgpu computes on its device from one process' : `${backend} is multi-threaded already`}); use --workers 1`);
  const cap = maxWorkers();
  if (n > cap) {
    note?.(`--workers ${n} reduced to ${cap} (at most ${WORKERS_PER_CORE} per core on ${availableParallelism()} cores and one per ${WORKER_MEMORY / 2 ** 20} MiB of the ${Math.round(totalmem() / 2 ** 30)} GiB of memory; each worker holds a model copy and a wasm heap)`);
    return cap;
  }
  return n;
}

/** Explicit --workers beyond this many per core only queue up. */
export const WORKERS_PER_CORE = 2;
/** Memory a worker needs at least (its own backend, model copy and wasm heap: ~70 MB idle, far more with batches). */
export const WORKER_MEMORY = 256 * 2 ** 20;

/** Most workers a run starts: WORKERS_PER_CORE per core, and one per WORKER_MEMORY of memory. */
export function maxWorkers(): number {
  return Math.max(1, Math.min(WORKERS_PER_CORE * availableParallelism(), Math.floor(totalmem() / WORKER_MEMORY)));
}

/** A model's weights as [name, data] pairs, the form the workers receive them in. */
async function weightArrays(model: CNNF): Promise<Array<[string, Float32Array]>> {
  return [...(await model.toArrays()).entries()].map(([k, v]) => [k, v.data]);
}

interface Pending {
  resolve: (o: unknown) => void;
  reject: (e: Error) => void;
  onProgress?: (p: any) => void;
  /** The worker running it (-1 while queued). */
  worker: number;
  message: ToWorker;
}

interface Slot {
  worker: Worker;
  busy: number;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Jobs not yet sent: a worker gets the next one when it is idle, so uneven batches balance. */
  private readonly queue: number[] = [];
  private readonly models = new WeakMap<CNNF, Promise<number>>();
  /** Task modules every worker has been told to load. */
  private readonly loaded = new Set<string>();
  private nextJob = 1;
  private nextModel = 1;
  private failed: Error | null = null;
  private closed = false;

  private constructor(readonly size: number) {}

  /**
   * Starts `size` workers on `backend` ("wasm" or "cpu") and waits until each is ready. `tasks`:
   * task kinds whose modules the workers load now (others load the first time one of their tasks runs).
   */
  static async start(size: number, backend: string, opts: { tasks?: Array<TaskKind<any, any, any>> } = {}): Promise<WorkerPool> {
    if (!PARALLEL_BACKENDS.includes(backend)) throw new UsageError(`worker threads need the wasm or cpu backend, not ${backend}`);
    const pool = new WorkerPool(size);
    try {
      await Promise.all(Array.from({ length: size }, (_, i) => pool.spawn(i, backend)));
    } catch (e) {
      await pool.close();
      throw e;
    }
    for (const k of opts.tasks ?? []) pool.use(k);
    return pool;
  }

  private spawn(index: number, backend: string): Promise<void> {
    return new Promise((resolve, reject) => {
      // stdout/stderr of workers are the process's; the backend notice is suppressed in workers
      const worker = new Worker(ENTRY, { env: { ...process.env, CNNF_QUIET_BACKEND: '1' } });
      this.slots[index] = { worker, busy: 0 };
      let ready = false;
      worker.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          ready = true;
          resolve();
        } else if (m.type === 'progress') this.pending.get(m.job)?.onProgress?.(m.progress);
        else if (m.type === 'done') this.settle(m.job, (p) => p.resolve(m.outcome));
        else {
          // a UsageError stays one (same message and exit code) across the thread boundary
          const err = m.usage ? new UsageError(m.message, m.exitCode) : Object.assign(new Error(`worker ${index}: ${m.message}`), { stack: m.stack });
          if (!ready) reject(err);
          else if (m.job !== undefined) this.settle(m.job, (p) => p.reject(err));
          else this.fail(err);
        }
      });
      worker.on('error', (e) => (ready ? this.fail(e) : reject(e)));
      worker.on('exit', (code) => {
        if (!this.closed) {
          const err = new Error(`worker ${index} exited with code ${code}${code === 1 ? ' (out of memory? try a smaller --batch-size)' : ''}`);
          if (ready) this.fail(err);
          else reject(err);
        }
      });
      this.post(index, { type: 'init', backend });
    });
  }

  private post(index: number, m: ToWorker): void {
    this.slots[index].worker.postMessage(m);
  }

  private settle(job: number, f: (p: Pending) => void): void {
    const p = this.pending.get(job);
    if (!p) return;
    this.pending.delete(job);
    if (p.worker >= 0) this.slots[p.worker].busy--;
    else this.queue.splice(this.queue.indexOf(job), 1);
    f(p);
    this.pump();
  }

  private pump(): void {
    if (this.closed || this.failed) return;
    for (let i = 0; i < this.size && this.queue.length > 0; i++) {
      if (this.slots[i].busy > 0) continue;
      const job = this.queue.shift()!;
      const p = this.pending.get(job)!;
      p.worker = i;
      this.slots[i].busy++;
      this.post(i, p.message);
    }
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const job of [...this.pending.keys()]) this.settle(job, (p) => p.reject(e));
  }

  /** Copies a model's weights into every worker (once per model object). */
  addModel(model: CNNF): Promise<number> {
    let id = this.models.get(model);
    if (!id) {
      const n = this.nextModel++;
      id = weightArrays(model).then((arrays) => {
        for (let i = 0; i < this.size; i++) this.post(i, { type: 'model', id: n, config: model.config, arrays });
        return n;
      });
      this.models.set(model, id);
    }
    return id;
  }

  /** Copies a model's current weights into every worker (after an optimiser step). */
  async syncWeights(model: CNNF): Promise<void> {
    const known = this.models.get(model);
    if (known === undefined) return;
    const id = await known;
    const arrays = await weightArrays(model);
    for (let i = 0; i < this.size; i++) this.post(i, { type: 'weights', id, arrays });
  }

  /** Frees a model's copies in the workers. */
  async dropModel(model: CNNF): Promise<void> {
    const known = this.models.get(model);
    if (known === undefined) return;
    this.models.delete(model);
    const id = await known;
    for (let i = 0; i < this.size; i++) this.post(i, { type: 'drop', id });
  }

  /** Has every worker load the module of a task kind (once per module; messages keep their order). */
  use(kind: TaskKind<any, any, any>): void {
    if (this.loaded.has(kind.module) || this.closed) return;
    this.loaded.add(kind.module);
    for (let i = 0; i < this.size; i++) this.post(i, { type: 'load', module: kind.module });
  }

  /**
   * Runs one task of `kind` on `model` (weights as last synced) on the next idle worker. `onProgress`
   * receives what the handler reports through its context.
   */
  async run<T, O, P>(kind: TaskKind<T, O, P>, model: CNNF, task: T, onProgress?: (p: P) => void): Promise<O> {
    this.use(kind);
    const id = await this.addModel(model);
    return (await this.submit((job) => ({ type: 'task', job, name: kind.name, model: id, task }), onProgress)) as O;
  }

  private submit(message: (job: number) => ToWorker, onProgress?: (p: any) => void): Promise<unknown> {
    if (this.failed) return Promise.reject(this.failed);
    if (this.closed) return Promise.reject(new Error('the worker pool is closed'));
    const job = this.nextJob++;
    const done = new Promise<unknown>((resolve, reject) => {
      this.pending.set(job, { resolve, reject, onProgress, worker: -1, message: message(job) });
    });
    this.queue.push(job);
    this.pump();
    return done;
  }

  /** Stops every worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error('the worker pool was closed'));
    await Promise.all(this.slots.filter(Boolean).map((s) => s.worker.terminate()));
  }
}
