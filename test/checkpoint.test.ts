import { existsSync, mkdtempSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, wasm, maxAbsDiff } from './helpers/tf.js';
import { cnnf, oneLineError, ROOT } from './helpers/cli.js';
import { encodeSafetensors, parseSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { loadCheckpoint, saveCheckpoint } from '../src/io/checkpoint.js';
import { CNNF } from '../src/models/cnnf.js';
import { UsageError } from '../src/errors.js';

const FIXTURE = join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors');
const tmp = () => mkdtempSync(join(tmpdir(), 'cnnf-ckpt-'));

function header(obj: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(obj));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json]);
}

beforeAll(wasm);

describe('safetensors validation', () => {
  const bad = (buf: Buffer) => () => parseSafetensors(buf, 'x.safetensors');
  it('rejects truncated, oversized and malformed headers with one-line errors', () => {
    expect(bad(Buffer.from([1, 2, 3]))).toThrow(/not a safetensors file/);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(1n << 40n);
    expect(bad(huge)).toThrow(/header length .* out of bounds/);
    const short = Buffer.alloc(16);
    short.writeBigUInt64LE(100n);
    expect(bad(short)).toThrow(/truncated/);
    expect(bad(Buffer.concat([header({}).subarray(0, 8), Buffer.from('{not json')]))).toThrow();
    expect(bad(header({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }))).toThrow(/unsupported dtype "Q7"/);
    expect(bad(Buffer.concat([header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }), Buffer.alloc(4)]))).toThrow(/do not match shape/);
    expect(bad(Buffer.concat([header({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }), Buffer.alloc(4)]))).toThrow(/truncated/);
    try {
      bad(header({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }))();
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError);
      expect((e as Error).message).not.toContain('\n');
    }
  });

  it('round-trips F32 exactly and F16 to half precision', () => {
    const data = Float32Array.from([0, 1.5, -2.25, 3.14159, 1e-3, 65504]);
    const tensors = new Map([['a', { shape: [2, 3], data }], ['b', { shape: [6], data, dtype: 'F16' as const }]]);
    const parsed = parseSafetensors(Buffer.concat(encodeSafetensors(tensors, { k: 'v' })), 'mem');
    expect(Array.from(parsed.tensors.get('a')!.data)).toEqual(Array.from(data));
    expect(maxAbsDiff(parsed.tensors.get('b')!.data, data)).toBeLessThan(2e-3);
    expect(parsed.tensors.get('b')!.dtype).toBe('F16');
    expect(parsed.metadata).toEqual({ k: 'v' });
  });
});

describe('checkpoints', () => {
  it('save and load round-trip the weights and configuration', async () => {
    const m = CNNF.init({ arch: 'small', fc: [16], cycles: 2, ind: 1, resParam: 0.3 }, 7);
    const path = join(tmp(), 'm.safetensors');
    await saveCheckpoint(path, m, { readout: 'average', training: { epochs: 1 } });
    const loaded = await loadCheckpoint(path);
    expect(loaded.info.config).toEqual(m.config);
    expect(loaded.info.readout).toBe('average');
    expect(loaded.info.training).toEqual({ epochs: 1 });
    expect(loaded.sha256).toMatch(/^[0-9a-f]{64}$/);
    const x = tf.randomUniform([2, 28, 28, 1], -1, 1, 'float32', 3);
    expect(maxAbsDiff(m.logits(x).dataSync(), loaded.model.logits(x).dataSync())).toBe(0);
  });

  it('a loaded model releases every tensor and byte it holds when disposed (no reference left behind by tf.variable)', async () => {
    const path = join(ROOT, 'models', 'cnn-fmnist.safetensors');
    (await loadCheckpoint(path)).model.dispose(); // warm-up: one-time allocations of the backend
    const before = tf.memory();
    for (let i = 0; i < 3; i++) {
      const loaded = await loadCheckpoint(path);
      expect(tf.memory().numTensors).toBeGreaterThan(before.numTensors);
      loaded.model.dispose();
    }
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
  });

  it('rejects a checkpoint whose tensor shapes do not match its architecture', async () => {
    const m = CNNF.init({ arch: 'small', fc: [16] }, 1);
    const dir = tmp();
    const good = join(dir, 'good.safetensors');
    await saveCheckpoint(good, m);
    const parsed = parseSafetensors(readFileSync(good), good);
    const tensors = new Map([...parsed.tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
    tensors.set('fc1.weight', { shape: [1568, 17], data: new Float32Array(1568 * 17) });
    const badPath = join(dir, 'bad.safetensors');
    writeSafetensors(badPath, tensors, parsed.metadata);
    await expect(loadCheckpoint(badPath)).rejects.toThrow(/fc1.weight has shape \[1568, 17\], expected \[1568, 16\]/);
    await expect(loadCheckpoint(FIXTURE)).rejects.toThrow(/not a cnnf checkpoint.*cnnf import/);
  });

  it('writes atomically: a failed write leaves no partial or temporary file', () => {
    const dir = tmp();
    writeFileSync(join(dir, 'blocker'), 'file, not a directory');
    expect(() => writeSafetensors(join(dir, 'blocker', 'x.safetensors'), new Map())).toThrow(UsageError);
    expect(readdirSync(dir)).toEqual(['blocker']);
  });
});

describe('cnnf import and bad input on the command line', () => {
  it('imports the reference fixture weights and the result loads', async () => {
    const out = join(tmp(), 'fx.safetensors');
    const r = await cnnf(['import', '--from', 'pytorch', FIXTURE, '--prefix', 'param.', '--arch', 'fmnist', '--cycles', '2', '--res-param', '0.1', '-o', out]);
    expect(r.code, r.stderr).toBe(0);
    const c = await loadCheckpoint(out);
    expect(c.info.config).toEqual({ arch: 'fmnist', fc: [64, 32], numClasses: 10, ind: 2, cycles: 2, resParam: 0.1 });
  });

  const cases: Array<[string, string[], RegExp]> = [
    ['missing file', ['import', '--from', 'pytorch', 'nope.safetensors', '-o', 'x.safetensors'], /cannot read nope.safetensors: no such file/],
    ['unknown architecture', ['import', '--from', 'pytorch', FIXTURE, '--arch', 'resnet', '-o', 'x.safetensors'], /unknown architecture "resnet"/],
    ['negative cycles', ['import', '--from', 'pytorch', FIXTURE, '--cycles', '-1', '-o', 'x.safetensors'], /--cycles must be >= 0/],
    ['non-numeric cycles', ['import', '--from', 'pytorch', FIXTURE, '--cycles', 'two', '-o', 'x.safetensors'], /--cycles must be a number/],
    ['res_param out of range', ['import', '--from', 'pytorch', FIXTURE, '--res-param', '1.5', '-o', 'x.safetensors'], /--res-param must be <= 1/],
    ['ind out of range', ['import', '--from', 'pytorch', FIXTURE, '--ind', '3', '-o', 'x.safetensors'], /--ind must be <= 2/],
    ['wrong tensor names', ['import', '--from', 'pytorch', FIXTURE, '-o', 'x.safetensors'], /missing tensor fc1.weight.*--prefix param\./],
    ['unknown source format', ['import', '--from', 'onnx', FIXTURE, '-o', 'x.safetensors'], /--from must be one of pytorch/],
    ['unknown backend', ['conformance', FIXTURE, '--backend', 'tpu'], /--backend must be one of/],
    ['unavailable backend', ['conformance', FIXTURE, '--backend', 'tensorflow-gpu'], /backend tensorflow-gpu is not available/],
    ['conformance on a missing fixture', ['conformance', 'missing.safetensors'], /cannot read missing.safetensors/],
  ];
  for (const [name, args, pattern] of cases) {
    it(`${name}: one line, exit 2, nothing written`, async () => {
      const cwd = tmp();
      const r = await cnnf(args, { cwd });
      expect(r.code, r.stderr).toBe(2);
      expect(oneLineError(r)).toMatch(pattern);
      expect(existsSync(join(cwd, 'x.safetensors'))).toBe(false);
    });
  }

  it('a truncated file is a one-line error', async () => {
    const dir = tmp();
    const p = join(dir, 'trunc.safetensors');
    writeFileSync(p, readFileSync(FIXTURE).subarray(0, 5000));
    const r = await cnnf(['conformance', p]);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/truncated/);
  });
});
