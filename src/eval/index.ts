// src/eval owns robustness evaluation: attack suites (suite.ts), the evaluate() runner (evaluate.ts:
// plan -> run -> accumulate -> assemble), the plan and its work units (plan.ts), unit records as JSON
// (units.ts), resumable state directories (state.ts), shards and their merge (shard.ts), the results
// file schema (results.ts) and the reference-conformance checks (conformance.ts).
export * from './results.js';
export * from './suite.js';
export * from './evaluate.js';
export * from './plan.js';
export * from './units.js';
export * from './state.js';
export * from './shard.js';
export * from './batch.js';
export * from './conformance.js';
export * from './stats.js';
export * from './compare.js';
export * from './robust.js';
export * from './memory.js';
