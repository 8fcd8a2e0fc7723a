/**
 * FGSM: PGD's one-step case: x + eps * direction(grad loss) from the clean input, clipped to
 * [-1, 1] (Linf: sign; L2: the unit gradient; targeted: descend the loss to the target).
 */
import type { Norm } from './base.js';
import { BASE_LOSSES, type BaseLoss } from './gradient.js';
import { PGD, type PGDOptions } from './pgd.js';
import type { AttackDescriptor } from './registry.js';

export class FGSM extends PGD {
  override readonly method: string = 'fgsm';

  constructor(opts: Omit<PGDOptions, 'steps' | 'stepSize' | 'relStepSize' | 'randomStart' | 'restarts'> = {}) {
    super({ ...opts, name: opts.name ?? 'fgsm', steps: 1, relStepSize: 1, randomStart: false, restarts: 1 });
  }

  override settings(): Record<string, unknown> {
    return { loss: this.lossName, norm: this.norm, targeted: this.targeted };
  }
}

export const fgsmAttack: AttackDescriptor = {
  method: 'fgsm',
  label: 'FGSM',
  summary: 'fast gradient sign method: one step of size eps from the clean input',
  kind: 'gradient',
  norms: ['linf', 'l2'],
  targetable: true,
  params: {
  loss: { type: 'enum', values: BASE_LOSSES, default: 'ce', description: 'loss to maximise: ce (cross-entropy), dlr (difference of logits ratio, scale-invariant) or cw (margin)' },
  },
  defaultName: (p) => `fgsm${p.loss !== 'ce' ? `-${String(p.loss)}` : ''}`,
  build: (spec) => new FGSM({ name: spec.name, targeted: spec.targeted, loss: spec.params.loss as BaseLoss, norm: (spec.norm ?? 'linf') as Norm }),
};
