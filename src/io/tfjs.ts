/**
 * TF.js LayersModel directories (model.json + binary weight shards, as written by
 * `tensorflowjs_converter` from Keras or by `model.save`) read and written with plain files (no
 * tfjs-node): model.json and every shard are validated and bounded (shard paths stay inside the
 * model's folder, shard sizes add up to what the weight specs declare) before tfjs's own loader
 * builds the model from memory. A `model.cnnf.json` beside model.json may record the input adapter
 * (`{"inputRange": "0,1", "mean": [...], "std": [...], "layout": "NHWC", "output": "logits",
 * "classNames": [...]}`) so that it is typed once.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { readInputFile } from './files.js';
import { basename, dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import * as tf from '@tensorflow/tfjs';
// the published declarations name tfjs-core's types only (see TfjsLayersNet in models/foreign.ts)
import type { io as tfio } from '@tensorflow/tfjs-core';
import { UsageError } from '../errors.js';
import { checkAdapter, DEFAULT_ADAPTER, TfjsGraphClassifier, TfjsLayersClassifier, type ForeignClassifier, type InputAdapter } from '../models/foreign.js';
import { writeFileAtomic } from './atomic.js';
import { checkGraphTopology, checkLayersTopology, guardWeightCreation, type ManifestSize } from './tfjs-topology.js';

export const MAX_MODEL_JSON_BYTES = 64 * 1024 ** 2;
export const MAX_WEIGHT_BYTES = 2 * 1024 ** 3 - 1;

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };
const QUANT_BYTES: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };

export interface TfjsModelSidecar extends Partial<InputAdapter> {
  classNames?: string[];
}

/** Reads a regular file whole after checking, on the opened descriptor, its kind and size (no race, no FIFO hang). */
function readBounded(path: string, max: number, what: string): Buffer {
  return readInputFile(path, what, { maxBytes: max, missing: (p) => `cannot read ${what} ${p}: no such file` });
}

function parseJson(buf: Buffer, path: string): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new UsageError(`${path}: not valid JSON`);
  }
}

/** realpath of `p`, or null when it does not exist (the reader then says so). */
function realOrNull(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
}

/**
 * The path to read for `p`, a file named by the model folder `dir` (realpath `dirReal`): refused when
 * it leaves the folder, lexically or through a symlink (containment by realpath, not by the path's
 * text). The resolved path is what is read.
 */
function insideModelFolder(file: string, dir: string, dirReal: string, p: string, what: string): string {
  const full = resolve(dir, normalize(p));
  if (!full.startsWith(dir + sep)) throw new UsageError(`${file}: ${what} path ${JSON.stringify(p)} leaves the model's folder`);
  const real = realOrNull(full);
  if (real === null) return full;
  if (!real.startsWith(dirReal + sep)) throw new UsageError(`${file}: ${what} ${JSON.stringify(p)} is a symbolic link to a file outside the model's folder`);
  return real;
}

/** model.json path for a path that is either the file or its folder. */
export function modelJsonPath(path: string): string {
  try {
    if (statSync(path).isDirectory()) return join(path, 'model.json');
  } catch {
    // reported by the reader
  }
  return path;
}

/** Reads model.json + shards into tfjs ModelArtifacts (validated, bounded). */
export function readLayersModelArtifacts(path: string): { artifacts: tfio.ModelArtifacts; format: string } {
  const r = readTfjsModelArtifacts(path);
  if (r.format === 'graph-model') throw new UsageError(`${modelJsonPath(path)}: a TF.js GraphModel; cnnf reads LayersModels here (tensorflowjs_converter --output_format tfjs_layers_model, or model.save from tfjs-layers)`);
  return r;
}

/**
 * Whether `path` is a TF.js model by its content: a folder holding model.json, or a file whose first
 * bytes open a JSON object (a safetensors checkpoint starts with an 8-byte binary length).
 */
export function isTfjsModelPath(path: string): boolean {
  let fd: number | undefined;
  try {
    const st = statSync(path);
    if (st.isDirectory()) return existsSync(join(path, 'model.json'));
    // only a regular file is sniffed: opening a FIFO would block, a device would read forever; the
    // checkpoint reader then refuses those with one line
    if (!st.isFile()) return false;
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) return false;
    const head = Buffer.alloc(64);
    const n = readSync(fd, head, 0, 64, 0);
    const text = head.subarray(0, n);
    if (text.includes(0)) return false;
    return /^\s*\{/.test(text.toString('latin1'));
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A TF.js model read from files and checked (no backend needed yet); its sha256 covers model.json and every shard, in manifest order. */
export interface TfjsModelFile {
  /** The path as given. */
  path: string;
  artifacts: tfio.ModelArtifacts;
  format: 'layers-model' | 'graph-model';
  sha256: string;
}

/** Reads a LayersModel or GraphModel model.json + shards (validated, bounded) and hashes them. */
export function readTfjsModelFile(path: string): TfjsModelFile {
  const r = readTfjsModelArtifacts(path);
  return { path, ...r };
}

function readTfjsModelArtifacts(path: string): { artifacts: tfio.ModelArtifacts; format: 'layers-model' | 'graph-model'; sha256: string } {
  const file = modelJsonPath(path);
  const dir = resolve(dirname(file));
  const dirReal = realOrNull(dir) ?? dir;
  // a folder names its model.json: that too stays inside it
  const given = file !== path ? insideModelFolder(file, dir, dirReal, basename(file), 'model.json') : file;
  const raw = readBounded(given, MAX_MODEL_JSON_BYTES, 'model.json');
  const hash = createHash('sha256').update(raw);
  const json = parseJson(raw, file) as Record<string, unknown>;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`${file}: not a TF.js model.json (not a JSON object)`);
  const format = typeof json.format === 'string' ? json.format : 'layers-model';
  if (format !== 'layers-model' && format !== 'graph-model') throw new UsageError(`${file}: unknown TF.js model format ${JSON.stringify(format).slice(0, 40)}`);
  const topology = json.modelTopology;
  if (typeof topology !== 'object' || topology === null) throw new UsageError(`${file}: model.json has no modelTopology`);
  const manifest = json.weightsManifest;
  if (!Array.isArray(manifest)) throw new UsageError(`${file}: model.json has no weightsManifest`);
  const specs: tfio.WeightsManifestEntry[] = [];
  const shards: Buffer[] = [];
  let total = 0;
  let values = 0;
  for (const [g, group] of manifest.entries()) {
    if (typeof group !== 'object' || group === null || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new UsageError(`${file}: weightsManifest[${g}] is not {paths, weights}`);
    }
    let want = 0;
    for (const w of group.weights as unknown[]) {
      const s = w as tfio.WeightsManifestEntry;
      if (typeof s !== 'object' || s === null || typeof s.name !== 'string' || !Array.isArray(s.shape) || !s.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new UsageError(`${file}: weightsManifest[${g}] has a weight without a name and shape`);
      }
      const per = s.quantization ? QUANT_BYTES[s.quantization.dtype] : DTYPE_BYTES[s.dtype];
      if (per === undefined) throw new UsageError(`${file}: weight ${JSON.stringify(s.name).slice(0, 80)} has unsupported dtype ${JSON.stringify(s.quantization?.dtype ?? s.dtype)}`);
      if (s.quantization) checkQuantization(file, s);
      const count = s.shape.reduce((a, b) => a * b, 1);
      want += count * per;
      values += count;
      if (want > MAX_WEIGHT_BYTES) throw new UsageError(`${file}: weights larger than ${MAX_WEIGHT_BYTES} bytes`);
      specs.push(s);
    }
    let have = 0;
    for (const p of group.paths as unknown[]) {
      if (typeof p !== 'string' || p === '' || isAbsolute(p) || p.includes('\0')) throw new UsageError(`${file}: weight shard path ${JSON.stringify(p)} is not a relative file name`);
      const full = insideModelFolder(file, dir, dirReal, p, 'weight shard');
      const b = readBounded(full, MAX_WEIGHT_BYTES - total, 'weight shard');
      hash.update(b);
      total += b.length;
      have += b.length;
      shards.push(b);
    }
    if (have !== want) throw new UsageError(`${file}: weightsManifest[${g}] shards hold ${have} bytes but its weights need ${want}`);
  }
  const data = new Uint8Array(total);
  let off = 0;
  for (const s of shards) {
    data.set(s, off);
    off += s.length;
  }
  const size: ManifestSize = { values };
  const extra: Partial<tfio.ModelArtifacts> = {};
  let checked: object;
  if (format === 'graph-model') {
    checkGraphTopology(file, topology);
    checked = topology;
    if (typeof json.signature === 'object' && json.signature !== null) extra.signature = json.signature as object;
    if (typeof json.userDefinedMetadata === 'object' && json.userDefinedMetadata !== null) extra.userDefinedMetadata = json.userDefinedMetadata as { [key: string]: object };
    if (typeof json.modelInitializer === 'object' && json.modelInitializer !== null) extra.modelInitializer = json.modelInitializer as object;
  } else {
    // tfjs gets the converted, checked form of the topology (converting it again changes nothing)
    checked = checkLayersTopology(file, topology, size);
    checkFiniteWeights(file, specs, data);
  }
  return { artifacts: { modelTopology: checked, weightSpecs: specs, weightData: data.buffer, format, ...extra }, format, sha256: hash.digest('hex') };
}

/** A quantised weight's scale and min are finite in float32, and so is its largest value. */
function checkQuantization(file: string, s: tfio.WeightsManifestEntry): void {
  const q = s.quantization!;
  if (q.dtype === 'float16') return;
  const f = (v: unknown) => typeof v === 'number' && Number.isFinite(Math.fround(v));
  const top = q.dtype === 'uint8' ? 255 : 65535;
  const scale = q.scale;
  const min = q.min;
  if (!f(scale) || !f(min) || !Number.isFinite(Math.fround(top * (scale as number) + (min as number)))) {
    throw new UsageError(`${file}: weight ${JSON.stringify(s.name).slice(0, 80)} has a quantization scale or min that is not a finite float32 (scale ${String(scale).slice(0, 20)}, min ${String(min).slice(0, 20)})`);
  }
}

/**
 * Every float weight of a LayersModel is finite (NaN or Inf weights make every logit non-finite, and
 * argmax of NaN logits is class 0): float32 values, float16 bit patterns. Named in the message.
 */
function checkFiniteWeights(file: string, specs: tfio.WeightsManifestEntry[], data: Uint8Array): void {
  let off = 0;
  for (const s of specs) {
    const count = s.shape.reduce((a, b) => a * b, 1);
    const per = s.quantization ? QUANT_BYTES[s.quantization.dtype] : DTYPE_BYTES[s.dtype];
    const bytes = data.subarray(off, off + count * per);
    let bad = -1;
    if (!s.quantization && s.dtype === 'float32') {
      const v = (data.byteOffset + off) % 4 === 0 ? new Float32Array(data.buffer, data.byteOffset + off, count) : new Float32Array(bytes.slice().buffer);
      for (let i = 0; i < v.length; i++) {
        if (!Number.isFinite(v[i])) {
          bad = i;
          break;
        }
      }
    } else if (s.quantization?.dtype === 'float16') {
      const v = (data.byteOffset + off) % 2 === 0 ? new Uint16Array(data.buffer, data.byteOffset + off, count) : new Uint16Array(bytes.slice().buffer);
      for (let i = 0; i < v.length; i++) {
        if ((v[i] & 0x7c00) === 0x7c00) {
          bad = i;
          break;
        }
      }
    }
    if (bad >= 0) throw new UsageError(`${file}: weight ${JSON.stringify(s.name).slice(0, 80)} holds a non-finite value (NaN or Inf) at index ${bad}`);
    off += count * per;
  }
}

/**
 * The keys model.cnnf.json may hold: the adapter and class names, and the provenance `cnnf export
 * --to tfjs` records (normalisation, dataset, exportedFrom: informational, not read). Any other key
 * is refused (a misspelt "stdd" would otherwise be ignored without a word).
 */
export const SIDECAR_KEYS = ['inputRange', 'mean', 'std', 'layout', 'output', 'classNames', 'normalisation', 'dataset', 'exportedFrom'] as const;

/** Edit distance of two short strings (for "did you mean"). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length];
}

/** Reads `model.cnnf.json` beside model.json, if any (inside the model's folder; unknown keys refused). */
export function readSidecar(path: string): TfjsModelSidecar {
  const file = modelJsonPath(path);
  const dir = resolve(dirname(file));
  const side = join(dirname(file), 'model.cnnf.json');
  if (!existsSync(side)) return {};
  const real = insideModelFolder(file, dir, realOrNull(dir) ?? dir, 'model.cnnf.json', 'model.cnnf.json');
  const v = parseJson(readBounded(real, 1024 * 1024, 'model.cnnf.json'), side) as Record<string, unknown>;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${side}: not a JSON object`);
  for (const k of Object.keys(v)) {
    if ((SIDECAR_KEYS as readonly string[]).includes(k)) continue;
    const near = SIDECAR_KEYS.map((x) => [x, distance(k.slice(0, 40), x)] as const).sort((a, b) => a[1] - b[1])[0];
    const hint = near[1] <= Math.max(2, Math.floor(near[0].length / 3)) ? `; did you mean "${near[0]}"?` : '';
    throw new UsageError(`${side}: unknown key ${JSON.stringify(k.slice(0, 40))} (known: ${SIDECAR_KEYS.join(', ')})${hint}`);
  }
  const out: TfjsModelSidecar = {};
  const nums = (k: string) => {
    const a = v[k];
    if (a === undefined) return undefined;
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'number')) throw new UsageError(`${side}: ${k} is not an array of numbers`);
    return a as number[];
  };
  const text = (k: string) => {
    const a = v[k];
    if (a === undefined) return undefined;
    if (typeof a !== 'string') throw new UsageError(`${side}: ${k} is not a string`);
    return a;
  };
  if (v.inputRange !== undefined) out.range = (Array.isArray(v.inputRange) ? v.inputRange.join(',') : text('inputRange')) as InputAdapter['range'];
  out.mean = nums('mean');
  out.std = nums('std');
  if (v.layout !== undefined) out.layout = text('layout') as InputAdapter['layout'];
  if (v.output !== undefined) out.output = text('output') as InputAdapter['output'];
  if (v.classNames !== undefined) {
    if (!Array.isArray(v.classNames) || !v.classNames.every((s) => typeof s === 'string')) throw new UsageError(`${side}: classNames is not an array of strings`);
    out.classNames = v.classNames as string[];
  }
  return out;
}

/** Loads a TF.js LayersModel (folder or model.json) as a classifier; `adapter` fields override model.cnnf.json. */
export async function loadTfjsLayersModel(path: string, adapter: Partial<InputAdapter> = {}): Promise<TfjsLayersClassifier & { classNames?: string[] }> {
  const { artifacts } = readLayersModelArtifacts(path);
  const { a, classNames } = adapterFor(path, adapter);
  const net = await buildLayers(path, artifacts);
  const m = await oneLine(path, () => TfjsLayersClassifier.create(net, a, sourceLabel('LayersModel', path)), net);
  try {
    checkSidecarClasses(path, classNames, m.numClasses);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return Object.assign(m, { classNames });
}

/** A foreign model ready for evaluate(): the classifier, where it came from and what identifies it. */
export interface LoadedForeign {
  model: ForeignClassifier;
  path: string;
  /** sha256 over model.json and its weight shards. */
  sha256: string;
  /** "TF.js LayersModel" or "TF.js GraphModel": the model's arch in results, tables and reports (no path, so shards on other machines agree). */
  source: string;
  /** From model.cnnf.json (else the data's). */
  classNames?: string[];
}

/** Builds a read TF.js model (LayersModel, or GraphModel) on the active backend; `adapter` fields override model.cnnf.json. */
export async function buildTfjsModel(file: TfjsModelFile, adapter: Partial<InputAdapter> = {}): Promise<LoadedForeign> {
  const { a, classNames } = adapterFor(file.path, adapter);
  let m: ForeignClassifier;
  if (file.format === 'layers-model') {
    const net = await buildLayers(file.path, file.artifacts);
    m = await oneLine(file.path, () => TfjsLayersClassifier.create(net, a, sourceLabel('LayersModel', file.path)), net);
  } else {
    let net: tf.GraphModel;
    try {
      net = await tf.loadGraphModel(tf.io.fromMemory(file.artifacts));
    } catch (e) {
      throw new UsageError(`${modelJsonPath(file.path)}: tfjs cannot build this GraphModel: ${firstLine(e)}`);
    }
    // create() disposes the model when it fails
    m = await oneLine(file.path, () => TfjsGraphClassifier.create(net, a, sourceLabel('GraphModel', file.path)));
  }
  try {
    checkSidecarClasses(file.path, classNames, m.numClasses);
  } catch (e) {
    m.dispose();
    throw e;
  }
  return { model: m, path: file.path, sha256: file.sha256, source: file.format === 'layers-model' ? 'TF.js LayersModel' : 'TF.js GraphModel', ...(classNames ? { classNames } : {}) };
}

const firstLine = (e: unknown): string => String((e as Error)?.message ?? e).split('\n')[0].slice(0, 200);
const sourceLabel = (kind: string, path: string): string => `TF.js ${kind} ${basename(dirname(resolve(modelJsonPath(path))))}/${basename(modelJsonPath(path))}`;

function adapterFor(path: string, adapter: Partial<InputAdapter>): { a: InputAdapter; classNames?: string[] } {
  const side = readSidecar(path);
  const defined = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;
  const { classNames, ...sideAdapter } = side;
  return { a: checkAdapter({ ...DEFAULT_ADAPTER, ...defined(sideAdapter), ...defined(adapter) }), classNames };
}

/**
 * Runs `make` (a classifier's constructor: its probes) and turns anything it throws that is not a
 * UsageError (a RangeError, a wasm abort, a TypeError from inside tfjs) into a one-line UsageError
 * naming model.json; disposes `net` when it fails.
 */
async function oneLine<T>(path: string, make: () => Promise<T>, net?: { dispose(): void }): Promise<T> {
  try {
    return await make();
  } catch (e) {
    try {
      net?.dispose();
    } catch {
      // a wasm heap that aborted cannot free anything; the error below says why
    }
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${modelJsonPath(path)}: tfjs cannot run this model: ${firstLine(e)}`);
  }
}

async function buildLayers(path: string, artifacts: tfio.ModelArtifacts): Promise<tf.LayersModel> {
  const file = modelJsonPath(path);
  const values = (artifacts.weightSpecs ?? []).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
  try {
    return await guardWeightCreation(file, { values }, () => tf.loadLayersModel(tf.io.fromMemory(artifacts)));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${file}: tfjs cannot build this LayersModel: ${firstLine(e)}`);
  }
}

function checkSidecarClasses(path: string, classNames: string[] | undefined, numClasses: number): void {
  if (classNames && classNames.length !== numClasses) throw new UsageError(`${path}: model.cnnf.json names ${classNames.length} classes for a model with ${numClasses} outputs`);
}

/** What saveTfjsLayersModel needs of a model: any tf.LayersModel is one. */
export interface SavableTfjsModel {
  save(handler: tfio.IOHandler): Promise<unknown>;
}

/** Saves a LayersModel as `dir/model.json` + `dir/weights.bin` (the layout of tfjs-node's file:// handler). */
export async function saveTfjsLayersModel(model: SavableTfjsModel, dir: string, sidecar?: TfjsModelSidecar): Promise<void> {
  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const wd = artifacts.weightData;
    const parts = wd === undefined ? [] : Array.isArray(wd) ? wd : [wd];
    const weights = Buffer.concat(parts.map((b) => Buffer.from(b)));
    const json = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format ?? 'layers-model',
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
      weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
    };
    writeFileAtomic(join(dir, 'weights.bin'), weights);
    writeFileAtomic(join(dir, 'model.json'), JSON.stringify(json));
    if (sidecar) {
      const { range, ...rest } = sidecar;
      writeFileAtomic(join(dir, 'model.cnnf.json'), JSON.stringify({ inputRange: range, ...rest }, null, 2) + '\n');
    }
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.length } };
  }));
}
