// The eBPF backend on this guest's kernel: the object loads through the
// package's own loader (toa-bpf, never the host's bpftool), and the shared
// behaviour table holds (test process moved into a cgroup the test created).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { behaviourSuite } from '../spec/behaviour';
import { bpfBackend, bpfObject, requireRoot } from '../bpf-support';
import { withLoader } from '../../src/bpf/loader';

describe(`eBPF object on ${os.release()}`, () => {
  it('passes the verifier, every program, with room to spare', async () => {
    requireRoot();
    const fsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'toa-verify-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', fsDir]);
    try {
      const log = await withLoader(async (l) => {
        const h = await l.request<number>('open', bpfObject(), fsDir, 4);
        const out = await l.request<string>('load', h);
        await l.request('close', h);
        return out;
      });
      const processed = [...log.matchAll(/processed (\d+) insns/g)].map((m) => Number(m[1]));
      console.log(`verifier on ${os.release()}: processed ${processed.join(', ')} instructions`);
      expect(processed, log.split('\n').slice(-40).join('\n')).toHaveLength(4);
      for (const n of processed) expect(n).toBeLessThan(200_000);
    } finally {
      spawnSync('umount', [fsDir]);
      fs.rmSync(fsDir, { recursive: true, force: true });
    }
  });
});

behaviourSuite(bpfBackend('k-behaviour'));
