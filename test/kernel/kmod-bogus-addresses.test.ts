// Addresses no client can have are never adopted, and each refused class has
// its own counter: bogus_unspecified, bogus_loopback, bogus_multicast,
// bogus_broadcast (v4-mapped forms count as their IPv4 class).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { BOGUS_V4, BOGUS_V6, CLIENT_PORT, runCase } from '../spec/behaviour';
import { delta, insmod, kernelTrouble, loaded, rmmod, stats, tableEntries } from '../spec/kmod';

describe('bogus client addresses', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod();
    lb = await createLoadBalancer();
  }, 60000);
  afterAll(async () => {
    await lb?.close();
    if (loaded()) rmmod();
  });

  const cases = [
    ...Object.entries(BOGUS_V4).flatMap(([cls, l]) => l.map((a) => ({ cls, a, kind: 200, fam: 4 as const }))),
    ...Object.entries(BOGUS_V6).flatMap(([cls, l]) => l.map((a) => ({ cls, a, kind: 253, fam: 6 as const }))),
  ];
  for (const { cls, a, kind, fam } of cases) {
    it(`${a} is refused and counted as bogus_${cls}`, async () => {
      const before = stats();
      const { seen } = await runCase(lb, { listen: '::', lbFamily: fam, toa: { kind, address: a, port: CLIENT_PORT } });
      const d = delta(before, stats());
      expect(seen.info.present).toBe(false);
      expect(seen.remoteAddress).toBe(seen.info.proxyAddress);
      expect(seen.nat64).toEqual({ code: 'EINVAL' });
      expect(d[`bogus_${cls}`]).toBe(1);
      expect(d.syn_recv_sock_toa).toBe(0);
      expect(d.syn_recv_sock_no_toa).toBe(1);
    }, 30000);
  }

  it('stores nothing for them and leaves no trouble in the kernel log', () => {
    expect(tableEntries()).toEqual([]);
    expect(kernelTrouble()).toEqual([]);
  });
});
