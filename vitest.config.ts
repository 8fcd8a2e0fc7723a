import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // tests that spawn bin/cnnf run the current TypeScript sources (through tsx), never a stale dist/;
    // test/package.test.ts checks the compiled package separately
    env: { CNNF_FROM_SOURCE: '1' },
    testTimeout: 600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
