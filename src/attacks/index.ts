/**
 * Attacks on CNN and CNN-F models, one file each behind one interface (base.ts) and one registry
 * (registry.ts): Gaussian noise; FGSM and PGD (Linf or L2; CE, DLR or CW loss; targeted or not;
 * random start, restarts) on the gradient-attack base (gradient.ts), through the first pass or end
 * to end; APGD / APGD-T and FAB-T (AutoAttack); gradient-free Square (Linf / L2) and SPSA (Linf) on the model's
 * real prediction; transfer from a surrogate; and AutoAttack's ensemble.
 */
export * from './base.js';
export * from './losses.js';
export * from './gradient.js';
export * from './registry.js';
export * from './spec.js';
export { GaussianNoise, gaussianAttack } from './gaussian.js';
export { FGSM, fgsmAttack } from './fgsm.js';
export { PGD, pgdAttack, type PGDOptions } from './pgd.js';
export { SquareAttack, squareAttack, type SquareOptions, type SquareResult, type SquareNorm } from './square.js';
export { SPSA, spsaAttack, type SPSAOptions, type SPSAResult } from './spsa.js';
export { Transfer, transferAttack, surrogateCheckpoint, surrogateFile, clearSurrogates } from './transfer.js';
export * from './apgd.js';
export { FAB, fabAttack, fabSingleRun, projectionLinf, projectionL2, FABScratch, FAB_MAX_ITERATIONS, type FABNorm, type FABOptions, type FABSingleRunOptions, type FABSingleRunResult } from './fab.js';
export { AutoAttack, autoAttack, isStaged, AUTOATTACK_STAGES, type StagedAttack, type StagedResult } from './autoattack.js';
