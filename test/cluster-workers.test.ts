// Cluster workers receive accepted sockets from the primary (round-robin)
// or accept themselves; either way the capture runs before the worker's
// 'connection' listener, which here destroys the socket at once.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);

it.each([['round-robin', 'rr'], ['shared handle', 'none']])('in cluster workers (%s scheduling)', async (_name, policy) => {
  const { stdout } = await run(process.execPath, [join(__dirname, 'fixtures/cluster.cjs')], {
    env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: policy },
    timeout: 20_000,
  });
  const reports = stdout.trim().split('\n').map((line) => JSON.parse(line));
  expect(reports).toHaveLength(4);
  for (const r of reports) {
    expect(r).toEqual({ worker: true, real: '::ffff:127.0.0.1', port: expect.any(Number) });
  }
  // Four clients, four ephemeral ports.
  expect(new Set(reports.map((r) => r.port)).size).toBe(4);
});
