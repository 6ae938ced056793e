// Anti-spoofing: with a trusted list, options from other sources are ignored
// and counted; the list is changed at runtime; an IPv4 balancer reaching a
// dual-stack socket (v4-mapped) matches IPv4 ranges.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
// @ts-expect-error -- plain ESM helper without type declarations
import { createLoadBalancer } from '../support/lb/index.mjs';
import { CLIENT_V4, CLIENT_V6, CLIENT_PORT, runCase } from '../spec/behaviour';
import { delta, getParam, insmod, kernelTrouble, loaded, rmmod, setParam, stats } from '../spec/kmod';

describe('trusted balancer ranges', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let lb: any;
  beforeAll(async () => {
    if (loaded()) rmmod();
    insmod({ trusted: ['192.0.2.0/24'] });
    lb = await createLoadBalancer();
  }, 60000);
  afterAll(async () => {
    await lb?.close();
    if (loaded()) rmmod();
  });

  const probe = (listen: '0.0.0.0' | '::', lbFamily: 4 | 6, nat64 = false) => ({
    listen, lbFamily,
    toa: nat64 ? { kind: 253, address: CLIENT_V6, port: CLIENT_PORT } : { kind: 200, address: CLIENT_V4, port: CLIENT_PORT },
  });

  for (const [listen, fam, nat64] of [['0.0.0.0', 4, false], ['::', 4, false], ['::', 4, true], ['::', 6, true]] as const) {
    it(`${listen} via IPv${fam}${nat64 ? ' NAT64' : ''}: untrusted ignored and counted, trusted honoured`, async () => {
      setParam('trusted', '192.0.2.0/24,2001:db8:ffff::/48');
      let before = stats();
      let { seen } = await runCase(lb, probe(listen, fam, nat64));
      let d = delta(before, stats());
      expect(d.untrusted).toBe(1);
      expect(d.syn_recv_sock_toa).toBe(0);
      expect(seen.info.present).toBe(false);
      expect(seen.info.untrusted).toBe(true);
      expect(seen.remoteAddress).toBe(seen.info.proxyAddress);
      expect(seen.nat64).toEqual({ code: 'EINVAL' });

      // the balancer's range, written at runtime
      setParam('trusted', fam === 4 ? '203.0.113.0/24' : '2001:db8:70a::/48');
      before = stats();
      ({ seen } = await runCase(lb, probe(listen, fam, nat64)));
      d = delta(before, stats());
      expect(d.untrusted).toBe(0);
      expect(d.syn_recv_sock_toa).toBe(1);
      expect(seen.info.present).toBe(true);
      expect(seen.info.trusted).toBe(true);
      expect(seen.info.address).toBe(nat64 ? CLIENT_V6 : listen === '::' ? `::ffff:${CLIENT_V4}` : CLIENT_V4);
    }, 60000);
  }

  it('an IPv6 range does not admit an IPv4 balancer; a v4-mapped range is an IPv4 range', async () => {
    setParam('trusted', '2001:db8:70a::/48');
    let before = stats();
    let { seen } = await runCase(lb, probe('::', 4));
    expect(delta(before, stats()).untrusted).toBe(1);
    expect(seen.info.untrusted).toBe(true);

    setParam('trusted', '::ffff:203.0.113.0/120');
    expect(getParam('trusted')).toBe('203.0.113.0/24');
    before = stats();
    ({ seen } = await runCase(lb, probe('::', 4)));
    expect(delta(before, stats()).untrusted).toBe(0);
    expect(seen.info.trusted).toBe(true);
  }, 60000);

  it('leaves no trouble in the kernel log', () => {
    expect(kernelTrouble()).toEqual([]);
  });
});
