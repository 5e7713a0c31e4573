import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Forks, not threads: pkcs11js and better-sqlite3 are native modules that must not be
    // shared between worker threads, and each SoftHSM test file uses its own token dir.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
