/**
 * The webgpu backend: tfjs-backend-webgpu on Dawn's Node.js bindings (the optional packages `webgpu`
 * and `@tensorflow/tfjs-backend-webgpu`). Loads them on demand, finds an adapter, tells hardware from
 * software adapters, and releases the device at the end so that the process can exit.
 *
 * CNNF_WEBGPU_DISABLE=package or =adapter makes cnnf behave as if the packages were not installed, or
 * as if no adapter were found (a test hook: the one-line errors are tested on machines that have both).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { assetRoot, BUNDLED } from '../assets.js';

export const WEBGPU_PACKAGES = ['webgpu@0.6.2', '@tensorflow/tfjs-backend-webgpu@4.22.0'] as const;
export const WEBGPU_INSTALL = `npm install ${WEBGPU_PACKAGES.join(' ')}`;
export const WEBGPU_ADAPTER_HINT =
  'on Debian bookworm: apt-get install -t bookworm-backports libvulkan1 mesa-vulkan-drivers (llvmpipe, software); with a GPU: its vendor\'s Vulkan driver';

/** What the adapter says about itself (GPUAdapterInfo; Dawn exposes these as prototype getters). */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (llvmpipe, lavapipe, SwiftShader, WARP): correct, but slower than wasm. */
  software: boolean;
}

export type WebgpuProbe =
  | { available: true; adapter: AdapterDescription }
  | { available: false; reason: string; hint: string };

const require = createRequire(import.meta.url);

function disabled(what: 'package' | 'adapter'): boolean {
  return (process.env.CNNF_WEBGPU_DISABLE ?? '').split(',').map((s) => s.trim()).includes(what);
}

/**
 * Dawn's native addon for this platform: inside the webgpu package, or, in the portable bundle (which
 * has the packages' JavaScript inside and no node_modules), in cnnf-assets/webgpu/ beside it.
 */
function dawnAddonPath(): string | null {
  const dir = `${process.platform}-${process.platform === 'darwin' ? 'universal' : process.arch}`;
  if (BUNDLED) return join(assetRoot(), 'webgpu', dir, 'dawn.node');
  try {
    return join(dirname(require.resolve('webgpu')), 'dist', dir, 'dawn.node');
  } catch {
    return null;
  }
}

/** The packages that do not resolve from cnnf (all of them under CNNF_WEBGPU_DISABLE=package). */
export function missingWebgpuPackages(): string[] {
  if (disabled('package')) return [...WEBGPU_PACKAGES];
  // the bundle holds the packages' JavaScript when they were installed where it was built, and their addon beside it
  if (BUNDLED) return existsSync(dawnAddonPath() as string) ? [] : [...WEBGPU_PACKAGES];
  return WEBGPU_PACKAGES.filter((p) => {
    try {
      require.resolve(p.slice(0, p.lastIndexOf('@')));
      return false;
    } catch {
      return true;
    }
  });
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software|warp|microsoft basic render/i;

/** A description of a GPUAdapterInfo, read through its getters. */
export function describeAdapter(info: Record<string, unknown> | undefined, isFallback = false): AdapterDescription {
  const s = (k: string): string => (info && typeof info[k] === 'string' ? (info[k] as string) : '');
  const d = { vendor: s('vendor'), architecture: s('architecture'), device: s('device'), description: s('description') };
  const software = isFallback || info?.isFallbackAdapter === true || d.architecture === 'software' || SOFTWARE.test(`${d.vendor} ${d.device} ${d.description}`);
  return { ...d, software };
}

/** "mesa software llvmpipe: Mesa 25.0.7 (software)": the adapter in one short line (unsanitised). */
export function adapterLabel(a: AdapterDescription): string {
  const words = [a.vendor, a.architecture, a.description || a.device].filter((w) => w !== '');
  return `${words.join(' ') || 'unnamed adapter'}${a.software ? ' (software)' : ''}`;
}

const missingMessage = (missing: string[]): WebgpuProbe => ({
  available: false,
  reason: `${missing.map((m) => m.slice(0, m.lastIndexOf('@'))).join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed`,
  hint: WEBGPU_INSTALL,
});
const noAdapter = (detail = ''): WebgpuProbe => ({ available: false, reason: `no WebGPU adapter found${detail}`, hint: WEBGPU_ADAPTER_HINT });

/**
 * Looks for an adapter in a child process, so that whatever Dawn writes to stderr while it enumerates
 * devices (on llvmpipe: two "maxDynamic...BuffersPerPipelineLayout artificially reduced" lines, written
 * by native code, which JavaScript cannot intercept) stays out of this process's stderr, and no Dawn
 * instance is left behind. Used by `--backend auto` and `cnnf backends`.
 */
export function probeWebgpu(): WebgpuProbe {
  const missing = missingWebgpuPackages();
  if (missing.length > 0) return missingMessage(missing);
  if (disabled('adapter')) return noAdapter();
  const addon = dawnAddonPath();
  if (!addon || !existsSync(addon)) return { available: false, reason: `webgpu has no native addon for ${process.platform}-${process.arch}${addon ? ` (${addon})` : ''}`, hint: WEBGPU_INSTALL };
  // Dawn's addon itself (what the webgpu package's index.js loads), so that the probe works from the bundle too
  const script = `const { createRequire } = await import('node:module'); const gpu = createRequire(process.cwd() + '/')(${JSON.stringify(addon)}).create([]);
const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
const i = a && a.info; const r = {};
if (i) for (const k of ['vendor', 'architecture', 'device', 'description', 'isFallbackAdapter']) r[k] = i[k];
process.stdout.write(JSON.stringify({ found: !!a, info: r, fallback: !!(a && a.isFallbackAdapter) })); process.exit(0);`;
  const p = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, NODE_OPTIONS: '' } });
  if (p.status !== 0) {
    const line = (p.stderr ?? '').split('\n').find((l) => /error/i.test(l)) ?? `exit ${p.status ?? p.signal}`;
    return { available: false, reason: `webgpu failed to load (${line.trim().slice(0, 200)})`, hint: WEBGPU_INSTALL };
  }
  try {
    const r = JSON.parse(p.stdout) as { found: boolean; info: Record<string, unknown>; fallback: boolean };
    if (!r.found) return noAdapter();
    return { available: true, adapter: describeAdapter(r.info, r.fallback) };
  } catch {
    return noAdapter(' (the probe answered nothing readable)');
  }
}

interface GpuLike {
  requestAdapter(opts?: { powerPreference?: string }): Promise<{ info?: Record<string, unknown>; isFallbackAdapter?: boolean } | null>;
}

/** The `navigator.gpu` cnnf installed (so that releaseWebgpu removes only what cnnf added). */
let installed: { gpu: GpuLike; ownNavigator: boolean } | null = null;

/**
 * Node 20 has no global `navigator`; Node 21+ has one without `gpu`. Adds `gpu` without replacing an
 * existing navigator or an existing gpu.
 */
function installGpu(gpu: GpuLike): void {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true, enumerable: false });
    installed = { gpu, ownNavigator: true };
  } else {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true, enumerable: false });
    installed = { gpu, ownNavigator: false };
  }
}

/**
 * Makes `navigator.gpu` available in this process and returns its adapter, or why not. Imports
 * tfjs-backend-webgpu (which registers the 'webgpu' backend only where navigator.gpu exists).
 */
export async function prepareWebgpu(): Promise<WebgpuProbe> {
  const missing = missingWebgpuPackages();
  if (missing.length > 0) return missingMessage(missing);
  let gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (!gpu) {
    let wg: { create(flags: string[]): GpuLike; globals: Record<string, unknown> };
    try {
      wg = (await import('webgpu')) as unknown as typeof wg;
    } catch (e) {
      return { available: false, reason: `webgpu failed to load (${String((e as Error).message ?? e).split('\n')[0].slice(0, 200)})`, hint: WEBGPU_INSTALL };
    }
    // the WebGPU constants and classes (GPUBufferUsage, ...) tfjs-backend-webgpu uses as globals
    for (const [k, v] of Object.entries(wg.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
    gpu = wg.create([]);
  }
  const adapter = disabled('adapter') ? null : await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return noAdapter();
  const description = describeAdapter(adapter.info, adapter.isFallbackAdapter === true);
  if (!(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu) installGpu(gpu);
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    return { available: false, reason: `@tensorflow/tfjs-backend-webgpu failed to load (${String((e as Error).message ?? e).split('\n')[0].slice(0, 200)})`, hint: WEBGPU_INSTALL };
  }
  return { available: true, adapter: description };
}

/**
 * Drops the reference to Dawn's GPU object that cnnf installed: while it is reachable, Dawn keeps
 * the process alive (https://issues.chromium.org/issues/387965810).
 */
export function releaseWebgpu(): void {
  if (!installed) return;
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (installed.ownNavigator) delete (globalThis as { navigator?: unknown }).navigator;
  else if (g.navigator) delete g.navigator.gpu;
  installed = null;
}
