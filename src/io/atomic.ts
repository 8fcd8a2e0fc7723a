/**
 * Atomic file output: write to a temporary sibling, fsync, then rename over the target. The rename
 * never replaces anything but a regular file (a device node, FIFO, socket or directory at the
 * target is refused); a symlink to a regular file is written through (its target is replaced).
 */
import { closeSync, fsyncSync, lstatSync, openSync, readdirSync, realpathSync, renameSync, rmSync, rmdirSync, statSync, writeSync, mkdtempSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UsageError } from '../errors.js';
import { kindOf, makeDirs } from './files.js';

/** The path a rename should replace: `path` itself, or the regular file a symlink at `path` points to. */
function renameTarget(path: string): string {
  let lst;
  try {
    lst = lstatSync(path);
  } catch {
    return path; // missing: created by the rename
  }
  if (lst.isFile()) return path;
  if (lst.isSymbolicLink()) {
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new UsageError(`cannot write ${path}: it is a dangling symbolic link`);
    }
    if (st.isFile()) return realpathSync(path);
    throw new UsageError(`cannot write ${path}: it points to ${kindOf(st)}, not a regular file; refusing to replace it`);
  }
  throw new UsageError(`cannot write ${path}: it exists and is ${kindOf(lst)}, not a regular file; refusing to replace it`);
}

function writeAll(fd: number, data: string | Uint8Array | Uint8Array[]): void {
  const parts = Array.isArray(data) ? data : [data];
  for (const p of parts) {
    const buf = typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  }
}

function errText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on device';
  if (code === 'EDQUOT') return 'disk quota exceeded';
  if (code === 'EROFS') return 'read-only filesystem';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return code ?? (e as Error).message;
}

/** Writes `data` to a fresh temporary file in `dir` and fsyncs it; returns its path (removed on failure). */
function writeTemp(dir: string, stem: string, data: string | Uint8Array | Uint8Array[], shown: string): string {
  const tmp = join(dir, `.${stem}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o644);
  } catch (e) {
    throw new UsageError(`cannot write ${shown}: ${errText(e)}`);
  }
  try {
    writeAll(fd, data);
    fsyncSync(fd);
  } catch (e) {
    try { closeSync(fd); } catch { /* already closed */ }
    rmSync(tmp, { force: true });
    throw new UsageError(`cannot write ${shown}: ${errText(e)}`);
  }
  closeSync(fd);
  return tmp;
}

export function writeFileAtomic(path: string, data: string | Uint8Array | Uint8Array[]): void {
  makeDirs(dirname(path));
  const target = renameTarget(path);
  const tmp = writeTemp(dirname(target), basename(target), data, path);
  try {
    // checked again right before the rename: nothing but a regular file is ever replaced
    renameTarget(target);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot write ${path}: ${errText(e)}`);
  }
}

/**
 * Writes several files into `dir` all or nothing: every file is first written and fsynced into a
 * staging directory inside `dir`; only when all of them are complete are they renamed into place
 * (renames need no space), in order, so the last one (e.g. index.html) appears last. On failure
 * (out of space, ...) nothing of this call is left behind and files already in `dir` are untouched.
 */
export function writeFilesAtomic(dir: string, files: ReadonlyArray<[name: string, data: string | Uint8Array | Uint8Array[]]>): string[] {
  const existed = (() => {
    try {
      return statSync(dir).isDirectory();
    } catch {
      return false;
    }
  })();
  makeDirs(dir);
  for (const [name] of files) {
    if (name === '' || name.includes('/') || name.includes('\\') || name.startsWith('.')) throw new Error(`writeFilesAtomic: bad file name ${name}`);
  }
  const targets = files.map(([name]) => renameTarget(join(dir, name)));
  let stage: string;
  try {
    stage = mkdtempSync(join(dir, `.cnnf-stage-${process.pid}-`));
  } catch (e) {
    throw new UsageError(`cannot write into ${dir}: ${errText(e)}`);
  }
  const cleanup = (failed = false) => {
    try {
      for (const f of readdirSync(stage)) rmSync(join(stage, f), { force: true });
      rmdirSync(stage);
      // a directory this call created is removed again when nothing could be written into it
      if (failed && !existed) rmdirSync(dir);
    } catch {
      /* best effort */
    }
  };
  try {
    const staged = files.map(([name, data]) => writeTemp(stage, name, data, join(dir, name)));
    for (const t of targets) renameTarget(t);
    staged.forEach((tmp, i) => renameSync(tmp, targets[i]!));
  } catch (e) {
    cleanup(true);
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot write into ${dir}: ${errText(e)}`);
  }
  cleanup();
  return targets;
}
