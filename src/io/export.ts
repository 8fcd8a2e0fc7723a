/**
 * cnnf checkpoint -> the reference PyTorch code's names and layouts (conv [out,in,kh,kw], linear
 * [out,in], fc1 columns in C,H,W order, biases [1,C,1,1] / [1,n]), as safetensors or as a torch.save
 * checkpoint that `torch.load(path, weights_only=True)` returns as a state_dict for
 * `model.load_state_dict`. `cnnf import --from pytorch` reads either back bit for bit.
 */
import { loadCheckpoint } from './checkpoint.js';
import { writeFileAtomic } from './atomic.js';
import { toPyTorch } from './pytorch.js';
import { writeSafetensors } from './safetensors.js';
import { encodeTorchCheckpoint } from './torch.js';
import type { ModelConfig } from '../models/arch.js';

export type PyTorchExportFormat = 'safetensors' | 'pt';

export interface PyTorchExportOptions {
  /** Output format; default from the extension (.pt/.pth: torch.save, else safetensors). */
  format?: PyTorchExportFormat;
  /** Prepended to every tensor name (e.g. "module." for a DataParallel state_dict). */
  prefix?: string;
}

export interface PyTorchExportResult {
  config: ModelConfig;
  format: PyTorchExportFormat;
  tensors: number;
}

export function exportFormatFor(out: string): PyTorchExportFormat {
  return /\.(pt|pth)$/i.test(out) ? 'pt' : 'safetensors';
}

/** Writes the weights of the cnnf checkpoint `ckpt` to `out` in the reference PyTorch layout (atomically). */
export async function exportPyTorch(ckpt: string, out: string, opts: PyTorchExportOptions = {}): Promise<PyTorchExportResult> {
  const loaded = await loadCheckpoint(ckpt);
  const { config } = loaded.info;
  const arrays = new Map([...(await loaded.model.toArrays())].map(([k, v]) => [k, v.data]));
  loaded.model.dispose();
  const ref = toPyTorch(arrays, config);
  const prefix = opts.prefix ?? '';
  const named = new Map([...ref].map(([k, v]) => [prefix + k, v]));
  const format = opts.format ?? exportFormatFor(out);
  if (format === 'pt') {
    const archive = (out.split('/').pop() ?? 'archive').replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'archive';
    writeFileAtomic(out, await encodeTorchCheckpoint(named, archive));
  } else {
    writeSafetensors(out, named, {
      layout: 'PyTorch (reference CNN-F code): activations NCHW, conv weight [out,in,kh,kw], linear weight [out,in], flatten in C,H,W order',
      arch: config.arch,
      fc: JSON.stringify(config.fc),
      num_classes: String(config.numClasses),
      ind: String(config.ind),
      cycles: String(config.cycles),
      res_param: String(config.resParam),
      source: `exported by cnnf from ${ckpt.split('/').pop()} (${loaded.info.source})`,
    });
  }
  return { config, format, tensors: named.size };
}
