/**
 * PNG dumps of attacked examples (sharp): per example one row of tiles, clean | perturbed |
 * perturbation (amplified to fill the range) | the CNN-F's reconstruction after each feedback
 * cycle decoded to image space (each normalised to [0, 255]), upscaled (nearest) with a label strip
 * naming the true and predicted class. Each dump directory gets an index.json listing its files.
 * Images of any shape [h, w, c]: grey (c = 1) rows are grey PNGs, colour (c = 3) rows RGB PNGs.
 */
import { join } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from './atomic.js';
import { cleanText } from '../format.js';

/** Side of a Fashion-MNIST tile (the default shape). */
export const TILE = 28;
/** Upscaling of a 28x28 tile; other shapes get dumpScale(shape). */
export const DUMP_SCALE = 4;
/** Tiles are upscaled (nearest) to about this many pixels on their longer side. */
const TILE_TARGET = TILE * DUMP_SCALE;
export const DUMP_GAP = 4;
export const LABEL_STRIP = 22;
/** Height of the column-label strip above the tiles. */
export const HEADER_STRIP = 16;

/** Column labels of a dump row with `recons` reconstructions (as in index.json, shortened to fit a tile). */
export function columnLabels(recons: number): string[] {
  return ['clean', 'perturbed', 'perturbation', ...Array.from({ length: recons }, (_, c) => `recon. cycle ${c + 1}`)];
}

export interface DumpExample {
  /** Index of the example in the evaluated split. */
  index: number;
  /** h*w*c pixels in [-1, 1], NHWC. */
  clean: Float32Array;
  perturbed: Float32Array;
  /** Reconstructions decoded to input space, one per feedback cycle (empty for a plain CNN). */
  recons: Float32Array[];
  label: number;
  pred: number;
  target?: number;
  classNames: string[];
  /** [h, w, c] of the images (c 1 or 3); default [28, 28, 1]. */
  shape?: readonly [number, number, number];
}

const DEFAULT_SHAPE: readonly [number, number, number] = [TILE, TILE, 1];

/** Nearest-neighbour upscaling of a tile of this shape: 4 for 28x28, at least 1. */
export function dumpScale(shape: readonly number[] = DEFAULT_SHAPE): number {
  return Math.max(1, Math.ceil(TILE_TARGET / Math.max(shape[0], shape[1])));
}

/** Pixels in [-1, 1] -> bytes. */
function fromUnitBox(a: Float32Array): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.round(Math.min(1, Math.max(-1, a[i])) * 127.5 + 127.5);
  return out;
}

/** Signed perturbation amplified so its largest magnitude reaches 0 or 255 (zero -> mid grey). */
function amplified(delta: Float32Array): Uint8Array {
  let m = 0;
  for (const v of delta) m = Math.max(m, Math.abs(v));
  const out = new Uint8Array(delta.length);
  for (let i = 0; i < delta.length; i++) out[i] = Math.round(128 + (m > 0 ? (delta[i] / m) * 127 : 0));
  return out;
}

/** Min-max normalisation of one image to [0, 255]. */
function normalised(a: Float32Array): Uint8Array {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const out = new Uint8Array(a.length);
  const span = hi - lo;
  for (let i = 0; i < a.length; i++) out[i] = span > 0 && Number.isFinite(span) ? Math.round(((a[i] - lo) / span) * 255) : 0;
  return out;
}

/** Class names come from files: cleanText (the one sanitiser) first, then XML escaping. */
const escapeXml = (s: string): string => cleanText(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** Width and height of a dump row with `tiles` tiles (column labels on top, class labels below) of images of `shape`. */
export function rowSize(tiles: number, scale?: number, shape: readonly number[] = DEFAULT_SHAPE): { width: number; height: number } {
  const s = scale ?? dumpScale(shape);
  return { width: tiles * shape[1] * s + (tiles - 1) * DUMP_GAP, height: HEADER_STRIP + shape[0] * s + LABEL_STRIP };
}

/** Renders one example row as PNG bytes (grey for 1-channel images, RGB for 3). */
export async function renderRow(ex: DumpExample, scale?: number): Promise<Buffer> {
  const shape = ex.shape ?? DEFAULT_SHAPE;
  const [h, w, c] = shape;
  if (!(c === 1 || c === 3) || !Number.isInteger(h) || !Number.isInteger(w) || h < 1 || w < 1) throw new Error(`renderRow: cannot draw images of shape ${shape.join('x')}`);
  const per = h * w * c;
  for (const a of [ex.clean, ex.perturbed]) if (a.length !== per) throw new Error(`renderRow: ${a.length} pixels for shape ${shape.join('x')}`);
  const sc = scale ?? dumpScale(shape);
  const delta = new Float32Array(ex.clean.length);
  for (let i = 0; i < delta.length; i++) delta[i] = ex.perturbed[i] - ex.clean[i];
  const tiles = [fromUnitBox(ex.clean), fromUnitBox(ex.perturbed), amplified(delta), ...ex.recons.map(normalised)];
  const { width, height } = rowSize(tiles.length, sc, shape);
  const tw = w * sc;
  const th = h * sc;
  const t = tw; // column pitch and label font size follow the tile width
  const canvas = new Uint8Array(width * height * c).fill(255);
  tiles.forEach((tile, k) => {
    // a reconstruction with fewer channels than the images (a grey decoder) is drawn grey
    const tc = tile.length === h * w ? 1 : c;
    const x0 = k * (tw + DUMP_GAP);
    for (let y = 0; y < th; y++) {
      const sy = Math.floor(y / sc);
      for (let x = 0; x < tw; x++) {
        const src = (sy * w + Math.floor(x / sc)) * tc;
        const dst = ((HEADER_STRIP + y) * width + x0 + x) * c;
        for (let ch = 0; ch < c; ch++) canvas[dst + ch] = tile[src + (tc === 1 ? 0 : ch)];
      }
    }
  });
  const header = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEADER_STRIP}">` +
    columnLabels(ex.recons.length).map((label, k) =>
      `<text x="${k * (t + DUMP_GAP) + t / 2}" y="${HEADER_STRIP - 4}" text-anchor="middle" font-family="DejaVu Sans, Arial, sans-serif" font-size="${Math.min(11, Math.max(7, Math.floor(t / 10)))}" fill="#333">${escapeXml(label)}</text>`,
    ).join('') + '</svg>';
  const name = (c: number): string => ex.classNames[c] ?? String(c);
  const text = `true: ${name(ex.label)}   pred: ${name(ex.pred)}${ex.target !== undefined ? `   target: ${name(ex.target)}` : ''}`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${LABEL_STRIP}">` +
    `<rect width="100%" height="100%" fill="${ex.pred === ex.label ? '#e8f5e9' : '#ffebee'}"/>` +
    `<text x="4" y="${LABEL_STRIP - 6}" font-family="DejaVu Sans, Arial, sans-serif" font-size="13" fill="#000">${escapeXml(text)}</text></svg>`;
  return sharp(Buffer.from(canvas), { raw: { width, height, channels: c as 1 | 3 } })
    .composite([{ input: Buffer.from(header), top: 0, left: 0 }, { input: Buffer.from(svg), top: HEADER_STRIP + th, left: 0 }])
    .png()
    .toBuffer();
}

/** Writes one PNG per example into `dir` (which must exist) plus index.json; returns the PNG paths. */
export async function writeDump(dir: string, examples: DumpExample[], meta: Record<string, unknown> = {}): Promise<string[]> {
  const files: string[] = [];
  const entries = [];
  for (const ex of examples) {
    const file = `example-${String(ex.index).padStart(5, '0')}.png`;
    writeFileAtomic(join(dir, file), await renderRow(ex));
    files.push(join(dir, file));
    entries.push({
      file,
      index: ex.index,
      label: ex.label,
      labelName: ex.classNames[ex.label] ?? String(ex.label),
      pred: ex.pred,
      predName: ex.classNames[ex.pred] ?? String(ex.pred),
      ...(ex.target !== undefined ? { target: ex.target } : {}),
      columns: ['clean', 'perturbed', 'perturbation (amplified)', ...ex.recons.map((_, c) => `reconstruction after cycle ${c + 1}`)],
    });
  }
  const scale = examples.length > 0 ? dumpScale(examples[0].shape) : DUMP_SCALE;
  writeFileAtomic(join(dir, 'index.json'), `${JSON.stringify({ ...meta, scale, examples: entries }, null, 2)}\n`);
  return files;
}
