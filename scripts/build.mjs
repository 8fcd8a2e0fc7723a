// `npm run build` and the prepare script (which `npm ci`, `npm install` in a clone and `npm pack` run):
// compiles src/ to dist/ (JavaScript + type declarations) with tsconfig.build.json, from a clean dist/.
// In an installed copy of the package (no src/, dist/ shipped) there is nothing to build: it says so and exits 0.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'src')) || !existsSync(join(root, 'tsconfig.build.json'))) {
  process.stdout.write('cnnf: no sources here (an installed package ships dist/); nothing to build\n');
  process.exit(0);
}
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  process.stderr.write('cnnf: building needs the typescript dev dependency: run `npm install` (or `npm ci`) first\n');
  process.exit(1);
}
rmSync(join(root, 'dist'), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
// `import '@tensorflow/tfjs';` (run for its side effect: every op gradient registered on tfjs-core's engine)
// carries no types, but tsc keeps it in the .d.ts files, and it would make every user's tsc load the
// declarations of tfjs-layers, tfjs-data and the webgl backend (which do not type-check without skipLibCheck).
// The JavaScript keeps it; the declarations drop it.
const SIDE_EFFECT_ONLY = /^import '@tensorflow\/tfjs';\r?\n/gm;
for (const f of readdirSync(join(root, 'dist'), { recursive: true, encoding: 'utf8' })) {
  if (!f.endsWith('.d.ts')) continue;
  const p = join(root, 'dist', f);
  const text = readFileSync(p, 'utf8');
  const stripped = text.replace(SIDE_EFFECT_ONLY, '');
  if (stripped !== text) writeFileSync(p, stripped);
}
