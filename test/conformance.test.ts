import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cnnf, ROOT } from './helpers/cli.js';

const FIXTURE = join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors');

interface Report { pass: boolean; backend: string; reports: Array<{ pass: boolean; rows: Array<{ name: string; relError: number; pass: boolean }> }> }

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

  it('agrees on the cpu backend too (every tensor but one PGD trajectory that forks at a float32 ReLU tie)', async () => {
    const { code, report } = await run('cpu');
    expect(report.backend).toBe('cpu');
    const rows = report.reports[0].rows;
    expect(rows.length).toBe(38);
    // Known and explained: on cpu, the first-pass PGD of example 0 meets, at step 3, a conv2 pre-activation
    // that is 4e-8 on cpu and -1.5e-7 on wasm (float64 reference: not positive), i.e. zero within float32
    // noise; the ReLU mask flips and that trajectory forks. Every other tensor must match within 1e-5.
    const failing = rows.filter((r) => !r.pass).map((r) => r.name);
    expect(failing.filter((n) => n !== 'attack.pgd.first')).toEqual([]);
    for (const row of rows) if (row.name !== 'attack.pgd.first') expect(row.relError, row.name).toBeLessThanOrEqual(1e-5);
    expect(code).toBe(failing.length === 0 ? 0 : 1);
  });

  it('fails (exit 1) when a golden tensor is off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnf-conf-'));
    const bad = join(dir, 'bad.safetensors');
    copyFileSync(FIXTURE, bad);
    const buf = readFileSync(bad);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    const [start] = header['eval.last.logits'].data_offsets as [number, number];
    const off = 8 + n + start;
    buf.writeFloatLE(buf.readFloatLE(off) + 0.01, off);
    writeFileSync(bad, buf);
    const { code, report } = await run('wasm', bad);
    expect(code).toBe(1);
    const row = report.reports[0].rows.find((r) => r.name === 'eval.last.logits')!;
    expect(row.pass).toBe(false);
    expect(row.relError).toBeGreaterThan(1e-4);
    expect(report.reports[0].rows.filter((r) => !r.pass).map((r) => r.name)).toEqual(['eval.last.logits']);
  });
});
