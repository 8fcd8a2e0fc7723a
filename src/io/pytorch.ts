/**
 * Conversion of the reference PyTorch layout (NCHW activations, conv [out,in,kh,kw], linear [out,in],
 * flatten in C,H,W order, biases [1,C,1,1] / [1,n]) into cnnf's layout (NHWC, conv [kh,kw,in,out],
 * linear [in,out] with fc1 rows in H,W,C order, biases [n]), and back.
 */
import { UsageError } from '../errors.js';
import { flatShape, getArch, paramSpecs, type ModelConfig } from '../models/arch.js';
import type { NamedTensor } from './safetensors.js';
import { CHECKPOINT_FORMAT } from './checkpoint.js';

/**
 * A safetensors file cnnf wrote (metadata format cnnf-checkpoint/1) is not PyTorch weights: its
 * tensors are in cnnf's layout, so reading it as reference weights fails on shapes (misreading the fc
 * widths first). One line that says what it is instead.
 */
export function refuseCnnfCheckpoint(w: { metadata: Record<string, string>; format: string }, source: string): void {
  if (w.format !== 'safetensors' || w.metadata.format !== CHECKPOINT_FORMAT) return;
  // eslint-disable-next-line no-control-regex
  const m = (k: string): string => String(w.metadata[k] ?? '?').replace(/^"|"$/g, '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').slice(0, 60);
  throw new UsageError(
    `${source} is already a cnnf checkpoint (${CHECKPOINT_FORMAT}: arch ${m('arch')}, cycles ${m('cycles')}, dataset ${m('dataset')}): nothing to import; ` +
      'use it as it is (--model), or convert it to the reference PyTorch layout with `cnnf export --to pytorch`',
  );
}

export interface Arr {
  shape: number[];
  data: Float32Array;
}

/** Generic axis permutation of a dense row-major array. */
export function permute(a: Arr, perm: number[]): Arr {
  const shape = perm.map((p) => a.shape[p]);
  const inStrides = stridesOf(a.shape);
  const outStrides = stridesOf(shape);
  const out = new Float32Array(a.data.length);
  const rank = shape.length;
  const idx = new Array(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let rem = o;
    let src = 0;
    for (let d = 0; d < rank; d++) {
      idx[d] = Math.floor(rem / outStrides[d]);
      rem -= idx[d] * outStrides[d];
      src += idx[d] * inStrides[perm[d]];
    }
    out[o] = a.data[src];
  }
  return { shape, data: out };
}

function stridesOf(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

/** NCHW -> NHWC */
export const nchwToNhwc = (a: Arr): Arr => permute(a, [0, 2, 3, 1]);
/** NHWC -> NCHW */
export const nhwcToNchw = (a: Arr): Arr => permute(a, [0, 3, 1, 2]);

/** Expected PyTorch shape of every parameter of a configuration. */
export function pytorchShapes(cfg: ModelConfig): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const p of paramSpecs(cfg)) {
    if (p.kind === 'conv') out.set(p.name, [p.shape[3], p.shape[2], p.shape[0], p.shape[1]]);
    else if (p.kind === 'linear') out.set(p.name, [p.shape[1], p.shape[0]]);
    else if (p.name.startsWith('ins')) out.set(p.name, [1, p.shape[0], 1, 1]);
    else out.set(p.name, [1, p.shape[0]]);
  }
  return out;
}

/**
 * Reads reference-named PyTorch tensors (`prefix` + name, e.g. "param.conv1.conv.weight") and returns
 * cnnf-layout arrays. Missing tensors or wrong shapes are one-line UsageErrors naming `source`.
 */
export function fromPyTorch(tensors: Map<string, NamedTensor>, cfg: ModelConfig, source: string, prefix = ''): Map<string, Float32Array> {
  const spec = getArch(cfg.arch);
  const [fh, fw, fc] = flatShape(spec);
  const shapes = pytorchShapes(cfg);
  const out = new Map<string, Float32Array>();
  for (const p of paramSpecs(cfg)) {
    const key = prefix + p.name;
    const t = tensors.get(key);
    if (!t) throw new UsageError(`${source}: missing tensor ${key} (is this a ${cfg.arch} model with fc widths ${cfg.fc.join(',')}?)`);
    const want = shapes.get(p.name)!;
    if (t.shape.join(',') !== want.join(',')) {
      throw new UsageError(`${source}: tensor ${key} has shape [${t.shape.join(', ')}], expected [${want.join(', ')}] for arch ${cfg.arch} (fc ${cfg.fc.join(',')}, ${cfg.numClasses} classes)`);
    }
    if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'F64') {
      const kind = (t as { torchDtype?: string }).torchDtype ?? t.dtype;
      throw new UsageError(`${source}: tensor ${key} holds integers (${kind}), not floating-point weights; if they are the weights, convert them first (PyTorch: tensor.float())`);
    }
    const a: Arr = { shape: t.shape, data: t.data };
    for (const v of a.data) if (!Number.isFinite(v)) throw new UsageError(`${source}: tensor ${key} contains NaN or infinity`);
    if (p.kind === 'conv') out.set(p.name, permute(a, [2, 3, 1, 0]).data);
    else if (p.kind === 'linear' && p.name === 'fc1.weight') {
      // [out, C*H*W] -> [out, C, H, W] -> [H, W, C, out] -> [H*W*C, out]
      out.set(p.name, permute({ shape: [want[0], fc, fh, fw], data: a.data }, [2, 3, 1, 0]).data);
    } else if (p.kind === 'linear') out.set(p.name, permute(a, [1, 0]).data);
    else out.set(p.name, Float32Array.from(a.data));
  }
  return out;
}

/** Infers arch hyper-parameters (fc widths, classes) from reference-named tensors. */
export function inferPyTorchWidths(tensors: Map<string, NamedTensor>, arch: string, prefix = '', source = 'input'): { fc: number[]; numClasses: number } {
  const spec = getArch(arch);
  const n = spec.fc.length + 1;
  const widths: number[] = [];
  for (let i = 1; i <= n; i++) {
    const t = tensors.get(`${prefix}fc${i}.weight`);
    if (!t || t.shape.length !== 2) {
      const other = [...tensors.keys()].find((k) => k.endsWith(`fc${i}.weight`));
      const hint = other ? ` (found ${other}: try --prefix ${other.slice(0, other.length - `fc${i}.weight`.length)})` : '';
      throw new UsageError(`${source}: missing tensor ${prefix}fc${i}.weight for arch ${arch}${hint}`);
    }
    widths.push(t.shape[0]);
  }
  return { fc: widths.slice(0, -1), numClasses: widths[widths.length - 1] };
}

/** cnnf-layout arrays -> reference PyTorch layout (inverse of fromPyTorch). */
export function toPyTorch(arrays: Map<string, Float32Array>, cfg: ModelConfig): Map<string, Arr> {
  const spec = getArch(cfg.arch);
  const [fh, fw, fc] = flatShape(spec);
  const shapes = pytorchShapes(cfg);
  const out = new Map<string, Arr>();
  for (const p of paramSpecs(cfg)) {
    const data = arrays.get(p.name);
    if (!data) throw new Error(`missing parameter ${p.name}`);
    const want = shapes.get(p.name)!;
    let a: Arr;
    if (p.kind === 'conv') a = permute({ shape: p.shape, data }, [3, 2, 0, 1]);
    else if (p.name === 'fc1.weight') a = permute({ shape: [fh, fw, fc, p.shape[1]], data }, [3, 2, 0, 1]);
    else if (p.kind === 'linear') a = permute({ shape: p.shape, data }, [1, 0]);
    else a = { shape: want, data: Float32Array.from(data) };
    out.set(p.name, { shape: want, data: a.data });
  }
  return out;
}
