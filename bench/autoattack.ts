/**
 * `npm run bench -- --autoattack`: cnnf's AutoAttack (standard version: APGD-CE, APGD-T, FAB-T, Square 5000)
 * beside AutoAttack's own PyTorch code (fra31/auto-attack, version='standard'), on the same CPU in the same
 * run, the same weights, images and radius (issue 21, item 4).
 *
 * cnnf: `cnnf eval --model M --suite S --test-subset SUBSET --json` in a child process with the default
 * workers (one per core); S is attacks/autoattack.json with the CNN-F's white-box stages through the e2e
 * path only (AutoAttack's code sees one model function: the e2e logits), and, with --aa-both-paths, the
 * suite as shipped (first pass and e2e: twice the white-box work). AutoAttack: bench/autoattack_peer.py
 * under /usr/bin/python3 with as many torch threads as cnnf has workers, on the PyTorch CNN-F of
 * bench/torch_reference_bench.py loaded with the checkpoint's weights. AutoAttack's checkout is given by
 * CNNF_AUTOATTACK_DIR (or --autoattack-dir); without it that column is skipped with a note. It is never
 * part of cnnf.
 *
 * cnnf's seconds include what `cnnf eval` always does besides the attack (data loading, the clean pass, the
 * trust checks' probe on 64 examples); AutoAttack's include its own start-up checks and imports.
 * Reported per model: wall seconds (and CPU seconds, peak RSS via GNU time when present), robust accuracy,
 * the examples each broke that the other did not, and the exact McNemar p of those discordant pairs.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/index.js';
import { decodeOutcomes, mcnemarExact } from '../src/eval/stats.js';
import type { EvalResults } from '../src/eval/results.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const PYTHON = '/usr/bin/python3';
const GNU_TIME = '/usr/bin/time';

export interface AutoAttackBenchOptions {
  models: string[];
  subset: string;
  workers: number;
  autoattackDir: string | undefined;
  bothPaths: boolean;
  json: boolean;
}

interface Run {
  seconds: number;
  cpuSeconds: number | null;
  peakRssMB: number | null;
  clean: number[];
  robust: number[];
  error?: string;
}

interface Row {
  model: string;
  cycles: number;
  cnnf: Run;
  cnnfBothPaths?: Run;
  autoattack: Run | { skipped: string };
  comparison?: { speedUp: number; cnnfOnly: number; autoattackOnly: number; mcnemarP: number };
}

export function parseAutoAttackArgs(argv: string[]): AutoAttackBenchOptions {
  const o: AutoAttackBenchOptions = {
    models: ['reference-cnn-adv', 'reference-cnnf-adv'],
    subset: 'stride:200',
    workers: Math.max(1, availableParallelism()),
    autoattackDir: process.env.CNNF_AUTOATTACK_DIR,
    bothPaths: false,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--autoattack') continue;
    else if (a === '--json') o.json = true;
    else if (a === '--aa-models') o.models = val().split(',').filter(Boolean);
    else if (a === '--aa-subset') o.subset = val();
    else if (a === '--workers') o.workers = Math.max(1, Number.parseInt(val(), 10) || 1);
    else if (a === '--autoattack-dir') o.autoattackDir = val();
    else if (a === '--aa-both-paths') o.bothPaths = true;
    else throw new Error(`unknown option for --autoattack: ${a} (takes --aa-models a,b --aa-subset stride:K --workers N --autoattack-dir D --aa-both-paths --json)`);
  }
  return o;
}

interface Timed { code: number | null; stdout: string; stderr: string; seconds: number; cpuSeconds: number | null; peakRssMB: number | null }

/** Runs a command, with GNU time's wall/user/sys/max-RSS when /usr/bin/time exists; relays stderr lines. */
async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, label: string): Promise<Timed> {
  const gnu = existsSync(GNU_TIME) && spawnSync(GNU_TIME, ['-f', '%e', 'true']).status === 0;
  const tdir = mkdtempSync(join(tmpdir(), 'cnnf-aa-time-'));
  const tfile = join(tdir, 'time.txt');
  const argv = gnu ? [GNU_TIME, '-f', '%e %U %S %M', '-o', tfile, cmd, ...args] : [cmd, ...args];
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
    for (const line of d.toString().split(/\r|\n/)) if (line.trim()) process.stderr.write(`  [${label}] ${line.trim()}\n`);
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  let seconds = (performance.now() - t0) / 1000;
  let cpuSeconds: number | null = null;
  let peakRssMB: number | null = null;
  if (gnu && existsSync(tfile)) {
    const [e, u, s, m] = readFileSync(tfile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    if (Number.isFinite(e)) seconds = e;
    if (Number.isFinite(u) && Number.isFinite(s)) cpuSeconds = +(u + s).toFixed(1);
    if (Number.isFinite(m)) peakRssMB = Math.round(m / 1024);
  }
  rmSync(tdir, { recursive: true, force: true });
  return { code, stdout, stderr, seconds, cpuSeconds, peakRssMB };
}

function bits(b64: string | undefined, n: number): number[] {
  const d = b64 ? decodeOutcomes(b64, n) : null;
  if (!d) throw new Error('the results file has no per-example outcomes');
  return Array.from(d);
}

async function runCnnf(model: string, suite: string, o: AutoAttackBenchOptions, dir: string, tag: string): Promise<Run> {
  const bin = join(ROOT, 'bin', 'cnnf');
  const env: NodeJS.ProcessEnv = { ...process.env, CNNF_QUIET_BACKEND: '1' };
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) env.CNNF_FROM_SOURCE = '1';
  const out = join(dir, `${model}-${tag}.json`);
  const r = await timed(process.execPath, [bin, 'eval', '--model', join(ROOT, 'models', `${model}.safetensors`), '--suite', suite,
    '--test-subset', o.subset, '--workers', String(o.workers), '--json', out], env, `cnnf ${model}`);
  if (r.code !== 0) return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, peakRssMB: r.peakRssMB, clean: [], robust: [], error: `exit ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}` };
  const res = JSON.parse(readFileSync(out, 'utf8')) as EvalResults;
  const m = res.models[0];
  const n = res.provenance.examples;
  const aa = m.attacks.find((a) => a.method === 'autoattack');
  if (!aa) throw new Error('no autoattack row in the results');
  return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, peakRssMB: r.peakRssMB, clean: bits(m.clean.outcomes, n), robust: bits(aa.points[0].outcomes, n) };
}

async function runPeer(model: string, images: string, n: number, o: AutoAttackBenchOptions): Promise<Run | { skipped: string }> {
  if (!o.autoattackDir) return { skipped: 'CNNF_AUTOATTACK_DIR is not set (a checkout of github.com/fra31/auto-attack)' };
  if (!existsSync(join(o.autoattackDir, 'autoattack', 'autoattack.py'))) return { skipped: `${o.autoattackDir} is not a checkout of fra31/auto-attack (no autoattack/autoattack.py)` };
  if (spawnSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status !== 0) return { skipped: `${PYTHON} cannot import torch and numpy (Debian: python3-torch)` };
  const r = await timed(PYTHON, [join(HERE, 'autoattack_peer.py'), '--model', join(ROOT, 'models', `${model}.safetensors`), '--images', images,
    '--n', String(n), '--eps', '0.1', '--threads', String(o.workers), '--autoattack-dir', o.autoattackDir], process.env, `AutoAttack ${model}`);
  if (r.code !== 0) return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, peakRssMB: r.peakRssMB, clean: [], robust: [], error: `exit ${r.code}: ${r.stderr.trim().split('\n').pop() ?? ''}` };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; clean: number[]; robust: number[] };
  // the attack's own time (AutoAttack's run_standard_evaluation) and the process's (imports, model load)
  return { seconds: r.seconds, cpuSeconds: r.cpuSeconds, peakRssMB: r.peakRssMB, clean: j.clean, robust: j.robust };
}

const acc = (v: number[]): string => (v.length ? `${(v.reduce((a, b) => a + b, 0) / v.length * 100).toFixed(1)}%` : 'n/a');

export async function autoAttackBench(o: AutoAttackBenchOptions): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'cnnf-aa-bench-'));
  try {
    // the images of --test-subset, written for the PyTorch side: [n,1,28,28] float32 in [-1, 1], then int32 labels
    const test = loadDataset({ testOnly: true, testSubset: o.subset }).test;
    if (test.channels !== 1) throw new Error('the AutoAttack peer takes one-channel 28x28 images');
    const images = join(dir, 'images.bin');
    writeFileSync(images, Buffer.concat([Buffer.from(test.images.buffer, test.images.byteOffset, test.images.byteLength), Buffer.from(test.labels.buffer, test.labels.byteOffset, test.labels.byteLength)]));
    const base = JSON.parse(readFileSync(join(ROOT, 'attacks', 'autoattack.json'), 'utf8')) as { attacks: Array<Record<string, unknown>> };
    const e2eSuite = join(dir, 'autoattack-e2e.json');
    writeFileSync(e2eSuite, JSON.stringify({ ...base, name: 'autoattack-e2e', attacks: base.attacks.map((a) => ({ ...a, paths: 'e2e' })) }));
    const rows: Row[] = [];
    for (const model of o.models) {
      const meta = JSON.parse(readFileSync(join(ROOT, 'models', `${model}.safetensors`)).subarray(8, 8 + Number(readFileSync(join(ROOT, 'models', `${model}.safetensors`)).readBigUInt64LE(0))).toString()) as { __metadata__: { cycles: string } };
      const cycles = Number(meta.__metadata__.cycles);
      process.stderr.write(`bench --autoattack: ${model} (${cycles} cycles), ${test.count} images (${o.subset}), ${o.workers} workers\n`);
      const cnnf = await runCnnf(model, e2eSuite, o, dir, 'e2e');
      const row: Row = { model, cycles, cnnf, autoattack: await runPeer(model, images, test.count, o) };
      if (o.bothPaths && cycles > 0) row.cnnfBothPaths = await runCnnf(model, join(ROOT, 'attacks', 'autoattack.json'), o, dir, 'both');
      const peer = row.autoattack;
      if (!('skipped' in peer) && !peer.error && !cnnf.error) {
        let b = 0;
        let c = 0;
        for (let i = 0; i < test.count; i++) {
          if (cnnf.robust[i] === 0 && peer.robust[i] === 1) b++;
          if (cnnf.robust[i] === 1 && peer.robust[i] === 0) c++;
        }
        row.comparison = { speedUp: +(peer.seconds / cnnf.seconds).toFixed(2), cnnfOnly: b, autoattackOnly: c, mcnemarP: +mcnemarExact(b, c).toFixed(4) };
      }
      rows.push(row);
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function autoAttackLines(rows: Row[], o: AutoAttackBenchOptions): string[] {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [`AutoAttack standard (Linf eps 0.2 in [-1, 1] = 0.1 in [0, 1]), ${o.subset}, on ${cpu} (${availableParallelism()} cores); cnnf with ${o.workers} workers, AutoAttack's PyTorch with ${o.workers} threads`];
  const fmt = (r: Run): string => (r.error ? `failed (${r.error})` : `${r.seconds.toFixed(1)} s${r.cpuSeconds !== null ? ` (CPU ${r.cpuSeconds} s)` : ''}${r.peakRssMB !== null ? `, peak RSS ${r.peakRssMB} MB` : ''}, clean ${acc(r.clean)}, robust ${acc(r.robust)}`);
  for (const r of rows) {
    lines.push(`${r.model} (${r.cycles} cycles${r.cycles > 0 ? ', white-box stages end to end' : ''}):`);
    lines.push(`  cnnf        ${fmt(r.cnnf)}`);
    if (r.cnnfBothPaths) lines.push(`  cnnf (first and e2e paths, the shipped suite) ${fmt(r.cnnfBothPaths)}`);
    lines.push(`  AutoAttack  ${'skipped' in r.autoattack ? `skipped: ${r.autoattack.skipped}` : fmt(r.autoattack)}`);
    if (r.comparison) {
      const c = r.comparison;
      lines.push(`  cnnf is ${c.speedUp}x AutoAttack's speed (goal >= 3x); broken by cnnf only ${c.cnnfOnly}, by AutoAttack only ${c.autoattackOnly}; exact McNemar p = ${c.mcnemarP}${c.mcnemarP > 0.05 ? ' (no significant difference)' : ' (DIFFERENT)'}`);
    }
  }
  return lines;
}

export async function mainAutoAttack(argv: string[]): Promise<void> {
  const o = parseAutoAttackArgs(argv);
  const rows = await autoAttackBench(o);
  process.stdout.write(o.json ? `${JSON.stringify({ autoattack: rows }, null, 2)}\n` : `${autoAttackLines(rows, o).join('\n')}\n`);
}
