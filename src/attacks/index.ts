/**
 * Attacks on CNN and CNN-F models, one file each behind one interface (base.ts) and one registry
 * (registry.ts): Gaussian noise, FGSM and PGD (Linf or L2; CE, DLR or CW loss; targeted or not;
 * random start, restarts) on the gradient-attack base (gradient.ts), through the first pass or end
 * to end.
 */
export * from './base.js';
export * from './losses.js';
export * from './gradient.js';
export * from './registry.js';
export * from './spec.js';
export { GaussianNoise, gaussianAttack } from './gaussian.js';
export { FGSM, fgsmAttack } from './fgsm.js';
export { PGD, pgdAttack, type PGDOptions } from './pgd.js';
