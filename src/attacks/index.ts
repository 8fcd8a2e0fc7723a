/** Attacks on CNN and CNN-F models, one file each behind one interface (base.ts): Gaussian noise,
 *  FGSM and Linf PGD (targeted or not, random start, restarts), through the first pass or end to end;
 *  gradient-free Square (Linf / L2) and SPSA (Linf) on the model's real prediction. */
export * from './base.js';
export { GaussianNoise } from './gaussian.js';
export { FGSM } from './fgsm.js';
export { PGD, type PGDOptions } from './pgd.js';
export * from './losses.js';
export { SquareAttack, type SquareOptions, type SquareResult, type SquareNorm } from './square.js';
export { SPSA, type SPSAOptions, type SPSAResult } from './spsa.js';
