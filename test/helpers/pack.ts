/**
 * `npm pack` without touching the working tree: the package's sources are copied into a temporary
 * folder, compiled there (scripts/build.mjs, the same build the prepare script runs), and packed with
 * `--ignore-scripts`. The working tree's dist/ is never deleted or rebuilt, so a `node bin/cnnf ...`
 * running beside the tests keeps working.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous (a blocking spawnSync starves vitest's worker RPC). The environment drops CNNF_FROM_SOURCE: the package runs its compiled code. */
export function run(cmd: string, args: string[], cwd: string, timeoutMs = 300_000): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' };
  delete env.CNNF_FROM_SOURCE;
  delete env.CNNF_BACKEND;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export const ok = (r: Run, what: string): Run => {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
};

/** What the build and the package need from the working tree (package.json's `files` plus the build inputs). */
const COPIED = ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json', 'src', 'bin', 'scripts', 'attacks', 'models'];

/**
 * Copies the package into `tmp`/package, builds dist/ there and packs it into `tmp`.
 * Returns the tarball's path and the file list npm reports.
 */
export async function packCopy(tmp: string): Promise<{ tarball: string; files: string[] }> {
  const copy = join(tmp, 'package');
  mkdirSync(copy);
  for (const p of COPIED) if (existsSync(join(ROOT, p))) cpSync(join(ROOT, p), join(copy, p), { recursive: true });
  // the build resolves typescript (and tsc the type packages) from the copy's node_modules
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
  ok(await run(process.execPath, [join(copy, 'scripts', 'build.mjs')], copy), 'build (scripts/build.mjs) in a copy of the package');
  const packed = ok(await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], copy), 'npm pack --ignore-scripts');
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  return { tarball: join(tmp, info[0].filename), files: info[0].files.map((f) => f.path) };
}
