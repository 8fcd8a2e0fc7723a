/**
 * Atomic writes across filesystems (issue 22, items 6 and 7): a multi-file output whose files are
 * symlinks into another filesystem (/dev/shm is a tmpfs where there is one, else another folder) is
 * staged beside each resolved target, so no rename crosses devices: afterwards every file is new,
 * the symlinks still point where they did, and no staging or old file is left in either folder.
 * `export --to pytorch X -o X` is refused (the input would be replaced).
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileAtomic, writeFilesAtomic } from '../src/io/atomic.js';
import { cnnf as cli, oneLineError, ROOT } from './helpers/cli.js';

const dirs: string[] = [];
const fresh = (base: string): string => {
  const d = mkdtempSync(join(base, 'cnnf-xfs-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A folder on another filesystem than the temp dir when the machine has one (/dev/shm), else another folder. */
function elsewhere(): { dir: string; otherDevice: boolean } {
  const local = tmpdir();
  try {
    if (statSync('/dev/shm').isDirectory() && statSync('/dev/shm').dev !== statSync(local).dev) {
      const d = fresh('/dev/shm');
      return { dir: d, otherDevice: true };
    }
  } catch { /* no /dev/shm */ }
  return { dir: fresh(local), otherDevice: false };
}

describe('atomic writes through symlinks into another filesystem', () => {
  it('writeFilesAtomic: every file new, symlinks kept, nothing left behind in either folder', () => {
    const out = fresh(tmpdir());
    const far = elsewhere();
    if (!far.otherDevice) console.warn('[atomic-xfs] /dev/shm is not a separate filesystem here: testing with a symlink into another folder');
    writeFileSync(join(far.dir, 'model.json'), 'old model');
    writeFileSync(join(far.dir, 'weights.bin'), 'old weights');
    symlinkSync(join(far.dir, 'model.json'), join(out, 'model.json'));
    symlinkSync(join(far.dir, 'weights.bin'), join(out, 'weights.bin'));
    writeFileSync(join(out, 'keep.txt'), 'keep');
    writeFilesAtomic(out, [['weights.bin', 'new weights'], ['extra.txt', 'extra'], ['model.json', 'new model']]);
    expect(readFileSync(join(out, 'model.json'), 'utf8')).toBe('new model');
    expect(readFileSync(join(out, 'weights.bin'), 'utf8')).toBe('new weights');
    expect(lstatSync(join(out, 'model.json')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(out, 'weights.bin'))).toBe(join(far.dir, 'weights.bin'));
    expect(readdirSync(out).sort()).toEqual(['extra.txt', 'keep.txt', 'model.json', 'weights.bin']);
    expect(readdirSync(far.dir).sort()).toEqual(['model.json', 'weights.bin']);
    // one file through a symlink (the single-file writer stages beside the resolved target too)
    writeFileAtomic(join(out, 'model.json'), 'newer');
    expect(readFileSync(join(far.dir, 'model.json'), 'utf8')).toBe('newer');
    expect(readdirSync(far.dir).sort()).toEqual(['model.json', 'weights.bin']);
  });

  it('a dangling symlink among the files: refused before anything is written, the old files untouched', () => {
    const out = fresh(tmpdir());
    writeFileSync(join(out, 'a.txt'), 'old a');
    symlinkSync(join(out, 'missing', 'b.txt'), join(out, 'b.txt'));
    expect(() => writeFilesAtomic(out, [['a.txt', 'new a'], ['b.txt', 'new b']])).toThrow(/dangling symbolic link/);
    expect(readFileSync(join(out, 'a.txt'), 'utf8')).toBe('old a');
    expect(readdirSync(out).sort()).toEqual(['a.txt', 'b.txt']);
  });

  it('export --to pytorch X -o X: exit 2, one line, the input unchanged', async () => {
    const d = fresh(tmpdir());
    mkdirSync(join(d, 'sub'));
    const ck = join(d, 'cnn.safetensors');
    writeFileSync(ck, readFileSync(join(ROOT, 'models', 'cnn-fmnist.safetensors')));
    const before = readFileSync(ck);
    symlinkSync(ck, join(d, 'sub', 'link.safetensors'));
    const r = await cli(['export', ck, '--to', 'pytorch', '-o', join(d, 'sub', 'link.safetensors')]);
    expect(r.code).toBe(2);
    expect(oneLineError(r)).toMatch(/is the input/);
    expect(readFileSync(ck).equals(before)).toBe(true);
    expect(existsSync(join(d, 'sub', 'link.safetensors'))).toBe(true);
  }, 60_000);
});
