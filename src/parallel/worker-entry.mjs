// Entry of a cnnf worker thread when cnnf runs from its TypeScript sources (tests, CNNF_FROM_SOURCE=1):
// registers tsx (a dev dependency), then starts the worker loop of worker.ts. The compiled package
// starts dist/parallel/worker.js directly (see ENTRY in pool.ts).
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
