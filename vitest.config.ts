import { defineConfig } from 'vitest/config';

// Host suite: the addon and TypeScript API on this machine's kernel, plus the
// eBPF backend (attached to cgroups the tests create). Kernel-module tests
// run inside QEMU guests: see vitest.kernel.config.ts and test/support/guest.
export default defineConfig({
  test: {
    include: ['test/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
