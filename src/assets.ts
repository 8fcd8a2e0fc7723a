/**
 * Where cnnf's files that are not code live (attacks/, models/): the package root when cnnf runs from
 * its sources (src/) or from the compiled package (dist/), both one level below it; in the portable
 * bundle (`npm run bundle`: one file cnnf.mjs, see scripts/bundle.mjs) the folder cnnf-assets/ beside
 * that file. The bundle build defines __CNNF_BUNDLE__ (esbuild `define`); nowhere else is it defined.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

declare const __CNNF_BUNDLE__: boolean | undefined;

/** True in the portable bundle (cnnf.mjs), false in the sources and the npm package. */
export const BUNDLED: boolean = typeof __CNNF_BUNDLE__ !== 'undefined' && __CNNF_BUNDLE__ === true;

/** Name of the assets folder beside the bundle. */
export const BUNDLE_ASSETS = 'cnnf-assets';

/** The folder holding attacks/ and models/: the package root, or the bundle's cnnf-assets/. */
export function assetRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return BUNDLED ? join(here, BUNDLE_ASSETS) : join(here, '..');
}

/** The bundle's file URL (cnnf.mjs, whose worker threads run the same file); undefined outside the bundle. */
export function bundleUrl(): URL | undefined {
  return BUNDLED ? new URL(import.meta.url) : undefined;
}
