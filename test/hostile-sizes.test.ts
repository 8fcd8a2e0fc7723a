/**
 * Size refusals say the actual size and the limit exactly (issue 22, item 7): a CIFAR-10 batch of
 * 60,001 records (a sparse file: nothing on disk) is refused in records and bytes, and a file whose
 * size and limit round to the same MiB is given in bytes, never "175.8 MiB, more than the 175.8 MiB limit".
 */
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/errors.js';
import { loadDataset } from '../src/data/index.js';
import { readInputFile } from '../src/io/files.js';

const tmp = mkdtempSync(join(tmpdir(), 'cnnf-sizes-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const refused = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('not refused');
};

describe('size refusals', () => {
  it('a 60,001-record CIFAR-10 batch: records and bytes, against the 60,000-record limit', () => {
    const batch = join(tmp, 'test_batch.bin');
    writeFileSync(batch, '');
    truncateSync(batch, 60_001 * 3073);
    const msg = refused(() => loadDataset({ dataset: 'cifar10', dataDir: tmp, testOnly: true }));
    expect(msg).toBe(`CIFAR-10 batch ${batch} is 184383073 bytes (60001 records of 3073 bytes), more than the 60000 records (184380000 bytes) a batch may hold`);
    truncateSync(batch, 60_000 * 3073 + 5);
    expect(refused(() => loadDataset({ dataset: 'cifar10', dataDir: tmp, testOnly: true }))).toMatch(/\(60000 records of 3073 bytes and 5 bytes more\)/);
  });

  it('sizes that round alike are given in bytes', () => {
    const f = join(tmp, 'big.json');
    writeFileSync(f, '');
    truncateSync(f, 10 * 1024 * 1024 + 1);
    expect(refused(() => readInputFile(f, 'suite file', { maxBytes: 10 * 1024 * 1024 }))).toBe(`suite file ${f} is 10485761 bytes, more than the 10485760-byte limit`);
    expect(refused(() => readInputFile(f, 'suite file', { maxBytes: 1024 * 1024 }))).toBe(`suite file ${f} is 10.0 MiB, more than the 1 MiB limit`);
  });
});
