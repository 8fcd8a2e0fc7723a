import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'cnnf-report/**', 'out/**', 'dist/**', 'bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  { files: ['**/*.js', '**/*.cjs', '**/*.mjs'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
  {
    // tfjs-backend-webgpu in Node.js has no synchronous read (dataSync, arraySync and bufferSync throw):
    // src/ reads tensors with `await t.data()` / `await t.array()` (tests, on wasm, may read synchronously)
    files: ['src/**'],
    rules: {
      'no-restricted-properties': ['error',
        ...['dataSync', 'arraySync', 'bufferSync'].map((property) => ({
          property,
          message: `${property}() cannot run on webgpu in Node.js: use await t.data() / await t.array() (src/nn/read.ts)`,
        })),
      ],
    },
  },
);
