// Cluster workers receive accepted sockets from the primary (round-robin)
// or accept themselves; either way the getters and capture work there.
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
    expect(r.worker).toBe(true);
    expect(r.real).toBe(r.node);
    expect(r.real).toBe('::ffff:127.0.0.1');
    expect(r.port).toBe(r.nodePort);
    expect(r.source).toBe('peer');
    expect(r.capturedBeforeAsk).toBe(true);
  }
});
