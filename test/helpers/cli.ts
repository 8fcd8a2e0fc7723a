/** Runs the real `cnnf` launcher in a child process. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { expect } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous on purpose: a blocking spawnSync starves vitest's worker RPC on long runs. */
export function cnnf(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'cnnf'), ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, CNNF_BACKEND: 'wasm', ...opts.env },
      timeout: opts.timeoutMs ?? 900_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * Runs the CLI's `main` in this process (no launcher start-up, ~2 s of CPU saved per run), with the
 * backend the launcher runs would get (wasm). For batches of bad-input cases: keep at least one real
 * `cnnf()` run per command for what only the launcher shows (exit code, no stack trace). Runs are
 * serialised (stdout and stderr are captured by replacing their write methods).
 */
export async function cnnfInProcess(args: string[]): Promise<CliResult> {
  const { main } = await import('../../src/cli/main.js');
  const prev = inProcessQueue;
  let release = (): void => undefined;
  inProcessQueue = new Promise<void>((r) => (release = r));
  await prev;
  let stdout = '';
  let stderr = '';
  const [out, err] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr)];
  const backend = process.env.CNNF_BACKEND;
  const exitCode = process.exitCode;
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  process.env.CNNF_BACKEND = 'wasm';
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'cnnf', ...args]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    if (backend === undefined) delete process.env.CNNF_BACKEND;
    else process.env.CNNF_BACKEND = backend;
    process.exitCode = exitCode;
    release();
  }
}
let inProcessQueue: Promise<void> = Promise.resolve();

/** The stderr of a usage error: exactly one line "cnnf: ...", no stack trace. */
export function oneLineError(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('cnnf: using backend'));
  if (lines.length !== 1) throw new Error(`expected one stderr line, got ${lines.length}:\n${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace in stderr:\n${r.stderr}`);
  return lines[0];
}

/** The committed conversion models/reference-NAME.safetensors (made with `cnnf import`). */
export function referenceModel(name: string): string {
  const committed = join(ROOT, 'models', `reference-${name}.safetensors`);
  if (!existsSync(committed)) throw new Error(`missing ${committed}: the reference models are part of the repository`);
  return committed;
}

/** Runs CLI invocations a few at a time (each pays the launcher's start-up cost). */
export async function inParallel<T>(jobs: Array<() => Promise<T>>, width = 3): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]();
    }
  }));
  return out;
}

/** Asserts exit code 2 and returns the single stderr line of the usage error. */
export function oneLine(r: CliResult): string {
  expect(r.code, r.stderr).toBe(2);
  return oneLineError(r);
}

/** Runs fn and returns the one-line UsageError (exit code 2) it must throw. */
export function expectUsageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).exitCode).toBe(2);
    expect((e as Error).message).not.toContain('\n');
    return e as UsageError;
  }
  throw new Error('expected a UsageError');
}
