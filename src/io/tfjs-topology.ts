/**
 * Checks of a TF.js model's topology before tfjs builds it (issue 22): tfjs-layers' `fromConfig`
 * re-queues a layer call whose input does not exist yet, so an inbound node that names a missing
 * layer, a node index that is never created, or two layers feeding each other loop forever; a layer
 * that declares a million units allocates its kernel before any weight is compared with the
 * manifest. So, before tfjs sees it:
 *
 * - LayersModel: the topology is converted to tfjs's camelCase form here (the same conversion as
 *   tfjs's `convertPythonicToTs`, which leaves it unchanged when applied again) and checked on that
 *   form, which is what tfjs is then given: a bounded number of layers and layer calls, bounded JSON
 *   depth, unique layer names, every inbound node resolvable (the layer exists, the node index is
 *   one the layer will have) and the calls acyclic, so `fromConfig` terminates; declared unit and
 *   filter counts no larger than the number of weight values the manifest holds; declared input
 *   shapes bounded. `guardWeightCreation` then bounds, while tfjs builds, the weight values the
 *   layers create by what the manifest holds (checked before each allocation).
 * - GraphModel: a bounded number of nodes (its function library's included), unique names, every
 *   data input a node of the graph, and acyclic (edges out of `NextIteration`, the back edge of a
 *   TF1 while loop, excepted).
 *
 * Every problem is a one-line UsageError naming model.json.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { MAX_INPUT_VALUES } from '../models/foreign.js';

export const TFJS_LIMITS = {
  /** Layers of a LayersModel, those of nested models included. */
  layers: 4096,
  /** Layer calls (inbound nodes) of a LayersModel in all. */
  calls: 16384,
  /** Nesting depth of the topology's JSON values. */
  depth: 64,
  /** Nested models inside models. */
  modelDepth: 8,
  /** Nodes of a GraphModel, those of its function library included. */
  graphNodes: 20000,
  /** Values of one declared input image (H x W x C), as models/foreign.ts bounds a built model's. */
  inputValues: MAX_INPUT_VALUES,
} as const;

const MODEL_CLASSES = new Set(['Sequential', 'Model', 'Functional']);
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** Names that `name in {}` finds on Object.prototype: tfjs keys plain objects by layer name. */
const RESERVED = (n: string): boolean => n in Object.prototype || n === '__proto__';

const show = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}...` : s);

/** tfjs-layers' toCamelCase (generic_utils.ts). */
function toCamelCase(id: string): string {
  if (id.length <= 1 || !id.includes('_')) return id;
  return id.replace(/[_]+(\w|$)/g, (_m, p1: string) => p1.toUpperCase());
}

const NAME_ARRAYS = new Set(['inboundNodes', 'outputLayers', 'inputLayers']);

/** tfjs-layers' convertPythonicToTs (serialization_utils.ts), depth-bounded, refusing `__proto__` keys. */
function pythonicToTs(file: string, v: Json, key: string | undefined, depth: number): Json {
  if (depth > TFJS_LIMITS.depth) throw new UsageError(`${file}: modelTopology is nested more than ${TFJS_LIMITS.depth} levels deep`);
  if (v === null) return null;
  if (typeof v === 'string') return toCamelCase(v);
  if (typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) {
    return v.map((item, i) => (key !== undefined && NAME_ARRAYS.has(key) && i === 0 && typeof item === 'string' ? item : pythonicToTs(file, item, key, depth + 1)));
  }
  const out: Obj = {};
  for (const k of Object.keys(v)) {
    if (k === '__proto__') throw new UsageError(`${file}: modelTopology has a "__proto__" key`);
    const x = v[k];
    if (k === 'name' && typeof x === 'string') out[k] = x;
    else {
      const tk = toCamelCase(k);
      if (tk === '__proto__') throw new UsageError(`${file}: modelTopology has a "__proto__" key`);
      out[tk] = pythonicToTs(file, x, tk, depth + 1);
    }
  }
  return out;
}

/** What the manifest holds: weight values in all (any dtype). */
export interface ManifestSize {
  values: number;
}

const SIZE_KEYS = ['units', 'filters', 'outputDim', 'inputDim', 'depthMultiplier'] as const;
const SHAPE_KEYS = ['batchInputShape', 'inputShape', 'batchShape'] as const;

/**
 * Converts a LayersModel topology (model.json's `modelTopology`, `model_config` unwrapped) to the
 * form tfjs deserializes and checks it (see the file comment). Returns the form to hand to tfjs.
 */
export function checkLayersTopology(file: string, topology: unknown, manifest: ManifestSize): object {
  let t = topology as Json;
  if (isObj(t) && t.model_config !== undefined && t.model_config !== null) t = t.model_config;
  const ts = pythonicToTs(file, t, undefined, 0);
  if (!isObj(ts) || typeof ts.className !== 'string' || !MODEL_CLASSES.has(ts.className)) {
    throw new UsageError(`${file}: modelTopology is not a Sequential or functional Model (class_name ${isObj(ts) && typeof ts.className === 'string' ? show(ts.className) : 'missing'})`);
  }
  const counts = { layers: 0, calls: 0 };
  checkModel(file, ts, manifest, counts, 0);
  return ts;
}

/** The layer list of a model's config (Sequential: an array, or {layers}). */
function layersOf(file: string, m: Obj): Json[] {
  const c = m.config;
  const layers = m.className === 'Sequential' && Array.isArray(c) ? c : isObj(c) ? c.layers : undefined;
  if (!Array.isArray(layers)) throw new UsageError(`${file}: a ${m.className} in modelTopology has no list of layers`);
  return layers;
}

function checkModel(file: string, m: Obj, manifest: ManifestSize, counts: { layers: number; calls: number }, depth: number): void {
  if (depth > TFJS_LIMITS.modelDepth) throw new UsageError(`${file}: modelTopology nests models more than ${TFJS_LIMITS.modelDepth} deep`);
  const layers = layersOf(file, m);
  const functional = m.className !== 'Sequential';
  const byName = new Map<string, { index: number; initial: number; calls: Json[][] }>();
  for (const [i, l] of layers.entries()) {
    if (++counts.layers > TFJS_LIMITS.layers) throw new UsageError(`${file}: modelTopology has more than ${TFJS_LIMITS.layers} layers`);
    if (!isObj(l) || typeof l.className !== 'string' || !isObj(l.config)) throw new UsageError(`${file}: layer ${i} of a ${m.className} is not {class_name, config}`);
    const cfgName = l.config.name;
    const name = functional ? l.name : cfgName;
    if (functional || name !== undefined) {
      if (typeof name !== 'string' || name === '') throw new UsageError(`${file}: layer ${i} of a ${m.className} has no name`);
      if (RESERVED(name)) throw new UsageError(`${file}: layer name ${show(name)} is reserved`);
      if (cfgName !== undefined && cfgName !== name) throw new UsageError(`${file}: layer ${show(name)} has config name ${typeof cfgName === 'string' ? show(cfgName) : 'not a string'}`);
      if (byName.has(name)) throw new UsageError(`${file}: two layers are named ${show(name)}`);
    }
    checkDeclaredSizes(file, name ?? `${i}`, l.config, manifest);
    if (MODEL_CLASSES.has(l.className)) checkModel(file, l, manifest, counts, depth + 1);
    if (!functional) continue;
    const nodes = l.inboundNodes ?? [];
    if (!Array.isArray(nodes)) throw new UsageError(`${file}: layer ${show(name as string)}: inbound_nodes is not a list`);
    const calls: Json[][] = [];
    for (const node of nodes) {
      if (++counts.calls > TFJS_LIMITS.calls) throw new UsageError(`${file}: modelTopology has more than ${TFJS_LIMITS.calls} layer calls`);
      // an empty call creates no node: a later reference to it would wait forever
      if (!Array.isArray(node) || node.length === 0) throw new UsageError(`${file}: layer ${show(name as string)}: an inbound node is not a non-empty list of [layer, node, tensor] (the Keras 3 format is not read)`);
      calls.push(node);
    }
    // nodes a layer has before any call: an InputLayer and a nested model create one when built
    // (Keras numbers a nested model's calls from 1); an empty Sequential none
    const initial = l.className === 'InputLayer' || l.className === 'Model' || l.className === 'Functional' || (l.className === 'Sequential' && layersOf(file, l).length > 0) ? 1 : 0;
    byName.set(name as string, { index: i, initial, calls });
  }
  if (!functional) return;
  // a call (layer, k) of the graph: node id = offset(layer) + k; a reference to (L, j) with j >= initial(L)
  // needs L's listed call j - initial(L), and a layer's calls are made in order (call j after call j - 1)
  const offset = new Map<string, number>();
  let total = 0;
  for (const [n, l] of byName) {
    offset.set(n, total);
    total += l.calls.length;
  }
  const deps: number[][] = Array.from({ length: total }, () => []);
  const ref = (where: string, r: Json, tensorOnly = false): number | null => {
    if (!Array.isArray(r) || r.length < 3 || r.length > 4 || typeof r[0] !== 'string' || !Number.isInteger(r[1]) || !Number.isInteger(r[2]) || (r[1] as number) < 0 || (r[2] as number) < 0 || (r[2] as number) > 1024) {
      throw new UsageError(`${file}: ${where}: an input is not [layer name, node index, tensor index${tensorOnly ? '' : ', kwargs'}]`);
    }
    if (r.length === 4 && r[3] !== null && !isObj(r[3])) throw new UsageError(`${file}: ${where}: an input's kwargs are not an object`);
    const target = byName.get(r[0]);
    if (!target) throw new UsageError(`${file}: ${where}: input layer ${show(r[0])} is not a layer of this model`);
    const k = r[1] as number;
    if (k >= target.initial + target.calls.length) throw new UsageError(`${file}: ${where}: layer ${show(r[0])} has no node ${k} (it has ${target.initial + target.calls.length})`);
    return k < target.initial ? null : offset.get(r[0])! + k - target.initial;
  };
  for (const [n, l] of byName) {
    for (const [k, call] of l.calls.entries()) {
      const id = offset.get(n)! + k;
      if (k > 0) deps[id].push(id - 1);
      for (const r of call) {
        const d = ref(`layer ${show(n)}`, r);
        if (d !== null) deps[id].push(d);
      }
    }
  }
  const cfg = m.config as Obj;
  for (const key of ['inputLayers', 'outputLayers'] as const) {
    const list = cfg[key];
    if (!Array.isArray(list) || list.length === 0) throw new UsageError(`${file}: a ${m.className} in modelTopology has no ${key === 'inputLayers' ? 'input_layers' : 'output_layers'}`);
    for (const r of list) ref(key === 'inputLayers' ? 'input_layers' : 'output_layers', r, true);
  }
  const cycle = findCycle(total, (i) => deps[i]);
  if (cycle !== null) {
    const names = [...offset.keys()];
    const layerOf = (id: number): string => names.filter((nm) => offset.get(nm)! <= id).pop()!;
    throw new UsageError(`${file}: layer ${show(layerOf(cycle))} depends on its own output (the layer calls form a cycle)`);
  }
}

function checkDeclaredSizes(file: string, name: string, cfg: Obj, manifest: ManifestSize): void {
  for (const k of SIZE_KEYS) {
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new UsageError(`${file}: layer ${show(name)}: ${k} ${JSON.stringify(v).slice(0, 30)} is not a positive integer`);
    // a layer with `units` outputs has at least that many weight values
    if (v > manifest.values) throw new UsageError(`${file}: layer ${show(name)} declares ${k} ${v}, more than the ${manifest.values} weight values model.json's manifest holds`);
  }
  for (const k of SHAPE_KEYS) {
    const s = cfg[k];
    if (s === undefined || s === null) continue;
    if (!Array.isArray(s) || s.length > 8) throw new UsageError(`${file}: layer ${show(name)}: ${k} is not a shape`);
    const dims = k === 'inputShape' ? s : s.slice(1);
    let values = 1;
    for (const d of dims) {
      if (d === null) continue;
      if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) throw new UsageError(`${file}: layer ${show(name)}: ${k} [${s.map(String).join(', ')}] has a dimension that is not a positive integer`);
      values *= d;
    }
    if (values > TFJS_LIMITS.inputValues) throw new UsageError(`${file}: layer ${show(name)}: ${k} [${s.map(String).join(', ')}] has ${values} values per example, more than ${TFJS_LIMITS.inputValues}`);
  }
}

/** The first node on a cycle of the graph `deps` (iterative DFS), or null. */
function findCycle(n: number, deps: (i: number) => number[]): number | null {
  const state = new Uint8Array(n); // 0 new, 1 on the stack, 2 done
  const stack: Array<[number, number]> = [];
  for (let s = 0; s < n; s++) {
    if (state[s] !== 0) continue;
    stack.push([s, 0]);
    state[s] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const ds = deps(top[0]);
      if (top[1] < ds.length) {
        const d = ds[top[1]++];
        if (state[d] === 1) return d;
        if (state[d] === 0) {
          state[d] = 1;
          stack.push([d, 0]);
        }
      } else {
        state[top[0]] = 2;
        stack.pop();
      }
    }
  }
  return null;
}

/**
 * Runs `build` (tfjs building a LayersModel from a checked topology) with every weight the layers
 * create counted before it is allocated: more values than the manifest holds (a declared shape that
 * does not match the weights) is refused with one line, before the allocation. The count hooks
 * tfjs-layers' `Layer.prototype.addWeight` for the duration of the build (restored after it): layers
 * some other code builds during that await would be counted too, so callers build one at a time.
 */
export async function guardWeightCreation<T>(file: string, manifest: ManifestSize, build: () => Promise<T>): Promise<T> {
  const proto = tf.layers.Layer.prototype as unknown as { addWeight: (name: string, shape: unknown, ...rest: unknown[]) => unknown };
  const original = proto.addWeight;
  let created = 0;
  proto.addWeight = function (this: { name: string }, name: string, shape: unknown, ...rest: unknown[]) {
    const dims = Array.isArray(shape) ? shape : [];
    const values = dims.reduce((a: number, d: unknown) => a * (typeof d === 'number' ? d : NaN), 1);
    if (!Number.isSafeInteger(values) || values < 0 || created + values > manifest.values) {
      throw new UsageError(`${file}: layer ${show(String(this.name))} would create a [${dims.map(String).join(', ')}] weight, more than the ${manifest.values} weight values model.json's manifest holds in all (${created} made already): its declared sizes do not match the weights`);
    }
    created += values;
    return original.call(this, name, shape, ...rest);
  };
  try {
    return await build();
  } finally {
    proto.addWeight = original;
  }
}

/** Checks a GraphModel topology (see the file comment). */
export function checkGraphTopology(file: string, topology: unknown): void {
  if (!isObj(topology as Json)) throw new UsageError(`${file}: a GraphModel's modelTopology is not an object`);
  const t = topology as Obj;
  const nodes = t.node ?? [];
  if (!Array.isArray(nodes)) throw new UsageError(`${file}: a GraphModel's modelTopology.node is not a list`);
  let count = nodes.length;
  const lib = t.library;
  if (isObj(lib) && Array.isArray(lib.function)) {
    for (const f of lib.function) if (isObj(f) && Array.isArray(f.nodeDef)) count += f.nodeDef.length;
  }
  if (count > TFJS_LIMITS.graphNodes) throw new UsageError(`${file}: the GraphModel has ${count} nodes, more than ${TFJS_LIMITS.graphNodes}`);
  const index = new Map<string, number>();
  for (const [i, n] of nodes.entries()) {
    if (!isObj(n) || typeof n.name !== 'string' || n.name === '' || typeof n.op !== 'string') throw new UsageError(`${file}: GraphModel node ${i} has no name and op`);
    if (index.has(n.name)) throw new UsageError(`${file}: two GraphModel nodes are named ${show(n.name)}`);
    index.set(n.name, i);
  }
  const deps: number[][] = nodes.map(() => []);
  for (const [i, n] of (nodes as Obj[]).entries()) {
    const inputs = n.input ?? [];
    if (!Array.isArray(inputs) || !inputs.every((x) => typeof x === 'string')) throw new UsageError(`${file}: GraphModel node ${show(n.name as string)}: input is not a list of names`);
    for (const raw of inputs as string[]) {
      const control = raw.startsWith('^');
      const src = (control ? raw.slice(1) : raw).split(':')[0];
      const j = index.get(src);
      if (j === undefined) {
        // tfjs ignores a control input it cannot find; a data input must exist
        if (!control) throw new UsageError(`${file}: GraphModel node ${show(n.name as string)}: input ${show(raw)} is not a node of the graph`);
        continue;
      }
      // NextIteration -> Merge is the back edge of a TF1 while loop
      if ((nodes[j] as Obj).op === 'NextIteration') continue;
      deps[i].push(j);
    }
  }
  const cycle = findCycle(nodes.length, (i) => deps[i]);
  if (cycle !== null) throw new UsageError(`${file}: GraphModel node ${show((nodes[cycle] as Obj).name as string)} depends on its own output (the graph has a cycle)`);
}
