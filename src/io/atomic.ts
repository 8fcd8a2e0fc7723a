/**
 * Atomic file output: write to a temporary sibling, fsync, then rename over the target. The rename
 * never replaces anything but a regular file (a device node, FIFO, socket or directory at the
 * target is refused); a symlink to a regular file is written through (its target is replaced).
 */
import { closeSync, fsyncSync, lstatSync, openSync, realpathSync, renameSync, rmSync, rmdirSync, statSync, writeSync } from 'node:fs';
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
 * Writes several files into `dir` all or nothing. Every file is first written and fsynced beside
 * the file it replaces: in `dir`, or, where `dir/NAME` is a symlink, in the folder of the file it
 * points to, so that no rename ever crosses a filesystem (a symlink into a tmpfs or another disk
 * cannot give EXDEV halfway). Only when all are complete are they renamed into place, in order (the
 * last one, e.g. index.html, appears last); each file they replace is first renamed aside, and if
 * any rename fails every file renamed so far is put back, so the files are all new or all old. On
 * failure (out of space, ...) nothing of this call is left behind. A crash (kill -9, power loss)
 * during the renames themselves can leave some files new and the old ones beside them as
 * `.NAME.old-*`; no error can.
 */
export function writeFilesAtomic(dir: string, files: ReadonlyArray<[name: string, data: string | Uint8Array | Uint8Array[]]>): string[] {
  const existed = (() => {
    try {
      return statSync(dir).isDirectory();
    } catch {
      return false;
    }
  })();
  for (const [name] of files) {
    if (name === '' || name.includes('/') || name.includes('\\') || name.startsWith('.')) throw new Error(`writeFilesAtomic: bad file name ${name}`);
  }
  makeDirs(dir);
  const targets = files.map(([name]) => renameTarget(join(dir, name)));
  const staged: string[] = [];
  const removeDir = () => {
    // a directory this call created is removed again when nothing could be written into it
    if (!existed) {
      try { rmdirSync(dir); } catch { /* best effort */ }
    }
  };
  try {
    files.forEach(([name, data], i) => staged.push(writeTemp(dirname(targets[i]!), basename(targets[i]!), data, join(dir, name))));
  } catch (e) {
    for (const t of staged) rmSync(t, { force: true });
    removeDir();
    throw e;
  }
  // renames: the old file aside (same folder), then the new one into place; undone on any failure
  const done: Array<{ target: string; aside: string | null }> = [];
  try {
    staged.forEach((tmp, i) => {
      const target = targets[i]!;
      renameTarget(target); // nothing but a regular file is ever replaced (checked again, right before)
      let aside: string | null = null;
      if (lexists(target)) {
        aside = join(dirname(target), `.${basename(target)}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
        renameSync(target, aside);
      }
      try {
        renameSync(tmp, target);
      } catch (e) {
        if (aside) renameSync(aside, target);
        throw e;
      }
      done.push({ target, aside });
    });
  } catch (e) {
    for (const { target, aside } of done.reverse()) {
      try {
        if (aside) renameSync(aside, target);
        else rmSync(target, { force: true });
      } catch { /* best effort: the old file stays beside as .NAME.old-* */ }
    }
    for (const t of staged) rmSync(t, { force: true });
    if (done.length === 0) removeDir();
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot write into ${dir}: ${errText(e)}${(e as NodeJS.ErrnoException).code === 'EXDEV' ? ' (a rename across filesystems; nothing was changed)' : ''}`);
  }
  for (const { aside } of done) if (aside) rmSync(aside, { force: true });
  return targets;
}

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
