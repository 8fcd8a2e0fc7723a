import { createRequire } from 'node:module';

/** The bundle build (scripts/bundle.mjs) defines the version; the sources and dist/ read package.json. */
declare const __CNNF_VERSION__: string | undefined;

const require = createRequire(import.meta.url);
export const VERSION: string = typeof __CNNF_VERSION__ === 'string' ? __CNNF_VERSION__ : (require('../package.json') as { version: string }).version;
