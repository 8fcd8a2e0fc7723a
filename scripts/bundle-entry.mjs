// Entry of the portable bundle (scripts/bundle.mjs bundles it into cnnf.mjs). The same file is the CLI
// in the main thread and the worker loop in a worker thread: src/parallel/pool.ts starts workers from
// the bundle file itself, and tells them to import the modules of their tasks, which in the bundle are
// this file too, so it exports every task handler (live binding, set in worker threads only).
import { isMainThread } from 'node:worker_threads';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

// the wasm backend's .wasm files lie in cnnf-assets/wasm/ beside the bundle
setWasmPaths(join(dirname(fileURLToPath(import.meta.url)), 'cnnf-assets', 'wasm') + sep);

export let taskHandlers;
if (isMainThread) {
  const { main } = await import('../src/cli/main.ts');
  process.exitCode = await main(process.argv);
} else {
  const [evalTasks, trainTasks] = await Promise.all([import('../src/eval/worker-tasks.ts'), import('../src/train/worker-tasks.ts')]);
  taskHandlers = { ...evalTasks.taskHandlers, ...trainTasks.taskHandlers };
  await import('../src/parallel/worker.ts');
}
