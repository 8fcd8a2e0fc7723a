/**
 * Backend selection for tfjs: auto picks tfjs-node-gpu, then tfjs-node, then wasm, then cpu.
 * Owns the `--backend` flag semantics, the CNNF_BACKEND default and the one-line "using ..." notice.
 */
import * as tf from '@tensorflow/tfjs-core';
// the union package registers every op gradient on the shared tfjs-core engine
import '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { UsageError } from '../errors.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

const require = createRequire(import.meta.url);

let active: string | null = null;

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

export interface BackendInfo {
  requested: BackendChoice;
  name: string;
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
  if (active && (requested === 'auto' || labelFor(requested) === active)) return { requested, name: active };
  let name: string | null = null;
  const order: BackendChoice[] = requested === 'auto' ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] : [requested];
  for (const b of order) {
    if (b === 'tensorflow-gpu') {
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
  if (!opts.quiet && !process.env.CNNF_QUIET_BACKEND) process.stderr.write(`cnnf: using backend ${name}\n`);
  return { requested, name };
}

function labelFor(b: BackendChoice): string {
  return b;
}

export function activeBackend(): string {
  return active ?? tf.getBackend();
}

export { tf };
export { lazyGradOp, untaped, type GradThunks, type Save } from './engine.js';
export { convFilterGrad, flipFilter, matMulBT, patchWasmCopies } from './kernels.js';
