import { defineConfig } from 'vitest/config';

// Kernel suite: runs as root *inside* QEMU guests booting Debian kernels
// (test/support/guest/matrix.mjs, `npm run test:kernel`), one file at a time:
// the files load and unload kernel modules and share the guest's 2 CPUs,
// and everything runs under TCG, hence the generous timeouts.
export default defineConfig({
  test: {
    include: ['test/kernel/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
    // One worker for every file instead of a fresh fork per file: under TCG
    // starting a worker and importing vitest again cost ~3.6 s per file
    // (6.12, 8 files: 57 s instead of 86 s). Each file loads the module or
    // attaches the programs it needs and undoes it; what the worker process
    // itself keeps (node-toa's per-process counts) a file counts from its
    // own start.
    isolate: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
  },
});
