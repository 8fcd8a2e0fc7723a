/**
 * `cnnf export --to tfjs`: a plain-CNN cnnf checkpoint (cycles 0) as a TF.js LayersModel directory
 * (model.json + one weight shard) built from stock tfjs-layers layers only, so `tf.loadLayersModel`
 * loads it anywhere, plus a `model.cnnf.json` adapter (input [-1,1] NHWC, logits, class names) so that
 * `cnnf eval --model OUT/model.json` feeds it the checkpoint's input space.
 *
 * Per conv block: Conv2D 3x3 'same' (no bias, kernel [kh,kw,in,out] as in cnnf) -> cnnf's InsNorm ->
 * per-channel bias (Conv2D 1x1, identity kernel) -> ReLU (-> MaxPooling2D 2). cnnf's InsNorm has
 * no mean subtraction (x / sqrt(mean_{H,W} x^2 + 1e-8)); stock LayerNormalization subtracts the mean,
 * so it is applied to [x; -x] stacked along H (mean exactly 0 up to rounding, biased variance =
 * mean x^2) and the first half is cropped back. Flatten is H,W,C like cnnf's; Dense kernels [in,out].
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../errors.js';
import { getArch, type ModelConfig } from '../models/arch.js';
import { writeFilesAtomic } from './atomic.js';
import { loadCheckpoint } from './checkpoint.js';
import { checkOutputDir } from './files.js';

export const TFJS_WEIGHTS_FILE = 'group1-shard1of1.bin';
/** cnnf's InsNorm epsilon (src/nn/ops.ts insNorm). */
const INS_EPS = 1e-8;

export interface TfjsExportOptions {
  /** Allow a non-empty output directory (its model files are replaced). */
  force?: boolean;
}

export interface TfjsExportResult {
  config: ModelConfig;
  files: string[];
  layers: number;
  weightBytes: number;
}

/** `out` is a writable folder or can be made one (checkOutputDir), and empty unless `force`. */
function checkOutDir(out: string, force: boolean): void {
  const abs = checkOutputDir(out, '-o');
  if (!force && existsSync(abs) && readdirSync(abs).length > 0) throw new UsageError(`${out} is not empty (use --force to replace the model files in it)`);
}

/** The stock tfjs-layers model of a plain cnnf CNN with the given weights (cnnf layout, see paramSpecs). */
function buildTfjsCnn(config: ModelConfig, arrays: Map<string, { shape: number[]; data: Float32Array }>): tf.LayersModel {
  const spec = getArch(config.arch);
  const weights: Array<[layer: string, values: tf.Tensor[]]> = [];
  const get = (name: string): tf.Tensor => {
    const a = arrays.get(name);
    if (!a) throw new Error(`missing parameter ${name}`);
    return tf.tensor(a.data, a.shape, 'float32');
  };
  const input = tf.input({ shape: [spec.height, spec.width, spec.inChannels], name: 'image' });
  let v = input as tf.SymbolicTensor;
  let h = spec.height;
  let w = spec.width;
  const apply = (layer: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => layer.apply(x) as tf.SymbolicTensor;
  spec.convs.forEach((b, i) => {
    const k = i + 1;
    const conv = apply(tf.layers.conv2d({ filters: b.channels, kernelSize: 3, strides: 1, padding: 'same', useBias: false, name: `conv${k}` }), v);
    weights.push([`conv${k}`, [get(`conv${k}.conv.weight`)]]);
    // 1x1 Conv2D with a diagonal kernel (-I, later I): exact, and differentiable on every backend
    // (tfjs-backend-wasm has no DepthwiseConv2dNativeBackpropInput kernel)
    const neg = apply(tf.layers.conv2d({ filters: b.channels, kernelSize: 1, useBias: false, name: `ins${k}_neg` }), conv);
    weights.push([`ins${k}_neg`, [tf.reshape(tf.mul(tf.eye(b.channels), -1), [1, 1, b.channels, b.channels])]]);
    const mirror = apply(tf.layers.concatenate({ axis: 1, name: `ins${k}_mirror` }), [conv, neg]);
    // gamma = 1, beta = 0 rather than scale/center false: tfjs's batchNorm gradient needs both tensors
    // (without them the tape breaks on every backend and white-box attacks cannot differentiate the model)
    const norm = apply(tf.layers.layerNormalization({ axis: [1, 2], center: true, scale: true, epsilon: INS_EPS, name: `ins${k}` }), mirror);
    weights.push([`ins${k}`, [tf.ones([2 * h, w]), tf.zeros([2 * h, w])]]);
    const crop = apply(tf.layers.cropping2D({ cropping: [[0, h], [0, 0]], name: `ins${k}_crop` }), norm);
    const bias = apply(tf.layers.conv2d({ filters: b.channels, kernelSize: 1, useBias: true, name: `ins${k}_bias` }), crop);
    weights.push([`ins${k}_bias`, [tf.reshape(tf.eye(b.channels), [1, 1, b.channels, b.channels]), get(`ins${k}_bias.bias`)]]);
    v = apply(tf.layers.activation({ activation: 'relu', name: `relu${k}` }), bias);
    if (b.pool) {
      v = apply(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, padding: 'valid', name: `maxpool${k}` }), v);
      h = Math.floor(h / 2);
      w = Math.floor(w / 2);
    }
  });
  v = apply(tf.layers.flatten({ name: 'flatten' }), v);
  const widths = [...config.fc, config.numClasses];
  widths.forEach((units, i) => {
    const k = i + 1;
    const last = i === widths.length - 1;
    v = apply(tf.layers.dense({ units, useBias: true, activation: last ? 'linear' : 'relu', name: last ? 'logits' : `fc${k}` }), v);
    weights.push([last ? 'logits' : `fc${k}`, [get(`fc${k}.weight`), get(`fc${k}_bias.bias`)]]);
  });
  const model = tf.model({ inputs: input, outputs: v, name: `cnnf_${config.arch}` });
  for (const [name, values] of weights) {
    model.getLayer(name).setWeights(values);
    values.forEach((t) => t.dispose());
  }
  return model;
}

/** Writes the plain CNN `ckpt` as a TF.js LayersModel directory `out` (all files or none). */
export async function exportTfjs(ckpt: string, out: string, opts: TfjsExportOptions = {}): Promise<TfjsExportResult> {
  checkOutDir(out, opts.force ?? false);
  const loaded = await loadCheckpoint(ckpt);
  const { config, classNames } = loaded.info;
  if (config.cycles > 0) {
    loaded.model.dispose();
    throw new UsageError(`${ckpt} is a CNN-F (${config.cycles} feedback cycles): --to tfjs exports plain CNNs (cycles 0) only; use --to pytorch for CNN-F weights`);
  }
  const arrays = await loaded.model.toArrays();
  loaded.model.dispose();
  const model = buildTfjsCnn(config, arrays);
  let files: Array<[string, string | Uint8Array]> = [];
  let weightBytes = 0;
  try {
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      const wd = artifacts.weightData;
      const parts = wd === undefined ? [] : Array.isArray(wd) ? wd : [wd];
      const bin = Buffer.concat(parts.map((b) => Buffer.from(b)));
      weightBytes = bin.length;
      const json = {
        modelTopology: artifacts.modelTopology,
        format: 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: `cnnf export --to tfjs (${basename(ckpt)})`,
        weightsManifest: [{ paths: [TFJS_WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
      };
      const sidecar = {
        inputRange: '-1,1',
        layout: 'NHWC',
        output: 'logits',
        classNames,
        normalisation: loaded.info.normalisation,
        dataset: loaded.info.dataset,
        exportedFrom: `${basename(ckpt)} (sha256 ${loaded.sha256})`,
      };
      // model.json last: a reader never sees it before its shard
      files = [[TFJS_WEIGHTS_FILE, bin], ['model.cnnf.json', JSON.stringify(sidecar, null, 2) + '\n'], ['model.json', JSON.stringify(json)]];
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: bin.length } };
    }));
  } finally {
    model.dispose();
  }
  const written = writeFilesAtomic(out, files);
  return { config, files: written, layers: model.layers.length, weightBytes };
}
