// The loader's defaults on a machine of its own (this guest): /sys/fs/bpf is
// mounted when missing and the pins go to /sys/fs/bpf/node-toa. Still attached
// to a cgroup the test creates, never the guest's root cgroup.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { attach, cgroup2Root, detach, status, DEFAULT_PIN_DIR } from '../../src/bpf/index';
import { bpfObject, requireRoot } from '../bpf-support';

const bpffsMounted = () => fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === '/sys/fs/bpf' && l.split(' ')[2] === 'bpf');

describe(`loader defaults on ${os.release()}`, () => {
  it('mounts /sys/fs/bpf when missing, pins in /sys/fs/bpf/node-toa, detaches without a trace', async () => {
    requireRoot();
    // unmounting the machine's bpffs is only acceptable on a throwaway guest
    expect(process.env.TOA_KERNEL, 'run through test/support/guest/matrix.mjs').toBe(os.release());
    const cg = path.join(cgroup2Root(), `toa-bpf-k-defaults-${process.pid}`);
    fs.mkdirSync(cg);
    try {
      while (bpffsMounted()) execFileSync('umount', ['/sys/fs/bpf']);
      const s = await attach({ cgroup: cg, object: bpfObject() });
      expect(bpffsMounted()).toBe(true);
      expect(s.pinDir).toBe(DEFAULT_PIN_DIR);
      expect(s.cgroups).toEqual([cg]);
      expect(fs.readdirSync(path.join(DEFAULT_PIN_DIR, 'links')).sort()).toEqual(['toa_getsockopt', 'toa_peername4', 'toa_peername6', 'toa_sockops']);
      expect(await detach()).toBe(true);
      expect(fs.existsSync(DEFAULT_PIN_DIR)).toBe(false);
      expect((await status()).loaded).toBe(false);
      expect(await detach()).toBe(false);
    } finally {
      await detach().catch(() => undefined);
      fs.rmdirSync(cg);
    }
  });
});
