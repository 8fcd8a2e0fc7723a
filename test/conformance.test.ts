import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { searchTies, type TieRules } from '../src/eval/conformance.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { cnnf, ROOT } from './helpers/cli.js';
import { tf, wasm } from './helpers/tf.js';

const FIXTURE = join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors');

interface Report { pass: boolean; backend: string; reports: Array<{ pass: boolean; rows: Array<{ name: string; relError: number; pass: boolean; note?: string }> }> }

async function run(backend: string, fixture = FIXTURE): Promise<{ code: number; report: Report }> {
  const r = await cnnf(['conformance', fixture, '--json', '--backend', backend]);
  return { code: r.code, report: JSON.parse(r.stdout) as Report };
}

describe('conformance with the reference fixture', () => {
  it('recomputes every tensor within 1e-5 relative on wasm', async () => {
    const { code, report } = await run('wasm');
    expect(report.backend).toBe('wasm');
    const rows = report.reports[0].rows;
    expect(rows.length).toBe(38); // 13 eval + 2 grad + 4 attack + 1 loss + 14 param grads + ... every non-input tensor
    for (const row of rows) expect(row.relError, row.name).toBeLessThanOrEqual(1e-5);
    expect(code).toBe(0);
  });

  // tfjs-cpu is a secondary backend, 5x slower than wasm here (~60 s): an opt-in check, as the cpu APGD gap list
  it.runIf(process.env.CNNF_FULL_EVAL === '1')('recomputes every tensor within 1e-5 relative on cpu too, deciding one float32 ReLU tie the float64 way', async () => {
    const { code, report } = await run('cpu');
    expect(report.backend).toBe('cpu');
    const rows = report.reports[0].rows;
    expect(rows.length).toBe(38);
    for (const row of rows) expect(row.relError, row.name).toBeLessThanOrEqual(1e-5);
    // On cpu, the first-pass PGD of example 0 meets at step 3 a conv2 pre-activation that is +4e-8 (cpu) and
    // -1.5e-7 (wasm, float64 reference): zero within float32 rounding. Only the ReLU-tie search reproduces it.
    const pgd = rows.find((r) => r.name === 'attack.pgd.first')!;
    expect(pgd.note).toMatch(/[1-9]\d* ReLU mask\(s\), 1 decided against float32/);
    expect(code).toBe(0);
  });

  it('passes fixtures of other configurations (ind 1 and ind 0, 1 and 3 cycles, res 0.3 and 0) made by the PyTorch port', async () => {
    const fixtures = ['torchport-ind1-c1-r0.3', 'torchport-ind0-c3-r0'].map((n) => join(ROOT, 'fixtures', `${n}.safetensors`));
    const r = await cnnf(['conformance', ...fixtures, '--json', '--backend', 'wasm']);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.reports.map((x) => x.rows.length)).toEqual([33, 43]); // ind 1: no block taps below ind; 3 cycles
    for (const rep of report.reports) for (const row of rep.rows) expect(row.relError, row.name).toBeLessThanOrEqual(1e-5);
    // on wasm, x' = x + r (h - x) of relu2 rounds to exactly 0 at one position (float64: 4e-8 > 0); the
    // forward values hardly move but the e2e input gradient does, until the tie is decided the float64 way
    const e2e = report.reports[0].rows.find((x) => x.name === 'grad.input.e2e')!;
    expect(e2e.note).toMatch(/ReLU mask\(s\), 1 decided against float32/);
    expect(r.code).toBe(0);
  });

  it('fails (exit 1) when a golden tensor is off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnf-conf-'));
    const bad = join(dir, 'bad.safetensors');
    // the fixture's forward pass only (its gradient, attack and training rows are the first test's; they
    // would triple this run), with one logit of eval.last.logits moved by 0.01
    const { tensors, metadata } = readSafetensors(FIXTURE);
    const kept = new Map([...tensors].filter(([k]) => /^(param|input|eval)\./.test(k)).map(([k, t]) => [k, { shape: t.shape, data: Float32Array.from(t.data) }]));
    expect([...kept.keys()].filter((k) => k.startsWith('eval.')).length).toBe(17);
    kept.get('eval.last.logits')!.data[0] += 0.01;
    writeSafetensors(bad, kept, metadata);
    const { code, report } = await run('wasm', bad);
    expect(code).toBe(1);
    const row = report.reports[0].rows.find((r) => r.name === 'eval.last.logits')!;
    expect(row.pass).toBe(false);
    expect(row.relError).toBeGreaterThan(1e-4);
    expect(report.reports[0].rows).toHaveLength(17);
    expect(report.reports[0].rows.filter((r) => !r.pass).map((r) => r.name)).toEqual(['eval.last.logits']);
  });
});

describe('float32 tie search', () => {
  beforeAll(wasm);

  // run(): one forward through a ReLU mask rule and one gradient sign, as a PGD step would make them
  const run = (values: number[], grad: number[]) => (rules: TieRules) =>
    tf.tidy(() => tf.concat([rules.mask('relu1', tf.tensor2d([values])), rules.sign(tf.tensor4d(grad, [1, 1, 1, grad.length]), tf.zeros([1, 1, 1, grad.length]) as tf.Tensor4D).reshape([1, -1])], 1).reshape([1, 1, 1, -1]) as tf.Tensor4D);
  const equals = (want: number[]) => (adv: tf.Tensor4D) => Array.from(adv.dataSync()).join() === want.join();

  it('keeps float32 decisions when they match', async () => {
    const r = await searchTies(run([5, 1e-9, -2], [1, -1e-6]), equals([1, 1, 0, 1, -1]));
    expect([r.matched, r.runs, r.flipped, r.ties]).toEqual([true, 1, 0, { sign: 1, relu: 1 }]);
    r.adv.dispose();
  });

  it('flips a ReLU pre-activation within rounding of zero, nearest to zero first', async () => {
    const r = await searchTies(run([5, -3e-6, -1e-9, -2], [1, 0.5]), equals([1, 0, 1, 0, 1, 1]));
    expect([r.matched, r.runs, r.flipped]).toEqual([true, 2, 1]);
    r.adv.dispose();
  });

  it('flips a gradient sign tie, and never a value clear of zero', async () => {
    const ok = await searchTies(run([5], [1, -1e-6]), equals([1, 1, 1]));
    expect([ok.matched, ok.flipped]).toEqual([true, 1]);
    ok.adv.dispose();
    const no = await searchTies(run([5, -1e-3], [1, -1e-6]), equals([1, 1, 1, -1]));
    expect(no.matched).toBe(false);
    expect(no.runs).toBe(2); // the float32 run and the one with the gradient tie flipped; nothing else to try
    no.adv.dispose();
  });
});
