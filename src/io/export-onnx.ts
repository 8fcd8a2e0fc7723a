/**
 * `cnnf export --to onnx`: a plain-CNN cnnf checkpoint (cycles 0) as one ONNX file (opset 17, NCHW
 * input [N, C, H, W] in cnnf's [-1, 1] units, dynamic batch, logits out), for onnxruntime, PyTorch
 * (onnx2torch) or any ONNX consumer. Per conv block: Conv 3x3 pads 1 (no bias; cnnf's [kh, kw, in, out]
 * kernel as ONNX's [out, in, kh, kw]) -> cnnf's InsNorm as x / sqrt(ReduceMean(x * x over H, W) + 1e-8)
 * -> Add per-channel bias -> Relu (-> MaxPool 2x2 stride 2); then Transpose to NHWC and Flatten (cnnf
 * flattens H, W, C), and Gemm + Relu per fc layer, the last without Relu.
 *
 * A CNN-F (feedback cycles) is refused: its unrolled graph (ConvTranspose feedback, max-pool
 * selections and unpooling) is not written yet.
 */
import { basename } from 'node:path';
import { UsageError } from '../errors.js';
import { getArch, type ModelConfig } from '../models/arch.js';
import { writeFileAtomic } from './atomic.js';
import { loadCheckpoint } from './checkpoint.js';
import { checkOutputFile } from './files.js';
import { encodeOnnxModel, ONNX_ADAPTER_KEY, type OnnxModelSpec, type OnnxNodeSpec } from './onnx.js';

/** cnnf's InsNorm epsilon (src/nn/ops.ts insNorm). */
const INS_EPS = 1e-8;
export const ONNX_EXPORT_OPSET = 17;

/** [kh, kw, in, out] -> [out, in, kh, kw]. */
function convKernel(a: { shape: number[]; data: Float32Array }): { dims: number[]; data: Float32Array } {
  const [kh, kw, cin, cout] = a.shape;
  const out = new Float32Array(a.data.length);
  for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) for (let c = 0; c < cin; c++) for (let o = 0; o < cout; o++) {
    out[((o * cin + c) * kh + i) * kw + j] = a.data[((i * kw + j) * cin + c) * cout + o];
  }
  return { dims: [cout, cin, kh, kw], data: out };
}

/** The ONNX graph of a plain cnnf CNN with the given weights (cnnf layout, see paramSpecs). */
export function onnxSpecOfCnn(config: ModelConfig, arrays: Map<string, { shape: number[]; data: Float32Array }>, doc = ''): OnnxModelSpec {
  const spec = getArch(config.arch);
  const get = (name: string) => {
    const a = arrays.get(name);
    if (!a) throw new Error(`missing parameter ${name}`);
    return a;
  };
  const inits: OnnxModelSpec['initializers'] = [{ name: 'ins_eps', dims: [], data: Float32Array.of(INS_EPS) }];
  const nodes: OnnxNodeSpec[] = [];
  let v = 'image';
  spec.convs.forEach((b, i) => {
    const k = i + 1;
    const w = convKernel(get(`conv${k}.conv.weight`));
    inits.push({ name: `conv${k}.weight`, ...w });
    const bias = get(`ins${k}_bias.bias`);
    inits.push({ name: `ins${k}.bias`, dims: [1, b.channels, 1, 1], data: Float32Array.from(bias.data) });
    nodes.push(
      { op: 'Conv', name: `conv${k}`, inputs: [v, `conv${k}.weight`], outputs: [`conv${k}`], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] } },
      { op: 'Mul', name: `ins${k}_square`, inputs: [`conv${k}`, `conv${k}`], outputs: [`ins${k}_sq`] },
      { op: 'ReduceMean', name: `ins${k}_mean`, inputs: [`ins${k}_sq`], outputs: [`ins${k}_ms`], attrs: { axes: [2, 3], keepdims: 1 } },
      { op: 'Add', name: `ins${k}_eps`, inputs: [`ins${k}_ms`, 'ins_eps'], outputs: [`ins${k}_mse`] },
      { op: 'Sqrt', name: `ins${k}_rms`, inputs: [`ins${k}_mse`], outputs: [`ins${k}_rms`] },
      { op: 'Div', name: `ins${k}`, inputs: [`conv${k}`, `ins${k}_rms`], outputs: [`ins${k}`] },
      { op: 'Add', name: `ins${k}_bias`, inputs: [`ins${k}`, `ins${k}.bias`], outputs: [`ins${k}_b`] },
      { op: 'Relu', name: `relu${k}`, inputs: [`ins${k}_b`], outputs: [`relu${k}`] },
    );
    v = `relu${k}`;
    if (b.pool) {
      nodes.push({ op: 'MaxPool', name: `maxpool${k}`, inputs: [v], outputs: [`maxpool${k}`], attrs: { kernel_shape: [2, 2], strides: [2, 2] } });
      v = `maxpool${k}`;
    }
  });
  nodes.push(
    { op: 'Transpose', name: 'to_nhwc', inputs: [v], outputs: ['nhwc'], attrs: { perm: [0, 2, 3, 1] } },
    { op: 'Flatten', name: 'flatten', inputs: ['nhwc'], outputs: ['flat'], attrs: { axis: 1 } },
  );
  v = 'flat';
  const widths = [...config.fc, config.numClasses];
  widths.forEach((units, i) => {
    const k = i + 1;
    const last = i === widths.length - 1;
    const w = get(`fc${k}.weight`);
    const b = get(`fc${k}_bias.bias`);
    inits.push({ name: `fc${k}.weight`, dims: w.shape, data: Float32Array.from(w.data) }, { name: `fc${k}.bias`, dims: [units], data: Float32Array.from(b.data) });
    const out = last ? 'logits' : `fc${k}`;
    nodes.push({ op: 'Gemm', name: `fc${k}`, inputs: [v, `fc${k}.weight`, `fc${k}.bias`], outputs: [out] });
    v = out;
    if (!last) {
      nodes.push({ op: 'Relu', name: `fc${k}_relu`, inputs: [v], outputs: [`fc${k}_relu`] });
      v = `fc${k}_relu`;
    }
  });
  return {
    opset: ONNX_EXPORT_OPSET,
    producer: 'cnnf',
    docString: doc,
    input: { name: 'image', dims: ['N', spec.inChannels, spec.height, spec.width] },
    output: { name: 'logits', dims: ['N', config.numClasses] },
    initializers: inits,
    nodes,
  };
}

export interface OnnxExportResult {
  config: ModelConfig;
  bytes: number;
  nodes: number;
}

/** Writes the plain CNN `ckpt` as the ONNX file `out` (atomically). */
export async function exportOnnx(ckpt: string, out: string): Promise<OnnxExportResult> {
  checkOutputFile(out, '-o');
  const loaded = await loadCheckpoint(ckpt);
  const { config } = loaded.info;
  if (config.cycles > 0) {
    loaded.model.dispose();
    throw new UsageError(`${ckpt} is a CNN-F (${config.cycles} feedback cycles): --to onnx exports plain CNNs (cycles 0) only so far; use --to pytorch for CNN-F weights`);
  }
  const arrays = await loaded.model.toArrays();
  loaded.model.dispose();
  const spec = onnxSpecOfCnn(config, arrays, `cnnf export --to onnx of ${basename(ckpt)} (sha256 ${loaded.sha256}); input NCHW in [-1, 1], output logits`);
  spec.metadata = {
    [ONNX_ADAPTER_KEY]: JSON.stringify({
      inputRange: '-1,1', layout: 'NCHW', output: 'logits', classNames: loaded.info.classNames, dataset: loaded.info.dataset,
      exportedFrom: `${basename(ckpt)} (sha256 ${loaded.sha256})`,
    }),
  };
  const bytes = encodeOnnxModel(spec);
  writeFileAtomic(out, bytes);
  return { config, bytes: bytes.length, nodes: spec.nodes.length };
}
