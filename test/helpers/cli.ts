/** Runs the real `cnnf` launcher in a child process. */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cnnf(args: string[], opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'cnnf'), ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, CNNF_BACKEND: 'wasm', ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 600_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The stderr of a usage error: exactly one line "cnnf: ...", no stack trace. */
export function oneLineError(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('cnnf: using backend'));
  if (lines.length !== 1) throw new Error(`expected one stderr line, got ${lines.length}:\n${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace in stderr:\n${r.stderr}`);
  return lines[0];
}
