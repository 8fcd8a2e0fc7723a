/**
 * The checkpoints shipped with the package (`models/*.safetensors`), found relative to cnnf's own
 * files (import.meta.url), so `shippedModel('reference-cnn-adv')` is the same file from an installed
 * package (node_modules/cnnf/models/...), from dist/ in a clone and from src/ under tsx, whatever the
 * caller's working directory.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { assetRoot } from '../assets.js';
import { UsageError } from '../errors.js';

/** The package's models/ folder (the portable bundle's: cnnf-assets/models/ beside cnnf.mjs). */
export function shippedModelsDir(): string {
  return join(assetRoot(), 'models');
}

/** Names (file names without `.safetensors`) of the checkpoints shipped with the package, sorted. */
export function shippedModels(): string[] {
  const dir = shippedModelsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.safetensors')).map((f) => f.slice(0, -'.safetensors'.length)).sort();
}

/**
 * Absolute path of a shipped checkpoint by name (`'reference-cnnf-adv'`, `.safetensors` optional);
 * an unknown name is a UsageError that lists the shipped ones.
 */
export function shippedModel(name: string): string {
  const stem = name.endsWith('.safetensors') ? name.slice(0, -'.safetensors'.length) : name;
  const names = shippedModels();
  if (!names.includes(stem)) {
    throw new UsageError(`no shipped model named ${JSON.stringify(name)}; shipped: ${names.length ? names.join(', ') : `none (${shippedModelsDir()} is missing)`}`);
  }
  return join(shippedModelsDir(), `${stem}.safetensors`);
}
