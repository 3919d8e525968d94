import { defineConfig } from 'vitest/config';

// `npm run test:faults`: processes killed and restarted, Redis and Postgres taken away, load.
// Slower than the unit and integration suite, so apart from it; `.ci/run` runs both.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 240_000,
    hookTimeout: 120_000,
    // One scenario at a time: they measure, and some own a server of their own.
    fileParallelism: false,
  },
});
