// The eBPF backend on this guest's kernel: the object loads, and the shared
// behaviour table holds (test process moved into a cgroup the test created).
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { behaviourSuite } from '../spec/behaviour';
import { bpfBackend, bpfObject, requireRoot } from '../bpf-support';

describe(`eBPF object on ${os.release()}`, () => {
  it('passes the verifier, every program, with room to spare', () => {
    requireRoot();
    const dir = `/sys/fs/bpf/toa-verify-${process.pid}`;
    const r = spawnSync('bpftool', ['-d', 'prog', 'loadall', bpfObject(), dir], { encoding: 'utf8', maxBuffer: 1 << 30 });
    spawnSync('rm', ['-rf', dir]);
    const log = `${r.stdout}${r.stderr}`;
    const processed = [...log.matchAll(/^processed (\d+) insns/gm)].map((m) => Number(m[1]));
    console.log(`verifier on ${os.release()}: processed ${processed.join(', ')} instructions`);
    expect(r.status, log.split('\n').slice(-40).join('\n')).toBe(0);
    expect(processed).toHaveLength(4);
    for (const n of processed) expect(n).toBeLessThan(200_000);
  });
});

behaviourSuite(bpfBackend('k-behaviour'));
