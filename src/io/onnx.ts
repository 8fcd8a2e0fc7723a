/**
 * ONNX models (`torch.onnx.export`, tf2onnx, model zoos): the file is decoded with protobufjs and
 * the official ONNX schema (onnx-schema.ts), then validated before anything runs it:
 *
 * - the file is a regular file of at most MAX_ONNX_BYTES, decoded as an onnx.ModelProto (anything
 *   else, including a message nested too deep, is one line);
 * - the default ONNX operator set (`ai.onnx`, opset ONNX_MIN_OPSET..ONNX_MAX_OPSET) only, no other
 *   domain; every operator among ONNX_OPS (src/models/onnx.ts), else one line naming it and the node;
 * - at most MAX_ONNX_NODES nodes and MAX_ONNX_INITIALIZERS initializers, every initializer's data
 *   complete and of a known type (float32; int64/int32 as int32, saturated, as they only ever hold
 *   shapes, axes and indices), at most MAX_ONNX_ELEMENTS elements in all; external data is refused;
 * - the graph is in topological order (what ONNX requires), every node input defined before it is
 *   used and every name defined once, so it is acyclic and its work is bounded by its size;
 * - one image input [N, C, H, W] (or [N, H, W, C] with --layout NHWC) with fixed C, H, W within
 *   MAX_ONNX_INPUT, one output.
 *
 * Running the graph (tfjs ops, so tfjs's autodiff gives input gradients) is src/models/onnx.ts.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import protobuf from 'protobufjs';
import { UsageError } from '../errors.js';
import { cleanText } from '../format.js';
import { ONNX_PROTO } from './onnx-schema.js';
import { readInputFile, MiB } from './files.js';
import { ONNX_OP_SINCE, ONNX_OPS, OnnxClassifier, type OnnxAttr, type OnnxGraph, type OnnxInit, type OnnxNode } from '../models/onnx.js';
import { checkAdapter, DEFAULT_ADAPTER, type InputAdapter } from '../models/foreign.js';

export const MAX_ONNX_BYTES = 512 * MiB;
export const MAX_ONNX_NODES = 20_000;
export const MAX_ONNX_INITIALIZERS = 20_000;
/** Elements of every initializer and Constant together (float32: 1 GiB). */
export const MAX_ONNX_ELEMENTS = 2 ** 28;
export const ONNX_MIN_OPSET = 7;
export const ONNX_MAX_OPSET = 23;
/** Largest input image: side, channels, values per image. */
export const MAX_ONNX_INPUT = { side: 4096, channels: 64, values: 3 * 1024 * 1024 };

const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);

let modelType: protobuf.Type | null = null;
function onnxModelType(): protobuf.Type {
  modelType ??= protobuf.parse(ONNX_PROTO, { keepCase: true }).root.lookupType('onnx.ModelProto');
  return modelType;
}

/** A string from the file, safe for a terminal line (cnnf's one sanitiser, cleanText), at most 80 characters. */
export function printable(s: unknown): string {
  const t = cleanText(s);
  return t.length > 80 ? `${t.slice(0, 77)}...` : t;
}

/** A quoted name from the file for a message. */
const q = (s: unknown): string => `"${printable(s)}"`;

type Long = { low: number; high: number; unsigned?: boolean; toNumber?: () => number };
/** An int64 from protobufjs (number or Long), exact up to 2^53, else +-Infinity by sign. */
function int64(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && v !== null && 'low' in v && 'high' in v) {
    const l = v as Long;
    const hi = l.high | 0;
    const n = hi * 2 ** 32 + (l.low >>> 0);
    if (Math.abs(hi) >= 2 ** 21) return hi < 0 ? -Infinity : Infinity;
    return n;
  }
  return Number.NaN;
}

const saturate = (n: number): number => (n > INT32_MAX ? INT32_MAX : n < INT32_MIN ? INT32_MIN : n);

/** ONNX TensorProto data types cnnf reads. */
const DTYPES: Record<number, { name: string; kind: 'float32' | 'int32' | null }> = {
  1: { name: 'float32', kind: 'float32' }, 2: { name: 'uint8', kind: null }, 3: { name: 'int8', kind: null }, 4: { name: 'uint16', kind: null },
  5: { name: 'int16', kind: null }, 6: { name: 'int32', kind: 'int32' }, 7: { name: 'int64', kind: 'int32' }, 8: { name: 'string', kind: null },
  9: { name: 'bool', kind: null }, 10: { name: 'float16', kind: null }, 11: { name: 'float64', kind: null }, 12: { name: 'uint32', kind: null },
  13: { name: 'uint64', kind: null }, 16: { name: 'bfloat16', kind: null },
};

interface Budget {
  elements: number;
}

/** A TensorProto (initializer or Constant value) as cnnf data, every size checked before allocating. */
function readTensor(t: Record<string, unknown>, where: string, budget: Budget): OnnxInit {
  const name = typeof t.name === 'string' ? t.name : '';
  const dimsRaw = Array.isArray(t.dims) ? (t.dims as unknown[]) : [];
  if (dimsRaw.length > 8) throw new UsageError(`${where}: tensor ${q(name)} has ${dimsRaw.length} dimensions (at most 8)`);
  const dims = dimsRaw.map(int64);
  if (dims.some((d) => !Number.isInteger(d) || d < 0 || d > INT32_MAX)) throw new UsageError(`${where}: tensor ${q(name)} has a bad dimension [${dims.join(', ')}]`);
  const numel = dims.reduce((a, b) => a * b, 1);
  if (numel > MAX_ONNX_ELEMENTS - budget.elements) throw new UsageError(`${where}: tensor ${q(name)} of ${numel} elements is beyond the ${MAX_ONNX_ELEMENTS}-element budget of an ONNX model`);
  budget.elements += numel;
  if (t.data_location === 1 || (Array.isArray(t.external_data) && t.external_data.length > 0)) {
    throw new UsageError(`${where}: tensor ${q(name)} keeps its data in an external file, which cnnf does not read (save the model with its weights inside the .onnx file)`);
  }
  if (t.segment !== undefined && t.segment !== null) throw new UsageError(`${where}: tensor ${q(name)} is segmented, which cnnf does not read`);
  const dt = typeof t.data_type === 'number' ? t.data_type : 0;
  const type = DTYPES[dt];
  if (!type || type.kind === null) {
    throw new UsageError(`${where}: tensor ${q(name)} is ${type ? type.name : `of data type ${dt}`}; cnnf reads float32 weights (and int64/int32 shapes and indices): convert the model to float32`);
  }
  const raw = t.raw_data instanceof Uint8Array ? t.raw_data : null;
  const bad = (got: number): never => {
    throw new UsageError(`${where}: tensor ${q(name)} [${dims.join(', ')}] holds ${got} values, not ${numel}`);
  };
  if (type.kind === 'float32') {
    let data: Float32Array;
    if (raw && raw.length > 0) {
      if (raw.length !== numel * 4) bad(raw.length / 4);
      data = new Float32Array(numel);
      new Uint8Array(data.buffer).set(raw); // little-endian, as ONNX's raw_data
    } else {
      const f = Array.isArray(t.float_data) ? (t.float_data as number[]) : [];
      if (f.length !== numel) bad(f.length);
      data = Float32Array.from(f);
    }
    return { name, dims, dtype: 'float32', data };
  }
  const out = new Int32Array(numel);
  if (raw && raw.length > 0) {
    const width = dt === 7 ? 8 : 4;
    if (raw.length !== numel * width) bad(raw.length / width);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < numel; i++) out[i] = width === 8 ? saturate(Number(view.getBigInt64(i * 8, true))) : view.getInt32(i * 4, true);
  } else {
    const src = (dt === 7 ? t.int64_data : t.int32_data) as unknown[] | undefined;
    const list = Array.isArray(src) ? src : [];
    if (list.length !== numel) bad(list.length);
    for (let i = 0; i < numel; i++) out[i] = saturate(int64(list[i]));
  }
  return { name, dims, dtype: 'int32', data: out };
}

function readAttr(a: Record<string, unknown>, where: string, budget: Budget): [string, OnnxAttr] {
  const name = typeof a.name === 'string' ? a.name : '';
  if (a.g || (Array.isArray(a.graphs) && a.graphs.length > 0)) throw new UsageError(`${where}: attribute ${q(name)} holds a subgraph, which cnnf does not run`);
  const v: OnnxAttr = {};
  if (typeof a.f === 'number') v.f = a.f;
  if (a.i !== undefined && a.i !== null) v.i = saturate(int64(a.i));
  if (a.s instanceof Uint8Array) v.s = Buffer.from(a.s).toString('utf8');
  if (a.t) v.t = readTensor(a.t as Record<string, unknown>, where, budget);
  if (Array.isArray(a.floats) && a.floats.length > 0) v.floats = (a.floats as number[]).map(Number);
  if (Array.isArray(a.ints) && a.ints.length > 0) {
    if (a.ints.length > 4096) throw new UsageError(`${where}: attribute ${q(name)} lists ${a.ints.length} integers`);
    v.ints = (a.ints as unknown[]).map((x) => saturate(int64(x)));
  }
  if (Array.isArray(a.strings) && a.strings.length > 0) v.strings = (a.strings as Uint8Array[]).slice(0, 64).map((s) => Buffer.from(s).toString('utf8'));
  return [name, v];
}

/** A shape dimension of a ValueInfo: a number, or null for a symbolic one (dim_param) or none. */
function shapeOf(vi: Record<string, unknown>): Array<number | null> | null {
  const tt = (vi.type as Record<string, unknown> | undefined)?.tensor_type as Record<string, unknown> | undefined;
  const shape = tt?.shape as Record<string, unknown> | undefined;
  if (!shape || !Array.isArray(shape.dim)) return null;
  return (shape.dim as Array<Record<string, unknown>>).slice(0, 9).map((d) => {
    if (d.dim_value === undefined || d.dim_value === null) return null;
    const n = int64(d.dim_value);
    return Number.isInteger(n) && n > 0 ? n : null;
  });
}

/**
 * Counts the graph's nodes and initializers on the protobuf wire format, before decoding (which
 * builds an object per message): a file of a million tiny nodes is refused without building them.
 * Only tags, varints and lengths are read; anything malformed is left to the decoder to refuse.
 */
function countGraphEntries(buf: Uint8Array): { nodes: number; initializers: number } {
  let pos = 0;
  const varint = (end: number): number => {
    let v = 0;
    let mul = 1;
    while (pos < end) {
      const b = buf[pos++];
      v += (b & 0x7f) * mul;
      if (b < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 56) break;
    }
    return -1;
  };
  const skip = (wire: number, end: number): boolean => {
    if (wire === 0) return varint(end) >= 0;
    if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint(end);
      if (len < 0) return false;
      pos += len;
    } else return false;
    return pos <= end;
  };
  const out = { nodes: 0, initializers: 0 };
  while (pos < buf.length) {
    const tag = varint(buf.length);
    if (tag < 0) break;
    if (tag === 0x3a) {
      // ModelProto.graph: walk its top-level fields
      const len = varint(buf.length);
      if (len < 0) break;
      const end = Math.min(buf.length, pos + len);
      while (pos < end) {
        const t = varint(end);
        if (t < 0) break;
        if (t === 0x0a) out.nodes++;
        else if (t === 0x2a) out.initializers++;
        if (!skip(t & 7, end)) break;
      }
      pos = end;
    } else if (!skip(tag & 7, buf.length)) break;
  }
  return out;
}

export interface OnnxModelFile {
  path: string;
  sha256: string;
  graph: OnnxGraph;
  /** The input adapter and class names cnnf's export records (metadata "cnnf.adapter"); flags override them. */
  recorded: Partial<InputAdapter> & { classNames?: string[] };
}

/** The metadata key of cnnf's adapter record in an ONNX file. */
export const ONNX_ADAPTER_KEY = 'cnnf.adapter';

function recordedAdapter(msg: Record<string, unknown>, path: string): Partial<InputAdapter> & { classNames?: string[] } {
  const props = Array.isArray(msg.metadata_props) ? (msg.metadata_props as Array<Record<string, unknown>>) : [];
  const entry = props.find((p) => p.key === ONNX_ADAPTER_KEY);
  if (!entry) return {};
  const where = `${path}: metadata ${ONNX_ADAPTER_KEY}`;
  const text = typeof entry.value === 'string' ? entry.value : '';
  if (text.length > 1024 * 1024) throw new UsageError(`${where} is larger than 1 MiB`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`${where} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${where} is not a JSON object`);
  const o = v as Record<string, unknown>;
  const known = new Set(['inputRange', 'layout', 'output', 'mean', 'std', 'classNames', 'dataset', 'exportedFrom']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new UsageError(`${where}: unknown key ${q(k)}`);
  const out: Partial<InputAdapter> & { classNames?: string[] } = {};
  if (o.inputRange !== undefined) out.range = o.inputRange as InputAdapter['range'];
  if (o.layout !== undefined) out.layout = o.layout as InputAdapter['layout'];
  if (o.output !== undefined) out.output = o.output as InputAdapter['output'];
  const nums = (x: unknown, what: string): number[] => {
    if (!Array.isArray(x) || x.length === 0 || x.length > 64 || !x.every((n) => typeof n === 'number' && Number.isFinite(n))) throw new UsageError(`${where}: ${what} must be a list of finite numbers`);
    return x as number[];
  };
  if (o.mean !== undefined) out.mean = nums(o.mean, 'mean');
  if (o.std !== undefined) out.std = nums(o.std, 'std');
  if (o.classNames !== undefined) {
    if (!Array.isArray(o.classNames) || o.classNames.length > 10_000 || !o.classNames.every((s) => typeof s === 'string' && s.length <= 256)) throw new UsageError(`${where}: classNames must be a list of short strings`);
    out.classNames = (o.classNames as string[]).map(printable);
  }
  try {
    checkAdapter({ ...ONNX_DEFAULT_ADAPTER, ...out });
  } catch (e) {
    throw new UsageError(`${where}: ${(e as Error).message}`);
  }
  return out;
}

/** Whether `path` names an ONNX model (by its extension; `--format onnx` for any other name). */
export function isOnnxModelPath(path: string): boolean {
  return /\.onnx$/i.test(path);
}

/** Reads and validates an ONNX model file (no backend needed); every problem is one line naming the file. */
export function readOnnxModelFile(path: string): OnnxModelFile {
  const buf = readInputFile(path, 'ONNX model', { maxBytes: MAX_ONNX_BYTES });
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const fail = (what: string): never => {
    throw new UsageError(`${path}: ${what}`);
  };
  const counts = countGraphEntries(buf);
  if (counts.nodes > MAX_ONNX_NODES) return fail(`has ${counts.nodes} nodes (at most ${MAX_ONNX_NODES})`);
  if (counts.initializers > MAX_ONNX_INITIALIZERS) return fail(`has ${counts.initializers} initializers (at most ${MAX_ONNX_INITIALIZERS})`);
  let msg: Record<string, unknown>;
  try {
    const T = onnxModelType();
    msg = T.toObject(T.decode(buf), { defaults: false, arrays: true, bytes: Uint8Array }) as Record<string, unknown>;
  } catch (e) {
    const why = e instanceof RangeError ? 'it is nested too deep' : printable((e as Error)?.message ?? e).slice(0, 120);
    return fail(`not an ONNX model (the protobuf does not decode as onnx.ModelProto: ${why})`);
  }
  const graph = msg.graph as Record<string, unknown> | undefined;
  if (!graph || typeof msg.ir_version === 'undefined') return fail('not an ONNX model (no ir_version or graph)');
  // the operator sets
  const opsets = Array.isArray(msg.opset_import) ? (msg.opset_import as Array<Record<string, unknown>>) : [];
  let opset = -1;
  for (const o of opsets) {
    const domain = typeof o.domain === 'string' ? o.domain : '';
    const version = int64(o.version);
    if (domain === '' || domain === 'ai.onnx') opset = version;
  }
  if (opset < 0) return fail('imports no default ONNX operator set (ai.onnx)');
  if (!(opset >= ONNX_MIN_OPSET && opset <= ONNX_MAX_OPSET)) return fail(`opset ${opset} is outside what cnnf runs (${ONNX_MIN_OPSET}..${ONNX_MAX_OPSET})`);
  if (Array.isArray(msg.functions) && msg.functions.length > 0) return fail('defines model-local functions, which cnnf does not run');
  const budget: Budget = { elements: 0 };
  const inits = Array.isArray(graph.initializer) ? (graph.initializer as Array<Record<string, unknown>>) : [];
  if (inits.length > MAX_ONNX_INITIALIZERS) return fail(`has ${inits.length} initializers (at most ${MAX_ONNX_INITIALIZERS})`);
  if (Array.isArray(graph.sparse_initializer) && graph.sparse_initializer.length > 0) return fail('has sparse initializers, which cnnf does not read');
  const initializers = new Map<string, OnnxInit>();
  for (const t of inits) {
    const init = readTensor(t, path, budget);
    if (init.name === '' || initializers.has(init.name)) return fail(`initializer ${q(init.name)} is unnamed or named twice`);
    initializers.set(init.name, init);
  }
  const rawNodes = Array.isArray(graph.node) ? (graph.node as Array<Record<string, unknown>>) : [];
  if (rawNodes.length === 0) return fail('has no nodes');
  if (rawNodes.length > MAX_ONNX_NODES) return fail(`has ${rawNodes.length} nodes (at most ${MAX_ONNX_NODES})`);
  // inputs: the graph inputs that are not initializers (older exporters list the weights as inputs too)
  const inputs = (Array.isArray(graph.input) ? (graph.input as Array<Record<string, unknown>>) : []).filter((v) => !initializers.has(String(v.name)));
  if (inputs.length !== 1) return fail(`has ${inputs.length} inputs besides its weights; cnnf evaluates models with one image input`);
  const outputs = Array.isArray(graph.output) ? (graph.output as Array<Record<string, unknown>>) : [];
  if (outputs.length !== 1) return fail(`has ${outputs.length} outputs; cnnf evaluates models with one output (the logits or probabilities)`);
  const inputName = String(inputs[0].name ?? '');
  const outputName = String(outputs[0].name ?? '');
  const inDims = shapeOf(inputs[0]);
  const elem = ((inputs[0].type as Record<string, unknown> | undefined)?.tensor_type as Record<string, unknown> | undefined)?.elem_type;
  if (elem !== undefined && elem !== 1) return fail(`input ${q(inputName)} is ${DTYPES[elem as number]?.name ?? `of type ${String(elem)}`}, not float32`);
  if (!inDims || inDims.length !== 4 || inDims.slice(1).some((d) => d === null)) {
    return fail(`input ${q(inputName)} has shape [${(inDims ?? []).map((d) => d ?? '?').join(', ')}], not an image batch [N, C, H, W] with fixed C, H, W`);
  }
  const [, a, b, c] = inDims as [number | null, number, number, number];
  if (Math.max(a, b, c) > MAX_ONNX_INPUT.side || a * b * c > MAX_ONNX_INPUT.values) {
    return fail(`input [${inDims.map((d) => d ?? 'N').join(', ')}] is larger than cnnf evaluates (sides up to ${MAX_ONNX_INPUT.side}, ${MAX_ONNX_INPUT.values} values per image)`);
  }
  // nodes, in order: every input defined before use, every output defined once
  const defined = new Set<string>([inputName, ...initializers.keys()]);
  const nodes: OnnxNode[] = [];
  for (const [k, n] of rawNodes.entries()) {
    const name = typeof n.name === 'string' && n.name !== '' ? n.name : `#${k}`;
    const op = typeof n.op_type === 'string' ? n.op_type : '';
    const where = `${path}: node ${q(name)} (${printable(op)})`;
    const domain = typeof n.domain === 'string' ? n.domain : '';
    if (domain !== '' && domain !== 'ai.onnx') throw new UsageError(`${where}: operator domain ${q(domain)} is not ONNX's default one, which is all cnnf runs`);
    if (!ONNX_OPS.has(op)) throw new UsageError(`${where}: operator ${printable(op)} is not one cnnf runs (supported: ${[...ONNX_OPS].sort().join(', ')})`);
    if ((ONNX_OP_SINCE[op] ?? 0) > opset) throw new UsageError(`${where}: operator ${op} needs opset ${ONNX_OP_SINCE[op]} or later; the model imports opset ${opset}`);
    const ins = (Array.isArray(n.input) ? (n.input as string[]) : []).map(String);
    const outs = (Array.isArray(n.output) ? (n.output as string[]) : []).map(String);
    if (ins.length > 64 || outs.length > 8 || outs.length === 0) throw new UsageError(`${where}: ${ins.length} inputs and ${outs.length} outputs`);
    for (const i of ins) {
      if (i !== '' && !defined.has(i)) throw new UsageError(`${where}: input ${q(i)} is not defined before the node (the graph is not in topological order, or has a cycle)`);
    }
    for (const o of outs) {
      if (o === '') continue;
      if (defined.has(o)) throw new UsageError(`${where}: output ${q(o)} is defined twice`);
      defined.add(o);
    }
    const attrs: Record<string, OnnxAttr> = {};
    const rawAttrs = Array.isArray(n.attribute) ? (n.attribute as Array<Record<string, unknown>>) : [];
    if (rawAttrs.length > 64) throw new UsageError(`${where}: ${rawAttrs.length} attributes`);
    for (const ra of rawAttrs) {
      const [an, av] = readAttr(ra, where, budget);
      attrs[an] = av;
    }
    nodes.push({ name, op, inputs: ins, outputs: outs, attrs });
  }
  if (!defined.has(outputName)) return fail(`output ${q(outputName)} is computed by no node`);
  return {
    path,
    sha256,
    recorded: recordedAdapter(msg, path),
    graph: { opset, input: { name: inputName, dims: inDims }, output: outputName, initializers, nodes, producer: printable(msg.producer_name ?? '') },
  };
}

/** A node to encode: op type, inputs, outputs and attributes (numbers are ints unless listed in `floats`). */
export interface OnnxNodeSpec {
  op: string;
  name?: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, number | number[] | string | { floats: number[] } | { float: number }>;
}

export interface OnnxModelSpec {
  opset: number;
  producer?: string;
  input: { name: string; dims: Array<number | string> };
  output: { name: string; dims: Array<number | string> };
  initializers: Array<{ name: string; dims: number[]; data: Float32Array | Int32Array; int64?: boolean }>;
  nodes: OnnxNodeSpec[];
  docString?: string;
  /** metadata_props (cnnf writes its input adapter as "cnnf.adapter", see readOnnxModelFile). */
  metadata?: Record<string, string>;
}

const ATTR = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

/** Encodes a model as ONNX protobuf bytes (cnnf's export and tests build models with it). */
export function encodeOnnxModel(spec: OnnxModelSpec): Uint8Array {
  const T = onnxModelType();
  const dim = (d: number | string) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d });
  const vi = (v: { name: string; dims: Array<number | string> }) => ({ name: v.name, type: { tensor_type: { elem_type: 1, shape: { dim: v.dims.map(dim) } } } });
  const attr = (name: string, v: NonNullable<OnnxNodeSpec['attrs']>[string]) => {
    if (typeof v === 'string') return { name, type: ATTR.STRING, s: Buffer.from(v, 'utf8') };
    if (typeof v === 'number') return { name, type: ATTR.INT, i: v };
    if (Array.isArray(v)) return { name, type: ATTR.INTS, ints: v };
    if ('floats' in v) return { name, type: ATTR.FLOATS, floats: v.floats };
    return { name, type: ATTR.FLOAT, f: v.float };
  };
  const tensor = (t: OnnxModelSpec['initializers'][number]) => {
    if (t.data instanceof Float32Array) return { name: t.name, dims: t.dims, data_type: 1, raw_data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) };
    if (t.int64) {
      const b = new DataView(new ArrayBuffer(t.data.length * 8));
      t.data.forEach((v, i) => b.setBigInt64(i * 8, BigInt(v), true));
      return { name: t.name, dims: t.dims, data_type: 7, raw_data: new Uint8Array(b.buffer) };
    }
    return { name: t.name, dims: t.dims, data_type: 6, int32_data: Array.from(t.data) };
  };
  const msg = T.fromObject({
    ir_version: 8,
    producer_name: spec.producer ?? 'cnnf',
    opset_import: [{ domain: '', version: spec.opset }],
    ...(spec.docString ? { doc_string: spec.docString } : {}),
    ...(spec.metadata ? { metadata_props: Object.entries(spec.metadata).map(([key, value]) => ({ key, value })) } : {}),
    graph: {
      name: 'cnnf',
      node: spec.nodes.map((n, k) => ({ name: n.name ?? `${n.op.toLowerCase()}_${k}`, op_type: n.op, input: n.inputs, output: n.outputs, attribute: Object.entries(n.attrs ?? {}).map(([a, v]) => attr(a, v)) })),
      initializer: spec.initializers.map(tensor),
      input: [vi(spec.input)],
      output: [vi(spec.output)],
    },
  });
  return T.encode(msg).finish();
}

/** A foreign model ready for evaluate() (as io/tfjs.ts's LoadedForeign). */
export interface LoadedOnnx {
  model: OnnxClassifier;
  path: string;
  sha256: string;
  source: string;
  classNames?: string[];
}

/** ONNX models are NCHW unless told otherwise (PyTorch's layout); inputs in [0, 1] unless told. */
export const ONNX_DEFAULT_ADAPTER: InputAdapter = { ...DEFAULT_ADAPTER, layout: 'NCHW' };

/** Builds a read ONNX model on the active backend, probed once (batch 2, finite logits, gradient). */
export async function buildOnnxModel(file: OnnxModelFile, adapter: Partial<InputAdapter> = {}): Promise<LoadedOnnx> {
  const defined = Object.fromEntries(Object.entries(adapter).filter(([, x]) => x !== undefined)) as Partial<InputAdapter>;
  const { classNames, ...recorded } = file.recorded;
  const a = checkAdapter({ ...ONNX_DEFAULT_ADAPTER, ...recorded, ...defined });
  const model = await OnnxClassifier.create(file.graph, a, `ONNX ${basename(file.path)}`, file.path);
  if (classNames && classNames.length !== model.numClasses) {
    model.dispose();
    throw new UsageError(`${file.path}: metadata ${ONNX_ADAPTER_KEY} names ${classNames.length} classes, the model outputs ${model.numClasses}`);
  }
  return { model, path: file.path, sha256: file.sha256, source: 'ONNX', ...(classNames ? { classNames } : {}) };
}
