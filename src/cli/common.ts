/** Options computing commands share: --backend (default $CNNF_BACKEND or auto), --workers and --seed. */
import { Option, type Command } from 'commander';
import { BACKEND_CHOICES, backendLabel, useBackend, type BackendInfo } from '../backend/index.js';
import { parseInteger } from './options.js';

export function addBackendOption(cmd: Command): Command {
  return cmd.addOption(
    new Option('--backend <name>', `compute backend: ${BACKEND_CHOICES.join('|')} (auto: tfjs-node-gpu, tfjs-node, webgpu on a hardware adapter, wasm, cpu; see cnnf backends)`)
      .default(process.env.CNNF_BACKEND ?? 'auto')
      .env('CNNF_BACKEND'),
  );
}

export function addWorkersOption(cmd: Command): Command {
  return cmd.addOption(
    new Option('--workers <n>', 'worker threads running batches in parallel: a number or auto (one per core on wasm/cpu, 1 on tfjs-node and webgpu); results do not depend on it')
      .default(process.env.CNNF_WORKERS ?? 'auto')
      .env('CNNF_WORKERS'),
  );
}

export function addSeedOption(cmd: Command, fallback = 0): Command {
  return cmd.option('--seed <n>', 'seed for every random choice', String(fallback));
}

export function seedFrom(raw: string): number {
  return parseInteger('--seed', raw, 0, 2 ** 32 - 1);
}

/**
 * Initialises the backend named by --backend (one stderr line says which one runs). With `quiet`
 * the line is left to the caller (backendNotice), so that inputs checked after the backend starts
 * still fail with exactly one stderr line.
 */
export async function initBackend(opts: { backend?: string }, init: { quiet?: boolean } = {}): Promise<BackendInfo> {
  return useBackend(opts.backend ?? process.env.CNNF_BACKEND ?? 'auto', init);
}

/** The "using backend" line of a quiet initBackend, once the inputs have been checked. */
export function backendNotice(info: BackendInfo): void {
  if (!process.env.CNNF_QUIET_BACKEND) process.stderr.write(`cnnf: using backend ${backendLabel(info)}\n`);
}
