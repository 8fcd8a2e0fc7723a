/**
 * Memory from small files and imports that must not be written (issue 22, items 1, 2, 4, 7): .pt
 * files generated here (small on disk) whose zip entries, tensor views or pickle DAG would make cnnf
 * allocate or work far beyond the file's size are refused before the allocation, with one line naming
 * the file; `cnnf import` refuses weights that would give a checkpoint cnnf cannot read (float16
 * overflow, 3e38), integer tensors as weights, its own input as output, and a FIFO; nothing written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { parseTorchCheckpoint, encodeTorchCheckpoint } from '../src/io/torch.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { cnnf as cli, inParallel, oneLineError, ROOT } from './helpers/cli.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'cnnf-hostile-pt-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface RawEntry { name: string; method: 0 | 8; data: Buffer; crc: number; usize: number }

/** A zip written by hand, so that declared sizes can be anything (yazl computes them). */
function zipOf(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let off = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0); h.writeUInt16LE(20, 4); h.writeUInt16LE(0, 6); h.writeUInt16LE(e.method, 8);
    h.writeUInt16LE(0, 10); h.writeUInt16LE(0x21, 12); h.writeUInt32LE(e.crc >>> 0, 14); h.writeUInt32LE(e.data.length, 18);
    h.writeUInt32LE(e.usize, 22); h.writeUInt16LE(name.length, 26); h.writeUInt16LE(0, 28);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0); c.writeUInt16LE(20, 4); c.writeUInt16LE(20, 6); c.writeUInt16LE(0, 8); c.writeUInt16LE(e.method, 10);
    c.writeUInt16LE(0, 12); c.writeUInt16LE(0x21, 14); c.writeUInt32LE(e.crc >>> 0, 16); c.writeUInt32LE(e.data.length, 20);
    c.writeUInt32LE(e.usize, 24); c.writeUInt16LE(name.length, 28); c.writeUInt32LE(off, 42);
    central.push(c, name);
    parts.push(h, name, e.data);
    off += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(off, 16);
  return Buffer.concat([...parts, cd, end]);
}

const stored = (name: string, data: Buffer): RawEntry => ({ name, method: 0, data, crc: zlib.crc32(data), usize: data.length });

/** Pickle opcodes. */
const P = {
  proto: Buffer.from([0x80, 0x02]),
  stop: Buffer.from([0x2e]),
  str(s: string | Buffer): Buffer {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    const h = Buffer.alloc(5);
    h[0] = 0x58;
    h.writeUInt32LE(b.length, 1);
    return Buffer.concat([h, b]);
  },
  int(n: number): Buffer {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1);
    return b;
  },
  put: (i: number) => Buffer.from([0x71, i]),
  get: (i: number) => Buffer.from([0x68, i]),
  global: (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`, 'latin1'),
};
const op = (...codes: number[]) => Buffer.from(codes);

function ptOf(pickle: Buffer, data: RawEntry[] = []): Buffer {
  return zipOf([stored('archive/data.pkl', pickle), ...data, stored('archive/byteorder', Buffer.from('little'))]);
}

async function refusedWith(buf: Buffer, name: string, re: RegExp): Promise<void> {
  let err: unknown;
  try {
    await parseTorchCheckpoint(buf, name);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  const msg = (err as Error).message;
  expect(msg).toMatch(re);
  expect(msg.startsWith(name)).toBe(true);
  expect(msg).not.toContain('\n');
}

/** A pickle of 25 dicts, each holding the one below twice (through the memo): 2^24 paths. */
function dagPickle(): Buffer {
  const parts: Buffer[] = [P.proto, op(0x7d), P.put(0), P.str('w'), P.int(1), op(0x73), op(0x30)];
  for (let i = 1; i <= 24; i++) {
    parts.push(op(0x7d), P.put(i), P.str('a'), P.get(i - 1), op(0x73), P.str('b'), P.get(i - 1), op(0x73));
    if (i < 24) parts.push(op(0x30));
  }
  parts.push(P.stop);
  return Buffer.concat(parts);
}

describe('memory and work from small .pt files', () => {
  it('2048 entries of 1 MiB each, deflated to a few KB: the ratio counts over all entries', async () => {
    const mib = Buffer.alloc(1024 * 1024);
    const deflated = zlib.deflateRawSync(mib, { level: 9 });
    const crc = zlib.crc32(mib);
    const entries: RawEntry[] = Array.from({ length: 2048 }, (_, i) => ({ name: `archive/data/${i}`, method: 8, data: deflated, crc, usize: mib.length }));
    const buf = zipOf([stored('archive/data.pkl', Buffer.concat([P.proto, op(0x7d), P.stop])), ...entries]);
    expect(buf.length).toBeLessThan(4 * 1024 * 1024);
    await refusedWith(buf, 'many.pt', /inflate \d+ bytes to \d+ in total.*zip bomb/);
  });

  it('a 256 MiB storage entry declared by a 3 MB file (ratio under 100) is refused before it is inflated', async () => {
    const junk = Buffer.alloc(3 * 1024 * 1024, 7);
    const buf = zipOf([{ name: 'archive/data/0', method: 8, data: junk, crc: 0, usize: 256 * 1024 * 1024 }, stored('archive/data.pkl', Buffer.concat([P.proto, op(0x7d), P.stop]))]);
    await refusedWith(buf, 'storage.pt', /zip entry archive\/data\/0 \(268435456 bytes\) would make cnnf allocate more than \d+ bytes/);
  });

  it('full-size views of one storage, beyond the file\'s allocation budget, are refused before the tensor is allocated', async () => {
    const n = 8 * 1024 * 1024;
    const parts: Buffer[] = [P.proto, op(0x7d), op(0x28)];
    for (let i = 0; i < 4; i++) {
      parts.push(P.str(`v${i}`), P.global('torch._utils', '_rebuild_tensor_v2'), op(0x28, 0x28), P.str('storage'), P.global('torch', 'ByteStorage'), P.str('0'), P.str('cpu'), P.int(n), op(0x74, 0x51));
      parts.push(P.int(0), P.int(n), op(0x85), P.int(1), op(0x85), op(0x89), P.global('collections', 'OrderedDict'), op(0x29, 0x52), op(0x74, 0x52));
    }
    parts.push(op(0x75), P.stop);
    const buf = ptOf(Buffer.concat(parts), [stored('archive/data/0', Buffer.alloc(n, 1))]);
    await refusedWith(buf, 'views.pt', /tensor of shape \[8388608\] \(33554432 bytes\) would make cnnf allocate more than/);
  });

  it('a pickle DAG through the memo (2^24 paths in 400 bytes) and 1 MiB keys are refused without walking them', async () => {
    const dag = ptOf(dagPickle());
    expect(dag.length).toBeLessThan(2000);
    await refusedWith(dag, 'dag.pt', /the same dict appears twice/);
    const key = Buffer.alloc(1024 * 1024, 0x61);
    // 32 levels {K: {K: ... {K: 1}}} with one 1 MiB key K (memoised), built inside out with SETITEM
    const nested: Buffer[] = [P.proto, P.str(key), P.put(0), op(0x30), op(0x7d), P.get(0), P.int(1), op(0x73)];
    for (let i = 0; i < 31; i++) nested.push(P.put(1), op(0x30), op(0x7d), P.get(0), P.get(1), op(0x73));
    nested.push(P.stop);
    await refusedWith(ptOf(Buffer.concat(nested)), 'keys.pt', /a dict key longer than 4096 characters \(1048576\)/);
  });
});

describe('cnnf import refuses what it must not write', () => {
  /** The reference-named weights of the fixture (fmnist, fc 64/32, ind 2), without the "param." prefix. */
  const reference = (): Map<string, { shape: number[]; data: Float32Array }> => {
    const f = parseSafetensors(readFileSync(join(ROOT, 'fixtures', 'cnnf-ind2-c2.safetensors')), 'fixture');
    return new Map([...f.tensors].filter(([k]) => k.startsWith('param.')).map(([k, t]) => [k.slice('param.'.length), { shape: t.shape, data: Float32Array.from(t.data) }]));
  };

  it('float16 overflow, 3e38 weights, int64 weights, -o equal to the input, a FIFO: exit 2, one line naming the file, nothing written', async () => {
    const f16 = reference();
    f16.get('fc1.weight')!.data[0] = 1e5;
    const huge = reference();
    for (const t of huge.values()) t.data.fill(3e38);
    const paths = { f16: join(tmp, 'f16.pt'), huge: join(tmp, 'huge.pt'), int: join(tmp, 'int.safetensors'), self: join(tmp, 'self.pt'), fifo: join(tmp, 'fifo.pt'), dag: join(tmp, 'dag.pt') };
    writeFileSync(paths.f16, await encodeTorchCheckpoint(f16));
    writeFileSync(paths.huge, await encodeTorchCheckpoint(huge));
    writeFileSync(paths.self, await encodeTorchCheckpoint(reference()));
    writeFileSync(paths.dag, ptOf(dagPickle()));
    // a safetensors file whose fc2 bias is int64
    const ref = reference();
    const header: Record<string, unknown> = {};
    const blobs: Buffer[] = [];
    let off = 0;
    for (const [k, t] of ref) {
      const b = k === 'fc1_bias.bias' ? Buffer.from(new BigInt64Array(t.data.length).fill(3n).buffer) : Buffer.from(t.data.buffer);
      header[k] = { dtype: k === 'fc1_bias.bias' ? 'I64' : 'F32', shape: t.shape, data_offsets: [off, off + b.length] };
      blobs.push(b);
      off += b.length;
    }
    let json = JSON.stringify(header);
    while (json.length % 8 !== 0) json += ' ';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(paths.int, Buffer.concat([len, Buffer.from(json), ...blobs]));
    expect(spawnSync('mkfifo', [paths.fifo]).status).toBe(0);
    const selfBefore = readFileSync(paths.self);
    const args = ['--from', 'pytorch', '--cycles', '2'];
    const out = (n: string) => join(tmp, `out-${n}.safetensors`);
    const cases: Array<[string, string[], RegExp, string]> = [
      ['f16', [paths.f16, ...args, '--f16', '-o', out('f16')], /weight fc1.weight holds 1\.000e\+5, beyond float16's range/, out('f16')],
      ['huge', [paths.huge, ...args, '-o', out('huge')], /non-finite logits.*not imported/, out('huge')],
      ['int', [paths.int, ...args, '-o', out('int')], /tensor fc1_bias.bias holds integers \(I64\)/, out('int')],
      ['self', [paths.self, ...args, '-o', paths.self], /is the input/, out('self')],
      ['fifo', [paths.fifo, ...args, '-o', out('fifo')], /not a regular file \(it is a FIFO\)/, out('fifo')],
      ['dag', [paths.dag, ...args, '-o', out('dag')], /the same dict appears twice/, out('dag')],
    ];
    const results = await inParallel(cases.map(([, a]) => () => cli(['import', ...a], { timeoutMs: 60_000 })), 3);
    results.forEach((r, i) => {
      const [name, a, re, o] = cases[i]!;
      expect(r.code, `${name}: ${r.stderr}`).toBe(2);
      const line = oneLineError(r);
      expect(line, name).toMatch(re);
      expect(line, name).toContain(name === 'self' ? paths.self : a[0]!);
      expect(existsSync(o), name).toBe(false);
    });
    expect(readFileSync(paths.self).equals(selfBefore)).toBe(true);
    // the untouched weights still import (the checks refuse only what cnnf cannot read)
    const ok = await cli(['import', paths.self, ...args, '-o', out('ok')]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(existsSync(out('ok'))).toBe(true);
  }, 120_000);
});
