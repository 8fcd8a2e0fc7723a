/**
 * PyTorch checkpoints (`torch.save` zip format, PyTorch >= 1.6) read without Python: the zip through
 * src/io/zip.ts (bounded, CRC-checked), `ARCHIVE/data.pkl` through the restricted unpickler of
 * src/io/pickle.ts with a policy that accepts only what a state_dict needs, as PyTorch's
 * `weights_only=True` does: collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, and the storage types Float/Double/Half/BFloat16/Long/Int/Byte/BoolStorage given
 * as persistent ids ('storage', type, key, location, numel) whose bytes are `ARCHIVE/data/KEY`.
 * Storage sizes are checked against their zip entries, tensor shapes/strides against their storages.
 * Nested dicts ({'model': state_dict, 'epoch': 3}) are flattened to dotted names ("model.fc1.weight");
 * scalars beside the tensors are kept as metadata.
 */
import { INPUT_LIMITS, readInputFile } from './files.js';
import { UsageError } from '../errors.js';
import { PyDict, PyGlobal, PyTuple, unpickle, type PickleLimits, type PicklePolicy, type PyValue } from './pickle.js';
import { halfToFloat, parseSafetensors, type DType, type NamedTensor } from './safetensors.js';
import yazl from 'yazl';
import { readZipEntries, type ZipLimits } from './zip.js';
import { AllocBudget } from './budget.js';

/** Storage type -> (bytes per element, safetensors-like dtype of the values, reader). */
const STORAGES: Record<string, { size: number; dtype: DType; torch: string }> = {
  FloatStorage: { size: 4, dtype: 'F32', torch: 'float32' },
  DoubleStorage: { size: 8, dtype: 'F64', torch: 'float64' },
  HalfStorage: { size: 2, dtype: 'F16', torch: 'float16' },
  BFloat16Storage: { size: 2, dtype: 'F32', torch: 'bfloat16' },
  LongStorage: { size: 8, dtype: 'I64', torch: 'int64' },
  IntStorage: { size: 4, dtype: 'I32', torch: 'int32' },
  ByteStorage: { size: 1, dtype: 'U8', torch: 'uint8' },
  BoolStorage: { size: 1, dtype: 'U8', torch: 'bool' },
};

const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
/** Longest dotted tensor or metadata name accepted (real state_dict names are well under 200). */
const MAX_NAME = 4096;
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
const ORDERED_DICT = 'collections.OrderedDict';
const ALLOWED = new Set([ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, ...Object.keys(STORAGES).map((s) => `torch.${s}`)]);

/** A tensor of a PyTorch checkpoint: values as float32 (exact for every accepted dtype but int64 beyond 2^24). */
export interface TorchTensor extends NamedTensor {
  /** The PyTorch dtype it was stored with ("float32", "bfloat16", ...). */
  torchDtype: string;
}

export interface TorchCheckpoint {
  tensors: Map<string, TorchTensor>;
  /** Scalar entries beside the tensors (e.g. "epoch": "3"), dotted names, as strings. */
  metadata: Record<string, string>;
  /** The archive's top-level folder name. */
  archive: string;
}

export interface TorchLimits extends ZipLimits, PickleLimits {
  /** Largest file read, bytes. */
  maxFileBytes: number;
  /** Largest data.pkl, bytes. */
  maxPickleBytes: number;
  /** Most elements of one tensor. */
  maxTensorElements: number;
}

export const DEFAULT_TORCH_LIMITS: Partial<TorchLimits> = {
  maxFileBytes: 2 * 1024 ** 3 - 1,
  maxPickleBytes: 64 * 1024 ** 2,
  maxTensorElements: 1 << 28,
};

class StorageRef {
  constructor(readonly key: string, readonly type: string, readonly numel: number, readonly bytes: Buffer) {}
}

class TensorValue {
  constructor(readonly tensor: TorchTensor) {}
}

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

/** What the first bytes of a file say it is. */
export function sniffTorchFormat(head: Uint8Array): 'zip' | 'legacy-pickle' | 'legacy-tar' | 'other' {
  if (ZIP_MAGIC.every((b, i) => head[i] === b)) return 'zip';
  if (head[0] === 0x80 && head[1] !== undefined && head[1] >= 2 && head[1] <= 5) return 'legacy-pickle';
  if (head.length >= 262 && Buffer.from(head.subarray(257, 262)).toString('latin1') === 'ustar') return 'legacy-tar';
  return 'other';
}

const RESAVE = 're-save it with PyTorch >= 1.6: torch.save(torch.load(path, weights_only=True), path, _use_new_zipfile_serialization=True), or as safetensors (safetensors.torch.save_file)';

/** Reads a `.pt`/`.pth` file written by torch.save (opened once, checked on the descriptor: see readInputFile). */
export async function readTorchCheckpoint(path: string, limits: Partial<TorchLimits> = {}): Promise<TorchCheckpoint> {
  const maxFileBytes = limits.maxFileBytes ?? DEFAULT_TORCH_LIMITS.maxFileBytes!;
  const buf = readInputFile(path, 'PyTorch checkpoint', { maxBytes: maxFileBytes, missing: (p) => `cannot read ${p}: no such file` });
  return parseTorchCheckpoint(buf, path, limits);
}

/** Parses the bytes of a torch.save zip; `name` prefixes every error. */
export async function parseTorchCheckpoint(buf: Buffer, name: string, limits: Partial<TorchLimits> = {}): Promise<TorchCheckpoint> {
  const lim = { ...DEFAULT_TORCH_LIMITS, ...limits } as TorchLimits;
  const kind = sniffTorchFormat(buf.subarray(0, 512));
  if (kind === 'legacy-pickle' || kind === 'legacy-tar') throw new UsageError(`${name}: legacy (pre-1.6) torch.save format, which cnnf does not read; ${RESAVE}`);
  if (kind !== 'zip') throw new UsageError(`${name}: not a PyTorch checkpoint (no zip signature; torch.save writes a zip since PyTorch 1.6)`);
  let torchScript = false;
  // everything this file makes cnnf allocate (entries, tensors, metadata) is charged here first
  const budget = AllocBudget.forFile(name, buf.length);
  const entries = await readZipEntries(buf, name, lim, (fn) => {
    if (/^[^/]+\/(constants\.pkl|code\/)/.test(fn)) torchScript = true;
    return /^[^/]+\/(data\.pkl|data\/[^/]+|byteorder)$/.test(fn);
  }, budget);
  if (torchScript) throw new UsageError(`${name}: a TorchScript archive (torch.jit.save), which holds code; save the weights instead: torch.save(model.state_dict(), path)`);
  const names = [...entries.keys()];
  const pkl = names.find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new UsageError(`${name}: zip archive without ARCHIVE/data.pkl: not a torch.save checkpoint`);
  if (names.some((n) => n.slice(0, n.indexOf('/')) !== pkl.slice(0, pkl.indexOf('/')))) throw new UsageError(`${name}: zip entries under more than one top-level folder: not a torch.save checkpoint`);
  const archive = pkl.slice(0, pkl.indexOf('/'));
  const byteorder = entries.get(`${archive}/byteorder`);
  if (byteorder && byteorder.toString('latin1') !== 'little') throw new UsageError(`${name}: big-endian checkpoint (byteorder ${JSON.stringify(byteorder.toString('latin1').slice(0, 16))}); re-save it on a little-endian machine`);
  const pklBytes = entries.get(pkl)!;
  if (pklBytes.length > lim.maxPickleBytes) throw new UsageError(`${name}: data.pkl of ${pklBytes.length} bytes (at most ${lim.maxPickleBytes} read)`);

  const storages = new Map<string, StorageRef>();
  let storageElements = 0;
  let materialised = 0;
  const policy: PicklePolicy = {
    globals: ALLOWED,
    persistentLoad(pid, refuse) {
      if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') return refuse('a persistent id that is not (\'storage\', type, key, location, numel)');
      const [, type, key, location, numel] = pid.items;
      if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in STORAGES)) return refuse('a persistent id whose storage type is not an accepted torch storage');
      if (typeof key !== 'string' || !/^[A-Za-z0-9_.]{1,64}$/.test(key)) return refuse('a storage key that is not a short name');
      if (typeof location !== 'string' || location.length > 64) return refuse('a storage location that is not a short string');
      if (typeof numel !== 'number' || !Number.isInteger(numel) || numel < 0) return refuse('a storage size that is not a non-negative integer');
      const known = storages.get(key);
      if (known) {
        if (known.type !== type.name || known.numel !== numel) return refuse(`storage ${key} is used with two types or sizes`);
        return known;
      }
      const bytes = entries.get(`${archive}/data/${key}`);
      if (!bytes) return refuse(`storage ${key} has no record ${archive}/data/${key}`);
      const want = numel * STORAGES[type.name].size;
      if (bytes.length !== want) return refuse(`storage ${key} claims ${numel} elements of ${type.name} (${want} bytes) but its record holds ${bytes.length} bytes`);
      const ref = new StorageRef(key, type.name, numel, bytes);
      storages.set(key, ref);
      storageElements += numel;
      return ref;
    },
    call(fn, args, refuse) {
      const q = fn.qualified;
      if (q === ORDERED_DICT) {
        if (args.length !== 0) return refuse('OrderedDict called with arguments');
        return new PyDict();
      }
      if (q === REBUILD_TENSOR) {
        if (args.length !== 6 && args.length !== 7) return refuse(`_rebuild_tensor_v2 with ${args.length} arguments`);
        const [storage, offset, size, stride, requiresGrad, hooks] = args;
        if (!(storage instanceof StorageRef)) return refuse('_rebuild_tensor_v2 of something that is not a storage');
        if (typeof requiresGrad !== 'boolean') return refuse('_rebuild_tensor_v2 with a non-boolean requires_grad');
        if (!(hooks instanceof PyDict) || hooks.map.size !== 0) return refuse('_rebuild_tensor_v2 with backward hooks');
        return new TensorValue(rebuild(storage, offset, size, stride, refuse));
      }
      if (q === REBUILD_PARAMETER) {
        if (args.length !== 3 || !(args[0] instanceof TensorValue)) return refuse('_rebuild_parameter of something that is not a tensor');
        if (!(args[2] instanceof PyDict) || args[2].map.size !== 0) return refuse('_rebuild_parameter with backward hooks');
        return args[0];
      }
      return refuse(`the pickle calls ${q}, which is not allowed here (only OrderedDict and the tensor rebuild functions are called)`);
    },
    build(obj, state, refuse) {
      // OrderedDict.__setstate__: the state_dict's `_metadata` (module versions); not needed
      if (obj instanceof PyDict && (state instanceof PyDict || state === null)) return obj;
      return refuse('BUILD of something other than a dict\'s attributes');
    },
  };

  function rebuild(storage: StorageRef, offset: PyValue, size: PyValue, stride: PyValue, refuse: (m: string) => never): TorchTensor {
    const ints = (v: PyValue, what: string): number[] => {
      if (!(v instanceof PyTuple) || v.items.length > 8) return refuse(`tensor ${what} is not a tuple of at most 8 integers`);
      return v.items.map((x) => (typeof x === 'number' && Number.isInteger(x) && x >= 0 ? x : refuse(`tensor ${what} holds ${String(x)}`)));
    };
    const shape = ints(size, 'size');
    const strides = ints(stride, 'stride');
    if (shape.length !== strides.length) refuse('tensor size and stride differ in length');
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0) refuse('tensor storage offset is not a non-negative integer');
    let count = 1;
    for (const d of shape) {
      count *= d;
      if (count > lim.maxTensorElements) refuse(`tensor of shape [${shape.join(', ')}] has more than ${lim.maxTensorElements} elements`);
    }
    // views may repeat stored elements (stride 0); bound the expansion before allocating
    materialised += count;
    const expansion = Math.max(1 << 24, 4 * storageElements);
    if (materialised > expansion) refuse(`tensors expand ${storageElements} stored elements to ${materialised} (more than ${expansion}; stride-0 views beyond 4x are refused)`);
    if (count > 0) {
      let last = offset as number;
      for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * strides[i];
      if (last >= storage.numel) refuse(`tensor of shape [${shape.join(', ')}] (offset ${offset}, stride [${strides.join(', ')}]) reaches element ${last} of a storage of ${storage.numel}`);
    }
    const info = STORAGES[storage.type];
    const read = reader(storage.type, storage.bytes);
    try {
      budget.take(count * 4, `tensor of shape [${shape.join(', ')}]`);
    } catch (e) {
      return refuse((e as Error).message.replace(/^.*?: refused: /, ''));
    }
    const data = new Float32Array(count);
    const idx = new Array<number>(shape.length).fill(0);
    let src = offset as number;
    for (let o = 0; o < count; o++) {
      data[o] = read(src);
      for (let d = shape.length - 1; d >= 0; d--) {
        idx[d]++;
        src += strides[d];
        if (idx[d] < shape[d]) break;
        src -= strides[d] * shape[d];
        idx[d] = 0;
      }
    }
    return { shape, data, dtype: info.dtype, torchDtype: info.torch };
  }

  const root = unpickle(pklBytes, name, policy, lim);
  const tensors = new Map<string, TorchTensor>();
  const metadata: Record<string, string> = {};
  // the walk is linear in the pickle's objects: a dict reached twice (a DAG through the memo, which
  // would make the walk exponential) is refused, dotted names are bounded, and metadata is charged
  let visited = 0;
  let metaCount = 0;
  const seenDicts = new Set<PyDict>();
  const walk = (v: PyValue, prefix: string, depth: number) => {
    if (++visited > 1_000_000) throw new UsageError(`${name}: refused: more than 1000000 objects in the checkpoint`);
    if (depth > 32) throw new UsageError(`${name}: refused: dicts nested deeper than 32`);
    if (prefix.length > MAX_NAME) throw new UsageError(`${name}: refused: a dotted name longer than ${MAX_NAME} characters (${prefix.length})`);
    if (v instanceof TensorValue) {
      if (tensors.has(prefix)) throw new UsageError(`${name}: two tensors named ${prefix}`);
      budget.take(prefix.length * 2, 'a tensor name');
      tensors.set(prefix, v.tensor);
    } else if (v instanceof PyDict) {
      if (seenDicts.has(v)) throw new UsageError(`${name}: refused: the same dict appears twice in the checkpoint (at ${prefix.slice(0, 200) || 'the top'}); a state_dict is a tree`);
      seenDicts.add(v);
      for (const [k, child] of v.map) {
        const ks = String(k);
        if (ks.length > MAX_NAME) throw new UsageError(`${name}: refused: a dict key longer than ${MAX_NAME} characters (${ks.length})`);
        walk(child, prefix === '' ? ks : `${prefix}.${ks}`, depth + 1);
      }
    } else if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') {
      if (prefix !== '' && metaCount < 1000) {
        const value = String(v).slice(0, 1000);
        budget.take(2 * (prefix.length + value.length), 'a metadata entry');
        metadata[prefix] = value;
        metaCount++;
      }
    }
    // lists, tuples and bytes beside the weights (optimizer state, ...) are not weights: skipped
  };
  walk(root, '', 0);
  if (tensors.size === 0) throw new UsageError(`${name}: no tensors in the checkpoint (expected a state_dict: torch.save(model.state_dict(), path))`);
  return { tensors, metadata, archive };
}

function reader(type: string, b: Buffer): (i: number) => number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (type) {
    case 'FloatStorage': return (i) => dv.getFloat32(i * 4, true);
    case 'DoubleStorage': return (i) => dv.getFloat64(i * 8, true);
    case 'HalfStorage': return (i) => halfToFloat(dv.getUint16(i * 2, true));
    case 'BFloat16Storage': {
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      return (i) => { u[0] = dv.getUint16(i * 2, true) << 16; return f[0]; };
    }
    case 'LongStorage': return (i) => Number(dv.getBigInt64(i * 8, true));
    case 'IntStorage': return (i) => dv.getInt32(i * 4, true);
    case 'ByteStorage': return (i) => dv.getUint8(i);
    case 'BoolStorage': return (i) => (dv.getUint8(i) !== 0 ? 1 : 0);
    default: throw new Error(`unhandled storage ${type}`);
  }
}

/** Reference-named PyTorch weights from either a torch.save checkpoint (zip) or a safetensors file. */
export interface PyTorchWeights {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
  format: 'torch.save' | 'safetensors';
}

/**
 * Reads PyTorch weights, detecting the format from the file's first bytes (zip or legacy pickle:
 * torch.save). The file is opened once, without blocking, and checked on that descriptor (a regular
 * file within the size limit), and every byte comes from that one read: a path swapped for a FIFO
 * between a check and a second open cannot hang the reader.
 */
export async function readPyTorchWeights(path: string, limits: Partial<TorchLimits> = {}): Promise<PyTorchWeights> {
  const maxBytes = Math.min(INPUT_LIMITS.safetensors, limits.maxFileBytes ?? DEFAULT_TORCH_LIMITS.maxFileBytes!);
  const buf = readInputFile(path, 'PyTorch weights', { maxBytes, missing: (p) => `cannot read ${p}: no such file` });
  if (sniffTorchFormat(buf.subarray(0, 512)) !== 'other') {
    const c = await parseTorchCheckpoint(buf, path, limits);
    return { tensors: c.tensors, metadata: c.metadata, format: 'torch.save' };
  }
  const f = parseSafetensors(buf, path);
  return { tensors: f.tensors, metadata: f.metadata, format: 'safetensors' };
}

/**
 * Encodes float32 tensors as a torch.save checkpoint (zip, protocol-2 pickle of an OrderedDict of
 * _rebuild_tensor_v2 over FloatStorages, ARCHIVE/data/KEY, ARCHIVE/version = 3): what
 * `torch.load(path, weights_only=True)` reads as a state_dict. Entry order and dates are fixed, so
 * the bytes depend only on the tensors and the archive name.
 */
export async function encodeTorchCheckpoint(tensors: Map<string, { shape: number[]; data: Float32Array }>, archive = 'archive'): Promise<Buffer> {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(archive)) throw new Error(`bad archive name ${archive}`);
  const out: number[] = [];
  const bytes = (...b: number[]) => { for (const x of b) out.push(x); };
  const ascii = (s: string) => { for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i)); };
  const unicode = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    bytes(0x58, b.length & 0xff, (b.length >>> 8) & 0xff, (b.length >>> 16) & 0xff, (b.length >>> 24) & 0xff, ...b);
  };
  const int = (n: number) => {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new Error(`integer ${n} out of range`);
    if (n < 0x100) bytes(0x4b, n);
    else if (n < 0x10000) bytes(0x4d, n & 0xff, n >>> 8);
    else bytes(0x4a, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  };
  const tuple = (items: number[]) => {
    if (items.length === 0) return bytes(0x29);
    if (items.length > 3) bytes(0x28);
    items.forEach(int);
    bytes(items.length === 1 ? 0x85 : items.length === 2 ? 0x86 : items.length === 3 ? 0x87 : 0x74);
  };
  const orderedDict = () => { ascii('ccollections\nOrderedDict\n'); bytes(0x29, 0x52); };
  bytes(0x80, 0x02);
  orderedDict();
  const records: Array<[string, Buffer]> = [];
  if (tensors.size > 0) bytes(0x28); // MARK for SETITEMS
  let key = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`tensor ${name}: ${t.data.length} values for shape [${t.shape}]`);
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    unicode(name);
    ascii('ctorch._utils\n_rebuild_tensor_v2\n');
    bytes(0x28, 0x28); // MARK args, MARK persistent id
    unicode('storage');
    ascii('ctorch\nFloatStorage\n');
    unicode(String(key));
    unicode('cpu');
    int(count);
    bytes(0x74, 0x51); // TUPLE, BINPERSID
    int(0);
    tuple(t.shape);
    tuple(strides);
    bytes(0x89); // requires_grad False
    orderedDict(); // backward hooks
    bytes(0x74, 0x52); // TUPLE, REDUCE
    const le = Buffer.alloc(count * 4);
    for (let i = 0; i < count; i++) le.writeFloatLE(t.data[i], i * 4);
    records.push([`data/${key}`, le]);
    key++;
  }
  if (tensors.size > 0) bytes(0x75); // SETITEMS
  bytes(0x2e);
  const zip = new yazl.ZipFile();
  const mtime = new Date(2020, 0, 1);
  zip.addBuffer(Buffer.from(out), `${archive}/data.pkl`, { compress: false, mtime });
  zip.addBuffer(Buffer.from('little'), `${archive}/byteorder`, { compress: false, mtime });
  for (const [n, b] of records) zip.addBuffer(b, `${archive}/${n}`, { compress: false, mtime });
  zip.addBuffer(Buffer.from('3\n'), `${archive}/version`, { compress: false, mtime });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}
