/** Attacks on CNN and CNN-F models, one file each behind one interface (base.ts): Gaussian noise,
 *  FGSM and Linf PGD (targeted or not, random start, restarts), through the first pass or end to end. */
export * from './base.js';
export { GaussianNoise } from './gaussian.js';
export { FGSM } from './fgsm.js';
export { PGD, type PGDOptions } from './pgd.js';
export * from './losses.js';
export { APGD, apgdSingleRun, apgdCheckpoints, apgdScheduleParams, APGD_LOSSES, APGD_MAX_ITERATIONS, type APGDOptions, type APGDLoss, type APGDNorm, type APGDSingleRunOptions, type APGDSingleRunResult } from './apgd.js';
