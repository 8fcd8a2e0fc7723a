/**
 * Backend selection for tfjs: auto picks tfjs-node-gpu, then tfjs-node, then webgpu on a hardware
 * adapter, then wasm, then cpu. Owns the `--backend` flag semantics, the CNNF_BACKEND default, the
 * one-line "using ..." notice and the list `cnnf backends` prints.
 */
import * as tf from '@tensorflow/tfjs-core';
// the union package registers every op gradient on the shared tfjs-core engine
import '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';
import { cleanText } from '../format.js';
import { adapterLabel, prepareWebgpu, probeWebgpu, releaseWebgpu, type AdapterDescription, type WebgpuProbe } from './webgpu.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
/** The order `--backend auto` tries (webgpu only on a hardware adapter). */
export const AUTO_ORDER = ['tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

const require = createRequire(import.meta.url);

let active: string | null = null;
/** The adapter the webgpu backend runs on, once it is active. */
let activeAdapter: AdapterDescription | null = null;

async function tryNative(pkg: string): Promise<boolean> {
  try {
    require.resolve(pkg);
  } catch {
    return false;
  }
  try {
    await import(pkg);
    return true;
  } catch {
    return false;
  }
}

async function activate(name: 'tensorflow' | 'wasm' | 'cpu'): Promise<boolean> {
  try {
    if (name === 'wasm') await import('@tensorflow/tfjs-backend-wasm');
    if (name === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
    const ok = await tf.setBackend(name);
    if (!ok) return false;
    await tf.ready();
    return tf.getBackend() === name;
  } catch {
    return false;
  }
}

/** Loads the webgpu packages, finds an adapter and starts tfjs-backend-webgpu on it. */
async function activateWebgpu(): Promise<WebgpuProbe> {
  const p = await prepareWebgpu();
  if (!p.available) return p;
  try {
    const ok = await tf.setBackend('webgpu');
    if (ok && tf.getBackend() === 'webgpu') {
      await tf.ready();
      explainSyncReads(tf.backend() as unknown as { readSync(id: unknown): unknown });
      activeAdapter = p.adapter;
      return p;
    }
  } catch (e) {
    return { available: false, reason: `tfjs-backend-webgpu did not start (${String((e as Error).message ?? e).split('\n')[0].slice(0, 200)})`, hint: 'see `cnnf backends`' };
  }
  return { available: false, reason: 'tfjs-backend-webgpu did not start', hint: 'see `cnnf backends`' };
}

/**
 * tfjs-backend-webgpu's synchronous read (dataSync, arraySync, bufferSync) of a tensor on the device
 * draws into an OffscreenCanvas, which Node.js lacks: its ReferenceError becomes an error that names
 * the cause (values still on the CPU read as before).
 */
function explainSyncReads(backend: { readSync(id: unknown): unknown }): void {
  const readSync = backend.readSync;
  backend.readSync = function (this: unknown, id: unknown) {
    try {
      return readSync.call(this, id);
    } catch (e) {
      if (e instanceof ReferenceError && /OffscreenCanvas/.test(e.message)) {
        throw new Error('a synchronous read (dataSync/arraySync/bufferSync) of a webgpu tensor: impossible in Node.js (no OffscreenCanvas); read it with await t.data()');
      }
      throw e;
    }
  };
}

export interface BackendInfo {
  requested: BackendChoice;
  name: string;
  /** webgpu: the adapter it runs on. */
  adapter?: AdapterDescription;
}

/**
 * Selects and initialises a tfjs backend. Idempotent for the same choice. Unavailable named
 * backends are a UsageError. `quiet` suppresses the stderr notice.
 */
export async function useBackend(choice: string = process.env.CNNF_BACKEND ?? 'auto', opts: { quiet?: boolean } = {}): Promise<BackendInfo> {
  if (!(BACKEND_CHOICES as readonly string[]).includes(choice)) {
    throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(', ')}, got ${JSON.stringify(choice)}`);
  }
  const requested = choice as BackendChoice;
  // PROD silences tfjs's console advice ("install tfjs-node"): the notice below says what runs
  tf.env().set('PROD', true);
  if (active && (requested === 'auto' || labelFor(requested) === active)) return { requested, name: active, ...(active === 'webgpu' && activeAdapter ? { adapter: activeAdapter } : {}) };
  let name: string | null = null;
  const order: BackendChoice[] = requested === 'auto' ? [...AUTO_ORDER] : [requested];
  for (const b of order) {
    if (b === 'webgpu') {
      if (requested === 'auto') {
        // a software adapter (llvmpipe) is slower than wasm: auto takes webgpu on hardware only; the
        // probe runs in a child process so that Dawn's native stderr lines stay out of this one
        const probe = probeWebgpu();
        if (!probe.available || probe.adapter.software) continue;
      }
      const p = await activateWebgpu();
      if (p.available) { name = 'webgpu'; break; }
      if (requested === 'webgpu') throw new UsageError(`backend webgpu is not available: ${p.reason} (${p.hint})`);
    } else if (b === 'tensorflow-gpu') {
      if ((await tryNative('@tensorflow/tfjs-node-gpu')) && (await activate('tensorflow'))) { name = 'tensorflow-gpu'; break; }
    } else if (b === 'tensorflow') {
      if ((await tryNative('@tensorflow/tfjs-node')) && (await activate('tensorflow'))) { name = 'tensorflow'; break; }
    } else if (await activate(b as 'wasm' | 'cpu')) { name = b; break; }
  }
  if (!name) {
    const hint = requested === 'tensorflow-gpu' ? ' (npm install @tensorflow/tfjs-node-gpu; needs CUDA)'
      : requested === 'tensorflow' ? ' (npm install @tensorflow/tfjs-node)' : '';
    throw new UsageError(`backend ${requested} is not available on this machine${hint}`);
  }
  active = name;
  if (name !== 'webgpu') activeAdapter = null;
  const info: BackendInfo = { requested, name, ...(name === 'webgpu' && activeAdapter ? { adapter: activeAdapter } : {}) };
  if (!opts.quiet && !process.env.CNNF_QUIET_BACKEND) process.stderr.write(`cnnf: using backend ${backendLabel(info)}\n`);
  return info;
}

/** "webgpu (mesa software llvmpipe ... (software))", or the bare name; safe for a terminal. */
export function backendLabel(info: BackendInfo): string {
  return info.adapter ? `${info.name} (${cleanText(adapterLabel(info.adapter))})` : info.name;
}

/**
 * Frees what the active backend holds outside the JavaScript heap that would keep the process
 * alive: on webgpu, the device and Dawn's GPU object. Later computations need useBackend again.
 */
export function releaseBackend(): void {
  if (active !== 'webgpu') return;
  const backend = tf.findBackend('webgpu') as unknown as { device?: { destroy(): void } } | null;
  const device = backend?.device;
  // removeBackend also drops the factory: registered again, so that a later useBackend('webgpu') starts afresh
  const factory = tf.findBackendFactory('webgpu');
  tf.removeBackend('webgpu');
  if (factory) tf.registerBackend('webgpu', factory, 3);
  device?.destroy();
  releaseWebgpu();
  active = null;
  activeAdapter = null;
}

export interface BackendStatus {
  name: Exclude<BackendChoice, 'auto'>;
  available: boolean;
  /** Why not (and how to get it), or what it runs on. */
  detail: string;
  adapter?: AdapterDescription;
}

/**
 * Every backend, whether it is available on this machine, and why not or on what; `auto` is the one
 * `--backend auto` picks. Starts each candidate (the process's backend is left to the caller to set).
 */
export async function listBackends(): Promise<{ backends: BackendStatus[]; auto: string }> {
  const out: BackendStatus[] = [];
  const native = async (name: 'tensorflow-gpu' | 'tensorflow', pkg: string, hint: string): Promise<void> => {
    let installed = true;
    try {
      require.resolve(pkg);
    } catch {
      installed = false;
    }
    if (!installed) return void out.push({ name, available: false, detail: `${pkg} is not installed (${hint})` });
    const ok = (await tryNative(pkg)) && (await activate('tensorflow'));
    out.push({ name, available: ok, detail: ok ? pkg : `${pkg} is installed but does not load` });
  };
  await native('tensorflow-gpu', '@tensorflow/tfjs-node-gpu', 'npm install @tensorflow/tfjs-node-gpu@4.22.0; needs CUDA');
  await native('tensorflow', '@tensorflow/tfjs-node', 'npm install @tensorflow/tfjs-node@4.22.0');
  const probe = probeWebgpu();
  out.push(probe.available
    ? { name: 'webgpu', available: true, detail: `${cleanText(adapterLabel(probe.adapter))}${probe.adapter.software ? '; auto skips a software adapter (slower than wasm)' : ''}`, adapter: probe.adapter }
    : { name: 'webgpu', available: false, detail: `${probe.reason} (${probe.hint})` });
  for (const name of ['wasm', 'cpu'] as const) {
    const ok = await activate(name);
    out.push({ name, available: ok, detail: ok ? (name === 'wasm' ? 'one thread per process (cnnf adds worker threads)' : 'pure JavaScript (slow)') : 'did not start' });
  }
  const auto = AUTO_ORDER.find((b) => {
    const s = out.find((o) => o.name === b)!;
    return s.available && !(b === 'webgpu' && s.adapter?.software);
  }) ?? 'none';
  return { backends: out, auto };
}

function labelFor(b: BackendChoice): string {
  return b;
}

export function activeBackend(): string {
  return active ?? tf.getBackend();
}

/**
 * Whether the active backend can read a tensor synchronously (dataSync) in this process: every one but
 * webgpu, whose Node.js reads are asynchronous only. The few host decisions that must happen inside one
 * synchronous tfjs pass (APGD's float64 loss head) take another route there.
 */
export function syncReadable(): boolean {
  return tf.getBackend() !== 'webgpu';
}

export { tf };
export { WEBGPU_INSTALL, WEBGPU_ADAPTER_HINT, WEBGPU_PACKAGES, type AdapterDescription } from './webgpu.js';
export { lazyGradOp, untaped, type GradThunks, type Save } from './engine.js';
export { convFilterGrad, flipFilter, matMulBT, patchWasmCopies } from './kernels.js';
