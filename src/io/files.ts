/**
 * The checks every file cnnf reads or writes goes through.
 *
 * Inputs: `readInputFile` opens the path (following symlinks) without blocking, then looks at what
 * it actually opened: anything but a regular file (a FIFO, a character or block device such as
 * /dev/zero, a socket, a directory) is refused before a byte is read, and so is a file larger than
 * the caller's limit. A FIFO therefore cannot hang a reader and /dev/zero cannot grow its memory.
 *
 * Outputs: `checkOutputFile` / `checkOutputDir` run before any long work. They find the deepest
 * existing ancestor of the path, require it to be a directory ("not a directory" otherwise), probe
 * that a file can be created there (a virtual filesystem such as /proc, a read-only mount or a
 * permission problem fails here, in milliseconds), and refuse an existing target that is not a
 * regular file (or not a directory, for directory outputs). `makeDirs` creates missing directories
 * one level at a time (Node's recursive mkdir spins forever under /proc).
 */
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { dirname, resolve, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UsageError } from '../errors.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Size limits of the files cnnf reads (checked against the opened file's size before reading). */
export const INPUT_LIMITS = {
  /** Checkpoints, training states, fixtures, PyTorch imports. */
  safetensors: 2 * GiB - 1,
  /** Suites, gate configs. */
  json: 64 * MiB,
  /** Results files. */
  results: 512 * MiB,
  /** One IDX file (compressed or not); EMNIST letters train images are 98 MB uncompressed. */
  idx: 1 * GiB,
  /** Training log CSVs. */
  csv: 512 * MiB,
  /** Image dumps inlined in a report. */
  image: 20 * MiB,
} as const;

/** What kind of filesystem object `st` is, in words. */
export function kindOf(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

function fmtBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(n % GiB === 0 ? 0 : 1)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;
  return `${n} bytes`;
}

export interface ReadInputOptions {
  /** Largest accepted size in bytes. */
  maxBytes: number;
  /** Message for a missing file (default "`what` not found: PATH"). */
  missing?: (path: string) => string;
  /** Check only; read nothing (returns an empty buffer). */
  peek?: boolean;
  /** Message for a file over maxBytes (default: its size and the limit). */
  tooBig?: (path: string, bytes: number) => string;
}

/**
 * Reads a regular file whole, after checking (on the opened descriptor, so there is no race with
 * a path swapped in between) that it is a regular file no larger than `maxBytes`. `what` names the
 * file in messages ("checkpoint", "results file", ...). Every problem is a one-line UsageError.
 */
export function readInputFile(path: string, what: string, opts: ReadInputOptions): Buffer {
  if (path.trim() === '') throw new UsageError(`${what}: empty path`);
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking forever
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(opts.missing ? opts.missing(path) : `${what} not found: ${path}`);
    if (code === 'ENOTDIR') throw new UsageError(`cannot read ${what} ${path}: a component of the path is not a directory`);
    if (code === 'ELOOP') throw new UsageError(`cannot read ${what} ${path}: too many levels of symbolic links`);
    throw new UsageError(`cannot read ${what} ${path}: ${code ?? (e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new UsageError(`${what} ${path} is a directory`);
    if (!st.isFile()) throw new UsageError(`${what} ${path} is not a regular file (it is ${kindOf(st)})`);
    if (st.size > opts.maxBytes) {
      if (opts.tooBig) throw new UsageError(opts.tooBig(path, st.size));
      // rounded sizes that read the same ("175.8 MiB, more than the 175.8 MiB limit") are given exactly
      const roughly = (n: number): string => (n >= GiB ? `${(n / GiB).toFixed(1)}G` : n >= MiB ? `${(n / MiB).toFixed(1)}M` : `${n}`);
      const [size, max] = roughly(st.size) === roughly(opts.maxBytes) ? [`${st.size} bytes`, `${opts.maxBytes}-byte`] : [fmtBytes(st.size), fmtBytes(opts.maxBytes)];
      throw new UsageError(`${what} ${path} is ${size}, more than the ${max} limit`);
    }
    if (opts.peek) return Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < st.size) {
      const n = readSync(fd, buf, off, st.size - off, null);
      if (n === 0) break;
      off += n;
    }
    return off === st.size ? buf : buf.subarray(0, off);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * The checks of readInputFile without reading: for commands that must refuse a bad input before
 * they start a backend or other slow work, and read it later.
 */
export function checkInputFile(path: string, what: string, opts: ReadInputOptions): void {
  readInputFile(path, what, { ...opts, peek: true });
}

/**
 * Whether two paths name the same existing file (by realpath, so symlinks and `./` spellings count):
 * an output must never be one of the command's inputs.
 */
export function sameFile(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** Stats of `p` without following a final symlink, or null when nothing is there. */
function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ENOTDIR') return null; // reported by the ancestor walk
    throw e;
  }
}

function statOrNull(p: string): Stats | null {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

/** The deepest existing ancestor of `abs` (itself excluded) and the path components below it. */
function existingAncestor(abs: string, flag: string): { dir: string; missing: string[] } {
  const missing: string[] = [];
  let cur = dirname(abs);
  for (;;) {
    const st = statOrNull(cur);
    if (st) {
      if (!st.isDirectory()) throw new UsageError(`${flag} ${abs}: ${cur} is not a directory`);
      return { dir: cur, missing: missing.reverse() };
    }
    const parent = dirname(cur);
    if (parent === cur) throw new UsageError(`${flag} ${abs}: no existing parent directory`);
    missing.push(cur);
    cur = parent;
  }
}

/** Creates and removes a probe file in `dir`: proves that files can be created there. */
function probeWritable(dir: string, flag: string, target: string): void {
  const probe = join(dir, `.cnnf-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NONBLOCK, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied'
      : code === 'EROFS' ? 'read-only filesystem'
        : code === 'ENOSPC' ? 'no space left on device'
          : code === 'ENOENT' ? 'not a writable filesystem (ENOENT)'
            : (code ?? (e as Error).message);
    throw new UsageError(`${flag} ${target}: cannot create files in ${dir}: ${why}`);
  }
  closeSync(fd);
  try {
    unlinkSync(probe);
  } catch {
    /* best effort */
  }
}

/**
 * Checks, before any work, that a file can be written at `path`: its deepest existing ancestor is
 * a directory where files can be created, and `path` is missing or a regular file (a symlink to a
 * regular file is fine). `flag` names the option in messages ("--json", "-o", ...). Writes nothing.
 */
export function checkOutputFile(path: string, flag: string): string {
  if (path.trim() === '') throw new UsageError(`${flag} must not be empty`);
  const abs = resolve(path);
  const { dir, missing } = existingAncestor(abs, flag);
  const st = missing.length === 0 ? statOrNull(abs) : null;
  const lst = missing.length === 0 ? lstatOrNull(abs) : null;
  if (lst && !st) throw new UsageError(`${flag} ${path} is a dangling symbolic link`);
  if (st && st.isDirectory()) throw new UsageError(`${flag} ${path} is a directory`);
  if (st && !st.isFile()) throw new UsageError(`${flag} ${path} exists and is not a regular file (it is ${kindOf(st)}); refusing to replace it`);
  probeWritable(dir, flag, path);
  return abs;
}

/**
 * Checks, before any work, that a directory can be created or written at `path`: missing, or a
 * directory in which files can be created; its deepest existing ancestor must be a directory.
 */
export function checkOutputDir(path: string, flag: string): string {
  if (path.trim() === '') throw new UsageError(`${flag} must not be empty`);
  const abs = resolve(path);
  const st = statOrNull(abs);
  if (st) {
    if (!st.isDirectory()) throw new UsageError(`${flag} ${path} exists and is not a directory (it is ${kindOf(st)})`);
    probeWritable(abs, flag, path);
    return abs;
  }
  const { dir } = existingAncestor(abs, flag);
  probeWritable(dir, flag, path);
  return abs;
}

/**
 * mkdir -p without Node's recursive mkdir (which loops forever on some virtual filesystems):
 * each missing level is created in turn; any failure is a one-line UsageError.
 */
export function makeDirs(dir: string): void {
  const abs = resolve(dir);
  const st = statOrNull(abs);
  if (st) {
    if (!st.isDirectory()) throw new UsageError(`cannot create directory ${dir}: ${abs} exists and is not a directory`);
    return;
  }
  const { missing } = existingAncestor(abs, 'cannot create directory');
  for (const d of [...missing, abs]) {
    try {
      mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && statOrNull(d)?.isDirectory()) continue;
      if (code === 'EEXIST' || code === 'ENOTDIR') throw new UsageError(`cannot create directory ${dir}: ${d} exists and is not a directory`);
      throw new UsageError(`cannot create directory ${dir}: ${code ?? (e as Error).message}`);
    }
  }
}
