/**
 * The model-adapter flags of foreign models (--input-range, --mean, --std, --layout, --logits /
 * --probabilities), for commands that take `--model DIR/model.json`. Flags given override the
 * model's model.cnnf.json; absent ones leave it (or the defaults: 0,1, NHWC, logits) in force.
 */
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { INPUT_RANGES, type InputAdapter } from '../models/foreign.js';
import { parseChoice, parseNumberList } from './options.js';

export interface AdapterFlags {
  inputRange?: string;
  mean?: string;
  std?: string;
  layout?: string;
  logits?: boolean;
  probabilities?: boolean;
}

export function addAdapterOptions(cmd: Command): Command {
  return cmd
    .option('--input-range <r>', `foreign models: pixel range the model expects, ${INPUT_RANGES.join(' | ')} (default 0,1 or model.cnnf.json); attacks stay in cnnf's [-1, 1]`)
    .option('--mean <list>', 'foreign models: per-channel mean subtracted after scaling to --input-range (one value or one per channel)')
    .option('--std <list>', 'foreign models: per-channel std divided by after the mean')
    .option('--layout <l>', 'foreign models: input layout NHWC | NCHW (default NHWC for TF.js, NCHW for ONNX)')
    .option('--logits', 'foreign models: the model outputs logits (default)')
    .option('--probabilities', 'foreign models: the model outputs probabilities (their log is used as logits)')
    .option('--format <kind>', 'model file kind: auto (a .onnx file is ONNX; a TF.js model.json or folder by content; else a cnnf checkpoint), cnnf, tfjs, onnx', 'auto');
}

export type ModelFormat = 'auto' | 'cnnf' | 'tfjs' | 'onnx';
export const MODEL_FORMATS: readonly ModelFormat[] = ['auto', 'cnnf', 'tfjs', 'onnx'];

/** --format, checked (default auto). */
export function modelFormatFromFlags(f: { format?: unknown }): ModelFormat {
  return f.format === undefined ? 'auto' : parseChoice('--format', String(f.format), MODEL_FORMATS);
}

export function adapterFromFlags(f: AdapterFlags): Partial<InputAdapter> {
  if (f.logits && f.probabilities) throw new UsageError('give either --logits or --probabilities, not both');
  const out: Partial<InputAdapter> = {};
  if (f.inputRange !== undefined) out.range = parseChoice('--input-range', f.inputRange, INPUT_RANGES);
  if (f.mean !== undefined) out.mean = parseNumberList('--mean', f.mean);
  if (f.std !== undefined) out.std = parseNumberList('--std', f.std, { min: Number.MIN_VALUE });
  if (f.layout !== undefined) out.layout = parseChoice('--layout', f.layout.toUpperCase(), ['NHWC', 'NCHW'] as const);
  if (f.logits) out.output = 'logits';
  if (f.probabilities) out.output = 'probabilities';
  return out;
}
