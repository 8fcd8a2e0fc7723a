/**
 * FGSM: PGD's one-step case: x + eps * direction(grad loss) from the clean input, clipped to
 * [-1, 1] (Linf: sign; L2: the unit gradient; targeted: descend the loss to the target).
 */
import { PGD, type PGDOptions } from './pgd.js';

export class FGSM extends PGD {
  override readonly method: string = 'fgsm';

  constructor(opts: Omit<PGDOptions, 'steps' | 'stepSize' | 'relStepSize' | 'randomStart' | 'restarts'> = {}) {
    super({ ...opts, name: opts.name ?? 'fgsm', steps: 1, relStepSize: 1, randomStart: false, restarts: 1 });
  }

  override settings(): Record<string, unknown> {
    return { loss: this.lossName, norm: this.norm, targeted: this.targeted };
  }
}
