/** Training recipes next to the numbers (the like-for-like main job) and numbers rounded for people. */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../src/backend/index.js';
import { humanNumber } from '../src/format.js';
import { loadCheckpoint, trainingRecipe } from '../src/io/checkpoint.js';
import { DEMO_MODELS } from '../src/cli/commands/demo.js';
import { ROOT } from './helpers/cli.js';

beforeAll(async () => {
  await useBackend('cpu', { quiet: true });
});

describe('humanNumber', () => {
  it('rounds to 3 significant digits, small numbers in exponent form', () => {
    expect(humanNumber(0.00019720342157591468)).toBe('1.97e-4');
    expect(humanNumber(0.0002)).toBe('2e-4');
    expect(humanNumber(0.05)).toBe('0.05');
    expect(humanNumber(0.84841234)).toBe('0.848');
    expect(humanNumber(128)).toBe('128');
    expect(humanNumber(0)).toBe('0');
  });
});

describe('trainingRecipe', () => {
  const recipe = async (name: string): Promise<string | undefined> => {
    const ck = await loadCheckpoint(join(ROOT, 'models', `${name}.safetensors`));
    ck.model.dispose();
    return trainingRecipe(ck);
  };

  it('the main job compares the reference CNN and CNN-F, both adversarially trained, and says how', async () => {
    expect(DEMO_MODELS.map(([p]) => p)).toEqual(['models/reference-cnn-adv.safetensors', 'models/reference-cnnf-adv.safetensors']);
    // from the model cards (imported weights carry no training metadata)
    expect(await recipe('reference-cnn-adv')).toBe('A plain CNN, PGD adversarial training (eps 0.2, step 0.071, 7 steps), 6 epochs (reference PyTorch code)');
    expect(await recipe('reference-cnnf-adv')).toBe("A CNN-F (ind 2, 1 cycle, res_param 0.1) trained with the paper's adversarial recipe, 13 epochs (reference PyTorch code)");
  });

  it('checkpoints written by cnnf train describe themselves from their metadata', async () => {
    expect(await recipe('cnn-fmnist')).toBe('cnnf train cnn on clean images, 1 epoch, all training images, batch 128, lr 0.05');
    expect(await recipe('cnnf-fmnist')).toBe('cnnf train cnnf on clean + gaussian:0.3 pairs, 2 epochs, 12000 training images, batch 64, lr 0.05');
  });

  it('an explicit recipe in the metadata wins; nothing known gives undefined', () => {
    const info = { training: { recipe: 'PGD-7 adversarial training, 10 epochs' }, source: 'x' } as never;
    expect(trainingRecipe({ info, path: '/nonexistent/m.safetensors' })).toBe('PGD-7 adversarial training, 10 epochs');
    expect(trainingRecipe({ info: { training: {}, source: 'x' } as never, path: '/nonexistent/m.safetensors' })).toBeUndefined();
  });
});
