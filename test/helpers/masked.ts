/**
 * A masked-gradient model for the trust checks: a copy of a checkpoint whose last linear layer
 * (weights and bias) is multiplied by `scale`. Predictions are unchanged (argmax is scale-invariant);
 * the softmax saturates, so cross-entropy gradients vanish (the example of AutoAttack's paper).
 */
import { loadCheckpoint, saveArrays } from '../../src/io/checkpoint.js';

export async function writeScaledLogitsModel(src: string, dst: string, scale = 1e4): Promise<void> {
  const ck = await loadCheckpoint(src);
  const arrays = await ck.model.toArrays();
  const n = ck.model.config.fc.length + 1;
  for (const key of [`fc${n}.weight`, `fc${n}_bias.bias`]) {
    const a = arrays.get(key);
    if (!a) throw new Error(`${src} has no ${key}`);
    a.data = a.data.map((v) => v * scale);
  }
  saveArrays(dst, ck.model.config, arrays, {
    readout: ck.info.readout, dataset: ck.info.dataset, classNames: ck.info.classNames, dtype: 'F32',
    source: `${ck.info.source}; last layer scaled by ${scale} (masked-gradient test model)`, training: ck.info.training,
  });
  ck.model.dispose();
}
