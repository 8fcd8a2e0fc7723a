/**
 * PNG dumps of attacked examples (sharp): per example one row of tiles, clean | perturbed |
 * perturbation (amplified to fill the range) | the CNN-F's reconstruction after each feedback
 * cycle decoded to image space (each normalised to [0, 255]), upscaled (nearest) with a label strip
 * naming the true and predicted class. Each dump directory gets an index.json listing its files.
 */
import { join } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from './atomic.js';

export const TILE = 28;
export const DUMP_SCALE = 4;
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
  /** 28*28 pixels in [-1, 1]. */
  clean: Float32Array;
  perturbed: Float32Array;
  /** Reconstructions decoded to input space, one per feedback cycle (empty for a plain CNN). */
  recons: Float32Array[];
  label: number;
  pred: number;
  target?: number;
  classNames: string[];
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

const escapeXml = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);

/** Width and height of a dump row with `tiles` tiles (column labels on top, class labels below). */
export function rowSize(tiles: number, scale = DUMP_SCALE): { width: number; height: number } {
  return { width: tiles * TILE * scale + (tiles - 1) * DUMP_GAP, height: HEADER_STRIP + TILE * scale + LABEL_STRIP };
}

/** Renders one example row as PNG bytes. */
export async function renderRow(ex: DumpExample, scale = DUMP_SCALE): Promise<Buffer> {
  const delta = new Float32Array(ex.clean.length);
  for (let i = 0; i < delta.length; i++) delta[i] = ex.perturbed[i] - ex.clean[i];
  const tiles = [fromUnitBox(ex.clean), fromUnitBox(ex.perturbed), amplified(delta), ...ex.recons.map(normalised)];
  const { width, height } = rowSize(tiles.length, scale);
  const t = TILE * scale;
  const canvas = new Uint8Array(width * height).fill(255);
  tiles.forEach((tile, k) => {
    const x0 = k * (t + DUMP_GAP);
    for (let y = 0; y < t; y++) {
      const sy = Math.floor(y / scale);
      for (let x = 0; x < t; x++) canvas[(HEADER_STRIP + y) * width + x0 + x] = tile[sy * TILE + Math.floor(x / scale)];
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
  return sharp(Buffer.from(canvas), { raw: { width, height, channels: 1 } })
    .composite([{ input: Buffer.from(header), top: 0, left: 0 }, { input: Buffer.from(svg), top: HEADER_STRIP + t, left: 0 }])
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
  writeFileAtomic(join(dir, 'index.json'), `${JSON.stringify({ ...meta, scale: DUMP_SCALE, examples: entries }, null, 2)}\n`);
  return files;
}
