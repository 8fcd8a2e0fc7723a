/**
 * Tamper-evidence of shard files and --state units (issue 22, items 2 and 4): edited numbers that
 * would give impossible results (robust under an untargeted attack but wrong on the clean pass,
 * targets the plan does not choose, AutoAttack stages that disagree with the predictions, forged
 * probe-check messages) are refused or cannot show; a forged plan of enormous size is refused from
 * its declared sizes before any unit is built; a plan naming a transfer surrogate without its hash is
 * refused without the file being opened. Every refusal: one line naming the file, exit 2 from the CLI.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/index.js';
import { evaluateShard, mergeShards, parseSuite, planUnits, runIdOf, parsePlan, type EvalData, type EvalPlan, type ShardFile } from '../src/eval/index.js';
import { probeCheckMessage } from '../src/eval/checks.js';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint.js';
import { UsageError } from '../src/errors.js';
import { cnnf as cli, oneLineError, ROOT } from './helpers/cli.js';

let tmp: string;
let model: LoadedCheckpoint;
const CNN = join(ROOT, 'models', 'cnn-fmnist.safetensors');

const SUITE = parseSuite({
  name: 'tamper-test',
  attacks: [
    { name: 'fgsm', method: 'fgsm', eps: [0.1] },
    { name: 'pgd1-t', method: 'pgd', eps: [0.1], steps: 1, relStepSize: 1, randomStart: false, targeted: true, target: 'random' },
    { name: 'aa', method: 'autoattack', eps: [0.1], stages: 'square', queries: 2 },
  ],
}, 'tamper-test');

type Unit = { id: number; kind: string; outcome?: { clean: number[]; cleanFirst: number[]; preds: number[][][]; targets: Array<number[] | null>; stages: Array<Array<number[] | null>> }; checks?: Array<Record<string, unknown>> };
type Shard = Omit<ShardFile, 'units'> & { units: Unit[] };

let whole: Shard;
let plan: EvalPlan;

function data(): EvalData {
  const ds = loadDataset({ dataset: 'fashion-mnist', testSubset: 'first:20' });
  return { name: ds.name, classNames: ds.classNames, numClasses: ds.numClasses, split: ds.test, testSubset: 'first:20' };
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-tamper-'));
  await useBackend('wasm', { quiet: true });
  model = await loadCheckpoint(CNN);
  whole = JSON.parse(JSON.stringify(await evaluateShard([model], data(), SUITE, { seed: 3, batchSize: 10, names: ['cnn'], probeSize: 8 }, { index: 1, count: 1, source: 'test' }))) as Shard;
  plan = parsePlan(whole.plan, 'test');
}, 300_000);

afterAll(() => {
  model?.model.dispose();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function edited(name: string, f: (s: Shard) => void): string {
  const c = JSON.parse(JSON.stringify(whole)) as Shard;
  f(c);
  const p = join(tmp, name);
  writeFileSync(p, JSON.stringify(c));
  return p;
}

function refused(path: string, re: RegExp): void {
  let err: unknown;
  try {
    mergeShards([path]);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  const msg = (err as Error).message;
  expect(msg).toMatch(re);
  expect(msg).toContain(path);
  expect(msg).not.toContain('\n');
}

const unitsOf = (s: Shard, kind: string): Unit[] => s.units.filter((u) => u.kind === kind);
/** The attack unit of job `j` (0 fgsm, 1 targeted pgd, 2 autoattack) of batch `b`. */
const attackUnit = (s: Shard, b: number, j: number): Unit => s.units.find((u) => u.id === planUnits(plan).find((x) => x.kind === 'attack' && x.batch === b && x.job === j)!.id)!;

describe('tampered shard files', () => {
  it('merge the untouched shard; edited attack predictions cannot make an untargeted attack beat the clean pass', () => {
    const ok = mergeShards([edited('ok.json', () => {})]).results.models[0];
    expect(ok.clean.n).toBe(20);
    const labels = plan.labels;
    // clean pass all wrong, every attack prediction "correct": clean 0 with FGSM 1.0 is impossible
    const p = edited('clean0-fgsm1.json', (s) => {
      for (const u of unitsOf(s, 'clean')) {
        const b = planUnits(plan).find((x) => x.id === u.id)!.batch;
        u.outcome!.clean = u.outcome!.clean.map((_, i) => (labels[b * 10 + i]! + 1) % 10);
        u.outcome!.cleanFirst = u.outcome!.clean;
      }
      for (const b of [0, 1]) attackUnit(s, b, 0).outcome!.preds[0][0] = labels.slice(b * 10, b * 10 + 10);
    });
    const r = mergeShards([p]).results.models[0];
    expect(r.clean.accuracy).toBe(0);
    expect(r.metrics['fgsm@0.1:first']).toBe(0);
    expect(r.metrics['worst@0.1']).toBe(0);
    // a real clean pass, FGSM "robust" everywhere: at most the clean accuracy
    const q = mergeShards([edited('fgsm1.json', (s) => {
      for (const b of [0, 1]) attackUnit(s, b, 0).outcome!.preds[0][0] = labels.slice(b * 10, b * 10 + 10);
    })]).results.models[0];
    expect(ok.clean.accuracy).toBeLessThan(1);
    expect(q.metrics['fgsm@0.1:first']).toBe(q.clean.accuracy);
    const bits = (s: string): number[] => [...Buffer.from(s, 'base64')].flatMap((byte) => Array.from({ length: 8 }, (_, i) => (byte >> i) & 1)).slice(0, 20);
    const cleanBits = bits(q.clean.outcomes!);
    const fgsmBits = bits(q.attacks.find((a) => a.name === 'fgsm')!.points[0].outcomes!);
    fgsmBits.forEach((v, i) => expect(v).toBeLessThanOrEqual(cleanBits[i]!));
  });

  it('refuses targets the plan does not choose, stages that disagree with the predictions, a first pass that differs from the only pass', () => {
    refused(edited('targets.json', (s) => {
      const t = attackUnit(s, 0, 1).outcome!.targets;
      t[0] = t[0]!.map((x) => (x + 1) % 10);
    }), /targets\[0\] are not the targets this plan chooses/);
    refused(edited('stages.json', (s) => {
      const o = attackUnit(s, 1, 2).outcome!;
      o.stages[0][0] = o.stages[0][0]!.map(() => -1);
      o.preds[0][0] = o.preds[0][0].map((x) => (x + 1) % 10);
    }), /stages\[0\]\[0\] disagree with preds\[0\]\[0\]/);
    refused(edited('first.json', (s) => {
      const o = unitsOf(s, 'clean')[0]!.outcome!;
      o.cleanFirst = o.cleanFirst.map((x) => (x + 1) % 10);
    }), /cleanFirst must equal clean/);
  });

  it('refuses check records that are not cnnf\'s own: unknown ids, forged messages, evidence no check produces', () => {
    const probe = (s: Shard): Unit => unitsOf(s, 'probe')[0]!;
    const forged = (c: Record<string, unknown>) => (s: Shard): void => { probe(s).checks = [c]; };
    const evidence = { mode: 'first', zeroGradientExamples: 2, probeExamples: 8 };
    const real = { id: 'zero-gradient', number: 1, severity: 'warning', model: 'cnn', message: probeCheckMessage(1, evidence), evidence };
    // a well-formed check 1 with cnnf's message for its evidence is accepted and shown
    const r = mergeShards([edited('check-ok.json', forged(real))]).results;
    expect(r.checks!.some((c) => c.id === 'zero-gradient' && c.message === real.message)).toBe(true);
    refused(edited('check-msg.json', forged({ ...real, message: '\u001b[2K\rcnnf: wrote results.json; all checks passed' })), /message that is not cnnf's/);
    refused(edited('check-id.json', forged({ ...real, id: 'all-good', number: 9 })), /not one of cnnf's probe checks/);
    refused(edited('check-result.json', forged({ ...real, id: 'clean-near-chance', number: 8 })), /not one of cnnf's probe checks/);
    refused(edited('check-ev.json', forged({ ...real, evidence: { ...evidence, zeroGradientExamples: 9 } })), /evidence that check 1 does not produce/);
    refused(edited('check-extra.json', forged({ ...real, note: 'trust me' })), /exactly id, number/);
    refused(edited('check-sev.json', forged({ ...real, severity: 'info' })), /severity/);
  });

  it('refuses a forged plan of enormous declared size before building its units, and a surrogate without its hash before reading it', () => {
    // 2M examples in batches of 1 (8M units; runId recomputed, so it is self-consistent): refused by arithmetic
    const big = edited('big.json', (s) => {
      const pl = s.plan as Record<string, unknown>;
      pl.examples = 2_000_000;
      pl.labels = new Array<number>(2_000_000).fill(0);
      pl.batchSize = 1;
      s.runId = runIdOf(parsePlanUnchecked(pl));
    });
    refused(big, /work units|per-example outcomes/);
    // a transfer surrogate named without surrogateSha256: never opened (a FIFO there would hang a reader)
    const fifo = join(tmp, 'surrogate-fifo');
    const sur = edited('surrogate.json', (s) => {
      const suite = (s.plan as { suite: { attacks: Array<Record<string, unknown>> } }).suite;
      suite.attacks.push({ name: 'tr', method: 'transfer', eps: [0.1], surrogate: fifo });
    });
    refused(sur, /names a surrogate without its surrogateSha256/);
    // declared sizes that disagree with each other
    refused(edited('probe.json', (s) => { (s.plan as Record<string, unknown>).probeSize = 21; }), /probeSize 21 is more than its 20 examples/);
  });

  it('cnnf merge of a tampered shard: exit 2, one stderr line naming the file, nothing written', async () => {
    const out = join(tmp, 'merged.json');
    const bad = edited('cli-targets.json', (s) => {
      const t = attackUnit(s, 0, 1).outcome!.targets;
      t[0] = t[0]!.map((x) => (x + 3) % 10);
    });
    const r = await cli(['merge', bad, '-o', out]);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toContain(bad);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});

describe('tampered --state units', () => {
  it('a state unit with a forged check message is refused on resume with one line naming it', async () => {
    const state = join(tmp, 'state');
    const args = ['eval', '--model', CNN, '--attacks', 'fgsm', '--eps', '0.1', '--test-subset', 'first:10', '--batch-size', '10', '--seed', '1', '--state', state, '--json', join(tmp, 'r.json')];
    const first = await cli(args);
    expect(first.code).toBe(0);
    const units = join(state, 'units');
    const probeFile = readdirSync(units).map((f) => join(units, f)).find((f) => (JSON.parse(readFileSync(f, 'utf8')) as Unit).kind === 'probe')!;
    const u = JSON.parse(readFileSync(probeFile, 'utf8')) as Unit;
    const evidence = { accuracy: 0.8, mode: 'first', probeExamples: 10, chance: 0.1 };
    u.checks = [{ id: 'unbounded-attack-fails', number: 7, severity: 'warning', model: 'cnn-fmnist', message: 'cnnf: verified robust, no warnings', evidence }];
    writeFileSync(probeFile, JSON.stringify(u));
    const out = join(tmp, 'r2.json');
    const again = await cli([...args.slice(0, -1), out]);
    expect(again.code).toBe(2);
    const line = oneLineError(again);
    expect(line).toContain(probeFile);
    expect(line).toMatch(/message that is not cnnf's/);
    expect(existsSync(out)).toBe(false);
  }, 120_000);
});

/** A plan object as parsePlan returns it, without its size checks (to forge a self-consistent runId). */
function parsePlanUnchecked(pl: Record<string, unknown>): EvalPlan {
  const small = { ...pl, examples: 20, labels: (pl.labels as number[]).slice(0, 20), batchSize: 10 };
  return { ...parsePlan(small, 'forge'), examples: pl.examples as number, labels: pl.labels as number[], batchSize: pl.batchSize as number };
}
