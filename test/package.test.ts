/**
 * cnnf as a real npm package: a copy of the package built and packed in a temporary folder
 * (test/helpers/pack.ts: the working tree's dist/ is left alone), the tarball installed into a
 * fresh temporary project, then what a user of the package does there: `npx cnnf --version`, a
 * worker-thread evaluation with the compiled CLI, and a TypeScript file importing
 * `{ PGD, loadCheckpoint, useBackend } from 'cnnf'` checked with `tsc --noEmit` and run under Node.
 *
 * The install reads npm's local cache first (`--offline`) and falls back to the registry
 * (`--prefer-offline`) when the cache lacks a package; it takes ~1 min either way (~590 MB of
 * dependencies are unpacked). CNNF_SKIP_PACKAGE_TEST=1 skips it.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, requestedCommand } from '../src/cli/commands/index.js';
import { VERSION } from '../src/version.js';
import { ROOT } from './helpers/cli.js';
import { ok, packCopy, run } from './helpers/pack.js';

const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

describe('lazy command loading (what keeps `cnnf --help` fast)', () => {
  it('each command module registers the name and description the top-level help lists', async () => {
    for (const c of COMMANDS) {
      const program = new Command();
      (await c.load()).register(program);
      expect(program.commands.map((x) => x.name()), c.name).toEqual([c.name]);
      expect(program.commands[0].description(), c.name).toBe(c.description);
    }
  });

  it('finds the command argv runs, also behind options and `help`', () => {
    expect(requestedCommand(['node', 'cnnf', 'train', '--epochs', '1'])?.name).toBe('train');
    expect(requestedCommand(['node', 'cnnf', 'help', 'gate'])?.name).toBe('gate');
    expect(requestedCommand(['node', 'cnnf', '--help'])).toBeUndefined();
    expect(requestedCommand(['node', 'cnnf', 'nosuch'])).toBeUndefined();
  });
});

describe.skipIf(process.env.CNNF_SKIP_PACKAGE_TEST === '1')('npm package', () => {
  let tmp = '';
  let proj = '';
  let files: string[] = [];

  /** The working tree's dist/ before packing: its launcher's mtime, or null when there is none. */
  const distStamp = (): number | null => {
    const main = join(ROOT, 'dist', 'cli', 'main.js');
    return existsSync(main) ? statSync(main).mtimeMs : null;
  };
  let distBefore: number | null = null;

  beforeAll(async () => {
    distBefore = distStamp();
    tmp = mkdtempSync(join(tmpdir(), 'cnnf-pack-'));
    // packed from a built copy of the package in tmp: the working tree's dist/ is never touched
    const packed = await packCopy(tmp);
    files = packed.files;
    const tarball = packed.tarball;
    proj = join(tmp, 'project');
    mkdirSync(proj);
    writeFileSync(join(proj, 'package.json'), `${JSON.stringify({ name: 'uses-cnnf', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`);
    const flags = ['install', '--no-audit', '--no-fund', '--no-save', tarball];
    let inst = await run('npm', [...flags, '--offline'], proj);
    if (inst.code !== 0) inst = await run('npm', [...flags, '--prefer-offline'], proj);
    ok(inst, 'npm install <tarball>');
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs compiled JavaScript, declarations, the launcher, suites and models, and no sources or tests', () => {
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/parallel/worker.js', 'bin/cnnf', 'attacks/main.json',
      'models/reference-cnn-adv.safetensors', 'models/reference-cnnf-adv.safetensors', 'package.json']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/') || f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    // the installed copy has no sources, so nothing may need tsx at run time
    expect(readdirSync(join(proj, 'node_modules', 'cnnf'))).not.toContain('src');
    // packing neither deleted nor rebuilt the working tree's dist/
    expect(distStamp()).toBe(distBefore);
  });

  it('npx cnnf --version prints the version from the installed package', async () => {
    const r = ok(await run('npx', ['--no-install', 'cnnf', '--version'], proj), 'npx cnnf --version');
    expect(r.stdout.trim()).toBe(VERSION);
  });

  it('the compiled CLI evaluates with two worker threads (dist/parallel/worker.js)', async () => {
    const model = join(proj, 'node_modules', 'cnnf', 'models', 'reference-cnn-adv.safetensors');
    const r = ok(await run('npx', ['--no-install', 'cnnf', 'attack', '--model', model, '--method', 'fgsm', '--eps', '0.1',
      '--test-subset', 'first:40', '--batch-size', '10', '--workers', '2', '--backend', 'wasm', '--json'], proj), 'cnnf attack');
    const res = JSON.parse(r.stdout) as { provenance: { examples: number }; models: Array<{ clean: { accuracy: number }; attacks: Array<{ points: Array<{ eps: number; accuracy: number }> }> }> };
    expect(res.provenance.examples).toBe(40);
    const m = res.models[0];
    // an adversarially trained CNN: most of the 40 first test images right, FGSM at 0.1 costs some of them
    expect(m.clean.accuracy).toBeGreaterThan(0.6);
    expect(m.attacks[0].points[0].eps).toBe(0.1);
    expect(m.attacks[0].points[0].accuracy).toBeLessThanOrEqual(m.clean.accuracy);
  });

  it("a TypeScript user imports { PGD, loadCheckpoint, useBackend } from 'cnnf': tsc --noEmit passes, Node runs it", async () => {
    writeFileSync(join(proj, 'tsconfig.json'), `${JSON.stringify({
      compilerOptions: {
        // skipLibCheck as most projects set it (tfjs's own declarations do not pass without it); uses of cnnf's declarations are checked
        target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true,
        types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')],
      },
      include: ['*.ts'],
    }, null, 2)}\n`);
    writeFileSync(join(proj, 'use.ts'), [
      "import * as tf from '@tensorflow/tfjs-core';",
      "import { PGD, loadCheckpoint, useBackend, type Victim } from 'cnnf';",
      '',
      "const info = await useBackend('cpu', { quiet: true });",
      'const ck = loadCheckpoint(process.argv[2]);',
      "const victim: Victim = { model: ck.model, mode: 'first', cycles: 0, readout: 'last' };",
      'const x = tf.zeros([2, 28, 28, 1]) as tf.Tensor4D;',
      "const y = tf.tensor1d([0, 1], 'int32');",
      'const adv = new PGD({ steps: 2 }).perturb(victim, x, y, 0.1, 7);',
      'const maxDelta = tf.max(tf.abs(tf.sub(adv, x))).dataSync()[0];',
      'console.log(JSON.stringify({ backend: info.name, classes: ck.info.config.numClasses, shape: adv.shape, maxDelta }));',
      '',
    ].join('\n'));
    // the file's own import of tfjs-core resolves through the installed dependency tree
    writeFileSync(join(proj, 'bad.ts'), "import { PGD } from 'cnnf';\nnew PGD({ steps: 'seven' });\n");
    // one tsc run over both files: use.ts compiles clean, and the declarations are real (a wrong option type in bad.ts is an error)
    const tsc = await run(process.execPath, [TSC, '--noEmit', '-p', '.'], proj);
    const errors = tsc.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors.filter((l) => !l.startsWith('bad.ts')), tsc.stdout).toEqual([]);
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(/^bad\.ts\(2,\d+\): error TS2322/);
    const model = join(proj, 'node_modules', 'cnnf', 'models', 'reference-cnn-adv.safetensors');
    const r = ok(await run(process.execPath, [TSX, 'use.ts', model], proj), 'node (tsx) use.ts');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { backend: string; classes: number; shape: number[]; maxDelta: number };
    expect(out.backend).toBe('cpu');
    expect(out.classes).toBe(10);
    expect(out.shape).toEqual([2, 28, 28, 1]);
    // two PGD steps of 2.5 * 0.1 / 2 from a random start, projected to the 0.1-ball: the perturbation reaches the radius, never beyond
    expect(out.maxDelta).toBeGreaterThan(0.05);
    expect(out.maxDelta).toBeLessThanOrEqual(0.1 + 1e-6);
  });
});
