/**
 * Architecture descriptions: the paper's Fashion-MNIST network (4 conv blocks, 3 fc) and the seed
 * report's smaller two-block variant. Parameter names follow the reference PyTorch implementation.
 */
import { UsageError } from '../errors.js';

export const ARCH_NAMES = ['fmnist', 'small'] as const;
export type ArchName = (typeof ARCH_NAMES)[number];

export interface ConvBlockSpec {
  /** Output channels. */
  channels: number;
  /** 2x2 max pool after the block's resReLU. */
  pool: boolean;
  /** Name of this block's activation in the reconstruction loss ("block1", "block2"), if any. */
  tap?: string;
}

export interface ArchSpec {
  name: ArchName;
  inChannels: number;
  height: number;
  width: number;
  convs: ConvBlockSpec[];
  /** Default hidden fc widths. */
  fc: number[];
  /** Highest allowed feedback level `ind`. */
  maxInd: number;
}

export const ARCHS: Record<ArchName, ArchSpec> = {
  fmnist: {
    name: 'fmnist',
    inChannels: 1,
    height: 28,
    width: 28,
    convs: [
      { channels: 16, pool: false },
      { channels: 32, pool: false },
      { channels: 32, pool: true, tap: 'block1' },
      { channels: 64, pool: true, tap: 'block2' },
    ],
    fc: [1000, 128],
    maxInd: 2,
  },
  small: {
    name: 'small',
    inChannels: 1,
    height: 28,
    width: 28,
    convs: [
      { channels: 16, pool: true, tap: 'block1' },
      { channels: 32, pool: true, tap: 'block2' },
    ],
    fc: [128],
    maxInd: 1,
  },
};

export interface ModelConfig {
  arch: ArchName;
  /** Hidden fc widths (the last layer maps to numClasses). */
  fc: number[];
  numClasses: number;
  /** Level the feedback reconstructs to: 0 = input, k = output of conv block k. */
  ind: number;
  /** Feedback cycles at inference (0 = plain CNN). */
  cycles: number;
  /** Residual parameter r in [0, 1]. */
  resParam: number;
}

export type ConfigInput = Omit<Partial<ModelConfig>, 'arch'> & { arch: string };

export function getArch(name: string): ArchSpec {
  if (!(ARCH_NAMES as readonly string[]).includes(name)) {
    throw new UsageError(`unknown architecture ${JSON.stringify(name)} (known: ${ARCH_NAMES.join(', ')})`);
  }
  return ARCHS[name as ArchName];
}

/** Validates a configuration (one-line UsageError per problem) and fills defaults. */
export function makeConfig(partial: ConfigInput): ModelConfig {
  const spec = getArch(partial.arch);
  const cfg: ModelConfig = {
    arch: spec.name,
    fc: partial.fc ?? [...spec.fc],
    numClasses: partial.numClasses ?? 10,
    ind: partial.ind ?? Math.min(2, spec.maxInd),
    cycles: partial.cycles ?? 0,
    resParam: partial.resParam ?? 0.1,
  };
  if (cfg.fc.length !== spec.fc.length || !cfg.fc.every((w) => Number.isInteger(w) && w >= 1 && w <= 100_000)) {
    throw new UsageError(`arch ${spec.name} needs ${spec.fc.length} fc width(s), positive integers; got [${cfg.fc.join(', ')}]`);
  }
  if (!Number.isInteger(cfg.numClasses) || cfg.numClasses < 2 || cfg.numClasses > 10_000) {
    throw new UsageError(`number of classes must be an integer >= 2, got ${cfg.numClasses}`);
  }
  if (!Number.isInteger(cfg.ind) || cfg.ind < 0 || cfg.ind > spec.maxInd) {
    throw new UsageError(`ind must be an integer 0..${spec.maxInd} for arch ${spec.name}, got ${cfg.ind}`);
  }
  if (!Number.isInteger(cfg.cycles) || cfg.cycles < 0 || cfg.cycles > 100) {
    throw new UsageError(`cycles must be an integer 0..100, got ${cfg.cycles}`);
  }
  if (!Number.isFinite(cfg.resParam) || cfg.resParam < 0 || cfg.resParam > 1) {
    throw new UsageError(`res_param must be in [0, 1], got ${cfg.resParam}`);
  }
  return cfg;
}

/** Spatial size and channels after the conv blocks. */
export function flatShape(spec: ArchSpec): [number, number, number] {
  let h = spec.height;
  let w = spec.width;
  for (const b of spec.convs) if (b.pool) { h /= 2; w /= 2; }
  return [h, w, spec.convs[spec.convs.length - 1].channels];
}

export interface ParamSpec {
  name: string;
  /** cnnf layout: conv [kh,kw,in,out], linear [in,out], biases [n]. */
  shape: number[];
  kind: 'conv' | 'linear' | 'bias';
  /** fan used for initialisation */
  fan: number;
}

/** Every parameter of a configuration, in a stable order. */
export function paramSpecs(cfg: ModelConfig): ParamSpec[] {
  const spec = getArch(cfg.arch);
  const out: ParamSpec[] = [];
  let cin = spec.inChannels;
  spec.convs.forEach((b, i) => {
    out.push({ name: `conv${i + 1}.conv.weight`, shape: [3, 3, cin, b.channels], kind: 'conv', fan: 9 * b.channels });
    out.push({ name: `ins${i + 1}_bias.bias`, shape: [b.channels], kind: 'bias', fan: b.channels });
    cin = b.channels;
  });
  const [fh, fw, fc] = flatShape(spec);
  const widths = [fh * fw * fc, ...cfg.fc, cfg.numClasses];
  for (let i = 0; i + 1 < widths.length; i++) {
    out.push({ name: `fc${i + 1}.weight`, shape: [widths[i], widths[i + 1]], kind: 'linear', fan: widths[i] });
    out.push({ name: `fc${i + 1}_bias.bias`, shape: [widths[i + 1]], kind: 'bias', fan: widths[i + 1] });
  }
  return out;
}
