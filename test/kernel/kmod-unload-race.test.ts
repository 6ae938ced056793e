// Module parameters' sysfs files outlive module_exit (they are removed after
// it returns): 20 rmmod/insmod cycles while other processes read and write
// every parameter and read /proc/net/toa_* in loops. Any KFENCE, BUG, WARNING
// or lockdep report fails (the guest boots with kfence.sample_interval=1 where
// the harness sets it; this test also reads dmesg itself).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { insmod, kernelLog, kernelTrouble, loaded, rmmod } from '../spec/kmod';

const CYCLES = Number(process.env.TOA_UNLOAD_CYCLES ?? 20);
const P = '/sys/module/toa/parameters';

// bounded loops: each stops by itself after `timeout`
const LOOPS = [
  `while :; do echo 203.0.113.0/24,2001:db8::/32 > ${P}/trusted; echo > ${P}/trusted; done`,
  `while :; do echo 200,254 > ${P}/ipv4_kinds; echo 8080,443 > ${P}/ports; echo > ${P}/ports; echo 253 > ${P}/ipv6_kinds; done`,
  `while :; do cat ${P}/trusted ${P}/ipv4_kinds ${P}/ipv6_kinds ${P}/ports; done`,
  'while :; do cat /proc/net/toa_stats /proc/net/toa_table; done',
];

describe(`${CYCLES} rmmod/insmod cycles against parameter and /proc readers and writers`, () => {
  const procs: ChildProcess[] = [];
  beforeAll(() => {
    if (loaded()) rmmod();
  });
  afterAll(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    if (loaded()) rmmod();
  });

  it('shows no report in the kernel log and every cycle is logged', async () => {
    const count = (re: RegExp) => (kernelLog().match(re) ?? []).length;
    const loads = count(/toa: loaded/g);
    for (const l of LOOPS) {
      const p = spawn('timeout', ['300', 'sh', '-c', l], { stdio: 'ignore' });
      procs.push(p);
    }
    try {
      for (let c = 0; c < CYCLES; c++) {
        insmod({ trusted: ['192.0.2.0/24'] });
        await new Promise((r) => setTimeout(r, 100));
        rmmod();
        await new Promise((r) => setTimeout(r, 30));
      }
    } finally {
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => (p.exitCode === null ? once(p, 'exit') : undefined)));
    }
    expect(kernelTrouble()).toEqual([]);
    expect(count(/toa: loaded/g)).toBe(loads + CYCLES);
  }, 600_000);
});
