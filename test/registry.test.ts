/**
 * The attack registry and the suite schema it drives: every method is buildable from a suite entry,
 * defaults and bounds come from the descriptors (the same for suite files and flags), and bad entries
 * are one-line UsageErrors naming the field.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { CNNF } from '../src/models/cnnf.js';
import { allAttacks, attackMethods, buildAttack, paramIndex, parseSuite } from '../src/index.js';
import { UsageError } from '../src/errors.js';
import { loadSuite } from '../src/eval/suite.js';
import { cnnf, oneLineError, referenceModel, ROOT } from './helpers/cli.js';

const suite = (attacks: unknown[]) => parseSuite({ name: 't', attacks }, 's.json');
const bad = (attacks: unknown[], re: RegExp): void => {
  let err: unknown;
  try {
    suite(attacks);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  expect((err as Error).message).toMatch(re);
  expect((err as Error).message).not.toContain('\n');
};

describe('attack registry', () => {
  it('lists every attack once, each buildable from a minimal entry with its defaults', () => {
    expect(attackMethods()).toEqual(['gaussian', 'fgsm', 'pgd', 'apgd', 'fab', 'square', 'spsa', 'transfer', 'autoattack']);
    for (const d of allAttacks()) {
      const entry: Record<string, unknown> = { method: d.method, eps: [0.1] };
      if (d.method === 'transfer') entry.surrogate = referenceModel('cnn-standard');
      const [spec] = suite([entry]).attacks;
      const a = buildAttack(spec);
      expect(a.method).toBe(d.method);
      expect(spec.modes).toEqual(d.kind === 'gradient' ? ['first', 'e2e'] : []);
      expect(spec.norm).toBe(d.norms.length ? d.norms[0] : null);
      for (const [k, p] of Object.entries(d.params)) if (p.default !== undefined) expect(spec.params[k]).toEqual(p.default);
    }
  });

  it("a suite file's relative surrogate paths are relative to the suite's folder (the shipped full-fmnist suite names ../models/)", () => {
    const full = loadSuite(join(ROOT, 'attacks', 'full-fmnist.json'));
    expect(full.attacks.filter((a) => a.method === 'transfer').map((a) => a.params.surrogate)).toEqual(
      ['reference-cnn-adv', 'reference-cnnf-adv'].map((m) => join(ROOT, 'models', `${m}.safetensors`)),
    );
    expect(full.attacks.map((a) => a.name)).toEqual(['pgd7', 'pgd40', 'apgd-dlr', 'autoattack', 'spsa', 'transfer-from-cnn-adv', 'transfer-from-cnnf-adv']);
    const dir = mkdtempSync(join(tmpdir(), 'cnnf-suite-'));
    try {
      mkdirSync(join(dir, 'suites'));
      const abs = join(dir, 'elsewhere.safetensors');
      writeFileSync(join(dir, 'suites', 's.json'), JSON.stringify({ name: 's', attacks: [
        { method: 'transfer', eps: [0.2], surrogate: 'm.safetensors' },
        { method: 'transfer', name: 't2', eps: [0.2], surrogate: abs },
      ] }));
      const s = loadSuite(join(dir, 'suites', 's.json'));
      expect(s.attacks.map((a) => a.params.surrogate)).toEqual([join(dir, 'suites', 'm.safetensors'), abs]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('default names follow the metric scheme', () => {
    const names = suite([
      { method: 'pgd', eps: [0.2] }, { method: 'pgd', eps: [0.2], steps: 40, loss: 'dlr' }, { method: 'pgd', eps: [0.2], norm: 'l2' },
      { method: 'apgd', eps: [0.2] }, { method: 'apgd', eps: [0.2], loss: 'dlr' }, { method: 'apgd', eps: [0.2], loss: 'dlr-targeted' },
      { method: 'square', eps: [0.2] }, { method: 'autoattack', eps: [0.2] },
    ]).attacks.map((a) => a.name);
    expect(names).toEqual(['pgd7', 'pgd40-dlr', 'pgd7-l2', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'square', 'autoattack']);
  });

  it('one flag per parameter; enum choices are the union over the attacks that take it', () => {
    const idx = paramIndex();
    expect(idx.get('steps')!.methods).toEqual(['pgd', 'spsa']);
    expect(idx.get('loss')!.spec.values).toEqual(expect.arrayContaining(['ce', 'dlr', 'cw', 'dlr-targeted', 'margin']));
    expect(idx.get('queries')!.methods).toEqual(['square', 'autoattack']);
  });

  it('refuses bad entries with one line naming the field', () => {
    bad([{ method: 'pgd', eps: [0.2], loss: 'hinge' }], /attacks\[0\]\.loss must be one of ce, dlr, cw/);
    bad([{ method: 'pgd', eps: [0.2], norm: 'l1' }], /attacks\[0\]\.norm must be one of linf, l2/);
    bad([{ method: 'spsa', eps: [0.2], norm: 'l2' }], /not supported by spsa/);
    bad([{ method: 'pgd', eps: [-0.1] }], /eps\[0\] must be >= 0/);
    bad([{ method: 'pgd', eps: [5] }], /beyond the \[-1, 1\] input box \(at most 2 for linf\)/);
    bad([{ method: 'square', eps: [0.2], queries: 0 }], /queries must be >= 1, got 0/);
    bad([{ method: 'pgd', eps: [0.2], steps: 1e9 }], /steps must be <= 10000/);
    bad([{ method: 'pgd', eps: [0.2], restarts: 1e9 }], /restarts must be <= 1000/);
    bad([{ method: 'pgd', eps: [0.2], queries: 10 }], /queries applies to square, autoattack, not pgd/);
    bad([{ method: 'pgd', eps: [0.2], colour: 'red' }], /colour is not a field of pgd/);
    bad([{ method: 'square', eps: [0.2], modes: ['first'] }], /modes does not apply to square/);
    bad([{ method: 'autoattack', eps: [0.2], stages: 'apgd-ce,fab' }], /unknown stage "fab"/);
    bad([{ method: 'transfer', eps: [0.2] }], /surrogate is missing/);
    bad([{ method: 'transfer', eps: [0.2], surrogate: 'x', via: 'square' }], /via must be a white-box attack/);
    bad([{ method: 'gaussian', eps: [0.2], targeted: true }], /targeted does not apply to gaussian/);
    // L2 radii may exceed 2 (the box allows up to 2 * sqrt(784) = 56)
    expect(suite([{ method: 'pgd', eps: [3], norm: 'l2' }]).attacks[0].eps).toEqual([3]);
  });

  it('cnnf attack: a surrogate with another class count, and flags the method does not take, exit 2 with one line', async () => {
    const r = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'pgd', '--eps', '0.2', '--queries', '10', '--test-subset', 'stride:1000', '--workers', '1']);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/--queries applies to square, autoattack, not pgd/);
    const l = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'pgd', '--loss', 'hinge', '--eps', '0.2', '--test-subset', 'stride:1000']);
    expect(l.code).toBe(2);
    expect(oneLineError(l)).toMatch(/--loss/);
    const e = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'fgsm', '--eps', '2.5', '--test-subset', 'stride:1000']);
    expect(e.code).toBe(2);
    expect(oneLineError(e)).toMatch(/beyond the \[-1, 1\] input box/);
    // a transfer surrogate trained for 5 classes cannot attack a 10-class evaluation
    await useBackend('wasm', { quiet: true });
    const tmp = mkdtempSync(join(tmpdir(), 'cnnf-reg-'));
    try {
      const small = join(tmp, 'five.safetensors');
      await saveCheckpoint(small, CNNF.init({ arch: 'small', numClasses: 5, cycles: 0 }, 1));
      const s = await cnnf(['attack', '--model', referenceModel('cnn-adv'), '--method', 'transfer', '--surrogate', small, '--eps', '0.2', '--test-subset', 'stride:1000']);
      expect(s.code).toBe(2);
      expect(oneLineError(s)).toMatch(/surrogate .*five\.safetensors has 5 classes, the data 10/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
