/**
 * Bounded zip reading (yauzl) for untrusted archives such as PyTorch checkpoints: the entry count,
 * every entry's declared size, the total and the deflate ratio are checked before anything is
 * inflated; inflation stops at the declared size (yauzl's entry size validation), and every entry's
 * CRC-32 is verified. Any failure is a one-line UsageError naming the file.
 */
import * as zlib from 'node:zlib';
import yauzl from 'yauzl';
import { UsageError } from '../errors.js';
import type { AllocBudget } from './budget.js';

export interface ZipLimits {
  /** Most entries accepted in the central directory. */
  maxEntries: number;
  /** Largest declared uncompressed size of one entry, bytes. */
  maxEntryBytes: number;
  /** Largest sum of declared uncompressed sizes, bytes. */
  maxTotalBytes: number;
  /** Largest uncompressed/compressed ratio of a deflated entry (weights barely compress; bombs do). */
  maxRatio: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  maxEntries: 100_000,
  maxEntryBytes: 4 * 1024 ** 3 - 1,
  maxTotalBytes: 8 * 1024 ** 3,
  maxRatio: 100,
};

/** Deflated bytes that may inflate beyond maxRatio in total (small metadata entries compress well). */
const RATIO_SLACK = 4 * 1024 * 1024;

/**
 * Reads every entry of a zip held in memory; `select` may skip entries by name (they are still
 * bounded). The ratio check applies to the sum over all deflated entries (many entries of 1 MiB
 * each count as much as one large one); `budget`, when given, is charged for every entry read
 * before it is inflated.
 */
export async function readZipEntries(
  buf: Buffer, name: string, limits: Partial<ZipLimits> = {}, select: (entry: string) => boolean = () => true, budget?: AllocBudget,
): Promise<Map<string, Buffer>> {
  const lim = { ...DEFAULT_ZIP_LIMITS, ...limits };
  const bad = (msg: string) => new UsageError(`${name}: ${msg}`);
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(buf, { lazyEntries: true, validateEntrySizes: true, strictFileNames: true, decodeStrings: true });
  } catch (e) {
    throw bad(`not a readable zip archive (${oneLine(e)}); truncated or damaged?`);
  }
  if (zip.entryCount > lim.maxEntries) throw bad(`zip archive has ${zip.entryCount} entries (at most ${lim.maxEntries} accepted)`);
  const out = new Map<string, Buffer>();
  let total = 0;
  let inflated = 0;
  let deflated = 0;
  try {
    for (;;) {
      const entry = await nextEntry(zip, name);
      if (!entry) break;
      const fn = entry.fileName;
      if (fn.endsWith('/')) continue;
      if (out.has(fn)) throw bad(`zip archive has two entries named ${fn}`);
      if (entry.isEncrypted()) throw bad(`zip entry ${fn} is encrypted`);
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) throw bad(`zip entry ${fn} uses compression method ${entry.compressionMethod} (only stored and deflate are read)`);
      const size = entry.uncompressedSize;
      if (size > lim.maxEntryBytes) throw bad(`zip entry ${fn} declares ${size} bytes (at most ${lim.maxEntryBytes} accepted)`);
      total += size;
      if (total > lim.maxTotalBytes) throw bad(`zip entries declare more than ${lim.maxTotalBytes} bytes in total`);
      if (entry.compressionMethod === 8 && size > 1024 * 1024 && size > lim.maxRatio * Math.max(1, entry.compressedSize)) {
        throw bad(`zip entry ${fn} inflates ${entry.compressedSize} bytes to ${size} (ratio above ${lim.maxRatio}): refusing a zip bomb`);
      }
      if (entry.compressionMethod === 8) {
        inflated += size;
        deflated += entry.compressedSize;
        if (inflated > RATIO_SLACK && inflated > lim.maxRatio * Math.max(1, deflated)) {
          throw bad(`zip entries inflate ${deflated} bytes to ${inflated} in total, up to ${fn} (ratio above ${lim.maxRatio}): refusing a zip bomb`);
        }
      }
      if (entry.compressionMethod === 0 && entry.compressedSize !== size) throw bad(`zip entry ${fn}: stored sizes disagree (${entry.compressedSize} vs ${size})`);
      if (!select(fn)) continue;
      budget?.take(size, `zip entry ${fn}`);
      const data = await readEntry(zip, entry, size, fn, bad);
      if (typeof zlib.crc32 === 'function' && (zlib.crc32(data) >>> 0) !== (entry.crc32 >>> 0)) throw bad(`zip entry ${fn} fails its CRC-32 check (damaged file)`);
      out.set(fn, data);
    }
  } finally {
    zip.close();
  }
  return out;
}

function oneLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0];
}

function nextEntry(zip: yauzl.ZipFile, name: string): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const onEntry = (e: yauzl.Entry) => { cleanup(); resolve(e); };
    const onEnd = () => { cleanup(); resolve(undefined); };
    const onError = (e: Error) => { cleanup(); reject(new UsageError(`${name}: not a readable zip archive (${oneLine(e)}); truncated or damaged?`)); };
    const cleanup = () => { zip.off('entry', onEntry); zip.off('end', onEnd); zip.off('error', onError); };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

async function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, size: number, fn: string, bad: (m: string) => UsageError): Promise<Buffer> {
  let stream;
  try {
    stream = await zip.openReadStreamPromise(entry);
  } catch (e) {
    throw bad(`cannot read zip entry ${fn} (${oneLine(e)}); truncated or damaged?`);
  }
  const data = Buffer.allocUnsafe(size);
  let off = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (off + chunk.length > size) throw new Error(`more than the declared ${size} bytes`);
      chunk.copy(data, off);
      off += chunk.length;
    }
  } catch (e) {
    stream.destroy();
    throw bad(`zip entry ${fn} is damaged (${oneLine(e)}); refusing it`);
  }
  if (off !== size) throw bad(`zip entry ${fn} holds ${off} bytes but declares ${size}; truncated?`);
  return data;
}
