/**
 * Sharded and resumable evaluation (issue 13): N shards merged give the unsharded results (every
 * metric, confusion, per-example worst case and check; only timing fields may differ); a shard set
 * with a missing, repeated, foreign or edited shard is refused with one line; an evaluation killed
 * with SIGKILL mid-run and run again with the same --state gives the uninterrupted run's results.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import {
  buildAttack, evaluate, evaluateShard, mergeShards, parseSuite, planUnits, resolveShard, runIdOf, shardOf, makePlan,
  type EvalData, type EvalResults, type Suite,
} from '../src/eval/index.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { UsageError } from '../src/errors.js';
import { getAttack } from '../src/attacks/index.js';
import { createHash } from 'node:crypto';
import { cnnf as cli, oneLineError, ROOT } from './helpers/cli.js';

let tmp: string;
let models: LoadedCheckpoint[];
const CNN = join(ROOT, 'models', 'cnn-fmnist.safetensors');
const CNNF = join(ROOT, 'models', 'cnnf-fmnist.safetensors');

/** Noise, a one-step and a two-step gradient attack (both paths for CNN-F), a targeted one: every kind of record. */
const SUITE_JSON = {
  name: 'shard-test',
  attacks: [
    { name: 'gaussian', method: 'gaussian', eps: [0.1] },
    { name: 'fgsm', method: 'fgsm', eps: [0.1, 0.2], modes: ['first', 'e2e'] },
    { name: 'pgd2', method: 'pgd', eps: [0.2], steps: 2, relStepSize: 0.5, modes: ['e2e'] },
    { name: 'pgd2-t', method: 'pgd', eps: [0.2], steps: 2, relStepSize: 0.5, randomStart: false, targeted: true, target: 'next', modes: ['first'] },
  ],
  confusionAt: 0.2,
};
const SUITE: Suite = parseSuite(SUITE_JSON, 'shard-test');

function data(subset: string): EvalData {
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: subset });
  return { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: subset };
}

/** The results without the fields that are timings or say how the run was invoked. */
function comparable(r: EvalResults): unknown {
  const c = JSON.parse(JSON.stringify(r)) as EvalResults;
  const p = c.provenance as Partial<EvalResults['provenance']>;
  delete (c as Partial<EvalResults>).createdAt;
  delete p.durationSeconds;
  delete p.command;
  delete p.shards;
  p.attackSeconds = p.attackSeconds?.map((a) => ({ ...a, seconds: 0 }));
  return c;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-shard-'));
  await useBackend('wasm', { quiet: true });
  models = [await loadCheckpoint(CNN), await loadCheckpoint(CNNF)];
});

afterAll(() => {
  for (const m of models ?? []) m.model.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('run identity of transfer attacks', () => {
  it('names a surrogate by its sha256, not its path: copies at two paths give one run id, another file another; a pinned hash must match', () => {
    const a = join(tmp, 'machine-a');
    const b = join(tmp, 'machine-b');
    for (const dir of [a, b]) {
      mkdirSync(dir, { recursive: true });
      copyFileSync(CNN, join(dir, 'surrogate.safetensors'));
    }
    copyFileSync(CNNF, join(b, 'other.safetensors'));
    const suiteWith = (surrogate: string, extra: Record<string, unknown> = {}) =>
      parseSuite({ name: 't', attacks: [{ name: 'tr', method: 'transfer', eps: [0.2], surrogate, via: { method: 'fgsm' }, ...extra }] }, 't');
    const id = (surrogate: string) => runIdOf(makePlan(models, data('first:10'), suiteWith(surrogate), { seed: 1, batchSize: 10, names: ['cnn', 'cnnf'] }));
    const sha = createHash('sha256').update(readFileSync(CNN)).digest('hex');
    expect(suiteWith(join(a, 'surrogate.safetensors')).attacks[0].params.surrogateSha256).toBe(sha);
    // and the results' attack settings say which file it was
    expect(buildAttack(suiteWith(join(a, 'surrogate.safetensors')).attacks[0]).settings()).toMatchObject({ surrogate: join(a, 'surrogate.safetensors'), surrogateSha256: sha });
    expect(id(join(a, 'surrogate.safetensors'))).toBe(id(join(b, 'surrogate.safetensors')));
    expect(id(join(b, 'other.safetensors'))).not.toBe(id(join(a, 'surrogate.safetensors')));
    // a recorded hash that no longer matches the file (a changed surrogate, a resumed run): one line at prepare
    const pinned = suiteWith(join(a, 'surrogate.safetensors'), { surrogateSha256: '0'.repeat(64) }).attacks[0];
    expect(() => getAttack('transfer').prepare!(pinned, { numClasses: 10, shape: [28, 28, 1] })).toThrow(UsageError);
    expect(() => getAttack('transfer').prepare!(pinned, { numClasses: 10, shape: [28, 28, 1] })).toThrow(/has sha256 [0-9a-f]{64}, the suite \(or the run being resumed\) says 0{64}/);
    expect(() => suiteWith(join(a, 'surrogate.safetensors'), { surrogateSha256: 'xyz' })).toThrow(/surrogateSha256 must be 64 lowercase hex digits/);
    // a plan read back where the file is missing (cnnf merge on another machine) keeps the recorded hash
    expect(suiteWith(join(tmp, 'gone.safetensors'), { surrogateSha256: sha }).attacks[0].params.surrogateSha256).toBe(sha);
  });
});

describe('--shard K/N and cnnf merge', () => {
  const d = (): EvalData => data('first:30');
  // an 8-example trust-check probe (the default, min(64, examples), would be most of each run's time)
  const opts = { seed: 5, batchSize: 10, names: ['cnn', 'cnnf'], probeSize: 8 };
  let full: EvalResults;
  const shardPaths: string[] = [];

  it('the shard assignment deals every attack\'s batches over all shards, each unit to exactly one', () => {
    const plan = makePlan(models, d(), SUITE, opts);
    const units = planUnits(plan);
    // per batch: cnn clean + 4 jobs (plain CNN: first only), cnnf clean + 5 jobs; one probe each; 3 batches
    expect(units.length).toBe(3 * (1 + 4) + 1 + 3 * (1 + 5) + 1);
    for (const n of [1, 2, 3, 7]) {
      const counts = new Array<number>(n).fill(0);
      for (const u of units) counts[shardOf(u, n) - 1]++;
      expect(counts.reduce((a, b) => a + b, 0)).toBe(units.length);
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(Math.ceil(units.length / n / 2));
      // each job row's 3 batches land on 3 different shards when there are 3 or more
      if (n >= 3) {
        const rows = new Map<number, Set<number>>();
        for (const u of units) rows.set(u.row, (rows.get(u.row) ?? new Set()).add(shardOf(u, n)));
        for (const [row, s] of rows) if (units.filter((u) => u.row === row).length === 3) expect(s.size).toBe(3);
      }
    }
  });

  it('3 shards merged equal the unsharded run: metrics, confusions, worst cases, checks', async () => {
    full = await evaluate(models, d(), SUITE, opts);
    for (let k = 1; k <= 3; k++) {
      const s = await evaluateShard(models, d(), SUITE, opts, { index: k, count: 3, source: 'test' });
      const p = join(tmp, `shard-${k}.json`);
      writeFileSync(p, JSON.stringify(s));
      shardPaths.push(p);
    }
    const merged = mergeShards(shardPaths);
    expect(merged.shards).toBe(3);
    expect(merged.results.provenance.shards).toBe(3);
    expect(comparable(merged.results)).toEqual(comparable(full));
    // not a vacuous comparison: the attacks did something and the checks ran
    const cnnf = full.models[1];
    expect(cnnf.metrics['fgsm@0.2:e2e']).toBeLessThan(cnnf.metrics.clean);
    expect(cnnf.attacks.find((a) => a.name === 'fgsm' && a.mode === 'e2e')!.points[1].confusion).toBeDefined();
    expect(full.checks).toBeDefined();
    // shard order on the command line does not matter
    expect(comparable(mergeShards([shardPaths[2], shardPaths[0], shardPaths[1]]).results)).toEqual(comparable(full));
  }, 600_000);

  it('refuses a missing, repeated, foreign, edited or truncated shard with one line', async () => {
    const refuse = (paths: string[], re: RegExp): void => {
      let err: unknown;
      try {
        mergeShards(paths);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UsageError);
      expect((err as Error).message).toMatch(re);
      expect((err as Error).message).not.toContain('\n');
    };
    refuse([shardPaths[0], shardPaths[2]], /shard 2 of 3 missing/);
    refuse([shardPaths[0], shardPaths[1], shardPaths[1], shardPaths[2]], /shard 2\/3 is given twice/);
    // a shard of another run: another seed
    const foreign = join(tmp, 'foreign-2.json');
    writeFileSync(foreign, JSON.stringify(await evaluateShard(models, d(), SUITE, { ...opts, seed: 6 }, { index: 2, count: 3, source: 'test' })));
    refuse([shardPaths[0], foreign, shardPaths[2]], /belongs to another run/);
    // an edited plan (the run id no longer matches), an edited prediction, a dropped unit, a truncated file
    const s2 = JSON.parse(readFileSync(shardPaths[1], 'utf8')) as { plan: { seed: number }; units: Array<{ outcome?: { clean: number[] } }> };
    const edit = (name: string, f: (s: typeof s2) => void): string => {
      const c = JSON.parse(JSON.stringify(s2)) as typeof s2;
      f(c);
      const p = join(tmp, name);
      writeFileSync(p, JSON.stringify(c));
      return p;
    };
    refuse([shardPaths[0], edit('seed.json', (c) => { c.plan.seed = 99; }), shardPaths[2]], /runId does not match its plan/);
    const cleanUnit = s2.units.findIndex((u) => u.outcome?.clean?.length);
    refuse([shardPaths[0], edit('pred.json', (c) => { c.units[cleanUnit].outcome!.clean[0] = 10; }), shardPaths[2]], /clean must hold integers in 0\.\.9/);
    refuse([shardPaths[0], edit('drop.json', (c) => { c.units.pop(); }), shardPaths[2]], /must hold \d+ units, holds/);
    const trunc = join(tmp, 'trunc.json');
    const whole = readFileSync(shardPaths[1]);
    writeFileSync(trunc, whole.subarray(0, Math.floor(whole.length / 2)));
    refuse([shardPaths[0], trunc, shardPaths[2]], /JSON|json/);
    refuse([join(tmp, 'nope.json')], /not found|no such file|cannot read/);
  }, 300_000);

  it('cnnf merge: a foreign shard exits 2 with one stderr line and writes nothing', async () => {
    const out = join(tmp, 'merged.json');
    const r = await cli(['merge', shardPaths[0], join(tmp, 'foreign-2.json'), shardPaths[2], '-o', out]);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/belongs to another run/);
    expect(existsSync(out)).toBe(false);
    const ok = await cli(['merge', ...shardPaths, '-o', out]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('worst@0.2');
    expect(ok.stderr).toContain('merged 3 shards');
    expect(comparable(JSON.parse(readFileSync(out, 'utf8')) as EvalResults)).toEqual(comparable(full));
  }, 120_000);
});

describe('--shard auto', () => {
  it('reads CNNF_SHARD, a Kubernetes Indexed Job or a Slurm array, and says which', () => {
    expect(resolveShard('2/5', {})).toEqual({ index: 2, count: 5, source: '--shard 2/5' });
    expect(resolveShard('auto', { CNNF_SHARD: '3/4' })).toEqual({ index: 3, count: 4, source: 'CNNF_SHARD' });
    expect(resolveShard('auto', { JOB_COMPLETION_INDEX: '0' }, '4')).toMatchObject({ index: 1, count: 4 });
    expect(resolveShard('auto', { JOB_COMPLETION_INDEX: '3', CNNF_SHARD_COUNT: '4' })).toMatchObject({ index: 4, count: 4 });
    expect(resolveShard('auto', { SLURM_ARRAY_TASK_ID: '7', SLURM_ARRAY_TASK_MIN: '5', SLURM_ARRAY_TASK_COUNT: '3' })).toMatchObject({ index: 3, count: 3 });
    expect(resolveShard('auto', { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '2' }).source).toMatch(/Slurm/);
    for (const [raw, env, count, re] of [
      ['0/3', {}, undefined, /1 <= K <= N/],
      ['4/3', {}, undefined, /1 <= K <= N/],
      ['1-3', {}, undefined, /must be K\/N/],
      ['auto', {}, undefined, /none of CNNF_SHARD/],
      ['auto', { JOB_COMPLETION_INDEX: '2' }, undefined, /--shard-count/],
      ['auto', { JOB_COMPLETION_INDEX: '4' }, '4', /1 <= K <= N/],
      ['auto', { JOB_COMPLETION_INDEX: '-1' }, '4', /not an integer/],
      ['auto', { SLURM_ARRAY_TASK_ID: '3' }, undefined, /SLURM_ARRAY_TASK_COUNT/],
    ] as Array<[string, Record<string, string>, string | undefined, RegExp]>) {
      expect(() => resolveShard(raw, env, count)).toThrow(re);
    }
  });
});

/** Runs the CLI and returns once `ready()` holds (then SIGKILLs it) or it exits. */
function killWhen(args: string[], ready: () => boolean): Promise<{ killed: boolean; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'cnnf'), ...args], { cwd: ROOT, env: { ...process.env, CNNF_BACKEND: 'wasm' }, stdio: 'ignore' });
    let killed = false;
    const timer = setInterval(() => {
      if (!killed && ready()) {
        killed = true;
        child.kill('SIGKILL');
      }
    }, 50);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearInterval(timer);
      resolve({ killed, code });
    });
  });
}

describe('--state DIR: resumable evaluation', () => {
  const args = (state: string, json: string, seed = '11'): string[] => [
    'eval', '--model', CNNF, '--name', 'cnnf-fmnist=cnnf', '--attacks', 'fgsm,pgd', '--eps', '0.1,0.2', '--steps', '2',
    '--test-subset', 'first:20', '--batch-size', '10', '--seed', seed, '--state', state, '--json', json,
  ];

  it('killed with SIGKILL mid-run and run again, it continues and gives the uninterrupted results', async () => {
    const ref = await cli(args(join(tmp, 'state-ref'), join(tmp, 'ref.json')));
    expect(ref.code).toBe(0);
    const state = join(tmp, 'state');
    const units = join(state, 'units');
    const done = (): number => (existsSync(units) ? readdirSync(units).filter((f) => /^\d+\.json$/.test(f)).length : 0);
    // 2 batches x (clean + fgsm first/e2e + pgd first/e2e) + probe (the last unit) = 11 units: kill after 4
    const k = await killWhen(args(state, join(tmp, 'resumed.json')), () => done() >= 4);
    expect(k.killed).toBe(true);
    const before = done();
    expect(before).toBeGreaterThanOrEqual(4);
    expect(before).toBeLessThan(11);
    expect(existsSync(join(tmp, 'resumed.json'))).toBe(false);
    const again = await cli(args(state, join(tmp, 'resumed.json')));
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`resuming from .*: ${before} of 10 units already done`));
    expect(done()).toBe(11);
    const a = JSON.parse(readFileSync(join(tmp, 'ref.json'), 'utf8')) as EvalResults;
    const b = JSON.parse(readFileSync(join(tmp, 'resumed.json'), 'utf8')) as EvalResults;
    expect(comparable(b)).toEqual(comparable(a));
    expect(a.models[0].metrics['pgd2@0.2:e2e']).toBeLessThan(a.models[0].metrics.clean);
  }, 600_000);

  it('refuses a state directory of another run, and a non-empty directory that is not one', async () => {
    const other = await cli(args(join(tmp, 'state'), join(tmp, 'x.json'), '12'));
    expect(other.code).toBe(2);
    expect(oneLineError(other)).toMatch(/holds another run/);
    const j = await cli(args(tmp, join(tmp, 'y.json')));
    expect(j.code).toBe(2);
    expect(oneLineError(j)).toMatch(/non-empty directory without a cnnf state/);
  }, 300_000);
});
