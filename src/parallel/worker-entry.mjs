// Entry of a cnnf worker thread: registers tsx (so the TypeScript sources run directly, as in
// bin/cnnf), then starts the worker loop of worker.ts.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
