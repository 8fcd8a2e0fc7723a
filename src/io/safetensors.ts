/**
 * safetensors reader/writer: 8-byte little-endian header length, JSON header, raw little-endian data.
 * Reading validates everything it can (header size bounds, JSON, dtypes, shapes vs. byte ranges,
 * overlapping or out-of-range offsets) and fails with a one-line UsageError naming the file.
 */
import { UsageError } from '../errors.js';
import { writeFileAtomic } from './atomic.js';
import { INPUT_LIMITS, readInputFile } from './files.js';
import { findDuplicateKey } from './json.js';

export type DType = 'F32' | 'F16' | 'F64' | 'I32' | 'I64' | 'U8';
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, F64: 8, I32: 4, I64: 8, U8: 1 };
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface NamedTensor {
  shape: number[];
  /** Values converted to float32 regardless of the stored dtype. */
  data: Float32Array;
  dtype: DType;
}

export interface SafetensorsFile {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

export function halfToFloat(h: number): number {
  const s = (h & 0x8000) >> 15;
  const e = (h & 0x7c00) >> 10;
  const f = h & 0x03ff;
  let v: number;
  if (e === 0) v = f * 2 ** -24;
  else if (e === 31) v = f ? NaN : Infinity;
  else v = (1 + f / 1024) * 2 ** (e - 15);
  return s ? -v : v;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** Round-to-nearest-even float32 -> IEEE half. */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >> 10;
  return sign | half;
}

export function parseSafetensors(buf: Uint8Array, name: string): SafetensorsFile {
  const bad = (msg: string) => new UsageError(`${name}: ${msg}`);
  if (buf.length < 8) throw bad(`not a safetensors file (only ${buf.length} bytes)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const big = dv.getBigUint64(0, true);
  // compared as a BigInt and printed exactly (2^63 is not 9223372036854776000)
  if (big < 2n || big > BigInt(MAX_HEADER_BYTES)) throw bad(`header length ${big.toString()} is out of bounds (2..${MAX_HEADER_BYTES})`);
  const n = Number(big);
  if (8 + n > buf.length) throw bad(`truncated: header says ${n} bytes but the file has ${buf.length - 8} after the length`);
  const text = Buffer.from(buf.buffer, buf.byteOffset + 8, n).toString('utf8');
  let header: Record<string, any>;
  try {
    header = JSON.parse(text);
  } catch {
    throw bad('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object');
  const dup = findDuplicateKey(text);
  if (dup !== undefined) throw bad(`header has a duplicate key ${JSON.stringify(dup)} (ambiguous: refusing to pick one)`);
  const dataStart = 8 + n;
  const dataLen = buf.length - dataStart;
  const metadata: Record<string, string> = {};
  if (header.__metadata__ !== undefined) {
    const m = header.__metadata__;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad('__metadata__ is not an object');
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
      metadata[k] = v;
    }
  }
  // first the whole layout (dtypes, shapes, offsets, bounds, overlaps), then decoding: no allocation before it is valid
  const entries: Array<{ key: string; dtype: DType; shape: number[]; s: number; e: number; count: number }> = [];
  for (const [key, info] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    if (typeof info !== 'object' || info === null || Array.isArray(info)) throw bad(`tensor ${key}: entry is not an object`);
    const dtype = info.dtype as DType;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) throw bad(`tensor ${key}: unsupported dtype ${JSON.stringify(info.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw bad(`tensor ${key}: invalid shape ${JSON.stringify(shape)?.slice(0, 80)}`);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d: unknown) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw bad(`tensor ${key}: invalid data_offsets`);
    }
    const [s, e] = offs as [number, number];
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    if (!Number.isSafeInteger(count) || e < s || e - s !== count * DTYPE_BYTES[dtype]) {
      throw bad(`tensor ${key}: data_offsets [${s}, ${e}] do not match shape [${shape.join(', ')}] of ${dtype}`);
    }
    if (e > dataLen) throw bad(`truncated: tensor ${key} ends at byte ${e} but only ${dataLen} data bytes are present`);
    entries.push({ key, dtype, shape: shape as number[], s, e, count });
  }
  const ranges = entries.filter((t) => t.e > t.s).sort((a, b) => a.s - b.s);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].s < ranges[i - 1].e) throw bad(`tensors ${ranges[i - 1].key} and ${ranges[i].key} overlap`);
  }
  const tensors = new Map<string, NamedTensor>();
  for (const { key, dtype, shape, s, e, count } of entries) {
    const bytes = buf.subarray(dataStart + s, dataStart + e);
    const out = new Float32Array(count);
    const tv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < count; i++) {
      switch (dtype) {
        case 'F32': out[i] = tv.getFloat32(i * 4, true); break;
        case 'F16': out[i] = halfToFloat(tv.getUint16(i * 2, true)); break;
        case 'F64': out[i] = tv.getFloat64(i * 8, true); break;
        case 'I32': out[i] = tv.getInt32(i * 4, true); break;
        case 'I64': out[i] = Number(tv.getBigInt64(i * 8, true)); break;
        case 'U8': out[i] = tv.getUint8(i); break;
      }
    }
    tensors.set(key, { shape, data: out, dtype });
  }
  return { tensors, metadata };
}

export function readSafetensors(path: string, what = 'safetensors file'): SafetensorsFile {
  const buf = readInputFile(path, what, { maxBytes: INPUT_LIMITS.safetensors, missing: (p) => `cannot read ${p}: no such file` });
  return parseSafetensors(buf, path);
}

export interface TensorToWrite {
  shape: number[];
  data: Float32Array | ArrayLike<number>;
  /** F32 (default) or F16 for compact checkpoints. */
  dtype?: 'F32' | 'F16';
}

export function encodeSafetensors(tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): Uint8Array[] {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of [...tensors.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`tensor ${name}: ${t.data.length} values for shape [${t.shape}]`);
    const dtype = t.dtype ?? 'F32';
    let bytes: Uint8Array;
    if (dtype === 'F32') {
      const f = Float32Array.from(t.data);
      bytes = new Uint8Array(f.buffer);
    } else {
      const h = new Uint16Array(count);
      for (let i = 0; i < count; i++) h[i] = floatToHalf(t.data[i]);
      bytes = new Uint8Array(h.buffer);
    }
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(Buffer.byteLength(json)), true);
  return [len, Buffer.from(json, 'utf8'), ...blobs];
}

export function writeSafetensors(path: string, tensors: Map<string, TensorToWrite>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
