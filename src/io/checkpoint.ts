/**
 * cnnf checkpoints: safetensors holding the weights in cnnf layout plus metadata (architecture,
 * widths, ind, cycles, res_param, readout, dataset, class names, input normalisation, training
 * summary). Reading validates the format, the metadata and every tensor's shape and values.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { humanNumber } from '../format.js';
import { INPUT_LIMITS, MiB, readInputFile } from './files.js';
import { makeConfig, paramSpecs, type ModelConfig } from '../models/arch.js';
import { CNNF, type Readout } from '../models/cnnf.js';
import { readAndDispose } from '../nn/read.js';
import { encodeSafetensors, parseSafetensors, writeSafetensors, type TensorToWrite } from './safetensors.js';

export const CHECKPOINT_FORMAT = 'cnnf-checkpoint/1';
export const INPUT_NORMALISATION = 'x/255*2-1 (pixels in [-1, 1])';

export interface CheckpointInfo {
  config: ModelConfig;
  readout: Readout;
  dataset: string;
  classNames: string[];
  normalisation: string;
  /** Free-form training summary (epochs, accuracy, command, wall time, ...). */
  training: Record<string, unknown>;
  /** Where the weights came from ("cnnf train", "imported from PyTorch ..."). */
  source: string;
  /** Storage dtype of the weights. */
  dtype: 'F32' | 'F16';
}

export interface LoadedCheckpoint {
  model: CNNF;
  info: CheckpointInfo;
  path: string;
  sha256: string;
}

function readBytes(path: string): Buffer {
  return readInputFile(path, 'checkpoint', { maxBytes: INPUT_LIMITS.safetensors, missing: (p) => `cannot read checkpoint ${p}: no such file` });
}

function metaJson<T>(meta: Record<string, string>, key: string, path: string, check: (v: unknown) => boolean, fallback?: T): T {
  const raw = meta[key];
  if (raw === undefined) {
    if (fallback !== undefined) return fallback;
    throw new UsageError(`${path}: not a cnnf checkpoint (metadata has no ${key})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new UsageError(`${path}: metadata ${key} is not valid JSON`);
  }
  if (!check(v)) throw new UsageError(`${path}: metadata ${key} has an invalid value ${raw.slice(0, 80)}`);
  return v as T;
}

/** A checkpoint read and validated, weights as arrays: needs no backend. */
export interface CheckpointFile {
  arrays: Map<string, Float32Array>;
  info: CheckpointInfo;
  path: string;
  sha256: string;
}

/** Reads and validates a checkpoint file (format, metadata, every tensor's shape and values) without a backend. */
export function readCheckpointFile(path: string): CheckpointFile {
  return parseCheckpoint(readBytes(path), path);
}

/** Validates checkpoint bytes (see readCheckpointFile); `path` names them in messages. */
export function parseCheckpoint(buf: Buffer, path: string): CheckpointFile {
  const file = parseSafetensors(buf, path);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    const hint = [...file.tensors.keys()].some((k) => k.startsWith('conv1.conv.weight') || k.startsWith('param.'))
      ? ' (PyTorch weights? convert them with cnnf import --from pytorch)'
      : '';
    throw new UsageError(`${path}: not a cnnf checkpoint (format ${JSON.stringify(meta.format ?? null)})${hint}`);
  }
  const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const input = {
    arch: metaJson<string>(meta, 'arch', path, (v) => typeof v === 'string'),
    fc: metaJson<number[]>(meta, 'fc', path, (v) => Array.isArray(v) && v.length <= 16 && v.every(isNum)),
    numClasses: metaJson<number>(meta, 'num_classes', path, isNum),
    ind: metaJson<number>(meta, 'ind', path, isNum),
    cycles: metaJson<number>(meta, 'cycles', path, isNum),
    resParam: metaJson<number>(meta, 'res_param', path, isNum),
  };
  let config: ModelConfig;
  try {
    config = makeConfig(input);
  } catch (e) {
    // metadata problems name the file
    if (e instanceof UsageError) throw new UsageError(`${path}: metadata: ${e.message}`);
    throw e;
  }
  const readout = metaJson<Readout>(meta, 'readout', path, (v) => v === 'last' || v === 'average', 'last');
  const classNames = metaJson<string[]>(meta, 'class_names', path, (v) => Array.isArray(v) && v.every((s) => typeof s === 'string'),
    Array.from({ length: config.numClasses }, (_, i) => String(i)));
  if (classNames.length !== config.numClasses) {
    throw new UsageError(`${path}: ${classNames.length} class names for ${config.numClasses} classes`);
  }
  const arrays = new Map<string, Float32Array>();
  const specs = paramSpecs(config);
  const expected = new Set(specs.map((p) => p.name));
  for (const k of file.tensors.keys()) {
    if (!expected.has(k)) throw new UsageError(`${path}: unexpected tensor ${k} for arch ${config.arch}`);
  }
  let dtype: 'F32' | 'F16' = 'F32';
  for (const p of specs) {
    const t = file.tensors.get(p.name);
    if (!t) throw new UsageError(`${path}: missing tensor ${p.name}`);
    if (t.dtype !== 'F32' && t.dtype !== 'F16') throw new UsageError(`${path}: tensor ${p.name} has dtype ${t.dtype}, expected F32 or F16`);
    if (t.dtype === 'F16') dtype = 'F16';
    if (t.shape.join(',') !== p.shape.join(',')) {
      throw new UsageError(`${path}: tensor ${p.name} has shape [${t.shape.join(', ')}], expected [${p.shape.join(', ')}]`);
    }
    for (const v of t.data) if (!Number.isFinite(v)) throw new UsageError(`${path}: tensor ${p.name} contains NaN or infinity`);
    arrays.set(p.name, t.data);
  }
  const info: CheckpointInfo = {
    config,
    readout,
    dataset: meta.dataset ?? 'unknown',
    classNames,
    normalisation: meta.normalisation ?? INPUT_NORMALISATION,
    training: metaJson<Record<string, unknown>>(meta, 'training', path, (v) => typeof v === 'object' && v !== null && !Array.isArray(v), {}),
    source: meta.source ?? 'unknown',
    dtype,
  };
  return { arrays, info, path, sha256: createHash('sha256').update(buf).digest('hex') };
}

/** Inputs of the load-time probe: all -1, all 0, all +1 and a checkerboard of -1/+1 (28x28x1 each). */
function probeInputs(): Float32Array {
  const px = 28 * 28;
  const out = new Float32Array(4 * px);
  for (let i = 0; i < px; i++) {
    out[i] = -1;
    out[2 * px + i] = 1;
    out[3 * px + i] = ((i % 28) + Math.floor(i / 28)) % 2 === 0 ? 1 : -1;
  }
  return out;
}

/**
 * Runs the model once on the probe inputs through every feedback cycle and throws a one-line
 * UsageError naming `path` when any logit is NaN or infinite: finite but huge weights (3e38)
 * overflow float32 inside the network, and every prediction would silently be class 0.
 */
export async function checkFiniteOutputs(model: CNNF, path: string): Promise<void> {
  const bad = tf.tidy(() => {
    const x = tf.tensor4d(probeInputs(), [4, 28, 28, 1]);
    const res = model.run(x);
    return tf.stack(res.logits.map((l) => tf.logicalNot(tf.all(tf.isFinite(l)))));
  });
  const flags = await readAndDispose(bad);
  const cycle = flags.findIndex((f) => f !== 0);
  if (cycle >= 0) {
    // every weight's largest |value|, read together
    const maxima = await readAndDispose(tf.tidy(() => tf.stack([...model.params.values()].map((p) => tf.max(tf.abs(p))))));
    let maxAbs = 0;
    for (const m of maxima) maxAbs = Math.max(maxAbs, m);
    throw new UsageError(
      `${path}: the model computes non-finite logits (${cycle === 0 ? 'first pass' : `feedback cycle ${cycle}`}) on a plain test input; ` +
        `its weights overflow float32 (largest |weight| ${maxAbs.toExponential(2)})`,
    );
  }
}

/** Reads and validates a checkpoint; builds the model on the active backend and checks that its outputs are finite. */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  return buildCheckpoint(readCheckpointFile(path));
}

/** Builds a read checkpoint's model on the active backend (see checkFiniteOutputs). */
export async function buildCheckpoint(file: CheckpointFile): Promise<LoadedCheckpoint> {
  const model = CNNF.fromArrays(file.info.config, file.arrays);
  try {
    await checkFiniteOutputs(model, file.path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, info: file.info, path: file.path, sha256: file.sha256 };
}

/**
 * How a checkpoint was trained, in one line, for reports next to its numbers: the `recipe` string of its
 * training metadata if it has one; else, for `cnnf train` checkpoints, what the metadata records (model,
 * perturbation, epochs, images, batch, lr); else the first sentence of the model card next to it
 * (`NAME.md`, its "**What it is.**" paragraph). Undefined when none of these says anything.
 */
export function trainingRecipe(ck: { info: CheckpointInfo; path: string }): string | undefined {
  const t = ck.info.training;
  if (typeof t.recipe === 'string' && t.recipe.trim() !== '') return t.recipe.trim();
  if (ck.info.source === 'cnnf train' && typeof t.model === 'string') {
    const perturb = typeof t.perturb === 'string' ? t.perturb : 'none';
    const pairs = t.model === 'cnnf' ? `clean + ${perturb} pairs` : perturb === 'none' ? 'clean images' : `clean + ${perturb} images`;
    const parts = [`cnnf train ${t.model} on ${pairs}`];
    if (typeof t.epochs === 'number') parts.push(`${t.epochs} epoch${t.epochs === 1 ? '' : 's'}`);
    if (typeof t.trainImages === 'number') parts.push(`${t.trainImages} training images`);
    else if (typeof t.command === 'string') {
      const m = /--train-size[ =](\d+)/.exec(t.command);
      parts.push(m ? `${m[1]} training images` : 'all training images');
    }
    if (typeof t.batchSize === 'number') parts.push(`batch ${t.batchSize}`);
    if (typeof t.lr === 'number') parts.push(`lr ${humanNumber(t.lr)}`);
    return parts.join(', ');
  }
  const card = join(dirname(ck.path), `${basename(ck.path, extname(ck.path))}.md`);
  if (!existsSync(card)) return undefined;
  let text0: string;
  try {
    // optional: a FIFO, device or oversized file beside the checkpoint is ignored, never read
    text0 = readInputFile(card, 'model card', { maxBytes: MiB }).toString('utf8');
  } catch {
    return undefined;
  }
  const m = /\*\*What it is\.\*\*\s+([\s\S]*?)(?:\n\s*\n|$)/.exec(text0);
  if (!m) return undefined;
  const text = m[1].replace(/\s+/g, ' ').trim();
  const first = /^(.*?[^.]{3})\.(?:\s|$)/.exec(text)?.[1] ?? text;
  const by = /^imported from PyTorch/.test(ck.info.source) ? ' (reference PyTorch code)' : '';
  return `${first}${by}`;
}

export interface SaveOptions {
  readout?: Readout;
  dataset?: string;
  classNames?: string[];
  training?: Record<string, unknown>;
  source?: string;
  dtype?: 'F32' | 'F16';
}

/** Metadata of a checkpoint in the safetensors string map. */
export function checkpointMetadata(config: ModelConfig, opts: SaveOptions): Record<string, string> {
  return {
    format: CHECKPOINT_FORMAT,
    layout: 'cnnf: activations NHWC; conv [kh,kw,in,out]; linear [in,out]; fc1 input flattened in H,W,C order',
    arch: JSON.stringify(config.arch),
    fc: JSON.stringify(config.fc),
    num_classes: JSON.stringify(config.numClasses),
    ind: JSON.stringify(config.ind),
    cycles: JSON.stringify(config.cycles),
    res_param: JSON.stringify(config.resParam),
    readout: JSON.stringify(opts.readout ?? 'last'),
    dataset: opts.dataset ?? 'fashion-mnist',
    class_names: JSON.stringify(opts.classNames ?? Array.from({ length: config.numClasses }, (_, i) => String(i))),
    normalisation: INPUT_NORMALISATION,
    training: JSON.stringify(opts.training ?? {}),
    source: opts.source ?? 'cnnf',
  };
}

/** Writes arrays in cnnf layout as a checkpoint (atomically). */
function checkpointTensors(config: ModelConfig, arrays: Map<string, { shape: number[]; data: Float32Array }>, opts: SaveOptions): Map<string, TensorToWrite> {
  const tensors = new Map<string, TensorToWrite>();
  for (const p of paramSpecs(config)) {
    const a = arrays.get(p.name);
    if (!a) throw new Error(`missing parameter ${p.name}`);
    tensors.set(p.name, { shape: p.shape, data: a.data, dtype: opts.dtype ?? 'F32' });
  }
  return tensors;
}

export function saveArrays(path: string, config: ModelConfig, arrays: Map<string, { shape: number[]; data: Float32Array }>, opts: SaveOptions = {}): void {
  writeSafetensors(path, checkpointTensors(config, arrays, opts), checkpointMetadata(config, opts));
}

/** Largest finite float16 value. */
const F16_MAX = 65504;

/**
 * Refuses (one line naming `source`) weights that would make a checkpoint every later command
 * refuses: values beyond float16's range when storing float16 (they would become infinite), and
 * weights whose outputs are not finite (3e38 overflows float32 inside the network). Encodes the
 * checkpoint as it would be written and reads it back the way loadCheckpoint does (on the active
 * backend). Writes nothing.
 */
export async function checkArraysReadable(source: string, config: ModelConfig, arrays: Map<string, { shape: number[]; data: Float32Array }>, opts: SaveOptions = {}): Promise<void> {
  if (opts.dtype === 'F16') {
    for (const [name, a] of arrays) {
      for (const v of a.data) {
        if (Math.abs(v) > F16_MAX) throw new UsageError(`${source}: weight ${name} holds ${v.toExponential(3)}, beyond float16's range (+-${F16_MAX}): it would be stored as infinity; import without --f16`);
      }
    }
  }
  const bytes = Buffer.concat(encodeSafetensors(checkpointTensors(config, arrays, opts), checkpointMetadata(config, opts)));
  let ck: LoadedCheckpoint;
  try {
    ck = await buildCheckpoint(parseCheckpoint(bytes, source));
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${e.message}; not imported (cnnf could not load the checkpoint)`);
    throw e;
  }
  ck.model.dispose();
}

export async function saveCheckpoint(path: string, model: CNNF, opts: SaveOptions = {}): Promise<void> {
  saveArrays(path, model.config, await model.toArrays(), opts);
}
